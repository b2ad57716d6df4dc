//! Validation: every problem at once, each with line and key path.
mod common;

use common::Dir;
use mailgate_config::{Config, ConfigErrors, Diagnostic};

fn errors(r: Result<mailgate_config::Loaded, ConfigErrors>) -> Vec<Diagnostic> {
    match r {
        Ok(_) => panic!("expected errors"),
        Err(e) => {
            eprintln!("{e}");
            e.0
        }
    }
}

fn has(errs: &[Diagnostic], line: usize, key: &str, msg: &str) {
    assert!(
        errs.iter()
            .any(|d| d.line == Some(line) && d.key == key && d.message.contains(msg)),
        "no error at line {line} key {key:?} containing {msg:?} in:\n{}",
        ConfigErrors(errs.to_vec())
    );
}

const MANY: &str = r#"backends:
  mail1:
    host: a
    imap_port: 70000
    pop3_port: 0
  mail2:
    host: b
    imap_port: 143
    fallback: mail9
    probe:
      user: p@x
      password_file: missing.secret
  mail3:
    host: c
domains:
  example.com: mail9
  Example.COM: mail1
  "*.bad*.net": mail1
  "ex ample.org": mail1
  bücher.example: mail1
  xn--bcher-kva.example: mail2
users:
  a@example.com: nope
  "u@": mail1
default: mailX
"#;

#[test]
fn all_errors_at_once_with_lines_and_keys() {
    let d = Dir::new();
    let errs = errors(d.load(MANY));
    has(&errs, 4, "backends.mail1.imap_port", "70000");
    has(&errs, 5, "backends.mail1.pop3_port", "port 0");
    has(
        &errs,
        9,
        "backends.mail2.fallback",
        "unknown backend \"mail9\"",
    );
    has(
        &errs,
        12,
        "backends.mail2.probe.password_file",
        "missing.secret",
    );
    has(&errs, 13, "backends.mail3", "needs imap_port, pop3_port");
    has(
        &errs,
        16,
        "domains.example.com",
        "unknown backend \"mail9\"",
    );
    has(&errs, 17, "domains.Example.COM", "duplicate of line 16");
    has(&errs, 18, "domains.*.bad*.net", "bad wildcard");
    has(&errs, 19, "domains.ex ample.org", "not a valid domain");
    has(
        &errs,
        21,
        "domains.xn--bcher-kva.example",
        "duplicate of line 20",
    );
    has(&errs, 23, "users.a@example.com", "unknown backend \"nope\"");
    has(&errs, 24, "users.u@", "not a valid address");
    has(&errs, 25, "default", "unknown backend \"mailX\"");
    assert_eq!(errs.len(), 13, "{}", ConfigErrors(errs.clone()));
    let text = ConfigErrors(errs).to_string();
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.ends_with("routing.yaml:4: backends.mail1.imap_port: port 70000 is not in 1..65535"),
        "{first}"
    );
}

#[test]
fn duplicate_yaml_keys_are_reported() {
    let d = Dir::new();
    let text =
        "backends:\n  m:\n    host: h\n    imap_port: 1\ndomains:\n  a.test: m\n  a.test: m\n";
    let errs = errors(d.load(text));
    has(&errs, 7, "domains.a.test", "duplicate of line 6");
    let text = "backends:\n  m:\n    host: h\n    imap_port: 1\n  m:\n    host: h\n    imap_port: 2\ndomains:\n  a.test: m\n";
    has(
        &errors(d.load(text)),
        5,
        "backends.m",
        "defined twice (first on line 2)",
    );
}

#[test]
fn unknown_key_names_line_and_path() {
    let d = Dir::new();
    let text = "backends:\n  m:\n    host: h\n    imap_prot: 1\ndomains:\n  a.test: m\n";
    let errs = errors(d.load(text));
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, Some(4));
    assert_eq!(errs[0].key, "backends.m.imap_prot");
    assert!(errs[0].message.contains("imap_prot"), "{}", errs[0]);
    let errs = errors(d.load("backends:\n  m:\n    host: h\n    imap_port: 1\nroutes: {}\n"));
    assert_eq!((errs[0].line, errs[0].key.as_str()), (Some(5), "routes"));
}

#[test]
fn wrong_type_and_syntax_error() {
    let d = Dir::new();
    let errs = errors(d.load("backends:\n  m:\n    host: h\n    imap_port: [1]\n"));
    assert_eq!(errs[0].line, Some(4));
    let errs = errors(d.load("backends:\n  m:\n    host: \"h\n    imap_port: 1\n"));
    assert!(errs[0].line.is_some(), "{}", errs[0]);
    let errs =
        errors(d.load("backends:\n  m:\n    host: h\n    tls: sometimes\n    imap_port: 1\n"));
    assert_eq!(
        (errs[0].line, errs[0].key.as_str()),
        (Some(4), "backends.m.tls")
    );
}

#[test]
fn empty_and_truncated_files() {
    let d = Dir::new();
    for text in ["", "\n\n", "# only a comment\n", "---\n"] {
        let errs = errors(d.load(text));
        assert!(errs[0].message.contains("empty"), "{}", errs[0]);
    }
    // A truncated write: the tail of the file missing.
    let errs = errors(d.load("backends:\n  m:\n    host: h\n    imap_po"));
    assert!(!errs.is_empty());
    let errs = errors(d.load("domains:\n  a.test: m\n"));
    has(&errs, 2, "domains.a.test", "unknown backend");
}

#[test]
fn unreferenced_backend_is_a_warning() {
    let d = Dir::new();
    let text = "backends:\n  m:\n    host: h\n    imap_port: 1\n  spare:\n    host: h\n    imap_port: 2\ndomains:\n  a.test: m\n";
    let loaded = d.load(text).expect("valid");
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(loaded.warnings[0].key, "backends.spare");
    assert_eq!(loaded.warnings[0].line, Some(5));
}

#[test]
fn yaml_bombs_are_refused() {
    let d = Dir::new();
    // Billion laughs where a string is expected.
    let mut bomb = String::from(
        "x: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for i in 0..9u8 {
        let (p, n) = ((b'a' + i) as char, (b'b' + i) as char);
        bomb.push_str(&format!(
            "{n}: &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        ));
    }
    let bomb = format!(
        "backends:\n  m:\n    host: h\n    imap_port: 1\nusers: {{}}\ndomains:\n  {}\n  a.test: *j\n",
        bomb.replace('\n', "\n  ").replace(": &", ".test: &")
    );
    assert!(!errors(d.load(&bomb)).is_empty());
    // An alias storm: more aliases than the budget allows.
    let mut storm = String::from("backends:\n  m: &m\n    host: h\n    imap_port: 1\ndomains:\n");
    for i in 0..2000 {
        storm.push_str(&format!("  d{i}.test: &n{i} m\n  e{i}.test: *n{i}\n"));
    }
    let errs = errors(d.load(&storm));
    assert!(
        errs[0].message.contains("budget") || errs[0].message.contains("alias"),
        "{}",
        errs[0]
    );
    // Deep nesting.
    let deep = format!(
        "backends:\n  m:\n    host: h\n    imap_port: 1\n    probe: {}{}\n",
        "[".repeat(500),
        "]".repeat(500)
    );
    assert!(!errors(d.load(&deep)).is_empty());
}

#[test]
fn config_validation() {
    let d = Dir::new();
    let p = d.write(
        "mailgate.yaml",
        "listen:\n  imaps: 127.0.0.1:993\nhealth:\n  fall: 0\n  interval: 2 parsecs\n",
    );
    let e = Config::load(&p).expect_err("invalid");
    eprintln!("{e}");
    assert_eq!(e.0[0].key, "health.interval");
    let p = d.write(
        "mailgate.yaml",
        "listen:\n  imaps: 127.0.0.1:993\nhealth:\n  fall: 0\n",
    );
    let e = Config::load(&p).expect_err("invalid");
    eprintln!("{e}");
    let keys: Vec<_> = e.0.iter().map(|d| (d.key.as_str(), d.line)).collect();
    assert_eq!(keys, [("listen.imaps", Some(2)), ("health.fall", Some(4))]);
    let p = d.write(
        "mailgate.yaml",
        "listen:\n  imap: 127.0.0.1:143\n  bogus: 1\n",
    );
    let e = Config::load(&p).expect_err("invalid");
    assert_eq!(
        (e.0[0].key.as_str(), e.0[0].line),
        ("listen.bogus", Some(3))
    );
}

#[test]
fn config_defaults_and_relative_paths() {
    let d = Dir::new();
    let p = d.write("mailgate.yaml", "listen:\n  imap: 127.0.0.1:143\ntls:\n  cert: c.pem\n  key: /abs/k.pem\nhealth:\n  interval: 500ms\n");
    let c = Config::load(&p).expect("valid");
    assert_eq!(c.routing_file, d.dir.path().join("routing.yaml"));
    let tls = c.tls.as_ref().expect("tls");
    assert_eq!(tls.cert, d.dir.path().join("c.pem"));
    assert_eq!(tls.key, std::path::PathBuf::from("/abs/k.pem"));
    assert!(tls.require_tls_for_login);
    assert_eq!(c.health.interval, std::time::Duration::from_millis(500));
    assert_eq!(c.health.fall, 3);
    assert_eq!(c.limits.max_line, 8192);
    assert_eq!(c.shutdown_grace, std::time::Duration::from_secs(30));
    let missing = c.check_files();
    assert_eq!(missing.len(), 2);
    assert_eq!(
        (missing[0].key.as_str(), missing[0].line),
        ("tls.cert", Some(4))
    );
}
