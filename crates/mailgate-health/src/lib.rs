//! mailgate backend health (issue #5): the state machine, admission (budgets, drain,
//! slow start, the blast-radius guard), the kick registry and the probe scheduler.
//!
//! See docs/health.md for the model and the operator's view.
#![forbid(unsafe_code)]

pub mod machine;
pub mod settings;

pub use machine::{BackendHealth, HealthEvent, HealthState, PassiveSignal, Transition};
pub use settings::{HealthSettings, Protocol};
