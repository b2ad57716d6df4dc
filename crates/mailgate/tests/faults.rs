//! Fault tests with fast fake backends (issues #4 and #5): backend faults real servers
//! cannot produce on demand, answered `NO [UNAVAILABLE]` / `-ERR [SYS/TEMP]` quickly; health
//! verdicts for slow, flapping and all-failing backends observed through the in-process
//! `HealthView`; drain and kick spreading.
//!
//! The server runs in-process (`server::serve` with listeners on 127.0.0.1:0 and a shutdown
//! future the test controls). Real sockets and short real durations throughout; no test
//! relies on `tokio::time::pause()` because probes, fakes and the proxy all use real I/O.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailgate::listener::ListenerKind;
use mailgate::server::{self, Listeners, Shared};
use mailgate_bench::fake::{FakeBackend, FakeConfig, FakeHandle, FaultMode};
use mailgate_health::{BackendStatus, HealthState, KickSelector};
use mailgate_routing::{Config, Routing, RoutingTable};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Generous cap for "eventually" conditions on a loaded 2-core machine.
const CAP: Duration = Duration::from_secs(10);

// --- the proxy under test ------------------------------------------------------------------

/// One backend of the routing file: a fake, the domain it owns and extra YAML keys.
struct Back<'a> {
    name: &'a str,
    fake: &'a FakeHandle,
    pop3: bool,
    domain: &'a str,
    extra: &'a str,
}

impl<'a> Back<'a> {
    fn imap(name: &'a str, fake: &'a FakeHandle, domain: &'a str) -> Self {
        Back {
            name,
            fake,
            pop3: false,
            domain,
            extra: "",
        }
    }

    fn pop3(name: &'a str, fake: &'a FakeHandle, domain: &'a str) -> Self {
        Back {
            pop3: true,
            ..Back::imap(name, fake, domain)
        }
    }

    fn with(mut self, extra: &'a str) -> Self {
        self.extra = extra;
        self
    }
}

struct Proxy {
    shared: Arc<Shared>,
    imap: SocketAddr,
    pop3: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// Start mailgate in-process in front of `backends`. `health` and `limits` are YAML
    /// mappings (indented by four spaces) merged into the config; `tls` adds a server
    /// certificate (STARTTLS on the plaintext listeners).
    async fn start(backends: &[Back<'_>], health: &str, limits: &str, tls: bool) -> Proxy {
        Proxy::start_full(backends, health, limits, tls, "", "").await
    }

    /// [`Proxy::start`] with defaults and extra top-level `mailgate.yaml` keys.
    async fn start_with_config_extra(backends: &[Back<'_>], config_extra: &str) -> Proxy {
        Proxy::start_full(backends, "", "", false, "", config_extra).await
    }

    /// [`Proxy::start`] with default health and limits and extra top-level routing YAML.
    async fn start_with_routing_extra(backends: &[Back<'_>], routing_extra: &str) -> Proxy {
        Proxy::start_full(backends, "", "", false, routing_extra, "").await
    }

    async fn start_full(
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
        let config = Config::parse(&dedup_keys(&config), &config_path)
            .unwrap_or_else(|e| panic!("config: {e}\n{config}"));
        let loaded = RoutingTable::parse(&routing, &routing_path)
            .unwrap_or_else(|e| panic!("routing: {e}\n{routing}"));
        let tls = config
            .tls
            .as_ref()
            .map(|t| server::load_tls(t).expect("load tls"));
        let routing = Arc::new(Routing::new(loaded));
        let shared = Shared::new(config, routing, tls);
        let imap_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let pop3_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let imap = imap_l.local_addr().expect("addr");
        let pop3 = pop3_l.local_addr().expect("addr");
        let listeners = Listeners {
            public: vec![(ListenerKind::Imap, imap_l), (ListenerKind::Pop3, pop3_l)],
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(shared.clone(), listeners, async move {
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

    fn status(&self, backend: &str) -> BackendStatus {
        self.shared
            .admission
            .health
            .snapshot()
            .into_iter()
            .find(|s| s.name == backend)
            .expect("backend in snapshot")
    }

    async fn wait_status(&self, what: &str, pred: impl Fn(&[BackendStatus]) -> bool) {
        let deadline = Instant::now() + CAP;
        loop {
            let snap = self.shared.admission.health.snapshot();
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

    async fn stop(mut self) {
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
fn dedup_keys(text: &str) -> String {
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
struct Client {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
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
    async fn line(&mut self) -> String {
        let mut s = String::new();
        tokio::time::timeout(CAP, self.r.read_line(&mut s))
            .await
            .expect("a line within the cap")
            .expect("read");
        s.trim_end().to_string()
    }

    async fn send(&mut self, line: &str) {
        self.w
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("write");
    }

    /// Send an IMAP command and return its tagged reply line (untagged lines skipped).
    async fn imap(&mut self, tag: &str, command: &str) -> String {
        self.send(&format!("{tag} {command}")).await;
        loop {
            let l = self.line().await;
            if l.is_empty() || l.starts_with(&format!("{tag} ")) {
                return l;
            }
        }
    }

    async fn imap_login(&mut self, tag: &str, user: &str) -> String {
        self.imap(tag, &format!("LOGIN {user} secret")).await
    }

    /// Wait for EOF (or a reset) and return what arrived before it.
    async fn read_to_end(&mut self, limit: Duration) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        match tokio::time::timeout(limit, self.r.read_to_end(&mut buf)).await {
            Ok(_) => Some(buf),
            Err(_) => None,
        }
    }
}

async fn fake(mode: FaultMode) -> FakeHandle {
    FakeBackend::spawn(FakeConfig::imap("f").with_mode(mode))
        .await
        .expect("spawn fake")
}

fn assert_unavailable(reply: &str, tag: &str, backend: &str) {
    assert!(
        reply.starts_with(&format!("{tag} NO [UNAVAILABLE] {backend} is unavailable")),
        "expected {tag} NO [UNAVAILABLE], got {reply:?}"
    );
}

// --- issue #4: backend faults -----------------------------------------------------------

/// Every fault of a backend during the login relay is answered `NO [UNAVAILABLE]` soon
/// after the failure is known (never a silent close, never a bare BAD), and the client may
/// retry on the same connection once the backend works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_faults_are_answered_unavailable_and_the_client_can_retry() {
    // (mode, extra routing keys, longest acceptable answer time)
    let timeouts = Duration::from_millis(700);
    let cases: Vec<(FaultMode, &str, Duration)> = vec![
        // no greeting: the greeting timeout (700 ms) decides
        (FaultMode::NoGreeting, "", timeouts + Duration::from_secs(2)),
        // greeting, then silence: the login timeout decides
        (
            FaultMode::StallAfterGreeting,
            "",
            timeouts + Duration::from_secs(2),
        ),
        // reset during login, PREAUTH greeting, injection after STARTTLS: known at once
        (FaultMode::ResetDuringLogin, "", Duration::from_secs(2)),
        (FaultMode::PreauthGreeting, "", Duration::from_secs(2)),
        (
            FaultMode::InjectAfterStartTls,
            "tls: starttls\ntls_verify: false",
            Duration::from_secs(2),
        ),
    ];
    let mut fakes = Vec::new();
    for (mode, _, _) in &cases {
        fakes.push(fake(mode.clone()).await);
    }
    let names: Vec<String> = (0..cases.len()).map(|i| format!("b{i}")).collect();
    let domains: Vec<String> = (0..cases.len()).map(|i| format!("d{i}.test")).collect();
    let backs: Vec<Back> = cases
        .iter()
        .enumerate()
        .map(|(i, (_, extra, _))| Back::imap(&names[i], &fakes[i], &domains[i]).with(extra))
        .collect();
    let limits = "    backend_connect_timeout: 700ms\n    backend_greeting_timeout: 700ms\n    \
                  backend_login_timeout: 700ms";
    let proxy = Proxy::start(&backs, "", limits, false).await;

    for (i, (mode, _, bound)) in cases.iter().enumerate() {
        let user = format!("u@{}", domains[i]);
        let mut c = Client::connect(proxy.imap).await;
        let t = Instant::now();
        let reply = c.imap_login("a1", &user).await;
        let took = t.elapsed();
        assert_unavailable(&reply, "a1", &names[i]);
        assert!(
            took < *bound,
            "{mode}: answered after {took:?} (bound {bound:?})"
        );
        // Retry on the same connection once the backend behaves (a STARTTLS backend needs
        // a real handshake, which the fake cannot do: its retry is just answered again).
        if matches!(mode, FaultMode::InjectAfterStartTls) {
            let again = c.imap_login("a2", &user).await;
            assert_unavailable(&again, "a2", &names[i]);
        } else {
            fakes[i].set_mode(FaultMode::Normal);
            let ok = c.imap_login("a2", &user).await;
            assert!(ok.starts_with("a2 OK"), "{mode}: retry got {ok:?}");
            assert_eq!(fakes[i].stats().logins, 1, "{mode}");
        }
        eprintln!("{mode}: NO [UNAVAILABLE] after {took:?}");
    }
    proxy.stop().await;
}

/// POP3 gets `-ERR [SYS/TEMP]` for the same faults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_backend_faults_are_answered_sys_temp() {
    let no_greeting = FakeBackend::spawn(FakeConfig::pop3("p0").with_mode(FaultMode::NoGreeting))
        .await
        .expect("spawn");
    let reset = FakeBackend::spawn(FakeConfig::pop3("p1").with_mode(FaultMode::ResetDuringLogin))
        .await
        .expect("spawn");
    let backs = [
        Back::pop3("p0", &no_greeting, "p0.test"),
        Back::pop3("p1", &reset, "p1.test"),
    ];
    let limits = "    backend_greeting_timeout: 700ms\n    backend_login_timeout: 700ms";
    let proxy = Proxy::start(&backs, "", limits, false).await;
    for (name, fake) in [("p0", &no_greeting), ("p1", &reset)] {
        let mut c = Client::connect(proxy.pop3).await;
        c.send(&format!("USER u@{name}.test")).await;
        assert!(c.line().await.starts_with("+OK"));
        let t = Instant::now();
        c.send("PASS secret").await;
        let reply = c.line().await;
        assert!(
            reply.starts_with(&format!("-ERR [SYS/TEMP] {name} is unavailable")),
            "{name}: {reply:?}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{name}: {:?}",
            t.elapsed()
        );
        fake.set_mode(FaultMode::Normal);
        c.send(&format!("USER u@{name}.test")).await;
        assert!(c.line().await.starts_with("+OK"));
        c.send("PASS secret").await;
        let ok = c.line().await;
        assert!(ok.starts_with("+OK"), "{name}: retry got {ok:?}");
    }
    proxy.stop().await;
}

/// Bytes a client pipelines behind its STARTTLS are never executed: the connection is
/// closed without a handshake and without contacting the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_injected_after_client_starttls_close_the_connection() {
    let f = fake(FaultMode::Normal).await;
    let proxy = Proxy::start(&[Back::imap("b", &f, "d.test")], "", "", true).await;
    let mut c = Client::connect(proxy.imap).await;
    c.w.write_all(b"a1 STARTTLS\r\na2 LOGIN u@d.test secret\r\n")
        .await
        .expect("write");
    let rest = c
        .read_to_end(Duration::from_secs(5))
        .await
        .expect("connection closed");
    let text = String::from_utf8_lossy(&rest);
    assert!(!text.contains("a2 OK"), "{text:?}");
    assert_eq!(f.stats().connections, 0, "the backend was contacted");

    // Same for POP3 STLS.
    let mut c = Client::connect(proxy.pop3).await;
    c.w.write_all(b"STLS\r\nUSER u@d.test\r\nPASS secret\r\n")
        .await
        .expect("write");
    let rest = c
        .read_to_end(Duration::from_secs(5))
        .await
        .expect("connection closed");
    assert!(!String::from_utf8_lossy(&rest).contains("+OK Logged in"));
    assert_eq!(f.stats().connections, 0, "the backend was contacted");
    proxy.stop().await;
}

// --- issue #5: health verdicts ----------------------------------------------------------

/// Follows the health state of one backend from its snapshots: the sequence of distinct
/// states seen (polling every 10 ms).
async fn watch_states(proxy: &Proxy, backend: &str, for_how_long: Duration) -> Vec<HealthState> {
    let mut seen = vec![proxy.status(backend).state];
    let end = Instant::now() + for_how_long;
    while Instant::now() < end {
        let s = proxy.status(backend).state;
        if seen.last() != Some(&s) {
            seen.push(s);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen
}

/// A backend that answers everything after 1 s is slow, not dead: `degraded` (still
/// admitting), never `down`, and it does not flap between the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_second_per_response_is_degraded_not_down_and_does_not_flap() {
    let slow = fake(FaultMode::SlowResponses(Duration::from_secs(1))).await;
    let health = "    interval: 300ms\n    timeout: 3s\n    fall: 3\n    rise: 2\n    \
                  degraded_latency: 800ms";
    let proxy = Proxy::start(&[Back::imap("slow", &slow, "s.test")], health, "", false).await;
    proxy
        .wait_status("degraded", |s| s[0].state == HealthState::Degraded)
        .await;
    // Keep watching: it must stay degraded (admitting) the whole time.
    let states = watch_states(&proxy, "slow", Duration::from_secs(4)).await;
    assert_eq!(states, [HealthState::Degraded], "flapped: {states:?}");
    let st = proxy.status("slow");
    assert!(st.admitting, "{st:#?}");
    assert!(st.latency.expect("latency") >= Duration::from_millis(800));
    // A real login still goes through (slowly).
    let mut c = Client::connect(proxy.imap).await;
    assert!(c.imap_login("a1", "u@s.test").await.starts_with("a1 OK"));
    proxy.stop().await;
}

/// A backend that is healthy for 1.5 s and refuses connections for 1.5 s, alternately:
/// `fall`/`rise` hysteresis allows at most one `down` and one recovery per refusing
/// phase, never a transition per probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_backend_transitions_are_bounded_by_hysteresis() {
    let period = Duration::from_millis(1500);
    let flapping = fake(FaultMode::Flapping(period)).await;
    let health = "    interval: 150ms\n    timeout: 1s\n    fall: 3\n    rise: 2\n    \
                  slow_start: 0s\n    max_auto_down_share: 1.0";
    let proxy = Proxy::start(
        &[Back::imap("flap", &flapping, "f.test")],
        health,
        "",
        false,
    )
    .await;
    let watched = Duration::from_millis(7500); // 5 phases: ok, refuse, ok, refuse, ok
    let states = watch_states(&proxy, "flap", watched).await;
    let transitions = states.len() - 1;
    let downs = states.iter().filter(|s| **s == HealthState::Down).count();
    // Probes: ~10 per phase. Without hysteresis that would be ~25 transitions.
    assert!(downs >= 1, "never detected: {states:?}");
    assert!(downs <= 3, "more downs than refusing phases: {states:?}");
    assert!(
        transitions <= 2 * 3,
        "{transitions} transitions: {states:?}"
    );
    eprintln!("flapping {period:?} for {watched:?}: {states:?}");
    proxy.stop().await;
}

/// A broken probe account (wrong password) makes every probe of every backend fail: the
/// blast-radius guard (0.5 of 3 → 1) refuses only the first backend to go down; the
/// others stay admitted (`down_suppressed`) and real logins to them still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_backends_failing_the_guard_holds() {
    let fakes = [
        fake(FaultMode::Normal).await,
        fake(FaultMode::Normal).await,
        fake(FaultMode::Normal).await,
    ];
    let probe = "probe:\n  user: probe@x.test\n  password_file: wrong.secret";
    let backs = [
        Back::imap("m1", &fakes[0], "one.test").with(probe),
        Back::imap("m2", &fakes[1], "two.test").with(probe),
        Back::imap("m3", &fakes[2], "three.test").with(probe),
    ];
    let health = "    interval: 150ms\n    timeout: 1s\n    fall: 3\n    max_auto_down_share: 0.5";
    let proxy = Proxy::start(&backs, health, "", false).await;
    proxy
        .wait_status("all down", |s| {
            s.iter().all(|b| b.state == HealthState::Down)
        })
        .await;
    let snap = proxy.shared.admission.health.snapshot();
    let refused: Vec<&BackendStatus> = snap.iter().filter(|b| !b.admitting).collect();
    assert_eq!(refused.len(), 1, "{snap:#?}");
    assert_eq!(
        snap.iter().filter(|b| b.down_suppressed).count(),
        2,
        "{snap:#?}"
    );
    let last = snap[0].last_probe.as_ref().expect("probed");
    assert!(!last.ok, "{last:?}");
    for (b, domain) in snap.iter().zip(["one.test", "two.test", "three.test"]) {
        let mut c = Client::connect(proxy.imap).await;
        let reply = c.imap_login("a1", &format!("u@{domain}")).await;
        if b.admitting {
            assert!(reply.starts_with("a1 OK"), "{}: {reply:?}", b.name);
        } else {
            assert_unavailable(&reply, "a1", &b.name);
        }
    }
    proxy.stop().await;
}

// --- drain and kick ----------------------------------------------------------------------

/// Drain refuses new logins at once (without contacting the backend) and leaves spliced
/// sessions alone; undrain admits again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_refuses_new_logins_and_keeps_existing_sessions() {
    let f = fake(FaultMode::Normal).await;
    let proxy = Proxy::start(&[Back::imap("b", &f, "d.test")], "", "", false).await;
    let mut old = Client::connect(proxy.imap).await;
    assert!(old.imap_login("a1", "u@d.test").await.starts_with("a1 OK"));
    assert!(proxy.shared.admission.health.drain("b"));
    let connections = f.stats().connections;
    let mut new = Client::connect(proxy.imap).await;
    let t = Instant::now();
    let reply = new.imap_login("n1", "u@d.test").await;
    assert_unavailable(&reply, "n1", "b");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(
        f.stats().connections,
        connections,
        "a drained backend was contacted"
    );
    // The spliced session still talks to the backend.
    assert!(old.imap("a2", "NOOP").await.starts_with("a2 OK"));
    assert!(old.imap("a3", "SELECT INBOX").await.starts_with("a3 OK"));
    assert!(proxy.shared.admission.health.undrain("b"));
    assert!(new.imap_login("n2", "u@d.test").await.starts_with("n2 OK"));
    proxy.stop().await;
}

/// A kick of 10 idle sessions over a 2 s window closes them spread out, not at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_spreads_closes_over_the_window() {
    let f = fake(FaultMode::Normal).await;
    let proxy = Proxy::start(&[Back::imap("b", &f, "d.test")], "", "", false).await;
    let mut clients = Vec::new();
    for i in 0..10 {
        let mut c = Client::connect(proxy.imap).await;
        assert!(
            c.imap_login("a1", &format!("u{i}@d.test"))
                .await
                .starts_with("a1 OK")
        );
        clients.push(c);
    }
    proxy
        .wait_status("10 sessions", |s| s[0].sessions == 10)
        .await;
    let window = Duration::from_secs(2);
    let kicked_at = Instant::now();
    let n = proxy
        .shared
        .admission
        .kicks
        .kick(&KickSelector::Backend("b".into()), window);
    assert_eq!(n, 10);
    let mut waits = Vec::new();
    for mut c in clients {
        waits.push(tokio::spawn(async move {
            c.read_to_end(Duration::from_secs(10))
                .await
                .expect("kicked session closed");
            kicked_at.elapsed()
        }));
    }
    let mut closes = Vec::new();
    for w in waits {
        closes.push(w.await.expect("join"));
    }
    closes.sort();
    eprintln!("kick over {window:?}: closes at {closes:?}");
    let spread = closes[9] - closes[0];
    // Slots of 200 ms: first close in [0, 0.2 s], last in [1.8 s, 2 s] (+ scheduling).
    assert!(spread >= Duration::from_millis(1000), "{closes:?}");
    assert!(closes[9] <= window + Duration::from_secs(2), "{closes:?}");
    // Never a burst: at most half of them within any 200 ms.
    for w in closes.windows(6) {
        assert!(w[5] - w[0] > Duration::from_millis(200), "{closes:?}");
    }
    proxy
        .wait_status("sessions released", |s| s[0].sessions == 0)
        .await;
    proxy.stop().await;
}

// --- passive signals and logins in flight -----------------------------------------------

/// Without any probe (interval 60 s), real logins that time out waiting for the greeting
/// are passive failures: after `fall` of them the backend is down and the next login is
/// refused at once instead of waiting for the timeout again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeting_timeouts_of_real_logins_mark_the_backend_down() {
    let f = fake(FaultMode::NoGreeting).await;
    let limits = "    backend_greeting_timeout: 300ms";
    let health = "    fall: 3\n    max_auto_down_share: 1.0";
    let proxy = Proxy::start(&[Back::imap("b", &f, "d.test")], health, limits, false).await;
    let mut c = Client::connect(proxy.imap).await;
    for i in 0..3 {
        let t = Instant::now();
        assert_unavailable(
            &c.imap_login(&format!("a{i}"), "u@d.test").await,
            &format!("a{i}"),
            "b",
        );
        assert!(
            t.elapsed() >= Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
    }
    assert_eq!(proxy.status("b").state, HealthState::Down);
    let connections = f.stats().connections;
    let t = Instant::now();
    assert_unavailable(&c.imap_login("a9", "u@d.test").await, "a9", "b");
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        f.stats().connections,
        connections,
        "a down backend was contacted"
    );
    proxy.stop().await;
}

/// `max_logins_in_flight: 2`: with two logins hanging at the backend, a third is refused
/// at once; once they time out, logins are admitted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_in_flight_are_limited() {
    let f = fake(FaultMode::LoginHangs).await;
    let limits = "    backend_login_timeout: 2s";
    let back = Back::imap("b", &f, "d.test").with("max_logins_in_flight: 2");
    let proxy = Proxy::start(&[back], "    fall: 10", limits, false).await;
    let mut hanging = Vec::new();
    for _ in 0..2 {
        let mut c = Client::connect(proxy.imap).await;
        c.send("h1 LOGIN u@d.test secret").await;
        hanging.push(c);
    }
    proxy
        .wait_status("2 logins in flight", |s| s[0].logins_in_flight == 2)
        .await;
    let mut third = Client::connect(proxy.imap).await;
    let t = Instant::now();
    assert_unavailable(&third.imap_login("t1", "u@d.test").await, "t1", "b");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    for c in &mut hanging {
        assert_unavailable(&c.line().await, "h1", "b");
    }
    f.set_mode(FaultMode::Normal);
    assert!(
        third
            .imap_login("t2", "u@d.test")
            .await
            .starts_with("t2 OK")
    );
    proxy.stop().await;
}

/// A login without `@` uses `default_domain`; a kick by domain must still find its session
/// (the session registers the domain it was routed by).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_by_domain_finds_sessions_that_logged_in_without_a_domain() {
    let f = fake(FaultMode::Normal).await;
    let back = Back::imap("b", &f, "d.test");
    let proxy = Proxy::start_with_routing_extra(&[back], "default_domain: d.test\n").await;
    let mut c = Client::connect(proxy.imap).await;
    assert!(c.imap_login("a1", "bare").await.starts_with("a1 OK"));
    let n = proxy.shared.admission.kicks.kick(
        &KickSelector::Domain("d.test".into()),
        Duration::from_millis(100),
    );
    assert_eq!(
        n, 1,
        "the session of a bare login is not found by its domain"
    );
    assert!(c.read_to_end(CAP).await.is_some(), "kicked session closed");
    proxy.stop().await;
}

// --- OAuth pass-through -------------------------------------------------------------------

/// With `oauth: true`, XOAUTH2 is advertised; the login routes on the token's user (not on
/// anything else the client says) and the token reaches the backend unchanged. Without it,
/// the mechanism is neither advertised nor accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xoauth2_routes_on_the_token_user_and_replays_the_token() {
    use base64::Engine as _;
    let a = FakeBackend::spawn(FakeConfig::imap("a"))
        .await
        .expect("spawn");
    let b = FakeBackend::spawn(FakeConfig::imap("b"))
        .await
        .expect("spawn");
    let backs = [Back::imap("a", &a, "a.test"), Back::imap("b", &b, "b.test")];
    let token = |user: &str, bearer: &str| {
        base64::engine::general_purpose::STANDARD
            .encode(format!("user={user}\u{1}auth=Bearer {bearer}\u{1}\u{1}"))
    };

    let proxy = Proxy::start_with_config_extra(&backs, "oauth: true\n").await;
    let mut c = Client::connect(proxy.imap).await;
    c.send("c1 CAPABILITY").await;
    let caps = c.line().await;
    assert!(caps.contains("AUTH=XOAUTH2"), "{caps}");
    assert!(c.line().await.starts_with("c1 OK"));
    let reply = c
        .imap(
            "x1",
            &format!("AUTHENTICATE XOAUTH2 {}", token("carol@b.test", "secret")),
        )
        .await;
    assert!(reply.starts_with("x1 OK"), "{reply}");
    assert_eq!(b.logged_in_users(), vec!["carol@b.test".to_string()]);
    assert!(
        a.logged_in_users().is_empty(),
        "routed to the wrong backend"
    );
    // A wrong token is the backend's NO, passed on.
    let mut c2 = Client::connect(proxy.imap).await;
    let reply = c2
        .imap(
            "x2",
            &format!("AUTHENTICATE XOAUTH2 {}", token("dave@a.test", "expired")),
        )
        .await;
    assert!(reply.starts_with("x2 NO"), "{reply}");
    proxy.stop().await;

    let proxy = Proxy::start_with_config_extra(&backs, "").await;
    let mut c = Client::connect(proxy.imap).await;
    c.send("c1 CAPABILITY").await;
    let caps = c.line().await;
    assert!(!caps.contains("XOAUTH2"), "{caps}");
    assert!(c.line().await.starts_with("c1 OK"));
    let reply = c
        .imap(
            "x1",
            &format!("AUTHENTICATE XOAUTH2 {}", token("carol@b.test", "secret")),
        )
        .await;
    assert!(
        reply.starts_with("x1 NO") || reply.starts_with("x1 BAD"),
        "{reply}"
    );
    proxy.stop().await;
}

// --- fallback and IPv6 --------------------------------------------------------------------

/// A backend with `fallback:` sends logins to the fallback (a replica) while it does not
/// admit, and to itself again once it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_backend_takes_logins_while_the_primary_does_not_admit() {
    let primary = FakeBackend::spawn(FakeConfig::imap("primary"))
        .await
        .expect("spawn");
    let replica = FakeBackend::spawn(FakeConfig::imap("replica"))
        .await
        .expect("spawn");
    let backs = [
        Back::imap("primary", &primary, "d.test").with("fallback: replica"),
        Back::imap("replica", &replica, "replica.test"),
    ];
    let proxy = Proxy::start(&backs, "", "", false).await;
    assert!(proxy.shared.admission.health.drain("primary"));
    let mut c = Client::connect(proxy.imap).await;
    assert!(c.imap_login("a1", "u@d.test").await.starts_with("a1 OK"));
    assert_eq!(replica.logged_in_users(), vec!["u@d.test".to_string()]);
    assert!(primary.logged_in_users().is_empty());
    assert!(proxy.shared.admission.health.undrain("primary"));
    let mut c2 = Client::connect(proxy.imap).await;
    assert!(c2.imap_login("a2", "v@d.test").await.starts_with("a2 OK"));
    assert_eq!(primary.logged_in_users(), vec!["v@d.test".to_string()]);
    proxy.stop().await;
}

/// Listeners and backends over IPv6; the client's IPv6 address is forwarded in ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_listener_and_backend() {
    let f = FakeBackend::spawn(FakeConfig {
        bind: "[::1]:0".parse().expect("addr"),
        ..FakeConfig::imap("v6")
    })
    .await
    .expect("spawn on ::1");
    let dir = tempfile::tempdir().expect("tempdir");
    let routing = format!(
        "backends:\n  v6:\n    host: \"::1\"\n    imap_port: {}\ndomains:\n  d.test: v6\n",
        f.addr.port()
    );
    std::fs::write(dir.path().join("routing.yaml"), &routing).expect("write");
    let config = Config::parse(
        "listen:\n  imap: \"[::1]:0\"\nrouting_file: routing.yaml\nlimits:\n  auth_failure_delay: 0s\n\
         shutdown_grace: 1s\n",
        &dir.path().join("mailgate.yaml"),
    )
    .expect("config");
    let loaded = RoutingTable::load(&config.routing_file).expect("routing");
    let listener = mailgate::listener::bind("[::1]:0".parse().expect("addr")).expect("bind ::1");
    let addr = listener.local_addr().expect("addr");
    let shared = Shared::new(config, Arc::new(Routing::new(loaded)), None);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(
        shared,
        Listeners {
            public: vec![(ListenerKind::Imap, listener)],
        },
        async move {
            let _ = stopped.await;
        },
    ));
    let mut c = Client::connect(addr).await;
    assert!(c.imap_login("a1", "u@d.test").await.starts_with("a1 OK"));
    let ids = f.client_ids();
    let forwarded = ids
        .iter()
        .flatten()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-originating-ip"))
        .map(|(_, v)| v.clone());
    assert_eq!(forwarded.as_deref(), Some("::1"));
    drop(c);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}
