//! [`ById`]: a table of boxed records found by the id each record holds.
//!
//! The in-memory store keeps every artifact, invocation and work item of a run in a hash
//! table by id. As a `HashMap<Id, Box<Record>>` each slot holds the 16-byte id beside the
//! 8-byte pointer, a copy of what the record already holds: 24 bytes a slot, 1.5 MB for
//! the cascade's 49,920 artifacts (65,536 slots) and as much again for its invocations.
//! A slot here is only the pointer; a lookup compares the id inside the record, which it
//! reads anyway once found (the table's control bytes rule nearly every other slot out
//! before any record is touched).

use std::hash::{BuildHasher, Hash};
use std::ops::Deref;

/// A record that carries its own key.
pub(crate) trait Keyed {
    /// The key's type.
    type Key: Eq + Hash;
    /// The record's key. Must never change while the record is in a [`ById`].
    fn key(&self) -> &Self::Key;
}

/// A hash table of pointers (`Box<T>`, `Arc<T>`) to records, found by [`Keyed::key`].
pub(crate) struct ById<P> {
    table: hashbrown::HashTable<P>,
    hasher: foldhash::fast::RandomState,
}

impl<P> Default for ById<P> {
    fn default() -> Self {
        Self {
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
    fn hash(&self, key: &<P::Target as Keyed>::Key) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The record under `key`.
    pub fn get(&self, key: &<P::Target as Keyed>::Key) -> Option<&P> {
        self.table.find(self.hash(key), |p| p.key() == key)
    }

    /// The record under `key`, to change anything but its key.
    pub fn get_mut(&mut self, key: &<P::Target as Keyed>::Key) -> Option<&mut P> {
        let hash = self.hash(key);
        self.table.find_mut(hash, |p| p.key() == key)
    }

    /// Whether a record is under `key`.
    pub fn contains_key(&self, key: &<P::Target as Keyed>::Key) -> bool {
        self.get(key).is_some()
    }

    /// Store `record`, returning the one it replaces (the one with the same key).
    pub fn insert(&mut self, record: P) -> Option<P> {
        let hash = self.hash(record.key());
        let hasher = &self.hasher;
        match self.table.entry(
            hash,
            |p| p.key() == record.key(),
            |p| hasher.hash_one(p.key()),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut e) => {
                Some(std::mem::replace(e.get_mut(), record))
            }
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(record);
                None
            }
        }
    }

    /// Records stored.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.table.len()
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
}
