//! `GET /sessions` and the answer of `POST /kick?…&dry_run=true`: live spliced sessions
//! by backend and domain, counts only unless user names are asked for (`users=true`).

use mailgate_config::RoutingTable;
use mailgate_health::kick::SessionTally;
use serde_json::{Value, json};

/// A yes/no query flag: absent or `false`/`0`/`no` → false, `true`/`1`/`yes`/empty → true.
pub(crate) fn flag(value: Option<&str>, name: &str) -> Result<bool, String> {
    match value.map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) => match v.as_str() {
            "" | "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(format!("{name}= takes true or false")),
        },
    }
}

/// Backends with their domains (and users when the tally has them). Every backend of
/// `table` is listed, also without sessions; sessions on a backend that left the table
/// (still spliced after a reload) are listed too.
pub(crate) fn backends(tally: &SessionTally, table: Option<&RoutingTable>, users: bool) -> Value {
    let mut names: Vec<String> = table
        .map(|t| t.backends().map(|b| b.name.clone()).collect())
        .unwrap_or_default();
    for b in tally.by_backend.keys() {
        if !names.contains(b) {
            names.push(b.clone());
        }
    }
    let list: Vec<Value> = names
        .iter()
        .map(|name| {
            let domains: Vec<Value> = tally
                .by_backend
                .get(name)
                .into_iter()
                .flatten()
                .map(|(domain, n)| {
                    let mut d = json!({ "domain": domain, "sessions": n });
                    if users {
                        let u = tally.users.get(&(name.clone(), domain.clone()));
                        let list: Vec<Value> = u
                            .into_iter()
                            .flatten()
                            .map(|(user, n)| json!({ "user": user, "sessions": n }))
                            .collect();
                        d["users"] = Value::Array(list);
                    }
                    d
                })
                .collect();
            let backend = table.and_then(|t| t.backend(name));
            json!({
                "name": name,
                "sessions": tally.backend_total(name),
                "max_sessions": backend.and_then(|b| b.max_sessions),
                "in_routing_table": table.is_none() || backend.is_some(),
                "domains": domains,
            })
        })
        .collect();
    Value::Array(list)
}

/// `GET /sessions`.
pub(crate) fn listing(tally: &SessionTally, table: &RoutingTable, users: bool) -> Value {
    json!({
        "total": tally.total,
        "users_listed": users,
        "backends": backends(tally, Some(table), users),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mailgate_health::KickRegistry;

    use super::*;

    #[test]
    fn flags() {
        assert_eq!(flag(None, "x"), Ok(false));
        for t in ["true", "1", "YES", ""] {
            assert_eq!(flag(Some(t), "x"), Ok(true), "{t}");
        }
        for f in ["false", "0", "no"] {
            assert_eq!(flag(Some(f), "x"), Ok(false), "{f}");
        }
        assert!(flag(Some("maybe"), "dry_run").is_err());
    }

    #[test]
    fn listing_counts_by_backend_and_domain_and_names_users_only_when_asked() {
        let table = crate::admin::testutil::table();
        let kicks = KickRegistry::new(Duration::from_millis(1), Duration::from_millis(1));
        let _h = [
            kicks.register("mail1", "example.com", "a@example.com"),
            kicks.register("mail1", "example.com", "a@example.com"),
            kicks.register("mail1", "example.com", "b@example.com"),
            kicks.register("gone", "example.org", "c@example.org"),
        ];
        let mut t = SessionTally::default();
        kicks.for_each(|i| t.add(i, false));
        let v = listing(&t, &table, false);
        assert_eq!(v["total"], 4);
        let text = v.to_string();
        assert!(!text.contains("a@example.com"), "no user names: {text}");
        let b = v["backends"].as_array().expect("list");
        let mail1 = b.iter().find(|b| b["name"] == "mail1").expect("mail1");
        assert_eq!(mail1["sessions"], 3);
        assert_eq!(mail1["domains"][0]["domain"], "example.com");
        assert_eq!(mail1["domains"][0]["sessions"], 3);
        let mail2 = b
            .iter()
            .find(|b| b["name"] == "mail2")
            .expect("listed empty");
        assert_eq!(mail2["sessions"], 0);
        let gone = b.iter().find(|b| b["name"] == "gone").expect("gone");
        assert_eq!(gone["in_routing_table"], false);

        let mut t = SessionTally::default();
        kicks.for_each(|i| t.add(i, true));
        let v = listing(&t, &table, true);
        let b = v["backends"].as_array().expect("list");
        let mail1 = b.iter().find(|b| b["name"] == "mail1").expect("mail1");
        let users = &mail1["domains"][0]["users"];
        assert_eq!(users[0]["user"], "a@example.com");
        assert_eq!(users[0]["sessions"], 2);
        assert_eq!(users[1]["user"], "b@example.com");
    }
}
