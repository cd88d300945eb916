//! What a plugin project outside this repository needs from it, carried in the binary:
//! the WIT it speaks and the Rust guest SDK (`murmur-guest`), so `murmur new` writes a
//! project that builds without this repository or a network fetch of the SDK.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The WIT package `murmur:plugin` and the WASI packages it uses, by path under `wit/`.
pub const WIT: &[(&str, &str)] = &[
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("host.wit", include_str!("../../../wit/host.wit")),
    ("worlds.wit", include_str!("../../../wit/worlds.wit")),
    ("deps/cli.wit", include_str!("../../../wit/deps/cli.wit")),
    (
        "deps/clocks.wit",
        include_str!("../../../wit/deps/clocks.wit"),
    ),
    (
        "deps/filesystem.wit",
        include_str!("../../../wit/deps/filesystem.wit"),
    ),
    ("deps/http.wit", include_str!("../../../wit/deps/http.wit")),
    ("deps/io.wit", include_str!("../../../wit/deps/io.wit")),
    (
        "deps/random.wit",
        include_str!("../../../wit/deps/random.wit"),
    ),
    (
        "deps/sockets.wit",
        include_str!("../../../wit/deps/sockets.wit"),
    ),
];

/// The guest SDK's sources, by path under its crate directory.
const SDK_SOURCES: &[(&str, &str)] = &[
    (
        "src/lib.rs",
        include_str!("../../../plugins/sdk/src/lib.rs"),
    ),
    (
        "src/world.rs",
        include_str!("../../../plugins/sdk/src/world.rs"),
    ),
    (
        "src/payload.rs",
        include_str!("../../../plugins/sdk/src/payload.rs"),
    ),
    (
        "src/http.rs",
        include_str!("../../../plugins/sdk/src/http.rs"),
    ),
    (
        "src/size_classes.rs",
        include_str!("../../../plugins/sdk/src/size_classes.rs"),
    ),
];
const SDK_MANIFEST: &str = include_str!("../../../plugins/sdk/Cargo.toml");
const GUESTS_MANIFEST: &str = include_str!("../../../plugins/Cargo.toml");

/// The lockfile of this repository's guest plugins: a project starts from the same
/// dependency versions, which a machine that built them already holds.
pub const GUEST_LOCKFILE: &str = include_str!("../../../plugins/Cargo.lock");

/// The guest crates' release profile (small components: `opt-level = "s"`, LTO,
/// `panic = "abort"`, stripped), as the repository's plugins workspace sets it.
pub fn release_profile() -> String {
    section(GUESTS_MANIFEST, "[profile.release]")
}

/// A dependency's line from the guest workspace's `[workspace.dependencies]`
/// (`serde = { version = "1", … }`).
pub fn dependency(name: &str) -> Option<String> {
    section(GUESTS_MANIFEST, "[workspace.dependencies]")
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .map(str::to_string)
}

/// The lines of `[header]` in `toml`, header included.
fn section(toml: &str, header: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in toml.lines() {
        if line.starts_with('[') {
            inside = line.trim() == header;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Write the WIT into `dir` (its `deps/` included); returns the files written.
pub fn write_wit(dir: &Path) -> Result<Vec<PathBuf>> {
    write_all(dir, WIT.iter().map(|(p, t)| (*p, t.to_string())))
}

/// Write the guest SDK crate into `dir`, reading its WIT from `wit` (a path relative to
/// `dir`); returns the files written.
pub fn write_sdk(dir: &Path, wit: &str) -> Result<Vec<PathBuf>> {
    let manifest = standalone_manifest(SDK_MANIFEST);
    let mut files = vec![("Cargo.toml", manifest)];
    for (path, text) in SDK_SOURCES {
        files.push((
            path,
            text.replace("path: \"../../wit\"", &format!("path: {wit:?}")),
        ));
    }
    write_all(dir, files.into_iter())
}

/// A workspace member's `Cargo.toml` made standalone: `x.workspace = true` replaced by
/// the workspace's value.
fn standalone_manifest(member: &str) -> String {
    let package = section(GUESTS_MANIFEST, "[workspace.package]");
    member
        .lines()
        .map(|line| {
            let Some(key) = line.strip_suffix(".workspace = true") else {
                return line.to_string();
            };
            package
                .lines()
                .find(|l| l.starts_with(&format!("{key} ")))
                .map(str::to_string)
                .or_else(|| dependency(key))
                .unwrap_or_else(|| line.to_string())
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn write_all<'a>(
    dir: &Path,
    files: impl Iterator<Item = (&'a str, String)>,
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
