//! Load a routing file the way a reload does (read, parse, validate, swap the new table in
//! behind an `ArcSwap`, drop the old one) and report the process CPU time of each step and
//! the peak RSS. CPU time, not wall time: the build machines are shared.
//!
//! `cargo run -p mailgate-config --release --example gen_routing > big.yaml`, then
//! `cargo run -p mailgate-config --release --example load_routing -- big.yaml [ROUNDS]`
//! (ROUNDS loads, default 3; peak RSS covers all of them). Linux only (`/proc/self`).
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use mailgate_config::RoutingTable;

fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> f64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
    // utime and stime (fields 14 and 15; 11 and 12 after the command name), 100 Hz.
    (ticks(11) + ticks(12)) / 100.0
}

fn status_mib(key: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next().map(PathBuf::from) else {
        eprintln!("usage: load_routing FILE [ROUNDS]");
        std::process::exit(2);
    };
    let rounds: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(3);
    let mut current: Option<ArcSwap<RoutingTable>> = None;
    for round in 1..=rounds {
        let c0 = cpu_s();
        let loaded = match RoutingTable::load(&path) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        };
        let c1 = cpu_s();
        let new = Arc::new(loaded.table);
        match &current {
            Some(swap) => drop(swap.swap(new)),
            None => current = Some(ArcSwap::new(new)),
        }
        let c2 = cpu_s();
        let counts = current
            .as_ref()
            .map(|s| s.load().counts())
            .unwrap_or_default();
        println!(
            "round {round}: load (read+parse+validate) {:.2} s CPU, swap in + drop old {:.2} s CPU, \
             {} domains, {} wildcards; RSS {:.0} MiB, peak {:.0} MiB",
            c1 - c0,
            c2 - c1,
            counts.domains,
            counts.wildcards,
            status_mib("VmRSS:"),
            status_mib("VmHWM:"),
        );
    }
}
