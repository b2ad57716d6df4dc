//! Normalisation of domains and login names, shared by the loader (for keys) and the lookup
//! (for logins), so that both sides always agree: lowercase, no trailing dot, IDNA to
//! punycode. Anything malformed yields `None` — never a panic, never a guess.

use std::borrow::Cow;

/// Longest login name we route (RFC 5321 path limit).
pub const MAX_LOGIN_LEN: usize = 254;
const MAX_DOMAIN_LEN: usize = 253;

/// Normalise a domain: lowercase, one trailing dot removed, Unicode → punycode (UTS #46,
/// STD3 rules). `None` for empty labels, bad characters or over-long names.
pub fn normalize_domain(domain: &str) -> Option<Cow<'_, str>> {
    let d = domain.strip_suffix('.').unwrap_or(domain);
    if d.is_empty() || d.len() > MAX_DOMAIN_LEN * 4 {
        return None;
    }
    let fast = d
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    let out: Cow<'_, str> = if fast {
        if d.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(d.to_ascii_lowercase())
        } else {
            Cow::Borrowed(d)
        }
    } else {
        if d.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return None;
        }
        let ascii = idna::domain_to_ascii_cow(d.as_bytes(), idna::AsciiDenyList::STD3).ok()?;
        Cow::Owned(ascii.into_owned())
    };
    if out.is_empty()
        || out.len() > MAX_DOMAIN_LEN
        || out
            .split('.')
            .any(|label| label.is_empty() || label.len() > 63)
    {
        return None;
    }
    Some(out)
}

/// A wildcard key `*.suffix` → the normalised suffix (without `*.`).
pub fn normalize_wildcard(key: &str) -> Option<String> {
    let rest = key.strip_prefix("*.")?;
    if rest.contains('*') {
        return None;
    }
    normalize_domain(rest).map(Cow::into_owned)
}

/// A login split into a lowercased local part and a normalised domain (`None` when the login
/// names no domain and no default domain is configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login<'a> {
    /// Local part, lowercased.
    pub local: Cow<'a, str>,
    /// Normalised domain.
    pub domain: Option<Cow<'a, str>>,
}

impl Login<'_> {
    /// The normalised whole address (`local@domain`, or `local` without a domain).
    pub fn address(&self) -> String {
        match &self.domain {
            Some(d) => format!("{}@{}", self.local, d),
            None => self.local.to_string(),
        }
    }
}

/// Parse a login name. Empty, over-long, control characters, `u@`, `@d`, `u@a@b` → `None`.
pub fn parse_login<'a>(user: &'a str, default_domain: Option<&'a str>) -> Option<Login<'a>> {
    if user.is_empty() || user.len() > MAX_LOGIN_LEN || user.chars().any(char::is_control) {
        return None;
    }
    let mut parts = user.split('@');
    let local = parts.next()?;
    let domain = parts.next();
    if parts.next().is_some() || local.is_empty() || local.trim() != local {
        return None;
    }
    let domain = match domain {
        Some(d) => Some(normalize_domain(d)?),
        None => match default_domain {
            Some(d) => Some(normalize_domain(d)?),
            None => None,
        },
    };
    let local = if local.chars().any(char::is_uppercase) {
        Cow::Owned(local.to_lowercase())
    } else {
        Cow::Borrowed(local)
    };
    // The normal form must itself parse (to itself): a name that only passes the limit once
    // normalised (default domain appended, punycode, case mapping) is refused like any
    // over-long one. Found by the `routing` fuzz target.
    let len = local.len() + domain.as_deref().map_or(0, |d| d.len() + 1);
    if len > MAX_LOGIN_LEN {
        return None;
    }
    Some(Login { local, domain })
}

/// The master-user separator when `master_user_separator` is not set: Dovecot's usual
/// `auth_master_user_separator = *`.
pub const DEFAULT_MASTER_SEPARATOR: char = '*';

/// Check a `master_user_separator` value: one character, or empty (the master-user form is
/// then off). Dovecot uses only the first character of its setting, so mailgate takes
/// exactly one; `@`, `.`, letters, digits, spaces and control characters are refused (they
/// occur in ordinary login names).
pub fn master_separator(value: &str) -> Result<Option<char>, &'static str> {
    let mut chars = value.chars();
    let Some(c) = chars.next() else {
        return Ok(None);
    };
    if chars.next().is_some() {
        return Err(
            "must be one character (Dovecot uses only the first), or empty to turn the master-user form off",
        );
    }
    if c == '@' || c == '.' || c.is_alphanumeric() || c.is_whitespace() || c.is_control() {
        return Err("cannot be @, ., a letter, a digit, a space or a control character");
    }
    Ok(Some(c))
}

/// Split Dovecot's master-user form `user*master` at the first separator (as Dovecot does):
/// the mailbox user and the master user. Without a separator (or with the form off) the
/// whole name is the mailbox user.
pub fn split_master(login: &str, separator: Option<char>) -> (&str, Option<&str>) {
    match separator.and_then(|c| login.split_once(c)) {
        Some((user, master)) => (user, Some(master)),
        None => (login, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        let n = |s| normalize_domain(s).map(Cow::into_owned);
        assert_eq!(n("Example.COM."), Some("example.com".into()));
        assert_eq!(n("bücher.example"), Some("xn--bcher-kva.example".into()));
        assert_eq!(n("BÜCHER.example"), Some("xn--bcher-kva.example".into()));
        assert_eq!(
            n("xn--bcher-kva.example"),
            Some("xn--bcher-kva.example".into())
        );
        for bad in [
            "", ".", "a..b", ".a", "a b", "a\u{0}b", "a_b.com", "a@b", "a..", "*.a",
        ] {
            assert_eq!(n(bad), None, "{bad:?}");
        }
        let long_label = "a".repeat(64);
        assert_eq!(n(&long_label), None);
        let long_name = format!("{}.com", ["a"; 130].join("."));
        assert_eq!(n(&long_name), None);
    }

    #[test]
    fn wildcards() {
        assert_eq!(
            normalize_wildcard("*.Example.NET"),
            Some("example.net".into())
        );
        for bad in [
            "example.net",
            "*example.net",
            "*.",
            "*.*.a",
            "a.*.b",
            "**.a",
        ] {
            assert_eq!(normalize_wildcard(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn logins() {
        let l = parse_login("Alice@Example.COM", None).map(|l| l.address());
        assert_eq!(l.as_deref(), Some("alice@example.com"));
        let l = parse_login("bob", Some("example.com")).map(|l| l.address());
        assert_eq!(l.as_deref(), Some("bob@example.com"));
        assert_eq!(
            parse_login("bob", None).map(|l| l.address()).as_deref(),
            Some("bob")
        );
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in [
            "",
            "u@",
            "@d",
            "u@a@b",
            "u\n@d",
            " u@d",
            long.as_str(),
            "u@a..b",
        ] {
            assert_eq!(parse_login(bad, Some("example.com")), None, "{bad:?}");
        }
    }

    #[test]
    fn a_login_longer_than_the_limit_once_normalised_is_refused() {
        // Within 254 bytes as given, over it with the default domain or punycode: its
        // normal form would not parse again (kicks by user, logs, throttles compare it).
        let local = "a".repeat(245);
        assert_eq!(parse_login(&local, Some("example.com")), None);
        assert!(parse_login(&local, None).is_some());
        let unicode = format!("{}@bücher.example", "b".repeat(235));
        assert!(unicode.len() <= MAX_LOGIN_LEN);
        assert_eq!(parse_login(&unicode, None), None);
        let fits = format!("{}@example.com", "c".repeat(242));
        assert_eq!(fits.len(), MAX_LOGIN_LEN);
        let login = parse_login(&fits, None).map(|l| l.address());
        assert_eq!(login.as_deref(), Some(fits.as_str()));
    }

    #[test]
    fn master_user_form() {
        let star = Some('*');
        assert_eq!(
            split_master("alice@example.com*admin", star),
            ("alice@example.com", Some("admin"))
        );
        assert_eq!(split_master("bob*admin*x", star), ("bob", Some("admin*x")));
        assert_eq!(
            split_master("alice@example.com", star),
            ("alice@example.com", None)
        );
        assert_eq!(split_master("a*b", None), ("a*b", None));
        assert_eq!(split_master("a#b", Some('#')), ("a", Some("b")));
        assert_eq!(split_master("*admin", star), ("", Some("admin")));
    }

    #[test]
    fn master_separators() {
        assert_eq!(master_separator("*"), Ok(Some('*')));
        assert_eq!(master_separator("#"), Ok(Some('#')));
        assert_eq!(master_separator(""), Ok(None));
        for bad in ["**", "@", ".", "a", "7", " ", "\t", "ab"] {
            assert!(master_separator(bad).is_err(), "{bad:?}");
        }
    }
}
