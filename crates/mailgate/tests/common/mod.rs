//! The harness shared by the in-process integration tests: mailgate started with
//! `server::serve` on 127.0.0.1:0 in front of fake backends, and a raw line client.
//! (Each test binary uses a subset, hence `dead_code` is allowed here.)
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailgate::listener::ListenerKind;
use mailgate::proxy::{self, Listeners};
use mailgate_config::{Config, RoutingTable};
use mailgate_health::BackendStatus;
use mailgate_testkit::fake::{FakeBackend, FakeConfig, FakeHandle, FaultMode};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Generous cap for "eventually" conditions on a loaded 2-core machine.
pub const CAP: Duration = Duration::from_secs(10);

// --- the proxy under test ------------------------------------------------------------------

/// One backend of the routing file: a fake, the domain it owns and extra YAML keys.
pub struct Back<'a> {
    pub name: &'a str,
    pub fake: &'a FakeHandle,
    pub pop3: bool,
    pub domain: &'a str,
    pub extra: &'a str,
}

impl<'a> Back<'a> {
    pub fn imap(name: &'a str, fake: &'a FakeHandle, domain: &'a str) -> Self {
        Back {
            name,
            fake,
            pop3: false,
            domain,
            extra: "",
        }
    }

    pub fn pop3(name: &'a str, fake: &'a FakeHandle, domain: &'a str) -> Self {
        Back {
            pop3: true,
            ..Back::imap(name, fake, domain)
        }
    }

    pub fn with(mut self, extra: &'a str) -> Self {
        self.extra = extra;
        self
    }
}

pub struct Proxy {
    pub shared: Arc<proxy::Proxy>,
    pub imap: SocketAddr,
    pub pop3: SocketAddr,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<()>>,
    pub _dir: tempfile::TempDir,
}

impl Proxy {
    /// Start mailgate in-process in front of `backends`. `health` and `limits` are YAML
    /// mappings (indented by four spaces) merged into the config; `tls` adds a server
    /// certificate (STARTTLS on the plaintext listeners).
    pub async fn start(backends: &[Back<'_>], health: &str, limits: &str, tls: bool) -> Proxy {
        Proxy::start_full(backends, health, limits, tls, "", "").await
    }

    /// [`Proxy::start`] with defaults and extra top-level `mailgate.yaml` keys.
    pub async fn start_with_config_extra(backends: &[Back<'_>], config_extra: &str) -> Proxy {
        Proxy::start_full(backends, "", "", false, "", config_extra).await
    }

    /// [`Proxy::start`] with default health and limits and extra top-level routing YAML.
    pub async fn start_with_routing_extra(backends: &[Back<'_>], routing_extra: &str) -> Proxy {
        Proxy::start_full(backends, "", "", false, routing_extra, "").await
    }

    pub async fn start_full(
        backends: &[Back<'_>],
        health: &str,
        limits: &str,
        tls: bool,
        routing_extra: &str,
        config_extra: &str,
    ) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("probe.secret"), "secret").expect("write");
        std::fs::write(dir.path().join("wrong.secret"), "not-the-password").expect("write");
        let mut routing = String::from("backends:\n");
        for b in backends {
            let port_key = if b.pop3 { "pop3_port" } else { "imap_port" };
            routing.push_str(&format!(
                "  {}:\n    host: 127.0.0.1\n    {port_key}: {}\n    unavailable_message: \"{} is unavailable\"\n",
                b.name,
                b.fake.addr.port(),
                b.name
            ));
            for line in b.extra.lines().filter(|l| !l.trim().is_empty()) {
                routing.push_str(&format!("    {line}\n"));
            }
        }
        routing.push_str("domains:\n");
        for b in backends {
            routing.push_str(&format!("  {}: {}\n", b.domain, b.name));
        }
        routing.push_str(routing_extra);
        let routing_path = dir.path().join("routing.yaml");
        std::fs::write(&routing_path, &routing).expect("write routing");
        let tls_yaml = if tls {
            let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
            std::fs::write(dir.path().join("cert.pem"), ck.cert.pem()).expect("write");
            std::fs::write(dir.path().join("key.pem"), ck.signing_key.serialize_pem())
                .expect("write");
            "tls:\n  cert: cert.pem\n  key: key.pem\n  require_tls_for_login: false\n"
        } else {
            ""
        };
        let config = format!(
            "listen:\n  imap: 127.0.0.1:0\n  pop3: 127.0.0.1:0\n{tls_yaml}routing_file: routing.yaml\n\
             health:\n    interval: 60s\n{health}\nlimits:\n    auth_failure_delay: 0s\n    \
             max_sessions_per_ip: 0\n{limits}\nshutdown_grace: 1s\n{config_extra}"
        );
        let config_path = dir.path().join("mailgate.yaml");
        // On disk too: every reload re-reads it (and refuses restart-only changes).
        std::fs::write(&config_path, dedup_keys(&config)).expect("write config");
        let config = Config::parse(&dedup_keys(&config), &config_path)
            .unwrap_or_else(|e| panic!("config: {e}\n{config}"));
        let loaded = RoutingTable::parse(&routing, &routing_path)
            .unwrap_or_else(|e| panic!("routing: {e}\n{routing}"));
        let tls = config
            .tls
            .as_ref()
            .map(|t| proxy::load_tls(t).expect("load tls"));
        let shared = proxy::Proxy::new(config, loaded.table, tls);
        let imap_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let pop3_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let imap = imap_l.local_addr().expect("addr");
        let pop3 = pop3_l.local_addr().expect("addr");
        let listeners = Listeners {
            public: vec![(ListenerKind::Imap, imap_l), (ListenerKind::Pop3, pop3_l)],
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(proxy::serve(shared.clone(), listeners, async move {
            let _ = stopped.await;
        }));
        Proxy {
            shared,
            imap,
            pop3,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    pub fn status(&self, backend: &str) -> BackendStatus {
        self.shared
            .health()
            .snapshot()
            .into_iter()
            .find(|s| s.name == backend)
            .expect("backend in snapshot")
    }

    pub async fn wait_status(&self, what: &str, pred: impl Fn(&[BackendStatus]) -> bool) {
        let deadline = Instant::now() + CAP;
        loop {
            let snap = self.shared.health().snapshot();
            if pred(&snap) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {snap:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

/// The config template has `health:` / `limits:` defaults that a test may repeat; YAML
/// forbids duplicate keys, so keep the last occurrence of a key within each section.
pub fn dedup_keys(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("    ")
            && let Some((key, _)) = rest.split_once(':')
        {
            let section_start = out
                .iter()
                .rposition(|l| !l.starts_with(' '))
                .map_or(0, |i| i + 1);
            let prefix = format!("    {key}:");
            if let Some(i) = out[section_start..]
                .iter()
                .position(|l| l.starts_with(&prefix))
            {
                out.remove(section_start + i);
            }
        }
        out.push(line.to_string());
    }
    out.join("\n") + "\n"
}

// --- raw clients -------------------------------------------------------------------------

/// A line-oriented client over a raw TCP connection.
pub struct Client {
    pub r: BufReader<OwnedReadHalf>,
    pub w: OwnedWriteHalf,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (r, w) = tcp.into_split();
        let mut c = Client {
            r: BufReader::new(r),
            w,
        };
        let greeting = c.line().await;
        assert!(
            greeting.starts_with("* OK") || greeting.starts_with("+OK"),
            "{greeting:?}"
        );
        c
    }

    /// One line (without CRLF); "" on EOF. Panics if nothing comes within `CAP`.
    pub async fn line(&mut self) -> String {
        let mut s = String::new();
        tokio::time::timeout(CAP, self.r.read_line(&mut s))
            .await
            .expect("a line within the cap")
            .expect("read");
        s.trim_end().to_string()
    }

    pub async fn send(&mut self, line: &str) {
        self.w
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("write");
    }

    /// Send an IMAP command and return its tagged reply line (untagged lines skipped).
    pub async fn imap(&mut self, tag: &str, command: &str) -> String {
        self.send(&format!("{tag} {command}")).await;
        loop {
            let l = self.line().await;
            if l.is_empty() || l.starts_with(&format!("{tag} ")) {
                return l;
            }
        }
    }

    pub async fn imap_login(&mut self, tag: &str, user: &str) -> String {
        self.imap(tag, &format!("LOGIN {user} secret")).await
    }

    /// Wait for EOF (or a reset) and return what arrived before it.
    pub async fn read_to_end(&mut self, limit: Duration) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        match tokio::time::timeout(limit, self.r.read_to_end(&mut buf)).await {
            Ok(_) => Some(buf),
            Err(_) => None,
        }
    }
}

pub async fn fake(mode: FaultMode) -> FakeHandle {
    FakeBackend::spawn(FakeConfig::imap("f").with_mode(mode))
        .await
        .expect("spawn fake")
}

pub fn assert_unavailable(reply: &str, tag: &str, backend: &str) {
    assert!(
        reply.starts_with(&format!("{tag} NO [UNAVAILABLE] {backend} is unavailable")),
        "expected {tag} NO [UNAVAILABLE], got {reply:?}"
    );
}
