//! A plugin project: a directory with a `murmur-plugin.toml`, wherever it lives.
//!
//! ```toml
//! [plugin]
//! name = "greeter"          # the component is target/greeter.wasm
//! world = "agent"           # the WIT world it implements (wit/worlds.wit)
//! language = "js"           # rust | js | python
//! source = "greeter.js"     # JavaScript: the module; Python: the module's file;
//!                           # Rust: the crate's Cargo.toml
//!
//! [[fixture]]               # a plugin only the tests use, in the same language
//! name = "feeder"           # built to target/feeder.wasm
//! world = "basic-agent"
//! source = "tests/feeder.js"
//! ```
//!
//! The project carries its WIT in `wit/` (written by `murmur new` at the version the
//! binary speaks); its tests are the workflows in `tests/`.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The project file's name.
pub const PROJECT_FILE: &str = "murmur-plugin.toml";

/// A plugin's source language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Rust with the `murmur-guest` SDK.
    Rust,
    /// JavaScript (componentize-js).
    Js,
    /// Python (componentize-py).
    Python,
}

impl Language {
    /// As the project file spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Js => "js",
            Language::Python => "python",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectFile {
    plugin: PluginSection,
    #[serde(default)]
    fixture: Vec<FixtureSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginSection {
    name: String,
    world: String,
    language: Language,
    #[serde(default)]
    source: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureSection {
    name: String,
    world: String,
    source: String,
}

/// A component the project builds: the plugin, or a fixture its tests use.
#[derive(Debug, Clone)]
pub struct Unit {
    /// Its name: the component is `target/NAME.wasm`.
    pub name: String,
    /// The WIT world it implements.
    pub world: String,
    /// The source the toolchain starts from (relative to the project directory).
    pub source: PathBuf,
}

/// A plugin project, read from its `murmur-plugin.toml`.
#[derive(Debug, Clone)]
pub struct Project {
    /// The project directory.
    pub dir: PathBuf,
    /// The plugin.
    pub plugin: Unit,
    /// Its language (the fixtures' too).
    pub language: Language,
    /// Plugins only its tests use.
    pub fixtures: Vec<Unit>,
}

/// A build's result.
#[derive(Debug, Clone)]
pub struct Built {
    /// The components: the plugin's first, then the fixtures'.
    pub components: Vec<PathBuf>,
    /// Whether any was rebuilt (false: each was newer than its sources).
    pub rebuilt: bool,
    /// How long the build took.
    pub took: Duration,
}

impl Project {
    /// The project at `path`: a directory holding `murmur-plugin.toml` or below one, or
    /// the file itself.
    pub fn open(path: &Path) -> Result<Project> {
        let path = std::path::absolute(path).with_context(|| format!("{}", path.display()))?;
        let file = if path.is_file() {
            path.clone()
        } else {
            path.ancestors()
                .map(|d| d.join(PROJECT_FILE))
                .find(|f| f.is_file())
                .with_context(|| {
                    format!(
                        "no {PROJECT_FILE} in {} or a directory above it: `murmur new WORLD NAME --lang LANG` creates a plugin project",
                        path.display()
                    )
                })?
        };
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let parsed: ProjectFile = toml::from_str(&text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!(":{line}")
                })
                .unwrap_or_default();
            anyhow::anyhow!("{}{at}: {}", file.display(), e.message())
        })?;
        let dir = file
            .parent()
            .context("project file has no directory")?
            .to_path_buf();
        let p = parsed.plugin;
        let language = p.language;
        let source = p.source.unwrap_or_else(|| match language {
            Language::Rust => "Cargo.toml".into(),
            Language::Js => format!("{}.js", p.name),
            Language::Python => "app.py".into(),
        });
        let unit = |name: String, world: String, source: String| -> Result<Unit> {
            let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid {
                bail!(
                    "{}: name '{name}': expected lower-case letters, digits and '-', starting with a letter",
                    file.display()
                );
            }
            let source = PathBuf::from(source);
            if !dir.join(&source).is_file() {
                bail!(
                    "{}: source '{}' of '{name}' does not exist in {}",
                    file.display(),
                    source.display(),
                    dir.display()
                );
            }
            Ok(Unit {
                name,
                world,
                source,
            })
        };
        let plugin = unit(p.name, p.world, source)?;
        let fixtures = parsed
            .fixture
            .into_iter()
            .map(|f| unit(f.name, f.world, f.source))
            .collect::<Result<Vec<_>>>()?;
        Ok(Project {
            dir,
            plugin,
            language,
            fixtures,
        })
    }

    /// Where a unit's component is written: `target/NAME.wasm`.
    pub fn component(&self, unit: &Unit) -> PathBuf {
        self.dir.join("target").join(format!("{}.wasm", unit.name))
    }

    /// The project's WIT directory.
    pub fn wit(&self) -> PathBuf {
        self.dir.join("wit")
    }

    /// The project's test workflows: `tests/*.toml`, in name order.
    pub fn tests(&self) -> Result<Vec<PathBuf>> {
        let dir = self.dir.join("tests");
        let mut tests: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        tests.sort();
        Ok(tests)
    }

    /// Build the plugin and its fixtures (each unless newer than its sources).
    pub fn build(&self) -> Result<Built> {
        let started = Instant::now();
        if !self.wit().join("worlds.wit").is_file() {
            bail!(
                "{} has no WIT (wit/worlds.wit): `murmur new` writes it; copy it from a new project",
                self.dir.display()
            );
        }
        let toolchain = match self.language {
            Language::Rust => Some(crate::rust::choose()?),
            _ => None,
        };
        let mut components = Vec::new();
        let mut rebuilt = false;
        for unit in std::iter::once(&self.plugin).chain(&self.fixtures) {
            let out = self.component(unit);
            let before = std::fs::metadata(&out).and_then(|m| m.modified()).ok();
            self.build_unit(unit, toolchain, &out)?;
            rebuilt |= std::fs::metadata(&out).and_then(|m| m.modified()).ok() != before;
            components.push(out);
        }
        Ok(Built {
            components,
            rebuilt,
            took: started.elapsed(),
        })
    }

    fn build_unit(
        &self,
        unit: &Unit,
        toolchain: Option<crate::rust::Toolchain>,
        out: &Path,
    ) -> Result<()> {
        let source = self.dir.join(&unit.source);
        let source_dir = source.parent().unwrap_or(&self.dir).to_path_buf();
        let wit = self.wit();
        match (self.language, toolchain) {
            (Language::Rust, Some(toolchain)) => {
                let target_dir = std::env::var_os("CARGO_TARGET_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| self.dir.join("target"));
                crate::rust::build(
                    toolchain,
                    &source_dir,
                    std::slice::from_ref(&unit.name),
                    &target_dir,
                    &self.dir.join("target"),
                )?;
            }
            (Language::Rust, None) => bail!("no Rust toolchain chosen"),
            (Language::Js, _) => {
                if crate::process::stale(out, &[&source_dir, &wit]) {
                    crate::js::build(&self.dir, &source, &wit, &unit.world, out)?;
                }
            }
            (Language::Python, _) => {
                if crate::process::stale(out, &[&source_dir, &wit]) {
                    let module = source
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .context("the Python source has no module name")?;
                    // The project directory too: the helper module lives there.
                    crate::python::build(
                        &[&source_dir, &self.dir],
                        module,
                        &wit,
                        &unit.world,
                        out,
                    )?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{PROJECT_FILE, Project};

    fn project(text: &str, files: &[&str]) -> (tempfile::TempDir, anyhow::Result<Project>) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(PROJECT_FILE), text).expect("write");
        for f in files {
            std::fs::write(dir.path().join(f), "").expect("write");
        }
        let opened = Project::open(dir.path());
        (dir, opened)
    }

    fn error(text: &str, files: &[&str]) -> String {
        let (_dir, opened) = project(text, files);
        format!("{:#}", opened.expect_err("refused"))
    }

    #[test]
    fn a_project_file_is_found_from_a_directory_below_it() {
        let (dir, opened) = project(
            "[plugin]\nname = \"p\"\nworld = \"basic-agent\"\nlanguage = \"js\"\n",
            &["p.js"],
        );
        opened.expect("opens");
        std::fs::create_dir(dir.path().join("tests")).expect("mkdir");
        let below = Project::open(&dir.path().join("tests")).expect("found above");
        assert_eq!(below.plugin.name, "p");
        assert_eq!(below.plugin.source.to_str(), Some("p.js"));
    }

    #[test]
    fn a_bad_project_file_is_refused_with_its_file_line_and_what_was_expected() {
        let e = error(
            "[plugin]\nname = \"p\"\nworld = \"agent\"\nlanguage = \"ruby\"\n",
            &[],
        );
        assert!(e.contains(&format!("{PROJECT_FILE}:4")), "{e}");
        assert!(
            e.contains("unknown variant `ruby`, expected one of `rust`, `js`, `python`"),
            "{e}"
        );
        let e = error(
            "[plugin]\nname = \"p\"\nworld = \"agent\"\nlanguage = \"js\"\nsorce = \"x.js\"\n",
            &[],
        );
        assert!(
            e.contains(":5") && e.contains("unknown field `sorce`"),
            "{e}"
        );
        let e = error(
            "[plugin]\nname = \"P!\"\nworld = \"agent\"\nlanguage = \"js\"\n",
            &[],
        );
        assert!(e.contains("name 'P!': expected lower-case letters"), "{e}");
        let e = error(
            "[plugin]\nname = \"p\"\nworld = \"agent\"\nlanguage = \"js\"\n",
            &[],
        );
        assert!(e.contains("source 'p.js' of 'p' does not exist"), "{e}");
        let e = error(
            "[plugin]\nname = \"p\"\nworld = \"agent\"\nlanguage = \"js\"\n[[fixture]]\nname = \"f\"\nworld = \"agent\"\nsource = \"tests/f.js\"\n",
            &["p.js"],
        );
        assert!(
            e.contains("source 'tests/f.js' of 'f' does not exist"),
            "{e}"
        );
    }

    #[test]
    fn a_directory_without_a_project_says_how_to_make_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = format!("{:#}", Project::open(dir.path()).expect_err("none"));
        assert!(e.contains("no murmur-plugin.toml in"), "{e}");
        assert!(e.contains("murmur new WORLD NAME --lang LANG"), "{e}");
    }
}
