//! The after-login probe steps against scripted fake backends over in-memory streams.

use super::*;
use tokio::io::DuplexStream;

/// A fake backend: answers each received line with the reply the script maps it to
/// (`None`: never answer).
async fn backend(mut s: DuplexStream, script: Vec<(&'static str, Option<&'static str>)>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 1024];
    loop {
        while let Some(pos) = buf.windows(2).position(|w: &[u8]| w == b"\r\n") {
            let line: Vec<u8> = buf.drain(..pos + 2).collect();
            let line = String::from_utf8_lossy(&line).into_owned();
            let reply = script.iter().find(|(prefix, _)| line.contains(prefix));
            match reply {
                Some((_, Some(r))) => {
                    let _ = s.write_all(r.as_bytes()).await;
                }
                Some((_, None)) => std::future::pending::<()>().await,
                None => {
                    let _ = s.write_all(b"* BAD unexpected\r\n").await;
                }
            }
        }
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

const T: Duration = Duration::from_secs(3);

#[tokio::test]
async fn imap_select_and_logout() {
    let (a, b) = tokio::io::duplex(4096);
    tokio::spawn(backend(
        b,
        vec![
            (
                "SELECT INBOX",
                Some("* 0 EXISTS\r\np1 OK [READ-WRITE] Select completed.\r\n"),
            ),
            ("LOGOUT", Some("* BYE\r\np2 OK Logout completed.\r\n")),
        ],
    ));
    assert!(
        after_login(Box::new(a), Vec::new(), Protocol::Imap, T)
            .await
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn imap_login_probe_catches_a_hanging_mailbox() {
    let (a, b) = tokio::io::duplex(4096);
    tokio::spawn(backend(b, vec![("SELECT INBOX", None)]));
    let err = after_login(Box::new(a), Vec::new(), Protocol::Imap, T)
        .await
        .expect_err("hangs");
    assert_eq!(err.step, ProbeStep::Mailbox);
    assert!(err.what.contains("timed out"), "{err}");
}

#[tokio::test]
async fn imap_refused_select_names_the_step() {
    let (a, b) = tokio::io::duplex(4096);
    tokio::spawn(backend(
        b,
        vec![("SELECT INBOX", Some("p1 NO [SERVERBUG] broken\r\n"))],
    ));
    let err = after_login(Box::new(a), Vec::new(), Protocol::Imap, T)
        .await
        .expect_err("refused");
    assert_eq!(err.step, ProbeStep::Mailbox);
    assert!(err.what.contains("NO [SERVERBUG]"), "{err}");
}

#[tokio::test]
async fn pop3_stat_and_quit_with_buffered_bytes() {
    let (a, b) = tokio::io::duplex(4096);
    tokio::spawn(backend(
        b,
        vec![("STAT", Some("+OK 0 0\r\n")), ("QUIT", Some("+OK bye\r\n"))],
    ));
    assert!(
        after_login(Box::new(a), Vec::new(), Protocol::Pop3, T)
            .await
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn logout_without_an_answer_fails() {
    let (a, b) = tokio::io::duplex(4096);
    tokio::spawn(backend(b, vec![("QUIT", None)]));
    let err = logout(Box::new(a), Protocol::Pop3, T)
        .await
        .expect_err("silent");
    assert_eq!(err.step, ProbeStep::Logout);
    let (a, b) = tokio::io::duplex(4096);
    tokio::spawn(backend(
        b,
        vec![("LOGOUT", Some("* BYE\r\np9 OK done\r\n"))],
    ));
    assert!(logout(Box::new(a), Protocol::Imap, T).await.is_ok());
}
