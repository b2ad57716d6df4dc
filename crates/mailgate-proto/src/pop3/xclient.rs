//! The `XCLIENT` line mailgate sends a POP3 backend before the login (Dovecot's
//! extension): only mailgate's own knowledge of the session, nothing that could inject a field.

use super::framing::MAX_COMMAND;
use crate::login::ForwardInfo;

/// An address that cannot inject anything into an XCLIENT line (IPv4/IPv6 text only).
fn xclient_addr_safe(ip: &str) -> bool {
    !ip.is_empty()
        && ip.len() <= 45
        && ip
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
}

/// Dovecot's longest accepted `SESSION=` value (`LOGIN_MAX_SESSION_ID_LEN`).
const XCLIENT_MAX_SESSION: usize = 64;

/// `XCLIENT ADDR= PORT= DESTADDR= DESTPORT= SESSION= TTL= CLIENT-TRANSPORT=\r\n`: only
/// mailgate's own knowledge of the session (the client has no say in XCLIENT), in the
/// order Dovecot's own proxy sends it. `None` when the client address could inject
/// anything; a connected address or session id that could is left out.
pub(super) fn xclient_command(forward: &ForwardInfo) -> Option<Vec<u8>> {
    let ip = &forward.client.ip;
    if !xclient_addr_safe(ip) {
        return None;
    }
    let mut line = format!("XCLIENT ADDR={ip} PORT={}", forward.client.port);
    let dest = &forward.connected.ip;
    if xclient_addr_safe(dest) {
        line.push_str(&format!(
            " DESTADDR={dest} DESTPORT={}",
            forward.connected.port
        ));
    }
    let session = &forward.session_id;
    let session_safe = !session.is_empty()
        && session.len() <= XCLIENT_MAX_SESSION
        && session
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+' | b'/'));
    if session_safe {
        line.push_str(&format!(" SESSION={session}"));
    }
    line.push_str(&format!(
        " TTL={} CLIENT-TRANSPORT={}\r\n",
        forward.forwarded_ttl(),
        forward.client_transport()
    ));
    (line.len() <= MAX_COMMAND).then(|| line.into_bytes())
}
