//! Routing table benchmark (plain timing, `harness = false`): parse+validate time of a large
//! routing file, peak RSS, and lookup ns/op, with a `HashMap<String, String>` lookup of the
//! same keys as the in-run baseline. Never asserts on time.
//!
//! `cargo bench -p mailgate-config --bench routing` generates 1,000,000 domains; set
//! `MAILGATE_BENCH_DOMAINS=N` for another size or `MAILGATE_BENCH_FILE=path` to load a file
//! made by `examples/gen_routing.rs`.
use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use mailgate_config::RoutingTable;

fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn generate(domains: usize, backends: usize) -> String {
    let mut s = String::with_capacity(domains * 28);
    s.push_str("backends:\n");
    for b in 0..backends {
        s.push_str(&format!(
            "  mail{b}:\n    host: 10.0.{}.{}\n    imap_port: 143\n",
            b / 256,
            b % 256
        ));
    }
    s.push_str("domains:\n");
    for i in 0..domains {
        s.push_str(&format!("  d{i}.example: mail{}\n", i % backends));
    }
    for i in 0..1000 {
        s.push_str(&format!("  \"*.w{i}.example\": mail{}\n", i % backends));
    }
    s.push_str("users:\n  user1@d1.example: mail0\ndefault: mail0\n");
    s
}

fn ns_per_op(iters: usize, mut f: impl FnMut(usize)) -> f64 {
    let t = Instant::now();
    for i in 0..iters {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

fn main() {
    let domains: usize = std::env::var("MAILGATE_BENCH_DOMAINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = match std::env::var_os("MAILGATE_BENCH_FILE") {
        Some(p) => PathBuf::from(p),
        None => {
            let p = dir.path().join("routing.yaml");
            std::fs::write(&p, generate(domains, 100)).expect("write");
            p
        }
    };
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let rss_before = peak_rss_mib().unwrap_or(0.0);
    let t = Instant::now();
    let loaded = RoutingTable::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let load_s = t.elapsed().as_secs_f64();
    let rss_after = peak_rss_mib().unwrap_or(0.0);
    let table = loaded.table;
    let c = table.counts();
    println!(
        "routing: file {:.1} MB, {} domains, {} wildcards, {} backends",
        size as f64 / 1e6,
        c.domains,
        c.wildcards,
        table.backends().count()
    );
    println!(
        "routing: parse+validate {load_s:.2} s, peak RSS {rss_after:.0} MiB (before load {rss_before:.0} MiB)"
    );

    let n = c.domains.max(1);
    let users: Vec<String> = (0..100_000)
        .map(|i| format!("user@d{}.example", (i * 7919) % n))
        .collect();
    let upper: Vec<String> = users.iter().map(|u| u.to_uppercase()).collect();
    let wild: Vec<String> = (0..100_000)
        .map(|i| format!("u@x.w{}.example", i % 1000))
        .collect();
    let miss: Vec<String> = (0..100_000).map(|i| format!("u@nowhere{i}.test")).collect();
    let iters = 1_000_000;
    let m = users.len();
    // Warm up (page in the table) before timing.
    ns_per_op(iters, |i| {
        black_box(table.lookup(black_box(&users[i % m])));
    });
    let hit = ns_per_op(iters, |i| {
        black_box(table.lookup(black_box(&users[i % m])));
    });
    let hot = ns_per_op(iters, |i| {
        black_box(table.lookup(black_box(&users[i % 1000])));
    });
    let hit_upper = ns_per_op(iters, |i| {
        black_box(table.lookup(black_box(&upper[i % m])));
    });
    let wildcard = ns_per_op(iters, |i| {
        black_box(table.lookup(black_box(&wild[i % m])));
    });
    let default = ns_per_op(iters, |i| {
        black_box(table.lookup(black_box(&miss[i % m])));
    });
    // Baseline: a plain HashMap<String, String> lookup of the domain part.
    let base: HashMap<String, String> = (0..n.min(1_000_000))
        .map(|i| (format!("d{i}.example"), format!("mail{}", i % 100)))
        .collect();
    let doms: Vec<&str> = users
        .iter()
        .filter_map(|u| u.split_once('@').map(|p| p.1))
        .collect();
    let baseline = ns_per_op(iters, |i| {
        black_box(base.get(black_box(doms[i % m])));
    });
    println!("lookup: hot set of 1000 domains {hot:.0} ns/op (cache-resident)");
    println!(
        "lookup: domain hit {hit:.0} ns/op, uppercase hit {hit_upper:.0} ns/op, wildcard {wildcard:.0} ns/op, default {default:.0} ns/op"
    );
    println!(
        "lookup: baseline HashMap<String,String>::get {baseline:.0} ns/op; domain hit = {:.1}x baseline",
        hit / baseline.max(0.001)
    );
    let t = Instant::now();
    let again = RoutingTable::load(&path)
        .unwrap_or_else(|e| panic!("{e}"))
        .table;
    let reload_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let diff = table.diff(&again);
    println!(
        "reload: second load {reload_s:.2} s, diff of two {}-domain tables {:.2} s ({} moves)",
        c.domains,
        t.elapsed().as_secs_f64(),
        diff.domains.len()
    );
}
