//! Artifacts: the immutable, typed records agents exchange through the blackboard.
//!
//! An artifact's payload is JSON validated against its type's schema before it is stored
//! (see [`crate::schema`]); everything else (id, producer, causality, depth) is assigned
//! by the host, never by a plugin, so provenance cannot be forged from inside a sandbox.

use crate::name::Name;
use once_cell::race::OnceBox;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

crate::id::uuid_id! {
    /// An artifact's id: a UUIDv7, time-ordered to the millisecond, and within one thread
    /// in the order made (see [`crate::id`]). The store keeps exact publish order itself;
    /// ids only approximate it.
    ArtifactId, "an artifact id"
}

/// Who may see an artifact. Enforced by the host on everything that reaches a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Visibility {
    /// Everyone in the workflow.
    #[default]
    Public,
    /// Only the named agents (and the producer).
    Private(Box<[String]>),
    /// Agents holding at least one of these labels.
    Labels(Box<[String]>),
    /// Agents of this tenant.
    Tenant(String),
}

/// The identity a visibility check is made for.
#[derive(Debug, Clone, Default)]
pub struct Viewer<'a> {
    /// The agent's name.
    pub name: &'a str,
    /// Labels granted to the agent in the manifest.
    pub labels: &'a [String],
    /// The agent's tenant, if any.
    pub tenant: Option<&'a str>,
    /// The operator (`murmur status`, `graph`): sees everything. Never a plugin.
    pub operator: bool,
}

impl Viewer<'static> {
    /// The operator's view: every artifact, whatever its visibility.
    pub fn operator() -> Self {
        Viewer {
            name: "",
            labels: &[],
            tenant: None,
            operator: true,
        }
    }
}

impl Visibility {
    /// Whether `viewer` may see an artifact with this visibility produced by `producer`.
    pub fn allows(&self, producer: &str, viewer: &Viewer<'_>) -> bool {
        if viewer.operator || producer == viewer.name {
            return true;
        }
        match self {
            Visibility::Public => true,
            Visibility::Private(names) => names.iter().any(|n| n == viewer.name),
            Visibility::Labels(labels) => labels.iter().any(|l| viewer.labels.contains(l)),
            Visibility::Tenant(t) => viewer.tenant == Some(t.as_str()),
        }
    }
}

/// A stored artifact, shared between the store, the run and the plugins' context by
/// reference count. `triomphe`'s `Arc` keeps one count (8 bytes), not `std`'s strong and
/// weak counts (16): nothing holds an artifact weakly, and an artifact of 120 bytes with
/// 8 of count fits the allocator's 128-byte class where 136 would take 160 — 1.6 MB of the
/// cascade's 49,920 artifacts at N = 10,000.
pub type SharedArtifact = triomphe::Arc<Artifact>;

/// An immutable, typed record on the blackboard.
///
/// A run keeps every artifact, so its size is the run's memory (49,920 of them at the
/// cascade's N = 10,000): the tags and visibility, which nearly every artifact leaves
/// empty and public, are an [`Audience`] box that such an artifact does without. The record is
/// 144 bytes, 160 with its `Arc`'s counts: a smaller allocator size class than the 192 it was.
/// It reads and writes as the same JSON (`tags` and `visibility` at top level).
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Assigned at publish time.
    pub id: ArtifactId,
    /// The type's name, e.g. `WorkDiscovery` (`type` in JSON).
    pub type_name: Name,
    /// The JSON payload, valid against the type's schema.
    pub payload: Payload,
    /// The agent that produced it (`user` for workflow inputs, `host` for the host's own).
    pub producer: Name,
    /// The workflow (correlation) id.
    pub workflow_id: Name,
    /// The artifacts this one was produced from.
    pub parent_ids: Box<[ArtifactId]>,
    /// Its tags and who may see it; `None` for no tags and [`Visibility::Public`]
    /// (see [`Audience::boxed`], [`Artifact::tags`], [`Artifact::visibility`]).
    pub audience: Option<Box<Audience>>,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// 0 for workflow inputs; one more than the deepest parent for outputs.
    pub depth: u32,
    /// The work item (a WorkDiscovery's id) this artifact belongs to: its own id for a
    /// WorkDiscovery, otherwise inherited from its inputs. Host bookkeeping.
    pub work_item: Option<ArtifactId>,
}

impl Artifact {
    /// The payload's JSON text.
    pub fn payload_text(&self) -> &str {
        self.payload.text()
    }

    /// The length of the payload's JSON text.
    pub fn payload_len(&self) -> usize {
        self.payload.text().len()
    }

    /// Whether `viewer` may see this artifact.
    pub fn visible_to(&self, viewer: &Viewer<'_>) -> bool {
        self.visibility().allows(&self.producer, viewer)
    }

    /// Its free-form tags.
    pub fn tags(&self) -> &[String] {
        self.audience.as_ref().map_or(&[], |a| &a.tags)
    }

    /// Who may see it.
    pub fn visibility(&self) -> &Visibility {
        static PUBLIC: Visibility = Visibility::Public;
        self.audience.as_ref().map_or(&PUBLIC, |a| &a.visibility)
    }
}

/// An artifact's tags and who may see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audience {
    /// Free-form tags.
    pub tags: Box<[String]>,
    /// Who may see it.
    pub visibility: Visibility,
}

impl Audience {
    /// `tags` and `visibility` as an artifact keeps them: `None` for no tags and public.
    pub fn boxed(tags: impl Into<Box<[String]>>, visibility: Visibility) -> Option<Box<Self>> {
        let tags = tags.into();
        (!tags.is_empty() || visibility != Visibility::Public)
            .then(|| Box::new(Self { tags, visibility }))
    }
}

/// An artifact as JSON, every field at top level in the order the record had before its
/// audience was boxed, so stores written by earlier builds read back unchanged.
#[derive(Serialize)]
struct WireOut<'a> {
    id: &'a ArtifactId,
    #[serde(rename = "type")]
    type_name: &'a Name,
    payload: &'a Payload,
    producer: &'a Name,
    workflow_id: &'a Name,
    parent_ids: &'a [ArtifactId],
    tags: &'a [String],
    visibility: &'a Visibility,
    created_at_ms: u64,
    depth: u32,
    work_item: &'a Option<ArtifactId>,
}

#[derive(Deserialize)]
struct WireIn {
    id: ArtifactId,
    #[serde(rename = "type")]
    type_name: Name,
    payload: Payload,
    producer: Name,
    workflow_id: Name,
    parent_ids: Box<[ArtifactId]>,
    tags: Box<[String]>,
    visibility: Visibility,
    created_at_ms: u64,
    depth: u32,
    work_item: Option<ArtifactId>,
}

impl Serialize for Artifact {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireOut {
            id: &self.id,
            type_name: &self.type_name,
            payload: &self.payload,
            producer: &self.producer,
            workflow_id: &self.workflow_id,
            parent_ids: &self.parent_ids,
            tags: self.tags(),
            visibility: self.visibility(),
            created_at_ms: self.created_at_ms,
            depth: self.depth,
            work_item: &self.work_item,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Artifact {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let w = WireIn::deserialize(deserializer)?;
        Ok(Self {
            id: w.id,
            type_name: w.type_name,
            payload: w.payload,
            producer: w.producer,
            workflow_id: w.workflow_id,
            parent_ids: w.parent_ids,
            audience: Audience::boxed(w.tags, w.visibility),
            created_at_ms: w.created_at_ms,
            depth: w.depth,
            work_item: w.work_item,
        })
    }
}

/// An artifact's payload, held as the JSON text it was published with.
///
/// The blackboard keeps every artifact of a run, so what one costs matters: a parsed
/// `serde_json::Value` of a small object is a B-tree of heap nodes, several times the size
/// of its text. The text is what plugins receive anyway, so it is the stored form; the
/// parsed tree is made on demand. The scheduler hands the publisher's own tree to the
/// checks that run at publish time (subscription filters, work-item fields) and sheds it
/// before the artifact is stored. Operator tools and tests may dereference a payload as a
/// `Value`; that parses once and keeps the tree for that artifact. The slot for the tree
/// is one pointer (`OnceBox`), empty in nearly every stored artifact: a `Value` in place
/// would add 24 bytes to each, a `OnceLock<Box<Value>>` 8. The text is a `Box<str>` of
/// exactly its length, not an `Arc<str>`: nothing shares it (plugins and the store borrow
/// it), and a reference count's 16 bytes put most payloads in the next allocator size
/// class.
pub struct Payload {
    text: Box<str>,
    parsed: OnceBox<Value>,
}

impl Payload {
    /// A payload from its JSON `text`, with its parsed `value` kept until [`Self::shed`].
    /// `text` must be `value` as JSON (the producer's own text, or made from `value`).
    pub fn with_value(text: Option<Box<str>>, value: Value) -> Self {
        let text = text.unwrap_or_else(|| value.to_string().into());
        Self {
            text,
            parsed: OnceBox::with_value(Box::new(value)),
        }
    }

    /// The JSON text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The parsed payload, parsed once and then kept.
    pub fn value(&self) -> &Value {
        self.parsed
            .get_or_init(|| Box::new(serde_json::from_str(&self.text).unwrap_or(Value::Null)))
    }

    /// The parsed payload without keeping it: the kept tree if there is one, otherwise a
    /// fresh parse that is dropped after use.
    pub fn parse(&self) -> Cow<'_, Value> {
        match self.parsed.get() {
            Some(v) => Cow::Borrowed(v),
            None => Cow::Owned(serde_json::from_str(&self.text).unwrap_or(Value::Null)),
        }
    }

    /// Drop the parsed tree, keeping only the text.
    pub fn shed(&mut self) {
        self.parsed = OnceBox::new();
    }
}

impl std::ops::Deref for Payload {
    type Target = Value;
    fn deref(&self) -> &Value {
        self.value()
    }
}

impl Clone for Payload {
    fn clone(&self) -> Self {
        Self {
            text: self.text.clone(),
            parsed: OnceBox::new(),
        }
    }
}

impl From<Value> for Payload {
    fn from(value: Value) -> Self {
        Self::with_value(None, value)
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Written as the JSON it is, without parsing it.
        let raw: &RawValue = serde_json::from_str(&self.text).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Ok(Self {
            text: raw.get().into(),
            parsed: OnceBox::new(),
        })
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_artifact_id_reads_prints_and_orders_as_its_uuid_text() {
        let ids: Vec<ArtifactId> = (0..1000).map(|_| ArtifactId::generate()).collect();
        for id in &ids {
            let text = id.to_string();
            assert_eq!(&*id.text(), text);
            assert_eq!(
                text,
                uuid::Uuid::from_bytes(id.0.bytes())
                    .hyphenated()
                    .to_string()
            );
            assert_eq!(ArtifactId::parse(&text), Some(*id));
            let json = serde_json::to_string(id).expect("serialise");
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(
                serde_json::from_str::<ArtifactId>(&json).expect("parse"),
                *id
            );
        }
        let mut by_id = ids.clone();
        by_id.sort();
        let mut by_text: Vec<String> = ids.iter().map(ToString::to_string).collect();
        by_text.sort();
        assert_eq!(
            by_id.iter().map(ToString::to_string).collect::<Vec<_>>(),
            by_text
        );
        // Upper-case text names the same id; anything that is not a hyphenated UUID names none.
        let text = ids[0].to_string();
        assert_eq!(ArtifactId::parse(&text.to_uppercase()), Some(ids[0]));
        for bad in [
            "",
            "w1",
            "00000000-0000-0000-0000-000000000000",
            &text[1..],
            &text.replace('-', ""),
            &format!("{{{text}}}"),
        ] {
            assert_eq!(ArtifactId::parse(bad), None, "{bad}");
        }
        let err = serde_json::from_str::<ArtifactId>("\"w1\"").expect_err("not an id");
        assert!(
            err.to_string().contains("'w1' is not an artifact id"),
            "{err}"
        );
    }

    fn sample(audience: Option<Box<Audience>>) -> Artifact {
        Artifact {
            id: ArtifactId::named("a"),
            type_name: "T".into(),
            payload: serde_json::json!({"k": 1}).into(),
            producer: "p".into(),
            workflow_id: "w".into(),
            parent_ids: vec![ArtifactId::named("parent")].into(),
            audience,
            created_at_ms: 5,
            depth: 1,
            work_item: None,
        }
    }

    #[test]
    fn an_artifact_reads_and_writes_the_json_it_had_before_its_audience_was_boxed() {
        let private = Visibility::Private(vec!["reviewer".into()].into());
        let a = sample(Audience::boxed(vec!["hot".into()], private.clone()));
        let json = serde_json::to_value(&a).expect("json");
        let id = |label: &str| ArtifactId::named(label).to_string();
        assert_eq!(
            json,
            serde_json::json!({
                "id": id("a"),
                "type": "T",
                "payload": {"k": 1},
                "producer": "p",
                "workflow_id": "w",
                "parent_ids": [id("parent")],
                "tags": ["hot"],
                "visibility": {"kind": "private", "value": ["reviewer"]},
                "created_at_ms": 5,
                "depth": 1,
                "work_item": null,
            })
        );
        let back: Artifact = serde_json::from_value(json).expect("back");
        assert_eq!(
            (back.tags(), back.visibility()),
            (&["hot".to_string()][..], &private)
        );

        let plain: Artifact =
            serde_json::from_value(serde_json::to_value(sample(None)).expect("json"))
                .expect("back");
        assert!(plain.audience.is_none(), "untagged and public: no box");
        assert_eq!(
            (plain.tags(), plain.visibility()),
            (&[][..], &Visibility::Public)
        );
    }

    #[test]
    fn stored_records_fit_their_allocator_size_classes() {
        // Every record of a run stays in memory, so a record's size is resident memory,
        // rounded up to mimalloc's size class (…, 80, 96, 112, 128, 160, 192, 224, 256,
        // 320 bytes). An artifact is 120 bytes, 128 with its shared count (was 208 and
        // 224: a pointer for the parsed-tree slot, boxed slices for its lists; then 176
        // and 192, before its tags and visibility were boxed apart; then 144 and 160,
        // before names were one pointer and its count one word); an invocation 192 (its
        // inputs a boxed slice; was 200, in the 224 class), then 128 (what only a failed
        // call needs boxed apart, its outputs a boxed slice), then 112 (names one
        // pointer); a work item 208 (its rare routing record boxed; was 272, in the 320
        // class), then 104 (what only blocked, keyed, duplicate, routed, recovery or
        // unsuccessful work needs boxed apart), then 80.
        let sizes = [
            ("name", std::mem::size_of::<crate::name::Name>(), 8),
            ("payload", std::mem::size_of::<Payload>(), 24),
            ("artifact", std::mem::size_of::<Artifact>(), 120),
            (
                "shared artifact",
                std::mem::size_of::<Artifact>() + std::mem::size_of::<usize>(),
                128,
            ),
            (
                "invocation",
                std::mem::size_of::<crate::invocation::InvocationRecord>(),
                112,
            ),
            (
                "work item",
                std::mem::size_of::<crate::work::WorkItem>(),
                80,
            ),
        ];
        for (what, size, most) in sizes {
            assert!(size <= most, "{what}: {size} bytes, more than {most}");
        }
    }

    #[test]
    fn a_payload_is_stored_as_its_text_and_parsed_only_on_demand() {
        let text: Box<str> = r#"{"b": 1, "a": [true]}"#.into();
        let mut p =
            Payload::with_value(Some(text.clone()), serde_json::json!({"b": 1, "a": [true]}));
        assert!(
            matches!(p.parse(), Cow::Borrowed(_)),
            "the publisher's tree is used"
        );
        p.shed();
        assert!(
            matches!(p.parse(), Cow::Owned(_)),
            "shed: parsed afresh, not kept"
        );
        assert!(p.parsed.get().is_none());
        assert_eq!(p["b"], 1, "dereferencing parses and keeps");
        assert!(p.parsed.get().is_some());
        // Persisted as the very text the producer wrote, and read back without parsing.
        let stored = serde_json::to_string(&p).expect("serialises");
        assert_eq!(stored, r#"{"b": 1, "a": [true]}"#);
        let back: Payload = serde_json::from_str(&stored).expect("deserialises");
        assert_eq!(back.text(), &*text);
        assert_eq!(serde_json::to_value(&back).expect("to value")["a"][0], true);
    }

    #[test]
    fn visibility_admits_exactly_the_named_viewers_and_the_producer() {
        let alice = Viewer {
            name: "alice",
            labels: &["ops".to_string()],
            tenant: Some("acme"),
            operator: false,
        };
        let bob = Viewer {
            name: "bob",
            labels: &[],
            tenant: None,
            operator: false,
        };
        let private = Visibility::Private(vec!["alice".into()].into());
        assert!(private.allows("carol", &alice));
        assert!(!private.allows("carol", &bob));
        assert!(private.allows("bob", &bob), "a producer sees its own");
        assert!(Visibility::Labels(vec!["ops".into()].into()).allows("carol", &alice));
        assert!(!Visibility::Labels(vec!["ops".into()].into()).allows("carol", &bob));
        assert!(Visibility::Tenant("acme".into()).allows("carol", &alice));
        assert!(!Visibility::Tenant("acme".into()).allows("carol", &bob));
        assert!(Visibility::Public.allows("carol", &bob));
    }
}
