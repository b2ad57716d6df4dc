//! The one thread a reload's blocking work runs on: reading and parsing the files,
//! validating, diffing the tables, freeing the replaced one. One reload at a time already
//! (`reload_queue.rs`); one thread as well, because the allocator keeps memory per thread:
//! glibc gives threads their own malloc arenas, and a table freed in the arena of one
//! blocking-pool thread is not reused by the next table built on another. On the blocking
//! pool, the peak RSS of a mailgate with 1,000,000 domains crept from 115 to 211 MiB over ten
//! reloads; on one thread each new table reuses the memory of the one before last.
//!
//! A job that panics is reported as a failed task; the thread goes on. If the thread cannot
//! be started, jobs run on the blocking pool as before.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Runs blocking jobs one after another on a thread of its own; the thread ends when the
/// lane is dropped.
#[derive(Debug)]
pub struct Lane {
    jobs: Option<mpsc::Sender<Job>>,
}

/// Why a job gave no result.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LaneError(String);

impl Lane {
    /// Start the thread (named `mailgate-reload`).
    pub fn start() -> Lane {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("mailgate-reload".into())
            .spawn(move || {
                for job in rx {
                    // The job's reply is dropped with it: its caller sees the failure.
                    let _ = catch_unwind(AssertUnwindSafe(job));
                }
            });
        match spawned {
            Ok(_) => Lane { jobs: Some(tx) },
            Err(e) => {
                tracing::warn!(error = %e, "no reload thread; reloads use the blocking pool");
                Lane { jobs: None }
            }
        }
    }

    /// Run `f` on the lane's thread and wait for its result.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, LaneError> {
        let Some(jobs) = &self.jobs else {
            return tokio::task::spawn_blocking(f)
                .await
                .map_err(|e| LaneError(e.to_string()));
        };
        let (tx, rx) = oneshot::channel();
        jobs.send(Box::new(move || {
            let _ = tx.send(f());
        }))
        .map_err(|_| LaneError("the reload thread has stopped".into()))?;
        rx.await
            .map_err(|_| LaneError("a reload job panicked".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_on_one_thread_and_survives_a_panic() {
        let lane = Lane::start();
        let a = lane.run(|| std::thread::current().id()).await.expect("a");
        let err = lane.run(|| -> u32 { panic!("boom") }).await;
        assert!(err.is_err());
        let b = lane.run(|| std::thread::current().id()).await.expect("b");
        assert_eq!(a, b, "one thread for every job");
        assert_ne!(a, std::thread::current().id());
    }
}
