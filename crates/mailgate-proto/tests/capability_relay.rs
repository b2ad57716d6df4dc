//! The login relays and capabilities: a backend that lists SASL mechanisms but not the one
//! a login needs gets no credentials, and the client gets mailgate's clean refusal; the
//! relays report the list the login met (after STARTTLS/STLS); the front engines
//! advertise what they are given.

use mailgate_proto::capability::{IMAP_MECHANISM_UNSUPPORTED, POP3_MECHANISM_UNSUPPORTED};
use mailgate_proto::imap::{ImapFront, ImapUpstream};
use mailgate_proto::pop3::{Pop3Front, Pop3Upstream};
use mailgate_proto::{
    Advertised, Credentials, FrontAction, FrontConfig, Limits, LoginRequest, LoginVerdict,
    OAuthMechanism, Secret, UpstreamAction, UpstreamConfig,
};

fn config() -> UpstreamConfig {
    UpstreamConfig {
        limits: Limits::default(),
        starttls: false,
        forward: None,
    }
}

fn oauth() -> LoginRequest {
    LoginRequest {
        credentials: Credentials::OAuth {
            mechanism: OAuthMechanism::XOAuth2,
            user: "a@b".into(),
            initial_response: Secret::new("user=a@b\x01auth=Bearer t\x01\x01"),
        },
    }
}

fn password(authzid: Option<&str>) -> LoginRequest {
    LoginRequest {
        credentials: Credentials::Password {
            authzid: authzid.map(str::to_string),
            authcid: "a@b".into(),
            password: Secret::new(b"pw"),
        },
    }
}

/// Everything the engine asks for until it needs bytes: sent bytes as text, `DONE:<kind>`.
fn drain(mut next: impl FnMut() -> Option<UpstreamAction>) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(a) = next() {
        out.push(match a {
            UpstreamAction::Send(b) => format!("S:{}", String::from_utf8_lossy(&b)),
            UpstreamAction::StartTls => "TLS".into(),
            UpstreamAction::CredentialsNext => "CRED".into(),
            UpstreamAction::Done(LoginVerdict::Rejected(r)) => {
                format!("NO:{}", String::from_utf8_lossy(&r.status))
            }
            UpstreamAction::Done(v) => format!("DONE:{v:?}"),
        });
    }
    out
}

fn imap(greeting: &[u8], login: LoginRequest) -> (Vec<String>, ImapUpstream) {
    let mut up = ImapUpstream::new(config(), login);
    up.feed(greeting);
    let out = drain(|| up.next_action().expect("no error"));
    (out, up)
}

#[test]
fn imap_backend_without_the_mechanism_gets_no_credentials() {
    let (out, up) = imap(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n", oauth());
    assert_eq!(out, [format!("NO:{IMAP_MECHANISM_UNSUPPORTED}")]);
    let caps = up.capabilities().expect("read");
    assert!(caps.has_mechanism("PLAIN") && !caps.has_mechanism("XOAUTH2"));
    // With the mechanism listed the token goes out (SASL-IR absent: after `+`).
    let (out, _) = imap(b"* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] hi\r\n", oauth());
    assert_eq!(out, ["CRED", "S:mg1 AUTHENTICATE XOAUTH2\r\n"]);
    // PLAIN with an authorization identity needs AUTH=PLAIN; without one it is LOGIN.
    let (out, _) = imap(
        b"* OK [CAPABILITY IMAP4rev1 AUTH=LOGIN] hi\r\n",
        password(Some("z@b")),
    );
    assert_eq!(out, [format!("NO:{IMAP_MECHANISM_UNSUPPORTED}")]);
    let (out, _) = imap(
        b"* OK [CAPABILITY IMAP4rev1 AUTH=LOGIN] hi\r\n",
        password(None),
    );
    assert_eq!(out, ["CRED", "S:mg1 LOGIN \"a@b\" \"pw\"\r\n"]);
    // A list naming no mechanism at all says nothing about them: the login goes out.
    let (out, _) = imap(b"* OK [CAPABILITY IMAP4rev1 SASL-IR] hi\r\n", oauth());
    assert_eq!(out[0], "CRED");
}

fn pop3(input: &[u8], login: LoginRequest) -> (Vec<String>, Pop3Upstream) {
    let mut up = Pop3Upstream::new(config(), login);
    up.feed(input);
    let out = drain(|| up.next_action().expect("no error"));
    (out, up)
}

#[test]
fn pop3_backend_without_the_mechanism_gets_no_credentials() {
    let capa = b"+OK hi\r\n+OK\r\nUSER\r\nSASL PLAIN LOGIN\r\nTOP\r\n.\r\n";
    let (out, up) = pop3(capa, oauth());
    assert_eq!(
        out,
        [
            "S:CAPA\r\n".to_string(),
            format!("NO:{POP3_MECHANISM_UNSUPPORTED}")
        ]
    );
    let caps = up.capabilities().expect("read");
    assert!(caps.has("TOP") && caps.has_mechanism("LOGIN") && !caps.has("XCLIENT"));
    let (out, _) = pop3(capa, password(None));
    assert_eq!(out[1..], ["CRED", "S:USER a@b\r\n"]);
    let (out, _) = pop3(
        b"+OK hi\r\n+OK\r\nUSER\r\nSASL LOGIN\r\n.\r\n",
        password(Some("z@b")),
    );
    assert_eq!(out[1], format!("NO:{POP3_MECHANISM_UNSUPPORTED}"));
    // A server that refuses CAPA reports an empty list and gets the login.
    let (out, up) = pop3(b"+OK hi\r\n-ERR no\r\n", password(None));
    assert_eq!(out[1..], ["CRED", "S:USER a@b\r\n"]);
    assert!(up.capabilities().expect("answered").is_empty());
}

fn sent(action: Option<FrontAction>) -> String {
    match action {
        Some(FrontAction::Send(b)) => String::from_utf8_lossy(&b).into_owned(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn fronts_advertise_what_they_are_given() {
    let narrowed = Advertised {
        sasl_ir: false,
        id: false,
        mechanisms: [true, true, true, false],
    };
    let config = FrontConfig {
        tls_available: false,
        require_tls_for_login: false,
        oauth: true,
        advertised: narrowed,
        ..FrontConfig::default()
    };
    let f = ImapFront::new(config.clone(), false);
    assert_eq!(
        f.capabilities(),
        "IMAP4rev1 LITERAL- AUTH=PLAIN AUTH=LOGIN AUTH=XOAUTH2"
    );
    // Not advertised is not refused: the routed backend decides (and its relay answers).
    let mut f = ImapFront::new(config.clone(), false);
    f.feed(b"a AUTHENTICATE OAUTHBEARER bixhPWFAYiwBYXV0aD1CZWFyZXIgdAEB\r\n");
    assert!(matches!(f.next_action(), Some(FrontAction::Login(_))));
    let mut p = Pop3Front::new(config.clone(), false);
    p.feed(b"CAPA\r\nAUTH\r\n");
    let capa = sent(p.next_action());
    assert!(capa.contains("\r\nSASL PLAIN LOGIN XOAUTH2\r\n"), "{capa}");
    assert_eq!(
        sent(p.next_action()),
        "+OK\r\nPLAIN\r\nLOGIN\r\nXOAUTH2\r\n.\r\n"
    );
    // `oauth: false` stays the upper bound whatever the backends offer.
    let off = FrontConfig {
        oauth: false,
        ..config
    };
    let f = ImapFront::new(off, false);
    assert_eq!(f.capabilities(), "IMAP4rev1 LITERAL- AUTH=PLAIN AUTH=LOGIN");
}
