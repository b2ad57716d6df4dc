//! The conversation that checks one cell of the matrix against the running mailgate, and
//! the checks shared by the cells: health transition and reason, metrics, counts back to 0.

use std::time::{Duration, Instant};

use mailgate_testkit::fake::FakeHandle;

use super::cells::{AUTH_FAILURE_DELAY, CAP, Cell, Expect, FALL, Fault, IDLE, MARGIN, Proto};
use super::harness::{Client, Mailgate, Read};

/// What one cell measured (for the table printed at the end).
#[derive(Debug, Default)]
pub struct Measured {
    pub answer: String,
    pub slowest: Duration,
    pub reason: String,
}

/// Runs one cell's conversation and checks; `Err` says what differed.
pub async fn run(mg: &Mailgate, cell: Cell, fake: Option<&FakeHandle>) -> Result<Measured, String> {
    let mut c = connect(mg, cell).await?;
    let m = match cell.fault.expect() {
        Expect::Unavailable { deadline, reasons } => {
            unavailable(mg, cell, &mut c, deadline, reasons).await?
        }
        Expect::Temporary { counts } => temporary(mg, cell, &mut c, counts).await?,
        Expect::Spliced => spliced(mg, cell, &mut c).await?,
    };
    if let Some(f) = fake {
        let s = f.stats();
        if cell.fault.handshakes(cell.tls) && s.tls_handshakes == 0 {
            return Err("the fake saw no TLS handshake".into());
        }
        // Every login until the backend is down reaches the fake (all of them if the
        // fault does not count against health).
        let want = match cell.fault.expect() {
            Expect::Temporary { counts: false } => FALL + 1,
            _ => FALL,
        };
        if cell.fault.sabotages_logins() && s.sabotaged_logins != u64::from(want) {
            return Err(format!(
                "{} logins reached the fake's login fault, want {want}",
                s.sabotaged_logins
            ));
        }
    }
    back_to_zero(mg, cell).await?;
    Ok(m)
}

async fn connect(mg: &Mailgate, cell: Cell) -> Result<Client, String> {
    let to = match cell.proto {
        Proto::Imap => mg.imap,
        Proto::Pop3 => mg.pop3,
    };
    let mut c = Client::connect(cell.source(), to).await?;
    let g = c.line(CAP, "greeting").await?;
    let want = if cell.proto == Proto::Imap {
        "* OK"
    } else {
        "+OK"
    };
    if !g.starts_with(want) {
        return Err(format!("greeting {g:?}"));
    }
    Ok(c)
}

/// One login attempt; the answer line and how long it took. IMAP: untagged lines are
/// skipped; a close before the tagged line is an error naming what came.
pub async fn login(
    c: &mut Client,
    proto: Proto,
    attempt: u32,
    user: &str,
) -> Result<(String, Duration), String> {
    match proto {
        Proto::Imap => {
            let tag = format!("a{attempt}");
            let t = Instant::now();
            c.send(&format!("{tag} LOGIN {user} secret")).await?;
            let mut seen = Vec::new();
            loop {
                match c.read(CAP).await {
                    Read::Line(l) if l.starts_with(&format!("{tag} ")) => {
                        return Ok((l, t.elapsed()));
                    }
                    Read::Line(l) => seen.push(l),
                    Read::Eof => {
                        return Err(format!(
                            "login #{attempt}: silent close after {:?} (untagged: {seen:?})",
                            t.elapsed()
                        ));
                    }
                    Read::Silent => return Err(format!("login #{attempt}: no answer in {CAP:?}")),
                }
            }
        }
        Proto::Pop3 => {
            c.send(&format!("USER {user}")).await?;
            let ok = c.line(CAP, "USER").await?;
            if !ok.starts_with("+OK") {
                return Err(format!("USER answered {ok:?}"));
            }
            let t = Instant::now();
            c.send("PASS secret").await?;
            match c.read(CAP).await {
                Read::Line(l) => Ok((l, t.elapsed())),
                Read::Eof => Err(format!(
                    "login #{attempt}: silent close after {:?}",
                    t.elapsed()
                )),
                Read::Silent => Err(format!("login #{attempt}: no answer in {CAP:?}")),
            }
        }
    }
}

fn unavailable_line(cell: Cell, attempt: u32) -> String {
    match cell.proto {
        Proto::Imap => format!(
            "a{attempt} NO [UNAVAILABLE] {} is unavailable",
            cell.backend()
        ),
        Proto::Pop3 => format!("-ERR [SYS/TEMP] {} is unavailable", cell.backend()),
    }
}

async fn unavailable(
    mg: &Mailgate,
    cell: Cell,
    c: &mut Client,
    deadline: Duration,
    reasons: &[&str],
) -> Result<Measured, String> {
    let mut m = Measured::default();
    for attempt in 1..=FALL {
        let (answer, took) = login(c, cell.proto, attempt, &cell.user()).await?;
        if !answer.starts_with(&unavailable_line(cell, attempt)) {
            return Err(format!(
                "login #{attempt} answered {answer:?} after {took:?}"
            ));
        }
        if took > deadline + MARGIN {
            return Err(format!(
                "login #{attempt} answered after {took:?} (bound {:?})",
                deadline + MARGIN
            ));
        }
        m.slowest = m.slowest.max(took);
        m.answer = answer;
    }
    m.reason = wait_down(mg, cell, reasons).await?;
    // Now refused from memory, without the backend.
    let (answer, took) = login(c, cell.proto, FALL + 1, &cell.user()).await?;
    if !answer.starts_with(&unavailable_line(cell, FALL + 1)) || took > MARGIN {
        return Err(format!("once down: {answer:?} after {took:?}"));
    }
    expect_refused_down(mg, cell).await?;
    expect_metric(mg, cell, "backend_error", FALL).await?;
    Ok(m)
}

async fn temporary(
    mg: &Mailgate,
    cell: Cell,
    c: &mut Client,
    counts: bool,
) -> Result<Measured, String> {
    let Fault::TempFail(code) = cell.fault else {
        return Err("not a temporary failure cell".into());
    };
    let mut m = Measured::default();
    for attempt in 1..=FALL {
        let want = match cell.proto {
            Proto::Imap => format!("a{attempt} {}", code.imap_line()),
            Proto::Pop3 => code.pop3_line().to_string(),
        };
        let (answer, took) = login(c, cell.proto, attempt, &cell.user()).await?;
        if answer != want {
            return Err(format!(
                "login #{attempt} answered {answer:?}, want {want:?}"
            ));
        }
        if took >= AUTH_FAILURE_DELAY {
            return Err(format!(
                "login #{attempt} held back {took:?} (auth_failure_delay {AUTH_FAILURE_DELAY:?})"
            ));
        }
        m.slowest = m.slowest.max(took);
        m.answer = answer;
    }
    let relayed_4th = if counts {
        m.reason = wait_down(mg, cell, &["temporary failure"]).await?;
        false
    } else {
        let b = mg.backend(&cell.backend()).await?;
        if b["state"] != "up" {
            return Err(format!(
                "health changed: {} ({})",
                b["state"], b["last_transition"]
            ));
        }
        m.reason = "health unaffected".into();
        true
    };
    // A 4th attempt is still answered (no "too many bad commands" close): the backend's
    // line again, or, once the backend is down, mailgate's own refusal.
    let (answer, _) = login(c, cell.proto, FALL + 1, &cell.user()).await?;
    let fine = match (cell.proto, relayed_4th) {
        (Proto::Imap, true) => answer == format!("a{} {}", FALL + 1, code.imap_line()),
        (Proto::Pop3, true) => answer == code.pop3_line(),
        (_, false) => answer.starts_with(&unavailable_line(cell, FALL + 1)),
    };
    if !fine {
        return Err(format!("attempt #{}: {answer:?}", FALL + 1));
    }
    if !relayed_4th {
        expect_refused_down(mg, cell).await?;
    }
    match cell.proto {
        Proto::Imap => {
            c.send("n1 NOOP").await?;
            let l = c
                .line_starting("n1 ", CAP, "NOOP after the refusals")
                .await?;
            if !l.starts_with("n1 OK") {
                return Err(format!("NOOP after the refusals: {l:?}"));
            }
        }
        Proto::Pop3 => {
            c.send("CAPA").await?;
            let l = c.line(CAP, "CAPA after the refusals").await?;
            if !l.starts_with("+OK") {
                return Err(format!("CAPA after the refusals: {l:?}"));
            }
            while c.line(CAP, "CAPA lines").await? != "." {}
        }
    }
    let relayed = if relayed_4th { FALL + 1 } else { FALL };
    expect_metric(mg, cell, "temp_failure", relayed).await?;
    Ok(m)
}

async fn spliced(mg: &Mailgate, cell: Cell, c: &mut Client) -> Result<Measured, String> {
    let (answer, took) = login(c, cell.proto, 1, &cell.user()).await?;
    let ok = match cell.proto {
        Proto::Imap => answer.starts_with("a1 OK"),
        Proto::Pop3 => answer.starts_with("+OK"),
    };
    if !ok {
        return Err(format!("login answered {answer:?}"));
    }
    let mut m = Measured {
        answer,
        slowest: took,
        reason: String::new(),
    };
    if cell.fault != Fault::CloseAfterLoginOk {
        let head = match cell.proto {
            Proto::Imap => {
                c.send("a2 SELECT INBOX").await?;
                let l = c.line_starting("a2 ", CAP, "SELECT").await?;
                if !l.starts_with("a2 OK") {
                    return Err(format!("SELECT: {l:?}"));
                }
                c.send("a3 FETCH 1 (BODY[])").await?;
                "* 1 FETCH (BODY[] {1024}"
            }
            Proto::Pop3 => {
                c.send("RETR 1").await?;
                "+OK 1024 octets"
            }
        };
        let l = c.line(CAP, "FETCH/RETR").await?;
        if l != head {
            return Err(format!("FETCH/RETR answered {l:?}"));
        }
        let part = c.bytes(512, CAP).await?;
        if !part.starts_with(format!("From: fake@{}.invalid", cell.backend()).as_bytes()) {
            return Err("the partial body is not the message".into());
        }
        m.answer = format!("{l} + 512 of 1024 bytes, then EOF");
    } else {
        m.answer.push_str(", then EOF");
    }
    let bound = match cell.fault {
        Fault::StallMidSplice => IDLE + MARGIN,
        _ => MARGIN,
    };
    let t = Instant::now();
    let rest = c.eof(bound).await?;
    let closed = t.elapsed();
    if !rest.is_empty() {
        return Err(format!("{} more bytes before EOF", rest.len()));
    }
    if cell.fault == Fault::StallMidSplice && closed < IDLE / 2 {
        return Err(format!(
            "closed after {closed:?}, before the idle timeout {IDLE:?}"
        ));
    }
    m.reason = format!("EOF {} ms after the last data", closed.as_millis());
    let b = mg.backend(&cell.backend()).await?;
    if b["state"] != "up" {
        return Err(format!(
            "health changed: {} ({})",
            b["state"], b["last_transition"]
        ));
    }
    expect_metric(mg, cell, "ok", 1).await?;
    Ok(m)
}

/// Waits until the backend is `down` in `/status` and its last transition names one of
/// `reasons`; returns the reason. Passive signals only: no probe may have run.
async fn wait_down(mg: &Mailgate, cell: Cell, reasons: &[&str]) -> Result<String, String> {
    let t = Instant::now();
    loop {
        let b = mg.backend(&cell.backend()).await?;
        if b["state"] == "down" {
            let reason = b["last_transition"]["reason"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if !reasons.iter().any(|r| reason.contains(r)) {
                return Err(format!(
                    "down, but reason {reason:?} names none of {reasons:?}"
                ));
            }
            if !b["last_probe"].is_null() {
                return Err(format!("a probe ran: {}", b["last_probe"]));
            }
            let m = mg.metrics().await?;
            let up = m.value("mailgate_backend_up", &[("backend", &cell.backend())]);
            if up != Some(0.0) {
                return Err(format!("down in /status, mailgate_backend_up = {up:?}"));
            }
            return Ok(reason);
        }
        if t.elapsed() > CAP {
            return Err(format!(
                "not down after {FALL} failed logins: state {} ({})",
                b["state"], b["last_transition"]
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn expect_metric(mg: &Mailgate, cell: Cell, result: &str, want: u32) -> Result<(), String> {
    let m = mg.metrics().await?;
    let backend = cell.backend();
    let labels = [
        ("backend", backend.as_str()),
        ("protocol", cell.proto.as_str()),
        ("result", result),
    ];
    let got = m.value("mailgate_logins_total", &labels);
    if got != Some(f64::from(want)) {
        let all: Vec<&str> =
            m.0.lines()
                .filter(|l| {
                    l.starts_with("mailgate_logins_total{") && l.contains(&format!("\"{backend}\""))
                })
                .collect();
        return Err(format!(
            "logins_total{{result={result:?}}} = {got:?}, want {want}; have {all:?}"
        ));
    }
    Ok(())
}

/// The login refused because the backend is down is counted as such.
async fn expect_refused_down(mg: &Mailgate, cell: Cell) -> Result<(), String> {
    let m = mg.metrics().await?;
    let backend = cell.backend();
    let labels = [("backend", backend.as_str()), ("reason", "down")];
    match m.value("mailgate_refused_total", &labels) {
        Some(v) if v >= 1.0 => Ok(()),
        other => Err(format!("refused_total{{reason=\"down\"}} = {other:?}")),
    }
}

/// `sessions` and `logins_in_flight` in `/status` and `mailgate_backend_sessions` in
/// `/metrics` return to 0.
async fn back_to_zero(mg: &Mailgate, cell: Cell) -> Result<(), String> {
    let t = Instant::now();
    let backend = cell.backend();
    loop {
        let b = mg.backend(&backend).await?;
        let m = mg.metrics().await?;
        let gauge = m.value(
            "mailgate_backend_sessions",
            &[
                ("backend", backend.as_str()),
                ("protocol", cell.proto.as_str()),
            ],
        );
        let zero = b["sessions"] == 0 && b["logins_in_flight"] == 0 && gauge == Some(0.0);
        if zero {
            return Ok(());
        }
        if t.elapsed() > CAP {
            return Err(format!(
                "counts not back to 0: sessions {}, logins_in_flight {}, backend_sessions {gauge:?}",
                b["sessions"], b["logins_in_flight"]
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
