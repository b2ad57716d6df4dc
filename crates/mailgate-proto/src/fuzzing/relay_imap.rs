//! The IMAP relay target: client bytes through the front engine, the login relayed to a
//! scripted, well-behaved IMAP backend.

use super::relay::*;
use super::upstream::addr;
use super::*;

/// A minimal, correct IMAP server for the relay: frames lines and synchronizing literals,
/// answers CAPABILITY, STARTTLS, ID, LOGIN and AUTHENTICATE, and checks what it receives.
pub(crate) struct ImapBackend<'a> {
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
pub(crate) fn sync_literal(body: &[u8]) -> Option<usize> {
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
pub(crate) fn astring<'s>(
    s: &'s [u8],
    offset: usize,
    literals: &[(usize, usize)],
) -> (Vec<u8>, &'s [u8]) {
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
pub(crate) fn relay_imap(
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
