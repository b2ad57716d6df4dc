//! What a backend's refusal of a login means: the client's failure (wrong password,
//! expired account) or the backend's own temporary trouble (overloaded, internal error,
//! mailbox locked). The session treats the two very differently: only a refused
//! credential carries the failed-login penalties (delay, bad-command count, per-IP
//! back-off); temporary trouble reaches the client at once with the backend's code, and
//! backend-wide trouble counts against the backend's health.
//!
//! IMAP response codes are from RFC 5530, POP3 ones from RFC 2449 and RFC 3206.

/// Who a temporary refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TempScope {
    /// The backend as a whole (IMAP `[UNAVAILABLE]`, `[SERVERBUG]`, POP3 `[SYS/TEMP]`):
    /// counts against its health, and the fallback backend may be tried.
    Backend,
    /// One mailbox or user (IMAP `[INUSE]`, `[LIMIT]`, POP3 `[IN-USE]`, `[LOGIN-DELAY]`):
    /// a client with valid credentials can cause it at will (a second POP3 session, too
    /// many connections of one user), so it never counts against the backend's health.
    Mailbox,
}

/// The meaning of a backend's negative answer to a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Refused credentials: the client's failure.
    Credentials,
    /// Temporary trouble of the backend or of the mailbox.
    Temporary(TempScope),
}

/// The first response code of `text` (`[CODE args] rest`), without arguments.
fn first_code(text: &[u8]) -> Option<&[u8]> {
    let inner = text.strip_prefix(b"[")?;
    let end = inner
        .iter()
        .position(|b| *b == b']' || *b == b' ')
        .unwrap_or(inner.len());
    Some(&inner[..end])
}

/// Classify an IMAP tagged `NO` to a login. `status` is the line without the tag, e.g.
/// `NO [UNAVAILABLE] Internal error`. Codes other than the temporary ones (including no
/// code at all, as older servers send) mean refused credentials.
pub fn imap_refusal(status: &[u8]) -> Refusal {
    let text = status
        .get(2..)
        .map(|t| t.strip_prefix(b" ").unwrap_or(t))
        .unwrap_or_default();
    match first_code(text).map(|c| c.to_ascii_uppercase()) {
        Some(c) if c == b"UNAVAILABLE" || c == b"SERVERBUG" => {
            Refusal::Temporary(TempScope::Backend)
        }
        Some(c) if c == b"INUSE" || c == b"LIMIT" => Refusal::Temporary(TempScope::Mailbox),
        _ => Refusal::Credentials,
    }
}

/// Classify a POP3 `-ERR` to a login command (`USER`, `PASS`, `AUTH`). A bare `-ERR`, or
/// `[AUTH]`, means refused credentials.
pub fn pop3_refusal(line: &[u8]) -> Refusal {
    let text = line
        .get(4..)
        .map(|t| t.strip_prefix(b" ").unwrap_or(t))
        .unwrap_or_default();
    let Some(code) = first_code(text) else {
        return Refusal::Credentials;
    };
    let code = code.to_ascii_uppercase();
    // Hierarchical codes (RFC 2449 §8): the first component decides, `SYS/TEMP` whole.
    if code == b"SYS/TEMP" {
        Refusal::Temporary(TempScope::Backend)
    } else if code == b"IN-USE" || code == b"LOGIN-DELAY" {
        Refusal::Temporary(TempScope::Mailbox)
    } else {
        Refusal::Credentials
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imap_known_answers() {
        let cases: &[(&[u8], Refusal)] = &[
            (
                b"NO [AUTHENTICATIONFAILED] Authentication failed.",
                Refusal::Credentials,
            ),
            (b"NO [AUTHORIZATIONFAILED] no", Refusal::Credentials),
            (b"NO [EXPIRED] password expired", Refusal::Credentials),
            (
                b"NO Login failed: authentication failure",
                Refusal::Credentials,
            ),
            (b"NO [ALERT] go away", Refusal::Credentials),
            (b"NO", Refusal::Credentials),
            (
                b"NO [UNAVAILABLE] Internal error occurred.",
                Refusal::Temporary(TempScope::Backend),
            ),
            (
                b"no [unavailable] x",
                Refusal::Temporary(TempScope::Backend),
            ),
            (
                b"NO [SERVERBUG] oops",
                Refusal::Temporary(TempScope::Backend),
            ),
            (b"NO [INUSE] locked", Refusal::Temporary(TempScope::Mailbox)),
            (
                b"NO [LIMIT] too many",
                Refusal::Temporary(TempScope::Mailbox),
            ),
            (b"NO [UNAVAILABLEX] x", Refusal::Credentials),
        ];
        for (line, want) in cases {
            assert_eq!(
                imap_refusal(line),
                *want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn pop3_known_answers() {
        let cases: &[(&[u8], Refusal)] = &[
            (b"-ERR [AUTH] Authentication failed.", Refusal::Credentials),
            (b"-ERR Authentication failed.", Refusal::Credentials),
            (b"-ERR", Refusal::Credentials),
            (b"-ERR [SYS/PERM] broken", Refusal::Credentials),
            (
                b"-ERR [SYS/TEMP] Temporary internal failure",
                Refusal::Temporary(TempScope::Backend),
            ),
            (
                b"-ERR [IN-USE] locked",
                Refusal::Temporary(TempScope::Mailbox),
            ),
            (
                b"-ERR [LOGIN-DELAY] wait",
                Refusal::Temporary(TempScope::Mailbox),
            ),
            (b"-ERR [sys/temp] x", Refusal::Temporary(TempScope::Backend)),
        ];
        for (line, want) in cases {
            assert_eq!(
                pop3_refusal(line),
                *want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
