//! `murmur inspect PLUGIN.wasm`: what a component is before anyone runs it — its world,
//! the API version it was built against, what it imports (and so which `grants` it
//! needs), and what its `describe()` says.

use crate::plugin::{ComponentCache, EngineOptions, LoadedPlugin, PluginEngine};
use crate::plugin::{PluginLimits, PluginSpec};
use serde::Serialize;
use std::path::Path;
use thiserror::Error;

/// Why a component could not be inspected.
#[derive(Debug, Error)]
pub enum InspectError {
    /// Not readable, not a component, or no world's export.
    #[error("{0}")]
    Component(String),
}

/// What `inspect` reports.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The file.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its sha256 (what a manifest's `sha256` pins).
    pub sha256: String,
    /// The world whose export it has.
    pub world: String,
    /// The `murmur:plugin` version it was built against.
    pub api_version: String,
    /// Every import.
    pub imports: Vec<String>,
    /// The `grants` a manifest must give it.
    pub needs_grants: Vec<String>,
    /// Every export.
    pub exports: Vec<String>,
    /// `describe()`'s name.
    pub name: String,
    /// `describe()`'s version.
    pub version: String,
    /// `describe()`'s description.
    pub description: String,
    /// Its own subscriptions (type and CEL filter).
    pub subscriptions: Vec<String>,
    /// Types it declares it publishes.
    pub publishes: Vec<String>,
    /// Capabilities it asks for.
    pub capabilities: Vec<String>,
    /// Time to compile (or load from the cache), link and describe it, ms.
    pub load_ms: u64,
    /// Whether the compiled form came from the cache.
    pub cached: bool,
}

/// Inspect the component at `path`.
pub fn inspect(path: &Path, cache: ComponentCache) -> Result<Report, InspectError> {
    let err = |m: String| InspectError::Component(format!("{}: {m}", path.display()));
    let engine = PluginEngine::new(EngineOptions {
        max_instances: 4,
        cache,
        ..Default::default()
    })
    .map_err(|e| err(format!("cannot start the engine: {e:#}")))?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "plugin".into());
    // One read, one compile (or cache hit): the shape names the world, then it links.
    let compiled = LoadedPlugin::compile(&engine, &name, path, None)
        .map_err(|e| InspectError::Component(e.to_string()))?;
    let shape = compiled.shape.clone();
    let bytes = compiled.bytes;
    let world = shape.world().ok_or_else(|| {
        err(format!(
            "exports no murmur:plugin world (exports: {})",
            shape.exports.join(", ")
        ))
    })?;
    let needs_grants = shape.needs();
    let spec = PluginSpec {
        name,
        path: path.to_path_buf(),
        world,
        sha256: None,
        limits: PluginLimits::default(),
        config: serde_json::json!({}),
        labels: Vec::new(),
        tenant: None,
        grants: needs_grants.clone(),
        read_dirs: Vec::new(),
        // Granted nowhere: describe() is inspected, and no request is allowed.
        http: shape
            .imports_http()
            .map(|_| crate::egress::HttpSpec::default()),
    };
    let loaded = LoadedPlugin::link(&engine, &spec, compiled)
        .map_err(|e| InspectError::Component(e.to_string()))?;
    let info = &loaded.info;
    Ok(Report {
        path: path.display().to_string(),
        bytes,
        sha256: loaded.sha256.clone(),
        world: world.to_string(),
        api_version: info.api_version.clone(),
        needs_grants: needs_grants
            .iter()
            .map(|c| c.to_string())
            // `http` is a list of destinations rather than a `grants` entry.
            .chain(shape.imports_http().map(|_| "http".to_string()))
            .collect(),
        imports: shape.imports,
        exports: shape.exports,
        name: info.name.clone(),
        version: info.version.clone(),
        description: info.description.clone(),
        subscriptions: info
            .subscriptions
            .iter()
            .map(|s| match &s.filter {
                Some(f) => format!("{} where {f}", s.type_name),
                None => s.type_name.clone(),
            })
            .collect(),
        publishes: info.publishes.clone(),
        capabilities: info.capabilities.clone(),
        load_ms: loaded.load_time.as_millis() as u64,
        cached: loaded.cache == crate::plugin::CacheOutcome::Hit,
    })
}

impl Report {
    /// The report as text.
    pub fn text(&self) -> String {
        let list = |v: &[String]| {
            if v.is_empty() {
                "(none)".to_string()
            } else {
                v.join(", ")
            }
        };
        format!(
            "{}\n  world:         {}\n  api version:   murmur:plugin@{}\n  size:          {} bytes\n  sha256:        {}\n  name:          {} {}\n  description:   {}\n  subscriptions: {}\n  publishes:     {}\n  capabilities:  {}\n  needs grants:  {}\n  imports:       {}\n  exports:       {}\n  loaded in:     {} ms ({})\n",
            self.path,
            self.world,
            self.api_version,
            self.bytes,
            self.sha256,
            self.name,
            self.version,
            self.description,
            list(&self.subscriptions),
            list(&self.publishes),
            list(&self.capabilities),
            list(&self.needs_grants),
            list(&self.imports),
            list(&self.exports),
            self.load_ms,
            if self.cached {
                "compile cache"
            } else {
                "compiled"
            }
        )
    }
}
