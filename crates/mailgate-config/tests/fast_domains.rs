//! Differential property test of the `domains:` fast path: for every generated or mutated
//! routing file the fast path takes, the table (or the errors) equal what the full YAML
//! parser alone gives; files written in its grammar are taken. Near-misses of the grammar
//! (anchors, tags, escapes, flow style, tabs, other indentation, `? ` keys, null-like
//! scalars, multi-line scalars, a second `domains` key, the header inside a quoted scalar)
//! are generated on purpose: they must either fall back or agree.
use mailgate_config::fuzzing::fast_path_agrees;
use proptest::prelude::*;

const BACKENDS: &str = "backends:\n  mail1:\n    host: 127.0.0.1\n    imap_port: 143\n  \
                        mail2: {host: 127.0.0.2, pop3_port: 110}\n";

/// Keys in the fast grammar.
fn good_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9][a-z0-9.\\-]{0,20}\\.[a-z]{2,4}",
        "[A-Za-z0-9][A-Za-z0-9._\\-]{0,12}",
        "[a-zäöüß漢][a-z0-9äöüß漢.]{0,10}",
        "\"\\*\\.[a-z0-9.]{1,12}\"",
        "\"[ -!#-\\[\\]-~äé]{0,12}\"",
        "'[ -&(-~äé]{0,12}'",
        Just("123".to_string()),
        Just("1e3".to_string()),
        Just("0x1F".to_string()),
        Just("true".to_string()),
        Just("yes".to_string()),
        Just("\"null\"".to_string()),
    ]
}

fn good_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("mail1".to_string()),
        Just("mail2".to_string()),
        Just("mail9".to_string()),
        Just("\"mail1\"".to_string()),
        Just("'mail2'".to_string()),
        Just("\"\"".to_string()),
        "[a-z0-9][a-z0-9_.\\-]{0,7}",
    ]
}

fn good_line() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (good_key(), " {1,3}", good_value(), prop_oneof![
            Just(String::new()), Just("  ".to_string()), Just(" # note".to_string()),
            Just("   #".to_string()),
        ]).prop_map(|(k, sp, v, tail)| format!("  {k}:{sp}{v}{tail}")),
        1 => Just(String::new()),
        1 => prop_oneof![Just("  # comment".to_string()), Just("# col 0".to_string()),
            Just("    ".to_string()), Just("      # deeper".to_string())],
    ]
}

/// Lines near the grammar's edges: each is taken (and must agree) or falls back.
fn odd_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("  a.example: &x mail1".to_string()),
        Just("  b.example: *x".to_string()),
        Just("  c.example: !!str mail1".to_string()),
        Just("  d.example: \"mail\\x31\"".to_string()),
        Just("  e.example: [mail1]".to_string()),
        Just("  f.example: {mail1: 1}".to_string()),
        Just("  ? g.example\n  : mail1".to_string()),
        Just("  h.example:mail1".to_string()),
        Just("  i.example:".to_string()),
        Just("   j.example: mail1".to_string()),
        Just("    continued".to_string()),
        Just("\tk.example: mail1".to_string()),
        Just("  l.example: mail1\r".to_string()),
        Just("  null: mail1".to_string()),
        Just("  ~: mail1".to_string()),
        Just("  m.example: ~".to_string()),
        Just("  n.example: null".to_string()),
        Just("  o.example: mail1#x".to_string()),
        Just("  p example: mail1".to_string()),
        Just("  q.example: |\n    mail1".to_string()),
        Just("  \"r.example: mail1".to_string()),
        Just("  - s.example".to_string()),
        Just("  t.example : mail1".to_string()),
        Just("  u.example: 'it''s'".to_string()),
        Just("  v\u{85}w: mail1".to_string()),
        Just("  \u{feff}x.example: mail1".to_string()),
        Just("  y.example: mail1 mail2".to_string()),
        Just("  <<: {a: mail1}".to_string()),
        Just("  z.example: \"mail1\"x".to_string()),
        Just("domains:".to_string()),
        Just("\"domains\": {}".to_string()),
        Just("...".to_string()),
        Just("---".to_string()),
        "  [ -~äé\u{85}\t]{0,16}",
    ]
}

fn before() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just(BACKENDS.to_string()),
        1 => Just(format!("{BACKENDS}default: \"x\n")),
        1 => Just(format!("{BACKENDS}users: {{\n")),
        1 => Just(format!("---\n{BACKENDS}")),
        1 => Just(String::new()),
        1 => Just(format!("{BACKENDS}default: |\n")),
    ]
}

fn after() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("users:\n  alice@example.com: mail2\n".to_string()),
        Just("default: mail1\n".to_string()),
        Just("default: mail1\ndefault_domain: example.com\n".to_string()),
        Just("domains:\n  extra.example: mail1\n".to_string()),
        Just("\"domains\": {}\n".to_string()),
        Just("}\n".to_string()),
        Just("\"\n".to_string()),
        Just("unknown_key: 1\n".to_string()),
        Just("backends: {}\n".to_string()),
    ]
}

fn file(lines: Vec<String>, before: String, after: String, header: &str) -> String {
    let mut text = before;
    text.push_str(header);
    text.push('\n');
    for l in lines {
        text.push_str(&l);
        text.push('\n');
    }
    text.push_str(&after);
    text
}

/// A char edit: (position in per-mille of the text, operation, character).
fn edits() -> impl Strategy<Value = Vec<(u16, u8, char)>> {
    prop::collection::vec(
        (
            0u16..1000,
            0u8..3,
            prop_oneof![
                Just(' '),
                Just(':'),
                Just('#'),
                Just('"'),
                Just('\''),
                Just('\\'),
                Just('\t'),
                Just('\n'),
                Just('*'),
                Just('&'),
                Just('!'),
                Just('-'),
                Just('?'),
                Just('{'),
                Just('['),
                Just('|'),
                Just('>'),
                Just('%'),
                Just('@'),
                Just('`'),
                Just('~'),
                Just('\r'),
                Just('é'),
                Just('\u{85}'),
                Just('a'),
                Just('.'),
            ],
        ),
        1..4,
    )
}

fn mutate(text: &str, edits: &[(u16, u8, char)]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for &(at, op, c) in edits {
        let i = (usize::from(at) * chars.len()) / 1000;
        match op {
            0 => chars.insert(i.min(chars.len()), c),
            1 if i < chars.len() => {
                chars.remove(i);
            }
            _ if i < chars.len() => chars[i] = c,
            _ => chars.push(c),
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// A file written in the grammar is taken by the fast path, and agrees.
    #[test]
    fn grammar_files_are_taken_and_agree(
        lines in prop::collection::vec(good_line(), 1..40),
        after in prop_oneof![
            Just(String::new()),
            Just("users:\n  alice@example.com: mail2\n".to_string()),
            Just("default: mail1\ndefault_domain: example.com\n".to_string()),
        ],
    ) {
        prop_assume!(lines.iter().any(|l| l.contains(':') && !l.trim_start().starts_with('#')));
        let text = file(lines, BACKENDS.to_string(), after, "domains:");
        prop_assert!(fast_path_agrees(&text), "fast path declined:\n{}", text);
    }

    /// Grammar lines mixed with near-misses, odd surroundings: taken and equal, or declined.
    #[test]
    fn near_misses_agree_or_fall_back(
        lines in prop::collection::vec(prop_oneof![4 => good_line(), 1 => odd_line()], 1..30),
        before in before(),
        after in after(),
        header in prop_oneof![8 => Just("domains:"), 1 => Just("domains: "),
            1 => Just("domains:  # c"), 1 => Just("  domains:")],
    ) {
        fast_path_agrees(&file(lines, before, after, header));
    }

    /// Random character edits anywhere in a file of the grammar.
    #[test]
    fn mutated_files_agree_or_fall_back(
        lines in prop::collection::vec(good_line(), 1..20),
        after in after(),
        edits in edits(),
    ) {
        let text = file(lines, BACKENDS.to_string(), after, "domains:");
        fast_path_agrees(&mutate(&text, &edits));
    }
}

/// The shapes of the generated 1M-domain benchmark file and of examples/ are taken.
#[test]
fn usual_files_are_taken() {
    let mut text = String::from(BACKENDS);
    text.push_str("domains:\n");
    for i in 0..1000 {
        text.push_str(&format!("  d{i}.example: mail{}\n", 1 + i % 2));
    }
    text.push_str("  \"*.w0.example\": mail1\nusers:\n  user0@d0.example: mail2\ndefault: mail1\n");
    assert!(fast_path_agrees(&text));
    let examples =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/routing.yaml");
    let example = std::fs::read_to_string(&examples).expect("examples/routing.yaml");
    // Taken or not (its domains block may use any YAML), it must agree.
    let _ = fast_path_agrees(&example);
}
