//! `mailgate ctl`: the command-line client of the admin API (status, drain, undrain,
//! reload, kick). One HTTP/1.1 request per command with hyper's client over a plain TCP
//! connection; the admin listener is loopback-only by default.
//!
//! Exit codes: 0 done; 1 the server refused or failed (the reason is printed); 2 the admin
//! address could not be reached or the command line/config is unusable.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::http::encode;

pub mod fleet;
mod status;
mod views;
pub use status::status_table;
use views::s;

/// Environment variable holding the admin token.
pub const TOKEN_ENV: &str = "MAILGATE_ADMIN_TOKEN";
/// Admin address when neither `--admin` nor a config names one.
pub const DEFAULT_ADMIN: &str = "http://127.0.0.1:9143";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why `mailgate ctl` could not do its job (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The admin address is not `http://host:port`.
    #[error("admin address {0:?}: use http://HOST:PORT")]
    Address(String),
    /// The config file could not be read.
    #[error("{0}")]
    Config(String),
    /// The token file could not be read.
    #[error("token file {path}: {reason}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Connecting or talking to the admin server failed.
    #[error("cannot reach the admin server at {addr}: {reason}")]
    Connect {
        /// host:port.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The server answered something that is not JSON.
    #[error("unexpected answer from the admin server: {0}")]
    Answer(String),
}

/// Where to send commands and with which token.
#[derive(Clone)]
pub struct Target {
    /// `host:port` of the admin listener.
    pub addr: String,
    /// Bearer token, if any.
    pub token: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "/* REDACTED */"))
            .finish()
    }
}

/// What to do.
#[derive(Debug, Clone)]
pub enum Command {
    /// `GET /status`, printed as a table (or raw JSON).
    Status {
        /// Print the JSON document.
        json: bool,
    },
    /// `POST /backends/{name}/drain[?reason=...]`.
    Drain {
        /// Backend name.
        name: String,
        /// Why (shown on `/status`, kept in the state file).
        reason: Option<String>,
    },
    /// `POST /backends/{name}/undrain`.
    Undrain(String),
    /// `POST /reload`.
    Reload,
    /// `POST /reload?dry_run=true`: what a reload would apply, which changes need a restart.
    ReloadDryRun,
    /// `POST /upgrade`: start the binary at the running one's path; it takes over.
    Upgrade,
    /// `POST /kick?...`.
    Kick {
        /// `backend=`.
        backend: Option<String>,
        /// `domain=`.
        domain: Option<String>,
        /// `user=`.
        user: Option<String>,
        /// `window=` (e.g. `30s`).
        window: Option<String>,
        /// `dry_run=true`: say what would close, close nothing.
        dry_run: bool,
        /// `users=true` (dry runs): name the users.
        users: bool,
    },
    /// `POST /routes/plan` with a candidate routing file.
    Plan {
        /// The candidate file.
        file: PathBuf,
        /// Name the users of each move.
        users: bool,
        /// Print the JSON document.
        json: bool,
    },
    /// `GET /sessions`.
    Sessions {
        /// Name the users.
        users: bool,
        /// Print the JSON document.
        json: bool,
    },
}

/// Work out the target: `--admin`, else `listen.admin` of `--config`, else the default;
/// the token from `--token-file`, else `$MAILGATE_ADMIN_TOKEN`, else `admin.token_file`
/// of `--config`.
pub fn resolve_target(
    admin: Option<&str>,
    config: Option<&Path>,
    token_file: Option<&Path>,
) -> Result<Target, CtlError> {
    let cfg = match config {
        Some(p) => {
            Some(mailgate_config::Config::load(p).map_err(|e| CtlError::Config(e.to_string()))?)
        }
        None => None,
    };
    let url = match (admin, cfg.as_ref().and_then(|c| c.listen.admin)) {
        (Some(a), _) => a.to_string(),
        (None, Some(addr)) => format!("http://{addr}"),
        (None, None) => DEFAULT_ADMIN.to_string(),
    };
    let addr = parse_addr(&url)?;
    let from_file = |p: &Path| -> Result<String, CtlError> {
        let text = std::fs::read_to_string(p).map_err(|e| CtlError::TokenFile {
            path: p.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(text.trim().to_string())
    };
    let token = if let Some(p) = token_file {
        Some(from_file(p)?)
    } else if let Some(t) = std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        Some(t.trim().to_string())
    } else if let Some(p) = cfg.as_ref().and_then(|c| c.admin.token_file.as_deref()) {
        Some(from_file(p)?)
    } else {
        None
    };
    Ok(Target { addr, token })
}

/// `http://host:port[/]` or `host:port` → `host:port`.
pub fn parse_addr(url: &str) -> Result<String, CtlError> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    if rest.contains("://") {
        return Err(CtlError::Address(url.to_string()));
    }
    let rest = rest.trim_end_matches('/');
    let ok = rest
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    if !ok || rest.contains('/') {
        return Err(CtlError::Address(url.to_string()));
    }
    Ok(rest.to_string())
}

/// Run one command; prints the result and returns the exit code.
pub fn run(target: &Target, command: &Command) -> Result<ExitCode, CtlError> {
    let (method, path) = request_line(command);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CtlError::Connect {
            addr: target.addr.clone(),
            reason: e.to_string(),
        })?;
    let body = match command {
        Command::Plan { file, .. } => std::fs::read(file)
            .map_err(|e| CtlError::Config(format!("cannot read {}: {e}", file.display())))?,
        _ => Vec::new(),
    };
    let (status, body) = rt.block_on(send(target, method.clone(), &path, body))?;
    let value: Value = serde_json::from_str(&body)
        .map_err(|_| CtlError::Answer(format!("{status}: {}", body.trim())))?;
    if let (Command::Plan { .. }, Some(errors)) = (command, views::plan_errors(&value)) {
        eprint!("{errors}");
        return Ok(ExitCode::FAILURE);
    }
    if !status.is_success() {
        let why = value
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        eprintln!("mailgate ctl: {} {path}: {status}: {why}", method.as_str());
        return Ok(ExitCode::FAILURE);
    }
    print!("{}", describe(command, &value));
    // A plan that would push a backend over its budget fails, so scripts can stop there.
    let over = value["over_budget"]
        .as_array()
        .is_some_and(|a| !a.is_empty());
    if matches!(command, Command::Plan { .. }) && over {
        return Ok(ExitCode::FAILURE);
    }
    // A dry run with restart-only changes: 3, as `mailgate check --against`.
    if matches!(command, Command::ReloadDryRun) && value["would_apply"] == false {
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

fn request_line(command: &Command) -> (Method, String) {
    match command {
        Command::Status { .. } => (Method::GET, "/status".into()),
        Command::Drain { name, reason } => {
            let q = reason
                .as_ref()
                .map(|r| format!("?reason={}", encode(r)))
                .unwrap_or_default();
            (Method::POST, format!("/backends/{}/drain{q}", encode(name)))
        }
        Command::Undrain(b) => (Method::POST, format!("/backends/{}/undrain", encode(b))),
        Command::Reload => (Method::POST, "/reload".into()),
        Command::ReloadDryRun => (Method::POST, "/reload?dry_run=true".into()),
        Command::Upgrade => (Method::POST, "/upgrade".into()),
        Command::Kick {
            backend,
            domain,
            user,
            window,
            dry_run,
            users,
        } => {
            let yes = Some("true".to_string());
            let params: Vec<String> = [
                ("backend", backend),
                ("domain", domain),
                ("user", user),
                ("window", window),
                ("dry_run", if *dry_run { &yes } else { &None }),
                ("users", if *users { &yes } else { &None }),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
            .collect();
            (Method::POST, format!("/kick?{}", params.join("&")))
        }
        Command::Plan { file, users, .. } => {
            let name = encode(&file.display().to_string());
            let users = if *users { "&users=true" } else { "" };
            (Method::POST, format!("/routes/plan?name={name}{users}"))
        }
        Command::Sessions { users, .. } => {
            let q = if *users { "?users=true" } else { "" };
            (Method::GET, format!("/sessions{q}"))
        }
    }
}

async fn send(
    target: &Target,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> Result<(StatusCode, String), CtlError> {
    let err = |reason: String| CtlError::Connect {
        addr: target.addr.clone(),
        reason,
    };
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect(&target.addr),
    )
    .await
    .map_err(|_| err("connect timed out".into()))?
    .map_err(|e| err(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| err(e.to_string()))?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, target.addr.as_str());
    if let Some(t) = &target.token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| err(e.to_string()))?;
    let exchange = async {
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| err("no answer in time".into()))?
        .map_err(|e| err(e.to_string()))
}

/// Human-readable output of a successful command.
fn describe(command: &Command, v: &Value) -> String {
    match command {
        Command::Status { json: true } => {
            serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
        }
        Command::Status { json: false } => status_table(v),
        Command::Drain { .. } | Command::Undrain(_) => {
            let changed = if v["changed"] == true {
                "changed"
            } else {
                "unchanged"
            };
            let state = if v["drained"] == true {
                "drained"
            } else {
                "not drained"
            };
            let mut line = format!("{}: {state} ({changed})", s(&v["backend"]));
            if let Some(note) = v["note"].as_str() {
                line.push_str(&format!("; {note}"));
            }
            if let Some(e) = v["state_file_error"].as_str() {
                line.push_str(&format!("; NOT KEPT across a restart: {e}"));
            }
            line + "\n"
        }
        Command::ReloadDryRun => {
            let lines = |key: &str, prefix: &str| -> String {
                v[key]
                    .as_array()
                    .map(|a| a.iter().map(|x| format!("{prefix}{}\n", s(x))).collect())
                    .unwrap_or_default()
            };
            let verdict = if v["would_apply"] == true {
                "a reload applies every change".to_string()
            } else {
                "a reload would be refused and change nothing: restart-only changes".to_string()
            };
            format!(
                "{}{}{}routing: {}\n{verdict}\n",
                lines("config_changes", "reloads: "),
                lines("listener_changes", "listener: "),
                lines("needs_restart", "needs restart: "),
                s(&v["summary"]),
            )
        }
        Command::Reload => {
            let list = |key: &str| {
                let items: Vec<String> = v[key]
                    .as_array()
                    .map(|a| a.iter().map(s).collect())
                    .unwrap_or_default();
                if items.is_empty() {
                    "none".to_string()
                } else {
                    items.join(", ")
                }
            };
            format!(
                "reloaded; routing version {}; admin token {}; mailgate.yaml changes: {}; listeners: {}\n",
                s(&v["routing_version"]),
                s(&v["admin_token"]),
                list("config_changes"),
                list("listener_changes"),
            )
        }
        Command::Plan { json: true, .. }
        | Command::Sessions { json: true, .. }
        | Command::Kick { dry_run: true, .. } => {
            if matches!(command, Command::Kick { .. }) {
                views::dry_run(v)
            } else {
                serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
            }
        }
        Command::Plan { file, .. } => views::plan(v, &file.display().to_string()),
        Command::Sessions { .. } => views::sessions(v),
        Command::Upgrade => format!(
            "upgraded: process {} serves now; the old one ({}) drains its sessions\n",
            v["new_pid"], v["old_pid"]
        ),
        Command::Kick { .. } => format!(
            "{} session(s) of {} {} scheduled to close over {}s\n",
            v["scheduled"],
            s(&v["selector"]),
            s(&v["value"]),
            v["window_secs"]
        ),
    }
}

/// Send one status, drain, undrain, kick or reload command (no request body):
/// `Ok(Ok(output))` done, `Ok(Err(why))` the server refused or failed (`METHOD PATH:
/// STATUS: reason`), `Err` not reached or not understood. Used for several instances at
/// once ([`fleet`]).
pub async fn call(target: &Target, command: &Command) -> Result<Result<String, String>, CtlError> {
    let (method, path) = request_line(command);
    let (status, body) = send(target, method.clone(), &path, Vec::new()).await?;
    let value: Value = serde_json::from_str(&body)
        .map_err(|_| CtlError::Answer(format!("{status}: {}", body.trim())))?;
    if !status.is_success() {
        let why = value
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        return Ok(Err(format!("{} {path}: {status}: {why}", method.as_str())));
    }
    Ok(Ok(describe(command, &value)))
}

#[cfg(test)]
mod tests;
