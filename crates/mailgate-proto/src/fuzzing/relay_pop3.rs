//! The POP3 relay target: client bytes through the front engine, the login relayed to a
//! scripted, well-behaved POP3 backend.

use super::relay::*;
use super::upstream::addr;
use super::*;

/// A minimal, correct POP3 server for the relay (RFC 1939, 2449, 5034): checks every line
/// it receives (CRLF, at most 255 octets, credentials as the client gave them).
pub(crate) struct Pop3Backend<'a> {
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
                    if self.script.pipelining {
                        out.extend_from_slice(b"PIPELINING\r\n");
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

pub(crate) fn relay_pop3(login: &LoginRequest, script: Script) -> LoginVerdict {
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
