//! Worker processes: invocations of runs in a PostgreSQL database, run on any machine.
//!
//! **The choice: one coordinator per run, many workers.** The process that drives a run
//! (`murmur run --workers`, `resume --workers`) holds the run's claim — the session
//! advisory lock every PostgreSQL writer takes on its run (`blackboard::postgres`) — and
//! keeps every decision of the cascade: publishing, subscriptions, deduplication,
//! blocking, retries and completion, exactly as a run in one process does, on its
//! in-memory mirror. What it hands out is only the execution of an invocation (context,
//! the sandboxed call, output checks, routing, validators), as a task in `murmur.tasks`;
//! a worker's answer comes back and is committed by the coordinator like a local one.
//!
//! Why not decide inside each worker's transaction: dedup, blocking and completion read
//! and change state across the whole run (every open work item of a phase, every
//! blocker), so each commit would lock much of the run and workers would queue on those
//! locks; the cascade's decisions are cheap (microseconds) next to an agent's call, so
//! one process makes them all without becoming the bottleneck, and the run's state never
//! needs reconciling. When the coordinator dies, its lock goes with its connection; any
//! process that resumes the run takes the lock, rebuilds the state from the store as
//! `resume` does, forgets the dead coordinator's tasks (answers to them are refused) and
//! queues its running invocations again.
//!
//! Exactly-once publishing across processes: an answer is accepted only under the
//! fencing token (`fence`) its task was claimed with, a lease that runs out hands the task
//! to another worker under a new fence, and the coordinator applies one answer per
//! invocation it dispatched. Wake-ups come from LISTEN/NOTIFY; a bounded poll covers a
//! notification lost with a connection.

pub mod dispatch;
pub mod queue;
pub mod worker;

pub use dispatch::{PgDispatch, publish_components};
pub use worker::{WorkerOptions, WorkerReport, work};
