//! The routing file's drain and the admin API's local override, alone and together.

use std::time::{Duration, SystemTime};

use crate::budget::RefusalReason;
use crate::settings::HealthSettings;
use crate::view::{BackendSpec, DrainNote, HealthView};

fn spec(name: &str, reason: Option<&str>, drained: bool) -> BackendSpec {
    BackendSpec {
        drain: drained.then(|| DrainNote {
            reason: reason.map(str::to_string),
            since: None,
        }),
        ..BackendSpec::new(name)
    }
}

fn refused(v: &HealthView, b: &str) -> Option<RefusalReason> {
    v.admit(b).err().map(|r| r.reason)
}

#[test]
fn the_file_drain_refuses_new_logins_keeps_sessions_and_follows_reloads() {
    let v = HealthView::new(HealthSettings::default());
    v.set_backends([spec("mail1", None, false), spec("mail2", None, false)]);
    let session = v.admit("mail1").expect("up").into_session();
    v.set_backends([
        spec("mail1", Some("disk swap"), true),
        spec("mail2", None, false),
    ]);
    assert_eq!(refused(&v, "mail1"), Some(RefusalReason::Drained));
    assert!(v.admit("mail2").is_ok());
    let st = &v.snapshot()[0];
    assert!(st.drained && !st.admitting);
    assert_eq!(st.sessions, 1, "live sessions stay");
    let file = st.drains.file.as_ref().expect("file drain");
    assert_eq!(file.reason.as_deref(), Some("disk swap"));
    assert!(st.drains.local.is_none());
    // Undraining through the admin API cannot lift the file's drain.
    assert!(v.undrain("mail1"));
    assert_eq!(refused(&v, "mail1"), Some(RefusalReason::Drained));
    // The file lifts it.
    v.set_backends([spec("mail1", None, false), spec("mail2", None, false)]);
    assert!(v.admit("mail1").is_ok());
    let st = &v.snapshot()[0];
    assert!(!st.drained && st.drains.file.is_none());
    drop(session);
}

#[test]
fn both_sources_apply_and_each_is_lifted_on_its_own() {
    let v = HealthView::new(HealthSettings::default());
    v.set_backends([spec("mail1", Some("moving"), true)]);
    assert!(v.drain_local("mail1", Some("ticket 42".into())));
    let st = &v.snapshot()[0];
    assert_eq!(
        st.drains.local.as_ref().and_then(|d| d.reason.as_deref()),
        Some("ticket 42")
    );
    assert!(st.drains.file.is_some());
    // The file lifts its drain; the local one still holds.
    v.set_backends([spec("mail1", None, false)]);
    assert_eq!(refused(&v, "mail1"), Some(RefusalReason::Drained));
    let st = &v.snapshot()[0];
    assert!(st.drained && st.drains.file.is_none() && st.drains.local.is_some());
    assert!(v.undrain("mail1"));
    assert!(v.admit("mail1").is_ok());
    assert!(v.snapshot()[0].drains.local.is_none());
}

#[test]
fn local_drains_are_listed_with_reason_and_time_for_the_state_file() {
    let v = HealthView::new(HealthSettings::default());
    v.set_backends(["b", "a", "c"].map(BackendSpec::new));
    assert!(v.local_drains().is_empty());
    let then = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    assert!(v.restore_local_drain(
        "c",
        DrainNote {
            reason: Some("saved".into()),
            since: Some(then),
        }
    ));
    assert!(v.drain("a"));
    // Draining again changes the reason but not the time it began.
    assert!(v.drain_local("c", Some("new words".into())));
    let got = v.local_drains();
    assert_eq!(
        got.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["a", "c"]
    );
    assert_eq!(got[1].1.reason.as_deref(), Some("new words"));
    assert_eq!(got[1].1.since, Some(then));
    assert!(got[0].1.since.is_some() && got[0].1.reason.is_none());
    assert!(!v.restore_local_drain("zz", DrainNote::default()));
    assert!(!v.undrain("zz"));
}
