//! mailgate configuration: `mailgate.yaml` and `routing.yaml` (the operator's files) and the routing table they describe.
//!
//! - [`Config`]: the main config file (`mailgate.yaml`).
//! - [`RoutingTable`]: the immutable snapshot of `routing.yaml`; [`RoutingTable::lookup`]
//!   routes a login (user override → domain → longest wildcard → default).
//! - [`RoutingDiff`]: what moves between two tables.
//! - [`watch`]: calls back when the routing file's directory changes (the server's one
//!   reloader parses, validates, diffs and swaps).
//!
//! No sockets, no async runtime: the server drives reloads from a thread of its own.
#![forbid(unsafe_code)]

mod config;
pub mod config_diff;
mod diag;
mod diff;
mod duration;
mod fast_domains;
#[doc(hidden)]
pub mod fuzzing;
mod keymap;
mod load;
mod lookup;
pub mod normalize;
mod reload_guard;
mod resolver;
mod schema;
mod table;
mod validate;
mod watch;

pub use config::{
    AdminConfig, Config, HealthConfig, LimitsConfig, Listen, LogConfig, LogFormat, SniCert,
    TlsConfig,
};
pub use config_diff::{Apply, ConfigChange, ConfigDiff};
pub use diag::{ConfigErrors, Diagnostic};
pub use diff::{BackendChange, Move, RoutingDiff};
pub use lookup::{LoginForm, Route, RouteRule, RoutedLogin};
pub use mailgate_proto::Secret;
pub use reload_guard::ReloadGuard;
pub use resolver::{ResolverConfig, parse_nameserver};
pub use table::{
    Backend, BackendTls, FileDrain, ForwardClient, Loaded, MAX_DRAIN_REASON, Probe, RouteCounts,
    RoutingTable,
};
pub use watch::{DEBOUNCE, WatchError, Watcher, watch, watch_with};
