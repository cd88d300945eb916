//! Worker processes on one PostgreSQL store: a cascade finished by several workers ends
//! exactly as one process ends it; workers and the coordinator killed at seeded points
//! lose and duplicate nothing; a worker that lost its lease cannot complete its task.

use crate::durability::{Db, Rng, cascade_manifest, fingerprint, stored};
use crate::helpers::*;
use murmur::Store as _;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A `murmur worker` process on `db`.
struct Worker {
    child: Option<Child>,
}

impl Worker {
    fn start(db: &Db, cache: &Path, lease_ms: u64) -> Self {
        Self::start_with(db, cache, lease_ms, &[])
    }

    fn start_with(db: &Db, cache: &Path, lease_ms: u64, args: &[&str]) -> Self {
        let child = murmur()
            .args(["worker", "--json", "--concurrency", "4", "--poll-ms", "100"])
            .args(["--lease-ms", &lease_ms.to_string(), "--store", &db.spec()])
            .args(args)
            .arg("--cache-dir")
            .arg(cache)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("murmur worker starts");
        Self { child: Some(child) }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid, not yet waited for.
        let sent = unsafe { libc::kill(self.pid() as libc::pid_t, signal) };
        assert_eq!(sent, 0, "signal {signal} sent");
    }

    /// SIGTERM; what it reports (claimed, completed, refused).
    fn stop(mut self) -> Value {
        self.signal(libc::SIGTERM);
        let child = self.child.take().expect("running");
        let out = child.wait_with_output().expect("the worker exits");
        assert!(out.status.success(), "the worker stops cleanly on SIGTERM");
        serde_json::from_slice(&out.stdout).expect("a JSON report")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // SIGKILL, as a machine that dies.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `murmur run --workers` into `db`, to the end; its summary.
fn coordinate(manifest: &Path, db: &Db) -> Value {
    let out = murmur()
        .args(["run", "-q", "--json", "--workers", "--store", &db.spec()])
        .arg(manifest)
        .output()
        .expect("murmur run --workers");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the summary")
}

/// `murmur run --workers --json` into `db`, running.
fn spawn_coordinator(manifest: &Path, db: &Db) -> Child {
    murmur()
        .args(["run", "-q", "--json", "--workers", "--store", &db.spec()])
        .arg(manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("murmur run --workers")
}

/// A cascade workload (N = 300), the end one process reaches with it, and a fresh
/// database with workers on it.
struct Setup {
    dir: tempfile::TempDir,
    manifest: std::path::PathBuf,
    expected: crate::durability::Fingerprint,
    /// The artifacts the run stores (without the completion record).
    total: u64,
    db: Db,
    workers: Vec<Worker>,
}

/// [`Setup`] with `workers` workers, each with a lease of `lease_ms`.
fn setup(workers: usize, lease_ms: u64) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = cascade_manifest(dir.path(), 300);
    let expected = reference(&manifest);
    let total = expected.0.values().sum::<u64>();
    let db = Db::postgres();
    let workers = (0..workers)
        .map(|_| Worker::start(&db, dir.path(), lease_ms))
        .collect();
    Setup {
        dir,
        manifest,
        expected,
        total,
        db,
        workers,
    }
}

/// The reference: the same cascade run by one process.
fn reference(manifest: &Path) -> crate::durability::Fingerprint {
    let db = Db::postgres();
    crate::durability::run_into(manifest, &db);
    fingerprint(&db)
}

#[test]
fn three_workers_finish_the_cascade_with_the_counts_one_process_reaches() {
    let Setup {
        dir: _dir,
        manifest,
        expected,
        db,
        workers,
        ..
    } = setup(3, 5000);
    let summary = coordinate(&manifest, &db);
    assert_eq!(summary["status"], "complete", "{summary}");
    assert_eq!(fingerprint(&db), expected, "the same end as one process");
    let reports: Vec<Value> = workers.into_iter().map(Worker::stop).collect();
    let answered: u64 = reports
        .iter()
        .map(|r| r["completed"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        answered,
        expected.1.len() as u64,
        "every invocation answered once, by some worker: {reports:?}"
    );
    assert!(
        reports.iter().all(|r| r["completed"].as_u64() > Some(0)),
        "each worker took a share: {reports:?}"
    );
    assert!(reports.iter().all(|r| r["refused"] == 0), "{reports:?}");
}

#[test]
fn twenty_seeded_kills_of_a_random_worker_end_in_the_identical_state() {
    let Setup {
        dir,
        manifest,
        expected,
        total,
        db,
        mut workers,
    } = setup(3, 1000);
    let total = total + 1;
    let mut coordinator = spawn_coordinator(&manifest, &db);
    let mut rng = Rng(0x5eed_2026_1206);
    let mut kills = 0;
    // Each kill once the run has stored another twenty-first of what it will store; a
    // fresh worker takes the dead one's place.
    for k in 1..=20u64 {
        let at = total * k / 21;
        let deadline = Instant::now() + Duration::from_secs(120);
        while stored(&db).is_none_or(|n| n < at) {
            assert!(Instant::now() < deadline, "the run stopped progressing");
            if coordinator.try_wait().expect("wait").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if coordinator.try_wait().expect("wait").is_some() {
            break;
        }
        let victim = (rng.next() % workers.len() as u64) as usize;
        drop(workers.remove(victim));
        kills += 1;
        workers.push(Worker::start(&db, dir.path(), 1000));
    }
    let out = coordinator.wait_with_output().expect("the run ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(kills >= 15, "only {kills} kills landed mid-run");
    assert_eq!(
        fingerprint(&db),
        expected,
        "after {kills} kills: nothing lost, nothing twice"
    );
}

#[test]
fn a_coordinator_killed_mid_run_is_resumed_to_the_identical_state() {
    let Setup {
        dir: _dir,
        manifest,
        expected,
        total,
        db,
        workers,
    } = setup(2, 1000);
    let mut coordinator = murmur()
        .args(["run", "-q", "--workers", "--store", &db.spec()])
        .arg(&manifest)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("murmur run --workers");
    crate::durability::wait_stored(&mut coordinator, &db, total / 2);
    assert!(
        coordinator.try_wait().expect("wait").is_none(),
        "the run ended before the kill"
    );
    coordinator.kill().expect("SIGKILL");
    let _ = coordinator.wait();
    // The workers go on answering the dead coordinator's tasks meanwhile; the new one
    // forgets those and hands the work out again.
    let out = murmur()
        .args(["resume", "-q", "--json", "--workers", "--store", &db.spec()])
        .output()
        .expect("murmur resume --workers");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("the summary");
    assert_eq!(summary["status"], "complete");
    assert_eq!(fingerprint(&db), expected);
    for w in workers {
        w.stop();
    }
}

#[test]
fn a_worker_stopped_past_its_lease_has_its_late_answer_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One invocation that spins to its 3 s deadline.
    let manifest = crate::durability::slow_manifest(dir.path(), 3_000);
    let db = Db::postgres();
    let first = Worker::start(&db, dir.path(), 1000);
    let coordinator = spawn_coordinator(&manifest, &db);
    let holds = |w: &Worker| {
        db.count(&format!(
            "SELECT count(*) FROM murmur.tasks WHERE state = 'claimed' AND owner LIKE '%:{}:%'",
            w.pid()
        ))
        .is_some_and(|n| n > 0)
    };
    let waited = Instant::now();
    while !holds(&first) {
        assert!(waited.elapsed() < Duration::from_secs(60), "never claimed");
        std::thread::sleep(Duration::from_millis(10));
    }
    first.signal(libc::SIGSTOP);
    // Past its lease: another worker takes the task under a new fence and answers.
    std::thread::sleep(Duration::from_millis(1500));
    let second = Worker::start(&db, dir.path(), 1000);
    let out = coordinator.wait_with_output().expect("the run ends");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("the summary");
    assert_eq!(summary["invocations"], 1, "{summary}");
    first.signal(libc::SIGCONT);
    let late = first.stop();
    let taken_over = second.stop();
    assert_eq!(taken_over["completed"], 1, "{taken_over}");
    assert_eq!(late["completed"], 0, "{late}");
    assert_eq!(late["refused"], 1, "the late answer is refused: {late}");
    // Nothing of the late answer reached the run.
    assert_eq!(
        db.count("SELECT count(*) FROM murmur.tasks")
            .expect("tasks"),
        0,
        "no task left behind"
    );
}

#[test]
fn the_cascade_benchmark_with_workers_checks_its_counts_and_leaves_no_database() {
    let server = murmur::blackboard::postgres::scratch::test_server();
    let out = murmur()
        .args(["bench", "cascade", "--n", "100", "--workers", "2", "--json"])
        .args(["--store", &server])
        .current_dir(repo())
        .output()
        .expect("murmur bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(figures["workers"], 2, "{figures}");
    // The benchmark fails its self-check unless the closed form holds: 100 items.
    assert_eq!(figures["artifacts"], 4 * (100 + 20 + 4 + 1), "{figures}");
    let db = Db::postgres();
    let left = db
        .count("SELECT count(*) FROM pg_database WHERE datname LIKE 'murmur_bench_%'")
        .expect("count");
    assert_eq!(left, 0, "the scratch database is dropped");
}

#[test]
fn a_server_with_workers_hands_its_runs_invocations_to_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = cascade_manifest(dir.path(), 40);
    let db = Db::postgres();
    let workers: Vec<Worker> = (0..2)
        .map(|_| Worker::start(&db, dir.path(), 5000))
        .collect();
    let server = crate::serve::Server::start_store(&db.spec(), "127.0.0.1:0", &["--workers"], &[]);
    let id = crate::serve::start(
        &server,
        serde_json::json!({ "manifest_path": manifest.display().to_string() }),
    );
    let summary = server.wait_ended(&id);
    assert_eq!(summary["status"], "complete", "{summary}");
    server.stop();
    let reports: Vec<Value> = workers.into_iter().map(Worker::stop).collect();
    let answered: u64 = reports
        .iter()
        .map(|r| r["completed"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        Some(answered),
        summary["invocations"].as_u64(),
        "the workers ran every invocation: {reports:?}"
    );
}

#[test]
fn the_llm_benchmark_with_workers_makes_every_call_in_the_workers() {
    let server = murmur::blackboard::postgres::scratch::test_server();
    let out = murmur()
        .args([
            "bench",
            "llm",
            "--n",
            "32",
            "--latency-ms",
            "50",
            "--in-flight",
            "4",
        ])
        .args(["--workers", "2", "--json", "--store", &server])
        .current_dir(repo())
        .output()
        .expect("murmur bench llm");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It fails its self-check unless the server answered N calls and the run has N
    // results; the ideal counts both workers' calls in flight.
    let figures: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(figures["workers"], 2, "{figures}");
    assert_eq!(figures["ideal_seconds"], 0.2, "⌈32 / 8⌉ × 50 ms: {figures}");
}

#[test]
fn a_run_a_worker_cannot_load_fails_its_invocation_with_the_reason_and_the_worker_lives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("echo.toml");
    let text = format!(
        "[workflow]\nname = \"echo\"\n[recovery]\nenabled = false\n[retry]\nmax_attempts = 1\n{PHASES_AND_NOTE}{}\n[[input]]\ntype = \"Note\"\npayload = {{}}\n",
        probe("echoer", "mode = \"echo\"", "Note", None),
    );
    std::fs::write(&manifest, expand(&text)).expect("write");
    let db = Db::postgres();
    let coordinator = spawn_coordinator(&manifest, &db);
    // Once the task is queued, the component it needs disappears from the database.
    let waited = Instant::now();
    while db
        .count("SELECT count(*) FROM murmur.tasks")
        .is_none_or(|n| n == 0)
    {
        assert!(waited.elapsed() < Duration::from_secs(60), "never queued");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut client = postgres::Client::connect(&db.spec(), postgres::NoTls).expect("connect");
    client
        .batch_execute("DELETE FROM murmur.components")
        .expect("delete");
    let worker = Worker::start(&db, dir.path(), 5000);
    let out = coordinator.wait_with_output().expect("the run ends");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("the summary");
    assert_eq!(summary["invocations"], 1, "{summary}");
    let store = db.open();
    let run = store.runs().expect("runs").remove(0);
    store.load(&run.workflow_id).expect("load");
    let invocation = store
        .invocations(&run.workflow_id)
        .expect("invocations")
        .remove(0);
    let error = invocation.error().unwrap_or_default().to_string();
    assert!(
        error.contains("cannot load run") && error.contains("is not in the database"),
        "{error}"
    );
    // The worker is still there to serve other runs.
    let report = worker.stop();
    assert_eq!(report["completed"], 1, "{report}");
}

#[test]
fn workers_need_a_postgres_store_and_say_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = cascade_manifest(dir.path(), 2);
    let sqlite = format!("sqlite:{}", dir.path().join("w.db").display());
    for args in [
        vec!["worker", "--store", sqlite.as_str()],
        vec![
            "run",
            "--workers",
            "--store",
            sqlite.as_str(),
            manifest.to_str().expect("utf-8"),
        ],
        vec!["bench", "cascade", "--n", "5", "--workers", "2"],
    ] {
        let out = murmur()
            .args(&args)
            .current_dir(repo())
            .output()
            .expect("murmur");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("postgres://"), "{args:?}: {stderr}");
    }
    // A recording of the plugins' HTTP exchanges would see none: they happen in the
    // workers.
    let out = murmur()
        .args(["run", "--workers", "--http-record", "x.jsonl", "--store"])
        .arg("postgres://postgres@127.0.0.1:1/none")
        .arg(&manifest)
        .output()
        .expect("murmur");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("with --workers they run in `murmur worker` processes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn queue_connections_cut_mid_run_reconnect_and_the_run_ends_identically() {
    let Setup {
        dir: _dir,
        manifest,
        expected,
        total,
        db,
        workers,
    } = setup(2, 2000);
    let mut coordinator = spawn_coordinator(&manifest, &db);
    let mut cut = 0;
    for k in 1..=3 {
        crate::durability::wait_stored(&mut coordinator, &db, total * k / 4);
        // Every LISTEN connection of the workers and the dispatcher, as a network
        // failure or a server restart would end them.
        cut += db
            .count(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name LIKE 'murmur queue%' AND datname = current_database()",
            )
            .expect("terminate");
    }
    let out = coordinator.wait_with_output().expect("the run ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cut >= 3, "only {cut} connections were cut");
    assert_eq!(fingerprint(&db), expected);
    let reports: Vec<Value> = workers.into_iter().map(Worker::stop).collect();
    assert!(
        reports.iter().all(|r| r["reconnects"].as_u64() >= Some(1)),
        "every worker reconnected: {reports:?}"
    );
}

#[test]
fn a_coordinator_whose_store_connection_is_cut_stops_and_resume_ends_identically() {
    let Setup {
        dir: _dir,
        manifest,
        expected,
        total,
        db,
        workers,
    } = setup(2, 2000);
    let mut coordinator = spawn_coordinator(&manifest, &db);
    crate::durability::wait_stored(&mut coordinator, &db, total / 3);
    // The store's connections (writer and reader), as a database restart ends them.
    let cut = db
        .count(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name LIKE 'murmur (pid {} %'",
            coordinator.id()
        ))
        .expect("terminate");
    assert!(cut >= 1, "the coordinator's writer was found");
    let out = coordinator
        .wait_with_output()
        .expect("the coordinator ends");
    assert_eq!(out.status.code(), Some(1), "it stops with an error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("postgres://"),
        "the error names the database: {stderr}"
    );
    let resumed = murmur()
        .args(["resume", "-q", "--json", "--workers", "--store", &db.spec()])
        .output()
        .expect("murmur resume --workers");
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(fingerprint(&db), expected, "nothing lost, nothing twice");
    for w in workers {
        w.stop();
    }
}

#[test]
fn a_worker_lets_go_of_runs_it_no_longer_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = cascade_manifest(dir.path(), 5);
    let db = Db::postgres();
    let worker = Worker::start_with(&db, dir.path(), 5000, &["--unload-after-ms", "100"]);
    let mut invocations = 0;
    for _ in 0..3 {
        let summary = coordinate(&manifest, &db);
        assert_eq!(summary["status"], "complete", "{summary}");
        invocations += summary["invocations"].as_u64().expect("invocations");
        // Longer than the worker keeps an idle run.
        std::thread::sleep(Duration::from_millis(600));
    }
    let report = worker.stop();
    assert_eq!(report["completed"].as_u64(), Some(invocations), "{report}");
    // Each run left the worker's memory once idle; a run may also have left it between
    // two of its own generations (100 ms without a task) and been read again.
    assert!(
        report["unloaded"].as_u64() >= Some(3),
        "each run left the worker's memory once idle: {report}"
    );
}
