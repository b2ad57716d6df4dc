//! Plan computation: kicks, attribution to keys, budgets after the move, the guard.

use std::path::Path;
use std::time::Duration;

use mailgate_config::{ReloadGuard, RoutingTable};
use mailgate_health::{KickRegistry, SessionInfo};

use super::guard::MoveGuard;
use super::*;

fn table(yaml: &str) -> RoutingTable {
    RoutingTable::parse(yaml, Path::new("/etc/mailgate/routing.yaml"))
        .expect("valid routing")
        .table
}

const RUNNING: &str = "
backends:
  mail1: {host: 127.0.0.1, imap_port: 1143, max_sessions: 10}
  mail2: {host: 127.0.0.1, imap_port: 2143, max_sessions: 4}
  mail3: {host: 127.0.0.1, imap_port: 3143}
domains:
  example.com: mail1
  example.org: mail2
  '*.example.net': mail3
users:
  vip@example.com: mail3
default: mail1
";

fn session(id: u64, backend: &str, user: &str) -> SessionInfo {
    SessionInfo {
        id,
        backend: backend.into(),
        domain: user
            .rsplit_once('@')
            .map(|(_, d)| d.into())
            .unwrap_or_default(),
        user: user.into(),
    }
}

fn sessions() -> Vec<SessionInfo> {
    let mut v = Vec::new();
    for i in 0..3 {
        v.push(session(i, "mail1", &format!("u{i}@example.com")));
    }
    v.push(session(10, "mail3", "vip@example.com"));
    v.push(session(11, "mail2", "bob@example.org"));
    v.push(session(12, "mail2", "eve@example.org"));
    v.push(session(13, "mail3", "c@a.example.net"));
    v.push(session(14, "mail1", "x@elsewhere.test"));
    v
}

#[test]
fn moving_a_domain_kicks_its_sessions_but_not_its_user_overrides() {
    let running = table(RUNNING);
    let candidate = table(&RUNNING.replace("example.com: mail1", "example.com: mail2"));
    let plan = MovePlan::compute(&running, &candidate, &sessions(), true);
    assert_eq!(plan.live_sessions, 8);
    assert_eq!(
        plan.sessions_to_kick, 3,
        "vip@example.com has its own override"
    );
    assert_eq!(plan.moves.len(), 1, "{:?}", plan.moves);
    let m = &plan.moves[0];
    assert_eq!((m.kind, m.key.as_str()), (MoveKind::Domain, "example.com"));
    assert_eq!(
        (m.old.as_deref(), m.new.as_deref()),
        (Some("mail1"), Some("mail2"))
    );
    assert_eq!(m.sessions, 3);
    assert_eq!(m.from.get("mail1"), Some(&3));
    assert_eq!(m.users.len(), 3);
    assert!(m.users.contains_key("u0@example.com"));
    let b2 = plan.budget("mail2").expect("mail2");
    assert_eq!((b2.live, b2.moving_in, b2.moving_out), (2, 3, 0));
    assert_eq!(b2.after(), 5);
    assert_eq!(b2.headroom(), Some(-1));
    assert!(b2.over_budget());
    let b1 = plan.budget("mail1").expect("mail1");
    assert_eq!((b1.live, b1.moving_out, b1.after()), (4, 3, 1));
    assert_eq!(b1.headroom(), Some(9));
    assert!(!b1.over_budget());
    let over: Vec<_> = plan.over_budget().map(|b| b.backend.as_str()).collect();
    assert_eq!(over, ["mail2"]);
    assert_eq!(
        b2.describe(),
        "mail2: 2 live + 3 in - 0 out = 5 > max_sessions 4"
    );
}

#[test]
fn a_move_within_budget_is_not_flagged_and_users_are_only_listed_when_asked() {
    let running = table(RUNNING);
    let candidate = table(&RUNNING.replace("example.org: mail2", "example.org: mail1"));
    let plan = MovePlan::compute(&running, &candidate, &sessions(), false);
    assert_eq!(plan.sessions_to_kick, 2);
    assert!(plan.moves[0].users.is_empty());
    let b1 = plan.budget("mail1").expect("mail1");
    assert_eq!((b1.live, b1.moving_in, b1.after()), (4, 2, 6));
    assert_eq!(b1.headroom(), Some(4));
    assert_eq!(plan.over_budget().count(), 0);
}

#[test]
fn moves_are_attributed_to_the_most_specific_key() {
    let running = table(RUNNING);
    // The override goes, the wildcard moves, the default moves.
    let candidate = table(
        &RUNNING
            .replace("users:\n  vip@example.com: mail3\n", "users: {}\n")
            .replace("'*.example.net': mail3", "'*.example.net': mail2")
            .replace("default: mail1", "default: mail3"),
    );
    let plan = MovePlan::compute(&running, &candidate, &sessions(), false);
    let by_key = |k: &str| plan.moves.iter().find(|m| m.key == k).expect(k);
    let vip = by_key("vip@example.com");
    assert_eq!((vip.kind, vip.sessions), (MoveKind::User, 1));
    assert_eq!(
        (vip.old.as_deref(), vip.new.as_deref()),
        (Some("mail3"), Some("mail1"))
    );
    let wild = by_key("*.example.net");
    assert_eq!((wild.kind, wild.sessions), (MoveKind::Wildcard, 1));
    let def = by_key("default");
    assert_eq!((def.kind, def.sessions), (MoveKind::Default, 1));
    assert_eq!(plan.sessions_to_kick, 3);
    // mail2 has no budget problem: 2 live + 1 in = 3 <= 4. mail3: no budget at all.
    assert_eq!(plan.over_budget().count(), 0);
    assert_eq!(plan.budget("mail3").expect("mail3").headroom(), None);
}

#[test]
fn an_unchanged_table_moves_nothing_and_a_removed_backend_moves_all_its_sessions() {
    let running = table(RUNNING);
    let same = table(RUNNING);
    let plan = MovePlan::compute(&running, &same, &sessions(), false);
    assert!(plan.moves.is_empty());
    assert_eq!(plan.sessions_to_kick, 0);
    let without_mail2 = table(
        &RUNNING
            .replace(
                "  mail2: {host: 127.0.0.1, imap_port: 2143, max_sessions: 4}\n",
                "",
            )
            .replace("example.org: mail2", "example.org: mail3"),
    );
    let plan = MovePlan::compute(&running, &without_mail2, &sessions(), false);
    let gone = plan.budget("mail2").expect("still listed: it has sessions");
    assert!(!gone.in_candidate);
    assert_eq!((gone.live, gone.moving_out, gone.after()), (2, 2, 0));
    assert_eq!(plan.budget("mail3").expect("mail3").moving_in, 2);
}

#[test]
fn a_lower_budget_alone_is_not_flagged() {
    let running = table(RUNNING);
    let candidate = table(&RUNNING.replace("max_sessions: 10", "max_sessions: 2"));
    let plan = MovePlan::compute(&running, &candidate, &sessions(), false);
    let b1 = plan.budget("mail1").expect("mail1");
    assert_eq!(b1.headroom(), Some(-2));
    assert!(!b1.over_budget(), "nobody moves onto mail1");
}

#[test]
fn a_session_on_a_fallback_moves_out_of_the_backend_it_is_spliced_to() {
    let running = table(RUNNING);
    let candidate = table(&RUNNING.replace("example.org: mail2", "example.org: mail1"));
    // bob is on mail3 (a fallback) although example.org routes to mail2.
    let s = [session(1, "mail3", "bob@example.org")];
    let plan = MovePlan::compute(&running, &candidate, &s, false);
    assert_eq!(plan.moves[0].from.get("mail3"), Some(&1));
    assert_eq!(plan.budget("mail3").expect("mail3").moving_out, 1);
    assert_eq!(plan.budget("mail2").expect("mail2").moving_out, 0);
}

#[test]
fn the_plan_kicks_exactly_what_a_reload_kicks() {
    let running = table(RUNNING);
    let candidate = table(&RUNNING.replace("example.com: mail1", "example.com: mail3"));
    let kicks = KickRegistry::new(Duration::from_millis(1), Duration::from_millis(1));
    let _handles: Vec<_> = sessions()
        .iter()
        .map(|s| kicks.register(s.backend.clone(), s.domain.clone(), s.user.clone()))
        .collect();
    let plan = MovePlan::for_registry(&running, &candidate, &kicks, false);
    let reload_would = kicks
        .sessions_where(|i| running.route_changed(&candidate, &i.user))
        .len();
    assert_eq!(plan.sessions_to_kick, reload_would);
    assert_eq!(plan.sessions_to_kick, 3);
    // The guard's cheaper form has the same budgets, without the diff.
    let budgets = MovePlan::budgets_for_registry(&running, &candidate, &kicks);
    assert_eq!(budgets.budgets, plan.budgets);
    assert!(budgets.diff.is_empty());
    assert_eq!(budgets.moves, plan.moves, "here every move kicks sessions");
}

#[test]
fn the_guard_warns_or_refuses() {
    let running = table(RUNNING);
    let candidate = table(&RUNNING.replace("example.com: mail1", "example.com: mail2"));
    let kicks = KickRegistry::new(Duration::from_millis(1), Duration::from_millis(1));
    let _handles: Vec<_> = sessions()
        .iter()
        .map(|s| kicks.register(s.backend.clone(), s.domain.clone(), s.user.clone()))
        .collect();
    let guard = MoveGuard::new(ReloadGuard::Warn);
    assert_eq!(
        guard.check(ReloadGuard::Warn, &running, &candidate, &kicks),
        Ok(vec!["mail2".to_string()])
    );
    let e = guard
        .check(ReloadGuard::Strict, &running, &candidate, &kicks)
        .expect_err("strict refuses");
    assert_eq!(
        guard.mode(),
        ReloadGuard::Warn,
        "a refused reload keeps the mode in force"
    );
    assert_eq!(e.backends, ["mail2"]);
    let text = e.to_string();
    assert!(
        text.contains("mail2: 2 live + 3 in - 0 out = 5 > max_sessions 4"),
        "{text}"
    );
    assert!(text.contains("nothing changed"), "{text}");
    // Within budget, or unchanged: no finding in either mode.
    let fine = table(&RUNNING.replace("example.org: mail2", "example.org: mail1"));
    assert_eq!(
        guard.check(ReloadGuard::Strict, &running, &fine, &kicks),
        Ok(vec![])
    );
    assert_eq!(
        guard.mode(),
        ReloadGuard::Strict,
        "an applied reload brings its mode"
    );
    let same = table(RUNNING);
    assert_eq!(
        guard.check(ReloadGuard::Strict, &running, &same, &kicks),
        Ok(vec![])
    );
    // One warning and one refusal above; the findings-free checks count nothing.
    let metrics = crate::metrics::Metrics::build(vec![std::sync::Arc::new(guard)]);
    let text = metrics.encode();
    for want in [
        "mailgate_reload_guard_total{action=\"warned\"} 1",
        "mailgate_reload_guard_total{action=\"refused\"} 1",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
}
