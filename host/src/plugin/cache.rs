//! The compiled-component cache: a second start does not recompile.
//!
//! Entries are keyed by the component's sha256 and the engine's compatibility hash (which
//! covers the wasmtime version and every codegen setting), so a stale or foreign entry is
//! never loaded. Entries are written to a temporary file and renamed into place, so a crash
//! mid-write leaves no half entry. Only `.cwasm` files from this directory — which the host
//! owns — are ever deserialised; an entry that fails to load is recompiled and replaced.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of precompiled components (the default: none, nothing cached).
#[derive(Debug, Clone, Default)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
}

/// How a component was obtained, for timing reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a precompiled entry.
    Hit,
    /// Compiled (and stored, when the cache is writable).
    Miss,
    /// Caching disabled.
    Disabled,
}

struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The sha256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

impl ComponentCache {
    /// A cache in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: Some(dir.into()),
        }
    }

    /// No caching.
    pub fn disabled() -> Self {
        Self { dir: None }
    }

    /// The cache directory, if enabled.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn entry_path(&self, engine: &Engine, component_sha: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let mut h = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_hash = format!("{:x}", h.0.finalize());
        Some(dir.join(format!("{component_sha}-{}.cwasm", &engine_hash[..16])))
    }

    /// Load `bytes` (whose sha256 is `sha`) as a component, from the cache when possible.
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
        sha: &str,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some(path) = self.entry_path(engine, sha) else {
            return Ok((Component::new(engine, bytes)?, CacheOutcome::Disabled));
        };
        if path.exists() {
            // SAFETY: the file is in the host's own cache directory, was written by
            // `precompile_component` of an engine with the same compatibility hash, and
            // is renamed into place only once complete.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok((c, CacheOutcome::Hit)),
                Err(e) => {
                    tracing::warn!(entry = %path.display(), "compiled-component cache entry unusable, recompiling: {e:#}")
                }
            }
        }
        let compiled = engine.precompile_component(bytes)?;
        // SAFETY: `compiled` was just produced by this engine.
        let component = unsafe { Component::deserialize(engine, &compiled)? };
        if let Err(e) = write_atomically(&path, &compiled) {
            tracing::warn!(entry = %path.display(), "cannot write compiled-component cache entry: {e}");
        }
        Ok((component, CacheOutcome::Miss))
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
