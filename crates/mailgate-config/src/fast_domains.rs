//! A fast path for the part that makes up almost all of a big routing file: the top-level
//! `domains:` block written as one `name: backend` pair per line. Those lines are read here
//! directly, with their exact line numbers; the rest of the document, with the block's lines
//! emptied (so every line number stays), goes to the YAML parser as before.
//!
//! The grammar accepted is deliberately narrow. The moment one line of the block is outside
//! it (flow style, anchors, aliases, tags, escapes, multi-line scalars, tabs, other
//! indentation, `? ` keys, a null-like plain scalar, ...), [`split`] returns `None` and the
//! caller parses the whole file with the full parser, so every error message stays exactly
//! what the full parser gives. For every file it accepts, the result equals the full
//! parser's (the differential property test `tests/fast_domains.rs` and the
//! `routing_fast` fuzz target check this).
//!
//! Accepted block (after a line that is exactly `domains:`, up to the first line that
//! starts with a character other than a space or `#`):
//! - empty lines, lines of spaces, comment lines (`#` after optional spaces);
//! - entries `KEY: VALUE`, all at the same indentation of one or more spaces, with optional
//!   trailing spaces and an optional ` # comment`. Every character of the block is printable
//!   ASCII (no tab, no `\r`) or a non-ASCII alphanumeric. KEY and VALUE are each a plain scalar
//!   (ASCII letters, digits, `.`, `-`, `_` and non-ASCII alphanumerics, starting with a
//!   letter or digit, not `null`/`Null`/`NULL`) or a one-line quoted scalar without escapes
//!   (`"..."` without `\` or `"`, `'...'` without `'`; printable ASCII and non-ASCII
//!   alphanumerics inside). VALUE as a plain scalar is ASCII only.

/// The header line the fast path looks for.
const HEADER: &str = "domains:";
/// What the header becomes in the rest of the document: an explicit empty mapping at the
/// header's line, so that the caller can check the rest's `domains` key is that very line.
pub(crate) const REST_HEADER: &str = "domains: {}";
/// Longest key taken (YAML limits implicit keys to 1024 characters).
const MAX_KEY_BYTES: usize = 1000;

/// The `domains:` block read directly, and the rest of the document.
pub(crate) struct Split<'a> {
    /// The document with the block's lines emptied and the header replaced by
    /// [`REST_HEADER`]: same line count, same line numbers.
    pub rest: String,
    /// 1-based line of the `domains:` header.
    pub header_line: usize,
    /// The block's entries, read again from the text by [`Block::entries`]: a million
    /// entries are not held as owned strings while the table is built.
    pub block: Block<'a>,
    /// Lines of the block (for the caller's parser budget).
    pub block_lines: usize,
    /// Bytes of the block.
    pub block_bytes: usize,
}

/// The checked text of a `domains:` block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Block<'a> {
    text: &'a str,
    first_line: usize,
    /// Number of entries, duplicates included.
    pub entries: usize,
    /// Bytes of the entries' keys, plus one per entry.
    pub key_bytes: usize,
}

impl<'a> Block<'a> {
    /// The block's entries in file order, duplicates included (as the full parser gives
    /// them): key, value and 1-based line.
    pub fn entries(self) -> impl Iterator<Item = (&'a str, &'a str, usize)> {
        (self.first_line..).zip(self.text.split('\n')).filter_map(
            |(line_no, line)| match parse_line(line) {
                Some(Line::Entry { key, value, .. }) => Some((key, value, line_no)),
                _ => None,
            },
        )
    }
}

/// Split `text` into the fast-parsed `domains:` block and the rest, or `None` when the file
/// has no such block or any line of it is outside the narrow grammar.
pub(crate) fn split(text: &str) -> Option<Split<'_>> {
    // Cheap rejections first: no header at all, or more than one.
    let header_at = find_header(text, 0)?;
    if find_header(text, header_at + HEADER.len()).is_some() {
        return None;
    }
    let before = &text[..header_at];
    let header_line = 1 + before.bytes().filter(|&b| b == b'\n').count();
    let after_header = &text[header_at + HEADER.len()..];
    // The header line must end right there.
    let body = after_header.strip_prefix('\n')?;

    let mut entries = 0usize;
    let mut key_bytes = 0usize;
    let mut indent: Option<usize> = None;
    let mut block_end = body.len();
    let mut block_lines = 0usize;
    let mut offset = 0usize;
    for line in body.split('\n') {
        let first = line.as_bytes().first().copied();
        if matches!(first, Some(b) if b != b' ' && b != b'#') {
            block_end = offset;
            break;
        }
        block_lines += 1;
        offset += line.len() + 1;
        match parse_line(line)? {
            Line::Blank => {}
            Line::Entry { indent: n, key, .. } => {
                if *indent.get_or_insert(n) != n {
                    return None;
                }
                entries += 1;
                key_bytes += key.len() + 1;
            }
        }
    }
    if entries == 0 {
        return None;
    }
    let block_end = block_end.min(body.len());
    let block = &body[..block_end];
    let tail = &body[block_end..];
    let mut rest =
        String::with_capacity(before.len() + REST_HEADER.len() + block_lines + tail.len() + 1);
    rest.push_str(before);
    rest.push_str(REST_HEADER);
    rest.push('\n');
    for _ in 0..block.bytes().filter(|&b| b == b'\n').count() {
        rest.push('\n');
    }
    rest.push_str(tail);
    Some(Split {
        rest,
        header_line,
        block: Block {
            text: block,
            first_line: header_line + 1,
            entries,
            key_bytes,
        },
        block_lines,
        block_bytes: block.len(),
    })
}

/// Byte offset of the next line that is exactly the header, from `from` (a line start or the
/// position right after an earlier header).
fn find_header(text: &str, from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(i) = text.get(at..)?.find(HEADER) {
        let pos = at + i;
        let at_line_start = pos == 0 || text.as_bytes().get(pos - 1) == Some(&b'\n');
        let end = pos + HEADER.len();
        let at_line_end = matches!(text.as_bytes().get(end), None | Some(b'\n'));
        if at_line_start && at_line_end {
            return Some(pos);
        }
        at = pos + 1;
    }
    None
}

enum Line<'a> {
    /// Empty, only spaces, or a comment.
    Blank,
    Entry {
        indent: usize,
        key: &'a str,
        value: &'a str,
    },
}

fn parse_line(line: &str) -> Option<Line<'_>> {
    // A `\r` is a line break to YAML, and the parser refuses non-printable characters even
    // in comments: any such line goes to the full parser.
    if !line
        .chars()
        .all(|c| (' '..='~').contains(&c) || (!c.is_ascii() && c.is_alphanumeric()))
    {
        return None;
    }
    let trimmed = line.trim_start_matches(' ');
    let indent = line.len() - trimmed.len();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Some(Line::Blank);
    }
    if indent == 0 {
        return None;
    }
    let (key, after_key) = scalar(trimmed, false)?;
    if key.len() > MAX_KEY_BYTES {
        return None;
    }
    let after_colon = after_key.strip_prefix(':')?;
    let value_start = after_colon.trim_start_matches(' ');
    if value_start.len() == after_colon.len() {
        // `key:value` is one plain scalar in YAML, and `key:` a null value.
        return None;
    }
    let (value, after_value) = scalar(value_start, true)?;
    let tail = after_value.trim_start_matches(' ');
    // Nothing more, or a comment after at least one space.
    let comment = tail.starts_with('#') && tail.len() < after_value.len();
    if !(tail.is_empty() || comment) {
        return None;
    }
    Some(Line::Entry { indent, key, value })
}

/// One scalar at the start of `s` and what follows it, or `None` outside the grammar.
fn scalar(s: &str, ascii_plain: bool) -> Option<(&str, &str)> {
    let quoted = |q: char| -> Option<(&str, &str)> {
        let inner = &s[1..];
        let end = inner.find(q)?;
        let content = &inner[..end];
        let ok = content.chars().all(|c| {
            if c.is_ascii() {
                // A backslash escapes only in double quotes.
                (' '..='~').contains(&c) && (c != '\\' || q == '\'')
            } else {
                c.is_alphanumeric()
            }
        });
        ok.then(|| (content, &inner[end + 1..]))
    };
    match s.chars().next()? {
        '"' => quoted('"'),
        '\'' => quoted('\''),
        first if first.is_alphanumeric() && (first.is_ascii() || !ascii_plain) => {
            let end = s
                .char_indices()
                .find(|&(_, c)| {
                    !(c.is_ascii_alphanumeric()
                        || matches!(c, '.' | '-' | '_')
                        || (!ascii_plain && !c.is_ascii() && c.is_alphanumeric()))
                })
                .map_or(s.len(), |(i, _)| i);
            let plain = &s[..end];
            if matches!(plain, "null" | "Null" | "NULL") {
                return None;
            }
            Some((plain, &s[end..]))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Option<Vec<(String, usize, String)>> {
        split(text).map(|s| {
            s.block
                .entries()
                .map(|(k, v, line)| (k.to_string(), line, v.to_string()))
                .collect()
        })
    }

    #[test]
    fn reads_the_block_with_lines_and_keeps_line_numbers() {
        let text = "backends:\n  m: {host: h, imap_port: 1}\ndomains:\n  a.example: m\n\n  # c\n# c0\n  \"*.w.example\": 'm' # why\n  'b.example':   \"m\"  \nusers: {}\n";
        let got = entries(text).expect("fast path");
        assert_eq!(
            got,
            vec![
                ("a.example".into(), 4, "m".into()),
                ("*.w.example".into(), 8, "m".into()),
                ("b.example".into(), 9, "m".into()),
            ]
        );
        let rest = split(text).expect("fast path").rest;
        assert_eq!(rest.lines().count(), text.lines().count());
        assert_eq!(rest.lines().nth(2), Some(REST_HEADER));
        assert_eq!(rest.lines().nth(9), Some("users: {}"));
        assert!(rest.lines().skip(3).take(6).all(str::is_empty));
    }

    #[test]
    fn anything_outside_the_grammar_falls_back() {
        for block in [
            "  a: &x m\n",
            "  a: *x\n",
            "  a: !t m\n",
            "  a: \"m\\x41\"\n",
            "  a: [m]\n",
            "  a: {m: 1}\n",
            "  ? a\n  : m\n",
            "  a:m\n",
            "  a:\n",
            "  a: m\n   b: m\n",
            "  a: m\n    more\n",
            "\ta: m\n",
            "  a: m\r\n",
            "  null: m\n",
            "  a: ~\n",
            "  a: m#x\n",
            "  a b: m\n",
            "  a: |\n    m\n",
            "  \"a: m\n",
            "  - a\n",
        ] {
            let text = format!("backends: {{}}\ndomains:\n{block}default: m\n");
            assert!(entries(&text).is_none(), "{block:?} took the fast path");
        }
        assert!(
            entries("domains: \n  a: m\n").is_none(),
            "header with a space"
        );
        assert!(
            entries("domains:\n  a: m\ndomains:\n  b: m\n").is_none(),
            "two headers"
        );
        assert!(
            entries("x:\n  domains:\n    a: m\n").is_none(),
            "not top level"
        );
    }
}
