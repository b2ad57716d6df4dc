//! Secrets stay out of `Debug` (issue 11, item 7): every engine is fed logins whose
//! password (or OAuth token) is a canary, in every split of its input, and after every
//! step `{:?}` and `{:#?}` of the engine and of every action and verdict are searched for
//! the canary in every form a `Debug` could print it: as text, as a decimal byte list
//! (what a derived `Debug` of a `Vec<u8>` prints, which a grep for the password never
//! finds), and base64-encoded. Backends that echo the canary in their answers are covered
//! too, and so is the panic path: a panic message that formats an engine or an action.
//!
//! Each drive also checks that the canary really went through the engine (in the `Login`
//! it yields, in the bytes it sends), so a clean `Debug` means something.

use std::cell::RefCell;
use std::fmt::Debug;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Once, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailgate_proto::action::BackendReply;
use mailgate_proto::imap::{ImapFront, ImapUpstream};
use mailgate_proto::pop3::{Pop3Front, Pop3Upstream};
use mailgate_proto::{
    Credentials, FrontAction, FrontConfig, Limits, LoginRequest, LoginVerdict, OAuthMechanism,
    Secret, TempScope, UpstreamAction, UpstreamConfig,
};

const CANARY: &str = "CANARY-p4ss";
const USER: &str = "alice@example.com";

fn b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// The base64 characters that depend only on the canary, for each of the three
/// alignments it can have inside a longer base64 payload.
fn canary_b64_cores() -> &'static [String] {
    static CORES: OnceLock<Vec<String>> = OnceLock::new();
    CORES.get_or_init(|| {
        (0..3)
            .map(|pad| {
                let mut data = vec![0u8; pad];
                data.extend_from_slice(CANARY.as_bytes());
                let enc = b64(&data);
                let start = if pad == 0 { 0 } else { 4 };
                let end = data.len() / 3 * 4;
                enc[start..end].to_string()
            })
            .collect()
    })
}

/// Every decimal number in `text`, in order.
fn numbers(text: &str) -> Vec<u64> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .filter_map(|t| t.parse().ok())
        .collect()
}

/// Panics if `text` shows the canary in any form.
fn assert_clean(what: &str, text: &str) {
    let lower = text.to_ascii_lowercase();
    for needle in ["canary", "p4ss"] {
        assert!(!lower.contains(needle), "{what}: {needle:?} in {text}");
    }
    for core in canary_b64_cores() {
        assert!(
            !text.contains(core.as_str()),
            "{what}: base64 {core:?} in {text}"
        );
    }
    // A byte list in any layout (`[67, 65, ...]`, one per line with `{:#?}`): the first
    // six bytes of the canary as consecutive numbers.
    let want: Vec<u64> = CANARY.bytes().take(6).map(u64::from).collect();
    let nums = numbers(text);
    assert!(
        !nums.windows(want.len()).any(|w| w == want.as_slice()),
        "{what}: the canary's bytes as numbers in {text}"
    );
}

/// `{:?}` and `{:#?}` of `value` are clean.
fn check<T: Debug + ?Sized>(what: &str, value: &T) {
    assert_clean(what, &format!("{value:?}"));
    assert_clean(what, &format!("{value:#?}"));
}

/// `{:?}` only (after every single byte fed, where `{:#?}` would add time, not cover more:
/// both print the same fields, and the byte-list check ignores the layout).
fn check_compact<T: Debug + ?Sized>(what: &str, value: &T) {
    assert_clean(what, &format!("{value:?}"));
}

#[test]
fn the_detector_finds_every_form() {
    let forms = [
        format!("{:?}", CANARY),
        format!("{:?}", CANARY.as_bytes().to_vec()),
        format!("{:#?}", CANARY.as_bytes().to_vec()),
        format!("{:?}", CANARY.to_ascii_uppercase()),
        b64(format!("\0{USER}\0{CANARY}").as_bytes()),
        b64(format!("x{CANARY}").as_bytes()),
        b64(format!("xy{CANARY}").as_bytes()),
    ];
    for form in forms {
        let caught = panic::catch_unwind(|| assert_clean("self-test", &form));
        assert!(caught.is_err(), "not caught: {form}");
    }
    assert_clean(
        "self-test",
        "Send(<38 bytes>) [1, 2, 3] LOGIN \"alice\" \"hunter2\"",
    );
}

// --- splits ------------------------------------------------------------------------------

/// The input whole, split into two at every `step`-th byte, and byte by byte.
fn splits(input: &[u8], step: usize) -> Vec<Vec<&[u8]>> {
    let mut out = vec![vec![input]];
    for i in (1..input.len()).step_by(step) {
        out.push(vec![&input[..i], &input[i..]]);
    }
    out.push(input.chunks(1).collect());
    out
}

// --- front engines -----------------------------------------------------------------------

fn front_config() -> FrontConfig {
    FrontConfig {
        limits: Limits::default(),
        tls_available: false,
        require_tls_for_login: false,
        oauth: true,
        greeting_text: "ready".into(),
        ..FrontConfig::default()
    }
}

/// What a backend may answer to the relayed login; each echoes the canary.
fn verdicts() -> Vec<LoginVerdict> {
    let echo = |status: &str| BackendReply {
        untagged: format!("* OK [ALERT] {CANARY}\r\n").into_bytes(),
        status: status.as_bytes().to_vec(),
    };
    vec![
        LoginVerdict::Rejected(echo(&format!("NO [AUTHENTICATIONFAILED] {CANARY}"))),
        LoginVerdict::Temporary(
            echo(&format!("NO [UNAVAILABLE] {CANARY}")),
            TempScope::Backend,
        ),
        LoginVerdict::AuthFailed,
        LoginVerdict::Accepted(echo(&format!("OK [CAPABILITY IMAP4rev1] {CANARY}"))),
    ]
}

/// The secret of a login the front engine produced: the canary must be in it.
fn carries_canary(req: &LoginRequest) -> bool {
    let secret = match &req.credentials {
        Credentials::Password { password, .. } => password.expose(),
        Credentials::OAuth {
            initial_response, ..
        } => initial_response.expose(),
    };
    secret.windows(CANARY.len()).any(|w| w == CANARY.as_bytes())
}

/// The operations both front engines share, so one driver covers both.
trait Front: Debug {
    fn feed(&mut self, data: &[u8]);
    fn next_action(&mut self) -> Option<FrontAction>;
    fn login_result(&mut self, verdict: LoginVerdict) -> Vec<u8>;
}

impl Front for ImapFront {
    fn feed(&mut self, data: &[u8]) {
        ImapFront::feed(self, data)
    }
    fn next_action(&mut self) -> Option<FrontAction> {
        ImapFront::next_action(self)
    }
    fn login_result(&mut self, verdict: LoginVerdict) -> Vec<u8> {
        ImapFront::login_result(self, verdict)
    }
}

impl Front for Pop3Front {
    fn feed(&mut self, data: &[u8]) {
        Pop3Front::feed(self, data)
    }
    fn next_action(&mut self) -> Option<FrontAction> {
        Pop3Front::next_action(self)
    }
    fn login_result(&mut self, verdict: LoginVerdict) -> Vec<u8> {
        Pop3Front::login_result(self, verdict)
    }
}

/// Feed `chunks`, checking the engine after every feed and every action; the n-th login
/// is answered with `verdicts()[n % 4]` (wrapped around). Returns how many logins carried
/// the canary.
fn drive_front<F: Front>(engine: &mut F, chunks: &[&[u8]], first_verdict: usize) -> usize {
    let verdicts = verdicts();
    let mut n = first_verdict;
    let mut canary_logins = 0;
    for chunk in chunks {
        engine.feed(chunk);
        check_compact("engine after feed", engine);
        while let Some(action) = engine.next_action() {
            check("action", &action);
            check("engine", engine);
            if let FrontAction::Login(req) = &action {
                check("login request", req);
                check("credentials", &req.credentials);
                if carries_canary(req) {
                    canary_logins += 1;
                }
                let verdict = verdicts[n % verdicts.len()].clone();
                n += 1;
                check("verdict", &verdict);
                let _ = engine.login_result(verdict);
                check("engine after verdict", engine);
            }
        }
    }
    canary_logins
}

fn imap_inputs() -> Vec<Vec<u8>> {
    let plain = b64(format!("\0{USER}\0{CANARY}").as_bytes());
    let plain_z = b64(format!("bob@example.org\0{USER}\0{CANARY}").as_bytes());
    let xoauth = b64(format!("user={USER}\x01auth=Bearer {CANARY}\x01\x01").as_bytes());
    let bearer = b64(format!("n,a={USER},\x01auth=Bearer {CANARY}\x01\x01").as_bytes());
    [
        format!("a1 LOGIN {USER} {CANARY}\r\n"),
        format!("a2 LOGIN \"{USER}\" \"{CANARY}\"\r\n"),
        format!("a3 LOGIN {{17}}\r\n{USER} {{11}}\r\n{CANARY}\r\n"),
        format!("a4 LOGIN {USER} {{11+}}\r\n{CANARY}\r\n"),
        format!("a5 AUTHENTICATE PLAIN {plain}\r\n"),
        format!("a6 AUTHENTICATE PLAIN\r\n{plain}\r\n"),
        format!("a7 AUTHENTICATE PLAIN {plain_z}\r\n"),
        format!(
            "a8 AUTHENTICATE LOGIN\r\n{}\r\n{}\r\n",
            b64(USER.as_bytes()),
            b64(CANARY.as_bytes())
        ),
        format!("a9 AUTHENTICATE XOAUTH2 {xoauth}\r\n"),
        format!("b1 AUTHENTICATE OAUTHBEARER {bearer}\r\n"),
        // Pipelined behind a first login: held in the buffer while that one is in flight.
        format!("b2 LOGIN {USER} {CANARY}\r\nb3 LOGIN {USER} {CANARY}\r\nb4 NOOP\r\n"),
        // A bad command carrying the canary, then a good login.
        format!("b5 FROB {CANARY}\r\nb6 LOGIN {USER} {CANARY}\r\n"),
        // Incomplete: stays in the buffer.
        format!("b7 LOGIN {USER} {{11}}\r\n{}", &CANARY[..8]),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

#[test]
fn imap_front_debug_never_shows_the_canary() {
    let mut logins = 0;
    for (i, input) in imap_inputs().iter().enumerate() {
        let mut whole = 0;
        for (s, chunks) in splits(input, 1).iter().enumerate() {
            let mut f = ImapFront::new(front_config(), false);
            let n = drive_front(&mut f, chunks, i + s);
            if s == 0 {
                whole = n;
            }
            logins += n;
        }
        let incomplete = i == imap_inputs().len() - 1;
        assert_eq!(whole > 0, !incomplete, "input {i}: canary logins {whole}");
    }
    assert!(logins > 500, "only {logins} logins carried the canary");
}

fn pop3_inputs() -> Vec<Vec<u8>> {
    let plain = b64(format!("\0{USER}\0{CANARY}").as_bytes());
    let xoauth = b64(format!("user={USER}\x01auth=Bearer {CANARY}\x01\x01").as_bytes());
    [
        format!("USER {USER}\r\nPASS {CANARY}\r\n"),
        format!("AUTH PLAIN {plain}\r\n"),
        format!("AUTH PLAIN\r\n{plain}\r\n"),
        format!(
            "AUTH LOGIN\r\n{}\r\n{}\r\n",
            b64(USER.as_bytes()),
            b64(CANARY.as_bytes())
        ),
        format!("AUTH XOAUTH2 {xoauth}\r\n"),
        format!("USER {USER}\r\nPASS {CANARY}\r\nUSER {USER}\r\nPASS {CANARY}\r\nCAPA\r\n"),
        format!("FROB {CANARY}\r\nUSER {USER}\r\nPASS {CANARY}\r\n"),
        format!("USER {USER}\r\nPASS {}", &CANARY[..8]),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

#[test]
fn pop3_front_debug_never_shows_the_canary() {
    let mut logins = 0;
    for (i, input) in pop3_inputs().iter().enumerate() {
        let mut whole = 0;
        for (s, chunks) in splits(input, 1).iter().enumerate() {
            let mut f = Pop3Front::new(front_config(), false);
            let n = drive_front(&mut f, chunks, i + s);
            if s == 0 {
                whole = n;
            }
            logins += n;
        }
        let incomplete = i == pop3_inputs().len() - 1;
        assert_eq!(whole > 0, !incomplete, "input {i}: canary logins {whole}");
    }
    assert!(logins > 300, "only {logins} logins carried the canary");
}

// --- upstream engines --------------------------------------------------------------------

fn password(authzid: Option<&str>, pw: &str) -> LoginRequest {
    LoginRequest {
        credentials: Credentials::Password {
            authzid: authzid.map(str::to_string),
            authcid: USER.into(),
            password: Secret::new(pw),
        },
    }
}

fn logins() -> Vec<LoginRequest> {
    vec![
        password(None, CANARY),
        // Not quotable: goes out as a literal.
        password(None, &format!("{CANARY}ä")),
        password(Some("bob@example.org"), CANARY),
        LoginRequest {
            credentials: Credentials::OAuth {
                mechanism: OAuthMechanism::XOAuth2,
                user: USER.into(),
                initial_response: Secret::new(format!(
                    "user={USER}\x01auth=Bearer {CANARY}\x01\x01"
                )),
            },
        },
    ]
}

fn upstream_config(starttls: bool) -> UpstreamConfig {
    UpstreamConfig {
        limits: Limits::default(),
        starttls,
        forward: None,
    }
}

/// The canary as the upstream engines may send it: plain, or inside base64.
fn sends_canary(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    text.contains(CANARY) || canary_b64_cores().iter().any(|c| text.contains(c.as_str()))
}

/// The operations both upstream engines share.
trait Upstream: Debug {
    fn feed(&mut self, data: &[u8]);
    fn next_action(&mut self) -> Result<Option<UpstreamAction>, mailgate_proto::UpstreamError>;
    fn tls_started(&mut self);
}

impl Upstream for ImapUpstream {
    fn feed(&mut self, data: &[u8]) {
        ImapUpstream::feed(self, data)
    }
    fn next_action(&mut self) -> Result<Option<UpstreamAction>, mailgate_proto::UpstreamError> {
        ImapUpstream::next_action(self)
    }
    fn tls_started(&mut self) {
        ImapUpstream::tls_started(self)
    }
}

impl Upstream for Pop3Upstream {
    fn feed(&mut self, data: &[u8]) {
        Pop3Upstream::feed(self, data)
    }
    fn next_action(&mut self) -> Result<Option<UpstreamAction>, mailgate_proto::UpstreamError> {
        Pop3Upstream::next_action(self)
    }
    fn tls_started(&mut self) {
        Pop3Upstream::tls_started(self)
    }
}

/// Feed the backend's side in `phases` (a phase ends where the engine asks for TLS), each
/// phase in `chunks` pieces, checking everything on the way. Returns whether the engine
/// sent the canary and whether it finished.
fn drive_upstream<U: Upstream>(engine: &mut U, phases: &[Vec<&[u8]>]) -> (bool, bool) {
    let mut sent = false;
    let mut done = false;
    check("fresh engine", engine);
    for chunks in phases {
        for chunk in chunks {
            engine.feed(chunk);
            check_compact("engine after feed", engine);
            loop {
                match engine.next_action() {
                    Ok(None) => break,
                    Ok(Some(action)) => {
                        check("action", &action);
                        check("engine", engine);
                        match action {
                            UpstreamAction::Send(bytes) => sent |= sends_canary(&bytes),
                            UpstreamAction::StartTls => engine.tls_started(),
                            UpstreamAction::Done(v) => {
                                check("verdict", &v);
                                done = true;
                            }
                            UpstreamAction::CredentialsNext => {}
                        }
                    }
                    Err(e) => {
                        check("error", &e);
                        check("engine after error", engine);
                        return (sent, done);
                    }
                }
            }
        }
    }
    (sent, done)
}

/// Each phase split into two at every third byte (the other phases whole), and each
/// byte by byte (which reaches every intermediate state).
fn phase_splits(phases: &[Vec<u8>]) -> Vec<Vec<Vec<&[u8]>>> {
    let whole: Vec<Vec<&[u8]>> = phases.iter().map(|p| vec![p.as_slice()]).collect();
    let mut out = vec![whole.clone()];
    for (i, p) in phases.iter().enumerate() {
        for split in splits(p, 3).into_iter().skip(1) {
            let mut v = whole.clone();
            v[i] = split;
            out.push(v);
        }
    }
    out
}

/// How many `+` continuations the IMAP backend must send for `login`: one before a
/// literal, one for a SASL response without SASL-IR, one OAuth error challenge before a
/// refusal.
fn imap_continuations(login: &LoginRequest, sasl_ir: bool, refused: bool) -> usize {
    match &login.credentials {
        Credentials::Password {
            authzid: None,
            password,
            ..
        } => usize::from(!password.expose().is_ascii()),
        Credentials::Password { .. } => usize::from(!sasl_ir),
        Credentials::OAuth { .. } => usize::from(!sasl_ir) + usize::from(refused),
    }
}

/// IMAP backend conversations: greeting (with or without STARTTLS), the continuations the
/// login needs, then a verdict and untagged lines that echo the canary, and more bytes
/// after the verdict.
fn imap_backend(sasl_ir: bool, starttls: bool, conts: usize, verdict: &str) -> Vec<Vec<u8>> {
    let ir = if sasl_ir { " SASL-IR" } else { "" };
    let caps = format!("IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2{ir}");
    let login = |tag: u32| {
        format!(
            "{}* CAPABILITY {caps} {CANARY}\r\nmg{tag} {verdict} {CANARY}\r\n\
             * 1 EXISTS\r\n* OK {CANARY}\r\n",
            "+ go on\r\n".repeat(conts)
        )
    };
    if starttls {
        vec![
            b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\nmg1 OK go\r\n".to_vec(),
            format!("* CAPABILITY {caps}\r\nmg2 OK done\r\n{}", login(3)).into_bytes(),
        ]
    } else {
        vec![format!("* OK [CAPABILITY {caps}] hi {CANARY}\r\n{}", login(1)).into_bytes()]
    }
}

#[test]
fn imap_upstream_debug_never_shows_the_canary() {
    let mut runs = 0;
    for login in logins() {
        for (sasl_ir, starttls, verdict) in [
            (true, false, "NO [AUTHENTICATIONFAILED]"),
            (false, false, "OK [CAPABILITY IMAP4rev1]"),
            (true, true, "NO [UNAVAILABLE]"),
            (false, true, "OK"),
        ] {
            let conts = imap_continuations(&login, sasl_ir, verdict.starts_with("NO"));
            let phases = imap_backend(sasl_ir, starttls, conts, verdict);
            for split in phase_splits(&phases) {
                let mut up = ImapUpstream::new(upstream_config(starttls), login.clone());
                let (sent, done) = drive_upstream(&mut up, &split);
                let what = format!("{login:?} sasl_ir={sasl_ir} starttls={starttls}");
                assert!(sent, "{what}: the canary was not sent");
                assert!(done, "{what}: no verdict");
                runs += 1;
            }
        }
    }
    assert!(runs > 400, "{runs} runs");
}

/// POP3 backend conversations: greeting, CAPA, optional STLS, the `+OK` to USER when the
/// login goes as USER/PASS, then a verdict that echoes the canary, and more after it.
fn pop3_backend(starttls: bool, user_pass: bool, verdict: &str) -> Vec<Vec<u8>> {
    let capa = format!("+OK\r\nUSER\r\nSASL PLAIN XOAUTH2 {CANARY}\r\n.\r\n");
    let user_ok = if user_pass { "+OK\r\n" } else { "" };
    let login = format!("{user_ok}{verdict} {CANARY}\r\n+OK more {CANARY}\r\n");
    if starttls {
        vec![
            b"+OK hi\r\n+OK\r\nSTLS\r\n.\r\n+OK go\r\n".to_vec(),
            format!("{capa}{login}").into_bytes(),
        ]
    } else {
        vec![format!("+OK hi {CANARY}\r\n{capa}{login}").into_bytes()]
    }
}

#[test]
fn pop3_upstream_debug_never_shows_the_canary() {
    let mut runs = 0;
    for login in logins() {
        let user_pass = matches!(
            login.credentials,
            Credentials::Password { authzid: None, .. }
        );
        for (starttls, verdict) in [
            (false, "-ERR [AUTH]"),
            (true, "-ERR [SYS/TEMP]"),
            (false, "+OK"),
            (true, "+OK"),
        ] {
            let phases = pop3_backend(starttls, user_pass, verdict);
            for split in phase_splits(&phases) {
                let mut up = Pop3Upstream::new(upstream_config(starttls), login.clone());
                let (sent, done) = drive_upstream(&mut up, &split);
                let what = format!("{login:?} starttls={starttls} {verdict}");
                assert!(sent, "{what}: the canary was not sent");
                assert!(done, "{what}: no verdict");
                runs += 1;
            }
        }
    }
    assert!(runs > 200, "{runs} runs");
}

// --- the panic path ----------------------------------------------------------------------

thread_local! {
    /// `Some` while this thread captures panic messages instead of printing them.
    static CAPTURED: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// A panic hook that keeps the messages of threads that asked for it, and hands every
/// other panic (a failing test elsewhere) to the default hook.
fn install_capturing_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let captured = CAPTURED.with(|c| {
                let mut c = c.borrow_mut();
                match c.as_mut() {
                    Some(list) => {
                        let payload = info
                            .payload()
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| {
                                info.payload().downcast_ref::<&str>().map(|s| s.to_string())
                            })
                            .unwrap_or_default();
                        // The message, without the location (this file's name has the
                        // canary's word in it).
                        list.push(payload);
                        true
                    }
                    None => false,
                }
            });
            if !captured {
                default(info);
            }
        }));
    });
}

/// Run `f`, which must panic; returns the panic's message as the hook saw it.
fn panic_message(f: impl FnOnce()) -> String {
    install_capturing_hook();
    CAPTURED.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    let messages = CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default();
    assert!(result.is_err(), "did not panic");
    assert!(!messages.is_empty(), "the hook saw no panic");
    messages.join("\n")
}

#[test]
fn panic_messages_never_show_the_canary() {
    // Engines in the states that hold the most: a login in flight with another one
    // pipelined behind it, a partial literal, a relay mid-login.
    let mut imap = ImapFront::new(front_config(), false);
    imap.feed(format!("a LOGIN {USER} {CANARY}\r\nb LOGIN {USER} {{11}}\r\n").as_bytes());
    let imap_login = imap.next_action().expect("login");
    imap.feed(&CANARY.as_bytes()[..6]);
    let mut pop3 = Pop3Front::new(front_config(), false);
    pop3.feed(format!("USER {USER}\r\nPASS {CANARY}\r\nUSER {USER}\r\nPASS {CANARY}").as_bytes());
    let _ = pop3.next_action();
    let pop3_login = pop3.next_action().expect("login");
    let mut up = ImapUpstream::new(upstream_config(false), password(None, CANARY));
    up.feed(format!("* OK [CAPABILITY IMAP4rev1] {CANARY}\r\n").as_bytes());
    let _ = up.next_action();
    let up_send = up.next_action().expect("ok").expect("send");
    assert!(matches!(&up_send, UpstreamAction::Send(b) if sends_canary(b)));
    let mut up2 = ImapUpstream::new(upstream_config(false), password(None, CANARY));
    up2.feed(format!("* OK [CAPABILITY IMAP4rev1] {CANARY}\r\n").as_bytes());
    assert_eq!(up2.next_action(), Ok(Some(UpstreamAction::CredentialsNext)));
    let mut pop3_up = Pop3Upstream::new(upstream_config(false), password(None, CANARY));
    pop3_up.feed(format!("+OK {CANARY}\r\n+OK\r\nUSER\r\n.\r\n+OK\r\n").as_bytes());
    while let Ok(Some(_)) = pop3_up.next_action() {}

    let messages = [
        panic_message(|| panic!("engine in a bad state: {imap:?}")),
        panic_message(|| panic!("engine in a bad state: {imap:#?}")),
        panic_message(|| panic!("engine in a bad state: {pop3:#?}")),
        panic_message(|| panic!("relay in a bad state: {up:#?}")),
        panic_message(|| panic!("relay in a bad state: {pop3_up:#?}")),
        // What a driver's assertion on an action prints.
        panic_message(|| assert_eq!(imap_login, FrontAction::StartTls, "unexpected action")),
        panic_message(|| assert_eq!(pop3_login, FrontAction::StartTls)),
        panic_message(|| assert_eq!(up_send, UpstreamAction::StartTls)),
        // `expect_err` prints the `Ok` value: here the login line the relay yields.
        panic_message(|| {
            let _ = up2.next_action().expect_err("relay should have failed");
        }),
        panic_message(|| {
            let verdict: Result<LoginVerdict, ()> =
                std::hint::black_box(Ok(LoginVerdict::Rejected(BackendReply {
                    untagged: Vec::new(),
                    status: format!("NO {CANARY}").into_bytes(),
                })));
            verdict.expect_err("should have failed");
        }),
    ];
    for m in &messages {
        assert_clean("panic message", m);
    }
    assert!(messages[0].contains("ImapFront"), "{}", messages[0]);
    assert!(messages[5].contains("Login"), "{}", messages[5]);
    assert!(messages[8].contains("Send(<"), "{}", messages[8]);
}
