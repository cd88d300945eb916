//! Hot loading: a phase-plugin bundle dropped into the watched directory mid-run is
//! compiled, checked and swapped in; a broken one is rejected and the run goes on.

use crate::helpers::*;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

/// Write `bytes` to `path` atomically (a rename), as a deployment tool would.
/// Wait up to a minute for `child` to exit (killing it and failing with `late` if it does
/// not); its exit status, stdout and stderr.
fn wait_for(
    child: &mut std::process::Child,
    late: &str,
) -> (std::process::ExitStatus, String, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("poll") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{late}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read");
    (status, stdout, stderr)
}

fn put(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[test]
fn a_deployment_phase_bundle_dropped_in_mid_run_takes_the_waiting_work_and_a_broken_one_is_rejected()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let watch = dir.path().join("bundles");
    std::fs::create_dir(&watch).expect("mkdir");
    // No phase and no agent for it yet: the deployment work waits.
    let manifest = dir.path().join("workflow.toml");
    std::fs::write(
        &manifest,
        "[workflow]\nname = \"ship\"\n[[type]]\nname = \"Note\"\nschema = { type = \"object\" }\n[[input]]\ntype = \"WorkDiscovery\"\npayload = { description = \"Deploy the auth service\", phase = \"deployment\", done_definition = \"running in production\", discovered_by = \"user\" }\n",
    )
    .expect("manifest");
    let mut child = murmur()
        .args(["run", "--json", "--store", "memory", "--watch"])
        .arg(&watch)
        .arg(&manifest)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");

    std::thread::sleep(Duration::from_millis(400));
    assert!(
        child.try_wait().expect("poll").is_none(),
        "the run waits for a deployment plugin"
    );
    // A bundle whose component is garbage: rejected, the run goes on.
    put(
        &watch.join("deploy.toml"),
        b"[[phase]]\nname = \"deployment\"\ndescription = \"Ship it\"\ninstructions = \"Deploy and verify\"\n\n[[plugin]]\nname = \"deployer\"\npath = \"deployer.wasm\"\nworld = \"agent\"\nconfig = { mode = \"echo\", emit_type = \"Note\" }\n[[plugin.subscribe]]\ntype = \"WorkDiscovery\"\nfilter = \"payload.phase == 'deployment'\"\n",
    );
    put(
        &watch.join("deployer.wasm"),
        b"\0asm this is not a component",
    );
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        child.try_wait().expect("poll").is_none(),
        "a broken bundle does not end the run"
    );
    // The real component.
    put(
        &watch.join("deployer.wasm"),
        &std::fs::read(plugin("probe")).expect("probe"),
    );

    let (status, stdout, stderr) = wait_for(
        &mut child,
        "the run did not finish after the bundle was fixed",
    );
    assert!(status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("summary");
    assert_eq!(summary["status"], "complete", "{stderr}");
    assert_eq!(summary["agents"]["deployer"]["invocations"], 1);
    assert_eq!(summary["phases"]["deployment"]["done"], 1);
    assert!(
        stderr.contains("rejected (the running version stays)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("deploy.toml:8:8: plugin 'deployer'")
            && stderr.contains("deployer.wasm is not a loadable WebAssembly component"),
        "the rejection names the bundle line and the component: {stderr}"
    );
    assert!(
        stderr.contains("hot load: 1 plugin(s) in force; new: deployer"),
        "{stderr}"
    );
}

#[test]
fn bare_components_dropped_in_join_as_agents_and_a_changed_one_replaces_the_old() {
    let dir = tempfile::tempdir().expect("tempdir");
    let watch = dir.path().join("agents");
    std::fs::create_dir(&watch).expect("mkdir");
    let manifest = dir.path().join("workflow.toml");
    std::fs::write(
        &manifest,
        "[workflow]\nname = \"bare\"\n[[phase]]\nname = \"analysis\"\n[[phase]]\nname = \"implementation\"\n[[phase]]\nname = \"validation\"\n[[input]]\ntype = \"WorkDiscovery\"\npayload = { description = \"Plan the billing service\", phase = \"analysis\", done_definition = \"planned\", discovered_by = \"user\" }\n",
    )
    .expect("manifest");
    let mut child = murmur()
        .args(["run", "--json", "--store", "memory", "--watch"])
        .arg(&watch)
        .arg(&manifest)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // First the wrong component under the analyzer's name (its own subscriptions: none
    // useful), then the real one: the changed file replaces it.
    std::thread::sleep(Duration::from_millis(300));
    put(
        &watch.join("analyzer.wasm"),
        &std::fs::read(plugin("probe")).expect("probe"),
    );
    std::thread::sleep(Duration::from_millis(600));
    put(
        &watch.join("analyzer.wasm"),
        &std::fs::read(plugin("analyzer")).expect("analyzer"),
    );
    std::thread::sleep(Duration::from_millis(600));
    put(
        &watch.join("implementer.wasm"),
        &std::fs::read(plugin("implementer")).expect("implementer"),
    );
    std::thread::sleep(Duration::from_millis(600));
    put(
        &watch.join("validator.wasm"),
        &std::fs::read(plugin("validator")).expect("validator"),
    );

    let (status, stdout, stderr) = wait_for(
        &mut child,
        "the run did not finish once every phase had an agent",
    );
    assert!(status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("summary");
    assert_eq!(summary["status"], "complete", "{stderr}");
    for agent in ["analyzer", "implementer", "validator"] {
        assert_eq!(
            summary["agents"][agent]["invocations"], 1,
            "{agent}: {summary}"
        );
    }
}
