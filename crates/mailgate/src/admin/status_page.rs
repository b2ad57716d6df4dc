//! `GET /`: the status page for people. One self-contained HTML document: no external
//! assets, no JavaScript, an optional `<meta http-equiv=refresh>`. It lists every service
//! area (a backend's `public_name`, else its name) with what a new login meets there now
//! (in colour and plain words, from [`availability`]: accepted, accepted by the area's
//! fallback, or turned away and why), sessions against the budget, the last check's
//! latency and since when; and a "check my domain" form (`GET /?domain=example.com`) that
//! says which service area a domain's logins go to (exact, wildcard or default route) and
//! what they meet there.
//!
//! Never shown: host names, addresses or probe errors (they may name internal hosts),
//! unless `admin.show_addresses` asks for addresses. Everything inserted is HTML-escaped.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use mailgate_config::{Backend, RouteRule, RoutingTable};
use mailgate_health::BackendStatus;

pub mod availability;

use self::availability::{Cause, Verdict, assess};

/// What the page is built from.
#[derive(Debug)]
pub struct PageInput<'a> {
    /// Health of every backend.
    pub statuses: &'a [BackendStatus],
    /// The routing table in force.
    pub table: &'a RoutingTable,
    /// The `domain` query parameter, as typed.
    pub domain: Option<&'a str>,
    /// Show host:port under each service area (`admin.show_addresses`).
    pub show_addresses: bool,
    /// Auto-refresh period; 0 disables it.
    pub refresh_secs: u32,
    /// Offer the domain check (`admin.domain_check`).
    pub domain_check: bool,
    /// Now (wall clock).
    pub now: SystemTime,
}

/// Escape text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// How the page shows one backend: CSS class, the words in its pill, an optional line under
/// the pill (escaped HTML) and the domain check's sentence (escaped HTML).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// `ok`, `slow`, `backup`, `busy`, `maint` or `down`.
    pub class: &'static str,
    /// Plain words (not yet escaped).
    pub words: String,
    /// Escaped HTML shown under the pill, if any.
    pub detail: Option<String>,
    /// Escaped HTML: what the verdict means for the reader's login.
    pub sentence: String,
}

/// A cause as customers should read it.
fn cause_words(cause: Cause) -> &'static str {
    match cause {
        Cause::Drained => "in maintenance",
        Cause::Down => "unavailable",
        Cause::AtBudget => "full",
    }
}

/// What customers are told about a backend, by what a login meets now (see docs/admin.md):
/// a backend the guard keeps admitted while down accepts logins, a backend whose fallback
/// takes its logins says so, and only a backend that turns logins away says it does.
pub fn shown(verdict: &Verdict, table: &RoutingTable) -> Shown {
    let area = |name: &str| escape(public_name(name, table.backend(name).map(|b| &**b)));
    let plain = |class, words: &str, sentence: &str| Shown {
        class,
        words: words.into(),
        detail: None,
        sentence: sentence.into(),
    };
    match verdict {
        Verdict::Normal => plain("ok", "Operating normally", "It is healthy."),
        Verdict::Slow => plain("slow", "Slow", "It is working, but slower than usual."),
        Verdict::DownAdmitted => plain(
            "slow",
            "Accepting logins — checking a problem",
            "Logins are accepted, but our checks report a problem that we are looking into.",
        ),
        Verdict::Recovering { fallback: None, .. } => plain(
            "slow",
            "Recovering — some logins turned away",
            "It is coming back after a problem and accepts only part of the logins for a \
             short while; if yours is refused, please try again in a minute.",
        ),
        Verdict::Recovering {
            fallback: Some(fb), ..
        } => {
            let fb = area(fb);
            Shown {
                class: "slow",
                words: "Recovering — accepting logins".into(),
                detail: Some(format!("some served by <b>{fb}</b>")),
                sentence: format!(
                    "It is coming back after a problem; for a short while some logins are \
                     served by <b>{fb}</b> instead."
                ),
            }
        }
        Verdict::Fallback { cause, fallback } => {
            let fb = area(fallback);
            let why = cause_words(*cause);
            Shown {
                class: "backup",
                words: "Accepting logins via backup".into(),
                detail: Some(format!("{why}; served by <b>{fb}</b>")),
                sentence: format!(
                    "Logins are accepted: while it is {why}, <b>{fb}</b> serves them."
                ),
            }
        }
        Verdict::Refused {
            cause: Cause::Drained,
            ..
        } => plain(
            "maint",
            "Maintenance — not accepting logins",
            "It is in maintenance and does not accept logins right now; please try again later.",
        ),
        Verdict::Refused {
            cause: Cause::Down, ..
        } => plain(
            "down",
            "Not accepting logins — we are working on it",
            "Logins are refused for now; please try again later.",
        ),
        Verdict::Refused {
            cause: Cause::AtBudget,
            ..
        } => plain(
            "busy",
            "Full — new logins turned away",
            "It holds as many sessions as it can: new logins are turned away until others \
             end. Please try again in a few minutes.",
        ),
    }
}

/// A drain in the routing file with a `drain_reason`: the reason under the pill (the
/// admin API's instance-local reasons stay on `/status`).
fn drain_reason(shown: &mut Shown, verdict: &Verdict, def: Option<&Backend>) {
    let drained = matches!(
        verdict,
        Verdict::Refused {
            cause: Cause::Drained,
            ..
        } | Verdict::Fallback {
            cause: Cause::Drained,
            ..
        }
    );
    let reason = def
        .and_then(|b| b.drain.as_ref())
        .and_then(|d| d.reason.as_deref());
    if let (true, Some(r)) = (drained, reason) {
        let r = escape(r);
        shown.detail = Some(match shown.detail.take() {
            Some(d) => format!("{d}; {r}"),
            None => r,
        });
    }
}

/// The name customers see.
fn public_name<'a>(name: &'a str, def: Option<&'a Backend>) -> &'a str {
    def.and_then(|b| b.public_name.as_deref()).unwrap_or(name)
}

/// "3 min", "2 h 5 min", "4 days".
fn human_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} days", s / 86_400),
    }
}

/// "2026-11-28 10:42 UTC".
fn clock(t: SystemTime) -> String {
    let r = humantime::format_rfc3339_seconds(t).to_string();
    // 2026-11-28T10:42:07Z
    match (r.get(..10), r.get(11..16)) {
        (Some(day), Some(hm)) => format!("{day} {hm} UTC"),
        _ => r,
    }
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:0;\
background:#f6f8fa;color:#1f2328;line-height:1.45}\
main{max-width:980px;margin:0 auto;padding:24px 20px 40px}\
h1{font-size:1.6rem;margin:0 0 16px}h2{font-size:1.15rem;margin:0 0 12px}\
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px 20px;margin:0 0 18px}\
.banner{font-weight:600;border-left:6px solid}\
.banner.ok{border-color:#1a7f37}.banner.slow{border-color:#9a6700}\
.banner.down{border-color:#cf222e}.banner.maint{border-color:#57606a}\
.banner.busy{border-color:#bc4c00}.banner.backup{border-color:#0969da}\
table{width:100%;border-collapse:collapse}th,td{text-align:left;padding:9px 8px;\
border-bottom:1px solid #eaeef2;vertical-align:middle}th{font-size:.85rem;color:#57606a;font-weight:600}\
tr:last-child td{border-bottom:0}\
.pill{display:inline-block;padding:2px 10px;border-radius:999px;font-size:.9rem;font-weight:600;color:#fff}\
.pill.ok{background:#1a7f37}.pill.slow{background:#9a6700}.pill.down{background:#cf222e}\
.pill.maint{background:#57606a}.pill.busy{background:#bc4c00}.pill.backup{background:#0969da}\
.bar{width:120px;height:8px;background:#eaeef2;border-radius:4px;overflow:hidden;margin-top:4px}\
.bar span{display:block;height:100%;background:#0969da}.bar span.high{background:#cf222e}\
.muted{color:#57606a;font-size:.88rem}.addr{color:#57606a;font-size:.8rem;font-family:monospace}\
form{display:flex;gap:8px;flex-wrap:wrap;align-items:center}\
input[type=text]{font-size:1rem;padding:7px 10px;border:1px solid #d0d7de;border-radius:6px;min-width:260px}\
button{font-size:1rem;padding:7px 16px;border:1px solid #1f883d;background:#1f883d;color:#fff;\
border-radius:6px;cursor:pointer}\
.answer{margin-top:14px;padding:10px 14px;border-radius:6px;background:#f6f8fa;border-left:5px solid #57606a}\
.answer.ok{border-color:#1a7f37}.answer.slow{border-color:#9a6700}.answer.down{border-color:#cf222e}\
.answer.maint{border-color:#57606a}.answer.unknown{border-color:#57606a}\
.answer.busy{border-color:#bc4c00}.answer.backup{border-color:#0969da}\
footer{color:#57606a;font-size:.85rem}";

/// Render the page.
pub fn render(input: &PageInput<'_>) -> String {
    let verdicts: Vec<Verdict> = input
        .statuses
        .iter()
        .map(|s| assess(s, input.statuses, input.table))
        .collect();
    let mut h = String::with_capacity(8192);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    if input.refresh_secs > 0 {
        let _ = writeln!(
            h,
            "<meta http-equiv=\"refresh\" content=\"{}\">",
            input.refresh_secs
        );
    }
    h.push_str("<title>Mail service status</title>\n<style>");
    h.push_str(STYLE);
    h.push_str("</style>\n</head>\n<body>\n<main>\n<h1>Mail service status</h1>\n");
    banner(&mut h, &verdicts);
    if input.domain_check {
        domain_check(&mut h, input);
    }
    areas(&mut h, input, &verdicts);
    let _ = write!(h, "<footer>Updated {}", escape(&clock(input.now)));
    if input.refresh_secs > 0 {
        let _ = write!(h, " · this page refreshes every {} s", input.refresh_secs);
    }
    h.push_str(".</footer>\n</main>\n</body>\n</html>\n");
    h
}

/// The summary on top: the first line whose condition holds, worst first.
fn banner(h: &mut String, verdicts: &[Verdict]) {
    let any = |token: &str| verdicts.iter().any(|v| v.as_str() == token);
    let (class, text) = if verdicts.is_empty() {
        ("maint", "No mail services are configured.")
    } else if any("not_accepting") {
        (
            "down",
            "Some customers cannot log in to their mailbox right now. We are working on it.",
        )
    } else if any("full") {
        (
            "busy",
            "Some mail services are full: new logins are turned away until others end.",
        )
    } else if any("maintenance") {
        (
            "maint",
            "Some mail services are in maintenance and do not accept logins right now.",
        )
    } else if any("down_admitted") || any("recovering") {
        (
            "slow",
            "Some mail services have problems; logins are still accepted.",
        )
    } else if any("slow") {
        ("slow", "Some mail services are slower than usual.")
    } else if any("fallback") {
        (
            "backup",
            "Some mail services run on their backup systems; logins are accepted.",
        )
    } else {
        ("ok", "All mail services are operating normally.")
    };
    let _ = writeln!(
        h,
        "<div class=\"card banner {class}\" id=\"summary\">{}</div>",
        escape(text)
    );
}

fn domain_check(h: &mut String, input: &PageInput<'_>) {
    let typed = input.domain.map(str::trim).unwrap_or("");
    h.push_str("<section class=\"card\" id=\"check\">\n<h2>Check my domain</h2>\n");
    let _ = writeln!(
        h,
        "<form method=\"get\" action=\"/\"><label for=\"domain\">Your e-mail domain:</label> \
         <input type=\"text\" id=\"domain\" name=\"domain\" value=\"{}\" placeholder=\"example.com\" \
         maxlength=\"320\" autocomplete=\"off\"> <button type=\"submit\">Check</button></form>",
        escape(typed)
    );
    if !typed.is_empty() {
        let (class, message) = domain_answer(typed, input);
        let _ = writeln!(
            h,
            "<div class=\"answer {class}\" id=\"answer\" role=\"status\">{message}</div>"
        );
    }
    h.push_str("</section>\n");
}

/// The answer to a domain check: a CSS class and escaped HTML.
fn domain_answer(typed: &str, input: &PageInput<'_>) -> (&'static str, String) {
    // Accept a whole address too: the domain is what follows the last '@'.
    let domain = typed.rsplit('@').next().unwrap_or(typed).trim();
    let valid = !domain.is_empty()
        && domain.len() <= 253
        && mailgate_config::normalize::normalize_domain(domain).is_some();
    if !valid {
        return (
            "unknown",
            "That does not look like a domain name. Enter the part of your e-mail address \
             after the @, for example <b>example.com</b>."
                .into(),
        );
    }
    let shown_domain = escape(domain);
    let Some(route) = input.table.lookup_domain(domain) else {
        return (
            "unknown",
            format!(
                "We do not know the domain <b>{shown_domain}</b>. Please check the spelling; if \
                 it is right, your mail is not hosted here."
            ),
        );
    };
    let name = &route.backend.name;
    let area = escape(public_name(name, Some(&route.backend)));
    // A domain only the default route catches: say where its logins go without claiming
    // that the domain is hosted here.
    let intro = if route.rule == RouteRule::Default {
        format!(
            "We have no entry of our own for <b>{shown_domain}</b>; logins for it go to our \
             default service area, <b>{area}</b>"
        )
    } else {
        format!("Mail for <b>{shown_domain}</b> is served by <b>{area}</b>")
    };
    match input.statuses.iter().find(|s| &s.name == name) {
        Some(s) => {
            let shown = shown(&assess(s, input.statuses, input.table), input.table);
            (
                shown.class,
                format!("{intro}: {}. {}", escape(&shown.words), shown.sentence),
            )
        }
        None => ("unknown", format!("{intro}.")),
    }
}

fn areas(h: &mut String, input: &PageInput<'_>, verdicts: &[Verdict]) {
    h.push_str("<section class=\"card\" id=\"areas\">\n<h2>Service areas</h2>\n<table>\n");
    h.push_str(
        "<tr><th>Service area</th><th>Status</th><th>Sessions</th><th>Last check</th>\
         <th>Since</th></tr>\n",
    );
    for (s, verdict) in input.statuses.iter().zip(verdicts) {
        let def = input.table.backend(&s.name).map(|b| &**b);
        let mut shown = shown(verdict, input.table);
        drain_reason(&mut shown, verdict, def);
        let class = shown.class;
        let _ = write!(
            h,
            "<tr class=\"backend {class}\"><td><b>{}</b>",
            escape(public_name(&s.name, def))
        );
        if input.show_addresses
            && let Some(b) = def
        {
            let ports: Vec<String> = [b.imap_port, b.pop3_port]
                .into_iter()
                .flatten()
                .map(|p| p.to_string())
                .collect();
            let _ = write!(
                h,
                "<div class=\"addr\">{}:{}</div>",
                escape(&b.host),
                escape(&ports.join(","))
            );
        }
        let _ = write!(
            h,
            "</td><td><span class=\"pill {class}\">{}</span>",
            escape(&shown.words)
        );
        if let Some(detail) = &shown.detail {
            let _ = write!(h, "<div class=\"muted\">{detail}</div>");
        }
        h.push_str("</td><td>");
        sessions_cell(h, s);
        h.push_str("</td><td>");
        match &s.last_probe {
            Some(p) if p.ok => {
                let _ = write!(h, "{:.1} ms", p.latency.as_secs_f64() * 1000.0);
            }
            Some(_) => h.push_str("no answer"),
            None => h.push_str("<span class=\"muted\">not checked yet</span>"),
        }
        let age = input.now.duration_since(s.since).unwrap_or_default();
        let _ = writeln!(
            h,
            "</td><td>{}<div class=\"muted\">for {}</div></td></tr>",
            escape(&clock(s.since)),
            escape(&human_age(age))
        );
    }
    h.push_str("</table>\n</section>\n");
}

fn sessions_cell(h: &mut String, s: &BackendStatus) {
    match s.max_sessions {
        Some(max) if max > 0 => {
            let pct = (f64::from(s.sessions) * 100.0 / f64::from(max)).min(100.0);
            let high = if pct >= 90.0 { " class=\"high\"" } else { "" };
            let _ = write!(
                h,
                "{} / {max}<div class=\"bar\"><span{high} style=\"width:{pct:.0}%\"></span></div>",
                s.sessions
            );
        }
        _ => {
            let _ = write!(h, "{}", s.sessions);
        }
    }
}

#[cfg(test)]
#[path = "status_page_tests.rs"]
mod tests;
