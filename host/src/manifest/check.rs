//! The manifest's checks, one short function per section: the raw serde shapes become
//! the checked types of `super`, or a located error.

use super::error::ManifestError;
use super::raw::{RawInput, RawPlugin, RawSubscription, RawType};
use super::{InputDecl, PluginDecl, PluginLimits, PluginSpec, SubscriptionDecl, TypeDecl};
use crate::artifact::Visibility;
use crate::phase::Phase;
use crate::plugin::{Capability, World};
use crate::policy::Policies;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Locates an error at a span of the text being checked.
pub(crate) type At<'a> = &'a dyn Fn(Range<usize>, String) -> ManifestError;

/// Check what the policies name: phases that exist, plugins of the right world, sane numbers.
pub(crate) fn policies(
    source: &str,
    policies: &Policies,
    phases: &BTreeSet<String>,
    plugins: &[PluginDecl],
    at: At<'_>,
) -> Result<(), ManifestError> {
    // Section-level problems point at the section header.
    let section = |name: &str| {
        let off = source.find(&format!("[{name}]")).unwrap_or(0);
        off..off
    };
    let phase = |p: &Spanned<String>, what: &str| {
        if phases.contains(p.get_ref()) {
            Ok(())
        } else {
            Err(at(
                p.span(),
                format!(
                    "{what} names phase '{}', which is not declared (declared: {})",
                    p.get_ref(),
                    phases.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ))
        }
    };
    let router = |p: &Spanned<String>, what: &str| match plugins
        .iter()
        .find(|d| d.spec.name == *p.get_ref())
    {
        Some(d) if d.spec.world == World::Router => Ok(()),
        Some(d) => Err(at(
            p.span(),
            format!(
                "{what} names plugin '{}', which implements world '{}', not 'router'",
                d.spec.name, d.spec.world
            ),
        )),
        None => Err(at(
            p.span(),
            format!(
                "{what} names plugin '{}', which is not declared",
                p.get_ref()
            ),
        )),
    };
    let r = &policies.routing;
    if let Some(p) = &r.plugin {
        router(p, "routing.plugin")?;
    }
    for rule in r.rule.iter().flatten() {
        phase(&rule.phase, &format!("routing rule '{}'", rule.phrase))?;
    }
    if let Some(p) = &r.default_phase {
        phase(p, "routing.default_phase")?;
    }
    let d = &policies.dedup;
    if !(d.threshold > 0.0 && d.threshold <= 1.0) {
        return Err(at(
            section("dedup"),
            format!(
                "dedup.threshold must be above 0 and at most 1, not {}",
                d.threshold
            ),
        ));
    }
    if let Some(p) = &d.plugin {
        router(p, "dedup.plugin")?;
    }
    if policies.retry.max_attempts == 0 {
        return Err(at(
            section("retry"),
            "retry.max_attempts must be at least 1 (1 means no retries)".into(),
        ));
    }
    if let Some(p) = &policies.recovery.phase {
        phase(p, "recovery.phase")?;
    }
    let retry = &policies.retry;
    for (key, ms) in [
        ("retry.backoff_ms", retry.backoff_ms),
        ("retry.max_backoff_ms", retry.max_backoff_ms),
    ] {
        duration(key, ms).map_err(|m| at(section("retry"), m))?;
    }
    duration("monitoring.interval_ms", policies.monitoring.interval_ms)
        .map_err(|m| at(section("monitoring"), m))?;
    if policies.monitoring.interval_ms == 0 {
        return Err(at(
            section("monitoring"),
            "monitoring.interval_ms must be at least 1".into(),
        ));
    }
    Ok(())
}

/// What a fragment is merged into (empty for a whole manifest).
#[derive(Default, Clone, Copy)]
pub(crate) struct Existing<'a> {
    pub(crate) phases: &'a [Phase],
    pub(crate) plugins: &'a [PluginDecl],
}

/// The checked phases, types and plugins of a manifest or a hot-load bundle.
pub(crate) struct Parts {
    /// Every phase name in force (the existing ones and these).
    pub(crate) phase_names: BTreeSet<String>,
    pub(crate) types: Vec<TypeDecl>,
    pub(crate) plugins: Vec<PluginDecl>,
}

/// Check a manifest's or a bundle's `[[phase]]`, `[[type]]` and `[[plugin]]` tables.
pub(crate) fn parts(
    source: &str,
    at: At<'_>,
    base: &Path,
    phases: &[Phase],
    raw_types: Vec<Spanned<RawType>>,
    raw_plugins: Vec<Spanned<RawPlugin>>,
    existing: Existing<'_>,
) -> Result<Parts, ManifestError> {
    let phase_names = phase_names(source, at, phases, existing)?;
    let types = raw_types
        .into_iter()
        .map(|t| type_decl(t, base, at))
        .collect::<Result<_, _>>()?;
    let mut plugins: Vec<PluginDecl> = Vec::new();
    for p in raw_plugins {
        let taken = |name: &str| {
            plugins
                .iter()
                .chain(existing.plugins)
                .any(|q| q.spec.name == name)
        };
        let decl = plugin(p, base, at, &taken)?;
        plugins.push(decl);
    }
    Ok(Parts {
        phase_names,
        types,
        plugins,
    })
}

/// `[[phase]]`: names neither empty, reserved (`auto`) nor declared twice.
fn phase_names(
    source: &str,
    at: At<'_>,
    phases: &[Phase],
    existing: Existing<'_>,
) -> Result<BTreeSet<String>, ManifestError> {
    let mut names: BTreeSet<String> = existing.phases.iter().map(|p| p.name.clone()).collect();
    for p in phases {
        if p.name.is_empty() || p.name == "auto" {
            return Err(at(
                0..0,
                format!("phase name '{}' is reserved or empty", p.name),
            ));
        }
        if !names.insert(p.name.clone()) {
            let off = source.find(&format!("\"{}\"", p.name)).unwrap_or(0);
            return Err(at(
                off..off,
                format!("phase '{}' is declared twice", p.name),
            ));
        }
    }
    Ok(names)
}

/// `[[type]]`: exactly one of `schema` and `schema_file`, JSON either way.
fn type_decl(t: Spanned<RawType>, base: &Path, at: At<'_>) -> Result<TypeDecl, ManifestError> {
    let span = t.span();
    let t = t.into_inner();
    let schema = match (t.schema, t.schema_file) {
        (Some(s), None) => serde_json::to_value(s).map_err(|e| {
            at(
                span.clone(),
                format!("type '{}': schema is not JSON-compatible: {e}", t.name),
            )
        })?,
        (None, Some(file)) => {
            let p = base.join(file.get_ref());
            let text = std::fs::read_to_string(&p).map_err(|e| {
                at(
                    file.span(),
                    format!(
                        "type '{}': cannot read schema_file {}: {e}",
                        t.name,
                        p.display()
                    ),
                )
            })?;
            serde_json::from_str(&text).map_err(|e| {
                at(
                    file.span(),
                    format!(
                        "type '{}': schema_file {} is not JSON: {e}",
                        t.name,
                        p.display()
                    ),
                )
            })?
        }
        _ => {
            return Err(at(
                span,
                format!(
                    "type '{}': give exactly one of `schema` or `schema_file`",
                    t.name
                ),
            ));
        }
    };
    Ok(TypeDecl {
        name: t.name,
        schema,
        span,
        origin: None,
    })
}

/// `[[plugin]]`: a free, unreserved name and each of its keys checked.
fn plugin(
    p: Spanned<RawPlugin>,
    base: &Path,
    at: At<'_>,
    taken: &dyn Fn(&str) -> bool,
) -> Result<PluginDecl, ManifestError> {
    let span = p.span();
    let p = p.into_inner();
    let name = p.name.get_ref().clone();
    // `user` publishes the manifest's inputs, `host` the host's own artifacts, `api`
    // what is published from outside a run (`murmur serve`).
    if name.is_empty() || name == "user" || name == "host" || name == "api" {
        return Err(at(
            p.name.span(),
            format!("plugin name '{name}' is reserved or empty"),
        ));
    }
    if taken(&name) {
        return Err(at(
            p.name.span(),
            format!("plugin '{name}' is declared twice"),
        ));
    }
    let world = *p.world.get_ref();
    if let Some(sha) = &p.sha256 {
        let ok = sha.get_ref().len() == 64 && sha.get_ref().chars().all(|c| c.is_ascii_hexdigit());
        if !ok {
            return Err(at(
                sha.span(),
                format!("plugin '{name}': sha256 must be 64 hex digits"),
            ));
        }
    }
    let limits = plugin_limits(&name, p.limits, span.clone(), at)?;
    let config = match p.config {
        Some(c) => serde_json::to_value(c).map_err(|e| {
            at(
                span.clone(),
                format!("plugin '{name}': config is not JSON-compatible: {e}"),
            )
        })?,
        None => serde_json::Value::Object(Default::default()),
    };
    let context = match p.context {
        Some(c) if world != World::Agent => {
            return Err(at(
                c.span(),
                format!(
                    "plugin '{name}': `context` sets an agent's context budget; this plugin implements world '{world}', not 'agent'"
                ),
            ));
        }
        c => c.map(Spanned::into_inner),
    };
    let observer = match p.observer {
        Some(o) if *o.get_ref() && world != World::Agent => {
            return Err(at(
                o.span(),
                format!(
                    "plugin '{name}': `observer` marks an agent that watches work without deciding it; this plugin implements world '{world}', not 'agent'"
                ),
            ));
        }
        o => o.is_some_and(|o| o.into_inner()),
    };
    let approval = match p.approval {
        Some(a) if world != World::Agent => {
            return Err(at(
                a.span(),
                format!(
                    "plugin '{name}': `approval` gates the work an agent discovers; this plugin implements world '{world}', not 'agent'"
                ),
            ));
        }
        a => a.map(Spanned::into_inner).unwrap_or_default(),
    };
    Ok(PluginDecl {
        observer,
        approval,
        spec: PluginSpec {
            grants: grants(&name, p.grants, at)?,
            read_dirs: read_dirs(&name, p.read_dirs, base, at)?,
            http: http(&name, p.http, at)?,
            path: base.join(p.path.get_ref()),
            world,
            sha256: p.sha256.map(|s| s.into_inner().to_ascii_lowercase()),
            limits,
            config,
            labels: p.labels,
            tenant: p.tenant,
            name,
        },
        subscriptions: p.subscribe.map(subscriptions),
        context,
        span,
        path_span: p.path.span(),
        origin: None,
    })
}

/// The longest duration a manifest may set, in milliseconds (7 days): longer ones would
/// overflow the deadlines and wake-up times computed from them.
pub(crate) const MAX_DURATION_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// The most linear memory a plugin may have, in MiB: a 32-bit guest's whole address space.
pub(crate) const MAX_MEMORY_MB: u64 = 4096;

/// A duration key within (0, [`MAX_DURATION_MS`]]: `Err(what is wrong)` otherwise.
pub(crate) fn duration(key: &str, ms: u64) -> Result<(), String> {
    if ms > MAX_DURATION_MS {
        return Err(format!(
            "{key} is {ms} ms; at most {MAX_DURATION_MS} (7 days) is allowed"
        ));
    }
    Ok(())
}

/// `limits`: positive, and no larger than a deadline or a guest can hold.
fn plugin_limits(
    name: &str,
    limits: Option<Spanned<PluginLimits>>,
    table: Range<usize>,
    at: At<'_>,
) -> Result<PluginLimits, ManifestError> {
    let Some(limits) = limits else {
        return Ok(PluginLimits::default());
    };
    let span = limits.span();
    let l = limits.into_inner();
    if l.memory_mb == 0
        || l.timeout_ms == 0
        || l.max_outputs == 0
        || l.max_output_bytes == 0
        || l.max_input_bytes == 0
        || l.fuel == Some(0)
        || l.http_requests == 0
        || l.http_request_bytes == 0
        || l.http_response_bytes == 0
        || l.http_timeout_ms == 0
        || l.http_concurrency == 0
    {
        return Err(at(
            table,
            format!("plugin '{name}': limits must be positive"),
        ));
    }
    if l.memory_mb > MAX_MEMORY_MB {
        return Err(at(
            span,
            format!(
                "plugin '{name}': limits.memory_mb is {}; at most {MAX_MEMORY_MB} (a 32-bit guest's 4 GiB)",
                l.memory_mb
            ),
        ));
    }
    duration("limits.timeout_ms", l.timeout_ms)
        .and_then(|()| duration("limits.http_timeout_ms", l.http_timeout_ms))
        .map_err(|m| at(span, format!("plugin '{name}': {m}")))?;
    Ok(l)
}

/// `[[plugin.subscribe]]`: kept with their spans; compiled against the types at load.
fn subscriptions(subs: Vec<Spanned<RawSubscription>>) -> Vec<SubscriptionDecl> {
    subs.into_iter()
        .map(|s| {
            let span = s.span();
            let s = s.into_inner();
            SubscriptionDecl {
                type_name: s.type_name,
                filter: s.filter,
                from: s.from,
                tags: s.tags,
                allow_self: s.allow_self,
                span,
            }
        })
        .collect()
}

/// `grants`: each a known capability.
fn grants(
    name: &str,
    grants: Option<Spanned<Vec<String>>>,
    at: At<'_>,
) -> Result<Vec<Capability>, ManifestError> {
    let Some(g) = grants else {
        return Ok(Vec::new());
    };
    let span = g.span();
    g.into_inner()
        .iter()
        .map(|c| {
            Capability::parse(c).ok_or_else(|| {
                at(
                    span.clone(),
                    format!(
                        "plugin '{name}': unknown capability '{c}' in grants (known: {}; `log` is always granted)",
                        Capability::choices()
                    ),
                )
            })
        })
        .collect()
}

/// `http`: destinations, each `"SCHEME://HOST[:PORT]"` or `{ url = "…", headers = { … },
/// sign = { … } }`, with no secret written in the manifest.
fn http(
    name: &str,
    list: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    at: At<'_>,
) -> Result<Option<crate::egress::HttpSpec>, ManifestError> {
    let Some(list) = list else {
        return Ok(None);
    };
    let span = list.span();
    let entries = list.into_inner();
    if entries.is_empty() {
        return Err(at(
            span,
            format!(
                "plugin '{name}': `http` is empty; list where it may go, or leave the key out to grant no http"
            ),
        ));
    }
    let destinations = entries
        .into_iter()
        .map(|entry| {
            let span = entry.span();
            http_destination(entry.into_inner())
                .map_err(|m| at(span, format!("plugin '{name}': http: {m}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(crate::egress::HttpSpec { destinations }))
}

/// One `http` entry; `Err` says what is wrong with it.
fn http_destination(entry: toml::Value) -> Result<crate::egress::Destination, String> {
    use crate::egress::{Destination, Rule, Template};
    let (url, headers, sign) = match entry {
        toml::Value::String(url) => (url, toml::Table::new(), None),
        toml::Value::Table(mut t) => {
            let Some(toml::Value::String(url)) = t.remove("url") else {
                return Err("a table entry needs `url = \"SCHEME://HOST[:PORT]\"`".into());
            };
            let headers = match t.remove("headers") {
                None => toml::Table::new(),
                Some(toml::Value::Table(h)) => h,
                Some(_) => return Err("`headers` is a table of header names and values".into()),
            };
            let sign = t.remove("sign").map(http_sign).transpose()?;
            if let Some(k) = t.keys().next() {
                return Err(format!("unknown key '{k}' (expected url, headers, sign)"));
            }
            (url, headers, sign)
        }
        _ => {
            return Err(
                "each entry is a URL pattern such as \"https://api.github.com\" or a table { url, headers }".into(),
            );
        }
    };
    let rule = Rule::parse(&url)?;
    let headers = headers
        .into_iter()
        .map(|(header, value)| {
            let toml::Value::String(value) = value else {
                return Err(format!("header {header}: the value is a string"));
            };
            header_name(&header)?;
            let template = Template::parse(&value).map_err(|m| format!("header {header}: {m}"))?;
            template
                .check_literal(&header)
                .map_err(|m| format!("{m} (destination {rule})"))?;
            Ok((header, template))
        })
        .collect::<Result<_, String>>()?;
    Ok(Destination {
        rule,
        headers,
        sign,
    })
}

/// `sign = { header = "…", secret = "${env:NAME}" }`.
fn http_sign(sign: toml::Value) -> Result<crate::egress::Signing, String> {
    const SHAPE: &str = "`sign` is { header = \"X-Signature\", secret = \"${env:NAME}\" }";
    let toml::Value::Table(mut sign) = sign else {
        return Err(SHAPE.into());
    };
    let (Some(toml::Value::String(header)), Some(toml::Value::String(secret))) =
        (sign.remove("header"), sign.remove("secret"))
    else {
        return Err(SHAPE.into());
    };
    if let Some(k) = sign.keys().next() {
        return Err(format!("sign: unknown key '{k}' (expected header, secret)"));
    }
    header_name(&header).map_err(|m| format!("sign: {m}"))?;
    let secret = crate::egress::Template::parse(&secret).map_err(|m| format!("sign: {m}"))?;
    if secret.variables().next().is_none() {
        return Err(
            "sign: the secret is written in the manifest; write it as ${env:NAME} and set NAME where the plugin runs".into(),
        );
    }
    Ok(crate::egress::Signing { header, secret })
}

/// `Err` unless `name` is an HTTP header name (the check the grant's headers pass later).
fn header_name(name: &str) -> Result<(), String> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map(drop)
        .map_err(|_| format!("'{name}' is not a header name"))
}

/// `read_dirs`: absolute guest paths onto directories relative to the manifest.
fn read_dirs(
    name: &str,
    dirs: Option<Spanned<BTreeMap<String, String>>>,
    base: &Path,
    at: At<'_>,
) -> Result<Vec<(String, PathBuf)>, ManifestError> {
    let Some(dirs) = dirs else {
        return Ok(Vec::new());
    };
    let span = dirs.span();
    let mut out = Vec::new();
    for (guest, host) in dirs.into_inner() {
        let host = base.join(host);
        if !guest.starts_with('/') || !host.is_dir() {
            return Err(at(
                span,
                format!(
                    "plugin '{name}': read_dirs maps '{guest}' to {}, which is not a directory (guest paths are absolute, host paths relative to the manifest)",
                    host.display()
                ),
            ));
        }
        out.push((guest, host));
    }
    Ok(out)
}

/// `[[input]]`: a JSON-compatible payload and a count of at least one.
pub(crate) fn input(i: Spanned<RawInput>, at: At<'_>) -> Result<InputDecl, ManifestError> {
    let span = i.span();
    let i = i.into_inner();
    let payload = serde_json::to_value(i.payload).map_err(|e| {
        at(
            span.clone(),
            format!("input payload is not JSON-compatible: {e}"),
        )
    })?;
    let count = i.count.unwrap_or(1);
    if count == 0 {
        return Err(at(span, "input count must be at least 1".into()));
    }
    Ok(InputDecl {
        type_name: i.type_name,
        payload,
        tags: i.tags,
        count,
        visibility: i.visibility.map(Visibility::from).unwrap_or_default(),
        span,
    })
}

/// `[llm]`: its durations bounded like every other.
pub(crate) fn llm(
    llm: Spanned<crate::llm::LlmConfig>,
    at: At<'_>,
) -> Result<crate::llm::LlmConfig, ManifestError> {
    let span = llm.span();
    let l = llm.into_inner();
    for (key, ms) in [
        ("llm.timeout_ms", l.timeout_ms),
        ("llm.backoff_ms", l.backoff_ms),
        ("llm.max_backoff_ms", l.max_backoff_ms),
    ] {
        duration(key, ms).map_err(|m| at(span.clone(), m))?;
    }
    Ok(l)
}
