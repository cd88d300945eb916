//! [`Name`]: a shared, immutable string for the names and ids every record repeats.
//!
//! A run keeps every artifact, invocation and work item, and each of them names its
//! workflow, type, producer, agent or phase. As `String`s those were one heap copy per
//! field per record — a 36-character workflow id alone cost ~60 bytes in every record —
//! and every clone on the hot path copied them again. A `Name` is a reference-counted
//! string behind one pointer (`arcstr::ArcStr`: the count and length live with the text):
//! a clone is a reference count, and names made from the same text on one thread share
//! one allocation (a small per-thread intern table, so no lock is taken). It compares,
//! hashes and prints as its text, so it stands in for `String` wherever a record field
//! did. One pointer rather than `Arc<str>`'s two words: every artifact names three and
//! every invocation and work item two or three, and 8 bytes a name moves records into
//! smaller allocator size classes (an invocation 128 → 112 bytes, a work item 104 → 80).

use arcstr::ArcStr;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// Longest text worth interning: names are short; payload-sized text is not a name.
const INTERN_MAX_LEN: usize = 64;
/// Distinct names a thread keeps before it forgets them all (bounds a long-lived thread
/// that sees many workflow ids; forgetting only costs sharing, never correctness).
const INTERN_CAPACITY: usize = 4096;

thread_local! {
    // foldhash, not SipHash: names are interned on the run loop's hot path.
    static INTERNED: RefCell<HashSet<ArcStr, foldhash::fast::RandomState>> =
        RefCell::new(HashSet::default());
}

/// A shared immutable string: an agent, type, phase or workflow name, or a record's id.
#[derive(Clone, PartialOrd, Ord)]
pub struct Name(ArcStr);

impl Name {
    /// A name for `text`, shared with earlier names of the same text made on this thread.
    pub fn new(text: &str) -> Self {
        if text.len() > INTERN_MAX_LEN {
            return Self(ArcStr::from(text));
        }
        INTERNED.with(|set| {
            let mut set = set.borrow_mut();
            if let Some(found) = set.get(text) {
                return Self(found.clone());
            }
            if set.len() >= INTERN_CAPACITY {
                set.clear();
            }
            let shared = ArcStr::from(text);
            set.insert(shared.clone());
            Self(shared)
        })
    }

    /// A name that is not interned: a fresh id nothing else will share.
    pub fn unique(text: String) -> Self {
        Self(ArcStr::from(text))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Name {
    fn default() -> Self {
        Self::new("")
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        ArcStr::ptr_eq(&self.0, &other.0) || *self.0 == *other.0
    }
}

impl Eq for Name {}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, so a map keyed by `Name` can be searched with a `&str`.
        (*self.0).hash(state)
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        *self == *other.0
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        **self == *other.0
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        **self == *other.0
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Name {
    fn from(s: String) -> Self {
        Self::new(&s)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(Self::new(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn names_of_the_same_text_share_one_allocation_and_compare_as_text() {
        let a = Name::new("implementer");
        let b = Name::from(String::from("implementer"));
        assert!(ArcStr::ptr_eq(&a.0, &b.0), "interned on this thread");
        assert_eq!(a, b);
        assert_eq!(a, "implementer");
        assert_eq!("implementer", a);
        assert_ne!(a, Name::new("validator"));
        // Made on another thread: not shared, still equal.
        let c = std::thread::spawn(|| Name::new("implementer"))
            .join()
            .expect("thread");
        assert!(!ArcStr::ptr_eq(&a.0, &c.0));
        assert_eq!(a, c);
        // Searchable by `&str` in a map keyed by `Name`.
        let map: HashMap<Name, u32> = [(c, 7)].into_iter().collect();
        assert_eq!(map.get("implementer"), Some(&7));
    }

    #[test]
    fn long_texts_and_unique_ids_are_not_interned() {
        let long = "x".repeat(INTERN_MAX_LEN + 1);
        assert!(!ArcStr::ptr_eq(&Name::new(&long).0, &Name::new(&long).0));
        let id = Name::unique("0190-abc".into());
        assert!(!ArcStr::ptr_eq(&id.0, &Name::new("0190-abc").0));
        assert_eq!(id, Name::new("0190-abc"));
    }

    #[test]
    fn a_name_serialises_as_its_text() {
        let n = Name::new("analysis");
        let json = serde_json::to_string(&n).expect("serialise");
        assert_eq!(json, "\"analysis\"");
        let back: Name = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, n);
    }
}
