//! The fault matrix (docs/health.md, "Fault matrix"): every backend fault crossed with
//! IMAP and POP3 and with plain TCP, implicit TLS and STARTTLS towards the backend, through
//! the real `mailgate` binary.
//!
//! One mailgate process holds every cell: each cell has its own backend (`cellN`, domain
//! `cellN.test`) served by its own fake (or a closed port), and three healthy control
//! backends (one per TLS mode, IMAP and POP3) whose logins and fetches must succeed the
//! whole time. Cells run concurrently. Health probes are kept out of the way
//! (`health.interval: 1h`; every cell asserts that no probe ran), so what the matrix sees
//! is the passive signal of real logins. For every cell the test checks what the client
//! gets and when, the health transition and its reason in `/status`,
//! `mailgate_logins_total{result}`, and that `sessions`, `logins_in_flight` and
//! `mailgate_backend_sessions` return to 0. Failures are collected and printed as one
//! table, so a run shows every cell that differs, not just the first.

#[path = "fault_matrix/cells.rs"]
mod cells;
#[path = "fault_matrix/flows.rs"]
mod flows;
#[path = "fault_matrix/harness.rs"]
mod harness;

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cells::{AUTH_FAILURE_DELAY, CAP, Cell, FALL, FAULTS, IDLE, Proto, STEP};
use harness::{Client, Mailgate};
use mailgate_testkit::fake::{FakeBackend, FakeConfig, FakeHandle, TlsIdentity, TlsMode};

const TLS_MODES: [TlsMode; 3] = [TlsMode::None, TlsMode::Implicit, TlsMode::Starttls];
const CONTROL_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn tls_name(t: TlsMode) -> &'static str {
    match t {
        TlsMode::None => "none",
        TlsMode::Implicit => "implicit",
        TlsMode::Starttls => "starttls",
    }
}

fn fake_config(proto: Proto, name: &str) -> FakeConfig {
    match proto {
        Proto::Imap => FakeConfig::imap(name),
        Proto::Pop3 => FakeConfig::pop3(name),
    }
}

/// One backend entry of routing.yaml.
fn backend_yaml(name: &str, ports: &[(Proto, u16)], tls: TlsMode) -> String {
    let mut y = format!("  {name}:\n    host: 127.0.0.1\n");
    for (proto, port) in ports {
        let _ = writeln!(y, "    {}_port: {port}", proto.as_str());
    }
    let _ = writeln!(y, "    tls: {}", tls_name(tls));
    if tls != TlsMode::None {
        y.push_str("    tls_ca_file: ca.pem\n");
    }
    let _ = writeln!(y, "    unavailable_message: \"{name} is unavailable\"");
    y
}

fn config_yaml() -> String {
    let s = |d: Duration| format!("{}ms", d.as_millis());
    format!(
        "listen:\n  imap: 127.0.0.1:0\n  pop3: 127.0.0.1:0\n  admin: 127.0.0.1:0\n\
         routing_file: routing.yaml\n\
         health:\n  interval: 1h\n  fall: {FALL}\n  rise: 2\n  max_auto_down_share: 1.0\n  slow_start: 0s\n\
         log:\n  level: info\n  format: json\n\
         limits:\n  backend_resolve_timeout: {step}\n  backend_connect_timeout: {step}\n  \
         backend_tls_timeout: {step}\n  backend_greeting_timeout: {step}\n  \
         backend_write_timeout: {step}\n  backend_login_timeout: {step}\n  \
         idle_timeout: {idle}\n  auth_failure_delay: {afd}\n\
         shutdown_grace: 1s\n",
        step = s(STEP),
        idle = s(IDLE),
        afd = s(AUTH_FAILURE_DELAY),
    )
}

/// A port nothing listens on: bound but never listening, so connects are refused (RST), and
/// held for the whole test so that mailgate's own listeners (port 0) cannot be given it.
fn closed_port() -> (u16, tokio::net::TcpSocket) {
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let port = s.local_addr().expect("addr").port();
    (port, s)
}

/// One control login and fetch; `Err` says what went wrong.
async fn control_round(mg: &Mailgate, tls: TlsMode, proto: Proto) -> Result<(), String> {
    let to = match proto {
        Proto::Imap => mg.imap,
        Proto::Pop3 => mg.pop3,
    };
    let user = format!("u@control-{}.test", tls_name(tls));
    let mut c = Client::connect(CONTROL_SOURCE, to).await?;
    c.line(CAP, "greeting").await?;
    let (answer, _) = flows::login(&mut c, proto, 1, &user).await?;
    match proto {
        Proto::Imap => {
            if !answer.starts_with("a1 OK") {
                return Err(format!("login: {answer:?}"));
            }
            c.send("a2 SELECT INBOX").await?;
            c.line_starting("a2 OK", CAP, "SELECT").await?;
            c.send("a3 FETCH 1 (BODY[])").await?;
            let head = c.line(CAP, "FETCH").await?;
            if head != "* 1 FETCH (BODY[] {1024}" {
                return Err(format!("FETCH: {head:?}"));
            }
            c.bytes(1024, CAP).await?;
            c.line_starting("a3 OK", CAP, "FETCH end").await?;
            c.send("a4 LOGOUT").await?;
            c.line_starting("a4 OK", CAP, "LOGOUT").await?;
        }
        Proto::Pop3 => {
            if !answer.starts_with("+OK") {
                return Err(format!("login: {answer:?}"));
            }
            c.send("RETR 1").await?;
            let head = c.line(CAP, "RETR").await?;
            if head != "+OK 1024 octets" {
                return Err(format!("RETR: {head:?}"));
            }
            while c.line(CAP, "RETR body").await? != "." {}
            c.send("QUIT").await?;
            c.line_starting("+OK", CAP, "QUIT").await?;
        }
    }
    c.eof(CAP).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix_through_the_binary() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let identity = TlsIdentity::localhost().expect("certificate");
    std::fs::write(dir.path().join("ca.pem"), &identity.cert_pem).expect("write ca.pem");

    // The table: every fault × protocol × TLS mode that applies.
    let mut table = Vec::new();
    for fault in FAULTS {
        for proto in [Proto::Imap, Proto::Pop3] {
            for tls in TLS_MODES {
                if fault.applies(proto, tls) {
                    let n = table.len();
                    table.push(Cell {
                        n,
                        fault,
                        proto,
                        tls,
                    });
                }
            }
        }
    }

    let mut routing = String::from("backends:\n");
    let mut domains = String::from("domains:\n");
    let mut fakes: Vec<Option<Arc<FakeHandle>>> = Vec::new();
    let mut closed_held = Vec::new();
    for cell in &table {
        let name = cell.backend();
        let (port, fake) = match cell.fault.mode() {
            None => {
                let (port, held) = closed_port();
                closed_held.push(held);
                (port, None)
            }
            Some(mode) => {
                let cfg = fake_config(cell.proto, &name)
                    .with_mode(mode)
                    .with_tls(cell.tls, Some(identity.clone()));
                let f = FakeBackend::spawn(cfg).await.expect("spawn fake");
                (f.addr.port(), Some(Arc::new(f)))
            }
        };
        routing.push_str(&backend_yaml(&name, &[(cell.proto, port)], cell.tls));
        let _ = writeln!(domains, "  {name}.test: {name}");
        fakes.push(fake);
    }
    let mut controls = Vec::new();
    for tls in TLS_MODES {
        let name = format!("control-{}", tls_name(tls));
        let mut ports = Vec::new();
        for proto in [Proto::Imap, Proto::Pop3] {
            let cfg = fake_config(proto, &name).with_tls(tls, Some(identity.clone()));
            let f = FakeBackend::spawn(cfg).await.expect("spawn control");
            ports.push((proto, f.addr.port()));
            controls.push((tls, proto, f));
        }
        routing.push_str(&backend_yaml(&name, &ports, tls));
        let _ = writeln!(domains, "  {name}.test: {name}");
    }
    routing.push_str(&domains);

    let mg = Arc::new(Mailgate::start(dir.path(), &config_yaml(), &routing).await);
    let ready_after = started.elapsed();

    // Control clients, all the time the cells run.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let control = {
        let (mg, stop, rounds) = (mg.clone(), stop.clone(), rounds.clone());
        tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for tls in TLS_MODES {
                    for proto in [Proto::Imap, Proto::Pop3] {
                        let t = Instant::now();
                        if let Err(e) = control_round(&mg, tls, proto).await {
                            errors.push(format!("{tls:?}/{proto:?} after {:?}: {e}", t.elapsed()));
                        }
                    }
                }
                rounds.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            errors
        })
    };

    let mut tasks = tokio::task::JoinSet::new();
    for (cell, fake) in table.iter().copied().zip(fakes.iter().cloned()) {
        let mg = mg.clone();
        tasks.spawn(async move {
            let t = Instant::now();
            let r = flows::run(&mg, cell, fake.as_deref()).await;
            (cell, r, t.elapsed())
        });
    }
    let mut results = Vec::new();
    while let Some(r) = tasks.join_next().await {
        results.push(r.expect("cell task"));
    }
    results.sort_by_key(|(c, _, _)| c.n);
    stop.store(true, Ordering::Relaxed);
    let control_errors = control.await.expect("control task");
    let control_rounds = rounds.load(Ordering::Relaxed);

    // The table, measured.
    let mut report = String::new();
    let mut failed = 0;
    for (cell, r, took) in &results {
        match r {
            Ok(m) => {
                let _ = writeln!(
                    report,
                    "ok   {:<55} {:<60} slowest {:>5} ms  {}  (cell {} ms)",
                    cell.label(),
                    m.answer,
                    m.slowest.as_millis(),
                    m.reason,
                    took.as_millis()
                );
            }
            Err(e) => {
                failed += 1;
                let _ = writeln!(report, "FAIL {:<55} {e}", cell.label());
                let needle = format!("\"{}\"", cell.backend());
                for line in mg.log_lines_with(&needle).iter().rev().take(2).rev() {
                    let _ = writeln!(report, "       log: {line}");
                }
            }
        }
    }
    eprintln!(
        "fault matrix: {} cells, {failed} failed; mailgate ready after {} ms; whole run {} ms; \
         {control_rounds} control rounds (6 logins each), {} control failures\n{report}",
        results.len(),
        ready_after.as_millis(),
        started.elapsed().as_millis(),
        control_errors.len()
    );
    for (tls, proto, f) in &controls {
        let s = f.stats();
        assert!(s.logins >= 1, "control {tls:?}/{proto:?} never logged in");
        if *tls != TlsMode::None {
            assert!(s.tls_handshakes >= 1, "control {tls:?}/{proto:?}: no TLS");
        }
    }
    assert!(
        control_errors.is_empty(),
        "control logins failed during the run: {control_errors:#?}\n{}",
        mg.log_tail(40)
    );
    assert!(control_rounds >= 1, "no control round completed");
    assert_eq!(
        failed, 0,
        "cells differ from the matrix (see the table above)"
    );
    let mg = Arc::into_inner(mg).expect("sole owner");
    mg.stop().await;
}
