//! The routing file as written (`routing.yaml`), before validation. Map sections are read as
//! ordered entry lists with their line numbers so that duplicates, case clashes and bad
//! references can all be reported at once; `validate.rs` turns this into a `RoutingTable`.

use std::fmt;
use std::marker::PhantomData;

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

/// `routing.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoutingFile {
    #[serde(default)]
    pub backends: Entries<BackendSpec>,
    #[serde(default)]
    pub domains: Entries<String>,
    #[serde(default)]
    pub users: Entries<String>,
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
