//! The POP3 fake: greeting, CAPA, XCLIENT, USER/PASS, AUTH PLAIN, STLS, STAT, LIST, UIDL,
//! RETR, DELE, NOOP, RSET, QUIT.

use std::io;
use std::sync::Arc;

use super::conn::{Conn, FakedVerdict, LoginFate, Upgrade, decode_plain};
use super::{FaultMode, push_bounded};

/// Runs the POP3 dialogue on one connection.
pub(super) async fn run(conn: &mut Conn) -> io::Result<()> {
    match conn.mode {
        FaultMode::NoGreeting => return conn.stall().await,
        FaultMode::GreetingBye => {
            conn.send(b"-ERR [SYS/TEMP] Server overloaded\r\n").await?;
            return conn.finish().await;
        }
        _ => {}
    }
    let g = format!("+OK fake {} ready.\r\n", conn.shared.name);
    conn.send(g.as_bytes()).await?;
    if conn.mode == FaultMode::StallAfterGreeting {
        return conn.stall().await;
    }
    let mut user: Option<String> = None;
    let mut authenticated = false;
    let size = conn.shared.message.len();
    while let Some(line) = conn.read_line().await? {
        let mut words = line.split_ascii_whitespace();
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        let args: Vec<&str> = words.collect();
        let reply = match verb.as_str() {
            "CAPA" => {
                let mut c = String::from("+OK\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n");
                if !authenticated {
                    c.push_str("USER\r\nSASL PLAIN\r\n");
                    if conn.shared.xclient {
                        c.push_str("XCLIENT\r\n");
                    }
                    if conn.offers_starttls() || conn.mode == FaultMode::InjectAfterStartTls {
                        c.push_str("STLS\r\n");
                    }
                }
                c.push_str(".\r\n");
                c
            }
            "XCLIENT" if conn.shared.xclient && !authenticated => {
                let fields = args
                    .iter()
                    .map(|kv| match kv.split_once('=') {
                        Some((k, v)) => (k.to_ascii_uppercase(), v.to_owned()),
                        None => (kv.to_ascii_uppercase(), String::new()),
                    })
                    .collect();
                push_bounded(&mut conn.shared.records().xclients, fields);
                "+OK\r\n".to_owned()
            }
            "STLS" if conn.mode == FaultMode::InjectAfterStartTls => {
                conn.send(b"+OK Begin TLS negotiation now.\r\n+OK injected\r\n")
                    .await?;
                return conn.stall().await;
            }
            "STLS" if conn.offers_starttls() && !authenticated => {
                match conn
                    .start_tls(b"+OK Begin TLS negotiation now.\r\n")
                    .await?
                {
                    Upgrade::Done => continue,
                    Upgrade::Stalled => return Ok(()),
                }
            }
            "USER" if !authenticated => {
                user = args.first().map(|u| (*u).to_owned());
                "+OK\r\n".to_owned()
            }
            "PASS" if !authenticated => {
                if let LoginFate::Sabotaged = conn.on_login().await? {
                    return Ok(());
                }
                match user.take() {
                    Some(u) => verdict(conn, &mut authenticated, &u, &args.join(" ")),
                    None => "-ERR No USER given.\r\n".to_owned(),
                }
            }
            "AUTH" if !authenticated && args.is_empty() => "+OK\r\nPLAIN\r\n.\r\n".to_owned(),
            "AUTH" if !authenticated => {
                if let LoginFate::Sabotaged = conn.on_login().await? {
                    return Ok(());
                }
                if !args[0].eq_ignore_ascii_case("PLAIN") {
                    "-ERR Unsupported mechanism.\r\n".to_owned()
                } else {
                    let resp = match args.get(1) {
                        Some(&"=") => String::new(),
                        Some(r) => (*r).to_owned(),
                        None => {
                            conn.send(b"+ \r\n").await?;
                            conn.read_line().await?.unwrap_or_default()
                        }
                    };
                    match decode_plain(&resp) {
                        Some((u, p)) => verdict(conn, &mut authenticated, &u, &p),
                        None => "-ERR Authentication cancelled or malformed.\r\n".to_owned(),
                    }
                }
            }
            "STAT" if authenticated => format!("+OK 1 {size}\r\n"),
            "LIST" if authenticated => format!("+OK 1 messages\r\n1 {size}\r\n.\r\n"),
            "UIDL" if authenticated => "+OK\r\n1 fake1\r\n.\r\n".to_owned(),
            "RETR" if authenticated && args.first() == Some(&"1") => {
                let msg = Arc::clone(&conn.shared.message);
                let head = format!("+OK {size} octets\r\n");
                if conn.breaks_fetch() {
                    return conn.broken_body(head.as_bytes(), &msg).await;
                }
                conn.send_parts(&[head.as_bytes(), &msg, b".\r\n"]).await?;
                continue;
            }
            "DELE" | "NOOP" | "RSET" if authenticated => "+OK\r\n".to_owned(),
            "QUIT" => {
                conn.send(b"+OK Logging out.\r\n").await?;
                return conn.finish().await;
            }
            _ => "-ERR Unknown command or wrong state.\r\n".to_owned(),
        };
        conn.send(reply.as_bytes()).await?;
        if authenticated && conn.closes_after_login() {
            return Ok(());
        }
    }
    Ok(())
}

fn verdict(conn: &Conn, authenticated: &mut bool, user: &str, pass: &str) -> String {
    match conn.faked_verdict() {
        Some(FakedVerdict::Temp(code)) => return format!("{}\r\n", code.pop3_line()),
        Some(FakedVerdict::Garbage) => return "hello?\r\n".to_owned(),
        None => {}
    }
    let ok = pass == conn.shared.password;
    conn.shared.record_login(user, ok);
    if ok {
        *authenticated = true;
        "+OK Logged in.\r\n".to_owned()
    } else {
        "-ERR [AUTH] Authentication failed.\r\n".to_owned()
    }
}
