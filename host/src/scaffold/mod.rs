//! `murmur new WORLD NAME --lang LANG [--dir PATH]`: a plugin project, anywhere.
//!
//! The project stands on its own: it carries the WIT this binary speaks (`wit/`), for
//! Rust the guest SDK (`murmur-guest/`, so it builds without this repository and without
//! fetching the SDK), for JavaScript and Python a small helper module that turns an
//! escaped exception into a plugin error with the author's message; a
//! `murmur-plugin.toml` (`murmur build` reads it); and a test workflow in `tests/` that
//! feeds the plugin real input and checks its effect with `[[expect]]` tables
//! (`murmur test`): an agent answers, a validator accepts one draft and rejects another, a
//! router routes an `auto` discovery, a context provider reorders what an agent sees.
//! Validators and context providers are tested through a fixture agent in the same
//! language (`tests/feeder`, `tests/witness`), built beside the plugin.

use crate::manifest::World;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The languages a plugin can be created in: one home, the toolchain that builds them.
pub use murmur_toolchain::Language;

/// Why a plugin project could not be created.
#[derive(Debug, Error)]
pub enum ScaffoldError {
    /// A bad name.
    #[error("{0}")]
    Invalid(String),
    /// Something is already there.
    #[error("{} already exists and is not empty; choose another directory (--dir)", .0.display())]
    Exists(PathBuf),
    /// Writing failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// What was created.
#[derive(Debug)]
pub struct Created {
    /// The project directory.
    pub dir: PathBuf,
    /// The files written, the WIT and the SDK's aside.
    pub files: Vec<PathBuf>,
}

mod templates {
    pub(super) mod rust {
        pub(crate) const CARGO: &str = include_str!("templates/rust/Cargo.toml");
        pub(crate) const AGENT: &str = include_str!("templates/rust/agent.rs");
        pub(crate) const VALIDATOR: &str = include_str!("templates/rust/validator.rs");
        pub(crate) const ROUTER: &str = include_str!("templates/rust/router.rs");
        pub(crate) const CONTEXT_PROVIDER: &str =
            include_str!("templates/rust/context-provider.rs");
        pub(crate) const FEEDER: &str = include_str!("templates/rust/feeder.rs");
        pub(crate) const WITNESS: &str = include_str!("templates/rust/witness.rs");
    }
    pub(super) mod js {
        pub(crate) const HELPER: &str = include_str!("templates/js/murmur.js");
        pub(crate) const AGENT: &str = include_str!("templates/js/agent.js");
        pub(crate) const VALIDATOR: &str = include_str!("templates/js/validator.js");
        pub(crate) const ROUTER: &str = include_str!("templates/js/router.js");
        pub(crate) const CONTEXT_PROVIDER: &str = include_str!("templates/js/context-provider.js");
        pub(crate) const FEEDER: &str = include_str!("templates/js/feeder.js");
        pub(crate) const WITNESS: &str = include_str!("templates/js/witness.js");
    }
    pub(super) mod python {
        pub(crate) const HELPER: &str = include_str!("templates/python/murmur_plugin.py");
        pub(crate) const AGENT: &str = include_str!("templates/python/agent.py");
        pub(crate) const VALIDATOR: &str = include_str!("templates/python/validator.py");
        pub(crate) const ROUTER: &str = include_str!("templates/python/router.py");
        pub(crate) const CONTEXT_PROVIDER: &str =
            include_str!("templates/python/context-provider.py");
        pub(crate) const FEEDER: &str = include_str!("templates/python/feeder.py");
        pub(crate) const WITNESS: &str = include_str!("templates/python/witness.py");
    }
    pub(super) mod tests {
        pub(crate) const AGENT: &str = include_str!("templates/tests/agent.toml");
        pub(crate) const VALIDATOR: &str = include_str!("templates/tests/validator.toml");
        pub(crate) const ROUTER: &str = include_str!("templates/tests/router.toml");
        pub(crate) const CONTEXT_PROVIDER: &str =
            include_str!("templates/tests/context-provider.toml");
    }
}

/// The fixture agent a world's test uses, if any: its role (`feeder`, `witness`), named
/// `NAME-ROLE` so that projects sharing a cargo target directory never overwrite each
/// other's.
fn fixture(world: World) -> Option<&'static str> {
    match world {
        World::Validator => Some("feeder"),
        World::ContextProvider => Some("witness"),
        World::Agent | World::Router | World::Retrospective => None,
    }
}

/// The WIT world a plugin of `world` in `lang` is built against. JavaScript and Python
/// toolchains import every interface of their world, used or not: their agents use
/// `basic-agent` (log and context only), so the test needs no grants.
fn wit_world(world: World, lang: Language) -> &'static str {
    match (world, lang) {
        (World::Agent, Language::Js | Language::Python) => "basic-agent",
        _ => world.as_str(),
    }
}

/// The `grants` line a plugin of `world` in `lang` needs: JavaScript and Python import
/// every interface of their world.
fn grants(world: World, lang: Language) -> &'static str {
    match (world, lang) {
        (_, Language::Rust) | (World::Agent, _) => "",
        (World::Validator, _) => "grants = [\"blackboard\", \"llm\"]\n",
        (World::Router | World::Retrospective, _) => "grants = [\"llm\"]\n",
        (World::ContextProvider, _) => "grants = [\"blackboard\"]\n",
    }
}

const README: &str = "# {name}

A Murmuration {world} plugin in {language}, made by `murmur new`.

    murmur build    # builds target/{name}.wasm (and any test fixture), compiled ahead
    murmur test     # builds, then runs tests/*.toml and checks their [[expect]] tables

Use it in a workflow manifest: `plugin.toml` holds the `[[plugin]]` table to copy (its
path is relative to this directory; make it relative to your manifest), with the grants
it needs. `wit/` is the interface this plugin speaks (murmur:plugin@{api}).
";

struct Writer {
    dir: PathBuf,
    files: Vec<PathBuf>,
}

impl Writer {
    fn write(&mut self, rel: &str, text: &str) -> Result<(), ScaffoldError> {
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ScaffoldError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, text).map_err(|source| ScaffoldError::Io {
            path: path.clone(),
            source,
        })?;
        self.files.push(path);
        Ok(())
    }
}

/// Check a plugin name: lower-case letters, digits and '-', starting with a letter.
fn check_name(name: &str) -> Result<(), ScaffoldError> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(ScaffoldError::Invalid(format!(
            "'{name}': a plugin name is lower-case letters, digits and '-', starting with a letter"
        )))
    }
}

/// Create the project of plugin `name` of `world` in `lang` in `dir` (which must not
/// exist, or be empty).
pub fn create(
    dir: &Path,
    world: World,
    name: &str,
    lang: Language,
) -> Result<Created, ScaffoldError> {
    check_name(name)?;
    if world == World::Retrospective {
        return Err(ScaffoldError::Invalid(
            "there is no project template for world 'retrospective': start from plugins/retrospective in the murmur repository".into(),
        ));
    }
    let role = fixture(world);
    let fixture = role.map(|r| format!("{name}-{r}"));
    let fixture = fixture.as_deref();
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(ScaffoldError::Exists(dir.to_path_buf()));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e: anyhow::Error| ScaffoldError::Io {
            path,
            source: std::io::Error::other(format!("{e:#}")),
        }
    };
    murmur_toolchain::embedded::write_wit(&dir.join("wit")).map_err(io(&dir.join("wit")))?;
    let mut w = Writer {
        dir: dir.to_path_buf(),
        files: Vec::new(),
    };
    let fill = |t: &str| t.replace("{name}", name);
    let (source, fixture_source) = match lang {
        Language::Rust => {
            let sdk = dir.join("murmur-guest");
            murmur_toolchain::embedded::write_sdk(&sdk, "../wit").map_err(io(&sdk))?;
            let cargo = |name: &str, sdk: &str, feature: &str| {
                templates::rust::CARGO
                    .replace("{name}", name)
                    .replace("{sdk}", sdk)
                    .replace("{feature}", feature)
                    .replace(
                        "{serde}",
                        &murmur_toolchain::embedded::dependency("serde").unwrap_or_default(),
                    )
                    .replace(
                        "{serde_json}",
                        &murmur_toolchain::embedded::dependency("serde_json").unwrap_or_default(),
                    )
                    .replace("{profile}", &murmur_toolchain::embedded::release_profile())
            };
            let lib = match world {
                World::Agent => templates::rust::AGENT,
                World::Validator => templates::rust::VALIDATOR,
                World::Router => templates::rust::ROUTER,
                World::ContextProvider => templates::rust::CONTEXT_PROVIDER,
                World::Retrospective => unreachable!("refused above"),
            };
            w.write("Cargo.toml", &cargo(name, "murmur-guest", world.as_str()))?;
            w.write("Cargo.lock", murmur_toolchain::embedded::GUEST_LOCKFILE)?;
            w.write("src/lib.rs", &fill(lib))?;
            let fixture_source = match fixture {
                Some(f) => {
                    let text = if role == Some("feeder") {
                        templates::rust::FEEDER
                    } else {
                        templates::rust::WITNESS
                    };
                    w.write(
                        &format!("tests/{f}/Cargo.toml"),
                        &cargo(f, "../../murmur-guest", "agent"),
                    )?;
                    w.write(
                        &format!("tests/{f}/Cargo.lock"),
                        murmur_toolchain::embedded::GUEST_LOCKFILE,
                    )?;
                    w.write(&format!("tests/{f}/src/lib.rs"), &fill(text))?;
                    Some(format!("tests/{f}/Cargo.toml"))
                }
                None => None,
            };
            ("Cargo.toml".to_string(), fixture_source)
        }
        Language::Js => {
            let main = match world {
                World::Agent => templates::js::AGENT,
                World::Validator => templates::js::VALIDATOR,
                World::Router => templates::js::ROUTER,
                World::ContextProvider => templates::js::CONTEXT_PROVIDER,
                World::Retrospective => unreachable!("refused above"),
            };
            w.write(&format!("{name}.js"), &fill(main))?;
            w.write("murmur.js", templates::js::HELPER)?;
            let fixture_source = match fixture {
                Some(f) => {
                    let text = if role == Some("feeder") {
                        templates::js::FEEDER
                    } else {
                        templates::js::WITNESS
                    };
                    w.write(&format!("tests/{f}.js"), &fill(text))?;
                    Some(format!("tests/{f}.js"))
                }
                None => None,
            };
            (format!("{name}.js"), fixture_source)
        }
        Language::Python => {
            let main = match world {
                World::Agent => templates::python::AGENT,
                World::Validator => templates::python::VALIDATOR,
                World::Router => templates::python::ROUTER,
                World::ContextProvider => templates::python::CONTEXT_PROVIDER,
                World::Retrospective => unreachable!("refused above"),
            };
            w.write("app.py", &fill(main))?;
            w.write("murmur_plugin.py", templates::python::HELPER)?;
            let fixture_source = match fixture {
                Some(f) => {
                    let text = if role == Some("feeder") {
                        templates::python::FEEDER
                    } else {
                        templates::python::WITNESS
                    };
                    w.write(&format!("tests/{f}.py"), &fill(text))?;
                    Some(format!("tests/{f}.py"))
                }
                None => None,
            };
            ("app.py".to_string(), fixture_source)
        }
    };

    let mut project = format!(
        "# A Murmuration plugin project: `murmur build` builds it, `murmur test` tests it.\n\
         [plugin]\nname = \"{name}\"\n# The WIT world it implements (wit/worlds.wit).\nworld = \"{}\"\n\
         language = \"{}\"\nsource = \"{source}\"\n",
        wit_world(world, lang),
        lang.as_str()
    );
    if let (Some(f), Some(fs)) = (fixture, &fixture_source) {
        project.push_str(&format!(
            "\n# A plugin only the tests use, built beside this one (target/{f}.wasm).\n\
             [[fixture]]\nname = \"{f}\"\nworld = \"{}\"\nsource = \"{fs}\"\n",
            wit_world(World::Agent, lang)
        ));
    }
    w.write(murmur_toolchain::project::PROJECT_FILE, &project)?;

    let test = match world {
        World::Agent => templates::tests::AGENT,
        World::Validator => templates::tests::VALIDATOR,
        World::Router => templates::tests::ROUTER,
        World::ContextProvider => templates::tests::CONTEXT_PROVIDER,
        World::Retrospective => unreachable!("refused above"),
    };
    w.write(
        &format!("tests/{name}.toml"),
        &fill(test).replace("{grants}", grants(world, lang)),
    )?;
    w.write(
        "plugin.toml",
        &format!(
            "# The manifest fragment for this plugin: copy it into a workflow manifest, its\n\
             # path made relative to that manifest.\n\
             [[plugin]]\nname = \"{name}\"\npath = \"target/{name}.wasm\"\nworld = \"{}\"\n{}",
            world.as_str(),
            grants(world, lang)
        ),
    )?;
    w.write(
        "README.md",
        &README
            .replace("{name}", name)
            .replace("{world}", world.as_str())
            .replace(
                "{language}",
                match lang {
                    Language::Rust => "Rust",
                    Language::Js => "JavaScript",
                    Language::Python => "Python",
                },
            )
            .replace("{api}", crate::plugin::version::API_VERSION),
    )?;
    w.write(".gitignore", "target/\n__pycache__/\n")?;
    Ok(Created {
        dir: dir.to_path_buf(),
        files: w.files,
    })
}
