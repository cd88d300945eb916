//! `murmur new`: a plugin project anywhere, that builds and whose test passes.

use anyhow::Result;
use clap::ValueEnum;
use murmur::manifest::World;
use murmur::scaffold::Language;
use std::path::PathBuf;

/// Create a plugin project (in ./NAME, or --dir): its source, the WIT it speaks, the SDK
/// or helper of its language and a test workflow. Then `murmur build` and `murmur test`
/// in it.
#[derive(Debug, clap::Args)]
pub(crate) struct NewCommand {
    /// The plugin's world.
    #[arg(value_enum)]
    world: WorldArg,
    /// The plugin's name (lower-case, digits, '-').
    name: String,
    /// The plugin's language.
    #[arg(long, value_enum, default_value = "rust")]
    lang: LanguageArg,
    /// The project directory (default: ./NAME); must not exist, or be empty.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// The worlds, as `murmur new` spells them.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum WorldArg {
    /// Consumes artifacts, returns outputs.
    Agent,
    /// Accepts or rejects outputs before publication.
    Validator,
    /// Assigns phases to discoveries.
    Router,
    /// Chooses an invocation's context.
    ContextProvider,
}

impl From<WorldArg> for World {
    fn from(w: WorldArg) -> World {
        match w {
            WorldArg::Agent => World::Agent,
            WorldArg::Validator => World::Validator,
            WorldArg::Router => World::Router,
            WorldArg::ContextProvider => World::ContextProvider,
        }
    }
}

/// The languages, as `murmur new` spells them.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LanguageArg {
    /// Rust, with the murmur-guest SDK.
    Rust,
    /// JavaScript (componentize-js).
    Js,
    /// Python (componentize-py).
    Python,
}

impl From<LanguageArg> for Language {
    fn from(l: LanguageArg) -> Language {
        match l {
            LanguageArg::Rust => Language::Rust,
            LanguageArg::Js => Language::Js,
            LanguageArg::Python => Language::Python,
        }
    }
}

impl NewCommand {
    pub(crate) fn execute(self) -> Result<i32> {
        let dir = self.dir.unwrap_or_else(|| PathBuf::from(&self.name));
        let created =
            murmur::scaffold::create(&dir, self.world.into(), &self.name, self.lang.into())?;
        for f in &created.files {
            println!("  wrote {}", f.display());
        }
        println!(
            "  wrote {} (the WIT this plugin speaks)",
            created.dir.join("wit").display()
        );
        println!(
            "next: cd {} && murmur build && murmur test",
            created.dir.display()
        );
        Ok(0)
    }
}
