//! `murmur build [PATH]`: a plugin project to its components, compiled ahead.

use anyhow::{Context, Result};
use murmur_toolchain::Project;
use std::path::{Path, PathBuf};

/// Build the plugin project in PATH (default: the current directory or the nearest one
/// above with a murmur-plugin.toml) to `target/NAME.wasm`, installing the pinned guest
/// toolchain if missing, and compile it ahead for this machine so the first run does not.
#[derive(Debug, clap::Args)]
pub(crate) struct BuildCommand {
    /// The project directory (or its murmur-plugin.toml).
    path: Option<PathBuf>,
}

impl BuildCommand {
    pub(crate) fn execute(self) -> Result<i32> {
        let project = Project::open(self.path.as_deref().unwrap_or(Path::new(".")))?;
        build(&project, true)?;
        Ok(0)
    }
}

/// Build `project`, then load each component once through the compiled-component cache:
/// it is checked (it links, and `describe()` answers) and its native code is stored for
/// the runs that follow. With `check_fresh` false, components that were up to date are
/// not loaded again.
pub(crate) fn build(project: &Project, check_fresh: bool) -> Result<()> {
    let built = project.build()?;
    for component in built
        .components
        .iter()
        .filter(|_| built.rebuilt || check_fresh)
    {
        let report = murmur::inspect::inspect(component, super::settings::cache())
            .with_context(|| format!("checking {}", component.display()))?;
        let shown = component
            .strip_prefix(std::env::current_dir().unwrap_or_default())
            .unwrap_or(component);
        println!(
            "built {} ({}, {} KB; compiled ahead in {} ms{})",
            shown.display(),
            report.world,
            report.bytes.div_ceil(1024),
            report.load_ms,
            if report.cached {
                ", from the cache"
            } else {
                ""
            }
        );
    }
    println!(
        "{} in {:.1} s",
        if built.rebuilt { "built" } else { "up to date" },
        built.took.as_secs_f64()
    );
    Ok(())
}
