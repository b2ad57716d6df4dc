//! mailgate backend health (issue #5): the state machine, admission (budgets, drain,
//! slow start, the blast-radius guard), the kick registry and the probe scheduler.
//!
//! See docs/health.md for the model and the operator's view.
#![forbid(unsafe_code)]

pub mod budget;
pub mod capabilities;
pub mod conversation;
mod drain;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod kick;
pub mod machine;
pub mod probe;
pub mod scheduler;
pub mod settings;
pub mod view;

pub use budget::{LoginPermit, Refusal, RefusalReason, SessionGuard};
pub use capabilities::{
    CapabilityBook, CapabilityChange, CapabilityRecord, Difference, Drift, Stage,
};
pub use conversation::{BoxStream, ProbeStream, after_login, logout};
pub use kick::{
    Activity, KickHandle, KickReason, KickRegistry, KickRequest, KickSelector, SessionInfo,
};
pub use machine::{
    BackendHealth, HealthEvent, HealthState, PassiveSignal, Transition, fmt_duration,
};
pub use probe::{
    BackendTarget, ProbeError, ProbeFuture, ProbeOutcome, ProbeResult, ProbeStep, Prober,
};
pub use scheduler::ProbeScheduler;
pub use settings::{HealthSettings, Protocol};
pub use view::{BackendSpec, BackendStatus, DrainNote, DrainSources, HealthView};
