//! `mailgate_build_info{version,git_commit,rustc}`: a gauge that is always 1, so that a
//! query can join the build onto any series (`* on (instance) group_left (version)
//! mailgate_build_info`) and a fleet's versions can be counted during an upgrade.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{BuildLabel, names};

/// The build's facts: package version, git commit and compiler, each `unknown` when the
/// build did not say.
pub fn build_label() -> BuildLabel {
    BuildLabel {
        version: env!("CARGO_PKG_VERSION"),
        git_commit: known(option_env!("MAILGATE_GIT_COMMIT")),
        rustc: known(option_env!("MAILGATE_RUSTC_VERSION")),
    }
}

fn known(v: Option<&'static str>) -> &'static str {
    v.map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
}

/// Register `build_info` (1 for this build's label set).
pub fn register(registry: &mut Registry) {
    let family = Family::<BuildLabel, Gauge>::default();
    family.get_or_create(&build_label()).set(1);
    registry.register(
        names::BUILD_INFO,
        "Build of the running mailgate (always 1): version, git commit, compiler",
        family,
    );
}
