//! The ways a fake can misbehave ([`FaultMode`]) and their string forms (the
//! `mailgate-fake-backend --mode` values).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Which temporary refusal a [`FaultMode::LoginTempFail`] answers a login with. Each class
/// is given in the protocol's own words:
///
/// | code | IMAP | POP3 |
/// |---|---|---|
/// | `unavailable` | `tag NO [UNAVAILABLE] Internal error occurred. Refer to server log for more information.` | `-ERR [SYS/TEMP] Temporary internal failure` |
/// | `sys-temp` | same as `unavailable` | `-ERR [SYS/TEMP] Temporary internal failure` |
/// | `in-use` | `tag NO [INUSE] Mailbox is locked by another session` | `-ERR [IN-USE] Mailbox locked by another session` |
///
/// The IMAP `UNAVAILABLE` text is Dovecot's own; IMAP has no SYS/TEMP, so that class maps
/// to `UNAVAILABLE` there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TempCode {
    /// The backend's internal trouble (IMAP `UNAVAILABLE`, POP3 `SYS/TEMP`).
    Unavailable,
    /// POP3 `SYS/TEMP` (IMAP: `UNAVAILABLE`).
    SysTemp,
    /// The mailbox is locked by another session (IMAP `INUSE`, POP3 `IN-USE`).
    InUse,
}

impl TempCode {
    /// The tagged IMAP answer (without tag and CRLF).
    pub fn imap_line(self) -> &'static str {
        match self {
            TempCode::Unavailable | TempCode::SysTemp => {
                "NO [UNAVAILABLE] Internal error occurred. Refer to server log for more information."
            }
            TempCode::InUse => "NO [INUSE] Mailbox is locked by another session",
        }
    }

    /// The POP3 answer (without CRLF).
    pub fn pop3_line(self) -> &'static str {
        match self {
            TempCode::Unavailable | TempCode::SysTemp => {
                "-ERR [SYS/TEMP] Temporary internal failure"
            }
            TempCode::InUse => "-ERR [IN-USE] Mailbox locked by another session",
        }
    }
}

impl fmt::Display for TempCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TempCode::Unavailable => "unavailable",
            TempCode::SysTemp => "sys-temp",
            TempCode::InUse => "in-use",
        })
    }
}

impl FromStr for TempCode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "unavailable" => Ok(TempCode::Unavailable),
            "sys-temp" => Ok(TempCode::SysTemp),
            "in-use" => Ok(TempCode::InUse),
            _ => Err(format!(
                "unknown temporary failure code {s:?} (unavailable | sys-temp | in-use)"
            )),
        }
    }
}

/// How a fake behaves. Read once per accepted connection (except [`FaultMode::Flapping`],
/// whose phase is computed at accept time from when the mode was set).
///
/// With TLS towards the fake ([`super::FakeConfig::tls`]), every mode applies to what is
/// said inside TLS: with implicit TLS the handshake happens first (except
/// [`FaultMode::TlsStall`]), with STARTTLS the plaintext greeting is the one the mode acts
/// on and the login faults happen after the upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultMode {
    /// A working server.
    Normal,
    /// Accept the TCP connection and never say anything (a SIGSTOPped server). With
    /// implicit TLS the handshake completes, then nothing.
    NoGreeting,
    /// Send the greeting, then never answer anything.
    StallAfterGreeting,
    /// Reset the connection (RST, SO_LINGER 0) when a login command arrives
    /// (IMAP LOGIN/AUTHENTICATE, POP3 PASS/AUTH).
    ResetDuringLogin,
    /// IMAP: greet with `* PREAUTH` (POP3 has no such thing: normal greeting).
    PreauthGreeting,
    /// Advertise STARTTLS/STLS, answer it with the OK plus injected bytes in the same
    /// write, then stall (no TLS handshake ever happens).
    InjectAfterStartTls,
    /// Work normally, but wait this long before every response, greeting included.
    SlowResponses(Duration),
    /// Healthy for the given period, then refusing (accept + immediate RST) for the same
    /// period, alternating, starting healthy when the mode is set.
    Flapping(Duration),
    /// Greeting and CAPABILITY/CAPA work; a login command is never answered.
    LoginHangs,
    /// Greet with a refusal and close: IMAP `* BYE [UNAVAILABLE] Server overloaded`,
    /// POP3 `-ERR [SYS/TEMP] Server overloaded`.
    GreetingBye,
    /// The TLS handshake never happens. Implicit TLS: accept and never answer the
    /// ClientHello. Otherwise (STARTTLS, also advertised with `tls: none`): answer
    /// `OK Begin TLS negotiation now` / `+OK Begin TLS negotiation now.`, then never
    /// answer the ClientHello.
    TlsStall,
    /// Answer the login (once the credentials are in) with a temporary refusal
    /// ([`TempCode`]), at once and keeping the connection open.
    LoginTempFail(TempCode),
    /// Answer the login with something that is not a verdict: IMAP `tag WHATEVER zz`,
    /// POP3 `hello?`. The connection stays open.
    GarbageVerdict,
    /// Accept the login (the normal OK line), then close the connection at once.
    CloseAfterLoginOk,
    /// Normal login; a body FETCH (IMAP `BODY[]`/`RFC822`) or `RETR` sends the response
    /// header and half of the message, then closes.
    CloseMidFetch,
    /// Like [`FaultMode::CloseMidFetch`], but after the half message it never sends
    /// anything more and never closes (input is read and discarded).
    StallMidSplice,
}

impl fmt::Display for FaultMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Normal => f.write_str("normal"),
            Self::NoGreeting => f.write_str("no-greeting"),
            Self::StallAfterGreeting => f.write_str("stall-after-greeting"),
            Self::ResetDuringLogin => f.write_str("reset-during-login"),
            Self::PreauthGreeting => f.write_str("preauth-greeting"),
            Self::InjectAfterStartTls => f.write_str("inject-after-starttls"),
            Self::SlowResponses(d) => write!(f, "slow:{}", humantime::format_duration(*d)),
            Self::Flapping(d) => write!(f, "flapping:{}", humantime::format_duration(*d)),
            Self::LoginHangs => f.write_str("login-hangs"),
            Self::GreetingBye => f.write_str("greeting-bye"),
            Self::TlsStall => f.write_str("tls-stall"),
            Self::LoginTempFail(code) => write!(f, "login-temp-fail:{code}"),
            Self::GarbageVerdict => f.write_str("garbage-verdict"),
            Self::CloseAfterLoginOk => f.write_str("close-after-login-ok"),
            Self::CloseMidFetch => f.write_str("close-mid-fetch"),
            Self::StallMidSplice => f.write_str("stall-mid-splice"),
        }
    }
}

impl FromStr for FaultMode {
    type Err = String;

    /// Parses the [`Display`](fmt::Display) form: `normal`, `no-greeting`,
    /// `stall-after-greeting`, `reset-during-login`, `preauth-greeting`,
    /// `inject-after-starttls`, `slow:500ms`, `flapping:5s`, `login-hangs`,
    /// `greeting-bye`, `tls-stall`, `login-temp-fail:unavailable|sys-temp|in-use`,
    /// `garbage-verdict`, `close-after-login-ok`, `close-mid-fetch`, `stall-mid-splice`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let dur = |v: &str| humantime::parse_duration(v).map_err(|e| format!("{s}: {e}"));
        Ok(match s {
            "normal" => Self::Normal,
            "no-greeting" => Self::NoGreeting,
            "stall-after-greeting" => Self::StallAfterGreeting,
            "reset-during-login" => Self::ResetDuringLogin,
            "preauth-greeting" => Self::PreauthGreeting,
            "inject-after-starttls" => Self::InjectAfterStartTls,
            "login-hangs" => Self::LoginHangs,
            "greeting-bye" => Self::GreetingBye,
            "tls-stall" => Self::TlsStall,
            "garbage-verdict" => Self::GarbageVerdict,
            "close-after-login-ok" => Self::CloseAfterLoginOk,
            "close-mid-fetch" => Self::CloseMidFetch,
            "stall-mid-splice" => Self::StallMidSplice,
            _ => match s.split_once(':') {
                Some(("slow", v)) => Self::SlowResponses(dur(v)?),
                Some(("flapping", v)) => Self::Flapping(dur(v)?),
                Some(("login-temp-fail", v)) => Self::LoginTempFail(v.parse()?),
                _ => return Err(format!("unknown fault mode {s:?}")),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_through_strings() {
        for m in [
            FaultMode::Normal,
            FaultMode::NoGreeting,
            FaultMode::StallAfterGreeting,
            FaultMode::ResetDuringLogin,
            FaultMode::PreauthGreeting,
            FaultMode::InjectAfterStartTls,
            FaultMode::SlowResponses(Duration::from_millis(250)),
            FaultMode::Flapping(Duration::from_secs(3)),
            FaultMode::LoginHangs,
            FaultMode::GreetingBye,
            FaultMode::TlsStall,
            FaultMode::LoginTempFail(TempCode::Unavailable),
            FaultMode::LoginTempFail(TempCode::SysTemp),
            FaultMode::LoginTempFail(TempCode::InUse),
            FaultMode::GarbageVerdict,
            FaultMode::CloseAfterLoginOk,
            FaultMode::CloseMidFetch,
            FaultMode::StallMidSplice,
        ] {
            assert_eq!(m.to_string().parse::<FaultMode>(), Ok(m));
        }
        for bad in [
            "bogus",
            "login-temp-fail",
            "login-temp-fail:later",
            "slow:x",
        ] {
            assert!(bad.parse::<FaultMode>().is_err(), "{bad}");
        }
    }

    #[test]
    fn temp_codes_use_each_protocols_words() {
        assert!(
            TempCode::Unavailable
                .imap_line()
                .starts_with("NO [UNAVAILABLE] ")
        );
        assert!(
            TempCode::SysTemp
                .pop3_line()
                .starts_with("-ERR [SYS/TEMP] ")
        );
        assert!(TempCode::InUse.pop3_line().starts_with("-ERR [IN-USE] "));
        assert!(TempCode::InUse.imap_line().starts_with("NO [INUSE] "));
    }
}
