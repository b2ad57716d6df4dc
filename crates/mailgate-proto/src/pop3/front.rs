//! mailgate acting as POP3 server towards the client, until the login is relayed.
//!
//! RFC 1939 AUTHORIZATION state plus CAPA (RFC 2449), STLS (RFC 2595), AUTH (RFC 5034)
//! and response codes (RFC 2449, RFC 3206). The engine is sans-I/O: [`Pop3Front::feed`]
//! appends bytes, [`Pop3Front::next_action`] parses at most one line at a time and says
//! what to do. The routing action ([`FrontAction::Login`]) comes only at PASS or at the
//! end of an AUTH exchange, never at USER. docs/protocol.md lists every answer.

use std::collections::VecDeque;
use std::fmt;

use super::framing::{Framed, frame, split_verb, take_line};
use super::replies as r;
use super::sasl_step::{self, SaslStep, StepOutcome};
use crate::action::{CloseReason, FrontAction, LoginVerdict};
use crate::config::FrontConfig;
use crate::login::{Credentials, LoginRequest};
use crate::sasl;
use crate::secret::Secret;

/// Where the engine is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading command lines.
    Command,
    /// Inside an AUTH exchange, reading SASL response lines.
    Sasl(SaslStep),
    /// `Login` was returned; waiting for `login_result`. Input is kept, not parsed.
    LoginInFlight,
    /// `StartTls` was returned; waiting for `tls_started`.
    AwaitTls,
    /// `Close` was queued or returned: nothing more happens.
    Closed,
    /// The backend accepted the login: the engine is finished.
    Done,
}

/// The client-facing POP3 engine.
pub struct Pop3Front {
    config: FrontConfig,
    tls_active: bool,
    /// Unparsed client bytes, at most `buffer_cap()` long.
    buf: Vec<u8>,
    /// Bytes were dropped because the buffer was full: the session must close.
    overflow: bool,
    state: State,
    /// The name given by USER, waiting for PASS.
    user: Option<String>,
    bad_commands: u32,
    queue: VecDeque<FrontAction>,
}

impl fmt::Debug for Pop3Front {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The buffer may hold a PASS line or a SASL response: print its length only.
        f.debug_struct("Pop3Front")
            .field("tls_active", &self.tls_active)
            .field("state", &self.state)
            .field("buffered", &self.buf.len())
            .field("overflow", &self.overflow)
            .field("user", &crate::redact::opt_len(&self.user))
            .field("bad_commands", &self.bad_commands)
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl Pop3Front {
    /// A new engine; `tls_active` is true on implicit-TLS listeners.
    pub fn new(config: FrontConfig, tls_active: bool) -> Self {
        Pop3Front {
            config,
            tls_active,
            buf: Vec::new(),
            overflow: false,
            state: State::Command,
            user: None,
            bad_commands: 0,
            queue: VecDeque::new(),
        }
    }

    /// The greeting, `+OK text\r\n` (never an APOP timestamp).
    pub fn greeting(&self) -> Vec<u8> {
        r::line(b"+OK ", self.config.greeting_text.as_bytes())
    }

    /// Append bytes read from the client. At most `max(pop3_max_line, pop3_max_sasl_line)`
    /// bytes are kept; more makes the engine close the session (`LineTooLong`).
    pub fn feed(&mut self, data: &[u8]) {
        if self.state == State::Closed {
            return;
        }
        let room = self.buffer_cap().saturating_sub(self.buf.len());
        if data.len() > room {
            self.overflow = true;
        }
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// The next action, or `None` when more bytes are needed (or a login is in flight).
    ///
    /// While a login is in flight (and after `Accepted`) this returns `None`, except
    /// `Close(LineTooLong)` when the client sent more than the buffer limit meanwhile.
    pub fn next_action(&mut self) -> Option<FrontAction> {
        loop {
            if let Some(action) = self.queue.pop_front() {
                if action == FrontAction::StartTls && !self.buf.is_empty() {
                    // Bytes arrived after STLS before the handshake (RFC 2595 §4 injection).
                    return Some(self.close_now(CloseReason::StartTlsInjection));
                }
                return Some(action);
            }
            match self.state {
                State::Command | State::Sasl(_) => {}
                State::LoginInFlight | State::Done if self.overflow => {
                    return Some(self.close_now(CloseReason::LineTooLong));
                }
                _ => return None,
            }
            match frame(&self.buf, self.line_limit()) {
                Framed::NeedMore if !self.overflow => return None,
                Framed::NeedMore | Framed::TooLong => {
                    self.send(r::ERR_LINE_TOO_LONG);
                    self.close(CloseReason::LineTooLong);
                }
                Framed::Line { content, consumed } => {
                    let line = take_line(&mut self.buf, content, consumed);
                    self.handle_line(&line);
                }
            }
        }
    }

    /// The TLS handshake after STLS completed: capabilities change, state starts over.
    pub fn tls_started(&mut self) {
        if self.state != State::AwaitTls {
            return;
        }
        self.tls_active = true;
        self.buf.clear();
        self.overflow = false;
        self.user = None;
        self.state = State::Command;
    }

    /// Report the outcome of the login the engine asked for. Returns the bytes to send
    /// to the client. After `Accepted` the engine is finished: call `into_remaining()`.
    ///
    /// A refused login counts as a bad command; at the limit the next `next_action` is
    /// `Close(TooManyBadCommands)`.
    pub fn login_result(&mut self, verdict: LoginVerdict) -> Vec<u8> {
        if self.state != State::LoginInFlight {
            return Vec::new();
        }
        match verdict {
            LoginVerdict::Accepted(reply) => {
                self.state = State::Done;
                let mut out = reply.untagged;
                out.extend_from_slice(&r::sanitize(&reply.status, r::MAX_TEXT));
                out.extend_from_slice(b"\r\n");
                out
            }
            LoginVerdict::Rejected(reply) => {
                self.state = State::Command;
                let out = if reply.status.starts_with(b"-ERR") {
                    r::line(b"", &reply.status)
                } else {
                    r::ERR_AUTH_FAILED.to_vec()
                };
                self.count_bad();
                out
            }
            // The backend's own temporary trouble: its line (with its code) at once, and
            // no bad-command count: the client did nothing wrong.
            LoginVerdict::Temporary(reply, _) => {
                self.state = State::Command;
                if reply.status.starts_with(b"-ERR") {
                    r::line(b"", &reply.status)
                } else {
                    r::line(
                        b"-ERR [SYS/TEMP] ",
                        b"Temporary failure, please try again later",
                    )
                }
            }
            LoginVerdict::AuthFailed => {
                self.state = State::Command;
                self.count_bad();
                r::ERR_AUTH_FAILED.to_vec()
            }
            LoginVerdict::Unavailable(msg) => {
                self.state = State::Command;
                r::line(b"-ERR [SYS/TEMP] ", msg.as_bytes())
            }
        }
    }

    /// Bytes the client sent after its login command (pipelined); forwarded to the
    /// backend unchanged once spliced.
    pub fn into_remaining(self) -> Vec<u8> {
        self.buf
    }

    /// `-ERR [SYS/TEMP] ...` for shutdown.
    pub fn shutdown_bye(&self) -> Vec<u8> {
        r::SHUTDOWN.to_vec()
    }

    /// `-ERR ...` when the pre-auth deadline expired.
    pub fn timeout_bye(&self) -> Vec<u8> {
        r::TIMEOUT.to_vec()
    }

    /// Number of client bytes held unparsed (never more than the limits allow).
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// True once the backend accepted the login.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn buffer_cap(&self) -> usize {
        let l = &self.config.limits;
        l.pop3_max_line.max(l.pop3_max_sasl_line).max(1)
    }

    /// Command lines get the RFC 2449 limit, SASL lines (and AUTH with an initial
    /// response, which XOAUTH2 tokens easily push past 255 octets) the SASL limit.
    fn line_limit(&self) -> usize {
        let l = &self.config.limits;
        let sasl = matches!(self.state, State::Sasl(_))
            || self
                .buf
                .get(..5)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"AUTH "));
        if sasl {
            l.pop3_max_sasl_line.max(1)
        } else {
            l.pop3_max_line.max(1)
        }
    }

    fn login_allowed(&self) -> bool {
        self.tls_active || !self.config.require_tls_for_login
    }

    fn send(&mut self, bytes: &[u8]) {
        self.queue.push_back(FrontAction::Send(bytes.to_vec()));
    }

    fn close(&mut self, reason: CloseReason) {
        self.queue.push_back(FrontAction::Close(reason));
        self.state = State::Closed;
        self.buf.clear();
    }

    fn close_now(&mut self, reason: CloseReason) -> FrontAction {
        self.queue.clear();
        self.state = State::Closed;
        self.buf.clear();
        FrontAction::Close(reason)
    }

    /// Count a bad command; at the limit queue the close.
    fn count_bad(&mut self) {
        self.bad_commands = self.bad_commands.saturating_add(1);
        if self.bad_commands >= self.config.limits.max_bad_commands {
            self.close(CloseReason::TooManyBadCommands);
        }
    }

    fn bad(&mut self, reply: &[u8]) {
        self.send(reply);
        self.count_bad();
    }

    fn login(&mut self, credentials: Credentials) {
        self.user = None;
        self.state = State::LoginInFlight;
        self.queue
            .push_back(FrontAction::Login(LoginRequest { credentials }));
    }

    fn handle_line(&mut self, line: &[u8]) {
        if line.contains(&0) {
            self.send(r::ERR_PROTOCOL);
            self.close(CloseReason::ProtocolViolation);
            return;
        }
        match std::mem::replace(&mut self.state, State::Command) {
            State::Sasl(step) => self.sasl_response(step, line),
            State::Command => self.command(line),
            other => self.state = other,
        }
    }

    fn command(&mut self, line: &[u8]) {
        let (verb, arg) = split_verb(line);
        let is = |name: &[u8]| verb.eq_ignore_ascii_case(name);
        if is(b"CAPA") {
            if arg.is_some() {
                return self.bad(r::ERR_SYNTAX);
            }
            let offer_stls = self.config.tls_available && !self.tls_active;
            let mechanisms = self.config.advertised.mechanism_names(self.config.oauth);
            let capa = r::capa(self.login_allowed(), offer_stls, &mechanisms);
            self.send(&capa);
        } else if is(b"QUIT") {
            self.send(r::QUIT_OK);
            self.close(CloseReason::ClientLogout);
        } else if is(b"STLS") {
            self.stls(arg);
        } else if is(b"USER") || is(b"PASS") || is(b"AUTH") {
            if !self.login_allowed() {
                return self.bad(r::ERR_TLS_REQUIRED);
            }
            if is(b"USER") {
                self.user_cmd(arg);
            } else if is(b"PASS") {
                self.pass_cmd(arg);
            } else {
                self.auth_cmd(arg);
            }
        } else if is(b"APOP") {
            self.bad(r::ERR_APOP);
        } else if r::TRANSACTION_VERBS.iter().any(|v| is(v)) {
            self.bad(r::ERR_NOT_LOGGED_IN);
        } else {
            self.bad(r::ERR_UNKNOWN);
        }
    }

    fn stls(&mut self, arg: Option<&[u8]>) {
        if arg.is_some() {
            self.bad(r::ERR_SYNTAX);
        } else if self.tls_active {
            self.bad(r::ERR_TLS_ACTIVE);
        } else if !self.config.tls_available {
            self.bad(r::ERR_TLS_UNAVAILABLE);
        } else if !self.buf.is_empty() {
            self.close(CloseReason::StartTlsInjection);
        } else {
            self.send(r::STLS_OK);
            self.queue.push_back(FrontAction::StartTls);
            self.state = State::AwaitTls;
        }
    }

    fn user_cmd(&mut self, arg: Option<&[u8]>) {
        match arg.map(sasl::login_user) {
            None | Some(Err(_)) => {
                self.user = None;
                self.bad(r::ERR_BAD_USER);
            }
            Some(Ok(name)) => {
                self.user = Some(name);
                self.send(r::USER_OK);
            }
        }
    }

    /// RFC 1939 §7: the rest of the line is the password, spaces included.
    fn pass_cmd(&mut self, arg: Option<&[u8]>) {
        let Some(user) = self.user.take() else {
            return self.bad(r::ERR_NO_USER);
        };
        match arg {
            Some(password) if !password.is_empty() => self.login(Credentials::Password {
                authzid: None,
                authcid: user,
                password: Secret::new(password),
            }),
            _ => self.bad(r::ERR_SYNTAX),
        }
    }

    fn auth_cmd(&mut self, arg: Option<&[u8]>) {
        let Some(arg) = arg else {
            let mechanisms = self.config.advertised.mechanism_names(self.config.oauth);
            let list = r::auth_list(&mechanisms);
            return self.send(&list);
        };
        self.user = None;
        let (mech, initial) = split_verb(arg);
        let Some(step) = SaslStep::for_mechanism(mech, self.config.oauth) else {
            return self.bad(r::ERR_SASL_MECH);
        };
        match initial {
            None => {
                self.send(step.first_challenge());
                self.state = State::Sasl(step);
            }
            Some(ir) if ir.contains(&b' ') => self.bad(r::ERR_SYNTAX),
            Some(ir) => self.sasl_response(step, ir),
        }
    }

    fn sasl_response(&mut self, step: SaslStep, line: &[u8]) {
        if line == b"*" {
            return self.send(r::ERR_SASL_CANCELLED);
        }
        match sasl_step::advance(step, line) {
            StepOutcome::Challenge(next, challenge) => {
                self.send(challenge);
                self.state = State::Sasl(next);
            }
            StepOutcome::Login(credentials) => self.login(credentials),
            StepOutcome::Invalid => self.bad(r::ERR_SASL_INVALID),
        }
    }
}
