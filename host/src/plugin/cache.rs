//! The compiled-component cache: a second start does not recompile.
//!
//! A `.cwasm` entry is native code that runs when loaded, so the cache loads only what it
//! wrote itself. The directory must belong to the user running murmur and be writable by
//! no one else (it is created `0700`; one that fails the check is not used, with a
//! warning). Each entry carries a tag: the sha256 of a secret key kept in the directory
//! (`key`, `0600`, 32 random bytes made on first use) and the entry's bytes; an entry
//! whose tag is missing or wrong — copied in from elsewhere, truncated, planted — is
//! recompiled and replaced, never loaded.
//!
//! Entries are keyed by the component's sha256 and the engine's compatibility hash (which
//! covers the wasmtime version and every codegen setting), so a stale or foreign entry is
//! never loaded. Entries and tags are written to a temporary file and renamed into place,
//! the tag last, so a crash mid-write leaves no entry that passes.

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
        let Some((path, key)) = self.entry_path(engine, sha).and_then(|path| {
            let dir = path.parent()?;
            match private_dir(dir).and_then(|()| secret_key(dir)) {
                Ok(key) => Some((path, key)),
                Err(e) => {
                    tracing::warn!(cache = %dir.display(), "compiled-component cache not used: {e}");
                    None
                }
            }
        }) else {
            return Ok((Component::new(engine, bytes)?, CacheOutcome::Disabled));
        };
        let tag_path = tag_path(&path);
        if let (Ok(entry), Ok(tag)) = (std::fs::read(&path), std::fs::read_to_string(&tag_path)) {
            if tag.trim() == tag_of(&key, &entry) {
                // SAFETY: the entry's tag proves this cache wrote it (only a holder of the
                // directory's key can make one), from `precompile_component` of an engine
                // with the same compatibility hash (in the entry's name).
                match unsafe { Component::deserialize(engine, &entry) } {
                    Ok(c) => return Ok((c, CacheOutcome::Hit)),
                    Err(e) => {
                        tracing::warn!(entry = %path.display(), "compiled-component cache entry unusable, recompiling: {e:#}")
                    }
                }
            } else {
                tracing::warn!(entry = %path.display(), "compiled-component cache entry not written by this cache (its tag does not match); recompiling");
            }
        }
        let compiled = engine.precompile_component(bytes)?;
        // SAFETY: `compiled` was just produced by this engine.
        let component = unsafe { Component::deserialize(engine, &compiled)? };
        let written = write_atomically(&path, &compiled)
            .and_then(|()| write_atomically(&tag_path, tag_of(&key, &compiled).as_bytes()));
        if let Err(e) = written {
            tracing::warn!(entry = %path.display(), "cannot write compiled-component cache entry: {e}");
        }
        Ok((component, CacheOutcome::Miss))
    }
}

/// Where an entry's tag is kept.
fn tag_path(entry: &Path) -> PathBuf {
    entry.with_extension("cwasm.tag")
}

/// An entry's tag: sha256 of the cache's key and the entry's bytes, as hex.
fn tag_of(key: &[u8], entry: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(key);
    h.update(entry);
    format!("{:x}", h.finalize())
}

/// `dir`, created `0700` if missing, owned by this process's user and writable by no
/// one else.
fn private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create it: {e}"))?;
    }
    let meta = std::fs::metadata(dir).map_err(|e| e.to_string())?;
    // SAFETY: geteuid only reads the process's effective user id.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() {
        return Err("it is not a directory".into());
    }
    if meta.uid() != me {
        return Err(format!(
            "it belongs to user {}, not to this process's user {me}",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "others may write to it (mode {:o}); `chmod go-w` it",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// The cache's secret key (`dir/key`), made on first use: 32 bytes from the operating
/// system's random source, readable by the owner only.
fn secret_key(dir: &Path) -> Result<Vec<u8>, String> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("key");
    if let Ok(key) = std::fs::read(&path) {
        if key.len() == 32 {
            return Ok(key);
        }
        return Err(format!("{} is not a key this cache made", path.display()));
    }
    let mut key = vec![0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut r| r.read_exact(&mut key))
        .map_err(|e| format!("no random source: {e}"))?;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut f) => {
            f.write_all(&key).map_err(|e| e.to_string())?;
            Ok(key)
        }
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(&path)
            .ok()
            .filter(|k| k.len() == 32)
            .ok_or_else(|| format!("{} is not a key this cache made", path.display())),
        Err(e) => Err(format!("cannot write {}: {e}", path.display())),
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
