//! Differential property test: mailgate's pre-auth command parser against imap-codec
//! (the oracle, design.md §10) on LOGIN / AUTHENTICATE / ID / CAPABILITY lines, valid
//! and mutated. Both must accept the same lines and extract the same values.

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::CommandBody;
use proptest::prelude::*;

use super::command::{Command, Parsed, parse};
use crate::limits::Limits;
use crate::sasl;

/// What a parser made of a line, in a form both sides can produce.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Reject,
    Capability(String),
    Login(String, Vec<u8>, Vec<u8>),
    Authenticate(String, String, Option<Vec<u8>>),
    Id(String, Vec<(Vec<u8>, Option<Vec<u8>>)>),
    Other,
}

fn ours(line: &[u8]) -> Outcome {
    match parse(line, &Limits::default()) {
        Parsed::BadTag | Parsed::Invalid(_) => Outcome::Reject,
        Parsed::Ok(tag, c) => match c {
            Command::Capability => Outcome::Capability(tag),
            Command::Login { user, password } => Outcome::Login(tag, user, password),
            Command::Authenticate { mechanism, initial } => match initial {
                None => Outcome::Authenticate(tag, mechanism, None),
                Some(ir) => match sasl::decode_base64(&ir) {
                    Ok(d) => Outcome::Authenticate(tag, mechanism, Some(d)),
                    Err(_) => Outcome::Reject,
                },
            },
            Command::Id(fields) => Outcome::Id(
                tag,
                fields
                    .into_iter()
                    .map(|(k, v)| (k.into_bytes(), v.map(String::into_bytes)))
                    .collect(),
            ),
            _ => Outcome::Other,
        },
    }
}

fn oracle(line: &[u8]) -> Outcome {
    let Ok((rest, cmd)) = CommandCodec::default().decode(line) else {
        return Outcome::Reject;
    };
    if !rest.is_empty() {
        return Outcome::Reject;
    }
    let tag = cmd.tag.as_ref().to_string();
    match cmd.body {
        CommandBody::Capability => Outcome::Capability(tag),
        CommandBody::Login { username, password } => Outcome::Login(
            tag,
            username.as_ref().to_vec(),
            password.declassify().as_ref().to_vec(),
        ),
        CommandBody::Authenticate {
            mechanism,
            initial_response,
        } => Outcome::Authenticate(
            tag,
            mechanism.as_ref().to_ascii_uppercase(),
            initial_response.map(|r| r.declassify().to_vec()),
        ),
        CommandBody::Id { parameters } => Outcome::Id(
            tag,
            parameters
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.as_ref().to_vec(), v.0.map(|s| s.as_ref().to_vec())))
                .collect(),
        ),
        _ => Outcome::Other,
    }
}

/// mailgate's deliberate policy on top of the grammar: ID texts must be UTF-8 without
/// control characters (they are logged and forwarded).
fn policy(o: Outcome) -> Outcome {
    let clean = |b: &[u8]| std::str::from_utf8(b).is_ok_and(|s| !s.chars().any(char::is_control));
    match o {
        Outcome::Id(_, ref f)
            if !f
                .iter()
                .all(|(k, v)| clean(k) && v.as_deref().is_none_or(clean)) =>
        {
            Outcome::Reject
        }
        o => o,
    }
}

/// The oracle's answer, with mailgate's one deliberate leniency: LOGIN's atoms may hold
/// `*` and `%` (Dovecot's `user*master` sent unquoted). Such a line is compared with the
/// oracle's reading of the same values quoted.
fn oracle_lenient(line: &[u8], ours: &Outcome) -> Outcome {
    let c = policy(oracle(line));
    match (ours, &c) {
        (Outcome::Login(tag, u, p), Outcome::Reject)
            if u.iter().chain(p).any(|&b| b == b'*' || b == b'%') =>
        {
            let mut quoted = format!("{tag} LOGIN ").into_bytes();
            super::lexer::push_quoted(&mut quoted, u);
            quoted.push(b' ');
            super::lexer::push_quoted(&mut quoted, p);
            quoted.extend_from_slice(b"\r\n");
            policy(oracle(&quoted))
        }
        _ => c,
    }
}

fn tag() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.\\-_]{1,8}"
}

fn atom() -> impl Strategy<Value = Vec<u8>> {
    "[A-Za-z0-9@.!#&'\\-_~]{1,12}".prop_map(String::into_bytes)
}

/// A quoted string (printable ASCII, escapes where needed) and its value.
fn quoted() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    "[ -~]{0,12}".prop_map(|s| {
        let mut enc = Vec::new();
        super::lexer::push_quoted(&mut enc, s.as_bytes());
        (enc, s.into_bytes())
    })
}

/// A synchronizing or non-synchronizing literal and its value.
fn literal() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (proptest::collection::vec(1u8..=0x7f, 0..12), any::<bool>()).prop_map(|(v, plus)| {
        let p = if plus { "+" } else { "" };
        let enc = [format!("{{{}{p}}}\r\n", v.len()).as_bytes(), &v].concat();
        (enc, v)
    })
}

fn astring() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        atom(),
        quoted().prop_map(|q| q.0),
        literal().prop_map(|l| l.0)
    ]
}

fn id_string() -> impl Strategy<Value = Vec<u8>> {
    "[ -~]{1,10}".prop_map(|s| {
        let mut enc = Vec::new();
        super::lexer::push_quoted(&mut enc, s.as_bytes());
        enc
    })
}

fn line() -> impl Strategy<Value = Vec<u8>> {
    let login = (tag(), "(?i)login", astring(), astring())
        .prop_map(|(t, c, u, p)| [t.as_bytes(), b" ", c.as_bytes(), b" ", &u, b" ", &p].concat());
    let ir = prop_oneof![
        Just(None),
        Just(Some(b"=".to_vec())),
        proptest::collection::vec(any::<u8>(), 1..24).prop_map(|d| Some(sasl::encode_base64(&d))),
    ];
    let auth = (tag(), "(?i)(plain|login|xoauth2)", ir).prop_map(|(t, m, ir)| {
        let mut l = format!("{t} AUTHENTICATE {m}").into_bytes();
        if let Some(ir) = ir {
            l.push(b' ');
            l.extend(ir);
        }
        l
    });
    let pair = (id_string(), prop_oneof![Just(b"NIL".to_vec()), id_string()])
        .prop_map(|(k, v)| [k, b" ".to_vec(), v].concat());
    let id = (
        tag(),
        proptest::option::of(proptest::collection::vec(pair, 1..5)),
    )
        .prop_map(|(t, pairs)| match pairs {
            None => format!("{t} ID NIL").into_bytes(),
            Some(p) => [
                format!("{t} ID (").into_bytes(),
                p.join(&b' '),
                b")".to_vec(),
            ]
            .concat(),
        });
    let capability = (tag(), "(?i)capability").prop_map(|(t, c)| format!("{t} {c}").into_bytes());
    prop_oneof![login, auth, id, capability].prop_map(|mut l| {
        l.extend_from_slice(b"\r\n");
        l
    })
}

/// A valid line with one byte replaced, inserted or removed.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (line(), any::<prop::sample::Index>(), 0u8..3, 0x01u8..0x80).prop_map(|(mut l, at, op, b)| {
        let i = at.index(l.len());
        match op {
            0 => l[i] = b,
            1 => l.insert(i, b),
            _ => {
                l.remove(i);
            }
        }
        l
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn agrees_with_imap_codec_on_valid_lines(l in line()) {
        let o = ours(&l);
        prop_assert_ne!(&o, &Outcome::Reject, "{:?}", String::from_utf8_lossy(&l));
        let c = oracle_lenient(&l, &o);
        prop_assert_eq!(o, c, "{:?}", String::from_utf8_lossy(&l));
    }

    #[test]
    fn agrees_with_imap_codec_on_mutated_lines(l in mutated()) {
        let o = ours(&l);
        let c = oracle_lenient(&l, &o);
        // mailgate answers unknown commands itself; imap-codec knows more of them.
        if o != Outcome::Other && c != Outcome::Other {
            prop_assert_eq!(o, c, "{:?}", String::from_utf8_lossy(&l));
        }
    }
}
