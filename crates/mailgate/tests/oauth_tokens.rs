//! OAuth tokens of every real size, through the running server: XOAUTH2 and OAUTHBEARER
//! with tokens of 1 to 8 KB over IMAP (SASL-IR) and POP3 (the response after `+`, since a
//! JWT never fits a 255-octet POP3 line). A rejected token — the backend's error
//! challenge, then its `NO` / `-ERR [AUTH]` — is the client's failure: the client gets the
//! backend's answer and the backend stays up however often it happens. An accepted token
//! is spliced.
//!
//! The backend is scripted here (the fakes do not speak the OAuth error challenge): it
//! accepts a bearer token that starts with `good`, and answers every other one the way
//! Gmail and Dovecot do.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use mailgate::listener::ListenerKind;
use mailgate::proxy::{self, Listeners, Proxy};
use mailgate_config::{Config, RoutingTable};
use mailgate_health::HealthState;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const ERROR_CHALLENGE: &str = "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIn0=";

fn token_ok(b64: &str) -> bool {
    let raw = B64.decode(b64.trim()).unwrap_or_default();
    let text = String::from_utf8_lossy(&raw);
    text.contains("auth=Bearer good")
}

async fn scripted_imap(tcp: TcpStream) -> std::io::Result<()> {
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=OAUTHBEARER] ready\r\n")
        .await?;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut words = line.trim_end().splitn(4, ' ');
        let tag = words.next().unwrap_or("*").to_string();
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "AUTHENTICATE" => {
                let _mech = words.next();
                let ir = words.next().unwrap_or("").to_string();
                if token_ok(&ir) {
                    w.write_all(
                        format!("{tag} OK [CAPABILITY IMAP4rev1] Logged in\r\n").as_bytes(),
                    )
                    .await?;
                } else {
                    w.write_all(format!("+ {ERROR_CHALLENGE}\r\n").as_bytes())
                        .await?;
                    line.clear();
                    r.read_line(&mut line).await?;
                    w.write_all(
                        format!("{tag} NO [AUTHENTICATIONFAILED] Invalid credentials\r\n")
                            .as_bytes(),
                    )
                    .await?;
                }
            }
            "LOGOUT" => {
                w.write_all(format!("* BYE\r\n{tag} OK bye\r\n").as_bytes())
                    .await?;
                return Ok(());
            }
            _ => w.write_all(format!("{tag} OK done\r\n").as_bytes()).await?,
        }
    }
}

async fn scripted_pop3(tcp: TcpStream) -> std::io::Result<()> {
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"+OK ready\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let upper = line.trim_end().to_ascii_uppercase();
        if upper == "CAPA" {
            w.write_all(b"+OK\r\nUSER\r\nSASL XOAUTH2 OAUTHBEARER\r\n.\r\n")
                .await?;
        } else if let Some(rest) = upper.strip_prefix("AUTH ") {
            let response = match line.trim_end().split_once(' ').map(|(_, r)| r) {
                Some(args) if args.contains(' ') => {
                    args.split_once(' ').map(|(_, ir)| ir.to_string())
                }
                _ => None,
            };
            let response = match response {
                Some(r) => r,
                None => {
                    assert!(!rest.contains(' '));
                    w.write_all(b"+ \r\n").await?;
                    line.clear();
                    r.read_line(&mut line).await?;
                    line.trim_end().to_string()
                }
            };
            if token_ok(&response) {
                w.write_all(b"+OK Logged in.\r\n").await?;
            } else {
                w.write_all(format!("+ {ERROR_CHALLENGE}\r\n").as_bytes())
                    .await?;
                line.clear();
                r.read_line(&mut line).await?;
                w.write_all(b"-ERR [AUTH] Invalid token\r\n").await?;
            }
        } else if upper == "QUIT" {
            w.write_all(b"+OK bye\r\n").await?;
            return Ok(());
        } else {
            w.write_all(b"-ERR unknown\r\n").await?;
        }
    }
}

async fn spawn_backend(pop3: bool) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = if pop3 {
                    scripted_pop3(tcp).await
                } else {
                    scripted_imap(tcp).await
                };
            });
        }
    });
    addr
}

struct Running {
    shared: Arc<Proxy>,
    imap: SocketAddr,
    pop3: SocketAddr,
    _dir: tempfile::TempDir,
}

async fn start(imap_backend: SocketAddr, pop3_backend: SocketAddr) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let routing = format!(
        "backends:\n  oauth:\n    host: 127.0.0.1\n    imap_port: {}\n    pop3_port: {}\n\
         domains:\n  b.test: oauth\n",
        imap_backend.port(),
        pop3_backend.port()
    );
    let routing_path = dir.path().join("routing.yaml");
    std::fs::write(&routing_path, &routing).expect("write");
    // fall: 2 — if rejected tokens counted against the backend, it would be down at once.
    let config = "listen:\n  imap: 127.0.0.1:0\n  pop3: 127.0.0.1:0\nrouting_file: routing.yaml\n\
                  oauth: true\nhealth:\n  interval: 60s\n  fall: 2\n  max_auto_down_share: 1.0\n\
                  limits:\n  auth_failure_delay: 0s\n  max_sessions_per_ip: 0\n  \
                  max_auth_failures_per_ip: 0\n  max_auth_failures_per_user: 0\n  max_bad_commands: 100\n\
                  shutdown_grace: 1s\n";
    let config = Config::parse(config, &dir.path().join("mailgate.yaml")).expect("config");
    let table = RoutingTable::parse(&routing, &routing_path).expect("routing");
    let shared = Proxy::new(config, table.table, None);
    let imap_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let pop3_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let imap = imap_l.local_addr().expect("addr");
    let pop3 = pop3_l.local_addr().expect("addr");
    let listeners = Listeners {
        public: vec![(ListenerKind::Imap, imap_l), (ListenerKind::Pop3, pop3_l)],
    };
    tokio::spawn(proxy::serve(
        shared.clone(),
        listeners,
        std::future::pending(),
    ));
    Running {
        shared,
        imap,
        pop3,
        _dir: dir,
    }
}

fn initial_response(mech: &str, bearer: &str) -> String {
    let raw = match mech {
        "XOAUTH2" => format!("user=carol@b.test\u{1}auth=Bearer {bearer}\u{1}\u{1}"),
        _ => format!("n,a=carol@b.test,\u{1}auth=Bearer {bearer}\u{1}\u{1}"),
    };
    B64.encode(raw)
}

struct Line {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Line {
    async fn connect(addr: SocketAddr) -> Line {
        let (r, w) = TcpStream::connect(addr)
            .await
            .expect("connect")
            .into_split();
        Line {
            r: BufReader::new(r),
            w,
        }
    }
    async fn read(&mut self) -> String {
        let mut s = String::new();
        tokio::time::timeout(Duration::from_secs(10), self.r.read_line(&mut s))
            .await
            .expect("answer in time")
            .expect("read");
        s
    }
    async fn send(&mut self, s: &str) {
        self.w.write_all(s.as_bytes()).await.expect("write");
        self.w.write_all(b"\r\n").await.expect("write");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_1_to_8_kb_are_the_clients_business() {
    let mg = start(spawn_backend(false).await, spawn_backend(true).await).await;
    for kb in 1..=8usize {
        let bad = format!("bad{}", "x".repeat(kb * 1024));
        for mech in ["XOAUTH2", "OAUTHBEARER"] {
            let ir = initial_response(mech, &bad);
            // IMAP, SASL-IR: one line of up to ~11 KB.
            let mut c = Line::connect(mg.imap).await;
            assert!(c.read().await.starts_with("* OK"));
            c.send(&format!("a1 AUTHENTICATE {mech} {ir}")).await;
            let reply = c.read().await;
            assert!(
                reply.starts_with("a1 NO [AUTHENTICATIONFAILED]"),
                "IMAP {mech} {kb} KB: {reply}"
            );
            // POP3: the response comes after the backend's `+`.
            let mut p = Line::connect(mg.pop3).await;
            assert!(p.read().await.starts_with("+OK"));
            p.send(&format!("AUTH {mech} {ir}")).await;
            let reply = p.read().await;
            assert!(
                reply.starts_with("-ERR [AUTH] Invalid token"),
                "POP3 {mech} {kb} KB: {reply}"
            );
        }
    }
    let status = mg
        .shared
        .health()
        .snapshot()
        .into_iter()
        .find(|s| s.name == "oauth")
        .expect("backend");
    assert_eq!(status.state, HealthState::Up, "{status:?}");

    // A good 8 KB token logs in over both protocols.
    let good = format!("good{}", "y".repeat(8 * 1024));
    let mut c = Line::connect(mg.imap).await;
    c.read().await;
    c.send(&format!(
        "a1 AUTHENTICATE XOAUTH2 {}",
        initial_response("XOAUTH2", &good)
    ))
    .await;
    let reply = c.read().await;
    assert!(reply.starts_with("a1 OK"), "{reply}");
    let mut p = Line::connect(mg.pop3).await;
    p.read().await;
    p.send(&format!(
        "AUTH OAUTHBEARER {}",
        initial_response("OAUTHBEARER", &good)
    ))
    .await;
    let reply = p.read().await;
    assert!(reply.starts_with("+OK"), "{reply}");
}
