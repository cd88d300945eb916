//! `cargo xtask`: the project's build tasks, in Rust so they run wherever cargo does.
//!
//! - `cargo xtask build-plugins [--plugins DIR] [--out DIR] [NAME…]`: build the guest
//!   plugins in `plugins/` (or a tree laid out like it) to WebAssembly components at
//!   `target/plugins/NAME.wasm` (or in DIR), installing the guest toolchains if missing;
//!   with names, only those (`triage`, `js-implementer`, `py-librarian`). It builds through
//!   `murmur-toolchain`, the code `murmur build` builds a plugin project with;
//! - `cargo xtask demo`: build the plugins and the host (release) and run
//!   `examples/auth-system`;
//! - `cargo xtask fuzz [--seconds N] [TARGET…]`: build the fuzz targets in `fuzz/` with
//!   libFuzzer's coverage instrumentation (stable toolchain, no cargo-fuzz needed) and run
//!   each for N seconds (default 60); fails on the first crash, naming its input;
//! - `cargo xtask soak [--kills N] [ARGS]`: build the plugins and the host (release) and
//!   run `murmur bench soak` (kill -9 and resume the cascade on SQLite N times, compared
//!   with an uninterrupted run; one JSON line);
//! - `cargo xtask test [ARGS]`: build the plugins and run every test (`cargo test --workspace ARGS`).
//!
//! The guest toolchains and how they are chosen and installed: `host/toolchain`
//! (`murmur_toolchain::rust`, `js`, `python`) and `docs/plugins.md`.

use anyhow::{Context, Result, bail};
use murmur_toolchain::process::{is_root, stale, which};
use murmur_toolchain::{js, python, rust};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    if let Err(e) = run() {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let root = root()?;
    match task.as_str() {
        "build-plugins" => {
            let plugins = Plugins::from_args(&root, &rest)?;
            build_plugins(&root, &plugins).map(|_| ())
        }
        "demo" => demo(&root),
        "soak" => soak(&root, &rest),
        "fuzz" => fuzz(&root, &rest),
        "test" => test(&root, &rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <build-plugins [--plugins DIR] [--out DIR] [NAME…] | demo | fuzz [--seconds N] [TARGET…] | soak [--kills N] [ARGS] | test [ARGS]>"
            );
            std::process::exit(2);
        }
    }
}

fn root() -> Result<PathBuf> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Ok(manifest_dir
        .parent()
        .context("xtask has no parent directory")?
        .to_path_buf())
}

fn status(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let st = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed ({st})");
    }
    Ok(())
}

/// The plugin crates (members of the plugins tree that build a `cdylib`), grouped by the
/// guest SDK world feature they enable. Each group is built by its own cargo command:
/// cargo unifies a dependency's features across the packages of one build, and a
/// component must carry exactly one world.
fn plugin_groups(plugins: &Path) -> Result<BTreeMap<String, Vec<String>>> {
    let mut groups: BTreeMap<String, Vec<String>> = Default::default();
    for entry in std::fs::read_dir(plugins)
        .with_context(|| format!("reading the plugins tree {}", plugins.display()))?
    {
        let text = std::fs::read_to_string(entry?.path().join("Cargo.toml")).unwrap_or_default();
        if let Some(name) = rust::cdylib_name(&text) {
            let world = rust::world_feature(&text).unwrap_or_default();
            groups.entry(world).or_default().push(name);
        }
    }
    for names in groups.values_mut() {
        names.sort();
    }
    Ok(groups)
}

/// Which plugins tree to build, where its components go, and which of its plugins.
struct Plugins {
    /// The tree: a cargo workspace of Rust plugins, `js/*.js`, `python/NAME/app.py`.
    dir: PathBuf,
    /// Where the components are written.
    out: PathBuf,
    /// Only these plugins (by component name without `.wasm`: `triage`, `js-implementer`,
    /// `py-librarian`); all when empty.
    only: Vec<String>,
}

impl Plugins {
    /// The repository's own (`plugins/` into `target/plugins`), or what `--plugins DIR`
    /// and `--out DIR` name; other arguments name the plugins to build.
    fn from_args(root: &Path, args: &[String]) -> Result<Self> {
        let mut plugins = Self {
            dir: root.join("plugins"),
            out: root.join("target/plugins"),
            only: Vec::new(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            // Absolute: the toolchains run in other directories.
            let value = |v: Option<&String>| -> Result<PathBuf> {
                let v = v.with_context(|| format!("{arg} needs a directory"))?;
                std::path::absolute(v).with_context(|| format!("{arg} {v}"))
            };
            match arg.as_str() {
                "--plugins" => plugins.dir = value(args.next())?,
                "--out" => plugins.out = value(args.next())?,
                other if other.starts_with('-') => {
                    bail!("build-plugins: unknown argument '{other}'")
                }
                name => plugins.only.push(name.to_string()),
            }
        }
        Ok(plugins)
    }

    fn wanted(&self, component: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|n| n == component)
    }
}

/// Build the plugins tree with the same functions `murmur build` uses for a project.
fn build_plugins(root: &Path, plugins: &Plugins) -> Result<Vec<PathBuf>> {
    let mut built = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let groups = plugin_groups(&plugins.dir)?;
    let rust_wanted: Vec<(&String, Vec<String>)> = groups
        .iter()
        .map(|(w, names)| {
            (
                w,
                names
                    .iter()
                    .filter(|n| plugins.wanted(n))
                    .cloned()
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, names)| !names.is_empty())
        .collect();
    if !rust_wanted.is_empty() {
        let toolchain = rust::choose()?;
        // One guest target directory whatever the tree: shared dependencies build once.
        let target_dir = root.join("target/wasm-guests");
        for (_, packages) in rust_wanted {
            seen.extend(packages.iter().cloned());
            built.extend(rust::build(
                toolchain,
                &plugins.dir,
                &packages,
                &target_dir,
                &plugins.out,
            )?);
        }
    }
    let wit = root.join("wit");
    let js_sources = std::fs::read_dir(plugins.dir.join("js"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "js"));
    for source in js_sources {
        let stem = source
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("plugin");
        let name = format!("js-{stem}");
        if !plugins.wanted(&name) {
            continue;
        }
        seen.insert(name.clone());
        let out = plugins.out.join(format!("{name}.wasm"));
        if stale(&out, &[&wit, &source]) {
            js::build(
                &plugins.dir.join("js"),
                &source,
                &wit,
                &world_of(&source),
                &out,
            )?;
        }
        built.push(out);
    }
    for entry in std::fs::read_dir(plugins.dir.join("python"))
        .into_iter()
        .flatten()
    {
        let dir = entry?.path();
        let app = dir.join("app.py");
        let dir_name = dir.file_name().and_then(|s| s.to_str()).unwrap_or("plugin");
        let name = format!("py-{dir_name}");
        if !app.exists() || !plugins.wanted(&name) {
            continue;
        }
        seen.insert(name.clone());
        let out = plugins.out.join(format!("{name}.wasm"));
        if stale(&out, &[&wit, &dir]) {
            python::build(&[&dir], "app", &wit, &world_of(&app), &out)?;
        }
        built.push(out);
    }
    if let Some(missing) = plugins.only.iter().find(|n| !seen.contains(*n)) {
        bail!(
            "build-plugins: no plugin '{missing}' in {} (Rust crates by name, js/NAME.js as js-NAME, python/NAME as py-NAME)",
            plugins.dir.display()
        );
    }
    eprintln!(
        "xtask: {} plugin components in {}",
        built.len(),
        plugins.out.display()
    );
    Ok(built)
}

/// The WIT world a JavaScript or Python plugin of this repository declares with a
/// `murmur-world: NAME` comment; `basic-agent` without one (these toolchains import every
/// interface of their world, used or not).
fn world_of(source: &Path) -> String {
    std::fs::read_to_string(source)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.split("murmur-world:").nth(1))
        .map(|w| w.trim().to_string())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "basic-agent".into())
}

/// The fuzz targets (`fuzz/fuzz_targets/NAME.rs`), and the most bytes each input may
/// have: a database needs pages, a manifest a few tables.
const FUZZ_TARGETS: &[(&str, usize)] = &[
    ("manifest", 16_384),
    ("payload", 4_096),
    ("outputs", 4_096),
    ("store", 65_536),
    ("llm_response", 4_096),
];

/// What `cargo fuzz` hands rustc: SanitizerCoverage for libFuzzer, and `cfg(fuzzing)`.
/// No sanitizer (`-Zsanitizer` needs nightly): the host is safe Rust and SQLite's C is
/// fuzzed upstream; what is looked for here is panics, aborts, hangs and memory blow-ups.
const FUZZ_RUSTFLAGS: &str = "-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
     -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
     -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing";

fn fuzz(root: &Path, args: &[String]) -> Result<()> {
    let mut seconds = 60u64;
    let mut chosen = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .context("--seconds needs a whole number")?;
            }
            name if FUZZ_TARGETS.iter().any(|(t, _)| *t == name) => chosen.push(name.to_string()),
            other => bail!(
                "fuzz: unknown argument '{other}' (targets: {})",
                FUZZ_TARGETS
                    .iter()
                    .map(|(t, _)| *t)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    // The host triple, named explicitly: with `--target`, RUSTFLAGS reach only the
    // targets' code, not build scripts (which would not link against libFuzzer).
    let version = Command::new("rustc").arg("-vV").output()?;
    let host = String::from_utf8_lossy(&version.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .context("rustc -vV names no host")?;
    let target_dir = root.join("target/fuzz");
    status(
        Command::new(env!("CARGO"))
            .current_dir(root.join("fuzz"))
            .env(
                "RUSTFLAGS",
                FUZZ_RUSTFLAGS
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            )
            .args(["build", "--release", "--target", &host, "--target-dir"])
            .arg(&target_dir),
    )?;
    let mut crashed = Vec::new();
    for (target, max_len) in FUZZ_TARGETS {
        if !chosen.is_empty() && !chosen.iter().any(|c| c == target) {
            continue;
        }
        let bin = target_dir.join(&host).join("release").join(target);
        // New inputs go to target/; the seeds and the regressions stay as committed.
        let corpus = target_dir.join("corpus").join(target);
        let artifacts = target_dir.join("artifacts").join(target);
        std::fs::create_dir_all(&corpus)?;
        std::fs::create_dir_all(&artifacts)?;
        let mut cmd = Command::new(&bin);
        cmd.arg(&corpus);
        for extra in ["fuzz/seeds", "fuzz/regressions"] {
            let dir = root.join(extra).join(target);
            if dir.is_dir() {
                cmd.arg(dir);
            }
        }
        cmd.arg(format!("-max_total_time={seconds}"))
            .arg(format!("-max_len={max_len}"))
            .arg("-timeout=10")
            .arg("-rss_limit_mb=4096")
            .arg("-print_final_stats=1")
            .arg(format!("-artifact_prefix={}/", artifacts.display()));
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        let ran = cmd
            .status()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        if !ran.success() {
            crashed.push(format!(
                "{target} ({ran}): its input is in {}; copy it to fuzz/regressions/{target}/ \
                 so tests/all/fuzzed.rs replays it",
                artifacts.display()
            ));
        }
    }
    if !crashed.is_empty() {
        bail!("fuzzing found crashes:\n  {}", crashed.join("\n  "));
    }
    Ok(())
}

fn soak(root: &Path, args: &[String]) -> Result<()> {
    let mut cmd = vec!["bench".to_string(), "soak".to_string()];
    cmd.extend_from_slice(args);
    release_murmur(root, &cmd)
}

fn demo(root: &Path) -> Result<()> {
    release_murmur(
        root,
        &["run", "examples/auth-system/workflow.toml", "--json"].map(String::from),
    )
}

/// Build the plugins and the host (release), then run `murmur ARGS` in the repository.
fn release_murmur(root: &Path, args: &[String]) -> Result<()> {
    build_plugins(root, &Plugins::from_args(root, &[])?)?;
    status(Command::new(env!("CARGO")).current_dir(root).args([
        "build",
        "--release",
        "-p",
        "murmur",
    ]))?;
    status(
        Command::new(root.join("target/release/murmur"))
            .current_dir(root)
            .args(args),
    )
}

fn test(root: &Path, args: &[String]) -> Result<()> {
    postgres()?;
    build_plugins(root, &Plugins::from_args(root, &[])?)?;
    let schemathesis = schemathesis(root)?;
    let chromedriver = browser()?;
    status(
        Command::new(env!("CARGO"))
            .current_dir(root)
            .env("MURMUR_SCHEMATHESIS", schemathesis)
            .env("MURMUR_CHROMEDRIVER", chromedriver)
            .args(["test", "--workspace"])
            .args(args),
    )
}

/// The PostgreSQL the store and worker tests create their databases on must answer:
/// they never skip, so say so before building for minutes.
fn postgres() -> Result<()> {
    if std::env::var_os("MURMUR_TEST_POSTGRES").is_some() {
        return Ok(()); // Another server, which the tests reach themselves.
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 5432));
    if std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5)).is_err() {
        bail!(
            "PostgreSQL is not listening on {addr}: the store and worker tests run against it \
             (trust authentication, user postgres, database test) and never skip; start it, \
             or set MURMUR_TEST_POSTGRES to a server the tests may create databases on"
        );
    }
    Ok(())
}

/// Debian's Chromium and its WebDriver, which the dashboard's test drives: installed
/// with apt (as root) when missing, as the guest toolchain is; the path of
/// `chromedriver`.
fn browser() -> Result<PathBuf> {
    const PACKAGES: [&str; 2] = ["chromium", "chromium-driver"];
    let (chromium, driver) = (
        Path::new("/usr/bin/chromium"),
        Path::new("/usr/bin/chromedriver"),
    );
    if chromium.exists() && driver.exists() {
        return Ok(driver.to_path_buf());
    }
    if !(which("apt-get") && is_root()) {
        bail!(
            "the dashboard's browser test needs Debian's Chromium: apt-get install {}",
            PACKAGES.join(" ")
        );
    }
    eprintln!(
        "xtask: installing the browser for the dashboard's test from Debian packages: {}",
        PACKAGES.join(" ")
    );
    status(Command::new("apt-get").arg("update").arg("-qq"))?;
    status(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["-o", "DPkg::Lock::Timeout=600"])
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(PACKAGES),
    )?;
    if !(chromium.exists() && driver.exists()) {
        bail!(
            "installed {}, but {} or {} is still missing",
            PACKAGES.join(" "),
            chromium.display(),
            driver.display()
        );
    }
    Ok(driver.to_path_buf())
}

/// The pinned schemathesis the service's API test runs against the served OpenAPI
/// document: installed from PyPI into its own virtual environment under `target/` (its
/// dependencies stay out of the Python that builds the Python plugins); the path of its
/// command.
fn schemathesis(root: &Path) -> Result<PathBuf> {
    const SCHEMATHESIS: &str = "schemathesis==4.32.5";
    let venv = root.join("target/schemathesis");
    let command = venv.join("bin/schemathesis");
    let pinned = venv.join("pinned");
    if command.exists() && std::fs::read_to_string(&pinned).ok().as_deref() == Some(SCHEMATHESIS) {
        return Ok(command);
    }
    status(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
    )
    .context("creating a virtual environment for schemathesis (needs Python 3 with venv)")?;
    status(Command::new(venv.join("bin/python")).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        SCHEMATHESIS,
    ]))
    .context("installing schemathesis from PyPI")?;
    std::fs::write(&pinned, SCHEMATHESIS)?;
    Ok(command)
}
