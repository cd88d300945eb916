//! Loading plugins: API version check, pinning, the compiled-component cache.

use crate::helpers::*;
use murmur::plugin::{CacheOutcome, ComponentCache};
use murmur::{LoadOptions, Manifest, Workflow};

fn one_plugin(name: &str, extra: &str) -> String {
    format!(
        "[workflow]\nname = \"w\"\n[[plugin]]\nname = \"p\"\npath = \"{{plugin:{name}}}\"\nworld = \"agent\"\n{extra}"
    )
}

#[test]
fn a_plugin_built_against_another_api_version_is_refused_naming_both_versions() {
    let err = load(&one_plugin("future-api", ""))
        .err()
        .expect("must not load")
        .to_string();
    assert!(err.contains("murmur:plugin@0.2.0"), "{err}");
    assert!(err.contains("murmur:plugin@0.1.0"), "{err}");
    assert!(
        err.contains("workflow.toml:5:"),
        "located at the plugin's path: {err}"
    );
}

#[test]
fn a_plugin_declared_as_the_wrong_world_is_refused() {
    let text = one_plugin("probe", "").replace("world = \"agent\"", "world = \"validator\"");
    let err = load(&text).err().expect("must not load").to_string();
    assert!(
        err.contains("validator-api") && err.contains("agent-api"),
        "{err}"
    );
}

#[test]
fn a_sha256_pin_mismatch_refuses_to_load() {
    let err = load(&one_plugin(
        "probe",
        &format!("sha256 = \"{}\"", "0".repeat(64)),
    ))
    .err()
    .expect("must not load");
    assert!(err.to_string().contains("pins"), "{err}");
    let actual = murmur::plugin::cache::sha256_hex(&std::fs::read(plugin("probe")).expect("read"));
    load(&one_plugin("probe", &format!("sha256 = \"{actual}\""))).expect("the right pin loads");
}

#[test]
fn the_second_load_of_a_component_comes_from_the_compile_cache() {
    let cache = tempfile::tempdir().expect("tempdir");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("workflow.toml");
    let text = expand(&one_plugin("probe", ""));
    let load = || {
        let m = Manifest::parse(&path, &text).expect("parse");
        Workflow::from_manifest(
            m,
            LoadOptions {
                cache: ComponentCache::at(cache.path()),
                ..Default::default()
            },
        )
        .expect("load")
    };
    assert_eq!(load().plugins[0].cache, CacheOutcome::Miss);
    assert_eq!(load().plugins[0].cache, CacheOutcome::Hit);
    // A corrupt entry is recompiled, not trusted.
    for e in std::fs::read_dir(cache.path()).expect("cache dir") {
        let path = e.expect("entry").path();
        if path.extension().is_some_and(|x| x == "cwasm") {
            std::fs::write(path, b"garbage").expect("corrupt");
        }
    }
    assert_eq!(load().plugins[0].cache, CacheOutcome::Miss);
    assert_eq!(load().plugins[0].cache, CacheOutcome::Hit, "and replaced");
}

/// The cache's `.cwasm` entry (there is one).
fn entry_in(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .expect("an entry")
}

#[test]
fn the_compile_cache_loads_only_entries_it_wrote_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("workflow.toml");
    let load_in = |cache: &std::path::Path, name: &str| {
        let text = expand(&one_plugin(name, ""));
        let m = Manifest::parse(&path, &text).expect("parse");
        Workflow::from_manifest(
            m,
            LoadOptions {
                cache: ComponentCache::at(cache),
                ..Default::default()
            },
        )
        .expect("load")
    };
    let (mine, theirs) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    assert_eq!(
        load_in(mine.path(), "probe").plugins[0].cache,
        CacheOutcome::Miss
    );
    assert_eq!(
        load_in(theirs.path(), "analyzer").plugins[0].cache,
        CacheOutcome::Miss
    );
    // Native code planted under probe's entry (another component's, compiled by the same
    // engine) is not loaded: its tag does not match, so probe is compiled again.
    let planted = entry_in(theirs.path());
    let target = entry_in(mine.path());
    std::fs::copy(&planted, &target).expect("plant");
    let wf = load_in(mine.path(), "probe");
    assert_eq!(wf.plugins[0].cache, CacheOutcome::Miss);
    assert_eq!(
        wf.plugins[0].info.name, "probe",
        "probe, not the planted analyzer"
    );
    // An entry and tag copied in from another cache (another key) are not loaded either.
    let other_tag = planted.with_extension("cwasm.tag");
    std::fs::copy(&planted, &target).expect("plant");
    std::fs::copy(&other_tag, target.with_extension("cwasm.tag")).expect("plant tag");
    assert_eq!(
        load_in(mine.path(), "probe").plugins[0].cache,
        CacheOutcome::Miss
    );
    assert_eq!(
        load_in(mine.path(), "probe").plugins[0].cache,
        CacheOutcome::Hit
    );
}

#[test]
fn a_compile_cache_others_may_write_to_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("workflow.toml");
    let text = expand(&one_plugin("probe", ""));
    let m = Manifest::parse(&path, &text).expect("parse");
    let wf = Workflow::from_manifest(
        m,
        LoadOptions {
            cache: ComponentCache::at(cache.path()),
            ..Default::default()
        },
    )
    .expect("it still loads, compiled afresh");
    assert_eq!(wf.plugins[0].cache, CacheOutcome::Disabled);
    assert_eq!(
        std::fs::read_dir(cache.path()).expect("dir").count(),
        0,
        "nothing written there"
    );
}

#[test]
fn a_missing_component_file_says_how_to_build_it() {
    let err = load("[workflow]\nname = \"w\"\n[[plugin]]\nname = \"p\"\npath = \"nope.wasm\"\nworld = \"agent\"\n")
        .err()
        .expect("must not load")
        .to_string();
    assert!(
        err.contains("nope.wasm") && err.contains("cargo xtask build-plugins"),
        "{err}"
    );
    assert!(err.contains("workflow.toml:5:8"), "{err}");
}

#[test]
fn describe_reports_the_agents_subscriptions_and_published_types() {
    let wf = load(&one_plugin("analyzer", "")).expect("load");
    let info = &wf.plugins[0].info;
    assert_eq!(info.name, "analyzer");
    assert_eq!(info.api_version, "0.1.0");
    assert_eq!(info.publishes, ["AnalysisResult", "WorkDiscovery"]);
    assert_eq!(wf.agents[0].subscriptions[0].type_name, "WorkDiscovery");
}
