//! A string-keyed map sized for a million domains: every key lives in one byte arena, in
//! insertion (file) order, as a record `[length: u8][backend: u32 LE][key bytes]`, and the
//! hash table holds 8-byte slots (the record's offset, the line and the `has_users` bit)
//! instead of a heap allocation and a fat pointer per key. A lookup is one probe of the
//! table and one read of the arena (key and backend in the same cache line). Walking the
//! arena gives the keys in file order, which lets the diff of two tables built from nearly
//! the same file compare them side by side instead of probing a million keys
//! ([`KeyMap::records`]). The hasher is std's `RandomState`, seeded per process: a hoster's
//! customers choose their domain names, so the keys are not trusted to be collision-free.
//!
//! Keys are normalised names (domains ≤ 253 bytes, addresses ≤ 254): a key over 255 bytes is
//! refused by [`KeyMap::insert`], never truncated.

use std::fmt;
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;
use hashbrown::hash_table::Entry as TableEntry;

/// A map entry: backend index and the line it was defined on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub backend: u32,
    pub line: u32,
    /// Some `users:` override names this domain (checked only then: one hash lookup for
    /// the common case).
    pub has_users: bool,
}

/// The slot of one key in the hash table (8 bytes).
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Offset of the key's record in the arena.
    off: u32,
    /// The line in the low 31 bits, `has_users` in the top bit.
    line_flags: u32,
}

const HAS_USERS: u32 = 1 << 31;
/// Length byte and backend index before the key bytes.
const HEAD: usize = 5;

/// One record of the arena, read in place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record<'a> {
    /// Offset of the record (what [`KeyMap::offset_of`] gives).
    pub off: u32,
    /// The key's bytes.
    pub key: &'a [u8],
    /// The backend index.
    pub backend: u32,
}

impl Record<'_> {
    /// The key as text (keys go in as `&str`; an impossible invalid one reads as empty).
    pub fn key_str(&self) -> &str {
        std::str::from_utf8(self.key).unwrap_or_default()
    }
}

/// The record at `off`, and where the next one starts.
fn record_at(arena: &[u8], off: u32) -> Option<(Record<'_>, u32)> {
    let at = off as usize;
    let head = arena.get(at..at + HEAD)?;
    let len = head[0] as usize;
    let backend = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
    let key = arena.get(at + HEAD..at + HEAD + len)?;
    let next = u32::try_from(at + HEAD + len).ok()?;
    Some((Record { off, key, backend }, next))
}

fn key_at(arena: &[u8], off: u32) -> &[u8] {
    record_at(arena, off).map_or(&[], |(r, _)| r.key)
}

/// Why a key was not inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The key is there already, with this entry.
    Duplicate(Entry),
    /// Longer than 255 bytes, or the arena would pass 4 GiB, or a line past 2^31.
    TooBig,
}

/// Keys → [`Entry`], compact.
pub(crate) struct KeyMap {
    arena: Vec<u8>,
    table: HashTable<Slot>,
    hasher: RandomState,
}

impl Default for KeyMap {
    fn default() -> Self {
        Self::with_capacity(0, 0)
    }
}

impl KeyMap {
    /// Room for `keys` keys of `bytes` bytes in all without growing.
    pub fn with_capacity(keys: usize, bytes: usize) -> Self {
        KeyMap {
            arena: Vec::with_capacity(bytes + keys * (HEAD - 1)),
            table: HashTable::with_capacity(keys),
            hasher: RandomState::new(),
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    fn find(&self, key: &str) -> Option<&Slot> {
        let hash = self.hasher.hash_one(key);
        let arena = &self.arena;
        self.table
            .find(hash, |s| key_at(arena, s.off) == key.as_bytes())
    }

    fn entry(&self, slot: &Slot) -> Entry {
        Entry {
            backend: record_at(&self.arena, slot.off).map_or(u32::MAX, |(r, _)| r.backend),
            line: slot.line_flags & !HAS_USERS,
            has_users: slot.line_flags & HAS_USERS != 0,
        }
    }

    /// The entry of `key`.
    pub fn get(&self, key: &str) -> Option<Entry> {
        self.find(key).map(|s| self.entry(s))
    }

    /// The offset of `key`'s record.
    pub fn offset_of(&self, key: &[u8]) -> Option<u32> {
        let key = std::str::from_utf8(key).ok()?;
        self.find(key).map(|s| s.off)
    }

    /// The record at `off` and the offset of the next one.
    pub fn record(&self, off: u32) -> Option<(Record<'_>, u32)> {
        record_at(&self.arena, off)
    }

    /// Every record from `from` on, in insertion order (`from`: 0 or an offset
    /// [`Record::off`] or [`KeyMap::offset_of`] gave).
    pub fn records(&self, from: u32) -> impl Iterator<Item = Record<'_>> + '_ {
        let mut at = Some(from);
        std::iter::from_fn(move || {
            let (r, next) = record_at(&self.arena, at?)?;
            at = Some(next);
            Some(r)
        })
    }

    /// Whether `key` is there.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_some()
    }

    /// Add `key`; a key already there keeps its first entry.
    pub fn insert(&mut self, key: &str, entry: Entry) -> Result<(), Refused> {
        let len = u8::try_from(key.len()).map_err(|_| Refused::TooBig)?;
        let off = u32::try_from(self.arena.len()).map_err(|_| Refused::TooBig)?;
        if u32::try_from(self.arena.len() + 1 + key.len()).is_err() || entry.line & HAS_USERS != 0 {
            return Err(Refused::TooBig);
        }
        let hash = self.hasher.hash_one(key);
        let (arena, hasher) = (&self.arena, &self.hasher);
        match self.table.entry(
            hash,
            |s| key_at(arena, s.off) == key.as_bytes(),
            |s| hasher.hash_one(key_str(arena, s.off)),
        ) {
            TableEntry::Occupied(o) => {
                let first = *o.get();
                Err(Refused::Duplicate(self.entry(&first)))
            }
            TableEntry::Vacant(v) => {
                v.insert(Slot {
                    off,
                    line_flags: entry.line | if entry.has_users { HAS_USERS } else { 0 },
                });
                self.arena.push(len);
                self.arena.extend_from_slice(&entry.backend.to_le_bytes());
                self.arena.extend_from_slice(key.as_bytes());
                Ok(())
            }
        }
    }

    /// Mark `key` as named by a user override; `false` when it is not there.
    pub fn set_has_users(&mut self, key: &str) -> bool {
        let hash = self.hasher.hash_one(key);
        let arena = &self.arena;
        match self
            .table
            .find_mut(hash, |s| key_at(arena, s.off) == key.as_bytes())
        {
            Some(s) => {
                s.line_flags |= HAS_USERS;
                true
            }
            None => false,
        }
    }

    /// Give back what the arena reserved beyond its keys.
    pub fn shrink_arena(&mut self) {
        self.arena.shrink_to_fit();
    }

    /// Every key and its entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Entry)> + '_ {
        self.table
            .iter()
            .map(|s| (key_str(&self.arena, s.off), self.entry(s)))
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.iter().map(|(k, _)| k)
    }
}

/// The key at `off` as text. Keys go in as `&str`, so they come out whole; an impossible
/// invalid slice reads as the empty key rather than panicking.
fn key_str(arena: &[u8], off: u32) -> &str {
    std::str::from_utf8(key_at(arena, off)).unwrap_or_default()
}

impl PartialEq for KeyMap {
    /// The same keys with the same entries (the seeds and the order may differ).
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, e)| other.get(k) == Some(e))
    }
}

impl Eq for KeyMap {}

impl fmt::Debug for KeyMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len() <= 16 {
            f.debug_map().entries(self.iter()).finish()
        } else {
            f.debug_struct("KeyMap")
                .field("keys", &self.len())
                .field("arena_bytes", &self.arena.len())
                .finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(backend: u32, line: u32) -> Entry {
        Entry {
            backend,
            line,
            has_users: false,
        }
    }

    #[test]
    fn inserts_finds_and_refuses_duplicates() {
        let mut m = KeyMap::with_capacity(2, 10);
        assert_eq!(m.insert("a.example", e(1, 3)), Ok(()));
        assert_eq!(m.insert("", e(2, 4)), Ok(()));
        assert_eq!(
            m.insert("a.example", e(5, 9)),
            Err(Refused::Duplicate(e(1, 3)))
        );
        assert_eq!(m.get("a.example"), Some(e(1, 3)));
        assert_eq!(m.get(""), Some(e(2, 4)));
        assert_eq!(m.get("a.exampl"), None);
        assert_eq!(m.get("a.example."), None);
        assert!(m.set_has_users("a.example"));
        assert!(!m.set_has_users("b.example"));
        assert!(
            m.get("a.example")
                .is_some_and(|x| x.has_users && x.line == 3)
        );
        assert_eq!(m.len(), 2);
        // Growing past the reserved room rehashes from the arena.
        for i in 0..1000 {
            assert_eq!(m.insert(&format!("d{i}.example"), e(i, i)), Ok(()));
        }
        assert!((0..1000).all(|i| m.get(&format!("d{i}.example")) == Some(e(i, i))));
        assert_eq!(m.keys().count(), 1002);
    }

    #[test]
    fn refuses_what_it_cannot_hold() {
        let mut m = KeyMap::default();
        assert_eq!(m.insert(&"x".repeat(256), e(0, 1)), Err(Refused::TooBig));
        assert_eq!(m.insert(&"x".repeat(255), e(0, 1)), Ok(()));
        assert_eq!(m.insert("y", e(0, HAS_USERS)), Err(Refused::TooBig));
        assert_eq!(m.len(), 1);
    }

    proptest::proptest! {
        /// Inserts, duplicates and `has_users` marks as a `HashMap` model does them.
        #[test]
        fn answers_as_a_hashmap(ops in proptest::collection::vec(
            (proptest::bool::ANY, "[ab.]{0,6}", 0u32..4), 0..200)
        ) {
            let mut m = KeyMap::with_capacity(4, 8);
            let mut model: std::collections::HashMap<String, Entry> = Default::default();
            for (i, (mark, key, backend)) in ops.iter().enumerate() {
                if *mark {
                    let there = model.get_mut(key).map(|e| e.has_users = true).is_some();
                    proptest::prop_assert_eq!(m.set_has_users(key), there);
                } else {
                    let entry = e(*backend, i as u32);
                    let want = match model.get(key) {
                        Some(first) => Err(Refused::Duplicate(*first)),
                        None => {
                            model.insert(key.clone(), entry);
                            Ok(())
                        }
                    };
                    proptest::prop_assert_eq!(m.insert(key, entry), want);
                }
            }
            proptest::prop_assert_eq!(m.len(), model.len());
            for (k, v) in &model {
                proptest::prop_assert_eq!(m.get(k), Some(*v));
            }
            let mut keys: Vec<&str> = m.keys().collect();
            keys.sort_unstable();
            let mut want: Vec<&str> = model.keys().map(String::as_str).collect();
            want.sort_unstable();
            proptest::prop_assert_eq!(keys, want);
        }
    }
}
