//! Record ids: UUIDv7s, held as bytes.
//!
//! A run makes an id for every artifact and invocation — two or three per invocation —
//! with the uuid crate's generator (its `fast-rng` feature keeps the random bits off the
//! system-call path).
//!
//! Records hold ids as bytes, not text: `uuid_id!` defines the id types
//! (`ArtifactId`, `InvocationId`), and [`IdText`] is an id's text when it leaves the host
//! (WIT, SQLite, JSON, the terminal).

/// A new UUIDv7: time-ordered, and ordered within the process (uuid's shared v7 context
/// counts up within a millisecond). The `fast-rng` feature draws the random bits from a
/// seeded per-thread generator rather than a `getrandom` system call per id.
pub(crate) fn uuid_v7() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

/// Defines a record id type: a UUID held as its 16 bytes, not its text.
///
/// Every record names several ids (its own, its parents, its work item, an invocation's
/// inputs and outputs). As shared strings each was a 64-byte heap block, an atomic
/// reference count both workers touched on every clone, and a pointer to follow on every
/// hash-table comparison. These ids are `Copy`; they read, print, serialise and order as
/// their lower-case hyphenated text.
///
/// The UUID is kept as two big-endian halves, so it hashes as two words and orders as its
/// bytes do; the second half is never zero (a UUID's variant bits), which lets `Option` of
/// an id take no more room than the id.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name($crate::id::Uuid);

        impl $name {
            /// A fresh time-ordered id.
            pub fn generate() -> Self {
                Self($crate::id::Uuid::generate())
            }

            /// The id whose text is `text` (a hyphenated UUID), or `None` if `text` is not
            /// one: no record has such an id.
            pub fn parse(text: &str) -> Option<Self> {
                $crate::id::Uuid::parse(text).map(Self)
            }

            /// The id's text: lower-case hyphenated, as stored and shown everywhere.
            #[inline]
            pub fn text(&self) -> $crate::id::IdText {
                $crate::id::IdText::new(&self.0.bytes())
            }

            /// A fixed id named by a short label, for tests: one label, one id; ids order
            /// as their labels do.
            #[cfg(test)]
            pub(crate) fn named(label: &str) -> Self {
                Self($crate::id::Uuid::named(label))
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::id::BadId;
            fn from_str(text: &str) -> Result<Self, $crate::id::BadId> {
                Self::parse(text).ok_or_else(|| $crate::id::BadId::new($what, text))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.text())
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(&*self.text(), f)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.text())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use uuid_id;

/// A UUID as two big-endian halves, the second never zero: what `uuid_id!` types hold.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Uuid {
    high: u64,
    low: std::num::NonZeroU64,
}

impl Uuid {
    /// A fresh UUIDv7.
    pub(crate) fn generate() -> Self {
        // A v7 UUID's variant bits make its second half non-zero, so this is always `Some`.
        Self::from_bytes(uuid_v7().into_bytes()).unwrap_or(Self {
            high: 0,
            low: std::num::NonZeroU64::MIN,
        })
    }

    /// The UUID whose hyphenated text is `text`, if it is one with a non-zero second half
    /// (every UUID with the standard variant; not the nil UUID).
    pub(crate) fn parse(text: &str) -> Option<Self> {
        if text.len() != uuid::fmt::Hyphenated::LENGTH {
            return None;
        }
        Self::from_bytes(uuid::Uuid::try_parse(text).ok()?.into_bytes())
    }

    fn from_bytes(bytes: [u8; 16]) -> Option<Self> {
        let (high, low) = bytes.split_at(8);
        Some(Self {
            high: u64::from_be_bytes(high.try_into().ok()?),
            low: std::num::NonZeroU64::new(u64::from_be_bytes(low.try_into().ok()?))?,
        })
    }

    /// The UUID's 16 bytes.
    pub(crate) fn bytes(&self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.high.to_be_bytes());
        bytes[8..].copy_from_slice(&self.low.get().to_be_bytes());
        bytes
    }

    /// A fixed UUID named by a label of up to 15 bytes, for tests; UUIDs order as their
    /// labels do.
    #[cfg(test)]
    pub(crate) fn named(label: &str) -> Self {
        let mut bytes = [0u8; 16];
        for (b, c) in bytes.iter_mut().zip(label.bytes().take(15)) {
            *b = c;
        }
        bytes[15] = 1;
        Self::from_bytes(bytes).unwrap_or_else(Self::generate)
    }
}

/// An id's text, on the stack: dereferences to `&str`.
#[derive(Clone, Copy)]
pub struct IdText([u8; uuid::fmt::Hyphenated::LENGTH]);

impl IdText {
    /// Made for every id an invocation's inputs and context carry into WIT, so it is
    /// written directly rather than through `uuid`'s formatter and a UTF-8 check.
    #[inline]
    pub(crate) fn new(bytes: &[u8; 16]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [b'-'; uuid::fmt::Hyphenated::LENGTH];
        let mut at = 0;
        for (i, byte) in bytes.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                at += 1; // the hyphen already there
            }
            buf[at] = HEX[usize::from(byte >> 4)];
            buf[at + 1] = HEX[usize::from(byte & 0xf)];
            at += 2;
        }
        IdText(buf)
    }
}

impl std::ops::Deref for IdText {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        // SAFETY: `IdText::new` is the only constructor, and it writes nothing but ASCII
        // hex digits and hyphens: valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
}

impl std::fmt::Display for IdText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

/// Text that is not a record id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not {what} (a hyphenated UUID)")]
pub struct BadId {
    what: &'static str,
    text: String,
}

impl BadId {
    pub(crate) fn new(what: &'static str, text: &str) -> Self {
        Self {
            what,
            text: text.chars().take(64).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_version_7_unique_and_ordered_within_a_thread() {
        let ids: Vec<String> = (0..20_000).map(|_| uuid_v7().to_string()).collect();
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids, "a thread's ids sort in the order it made them");
        let parsed = uuid::Uuid::parse_str(&ids[0]).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 7);
        let ms = parsed
            .get_timestamp()
            .expect("v7 has a timestamp")
            .to_unix();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        assert!(ms.0.abs_diff(now) <= 1, "the timestamp is now");
    }

    #[test]
    fn threads_make_different_ids() {
        let a: HashSet<uuid::Uuid> = std::thread::spawn(|| (0..1000).map(|_| uuid_v7()).collect())
            .join()
            .expect("thread");
        let b: HashSet<uuid::Uuid> = (0..1000).map(|_| uuid_v7()).collect();
        assert!(a.is_disjoint(&b));
    }
}
