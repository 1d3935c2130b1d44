//! [`Table`]: the engine's per-user maps as one vector sorted by key, searched by bisection.
//!
//! A hash map of 250,000 users grows to 524,288 buckets (its capacity doubles, and it stays
//! at most 7/8 full), so it costs about twice its entries; a sorted vector costs its entries
//! alone. A lookup is about 18 comparisons at 250,000 users, each on the key's first eight
//! bytes kept in the entry (the key's text is read only when they are equal: no pointer
//! chased per step). Users are added in bulk ([`Table::extend`], one sort), never one by one
//! in the middle.

use std::sync::Arc;

/// Entries sorted by key, keys unique.
#[derive(Debug, Clone)]
pub(crate) struct Table<V> {
    entries: Vec<Entry<V>>,
}

#[derive(Debug, Clone)]
struct Entry<V> {
    /// [`prefix`] of the key.
    prefix: u64,
    key: Arc<str>,
    value: V,
}

/// The first eight bytes of `key`, big-endian, zero-padded: if `prefix(a) < prefix(b)` then
/// `a < b`, so the prefixes order the keys except between equal prefixes.
fn prefix(key: &str) -> u64 {
    let mut bytes = [0u8; 8];
    for (b, k) in bytes.iter_mut().zip(key.bytes()) {
        *b = k;
    }
    u64::from_be_bytes(bytes)
}

impl<V> Entry<V> {
    fn new((key, value): (Arc<str>, V)) -> Entry<V> {
        Entry {
            prefix: prefix(&key),
            key,
            value,
        }
    }

    fn order(&self, prefix: u64, key: &str) -> std::cmp::Ordering {
        self.prefix.cmp(&prefix).then_with(|| (*self.key).cmp(key))
    }
}

impl<V> Default for Table<V> {
    fn default() -> Table<V> {
        Table {
            entries: Vec::new(),
        }
    }
}

impl<V> Table<V> {
    /// A table of `entries` already sorted by key, keys unique (checked in debug builds).
    pub(crate) fn from_sorted(entries: Vec<(Arc<str>, V)>) -> Table<V> {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
        Table {
            entries: entries.into_iter().map(Entry::new).collect(),
        }
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        let p = prefix(key);
        self.entries.binary_search_by(|e| e.order(p, key))
    }

    pub(crate) fn get(&self, key: &str) -> Option<&V> {
        let at = self.position(key).ok()?;
        self.entries.get(at).map(|e| &e.value)
    }

    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        let at = self.position(key).ok()?;
        self.entries.get_mut(at).map(|e| &mut e.value)
    }

    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    /// Adds the entries (in any order); a key already in the table, or repeated among them,
    /// takes the value that comes last. One sort for the whole lot.
    pub(crate) fn extend(&mut self, more: Vec<(Arc<str>, V)>) {
        if more.is_empty() {
            return;
        }
        let mut more: Vec<Entry<V>> = more.into_iter().map(Entry::new).collect();
        // Stable: of equal keys, the table's entry comes before the new ones, in their order.
        let by_key = |a: &Entry<V>, b: &Entry<V>| a.order(b.prefix, &b.key);
        more.sort_by(by_key);
        if self.entries.is_empty() {
            self.entries = more;
        } else {
            self.entries.reserve_exact(more.len());
            self.entries.append(&mut more);
            self.entries.sort_by(by_key);
        }
        // `later` is dropped; `kept` takes its value.
        self.entries.dedup_by(|later, kept| {
            let same = later.key == kept.key;
            if same {
                std::mem::swap(&mut later.value, &mut kept.value);
            }
            same
        });
        self.entries.shrink_to_fit();
    }

    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        self.entries.retain(|e| keep(&e.value));
        self.entries.shrink_to_fit();
    }

    pub(crate) fn clear(&mut self) {
        self.entries = Vec::new();
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &V)> {
        self.entries.iter().map(|e| (&e.key, &e.value))
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&Arc<str>, &mut V)> {
        self.entries.iter_mut().map(|e| (&e.key, &mut e.value))
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|e| &e.value)
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.iter_mut().map(|e| &mut e.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, u32)]) -> Table<u32> {
        let mut t = Table::default();
        t.extend(entries.iter().map(|(k, v)| (Arc::from(*k), *v)).collect());
        t
    }

    #[test]
    fn found_by_bisection_whatever_the_order_added() {
        let mut t = table(&[("1003", 3), ("1001", 1)]);
        t.extend(vec![(Arc::from("1002"), 2), (Arc::from("1000"), 0)]);
        let keys: Vec<&str> = t.iter().map(|(k, _)| &**k).collect();
        assert_eq!(keys, ["1000", "1001", "1002", "1003"]);
        assert_eq!(t.get("1002"), Some(&2));
        assert_eq!(t.get("1004"), None);
        assert!(t.contains_key("1000") && !t.contains_key("999"));
        *t.get_mut("1001").unwrap() = 11;
        assert_eq!(t.get("1001"), Some(&11));
    }

    #[test]
    fn keys_sharing_their_first_eight_bytes_or_shorter_are_told_apart() {
        let keys = [
            "",
            "1",
            "10",
            "100000000",
            "100000001",
            "10000000",
            "1000000\u{0}",
            "2",
        ];
        let t = table(
            &keys
                .iter()
                .map(|k| (*k, k.len() as u32))
                .collect::<Vec<_>>(),
        );
        let mut sorted = keys.to_vec();
        sorted.sort_unstable();
        assert_eq!(t.iter().map(|(k, _)| &**k).collect::<Vec<_>>(), sorted);
        for k in keys {
            assert_eq!(t.get(k), Some(&(k.len() as u32)), "{k:?}");
        }
        assert_eq!(t.get("100000002"), None);
    }

    #[test]
    fn the_last_value_of_a_key_wins() {
        let mut t = table(&[("a", 1), ("b", 2), ("a", 3)]);
        assert_eq!((t.iter().count(), t.get("a")), (2, Some(&3)));
        t.extend(vec![(Arc::from("b"), 4), (Arc::from("b"), 5)]);
        assert_eq!((t.iter().count(), t.get("b")), (2, Some(&5)));
    }

    #[test]
    fn retain_keeps_the_order_and_clear_empties() {
        let mut t = table(&[("c", 3), ("a", 1), ("b", 2)]);
        t.retain(|v| *v != 2);
        assert_eq!(t.values().copied().collect::<Vec<_>>(), [1, 3]);
        for v in t.values_mut() {
            *v += 1;
        }
        assert_eq!(t.get("c"), Some(&4));
        t.clear();
        assert_eq!(t.iter().count(), 0);
    }
}
