//! Runtime settings from the process's environment: the one place `murmur` reads
//! `MURMUR_CACHE_DIR` (else `XDG_CACHE_HOME`, else `HOME`), `MURMUR_LLM_BASE_URL`,
//! `MURMUR_LLM_MODEL`, `MURMUR_LLM_API_KEY` and the variable a manifest's
//! `[llm] api_key_env` names. The library is handed the result and reads no variable.

use murmur::manifest::Manifest;
use murmur::plugin::ComponentCache;
use murmur::workflow::{LlmSettings, LoadOptions};
use std::path::PathBuf;

/// The compiled-component cache: `$MURMUR_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/murmur/components`, else `$HOME/.cache/murmur/components`; none if
/// none of them is set.
pub(crate) fn cache() -> ComponentCache {
    let dir = std::env::var_os("MURMUR_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("murmur/components"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/murmur/components"))
        });
    match dir {
        Some(dir) => ComponentCache::at(dir),
        None => ComponentCache::disabled(),
    }
}

/// The language-model settings for `manifest` (its `[llm] api_key_env` names where the
/// key is, unless `MURMUR_LLM_API_KEY` is set).
pub(crate) fn llm(manifest: Option<&Manifest>) -> LlmSettings {
    let var = |name: &str| std::env::var(name).ok();
    let named = manifest
        .and_then(|m| m.llm.as_ref())
        .and_then(|l| l.api_key_env.as_deref());
    LlmSettings {
        base_url: var("MURMUR_LLM_BASE_URL"),
        model: var("MURMUR_LLM_MODEL"),
        api_key: var("MURMUR_LLM_API_KEY").or_else(|| named.and_then(var)),
    }
}

/// Everything a workflow loaded from `manifest` is handed.
pub(crate) fn load_options(manifest: Option<&Manifest>) -> LoadOptions {
    LoadOptions {
        cache: cache(),
        llm: llm(manifest),
        // What `${env:NAME}` in `http` headers reads (a hot-loaded bundle may name
        // variables the manifest did not). Held, never shown or stored.
        secrets: murmur::workflow::Secrets(std::env::vars().collect()),
        ..LoadOptions::default()
    }
}

/// The secrets a server or worker hands plugins: only the variables `--secret-env` names
/// (a manifest it runs may come from anyone allowed to start a run, and must not read the
/// process's own credentials); each must be set.
pub(crate) fn secrets_named(names: &[String]) -> anyhow::Result<murmur::workflow::Secrets> {
    let mut secrets = std::collections::BTreeMap::new();
    for name in names {
        let value = std::env::var(name).map_err(|_| {
            anyhow::anyhow!("--secret-env {name}: the variable is not set (or not UTF-8)")
        })?;
        secrets.insert(name.clone(), value);
    }
    Ok(murmur::workflow::Secrets(secrets))
}

/// `--http-record` and `--http-replay`: plugins' HTTP exchanges to a file, or answered
/// from one.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct HttpTapeArgs {
    /// Append every HTTP exchange of the plugins to this file (JSON lines; secrets
    /// redacted).
    #[arg(long, conflicts_with = "http_replay")]
    pub(crate) http_record: Option<std::path::PathBuf>,
    /// Answer the plugins' HTTP requests from this file, with no network.
    #[arg(long)]
    pub(crate) http_replay: Option<std::path::PathBuf>,
}

impl HttpTapeArgs {
    /// Refused with `--workers`: the invocations, and so their requests, run in the
    /// worker processes, which this process's file would never see.
    pub(crate) fn check_local(&self, workers: bool) -> anyhow::Result<()> {
        if workers && (self.http_record.is_some() || self.http_replay.is_some()) {
            anyhow::bail!(
                "--http-record and --http-replay apply to the requests of invocations this process runs; with --workers they run in `murmur worker` processes"
            );
        }
        Ok(())
    }

    /// `options` with these files.
    pub(crate) fn apply(self, options: LoadOptions) -> LoadOptions {
        LoadOptions {
            http_record: self.http_record,
            http_replay: self.http_replay,
            ..options
        }
    }
}
