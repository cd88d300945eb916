//! Building Murmuration plugins into WebAssembly components, wherever their source lives.
//!
//! One code path for every plugin: `murmur build` builds a plugin project (a directory
//! with a `murmur-plugin.toml`, as `murmur new` writes one), and the repository's
//! `cargo xtask build-plugins` builds its own `plugins/` tree, both through the functions
//! here. Each language has its pinned toolchain, installed when missing from a package
//! registry and never from anywhere else:
//!
//! - Rust ([`rust`]): rustup's `wasm32-wasip2` target, or Debian's Rust with `-Zbuild-std`
//!   (its packages installed with apt when running as root), the core module then wrapped
//!   into a component in-process;
//! - JavaScript ([`js`]): componentize-js from the npm registry, installed once per user
//!   in a toolchain directory ([`toolchains_dir`]);
//! - Python ([`python`]): componentize-py from PyPI, installed with pip.
//!
//! The WIT the binary speaks and the Rust guest SDK travel inside it ([`embedded`]), so a
//! project outside this repository carries its own copy and builds offline once the
//! toolchain and its crates are on the machine.

pub mod embedded;
pub mod js;
pub mod process;
pub mod project;
pub mod python;
pub mod rust;
pub mod worlds;

pub use project::{Built, Language, Project, Unit};

use std::path::PathBuf;

/// Where pinned toolchains are installed: `$MURMUR_TOOLCHAINS_DIR`, else
/// `$XDG_CACHE_HOME/murmur/toolchains`, else `$HOME/.cache/murmur/toolchains`.
pub fn toolchains_dir() -> anyhow::Result<PathBuf> {
    std::env::var_os("MURMUR_TOOLCHAINS_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("murmur/toolchains"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/murmur/toolchains"))
        })
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no directory for guest toolchains: set MURMUR_TOOLCHAINS_DIR, XDG_CACHE_HOME or HOME"
            )
        })
}
