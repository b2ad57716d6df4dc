//! A measuring tool, not product: does the shared state a login touches scale with threads?
//!
//! Issue 12 asks for logins/s with 1 and 2 worker threads, to show that the login path does
//! not serialise on a lock. On a 2-core machine the whole-proxy benchmark cannot show it
//! (the load generator and the fake backend need a core of their own). This tool takes the
//! sockets out: every thread runs, in a loop, exactly the calls on shared state that one
//! session makes from accept to close, in the order the session driver makes them — the
//! runtime snapshot, the session id, the `sessions` gauge, the connection / per-IP /
//! pre-auth caps, routing the login, the per-IP+user back-off, admission (health view and
//! the backend's budget slot), the login metrics, the session slot with its kick
//! registration, the byte counters — with nothing else in between. That is the worst case
//! for contention: a real session spends ≈ 1000× longer on its sockets than here.
//!
//! It prints sequences/s per thread count and the ratio. `--control` wraps each sequence in
//! one global mutex, a path that does serialise, to show that the harness can tell.
//!
//! ```sh
//! cargo run --release -p mailgate --example login_state_scaling -- [--seconds 3] [--control]
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mailgate::endpoint::ListenerKind;
use mailgate::metrics::LoginResult;
use mailgate::proxy::Proxy;
use mailgate_config::{Config, RoutingTable};
use mailgate_proto::Protocol;

const BACKENDS: usize = 100;
const DOMAINS: usize = 10_000;
const USERS_PER_DOMAIN: usize = 10;
const CLIENT_ADDRS: u32 = 1_000;

fn routing_yaml() -> String {
    let mut s = String::from("backends:\n");
    for b in 0..BACKENDS {
        s.push_str(&format!(
            "  b{b}:\n    host: 127.0.0.1\n    imap_port: 1143\n"
        ));
    }
    s.push_str("domains:\n");
    for d in 0..DOMAINS {
        s.push_str(&format!("  d{d}.test: b{}\n", d % BACKENDS));
    }
    s
}

/// One session's calls on shared state, accept to close. Returns false if the login was
/// not admitted (it must be: every backend starts up and has no budget set).
fn one_session(proxy: &Proxy, n: u64, global: Option<&Mutex<()>>) -> bool {
    let _serial = global.map(|m| m.lock().unwrap_or_else(|e| e.into_inner()));
    let ctx = proxy.session_context();
    let rt = ctx.runtime();
    let _id = ctx.lifecycle().next_session_id();
    let _active = ctx.metrics().session_opened(ListenerKind::Imap);
    let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (n as u32 % CLIENT_ADDRS)));
    let Some(_conn) = ctx.clients().connection() else {
        return false;
    };
    let Some(_per_ip) = ctx.clients().admit(ip) else {
        return false;
    };
    let Some(preauth) = ctx.clients().preauth() else {
        return false;
    };
    let domain = n as usize % DOMAINS;
    let user = format!(
        "u{}@d{domain}.test",
        (n as usize / DOMAINS) % USERS_PER_DOMAIN
    );
    let _advertised = ctx.advertised(&rt.routing, Protocol::Imap);
    let routed = rt.routing.route_identity(None, &user);
    let _backoff = ctx.clients().backoff(ip, &routed.address);
    let Some(route) = routed.route else {
        return false;
    };
    let Ok(permit) = ctx
        .admission()
        .admit(&rt.routing, &route.backend, Protocol::Imap)
    else {
        return false;
    };
    permit.observe_duration(Duration::from_micros(900));
    permit.count(LoginResult::Ok);
    drop(preauth);
    let slot = permit.into_session(routed.domain.as_deref().unwrap_or(""), &routed.address);
    let _activity = slot.activity();
    ctx.metrics().add_bytes(&route.backend.name, 120, 480);
    true
}

/// Sequences per second with `threads` threads for `secs`.
fn run(proxy: &Proxy, threads: usize, secs: f64, global: Option<&Mutex<()>>) -> f64 {
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let stop = &stop;
                s.spawn(move || {
                    let mut done = 0u64;
                    let mut n = t as u64 * 1_000_003;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..64 {
                            if !one_session(proxy, n, global) {
                                eprintln!("a login was not admitted; the measurement is void");
                                std::process::exit(1);
                            }
                            n += 1;
                        }
                        done += 64;
                    }
                    done
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    });
    total as f64 / started.elapsed().as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let secs = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse::<f64>())
        .transpose()?
        .unwrap_or(3.0);
    let control = args.iter().any(|a| a == "--control");
    let dir = tempfile::tempdir()?;
    let routing_path = dir.path().join("routing.yaml");
    let routing = routing_yaml();
    std::fs::write(&routing_path, &routing)?;
    let config = Config::parse(
        "listen:\n  imap: 127.0.0.1:0\nrouting_file: routing.yaml\nlimits:\n  max_sessions_per_ip: 0\n",
        &dir.path().join("mailgate.yaml"),
    )
    .map_err(|e| anyhow::anyhow!("config: {e:?}"))?;
    let table = RoutingTable::parse(&routing, &routing_path)
        .map_err(|e| anyhow::anyhow!("routing: {e:?}"))?
        .table;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _enter = rt.enter();
    let proxy = Proxy::new(config, table, None);
    let global = Mutex::new(());
    let global = control.then_some(&global);
    // Warm up the metric families and the allocator's per-thread caches.
    run(&proxy, 2, 0.5, global);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "shared state of one session, accept to close{} ({cores} cores available)",
        if control {
            ", each under one global mutex (control)"
        } else {
            ""
        }
    );
    let mut rates = Vec::new();
    for round in 0..3 {
        let one = run(&proxy, 1, secs, global);
        let two = run(&proxy, 2, secs, global);
        println!(
            "round {}: 1 thread {:>10.0}/s ({:.2} µs each), 2 threads {:>10.0}/s, ratio {:.2}",
            round + 1,
            one,
            1e6 / one,
            two,
            two / one
        );
        rates.push(two / one);
    }
    rates.sort_by(f64::total_cmp);
    println!("median ratio 2 threads / 1 thread: {:.2}", rates[1]);
    Ok(())
}
