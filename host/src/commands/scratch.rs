//! The files a benchmark or soak writes: its working directory, its databases and the
//! workload manifest it runs. One home, so every measuring command starts from the same
//! clean slate and cleans up the same way.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A working directory: the one given, kept afterwards, or a fresh one under the temp
/// directory named after `label` and this process, removed by [`Workdir::finish`].
pub(super) struct Workdir {
    pub(super) path: PathBuf,
    own: bool,
}

impl Workdir {
    pub(super) fn new(given: Option<&Path>, label: &str) -> Result<Self> {
        let (path, own) = match given {
            Some(p) => (p.to_path_buf(), false),
            None => (
                std::env::temp_dir().join(format!("murmur-{label}-{}", std::process::id())),
                true,
            ),
        };
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path, own })
    }

    /// Removes the directory if this command made it.
    pub(super) fn finish(self) {
        if self.own {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Removes a SQLite database and its companions (`-wal`, `-shm`, `.lock`).
pub(super) fn remove_db(db: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let f = PathBuf::from(format!("{}{suffix}", db.display()));
        if f.exists() {
            std::fs::remove_file(&f).with_context(|| format!("removing {}", f.display()))?;
        }
    }
    Ok(())
}

/// The cascade manifest at `n` items, written into `dir` as `workload.toml` with its
/// plugin paths made absolute.
pub(super) fn workload(manifest: &Path, n: u64, dir: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let base = manifest.parent().unwrap_or(Path::new("."));
    let mut out = String::with_capacity(text.len());
    let mut counted = false;
    for line in text.lines() {
        if let Some(rel) = line
            .strip_prefix("path = \"")
            .and_then(|r| r.strip_suffix('"'))
        {
            let abs =
                std::path::absolute(base.join(rel)).with_context(|| format!("resolving {rel}"))?;
            out.push_str(&format!("path = {:?}\n", abs.display().to_string()));
        } else if line.trim_start().starts_with("count = ") && !counted {
            counted = true;
            out.push_str(&format!("count = {n}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !counted {
        bail!(
            "{}: no `count = ` line to set the number of items",
            manifest.display()
        );
    }
    let path = dir.join("workload.toml");
    std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
