//! Durations in config files are humantime strings: `500ms`, `2s`, `30m`, `1h 30m`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// `#[serde(with = "crate::duration")]`.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(s.trim()).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration \"{s}\" ({e}); write e.g. 500ms, 2s, 30m"
        ))
    })
}
