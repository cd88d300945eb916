//! `murmur new`: create a plugin that builds, with a test workflow that passes.

use anyhow::Result;
use clap::ValueEnum;
use murmur::manifest::World;
use murmur::scaffold::Language;
use std::path::PathBuf;

/// Create a plugin that builds (`cargo xtask build-plugins`) and a test workflow for it.
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
    /// The plugins directory.
    #[arg(long, default_value = "plugins")]
    plugins: PathBuf,
    /// Where built components land.
    #[arg(long, default_value = "target/plugins")]
    components: PathBuf,
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
        let components = std::path::absolute(&self.components).unwrap_or(self.components);
        let created = murmur::scaffold::create(
            &self.plugins,
            &components,
            self.world.into(),
            &self.name,
            self.lang.into(),
        )?;
        for f in &created.files {
            println!("  wrote {}", f.display());
        }
        println!(
            "next: cargo xtask build-plugins   (builds {})
      murmur run {} --store memory",
            created.component,
            created.test.display()
        );
        Ok(0)
    }
}
