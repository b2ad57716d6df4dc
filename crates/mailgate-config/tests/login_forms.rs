//! Every login form routes on its mailbox user: Dovecot's master-user form `user*master`
//! (separator `master_user_separator`, default `*`, empty = off), the SASL PLAIN authzid,
//! and a bare name with `default_domain`.

mod common;

use common::Dir;
use mailgate_config::{LoginForm, RouteRule};

const TABLE: &str = "backends:
  m1:
    host: 127.0.0.1
    imap_port: 1
  m2:
    host: 127.0.0.2
    imap_port: 1
domains:
  example.com: m1
  example.org: m2
users:
  moved@example.com: m2
default_domain: example.com
";

fn backend(r: &mailgate_config::RoutedLogin) -> Option<&str> {
    r.route.as_ref().map(|r| r.backend.name.as_str())
}

#[test]
fn master_user_form_routes_on_the_mailbox_user() {
    let d = Dir::new();
    let t = d.load(TABLE).expect("valid").table;
    assert_eq!(t.master_user_separator(), Some('*'));
    for (login, mailbox, to) in [
        ("bob@example.org*admin@example.com", "bob@example.org", "m2"),
        ("Bob@Example.ORG*admin", "bob@example.org", "m2"),
        ("alice*admin@example.org", "alice@example.com", "m1"),
        ("moved@example.com*admin", "moved@example.com", "m2"),
    ] {
        let r = t.route_login(login);
        assert_eq!(r.form, LoginForm::MasterUser, "{login}");
        assert_eq!(r.address, mailbox, "{login}");
        assert_eq!(backend(&r), Some(to), "{login}");
    }
    let r = t.route_login("moved@example.com*admin");
    assert_eq!(r.route.map(|r| r.rule), Some(RouteRule::UserOverride));
    // Nothing before the separator: no mailbox, no route (answered like a wrong password).
    let r = t.route_login("*admin@example.org");
    assert!(r.route.is_none());
    // An ordinary login is its own mailbox.
    let r = t.route_login("bob@example.org");
    assert_eq!((r.form, backend(&r)), (LoginForm::Own, Some("m2")));
}

#[test]
fn plain_authzid_routes_on_the_authzid_unsplit() {
    let d = Dir::new();
    let t = d.load(TABLE).expect("valid").table;
    let r = t.route_identity(Some("bob@example.org"), "admin@example.com");
    assert_eq!(r.form, LoginForm::Authzid);
    assert_eq!(
        (r.address.as_str(), backend(&r)),
        ("bob@example.org", Some("m2"))
    );
    // A bare authzid takes default_domain.
    let r = t.route_identity(Some("alice"), "admin@example.org");
    assert_eq!(
        (r.address.as_str(), backend(&r)),
        ("alice@example.com", Some("m1"))
    );
    // No (or an empty) authzid: the authcid, master-user form included.
    let r = t.route_identity(Some(""), "bob@example.org*admin");
    assert_eq!((r.form, backend(&r)), (LoginForm::MasterUser, Some("m2")));
    let r = t.route_identity(None, "alice@example.com");
    assert_eq!((r.form, backend(&r)), (LoginForm::Own, Some("m1")));
}

#[test]
fn bare_login_uses_default_domain() {
    let d = Dir::new();
    let t = d.load(TABLE).expect("valid").table;
    let r = t.route_login("Alice");
    assert_eq!(r.address, "alice@example.com");
    assert_eq!(r.domain.as_deref(), Some("example.com"));
    assert_eq!(backend(&r), Some("m1"));
    let r = t.route_login("moved");
    assert_eq!(r.route.map(|r| r.rule), Some(RouteRule::UserOverride));
}

#[test]
fn separator_is_configurable_and_can_be_turned_off() {
    let d = Dir::new();
    let t = d
        .load(&format!("{TABLE}master_user_separator: \"#\"\n"))
        .expect("valid")
        .table;
    assert_eq!(t.master_user_separator(), Some('#'));
    let r = t.route_login("bob@example.org#admin");
    assert_eq!((r.form, backend(&r)), (LoginForm::MasterUser, Some("m2")));
    // `*` is now an ordinary character: "example.org*admin" is not a domain.
    assert!(t.route_login("bob@example.org*admin").route.is_none());

    let t = d
        .load(&format!("{TABLE}master_user_separator: \"\"\n"))
        .expect("valid")
        .table;
    assert_eq!(t.master_user_separator(), None);
    let r = t.route_login("bob@example.org*admin");
    assert_eq!(r.form, LoginForm::Own);
    assert!(r.route.is_none());
}

#[test]
fn a_bad_separator_is_an_error_with_its_line() {
    let d = Dir::new();
    for bad in ["\"**\"", "\"@\"", "a", "\".\""] {
        let e = d
            .load(&format!("{TABLE}master_user_separator: {bad}\n"))
            .expect_err(bad);
        let text = e.to_string();
        assert!(text.contains("master_user_separator"), "{bad}: {text}");
        assert!(text.contains(":14:"), "{bad}: line 14 expected in {text}");
    }
}
