//! Capabilities across the proxy: what a backend says it can do ([`Capabilities`], from
//! its IMAP `CAPABILITY` or POP3 `CAPA`), and what mailgate offers its clients before
//! login ([`Advertised`]), which is what every backend a login can reach supports.
//!
//! Sans-I/O like the rest of the crate: the server records backends' lists from its
//! probes and hands the intersection to the front engines (`FrontConfig::advertised`).
//! docs/protocol.md ("Capabilities before login") says how the intersection is formed.

use std::collections::BTreeSet;

use crate::action::{BackendReply, LoginVerdict};
use crate::login::{Credentials, LoginRequest};
use crate::protocol::Protocol;

/// At most this many capabilities are kept from one backend list.
pub const MAX_CAPABILITIES: usize = 128;
/// Longest capability name kept (longer ones are dropped).
pub const MAX_NAME: usize = 64;

/// IMAP answer to a login whose SASL mechanism the routed backend does not offer
/// (RFC 5530 `CANNOT`: retrying the same way cannot succeed).
pub const IMAP_MECHANISM_UNSUPPORTED: &str =
    "NO [CANNOT] Authentication mechanism not supported for this account.";
/// POP3 answer to the same.
pub const POP3_MECHANISM_UNSUPPORTED: &str =
    "-ERR Authentication mechanism not supported for this account.";

/// The SASL mechanism a login's replay needs: `None` for a password login without an
/// authorization identity (IMAP `LOGIN`, POP3 `USER`/`PASS`), PLAIN with one, the OAuth
/// mechanism for a token.
pub(crate) fn replay_mechanism(login: &LoginRequest) -> Option<&'static str> {
    match &login.credentials {
        Credentials::Password { authzid: None, .. } => None,
        Credentials::Password { .. } => Some("PLAIN"),
        Credentials::OAuth { mechanism, .. } => Some(mechanism.name()),
    }
}

/// The backend lists SASL mechanisms, but not the one `login` needs (a list that names
/// none says nothing about them).
pub(crate) fn lacks_mechanism(caps: &Capabilities, login: &LoginRequest) -> bool {
    replay_mechanism(login).is_some_and(|m| caps.lists_mechanisms() && !caps.has_mechanism(m))
}

/// [`lacks_mechanism`] with the list made only when the login needs a mechanism (a
/// password login without an authorization identity needs none): the upstream engines
/// keep the backend's list as it came and parse it only then.
pub(crate) fn lacks_mechanism_in(
    caps: impl FnOnce() -> Capabilities,
    login: &LoginRequest,
) -> bool {
    replay_mechanism(login).is_some() && lacks_mechanism(&caps(), login)
}

/// mailgate's own refusal of such a login, in place of the backend's verdict.
pub(crate) fn mechanism_refusal(text: &str) -> LoginVerdict {
    LoginVerdict::Rejected(BackendReply {
        untagged: Vec::new(),
        status: text.as_bytes().to_vec(),
    })
}

/// A backend's capability list, upper-cased: the IMAP atoms (`AUTH=` ones included) or
/// the POP3 CAPA tags (the first word of each line), and the SASL mechanisms among them.
/// Only printable names of at most [`MAX_NAME`] bytes are kept, at most
/// [`MAX_CAPABILITIES`]: a hostile backend cannot put control bytes or bulk into logs,
/// `/status` or metric labels. `Debug` shows counts only, never the backend's words.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    names: BTreeSet<String>,
    mechanisms: BTreeSet<String>,
}

impl std::fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capabilities")
            .field("names", &self.names.len())
            .field("mechanisms", &self.mechanisms.len())
            .finish()
    }
}

fn clean(word: &[u8]) -> Option<String> {
    let ok = |b: &u8| b.is_ascii_alphanumeric() || b"-=+._/:".contains(b);
    (!word.is_empty() && word.len() <= MAX_NAME && word.iter().all(ok))
        .then(|| String::from_utf8_lossy(word).to_ascii_uppercase())
}

/// `set` (upper-cased) holds `name` in any case; no allocation for an upper-case `name`
/// (every lookup mailgate itself makes, once per backend at each accept).
fn contains(set: &BTreeSet<String>, name: &str) -> bool {
    if name.bytes().any(|b| b.is_ascii_lowercase()) {
        set.contains(&name.to_ascii_uppercase())
    } else {
        set.contains(name)
    }
}

fn words(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b' ').filter(|w| !w.is_empty())
}

impl Capabilities {
    /// The atoms of an IMAP capability list (after `CAPABILITY`, up to `]` or the end).
    pub fn from_imap(list: &[u8]) -> Self {
        let end = list.iter().position(|&b| b == b']').unwrap_or(list.len());
        Self::from_imap_atoms(words(&list[..end]))
    }

    /// [`from_imap`](Self::from_imap) of atoms already split.
    pub(crate) fn from_imap_atoms<'a>(atoms: impl Iterator<Item = &'a [u8]>) -> Self {
        let mut caps = Capabilities::default();
        for atom in atoms.filter_map(clean) {
            if let Some(mech) = atom.strip_prefix("AUTH=") {
                caps.add_mechanism(mech.to_string());
            }
            caps.add(atom);
        }
        caps
    }

    /// The lines of a POP3 CAPA answer (without the status line and the final `.`): the
    /// first word of each line is the capability, the words after `SASL` are mechanisms.
    pub fn from_pop3<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut caps = Capabilities::default();
        for line in lines {
            caps.add_pop3_line(line);
        }
        caps
    }

    /// Add one POP3 CAPA line.
    pub fn add_pop3_line(&mut self, line: &[u8]) {
        let mut w = words(line);
        let Some(tag) = w.next().and_then(clean) else {
            return;
        };
        if tag == "SASL" {
            for mech in w.filter_map(clean) {
                self.add_mechanism(mech);
            }
        }
        self.add(tag);
    }

    fn add(&mut self, name: String) {
        if self.names.len() < MAX_CAPABILITIES {
            self.names.insert(name);
        }
    }

    fn add_mechanism(&mut self, name: String) {
        if self.mechanisms.len() < MAX_CAPABILITIES {
            self.mechanisms.insert(name);
        }
    }

    /// The IMAP capabilities a backend announced with its login verdict: the
    /// `[CAPABILITY ...]` code of the tagged `OK`, or an untagged `* CAPABILITY` line.
    pub fn from_imap_login(reply: &BackendReply) -> Option<Self> {
        const CODE: &[u8] = b"OK [CAPABILITY ";
        if let Some(head) = reply.status.get(..CODE.len())
            && head.eq_ignore_ascii_case(CODE)
        {
            return Some(Self::from_imap(&reply.status[CODE.len()..]));
        }
        const UNTAGGED: &[u8] = b"* CAPABILITY ";
        reply
            .untagged
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .find(|l| {
                l.get(..UNTAGGED.len())
                    .is_some_and(|h| h.eq_ignore_ascii_case(UNTAGGED))
            })
            .map(|l| Self::from_imap(&l[UNTAGGED.len()..]))
    }

    /// True if `name` is listed (case-insensitive).
    pub fn has(&self, name: &str) -> bool {
        contains(&self.names, name)
    }

    /// True if the SASL mechanism `mech` is listed (case-insensitive).
    pub fn has_mechanism(&self, mech: &str) -> bool {
        contains(&self.mechanisms, mech)
    }

    /// True if the list names any SASL mechanism at all (a list without one says nothing
    /// about mechanisms, so nothing is refused for it).
    pub fn lists_mechanisms(&self) -> bool {
        !self.mechanisms.is_empty()
    }

    /// Every capability, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// Every SASL mechanism, sorted.
    pub fn mechanisms(&self) -> impl Iterator<Item = &str> {
        self.mechanisms.iter().map(String::as_str)
    }

    /// True if nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// How far a POP3 `CAPA` answer has arrived ([`read_pop3_capa`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapaRead {
    /// More bytes are needed.
    Need,
    /// The answer is complete: the list (`None` for `-ERR`) and the bytes it took.
    Done {
        /// The capabilities, `None` when the server refused CAPA.
        caps: Option<Capabilities>,
        /// Bytes of `buf` the answer took.
        consumed: usize,
    },
    /// Not a CAPA answer, or over the limits.
    Invalid,
}

/// Read a POP3 `CAPA` answer (RFC 2449 §5) from the start of `buf`: lines of at most
/// `max_line` bytes, at most `max_lines` of them.
pub fn read_pop3_capa(buf: &[u8], max_line: usize, max_lines: usize) -> CapaRead {
    let mut pos = 0;
    let mut caps: Option<Capabilities> = None;
    let mut lines = 0;
    loop {
        let rest = &buf[pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return if rest.len() > max_line {
                CapaRead::Invalid
            } else {
                CapaRead::Need
            };
        };
        if end > max_line {
            return CapaRead::Invalid;
        }
        let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
        pos += end + 1;
        match caps.as_mut() {
            None if line.len() >= 3 && line[..3].eq_ignore_ascii_case(b"+OK") => {
                caps = Some(Capabilities::default());
            }
            None if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"-ERR") => {
                return CapaRead::Done {
                    caps: None,
                    consumed: pos,
                };
            }
            None => return CapaRead::Invalid,
            Some(_) if line == b"." => {
                return CapaRead::Done {
                    caps,
                    consumed: pos,
                };
            }
            Some(c) => {
                lines += 1;
                if lines > max_lines {
                    return CapaRead::Invalid;
                }
                let line = line.strip_prefix(b".").unwrap_or(line);
                c.add_pop3_line(line);
            }
        }
    }
}

/// The SASL mechanisms mailgate itself speaks with clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// PLAIN (replayed as IMAP `LOGIN` / POP3 `USER`+`PASS`, or `AUTHENTICATE PLAIN` /
    /// `AUTH PLAIN` when it carries an authorization identity).
    Plain,
    /// LOGIN (replayed as IMAP `LOGIN` / POP3 `USER`+`PASS`).
    Login,
    /// XOAUTH2 (passed through).
    XOAuth2,
    /// OAUTHBEARER (passed through).
    OAuthBearer,
}

impl Mechanism {
    /// All of them, in advertising order.
    pub const ALL: [Mechanism; 4] = [
        Mechanism::Plain,
        Mechanism::Login,
        Mechanism::XOAuth2,
        Mechanism::OAuthBearer,
    ];

    /// The SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::XOAuth2 => "XOAUTH2",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// Can a backend with `caps` serve a client login with this mechanism? PLAIN and
    /// LOGIN are replayed as a password login, which a backend takes unless it lists
    /// neither a way to log in with a password (IMAP: `LOGINDISABLED` without
    /// `AUTH=PLAIN`; POP3: neither `USER` nor `SASL PLAIN`). XOAUTH2 and OAUTHBEARER are
    /// passed through, so the backend must list them.
    pub fn served_by(self, protocol: Protocol, caps: &Capabilities) -> bool {
        match (self, protocol) {
            (Mechanism::Plain | Mechanism::Login, Protocol::Imap) => {
                !caps.has("LOGINDISABLED") || caps.has_mechanism("PLAIN")
            }
            (Mechanism::Plain | Mechanism::Login, Protocol::Pop3) => {
                caps.is_empty() || caps.has("USER") || caps.has_mechanism("PLAIN")
            }
            (m, _) => caps.has_mechanism(m.name()),
        }
    }
}

/// What a client-facing engine offers before login, besides what depends on TLS. The
/// default is everything mailgate can do: what it offers while no backend has been
/// probed yet. XOAUTH2 and OAUTHBEARER are offered only when `oauth:` allows them too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advertised {
    /// IMAP `SASL-IR`.
    pub sasl_ir: bool,
    /// IMAP `ID`.
    pub id: bool,
    /// Per [`Mechanism::ALL`]: offered.
    pub mechanisms: [bool; 4],
}

impl Default for Advertised {
    fn default() -> Self {
        Advertised {
            sasl_ir: true,
            id: true,
            mechanisms: [true; 4],
        }
    }
}

impl Advertised {
    /// Only what `caps` (one backend's pre-login list) supports as well.
    pub fn narrow(mut self, protocol: Protocol, caps: &Capabilities) -> Self {
        if protocol == Protocol::Imap {
            self.sasl_ir &= caps.has("SASL-IR");
            self.id &= caps.has("ID");
        }
        for (i, m) in Mechanism::ALL.into_iter().enumerate() {
            self.mechanisms[i] &= m.served_by(protocol, caps);
        }
        self
    }

    /// Is `m` offered?
    pub fn offers(&self, m: Mechanism) -> bool {
        let i = Mechanism::ALL.iter().position(|x| *x == m).unwrap_or(0);
        self.mechanisms[i]
    }

    /// The offered mechanisms, with the OAuth ones only if `oauth` allows them.
    pub fn mechanism_names(&self, oauth: bool) -> Vec<&'static str> {
        self.mechanisms(oauth).collect()
    }

    /// [`mechanism_names`](Self::mechanism_names) without collecting them.
    pub fn mechanisms(&self, oauth: bool) -> impl Iterator<Item = &'static str> + '_ {
        Mechanism::ALL
            .into_iter()
            .filter(|m| self.offers(*m))
            .filter(move |m| oauth || matches!(m, Mechanism::Plain | Mechanism::Login))
            .map(Mechanism::name)
    }
}

#[cfg(test)]
#[path = "capability_tests.rs"]
mod tests;
