//! mailgate acting as IMAP server towards the client, until the login is relayed.
//!
//! Sans-I/O: the driver [`feed`](ImapFront::feed)s bytes in any split and drains
//! [`next_action`](ImapFront::next_action) until it returns `None`. Framing lives in
//! `framer`, syntax in `lexer`/`command`, SASL sequencing in `auth`; this module decides
//! what to answer (documented per command in docs/protocol.md).

use std::collections::VecDeque;
use std::fmt;

use super::auth::{Next, Step};
use super::caps::FrontCaps;
use super::command::{self, Command, IdFields, Parsed};
use super::framer::{Framed, Framer};
use super::lexer::{push_sanitized, sanitize_text, strip_eol, valid_tag};
use crate::action::{CloseReason, FrontAction, LoginVerdict};
use crate::config::FrontConfig;
use crate::login::{Credentials, LoginRequest};
use crate::redact::Len;
use crate::sasl;
use crate::secret::Secret;

/// Text of a wrong password, identical to Dovecot's so unknown users look the same.
const AUTH_FAILED: &str = "NO [AUTHENTICATIONFAILED] Authentication failed.";

/// Where the engine is. `Debug` shows tag lengths, not tags.
enum State {
    /// Reading commands.
    Command,
    /// Inside an AUTHENTICATE exchange, waiting for a client response line.
    Auth { tag: String, step: Step },
    /// A login was handed to the driver; nothing is parsed until `login_result`.
    LoginInFlight { tag: String },
    /// STARTTLS answered; waiting for the handshake.
    TlsPending,
    /// The backend accepted the login; the engine is finished.
    Done,
    /// A close was requested.
    Closed,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Command => f.write_str("Command"),
            State::Auth { tag, step } => f
                .debug_struct("Auth")
                .field("tag", &Len::of(tag))
                .field("step", step)
                .finish(),
            State::LoginInFlight { tag } => f
                .debug_struct("LoginInFlight")
                .field("tag", &Len::of(tag))
                .finish(),
            State::TlsPending => f.write_str("TlsPending"),
            State::Done => f.write_str("Done"),
            State::Closed => f.write_str("Closed"),
        }
    }
}

/// The client-facing IMAP engine.
///
/// `Debug` shows states, counts and lengths: the buffered input may hold a LOGIN line or
/// a literal password, the queued actions the replies.
pub struct ImapFront {
    config: FrontConfig,
    tls_active: bool,
    framer: Framer,
    out: VecDeque<FrontAction>,
    state: State,
    bad_commands: u32,
    client_id: IdFields,
}

impl fmt::Debug for ImapFront {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapFront")
            .field("tls_active", &self.tls_active)
            .field("state", &self.state)
            .field("framer", &self.framer)
            .field("queued", &self.out)
            .field("bad_commands", &self.bad_commands)
            .field("client_id_pairs", &self.client_id.len())
            .finish_non_exhaustive()
    }
}

impl ImapFront {
    /// A new engine; `tls_active` is true on implicit-TLS listeners.
    pub fn new(config: FrontConfig, tls_active: bool) -> Self {
        ImapFront {
            config,
            tls_active,
            framer: Framer::default(),
            out: VecDeque::new(),
            state: State::Command,
            bad_commands: 0,
            client_id: Vec::new(),
        }
    }

    fn caps(&self) -> FrontCaps {
        FrontCaps {
            starttls: self.config.tls_available && !self.tls_active,
            login_disabled: self.config.require_tls_for_login && !self.tls_active,
            oauth: self.config.oauth,
            advertised: self.config.advertised,
        }
    }

    /// The capabilities currently advertised (space separated), e.g. for tests and logs.
    pub fn capabilities(&self) -> String {
        self.caps().list()
    }

    /// The greeting, `* OK [CAPABILITY ...] text\r\n`.
    pub fn greeting(&self) -> Vec<u8> {
        const MAX_TEXT: usize = 200;
        let text = &self.config.greeting_text;
        let mut out = String::with_capacity(24 + FrontCaps::MAX_LEN + text.len().min(MAX_TEXT * 4));
        out.push_str("* OK [CAPABILITY ");
        self.caps().write_to(&mut out);
        out.push_str("] ");
        push_sanitized(&mut out, text, MAX_TEXT);
        out.push_str("\r\n");
        out.into_bytes()
    }

    /// Append bytes read from the client.
    ///
    /// While a login is in flight the bytes are kept (for `into_remaining()` or for
    /// parsing after a rejection), at most one command's worth (`max_line + 2 *
    /// max_literal`); more makes `next_action` return `Close(LineTooLong)`. Bytes fed
    /// after STARTTLS and before `tls_started()` make it return `Close(StartTlsInjection)`.
    pub fn feed(&mut self, data: &[u8]) {
        match self.state {
            State::Closed => {}
            State::TlsPending => {
                if !data.is_empty() {
                    self.close(CloseReason::StartTlsInjection);
                }
            }
            State::LoginInFlight { .. } => {
                let cap = Framer::command_cap(&self.config.limits);
                if self.framer.held() + data.len() > cap {
                    self.close(CloseReason::LineTooLong);
                } else {
                    self.framer.input.extend_from_slice(data);
                }
            }
            State::Command | State::Auth { .. } | State::Done => {
                self.framer.input.extend_from_slice(data)
            }
        }
    }

    /// Bytes currently buffered (unparsed input and a partial command).
    pub fn buffered(&self) -> usize {
        self.framer.held()
    }

    /// The next action, or `None` when more bytes are needed (or a login is in flight).
    pub fn next_action(&mut self) -> Option<FrontAction> {
        loop {
            if let Some(action) = self.out.pop_front() {
                return Some(action);
            }
            let progressed = match self.state {
                State::Command => self.step_command(),
                State::Auth { .. } => self.step_auth(),
                _ => false,
            };
            if !progressed {
                return None;
            }
        }
    }

    /// The TLS handshake after STARTTLS completed. Everything learnt before it is
    /// forgotten (RFC 3501 §6.2.1); capabilities now reflect the active TLS.
    pub fn tls_started(&mut self) {
        if matches!(self.state, State::TlsPending) {
            self.tls_active = true;
            self.framer.clear();
            self.client_id.clear();
            self.state = State::Command;
        }
    }

    /// Report the outcome of the login the engine asked for. Returns the bytes to send
    /// to the client. After `Accepted` the engine is finished: call `into_remaining()`.
    /// Otherwise keep draining `next_action()`: pipelined commands are parsed now, and
    /// the `max_bad_commands`-th refused login queues `* BYE` and `Close`.
    pub fn login_result(&mut self, verdict: LoginVerdict) -> Vec<u8> {
        let State::LoginInFlight { tag } = &self.state else {
            return Vec::new();
        };
        let tag = tag.clone();
        // A refused login counts as a bad command, so one connection cannot try
        // passwords without end; an unavailable backend is not the client's fault.
        let refused = matches!(
            verdict,
            LoginVerdict::Rejected(_) | LoginVerdict::AuthFailed
        );
        let (untagged, status, next) = match verdict {
            LoginVerdict::Accepted(r) => (r.untagged, r.status, State::Done),
            LoginVerdict::Rejected(r) | LoginVerdict::Temporary(r, _) => {
                (r.untagged, r.status, State::Command)
            }
            LoginVerdict::AuthFailed => (Vec::new(), AUTH_FAILED.into(), State::Command),
            LoginVerdict::Unavailable(msg) => {
                let msg = sanitize_text(&msg, 400);
                let status = format!("NO [UNAVAILABLE] {msg}").into_bytes();
                (Vec::new(), status, State::Command)
            }
        };
        self.state = next;
        let mut out = untagged;
        out.extend_from_slice(tag.as_bytes());
        out.push(b' ');
        out.extend(status.into_iter().filter(|&b| b != b'\r' && b != b'\n'));
        out.extend_from_slice(b"\r\n");
        if refused {
            self.bad();
        }
        out
    }

    /// True once the backend accepted the login (the session can be spliced).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// ID fields the client sent (forwarded to the backend).
    pub fn client_id(&self) -> &[(String, Option<String>)] {
        &self.client_id
    }

    /// Bytes the client sent after its login command (pipelined); forwarded to the
    /// backend unchanged once spliced.
    pub fn into_remaining(self) -> Vec<u8> {
        self.framer.input
    }

    /// `* BYE [UNAVAILABLE] ...` for shutdown.
    pub fn shutdown_bye(&self) -> Vec<u8> {
        b"* BYE [UNAVAILABLE] Server shutting down.\r\n".to_vec()
    }

    /// `* BYE ...` when the pre-auth deadline expired.
    pub fn timeout_bye(&self) -> Vec<u8> {
        b"* BYE Autologout; idle for too long.\r\n".to_vec()
    }

    fn send(&mut self, bytes: impl Into<Vec<u8>>) {
        self.out.push_back(FrontAction::Send(bytes.into()));
    }

    fn tagged(&mut self, tag: &str, status: &str) {
        self.send(format!("{tag} {status}\r\n"));
    }

    fn close(&mut self, reason: CloseReason) {
        self.out.push_back(FrontAction::Close(reason));
        self.state = State::Closed;
        self.framer.clear();
    }

    fn bye_close(&mut self, text: &str, reason: CloseReason) {
        self.send(format!("* BYE {text}\r\n"));
        self.close(reason);
    }

    /// Count a bad command; the `max_bad_commands`-th one closes the session.
    fn bad(&mut self) {
        self.bad_commands += 1;
        if self.bad_commands >= self.config.limits.max_bad_commands {
            self.bye_close(
                "Too many invalid commands.",
                CloseReason::TooManyBadCommands,
            );
        }
    }

    fn step_command(&mut self) -> bool {
        match self.framer.next(&self.config.limits) {
            Framed::Need => false,
            Framed::Continue => {
                self.send(&b"+ Ready for literal data\r\n"[..]);
                true
            }
            Framed::TooBig(tag) => {
                if valid_tag(&tag, self.config.limits.max_tag_len) {
                    let tag = String::from_utf8_lossy(&tag).into_owned();
                    self.tagged(&tag, "NO [TOOBIG] Literal too large.");
                } else {
                    self.send(&b"* BAD Invalid tag.\r\n"[..]);
                }
                self.bad();
                true
            }
            Framed::LiteralTooLarge => {
                self.bye_close("[TOOBIG] Literal too large.", CloseReason::LiteralTooLarge);
                true
            }
            Framed::LineTooLong => {
                self.bye_close("Command line too long.", CloseReason::LineTooLong);
                true
            }
            Framed::Command(cmd) => {
                self.dispatch(&cmd);
                true
            }
        }
    }

    fn step_auth(&mut self) -> bool {
        let limits = &self.config.limits;
        match self.framer.line(limits.max_line.max(limits.max_sasl_line)) {
            Err(_) => {
                self.bye_close("Command line too long.", CloseReason::LineTooLong);
                true
            }
            Ok(None) => false,
            Ok(Some(line)) => {
                let State::Auth { tag, step } = std::mem::replace(&mut self.state, State::Command)
                else {
                    return false;
                };
                let response = strip_eol(&line);
                if response == b"*" {
                    // RFC 3501 §6.2.2: the client cancelled; a new attempt may follow.
                    self.tagged(&tag, "BAD Authentication canceled.");
                } else {
                    self.auth_response(tag, step, response);
                }
                true
            }
        }
    }

    fn auth_response(&mut self, tag: String, step: Step, response: &[u8]) {
        let decoded = match sasl::decode_base64(response) {
            Ok(d) => d,
            Err(_) => {
                self.tagged(&tag, "BAD Invalid base64 data.");
                return self.bad();
            }
        };
        match step.respond(decoded) {
            Ok(Next::More(step)) => {
                self.send(step.challenge());
                self.state = State::Auth { tag, step };
            }
            Ok(Next::Done(credentials)) => self.begin_login(tag, credentials),
            Err(_) => {
                self.tagged(&tag, "BAD Invalid SASL response.");
                self.bad();
            }
        }
    }

    fn begin_login(&mut self, tag: String, credentials: Credentials) {
        self.out
            .push_back(FrontAction::Login(LoginRequest { credentials }));
        self.state = State::LoginInFlight { tag };
    }

    fn dispatch(&mut self, cmd: &[u8]) {
        let (tag, command) = match command::parse(cmd, &self.config.limits) {
            Parsed::BadTag => {
                self.send(&b"* BAD Invalid tag.\r\n"[..]);
                return self.bad();
            }
            Parsed::Invalid(tag) => {
                self.tagged(&tag, "BAD Invalid command syntax.");
                return self.bad();
            }
            Parsed::Ok(tag, command) => (tag, command),
        };
        let caps = self.caps();
        match command {
            Command::Capability => {
                let list = caps.list();
                self.send(format!(
                    "* CAPABILITY {list}\r\n{tag} OK CAPABILITY completed.\r\n"
                ));
            }
            Command::Noop => self.tagged(&tag, "OK NOOP completed."),
            Command::Logout => {
                self.send(format!(
                    "* BYE Logging out.\r\n{tag} OK LOGOUT completed.\r\n"
                ));
                self.close(CloseReason::ClientLogout);
            }
            Command::Id(fields) => {
                self.client_id = fields;
                self.send(format!(
                    "* ID (\"name\" \"mailgate\")\r\n{tag} OK ID completed.\r\n"
                ));
            }
            Command::StartTls if !caps.starttls => {
                self.tagged(&tag, "BAD STARTTLS not available.");
                self.bad();
            }
            Command::StartTls => {
                self.tagged(&tag, "OK Begin TLS negotiation now.");
                if self.framer.is_empty() {
                    self.out.push_back(FrontAction::StartTls);
                    self.state = State::TlsPending;
                } else {
                    // Bytes after STARTTLS in the same read: command injection.
                    self.close(CloseReason::StartTlsInjection);
                }
            }
            Command::Login { .. } | Command::Authenticate { .. } if caps.login_disabled => {
                self.tagged(
                    &tag,
                    "NO [PRIVACYREQUIRED] Login requires TLS; use STARTTLS.",
                );
            }
            Command::Login { user, password } => match sasl::login_user(&user) {
                Ok(authcid) => self.begin_login(
                    tag,
                    Credentials::Password {
                        authzid: None,
                        authcid,
                        password: Secret::new(password),
                    },
                ),
                Err(_) => {
                    self.tagged(&tag, "BAD Invalid user name.");
                    self.bad();
                }
            },
            Command::Authenticate { mechanism, initial } => {
                let Some(step) = Step::start(&mechanism, caps.oauth) else {
                    return self.tagged(&tag, "NO Unsupported authentication mechanism.");
                };
                match initial {
                    Some(ir) => self.auth_response(tag, step, &ir),
                    None => {
                        self.send(step.challenge());
                        self.state = State::Auth { tag, step };
                    }
                }
            }
            Command::Other => {
                self.tagged(&tag, "BAD Unknown command or not allowed before login.");
                self.bad();
            }
        }
    }
}
