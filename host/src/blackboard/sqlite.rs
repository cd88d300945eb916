//! The SQLite store: durable by default, at nearly in-memory speed.
//!
//! One embedded database file (WAL mode) holds every run: artifacts, work items,
//! invocations (queued, running, done, failed, with attempts), the loop's events, and the
//! sha256 of every plugin version a run used. It is a [`DurableStore`] backend: reads come
//! from the in-memory mirror, and one writer thread writes each batch in one transaction.
//! `synchronous = NORMAL` survives the process being killed at any point; after a power
//! loss the last batches may be lost, never half-written.
//!
//! The schema is versioned (`meta.schema_version`): an older file is migrated when opened,
//! a newer one is refused.

use super::durable::{Backend, DurableStore, Loaded, Msg, Select, Writer, status_text};
use super::{KeyRecord, RunRecord, StoreError, StoredEvent};
use crate::artifact::Artifact;
use crate::invocation::InvocationRecord;
use crate::work::WorkItem;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The schema, one step per version. Never edit a step that has shipped: add one.
const MIGRATIONS: &[&str] = &[
    // 1: runs, artifacts, work items, invocations.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE runs (workflow_id TEXT PRIMARY KEY, started_at_ms INTEGER NOT NULL,
                        status TEXT NOT NULL, data TEXT NOT NULL);
     CREATE TABLE artifacts (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                             workflow_id TEXT NOT NULL, type_name TEXT NOT NULL, data TEXT NOT NULL);
     CREATE INDEX artifacts_by_workflow ON artifacts (workflow_id, seq);
     CREATE TABLE work_items (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                              workflow_id TEXT NOT NULL, status TEXT NOT NULL, data TEXT NOT NULL);
     CREATE INDEX work_items_by_workflow ON work_items (workflow_id, seq);
     CREATE TABLE invocations (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                               workflow_id TEXT NOT NULL, status TEXT NOT NULL, data TEXT NOT NULL);
     CREATE INDEX invocations_by_workflow ON invocations (workflow_id, seq);",
    // 2: the loop's events and the plugin versions each run used.
    "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, workflow_id TEXT NOT NULL,
                          at_ms INTEGER NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL);
     CREATE INDEX events_by_workflow ON events (workflow_id, seq);
     CREATE TABLE plugin_versions (workflow_id TEXT NOT NULL, name TEXT NOT NULL,
                                   path TEXT NOT NULL, sha256 TEXT NOT NULL,
                                   PRIMARY KEY (workflow_id, name));",
    // 3: plugin-private state.
    "CREATE TABLE kv (workflow_id TEXT NOT NULL, plugin TEXT NOT NULL, key TEXT NOT NULL,
                      value TEXT NOT NULL, PRIMARY KEY (workflow_id, plugin, key));",
    // 4: `seq` without AUTOINCREMENT. AUTOINCREMENT updated `sqlite_sequence` on every
    // insert (one more B-tree write per record); rows are never deleted, so a plain
    // INTEGER PRIMARY KEY (max + 1) still numbers them in insertion order.
    "CREATE TABLE artifacts_v4 (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
                         workflow_id TEXT NOT NULL, type_name TEXT NOT NULL, data TEXT NOT NULL);
     INSERT INTO artifacts_v4 (seq, id, workflow_id, type_name, data)
         SELECT seq, id, workflow_id, type_name, data FROM artifacts;
     DROP TABLE artifacts;
     ALTER TABLE artifacts_v4 RENAME TO artifacts;
     CREATE INDEX artifacts_by_workflow ON artifacts (workflow_id, seq);
     CREATE TABLE work_items_v4 (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
                         workflow_id TEXT NOT NULL, status TEXT NOT NULL, data TEXT NOT NULL);
     INSERT INTO work_items_v4 (seq, id, workflow_id, status, data)
         SELECT seq, id, workflow_id, status, data FROM work_items;
     DROP TABLE work_items;
     ALTER TABLE work_items_v4 RENAME TO work_items;
     CREATE INDEX work_items_by_workflow ON work_items (workflow_id, seq);
     CREATE TABLE invocations_v4 (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
                         workflow_id TEXT NOT NULL, status TEXT NOT NULL, data TEXT NOT NULL);
     INSERT INTO invocations_v4 (seq, id, workflow_id, status, data)
         SELECT seq, id, workflow_id, status, data FROM invocations;
     DROP TABLE invocations;
     ALTER TABLE invocations_v4 RENAME TO invocations;
     CREATE INDEX invocations_by_workflow ON invocations (workflow_id, seq);
     CREATE TABLE events_v4 (seq INTEGER PRIMARY KEY, workflow_id TEXT NOT NULL,
                             at_ms INTEGER NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL);
     INSERT INTO events_v4 (seq, workflow_id, at_ms, kind, data)
         SELECT seq, workflow_id, at_ms, kind, data FROM events;
     DROP TABLE events;
     ALTER TABLE events_v4 RENAME TO events;
     CREATE INDEX events_by_workflow ON events (workflow_id, seq);",
    // 5: idempotency keys of publishes from outside a run (`murmur serve`).
    "CREATE TABLE idempotency_keys (workflow_id TEXT NOT NULL, key TEXT NOT NULL,
                                    data TEXT NOT NULL, PRIMARY KEY (workflow_id, key));",
    // 6: lessons, kept per workflow name across its runs.
    "CREATE TABLE lessons (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
                           workflow TEXT NOT NULL, data TEXT NOT NULL);
     CREATE INDEX lessons_by_workflow ON lessons (workflow, seq);",
    // 7: work items by discovery key, for a run whose memory no longer holds its old
    // work. A table of its own, written only for keyed work, rather than an index on
    // the JSON that every work item's every write would evaluate.
    "CREATE TABLE discovery_keys (workflow_id TEXT NOT NULL, key TEXT NOT NULL,
                                  work_id TEXT NOT NULL, PRIMARY KEY (workflow_id, key))
         WITHOUT ROWID;
     INSERT OR IGNORE INTO discovery_keys (workflow_id, key, work_id)
         SELECT workflow_id, json_extract(data, '$.key'), id FROM work_items
         WHERE json_extract(data, '$.key') IS NOT NULL ORDER BY seq;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The SQLite [`Backend`]: one database file.
struct Sqlite {
    path: PathBuf,
    /// The writer's claim on the file (`claim_writer`), held while the store lives.
    claim: Mutex<Option<std::fs::File>>,
    /// A connection for reading what the mirror no longer holds, opened on first use.
    reader: Mutex<Option<Connection>>,
}

/// The writer thread's connection.
struct SqliteWriter {
    conn: Connection,
}

fn backend(path: &Path, what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("{}: {what}: {e}", path.display()))
}

/// Open `path` (creating it if missing) and bring its schema to [`SCHEMA_VERSION`].
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(|e| backend(path, "cannot open", e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| backend(path, "cannot configure", e))?;
    // The first statement that reads the file tells a database from anything else.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| backend(path, "is not a murmur database (or is damaged)", e))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(|e| backend(path, "cannot configure", e))?;
    migrate(&conn, path, SCHEMA_VERSION)?;
    Ok(conn)
}

/// The file's schema version (0 for an empty file).
fn version(conn: &Connection, path: &Path) -> Result<u32, StoreError> {
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| backend(path, "is not a murmur database (or is damaged)", e))?;
    if tables == 0 {
        return Ok(0);
    }
    let has_meta: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| backend(path, "cannot read", e))?;
    if has_meta == 0 {
        return Err(StoreError::Backend(format!(
            "{}: is an SQLite database, but not a murmur one (it has no meta table)",
            path.display()
        )));
    }
    let v: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| backend(path, "cannot read the schema version", e))?;
    v.as_deref()
        .unwrap_or("0")
        .parse()
        .map_err(|e| backend(path, "has an unreadable schema version", e))
}

/// Migrate `conn` up to `target` (tests use a lower target to make old files).
pub fn migrate(conn: &Connection, path: &Path, target: u32) -> Result<(), StoreError> {
    let current = version(conn, path)?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "{}: was written by a newer murmur (schema version {current}; this murmur reads up to {SCHEMA_VERSION}): upgrade murmur to open it",
            path.display()
        )));
    }
    if current >= target {
        return Ok(());
    }
    let run = || -> rusqlite::Result<()> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        for step in &MIGRATIONS[current as usize..target as usize] {
            conn.execute_batch(step)?;
        }
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![target.to_string()],
        )?;
        conn.execute_batch("COMMIT")
    };
    run().map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        backend(
            path,
            &format!("cannot migrate from schema {current} to {target}"),
            e,
        )
    })?;
    if current > 0 {
        tracing::info!(
            "{}: migrated from schema {current} to {target}",
            path.display()
        );
    }
    Ok(())
}

impl DurableStore {
    /// Open (or create) the SQLite database at `path`.
    pub fn sqlite(path: &Path) -> Result<Self, StoreError> {
        let conn = connect(path)?;
        DurableStore::start(
            Box::new(Sqlite {
                path: path.to_path_buf(),
                claim: Mutex::new(None),
                reader: Mutex::new(None),
            }),
            Box::new(SqliteWriter { conn }),
            "murmur-sqlite-writer",
        )
    }
}

impl Backend for Sqlite {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    /// Claim the database for writing a run: an exclusive lock on `PATH.lock` (holding
    /// this process's id) that lasts as long as the store, and ends with the process
    /// however it ends. A second process that claims a database a live run is writing
    /// is refused with a message naming the holder, so two writers never interleave one
    /// run. Reading (`status`, `graph`) needs no claim.
    fn claim_writer(&self) -> Result<(), StoreError> {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        let lock_path = PathBuf::from(format!("{}.lock", self.path.display()));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| backend(&lock_path, "cannot open the lock file", e))?;
        // SAFETY: flock on a file descriptor this function owns; LOCK_NB never blocks.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(StoreError::Backend(format!(
                "{}: another murmur process{} is writing a run in this database; wait for it to end, or stop it and `murmur resume` the run",
                self.path.display(),
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                }
            )));
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        *self.claim.lock().unwrap_or_else(|p| p.into_inner()) = Some(file);
        Ok(())
    }

    /// Check the file's integrity (reads every page): a truncated or corrupt file is an
    /// error naming it, never a panic.
    fn check(&self) -> Result<(), StoreError> {
        let conn =
            Connection::open(&self.path).map_err(|e| backend(&self.path, "cannot open", e))?;
        let verdict: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| backend(&self.path, "is damaged", e))?;
        if verdict != "ok" {
            return Err(StoreError::Backend(format!(
                "{}: is damaged: {verdict}",
                self.path.display()
            )));
        }
        Ok(())
    }

    fn runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let conn =
            Connection::open(&self.path).map_err(|e| backend(&self.path, "cannot open", e))?;
        let mut stmt = conn
            .prepare("SELECT data FROM runs ORDER BY started_at_ms DESC, workflow_id DESC")
            .map_err(|e| backend(&self.path, "cannot read runs", e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| backend(&self.path, "cannot read runs", e))?;
        let mut runs = Vec::new();
        for row in rows {
            let text = row.map_err(|e| backend(&self.path, "cannot read runs", e))?;
            runs.push(
                serde_json::from_str(&text)
                    .map_err(|e| backend(&self.path, "has an unreadable run record", e))?,
            );
        }
        Ok(runs)
    }

    fn load(&self, workflow_id: &str) -> Result<Loaded, StoreError> {
        let conn =
            Connection::open(&self.path).map_err(|e| backend(&self.path, "cannot open", e))?;
        fn rows<T: serde::de::DeserializeOwned>(
            conn: &Connection,
            path: &Path,
            table: &str,
            workflow_id: &str,
        ) -> Result<Vec<T>, StoreError> {
            // Insertion order: a table's `seq`, where it has one, is its rowid.
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT data FROM {table} WHERE workflow_id = ?1 ORDER BY rowid"
                ))
                .map_err(|e| backend(path, &format!("cannot read {table}"), e))?;
            let texts = stmt
                .query_map(params![workflow_id], |r| r.get::<_, String>(0))
                .map_err(|e| backend(path, &format!("cannot read {table}"), e))?;
            let mut out = Vec::new();
            for t in texts {
                let t = t.map_err(|e| backend(path, &format!("cannot read {table}"), e))?;
                out.push(
                    serde_json::from_str(&t).map_err(|e| {
                        backend(path, &format!("has an unreadable row in {table}"), e)
                    })?,
                );
            }
            Ok(out)
        }
        let artifacts: Vec<Artifact> = rows(&conn, &self.path, "artifacts", workflow_id)?;
        let work_items: Vec<WorkItem> = rows(&conn, &self.path, "work_items", workflow_id)?;
        let invocations: Vec<InvocationRecord> =
            rows(&conn, &self.path, "invocations", workflow_id)?;
        let mut stmt = conn
            .prepare("SELECT plugin, key, value FROM kv WHERE workflow_id = ?1")
            .map_err(|e| backend(&self.path, "cannot read kv", e))?;
        let kv = stmt
            .query_map(params![workflow_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(|e| backend(&self.path, "cannot read kv", e))?;
        let kv = kv
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| backend(&self.path, "cannot read kv", e))?;
        let keys: Vec<KeyRecord> = rows(&conn, &self.path, "idempotency_keys", workflow_id)?;
        Ok(Loaded {
            artifacts,
            work_items,
            invocations,
            kv,
            keys,
        })
    }

    fn select(&self, selects: &[Select]) -> Result<Vec<Vec<String>>, StoreError> {
        let mut reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        if reader.is_none() {
            *reader = Some(
                Connection::open(&self.path).map_err(|e| backend(&self.path, "cannot open", e))?,
            );
        }
        let Some(conn) = reader.as_mut() else {
            return Ok(Vec::new());
        };
        let fail = |e: rusqlite::Error| backend(&self.path, "cannot read", e);
        // One read transaction: every answer from the same snapshot.
        let tx = conn.transaction().map_err(fail)?;
        let mut out = Vec::with_capacity(selects.len());
        for select in selects {
            let (sql, args): (String, Vec<rusqlite::types::Value>) = match select {
                Select::One(t, id) => (
                    format!("SELECT data FROM {} WHERE id = ?1", t.name()),
                    vec![id.clone().into()],
                ),
                Select::All(t, workflow_id) => (
                    format!(
                        "SELECT data FROM {} WHERE workflow_id = ?1 ORDER BY rowid",
                        t.name()
                    ),
                    vec![workflow_id.clone().into()],
                ),
                Select::Key(workflow_id, key) => (
                    "SELECT data FROM idempotency_keys WHERE workflow_id = ?1 AND key = ?2"
                        .to_string(),
                    vec![workflow_id.clone().into(), key.clone().into()],
                ),
                Select::Discovery(workflow_id, key) => (
                    "SELECT w.data FROM discovery_keys k JOIN work_items w ON w.id = k.work_id
                     WHERE k.workflow_id = ?1 AND k.key = ?2"
                        .to_string(),
                    vec![workflow_id.clone().into(), key.clone().into()],
                ),
                Select::Older {
                    workflow_id,
                    before,
                    type_name,
                    limit,
                } => (
                    "SELECT data FROM artifacts WHERE workflow_id = ?1
                       AND (?2 IS NULL OR rowid < (SELECT rowid FROM artifacts WHERE id = ?2))
                       AND (?3 IS NULL OR type_name = ?3)
                     ORDER BY rowid DESC LIMIT ?4"
                        .to_string(),
                    vec![
                        workflow_id.clone().into(),
                        before.clone().into(),
                        type_name.clone().into(),
                        i64::try_from(*limit).unwrap_or(i64::MAX).into(),
                    ],
                ),
                Select::From {
                    workflow_id,
                    from,
                    limit,
                } => (
                    "SELECT data FROM artifacts WHERE workflow_id = ?1 ORDER BY rowid
                     LIMIT ?3 OFFSET ?2"
                        .to_string(),
                    vec![
                        workflow_id.clone().into(),
                        i64::try_from(*from).unwrap_or(i64::MAX).into(),
                        i64::try_from(*limit).unwrap_or(i64::MAX).into(),
                    ],
                ),
            };
            let mut stmt = tx.prepare_cached(&sql).map_err(fail)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(0))
                .map_err(fail)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)?;
            out.push(rows);
        }
        drop(tx);
        Ok(out)
    }

    fn events(&self, workflow_id: &str) -> Result<Vec<serde_json::Value>, StoreError> {
        let conn =
            Connection::open(&self.path).map_err(|e| backend(&self.path, "cannot open", e))?;
        let mut stmt = conn
            .prepare("SELECT data FROM events WHERE workflow_id = ?1 ORDER BY seq")
            .map_err(|e| backend(&self.path, "cannot read events", e))?;
        let texts = stmt
            .query_map(params![workflow_id], |r| r.get::<_, String>(0))
            .map_err(|e| backend(&self.path, "cannot read events", e))?;
        let mut out = Vec::new();
        for t in texts {
            let t = t.map_err(|e| backend(&self.path, "cannot read events", e))?;
            out.push(serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)));
        }
        Ok(out)
    }

    fn lessons(&self, workflow: Option<&str>) -> Result<Vec<crate::lessons::Lesson>, StoreError> {
        let conn =
            Connection::open(&self.path).map_err(|e| backend(&self.path, "cannot open", e))?;
        let fail = |e| backend(&self.path, "cannot read lessons", e);
        let mut stmt = conn
            .prepare("SELECT data FROM lessons WHERE ?1 IS NULL OR workflow = ?1 ORDER BY seq")
            .map_err(fail)?;
        let rows = stmt
            .query_map(params![workflow], |r| r.get::<_, String>(0))
            .map_err(fail)?;
        let mut lessons = Vec::new();
        for row in rows {
            let text = row.map_err(fail)?;
            lessons.push(
                serde_json::from_str(&text)
                    .map_err(|e| backend(&self.path, "has an unreadable lesson", e))?,
            );
        }
        Ok(lessons)
    }

    fn run(&self, workflow_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let conn =
            Connection::open(&self.path).map_err(|e| backend(&self.path, "cannot open", e))?;
        let text: Option<String> = conn
            .query_row(
                "SELECT data FROM runs WHERE workflow_id = ?1",
                params![workflow_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| backend(&self.path, "cannot read runs", e))?;
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| backend(&self.path, "has an unreadable run record", e))
        })
        .transpose()
    }

    fn events_after(
        &self,
        workflow_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let conn =
            Connection::open(&self.path).map_err(|e| backend(&self.path, "cannot open", e))?;
        let mut stmt = conn
            .prepare(
                "SELECT seq, at_ms, kind, data FROM events WHERE workflow_id = ?1 AND seq > ?2
                 ORDER BY seq LIMIT ?3",
            )
            .map_err(|e| backend(&self.path, "cannot read events", e))?;
        let rows = stmt
            .query_map(
                params![
                    workflow_id,
                    i64::try_from(after).unwrap_or(i64::MAX),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                },
            )
            .map_err(|e| backend(&self.path, "cannot read events", e))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, at_ms, kind, data) =
                row.map_err(|e| backend(&self.path, "cannot read events", e))?;
            out.push(StoredEvent {
                seq: seq as u64,
                at_ms: at_ms as u64,
                kind,
                data: serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data)),
            });
        }
        Ok(out)
    }
}

fn json<T: serde::Serialize>(v: &T) -> rusqlite::Result<String> {
    serde_json::to_string(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

impl Writer for SqliteWriter {
    fn write(&mut self, batch: &[Msg]) -> Result<(), String> {
        write_batch(&mut self.conn, batch).map_err(|e| e.to_string())
    }

    fn claim_run(&mut self, _workflow_id: &str) -> Result<bool, StoreError> {
        // One process writes the file (`claim_writer`): its runs are all its own.
        Ok(false)
    }
}

fn write_batch(conn: &mut Connection, batch: &[Msg]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut art = tx.prepare_cached(
            "INSERT INTO artifacts (id, workflow_id, type_name, data) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut work = tx.prepare_cached(
            "INSERT INTO work_items (id, workflow_id, status, data) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, data = excluded.data",
        )?;
        let mut inv = tx.prepare_cached(
            "INSERT INTO invocations (id, workflow_id, status, data) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, data = excluded.data",
        )?;
        let mut ev = tx.prepare_cached(
            "INSERT INTO events (workflow_id, at_ms, kind, data) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut keys = tx.prepare_cached(
            "INSERT INTO idempotency_keys (workflow_id, key, data) VALUES (?1, ?2, ?3)",
        )?;
        let mut keyed = tx.prepare_cached(
            "INSERT OR IGNORE INTO discovery_keys (workflow_id, key, work_id) VALUES (?1, ?2, ?3)",
        )?;
        for msg in batch {
            match msg {
                Msg::Commit(c) => {
                    for a in &c.artifacts {
                        art.execute(params![
                            &*a.id.text(),
                            a.workflow_id,
                            a.type_name,
                            json(&**a)?
                        ])?;
                    }
                    for w in &c.work_items {
                        work.execute(params![
                            &*w.id.text(),
                            w.workflow_id,
                            w.status().to_string(),
                            json(w)?
                        ])?;
                        if let Some(key) = w.discovery_key() {
                            keyed.execute(params![w.workflow_id, key, &*w.id.text()])?;
                        }
                    }
                    for i in &c.invocations {
                        inv.execute(params![
                            &*i.id.text(),
                            i.workflow_id,
                            status_text(&i.status),
                            json(i)?
                        ])?;
                    }
                    for k in &c.keys {
                        keys.execute(params![k.workflow_id, k.key, json(k)?])?;
                    }
                }
                Msg::Run(r) => {
                    tx.execute(
                        "INSERT INTO runs (workflow_id, started_at_ms, status, data) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (workflow_id) DO UPDATE SET status = excluded.status, data = excluded.data",
                        params![r.workflow_id, r.started_at_ms as i64, r.status.as_str(), json(&r)?],
                    )?;
                    for p in &r.plugins {
                        tx.execute(
                            "INSERT INTO plugin_versions (workflow_id, name, path, sha256) VALUES (?1, ?2, ?3, ?4)
                             ON CONFLICT (workflow_id, name) DO UPDATE SET path = excluded.path, sha256 = excluded.sha256",
                            params![r.workflow_id, p.name, p.path, p.sha256],
                        )?;
                    }
                }
                Msg::Events(workflow_id, events) => {
                    let now = crate::artifact::now_ms() as i64;
                    for e in events {
                        ev.execute(params![workflow_id, now, e.kind(), json(e)?])?;
                    }
                }
                Msg::Kv(workflow_id, plugin, key, value) => match value {
                    Some(v) => {
                        tx.execute(
                            "INSERT INTO kv (workflow_id, plugin, key, value) VALUES (?1, ?2, ?3, ?4)
                             ON CONFLICT (workflow_id, plugin, key) DO UPDATE SET value = excluded.value",
                            params![workflow_id, plugin, key, v],
                        )?;
                    }
                    None => {
                        tx.execute(
                            "DELETE FROM kv WHERE workflow_id = ?1 AND plugin = ?2 AND key = ?3",
                            params![workflow_id, plugin, key],
                        )?;
                    }
                },
                Msg::Lessons(change) => {
                    for id in &change.forget {
                        tx.execute("DELETE FROM lessons WHERE id = ?1", params![id])?;
                    }
                    for l in &change.put {
                        tx.execute(
                            "INSERT INTO lessons (id, workflow, data) VALUES (?1, ?2, ?3)
                             ON CONFLICT (id) DO UPDATE SET data = excluded.data",
                            params![l.id, l.workflow, json(l)?],
                        )?;
                    }
                }
                Msg::Flush(_) | Msg::Claim(..) | Msg::Trim(_) => {}
            }
        }
    }
    tx.commit()
}

impl rusqlite::ToSql for crate::name::Name {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(
            rusqlite::types::ValueRef::Text(self.as_bytes()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::{ArtifactId, SharedArtifact, Viewer};
    use crate::blackboard::{ArtifactQuery, Commit, Store};
    use crate::invocation::{InvocationId, InvocationStatus};
    use crate::work::{Priority, WorkStatus};
    use std::sync::Arc;

    #[test]
    fn schema_4_keeps_every_record_and_its_order_and_numbers_new_ones_after_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v3.db");
        // Ids named by labels, as the rows' text.
        let text = |label: &str| ArtifactId::named(label).to_string();
        let artifact = |id: &str| Artifact {
            id: ArtifactId::named(id),
            type_name: "Note".into(),
            payload: serde_json::json!({"id": id}).into(),
            producer: "user".into(),
            workflow_id: "wf".into(),
            parent_ids: vec![].into(),
            audience: None,
            created_at_ms: 1,
            depth: 0,
            work_item: None,
        };
        {
            // A schema-3 file (AUTOINCREMENT) holding three artifacts, one deleted by hand
            // so its sequence is ahead of its rows.
            let conn = Connection::open(&path).expect("open");
            migrate(&conn, &path, 3).expect("schema 3");
            for id in ["c", "a", "b", "gone"] {
                conn.execute(
                    "INSERT INTO artifacts (id, workflow_id, type_name, data) VALUES (?1, 'wf', 'Note', ?2)",
                    params![text(id), json(&artifact(id)).expect("json")],
                )
                .expect("insert");
            }
            conn.execute("DELETE FROM artifacts WHERE id = ?1", [text("gone")])
                .expect("delete");
        }
        let store = DurableStore::sqlite(&path).expect("migrates to 4");
        store.load("wf").expect("load");
        let ids = |store: &DurableStore| -> Vec<String> {
            let all = ArtifactQuery {
                workflow_id: "wf".into(),
                limit: usize::MAX,
                ..Default::default()
            };
            store
                .query(&all, &Viewer::operator())
                .expect("query")
                .iter()
                .map(|a| a.id.to_string())
                .collect()
        };
        assert_eq!(
            ids(&store),
            ["c", "a", "b"].map(text),
            "publish order survives"
        );
        store
            .commit(Commit {
                artifacts: vec![SharedArtifact::new(artifact("d"))],
                ..Default::default()
            })
            .expect("commit");
        store.flush().expect("flush");
        drop(store);
        let conn = Connection::open(&path).expect("open");
        let seqs: Vec<(String, i64)> = conn
            .prepare("SELECT id, seq FROM artifacts ORDER BY seq")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            seqs,
            [
                (text("c"), 1),
                (text("a"), 2),
                (text("b"), 3),
                (text("d"), 4)
            ]
        );
        let autoincrement: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE sql LIKE '%AUTOINCREMENT%'",
                [],
                |r| r.get(0),
            )
            .expect("query");
        assert_eq!(autoincrement, 0, "no table keeps AUTOINCREMENT");
        let reopened = DurableStore::sqlite(&path).expect("reopen");
        reopened.load("wf").expect("load");
        assert_eq!(ids(&reopened), ["c", "a", "b", "d"].map(text));
    }

    #[test]
    fn writers_beyond_the_backlog_wait_for_the_file_and_every_commit_lands() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("backlog.db");
        let store = Arc::new(DurableStore::sqlite(&path).expect("open"));
        // Four threads, each committing more than the whole backlog holds.
        let per_thread = crate::blackboard::durable::MAX_BACKLOG + 100;
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for n in 0..per_thread as u64 {
                        let mut i = InvocationRecord::queued("wf", "a", vec![], t * 1_000_000 + n);
                        i.id = InvocationId::named(&format!("i{t}-{n}"));
                        store
                            .commit(Commit {
                                artifacts: vec![],
                                keys: vec![],
                                work_items: vec![],
                                invocations: vec![i],
                            })
                            .expect("commit");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("writer thread");
        }
        store.flush().expect("flush");
        drop(store);
        let conn = Connection::open(&path).expect("open the file");
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM invocations", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 4 * per_thread as i64);
    }

    #[test]
    fn claims_are_durable_and_the_first_claim_of_a_work_item_makes_it_active() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("claims.db");
        let store = DurableStore::sqlite(&path).expect("open");
        let mut work = WorkItem::new(ArtifactId::named("w1"), "wf", "analysis", Priority::Medium);
        work.open_invocations = 2;
        let inv = |id: &str, seq| {
            let mut i = InvocationRecord::queued("wf", "a", vec![], seq);
            i.id = InvocationId::named(id);
            i.work_item = Some(ArtifactId::named("w1"));
            i
        };
        store
            .commit(Commit {
                artifacts: vec![],
                keys: vec![],
                work_items: vec![work],
                invocations: vec![inv("i1", 0), inv("i2", 1)],
            })
            .expect("commit");
        for expected in ["i1", "i2"] {
            let claimed = store.claim_next("wf").expect("claim").expect("queued");
            assert_eq!(claimed.id, InvocationId::named(expected));
        }
        assert!(store.claim_next("wf").expect("claim").is_none());
        store.flush().expect("flush");
        drop(store);
        let reopened = DurableStore::sqlite(&path).expect("reopen");
        reopened.load("wf").expect("load");
        let w = reopened
            .work_item(&ArtifactId::named("w1"))
            .expect("read")
            .expect("kept");
        assert_eq!(w.status(), WorkStatus::Active);
        for id in ["i1", "i2"] {
            let i = reopened
                .invocation(&InvocationId::named(id))
                .expect("read")
                .expect("kept");
            assert_eq!(i.status, InvocationStatus::Running, "{id}");
        }
        assert_eq!(
            reopened
                .invocation(&InvocationId::named("i2"))
                .expect("read")
                .map(|i| i.attempts),
            Some(1)
        );
    }

    #[test]
    fn a_closed_store_has_written_everything_closed_its_database_and_refuses_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("closed.db");
        let store = DurableStore::sqlite(&path).expect("open");
        let work = WorkItem::new(ArtifactId::named("w1"), "wf", "analysis", Priority::Medium);
        let commit = |w: WorkItem| Commit {
            artifacts: vec![],
            keys: vec![],
            work_items: vec![w],
            invocations: vec![InvocationRecord::queued("wf", "a", vec![], 0)],
        };
        store.commit(commit(work.clone())).expect("commit");
        store.close().expect("close");
        store.close().expect("closing twice is harmless");
        // The writer has closed its connection: the write-ahead log is checkpointed away.
        assert!(
            !dir.path().join("closed.db-wal").exists(),
            "WAL left behind"
        );
        assert!(
            store.commit(commit(work)).is_err(),
            "a write after close must fail, not vanish"
        );
        // Still readable, as the CLI's summary needs; and everything reached the file.
        assert!(
            store
                .work_item(&ArtifactId::named("w1"))
                .expect("read")
                .is_some()
        );
        std::mem::forget(store);
        let reopened = DurableStore::sqlite(&path).expect("reopen");
        reopened.load("wf").expect("load");
        assert!(
            reopened
                .work_item(&ArtifactId::named("w1"))
                .expect("read")
                .is_some()
        );
        assert_eq!(reopened.work_items("wf").expect("read").len(), 1);
    }

    #[test]
    fn a_second_writer_is_refused_while_the_first_holds_the_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run.db");
        let first = DurableStore::sqlite(&path).expect("open");
        first.claim_writer().expect("the first claim");
        let second = DurableStore::sqlite(&path).expect("reading needs no claim");
        let e = second.claim_writer().expect_err("refused").to_string();
        assert!(
            e.contains("another murmur process")
                && e.contains(&format!("(pid {})", std::process::id())),
            "{e}"
        );
        drop(first);
        second.claim_writer().expect("free once the first is gone");
    }
}
