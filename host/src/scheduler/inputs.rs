//! The manifest's inputs, published in chunks while the workers already run.
//!
//! A manifest can ask for many inputs (`count = 100000`). Publishing them all in one
//! commit before the first invocation made the run wait for the last input before it
//! started the first (0.75 s at N = 100,000), with one core idle all that time. So the
//! first chunk is published before the workers start and the coordinator publishes the
//! rest a chunk at a time, each chunk one atomic commit, while the workers take what is
//! queued — as the queue makes room (`pool::FEED_AHEAD` invocations waiting at most), not
//! all at once: published back to back, 100,000 inputs made four fifths of the run's work
//! open at its start, and a store keeps open work in memory.
//!
//! Inputs that name each other (a `key`, or `blocking_work_ids`) are planned together:
//! their references are resolved and checked as one batch, so they are published in one
//! commit before the run starts, as before.
//!
//! Chunks are published in manifest order, each whole or not at all, so after a crash the
//! inputs already on the blackboard (the artifacts produced by `user`, a name no plugin
//! may take) are a prefix of the list; a resumed run publishes the rest.

use super::execute::CheckedOutput;
use crate::manifest::InputDecl;
use crate::schema::WORK_DISCOVERY;
use crate::workflow::Workflow;

/// Inputs in the first chunk: published before the workers start.
const FIRST_CHUNK: u64 = 64;
/// Inputs in each later chunk: small enough that the run's lock is held for well under
/// a millisecond (about 5 µs per input), so the workers barely wait.
const CHUNK: u64 = 32;

/// The inputs still to publish, in manifest order.
#[derive(Debug, Clone)]
pub(super) struct InputFeed {
    /// Position of the next input in the flattened list.
    next: u64,
    /// Inputs in the manifest, all copies counted.
    total: u64,
    /// Whether the inputs refer to each other and must be published as one batch.
    together: bool,
}

impl InputFeed {
    /// The feed of a manifest's `inputs` from position `published` on (the number
    /// already on the blackboard).
    pub(super) fn new(inputs: &[InputDecl], published: u64) -> Self {
        let total = inputs.iter().map(|i| i.count).sum();
        let together = inputs.iter().any(|i| {
            i.type_name == WORK_DISCOVERY
                && (i.payload.get("key").is_some() || i.payload.get("blocking_work_ids").is_some())
        });
        Self {
            next: published.min(total),
            total,
            together,
        }
    }

    /// Whether inputs remain to be published.
    pub(super) fn remaining(&self) -> bool {
        self.next < self.total
    }

    /// The positions of the next chunk: the first, or everything if the inputs must go
    /// together.
    fn next_range(&mut self) -> (u64, u64) {
        let size = if self.together {
            self.total
        } else if self.next == 0 {
            FIRST_CHUNK
        } else {
            CHUNK
        };
        let end = self.next.saturating_add(size).min(self.total);
        let start = std::mem::replace(&mut self.next, end);
        (start, end)
    }

    /// Prepare the next chunk. Payloads are filled in and routed here, outside the run's
    /// lock.
    pub(super) fn next_chunk(&mut self, wf: &Workflow, workflow_id: &str) -> Vec<CheckedOutput> {
        let (start, end) = self.next_range();
        let inputs = &wf.manifest.inputs;
        copies(inputs, start, end)
            .map(|(input, index)| {
                let mut payload = input.payload_for(index);
                let routing = match &wf.router {
                    Some(router) if input.type_name == WORK_DISCOVERY => {
                        router.place(&mut payload, "user", workflow_id)
                    }
                    _ => None,
                };
                CheckedOutput {
                    type_name: crate::name::Name::new(&input.type_name),
                    payload,
                    tags: input.tags.clone(),
                    visibility: input.visibility.clone(),
                    routing,
                    text: None,
                    placement: None,
                }
            })
            .collect()
    }
}

/// The copies at positions `from..to` of the flattened input list, in manifest order:
/// each as its declaration and its index among that declaration's copies.
fn copies(inputs: &[InputDecl], from: u64, to: u64) -> impl Iterator<Item = (&InputDecl, u64)> {
    let mut start = 0;
    inputs.iter().flat_map(move |input| {
        let first = start;
        start += input.count;
        let range = from.max(first)..to.min(start);
        range.map(move |position| (input, position - first))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(name: &str, count: u64) -> InputDecl {
        InputDecl {
            type_name: name.into(),
            payload: serde_json::json!({}),
            tags: Vec::new(),
            count,
            visibility: Default::default(),
            span: 0..0,
        }
    }

    #[test]
    fn inputs_that_name_each_other_go_in_one_chunk_others_in_small_ones() {
        let mut keyed = decl("WorkDiscovery", 500);
        keyed.payload = serde_json::json!({"key": "k{index}"});
        let mut feed = InputFeed::new(&[decl("WorkDiscovery", 100), keyed], 0);
        assert_eq!(feed.next_range(), (0, 600));
        assert!(!feed.remaining());

        let mut feed = InputFeed::new(&[decl("WorkDiscovery", 100)], 0);
        assert_eq!(feed.next_range(), (0, FIRST_CHUNK));
        assert_eq!(feed.next_range(), (FIRST_CHUNK, FIRST_CHUNK + CHUNK));
        let mut resumed = InputFeed::new(&[decl("WorkDiscovery", 100)], 90);
        assert_eq!(resumed.next_range(), (90, 90 + CHUNK.min(10)));
        assert!(!resumed.remaining());
        assert!(!InputFeed::new(&[decl("WorkDiscovery", 100)], 100).remaining());
    }

    #[test]
    fn chunks_cover_every_copy_once_in_manifest_order_from_any_start() {
        let inputs = [decl("A", 3), decl("B", 1), decl("C", 0), decl("D", 4)];
        let all: Vec<(String, u64)> = copies(&inputs, 0, 8)
            .map(|(d, i)| (d.type_name.clone(), i))
            .collect();
        let expected: Vec<(String, u64)> = [
            ("A", 0),
            ("A", 1),
            ("A", 2),
            ("B", 0),
            ("D", 0),
            ("D", 1),
            ("D", 2),
            ("D", 3),
        ]
        .iter()
        .map(|(n, i)| (n.to_string(), *i))
        .collect();
        assert_eq!(all, expected);
        for size in 1..=9 {
            for start in 0..=8 {
                let mut joined = Vec::new();
                let mut at = start;
                while at < 8 {
                    let end = (at + size).min(8);
                    joined.extend(copies(&inputs, at, end).map(|(d, i)| (d.type_name.clone(), i)));
                    at = end;
                }
                assert_eq!(
                    joined,
                    expected[start as usize..],
                    "size {size}, start {start}"
                );
            }
        }
    }
}
