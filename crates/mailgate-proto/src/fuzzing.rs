//! Bodies of the fuzz targets in `crates/mailgate-proto/fuzz`, shared with the corpus
//! replay test (`tests/fuzz_corpus.rs`) so that `cargo test` runs every committed seed
//! through exactly what the fuzzer runs. Not an API: each function takes the fuzzer's
//! bytes, drives engines and panics when an oracle fails.
//!
//! Oracles beyond "never panics, never holds more than its limits":
//! - a client's bytes never produce a backend-fault answer (`[UNAVAILABLE]`,
//!   `[SERVERBUG]`, `[SYS/TEMP]`) from a front engine, and a client's login relayed to a
//!   well-behaved backend ([`imap_relay`], [`pop3_relay`]) never ends in an
//!   [`UpstreamError`] or a temporary verdict; the backend receives the credentials
//!   exactly as the client gave them, one well-formed command at a time;
//! - no `+` continuation follows a literal announced over `max_literal` (or a
//!   non-synchronizing one);
//! - after STARTTLS/STLS, bytes that arrived before the handshake are never parsed: the
//!   engine closes with `StartTlsInjection`, and right after `tls_started()` it has nothing
//!   to say until the client speaks again.
#![allow(clippy::missing_panics_doc)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::action::BackendReply;
use crate::imap::{ImapFront, ImapUpstream};
use crate::pop3::{Pop3Front, Pop3Upstream};
use crate::{
    ClientAddr, CloseReason, Credentials, ForwardInfo, FrontAction, FrontConfig, Limits,
    LoginRequest, LoginVerdict, OAuthMechanism, Secret, TempScope, UpstreamAction, UpstreamConfig,
    UpstreamError,
};

/// Response codes that blame the backend. A client's own bytes must never make mailgate
/// answer with one of them.
const BACKEND_FAULT_CODES: [&[u8]; 3] = [b"[UNAVAILABLE]", b"[SERVERBUG]", b"[SYS/TEMP]"];

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// IMAP: no line of `out` carries a backend-fault code after its tag (the tag is the
/// client's own choice and may be anything).
fn assert_no_imap_fault(out: &[u8], context: &str) {
    for line in out.split(|b| *b == b'\n') {
        let text = match line.iter().position(|b| *b == b' ') {
            Some(sp) => &line[sp + 1..],
            None => line,
        };
        for code in BACKEND_FAULT_CODES {
            assert!(
                !contains_ci(text, code),
                "{context}: client bytes alone produced a backend-fault answer"
            );
        }
    }
}

/// POP3: replies never echo the client, so no byte of `out` may carry a fault code.
fn assert_no_pop3_fault(out: &[u8], context: &str) {
    for code in BACKEND_FAULT_CODES {
        assert!(
            !contains_ci(out, code),
            "{context}: client bytes alone produced a backend-fault answer"
        );
    }
}

/// The literal `{n}` / `{n+}` announced at the end of `line` (CR/LF stripped) that a
/// server must not answer with `+`: over `max_literal`, or non-synchronizing.
fn forbids_continuation(line: &[u8], max_literal: usize) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(inner) = line.strip_suffix(b"}") else {
        return false;
    };
    let Some(open) = inner.iter().rposition(|b| *b == b'{') else {
        return false;
    };
    let spec = &inner[open + 1..];
    if spec.strip_suffix(b"+").is_some() {
        return true;
    }
    if spec.is_empty() || !spec.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let size = spec.iter().fold(0u64, |acc, d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    size > max_literal as u64
}

/// The input so far ends with a complete `STARTTLS` (or `STLS`) command line: nothing
/// follows it that the engine could have swallowed.
fn ends_with_command(fed: &[u8], name: &[u8]) -> bool {
    let line = fed.strip_suffix(b"\n").unwrap_or(fed);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    fed.ends_with(b"\n") && line.len() >= name.len() && {
        let tail = &line[line.len() - name.len()..];
        tail.eq_ignore_ascii_case(name)
    }
}

fn imap_reply(status: &str) -> BackendReply {
    BackendReply {
        untagged: b"* CAPABILITY IMAP4rev1\r\n".to_vec(),
        status: status.as_bytes().to_vec(),
    }
}

/// The client-facing IMAP engine: arbitrary bytes in arbitrary splits, logins answered
/// with every verdict, STARTTLS completed or followed by injected bytes.
///
/// Byte 0: bits 0-3 chunk size - 1, 0x10 require TLS for login, 0x20 OAuth, 0x40 implicit
/// TLS, 0x80 inject the next chunk between STARTTLS and the handshake.
pub fn imap_front(data: &[u8]) {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_line: 256,
        max_sasl_line: 512,
        max_id_line: 1024,
        max_literal: 128,
        max_bad_commands: 20,
        ..Limits::default()
    };
    let cap = limits
        .max_line
        .max(limits.max_sasl_line)
        .max(limits.max_id_line)
        + 2 * limits.max_literal;
    let max_literal = limits.max_literal;
    let config = FrontConfig {
        limits,
        require_tls_for_login: control & 0x10 != 0,
        oauth: control & 0x20 != 0,
        ..FrontConfig::default()
    };
    let inject = control & 0x80 != 0;
    let mut front = ImapFront::new(config, control & 0x40 != 0);
    assert_no_imap_fault(&front.greeting(), "greeting");
    let chunk = usize::from(control & 0x0f) + 1;
    let mut fed: Vec<u8> = Vec::with_capacity(input.len());
    let mut verdicts = 0u8;
    let mut tls_pending = false;
    for piece in input.chunks(chunk) {
        fed.extend_from_slice(piece);
        front.feed(piece);
        if tls_pending {
            // The client spoke between the STARTTLS OK and the handshake.
            assert_eq!(
                front.next_action(),
                Some(FrontAction::Close(CloseReason::StartTlsInjection)),
                "bytes before the TLS handshake were not refused"
            );
            assert_eq!(front.next_action(), None, "an action after the close");
            return;
        }
        // Oracle (ii), exact with one byte per read: the line that just ended announced a
        // literal that must not get a `+`.
        let no_plus = chunk == 1 && piece == b"\n" && {
            let line_end = fed.len() - 1;
            let start = fed[..line_end]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |p| p + 1);
            forbids_continuation(&fed[start..line_end], max_literal)
        };
        while let Some(action) = front.next_action() {
            match action {
                FrontAction::Login(_) => {
                    verdicts = verdicts.wrapping_add(1);
                    let (verdict, client_fault) = match verdicts % 5 {
                        0 => (LoginVerdict::Accepted(imap_reply("OK Logged in")), true),
                        1 => (
                            LoginVerdict::Rejected(imap_reply(
                                "NO [AUTHENTICATIONFAILED] Authentication failed.",
                            )),
                            true,
                        ),
                        2 => (LoginVerdict::AuthFailed, true),
                        3 => (
                            LoginVerdict::Temporary(
                                imap_reply("NO [UNAVAILABLE] busy"),
                                TempScope::Backend,
                            ),
                            false,
                        ),
                        _ => (LoginVerdict::Unavailable("down\r\n".into()), false),
                    };
                    let out = front.login_result(verdict);
                    assert!(out.ends_with(b"\r\n"), "login answer is not a line");
                    if client_fault {
                        assert_no_imap_fault(&out, "login answer");
                    }
                }
                FrontAction::StartTls => {
                    assert!(
                        ends_with_command(&fed, b"STARTTLS"),
                        "STARTTLS accepted with bytes after it"
                    );
                    if inject {
                        tls_pending = true;
                    } else {
                        front.tls_started();
                        assert_eq!(
                            front.next_action(),
                            None,
                            "bytes from before the TLS handshake were parsed"
                        );
                    }
                }
                FrontAction::Send(bytes) => {
                    assert!(
                        !(no_plus && bytes.starts_with(b"+")),
                        "`+` continuation for a refused literal"
                    );
                    assert_no_imap_fault(&bytes, "reply");
                }
                FrontAction::Close(_) => {}
            }
        }
        assert!(front.buffered() <= cap + chunk, "engine holds too much");
        if front.is_finished() {
            break;
        }
    }
    let _ = front.client_id();
    let finished = front.is_finished();
    let remaining = front.into_remaining();
    if finished {
        // What the client pipelined after its login reaches the backend unchanged.
        assert!(fed.ends_with(&remaining), "pipelined bytes changed or lost");
    }
}

/// The client-facing POP3 engine: arbitrary bytes in arbitrary splits, logins answered
/// with every verdict, STLS completed or followed by injected bytes.
///
/// Byte 0: bits 0-3 chunk size - 1, 0x10 require TLS for login, 0x20 OAuth, 0x40 implicit
/// TLS, 0x80 inject the next chunk between STLS and the handshake.
pub fn pop3_front(data: &[u8]) {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        pop3_max_line: 64,
        pop3_max_sasl_line: 256,
        max_bad_commands: 20,
        ..Limits::default()
    };
    let cap = limits.pop3_max_sasl_line;
    let config = FrontConfig {
        limits,
        require_tls_for_login: control & 0x10 != 0,
        oauth: control & 0x20 != 0,
        ..FrontConfig::default()
    };
    let inject = control & 0x80 != 0;
    let mut front = Pop3Front::new(config, control & 0x40 != 0);
    assert_no_pop3_fault(&front.greeting(), "greeting");
    let chunk = usize::from(control & 0x0f) + 1;
    let mut fed: Vec<u8> = Vec::with_capacity(input.len());
    let mut verdicts = 0u8;
    let mut tls_pending = false;
    for piece in input.chunks(chunk) {
        fed.extend_from_slice(piece);
        front.feed(piece);
        assert!(front.buffered_len() <= cap, "engine holds too much");
        if tls_pending {
            // The client spoke after the STLS OK, before the handshake: the engine may
            // refuse at once, and must at least drop the bytes at the handshake.
            match front.next_action() {
                None => {
                    front.tls_started();
                    assert_eq!(front.buffered_len(), 0, "bytes from before STLS kept");
                    assert_eq!(front.next_action(), None, "bytes from before STLS parsed");
                }
                Some(FrontAction::Close(CloseReason::StartTlsInjection)) => {}
                Some(_) => panic!("bytes before the TLS handshake were parsed"),
            }
            return;
        }
        while let Some(action) = front.next_action() {
            match action {
                FrontAction::Login(_) => {
                    verdicts = verdicts.wrapping_add(1);
                    let reply = |status: &str| BackendReply {
                        untagged: Vec::new(),
                        status: status.as_bytes().to_vec(),
                    };
                    let (verdict, client_fault) = match verdicts % 5 {
                        0 => (LoginVerdict::Accepted(reply("+OK in")), true),
                        1 => (
                            LoginVerdict::Rejected(reply("-ERR [AUTH] Authentication failed.")),
                            true,
                        ),
                        2 => (LoginVerdict::AuthFailed, true),
                        3 => (
                            LoginVerdict::Temporary(
                                reply("-ERR [SYS/TEMP] busy"),
                                TempScope::Backend,
                            ),
                            false,
                        ),
                        _ => (LoginVerdict::Unavailable("down\r\n".into()), false),
                    };
                    let out = front.login_result(verdict);
                    assert!(out.ends_with(b"\r\n"), "login answer is not a line");
                    assert!(
                        !out[..out.len() - 2].contains(&b'\n'),
                        "login answer is more than one line"
                    );
                    if client_fault {
                        assert_no_pop3_fault(&out, "login answer");
                    }
                }
                FrontAction::StartTls => {
                    assert!(
                        ends_with_command(&fed, b"STLS"),
                        "STLS accepted with bytes after it"
                    );
                    if inject {
                        tls_pending = true;
                    } else {
                        front.tls_started();
                        assert_eq!(
                            front.next_action(),
                            None,
                            "bytes from before the TLS handshake were parsed"
                        );
                    }
                }
                FrontAction::Send(bytes) => {
                    assert!(bytes.ends_with(b"\r\n"), "reply is not a line");
                    assert_no_pop3_fault(&bytes, "reply");
                }
                FrontAction::Close(_) => {}
            }
        }
        if front.is_done() {
            break;
        }
    }
    let finished = front.is_done();
    let remaining = front.into_remaining();
    assert!(remaining.len() <= cap, "engine holds too much");
    if finished {
        // What the client pipelined after its login reaches the backend unchanged.
        assert!(fed.ends_with(&remaining), "pipelined bytes changed or lost");
    }
}

fn addr(ip: &str, port: u16) -> ClientAddr {
    ClientAddr {
        ip: ip.into(),
        port,
    }
}

/// The IMAP login relay with a hostile backend: arbitrary responses in arbitrary splits,
/// for every credential form and with STARTTLS/ID forwarding toggled. Errors are final.
///
/// Byte 0: bits 0-1 credential form, 0x04 forward the client (ID), 0x08 STARTTLS, bits
/// 4-7 chunk size - 1.
pub fn imap_upstream(data: &[u8]) {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let credentials = match control & 0x03 {
        0 => Credentials::Password {
            authzid: None,
            authcid: "alice".into(),
            password: Secret::new("p\"w"),
        },
        1 => Credentials::Password {
            authzid: None,
            authcid: "alice".into(),
            password: Secret::new("pä"),
        },
        2 => Credentials::Password {
            authzid: Some("z".into()),
            authcid: "alice".into(),
            password: Secret::new("pw"),
        },
        _ => Credentials::OAuth {
            mechanism: OAuthMechanism::XOAuth2,
            user: "alice".into(),
            initial_response: Secret::new("user=alice\x01auth=Bearer t\x01\x01"),
        },
    };
    let forward = (control & 0x04 != 0).then(|| ForwardInfo {
        client: addr("192.0.2.1", 1),
        connected: addr("192.0.2.2", 143),
        session_id: "s".into(),
        client_tls: false,
        proxy_ttl: crate::login::PROXY_TTL,
        client_id: vec![("name".into(), Some("x".into()))],
    });
    let config = UpstreamConfig {
        limits: Limits {
            upstream_max_line: 512,
            upstream_max_untagged: 16,
            ..Limits::default()
        },
        starttls: control & 0x08 != 0,
        forward,
    };
    let mut up = ImapUpstream::new(config, LoginRequest { credentials });
    let chunk = usize::from(control >> 4) + 1;
    for piece in input.chunks(chunk) {
        up.feed(piece);
        loop {
            match up.next_action() {
                Ok(Some(UpstreamAction::StartTls)) => up.tls_started(),
                Ok(Some(UpstreamAction::Done(_))) => return,
                Ok(Some(UpstreamAction::Send(bytes))) => {
                    assert!(bytes.ends_with(b"\r\n"), "command is not a line");
                }
                Ok(Some(UpstreamAction::CredentialsNext)) => {}
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(up.next_action(), Err(e), "an error was not final");
                    return;
                }
            }
        }
    }
}

/// The POP3 login relay with a hostile backend: arbitrary bytes in arbitrary splits,
/// every credential kind, STLS and XCLIENT on or off. Errors are final, buffers bounded.
///
/// Byte 0: bits 0-3 chunk size - 1, 0x10 STLS, 0x20 XCLIENT, bits 6-7 credential form.
pub fn pop3_upstream(data: &[u8]) {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        upstream_max_line: 128,
        upstream_max_untagged: 8,
        ..Limits::default()
    };
    let cap = limits.upstream_max_line;
    let config = UpstreamConfig {
        limits,
        starttls: control & 0x10 != 0,
        forward: (control & 0x20 != 0).then(|| ForwardInfo {
            client: addr("192.0.2.7", 4242),
            connected: addr("127.0.0.1", 4242),
            session_id: "s".into(),
            client_tls: false,
            proxy_ttl: crate::login::PROXY_TTL,
            client_id: Vec::new(),
        }),
    };
    let credentials = match control >> 6 {
        0 => Credentials::Password {
            authzid: None,
            authcid: "alice".into(),
            password: Secret::new("pw"),
        },
        1 => Credentials::Password {
            authzid: Some("admin".into()),
            authcid: "alice".into(),
            password: Secret::new("x".repeat(300)),
        },
        2 => Credentials::OAuth {
            mechanism: OAuthMechanism::XOAuth2,
            user: "a".into(),
            initial_response: Secret::new("user=a\x01auth=Bearer t\x01\x01"),
        },
        _ => Credentials::OAuth {
            mechanism: OAuthMechanism::OAuthBearer,
            user: "a".into(),
            initial_response: Secret::new("n,a=a,\x01auth=Bearer t\x01\x01"),
        },
    };
    let mut up = Pop3Upstream::new(config, LoginRequest { credentials });
    let chunk = usize::from(control & 0x0f) + 1;
    let mut done = false;
    'outer: for piece in input.chunks(chunk) {
        up.feed(piece);
        loop {
            match up.next_action() {
                Ok(Some(UpstreamAction::StartTls)) => up.tls_started(),
                Ok(Some(UpstreamAction::Done(_))) => done = true,
                Ok(Some(UpstreamAction::Send(bytes))) => {
                    assert!(bytes.ends_with(b"\r\n"), "command is not a line");
                }
                Ok(Some(UpstreamAction::CredentialsNext)) => {}
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(up.next_action(), Err(e), "an error was not final");
                    break 'outer;
                }
            }
        }
        if done {
            break;
        }
    }
    assert!(up.into_remaining().len() <= cap, "engine holds too much");
}

/// How the scripted, well-behaved backend of a relay target behaves.
#[derive(Debug, Clone, Copy)]
struct Script {
    /// Accept the login (else refuse the credentials).
    accept: bool,
    /// IMAP: SASL-IR; POP3: `USER` in CAPA.
    sasl_ir: bool,
    /// IMAP: capabilities in the greeting (else only on CAPABILITY).
    caps_in_greeting: bool,
    /// IMAP: `ID`; POP3: `XCLIENT`.
    forwarding: bool,
    /// STARTTLS / STLS towards the backend.
    starttls: bool,
}

impl Script {
    fn from_byte(b: u8) -> Script {
        Script {
            accept: b & 0x01 != 0,
            sasl_ir: b & 0x02 != 0,
            caps_in_greeting: b & 0x04 != 0,
            forwarding: b & 0x08 != 0,
            starttls: b & 0x10 != 0,
        }
    }
}

/// What the backend must receive for `login`.
#[derive(Debug)]
enum Expected<'a> {
    /// IMAP LOGIN / POP3 USER+PASS (or AUTH PLAIN without authzid).
    Password {
        authcid: &'a str,
        password: &'a [u8],
    },
    /// SASL PLAIN with an authorization identity.
    Plain(Vec<u8>),
    /// XOAUTH2 / OAUTHBEARER: the initial response unchanged.
    OAuth(&'static str, &'a [u8]),
}

fn expected(login: &LoginRequest) -> Expected<'_> {
    match &login.credentials {
        Credentials::Password {
            authzid: None,
            authcid,
            password,
        } => Expected::Password {
            authcid,
            password: password.expose(),
        },
        Credentials::Password {
            authzid: Some(z),
            authcid,
            password,
        } => {
            let mut plain = z.as_bytes().to_vec();
            plain.push(0);
            plain.extend_from_slice(authcid.as_bytes());
            plain.push(0);
            plain.extend_from_slice(password.expose());
            Expected::Plain(plain)
        }
        Credentials::OAuth {
            mechanism,
            initial_response,
            ..
        } => Expected::OAuth(mechanism.name(), initial_response.expose()),
    }
}

/// Check a SASL response the backend received against the credentials.
fn check_sasl(expected: &Expected<'_>, mechanism: &[u8], b64: &[u8]) {
    let decoded = if b64 == b"=" {
        Vec::new()
    } else {
        match STANDARD.decode(b64) {
            Ok(d) => d,
            Err(_) => panic!("the relay sent a SASL response that is not base64"),
        }
    };
    match expected {
        Expected::Plain(plain) => {
            assert!(mechanism.eq_ignore_ascii_case(b"PLAIN"), "wrong mechanism");
            assert!(
                decoded == *plain,
                "SASL PLAIN does not carry the client's credentials"
            );
        }
        Expected::OAuth(name, token) => {
            assert!(
                mechanism.eq_ignore_ascii_case(name.as_bytes()),
                "wrong mechanism"
            );
            assert!(
                decoded == *token,
                "the OAuth token was not relayed unchanged"
            );
        }
        Expected::Password { authcid, password } => {
            // POP3 carries a password login that USER/PASS cannot as AUTH PLAIN.
            assert!(mechanism.eq_ignore_ascii_case(b"PLAIN"), "wrong mechanism");
            let mut plain = vec![0];
            plain.extend_from_slice(authcid.as_bytes());
            plain.push(0);
            plain.extend_from_slice(password);
            assert!(
                decoded == plain,
                "SASL PLAIN does not carry the client's credentials"
            );
        }
    }
}

/// A minimal, correct IMAP server for the relay: frames lines and synchronizing literals,
/// answers CAPABILITY, STARTTLS, ID, LOGIN and AUTHENTICATE, and checks what it receives.
struct ImapBackend<'a> {
    script: Script,
    expected: Expected<'a>,
    buf: Vec<u8>,
    /// The command assembled so far, literal data inline.
    cmd: Vec<u8>,
    /// Literal data still expected, and where each literal's data starts in `cmd`.
    literal_left: usize,
    literals: Vec<(usize, usize)>,
    /// AUTHENTICATE without an initial response: (tag, mechanism) awaiting the response.
    auth: Option<(Vec<u8>, Vec<u8>)>,
    tls: bool,
}

impl<'a> ImapBackend<'a> {
    fn new(script: Script, expected: Expected<'a>) -> Self {
        ImapBackend {
            script,
            expected,
            buf: Vec::new(),
            cmd: Vec::new(),
            literal_left: 0,
            literals: Vec::new(),
            auth: None,
            tls: false,
        }
    }

    fn caps(&self) -> String {
        let mut caps = String::from("IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 AUTH=OAUTHBEARER");
        if self.script.sasl_ir {
            caps.push_str(" SASL-IR");
        }
        if self.script.forwarding {
            caps.push_str(" ID");
        }
        if self.script.starttls && !self.tls {
            caps.push_str(" STARTTLS");
        }
        caps
    }

    fn greeting(&self) -> Vec<u8> {
        if self.script.caps_in_greeting {
            format!("* OK [CAPABILITY {}] ready\r\n", self.caps()).into_bytes()
        } else {
            b"* OK ready\r\n".to_vec()
        }
    }

    fn verdict(&self, tag: &[u8]) -> Vec<u8> {
        let mut out = tag.to_vec();
        if self.script.accept {
            out.extend_from_slice(b" OK [CAPABILITY IMAP4rev1] Logged in\r\n");
        } else {
            out.extend_from_slice(b" NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
        }
        out
    }

    /// Bytes from the relay in; the backend's answer out.
    fn receive(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            if self.literal_left > 0 {
                if self.buf.is_empty() {
                    return out;
                }
                let n = self.literal_left.min(self.buf.len());
                self.cmd.extend(self.buf.drain(..n));
                self.literal_left -= n;
                continue;
            }
            let Some(lf) = self.buf.iter().position(|b| *b == b'\n') else {
                return out;
            };
            assert!(
                lf > 0 && self.buf[lf - 1] == b'\r',
                "the relay sent a line without CRLF"
            );
            let line: Vec<u8> = self.buf.drain(..=lf).collect();
            let body = &line[..line.len() - 2];
            assert!(
                !body.contains(&b'\r') && !body.contains(&0),
                "the relay sent a bare CR or NUL in a command line"
            );
            if let Some((tag, mechanism)) = self.auth.take() {
                assert!(body != b"*", "the relay cancelled its own AUTHENTICATE");
                check_sasl(&self.expected, &mechanism, body);
                out.extend(self.verdict(&tag));
                continue;
            }
            self.cmd.extend_from_slice(&line);
            if let Some(size) = sync_literal(body) {
                self.literal_left = size;
                self.literals.push((self.cmd.len(), size));
                out.extend_from_slice(b"+ OK\r\n");
                continue;
            }
            let cmd = std::mem::take(&mut self.cmd);
            let literals = std::mem::take(&mut self.literals);
            out.extend(self.command(&cmd, &literals));
        }
    }

    fn command(&mut self, cmd: &[u8], literals: &[(usize, usize)]) -> Vec<u8> {
        let mut words = cmd.splitn(3, |b| *b == b' ');
        let tag = words.next().unwrap_or_default().to_vec();
        assert!(
            tag.starts_with(b"mg"),
            "the relay sent a command without its own tag"
        );
        let name = words.next().unwrap_or_default();
        let name = name
            .strip_suffix(b"\r\n")
            .unwrap_or(name)
            .to_ascii_uppercase();
        let args_start = (tag.len() + 1 + name.len() + 1).min(cmd.len());
        let args = &cmd[args_start..];
        let ok = |tag: &[u8], untagged: &str| {
            let mut out = untagged.as_bytes().to_vec();
            out.extend_from_slice(tag);
            out.extend_from_slice(b" OK done\r\n");
            out
        };
        match name.as_slice() {
            b"CAPABILITY" => ok(&tag, &format!("* CAPABILITY {}\r\n", self.caps())),
            b"STARTTLS" => {
                assert!(self.script.starttls && !self.tls, "STARTTLS not offered");
                self.tls = true;
                ok(&tag, "")
            }
            b"ID" => {
                assert!(self.script.forwarding, "ID not offered");
                ok(&tag, "* ID NIL\r\n")
            }
            b"LOGIN" => {
                let (user, rest) = astring(args, args_start, literals);
                let rest = rest.strip_prefix(b" ").unwrap_or_else(|| {
                    panic!("LOGIN without a password argument");
                });
                let offset = cmd.len() - rest.len();
                let (password, rest) = astring(rest, offset, literals);
                assert!(rest == b"\r\n", "LOGIN with trailing bytes");
                match &self.expected {
                    Expected::Password {
                        authcid,
                        password: p,
                    } => {
                        assert!(
                            user == authcid.as_bytes(),
                            "LOGIN user differs from the client's"
                        );
                        assert!(password == *p, "LOGIN password differs from the client's");
                    }
                    _ => panic!("LOGIN for SASL credentials"),
                }
                self.verdict(&tag)
            }
            b"AUTHENTICATE" => {
                let args = args.strip_suffix(b"\r\n").unwrap_or(args);
                let mut parts = args.splitn(2, |b| *b == b' ');
                let mechanism = parts.next().unwrap_or_default().to_vec();
                match parts.next() {
                    Some(ir) => {
                        assert!(self.script.sasl_ir, "SASL-IR used without the capability");
                        check_sasl(&self.expected, &mechanism, ir);
                        self.verdict(&tag)
                    }
                    None => {
                        self.auth = Some((tag, mechanism));
                        b"+ \r\n".to_vec()
                    }
                }
            }
            _ => panic!("the relay sent an unexpected command"),
        }
    }
}

/// `{n}` at the end of a command line (the relay only sends synchronizing literals).
fn sync_literal(body: &[u8]) -> Option<usize> {
    let inner = body.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|b| *b == b'{')?;
    let digits = &inner[open + 1..];
    assert!(
        !digits.ends_with(b"+"),
        "the relay sent a non-synchronizing literal the backend did not offer"
    );
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Parse one IMAP astring (atom, quoted string, or a literal whose data is inline in the
/// command) at the start of `s`, which starts at `offset` in the command.
fn astring<'s>(s: &'s [u8], offset: usize, literals: &[(usize, usize)]) -> (Vec<u8>, &'s [u8]) {
    if let Some(rest) = s.strip_prefix(b"\"") {
        let mut value = Vec::new();
        let mut i = 0;
        while i < rest.len() {
            match rest[i] {
                b'\\' => {
                    let next = *rest
                        .get(i + 1)
                        .unwrap_or_else(|| panic!("bad quoted string"));
                    assert!(
                        next == b'\\' || next == b'"',
                        "bad escape in a quoted string"
                    );
                    value.push(next);
                    i += 2;
                }
                b'"' => return (value, &rest[i + 1..]),
                b => {
                    assert!(
                        (0x20..0x7f).contains(&b),
                        "unquotable byte in a quoted string"
                    );
                    value.push(b);
                    i += 1;
                }
            }
        }
        panic!("unterminated quoted string");
    }
    if s.starts_with(b"{") {
        let close = s
            .windows(3)
            .position(|w| w == b"}\r\n")
            .unwrap_or_else(|| panic!("bad literal announcement"));
        let data_start = offset + close + 3;
        let Some(&(_, size)) = literals.iter().find(|(start, _)| *start == data_start) else {
            panic!("literal data not where announced");
        };
        let from = close + 3;
        return (s[from..from + size].to_vec(), &s[from + size..]);
    }
    let end = s
        .iter()
        .position(|b| *b == b' ' || *b == b'\r')
        .unwrap_or(s.len());
    assert!(end > 0, "empty atom");
    (s[..end].to_vec(), &s[end..])
}

/// Relay `login` through an [`ImapUpstream`] to the scripted backend; the verdict.
fn relay_imap(
    login: &LoginRequest,
    script: Script,
    client_id: &[(String, Option<String>)],
) -> LoginVerdict {
    let config = UpstreamConfig {
        limits: Limits::default(),
        starttls: script.starttls,
        forward: Some(ForwardInfo {
            client: addr("192.0.2.1", 40000),
            connected: addr("127.0.0.1", 143),
            session_id: "s1".into(),
            client_tls: false,
            proxy_ttl: crate::login::PROXY_TTL,
            client_id: client_id.to_vec(),
        }),
    };
    let mut up = ImapUpstream::new(config, login.clone());
    let mut backend = ImapBackend::new(script, expected(login));
    up.feed(&backend.greeting());
    for _ in 0..64 {
        match up.next_action() {
            Ok(Some(UpstreamAction::Send(bytes))) => {
                let reply = backend.receive(&bytes);
                up.feed(&reply);
            }
            Ok(Some(UpstreamAction::StartTls)) => up.tls_started(),
            Ok(Some(UpstreamAction::CredentialsNext)) => {}
            Ok(Some(UpstreamAction::Done(verdict))) => return verdict,
            Ok(None) => panic!("the relay stalled against a well-behaved backend"),
            Err(e) => relay_failed(e),
        }
    }
    panic!("the relay did not finish against a well-behaved backend");
}

fn relay_failed(e: UpstreamError) -> ! {
    panic!("a client's login drove the relay to a backend fault: {e}");
}

fn check_relay_verdict(verdict: &LoginVerdict, accept: bool) {
    match verdict {
        LoginVerdict::Accepted(_) => assert!(accept, "accepted a login the backend refused"),
        LoginVerdict::Rejected(_) => assert!(!accept, "refused a login the backend accepted"),
        _ => panic!("a client's login produced a backend-fault verdict"),
    }
}

/// A client's bytes through the IMAP front engine, every login it asks for relayed through
/// the IMAP upstream engine to a well-behaved backend: never a backend fault.
///
/// Byte 0: bits 0-3 chunk size - 1, 0x10 OAuth, 0x20 implicit TLS (else STARTTLS is
/// offered), 0x40 require TLS for login. Byte 1: the backend's [`Script`].
pub fn imap_relay(data: &[u8]) {
    let [control, script, input @ ..] = data else {
        return;
    };
    let script = Script::from_byte(*script);
    let config = FrontConfig {
        require_tls_for_login: control & 0x40 != 0,
        oauth: control & 0x10 != 0,
        ..FrontConfig::default()
    };
    let mut front = ImapFront::new(config, control & 0x20 != 0);
    let chunk = usize::from(control & 0x0f) + 1;
    for piece in input.chunks(chunk) {
        front.feed(piece);
        while let Some(action) = front.next_action() {
            match action {
                FrontAction::Login(login) => {
                    let verdict = relay_imap(&login, script, front.client_id());
                    check_relay_verdict(&verdict, script.accept);
                    let out = front.login_result(verdict);
                    assert_no_imap_fault(&out, "relayed login");
                }
                FrontAction::StartTls => front.tls_started(),
                FrontAction::Send(bytes) => assert_no_imap_fault(&bytes, "reply"),
                FrontAction::Close(_) => {}
            }
        }
        if front.is_finished() {
            return;
        }
    }
}

/// A minimal, correct POP3 server for the relay (RFC 1939, 2449, 5034): checks every line
/// it receives (CRLF, at most 255 octets, credentials as the client gave them).
struct Pop3Backend<'a> {
    script: Script,
    expected: Expected<'a>,
    buf: Vec<u8>,
    user: Option<Vec<u8>>,
    /// `AUTH mech` without an initial response, awaiting it.
    auth: Option<Vec<u8>>,
    tls: bool,
}

impl<'a> Pop3Backend<'a> {
    fn verdict(&self) -> &'static [u8] {
        if self.script.accept {
            b"+OK Logged in.\r\n"
        } else {
            b"-ERR [AUTH] Authentication failed.\r\n"
        }
    }

    fn receive(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(lf) = self.buf.iter().position(|b| *b == b'\n') {
            assert!(
                lf > 0 && self.buf[lf - 1] == b'\r',
                "the relay sent a line without CRLF"
            );
            let line: Vec<u8> = self.buf.drain(..=lf).collect();
            let body = &line[..line.len() - 2];
            assert!(
                !body.contains(&b'\r') && !body.contains(&0),
                "the relay sent a bare CR or NUL in a command line"
            );
            if let Some(mechanism) = self.auth.take() {
                // A SASL response line may be longer than a command (RFC 5034 §4).
                check_sasl(&self.expected, &mechanism, body);
                out.extend_from_slice(self.verdict());
                continue;
            }
            assert!(
                line.len() <= 255,
                "the relay sent a command over 255 octets (RFC 2449)"
            );
            let (verb, arg) = match body.iter().position(|b| *b == b' ') {
                Some(sp) => (&body[..sp], Some(&body[sp + 1..])),
                None => (body, None),
            };
            match (verb.to_ascii_uppercase().as_slice(), arg) {
                (b"CAPA", None) => {
                    out.extend_from_slice(b"+OK\r\n");
                    if self.script.sasl_ir {
                        out.extend_from_slice(b"USER\r\n");
                    }
                    out.extend_from_slice(b"SASL PLAIN XOAUTH2 OAUTHBEARER\r\n");
                    if self.script.forwarding {
                        out.extend_from_slice(b"XCLIENT\r\n");
                    }
                    if self.script.starttls && !self.tls {
                        out.extend_from_slice(b"STLS\r\n");
                    }
                    out.extend_from_slice(b".\r\n");
                }
                (b"STLS", None) => {
                    assert!(self.script.starttls && !self.tls, "STLS not offered");
                    self.tls = true;
                    out.extend_from_slice(b"+OK Begin TLS.\r\n");
                }
                (b"XCLIENT", Some(_)) => {
                    assert!(self.script.forwarding, "XCLIENT not offered");
                    out.extend_from_slice(b"+OK\r\n");
                }
                (b"USER", Some(user)) => {
                    self.user = Some(user.to_vec());
                    out.extend_from_slice(b"+OK\r\n");
                }
                (b"PASS", Some(password)) => {
                    let user = self
                        .user
                        .take()
                        .unwrap_or_else(|| panic!("PASS before USER"));
                    match &self.expected {
                        Expected::Password {
                            authcid,
                            password: p,
                        } => {
                            assert!(user == authcid.as_bytes(), "USER differs from the client's");
                            assert!(password == *p, "PASS differs from the client's");
                        }
                        _ => panic!("USER/PASS for SASL credentials"),
                    }
                    out.extend_from_slice(self.verdict());
                }
                (b"AUTH", Some(rest)) => {
                    let mut parts = rest.splitn(2, |b| *b == b' ');
                    let mechanism = parts.next().unwrap_or_default().to_vec();
                    match parts.next() {
                        Some(ir) => {
                            check_sasl(&self.expected, &mechanism, ir);
                            out.extend_from_slice(self.verdict());
                        }
                        None => {
                            self.auth = Some(mechanism);
                            out.extend_from_slice(b"+ \r\n");
                        }
                    }
                }
                _ => panic!("the relay sent an unexpected command"),
            }
        }
        out
    }
}

fn relay_pop3(login: &LoginRequest, script: Script) -> LoginVerdict {
    let config = UpstreamConfig {
        limits: Limits::default(),
        starttls: script.starttls,
        forward: Some(ForwardInfo {
            client: addr("192.0.2.1", 40000),
            connected: addr("127.0.0.1", 110),
            session_id: "s1".into(),
            client_tls: false,
            proxy_ttl: crate::login::PROXY_TTL,
            client_id: Vec::new(),
        }),
    };
    let mut up = Pop3Upstream::new(config, login.clone());
    let mut backend = Pop3Backend {
        script,
        expected: expected(login),
        buf: Vec::new(),
        user: None,
        auth: None,
        tls: false,
    };
    up.feed(b"+OK ready\r\n");
    for _ in 0..64 {
        match up.next_action() {
            Ok(Some(UpstreamAction::Send(bytes))) => {
                let reply = backend.receive(&bytes);
                up.feed(&reply);
            }
            Ok(Some(UpstreamAction::StartTls)) => up.tls_started(),
            Ok(Some(UpstreamAction::CredentialsNext)) => {}
            Ok(Some(UpstreamAction::Done(verdict))) => return verdict,
            Ok(None) => panic!("the relay stalled against a well-behaved backend"),
            Err(e) => relay_failed(e),
        }
    }
    panic!("the relay did not finish against a well-behaved backend");
}

/// A client's bytes through the POP3 front engine, every login relayed through the POP3
/// upstream engine to a well-behaved backend: never a backend fault.
///
/// Byte 0: bits 0-3 chunk size - 1, 0x10 OAuth, 0x20 implicit TLS, 0x40 require TLS for
/// login. Byte 1: the backend's [`Script`] (0x02: `USER` in CAPA).
pub fn pop3_relay(data: &[u8]) {
    let [control, script, input @ ..] = data else {
        return;
    };
    let script = Script::from_byte(*script);
    let config = FrontConfig {
        require_tls_for_login: control & 0x40 != 0,
        oauth: control & 0x10 != 0,
        ..FrontConfig::default()
    };
    let mut front = Pop3Front::new(config, control & 0x20 != 0);
    let chunk = usize::from(control & 0x0f) + 1;
    for piece in input.chunks(chunk) {
        front.feed(piece);
        while let Some(action) = front.next_action() {
            match action {
                FrontAction::Login(login) => {
                    let verdict = relay_pop3(&login, script);
                    check_relay_verdict(&verdict, script.accept);
                    let out = front.login_result(verdict);
                    assert_no_pop3_fault(&out, "relayed login");
                }
                FrontAction::StartTls => front.tls_started(),
                FrontAction::Send(bytes) => assert_no_pop3_fault(&bytes, "reply"),
                FrontAction::Close(_) => {}
            }
        }
        if front.is_done() {
            return;
        }
    }
}
