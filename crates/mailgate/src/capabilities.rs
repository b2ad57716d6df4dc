//! Capability drift in the server (issue #14): the probes record what each backend
//! advertises in the [`CapabilityBook`] ([`observe`], which also logs a change and updates
//! the metrics), sessions take what every backend a login can reach supports
//! ([`advertised`]), and `/status` shows the lists and the drift.
//!
//! "Every backend a login can reach" over a protocol is every backend of the routing table
//! in force with a port for that protocol: routes, the default and fallbacks all name
//! backends of the table.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::SystemTime;

use mailgate_config::RoutingTable;
use mailgate_health::{CapabilityBook, CapabilityChange, Stage};
use mailgate_proto::{Advertised, Capabilities, Protocol};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::{MetricGroup, names};

/// The backends of `table` a login over `protocol` can reach.
pub fn reachable(table: &RoutingTable, protocol: Protocol) -> impl Iterator<Item = &str> {
    table
        .backends()
        .filter(move |b| b.port(protocol == Protocol::Imap).is_some())
        .map(|b| b.name.as_str())
}

/// What a session's front engine may offer before login.
pub fn advertised(book: &CapabilityBook, table: &RoutingTable, protocol: Protocol) -> Advertised {
    book.advertised(protocol, reachable(table, protocol))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CapabilityLabels {
    backend: String,
    protocol: String,
    stage: String,
    capability: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabel {
    protocol: String,
}

/// `backend_capability{backend,protocol,stage,capability}` (1 for every capability a
/// backend's last probe saw) and `capability_drift{protocol}` (how many capabilities the
/// reachable backends do not all share).
#[derive(Debug, Default)]
pub struct CapabilityMetrics {
    capability: Family<CapabilityLabels, Gauge>,
    drift: Family<ProtocolLabel, Gauge>,
    exported: Mutex<HashSet<CapabilityLabels>>,
}

impl CapabilityMetrics {
    /// Export the book's lists for the backends of `table`, dropping every other series.
    pub fn refresh(&self, book: &CapabilityBook, table: &RoutingTable) {
        let mut now = HashSet::new();
        for protocol in [Protocol::Imap, Protocol::Pop3] {
            for backend in reachable(table, protocol) {
                let Some(r) = book.get(backend, protocol) else {
                    continue;
                };
                let mut add = |stage: Stage, names: &mut dyn Iterator<Item = &str>| {
                    for capability in names {
                        now.insert(CapabilityLabels {
                            backend: backend.to_string(),
                            protocol: protocol.as_str().to_string(),
                            stage: stage.as_str().to_string(),
                            capability: capability.to_string(),
                        });
                    }
                };
                add(
                    Stage::PreLogin,
                    &mut r.pre_login.names().filter(|n| !n.starts_with("AUTH=")),
                );
                add(Stage::Sasl, &mut r.pre_login.mechanisms());
                if let Some(post) = &r.post_login {
                    add(Stage::PostLogin, &mut post.names());
                }
            }
            let drift = book.drift(protocol, reachable(table, protocol));
            self.drift
                .get_or_create(&ProtocolLabel {
                    protocol: protocol.as_str().to_string(),
                })
                .set(i64::try_from(drift.differences.len()).unwrap_or(i64::MAX));
        }
        let mut exported = self.exported.lock().unwrap_or_else(|p| p.into_inner());
        for gone in exported.difference(&now) {
            self.capability.remove(gone);
        }
        for l in &now {
            self.capability.get_or_create(l).set(1);
        }
        *exported = now;
    }
}

impl MetricGroup for CapabilityMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            names::BACKEND_CAPABILITY,
            "Capabilities each backend advertised at its last probe (1), by stage: pre_login, post_login, sasl",
            self.capability.clone(),
        );
        r.register(
            names::CAPABILITY_DRIFT,
            "Capabilities (any stage) that the backends a login can reach do not all advertise",
            self.drift.clone(),
        );
    }
}

/// What one probe saw of a backend's capabilities.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The list a login meets.
    pub pre_login: Option<Capabilities>,
    /// The list after the probe account's login.
    pub post_login: Option<Capabilities>,
}

/// Record a probe's lists, log when they are new or changed, refresh the metrics.
pub fn observe(
    book: &CapabilityBook,
    metrics: &CapabilityMetrics,
    table: &RoutingTable,
    backend: &str,
    protocol: Protocol,
    seen: Seen,
) {
    let Some(pre) = seen.pre_login else {
        return;
    };
    let list = |c: &Capabilities| c.names().collect::<Vec<_>>().join(" ");
    let pre_text = list(&pre);
    let post_text = seen.post_login.as_ref().map(list);
    let change = book.record(backend, protocol, pre, seen.post_login, SystemTime::now());
    match &change {
        CapabilityChange::First => tracing::info!(
            backend,
            protocol = protocol.as_str(),
            pre_login = %pre_text,
            post_login = post_text.as_deref().unwrap_or("-"),
            "backend capabilities"
        ),
        CapabilityChange::Changed { .. } => tracing::warn!(
            backend,
            protocol = protocol.as_str(),
            change = %change,
            pre_login = %pre_text,
            "backend capabilities changed"
        ),
        CapabilityChange::Same => {}
    }
    book.retain(|name| table.backend(name).is_some());
    metrics.refresh(book, table);
}

/// After a probe's POP3 login: `CAPA` (RFC 2449 §5 allows it in the TRANSACTION state),
/// read under `limit`. Returns the list (`None` if refused or unreadable) and the bytes
/// the backend sent after it, for the probe's next step.
pub async fn pop3_post_login(
    conn: &mut crate::conn::Conn,
    mut buf: Vec<u8>,
    limit: std::time::Duration,
) -> (Option<Capabilities>, Vec<u8>) {
    use mailgate_proto::{CapaRead, read_pop3_capa};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limits = mailgate_proto::Limits::default();
    let exchange = async {
        conn.write_all(b"CAPA\r\n").await?;
        conn.flush().await?;
        let mut chunk = [0u8; 2048];
        loop {
            match read_pop3_capa(&buf, 1024, limits.upstream_max_untagged) {
                CapaRead::Done { caps, consumed } => {
                    buf.drain(..consumed);
                    return Ok::<_, std::io::Error>(caps);
                }
                CapaRead::Invalid => return Ok(None),
                CapaRead::Need => {}
            }
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let caps = match tokio::time::timeout(limit, exchange).await {
        Ok(Ok(caps)) => caps,
        Ok(Err(_)) | Err(_) => None,
    };
    (caps, buf)
}

fn names_json(names: impl Iterator<Item = impl Into<String>>) -> serde_json::Value {
    serde_json::Value::Array(names.map(|n| serde_json::Value::String(n.into())).collect())
}

/// Add the capability sections to a `/status` document: each backend's lists under
/// `backends[].capabilities.{imap,pop3}`, and per protocol what is offered before login
/// and where the backends differ under `capability_drift.{imap,pop3}`.
pub fn extend_status(
    doc: &mut serde_json::Value,
    book: &CapabilityBook,
    table: &RoutingTable,
    oauth: bool,
) {
    use serde_json::json;
    if let Some(backends) = doc["backends"].as_array_mut() {
        for b in backends {
            let Some(name) = b["name"].as_str().map(str::to_string) else {
                continue;
            };
            let mut per = serde_json::Map::new();
            for protocol in [Protocol::Imap, Protocol::Pop3] {
                let Some(r) = book.get(&name, protocol) else {
                    continue;
                };
                let pre = r.pre_login.names().filter(|n| !n.starts_with("AUTH="));
                per.insert(
                    protocol.as_str().into(),
                    json!({
                        "pre_login": names_json(pre),
                        "sasl": names_json(r.pre_login.mechanisms()),
                        "post_login": r.post_login.as_ref().map(|p| names_json(p.names())),
                        "at": crate::admin::status_json::rfc3339(r.at),
                        "changes": r.changes,
                    }),
                );
            }
            b["capabilities"] = serde_json::Value::Object(per);
        }
    }
    let mut drift = serde_json::Map::new();
    for protocol in [Protocol::Imap, Protocol::Pop3] {
        let d = book.drift(protocol, reachable(table, protocol));
        if d.probed.is_empty() && d.unprobed.is_empty() {
            continue;
        }
        let adv = advertised(book, table, protocol);
        let mut offered = json!({ "mechanisms": adv.mechanism_names(oauth) });
        if protocol == Protocol::Imap {
            offered["sasl_ir"] = adv.sasl_ir.into();
            offered["id"] = adv.id.into();
        }
        let differences: Vec<serde_json::Value> = d
            .differences
            .iter()
            .map(|x| {
                json!({
                    "stage": x.stage.as_str(),
                    "capability": x.capability,
                    "with": x.with,
                    "without": x.without,
                })
            })
            .collect();
        drift.insert(
            protocol.as_str().into(),
            json!({
                "advertised": offered,
                "drift": !differences.is_empty(),
                "differences": differences,
                "probed": d.probed,
                "unprobed": d.unprobed,
            }),
        );
    }
    doc["capability_drift"] = serde_json::Value::Object(drift);
}

/// The capability drift of a `/status` document, for `mailgate ctl status`: per protocol
/// what is offered before login, then one line per capability the backends differ in.
pub fn status_lines(doc: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let Some(drift) = doc["capability_drift"].as_object() else {
        return out;
    };
    let strs = |v: &serde_json::Value| -> String {
        let list: Vec<&str> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str())
            .collect();
        if list.is_empty() {
            "-".into()
        } else {
            list.join(", ")
        }
    };
    for (protocol, d) in drift {
        let a = &d["advertised"];
        let mut offered = Vec::new();
        if a["sasl_ir"] == true {
            offered.push("SASL-IR".to_string());
        }
        if a["id"] == true {
            offered.push("ID".to_string());
        }
        offered.push(format!("SASL {}", strs(&a["mechanisms"])));
        let _ = writeln!(
            out,
            "capabilities ({protocol}): offered before login: {}{}",
            offered.join(" "),
            match d["unprobed"].as_array().map(Vec::len) {
                Some(n) if n > 0 => format!(" (not probed yet: {})", strs(&d["unprobed"])),
                _ => String::new(),
            }
        );
        for x in d["differences"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  drift: {} {}: on {}; missing on {}",
                x["stage"].as_str().unwrap_or("?"),
                x["capability"].as_str().unwrap_or("?"),
                strs(&x["with"]),
                strs(&x["without"]),
            );
        }
    }
    out
}

#[cfg(test)]
#[path = "capabilities_tests.rs"]
mod tests;
