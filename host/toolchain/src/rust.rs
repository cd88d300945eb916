//! Rust guests: cargo for a WebAssembly target, then a component.
//!
//! Toolchains, in order of preference:
//! 1. rustup with the `wasm32-wasip2` target: cargo emits components directly;
//! 2. Debian's Rust (`rustc-web`, `/usr/bin/rustc`) with `-Zbuild-std` for
//!    `wasm32-unknown-unknown`, each core module then wrapped into a component with
//!    `wit-component`. On a Debian machine without it, running as root, its packages are
//!    installed with apt (a package registry, no toolchain download).
//!
//! `MURMUR_GUEST_TOOLCHAIN=rustup|debian` forces one.

use crate::process::{is_root, status, which};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Debian packages of the fallback toolchain.
const DEBIAN_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "libstd-rust-web-dev",
    "lld-19",
];

/// A Rust guest toolchain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toolchain {
    /// rustup's `wasm32-wasip2` target.
    RustupWasip2,
    /// Debian's Rust with `-Zbuild-std` for `wasm32-unknown-unknown`.
    DebianBuildStd,
}

impl Toolchain {
    /// The target triple cargo builds for.
    pub fn triple(self) -> &'static str {
        match self {
            Toolchain::RustupWasip2 => "wasm32-wasip2",
            Toolchain::DebianBuildStd => "wasm32-unknown-unknown",
        }
    }

    /// `cargo build --release` for this toolchain's target.
    fn cargo(self) -> Command {
        match self {
            Toolchain::RustupWasip2 => {
                let mut cmd = Command::new("cargo");
                cmd.args(["build", "--release", "--target", "wasm32-wasip2"]);
                cmd
            }
            Toolchain::DebianBuildStd => {
                let mut cmd = Command::new("/usr/bin/cargo");
                cmd.env("RUSTC_BOOTSTRAP", "1")
                    .env("RUSTC", "/usr/bin/rustc")
                    .env("RUSTDOC", "/usr/bin/rustdoc")
                    .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", "wasm-ld-19")
                    .env_remove("RUSTUP_TOOLCHAIN")
                    .env_remove("CARGO")
                    .args([
                        "build",
                        "--release",
                        "-Zbuild-std=std,panic_abort",
                        "--target",
                        "wasm32-unknown-unknown",
                    ]);
                cmd
            }
        }
    }
}

fn rustup_has_wasip2() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-wasip2")
        })
        .unwrap_or(false)
}

fn debian_ready() -> bool {
    Path::new("/usr/bin/rustc").exists()
        && Path::new("/usr/bin/cargo").exists()
        && Path::new("/usr/lib/rustlib/src/rust/library").exists()
        && which("wasm-ld-19")
}

/// The toolchain to build with, installing Debian's when nothing is there and this
/// process may.
pub fn choose() -> Result<Toolchain> {
    match std::env::var("MURMUR_GUEST_TOOLCHAIN").as_deref() {
        Ok("rustup") => return Ok(Toolchain::RustupWasip2),
        Ok("debian") => {}
        _ => {
            if rustup_has_wasip2() {
                return Ok(Toolchain::RustupWasip2);
            }
        }
    }
    if !debian_ready() {
        if which("apt-get") && is_root() {
            eprintln!(
                "murmur build: installing the guest toolchain from Debian packages: {}",
                DEBIAN_PACKAGES.join(" ")
            );
            status(Command::new("apt-get").arg("update").arg("-qq"))?;
            status(
                Command::new("apt-get")
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .args(["install", "-y", "-qq", "--no-install-recommends"])
                    .args(DEBIAN_PACKAGES),
            )?;
        } else {
            bail!(
                "no WebAssembly guest toolchain for Rust found. Install one:\n  rustup target add wasm32-wasip2\n\
                 or, on Debian 12 as root: apt-get install {}",
                DEBIAN_PACKAGES.join(" ")
            );
        }
    }
    if !debian_ready() {
        bail!(
            "the Debian guest toolchain is still incomplete after installing {}",
            DEBIAN_PACKAGES.join(" ")
        );
    }
    Ok(Toolchain::DebianBuildStd)
}

/// Build `packages` of the cargo workspace at `workspace` into `target_dir`, then write
/// each one's component to `out_dir/NAME.wasm` (unless it is newer than the module).
/// The packages are built by one cargo command, so they must enable the same SDK world
/// (cargo unifies features across one build; a component carries exactly one world).
pub fn build(
    toolchain: Toolchain,
    workspace: &Path,
    packages: &[String],
    target_dir: &Path,
    out_dir: &Path,
) -> Result<Vec<PathBuf>> {
    let mut cmd = toolchain.cargo();
    cmd.current_dir(workspace)
        .arg("--target-dir")
        .arg(target_dir);
    for p in packages {
        cmd.args(["-p", p]);
    }
    status(&mut cmd)?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut built = Vec::new();
    for name in packages {
        let module = target_dir
            .join(toolchain.triple())
            .join("release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        let out = out_dir.join(format!("{name}.wasm"));
        let fresh = match (std::fs::metadata(&module), std::fs::metadata(&out)) {
            (Ok(m), Ok(o)) => o.modified()? >= m.modified()?,
            _ => false,
        };
        if !fresh {
            let bytes =
                std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
            let component = match toolchain {
                Toolchain::RustupWasip2 => bytes, // already a component
                Toolchain::DebianBuildStd => wit_component::ComponentEncoder::default()
                    .module(&bytes)
                    .with_context(|| format!("{name}: reading the module's component type"))?
                    .validate(true)
                    .encode()
                    .with_context(|| format!("{name}: encoding the component"))?,
            };
            std::fs::write(&out, component)
                .with_context(|| format!("writing {}", out.display()))?;
        }
        built.push(out);
    }
    Ok(built)
}

/// The SDK world feature a plugin crate's `Cargo.toml` enables on `murmur-guest`.
pub fn world_feature(cargo_toml: &str) -> Option<String> {
    cargo_toml
        .lines()
        .find(|l| l.trim_start().starts_with("murmur-guest"))
        .and_then(|l| l.split("features = [\"").nth(1))
        .and_then(|r| r.split('"').next())
        .map(str::to_string)
}

/// The package name a crate's `Cargo.toml` declares, if it builds a `cdylib`.
pub fn cdylib_name(cargo_toml: &str) -> Option<String> {
    if !cargo_toml.contains("cdylib") {
        return None;
    }
    cargo_toml.lines().find_map(|l| {
        l.strip_prefix("name = \"")
            .and_then(|r| r.strip_suffix('"'))
            .map(str::to_string)
    })
}
