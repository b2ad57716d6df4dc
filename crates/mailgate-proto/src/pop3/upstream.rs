//! mailgate acting as POP3 client towards a backend: greeting, CAPA, optional STLS,
//! XCLIENT forwarding, the login replay re-serialized, and the verdict.
//!
//! Sequence: greeting (`+OK`, an APOP timestamp is ignored; `[XCLIENT]` in it is noted) →
//! `CAPA` → [`STLS` → handshake → `CAPA`] → [`XCLIENT ADDR= PORT= … TTL= CLIENT-TRANSPORT=`] →
//! `CredentialsNext` → `USER`/`PASS` or `AUTH PLAIN` or `AUTH XOAUTH2`/`OAUTHBEARER` →
//! `+OK` (accepted) / `-ERR` (rejected). The backend may be hostile: every line is
//! bounded by `upstream_max_line`, a CAPA list by `upstream_max_untagged` lines.
//!
//! A backend whose CAPA lists `PIPELINING` (RFC 2449 §6.6; Dovecot and Cyrus do) gets
//! XCLIENT, USER and PASS (or XCLIENT and AUTH) queued at once, so a driver writes them
//! together; the replies are read in order and judged as if each had been awaited. CAPA
//! itself is awaited (it says whether the backend pipelines, and which login it takes),
//! and so is STLS and the CAPA after it: no credentials before TLS is up.

use std::collections::VecDeque;
use std::fmt;

use super::framing::{Framed, MAX_COMMAND, frame, take_line};
use super::response::{BackendCaps, Status, resp_code, status};
use super::xclient::xclient_command;
use crate::action::{BackendReply, LoginVerdict, UpstreamAction, UpstreamError};
use crate::capability::{
    Capabilities, POP3_MECHANISM_UNSUPPORTED, lacks_mechanism_in, mechanism_refusal,
};
use crate::config::UpstreamConfig;
use crate::login::{Credentials, LoginRequest, OAuthMechanism};
use crate::sasl;
use crate::secret::Secret;
use crate::verdict::{Refusal, pop3_refusal};

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Greeting,
    CapaStatus,
    CapaList {
        lines: usize,
    },
    StlsReply,
    AwaitTls,
    XclientReply,
    UserReply,
    PassReply,
    /// `AUTH` sent. `pending`: the base64 response still to send on the first `+`.
    AuthReply {
        pending: Option<Secret>,
        oauth: Option<OAuthMechanism>,
        aborted: bool,
    },
    Done,
}

/// The backend-facing POP3 login relay.
pub struct Pop3Upstream {
    config: UpstreamConfig,
    login: LoginRequest,
    buf: Vec<u8>,
    overflow: bool,
    state: State,
    caps: BackendCaps,
    greeting_xclient: bool,
    tls_done: bool,
    forwarded: bool,
    credentials_announced: bool,
    capa_answered: bool,
    /// The login pipelined behind XCLIENT: the state to enter at XCLIENT's reply.
    after_xclient: Option<State>,
    /// PASS was pipelined behind USER.
    pass_sent: bool,
    queue: VecDeque<UpstreamAction>,
    failed: Option<UpstreamError>,
}

impl fmt::Debug for Pop3Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Queued `Send`s may carry a PASS line: they print their length only.
        f.debug_struct("Pop3Upstream")
            .field("config", &self.config)
            .field("login", &self.login)
            .field("state", &self.state)
            .field("buffered", &self.buf.len())
            .field("overflow", &self.overflow)
            .field("caps", &self.caps)
            .field("tls_done", &self.tls_done)
            .field("forwarded", &self.forwarded)
            .field("login_behind_xclient", &self.after_xclient.is_some())
            .field("pass_sent", &self.pass_sent)
            .field("queued", &self.queue)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Pop3Upstream {
    /// A relay for `login`, starting before the backend's greeting.
    pub fn new(config: UpstreamConfig, login: LoginRequest) -> Self {
        Pop3Upstream {
            config,
            login,
            buf: Vec::new(),
            overflow: false,
            state: State::Greeting,
            caps: BackendCaps::default(),
            greeting_xclient: false,
            tls_done: false,
            forwarded: false,
            credentials_announced: false,
            capa_answered: false,
            after_xclient: None,
            pass_sent: false,
            queue: VecDeque::new(),
            failed: None,
        }
    }

    /// Append bytes read from the backend (at most `upstream_max_line` are held).
    pub fn feed(&mut self, data: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        let room = self.cap().saturating_sub(self.buf.len());
        if data.len() > room {
            self.overflow = true;
        }
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// The next action, `Ok(None)` when more bytes are needed. An error is final: every
    /// later call returns it again.
    pub fn next_action(&mut self) -> Result<Option<UpstreamAction>, UpstreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            if let Some(action) = self.queue.pop_front() {
                if action == UpstreamAction::StartTls && !self.buf.is_empty() {
                    return Err(self.fail(UpstreamError::StartTlsInjection));
                }
                return Ok(Some(action));
            }
            match self.state {
                State::AwaitTls | State::Done => return Ok(None),
                _ => {}
            }
            match frame(&self.buf, self.cap()) {
                Framed::NeedMore if !self.overflow => return Ok(None),
                Framed::NeedMore | Framed::TooLong => {
                    return Err(self.fail(UpstreamError::LineTooLong));
                }
                Framed::Line { content, consumed } => {
                    let line = take_line(&mut self.buf, content, consumed);
                    if let Err(e) = self.handle_line(&line) {
                        return Err(self.fail(e));
                    }
                }
            }
        }
    }

    /// The TLS handshake after STLS completed: CAPA is asked again (RFC 2595 §4).
    pub fn tls_started(&mut self) {
        if self.state != State::AwaitTls {
            return;
        }
        self.tls_done = true;
        self.buf.clear();
        self.overflow = false;
        self.caps = BackendCaps::default();
        self.capa_answered = false;
        self.send(b"CAPA\r\n".to_vec());
        self.state = State::CapaStatus;
    }

    /// Bytes the backend sent after its verdict (passed to the client once spliced).
    pub fn into_remaining(self) -> Vec<u8> {
        self.buf
    }

    /// True when the backend accepted `XCLIENT` (the client's address was forwarded).
    pub fn forwarded(&self) -> bool {
        self.forwarded
    }

    /// The backend's CAPA list as the login met it (after STLS when it was used); empty
    /// for a server that refused CAPA, `None` before CAPA was answered.
    pub fn capabilities(&self) -> Option<Capabilities> {
        self.capa_answered.then(|| self.caps.list())
    }

    /// True when the backend advertised `XCLIENT` (greeting code or CAPA).
    pub fn xclient_offered(&self) -> bool {
        self.greeting_xclient || self.caps.xclient
    }

    fn cap(&self) -> usize {
        self.config.limits.upstream_max_line.max(1)
    }

    fn fail(&mut self, e: UpstreamError) -> UpstreamError {
        self.queue.clear();
        self.buf.clear();
        self.failed = Some(e.clone());
        e
    }

    fn send(&mut self, bytes: Vec<u8>) {
        self.queue.push_back(UpstreamAction::Send(bytes));
    }

    fn finish(&mut self, line: &[u8], accepted: bool) {
        let reply = BackendReply {
            untagged: Vec::new(),
            status: line.to_vec(),
        };
        let verdict = if accepted {
            LoginVerdict::Accepted(reply)
        } else {
            match pop3_refusal(line) {
                Refusal::Credentials => LoginVerdict::Rejected(reply),
                Refusal::Temporary(scope) => LoginVerdict::Temporary(reply, scope),
            }
        };
        self.queue.push_back(UpstreamAction::Done(verdict));
        self.state = State::Done;
    }

    fn handle_line(&mut self, line: &[u8]) -> Result<(), UpstreamError> {
        let state = std::mem::replace(&mut self.state, State::Done);
        if let State::CapaList { lines } = state {
            return self.capa_line(line, lines);
        }
        let st = status(line).ok_or(UpstreamError::Malformed)?;
        match (state, st) {
            (State::Greeting, Status::Ok(text)) => {
                self.greeting_xclient = resp_code(text).is_some_and(|c| {
                    c.split(|b| *b == b' ')
                        .any(|w| w.eq_ignore_ascii_case(b"XCLIENT"))
                });
                self.send(b"CAPA\r\n".to_vec());
                self.state = State::CapaStatus;
                Ok(())
            }
            (State::Greeting, Status::Err(_)) => Err(UpstreamError::GreetingRefused),
            (State::CapaStatus, Status::Ok(_)) => {
                self.caps.known = true;
                self.state = State::CapaList { lines: 0 };
                Ok(())
            }
            // An RFC 1939-only server: no capabilities known, go on.
            (State::CapaStatus, Status::Err(_)) => self.after_capa(),
            (State::StlsReply, Status::Ok(_)) => {
                if !self.buf.is_empty() {
                    return Err(UpstreamError::StartTlsInjection);
                }
                self.queue.push_back(UpstreamAction::StartTls);
                self.state = State::AwaitTls;
                Ok(())
            }
            (State::StlsReply, Status::Err(_)) => Err(UpstreamError::StartTlsRefused),
            (State::XclientReply, Status::Ok(_)) => {
                self.forwarded = true;
                self.login_after_xclient();
                Ok(())
            }
            // Forwarding is best effort: a refused XCLIENT does not block the login.
            (State::XclientReply, Status::Err(_)) => {
                self.login_after_xclient();
                Ok(())
            }
            (State::UserReply, Status::Ok(_)) if self.pass_sent => {
                self.state = State::PassReply;
                Ok(())
            }
            (State::UserReply, Status::Ok(_)) => {
                self.send_pass();
                Ok(())
            }
            (State::UserReply | State::PassReply, Status::Err(_)) => {
                self.finish(line, false);
                Ok(())
            }
            (State::PassReply | State::AuthReply { .. }, Status::Ok(_)) => {
                self.finish(line, true);
                Ok(())
            }
            (State::AuthReply { .. }, Status::Err(_)) => {
                self.finish(line, false);
                Ok(())
            }
            (
                State::AuthReply {
                    pending,
                    oauth,
                    aborted,
                },
                Status::Continue(_),
            ) => self.auth_challenge(pending, oauth, aborted),
            _ => Err(UpstreamError::Malformed),
        }
    }

    fn capa_line(&mut self, line: &[u8], lines: usize) -> Result<(), UpstreamError> {
        if line == b"." {
            return self.after_capa();
        }
        if lines >= self.config.limits.upstream_max_untagged {
            return Err(UpstreamError::TooManyLines);
        }
        // RFC 1939 §3 byte-stuffing: a leading ".." stands for ".".
        let line = if line.starts_with(b"..") {
            &line[1..]
        } else {
            line
        };
        self.caps.add_line(line);
        self.state = State::CapaList { lines: lines + 1 };
        Ok(())
    }

    fn after_capa(&mut self) -> Result<(), UpstreamError> {
        self.capa_answered = true;
        if self.config.starttls && !self.tls_done {
            if !self.caps.stls {
                return Err(UpstreamError::StartTlsRefused);
            }
            self.send(b"STLS\r\n".to_vec());
            self.state = State::StlsReply;
            return Ok(());
        }
        let xclient = self.xclient_offered();
        match self.config.forward.as_ref().and_then(xclient_command) {
            Some(cmd) if xclient => {
                self.send(cmd);
                if self.caps.pipelining && !lacks_mechanism_in(|| self.caps.list(), &self.login) {
                    self.start_login();
                    let login = std::mem::replace(&mut self.state, State::XclientReply);
                    self.after_xclient = Some(login);
                } else {
                    self.state = State::XclientReply;
                }
            }
            _ => self.start_login(),
        }
        Ok(())
    }

    /// XCLIENT was answered: the login, unless it was pipelined behind it already.
    fn login_after_xclient(&mut self) {
        match self.after_xclient.take() {
            Some(login) => self.state = login,
            None => self.start_login(),
        }
    }

    fn start_login(&mut self) {
        if lacks_mechanism_in(|| self.caps.list(), &self.login) {
            // Only the backend's error would follow: mailgate answers, sending no credentials.
            let refusal = mechanism_refusal(POP3_MECHANISM_UNSUPPORTED);
            self.queue.push_back(UpstreamAction::Done(refusal));
            self.state = State::Done;
            return;
        }
        if !self.credentials_announced {
            self.credentials_announced = true;
            self.queue.push_back(UpstreamAction::CredentialsNext);
        }
        let (line, state) = match &self.login.credentials {
            Credentials::Password {
                authzid: None,
                authcid,
                password,
            } if user_pass_safe(authcid, password) && (self.caps.user || !self.caps.sasl_plain) => {
                (command(b"USER ", authcid.as_bytes()), State::UserReply)
            }
            Credentials::Password {
                authzid,
                authcid,
                password,
            } => {
                let plain = sasl::encode_plain(authzid.as_deref(), authcid, password);
                auth_command("PLAIN", &plain, None)
            }
            Credentials::OAuth {
                mechanism,
                initial_response,
                ..
            } => auth_command(mechanism.name(), initial_response, Some(*mechanism)),
        };
        self.send(line);
        self.state = state;
        if self.state == State::UserReply && self.caps.pipelining {
            self.queue_pass();
            self.pass_sent = true;
        }
    }

    fn send_pass(&mut self) {
        self.queue_pass();
        self.state = State::PassReply;
    }

    fn queue_pass(&mut self) {
        if let Credentials::Password { password, .. } = &self.login.credentials {
            let line = command(b"PASS ", password.expose());
            self.send(line);
        }
    }

    fn auth_challenge(
        &mut self,
        pending: Option<Secret>,
        oauth: Option<OAuthMechanism>,
        aborted: bool,
    ) -> Result<(), UpstreamError> {
        // The first `+` after a long `AUTH mech` asks for the pending response; any later
        // one is an OAuth error challenge (RFC 7628 §3.2.3 / XOAUTH2), answered once with
        // the dummy response, after which the backend's -ERR follows.
        let (line, answered_error) = match (pending, oauth) {
            (Some(response), _) => (response.expose().to_vec(), false),
            (None, Some(OAuthMechanism::OAuthBearer)) if !aborted => (b"AQ==\r\n".to_vec(), true),
            (None, Some(OAuthMechanism::XOAuth2)) if !aborted => (b"\r\n".to_vec(), true),
            _ => return Err(UpstreamError::Malformed),
        };
        self.send(line);
        self.state = State::AuthReply {
            pending: None,
            oauth,
            aborted: answered_error,
        };
        Ok(())
    }
}

/// `verb arg\r\n`.
fn command(verb: &[u8], arg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(verb.len() + arg.len() + 2);
    out.extend_from_slice(verb);
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
    out
}

/// USER/PASS can carry these credentials: no CR/LF/NUL, no space in the name, and both
/// lines within 255 octets. Otherwise AUTH PLAIN (base64) carries them.
fn user_pass_safe(user: &str, password: &Secret) -> bool {
    let bad = |b: &u8| matches!(b, b'\r' | b'\n' | 0);
    !user.is_empty()
        && !password.is_empty()
        && !user.bytes().any(|b| bad(&b) || b == b' ')
        && !password.expose().iter().any(bad)
        && user.len() + 7 <= MAX_COMMAND
        && password.len() + 7 <= MAX_COMMAND
}

/// `AUTH mech b64` when it fits 255 octets, else `AUTH mech` and the response on `+`
/// (RFC 5034 §4).
fn auth_command(mech: &str, message: &Secret, oauth: Option<OAuthMechanism>) -> (Vec<u8>, State) {
    let b64 = sasl::encode_base64(message.expose());
    let short = format!("AUTH {mech}").into_bytes();
    if short.len() + 1 + b64.len() + 2 <= MAX_COMMAND {
        let mut verb = short;
        verb.push(b' ');
        let line = command(&verb, &b64);
        let state = State::AuthReply {
            pending: None,
            oauth,
            aborted: false,
        };
        (line, state)
    } else {
        let line = command(&short, b"");
        let state = State::AuthReply {
            pending: Some(Secret::new(command(&b64, b""))),
            oauth,
            aborted: false,
        };
        (line, state)
    }
}
