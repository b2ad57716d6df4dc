//! The routing file as written (`routing.yaml`), before validation. Map sections are read as
//! ordered entry lists with their line numbers so that duplicates, case clashes and bad
//! references can all be reported at once; `validate.rs` turns this into a `RoutingTable`.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_saphyr::Spanned;

/// A value and the 1-based line it was written on.
#[derive(Debug, Clone)]
pub(crate) struct Lined<T> {
    pub value: T,
    pub line: usize,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lined<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<T>::deserialize(d)?;
        Ok(Lined {
            line: s.referenced.line() as usize,
            value: s.value,
        })
    }
}

impl<T: Default> Default for Lined<T> {
    /// An absent key: line 0.
    fn default() -> Self {
        Lined {
            value: T::default(),
            line: 0,
        }
    }
}

/// A YAML mapping kept as written: every entry in order, duplicates included.
#[derive(Debug, Clone)]
pub(crate) struct Entries<V>(pub Vec<(Lined<String>, V)>);

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V_<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V_<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(Entries::default())
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(Entries::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(k) = map.next_key::<Lined<String>>()? {
                    let v = map.next_value::<V>()?;
                    out.push((k, v));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V_(PhantomData))
    }
}

/// A backend name a domain or user points at. A million domains name a hundred backends:
/// each distinct name is allocated once per parse and shared (see [`with_interner`]), so an
/// entry holds a pointer, not its own string.
#[derive(Debug, Clone)]
pub(crate) struct Target(pub Arc<str>);

impl std::ops::Deref for Target {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

thread_local! {
    /// The names seen by the parse running on this thread (`None` outside [`with_interner`]).
    static INTERNER: RefCell<Option<HashSet<Arc<str>>>> = const { RefCell::new(None) };
}

pub(crate) fn intern(name: &str) -> Arc<str> {
    INTERNER.with(|i| match i.borrow_mut().as_mut() {
        Some(set) => match set.get(name) {
            Some(a) => Arc::clone(a),
            None => {
                let a: Arc<str> = Arc::from(name);
                set.insert(Arc::clone(&a));
                a
            }
        },
        None => Arc::from(name),
    })
}

/// Runs a parse with [`Target`] names shared; the set is dropped afterwards.
pub(crate) fn with_interner<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(Option<HashSet<Arc<str>>>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let old = self.0.take();
            INTERNER.with(|i| *i.borrow_mut() = old);
        }
    }
    let prev = INTERNER.with(|i| i.borrow_mut().replace(HashSet::new()));
    let _reset = Reset(prev);
    f()
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V_;
        impl Visitor<'_> for V_ {
            type Value = Target;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a backend name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Target, E> {
                Ok(Target(intern(v)))
            }
        }
        d.deserialize_str(V_)
    }
}

/// `routing.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoutingFile {
    #[serde(default)]
    pub backends: Entries<BackendSpec>,
    /// With the line of the mapping (0 when absent): the fast path (`fast_domains.rs`)
    /// checks that the `domains` key it split off is the one the parser saw.
    #[serde(default)]
    pub domains: Lined<Entries<Target>>,
    #[serde(default)]
    pub users: Entries<Target>,
    #[serde(default)]
    pub default: Option<Lined<String>>,
    #[serde(default)]
    pub default_domain: Option<Lined<String>>,
    /// Dovecot's master-user separator (`user*master`); absent: `*`, empty: off.
    #[serde(default)]
    pub master_user_separator: Option<Lined<String>>,
}

/// One backend as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackendSpec {
    pub host: Option<Lined<String>>,
    pub imap_port: Option<Lined<i64>>,
    pub pop3_port: Option<Lined<i64>>,
    #[serde(default)]
    pub tls: TlsMode,
    pub tls_ca_file: Option<Lined<String>>,
    #[serde(default = "yes")]
    pub tls_verify: bool,
    pub tls_server_name: Option<String>,
    pub max_sessions: Option<Lined<i64>>,
    pub max_logins_in_flight: Option<Lined<i64>>,
    #[serde(default)]
    pub forward_client: ForwardMode,
    pub probe: Option<Lined<ProbeSpec>>,
    pub unavailable_message: Option<String>,
    pub fallback: Option<Lined<String>>,
    pub public_name: Option<String>,
    /// `drain: true`: every instance that reads this file refuses new logins for it.
    pub drain: Option<Lined<bool>>,
    /// Why (shown on `/status` and the status page).
    pub drain_reason: Option<Lined<String>>,
}

fn yes() -> bool {
    true
}

/// `backends.*.tls`.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TlsMode {
    #[default]
    None,
    Starttls,
    Implicit,
}

/// `backends.*.forward_client`.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ForwardMode {
    #[default]
    Id,
    ProxyV2,
    None,
}

/// `backends.*.probe`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProbeSpec {
    pub user: String,
    pub password_file: Lined<String>,
}
