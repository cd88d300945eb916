//! [`ById`]: records in the order they were stored, found by the id each one holds.
//!
//! The in-memory store keeps every artifact, invocation and work item of a run, found by
//! id and listed in the order stored. It kept a `HashMap<Id, Box<Record>>` beside a list
//! of ids per workflow: per record, a 24-byte slot holding a copy of the id the record
//! already holds, and 16 more bytes for the id in the list. Here the records themselves
//! are the list (a pointer each) and the hash table holds only their positions (4 bytes);
//! a lookup compares the id inside the record, which it reads anyway once found (the
//! table's control bytes rule nearly every other slot out before a record is touched).

use std::hash::{BuildHasher, Hash};
use std::ops::Deref;

/// A record that carries its own key.
pub(crate) trait Keyed {
    /// The key's type.
    type Key: Eq + Hash;
    /// The record's key. Must never change while the record is in a [`ById`].
    fn key(&self) -> &Self::Key;
}

/// Pointers (`Box<T>`, `Arc<T>`) to records in the order first stored, found by
/// [`Keyed::key`].
pub(crate) struct ById<P> {
    records: Vec<P>,
    table: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

impl<P> Default for ById<P> {
    fn default() -> Self {
        Self {
            records: Vec::new(),
            table: hashbrown::HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl<P> ById<P>
where
    P: Deref,
    P::Target: Keyed,
{
    fn position(&self, key: &<P::Target as Keyed>::Key) -> Option<usize> {
        let records = &self.records;
        self.table
            .find(self.hasher.hash_one(key), |&i| {
                records[i as usize].key() == key
            })
            .map(|&i| i as usize)
    }

    /// The record under `key`.
    pub(super) fn get(&self, key: &<P::Target as Keyed>::Key) -> Option<&P> {
        self.position(key).map(|i| &self.records[i])
    }

    /// The record under `key`, to change anything but its key.
    pub(super) fn get_mut(&mut self, key: &<P::Target as Keyed>::Key) -> Option<&mut P> {
        self.position(key).map(|i| &mut self.records[i])
    }

    /// Whether a record is under `key`.
    pub(super) fn contains_key(&self, key: &<P::Target as Keyed>::Key) -> bool {
        self.position(key).is_some()
    }

    /// Store `record`: in the place of the one with the same key (returned), or last.
    pub(super) fn insert(&mut self, record: P) -> Option<P> {
        let hash = self.hasher.hash_one(record.key());
        let (records, hasher) = (&self.records, &self.hasher);
        match self.table.entry(
            hash,
            |&i| records[i as usize].key() == record.key(),
            |&i| hasher.hash_one(records[i as usize].key()),
        ) {
            hashbrown::hash_table::Entry::Occupied(e) => {
                let i = *e.get() as usize;
                Some(std::mem::replace(&mut self.records[i], record))
            }
            hashbrown::hash_table::Entry::Vacant(e) => {
                let i = u32::try_from(records.len()).expect("fewer than 2^32 records");
                e.insert(i);
                self.records.push(record);
                None
            }
        }
    }

    /// The records, in the order first stored.
    pub(super) fn iter(&self) -> std::slice::Iter<'_, P> {
        self.records.iter()
    }

    /// The same, to change anything but their keys.
    pub(super) fn iter_mut(&mut self) -> std::slice::IterMut<'_, P> {
        self.records.iter_mut()
    }

    /// Keep only the records `keep` says to, in the same order (positions and the table
    /// are rebuilt; the memory of the records dropped is given back).
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&P::Target) -> bool) {
        self.records.retain(|r| keep(r));
        self.records.shrink_to_fit();
        let (records, hasher) = (&self.records, &self.hasher);
        let mut table = hashbrown::HashTable::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let i = u32::try_from(i).expect("fewer than 2^32 records");
            table.insert_unique(hasher.hash_one(r.key()), i, |&j| {
                hasher.hash_one(records[j as usize].key())
            });
        }
        self.table = table;
    }

    /// Records stored.
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Rec {
        id: u64,
        value: &'static str,
    }

    impl Keyed for Rec {
        type Key = u64;
        fn key(&self) -> &u64 {
            &self.id
        }
    }

    #[test]
    fn records_are_found_replaced_and_changed_by_their_own_key() {
        let mut t: ById<Box<Rec>> = ById::default();
        for id in 0..10_000 {
            assert!(t.insert(Box::new(Rec { id, value: "first" })).is_none());
        }
        assert_eq!(t.len(), 10_000);
        assert!(t.contains_key(&9_999) && !t.contains_key(&10_000));
        let old = t.insert(Box::new(Rec {
            id: 42,
            value: "second",
        }));
        assert_eq!(old.map(|r| r.value), Some("first"));
        assert_eq!(t.len(), 10_000, "replaced, not added");
        if let Some(r) = t.get_mut(&7) {
            r.value = "changed";
        }
        assert_eq!(t.get(&7).map(|r| r.value), Some("changed"));
        assert_eq!(t.get(&42).map(|r| r.value), Some("second"));
        assert!(t.get(&10_001).is_none());
    }

    #[test]
    fn records_are_listed_in_the_order_first_stored_and_a_replacement_keeps_its_place() {
        let mut t: ById<Box<Rec>> = ById::default();
        for id in [5, 3, 9, 1] {
            t.insert(Box::new(Rec { id, value: "a" }));
        }
        t.insert(Box::new(Rec { id: 3, value: "b" }));
        let listed: Vec<(u64, &str)> = t.iter().map(|r| (r.id, r.value)).collect();
        assert_eq!(listed, [(5, "a"), (3, "b"), (9, "a"), (1, "a")]);
        for r in t.iter_mut() {
            r.value = "c";
        }
        assert_eq!(t.get(&9).map(|r| r.value), Some("c"));
    }

    #[test]
    fn records_retained_keep_their_order_and_are_found_and_the_others_are_gone() {
        let mut t: ById<Box<Rec>> = ById::default();
        for id in 0..1_000 {
            t.insert(Box::new(Rec { id, value: "a" }));
        }
        t.retain(|r| r.id % 3 == 0);
        assert_eq!(t.len(), 334);
        assert!(t.iter().map(|r| r.id).eq((0..1_000).filter(|i| i % 3 == 0)));
        assert!(t.contains_key(&999) && !t.contains_key(&998));
        assert_eq!(t.get(&300).map(|r| r.id), Some(300));
        // Inserting after a retain appends and is found.
        assert!(t.insert(Box::new(Rec { id: 1, value: "b" })).is_none());
        assert_eq!(t.iter().last().map(|r| r.id), Some(1));
        assert_eq!(t.get(&1).map(|r| r.value), Some("b"));
    }
}
