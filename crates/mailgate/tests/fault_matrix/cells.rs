//! The table of the fault matrix: which faults there are, which protocol × TLS cells
//! exist, and what each cell must answer (the conversations that check it are in
//! `flows.rs`).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use mailgate_testkit::fake::{FaultMode, TempCode, TlsMode};

/// `health.fall`: failed logins until a backend is `down`.
pub const FALL: u32 = 3;
/// Every backend step deadline of the matrix (`limits.backend_*_timeout`).
pub const STEP: Duration = Duration::from_secs(1);
/// Slack on every "within the deadline" bound (a loaded 2-core machine).
pub const MARGIN: Duration = Duration::from_secs(6);
/// `limits.idle_timeout` for spliced sessions.
pub const IDLE: Duration = Duration::from_secs(2);
/// `limits.auth_failure_delay`: a temporary failure must be answered well before it.
pub const AUTH_FAILURE_DELAY: Duration = Duration::from_secs(5);
/// Cap for "eventually" conditions and for reads whose time is measured, not bounded.
pub const CAP: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Imap,
    Pop3,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Imap => "imap",
            Proto::Pop3 => "pop3",
        }
    }
}

/// One backend fault of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    ConnectRefused,
    AcceptSilence,
    TlsStall,
    GreetingSilence,
    GreetingBye,
    VerdictNever,
    ResetMidLogin,
    TempFail(TempCode),
    GarbageVerdict,
    CloseAfterLoginOk,
    CloseMidFetch,
    StallMidSplice,
}

/// Every fault, in table order.
pub const FAULTS: [Fault; 14] = [
    Fault::ConnectRefused,
    Fault::AcceptSilence,
    Fault::TlsStall,
    Fault::GreetingSilence,
    Fault::GreetingBye,
    Fault::VerdictNever,
    Fault::ResetMidLogin,
    Fault::TempFail(TempCode::Unavailable),
    Fault::TempFail(TempCode::SysTemp),
    Fault::TempFail(TempCode::InUse),
    Fault::GarbageVerdict,
    Fault::CloseAfterLoginOk,
    Fault::CloseMidFetch,
    Fault::StallMidSplice,
];

/// What the client and the health view must show for a cell.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// mailgate's own `NO [UNAVAILABLE]` / `-ERR [SYS/TEMP]` within `deadline` + MARGIN;
    /// after FALL of them the backend is down with one of `reasons`; `backend_error`.
    Unavailable {
        deadline: Duration,
        reasons: &'static [&'static str],
    },
    /// The backend's own temporary refusal under the client's tag, at once, the
    /// connection kept open; `temp_failure`. With `counts`, FALL of them make the backend
    /// down with `temporary failure`; without, health is untouched.
    Temporary { counts: bool },
    /// Spliced, then the backend misbehaves; health stays `up`.
    Spliced,
}

impl Fault {
    pub fn name(self) -> String {
        match self {
            Fault::ConnectRefused => "connect refused".into(),
            Fault::AcceptSilence => "accept, then silence".into(),
            Fault::TlsStall => "TLS ClientHello stall".into(),
            Fault::GreetingSilence => "greeting, then silence".into(),
            Fault::GreetingBye => "greeting BYE / -ERR".into(),
            Fault::VerdictNever => "login verdict never comes".into(),
            Fault::ResetMidLogin => "reset mid-login".into(),
            Fault::TempFail(c) => format!("login temp failure ({c})"),
            Fault::GarbageVerdict => "garbage verdict".into(),
            Fault::CloseAfterLoginOk => "close right after login OK".into(),
            Fault::CloseMidFetch => "close mid-FETCH/RETR".into(),
            Fault::StallMidSplice => "stall mid-splice".into(),
        }
    }

    /// The fake's mode; `None`: no fake at all (a closed port).
    pub fn mode(self) -> Option<FaultMode> {
        Some(match self {
            Fault::ConnectRefused => return None,
            Fault::AcceptSilence => FaultMode::NoGreeting,
            Fault::TlsStall => FaultMode::TlsStall,
            Fault::GreetingSilence => FaultMode::StallAfterGreeting,
            Fault::GreetingBye => FaultMode::GreetingBye,
            Fault::VerdictNever => FaultMode::LoginHangs,
            Fault::ResetMidLogin => FaultMode::ResetDuringLogin,
            Fault::TempFail(c) => FaultMode::LoginTempFail(c),
            Fault::GarbageVerdict => FaultMode::GarbageVerdict,
            Fault::CloseAfterLoginOk => FaultMode::CloseAfterLoginOk,
            Fault::CloseMidFetch => FaultMode::CloseMidFetch,
            Fault::StallMidSplice => FaultMode::StallMidSplice,
        })
    }

    /// Cells that exist: a TLS stall needs TLS; each protocol has its own temporary codes
    /// (IMAP `[UNAVAILABLE]`; POP3 `[SYS/TEMP]` and `[IN-USE]`).
    pub fn applies(self, proto: Proto, tls: TlsMode) -> bool {
        match self {
            Fault::TlsStall => tls != TlsMode::None,
            Fault::TempFail(TempCode::Unavailable) => proto == Proto::Imap,
            Fault::TempFail(_) => proto == Proto::Pop3,
            _ => true,
        }
    }

    pub fn expect(self) -> Expect {
        let un = |reasons| Expect::Unavailable {
            deadline: STEP,
            reasons,
        };
        match self {
            Fault::ConnectRefused => un(&["connect failed"]),
            Fault::AcceptSilence => un(&["greeting timed out"]),
            Fault::TlsStall => un(&["tls handshake timed out"]),
            // Everything between the greeting and the verdict (ID, CAPA, XCLIENT, STARTTLS
            // itself, the login) is under the login deadline.
            Fault::GreetingSilence => un(&["login timed out"]),
            Fault::GreetingBye => un(&["greeting refused"]),
            Fault::VerdictNever => un(&["login timed out"]),
            Fault::ResetMidLogin => un(&["connection lost during login"]),
            Fault::GarbageVerdict => un(&["protocol error"]),
            // IN-USE is about one mailbox (the user's own other session holds the
            // maildrop): a client with valid credentials causes it at will, so it must
            // never count against the backend's health (docs/protocol.md).
            Fault::TempFail(TempCode::InUse) => Expect::Temporary { counts: false },
            Fault::TempFail(_) => Expect::Temporary { counts: true },
            Fault::CloseAfterLoginOk | Fault::CloseMidFetch | Fault::StallMidSplice => {
                Expect::Spliced
            }
        }
    }

    /// Whether the fake completes a TLS handshake in this cell (checked on the fake).
    pub fn handshakes(self, tls: TlsMode) -> bool {
        match tls {
            TlsMode::None => false,
            _ if matches!(self, Fault::ConnectRefused | Fault::TlsStall) => false,
            TlsMode::Starttls => !matches!(
                self,
                Fault::AcceptSilence | Fault::GreetingBye | Fault::GreetingSilence
            ),
            TlsMode::Implicit => true,
        }
    }

    /// Whether every login reaches the fake's login handler (counted as sabotaged).
    pub fn sabotages_logins(self) -> bool {
        matches!(
            self,
            Fault::VerdictNever | Fault::ResetMidLogin | Fault::TempFail(_) | Fault::GarbageVerdict
        )
    }
}

/// One cell of the matrix.
#[derive(Debug, Clone, Copy)]
pub struct Cell {
    pub n: usize,
    pub fault: Fault,
    pub proto: Proto,
    pub tls: TlsMode,
}

impl Cell {
    pub fn backend(&self) -> String {
        format!("cell{}", self.n)
    }
    pub fn user(&self) -> String {
        format!("u@cell{}.test", self.n)
    }
    /// Each cell's clients come from their own loopback address.
    pub fn source(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            1 + (self.n / 200) as u8,
            (self.n % 200 + 10) as u8,
        ))
    }
    pub fn label(&self) -> String {
        format!(
            "{} / {} / {:?}",
            self.fault.name(),
            self.proto.as_str(),
            self.tls
        )
    }
}
