//! Parsing one framed pre-auth command into a [`Command`] (RFC 3501 §6.1–6.2, RFC 2971 ID,
//! RFC 4959 SASL-IR). Only the commands mailgate answers itself are understood; anything
//! else is [`Command::Other`] and gets a fixed `BAD`.

use std::fmt;

use super::lexer::{Lexer, Syntax, valid_tag};
use crate::limits::Limits;
use crate::redact::{Clipped, Len, opt_len};

/// ID parameters: field name and value (`None` is NIL).
pub(crate) type IdFields = Vec<(String, Option<String>)>;

/// A pre-auth command. `Debug` shows lengths, never user names, passwords or payloads.
#[derive(PartialEq, Eq)]
pub(crate) enum Command {
    Capability,
    Noop,
    Logout,
    StartTls,
    /// `ID NIL` is `Id(vec![])`.
    Id(IdFields),
    Login {
        user: Vec<u8>,
        password: Vec<u8>,
    },
    Authenticate {
        /// Mechanism name, upper-cased.
        mechanism: String,
        /// SASL-IR initial response, still base64 (`=` for empty).
        initial: Option<Vec<u8>>,
    },
    /// A command not available before login (or not implemented).
    Other,
}

/// The result of parsing one framed command. `Debug` shows the tag's length only.
#[derive(PartialEq, Eq)]
pub(crate) enum Parsed {
    /// The tag is missing, too long or has invalid characters: answer `* BAD`.
    BadTag,
    /// A valid tag with a command that has invalid syntax or arguments.
    Invalid(String),
    /// A valid command.
    Ok(String, Command),
}

/// Parse one command (with its line ending and inline literals).
pub(crate) fn parse(cmd: &[u8], limits: &Limits) -> Parsed {
    let mut lx = Lexer::new(cmd);
    let tag = lx.word();
    if !valid_tag(tag, limits.max_tag_len) {
        return Parsed::BadTag;
    }
    // valid_tag admits only printable ASCII.
    let tag = String::from_utf8_lossy(tag).into_owned();
    if cmd.contains(&0) {
        return Parsed::Invalid(tag);
    }
    match command(&mut lx, limits) {
        Ok(c) => Parsed::Ok(tag, c),
        Err(Syntax) => Parsed::Invalid(tag),
    }
}

fn command(lx: &mut Lexer<'_>, limits: &Limits) -> Result<Command, Syntax> {
    lx.sp()?;
    let name = lx.atom()?.to_ascii_uppercase();
    let c = match name.as_slice() {
        b"CAPABILITY" => Command::Capability,
        b"NOOP" => Command::Noop,
        b"LOGOUT" => Command::Logout,
        b"STARTTLS" => Command::StartTls,
        b"ID" => {
            lx.sp()?;
            Command::Id(id_params(lx, limits)?)
        }
        b"LOGIN" => {
            lx.sp()?;
            let user = lx.astring()?;
            lx.sp()?;
            let password = lx.astring()?;
            Command::Login { user, password }
        }
        b"AUTHENTICATE" => {
            lx.sp()?;
            let mechanism = String::from_utf8_lossy(lx.atom()?).to_ascii_uppercase();
            let initial = if lx.at_eol() {
                None
            } else {
                lx.sp()?;
                // RFC 3501 `base64` may be empty; `=` is RFC 4959's empty response.
                Some(lx.atom().map(<[u8]>::to_vec).unwrap_or_default())
            };
            Command::Authenticate { mechanism, initial }
        }
        _ => return Ok(Command::Other),
    };
    lx.eol()?;
    Ok(c)
}

/// `id_params_list = "(" [string SP nstring *(SP string SP nstring)] ")" / NIL`.
fn id_params(lx: &mut Lexer<'_>, limits: &Limits) -> Result<IdFields, Syntax> {
    if lx.peek() != Some(b'(') {
        return match lx.nstring()? {
            None => Ok(Vec::new()),
            Some(_) => Err(Syntax),
        };
    }
    lx.byte(b'(')?;
    let mut fields = Vec::new();
    if lx.peek() == Some(b')') {
        lx.byte(b')')?;
        return Ok(fields);
    }
    loop {
        if fields.len() >= limits.max_id_pairs {
            return Err(Syntax);
        }
        let key = id_text(lx.string()?, limits)?;
        lx.sp()?;
        let value = match lx.nstring()? {
            Some(v) => Some(id_text(v, limits)?),
            None => None,
        };
        fields.push((key, value));
        match lx.peek() {
            Some(b')') => {
                lx.byte(b')')?;
                return Ok(fields);
            }
            _ => lx.sp()?,
        }
    }
}

fn id_text(bytes: Vec<u8>, limits: &Limits) -> Result<String, Syntax> {
    if bytes.len() > limits.max_id_field {
        return Err(Syntax);
    }
    let s = String::from_utf8(bytes).map_err(|_| Syntax)?;
    if s.chars().any(char::is_control) {
        return Err(Syntax);
    }
    Ok(s)
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Capability => f.write_str("Capability"),
            Command::Noop => f.write_str("Noop"),
            Command::Logout => f.write_str("Logout"),
            Command::StartTls => f.write_str("StartTls"),
            Command::Id(fields) => f.debug_struct("Id").field("pairs", &fields.len()).finish(),
            Command::Login { user, password } => f
                .debug_struct("Login")
                .field("user", &Len::of(user))
                .field("password", &Len::of(password))
                .finish(),
            Command::Authenticate { mechanism, initial } => f
                .debug_struct("Authenticate")
                .field("mechanism", &Clipped(mechanism, 20))
                .field("initial", &opt_len(initial))
                .finish(),
            Command::Other => f.write_str("Other"),
        }
    }
}

impl fmt::Debug for Parsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Parsed::BadTag => f.write_str("BadTag"),
            Parsed::Invalid(tag) => f.debug_tuple("Invalid").field(&Len::of(tag)).finish(),
            Parsed::Ok(tag, c) => f.debug_tuple("Ok").field(&Len::of(tag)).field(c).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[u8]) -> Parsed {
        parse(s, &Limits::default())
    }

    fn ok(tag: &str, c: Command) -> Parsed {
        Parsed::Ok(tag.into(), c)
    }

    #[test]
    fn known_answers() {
        assert_eq!(p(b"a capability\r\n"), ok("a", Command::Capability));
        assert_eq!(p(b"a NOOP\n"), Parsed::Invalid("a".into()));
        assert_eq!(p(b"a NOOP x\r\n"), Parsed::Invalid("a".into()));
        assert_eq!(p(b"a  NOOP\r\n"), Parsed::Invalid("a".into()));
        assert_eq!(p(b"a+ NOOP\r\n"), Parsed::BadTag);
        assert_eq!(p(b"\r\n"), Parsed::BadTag);
        assert_eq!(p(b"a SELECT INBOX\r\n"), ok("a", Command::Other));
        assert_eq!(
            p(b"a LOGIN \"us\\\"er\" {3}\r\np\\w\r\n"),
            ok(
                "a",
                Command::Login {
                    user: b"us\"er".to_vec(),
                    password: b"p\\w".to_vec()
                }
            )
        );
        assert_eq!(p(b"a LOGIN u\0 p\r\n"), Parsed::Invalid("a".into()));
        assert_eq!(
            p(b"a AUTHENTICATE plain =\r\n"),
            ok(
                "a",
                Command::Authenticate {
                    mechanism: "PLAIN".into(),
                    initial: Some(b"=".to_vec())
                }
            )
        );
        assert_eq!(
            p(b"a ID (\"name\" \"x\" \"os\" NIL)\r\n"),
            ok(
                "a",
                Command::Id(vec![("name".into(), Some("x".into())), ("os".into(), None)])
            )
        );
        assert_eq!(p(b"a ID NIL\r\n"), ok("a", Command::Id(vec![])));
        assert_eq!(p(b"a ID ((\"x\" \"y\"))\r\n"), Parsed::Invalid("a".into()));
    }

    #[test]
    fn id_limits() {
        let many: String = (0..31).map(|i| format!("\"k{i}\" \"v\" ")).collect();
        let line = format!("a ID ({})\r\n", many.trim_end());
        assert_eq!(p(line.as_bytes()), Parsed::Invalid("a".into()));
        let long = format!("a ID (\"k\" \"{}\")\r\n", "v".repeat(1025));
        assert_eq!(p(long.as_bytes()), Parsed::Invalid("a".into()));
    }
}
