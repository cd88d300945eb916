//! Bad manifests are reported with file, line and column, and what was expected.

use crate::helpers::*;

fn error_of(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("manifest should be refused:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_toml_syntax_error_names_line_and_column() {
    let err = error_of("[workflow]\nname = \"w\"\nlimits = { concurrency = }\n");
    assert!(err.contains("workflow.toml:3:"), "{err}");
}

#[test]
fn an_unknown_world_names_its_line_and_the_expected_worlds() {
    let err = error_of(
        "[workflow]\nname = \"w\"\n\n[[plugin]]\nname = \"p\"\npath = \"x.wasm\"\nworld = \"agnet\"\n",
    );
    assert!(err.contains("workflow.toml:7:9"), "{err}");
    assert!(
        err.contains("unknown world 'agnet'") && err.contains("context-provider"),
        "{err}"
    );
}

#[test]
fn an_unknown_key_is_refused_with_its_location() {
    let err = error_of("[workflow]\nname = \"w\"\nconcurency = 3\n");
    assert!(
        err.contains("workflow.toml:3:1") && err.contains("concurency"),
        "{err}"
    );
}

#[test]
fn a_cel_filter_that_does_not_compile_is_located_at_its_subscription() {
    let err = error_of(
        "[workflow]\nname = \"w\"\n[[plugin]]\nname = \"p\"\npath = \"{plugin:probe}\"\nworld = \"agent\"\nconfig = { mode = \"echo\" }\n[[plugin.subscribe]]\ntype = \"WorkDiscovery\"\nfilter = \"payload.phase == \"\n",
    );
    assert!(
        err.contains("workflow.toml:8:1") && err.contains("does not compile"),
        "{err}"
    );
}

#[test]
fn a_subscription_to_an_unknown_type_is_refused() {
    let err = error_of(
        "[workflow]\nname = \"w\"\n[[plugin]]\nname = \"p\"\npath = \"{plugin:probe}\"\nworld = \"agent\"\n[[plugin.subscribe]]\ntype = \"Nope\"\n",
    );
    assert!(err.contains("unknown artifact type 'Nope'"), "{err}");
}

#[test]
fn an_input_that_violates_its_schema_is_located_and_explained() {
    let err = error_of(
        "[workflow]\nname = \"w\"\n\n[[input]]\ntype = \"WorkDiscovery\"\npayload = { phase = \"analysis\" }\n",
    );
    assert!(err.contains("workflow.toml:4:1"), "{err}");
    assert!(
        err.contains("violates its schema") && err.contains("description"),
        "{err}"
    );
}

#[test]
fn an_invalid_user_schema_is_refused() {
    let err = error_of(
        "[workflow]\nname = \"w\"\n[[type]]\nname = \"T\"\nschema = { type = \"no-such-type\" }\n",
    );
    assert!(
        err.contains("workflow.toml:3:1") && err.contains("JSON Schema of type 'T' is invalid"),
        "{err}"
    );
}

#[test]
fn a_duplicate_plugin_name_is_refused() {
    let err = error_of(
        "[workflow]\nname = \"w\"\n[[plugin]]\nname = \"p\"\npath = \"a.wasm\"\nworld = \"agent\"\n[[plugin]]\nname = \"p\"\npath = \"b.wasm\"\nworld = \"agent\"\n",
    );
    assert!(
        err.contains("workflow.toml:8:8") && err.contains("declared twice"),
        "{err}"
    );
}

#[test]
fn a_routing_rule_to_an_undeclared_phase_is_located_and_lists_the_phases() {
    let err = error_of(
        "[workflow]\nname = \"w\"\n[[phase]]\nname = \"analysis\"\n[[routing.rule]]\nmatch = \"ship it\"\nphase = \"deploy\"\n",
    );
    assert!(err.contains("workflow.toml:7:9"), "{err}");
    assert!(
        err.contains("routing rule 'ship it' names phase 'deploy', which is not declared (declared: analysis)"),
        "{err}"
    );
}

#[test]
fn a_dedup_plugin_that_is_not_a_router_is_refused() {
    let err = error_of(
        "[workflow]\nname = \"w\"\n[dedup]\nplugin = \"p\"\n[[plugin]]\nname = \"p\"\npath = \"x.wasm\"\nworld = \"agent\"\n",
    );
    assert!(err.contains("workflow.toml:4:10"), "{err}");
    assert!(
        err.contains("dedup.plugin names plugin 'p', which implements world 'agent', not 'router'"),
        "{err}"
    );
}

#[test]
fn limits_out_of_range_are_refused_at_the_workflow_table() {
    let err = error_of("\n[workflow]\nname = \"w\"\nlimits = { threads = 0 }\n");
    assert!(err.contains("workflow.toml:2:1"), "{err}");
    assert!(
        err.contains("workflow.limits.threads must be at least 1"),
        "{err}"
    );
    let err = error_of("[workflow]\nname = \"w\"\nlimits = { concurrency = 0 }\n");
    assert!(err.contains("workflow.toml:1:1"), "{err}");
    assert!(
        err.contains("workflow.limits.concurrency must be at least 1"),
        "{err}"
    );
    let err = error_of("[workflow]\nname = \"w\"\nlimits = { concurrency = 100001 }\n");
    assert!(
        err.contains(
            "workflow.limits.concurrency is 100001; at most 100000 invocations can be in flight"
        ),
        "{err}"
    );
}

#[test]
fn policy_numbers_out_of_range_are_refused_at_their_section() {
    let err = error_of("[workflow]\nname = \"w\"\n\n[dedup]\nthreshold = 0.0\n");
    assert!(err.contains("workflow.toml:4:1"), "{err}");
    assert!(
        err.contains("dedup.threshold must be above 0 and at most 1"),
        "{err}"
    );
    let err = error_of("[workflow]\nname = \"w\"\n[retry]\nmax_attempts = 0\n");
    assert!(
        err.contains("retry.max_attempts must be at least 1"),
        "{err}"
    );
    let err = error_of("[workflow]\nname = \"w\"\n[context]\nmax_bytes = \"lots\"\n");
    assert!(err.contains("workflow.toml:4:13"), "{err}");
}

#[test]
fn an_agents_context_budget_is_checked_key_by_key_and_only_agents_take_one() {
    let err = error_of(
        "[workflow]\nname = \"w\"\n[[plugin]]\nname = \"p\"\npath = \"{plugin:probe}\"\nworld = \"agent\"\ncontext = { max_artifact = 1 }\n",
    );
    assert!(
        err.contains("workflow.toml:7:") && err.contains("max_artifact"),
        "{err}"
    );
    assert!(
        err.contains("max_artifacts"),
        "names what it expected: {err}"
    );
    let err = error_of(
        "[workflow]\nname = \"w\"\n[[plugin]]\nname = \"v\"\npath = \"{plugin:review}\"\nworld = \"validator\"\ncontext = { max_artifacts = 1 }\n",
    );
    assert!(
        err.contains("workflow.toml:7:") && err.contains("world 'validator', not 'agent'"),
        "{err}"
    );
}

#[test]
fn a_misspelt_phase_key_is_refused_naming_the_key_it_resembles() {
    for (key, known) in [
        ("instructons", "instructions"),
        ("descripton", "description"),
        ("done_definition", "done_definitions"),
    ] {
        let err = error_of(&format!(
            "[workflow]\nname = \"w\"\n\n[[phase]]\nname = \"analysis\"\n{key} = \"x\"\n"
        ));
        assert!(err.contains("workflow.toml:6:1"), "{key}: {err}");
        assert!(
            err.contains(&format!("unknown field `{key}`"))
                && err.ends_with(&format!("did you mean `{known}`?")),
            "{key}: {err}"
        );
    }
}

#[test]
fn a_misspelt_field_of_a_work_discovery_input_is_refused() {
    let err = error_of(
        "[workflow]\nname = \"w\"\n[[phase]]\nname = \"analysis\"\n\n[[input]]\ntype = \"WorkDiscovery\"\npayload = { description = \"d\", phase = \"analysis\", done_definition = \"x\", discovered_by = \"user\", prority = \"high\" }\n",
    );
    assert!(err.contains("workflow.toml:6:1"), "{err}");
    assert!(err.contains("prority"), "{err}");
}

#[test]
fn a_missing_grant_beside_others_reads_as_an_entry_to_add() {
    // `forbidden` imports llm; the manifest grants it something else.
    let err = error_of(
        "[workflow]\nname = \"w\"\n[[plugin]]\nname = \"f\"\npath = \"{plugin:forbidden}\"\nworld = \"agent\"\ngrants = [\"kv\"]\n",
    );
    assert!(
        err.contains("plugin 'f' imports murmur:plugin/llm@0.1.0, which its manifest does not grant: add \"llm\" to its `grants` if it should have it"),
        "{err}"
    );
}

#[test]
fn durations_and_sizes_that_would_overflow_are_refused_where_they_are_written() {
    let plugin = |limits: &str| {
        format!(
            "[workflow]\nname = \"w\"\n[[plugin]]\nname = \"p\"\npath = \"a.wasm\"\nworld = \"agent\"\nlimits = {{ {limits} }}\n"
        )
    };
    for (text, at, says) in [
        (
            plugin("timeout_ms = 18446744073709551615"),
            "workflow.toml:7:10",
            "plugin 'p': limits.timeout_ms is 18446744073709551615 ms; at most 604800000 (7 days) is allowed",
        ),
        (
            plugin("memory_mb = 1000000"),
            "workflow.toml:7:10",
            "plugin 'p': limits.memory_mb is 1000000; at most 4096",
        ),
        (
            "[workflow]\nname = \"w\"\n\n[retry]\nbackoff_ms = 10000000000000\n".to_string(),
            "workflow.toml:4:1",
            "retry.backoff_ms is 10000000000000 ms; at most 604800000",
        ),
        (
            "[workflow]\nname = \"w\"\n[monitoring]\ninterval_ms = 604800001\n".to_string(),
            "workflow.toml:3:1",
            "monitoring.interval_ms is 604800001 ms",
        ),
        (
            "[workflow]\nname = \"w\"\n[llm]\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\nmax_backoff_ms = 18446744073709551615\n".to_string(),
            "workflow.toml:3:1",
            "llm.max_backoff_ms is 18446744073709551615 ms",
        ),
    ] {
        let err = error_of(&text);
        assert!(err.contains(at) && err.contains(says), "{err}");
    }
}

#[test]
fn only_an_agent_can_be_an_observer() {
    let err = error_of(
        "[workflow]\nname = \"w\"\n[[plugin]]\nname = \"t\"\npath = \"{plugin:triage}\"\nworld = \"router\"\nobserver = true\n",
    );
    assert!(
        err.contains("workflow.toml:7:12") && err.contains("`observer` marks an agent"),
        "{err}"
    );
}

#[test]
fn a_malformed_http_entry_is_refused_at_its_line_saying_what_was_expected() {
    for (entry, says) in [
        ("[]", "`http` is empty"),
        ("[\"api.github.com\"]", "has no scheme"),
        ("[\"https://example.com/repos\"]", "not a path"),
        ("[42]", "each entry is a URL pattern"),
        ("[{ headers = {} }]", "a table entry needs `url"),
        (
            "[{ url = \"https://a.example\", header = {} }]",
            "unknown key 'header'",
        ),
        (
            "[{ url = \"https://a.example\", headers = { \"X Y\" = \"v\" } }]",
            "'X Y' is not a header name",
        ),
        (
            "[{ url = \"https://a.example\", headers = { Accept = 1 } }]",
            "header Accept: the value is a string",
        ),
        (
            "[{ url = \"https://a.example\", headers = { Accept = \"${file:/x}\" } }]",
            "only ${env:NAME} is known",
        ),
        (
            "[{ url = \"https://a.example\", sign = \"yes\" }]",
            "`sign` is { header",
        ),
        (
            "[{ url = \"https://a.example\", sign = { header = \"X-Sig\", secret = \"plain\" } }]",
            "the secret is written in the manifest",
        ),
    ] {
        let err = error_of(&format!(
            "[workflow]\nname = \"w\"\n\n[[plugin]]\nname = \"p\"\npath = \"x.wasm\"\nworld = \"agent\"\nhttp = {entry}\n"
        ));
        assert!(err.contains("workflow.toml:8:"), "{entry}: {err}");
        assert!(err.contains(says), "{entry}: {err}");
    }
}
