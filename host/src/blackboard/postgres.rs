//! The PostgreSQL store: the blackboard on a database server several processes share.
//!
//! Every table lives in the `murmur` schema of the database the URL names, so a store
//! shares a database with anything else without a name clash. The schema is versioned
//! (`murmur.meta.schema_version`) like the SQLite file's: an older one is migrated when a
//! process connects (one migrator at a time, under a transaction-scoped advisory lock), a
//! newer one is refused.
//!
//! It is a [`DurableStore`] backend: a run's reads come from the in-memory mirror, and
//! one writer connection writes each batch in one transaction, every table's rows as one
//! `INSERT … SELECT FROM unnest(…)` (a batch of 8,000 records is a dozen statements, not
//! 8,000 round trips).
//!
//! Several processes write one database, so runs are claimed one by one, not the whole
//! database as SQLite is: a process writing a run holds a session advisory lock on it on
//! its writer connection (taken with the run's first record, or before `resume` goes
//! on). A second process writing the same run is refused with an error naming the holder,
//! and the lock ends with the holder's connection however its process ends.
//!
//! The blocking client runs a small runtime of its own and cannot be called from a task
//! of the server's; so the writer owns one connection on its thread, and reads go to a
//! reader thread that owns another (connected when first needed, again after a failure).

use super::durable::{Backend, DurableStore, Loaded, Msg, Select, Since, Writer, status_text};
use super::{KeyRecord, RunRecord, StoreError, StoredEvent};
use postgres::{Client, Config, NoTls};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Mutex, mpsc};
use std::time::Duration;

/// The schema, one step per version. Never edit a step that has shipped: add one.
const MIGRATIONS: &[&str] = &[
    // 1: runs, artifacts, work items, invocations, events, plugin versions, plugin-private
    // values, idempotency keys: what schema 5 of the SQLite file holds.
    "CREATE TABLE murmur.runs (workflow_id TEXT PRIMARY KEY, started_at_ms BIGINT NOT NULL,
                               status TEXT NOT NULL, data TEXT NOT NULL);
     CREATE TABLE murmur.artifacts (seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE,
                                    workflow_id TEXT NOT NULL, type_name TEXT NOT NULL,
                                    data TEXT NOT NULL);
     CREATE INDEX artifacts_by_workflow ON murmur.artifacts (workflow_id, seq);
     CREATE TABLE murmur.work_items (seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE,
                                     workflow_id TEXT NOT NULL, status TEXT NOT NULL,
                                     data TEXT NOT NULL);
     CREATE INDEX work_items_by_workflow ON murmur.work_items (workflow_id, seq);
     CREATE TABLE murmur.invocations (seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE,
                                      workflow_id TEXT NOT NULL, status TEXT NOT NULL,
                                      data TEXT NOT NULL);
     CREATE INDEX invocations_by_workflow ON murmur.invocations (workflow_id, seq);
     CREATE TABLE murmur.events (seq BIGSERIAL PRIMARY KEY, workflow_id TEXT NOT NULL,
                                 at_ms BIGINT NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL);
     CREATE INDEX events_by_workflow ON murmur.events (workflow_id, seq);
     CREATE TABLE murmur.plugin_versions (workflow_id TEXT NOT NULL, name TEXT NOT NULL,
                                          path TEXT NOT NULL, sha256 TEXT NOT NULL,
                                          PRIMARY KEY (workflow_id, name));
     CREATE TABLE murmur.kv (workflow_id TEXT NOT NULL, plugin TEXT NOT NULL, key TEXT NOT NULL,
                             value TEXT NOT NULL, PRIMARY KEY (workflow_id, plugin, key));
     CREATE TABLE murmur.idempotency_keys (workflow_id TEXT NOT NULL, key TEXT NOT NULL,
                                           data TEXT NOT NULL, PRIMARY KEY (workflow_id, key));",
    // 2: invocations handed to worker processes, and the components they run. The task
    // queue is UNLOGGED: it is rebuilt, not recovered — a coordinator taking a run over
    // forgets its tasks and queues its running invocations again — so its churn (four
    // row versions per invocation) need not go through the write-ahead log. A server
    // crash empties it; the coordinators lose their connections and `resume` goes on.
    "CREATE UNLOGGED TABLE murmur.tasks (id TEXT PRIMARY KEY, seq BIGSERIAL NOT NULL,
                                workflow_id TEXT NOT NULL, agent TEXT NOT NULL,
                                priority INT NOT NULL, state TEXT NOT NULL,
                                fence BIGINT NOT NULL DEFAULT 0, owner TEXT,
                                lease_until TIMESTAMPTZ, invocation TEXT NOT NULL, result TEXT);
     CREATE INDEX tasks_to_claim ON murmur.tasks (priority DESC, seq) WHERE state <> 'done';
     CREATE INDEX tasks_answered ON murmur.tasks (workflow_id) WHERE state = 'done';
     CREATE TABLE murmur.components (sha256 TEXT PRIMARY KEY, bytes BYTEA NOT NULL);",
    // 3: lessons, kept per workflow name across its runs.
    "CREATE TABLE murmur.lessons (seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE,
                                  workflow TEXT NOT NULL, data TEXT NOT NULL);
     CREATE INDEX lessons_by_workflow ON murmur.lessons (workflow, seq);",
    // 4: work items by discovery key (schema 7 of the SQLite file says why).
    "CREATE TABLE murmur.discovery_keys (workflow_id TEXT NOT NULL, key TEXT NOT NULL,
                                         work_id TEXT NOT NULL,
                                         PRIMARY KEY (workflow_id, key));
     INSERT INTO murmur.discovery_keys (workflow_id, key, work_id)
         SELECT workflow_id, data::jsonb->>'key', id FROM murmur.work_items
         WHERE data::jsonb->>'key' IS NOT NULL ORDER BY seq
         ON CONFLICT DO NOTHING;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The advisory lock migrations take (transaction-scoped): "murmur" in ASCII.
const MIGRATION_LOCK: i64 = 0x6d75_726d_7572;

/// A PostgreSQL connection string, parsed, and how it is shown (never with a password).
#[derive(Clone)]
pub struct PgUrl {
    config: Config,
    shown: String,
    /// The text it was parsed from (its options kept, for the async client).
    source: String,
}

impl PgUrl {
    /// Parse a `postgres://` or `postgresql://` URL (or a `key=value` string).
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let mut config = Config::from_str(url).map_err(|e| {
            StoreError::Backend(format!(
                "{}: not a PostgreSQL connection string: {e}",
                redact(url)
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name(&format!(
            "murmur (pid {} on {})",
            std::process::id(),
            hostname()
        ));
        let shown = shown(&config);
        Ok(Self {
            config,
            shown,
            source: url.to_string(),
        })
    }

    /// The text it was parsed from, every option in it (password included).
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// Connect. Only from a thread that is not running async tasks.
    fn connect(&self) -> Result<Client, StoreError> {
        self.config
            .connect(NoTls)
            .map_err(|e| StoreError::Backend(format!("{}: cannot connect: {e}", self.shown)))
    }

    /// The same server, another database (scratch databases for tests and benchmarks).
    pub fn with_dbname(&self, dbname: &str) -> Self {
        let mut config = self.config.clone();
        config.dbname(dbname);
        let shown = shown(&config);
        let mut url = Self {
            config,
            shown,
            source: String::new(),
        };
        url.source = url.url();
        url
    }
}

impl PgUrl {
    /// A `postgres://` URL naming what this one does, password included (what
    /// `--store` takes).
    pub fn url(&self) -> String {
        let c = &self.config;
        // RFC 3986 unreserved characters stay; everything else is percent-encoded.
        let enc = |v: &[u8]| -> String {
            v.iter()
                .map(|&b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect()
        };
        let mut auth = String::new();
        if let Some(u) = c.get_user() {
            auth.push_str(&enc(u.as_bytes()));
            if let Some(p) = c.get_password() {
                auth.push(':');
                auth.push_str(&enc(p));
            }
            auth.push('@');
        }
        let host = match c.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) if h.contains(':') => format!("[{h}]"),
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(postgres::config::Host::Unix(p)) => enc(p.display().to_string().as_bytes()),
            None => "localhost".into(),
        };
        let port = c.get_ports().first().copied().unwrap_or(5432);
        let db = c
            .get_dbname()
            .map(|d| enc(d.as_bytes()))
            .unwrap_or_default();
        format!("postgres://{auth}{host}:{port}/{db}")
    }
}

impl std::fmt::Display for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// `postgres://user@host:port/dbname`: what the URL names, without its password.
fn shown(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}{host}:{port}/{}",
        config
            .get_user()
            .map(|u| format!("{u}@"))
            .unwrap_or_default(),
        config.get_dbname().unwrap_or("")
    )
}

/// A connection string as text, its password (`:secret@`, `password=`) masked.
fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((auth, host)) = rest.split_once('@')
        && let Some((user, _)) = auth.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    url.split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// This machine's name, as connections and task owners give it.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "this host".into())
}

/// Bring the database's `murmur` schema to `target`; refuse a newer one.
pub fn migrate(client: &mut Client, url: &PgUrl, target: u32) -> Result<(), StoreError> {
    let fail = |what: &str, e: postgres::Error| {
        StoreError::Backend(format!("{url}: {what}: {}", pg_message(&e)))
    };
    let mut tx = client
        .transaction()
        .map_err(|e| fail("cannot migrate", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(|e| fail("cannot migrate", e))?;
    let has_schema: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'murmur')",
            &[],
        )
        .and_then(|r| r.try_get(0))
        .map_err(|e| fail("cannot read the schema", e))?;
    let version: u32 = if !has_schema {
        tx.batch_execute(
            "CREATE SCHEMA murmur;
             CREATE TABLE murmur.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )
        .map_err(|e| fail("cannot create the murmur schema", e))?;
        0
    } else {
        let has_meta: bool = tx
            .query_one("SELECT to_regclass('murmur.meta') IS NOT NULL", &[])
            .and_then(|r| r.try_get(0))
            .map_err(|e| fail("cannot read the schema", e))?;
        if !has_meta {
            return Err(StoreError::Backend(format!(
                "{url}: has a schema named murmur that is not a murmur store (it has no meta table)"
            )));
        }
        let row = tx
            .query_opt(
                "SELECT value FROM murmur.meta WHERE key = 'schema_version'",
                &[],
            )
            .map_err(|e| fail("cannot read the schema version", e))?;
        match row {
            None => 0,
            Some(row) => {
                let text: String = row
                    .try_get(0)
                    .map_err(|e| fail("cannot read the schema version", e))?;
                text.parse().map_err(|_| {
                    StoreError::Backend(format!(
                        "{url}: murmur.meta holds schema_version {text:?}, expected a number"
                    ))
                })?
            }
        }
    };
    if version > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "{url}: its murmur schema is version {version}, newer than this murmur's {SCHEMA_VERSION}: upgrade murmur"
        )));
    }
    for (step, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(version as usize)
    {
        tx.batch_execute(sql)
            .map_err(|e| fail(&format!("migration to schema {}", step + 1), e))?;
    }
    if target > version {
        tx.execute(
            "INSERT INTO murmur.meta (key, value) VALUES ('schema_version', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&target.to_string()],
        )
        .map_err(|e| fail("cannot record the schema version", e))?;
    }
    tx.commit().map_err(|e| fail("cannot migrate", e))
}

/// The server's own words for an error (`postgres::Error`'s display is often just
/// "db error").
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        None => e.to_string(),
    }
}

impl DurableStore {
    /// Connect to the PostgreSQL database `url` names and bring its schema up to date.
    pub fn postgres(url: &str) -> Result<Self, StoreError> {
        let url = PgUrl::parse(url)?;
        // The blocking client may not be used on a thread running async tasks (the
        // server opens its store on one): connect and migrate on a thread of its own.
        let connecting = url.clone();
        let client = std::thread::Builder::new()
            .name("murmur-postgres-connect".into())
            .spawn(move || -> Result<Client, StoreError> {
                let mut client = connecting.connect()?;
                migrate(&mut client, &connecting, SCHEMA_VERSION)?;
                Ok(client)
            })
            .map_err(|e| StoreError::Backend(format!("{url}: cannot start a thread: {e}")))?
            .join()
            .map_err(|_| StoreError::Backend(format!("{url}: connecting panicked")))??;
        let reader = Reader::start(url.clone())?;
        DurableStore::start(
            Box::new(Postgres {
                url: url.clone(),
                reader,
            }),
            Box::new(PgWriter {
                client,
                claimed: HashSet::new(),
            }),
            "murmur-postgres-writer",
        )
    }
}

/// A query the reader thread runs on its connection (it sends its own answer).
type Job = Box<dyn FnOnce(&mut Client) + Send>;

/// The reader thread: one connection, queries run in turn.
struct Reader {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Reader {
    fn start(url: PgUrl) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let shown = url.to_string();
        std::thread::Builder::new()
            .name("murmur-postgres-reader".into())
            .spawn(move || {
                let mut client: Option<Client> = None;
                while let Ok(job) = rx.recv() {
                    if client.as_ref().is_none_or(|c| c.is_closed()) {
                        client = url.connect().ok();
                    }
                    match client.as_mut() {
                        Some(c) => {
                            job(c);
                            if c.is_closed() {
                                client = None;
                            }
                        }
                        // Dropping the job tells its caller the connection failed.
                        None => drop(job),
                    }
                }
            })
            .map_err(|e| {
                StoreError::Backend(format!("{shown}: cannot start the reader thread: {e}"))
            })?;
        Ok(Self {
            jobs: Mutex::new(tx),
        })
    }
}

/// The PostgreSQL [`Backend`].
struct Postgres {
    url: PgUrl,
    reader: Reader,
}

impl Postgres {
    /// Run `query` on the reader's connection and wait for its answer.
    fn read<T: Send + 'static>(
        &self,
        what: &'static str,
        query: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move |client| {
            let _ = tx.send(query(client).map_err(|e| pg_message(&e)));
        });
        self.reader
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| {
                StoreError::Backend(format!("{}: the reader thread has stopped", self.url))
            })?;
        match rx.recv() {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::Backend(format!(
                "{}: cannot read {what}: {e}",
                self.url
            ))),
            Err(_) => Err(StoreError::Backend(format!(
                "{}: cannot read {what}: cannot connect",
                self.url
            ))),
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    url: &PgUrl,
    table: &str,
    texts: Vec<String>,
) -> Result<Vec<T>, StoreError> {
    texts
        .iter()
        .map(|t| {
            serde_json::from_str(t).map_err(|e| {
                StoreError::Backend(format!(
                    "{url}: has an unreadable row in murmur.{table}: {e}"
                ))
            })
        })
        .collect()
}

fn texts(rows: Vec<postgres::Row>) -> Result<Vec<String>, postgres::Error> {
    rows.iter().map(|r| r.try_get(0)).collect()
}

impl Backend for Postgres {
    fn describe(&self) -> String {
        self.url.to_string()
    }

    fn claim_writer(&self) -> Result<(), StoreError> {
        // Runs are claimed one by one (`Writer::claim_run`): processes share the database.
        Ok(())
    }

    fn check(&self) -> Result<(), StoreError> {
        self.read("the schema", |c| {
            c.batch_execute(
                "SELECT 1 FROM murmur.runs LIMIT 1; SELECT 1 FROM murmur.artifacts LIMIT 1;
                 SELECT 1 FROM murmur.work_items LIMIT 1; SELECT 1 FROM murmur.invocations LIMIT 1;
                 SELECT 1 FROM murmur.events LIMIT 1; SELECT 1 FROM murmur.kv LIMIT 1;
                 SELECT 1 FROM murmur.idempotency_keys LIMIT 1;
                 SELECT 1 FROM murmur.discovery_keys LIMIT 1;",
            )
        })
    }

    fn runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let rows = self.read("runs", |c| {
            texts(c.query(
                "SELECT data FROM murmur.runs ORDER BY started_at_ms DESC, workflow_id DESC",
                &[],
            )?)
        })?;
        parse(&self.url, "runs", rows)
    }

    fn lessons(&self, workflow: Option<&str>) -> Result<Vec<crate::lessons::Lesson>, StoreError> {
        let workflow = workflow.map(str::to_string);
        let rows = self.read("lessons", move |c| {
            texts(c.query(
                "SELECT data FROM murmur.lessons WHERE $1::text IS NULL OR workflow = $1 ORDER BY seq",
                &[&workflow],
            )?)
        })?;
        parse(&self.url, "lessons", rows)
    }

    fn run(&self, workflow_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let id = workflow_id.to_string();
        let rows = self.read("runs", move |c| {
            texts(c.query(
                "SELECT data FROM murmur.runs WHERE workflow_id = $1",
                &[&id],
            )?)
        })?;
        Ok(parse(&self.url, "runs", rows)?.pop())
    }

    fn load(&self, workflow_id: &str) -> Result<Loaded, StoreError> {
        let id = workflow_id.to_string();
        type Rows = (
            Vec<String>,
            Vec<String>,
            Vec<String>,
            Vec<(String, String, String)>,
            Vec<String>,
        );
        let (artifacts, work, invocations, kv, keys): Rows = self.read("a run", move |c| {
            // One snapshot: a run another process is writing reads consistently.
            let mut tx = c
                .build_transaction()
                .read_only(true)
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .start()?;
            let mut rows = |table: &str| -> Result<Vec<String>, postgres::Error> {
                texts(tx.query(
                    &format!("SELECT data FROM murmur.{table} WHERE workflow_id = $1 ORDER BY seq"),
                    &[&id],
                )?)
            };
            let artifacts = rows("artifacts")?;
            let work = rows("work_items")?;
            let invocations = rows("invocations")?;
            let kv = tx
                .query(
                    "SELECT plugin, key, value FROM murmur.kv WHERE workflow_id = $1",
                    &[&id],
                )?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                .collect::<Result<Vec<_>, postgres::Error>>()?;
            let keys = texts(tx.query(
                "SELECT data FROM murmur.idempotency_keys WHERE workflow_id = $1",
                &[&id],
            )?)?;
            tx.commit()?;
            Ok((artifacts, work, invocations, kv, keys))
        })?;
        Ok(Loaded {
            artifacts: parse(&self.url, "artifacts", artifacts)?,
            work_items: parse(&self.url, "work_items", work)?,
            invocations: parse(&self.url, "invocations", invocations)?,
            kv,
            keys: parse::<KeyRecord>(&self.url, "idempotency_keys", keys)?,
        })
    }

    fn select(&self, selects: &[Select]) -> Result<Vec<Vec<String>>, StoreError> {
        let selects = selects.to_vec();
        self.read("records", move |c| {
            // One snapshot: every answer from the same state of the run.
            let mut tx = c
                .build_transaction()
                .read_only(true)
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .start()?;
            let mut out = Vec::with_capacity(selects.len());
            for select in &selects {
                let rows = match select {
                    Select::One(t, id) => tx.query(
                        &format!("SELECT data FROM murmur.{} WHERE id = $1", t.name()),
                        &[id],
                    )?,
                    Select::All(t, workflow_id) => tx.query(
                        &format!(
                            "SELECT data FROM murmur.{} WHERE workflow_id = $1 ORDER BY seq",
                            t.name()
                        ),
                        &[workflow_id],
                    )?,
                    Select::Key(workflow_id, key) => tx.query(
                        "SELECT data FROM murmur.idempotency_keys
                         WHERE workflow_id = $1 AND key = $2",
                        &[workflow_id, key],
                    )?,
                    Select::Discovery(workflow_id, key) => tx.query(
                        "SELECT w.data FROM murmur.discovery_keys k
                         JOIN murmur.work_items w ON w.id = k.work_id
                         WHERE k.workflow_id = $1 AND k.key = $2",
                        &[workflow_id, key],
                    )?,
                    Select::Older {
                        workflow_id,
                        before,
                        type_name,
                        limit,
                    } => tx.query(
                        "SELECT data FROM murmur.artifacts WHERE workflow_id = $1
                           AND ($2::text IS NULL
                                OR seq < (SELECT seq FROM murmur.artifacts WHERE id = $2))
                           AND ($3::text IS NULL OR type_name = $3)
                         ORDER BY seq DESC LIMIT $4",
                        &[
                            workflow_id,
                            before,
                            type_name,
                            &i64::try_from(*limit).unwrap_or(i64::MAX),
                        ],
                    )?,
                    Select::From {
                        workflow_id,
                        from,
                        limit,
                    } => tx.query(
                        "SELECT data FROM murmur.artifacts WHERE workflow_id = $1 ORDER BY seq
                         LIMIT $3 OFFSET $2",
                        &[
                            workflow_id,
                            &i64::try_from(*from).unwrap_or(i64::MAX),
                            &i64::try_from(*limit).unwrap_or(i64::MAX),
                        ],
                    )?,
                };
                out.push(texts(rows)?);
            }
            tx.commit()?;
            Ok(out)
        })
    }

    fn load_since(&self, workflow_id: &str, since: Since) -> Result<(Loaded, Since), StoreError> {
        let id = workflow_id.to_string();
        type Rows = (
            (i64, Vec<String>),
            (i64, Vec<String>),
            Vec<(String, String, String)>,
        );
        let ((art_seq, artifacts), (work_seq, work), kv): Rows = self.read("a run", move |c| {
            let mut tx = c
                .build_transaction()
                .read_only(true)
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .start()?;
            let artifacts = Postgres::rows_since(&mut tx, "artifacts", &id, since.artifacts)?;
            let work = Postgres::rows_since(&mut tx, "work_items", &id, since.work_items)?;
            let kv = if since == Since::default() {
                tx.query(
                    "SELECT plugin, key, value FROM murmur.kv WHERE workflow_id = $1",
                    &[&id],
                )?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                .collect::<Result<Vec<_>, postgres::Error>>()?
            } else {
                Vec::new()
            };
            tx.commit()?;
            Ok((artifacts, work, kv))
        })?;
        Ok((
            Loaded {
                artifacts: parse(&self.url, "artifacts", artifacts)?,
                work_items: parse(&self.url, "work_items", work)?,
                invocations: Vec::new(),
                kv,
                keys: Vec::new(),
            },
            Since {
                artifacts: art_seq,
                work_items: work_seq,
            },
        ))
    }

    fn events(&self, workflow_id: &str) -> Result<Vec<serde_json::Value>, StoreError> {
        let id = workflow_id.to_string();
        let rows = self.read("events", move |c| {
            texts(c.query(
                "SELECT data FROM murmur.events WHERE workflow_id = $1 ORDER BY seq",
                &[&id],
            )?)
        })?;
        Ok(rows
            .into_iter()
            .map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)))
            .collect())
    }

    fn events_after(
        &self,
        workflow_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let id = workflow_id.to_string();
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.read("events", move |c| {
            c.query(
                "SELECT seq, at_ms, kind, data FROM murmur.events
                 WHERE workflow_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&id, &after, &limit],
            )?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<_, i64>(0)?,
                    r.try_get::<_, i64>(1)?,
                    r.try_get::<_, String>(2)?,
                    r.try_get::<_, String>(3)?,
                ))
            })
            .collect::<Result<Vec<_>, postgres::Error>>()
        })?;
        Ok(rows
            .into_iter()
            .map(|(seq, at_ms, kind, data)| StoredEvent {
                seq: seq as u64,
                at_ms: at_ms as u64,
                kind,
                data: serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data)),
            })
            .collect())
    }
}

impl Postgres {
    /// Rows of `table` of a run after row `after`: (their last row, their data).
    fn rows_since(
        tx: &mut postgres::Transaction<'_>,
        table: &str,
        id: &str,
        after: i64,
    ) -> Result<(i64, Vec<String>), postgres::Error> {
        let rows = tx.query(
            &format!(
                "SELECT seq, data FROM murmur.{table} WHERE workflow_id = $1 AND seq > $2 ORDER BY seq"
            ),
            &[&id, &after],
        )?;
        let last = match rows.last() {
            Some(r) => r.try_get(0)?,
            None => after,
        };
        let data = rows
            .iter()
            .map(|r| r.try_get(1))
            .collect::<Result<_, _>>()?;
        Ok((last, data))
    }
}

/// The writer thread's connection, and the runs it holds.
struct PgWriter {
    client: Client,
    claimed: HashSet<String>,
}

/// One table's rows of a batch, column by column (what `unnest` takes).
struct Columns<const N: usize>([Vec<String>; N]);

impl<const N: usize> Default for Columns<N> {
    fn default() -> Self {
        Self(std::array::from_fn(|_| Vec::new()))
    }
}

impl<const N: usize> Columns<N> {
    fn push(&mut self, row: [String; N]) {
        for (column, value) in self.0.iter_mut().zip(row) {
            column.push(value);
        }
    }
    fn is_empty(&self) -> bool {
        self.0[0].is_empty()
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, String> {
    serde_json::to_string(v).map_err(|e| e.to_string())
}

impl PgWriter {
    fn write_batch(&mut self, batch: &[Msg]) -> Result<(), String> {
        let mut artifacts = Columns::<4>::default();
        let mut work = Columns::<4>::default();
        let mut invocations = Columns::<4>::default();
        let mut keys = Columns::<3>::default();
        let mut keyed = Columns::<3>::default();
        let mut events = Columns::<3>::default();
        let mut event_times: Vec<i64> = Vec::new();
        // Runs, plugin versions and values: the last of each in the batch.
        let mut runs: Vec<&RunRecord> = Vec::new();
        let mut kv: HashMap<(&str, &str, &str), Option<&str>> = HashMap::new();
        let mut lessons: Vec<&crate::lessons::LessonChange> = Vec::new();
        for msg in batch {
            match msg {
                Msg::Commit(c) => {
                    for a in &c.artifacts {
                        artifacts.push([
                            a.id.text().to_string(),
                            a.workflow_id.to_string(),
                            a.type_name.to_string(),
                            json(&**a)?,
                        ]);
                    }
                    for w in &c.work_items {
                        work.push([
                            w.id.text().to_string(),
                            w.workflow_id.to_string(),
                            w.status().to_string(),
                            json(w)?,
                        ]);
                        if let Some(key) = w.discovery_key() {
                            keyed.push([
                                w.workflow_id.to_string(),
                                key.to_string(),
                                w.id.text().to_string(),
                            ]);
                        }
                    }
                    for i in &c.invocations {
                        invocations.push([
                            i.id.text().to_string(),
                            i.workflow_id.to_string(),
                            status_text(&i.status),
                            json(i)?,
                        ]);
                    }
                    for k in &c.keys {
                        keys.push([k.workflow_id.clone(), k.key.clone(), json(k)?]);
                    }
                }
                Msg::Run(r) => {
                    runs.retain(|old| old.workflow_id != r.workflow_id);
                    runs.push(r);
                }
                Msg::Events(workflow_id, list) => {
                    let now = crate::artifact::now_ms() as i64;
                    for e in list {
                        events.push([workflow_id.clone(), e.kind().to_string(), json(e)?]);
                        event_times.push(now);
                    }
                }
                Msg::Kv(workflow_id, plugin, key, value) => {
                    kv.insert((workflow_id, plugin, key), value.as_deref());
                }
                Msg::Lessons(change) => lessons.push(change),
                Msg::Flush(_) | Msg::Claim(..) | Msg::Trim(_) => {}
            }
        }
        for r in &runs {
            if !self.claimed.contains(&r.workflow_id) {
                self.claim_run(&r.workflow_id).map_err(|e| match e {
                    StoreError::RunHeld(why) | StoreError::Backend(why) => why,
                    other => other.to_string(),
                })?;
            }
        }
        let mut tx = self.client.transaction().map_err(|e| pg_message(&e))?;
        let sql = |e: postgres::Error| pg_message(&e);
        if !artifacts.is_empty() {
            let [id, wf, ty, data] = &artifacts.0;
            tx.execute(
                "INSERT INTO murmur.artifacts (id, workflow_id, type_name, data)
                 SELECT id, wf, ty, data FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                     WITH ORDINALITY AS u (id, wf, ty, data, n) ORDER BY n",
                &[id, wf, ty, data],
            )
            .map_err(sql)?;
        }
        for (table, rows) in [("work_items", &work), ("invocations", &invocations)] {
            if rows.is_empty() {
                continue;
            }
            let [id, wf, status, data] = &rows.0;
            tx.execute(
                &format!(
                    "INSERT INTO murmur.{table} (id, workflow_id, status, data)
                     SELECT id, wf, st, data FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                         WITH ORDINALITY AS u (id, wf, st, data, n) ORDER BY n
                     ON CONFLICT (id) DO UPDATE SET status = excluded.status, data = excluded.data"
                ),
                &[id, wf, status, data],
            )
            .map_err(sql)?;
        }
        if !keys.is_empty() {
            let [wf, key, data] = &keys.0;
            tx.execute(
                "INSERT INTO murmur.idempotency_keys (workflow_id, key, data)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[])",
                &[wf, key, data],
            )
            .map_err(sql)?;
        }
        if !keyed.is_empty() {
            // Every version of a keyed work item names its key: the first one stays.
            let [wf, key, work_id] = &keyed.0;
            tx.execute(
                "INSERT INTO murmur.discovery_keys (workflow_id, key, work_id)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
                 ON CONFLICT DO NOTHING",
                &[wf, key, work_id],
            )
            .map_err(sql)?;
        }
        if !events.is_empty() {
            let [wf, kind, data] = &events.0;
            tx.execute(
                "INSERT INTO murmur.events (workflow_id, at_ms, kind, data)
                 SELECT wf, at, kind, data FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[])
                     WITH ORDINALITY AS u (wf, at, kind, data, n) ORDER BY n",
                &[wf, &event_times, kind, data],
            )
            .map_err(sql)?;
        }
        for r in runs {
            tx.execute(
                "INSERT INTO murmur.runs (workflow_id, started_at_ms, status, data) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (workflow_id) DO UPDATE SET status = excluded.status, data = excluded.data",
                &[&r.workflow_id, &(r.started_at_ms as i64), &r.status.as_str(), &json(r)?],
            )
            .map_err(sql)?;
            for p in &r.plugins {
                tx.execute(
                    "INSERT INTO murmur.plugin_versions (workflow_id, name, path, sha256) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (workflow_id, name) DO UPDATE SET path = excluded.path, sha256 = excluded.sha256",
                    &[&r.workflow_id, &p.name, &p.path, &p.sha256],
                )
                .map_err(sql)?;
            }
        }
        let mut set = Columns::<4>::default();
        let mut unset = Columns::<3>::default();
        for ((wf, plugin, key), value) in kv {
            match value {
                Some(v) => set.push([wf.into(), plugin.into(), key.into(), v.into()]),
                None => unset.push([wf.into(), plugin.into(), key.into()]),
            }
        }
        if !set.is_empty() {
            let [wf, plugin, key, value] = &set.0;
            tx.execute(
                "INSERT INTO murmur.kv (workflow_id, plugin, key, value)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                 ON CONFLICT (workflow_id, plugin, key) DO UPDATE SET value = excluded.value",
                &[wf, plugin, key, value],
            )
            .map_err(sql)?;
        }
        if !unset.is_empty() {
            let [wf, plugin, key] = &unset.0;
            tx.execute(
                "DELETE FROM murmur.kv WHERE (workflow_id, plugin, key) IN
                     (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))",
                &[wf, plugin, key],
            )
            .map_err(sql)?;
        }
        for change in lessons {
            for id in &change.forget {
                tx.execute("DELETE FROM murmur.lessons WHERE id = $1", &[id])
                    .map_err(sql)?;
            }
            for l in &change.put {
                tx.execute(
                    "INSERT INTO murmur.lessons (id, workflow, data) VALUES ($1, $2, $3)
                     ON CONFLICT (id) DO UPDATE SET data = excluded.data",
                    &[&l.id, &l.workflow, &json(l)?],
                )
                .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }
}

/// The advisory lock key of run `workflow_id`.
const RUN_LOCK: &str = "SELECT hashtextextended('murmur run ' || $1, 0)";

impl Writer for PgWriter {
    fn write(&mut self, batch: &[Msg]) -> Result<(), String> {
        self.write_batch(batch)
    }

    fn claim_run(&mut self, workflow_id: &str) -> Result<bool, StoreError> {
        if self.claimed.contains(workflow_id) {
            return Ok(false);
        }
        let sql = |e: postgres::Error| StoreError::Backend(pg_message(&e));
        let key: i64 = self
            .client
            .query_one(RUN_LOCK, &[&workflow_id])
            .and_then(|r| r.try_get(0))
            .map_err(sql)?;
        let taken: bool = self
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .and_then(|r| r.try_get(0))
            .map_err(sql)?;
        if !taken {
            // Who holds it: the application name each murmur connection sets.
            let holder: Option<String> = self
                .client
                .query_opt(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                       AND l.classid::bigint = ($1::bigint >> 32) & 4294967295
                       AND l.objid::bigint = $1::bigint & 4294967295
                     LIMIT 1",
                    &[&key],
                )
                .ok()
                .flatten()
                .and_then(|r| r.try_get::<_, String>(0).ok())
                .filter(|name| !name.is_empty());
            return Err(StoreError::RunHeld(format!(
                "run {workflow_id} is being written by another process{}; wait for it to end, or stop it and `murmur resume` the run",
                holder.map(|h| format!(" ({h})")).unwrap_or_default()
            )));
        }
        self.claimed.insert(workflow_id.to_string());
        Ok(true)
    }
}

/// Scratch databases on a server: a test's or a benchmark's own, dropped after.
pub mod scratch {
    use super::{PgUrl, pg_message};
    use crate::blackboard::StoreError;

    /// The server tests create their databases on: `MURMUR_TEST_POSTGRES`, else the one
    /// every development and CI machine runs (127.0.0.1:5432, trust authentication).
    pub fn test_server() -> String {
        std::env::var("MURMUR_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    /// A database of its own for a test on [`test_server`]. Tests never skip when the
    /// server is missing: the error says what to start.
    pub fn for_test(prefix: &str) -> ScratchDatabase {
        match ScratchDatabase::create(&test_server(), prefix) {
            Ok(db) => db,
            Err(e) => panic!(
                "{e}\nPostgreSQL must run at 127.0.0.1:5432 with trust authentication (or set \
                 MURMUR_TEST_POSTGRES to a server the tests may create databases on)"
            ),
        }
    }

    /// A database created for one test or benchmark; dropped (with whatever still
    /// connects to it) when this is.
    pub struct ScratchDatabase {
        admin: PgUrl,
        name: String,
        url: PgUrl,
    }

    impl ScratchDatabase {
        /// Create database `prefix_<pid>_<n>` on the server `admin` reaches. Only from a
        /// thread that is not running async tasks.
        pub fn create(admin: &str, prefix: &str) -> Result<Self, StoreError> {
            use std::sync::atomic::{AtomicU64, Ordering};
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let admin = PgUrl::parse(admin)?;
            let name = format!(
                "{prefix}_{}_{}_{}",
                std::process::id(),
                crate::artifact::now_ms() % 1_000_000,
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let mut client = admin.connect()?;
            client
                .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .map_err(|e| {
                    StoreError::Backend(format!(
                        "{admin}: cannot create database {name}: {}",
                        pg_message(&e)
                    ))
                })?;
            let url = admin.with_dbname(&name);
            Ok(Self { admin, name, url })
        }

        /// Its `postgres://` URL (password included).
        pub fn url(&self) -> String {
            self.url.url()
        }
    }

    impl Drop for ScratchDatabase {
        fn drop(&mut self) {
            let (admin, name) = (self.admin.clone(), self.name.clone());
            // Off this thread: a drop may run where async tasks do.
            let _ = std::thread::spawn(move || {
                if let Ok(mut c) = admin.connect() {
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
                }
            })
            .join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::scratch::ScratchDatabase;
    use super::*;

    fn scratch() -> ScratchDatabase {
        super::scratch::for_test("murmur_pg")
    }

    /// Run `f` with a client of the scratch database, as an operator's psql would.
    fn psql<T>(db: &ScratchDatabase, f: impl FnOnce(&mut Client) -> T) -> T {
        let mut client = PgUrl::parse(&db.url())
            .expect("url")
            .connect()
            .expect("connect");
        f(&mut client)
    }

    #[test]
    fn a_run_written_by_one_process_is_refused_to_another_naming_the_holder() {
        let db = scratch();
        let first = DurableStore::postgres(&db.url()).expect("open");
        let second = DurableStore::postgres(&db.url()).expect("open");
        first.claim_run("wf-1").expect("first claim");
        first.claim_run("wf-1").expect("claiming again is harmless");
        let e = second.claim_run("wf-1").expect_err("refused").to_string();
        assert!(
            e.contains("run wf-1 is being written by another process")
                && e.contains(&format!("murmur (pid {}", std::process::id())),
            "{e}"
        );
        second.claim_run("wf-2").expect("another run is free");
        drop(first);
        second
            .claim_run("wf-1")
            .expect("free once the holder's connection is gone");
    }

    #[test]
    fn a_newer_schema_or_a_foreign_murmur_schema_is_refused() {
        let db = scratch();
        drop(DurableStore::postgres(&db.url()).expect("creates the schema"));
        psql(&db, |c| {
            c.batch_execute("UPDATE murmur.meta SET value = '99' WHERE key = 'schema_version'")
        })
        .expect("bump");
        let e = DurableStore::postgres(&db.url())
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("version 99, newer than this murmur's"), "{e}");

        let other = scratch();
        psql(&other, |c| {
            c.batch_execute("CREATE SCHEMA murmur; CREATE TABLE murmur.x (a int)")
        })
        .expect("foreign schema");
        let e = DurableStore::postgres(&other.url())
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("is not a murmur store"), "{e}");
    }

    #[test]
    fn a_database_of_schema_3_finds_the_discovery_keys_its_work_took() {
        let db = scratch();
        let url = PgUrl::parse(&db.url()).expect("url");
        psql(&db, |c| {
            migrate(c, &url, 3).expect("schema 3");
            c.batch_execute(
                r#"INSERT INTO murmur.work_items (id, workflow_id, status, data) VALUES
                   ('w1', 'wf', 'done', '{"id": "w1", "key": "parse"}'),
                   ('w2', 'wf', 'done', '{"id": "w2"}'),
                   ('w3', 'other', 'pending', '{"id": "w3", "key": "parse"}')"#,
            )
        })
        .expect("work of schema 3");
        drop(DurableStore::postgres(&db.url()).expect("migrates"));
        let keys: Vec<(String, String, String)> = psql(&db, |c| {
            c.query(
                "SELECT workflow_id, key, work_id FROM murmur.discovery_keys ORDER BY work_id",
                &[],
            )
            .map(|rows| {
                rows.iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
                    .collect()
            })
        })
        .expect("read");
        let row = |w: &str, k: &str, id: &str| (w.to_string(), k.to_string(), id.to_string());
        assert_eq!(
            keys,
            [row("wf", "parse", "w1"), row("other", "parse", "w3")]
        );
    }

    #[test]
    fn processes_connecting_at_once_migrate_once() {
        let db = scratch();
        let url = db.url();
        let opened: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || DurableStore::postgres(&url).map(|_| ()))
            })
            .collect();
        for o in opened {
            o.join()
                .expect("thread")
                .expect("every process opens the store");
        }
        let version: String = psql(&db, |c| {
            c.query_one(
                "SELECT value FROM murmur.meta WHERE key = 'schema_version'",
                &[],
            )
            .and_then(|r| r.try_get(0))
        })
        .expect("version");
        assert_eq!(version, SCHEMA_VERSION.to_string());
    }

    #[test]
    fn a_url_written_back_names_the_same_database_with_its_password() {
        let url =
            PgUrl::parse("postgres://me:p%40ss%20word@db.example:6543/runs%2Fone").expect("parse");
        assert_eq!(
            url.url(),
            "postgres://me:p%40ss%20word@db.example:6543/runs%2Fone"
        );
        assert_eq!(url.to_string(), "postgres://me@db.example:6543/runs/one");
        let again = PgUrl::parse(&url.url()).expect("parse again");
        assert_eq!(again.config.get_password(), Some(&b"p@ss word"[..]));
        assert_eq!(again.config.get_dbname(), Some("runs/one"));
    }

    #[test]
    fn a_bad_url_or_an_unreachable_server_is_an_error_without_the_password() {
        let e = DurableStore::postgres("postgres://me:s3cret@127.0.0.1:notaport/db")
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("not a PostgreSQL connection string"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        // Port 9 (discard) listens nowhere here: refused at once.
        let e = DurableStore::postgres("postgres://me:s3cret@127.0.0.1:9/db")
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains("postgres://me@127.0.0.1:9/db: cannot connect"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn a_store_opened_on_a_task_thread_serves_reads_there() {
        // The server opens and reads its store from async tasks: the blocking client
        // must never run on them.
        let db = scratch();
        let url = db.url();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let store = DurableStore::postgres(&url).expect("open on a task");
            use crate::blackboard::Store;
            assert!(store.runs().expect("runs on a task").is_empty());
            store.durable().expect("flush").await.expect("durable");
            store.close().expect("close");
        });
    }
}
