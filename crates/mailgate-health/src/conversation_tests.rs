//! Probe conversations against scripted fake backends over in-memory streams.

use super::*;
use tokio::io::DuplexStream;

/// A fake backend: sends `greeting`, then answers each received line with the reply the
/// script maps it to (`None`: never answer).
async fn backend(
    mut s: DuplexStream,
    greeting: &str,
    script: Vec<(&'static str, Option<&'static str>)>,
) {
    let _ = s.write_all(greeting.as_bytes()).await;
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

fn conv(account: bool) -> Conversation {
    Conversation {
        timeout: Duration::from_secs(3),
        account: account.then(|| ProbeAccount {
            user: "probe@probe.example.net".into(),
            password: Secret::new("s3cret"),
        }),
        starttls: None,
    }
}

#[tokio::test(start_paused = true)]
async fn imap_without_account_checks_greeting_and_capability() {
    let (a, b) = tokio::io::duplex(4096);
    tokio::spawn(backend(
        b,
        "* OK ready\r\n",
        vec![
            (
                "CAPABILITY",
                Some("* CAPABILITY IMAP4rev1\r\np1 OK done\r\n"),
            ),
            ("LOGOUT", Some("* BYE\r\np2 OK bye\r\n")),
        ],
    ));
    let out = imap_probe(Box::new(a), conv(false)).await;
    assert_eq!(out.result, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn imap_login_probe_catches_a_hanging_mailbox() {
    let (a, b) = tokio::io::duplex(4096);
    tokio::spawn(backend(
        b,
        "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n",
        vec![
            ("LOGIN", Some("mg1 OK [CAPABILITY IMAP4rev1] Logged in\r\n")),
            (
                "AUTHENTICATE",
                Some("mg1 OK [CAPABILITY IMAP4rev1] Logged in\r\n"),
            ),
            ("SELECT", None),
        ],
    ));
    let out = imap_probe(Box::new(a), conv(true)).await;
    let err = out.result.expect_err("SELECT hangs");
    assert_eq!(err.to_string(), "mailbox timed out after 3s");
}

#[tokio::test(start_paused = true)]
async fn imap_login_refused_names_the_login_step() {
    let (a, b) = tokio::io::duplex(4096);
    tokio::spawn(backend(
        b,
        "* OK [CAPABILITY IMAP4rev1] ready\r\n",
        vec![
            ("LOGIN", Some("mg1 NO [AUTHENTICATIONFAILED] nope\r\n")),
            (
                "AUTHENTICATE",
                Some("mg1 NO [AUTHENTICATIONFAILED] nope\r\n"),
            ),
        ],
    ));
    let out = imap_probe(Box::new(a), conv(true)).await;
    let err = out.result.expect_err("refused");
    assert_eq!(err.step, ProbeStep::Login);
    assert!(!err.to_string().contains("s3cret"));
}

#[tokio::test(start_paused = true)]
async fn pop3_without_account_and_a_silent_greeting() {
    let (a, b) = tokio::io::duplex(4096);
    tokio::spawn(backend(
        b,
        "+OK POP3 ready\r\n",
        vec![
            ("CAPA", Some("+OK\r\nUSER\r\n.\r\n")),
            ("QUIT", Some("+OK bye\r\n")),
        ],
    ));
    assert_eq!(pop3_probe(Box::new(a), conv(false)).await.result, Ok(()));

    let (a, _b) = tokio::io::duplex(4096);
    let out = pop3_probe(Box::new(a), conv(false)).await;
    assert_eq!(
        out.result.expect_err("silent").to_string(),
        "greeting timed out after 3s"
    );
}
