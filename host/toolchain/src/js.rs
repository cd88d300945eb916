//! JavaScript guests: componentize-js (from the npm registry), pinned.
//!
//! The toolchain is installed once per user under [`crate::toolchains_dir`], from the
//! package.json and lockfile this binary carries, into a temporary directory renamed into
//! place: two builds that start together never see half an install.

use crate::process::{status, which};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The pinned componentize-js.
pub const COMPONENTIZE_JS: &str = "0.23.0";

const PACKAGE_JSON: &str = include_str!("../../../plugins/js/package.json");
const PACKAGE_LOCK: &str = include_str!("../../../plugins/js/package-lock.json");

/// The componentize-js executable, installed first if missing.
pub fn ensure() -> Result<PathBuf> {
    let dir = crate::toolchains_dir()?.join(format!("componentize-js-{COMPONENTIZE_JS}"));
    let bin = dir.join("node_modules/.bin/componentize-js");
    if bin.exists() {
        return Ok(bin);
    }
    if !which("npm") {
        bail!(
            "JavaScript plugins are built with componentize-js {COMPONENTIZE_JS} from the npm registry, \
             which needs Node.js and npm: install them (Debian: apt-get install nodejs npm)"
        );
    }
    let parent = dir.parent().context("toolchain directory has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = parent.join(format!(
        ".componentize-js-{COMPONENTIZE_JS}.{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    std::fs::write(staging.join("package.json"), PACKAGE_JSON)?;
    std::fs::write(staging.join("package-lock.json"), PACKAGE_LOCK)?;
    status(Command::new("npm").current_dir(&staging).args([
        "ci",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
    ]))
    .with_context(|| {
        format!(
            "installing componentize-js {COMPONENTIZE_JS} into {}",
            dir.display()
        )
    })?;
    if std::fs::rename(&staging, &dir).is_err() {
        // Another build installed it meanwhile.
        let _ = std::fs::remove_dir_all(&staging);
    }
    if !bin.exists() {
        bail!(
            "componentize-js is not at {} after installing it",
            bin.display()
        );
    }
    Ok(bin)
}

/// Build the JavaScript module `source` against `world` of the WIT in `wit` into the
/// component `out`. Its relative imports resolve within `root` (componentize-js reads
/// modules under the directory it runs in): a project's fixture in `tests/` imports the
/// helper at the project's root.
pub fn build(root: &Path, source: &Path, wit: &Path, world: &str, out: &Path) -> Result<()> {
    crate::worlds::check_imports(source, wit, world)?;
    let bin = ensure()?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // `fetch` stays in only for a world that imports wasi:http: elsewhere the host would
    // refuse the import the component then carries.
    let disabled: &[&str] = if world.starts_with("http-") {
        &["fetch-event"]
    } else {
        &["http", "fetch-event"]
    };
    crate::process::captured(
        Command::new(bin)
            .current_dir(root)
            .arg(source.strip_prefix(root).unwrap_or(source))
            .arg("--wit")
            .arg(wit)
            .args(["--world-name", world, "-d"])
            .args(disabled)
            .arg("-o")
            .arg(out),
    )
    .map(|_| ())
    .with_context(|| format!("building {}", source.display()))
}
