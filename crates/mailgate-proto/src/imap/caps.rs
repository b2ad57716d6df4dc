//! Capability lists: what mailgate advertises before login (design.md §5) and how it reads
//! a backend's list.
//!
//! Pre-auth capabilities must be something every backend supports, because the client
//! may use them in the very first command after login, which goes to the backend
//! unchanged. So never `IMAP4rev2` or `LITERAL+` (RFC 7888 §4 allows `LITERAL-` to be
//! offered on its own), and `ENABLE`, `IDLE`, ... are left to the backend's post-login list.
//! `SASL-IR`, `ID` and the `AUTH=` mechanisms are offered only where every backend a login
//! can reach has them ([`Advertised`], computed by the server from its probes).

use crate::capability::{Advertised, Capabilities};

/// What the client-facing engine advertises in its current state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrontCaps {
    /// STARTTLS can be offered now (configured and TLS not active).
    pub starttls: bool,
    /// Login is refused until TLS is active (RFC 3501 §6.2.3 `LOGINDISABLED`).
    pub login_disabled: bool,
    /// XOAUTH2 / OAUTHBEARER are accepted (`oauth:`, the upper bound).
    pub oauth: bool,
    /// What every reachable backend supports (SASL-IR, ID, mechanisms).
    pub advertised: Advertised,
}

impl FrontCaps {
    /// The capability atoms, space separated, without a trailing CRLF.
    pub(crate) fn list(self) -> String {
        let mut out = String::with_capacity(Self::MAX_LEN);
        self.write_to(&mut out);
        out
    }

    /// Room for the longest list (every atom and mechanism), so that writing it into a
    /// buffer of this capacity does not grow it.
    pub(crate) const MAX_LEN: usize = 128;

    /// Append the list to `out` (what [`list`](Self::list) returns), one atom at a time:
    /// the greeting and the CAPABILITY reply are built without a string per atom.
    pub(crate) fn write_to(self, out: &mut String) {
        out.push_str("IMAP4rev1");
        if self.advertised.sasl_ir {
            out.push_str(" SASL-IR");
        }
        out.push_str(" LITERAL-");
        if self.advertised.id {
            out.push_str(" ID");
        }
        if self.starttls {
            out.push_str(" STARTTLS");
        }
        if self.login_disabled {
            out.push_str(" LOGINDISABLED");
        } else {
            for m in self.advertised.mechanisms(self.oauth) {
                out.push_str(" AUTH=");
                out.push_str(m);
            }
        }
    }
}

/// Atoms of a backend's list that the login relay looks at.
const MAX_ATOMS: usize = 256;

/// A backend's capability list as it sent it (up to `]`): one buffer, its atoms read in
/// place (case-insensitive) and only the first [`MAX_ATOMS`] of them. It was a `String`
/// per atom, parsed again into [`Capabilities`] per login (docs/performance.md). `Debug`
/// shows how many there are and the ones the login relay acts on, not the backend's text.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct BackendCaps {
    list: Vec<u8>,
}

impl BackendCaps {
    /// Parse the atoms after `CAPABILITY` (up to `]` or the end of the line).
    pub(crate) fn parse(list: &[u8]) -> Self {
        let end = list.iter().position(|&b| b == b']').unwrap_or(list.len());
        BackendCaps {
            list: list[..end].to_vec(),
        }
    }

    /// Find `[CAPABILITY ...]` in the text of an `OK` response.
    pub(crate) fn from_response_code(text: &[u8]) -> Option<Self> {
        const CODE: &[u8] = b"[CAPABILITY ";
        let rest = text.get(..CODE.len())?;
        if rest.eq_ignore_ascii_case(CODE) {
            Some(Self::parse(&text[CODE.len()..]))
        } else {
            None
        }
    }

    fn atoms(&self) -> impl Iterator<Item = &[u8]> {
        self.list
            .split(|&b| b == b' ')
            .filter(|a| !a.is_empty())
            .take(MAX_ATOMS)
    }

    /// True if the backend advertised `cap` (case-insensitive).
    pub(crate) fn has(&self, cap: &str) -> bool {
        self.atoms().any(|a| a.eq_ignore_ascii_case(cap.as_bytes()))
    }

    /// The list as the server records it (bounded and cleaned).
    pub(crate) fn public(&self) -> Capabilities {
        Capabilities::from_imap_atoms(self.atoms())
    }

    fn count(&self) -> usize {
        self.atoms().count()
    }
}

impl std::fmt::Debug for BackendCaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendCaps")
            .field("count", &self.count())
            .field("starttls", &self.has("STARTTLS"))
            .field("id", &self.has("ID"))
            .field("sasl_ir", &self.has("SASL-IR"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_list_fits_its_capacity() {
        let longest = FrontCaps {
            starttls: true,
            login_disabled: false,
            oauth: true,
            advertised: Advertised::default(),
        };
        let list = longest.list();
        assert!(list.ends_with("AUTH=XOAUTH2 AUTH=OAUTHBEARER"), "{list}");
        assert!(list.len() <= FrontCaps::MAX_LEN, "{}", list.len());
    }

    #[test]
    fn front_lists() {
        let plain = FrontCaps {
            starttls: true,
            login_disabled: true,
            oauth: true,
            advertised: Advertised::default(),
        };
        assert_eq!(
            plain.list(),
            "IMAP4rev1 SASL-IR LITERAL- ID STARTTLS LOGINDISABLED"
        );
        let tls = FrontCaps {
            starttls: false,
            login_disabled: false,
            oauth: true,
            advertised: Advertised::default(),
        };
        assert_eq!(
            tls.list(),
            "IMAP4rev1 SASL-IR LITERAL- ID AUTH=PLAIN AUTH=LOGIN AUTH=XOAUTH2 AUTH=OAUTHBEARER"
        );
        assert!(!tls.list().contains("IMAP4rev2"));
        assert!(!tls.list().contains("LITERAL+"));
        // Narrowed by the backends: no SASL-IR, no OAUTHBEARER anywhere.
        let narrowed = FrontCaps {
            advertised: Advertised {
                sasl_ir: false,
                id: true,
                mechanisms: [true, true, true, false],
            },
            ..tls
        };
        assert_eq!(
            narrowed.list(),
            "IMAP4rev1 LITERAL- ID AUTH=PLAIN AUTH=LOGIN AUTH=XOAUTH2"
        );
        // `oauth: false` is the upper bound.
        let off = FrontCaps {
            oauth: false,
            ..tls
        };
        assert_eq!(
            off.list(),
            "IMAP4rev1 SASL-IR LITERAL- ID AUTH=PLAIN AUTH=LOGIN"
        );
    }

    #[test]
    fn backend_lists() {
        let c = BackendCaps::from_response_code(b"[CAPABILITY IMAP4rev1 sasl-ir STARTTLS] hi")
            .expect("code");
        assert!(c.has("SASL-IR") && c.has("starttls") && !c.has("ID"));
        assert!(BackendCaps::from_response_code(b"[ALERT] x").is_none());
    }

    /// Read in place, a list means what it meant as a `String` per upper-cased atom: the
    /// first 256 atoms, any case, repeated spaces, bytes that are not UTF-8.
    #[test]
    fn backend_lists_read_in_place() {
        let c = BackendCaps::parse(b"  imap4rev1   Auth=Plain \xff\xfeX ID] STARTTLS");
        assert!(c.has("IMAP4REV1") && c.has("auth=plain") && c.has("id"));
        assert!(!c.has("STARTTLS"), "after the ]");
        assert!(!c.has("X") && !c.has(""));
        assert_eq!(c.count(), 4);
        let public = c.public();
        assert_eq!(
            public.names().collect::<Vec<_>>(),
            ["AUTH=PLAIN", "ID", "IMAP4REV1"]
        );
        assert!(public.has_mechanism("plain"));
        let mut long: Vec<u8> = (0..300)
            .flat_map(|i| format!("X{i} ").into_bytes())
            .collect();
        long.extend_from_slice(b"SASL-IR");
        let c = BackendCaps::parse(&long);
        assert!(c.has("X255") && !c.has("X256") && !c.has("SASL-IR"));
        assert_eq!(c.count(), 256);
        assert_eq!(
            c.public().names().count(),
            crate::capability::MAX_CAPABILITIES
        );
    }
}
