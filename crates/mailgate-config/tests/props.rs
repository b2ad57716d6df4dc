//! Property tests: lookup never panics, and normalisation makes case/trailing dot irrelevant.
mod common;

use common::{BASIC, Dir};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn lookup_never_panics(user in any::<String>()) {
        thread_local!(static T: mailgate_config::RoutingTable =
            Dir::new().load(BASIC).expect("valid").table);
        T.with(|t| { let _ = t.lookup(&user); });
    }

    #[test]
    fn lookup_never_panics_mail_like(user in "[a-zA-Z@.\\-\u{e0}-\u{ff}*\u{0}\u{7f} ]{0,40}") {
        thread_local!(static T: mailgate_config::RoutingTable =
            Dir::new().load(BASIC).expect("valid").table);
        T.with(|t| { let _ = t.lookup(&user); });
    }

    #[test]
    fn case_and_trailing_dot_do_not_matter(local in "[a-z]{1,10}", sub in "[a-z]{1,10}") {
        thread_local!(static T: mailgate_config::RoutingTable =
            Dir::new().load(BASIC).expect("valid").table);
        T.with(|t| {
            let a = t.lookup(&format!("{local}@{sub}.example.net")).map(|r| r.backend.name.clone());
            let b = t.lookup(&format!("{}@{}.EXAMPLE.net.", local.to_uppercase(), sub.to_uppercase()))
                .map(|r| r.backend.name.clone());
            prop_assert_eq!(a, b);
            Ok(())
        })?;
    }

    #[test]
    fn routing_parser_never_panics(text in "[a-z0-9:*&! \\-\\[\\]{}\n\"'.@]{0,200}") {
        let d = Dir::new();
        let _ = d.load(&text);
    }
}
