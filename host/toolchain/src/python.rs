//! Python guests: componentize-py (from PyPI), pinned.

use crate::process::{captured, status};
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;

/// The pinned componentize-py.
pub const COMPONENTIZE_PY: &str = "0.25.1";

/// componentize-py, run through the Python that has it (no reliance on PATH or shims).
fn componentize_py() -> Command {
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())",
    ]);
    cmd
}

/// Install componentize-py with pip if this machine's Python lacks the pinned version.
pub fn ensure() -> Result<()> {
    let have = Command::new("python3")
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('componentize-py'))",
        ])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == COMPONENTIZE_PY)
        .unwrap_or(false);
    if !have {
        status(Command::new("python3").args([
            "-m",
            "pip",
            "install",
            "--quiet",
            &format!("componentize-py=={COMPONENTIZE_PY}"),
        ]))
        .context("installing componentize-py (needs Python 3 and pip)")?;
    }
    Ok(())
}

/// Build the Python module `module` (a file `module.py` in the first of `dirs`, importing
/// whatever the directories hold) against `world` of the WIT in `wit` into the component
/// `out`.
pub fn build(dirs: &[&Path], module: &str, wit: &Path, world: &str, out: &Path) -> Result<()> {
    let dir = dirs.first().context("no Python source directory")?;
    crate::worlds::check_imports(&dir.join(format!("{module}.py")), wit, world)?;
    ensure()?;
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut cmd = componentize_py();
    cmd.arg("-d")
        .arg(wit)
        .args(["-w", world, "componentize", module]);
    for d in dirs {
        cmd.arg("-p").arg(d);
    }
    captured(cmd.arg("-o").arg(out))
        .map(|_| ())
        .with_context(|| format!("building {}", dir.join(format!("{module}.py")).display()))
}
