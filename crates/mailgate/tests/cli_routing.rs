//! `mailgate check`, `mailgate route`, `mailgate routes diff` against the committed examples
//! (copied to a temp dir with a placeholder demo certificate, since examples/tls/ is made by
//! scripts/demo.sh) and against broken files.
use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// A copy of examples/ with placeholder TLS files and admin token, so `check` passes.
fn demo_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["mailgate.yaml", "routing.yaml", "probe.secret"] {
        std::fs::copy(examples().join(f), dir.path().join(f)).expect("copy");
    }
    std::fs::create_dir(dir.path().join("tls")).expect("mkdir");
    std::fs::write(dir.path().join("tls/cert.pem"), "placeholder").expect("write");
    std::fs::write(dir.path().join("tls/key.pem"), "placeholder").expect("write");
    std::fs::write(dir.path().join("admin.token"), "token").expect("write");
    dir
}

fn mailgate() -> Command {
    Command::cargo_bin("mailgate").expect("binary")
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = mailgate().args(args).output().expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn check_ok_on_examples() {
    let d = demo_copy();
    let cfg = d.path().join("mailgate.yaml");
    let (code, out, err) = run(&["check", "-c", s(&cfg)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: "), "{out}");
    assert!(out.contains("3 backends"), "{out}");
}

#[test]
fn check_reports_missing_demo_cert_and_every_routing_error() {
    let d = demo_copy();
    std::fs::remove_dir_all(d.path().join("tls")).expect("rm");
    let routing = "backends:\n  mail1:\n    host: h\n    imap_port: 99999\ndomains:\n  a.test: mail9\n  A.TEST: mail1\n";
    std::fs::write(d.path().join("routing.yaml"), routing).expect("write");
    let cfg = d.path().join("mailgate.yaml");
    let (code, _out, err) = run(&["check", "-c", s(&cfg)]);
    assert_eq!(code, 1, "{err}");
    for want in [
        ": tls.cert: cannot read",
        ": tls.key: cannot read",
        "routing.yaml:4: backends.mail1.imap_port: port 99999",
        "routing.yaml:6: domains.a.test: unknown backend \"mail9\"",
        "routing.yaml:7: domains.A.TEST: duplicate of line 6",
        "5 error(s)",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn check_rejects_bad_config() {
    let d = demo_copy();
    std::fs::write(
        d.path().join("bad.yaml"),
        "listen:\n  imap: 127.0.0.1:143\n  imapz: 1\n",
    )
    .expect("write");
    let (code, _, err) = run(&["check", "-c", s(&d.path().join("bad.yaml"))]);
    assert_eq!(code, 1);
    assert!(
        err.contains("bad.yaml:3: listen.imapz: unknown field"),
        "{err}"
    );
}

#[test]
fn route_prints_backend_and_rule() {
    let d = demo_copy();
    let cfg = d.path().join("mailgate.yaml");
    for (user, want) in [
        (
            "moving@example.com",
            "moving@example.com -> mail2 (user override)\n",
        ),
        (
            "Alice@Example.COM",
            "Alice@Example.COM -> mail1 (domain example.com)\n",
        ),
        ("alice", "alice -> mail1 (domain example.com)\n"),
        (
            "bob@shop.example.net",
            "bob@shop.example.net -> mail3 (wildcard *.example.net)\n",
        ),
    ] {
        let (code, out, err) = run(&["route", "-c", s(&cfg), user]);
        assert_eq!((code, out.as_str()), (0, want), "{err}");
    }
    for user in ["x@unknown.test", "u@", "a@b@c"] {
        let (code, out, _) = run(&["route", "-c", s(&cfg), user]);
        assert_eq!(code, 1);
        assert!(out.contains("no route"), "{out}");
    }
}

#[test]
fn routes_diff_reports_moves() {
    let d = demo_copy();
    let old = d.path().join("routing.yaml");
    let text = std::fs::read_to_string(&old).expect("read");
    let new_text = text
        .replace("example.org: mail2", "example.org: mail3")
        .replace("moving@example.com: mail2", "moving@example.com: mail3");
    let new = d.path().join("routing.new.yaml");
    std::fs::write(&new, new_text).expect("write");
    let (code, out, err) = run(&["routes", "diff", s(&old), s(&new)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("domain example.org: mail2 -> mail3"), "{out}");
    assert!(
        out.contains("user moving@example.com: mail2 -> mail3"),
        "{out}"
    );
    assert!(out.contains("summary: 1 domains and 1 users move"), "{out}");
    let (code, out, _) = run(&["routes", "diff", s(&old), s(&old)]);
    assert_eq!((code, out.as_str()), (0, "no changes\n"));
    std::fs::write(&new, "backends: [").expect("write");
    let (code, _, err) = run(&["routes", "diff", s(&old), s(&new)]);
    assert_eq!(code, 2);
    assert!(err.contains("routing.new.yaml"), "{err}");
}
