//! mailgate acting as IMAP client towards a backend: greeting, optional STARTTLS,
//! ID forwarding, the login replay re-serialized, and the verdict.
//!
//! Sans-I/O like the front engine. The sequence is: greeting → (CAPABILITY if the
//! greeting had none) → (STARTTLS → handshake → CAPABILITY) → (ID) → login → verdict.
//! Commands use mailgate's own tags `mg1`, `mg2`, ...; the client's tag is put back by
//! the front engine. The login is encoded from the parsed credentials (`encode`), never
//! copied from client bytes.
//!
//! ID and the login are pipelined (RFC 3501 §5.5, RFC 9051 §5.5): both are queued at
//! once, so a driver writes them together, and the two tagged replies are read in order —
//! ID's first, whatever its status (a backend that dislikes our ID still judges the
//! login), then the login's. Nothing is pipelined before the greeting was judged or
//! before STARTTLS completed: the capabilities that choose the commands come first.

use std::collections::VecDeque;
use std::fmt;

use super::caps::BackendCaps;
use super::encode;
use super::response::{Reader, Response};
use crate::action::{BackendReply, LoginVerdict, UpstreamAction, UpstreamError};
use crate::capability::{
    Capabilities, IMAP_MECHANISM_UNSUPPORTED, lacks_mechanism_in, mechanism_refusal,
};
use crate::config::UpstreamConfig;
use crate::login::LoginRequest;
use crate::redact::{Clipped, Len};
use crate::verdict::{Refusal, imap_refusal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Greeting,
    Capability,
    StartTls,
    TlsPending,
    Id,
    Login,
    Done,
}

/// The backend-facing IMAP login relay.
///
/// `Debug` shows phases, counts and lengths: the queued actions and pending segments
/// carry the login line and literal password, the reader the backend's bytes.
pub struct ImapUpstream {
    config: UpstreamConfig,
    login: LoginRequest,
    reader: Reader,
    out: VecDeque<UpstreamAction>,
    phase: Phase,
    caps: Option<BackendCaps>,
    tls_done: bool,
    /// The tag of the ID sent ahead of the login, until its tagged reply arrived.
    id_tag: Option<Vec<u8>>,
    tag_counter: u32,
    tag: Vec<u8>,
    /// Login segments still to send, each after a `+` continuation.
    pending: VecDeque<Vec<u8>>,
    /// The empty response to an unexpected SASL challenge was sent.
    answered_challenge: bool,
    untagged: Vec<u8>,
    untagged_count: usize,
    failed: Option<UpstreamError>,
}

impl fmt::Debug for ImapUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pending: Vec<Len> = self.pending.iter().map(Len::of).collect();
        f.debug_struct("ImapUpstream")
            .field("config", &self.config)
            .field("login", &self.login)
            .field("reader", &self.reader)
            .field("queued", &self.out)
            .field("phase", &self.phase)
            .field("caps", &self.caps)
            .field("tls_done", &self.tls_done)
            .field("id_pending", &self.id_tag.is_some())
            // mailgate's own tag (`mg1`, ...).
            .field("tag", &Clipped(&String::from_utf8_lossy(&self.tag), 16))
            .field("pending", &pending)
            .field("answered_challenge", &self.answered_challenge)
            .field("untagged", &Len::of(&self.untagged))
            .field("untagged_count", &self.untagged_count)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl ImapUpstream {
    /// A relay for `login`, starting before the backend's greeting.
    pub fn new(config: UpstreamConfig, login: LoginRequest) -> Self {
        ImapUpstream {
            config,
            login,
            reader: Reader::default(),
            out: VecDeque::new(),
            phase: Phase::Greeting,
            caps: None,
            tls_done: false,
            id_tag: None,
            tag_counter: 0,
            tag: Vec::new(),
            pending: VecDeque::new(),
            answered_challenge: false,
            untagged: Vec::new(),
            untagged_count: 0,
            failed: None,
        }
    }

    /// Append bytes read from the backend.
    pub fn feed(&mut self, data: &[u8]) {
        if self.phase == Phase::TlsPending && !data.is_empty() {
            self.failed = Some(UpstreamError::StartTlsInjection);
        }
        if self.failed.is_none() {
            self.reader.input.extend_from_slice(data);
        }
    }

    /// The next action, `Ok(None)` when more bytes are needed.
    pub fn next_action(&mut self) -> Result<Option<UpstreamAction>, UpstreamError> {
        loop {
            if let Some(e) = &self.failed {
                return Err(e.clone());
            }
            if let Some(a) = self.out.pop_front() {
                return Ok(Some(a));
            }
            if matches!(self.phase, Phase::TlsPending | Phase::Done) {
                return Ok(None);
            }
            let max = self.config.limits.upstream_max_line;
            match self.reader.next(max) {
                Ok(None) => return Ok(None),
                Ok(Some(r)) => {
                    if let Err(e) = self.on_response(r) {
                        self.failed = Some(e);
                    }
                }
                Err(e) => self.failed = Some(e),
            }
        }
    }

    /// The TLS handshake after STARTTLS completed: capabilities are asked again
    /// (RFC 3501 §6.2.1 — nothing learnt before TLS is trusted).
    pub fn tls_started(&mut self) {
        if self.phase == Phase::TlsPending {
            self.tls_done = true;
            self.caps = None;
            self.command(b"CAPABILITY");
            self.phase = Phase::Capability;
        }
    }

    /// Bytes the backend sent after its verdict (passed to the client once spliced).
    pub fn into_remaining(self) -> Vec<u8> {
        self.reader.input
    }

    /// The backend's capabilities as the login met them (after STARTTLS when it was
    /// used); `None` before they were read.
    pub fn capabilities(&self) -> Option<Capabilities> {
        self.caps.as_ref().map(BackendCaps::public)
    }

    /// Send `mgN <rest>\r\n` and remember the tag.
    fn command(&mut self, rest: &[u8]) {
        self.next_tag();
        let mut line = self.tag.clone();
        line.push(b' ');
        line.extend_from_slice(rest);
        line.extend_from_slice(b"\r\n");
        self.out.push_back(UpstreamAction::Send(line));
    }

    fn next_tag(&mut self) {
        self.tag_counter += 1;
        self.tag = format!("mg{}", self.tag_counter).into_bytes();
    }

    fn on_response(&mut self, r: Response) -> Result<(), UpstreamError> {
        if self.phase == Phase::Greeting {
            return self.on_greeting(r);
        }
        match r {
            Response::Continue => self.on_continue(),
            Response::Untagged { raw, kind, rest } => {
                self.untagged_count += 1;
                if self.untagged_count > self.config.limits.upstream_max_untagged {
                    return Err(UpstreamError::TooManyLines);
                }
                match kind.as_str() {
                    "BYE" => Err(UpstreamError::Bye),
                    "CAPABILITY" if self.phase == Phase::Capability => {
                        self.caps = Some(BackendCaps::parse(&rest));
                        Ok(())
                    }
                    _ if self.phase == Phase::Login => {
                        self.untagged.extend_from_slice(&raw);
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
            Response::Tagged { tag, status, line } => {
                if self.phase == Phase::Id {
                    // ID's reply comes before the login's; its status does not matter.
                    if self.id_tag.as_ref() != Some(&tag) {
                        return Err(UpstreamError::Malformed);
                    }
                    self.id_tag = None;
                    self.phase = Phase::Login;
                    return Ok(());
                }
                if tag != self.tag {
                    return Err(UpstreamError::Malformed);
                }
                self.on_tagged(&status, line)
            }
        }
    }

    fn on_greeting(&mut self, r: Response) -> Result<(), UpstreamError> {
        let Response::Untagged { kind, rest, .. } = r else {
            return Err(UpstreamError::Malformed);
        };
        match kind.as_str() {
            "OK" => match BackendCaps::from_response_code(&rest) {
                Some(caps) => {
                    self.caps = Some(caps);
                    self.after_caps()
                }
                None => {
                    self.command(b"CAPABILITY");
                    self.phase = Phase::Capability;
                    Ok(())
                }
            },
            "PREAUTH" => Err(UpstreamError::Preauth),
            "BYE" => Err(UpstreamError::GreetingRefused),
            _ => Err(UpstreamError::Malformed),
        }
    }

    fn on_tagged(&mut self, status: &str, line: Vec<u8>) -> Result<(), UpstreamError> {
        match (self.phase, status) {
            (Phase::Capability, "OK") => {
                if self.caps.is_none() {
                    let text = line.get(3..).unwrap_or_default();
                    self.caps = Some(BackendCaps::from_response_code(text).unwrap_or_default());
                }
                self.after_caps()
            }
            (Phase::Capability, "BAD") => Err(UpstreamError::Bad),
            (Phase::Capability, _) => Err(UpstreamError::Malformed),
            (Phase::StartTls, "OK") => {
                if !self.reader.input.is_empty() {
                    return Err(UpstreamError::StartTlsInjection);
                }
                self.out.push_back(UpstreamAction::StartTls);
                self.phase = Phase::TlsPending;
                Ok(())
            }
            (Phase::StartTls, _) => Err(UpstreamError::StartTlsRefused),
            (Phase::Login, status) => {
                let reply = BackendReply {
                    untagged: std::mem::take(&mut self.untagged),
                    status: line,
                };
                // `BAD` to the login is the backend refusing what the client supplied
                // (an OAuth token is replayed unchanged): the client's failure, never the
                // backend's. A backend that answers BAD to every login fails its probes.
                let verdict = match status {
                    "OK" => LoginVerdict::Accepted(reply),
                    "NO" => match imap_refusal(&reply.status) {
                        Refusal::Credentials => LoginVerdict::Rejected(reply),
                        Refusal::Temporary(scope) => LoginVerdict::Temporary(reply, scope),
                    },
                    _ => LoginVerdict::Rejected(reply),
                };
                self.out.push_back(UpstreamAction::Done(verdict));
                self.phase = Phase::Done;
                Ok(())
            }
            // `Id` is answered in `on_response`.
            (Phase::Greeting | Phase::Id | Phase::TlsPending | Phase::Done, _) => {
                Err(UpstreamError::Malformed)
            }
        }
    }

    fn on_continue(&mut self) -> Result<(), UpstreamError> {
        if self.phase != Phase::Login {
            return Err(UpstreamError::Malformed);
        }
        if let Some(segment) = self.pending.pop_front() {
            self.out.push_back(UpstreamAction::Send(segment));
            Ok(())
        } else if let (false, Some(answer)) = (
            self.answered_challenge,
            encode::challenge_answer(&self.login),
        ) {
            // An OAuth error challenge; the tagged NO follows our answer.
            self.answered_challenge = true;
            self.out.push_back(UpstreamAction::Send(answer.to_vec()));
            Ok(())
        } else {
            Err(UpstreamError::Malformed)
        }
    }

    fn after_caps(&mut self) -> Result<(), UpstreamError> {
        // Taken for the commands below and put back: `capabilities()` reads them later.
        let caps = self.caps.take().unwrap_or_default();
        let result = self.after_caps_with(&caps);
        self.caps = Some(caps);
        result
    }

    fn after_caps_with(&mut self, caps: &BackendCaps) -> Result<(), UpstreamError> {
        if self.config.starttls && !self.tls_done {
            if !caps.has("STARTTLS") {
                return Err(UpstreamError::StartTlsRefused);
            }
            self.command(b"STARTTLS");
            self.phase = Phase::StartTls;
            return Ok(());
        }
        // A SASL mechanism the backend lists no `AUTH=` for would only earn the backend's
        // error: mailgate answers for it, sending neither ID nor the credentials. (A
        // password login without an authorization identity needs no mechanism: the list
        // is not parsed for it.)
        if lacks_mechanism_in(|| caps.public(), &self.login) {
            let refusal = mechanism_refusal(IMAP_MECHANISM_UNSUPPORTED);
            self.out.push_back(UpstreamAction::Done(refusal));
            self.phase = Phase::Done;
            return Ok(());
        }
        if let Some(forward) = &self.config.forward
            && caps.has("ID")
        {
            let id = encode::id_command(forward);
            self.command(&id);
            self.id_tag = Some(self.tag.clone());
        }
        self.start_login(caps);
        Ok(())
    }

    /// Queue the login (its first segment) behind whatever is queued, ID included.
    fn start_login(&mut self, caps: &BackendCaps) {
        self.next_tag();
        let mut segments = encode::login(&self.tag, &self.login, caps.has("SASL-IR"));
        self.out.push_back(UpstreamAction::CredentialsNext);
        if !segments.is_empty() {
            self.out.push_back(UpstreamAction::Send(segments.remove(0)));
        }
        self.pending = segments.into();
        self.phase = if self.id_tag.is_some() {
            Phase::Id
        } else {
            Phase::Login
        };
    }
}
