//! The [`Store`] contract, checked against every store: one suite, each guarantee a test
//! per store. A durable store is checked twice: as it answers while it runs, and as it
//! answers once closed and opened again (what `resume` and a restarted server read). A
//! store added later joins by adding a [`Subject`].

use super::postgres::scratch;
use super::{ArtifactQuery, Commit, DurableStore, KeyRecord, MemoryStore, RunRecord, Store};
use crate::artifact::{Artifact, ArtifactId, Audience, SharedArtifact, Viewer, Visibility};
use crate::invocation::{InvocationId, InvocationRecord, InvocationStatus};
use crate::observe::Event;
use crate::run::RunStatus;
use crate::work::{Priority, WorkItem, WorkStatus};
use std::sync::Arc;

/// Closes a store and opens it again, as a later process would.
type Reopen = Box<dyn Fn(&dyn Store) -> Arc<dyn Store>>;

/// A store under test, and how to read it back as a later process would.
struct Subject {
    store: Arc<dyn Store>,
    reopen: Reopen,
    /// What the store lives in (a directory, a database), removed after the stores.
    _home: Option<Box<dyn std::any::Any>>,
}

impl Subject {
    fn memory() -> Self {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::keeping_events());
        let same = store.clone();
        Self {
            store,
            // Nothing outlives a memory store: it is read back as it is.
            reopen: Box::new(move |_| same.clone()),
            _home: None,
        }
    }

    fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("contract.db");
        let store: Arc<dyn Store> = Arc::new(DurableStore::sqlite(&path).expect("open"));
        Self {
            store,
            reopen: Box::new(move |old| {
                old.close().expect("close");
                let again = DurableStore::sqlite(&path).expect("open again");
                again.load(WF).expect("load");
                Arc::new(again)
            }),
            _home: Some(Box::new(dir)),
        }
    }

    /// A database of its own on the test server, dropped after the test.
    fn postgres() -> Self {
        let db = scratch::for_test("murmur_contract");
        let url = db.url();
        let store: Arc<dyn Store> = Arc::new(DurableStore::postgres(&url).expect("open"));
        Self {
            store,
            reopen: Box::new(move |old| {
                old.close().expect("close");
                let again = DurableStore::postgres(&url).expect("open again");
                again.load(WF).expect("load");
                Arc::new(again)
            }),
            _home: Some(Box::new(db)),
        }
    }

    /// The store as a later process reads it (the same one, for a memory store).
    fn reopened(&self) -> Arc<dyn Store> {
        (self.reopen)(self.store.as_ref())
    }
}

const WF: &str = "wf";

fn artifact(id: &str, type_name: &str, tags: &[&str], visibility: Visibility) -> SharedArtifact {
    SharedArtifact::new(Artifact {
        id: ArtifactId::named(id),
        type_name: type_name.into(),
        payload: serde_json::json!({ "id": id }).into(),
        producer: "agent".into(),
        workflow_id: WF.into(),
        parent_ids: vec![].into(),
        audience: Audience::boxed(
            tags.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            visibility,
        ),
        created_at_ms: 1,
        depth: 0,
        work_item: None,
    })
}

fn note(id: &str) -> SharedArtifact {
    artifact(id, "Note", &[], Visibility::Public)
}

fn invocation(id: &str, priority: Priority, seq: u64) -> InvocationRecord {
    let mut inv = InvocationRecord::queued(WF, "agent", vec![], seq);
    inv.id = InvocationId::named(id);
    inv.priority = priority;
    inv
}

fn ids(artifacts: &[SharedArtifact]) -> Vec<String> {
    artifacts.iter().map(|a| a.id.to_string()).collect()
}

fn named(labels: &[&str]) -> Vec<String> {
    labels
        .iter()
        .map(|l| ArtifactId::named(l).to_string())
        .collect()
}

fn commit(store: &dyn Store, c: Commit) {
    store.commit(c).expect("commit");
}

/// A commit lands whole or not at all: one whose artifact exists already applies none
/// of its records.
fn a_commit_lands_whole_or_not_at_all(s: &Subject) {
    commit(
        s.store.as_ref(),
        Commit {
            artifacts: vec![note("a")],
            ..Default::default()
        },
    );
    let refused = s.store.commit(Commit {
        artifacts: vec![note("b"), note("a")],
        invocations: vec![invocation("i", Priority::Medium, 0)],
        ..Default::default()
    });
    assert!(refused.is_err(), "a duplicate artifact is refused");
    for store in [s.store.clone(), s.reopened()] {
        assert!(
            store
                .artifact(&ArtifactId::named("b"))
                .expect("get")
                .is_none()
        );
        assert!(
            store
                .invocation(&InvocationId::named("i"))
                .expect("get")
                .is_none()
        );
        assert_eq!(store.counts(WF).expect("counts").total, 1);
    }
}

/// Artifacts keep their publish order: positions are stable cursors, across a reopen.
fn artifact_positions_are_stable_cursors(s: &Subject) {
    for (i, id) in ["c", "a", "b", "e", "d"].iter().enumerate() {
        let mut art = (*note(id)).clone();
        art.created_at_ms = i as u64;
        commit(
            s.store.as_ref(),
            Commit {
                artifacts: vec![SharedArtifact::new(art)],
                ..Default::default()
            },
        );
    }
    for store in [s.store.clone(), s.reopened()] {
        assert_eq!(
            ids(&store.artifacts_from(WF, 0, 100).expect("from")),
            named(&["c", "a", "b", "e", "d"])
        );
        assert_eq!(
            ids(&store.artifacts_from(WF, 2, 2).expect("from")),
            named(&["b", "e"])
        );
        assert!(store.artifacts_from(WF, 5, 10).expect("from").is_empty());
        assert!(
            store
                .artifacts_from("other", 0, 10)
                .expect("from")
                .is_empty()
        );
    }
}

/// A query filters by type and by every tag, honours visibility and its limit, and
/// returns the newest last.
fn queries_filter_by_type_tags_and_visibility(s: &Subject) {
    commit(
        s.store.as_ref(),
        Commit {
            artifacts: vec![
                artifact("n1", "Note", &["x"], Visibility::Public),
                artifact("t1", "Task", &["x", "y"], Visibility::Public),
                artifact("n2", "Note", &["x", "y"], Visibility::Public),
                artifact(
                    "n3",
                    "Note",
                    &["x", "y"],
                    Visibility::Private(vec!["alice".to_string()].into()),
                ),
            ],
            ..Default::default()
        },
    );
    for store in [s.store.clone(), s.reopened()] {
        let query = |type_name: Option<&str>, tags: &[&str], limit: usize| ArtifactQuery {
            workflow_id: WF.into(),
            type_name: type_name.map(str::to_string),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            limit,
        };
        let bob = Viewer {
            name: "bob",
            ..Viewer::default()
        };
        let alice = Viewer {
            name: "alice",
            ..Viewer::default()
        };
        let got = |q: &ArtifactQuery, v: &Viewer<'_>| ids(&store.query(q, v).expect("query"));
        assert_eq!(
            got(&query(Some("Note"), &["x"], 100), &bob),
            named(&["n1", "n2"])
        );
        assert_eq!(
            got(&query(Some("Note"), &["x", "y"], 100), &alice),
            named(&["n2", "n3"])
        );
        assert_eq!(
            got(&query(None, &["y"], 100), &Viewer::operator()),
            named(&["t1", "n2", "n3"])
        );
        assert_eq!(
            got(&query(None, &[], 2), &Viewer::operator()),
            named(&["n2", "n3"]),
            "the limit keeps the newest"
        );
    }
}

/// Claims take the most urgent queued invocation (priority, then enqueue order), each
/// once; the first claim of a work item makes it active; a reopened store has them
/// running, and `requeue_running` queues them again.
fn claims_are_exclusive_ordered_and_durable(s: &Subject) {
    let mut work = WorkItem::new(ArtifactId::named("w1"), WF, "analysis", Priority::High);
    work.open_invocations = 1;
    let mut on_work = invocation("high-1", Priority::High, 1);
    on_work.work_item = Some(ArtifactId::named("w1"));
    commit(
        s.store.as_ref(),
        Commit {
            work_items: vec![work],
            invocations: vec![
                invocation("low", Priority::Low, 0),
                invocation("high-2", Priority::High, 2),
                on_work,
                invocation("critical", Priority::Critical, 3),
            ],
            ..Default::default()
        },
    );
    let first = s.store.claim_next(WF).expect("claim").expect("one");
    let second = s.store.claim_next(WF).expect("claim").expect("one");
    assert_eq!(
        [first.id, second.id],
        ["critical", "high-1"].map(InvocationId::named)
    );
    assert_eq!(
        (second.status, second.attempts),
        (InvocationStatus::Running, 1)
    );
    assert_eq!(
        s.store
            .work_item(&ArtifactId::named("w1"))
            .expect("get")
            .map(|w| w.status()),
        Some(WorkStatus::Active)
    );
    let store = s.reopened();
    let running = |store: &dyn Store| {
        store
            .invocations(WF)
            .expect("invocations")
            .into_iter()
            .filter(|i| i.status == InvocationStatus::Running)
            .count()
    };
    assert_eq!(running(store.as_ref()), 2, "claims are durable");
    assert_eq!(store.requeue_running(WF).expect("requeue"), 2);
    assert_eq!(running(store.as_ref()), 0);
    let order: Vec<InvocationId> = std::iter::from_fn(|| store.claim_next(WF).expect("claim"))
        .map(|i| i.id)
        .collect();
    assert_eq!(
        order,
        ["critical", "high-1", "high-2", "low"].map(InvocationId::named)
    );
    assert_eq!(
        store
            .invocation(&InvocationId::named("critical"))
            .expect("get")
            .map(|i| i.attempts),
        Some(2),
        "a requeued claim counts its attempts"
    );
}

/// Work items come back in creation order with their last state.
fn work_items_keep_their_order_and_last_state(s: &Subject) {
    let items: Vec<WorkItem> = ["w3", "w1", "w2"]
        .iter()
        .map(|id| WorkItem::new(ArtifactId::named(id), WF, "analysis", Priority::Medium))
        .collect();
    commit(
        s.store.as_ref(),
        Commit {
            work_items: items.clone(),
            ..Default::default()
        },
    );
    let mut done = items[1].clone();
    done.start().expect("pending → active");
    done.finish().expect("active → done");
    commit(
        s.store.as_ref(),
        Commit {
            work_items: vec![done],
            ..Default::default()
        },
    );
    for store in [s.store.clone(), s.reopened()] {
        let got: Vec<(String, WorkStatus)> = store
            .work_items(WF)
            .expect("work")
            .iter()
            .map(|w| (w.id.to_string(), w.status()))
            .collect();
        let expected: Vec<(String, WorkStatus)> = named(&["w3", "w1", "w2"])
            .into_iter()
            .zip([WorkStatus::Pending, WorkStatus::Done, WorkStatus::Pending])
            .collect();
        assert_eq!(got, expected);
    }
}

/// A discovery's key names its work item in its run, whatever became of the work.
fn discovery_keys_name_their_work_item_per_run(s: &Subject) {
    let keyed = |id: &str, workflow: &str, key: Option<&str>| {
        let mut w = WorkItem::new(
            ArtifactId::named(id),
            workflow,
            "analysis",
            Priority::Medium,
        );
        if let Some(key) = key {
            w.detail_mut().key = Some(key.to_string());
        }
        w
    };
    commit(
        s.store.as_ref(),
        Commit {
            work_items: vec![
                keyed("w1", WF, Some("parse")),
                keyed("w2", WF, None),
                keyed("w3", "other", Some("parse")),
            ],
            ..Default::default()
        },
    );
    let mut done = keyed("w1", WF, Some("parse"));
    done.start().expect("pending → active");
    done.finish().expect("active → done");
    commit(
        s.store.as_ref(),
        Commit {
            work_items: vec![done],
            ..Default::default()
        },
    );
    assert_eq!(
        s.store.discovery_key("other", "parse").expect("read"),
        Some(ArtifactId::named("w3")),
        "each run has its own keys"
    );
    for store in [s.store.clone(), s.reopened()] {
        let find = |workflow: &str, key: &str| {
            store
                .discovery_key(workflow, key)
                .expect("read")
                .map(|id| id.to_string())
        };
        assert_eq!(find(WF, "parse"), Some(ArtifactId::named("w1").to_string()));
        assert_eq!(find(WF, "w2"), None, "an id is no key");
        assert_eq!(find(WF, "lex"), None);
    }
}

/// A plugin's values: set, replaced, deleted, listed by prefix in order, per plugin.
fn kv_values_are_per_plugin_and_listed_in_order(s: &Subject) {
    let st = s.store.as_ref();
    st.kv_set(WF, "p", "b", Some("1".into())).expect("set");
    st.kv_set(WF, "p", "a", Some("1".into())).expect("set");
    st.kv_set(WF, "p", "a", Some("2".into())).expect("replace");
    st.kv_set(WF, "p", "c", Some("3".into())).expect("set");
    st.kv_set(WF, "p", "c", None).expect("delete");
    st.kv_set(WF, "q", "a", Some("other".into())).expect("set");
    st.kv_set(WF, "p", "zz", Some("4".into())).expect("set");
    for store in [s.store.clone(), s.reopened()] {
        assert_eq!(
            store.kv_get(WF, "p", "a").expect("get").as_deref(),
            Some("2")
        );
        assert_eq!(store.kv_get(WF, "p", "c").expect("get"), None);
        assert_eq!(
            store.kv_get(WF, "q", "a").expect("get").as_deref(),
            Some("other")
        );
        assert_eq!(store.kv_keys(WF, "p", "").expect("keys"), ["a", "b", "zz"]);
        assert_eq!(store.kv_keys(WF, "p", "z").expect("keys"), ["zz"]);
    }
}

/// An idempotency key is stored with the commit that took it.
fn idempotency_keys_land_with_their_artifact(s: &Subject) {
    let key = KeyRecord {
        workflow_id: WF.into(),
        key: "k1".into(),
        request_sha256: "ab".repeat(32),
        artifact: ArtifactId::named("a"),
    };
    commit(
        s.store.as_ref(),
        Commit {
            artifacts: vec![note("a")],
            keys: vec![key.clone()],
            ..Default::default()
        },
    );
    for store in [s.store.clone(), s.reopened()] {
        assert_eq!(
            store.idempotency_key(WF, "k1").expect("key"),
            Some(key.clone())
        );
        assert_eq!(store.idempotency_key(WF, "k2").expect("key"), None);
        assert_eq!(store.idempotency_key("other", "k1").expect("key"), None);
    }
}

/// Runs are listed newest first, with their last saved state.
fn runs_are_listed_newest_first_with_their_last_state(s: &Subject) {
    let run = |id: &str, started: u64| RunRecord {
        workflow_id: id.into(),
        name: "contract".into(),
        manifest_path: "/m.toml".into(),
        manifest_text: String::new(),
        plugins: Vec::new(),
        status: RunStatus::Running,
        started_at_ms: started,
        finished_at_ms: None,
        summary: None,
        llm_usage: None,
        agent_times: Default::default(),
        lessons: Default::default(),
        distilled: None,
    };
    s.store.save_run(&run("old", 1)).expect("save");
    s.store.save_run(&run(WF, 2)).expect("save");
    let mut ended = run("old", 1);
    ended.status = RunStatus::Complete;
    ended.finished_at_ms = Some(5);
    s.store.save_run(&ended).expect("save");
    for store in [s.store.clone(), s.reopened()] {
        let runs: Vec<(String, RunStatus)> = store
            .runs()
            .expect("runs")
            .into_iter()
            .map(|r| (r.workflow_id, r.status))
            .collect();
        assert_eq!(
            runs,
            [
                (WF.to_string(), RunStatus::Running),
                ("old".to_string(), RunStatus::Complete)
            ]
        );
        assert_eq!(
            store
                .run("old")
                .expect("run")
                .and_then(|r| r.finished_at_ms),
            Some(5)
        );
        assert!(store.run("nope").expect("run").is_none());
    }
}

/// Notable events are numbered in the order recorded and read after a position.
fn events_are_numbered_and_read_after_a_position(s: &Subject) {
    let limited = |n: u32| Event::DepthLimited {
        artifact: format!("a{n}"),
        type_name: "Note".into(),
        depth: n,
    };
    let quiet = Event::InvocationStarted {
        agent: "agent".into(),
        invocation: InvocationId::named("i"),
    };
    s.store
        .record_events(WF, &[limited(1), quiet, limited(2)])
        .expect("record");
    s.store
        .record_events("other", &[limited(9)])
        .expect("record");
    s.store.record_events(WF, &[limited(3)]).expect("record");
    s.store.flush().expect("flush");
    for store in [s.store.clone(), s.reopened()] {
        let all = store.events_after(WF, 0, 100).expect("events");
        let depths: Vec<&serde_json::Value> = all.iter().map(|e| &e.data["depth"]).collect();
        assert_eq!(depths, [1, 2, 3], "only notable events, only this run's");
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
        assert!(all.iter().all(|e| e.kind == "depth_limited"));
        let after_first = store.events_after(WF, all[0].seq, 1).expect("events");
        assert_eq!(after_first.len(), 1);
        assert_eq!(after_first[0].seq, all[1].seq);
    }
}

/// Each guarantee, once per store.
fn kept(id: &str, workflow: &str, text: &str) -> crate::lessons::Lesson {
    crate::lessons::Lesson {
        id: id.into(),
        workflow: workflow.into(),
        phase: "implementation".into(),
        text: text.into(),
        evidence: vec!["e1".into()],
        source_run: WF.into(),
        uses: 0,
        helped: 0,
        misses: 0,
        about: vec!["rejection implementer: no tests".into()],
        visibility: vec![Visibility::Tenant("acme".into())],
        retired: false,
        by: "retro".into(),
        created_at_ms: 1,
        updated_at_ms: 1,
    }
}

/// Lessons are kept per workflow name, in the order first kept; a change replaces and
/// forgets in one step, and is durable when it returns.
fn lessons_are_kept_per_workflow_and_changed_whole(s: &Subject) {
    use crate::lessons::LessonChange;
    let store = s.store.as_ref();
    store
        .change_lessons(&LessonChange {
            put: vec![
                kept("l1", "auth", "first"),
                kept("l2", "other", "second"),
                kept("l3", "auth", "third"),
            ],
            forget: Vec::new(),
        })
        .expect("put");
    let mut better = kept("l1", "auth", "first, reworded");
    better.uses = 2;
    better.helped = 1;
    store
        .change_lessons(&LessonChange {
            put: vec![better.clone()],
            forget: vec!["l3".into()],
        })
        .expect("change");
    for store in [s.store.clone(), s.reopened()] {
        let auth = store.lessons(Some("auth")).expect("read");
        assert_eq!(auth, vec![better.clone()], "{}", store.describe());
        let all: Vec<String> = store
            .lessons(None)
            .expect("read all")
            .into_iter()
            .map(|l| l.id)
            .collect();
        assert_eq!(all, ["l1", "l2"], "{}", store.describe());
        assert!(store.lessons(Some("none")).expect("read").is_empty());
    }
}

macro_rules! contract {
    ($($guarantee:ident),* $(,)?) => {
        $(
            mod $guarantee {
                #[test]
                fn memory() {
                    super::$guarantee(&super::Subject::memory());
                }
                #[test]
                fn sqlite() {
                    super::$guarantee(&super::Subject::sqlite());
                }
                #[test]
                fn postgres() {
                    super::$guarantee(&super::Subject::postgres());
                }
            }
        )*
    };
}

contract!(
    a_commit_lands_whole_or_not_at_all,
    artifact_positions_are_stable_cursors,
    queries_filter_by_type_tags_and_visibility,
    claims_are_exclusive_ordered_and_durable,
    work_items_keep_their_order_and_last_state,
    discovery_keys_name_their_work_item_per_run,
    kv_values_are_per_plugin_and_listed_in_order,
    idempotency_keys_land_with_their_artifact,
    runs_are_listed_newest_first_with_their_last_state,
    events_are_numbered_and_read_after_a_position,
    lessons_are_kept_per_workflow_and_changed_whole,
);
