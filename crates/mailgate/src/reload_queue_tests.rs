//! The coalescing rules, with paused time: a reload "runs" between two `next()` calls.

use std::time::Duration;

use tokio::time::{Instant, advance, timeout};

use super::{Queue, SETTLE, Trigger};

/// `next()` gives nothing within a minute of (paused) time.
async fn nothing_next(q: &Queue<u32>) -> bool {
    timeout(Duration::from_secs(60), q.next()).await.is_err()
}

#[tokio::test(start_paused = true)]
async fn triggers_during_a_reload_make_exactly_one_more() {
    let q = Queue::default();
    q.push(Trigger::Signal, None, None);
    let first = q.next().await;
    assert_eq!((first.trigger, first.requests), (Trigger::Signal, 1));
    // While it runs: five SIGHUPs, two admin reloads waiting, three file changes.
    advance(Duration::from_millis(500)).await;
    for _ in 0..5 {
        q.push(Trigger::Signal, None, None);
    }
    q.push(Trigger::Admin, None, Some(1));
    q.push(Trigger::FileChange, Some(Instant::now()), None);
    q.push(Trigger::Admin, None, Some(2));
    q.push(Trigger::FileChange, Some(Instant::now()), None);
    q.push(Trigger::FileChange, None, None);
    advance(Duration::from_secs(2)).await;
    let second = q.next().await;
    assert_eq!(second.requests, 10);
    assert_eq!(
        second.trigger,
        Trigger::Signal,
        "the first explicit trigger names it"
    );
    assert_eq!(
        second.waiters,
        vec![(Trigger::Admin, 1), (Trigger::Admin, 2)],
        "every waiter gets this reload's result"
    );
    assert!(nothing_next(&q).await, "one more reload, not more");
    assert_eq!(q.dropped(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_file_change_seen_before_a_reload_started_is_dropped() {
    let q = Queue::<u32>::default();
    // The operator saves (the watcher sees it now), then sends SIGHUP right away.
    let seen = Instant::now();
    q.push(Trigger::Signal, None, None);
    let _reload = q.next().await;
    // The debounced file event arrives while that reload runs, or after it.
    advance(Duration::from_millis(300)).await;
    q.push(Trigger::FileChange, Some(seen), None);
    assert!(
        nothing_next(&q).await,
        "the SIGHUP's reload read those bytes"
    );
    assert_eq!(q.dropped(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_write_right_before_sighup_is_covered_by_the_settle() {
    let q = Queue::<u32>::default();
    q.push(Trigger::Signal, None, None);
    // The watcher's thread sees the write a moment after the signal arrived.
    advance(SETTLE / 2).await;
    let seen = Instant::now();
    let _reload = q.next().await;
    q.push(Trigger::FileChange, Some(seen), None);
    assert!(nothing_next(&q).await);
}

#[tokio::test(start_paused = true)]
async fn a_file_change_seen_after_a_reload_started_runs() {
    let q = Queue::<u32>::default();
    q.push(Trigger::Signal, None, None);
    let _reload = q.next().await;
    // Saved while the reload runs: it may have read the old bytes.
    advance(Duration::from_millis(100)).await;
    q.push(Trigger::FileChange, Some(Instant::now()), None);
    let again = q.next().await;
    assert_eq!((again.trigger, again.requests), (Trigger::FileChange, 1));
    // A stale change joined with a fresh one: the fresh one decides.
    let stale = Instant::now() - Duration::from_secs(1);
    advance(Duration::from_millis(100)).await;
    q.push(Trigger::FileChange, Some(stale), None);
    q.push(Trigger::FileChange, Some(Instant::now()), None);
    assert_eq!(q.next().await.requests, 2);
    assert_eq!(q.dropped(), 0);
}

#[tokio::test(start_paused = true)]
async fn sighup_and_admin_are_never_dropped() {
    let q = Queue::<u32>::default();
    let seen = Instant::now();
    q.push(Trigger::FileChange, Some(seen), None);
    let _first = q.next().await;
    // Both arrive "covered" by nothing in particular: they always reload.
    q.push(Trigger::Signal, None, None);
    assert_eq!(q.next().await.trigger, Trigger::Signal);
    q.push(Trigger::Admin, None, Some(7));
    let b = q.next().await;
    assert_eq!(
        (b.trigger, b.waiters),
        (Trigger::Admin, vec![(Trigger::Admin, 7)])
    );
    // A stale file change queued with a SIGHUP: the SIGHUP keeps it.
    q.push(Trigger::FileChange, Some(seen), None);
    q.push(Trigger::Signal, None, None);
    let b = q.next().await;
    assert_eq!((b.trigger, b.requests), (Trigger::Signal, 2));
}

#[tokio::test(start_paused = true)]
async fn a_reload_starts_after_the_settle_and_is_cancel_safe() {
    let q = Queue::<u32>::default();
    let t0 = Instant::now();
    q.push(Trigger::Signal, None, None);
    // Cancelled during the settle: nothing is lost.
    assert!(timeout(SETTLE / 2, q.next()).await.is_err());
    let b = q.next().await;
    assert_eq!(b.requests, 1);
    assert!(Instant::now() >= t0 + SETTLE);
}

#[tokio::test(start_paused = true)]
async fn close_drops_waiters() {
    let q = Queue::<tokio::sync::oneshot::Sender<()>>::default();
    let (tx, rx) = tokio::sync::oneshot::channel();
    q.push(Trigger::Admin, None, Some(tx));
    q.close();
    assert!(rx.await.is_err(), "the waiter sees the end");
    let (tx, rx) = tokio::sync::oneshot::channel();
    q.push(Trigger::Admin, None, Some(tx));
    assert!(rx.await.is_err(), "a closed queue takes no waiter");
}
