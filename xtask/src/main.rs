//! `cargo xtask`: the project's build tasks, in Rust so they run wherever cargo does.
//!
//! - `cargo xtask build-plugins [--plugins DIR] [--out DIR]`: build every guest plugin in
//!   `plugins/` (or a plugins tree laid out like it, e.g. one `murmur new` wrote) to a
//!   WebAssembly component at `target/plugins/NAME.wasm` (or in DIR), installing the guest
//!   toolchain if missing;
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
//! Guest toolchains, in order of preference (see `docs/plugins.md`):
//! 1. rustup with the `wasm32-wasip2` target: cargo emits components directly;
//! 2. Debian's Rust (`rustc-web`, `/usr/bin/rustc`) with `-Zbuild-std` for
//!    `wasm32-unknown-unknown`, then each core module is wrapped into a component here
//!    with `wit-component` (no `wasm-tools` CLI needed). On a Debian machine without it,
//!    running as root, the packages are installed with apt (a package registry, no
//!    toolchain download). Set `MURMUR_GUEST_TOOLCHAIN=rustup|debian` to force one.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const DEBIAN_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "libstd-rust-web-dev",
    "lld-19",
];

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
                "usage: cargo xtask <build-plugins [--plugins DIR] [--out DIR] | demo | fuzz [--seconds N] [TARGET…] | soak [--kills N] [ARGS] | test [ARGS]>"
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Toolchain {
    RustupWasip2,
    DebianBuildStd,
}

fn rustup_has_wasip2() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-wasip2")
        })
        .unwrap_or(false)
}

fn debian_ready() -> bool {
    Path::new("/usr/bin/rustc").exists()
        && Path::new("/usr/bin/cargo").exists()
        && Path::new("/usr/lib/rustlib/src/rust/library").exists()
        && which("wasm-ld-19")
}

fn which(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn choose_toolchain() -> Result<Toolchain> {
    match std::env::var("MURMUR_GUEST_TOOLCHAIN").as_deref() {
        Ok("rustup") => return Ok(Toolchain::RustupWasip2),
        Ok("debian") => {}
        _ => {
            if rustup_has_wasip2() {
                return Ok(Toolchain::RustupWasip2);
            }
        }
    }
    if !debian_ready() {
        if which("apt-get") && is_root() {
            eprintln!(
                "xtask: installing the guest toolchain from Debian packages: {}",
                DEBIAN_PACKAGES.join(" ")
            );
            status(Command::new("apt-get").arg("update").arg("-qq"))?;
            status(
                Command::new("apt-get")
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .args(["install", "-y", "-qq", "--no-install-recommends"])
                    .args(DEBIAN_PACKAGES),
            )?;
        } else {
            bail!(
                "no WebAssembly guest toolchain found. Install one:\n  rustup target add wasm32-wasip2\n\
                 or, on Debian 12 as root: apt-get install {}",
                DEBIAN_PACKAGES.join(" ")
            );
        }
    }
    if !debian_ready() {
        bail!(
            "the Debian guest toolchain is still incomplete after installing {}",
            DEBIAN_PACKAGES.join(" ")
        );
    }
    Ok(Toolchain::DebianBuildStd)
}

/// The plugin crates (members of `plugins/` that build a `cdylib`), grouped by the
/// guest SDK world feature they enable. Each group is built by its own cargo command:
/// cargo unifies a dependency's features across the packages of one build, and a
/// component must carry exactly one world.
fn plugin_groups(plugins: &Path) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
    let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for name in plugin_crates(plugins)? {
        let text =
            std::fs::read_to_string(plugins.join(&name).join("Cargo.toml")).unwrap_or_default();
        let world = text
            .lines()
            .find(|l| l.trim_start().starts_with("murmur-guest"))
            .and_then(|l| l.split("features = [\"").nth(1))
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_string();
        groups.entry(world).or_default().push(name);
    }
    Ok(groups)
}

/// The plugin crates: members of the plugins tree that build a `cdylib`.
fn plugin_crates(plugins: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(plugins)
        .with_context(|| format!("reading the plugins tree {}", plugins.display()))?
    {
        let dir = entry?.path();
        let manifest = dir.join("Cargo.toml");
        if let Ok(text) = std::fs::read_to_string(&manifest)
            && text.contains("cdylib")
            && let Some(name) = text.lines().find_map(|l| {
                l.strip_prefix("name = \"")
                    .and_then(|r| r.strip_suffix('"'))
            })
        {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Which plugins tree to build, and where its components go.
struct Plugins {
    /// The tree: a cargo workspace of Rust plugins, `js/*.js`, `python/NAME/app.py`.
    dir: PathBuf,
    /// Where the components are written.
    out: PathBuf,
}

impl Plugins {
    /// The repository's own (`plugins/` into `target/plugins`), or what `--plugins DIR`
    /// and `--out DIR` name.
    fn from_args(root: &Path, args: &[String]) -> Result<Self> {
        let mut plugins = Self {
            dir: root.join("plugins"),
            out: root.join("target/plugins"),
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
                other => bail!("build-plugins: unknown argument '{other}'"),
            }
        }
        Ok(plugins)
    }
}

fn build_plugins(root: &Path, plugins: &Plugins) -> Result<Vec<PathBuf>> {
    let toolchain = choose_toolchain()?;
    let plugins_dir = &plugins.dir;
    // One guest target directory whatever the tree: shared dependencies build once.
    let target_dir = root.join("target/wasm-guests");
    let out_dir = &plugins.out;
    std::fs::create_dir_all(out_dir)?;
    let mut triple = "wasm32-wasip2";
    for packages in plugin_groups(plugins_dir)?.values() {
        let mut cmd = match toolchain {
            Toolchain::RustupWasip2 => {
                let mut cmd = Command::new("cargo");
                cmd.args(["build", "--release", "--target", "wasm32-wasip2"]);
                cmd
            }
            Toolchain::DebianBuildStd => {
                triple = "wasm32-unknown-unknown";
                let mut cmd = Command::new("/usr/bin/cargo");
                cmd.env("RUSTC_BOOTSTRAP", "1")
                    .env("RUSTC", "/usr/bin/rustc")
                    .env("RUSTDOC", "/usr/bin/rustdoc")
                    .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", "wasm-ld-19")
                    .env_remove("RUSTUP_TOOLCHAIN")
                    .env_remove("CARGO")
                    .args([
                        "build",
                        "--release",
                        "-Zbuild-std=std,panic_abort",
                        "--target",
                        "wasm32-unknown-unknown",
                    ]);
                cmd
            }
        };
        cmd.current_dir(plugins_dir)
            .arg("--target-dir")
            .arg(&target_dir);
        for p in packages {
            cmd.args(["-p", p]);
        }
        status(&mut cmd)?;
    }
    let mut built = Vec::new();
    for name in plugin_crates(plugins_dir)? {
        let file = name.replace('-', "_");
        let module = target_dir
            .join(triple)
            .join("release")
            .join(format!("{file}.wasm"));
        let out = out_dir.join(format!("{name}.wasm"));
        let fresh = match (std::fs::metadata(&module), std::fs::metadata(&out)) {
            (Ok(m), Ok(o)) => o.modified()? >= m.modified()?,
            _ => false,
        };
        if !fresh {
            let bytes =
                std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
            let component = if toolchain == Toolchain::RustupWasip2 {
                bytes // already a component
            } else {
                wit_component::ComponentEncoder::default()
                    .module(&bytes)
                    .with_context(|| format!("{name}: reading the module's component type"))?
                    .validate(true)
                    .encode()
                    .with_context(|| format!("{name}: encoding the component"))?
            };
            std::fs::write(&out, component)?;
        }
        built.push(out);
    }
    built.extend(build_polyglot(root, plugins_dir, out_dir)?);
    eprintln!(
        "xtask: {} plugin components in {}",
        built.len(),
        out_dir.display()
    );
    Ok(built)
}

/// The WIT world a JavaScript or Python plugin declares with a `murmur-world: NAME`
/// comment; `basic-agent` without one.
fn world_of(source: &Path) -> String {
    std::fs::read_to_string(source)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.split("murmur-world:").nth(1))
        .map(|w| w.trim().to_string())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "basic-agent".into())
}

/// Pinned guest toolchains for the other languages (from PyPI and the npm registry).
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// componentize-py, run through the Python that has it (no reliance on PATH or shims).
fn componentize_py() -> Command {
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())",
    ]);
    cmd
}

/// Whether `out` is older than any file under `sources` (or missing).
fn stale(out: &Path, sources: &[PathBuf]) -> bool {
    let Ok(built) = std::fs::metadata(out).and_then(|m| m.modified()) else {
        return true;
    };
    sources.iter().any(|s| {
        std::fs::metadata(s)
            .and_then(|m| m.modified())
            .map(|t| t > built)
            .unwrap_or(true)
    })
}

/// The JavaScript and Python plugins: `plugins/js/*.js` with componentize-js (npm),
/// `plugins/python/NAME/app.py` with componentize-py (PyPI), both against the WIT world
/// `basic-agent` unless the source names another world in a `murmur-world:` comment
/// (these toolchains import every interface of their world, used or not).
///
/// The toolchains live in this repository (`plugins/js/node_modules`, the machine's
/// Python) whichever tree is built.
fn build_polyglot(root: &Path, plugins: &Path, out_dir: &Path) -> Result<Vec<PathBuf>> {
    let wit = root.join("wit");
    let wit_files: Vec<PathBuf> = std::fs::read_dir(&wit)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    let mut built = Vec::new();

    let js = root.join("plugins/js");
    let js_sources: Vec<PathBuf> = std::fs::read_dir(plugins.join("js"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "js"))
        .collect();
    for source in &js_sources {
        let stem = source
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("plugin");
        let out = out_dir.join(format!("js-{stem}.wasm"));
        let mut inputs = wit_files.clone();
        inputs.push(source.clone());
        if stale(&out, &inputs) {
            if !js.join("node_modules/.bin/componentize-js").exists() {
                status(Command::new("npm").current_dir(&js).args([
                    "ci",
                    "--no-audit",
                    "--no-fund",
                ]))
                .context("installing componentize-js (needs Node.js and npm)")?;
            }
            // `fetch` stays in only for a world that imports wasi:http (`http-basic-agent`):
            // elsewhere the host would refuse the import the component then carries.
            let world = world_of(source);
            let disabled: &[&str] = if world.starts_with("http-") {
                &["fetch-event"]
            } else {
                &["http", "fetch-event"]
            };
            status(
                Command::new(js.join("node_modules/.bin/componentize-js"))
                    .current_dir(&js)
                    .arg(source)
                    .arg("--wit")
                    .arg(&wit)
                    .args(["--world-name", &world, "-d"])
                    .args(disabled)
                    .arg("-o")
                    .arg(&out),
            )?;
        }
        built.push(out);
    }

    for entry in std::fs::read_dir(plugins.join("python"))
        .into_iter()
        .flatten()
    {
        let dir = entry?.path();
        let app = dir.join("app.py");
        if !app.exists() {
            continue;
        }
        let name = dir.file_name().and_then(|s| s.to_str()).unwrap_or("plugin");
        let out = out_dir.join(format!("py-{name}.wasm"));
        let mut inputs = wit_files.clone();
        inputs.push(app.clone());
        if stale(&out, &inputs) {
            let have = Command::new("python3")
                .args([
                    "-c",
                    "import importlib.metadata as m; print(m.version('componentize-py'))",
                ])
                .output()
                .map(|o| {
                    o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "0.25.1"
                })
                .unwrap_or(false);
            if !have {
                status(Command::new("python3").args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    COMPONENTIZE_PY,
                ]))
                .context("installing componentize-py (needs Python 3 and pip)")?;
            }
            status(
                componentize_py()
                    .arg("-d")
                    .arg(&wit)
                    .args(["-w", &world_of(&app), "componentize", "app", "-p"])
                    .arg(&dir)
                    .arg("-o")
                    .arg(&out),
            )?;
        }
        built.push(out);
    }
    Ok(built)
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
