//! The `murmur` commands, one file each (the shape of wasmtime's `src/commands/`): each
//! command is a clap struct whose `execute` returns the process's exit status. The
//! library returns typed errors; here they become messages, and here — at the edge — the
//! command line and the environment are read.

mod approve;
mod bench;
mod bench_llm;
mod bench_serve;
mod build;
mod cancel;
mod client;
mod graph;
mod inspect;
mod lessons;
mod lessons_eval;
mod new;
mod report;
mod resume;
mod run;
mod scratch;
mod serve;
mod settings;
mod soak;
mod status;
mod store;
mod telemetry;
mod test;
mod worker;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Murmuration: self-improving multi-agent workflows on sandboxed WebAssembly agents.
#[derive(Debug, Parser)]
#[command(name = "murmur", version, about)]
pub(crate) struct Cli {
    /// More logging on stderr (-v: info, -vv: debug). `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Export trace spans (a run, each agent invocation, each model call) to this
    /// OpenTelemetry collector over OTLP/HTTP, e.g. `http://127.0.0.1:4318`.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "OTEL_EXPORTER_OTLP_ENDPOINT"
    )]
    otlp_endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Run(run::RunCommand),
    Resume(resume::ResumeCommand),
    Status(status::StatusCommand),
    Graph(graph::GraphCommand),
    Serve(serve::ServeCommand),
    Worker(worker::WorkerCommand),
    Cancel(cancel::CancelCommand),
    Approve(approve::ApproveCommand),
    Reject(approve::RejectCommand),
    New(new::NewCommand),
    Build(build::BuildCommand),
    Test(test::TestCommand),
    Lessons(lessons::LessonsCommand),
    Inspect(inspect::InspectCommand),
    Bench(bench::BenchCommand),
}

/// Parse the command line, set up logging, run the command; the process exit status.
pub(crate) fn main() -> Result<i32> {
    let cli = Cli::parse();
    // Dropped after the command: the spans still batched are exported then.
    let _telemetry = telemetry::init(cli.verbose, cli.otlp_endpoint.as_deref())?;
    match cli.command {
        Command::Run(c) => c.execute(),
        Command::Resume(c) => c.execute(),
        Command::Status(c) => c.execute(),
        Command::Graph(c) => c.execute(),
        Command::Serve(c) => c.execute(),
        Command::Worker(c) => c.execute(),
        Command::Cancel(c) => c.execute(),
        Command::Approve(c) => c.execute(),
        Command::Reject(c) => c.execute(),
        Command::New(c) => c.execute(),
        Command::Build(c) => c.execute(),
        Command::Test(c) => c.execute(),
        Command::Lessons(c) => c.execute(),
        Command::Inspect(c) => c.execute(),
        Command::Bench(c) => c.execute(),
    }
}
