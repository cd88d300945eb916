//! Durability: the SQLite store survives SIGKILL at any point — a resumed run reaches the
//! end state of an uninterrupted one, with nothing lost and nothing published twice — and
//! a damaged, foreign or newer database is refused with a clear error, never a panic.

use crate::helpers::*;
use murmur::Store;
use murmur::blackboard::DurableStore;
use murmur::blackboard::postgres::scratch::{self, ScratchDatabase};
use murmur::invocation::InvocationStatus;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cascade workload (examples/cascade) at `n` items, written into `dir`.
pub(crate) fn cascade_manifest(dir: &Path, n: u64) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("examples/cascade/workflow.toml"))
        .expect("cascade example")
        .replace("count = 10000", &format!("count = {n}"))
        .replace(
            "../../target/plugins/bench-agent.wasm",
            &plugin("bench-agent").display().to_string(),
        )
        // Metrics depend on timing; the comparison is about the workload.
        .replace(
            "[workflow.limits]",
            "[monitoring]\nmetrics = false\n[workflow.limits]",
        );
    let path = dir.join("cascade.toml");
    std::fs::write(&path, text).expect("write manifest");
    path
}

/// Where a test's run writes: a SQLite file, or a scratch PostgreSQL database (dropped
/// after the test) with a connection to watch it through.
pub(crate) enum Db {
    Sqlite(PathBuf),
    Postgres(Box<Postgres>),
}

/// A scratch PostgreSQL database, and a connection to watch it through.
pub(crate) struct Postgres {
    db: ScratchDatabase,
    watch: Mutex<Option<postgres::Client>>,
}

impl Db {
    pub(crate) fn sqlite(path: PathBuf) -> Self {
        Db::Sqlite(path)
    }

    pub(crate) fn postgres() -> Self {
        Db::Postgres(Box::new(Postgres {
            db: scratch::for_test("murmur_durability"),
            watch: Mutex::new(None),
        }))
    }

    /// What `--store` takes.
    pub(crate) fn spec(&self) -> String {
        match self {
            Db::Sqlite(p) => format!("sqlite:{}", p.display()),
            Db::Postgres(pg) => pg.db.url(),
        }
    }

    pub(crate) fn open(&self) -> DurableStore {
        match self {
            Db::Sqlite(p) => DurableStore::sqlite(p).expect("open"),
            Db::Postgres(pg) => DurableStore::postgres(&pg.db.url()).expect("open"),
        }
    }

    /// Whether the run got as far as creating the database.
    fn exists(&self) -> bool {
        match self {
            Db::Sqlite(p) => p.exists(),
            Db::Postgres(_) => self
                .count("SELECT count(*) FROM pg_namespace WHERE nspname = 'murmur'")
                .is_some_and(|n| n > 0),
        }
    }

    /// A count, read the way another process would (read-only for a file); `None` while
    /// the database cannot answer it yet.
    pub(crate) fn count(&self, sql: &str) -> Option<u64> {
        match self {
            Db::Sqlite(p) => {
                let c = rusqlite::Connection::open_with_flags(
                    p,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .ok()?;
                c.query_row(sql, [], |r| r.get::<_, i64>(0))
                    .ok()
                    .map(|n| n as u64)
            }
            Db::Postgres(pg) => {
                let mut watch = pg.watch.lock().unwrap_or_else(|p| p.into_inner());
                if watch.as_ref().is_none_or(|c| c.is_closed()) {
                    *watch = postgres::Client::connect(&pg.db.url(), postgres::NoTls).ok();
                }
                let n: i64 = watch.as_mut()?.query_one(sql, &[]).ok()?.get(0);
                Some(n as u64)
            }
        }
    }

    /// The table holding `name` (the PostgreSQL store keeps its own schema).
    fn table(&self, name: &str) -> String {
        match self {
            Db::Sqlite(_) => name.to_string(),
            Db::Postgres(_) => format!("murmur.{name}"),
        }
    }
}

/// What a finished run published: per-type counts, and every done invocation as
/// (agent, input content, sorted output contents) — contents, because ids differ between
/// runs. A duplicate or a loss shows as a difference in this multiset.
pub(crate) type Fingerprint = (BTreeMap<String, u64>, Vec<(String, String, Vec<String>)>);

pub(crate) fn fingerprint(db: &Db) -> Fingerprint {
    let store = db.open();
    let run = store.runs().expect("runs").remove(0);
    store.load(&run.workflow_id).expect("load");
    let content = |id: &murmur::ArtifactId| {
        let a = store.artifact(id).expect("read").expect("artifact exists");
        format!("{} {}", a.type_name, a.payload)
    };
    let mut pairs = Vec::new();
    for inv in store.invocations(&run.workflow_id).expect("invocations") {
        assert_ne!(
            inv.status,
            InvocationStatus::Running,
            "nothing is left running"
        );
        if inv.status != InvocationStatus::Done {
            continue;
        }
        let mut outputs: Vec<String> = inv.outputs.iter().map(content).collect();
        outputs.sort();
        pairs.push((inv.agent.to_string(), content(&inv.inputs[0]), outputs));
    }
    pairs.sort();
    let mut counts = store.counts(&run.workflow_id).expect("counts").by_type;
    counts.remove("WorkflowComplete");
    (counts, pairs)
}

/// Run `manifest` to the end with its blackboard in `db`.
pub(crate) fn run_into(manifest: &Path, db: &Db) {
    let out = murmur()
        .args(["run", "-q", "--store", &db.spec()])
        .arg(manifest)
        .output()
        .expect("murmur run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Start running `manifest` into `db`, quietly, to be killed.
pub(crate) fn spawn_run(manifest: &Path, db: &Db) -> std::process::Child {
    murmur()
        .args(["run", "-q", "--store", &db.spec()])
        .arg(manifest)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn")
}

/// `murmur resume --json` on `db`.
pub(crate) fn resume(db: &Db) -> std::process::Output {
    murmur()
        .args(["resume", "-q", "--json", "--store", &db.spec()])
        .output()
        .expect("resume")
}

/// A small deterministic generator (xorshift), so the kill points are seeded.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// How many artifacts the run writing into `db` has stored so far, once it has recorded
/// itself.
pub(crate) fn stored(db: &Db) -> Option<u64> {
    if db.count(&format!("SELECT count(*) FROM {}", db.table("runs")))? == 0 {
        return None;
    }
    db.count(&format!("SELECT count(*) FROM {}", db.table("artifacts")))
}

/// Wait until the run writing into `db` has stored at least `artifacts`, or `child` has
/// ended.
pub(crate) fn wait_stored(child: &mut std::process::Child, db: &Db, artifacts: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if stored(db).is_some_and(|n| n >= artifacts) || child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_run_killed_at_random_points_resumes_to_the_same_end_with_nothing_lost_or_duplicated() {
    killed_at_random_points_resumes_to_the_same_end(&|dir, name| {
        Db::sqlite(dir.join(format!("{name}.db")))
    });
}

#[test]
fn a_postgres_run_killed_at_random_points_resumes_to_the_same_end_with_nothing_lost_or_duplicated()
{
    killed_at_random_points_resumes_to_the_same_end(&|_, _| Db::postgres());
}

/// 20 seeded SIGKILLs of `murmur run` (a fifth during start-up), each run resumed: every
/// one ends as an uninterrupted run does.
fn killed_at_random_points_resumes_to_the_same_end(new_db: &dyn Fn(&Path, &str) -> Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = cascade_manifest(dir.path(), 300);
    // The reference run, timed to its first record: start-up kills are spread over that.
    let reference = new_db(dir.path(), "reference");
    let mut child = spawn_run(&manifest, &reference);
    let started = Instant::now();
    wait_stored(&mut child, &reference, 0);
    let startup_ms = started.elapsed().as_millis().max(1) as u64;
    let ended = child.wait().expect("reference run");
    assert!(ended.success(), "the reference run failed");
    let total = stored(&reference).expect("the reference run is recorded");
    let expected = fingerprint(&reference);
    assert_eq!(
        expected.0["WorkDiscovery"],
        300 + 60 + 12 + 3,
        "the workload's closed form"
    );

    let mut rng = Rng(0x5eed_2026_1125);
    let mut interrupted = 0;
    for trial in 0..20 {
        let db = new_db(dir.path(), &format!("trial-{trial}"));
        let mut child = spawn_run(&manifest, &db);
        // Every fifth kill lands during start-up (loading, creating the database); the
        // others while the run works, once it has stored a random share of what the
        // reference run stored (by progress, not time: this machine's speed varies).
        let delay = if trial % 5 == 0 {
            let delay = rng.next() % startup_ms;
            std::thread::sleep(Duration::from_millis(delay));
            format!("{delay} ms")
        } else {
            let at = rng.next() % total;
            wait_stored(&mut child, &db, at);
            format!("{at} artifacts stored")
        };
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        if !db.exists() {
            // Killed before the database was created: nothing to resume; run again.
            continue;
        }
        let was_running = db
            .open()
            .runs()
            .map(|r| {
                r.first()
                    .is_some_and(|r| r.status == murmur::RunStatus::Running)
            })
            .unwrap_or(false);
        interrupted += usize::from(was_running);
        let out = resume(&db);
        if !was_running && !out.status.success() {
            // Killed before the run was recorded at all: nothing to resume.
            continue;
        }
        assert!(
            out.status.success(),
            "trial {trial} (killed after {delay}): resume failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("resume --json prints the summary");
        assert_eq!(summary["status"], "complete", "trial {trial}");
        let got = fingerprint(&db);
        assert_eq!(
            got.0, expected.0,
            "trial {trial} (killed after {delay}): per-type counts"
        );
        assert!(
            got.1 == expected.1,
            "trial {trial} (killed after {delay}): (invocation, outputs) pairs differ"
        );
    }
    assert!(
        interrupted >= 10,
        "only {interrupted} of 20 kills landed mid-run: the test would prove little"
    );
}

/// Inputs (artifacts produced by `user`) that are durable in `db`, and how many distinct
/// input descriptions they carry; `None` while the database cannot be read yet.
fn durable_inputs(db: &Db) -> Option<(u64, u64)> {
    let (count, distinct) = match db {
        Db::Sqlite(_) => (
            "SELECT count(*) FROM artifacts WHERE json_extract(data, '$.producer') = 'user'",
            "SELECT count(DISTINCT json_extract(data, '$.payload.description'))
             FROM artifacts WHERE json_extract(data, '$.producer') = 'user'",
        ),
        Db::Postgres(_) => (
            "SELECT count(*) FROM murmur.artifacts WHERE data::jsonb ->> 'producer' = 'user'",
            "SELECT count(DISTINCT data::jsonb #>> '{payload,description}')
             FROM murmur.artifacts WHERE data::jsonb ->> 'producer' = 'user'",
        ),
    };
    Some((db.count(count)?, db.count(distinct)?))
}

#[test]
fn a_run_killed_while_its_inputs_are_still_being_published_resumes_with_each_input_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    killed_while_publishing_inputs(dir.path(), &Db::sqlite(dir.path().join("w.db")));
}

#[test]
fn a_postgres_run_killed_while_its_inputs_are_still_being_published_resumes_with_each_input_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    killed_while_publishing_inputs(dir.path(), &Db::postgres());
}

/// Inputs are published a chunk at a time while the workers run; a kill in the middle
/// leaves a prefix of them durable, and the resumed run publishes exactly the rest.
fn killed_while_publishing_inputs(dir: &Path, db: &Db) {
    let n = 3000;
    let manifest = cascade_manifest(dir, n);
    let mut child = spawn_run(&manifest, db);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut seen = None;
    while std::time::Instant::now() < deadline {
        if let Some((published, _)) = durable_inputs(db) {
            if published > 0 && published < n {
                child.kill().expect("SIGKILL");
                seen = Some(published);
                break;
            }
            if published >= n {
                break;
            }
        }
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    let _ = child.wait();
    let seen = seen.expect("the run was seen with only some of its inputs durable");
    let (at_kill, _) = durable_inputs(db).expect("readable after the kill");
    assert!(
        at_kill >= seen && at_kill < n,
        "killed with {at_kill} of {n} inputs durable"
    );

    let out = resume(db);
    assert!(
        out.status.success(),
        "resume failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("resume --json prints the summary");
    assert_eq!(summary["status"], "complete");
    assert_eq!(
        durable_inputs(db),
        Some((n, n)),
        "every input published once (killed with {at_kill} durable)"
    );
    let (counts, _) = fingerprint(db);
    let work = n + n.div_ceil(5) + n.div_ceil(25) + n.div_ceil(125);
    for t in [
        "WorkDiscovery",
        "AnalysisResult",
        "Implementation",
        "ValidationResult",
    ] {
        assert_eq!(counts[t], work, "{t}: the workload's closed form");
    }
}

#[test]
fn run_leaves_a_database_that_status_and_graph_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    status_and_graph_read_a_run(dir.path(), &Db::sqlite(dir.path().join("w.db")));
}

#[test]
fn run_leaves_a_postgres_database_that_status_and_graph_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    status_and_graph_read_a_run(dir.path(), &Db::postgres());
}

fn status_and_graph_read_a_run(dir: &Path, db: &Db) {
    let manifest = cascade_manifest(dir, 5);
    let db = db.spec();
    let out = murmur()
        .args(["run", "-q", "--store", &db])
        .arg(&manifest)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = murmur()
        .args(["status", "--store", &db])
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        text.contains("(complete)") && text.contains("phase analysis"),
        "{text}"
    );
    assert!(text.contains("agent analyzer"), "{text}");
    for (format, marker) in [
        ("mermaid", "flowchart LR"),
        ("dot", "digraph cascade"),
        ("json", "\"edges\""),
    ] {
        let out = murmur()
            .args(["graph", "--store", &db, "--format", format])
            .output()
            .expect("graph");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(marker),
            "{format}: {text}"
        );
    }
    let json = murmur()
        .args(["graph", "--store", &db, "--format", "json"])
        .output()
        .expect("graph");
    let graph: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    // 5 items → 5 + 1 + 1 + 1 work items, 4 artifacts each, and the completion record.
    assert_eq!(graph["nodes"].as_array().map(Vec::len), Some(33));
    assert!(
        graph["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n["phase"] == "analysis"))
    );
}

#[test]
fn the_default_store_is_a_database_beside_the_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = cascade_manifest(dir.path(), 2);
    let out = murmur()
        .args(["run", "-q"])
        .arg(&manifest)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("cascade.murmur.db").exists());
}

fn error_of(args: &[&str]) -> String {
    let out = murmur().args(args).output().expect("murmur runs");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a clear error, not a panic (exit 101) nor success"
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn a_file_that_is_not_a_database_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notes.db");
    std::fs::write(
        &path,
        "these are not the pages you are looking for\n".repeat(200),
    )
    .expect("write");
    let err = error_of(&["status", "--store", &format!("sqlite:{}", path.display())]);
    assert!(
        err.contains(&path.display().to_string()) && err.contains("not a murmur database"),
        "{err}"
    );
}

#[test]
fn a_truncated_database_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = cascade_manifest(dir.path(), 40);
    let db = dir.path().join("w.db");
    run_into(&manifest, &Db::sqlite(db.clone()));
    let bytes = std::fs::read(&db).expect("read");
    assert!(bytes.len() > 8192, "the database has several pages");
    std::fs::write(&db, &bytes[..bytes.len() / 2]).expect("truncate");
    for command in ["status", "resume", "graph"] {
        let err = error_of(&[command, "--store", &format!("sqlite:{}", db.display())]);
        assert!(err.contains(&db.display().to_string()), "{command}: {err}");
        assert!(
            err.contains("damaged") || err.contains("malformed"),
            "{command}: {err}"
        );
    }
}

#[test]
fn a_database_from_a_newer_murmur_is_refused_and_an_older_one_is_migrated() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Schema 1, as the first murmur that wrote databases made it, with a run in it.
    let old = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&old).expect("open");
        murmur::blackboard::sqlite::migrate(&conn, &old, 1).expect("schema 1");
        conn.execute(
            "INSERT INTO runs (workflow_id, started_at_ms, status, data) VALUES ('w1', 1, 'complete', ?1)",
            [serde_json::json!({
                "workflow_id": "w1", "name": "old", "manifest_path": "/x/workflow.toml",
                "manifest_text": "", "plugins": [], "status": "complete", "started_at_ms": 1,
                "finished_at_ms": 2, "summary": null
            })
            .to_string()],
        )
        .expect("insert");
        let has_events: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'events'",
                [],
                |r| r.get(0),
            )
            .expect("query");
        assert_eq!(has_events, 0, "schema 1 has no events table");
        conn.execute_batch(
            r#"INSERT INTO work_items (id, workflow_id, status, data) VALUES
               ('w1', 'w1', 'done', '{"id": "w1", "key": "parse"}'),
               ('w2', 'w1', 'done', '{"id": "w2"}');"#,
        )
        .expect("work of schema 1");
    }
    let store = DurableStore::sqlite(&old).expect("an older database is migrated");
    assert_eq!(
        store.runs().expect("runs")[0].name,
        "old",
        "its data survives"
    );
    drop(store);
    let conn = rusqlite::Connection::open(&old).expect("open");
    let version: String = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .expect("version");
    assert_eq!(
        version,
        murmur::blackboard::sqlite::SCHEMA_VERSION.to_string()
    );
    let keys: Vec<(String, String, String)> = conn
        .prepare("SELECT workflow_id, key, work_id FROM discovery_keys")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .expect("discovery keys");
    assert_eq!(
        keys,
        [("w1".to_string(), "parse".to_string(), "w1".to_string())],
        "the keys older work took are found by key"
    );
    conn.execute(
        "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
        [],
    )
    .expect("bump");
    drop(conn);
    let err = error_of(&["status", "--store", &format!("sqlite:{}", old.display())]);
    assert!(
        err.contains("was written by a newer murmur (schema version 99")
            && err.contains("upgrade murmur"),
        "{err}"
    );
}

/// A run with one invocation that spins until its deadline (`timeout_ms`): live
/// meanwhile. Written to `dir/slow.toml`.
pub(crate) fn slow_manifest(dir: &Path, timeout_ms: u64) -> PathBuf {
    let manifest = dir.join("slow.toml");
    let text = format!(
        "[workflow]\nname = \"slow\"\n[recovery]\nenabled = false\n{PHASES_AND_NOTE}{}\n[[input]]\ntype = \"Note\"\npayload = {{}}\n",
        probe("spinner", "mode = \"loop\"", "Note", None).replace(
            "world = \"agent\"\n",
            &format!("world = \"agent\"\nlimits = {{ timeout_ms = {timeout_ms} }}\n")
        ),
    );
    std::fs::write(&manifest, expand(&text)).expect("write");
    manifest
}

#[test]
fn a_second_process_never_writes_a_postgres_run_a_live_process_is_writing() {
    // Processes share a PostgreSQL database: each run is claimed, not the database.
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = slow_manifest(dir.path(), 20_000);
    let db = Db::postgres();
    let mut first = spawn_run(&manifest, &db);
    // Held by the process's writer connection, which names its pid.
    let holds = |pid: u32| {
        db.count(&format!(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted
               AND a.application_name LIKE 'murmur (pid {pid} %'"
        ))
        .is_some_and(|n| n > 0)
    };
    let claimed = Instant::now();
    // The claim is taken just before the run's record is first written: wait for both,
    // so the resume below finds the run to refuse.
    while !holds(first.id()) || stored(&db).is_none() {
        assert!(
            claimed.elapsed() < Duration::from_secs(60),
            "the first run never claimed its run"
        );
        assert!(
            first.try_wait().expect("wait").is_none(),
            "the first run ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = murmur()
        .args(["resume", "-q", "--store", &db.spec()])
        .output()
        .expect("murmur");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is being written by another process")
            && stderr.contains(&format!("(murmur (pid {} on ", first.id())),
        "{stderr}"
    );
    // Another run in the same database is another process's business.
    let other = cascade_manifest(dir.path(), 3);
    run_into(&other, &db);
    let status = murmur()
        .args(["status", "--store", &db.spec()])
        .output()
        .expect("status");
    assert!(
        status.status.success(),
        "reading needs no claim: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let slow_id = db
        .open()
        .runs()
        .expect("runs")
        .into_iter()
        .find(|r| r.name.as_str() == "slow")
        .expect("the slow run")
        .workflow_id;
    first.kill().expect("kill");
    first.wait().expect("reaped");
    // Its claim ended with its connection: a resume takes the run over.
    let mut again = murmur()
        .args([
            "resume",
            "-q",
            "--store",
            &db.spec(),
            "--workflow",
            &slow_id,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("resume");
    let waited = Instant::now();
    while !holds(again.id()) {
        assert!(
            again.try_wait().expect("wait").is_none(),
            "the resume ended without claiming the run"
        );
        assert!(waited.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(20));
    }
    again.kill().expect("kill");
    again.wait().expect("reaped");
}

#[test]
fn a_second_process_never_writes_a_database_a_live_run_is_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One invocation that spins until its 20 s deadline: the run is live meanwhile.
    let manifest = slow_manifest(dir.path(), 20_000);
    let db = Db::sqlite(dir.path().join("slow.db"));
    let mut first = spawn_run(&manifest, &db);
    let lock = dir.path().join("slow.db.lock");
    let claimed = std::time::Instant::now();
    while std::fs::read_to_string(&lock).map_or(true, |pid| pid.trim().is_empty()) {
        assert!(
            claimed.elapsed() < std::time::Duration::from_secs(60),
            "the first run never claimed the database"
        );
        assert!(
            first.try_wait().expect("wait").is_none(),
            "the first run ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let holder = format!("(pid {})", first.id());
    for args in [vec!["resume"], vec!["run"]] {
        let mut cmd = murmur();
        cmd.args(&args).arg("--store").arg(db.spec());
        if args[0] == "run" {
            cmd.arg(&manifest);
        }
        let out = cmd.output().expect("murmur");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("another murmur process") && stderr.contains(&holder),
            "{args:?}: {stderr}"
        );
    }
    // Reading a live run needs no claim.
    let status = murmur()
        .args(["status", "--store", &db.spec()])
        .output()
        .expect("status");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    first.kill().expect("kill");
    first.wait().expect("reaped");
    // Its claim ended with it: a resume claims the database (and is stopped there).
    let mut again = murmur()
        .args(["resume", "-q", "--store", &db.spec()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("resume");
    let mine = again.id().to_string();
    let waited = std::time::Instant::now();
    while std::fs::read_to_string(&lock).map_or(true, |pid| pid.trim() != mine) {
        assert!(
            again.try_wait().expect("wait").is_none(),
            "the resume ended without claiming the database"
        );
        assert!(waited.elapsed() < std::time::Duration::from_secs(60));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    again.kill().expect("kill");
    again.wait().expect("reaped");
}

#[test]
fn sigint_and_sigterm_stop_claiming_let_running_work_commit_and_resume_continues() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = cascade_manifest(dir.path(), 3000);
    let reference = Db::sqlite(dir.path().join("reference.db"));
    run_into(&manifest, &reference);
    let expected = fingerprint(&reference);
    let total = stored(&reference).expect("recorded");
    for (signal, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let db = Db::sqlite(dir.path().join(format!("signalled-{signal}.db")));
        let mut child = spawn_run(&manifest, &db);
        wait_stored(&mut child, &db, total / 4);
        // SAFETY: signalling a child process this test started and has not reaped.
        let sent = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        assert_eq!(sent, 0, "signal sent");
        let status = child.wait().expect("exits");
        assert_eq!(status.code(), Some(code), "signal {signal}");
        // It stopped in good order: nothing left running, the run left to resume.
        let store = db.open();
        let run = store.runs().expect("runs").remove(0);
        assert_eq!(run.status, murmur::RunStatus::Running, "signal {signal}");
        store.load(&run.workflow_id).expect("load");
        let invocations = store.invocations(&run.workflow_id).expect("invocations");
        assert!(
            invocations
                .iter()
                .all(|i| i.status != InvocationStatus::Running),
            "signal {signal}: the running invocations finished and committed"
        );
        let done = invocations
            .iter()
            .filter(|i| i.status == InvocationStatus::Done)
            .count();
        assert!(
            done > 0 && done < expected.1.len(),
            "signal {signal}: stopped mid-run ({done} of {} done)",
            expected.1.len()
        );
        drop(store);
        let out = resume(&db);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(fingerprint(&db), expected, "signal {signal}: the same end");
    }
}

#[test]
fn resume_refuses_a_plugin_file_that_changed_since_the_run_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let component = dir.path().join("p.wasm");
    std::fs::copy(plugin("probe"), &component).expect("copy");
    let manifest = dir.path().join("w.toml");
    let text = format!(
        "[workflow]\nname = \"w\"\n{PHASES_AND_NOTE}[[plugin]]\nname = \"p\"\npath = \"p.wasm\"\nworld = \"agent\"\nconfig = {{ mode = \"echo\" }}\n[[plugin.subscribe]]\ntype = \"Note\"\n[[input]]\ntype = \"Note\"\npayload = {{}}\n"
    );
    std::fs::write(&manifest, text).expect("write");
    let db = Db::sqlite(dir.path().join("w.db"));
    run_into(&manifest, &db);
    let then = murmur::plugin::cache::sha256_hex(&std::fs::read(&component).expect("read"));
    std::fs::copy(plugin("analyzer"), &component).expect("replace");
    let now = murmur::plugin::cache::sha256_hex(&std::fs::read(&component).expect("read"));
    let out = resume(&db);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("plugin 'p'")
            && stderr.contains(&format!(
                "(sha256 {then} then, {now} now); resume refuses to mix plugin versions"
            )),
        "{stderr}"
    );
}
