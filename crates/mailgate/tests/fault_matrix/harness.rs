//! The fault matrix's harness: the real `mailgate` binary started from a config in a
//! temporary directory (listeners on port 0, addresses read from its JSON log), its admin
//! HTTP read with plain HTTP/1.0 (`/status` JSON, `/metrics` text), and a line client that
//! connects from a chosen 127.0.0.x source address (so per-IP limits of one cell never
//! touch another).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};

/// The mailgate process under test. Killed (by its own pid) when dropped.
pub struct Mailgate {
    child: Child,
    pub imap: SocketAddr,
    pub pop3: SocketAddr,
    pub admin: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Mailgate {
    /// Writes `mailgate.yaml` and `routing.yaml` into `dir` (the config must use
    /// `log.format: json` and port 0 listeners), checks them with `mailgate check`, starts
    /// `mailgate run` and waits until `/readyz` answers 200.
    pub async fn start(dir: &Path, config: &str, routing: &str) -> Mailgate {
        let bin = env!("CARGO_BIN_EXE_mailgate");
        let config_path = dir.join("mailgate.yaml");
        std::fs::write(&config_path, config).expect("write mailgate.yaml");
        std::fs::write(dir.join("routing.yaml"), routing).expect("write routing.yaml");
        let check = std::process::Command::new(bin)
            .arg("check")
            .arg("-c")
            .arg(&config_path)
            .output()
            .expect("run mailgate check");
        assert!(
            check.status.success(),
            "mailgate check refused the matrix config:\n{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let mut child = Command::new(bin)
            .arg("run")
            .arg("-c")
            .arg(&config_path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn mailgate");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, SocketAddr)>();
        let sink = Arc::clone(&log);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["message"] == "listening"
                    && let (Some(l), Some(a)) = (v["listener"].as_str(), v["addr"].as_str())
                    && let Ok(addr) = a.parse()
                {
                    let _ = tx.send((l.to_string(), addr));
                }
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let mut addrs = HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while addrs.len() < 3 {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((l, a))) => {
                    addrs.insert(l, a);
                }
                _ => panic!(
                    "mailgate did not report its listeners: {:?}\n{}",
                    child.try_wait(),
                    log.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
                ),
            }
        }
        let mg = Mailgate {
            child,
            imap: addrs["imap"],
            pop3: addrs["pop3"],
            admin: addrs["admin"],
            log,
        };
        let t = Instant::now();
        while http_get(mg.admin, "/readyz").await.map(|(s, _)| s) != Ok(200) {
            assert!(t.elapsed() < Duration::from_secs(20), "never ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        mg
    }

    /// `GET /status` as JSON.
    pub async fn status(&self) -> Result<Value, String> {
        let (code, body) = http_get(self.admin, "/status").await?;
        if code != 200 {
            return Err(format!("/status answered {code}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("/status: {e}"))
    }

    /// One backend's entry of `/status`.
    pub async fn backend(&self, name: &str) -> Result<Value, String> {
        let s = self.status().await?;
        s["backends"]
            .as_array()
            .and_then(|bs| bs.iter().find(|b| b["name"] == name))
            .cloned()
            .ok_or_else(|| format!("{name} missing from /status"))
    }

    /// `GET /metrics`, parsed.
    pub async fn metrics(&self) -> Result<Metrics, String> {
        let (code, body) = http_get(self.admin, "/metrics").await?;
        if code != 200 {
            return Err(format!("/metrics answered {code}"));
        }
        Ok(Metrics(body))
    }

    /// The last `n` log lines (for failure messages).
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log[log.len().saturating_sub(n)..].join("\n")
    }

    /// Log lines containing `needle`.
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().filter(|l| l.contains(needle)).cloned().collect()
    }

    /// SIGTERM is not needed: the process is killed by pid.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// A minimal HTTP/1.0 GET (the server closes after the body; no chunking).
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let work = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: mailgate\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .map_err(|_| format!("GET {path}: no answer in 10 s"))?
        .map_err(|e| format!("GET {path}: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no header end"))?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET {path}: bad status line"))?;
    Ok((code, body.to_string()))
}

/// Prometheus text exposition.
pub struct Metrics(pub String);

impl Metrics {
    /// The value of `name{labels...}` whose labels include all of `want` (exact pairs);
    /// the sum if several series match, `None` if none does.
    pub fn value(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for line in self.0.lines() {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            let Some(rest) = rest.strip_prefix('{') else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            let ok = want
                .iter()
                .all(|(k, v)| labels.split(',').any(|pair| pair == format!("{k}=\"{v}\"")));
            if ok && let Ok(v) = value.trim().parse::<f64>() {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }
}

/// What a read gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// A line, without CRLF.
    Line(String),
    /// End of stream (or a reset) before a full line.
    Eof,
    /// Nothing within the wait.
    Silent,
}

/// A line client over TCP from a chosen source address.
pub struct Client {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Client {
    pub async fn connect(source: IpAddr, to: SocketAddr) -> Result<Client, String> {
        let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        sock.bind(SocketAddr::new(source, 0))
            .map_err(|e| format!("bind {source}: {e}"))?;
        let tcp = tokio::time::timeout(Duration::from_secs(10), sock.connect(to))
            .await
            .map_err(|_| format!("connect {to}: timed out"))?
            .map_err(|e| format!("connect {to}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let (r, w) = tcp.into_split();
        Ok(Client {
            r: BufReader::new(r),
            w,
        })
    }

    pub async fn send(&mut self, line: &str) -> Result<(), String> {
        self.w
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .map_err(|e| format!("write {line:?}: {e}"))
    }

    /// The next line within `wait`.
    pub async fn read(&mut self, wait: Duration) -> Read {
        let mut buf = Vec::new();
        match tokio::time::timeout(wait, self.r.read_until(b'\n', &mut buf)).await {
            Err(_) => Read::Silent,
            Ok(Err(_)) | Ok(Ok(0)) => Read::Eof,
            Ok(Ok(_)) if !buf.ends_with(b"\n") => Read::Eof,
            Ok(Ok(_)) => Read::Line(String::from_utf8_lossy(&buf).trim_end().to_string()),
        }
    }

    /// The next line within `wait`, or an error naming what came instead.
    pub async fn line(&mut self, wait: Duration, what: &str) -> Result<String, String> {
        match self.read(wait).await {
            Read::Line(l) => Ok(l),
            Read::Eof => Err(format!("{what}: connection closed, no line")),
            Read::Silent => Err(format!("{what}: nothing within {wait:?}")),
        }
    }

    /// Lines until one starts with `prefix` (which is returned).
    pub async fn line_starting(
        &mut self,
        prefix: &str,
        wait: Duration,
        what: &str,
    ) -> Result<String, String> {
        loop {
            let l = self.line(wait, what).await?;
            if l.starts_with(prefix) {
                return Ok(l);
            }
        }
    }

    /// Exactly `n` bytes within `wait`.
    pub async fn bytes(&mut self, n: usize, wait: Duration) -> Result<Vec<u8>, String> {
        let mut buf = vec![0; n];
        match tokio::time::timeout(wait, self.r.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Ok(buf),
            Ok(Err(e)) => Err(format!("reading {n} bytes: {e}")),
            Err(_) => Err(format!("reading {n} bytes: not within {wait:?}")),
        }
    }

    /// Waits for EOF (or a reset) within `wait`; returns the bytes that came before it.
    pub async fn eof(&mut self, wait: Duration) -> Result<Vec<u8>, String> {
        let mut buf = Vec::new();
        match tokio::time::timeout(wait, self.r.read_to_end(&mut buf)).await {
            Ok(_) => Ok(buf),
            Err(_) => Err(format!(
                "no EOF within {wait:?} (got {} bytes meanwhile)",
                buf.len()
            )),
        }
    }
}
