//! Kick registry tests with paused tokio time.

use super::*;

fn registry() -> KickRegistry {
    KickRegistry::new(Duration::from_millis(500), Duration::from_secs(10))
}

fn populate(r: &KickRegistry) -> Vec<KickHandle> {
    let mut v = Vec::new();
    for i in 0..10 {
        v.push(r.register("mail1", "example.com", format!("u{i}@example.com")));
        v.push(r.register("mail2", "example.org", format!("u{i}@example.org")));
    }
    v.push(r.register("mail2", "Example.COM", "alice@example.com"));
    v
}

#[tokio::test(start_paused = true)]
async fn selectors_pick_the_right_sessions() {
    let r = registry();
    let handles = populate(&r);
    assert_eq!(r.len(), 21);
    assert_eq!(
        r.kick(
            &KickSelector::User("ALICE@example.com".into()),
            Duration::ZERO
        ),
        1
    );
    assert_eq!(
        r.kick(&KickSelector::Domain("example.com.".into()), Duration::ZERO),
        11
    );
    assert_eq!(
        r.kick(&KickSelector::Backend("mail2".into()), Duration::ZERO),
        11
    );
    assert_eq!(
        r.kick(&KickSelector::Backend("mail9".into()), Duration::ZERO),
        0
    );
    let kicked = handles.iter().filter(|h| h.pending().is_some()).count();
    assert_eq!(kicked, 21);
    let alice = handles
        .iter()
        .find(|h| h.info().user == "alice@example.com");
    assert_eq!(
        alice.and_then(|h| h.pending()).map(|k| k.reason),
        Some(KickReason::User),
        "the earliest kick is kept"
    );
    drop(handles);
    assert!(r.is_empty(), "dropping handles unregisters");
}

#[tokio::test(start_paused = true)]
async fn a_kick_spreads_its_closes_over_the_window() {
    let r = registry();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let handle = r.register("mail1", "example.com", format!("u{i}@example.com"));
        tasks.push(tokio::spawn(async move {
            let activity = Activity::new();
            let req = handle.close_signal(&activity).await;
            (Instant::now() - start, req.reason)
        }));
    }
    tokio::task::yield_now().await;
    let window = Duration::from_secs(60);
    assert_eq!(r.kick(&KickSelector::Backend("mail1".into()), window), 100);
    let mut closes = Vec::new();
    for t in tasks {
        let (at, reason) = t.await.expect("task");
        assert_eq!(reason, KickReason::Backend);
        closes.push(at);
    }
    closes.sort();
    let quiet = Duration::from_millis(500);
    assert!(
        closes[0] >= quiet,
        "never at once: first close {:?}",
        closes[0]
    );
    assert!(closes[99] <= window + quiet + Duration::from_millis(10));
    // At most 3 closes in any one second (one per 0.6 s slot).
    for s in 0..61 {
        let lo = Duration::from_secs(s);
        let hi = lo + Duration::from_secs(1);
        let n = closes.iter().filter(|c| **c >= lo && **c < hi).count();
        assert!(n <= 3, "{n} closes in second {s}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_kicked_session_waits_for_a_quiet_moment() {
    let r = registry();
    let busy_then_quiet = r.register("mail1", "example.com", "a@example.com");
    let always_busy = r.register("mail1", "example.com", "b@example.com");
    let start = Instant::now();
    r.kick(&KickSelector::Backend("mail1".into()), Duration::ZERO);

    let quiet_task = tokio::spawn(async move {
        let activity = Arc::new(Activity::new());
        let a = Arc::clone(&activity);
        let writer = tokio::spawn(async move {
            for _ in 0..30 {
                a.touch();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        busy_then_quiet.close_signal(&activity).await;
        writer.abort();
        Instant::now() - start
    });
    let busy_task = tokio::spawn(async move {
        let activity = Arc::new(Activity::new());
        let a = Arc::clone(&activity);
        let writer = tokio::spawn(async move {
            loop {
                a.touch();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        always_busy.close_signal(&activity).await;
        writer.abort();
        Instant::now() - start
    });
    let quiet_at = quiet_task.await.expect("task");
    // Bytes moved until 3 s; closed within two quiet periods after that.
    assert!(quiet_at >= Duration::from_secs(3), "{quiet_at:?}");
    assert!(quiet_at <= Duration::from_millis(4100), "{quiet_at:?}");
    let busy_at = busy_task.await.expect("task");
    assert_eq!(
        busy_at,
        Duration::from_secs(10),
        "max_wait bounds a busy session"
    );
}

#[tokio::test(start_paused = true)]
async fn an_earlier_kick_overrides_a_later_one() {
    let r = registry();
    let h = r.register("mail1", "example.com", "a@example.com");
    let start = Instant::now();
    r.kick(
        &KickSelector::Backend("mail1".into()),
        Duration::from_secs(3600),
    );
    let task = tokio::spawn(async move {
        let req = h.close_signal(&Activity::new()).await;
        (Instant::now() - start, req.reason)
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    r.kick(&KickSelector::User("a@example.com".into()), Duration::ZERO);
    let (at, reason) = task.await.expect("task");
    assert_eq!(reason, KickReason::User);
    assert!(at < Duration::from_secs(2), "{at:?}");
}

#[tokio::test(start_paused = true)]
async fn route_change_kicks_only_moved_sessions() {
    let r = registry();
    let handles = populate(&r);
    // The routing diff says example.org moved, and alice has a new user override.
    let moved = |s: &SessionInfo| s.domain == "example.org" || s.user == "alice@example.com";
    assert_eq!(r.sessions_where(moved).len(), 11);
    assert_eq!(
        r.kick_where(moved, Duration::from_secs(60), KickReason::RouteChanged),
        11
    );
    for h in &handles {
        let expect = moved(h.info());
        assert_eq!(h.pending().is_some(), expect, "{:?}", h.info());
    }
}

#[tokio::test(start_paused = true)]
async fn tally_counts_what_a_kick_would_close_and_closes_nothing() {
    let r = registry();
    let handles = populate(&r);
    let t = r.tally(&KickSelector::Domain("EXAMPLE.com".into()), false);
    assert_eq!(t.total, 11);
    assert_eq!(t.backend_total("mail1"), 10);
    assert_eq!(t.backend_total("mail2"), 1);
    assert_eq!(t.by_backend["mail2"]["Example.COM"], 1);
    assert!(t.users.is_empty(), "users only when asked");
    assert!(
        handles.iter().all(|h| h.pending().is_none()),
        "a tally schedules no kick"
    );
    let t = r.tally(&KickSelector::User("alice@example.com".into()), true);
    assert_eq!(t.total, 1);
    let key = ("mail2".to_string(), "Example.COM".to_string());
    assert_eq!(t.users[&key]["alice@example.com"], 1);
    let none = r.tally(&KickSelector::Backend("mail9".into()), true);
    assert_eq!(none, SessionTally::default());
}

#[tokio::test(start_paused = true)]
async fn for_each_sees_every_registered_session_once() {
    let r = registry();
    let mut handles = populate(&r);
    let mut n = 0;
    r.for_each(|_| n += 1);
    assert_eq!(n, 21);
    handles.truncate(5);
    let mut ids = Vec::new();
    r.for_each(|i| ids.push(i.id));
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 5, "dropped handles are gone");
}

/// Every spliced session holds a `close_signal` future for its whole life: until a kick is
/// requested it holds only the channel's wait, not the timers of a kick in progress.
#[test]
fn the_close_signal_of_an_idle_session_stays_small() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _enter = rt.enter();
    let r = registry();
    let h = r.register("mail1", "example.com", "a@example.com");
    let activity = Activity::new();
    let idle = std::mem::size_of_val(&h.close_signal(&activity));
    let in_progress = std::mem::size_of_val(&close_when_due(h.rx.clone(), &activity));
    // 168 bytes here in a debug build; 408 when the kick's timers were part of it.
    assert!(
        idle <= 192 && idle < in_progress,
        "close_signal is {idle} bytes (the kick in progress: {in_progress})"
    );
}
