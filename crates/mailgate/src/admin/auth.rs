//! Bearer-token authentication of the mutating admin endpoints.
//!
//! The token lives in `admin.token_file`; it is read at start and again on every reload
//! (SIGHUP, file change, `POST /reload`). A reload that cannot read the file keeps the
//! token in force. The comparison runs in constant time (`subtle`); the token never
//! appears in logs, errors or `Debug` output.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use subtle::ConstantTimeEq;

/// Tokens shorter than this draw a warning at load.
const MIN_RECOMMENDED_LEN: usize = 16;

/// Why the token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read.
    #[error("admin.token_file {path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds no token (empty or only whitespace).
    #[error("admin.token_file {path}: the file is empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The token contains characters that cannot travel in an HTTP header.
    #[error("admin.token_file {path}: the token must be one line of visible ASCII characters")]
    Invalid {
        /// The file.
        path: PathBuf,
    },
}

/// A bearer token. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Vec<u8>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(/* REDACTED */)")
    }
}

impl Token {
    /// Parse a token file's content: surrounding whitespace (a trailing newline) is ignored.
    pub fn parse(text: &str, path: &Path) -> Result<Token, TokenError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(TokenError::Empty {
                path: path.to_path_buf(),
            });
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::Invalid {
                path: path.to_path_buf(),
            });
        }
        Ok(Token(t.as_bytes().to_vec()))
    }

    /// Read a token file.
    pub fn load(path: &Path) -> Result<Token, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let token = Token::parse(&text, path)?;
        if token.0.len() < MIN_RECOMMENDED_LEN {
            tracing::warn!(
                path = %path.display(),
                "admin token is shorter than {MIN_RECOMMENDED_LEN} characters; use a long random one"
            );
        }
        Ok(token)
    }

    /// Constant-time comparison with a presented token. Only the length of the expected
    /// token can leak through timing, never its content.
    pub fn matches(&self, presented: &[u8]) -> bool {
        if presented.len() != self.0.len() {
            // Spend the same time as a real comparison, then refuse.
            let _ = self.0.ct_eq(&self.0);
            return false;
        }
        self.0.ct_eq(presented).into()
    }
}

/// The outcome of checking a request's `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    /// The token matched.
    Allowed,
    /// No token is configured: mutating endpoints are off (403).
    NotConfigured,
    /// No or a wrong token was presented (401).
    Denied,
}

/// The token in force, swapped on reload.
#[derive(Debug)]
pub struct TokenStore {
    path: Option<PathBuf>,
    token: ArcSwapOption<Token>,
}

impl TokenStore {
    /// Load the token from `path` (none configured: mutating endpoints refuse).
    pub fn load(path: Option<&Path>) -> Result<Arc<TokenStore>, TokenError> {
        let token = match path {
            Some(p) => Some(Arc::new(Token::load(p)?)),
            None => None,
        };
        Ok(Arc::new(TokenStore {
            path: path.map(Path::to_path_buf),
            token: ArcSwapOption::new(token),
        }))
    }

    /// A store holding `token` (tests).
    pub fn with_token(token: Option<Token>) -> Arc<TokenStore> {
        Arc::new(TokenStore {
            path: None,
            token: ArcSwapOption::new(token.map(Arc::new)),
        })
    }

    /// Re-read the token file; on failure keep the token in force and say why.
    pub fn reload(&self) -> Result<(), TokenError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        match Token::load(path) {
            Ok(t) => {
                let changed = self.token.load().as_deref() != Some(&t);
                self.token.store(Some(Arc::new(t)));
                if changed {
                    tracing::info!(path = %path.display(), "admin token reloaded");
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "admin token not reloaded; keeping the previous one");
                Err(e)
            }
        }
    }

    /// Check an `Authorization` header value (`Bearer <token>`).
    pub fn check(&self, authorization: Option<&[u8]>) -> AuthResult {
        let guard = self.token.load();
        let Some(token) = guard.as_deref() else {
            return AuthResult::NotConfigured;
        };
        let Some(presented) = authorization.and_then(bearer) else {
            return AuthResult::Denied;
        };
        if token.matches(presented) {
            AuthResult::Allowed
        } else {
            AuthResult::Denied
        }
    }
}

/// The credentials of a `Bearer` authorization header (scheme case-insensitive).
pub(crate) fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let start = rest.iter().position(|b| *b != b' ')?;
    let end = rest.iter().rposition(|b| *b != b' ')? + 1;
    Some(&rest[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(t: &str) -> Arc<TokenStore> {
        let token = Token::parse(t, Path::new("t")).ok();
        TokenStore::with_token(token)
    }

    #[test]
    fn right_token_is_allowed() {
        let s = store("s3cret-token-0123456789\n");
        assert_eq!(
            s.check(Some(b"Bearer s3cret-token-0123456789")),
            AuthResult::Allowed
        );
        assert_eq!(
            s.check(Some(b"bearer   s3cret-token-0123456789 ")),
            AuthResult::Allowed
        );
    }

    #[test]
    fn missing_or_wrong_token_is_denied() {
        let s = store("s3cret-token-0123456789");
        for header in [
            None,
            Some(&b""[..]),
            Some(b"Bearer"),
            Some(b"Bearer "),
            Some(b"Basic czNjcmV0"),
            Some(b"Bearer s3cret-token-012345678"),
            Some(b"Bearer s3cret-token-01234567890"),
            Some(b"Bearer S3cret-token-0123456789"),
            Some(b"s3cret-token-0123456789"),
        ] {
            assert_eq!(s.check(header), AuthResult::Denied, "{header:?}");
        }
    }

    #[test]
    fn no_token_configured_refuses_everything() {
        let s = TokenStore::with_token(None);
        assert_eq!(s.check(Some(b"Bearer anything")), AuthResult::NotConfigured);
        assert_eq!(s.check(None), AuthResult::NotConfigured);
    }

    #[test]
    fn constant_time_compare_checks_every_byte() {
        let t = Token(b"abcdef".to_vec());
        assert!(t.matches(b"abcdef"));
        assert!(!t.matches(b"abcdeX"));
        assert!(!t.matches(b"Xbcdef"));
        assert!(!t.matches(b"abcde"));
        assert!(!t.matches(b""));
    }

    #[test]
    fn token_file_content_is_validated() {
        let p = Path::new("admin.token");
        assert!(matches!(
            Token::parse(" \n", p),
            Err(TokenError::Empty { .. })
        ));
        assert!(matches!(
            Token::parse("two words", p),
            Err(TokenError::Invalid { .. })
        ));
        assert!(Token::parse("ok-token\n", p).is_ok());
    }

    #[test]
    fn debug_never_shows_the_token() {
        let t = Token(b"very-secret".to_vec());
        assert!(!format!("{t:?}").contains("very-secret"));
        let s = TokenStore::with_token(Some(t));
        assert!(!format!("{s:?}").contains("very-secret"));
    }

    #[test]
    fn reload_keeps_the_old_token_when_the_file_is_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin.token");
        std::fs::write(&path, "first-token-aaaaaaaa\n").expect("write");
        let s = TokenStore::load(Some(&path)).expect("load");
        std::fs::write(&path, "second-token-bbbbbbb\n").expect("write");
        s.reload().expect("reload");
        assert_eq!(
            s.check(Some(b"Bearer second-token-bbbbbbb")),
            AuthResult::Allowed
        );
        std::fs::remove_file(&path).expect("rm");
        assert!(s.reload().is_err());
        assert_eq!(
            s.check(Some(b"Bearer second-token-bbbbbbb")),
            AuthResult::Allowed
        );
    }
}
