//! The actions engines ask the session driver to perform.

use std::fmt;

use crate::login::LoginRequest;
use crate::redact::{Clipped, Len};

/// Next step requested by a front (client-facing) engine.
///
/// `Debug` shows the length of `Send`, never the bytes.
#[derive(Clone, PartialEq, Eq)]
pub enum FrontAction {
    /// Write these bytes to the client.
    Send(Vec<u8>),
    /// Everything queued so far has been sent (the `OK`/`+OK` for STARTTLS/STLS);
    /// perform the TLS handshake now, then call the engine's `tls_started()`.
    StartTls,
    /// Route and relay this login. The engine waits until the driver reports the
    /// outcome with `login_result()`; bytes fed meanwhile are kept, not parsed.
    Login(LoginRequest),
    /// Flush what was sent and close the connection.
    Close(CloseReason),
}

impl fmt::Debug for FrontAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrontAction::Send(b) => f.debug_tuple("Send").field(&Len::of(b)).finish(),
            FrontAction::StartTls => f.write_str("StartTls"),
            FrontAction::Login(r) => f.debug_tuple("Login").field(r).finish(),
            FrontAction::Close(r) => f.debug_tuple("Close").field(r).finish(),
        }
    }
}

/// Why a front engine closes a session (safe to log: never contains input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// LOGOUT / QUIT.
    ClientLogout,
    /// Too many bad commands.
    TooManyBadCommands,
    /// A command line longer than the limit.
    LineTooLong,
    /// A non-synchronizing literal larger than the limit.
    LiteralTooLarge,
    /// Bytes followed STARTTLS/STLS before the handshake.
    StartTlsInjection,
    /// Input that cannot be framed (NUL bytes, garbage) at all.
    ProtocolViolation,
}

impl CloseReason {
    /// A stable label for logs (`too_many_bad_commands`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientLogout => "client_logout",
            CloseReason::TooManyBadCommands => "too_many_bad_commands",
            CloseReason::LineTooLong => "line_too_long",
            CloseReason::LiteralTooLarge => "literal_too_large",
            CloseReason::StartTlsInjection => "starttls_injection",
            CloseReason::ProtocolViolation => "protocol_violation",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of a login relay, reported to the front engine with `login_result()`.
///
/// `Debug` shows the backend's answer as a [`BackendReply`] does: lengths and status word.
#[derive(Clone, PartialEq, Eq)]
pub enum LoginVerdict {
    /// The backend accepted the login.
    Accepted(BackendReply),
    /// The backend refused the credentials (wrong password, ...): its answer is passed on,
    /// and the refusal carries the failed-login penalties.
    Rejected(BackendReply),
    /// The backend could not log the user in for now (`NO [UNAVAILABLE]`,
    /// `-ERR [SYS/TEMP]`, `-ERR [IN-USE]`, ...): its answer is passed on at once, with no
    /// failed-login penalty; [`TempScope::Backend`] counts against the backend's health.
    Temporary(BackendReply, crate::verdict::TempScope),
    /// mailgate refuses like a wrong password (unknown domain, no route).
    AuthFailed,
    /// The backend does not admit or could not be reached: `NO [UNAVAILABLE] msg` /
    /// `-ERR [SYS/TEMP] msg`.
    Unavailable(String),
}

impl fmt::Debug for LoginVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginVerdict::Accepted(r) => f.debug_tuple("Accepted").field(r).finish(),
            LoginVerdict::Rejected(r) => f.debug_tuple("Rejected").field(r).finish(),
            LoginVerdict::Temporary(r, scope) => {
                f.debug_tuple("Temporary").field(r).field(scope).finish()
            }
            LoginVerdict::AuthFailed => f.write_str("AuthFailed"),
            // mailgate's own (configured) text, not the backend's.
            LoginVerdict::Unavailable(msg) => f
                .debug_tuple("Unavailable")
                .field(&Clipped(msg, 200))
                .finish(),
        }
    }
}

/// A backend's final answer to the replayed login.
///
/// `Debug` shows lengths and the status word (`OK`, `NO`, `+OK`, `-ERR`, ...), never the
/// text: a backend may echo what it was sent.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct BackendReply {
    /// Complete untagged lines (CRLF included) the backend sent before its verdict,
    /// passed on unchanged (IMAP only; empty for POP3).
    pub untagged: Vec<u8>,
    /// The verdict line without the backend's tag and without CRLF, e.g.
    /// `OK [CAPABILITY IMAP4rev1 ...] Logged in` or `+OK Logged in.`.
    pub status: Vec<u8>,
}

impl fmt::Debug for BackendReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.status.split(|&b| b == b' ').next().unwrap_or_default();
        let status = ["OK", "NO", "BAD", "BYE", "+OK", "-ERR"]
            .into_iter()
            .find(|w| word.eq_ignore_ascii_case(w.as_bytes()))
            .unwrap_or("?");
        f.debug_struct("BackendReply")
            .field("untagged", &Len::of(&self.untagged))
            .field("status", &status)
            .field("status_len", &self.status.len())
            .finish()
    }
}

/// Next step requested by an upstream (backend-facing) engine.
///
/// `Debug` shows the length of `Send` (it carries the login line), never the bytes.
#[derive(Clone, PartialEq, Eq)]
pub enum UpstreamAction {
    /// Write these bytes to the backend.
    Send(Vec<u8>),
    /// Perform the TLS handshake with the backend now, then call `tls_started()`.
    StartTls,
    /// Before the credentials are sent: the engine is ready to send them. A driver that
    /// wants to retry another address must do so before continuing past this point.
    /// (Informational; the driver just keeps calling `next_action`.)
    CredentialsNext,
    /// The login relay is finished. Bytes the backend sent after its verdict are in
    /// `into_remaining()`.
    Done(LoginVerdict),
}

impl fmt::Debug for UpstreamAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamAction::Send(b) => f.debug_tuple("Send").field(&Len::of(b)).finish(),
            UpstreamAction::StartTls => f.write_str("StartTls"),
            UpstreamAction::CredentialsNext => f.write_str("CredentialsNext"),
            UpstreamAction::Done(v) => f.debug_tuple("Done").field(v).finish(),
        }
    }
}

/// A backend misbehaved during the login relay. All map to "unavailable" for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// Greeting was `BYE` / `-ERR`.
    #[error("backend refused the connection in its greeting")]
    GreetingRefused,
    /// Greeting was `PREAUTH` (mailgate never accepts a pre-authenticated backend).
    #[error("backend sent a PREAUTH greeting")]
    Preauth,
    /// A line longer than the upstream limit.
    #[error("backend sent an oversized line")]
    LineTooLong,
    /// Too many untagged lines.
    #[error("backend sent too many untagged lines")]
    TooManyLines,
    /// Something that is not the protocol.
    #[error("backend sent a malformed response")]
    Malformed,
    /// STARTTLS / STLS was configured but refused or not offered.
    #[error("backend refused STARTTLS")]
    StartTlsRefused,
    /// Bytes arrived after the backend's STARTTLS OK and before the handshake.
    #[error("backend sent bytes after STARTTLS before the handshake")]
    StartTlsInjection,
    /// `BAD` to our own command (a bug or an incompatible backend).
    #[error("backend answered BAD to the login relay")]
    Bad,
    /// `BYE` while logging in.
    #[error("backend closed the session during login")]
    Bye,
}
