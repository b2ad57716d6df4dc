//! The pre-auth stage: the greeting, then read bytes → feed the protocol engine → perform
//! its actions (send, STARTTLS, login, close), all under the pre-auth deadline, until the
//! backend accepts a login (→ splice) or the session ends. Shutdown answers pre-auth
//! sessions with `* BYE [UNAVAILABLE]` / `-ERR [SYS/TEMP]` at once.

use std::time::Duration;

use mailgate_proto::FrontAction;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, sleep_until, timeout};

use super::login::LoginStep;
use super::spliced::Spliced;
use super::{Front, Outcome, Session};
use crate::conn::Conn;

/// Replies held for a client before they are written (a pipelining client that never
/// reads then waits in the write, under the pre-auth deadline, instead of growing a queue).
const MAX_QUEUED_REPLIES: usize = 8 * 1024;

impl Session<'_> {
    /// Greeting and pre-auth loop until a spliceable login.
    pub(super) async fn preauth(&mut self, mut conn: Conn) -> Result<Spliced, Outcome> {
        let mut config = self.rt.front_config(self.kind);
        // Only what every backend a login can reach supports (the probes' lists).
        config.advertised = self.ctx.advertised(&self.rt.routing, self.kind.protocol());
        let mut front = Front::new(self.kind.protocol(), config, conn.is_tls());
        // Every write before login is under the pre-auth deadline too: a client that sends
        // commands but never reads the answers cannot park the session in a write.
        let deadline = Instant::now() + self.rt.limits.preauth_timeout;
        let mut out: Vec<u8> = front.greeting();
        let mut buf = vec![0u8; 4096];
        loop {
            while let Some(action) = front.next_action() {
                match action {
                    FrontAction::Send(bytes) => {
                        out.extend_from_slice(&bytes);
                        // A client that pipelines commands without reading gets its answers
                        // as they come, not a queue: at most this much is held for it.
                        if out.len() >= MAX_QUEUED_REPLIES
                            && flush(&mut conn, &mut out, deadline).await.is_err()
                        {
                            self.summary.close_detail = Some("client_not_reading");
                            return Err(Outcome::PreauthTimeout);
                        }
                    }
                    FrontAction::Close(reason) => {
                        let _ = flush(&mut conn, &mut out, deadline).await;
                        let _ = timeout(Duration::from_secs(2), conn.shutdown()).await;
                        self.summary.close_detail = Some(reason.as_str());
                        return Err(Outcome::Closed(reason));
                    }
                    FrontAction::StartTls => {
                        if flush(&mut conn, &mut out, deadline).await.is_err() {
                            return Err(Outcome::IoError);
                        }
                        let Conn::Plain(tcp) = conn else {
                            return Err(Outcome::TlsFailed);
                        };
                        conn = self.handshake(tcp).await?;
                        front.tls_started();
                    }
                    FrontAction::Login(req) => {
                        if flush(&mut conn, &mut out, deadline).await.is_err() {
                            return Err(Outcome::IoError);
                        }
                        let client_id = front.client_id();
                        let client_tls = crate::net::tls_version(&conn);
                        // Boxed: the relay's futures (DNS, connect, TLS) are large and must
                        // not enlarge the state every idle spliced session keeps. The client
                        // is watched meanwhile: one that leaves ends the login at once, and
                        // with it the login's permit (its place in the backend's budget).
                        let step = tokio::select! {
                            step = Box::pin(self.login(req, client_id, client_tls)) => step,
                            () = client_gone(&mut conn, &mut front, &mut buf) => {
                                return Err(Outcome::ClientClosed);
                            }
                        };
                        match step {
                            LoginStep::Spliced(logged_in, slot) => {
                                let mut to_client = front.login_result(logged_in.verdict.clone());
                                to_client.extend_from_slice(&logged_in.remaining);
                                return Ok(Spliced {
                                    client: conn,
                                    logged_in,
                                    to_client,
                                    to_backend: front.into_remaining(),
                                    slot,
                                });
                            }
                            LoginStep::Answer(verdict) => {
                                out.extend_from_slice(&front.login_result(verdict));
                            }
                        }
                    }
                }
            }
            if flush(&mut conn, &mut out, deadline).await.is_err() {
                if Instant::now() >= deadline {
                    self.summary.close_detail = Some("client_not_reading");
                    return Err(Outcome::PreauthTimeout);
                }
                return Err(Outcome::IoError);
            }
            let read = tokio::select! {
                r = conn.read(&mut buf) => r,
                _ = sleep_until(deadline) => {
                    let _ = timeout(Duration::from_secs(2), conn.write_all(&front.timeout_bye())).await;
                    return Err(Outcome::PreauthTimeout);
                }
                _ = self.ctx.lifecycle().shutting_down() => {
                    let _ = timeout(Duration::from_secs(2), conn.write_all(&front.shutdown_bye())).await;
                    let _ = timeout(Duration::from_secs(1), conn.shutdown()).await;
                    return Err(Outcome::Shutdown);
                }
            };
            match read {
                Ok(0) => return Err(Outcome::ClientClosed),
                Ok(n) => front.feed(&buf[..n]),
                Err(_) => return Err(Outcome::IoError),
            }
        }
    }
}

/// Resolves when the client closes its connection (or it fails) while a login is in
/// flight; whatever it pipelines meanwhile goes to the front engine, which keeps it.
async fn client_gone(conn: &mut Conn, front: &mut Front, buf: &mut [u8]) {
    loop {
        match conn.read(buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => front.feed(&buf[..n]),
        }
    }
}

/// Write what the engine queued, under the pre-auth deadline.
async fn flush(conn: &mut Conn, out: &mut Vec<u8>, deadline: Instant) -> std::io::Result<()> {
    let write = async {
        if !out.is_empty() {
            conn.write_all(out).await?;
            out.clear();
        }
        conn.flush().await
    };
    match tokio::time::timeout_at(deadline, write).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}
