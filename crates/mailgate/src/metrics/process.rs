//! Process metrics under the names every Prometheus client library uses (`process_*`, no
//! `mailgate_` prefix), so the stock dashboards and alerts for file descriptors and
//! memory work unchanged. `prometheus-client` has no process collector: [`ProcessCollector`]
//! reads `/proc/self/{stat,status,fd,limits}` at each scrape. Where `/proc` cannot be read
//! (not Linux) a family is left out rather than exported as 0.

use std::fmt;
use std::sync::OnceLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// `AT_CLKTCK` in the auxiliary vector: clock ticks per second of `/proc/*/stat` times.
const AT_CLKTCK: u64 = 17;
/// The kernel's `USER_HZ` on every Linux architecture, if the auxiliary vector is unreadable.
const DEFAULT_CLK_TCK: u64 = 100;

/// Reads the process's figures from `/proc/self` whenever `/metrics` is scraped.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// One reading of the process's figures.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sample {
    /// User + system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Unix time the process started, seconds.
    pub start_time_seconds: Option<f64>,
    /// Resident set size, bytes.
    pub resident_bytes: Option<u64>,
    /// Virtual memory size, bytes.
    pub virtual_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors (absent when unlimited).
    pub max_fds: Option<u64>,
}

impl Sample {
    /// Read `/proc/self` now.
    pub fn read() -> Sample {
        let tck = clk_tck();
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let times = stat.as_deref().and_then(|s| stat_times(s, tck));
        let status = std::fs::read_to_string("/proc/self/status").ok();
        let status = status.as_deref().unwrap_or("");
        Sample {
            cpu_seconds: times.map(|t| t.0),
            start_time_seconds: start_time(times.map(|t| t.1)),
            resident_bytes: status_kib(status, "VmRSS:").map(|k| k * 1024),
            virtual_bytes: status_kib(status, "VmSize:").map(|k| k * 1024),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as u64),
            max_fds: std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|l| max_open_files(&l)),
        }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let s = Sample::read();
        if let Some(v) = s.cpu_seconds {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                c.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "process_open_fds",
                "Number of open file descriptors",
                s.open_fds.map(|v| v as f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors (soft limit)",
                s.max_fds.map(|v| v as f64),
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                s.resident_bytes.map(|v| v as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                s.virtual_bytes.map(|v| v as f64),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                s.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let g = ConstGauge::new(v);
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
        }
        Ok(())
    }
}

/// Clock ticks per second, from the auxiliary vector (read once).
fn clk_tck() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::fs::read("/proc/self/auxv")
            .ok()
            .and_then(|a| auxv_value(&a, AT_CLKTCK))
            .filter(|&t| t > 0)
            .unwrap_or(DEFAULT_CLK_TCK)
    })
}

/// The process's start time: boot time (`btime` of `/proc/stat`) plus the start in seconds
/// after boot; read once (it does not change).
fn start_time(since_boot: Option<f64>) -> Option<f64> {
    static START: OnceLock<Option<f64>> = OnceLock::new();
    *START.get_or_init(|| {
        let btime = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s))?;
        Some(btime as f64 + since_boot?)
    })
}

/// The value of `key` in an auxiliary vector (native-endian word pairs, 64-bit words).
pub fn auxv_value(auxv: &[u8], key: u64) -> Option<u64> {
    auxv.chunks_exact(16).find_map(|pair| {
        let (k, v) = pair.split_at(8);
        let k = u64::from_ne_bytes(k.try_into().ok()?);
        let v = u64::from_ne_bytes(v.try_into().ok()?);
        (k == key).then_some(v)
    })
}

/// `(utime + stime, starttime)` of a `/proc/PID/stat` line in seconds. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
pub fn stat_times(stat: &str, clk_tck: u64) -> Option<(f64, f64)> {
    let (_, rest) = stat.rsplit_once(')')?;
    // rest = " S ppid ...": field 3 (state) is index 0.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n.checked_sub(3)?)?.parse().ok() };
    let tck = clk_tck as f64;
    let cpu = (field(14)? + field(15)?) as f64 / tck;
    let start = field(22)? as f64 / tck;
    Some((cpu, start))
}

/// A `kB` value of `/proc/PID/status` (`VmRSS:`, `VmSize:`).
pub fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The soft `Max open files` limit of `/proc/PID/limits` (`None` when unlimited).
pub fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `btime` (boot time, Unix seconds) of `/proc/stat`.
pub fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with spaces and a parenthesis, as a process may name itself.
        let stat = "4242 (mail gate) x) S 1 4242 4242 0 -1 4194560 1190 0 0 0 \
                    250 75 0 0 20 0 5 0 123400 251596800 2345 18446744073709551615";
        let (cpu, start) = stat_times(stat, 100).expect("parsed");
        assert!((cpu - 3.25).abs() < 1e-9, "{cpu}");
        assert!((start - 1234.0).abs() < 1e-9, "{start}");
        assert_eq!(stat_times("garbage", 100), None);
        assert_eq!(stat_times("1 (x) S 1 2", 100), None);
    }

    #[test]
    fn status_limits_and_boot_time_known_answers() {
        let status = "Name:\tmailgate\nVmSize:\t  123456 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(2048));
        assert_eq!(status_kib(status, "VmSize:"), Some(123_456));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63704                63704                processes \n\
                      Max open files            20000                20000                files     \n";
        assert_eq!(max_open_files(limits), Some(20_000));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(max_open_files(unlimited), None);
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1764000000\nprocesses 9\n"),
            Some(1_764_000_000)
        );
    }

    #[test]
    fn auxv_lookup() {
        let mut auxv = Vec::new();
        for (k, v) in [(6u64, 4096u64), (AT_CLKTCK, 100), (0, 0)] {
            auxv.extend_from_slice(&k.to_ne_bytes());
            auxv.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(auxv_value(&auxv, AT_CLKTCK), Some(100));
        assert_eq!(auxv_value(&auxv, 6), Some(4096));
        assert_eq!(auxv_value(&auxv, 99), None);
    }

    #[test]
    fn this_process_reads_plausibly() {
        let s = Sample::read();
        let rss = s.resident_bytes.expect("VmRSS");
        assert!(rss > 1024 * 1024, "{rss}");
        assert!(s.virtual_bytes.expect("VmSize") >= rss);
        let fds = s.open_fds.expect("fds");
        assert!(fds >= 3, "{fds}");
        if let Some(max) = s.max_fds {
            assert!(max >= fds);
        }
        assert!(s.cpu_seconds.expect("cpu") >= 0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        let start = s.start_time_seconds.expect("start");
        // Started before now and after this machine's boot; generous bounds.
        assert!(
            start <= now + 2.0 && start > now - 365.0 * 86400.0,
            "{start} {now}"
        );
    }
}
