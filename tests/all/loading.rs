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
        std::fs::write(e.expect("entry").path(), b"garbage").expect("corrupt");
    }
    assert_eq!(load().plugins[0].cache, CacheOutcome::Miss);
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
