//! `murmur bench soak`: kill -9 the cascade on SQLite at seeded points spread over the
//! whole run, resume each, and compare it with an uninterrupted run.
//!
//! The durability promise is "a resumed run reaches the end an uninterrupted one does,
//! with nothing lost and nothing published twice". The test suite checks it on a few
//! kills; this counts it over many. Each trial starts a run in a child process (this
//! binary), waits until the run has stored a chosen share of what the reference run
//! stored (by progress, not time, so the points land across the whole run whatever the
//! machine's speed; one trial in ten lands during start-up instead, by time), sends
//! SIGKILL, then resumes (or, when the kill came before the run was recorded, runs
//! again) and compares every artifact type but the timed `WorkflowMetrics`, and the
//! multiset of (agent, inputs, outputs) of the invocations that ran.

use anyhow::{Context, Result, bail};
use murmur::Store;
use murmur::blackboard::{ArtifactQuery, DurableStore};
use murmur::invocation::InvocationStatus;
use murmur::summary::RunStatus;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::scratch::{Workdir, remove_db, workload};

/// What one soak found: the JSON line `murmur bench soak` prints.
#[derive(Debug, Serialize)]
pub(crate) struct SoakFigures {
    /// Kill-and-resume trials.
    pub trials: u32,
    /// Trials whose kill landed while the run was recorded as running (the rest: during
    /// start-up, before the run was recorded).
    pub mid_run: u32,
    /// Trials whose end matched the uninterrupted run's exactly.
    pub identical: u32,
    /// Artifacts and invocations the uninterrupted run has and a resumed one lacks,
    /// summed over the trials.
    pub lost: u64,
    /// Artifacts and invocations a resumed run has more often than the uninterrupted
    /// one, summed over the trials.
    pub duplicated: u64,
    /// Trials whose resume did not end `complete`.
    pub resume_failed: u32,
    /// Initial WorkDiscoveries of the cascade.
    pub n: u64,
    /// The kill points' seed.
    pub seed: u64,
    /// Artifacts the uninterrupted run stored.
    pub reference_artifacts: u64,
    /// Wall-clock time of the whole soak.
    pub seconds: f64,
}

/// The soak's settings.
pub(crate) struct Soak {
    pub kills: u32,
    pub n: u64,
    pub seed: u64,
    pub manifest: PathBuf,
    pub dir: Option<PathBuf>,
}

/// A run's end, as content: each artifact as "TYPE PAYLOAD" (ids differ between runs)
/// and each invocation that ran as "AGENT INPUTS -> OUTPUTS", counted.
type Fingerprint = BTreeMap<String, u64>;

/// A small deterministic generator (xorshift64), so the kill points are seeded.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Soak {
    pub(crate) fn run(self) -> Result<SoakFigures> {
        let started = Instant::now();
        let workdir = Workdir::new(self.dir.as_deref(), "soak")?;
        let dir = workdir.path.clone();
        let manifest = workload(&self.manifest, self.n, &dir)?;
        let murmur = std::env::current_exe().context("finding this murmur binary")?;

        // The uninterrupted run: what every trial must end as, and how long start-up
        // takes (the start-up kills are spread over it).
        let reference = dir.join("reference.db");
        remove_db(&reference)?;
        let mut child = spawn(&murmur, &["run"], &reference, Some(&manifest))?;
        let t0 = Instant::now();
        wait_stored(&mut child, &reference, 0)?;
        let startup_ms = t0.elapsed().as_millis().max(1) as u64;
        let ended = child.wait().context("waiting for the reference run")?;
        if !ended.success() {
            bail!("the uninterrupted reference run failed ({ended})");
        }
        let reference_artifacts =
            stored(&reference).context("the reference run recorded nothing")?;
        let expected = fingerprint(&reference)?;

        let mut rng = Rng(self.seed | 1);
        let mut figures = SoakFigures {
            trials: self.kills,
            mid_run: 0,
            identical: 0,
            lost: 0,
            duplicated: 0,
            resume_failed: 0,
            n: self.n,
            seed: self.seed,
            reference_artifacts,
            seconds: 0.0,
        };
        let by_progress: Vec<u32> = (0..self.kills).filter(|t| t % 10 != 0).collect();
        for trial in 0..self.kills {
            let db = dir.join(format!("trial-{trial}.db"));
            remove_db(&db)?;
            let mut child = spawn(&murmur, &["run"], &db, Some(&manifest))?;
            if trial % 10 == 0 {
                std::thread::sleep(Duration::from_millis(rng.next() % startup_ms));
            } else {
                // Stratified over the run: the k-th of the progress trials lands at a
                // random point of the k-th slice of the reference run's artifacts.
                let k = by_progress.iter().position(|t| *t == trial).unwrap_or(0);
                let share = (k as f64 + rng.unit()) / by_progress.len().max(1) as f64;
                let at = (share * reference_artifacts as f64) as u64;
                wait_stored(&mut child, &db, at)?;
            }
            let finished_first = child.try_wait().ok().flatten().is_some();
            let _ = child.kill();
            let _ = child.wait();
            let recorded = run_status(&db);
            if !finished_first && recorded == Some(RunStatus::Running) {
                figures.mid_run += 1;
            }
            // Recorded: resume it. Killed before that: run it again, as a user would.
            let out = match recorded {
                Some(_) => spawn(&murmur, &["resume"], &db, None)?,
                None => spawn(&murmur, &["run"], &db, Some(&manifest))?,
            }
            .wait_with_output()
            .context("waiting for the resumed run")?;
            let summary: serde_json::Value =
                serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
            if summary["status"] != "complete" {
                figures.resume_failed += 1;
                eprintln!(
                    "murmur: soak trial {trial}: the resumed run ended {}: {}",
                    summary["status"],
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                continue;
            }
            let got = fingerprint(&db)?;
            let (lost, duplicated) = difference(&expected, &got);
            figures.lost += lost;
            figures.duplicated += duplicated;
            if lost == 0 && duplicated == 0 {
                figures.identical += 1;
            } else {
                eprintln!(
                    "murmur: soak trial {trial}: {lost} lost, {duplicated} duplicated (database kept: {})",
                    db.display()
                );
                continue;
            }
            remove_db(&db)?;
        }
        if figures.identical == figures.trials {
            workdir.finish();
        }
        figures.seconds = started.elapsed().as_secs_f64();
        Ok(figures)
    }
}

/// `murmur COMMAND -q --json --store sqlite:DB [MANIFEST]`, its summary on a pipe.
fn spawn(murmur: &Path, command: &[&str], db: &Path, manifest: Option<&Path>) -> Result<Child> {
    let mut cmd = Command::new(murmur);
    cmd.args(command)
        .args(["-q", "--json", "--store"])
        .arg(format!("sqlite:{}", db.display()));
    if let Some(m) = manifest {
        cmd.arg(m);
    }
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", murmur.display()))
}

/// How many artifacts the run writing into `db` has stored, once it has recorded itself
/// (read-only, beside the writer).
fn stored(db: &Path) -> Option<u64> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .ok()?;
    let runs: i64 = c
        .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .ok()?;
    if runs == 0 {
        return None;
    }
    c.query_row("SELECT count(*) FROM artifacts", [], |r| r.get::<_, i64>(0))
        .ok()
        .map(|n| n as u64)
}

/// Wait until the run writing into `db` has stored at least `artifacts`, or has ended.
fn wait_stored(child: &mut Child, db: &Path, artifacts: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        if stored(db).is_some_and(|n| n >= artifacts) || child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    bail!("the run into {} made no progress for 300 s", db.display())
}

/// The status of the run `db` holds, if it holds one.
fn run_status(db: &Path) -> Option<RunStatus> {
    if !db.exists() {
        return None;
    }
    let store = DurableStore::sqlite(db).ok()?;
    let status = store.runs().ok()?.first().map(|r| r.status);
    let _ = store.close();
    status
}

/// What the finished run in `db` published, as content.
fn fingerprint(db: &Path) -> Result<Fingerprint> {
    let store = DurableStore::sqlite(db).with_context(|| format!("opening {}", db.display()))?;
    let run = store
        .runs()?
        .into_iter()
        .next()
        .with_context(|| format!("{} holds no run", db.display()))?;
    let id = run.workflow_id.clone();
    store.load(&id)?;
    let mut print = Fingerprint::new();
    let mut contents = BTreeMap::new();
    let everything = ArtifactQuery {
        workflow_id: id.clone(),
        type_name: None,
        tags: Vec::new(),
        limit: usize::MAX,
    };
    store.read(&mut |board| {
        board.visit_recent(
            &everything,
            &murmur::artifact::Viewer::operator(),
            &mut |a| {
                let content = format!(
                    "{} {}",
                    a.type_name,
                    normalized(a.type_name.as_str(), a.payload_text())
                );
                contents.insert(a.id, content.clone());
                if a.type_name.as_str() != "WorkflowMetrics" {
                    *print.entry(content).or_default() += 1;
                }
                true
            },
        )
    })?;
    let content = |ids: &[murmur::ArtifactId]| {
        let mut v: Vec<&str> = ids
            .iter()
            .map(|i| contents.get(i).map(String::as_str).unwrap_or("?"))
            .collect();
        v.sort_unstable();
        v.join(" | ")
    };
    for inv in store.invocations(&id)? {
        if inv.status == InvocationStatus::Running {
            bail!("{}: invocation {} is still running", db.display(), inv.id);
        }
        if inv.status != InvocationStatus::Done {
            continue;
        }
        let key = format!(
            "invocation {} {} -> {}",
            inv.agent,
            content(&inv.inputs),
            content(&inv.outputs)
        );
        *print.entry(key).or_default() += 1;
    }
    store.close()?;
    Ok(print)
}

/// A payload as compared: `WorkflowComplete` without what depends on timing (its
/// elapsed time, and the count of the timed `WorkflowMetrics` in its totals).
fn normalized(type_name: &str, payload: &str) -> String {
    if type_name != "WorkflowComplete" {
        return payload.to_string();
    }
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(payload) else {
        return payload.to_string();
    };
    if let Some(o) = v.as_object_mut() {
        o.remove("elapsed_ms");
        o.remove("artifacts");
        if let Some(by_type) = o.get_mut("by_type").and_then(|b| b.as_object_mut()) {
            by_type.remove("WorkflowMetrics");
        }
    }
    v.to_string()
}

/// What `got` lacks of `expected`, and what it has more of.
fn difference(expected: &Fingerprint, got: &Fingerprint) -> (u64, u64) {
    let mut lost = 0;
    let mut extra = 0;
    for (k, n) in expected {
        lost += n.saturating_sub(got.get(k).copied().unwrap_or(0));
    }
    for (k, n) in got {
        extra += n.saturating_sub(expected.get(k).copied().unwrap_or(0));
    }
    (lost, extra)
}

#[cfg(test)]
mod tests {
    use super::{Fingerprint, difference, normalized};

    #[test]
    fn a_difference_counts_what_is_missing_and_what_is_extra() {
        let a: Fingerprint = [("x".to_string(), 2), ("y".to_string(), 1)].into();
        let b: Fingerprint = [("x".to_string(), 1), ("z".to_string(), 3)].into();
        assert_eq!(difference(&a, &a), (0, 0));
        assert_eq!(difference(&a, &b), (2, 3));
    }

    #[test]
    fn workflow_complete_is_compared_without_its_timing() {
        let one = r#"{"status":"complete","elapsed_ms":5,"artifacts":9,"by_type":{"Note":3,"WorkflowMetrics":2}}"#;
        let two = r#"{"status":"complete","elapsed_ms":7,"artifacts":8,"by_type":{"Note":3,"WorkflowMetrics":1}}"#;
        assert_eq!(
            normalized("WorkflowComplete", one),
            normalized("WorkflowComplete", two)
        );
        assert_ne!(normalized("Note", one), normalized("Note", two));
    }
}
