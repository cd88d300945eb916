//! Running a toolchain's command and saying which one failed; what is on this machine.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;

/// Run `cmd`, its output going to this process's own; fail naming it.
pub(crate) fn status(cmd: &mut Command) -> Result<()> {
    eprintln!("murmur build: running {}", shown(cmd));
    let st = cmd
        .status()
        .with_context(|| format!("cannot start {}", shown(cmd)))?;
    if !st.success() {
        bail!("{} failed ({st})", shown(cmd));
    }
    Ok(())
}

/// Run `cmd` capturing its output; on failure the error carries what it printed.
pub(crate) fn captured(cmd: &mut Command) -> Result<String> {
    eprintln!("murmur build: running {}", shown(cmd));
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", shown(cmd)))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!(
            "{} failed ({}):\n{}",
            shown(cmd),
            out.status,
            text.trim_end()
        );
    }
    Ok(text)
}

/// A command as a reader would type it.
fn shown(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Whether `bin` is on PATH.
pub fn which(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

/// Whether this process runs as root (and may install Debian packages).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Whether `out` is older than any of `sources` (or missing). A directory counts by
/// every file under it.
pub fn stale(out: &Path, sources: &[&Path]) -> bool {
    let Ok(built) = std::fs::metadata(out).and_then(|m| m.modified()) else {
        return true;
    };
    fn newer(p: &Path, than: std::time::SystemTime) -> bool {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => std::fs::read_dir(p)
                .map(|d| {
                    d.flatten().any(|e| {
                        let name = e.file_name();
                        let skip =
                            name == "target" || name == "node_modules" || name == "__pycache__";
                        !skip && newer(&e.path(), than)
                    })
                })
                .unwrap_or(true),
            Ok(m) => m.modified().map(|t| t > than).unwrap_or(true),
            Err(_) => true,
        }
    }
    sources.iter().any(|s| newer(s, built))
}
