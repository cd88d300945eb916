//! `cargo xtask hot-code`: regenerate `host/hot-code.order`, the list of functions a run
//! executes, which the linker places together at the front of the binary's code.
//!
//! Why: once a workflow is loaded, `murmur` hands its start-up code back to the kernel
//! (`host/src/footprint.rs`), and what the run executes faults back in. The kernel maps
//! file-backed code in 64 KB fault-around windows or whole large folios (128 KB and more),
//! so ~500 hot functions (~700 KB) scattered over 23 MB of code kept ~80 windows (~5 MB)
//! resident. Packed together they fit in ~15 windows.
//!
//! How: each round builds the release binary with the current list, runs the benchmark
//! workloads and `murmur run` under `perf` (CPU samples and every minor page fault), and
//! adds every function of the binary that was sampled, or that faulted a page in, after
//! the start-up code was released — the first fault in `murmur::footprint` after its
//! `madvise` marks that moment, because the release drops the releasing code's own page.
//! A fault outside the packed region shows a function the list still misses, so rounds
//! go on until one adds nothing (or `--rounds` is reached). Existing entries keep their
//! place and names the binary no longer has are dropped, so the file changes only by what
//! a round learned. Symbol names carry a hash of the crate's metadata, which changes with
//! its dependencies: after a change to `Cargo.lock` the whole list must be relearned.
//!
//! Needs `perf` with permission to trace user space (`perf_event_paranoid` ≤ 1 or root).
//! A stale list is harmless: the linker ignores names the binary no longer has
//! (`--no-warn-symbol-ordering`), and those functions land wherever they would have.

use anyhow::{Context, Result, bail};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;

/// Where the list lives (read by `host/build.rs`).
const ORDER_FILE: &str = "host/hot-code.order";
/// The module whose page fault marks the end of start-up (see the module docs).
const RELEASE_MARKER: &str = "footprint";

/// Regenerate the list over at most `rounds` build-and-trace rounds.
pub fn hot_code(root: &Path, rounds: u32) -> Result<()> {
    if Command::new("perf").arg("--version").output().is_err() {
        bail!("`perf` is not installed (Debian: apt install linux-perf)");
    }
    let work = root.join("target/hot-code");
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let order_path = root.join(ORDER_FILE);
    let mut order = read_order(&order_path)?;
    for round in 1..=rounds {
        crate::status(Command::new("cargo").current_dir(root).args([
            "build",
            "--release",
            "--bin",
            "murmur",
        ]))?;
        // A private copy, so the path perf reports is this round's binary and a later
        // build cannot replace it under a running trace.
        let binary = work.join("murmur");
        std::fs::copy(root.join("target/release/murmur"), &binary)
            .context("cannot copy target/release/murmur")?;
        let mut seen: HashMap<String, u64> = HashMap::new();
        for args in workloads(&work) {
            let trace = trace(root, &work, &binary, &args)?;
            eprintln!(
                "xtask: round {round}: {:>3} page faults in the binary after start-up: murmur {}",
                trace.faults,
                args.join(" ")
            );
            for (name, n) in trace.functions {
                *seen.entry(name).or_default() += n;
            }
        }
        // Names this build no longer has (a function renamed or gone; a change to the
        // host crate's dependencies renames every one of its symbols) are dropped.
        let present = symbols(&binary)?;
        let before = order.len();
        order.retain(|name| present.contains(name));
        if order.len() < before {
            eprintln!(
                "xtask: round {round}: {} listed functions are no longer in the binary",
                before - order.len()
            );
        }
        let known: HashSet<&str> = order.iter().map(String::as_str).collect();
        let mut new: Vec<(String, u64)> = seen
            .into_iter()
            .filter(|(name, _)| !known.contains(name.as_str()))
            .collect();
        new.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        eprintln!(
            "xtask: round {round}: {} functions new to the list",
            new.len()
        );
        let done = new.is_empty();
        order.extend(new.into_iter().map(|(name, _)| name));
        let text: String = order.iter().map(|name| format!("{name}\n")).collect();
        std::fs::write(&order_path, text)
            .with_context(|| format!("cannot write {}", order_path.display()))?;
        if done {
            break;
        }
    }
    eprintln!("xtask: {} lists {} functions", ORDER_FILE, order.len());
    Ok(())
}

/// The commands whose run phase the list covers: the benchmark in each of its modes and
/// an ordinary `murmur run` on both stores.
fn workloads(work: &Path) -> Vec<Vec<String>> {
    let bench_db = format!("sqlite:{}", work.join("bench.db").display());
    let run_db = format!("sqlite:{}", work.join("run.db").display());
    let lines: [&[&str]; 7] = [
        &["bench", "cascade", "--n", "10000", "--json"],
        &["bench", "cascade", "--n", "10000", "--fresh", "--json"],
        &["bench", "cascade", "--n", "10000", "--native", "--json"],
        &[
            "bench",
            "cascade",
            "--n",
            "10000",
            "--manifest",
            "examples/cascade/reading-context.toml",
            "--json",
        ],
        &[
            "bench", "cascade", "--n", "10000", "--store", &bench_db, "--json",
        ],
        &[
            "run",
            "examples/cascade/workflow.toml",
            "--store",
            "memory",
            "-q",
            "--json",
        ],
        &[
            "run",
            "examples/cascade/workflow.toml",
            "--store",
            &run_db,
            "-q",
            "--json",
        ],
    ];
    lines
        .iter()
        .map(|line| line.iter().map(|s| s.to_string()).collect())
        .collect()
}

/// What one traced command showed.
struct Trace {
    /// Minor faults on the binary's own pages after start-up.
    faults: u64,
    /// Functions of the binary sampled or faulting after start-up, with their counts.
    functions: HashMap<String, u64>,
}

/// Run `murmur ARGS` under perf and read back what ran after start-up.
fn trace(root: &Path, work: &Path, binary: &Path, args: &[String]) -> Result<Trace> {
    for db in ["bench.db", "run.db"] {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(work.join(format!("{db}{suffix}")));
        }
    }
    let data = work.join("perf.data");
    let record = Command::new("perf")
        .current_dir(root)
        .args(["record", "-q", "-d", "--all-user", "-o"])
        .arg(&data)
        .args([
            "-e",
            "cpu-clock/freq=20000/",
            "-e",
            "minor-faults/period=1/",
            "--",
        ])
        .arg(binary)
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .context("cannot start perf record")?;
    if !record.success() {
        bail!("perf record of murmur {} failed ({record})", args.join(" "));
    }
    let script = Command::new("perf")
        .args([
            "script",
            "--no-demangle",
            "-F",
            "event,ip,sym,addr,dso",
            "-i",
        ])
        .arg(&data)
        .output()
        .context("cannot start perf script")?;
    if !script.status.success() {
        bail!(
            "perf script failed: {}",
            String::from_utf8_lossy(&script.stderr)
        );
    }
    Ok(read_trace(
        &String::from_utf8_lossy(&script.stdout),
        &binary.display().to_string(),
    ))
}

/// One `perf script` line: `EVENT: ADDR [SYM (DSO)] IP SYM (DSO)`.
struct Event<'a> {
    fault: bool,
    /// The faulting address's symbol and mapping (faults only).
    addr: Option<(&'a str, &'a str)>,
    /// The executing instruction's symbol and mapping.
    ip: Option<(&'a str, &'a str)>,
}

fn parse(line: &str) -> Option<Event<'_>> {
    let mut tokens = line.split_whitespace();
    let event = tokens.next()?.strip_suffix(':')?;
    // Each place is `ADDRESS SYMBOL (DSO)`, or a bare `ADDRESS` when perf has none (the
    // data address of a CPU sample): a `(DSO)` token closes the two before it.
    let mut places: Vec<Option<(&str, &str)>> = Vec::new();
    let mut pending: Vec<&str> = Vec::new();
    for token in tokens {
        if let Some(dso) = token.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
            let sym = pending.pop()?;
            let address = pending.pop()?;
            u64::from_str_radix(address, 16).ok()?;
            places.extend(pending.drain(..).map(|_| None));
            places.push(Some((sym, dso)));
        } else {
            pending.push(token);
        }
    }
    for bare in pending {
        u64::from_str_radix(bare, 16).ok()?;
        places.push(None);
    }
    let fault = event.starts_with("minor-faults");
    let ip = places.pop().flatten();
    let addr = if fault { places.pop().flatten() } else { None };
    Some(Event { fault, addr, ip })
}

fn read_trace(script: &str, binary: &str) -> Trace {
    let events: Vec<Event<'_>> = script.lines().filter_map(parse).collect();
    let start = events
        .iter()
        .rposition(|e| e.ip.is_some_and(|(sym, _)| sym.contains(RELEASE_MARKER)))
        .map_or(0, |i| i + 1);
    let mut trace = Trace {
        faults: 0,
        functions: HashMap::new(),
    };
    for event in &events[start..] {
        if event.fault && event.addr.is_some_and(|(_, dso)| dso == binary) {
            trace.faults += 1;
        }
        // Whatever it touched, an instruction of the binary that ran after start-up is code
        // the run needs.
        if let Some(sym) = ours(event.ip, binary) {
            *trace.functions.entry(sym.to_string()).or_default() += 1;
        }
        // A named constant in the binary's read-only data is placed by the same list.
        if let Some(sym) = ours(event.addr, binary) {
            *trace.functions.entry(sym.to_string()).or_default() += 1;
        }
    }
    trace
}

/// The symbol of `place` when it is a named symbol of `binary`.
fn ours<'a>(place: Option<(&'a str, &str)>, binary: &str) -> Option<&'a str> {
    place
        .filter(|(sym, dso)| *dso == binary && !sym.starts_with('['))
        .map(|(sym, _)| sym)
}

/// The names of `binary`'s defined symbols (`nm`).
fn symbols(binary: &Path) -> Result<HashSet<String>> {
    let out = Command::new("nm")
        .args(["--defined-only", "--no-demangle"])
        .arg(binary)
        .output()
        .context("cannot start nm (binutils)")?;
    if !out.status.success() {
        bail!("nm {} failed", binary.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2))
        .map(str::to_string)
        .collect())
}

fn read_order(path: &Path) -> Result<Vec<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIN: &str = "/w/target/hot-code/murmur";

    #[test]
    fn only_what_runs_after_the_release_marker_is_listed() {
        let script = format!(
            " cpu-clock/freq=20000/: 0 55b6 _ZN5early17hE ({BIN})\n\
             minor-faults/period=1/: 55b7 _ZN6murmur9footprint7release17hE ({BIN}) 55b7 _ZN6murmur9footprint7release17hE ({BIN})\n\
             cpu-clock/freq=20000/: 0 55b8 _ZN3hot17hE ({BIN})\n\
             minor-faults/period=1/: 55b9 _ZN4cold17hE ({BIN}) 55b9 _ZN4cold17hE ({BIN})\n\
             minor-faults/period=1/: 7f00 [unknown] (//anon) 55ba _ZN5alloc17hE ({BIN})\n\
             minor-faults/period=1/: 55bb _ZN5TABLE17hE ({BIN}) 7f01 memcpy (/usr/lib/libc.so.6)\n\
             cpu-clock/freq=20000/: 0 7f02 memcpy (/usr/lib/libc.so.6)\n"
        );
        let trace = read_trace(&script, BIN);
        let mut names: Vec<&str> = trace.functions.keys().map(String::as_str).collect();
        names.sort_unstable();
        // Not the start-up sample, not libc; the function that faulted anonymous memory ran.
        assert_eq!(
            names,
            [
                "_ZN3hot17hE",
                "_ZN4cold17hE",
                "_ZN5TABLE17hE",
                "_ZN5alloc17hE"
            ]
        );
        assert_eq!(trace.faults, 2);
    }

    #[test]
    fn a_line_that_is_not_an_event_is_skipped() {
        assert!(parse("").is_none());
        assert!(parse("garbage here").is_none());
        let e = parse(" cpu-clock/freq=20000/: 0 55b8 main (/bin/m)").map(|e| e.ip);
        assert_eq!(e, Some(Some(("main", "/bin/m"))));
    }
}
