use std::path::Path;

use super::*;
use crate::Config;

const BASE: &str = "\
listen:
  imap: 127.0.0.1:1143
  pop3: 127.0.0.1:1110
  admin: 127.0.0.1:9143
routing_file: routing.yaml
health:
  interval: 2s
admin:
  token_file: admin.token
log:
  level: info
greeting: hello
";

fn parse(text: &str) -> Config {
    Config::parse(text, Path::new("/etc/mailgate/mailgate.yaml"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn diff(new: &str) -> ConfigDiff {
    ConfigDiff::between(&parse(BASE), &parse(new))
}

#[test]
fn the_same_file_is_no_change() {
    let d = diff(BASE);
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(d.summary(), "no change");
    assert!(d.restart_errors(BASE).is_empty());
}

#[test]
fn reloadable_keys_are_listed_and_need_no_restart() {
    let new = BASE
        .replace("interval: 2s", "interval: 5s\n  fall: 7")
        .replace("level: info", "level: debug\n  format: json")
        .replace("greeting: hello", "greeting: welcome\noauth: true")
        .replace("  pop3: 127.0.0.1:1110\n", "  pop3s: 127.0.0.1:1995\n")
        + "limits:\n  idle_timeout: 45m\n  max_sessions_per_ip: 3\n"
        + "tls:\n  cert: c.pem\n  key: k.pem\n";
    let d = diff(&new);
    let keys: Vec<&str> = d.reloadable().collect();
    assert_eq!(
        keys,
        [
            "listen.pop3",
            "listen.pop3s",
            "tls",
            "health.interval",
            "health.fall",
            "log.level",
            "log.format",
            "limits.idle_timeout",
            "limits.max_sessions_per_ip",
            "greeting",
            "oauth",
        ]
    );
    assert_eq!(d.needs_restart().count(), 0);
    assert!(d.restart_errors(&new).is_empty());
    assert!(
        d.summary()
            .starts_with("reloads: listen.pop3, listen.pop3s, tls")
    );
}

#[test]
fn restart_only_keys_name_file_line_key_and_values() {
    let new = BASE
        .replace("admin: 127.0.0.1:9143", "admin: 127.0.0.1:9144")
        .replace("token_file: admin.token", "token_file: other.token")
        .replace("level: info", "level: warn");
    let d = diff(&new);
    let restart: Vec<&str> = d.needs_restart().map(|c| c.key).collect();
    assert_eq!(restart, ["listen.admin", "admin.token_file"]);
    assert_eq!(d.reloadable().collect::<Vec<_>>(), ["log.level"]);
    let errors = d.restart_errors(&new);
    assert_eq!(errors.len(), 2);
    let first = errors[0].to_string();
    assert_eq!(
        first,
        "/etc/mailgate/mailgate.yaml:4: listen.admin: changed from 127.0.0.1:9143 to \
         127.0.0.1:9144: needs a restart (the admin HTTP server binds its listener at start)"
    );
    let second = errors[1].to_string();
    assert!(second.contains(":9: admin.token_file"), "{second}");
    assert!(
        second.contains("from /etc/mailgate/admin.token to /etc/mailgate/other.token"),
        "{second}"
    );
    assert_eq!(
        d.summary(),
        "reloads: log.level; needs restart: listen.admin, admin.token_file"
    );
}

#[test]
fn adding_or_removing_a_restart_key_is_a_change_too() {
    let without = BASE.replace("  admin: 127.0.0.1:9143\n", "");
    let d = diff(&without);
    let c = d.needs_restart().next().expect("listen.admin removed");
    assert_eq!(c.key, "listen.admin");
    assert_eq!(
        c.values,
        Some(("127.0.0.1:9143".to_string(), "(none)".to_string()))
    );
    let with_status = BASE.replace(
        "  admin: 127.0.0.1:9143\n",
        "  admin: 127.0.0.1:9143\n  status: 127.0.0.1:8080\n",
    );
    let keys: Vec<&str> = diff(&with_status).needs_restart().map(|c| c.key).collect();
    assert_eq!(keys, ["listen.status"]);
    let moved = BASE.replace(
        "routing_file: routing.yaml",
        "routing_file: other/routing.yaml",
    );
    let keys: Vec<&str> = diff(&moved).needs_restart().map(|c| c.key).collect();
    assert_eq!(keys, ["routing_file"]);
}

#[test]
fn a_listener_address_change_reloads_and_tls_details_are_compared() {
    let tls = "tls:\n  cert: c.pem\n  key: k.pem\n";
    let old = parse(&(BASE.to_string() + tls));
    let new_text = BASE.replace("imap: 127.0.0.1:1143", "imap: 127.0.0.1:2143")
        + "tls:\n  cert: c2.pem\n  key: k.pem\n  require_tls_for_login: false\n";
    let d = ConfigDiff::between(&old, &parse(&new_text));
    assert_eq!(
        d.reloadable().collect::<Vec<_>>(),
        ["listen.imap", "tls.cert", "tls.require_tls_for_login"]
    );
    assert_eq!(d.needs_restart().count(), 0);
}

#[test]
fn every_restart_key_has_a_reason() {
    for (key, reason) in RESTART_KEYS {
        assert!(!reason.is_empty(), "{key}");
        assert_eq!(restart_reason(key), Some(*reason));
    }
    assert_eq!(restart_reason("limits.idle_timeout"), None);
}

#[test]
fn slow_start_logins_in_flight_defaults_to_100_and_reloads() {
    assert_eq!(parse(BASE).health.slow_start_logins_in_flight, 100);
    let new = BASE.replace(
        "interval: 2s",
        "interval: 2s\n  slow_start_logins_in_flight: 20",
    );
    assert_eq!(parse(&new).health.slow_start_logins_in_flight, 20);
    let d = diff(&new);
    let keys: Vec<&str> = d.reloadable().collect();
    assert_eq!(keys, ["health.slow_start_logins_in_flight"]);
    assert_eq!(d.needs_restart().count(), 0);
}
