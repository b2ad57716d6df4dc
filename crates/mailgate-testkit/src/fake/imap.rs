//! The IMAP fake: greeting, CAPABILITY, ID, LOGIN, AUTHENTICATE PLAIN/LOGIN/XOAUTH2,
//! STARTTLS, SELECT/EXAMINE INBOX, FETCH, IDLE, NOOP, LOGOUT.

use std::io;

use super::conn::{Conn, FakedVerdict, LoginFate, Upgrade, decode_b64, decode_plain};
use super::{FaultMode, push_bounded};

const PRE_CAPS: &str = "IMAP4rev1 SASL-IR ID AUTH=PLAIN AUTH=LOGIN AUTH=XOAUTH2";
const POST_CAPS: &str = "IMAP4rev1 IDLE ID SASL-IR UIDPLUS NAMESPACE";
/// Longest literal a fake accepts inside a command.
const MAX_LITERAL: usize = 64 * 1024;

/// One token of a command line: atoms and strings, with parentheses as their own tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Atom(String),
    Str(String),
    Open,
    Close,
}

impl Tok {
    fn text(&self) -> &str {
        match self {
            Tok::Atom(s) | Tok::Str(s) => s,
            Tok::Open => "(",
            Tok::Close => ")",
        }
    }
}

fn tokenize(line: &str, out: &mut Vec<Tok>) {
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Tok::Open);
            }
            ')' => {
                chars.next();
                out.push(Tok::Close);
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => s.extend(chars.next()),
                        '"' => break,
                        c => s.push(c),
                    }
                }
                out.push(Tok::Str(s));
            }
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if matches!(c, ' ' | '\t' | '(' | ')') {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                out.push(Tok::Atom(s));
            }
        }
    }
}

/// Splits a trailing literal announcement `{n}` / `{n+}` off a line.
fn literal_suffix(line: &str) -> Option<(&str, usize, bool)> {
    let rest = line.strip_suffix('}')?;
    let open = rest.rfind('{')?;
    let spec = &rest[open + 1..];
    let (digits, sync) = match spec.strip_suffix('+') {
        Some(d) => (d, false),
        None => (spec, true),
    };
    let n = digits.parse().ok()?;
    Some((&line[..open], n, sync))
}

/// Reads one command, following literals; `None` at end of stream.
async fn read_command(conn: &mut Conn) -> io::Result<Option<Vec<Tok>>> {
    let mut toks = Vec::new();
    let Some(mut line) = conn.read_line().await? else {
        return Ok(None);
    };
    while let Some((head, n, sync)) = literal_suffix(&line) {
        if n > MAX_LITERAL {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "literal too big",
            ));
        }
        tokenize(head, &mut toks);
        if sync {
            conn.send(b"+ Ready for literal data\r\n").await?;
        }
        let data = conn.read_exact(n).await?;
        toks.push(Tok::Str(String::from_utf8_lossy(&data).into_owned()));
        line = conn.read_line().await?.unwrap_or_default();
    }
    tokenize(&line, &mut toks);
    Ok(Some(toks))
}

struct Session {
    authenticated: bool,
    selected: bool,
}

/// The capabilities before login: STARTTLS while it is offered.
fn pre_caps(conn: &Conn) -> String {
    if conn.offers_starttls() || conn.mode == FaultMode::InjectAfterStartTls {
        format!("{PRE_CAPS} STARTTLS")
    } else {
        PRE_CAPS.to_owned()
    }
}

/// Runs the IMAP dialogue on one connection.
pub(super) async fn run(conn: &mut Conn) -> io::Result<()> {
    let mut s = Session {
        authenticated: false,
        selected: false,
    };
    match conn.mode {
        FaultMode::NoGreeting => return conn.stall().await,
        FaultMode::GreetingBye => {
            conn.send(b"* BYE [UNAVAILABLE] Server overloaded\r\n")
                .await?;
            return conn.finish().await;
        }
        FaultMode::PreauthGreeting => {
            s.authenticated = true;
            let g = format!("* PREAUTH [CAPABILITY {POST_CAPS}] fake preauth\r\n");
            conn.send(g.as_bytes()).await?;
        }
        _ => {
            let g = format!("* OK [CAPABILITY {}] fake ready\r\n", pre_caps(conn));
            conn.send(g.as_bytes()).await?;
        }
    }
    if conn.mode == FaultMode::StallAfterGreeting {
        return conn.stall().await;
    }
    while let Some(toks) = read_command(conn).await? {
        let (tag, cmd) = match toks.as_slice() {
            [t, c, ..] => (t.text().to_owned(), c.text().to_ascii_uppercase()),
            _ => {
                conn.send(b"* BAD Missing command\r\n").await?;
                continue;
            }
        };
        let args = &toks[2..];
        let reply = match cmd.as_str() {
            "CAPABILITY" => {
                let c = if s.authenticated {
                    POST_CAPS.to_owned()
                } else {
                    pre_caps(conn)
                };
                format!("* CAPABILITY {c}\r\n{tag} OK Capability completed.\r\n")
            }
            "NOOP" => format!("{tag} OK NOOP completed.\r\n"),
            "ID" => id(conn, &tag, args),
            "LOGIN" => {
                if let LoginFate::Sabotaged = conn.on_login().await? {
                    return Ok(());
                }
                match args {
                    [u, p] => login_answer(conn, &mut s, &tag, u.text(), p.text()).await,
                    _ => format!("{tag} BAD LOGIN needs user and password\r\n"),
                }
            }
            "AUTHENTICATE" => {
                if let LoginFate::Sabotaged = conn.on_login().await? {
                    return Ok(());
                }
                match authenticate(conn, args).await? {
                    Some((u, p)) => login_answer(conn, &mut s, &tag, &u, &p).await,
                    None => format!("{tag} BAD Authentication cancelled or malformed\r\n"),
                }
            }
            "STARTTLS" if conn.mode == FaultMode::InjectAfterStartTls => {
                let r = format!("{tag} OK Begin TLS negotiation now\r\n{tag}x NOOP injected\r\n");
                conn.send(r.as_bytes()).await?;
                return conn.stall().await;
            }
            "STARTTLS" if conn.offers_starttls() && !s.authenticated => {
                let ok = format!("{tag} OK Begin TLS negotiation now\r\n");
                match conn.start_tls(ok.as_bytes()).await? {
                    Upgrade::Done => continue,
                    Upgrade::Stalled => return Ok(()),
                }
            }
            "SELECT" | "EXAMINE" if s.authenticated => match args.first() {
                Some(m) if m.text().eq_ignore_ascii_case("INBOX") => {
                    s.selected = true;
                    let rw = if cmd == "SELECT" {
                        "READ-WRITE"
                    } else {
                        "READ-ONLY"
                    };
                    format!(
                        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
                         * 1 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1] UIDs valid\r\n\
                         * OK [UIDNEXT 2] Predicted next UID\r\n{tag} OK [{rw}] {cmd} completed.\r\n"
                    )
                }
                _ => format!("{tag} NO [NONEXISTENT] Mailbox doesn't exist.\r\n"),
            },
            "FETCH" | "UID" if s.selected => {
                if fetch(conn, &tag, args).await? {
                    continue;
                }
                return Ok(());
            }
            "IDLE" if s.authenticated => {
                conn.send(b"+ idling\r\n").await?;
                match conn.read_line().await? {
                    Some(l) if l.eq_ignore_ascii_case("DONE") => {
                        format!("{tag} OK Idle completed.\r\n")
                    }
                    Some(_) => format!("{tag} BAD Expected DONE.\r\n"),
                    None => return Ok(()),
                }
            }
            "LOGOUT" => {
                let r = format!("* BYE Logging out\r\n{tag} OK Logout completed.\r\n");
                conn.send(r.as_bytes()).await?;
                return conn.finish().await;
            }
            "SELECT" | "EXAMINE" | "FETCH" | "UID" | "IDLE" => {
                format!("{tag} NO Not allowed in this state.\r\n")
            }
            _ => format!("{tag} BAD Unknown command.\r\n"),
        };
        conn.send(reply.as_bytes()).await?;
        if s.authenticated && conn.closes_after_login() {
            return Ok(());
        }
    }
    Ok(())
}

/// The answer to a login whose credentials are in: the mode's faked answer (at once), or
/// the real verdict, a refusal held for `auth_failure_delay` like Dovecot does.
async fn login_answer(conn: &Conn, s: &mut Session, tag: &str, user: &str, pass: &str) -> String {
    match conn.faked_verdict() {
        Some(FakedVerdict::Temp(code)) => return format!("{tag} {}\r\n", code.imap_line()),
        Some(FakedVerdict::Garbage) => return format!("{tag} WHATEVER zz\r\n"),
        None => {}
    }
    let reply = verdict(conn, s, tag, user, pass);
    if reply.contains(" NO ") && !conn.shared.auth_failure_delay.is_zero() {
        tokio::time::sleep(conn.shared.auth_failure_delay).await;
    }
    reply
}

fn verdict(conn: &Conn, s: &mut Session, tag: &str, user: &str, pass: &str) -> String {
    let ok = !s.authenticated && pass == conn.shared.password;
    conn.shared.record_login(user, ok);
    if ok {
        s.authenticated = true;
        format!("{tag} OK [CAPABILITY {POST_CAPS}] Logged in\r\n")
    } else {
        format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
    }
}

fn id(conn: &Conn, tag: &str, args: &[Tok]) -> String {
    let strings: Vec<&str> = args
        .iter()
        .filter(|t| !matches!(t, Tok::Open | Tok::Close))
        .map(Tok::text)
        .collect();
    let fields = if strings == ["NIL"] {
        Vec::new()
    } else {
        strings
            .chunks(2)
            .map(|kv| {
                (
                    kv[0].to_owned(),
                    kv.get(1).copied().unwrap_or("").to_owned(),
                )
            })
            .collect()
    };
    push_bounded(&mut conn.shared.records().ids, fields);
    format!(
        "* ID (\"name\" \"fake\" \"x-backend\" \"{}\")\r\n{tag} OK ID completed.\r\n",
        conn.shared.name
    )
}

/// AUTHENTICATE PLAIN (SASL-IR or continuation), LOGIN and XOAUTH2 (the bearer token is
/// checked like a password); `None` when cancelled/malformed.
async fn authenticate(conn: &mut Conn, args: &[Tok]) -> io::Result<Option<(String, String)>> {
    let mech = args.first().map(|t| t.text().to_ascii_uppercase());
    let ir = args.get(1).map(|t| t.text().to_owned());
    match mech.as_deref() {
        Some("PLAIN") => {
            let resp = match ir {
                Some(r) if r == "=" => String::new(),
                Some(r) => r,
                None => {
                    conn.send(b"+ \r\n").await?;
                    conn.read_line().await?.unwrap_or_default()
                }
            };
            Ok(if resp == "*" {
                None
            } else {
                decode_plain(&resp)
            })
        }
        Some("LOGIN") => {
            conn.send(b"+ VXNlcm5hbWU6\r\n").await?;
            let u = conn.read_line().await?.unwrap_or_default();
            conn.send(b"+ UGFzc3dvcmQ6\r\n").await?;
            let p = conn.read_line().await?.unwrap_or_default();
            Ok(decode_b64(&u).zip(decode_b64(&p)))
        }
        Some("XOAUTH2") => {
            let resp = match ir {
                Some(r) => r,
                None => {
                    conn.send(b"+ \r\n").await?;
                    conn.read_line().await?.unwrap_or_default()
                }
            };
            Ok(decode_b64(&resp).and_then(|s| xoauth2(&s)))
        }
        _ => Ok(None),
    }
}

/// `user=U^Aauth=Bearer T^A^A` → (U, T).
fn xoauth2(decoded: &str) -> Option<(String, String)> {
    let mut user = None;
    let mut token = None;
    for field in decoded.split('\u{1}') {
        if let Some(u) = field.strip_prefix("user=") {
            user = Some(u.to_string());
        } else if let Some(t) = field.strip_prefix("auth=Bearer ") {
            token = Some(t.to_string());
        }
    }
    user.zip(token)
}

/// FETCH / UID FETCH of message 1: the body for BODY[]/RFC822 items, else FLAGS. `false`
/// when the mode broke the body off (the connection ends).
async fn fetch(conn: &mut Conn, tag: &str, args: &[Tok]) -> io::Result<bool> {
    let uid = args
        .first()
        .is_some_and(|t| t.text().eq_ignore_ascii_case("FETCH"));
    let items: String = args
        .iter()
        .skip(if uid { 2 } else { 1 })
        .map(|t| t.text().to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(" ");
    let uid_item = if uid { "UID 1 " } else { "" };
    let done = format!("{tag} OK Fetch completed.\r\n");
    if items.contains("BODY") || items.contains("RFC822") {
        let msg = std::sync::Arc::clone(&conn.shared.message);
        let item = if items.contains("RFC822") {
            "RFC822"
        } else {
            "BODY[]"
        };
        let head = format!("* 1 FETCH ({uid_item}{item} {{{}}}\r\n", msg.len());
        if conn.breaks_fetch() {
            conn.broken_body(head.as_bytes(), &msg).await?;
            return Ok(false);
        }
        let tail = format!(")\r\n{done}");
        conn.send_parts(&[head.as_bytes(), &msg, tail.as_bytes()])
            .await?;
    } else {
        let r = format!("* 1 FETCH ({uid_item}FLAGS (\\Seen))\r\n{done}");
        conn.send(r.as_bytes()).await?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_known_answers() {
        let cases: &[(&str, &[&str])] = &[
            ("a LOGIN user secret", &["a", "LOGIN", "user", "secret"]),
            (r#"a LOGIN "u s" "p\"w""#, &["a", "LOGIN", "u s", "p\"w"]),
            (
                r#"a ID ("x-originating-ip" "1.2.3.4")"#,
                &["a", "ID", "(", "x-originating-ip", "1.2.3.4", ")"],
            ),
            (
                "a FETCH 1 (BODY[])",
                &["a", "FETCH", "1", "(", "BODY[]", ")"],
            ),
        ];
        for (line, want) in cases {
            let mut toks = Vec::new();
            tokenize(line, &mut toks);
            let got: Vec<&str> = toks.iter().map(Tok::text).collect();
            assert_eq!(&got, want, "{line}");
        }
    }

    #[test]
    fn literal_suffixes() {
        assert_eq!(literal_suffix("a LOGIN {4}"), Some(("a LOGIN ", 4, true)));
        assert_eq!(
            literal_suffix("a LOGIN u {6+}"),
            Some(("a LOGIN u ", 6, false))
        );
        assert_eq!(literal_suffix("a LOGIN u p"), None);
        assert_eq!(literal_suffix("a {x}"), None);
    }
}
