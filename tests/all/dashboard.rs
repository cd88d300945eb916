//! The dashboard in a real browser: Debian's Chromium driven over WebDriver (the W3C
//! protocol spoken to chromedriver over loopback HTTP) against a real `murmur serve`.
//! Screenshots of each view go to `target/dashboard/` for a person to look at.

use crate::serve::{Server, request};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// chromedriver, from `cargo xtask test` (which installs Debian's chromium and
/// chromium-driver when missing).
fn chromedriver() -> PathBuf {
    let path = std::env::var_os("MURMUR_CHROMEDRIVER").map(PathBuf::from);
    match path {
        Some(p) if p.exists() => p,
        _ => panic!(
            "MURMUR_CHROMEDRIVER does not name chromedriver: run the tests with `cargo xtask test` (it installs Debian's chromium and chromium-driver)"
        ),
    }
}

/// A headless Chromium session; chromedriver is stopped when dropped.
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start(width: u32, height: u32) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let driver = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().expect("tempdir");
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-extensions",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={width},{height}"),
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        }}});
        let mut browser = Self {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
        };
        let answer = browser.call("POST", "/session", Some(capabilities));
        browser.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_string();
        browser
    }

    /// One WebDriver command; its `value`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.try_call(method, path, body);
        assert_eq!(status, 200, "WebDriver {method} {path}: {value}");
        value["value"].clone()
    }

    /// One WebDriver command; its status and answer.
    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        let (status, text) = request(
            self.addr,
            method,
            path,
            &[],
            body.as_deref().map(str::as_bytes),
        );
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` as given) in the page; its result.
    fn run(&self, script: &str, args: Value) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Waits until `script` returns something truthy; that value.
    fn wait(&self, what: &str, script: &str) -> Value {
        let started = Instant::now();
        loop {
            let v = self.run(script, json!([]));
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "waited a minute for {what}; the page shows: {}\nits console: {:#?}",
                self.run("return document.body.innerText", json!([])),
                self.console()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The WebDriver id of the first element matching `css`.
    fn element(&self, css: &str) -> String {
        let found = self.session_call(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    /// Clicks the first element matching `css` (a real click, through the browser). A
    /// live page may redraw between finding the element and clicking it: then it is
    /// found again, as a person would look again.
    fn click(&self, css: &str) {
        for _ in 0..5 {
            let id = self.element(css);
            let path = format!("/session/{}/element/{id}/click", self.session);
            let (status, answer) = self.try_call("POST", &path, Some(json!({})));
            if status == 200 {
                return;
            }
            assert_eq!(
                answer["value"]["error"], "stale element reference",
                "clicking {css}: {answer}"
            );
        }
        panic!("{css} was redrawn under every click");
    }

    /// Types `text` into the first element matching `css`, after clearing it.
    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.session_call("POST", &format!("/element/{id}/clear"), Some(json!({})));
        self.session_call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn screenshot(&self, name: &str) {
        let png = self.session_call("GET", "/screenshot", None);
        let bytes = base64_decode(png.as_str().expect("base64"));
        let dir = screenshots();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), bytes).expect("screenshot");
    }

    /// A Chrome DevTools Protocol command, through chromedriver.
    fn cdp(&self, command: &str, params: Value) -> Value {
        self.session_call(
            "POST",
            "/goog/cdp/execute",
            Some(json!({ "cmd": command, "params": params })),
        )
    }

    fn resize(&self, width: u32, height: u32) {
        self.session_call(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        );
    }

    /// The browser console's entries since the last call.
    fn console(&self) -> Vec<Value> {
        self.session_call("POST", "/se/log", Some(json!({ "type": "browser" })))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Fails on any console error (and on any warning the page itself wrote).
    fn assert_quiet_console(&self, during: &str) {
        self.assert_console_only(during, &[]);
    }

    /// Fails on any console error or warning but the browser's own report of an answer
    /// with one of the `expected` statuses (Chromium logs every 4xx a page receives).
    fn assert_console_only(&self, during: &str, expected: &[u16]) {
        let bad: Vec<Value> = self
            .console()
            .into_iter()
            .filter(|e| e["level"] == "SEVERE" || e["level"] == "WARNING")
            .filter(|e| {
                !(e["source"] == "network"
                    && expected.iter().any(|s| {
                        e["message"]
                            .as_str()
                            .is_some_and(|m| m.contains(&format!("status of {s} ")))
                    }))
            })
            .collect();
        assert!(bad.is_empty(), "console errors while {during}: {bad:#?}");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = request(
                self.addr,
                "DELETE",
                &format!("/session/{}", self.session),
                &[],
                None,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn screenshots() -> PathBuf {
    crate::helpers::repo().join("target/dashboard")
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|c| *c != b'=' && *c != b'\n').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c) << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    out
}

/// The board's counts as the page shows them: phase → status → count.
fn board_counts(browser: &Browser) -> BTreeMap<String, BTreeMap<String, u64>> {
    let shown = browser.run(
        r#"const out = {};
           for (const col of document.querySelectorAll('#board .column')) {
             const counts = {};
             for (const b of col.querySelectorAll('.counts [data-count]')) {
               counts[b.dataset.count] = Number(b.querySelector('.count').textContent.replace(/,/g, ''));
             }
             out[col.dataset.phase] = counts;
           }
           return out;"#,
        json!([]),
    );
    serde_json::from_value(shown).expect("counts")
}

/// The summary's non-zero work counts: phase → status → count.
fn summary_counts(summary: &Value) -> BTreeMap<String, BTreeMap<String, u64>> {
    summary["phases"]
        .as_object()
        .expect("phases")
        .iter()
        .map(|(phase, counts)| {
            let counts = counts
                .as_object()
                .expect("counts")
                .iter()
                .filter_map(|(s, n)| n.as_u64().filter(|n| *n > 0).map(|n| (s.clone(), n)))
                .collect();
            (phase.clone(), counts)
        })
        .collect()
}

/// Every control the page shows has a name a screen reader reads out.
fn assert_every_control_is_labelled(browser: &Browser, view: &str) {
    let unlabelled = browser.run(
        r#"const out = [];
           for (const el of document.querySelectorAll('button, a[href], input, select, textarea, [tabindex="0"]')) {
             if (el.closest('[hidden]')) continue;
             const byLabel = el.id && document.querySelector(`label[for="${el.id}"]`);
             const name = (el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') || (byLabel && byLabel.textContent) || el.textContent || el.title || '').trim();
             if (!name) out.push(el.outerHTML.slice(0, 120));
           }
           return out;"#,
        json!([]),
    );
    assert_eq!(unlabelled, json!([]), "controls without a name on {view}");
}

fn gated_run(server: &Server, dir: &Path) -> String {
    let manifest = crate::approval::gated_auth_demo(dir, None);
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let (status, body) = server.post(
        "/v1/workflows",
        json!({ "manifest": text, "base_dir": dir.display().to_string() }),
    );
    assert_eq!(status, 201, "{body}");
    body["workflow_id"].as_str().expect("an id").to_string()
}

#[test]
fn the_dashboard_shows_a_gated_run_and_a_click_on_approve_completes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("dashboard.db"));
    let id = gated_run(&server, dir.path());
    let summary = server.wait_ended(&id);
    assert_eq!(summary["status"], "waiting", "{summary}");
    let base = server.url();

    let browser = Browser::start(1280, 800);
    browser.goto(&format!("{base}/#/run/{id}/board"));
    browser.wait(
        "the board, live",
        "return document.querySelector('#board .column') && document.getElementById('connection').dataset.state === 'live'",
    );
    assert_eq!(
        board_counts(&browser),
        summary_counts(&summary),
        "the board's counts are the API's summary"
    );
    let awaiting = summary_counts(&summary)["implementation"]["awaiting_approval"];
    assert!(awaiting > 0, "{summary}");
    let buttons = browser.run(
        "return document.querySelectorAll('#board .approve').length",
        json!([]),
    );
    assert_eq!(buttons, json!(awaiting), "an Approve button per gated item");
    assert_every_control_is_labelled(&browser, "the board");
    browser.screenshot("board");

    // The other views, each with what the API says.
    browser.click("#tab-graph");
    let drawn = browser.wait(
        "the graph",
        "const c = document.getElementById('graph-canvas'); return c && c.dataset.nodes",
    );
    assert_eq!(
        drawn,
        json!(summary["artifacts"].to_string()),
        "one node per artifact"
    );
    browser.screenshot("graph");
    browser.click("#tab-agents");
    browser.wait(
        "the agents",
        "return document.querySelector('#agents tbody tr')",
    );
    let agents = browser.run(
        "return [...document.querySelectorAll('#agents tbody tr')].map(r => r.dataset.agent)",
        json!([]),
    );
    let expected: Vec<&String> = summary["agents"]
        .as_object()
        .expect("agents")
        .keys()
        .collect();
    assert_eq!(agents, json!(expected));
    browser.screenshot("agents");
    browser.click("#tab-faults");
    browser.wait(
        "the faults",
        "return document.querySelector('#panel .counts') && !document.querySelector('#panel p.muted:only-child')",
    );
    browser.screenshot("faults");

    // The work item inspector, then the artifact inspector from it.
    browser.click("#tab-board");
    browser.wait(
        "the board again",
        "return document.querySelector('#board .card[data-status=\"awaiting_approval\"] a.title')",
    );
    browser.click("#board .card[data-status=\"awaiting_approval\"] a.title");
    browser.wait(
        "the work item inspector",
        "const i = document.getElementById('inspector'); return i && /Attempts/.test(i.innerText) && /Approval/.test(i.innerText)",
    );
    browser.screenshot("work-item");
    browser.click("#inspector dd a[href*='/artifact/']");
    browser.wait(
        "the artifact inspector",
        "return document.getElementById('visibility') && document.querySelector('#inspector pre.json')",
    );
    let payload = browser.run(
        "return JSON.parse(document.querySelector('#inspector pre.json').textContent)",
        json!([]),
    );
    assert!(payload["description"].is_string(), "{payload}");
    browser.screenshot("artifact");

    // The publish form is generated from the type's schema.
    browser.click("#publish");
    browser.wait(
        "the publish form",
        "return document.getElementById('field-description') && document.getElementById('field-priority')",
    );
    assert_every_control_is_labelled(&browser, "the publish form");
    browser.screenshot("publish");
    browser.run("document.getElementById('dialog').close()", json!([]));

    // Approve gated work with clicks (approved work discovers more, gated too) until the
    // run completes, live.
    browser.click(&format!("a[href='#/run/{id}/board']"));
    for clicks in 0.. {
        let next = browser.wait(
            "an Approve button or the end",
            "const b = document.querySelector('#run-status .badge'); if (b && b.dataset.status === 'complete') return 'complete'; const c = document.querySelector('#board .card .approve'); return c ? c.closest('.card').dataset.work : null",
        );
        if next == "complete" {
            break;
        }
        assert!(clicks < 20, "still gated work after 20 approvals");
        let work = next.as_str().expect("a work id").to_string();
        browser.click(&format!("#card-approve-{work}"));
        browser.wait(
            "the approval to show",
            &format!("return !document.getElementById('card-approve-{work}')"),
        );
    }
    let summary = server.wait_ended(&id);
    assert_eq!(summary["status"], "complete", "{summary}");
    browser.wait(
        "the board to catch up",
        "return !document.querySelector('#board .approve')",
    );
    // The counts the page settles on are the API's.
    let started = Instant::now();
    while board_counts(&browser) != summary_counts(&summary) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the board shows {:?}, the API {:?}",
            board_counts(&browser),
            summary_counts(&summary)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    browser.screenshot("complete");

    // The runs list.
    browser.goto(&format!("{base}/#/"));
    browser.wait(
        "the runs",
        &format!("return document.querySelector('#runs tr[data-run=\"{id}\"]')"),
    );
    browser.screenshot("runs");

    // Nothing came from anywhere but the server.
    let elsewhere = browser.run(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith(location.origin))",
        json!([]),
    );
    assert_eq!(elsewhere, json!([]), "the page fetched from elsewhere");
    browser.assert_quiet_console("watching, inspecting and approving");
}

#[test]
fn the_dashboard_reads_at_phone_width_and_follows_a_dark_system_theme() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("dashboard.db"));
    let id = gated_run(&server, dir.path());
    server.wait_ended(&id);
    let browser = Browser::start(500, 844);
    // A phone's screen (narrower than a desktop window may be), and a dark system theme.
    browser.cdp(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true }),
    );
    browser.cdp(
        "Emulation.setEmulatedMedia",
        json!({ "features": [{ "name": "prefers-color-scheme", "value": "dark" }] }),
    );
    browser.goto(&format!("{}/#/run/{id}/board", server.url()));
    browser.wait("the board", "return document.querySelector('#board .card')");
    let background = browser.run(
        "return getComputedStyle(document.body).backgroundColor",
        json!([]),
    );
    assert_eq!(background, json!("rgb(17, 20, 24)"), "the dark theme");
    let overflow = browser.run(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
        json!([]),
    );
    assert_eq!(overflow, json!(0), "nothing wider than a phone's screen");
    browser.screenshot("phone-dark");
    // Keyboard: the run's tabs follow the arrow keys.
    browser.run("document.getElementById('tab-board').focus()", json!([]));
    browser.session_call(
        "POST",
        "/actions",
        Some(json!({ "actions": [{ "type": "key", "id": "keys", "actions": [
            { "type": "keyDown", "value": "\u{E014}" }, { "type": "keyUp", "value": "\u{E014}" } ] }] })),
    );
    browser.wait(
        "the graph tab, by the arrow key",
        "return location.hash.endsWith('/graph') && document.activeElement && document.activeElement.id === 'tab-graph'",
    );
    let width = browser.run("return window.innerWidth", json!([]));
    assert_eq!(width, json!(390));
    browser.cdp("Emulation.clearDeviceMetricsOverride", json!({}));
    browser.resize(1280, 800);
    browser.screenshot("graph-dark");
    browser.assert_quiet_console("reading at phone width");
}

#[test]
fn the_page_reconnects_to_a_restarted_server_and_shows_what_happened_meanwhile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("dashboard.db");
    let server = Server::start(&db);
    let id = gated_run(&server, dir.path());
    server.wait_ended(&id);
    let url = server.url();
    let browser = Browser::start(1280, 800);
    browser.goto(&format!("{url}/#/run/{id}/board"));
    browser.wait(
        "the board, live",
        "return document.querySelector('#board .approve') && document.getElementById('connection').dataset.state === 'live'",
    );
    let (_, page) = server.get(&format!("/v1/workflows/{id}/work?status=awaiting_approval"));
    let work = page["items"][0]["id"]
        .as_str()
        .expect("gated work")
        .to_string();

    // The server goes away; the page says so and keeps trying (with backoff).
    assert!(server.stop().success());
    browser.wait(
        "the page to notice",
        "return document.getElementById('connection').dataset.state === 'reconnecting'",
    );
    // Another server on the same store and address; a decision made through it shows
    // up on the page that was open all along.
    let listen = url.trim_start_matches("http://");
    let server = Server::start_listening(&db, listen, &[], &[]);
    let (status, body) = server.post(
        &format!("/v1/workflows/{id}/work/{work}/approve"),
        json!({}),
    );
    assert_eq!(status, 200, "{body}");
    browser.wait(
        "the page to reconnect and show the approval",
        &format!(
            "return document.getElementById('connection').dataset.state === 'live' && !document.getElementById('card-approve-{work}')"
        ),
    );
    browser.screenshot("reconnected");
    // A lost connection is logged by the browser as a network error: the page itself
    // reports nothing else.
    let errors: Vec<Value> = browser
        .console()
        .into_iter()
        .filter(|e| e["level"] == "SEVERE")
        .filter(|e| {
            !e["message"]
                .as_str()
                .is_some_and(|m| m.contains("/events") && m.contains("net::ERR_"))
        })
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn a_cascade_of_ten_thousand_artifacts_is_drawn_as_groups_with_exact_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("dashboard.db"));
    let demo = crate::helpers::repo().join("examples/cascade/workflow.toml");
    let text = std::fs::read_to_string(&demo).expect("the cascade example");
    let plugins = crate::helpers::repo().join("target/plugins");
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("count = ") {
                "count = 2100".to_string()
            } else {
                l.replace("../../target/plugins", &plugins.display().to_string())
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let (status, body) = server.post("/v1/workflows", json!({ "manifest": text }));
    assert_eq!(status, 201, "{body}");
    let id = body["workflow_id"].as_str().expect("id").to_string();
    let summary = server.wait_ended(&id);
    assert_eq!(summary["status"], "complete", "{summary}");
    let artifacts = summary["artifacts"].as_u64().expect("artifacts");
    assert!(artifacts >= 10_000, "{artifacts} artifacts");

    let browser = Browser::start(1280, 800);
    browser.goto(&format!("{}/#/run/{id}/graph", server.url()));
    let nodes = browser.wait(
        "the graph",
        "const c = document.getElementById('graph-canvas'); return c && c.dataset.paintMs && c.dataset.nodes",
    );
    assert_eq!(
        nodes,
        json!(artifacts.to_string()),
        "every artifact is laid out"
    );
    let drawn: u64 = browser
        .run(
            "return Number(document.getElementById('graph-canvas').dataset.drawn)",
            json!([]),
        )
        .as_u64()
        .expect("drawn");
    assert!(drawn < 200, "{drawn} boxes drawn for {artifacts} artifacts");
    // The groups' counts add up to the run's artifacts.
    let note = browser.run(
        "return document.getElementById('graph-note').textContent",
        json!([]),
    );
    assert!(
        note.as_str().is_some_and(
            |n| n.contains(&format!("{artifacts}")) || n.contains(&format_thousands(artifacts))
        ),
        "{note}"
    );
    let legend_total: u64 = browser
        .run(
            "return [...document.querySelectorAll('#graph-legend > span')].map(s => Number(s.textContent.match(/\\(([\\d,]+)\\)/)[1].replace(/,/g, ''))).reduce((a, b) => a + b, 0)",
            json!([]),
        )
        .as_u64()
        .expect("legend");
    assert_eq!(
        legend_total, artifacts,
        "the legend's counts by phase add up"
    );
    // Hovering a group highlights its branch; the page answers (a figure, not a limit).
    browser.session_call(
        "POST",
        "/actions",
        Some(json!({ "actions": [{ "type": "pointer", "id": "mouse", "parameters": { "pointerType": "mouse" },
            "actions": [{ "type": "pointerMove", "origin": { "element-6066-11e4-a52e-4f735466cecf": browser.element("#graph-canvas") }, "x": -560, "y": -250 }] }] })),
    );
    let figures = browser.run(
        "const c = document.getElementById('graph-canvas'); return { layout_ms: Number(c.dataset.layoutMs), paint_ms: Number(c.dataset.paintMs) }",
        json!([]),
    );
    eprintln!("dashboard graph of {artifacts} artifacts in {drawn} groups: {figures}");
    browser.screenshot("graph-10k");
    browser.assert_quiet_console("drawing ten thousand artifacts");
}

fn format_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn reject_publish_and_cancel_work_from_the_page_and_a_malformed_payload_marks_its_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("dashboard.db"));
    let id = gated_run(&server, dir.path());
    server.wait_ended(&id);
    let browser = Browser::start(1280, 800);
    browser.goto(&format!("{}/#/run/{id}/board", server.url()));
    let work = browser.wait(
        "gated work",
        "const c = document.querySelector('#board .card .reject'); return c ? c.closest('.card').dataset.work : null",
    );
    let work = work.as_str().expect("id").to_string();

    // Reject, with a reason, through the dialog.
    browser.click(&format!("#card-reject-{work}"));
    browser.type_into("#reject-reason", "Not this quarter");
    browser.screenshot("reject");
    browser.click("#dialog button[type='submit']");
    browser.wait(
        "the rejection to show",
        &format!("return !document.getElementById('card-reject-{work}')"),
    );
    let (_, story) = server.get(&format!("/v1/workflows/{id}/work/{work}"));
    let decision = &story["work"]["approval"]["decision"];
    assert_eq!(
        (&decision["approved"], &decision["reason"]),
        (&json!(false), &json!("Not this quarter")),
        "{story}"
    );

    // Publish: a payload the schema refuses marks the field; nothing is stored. Then a
    // good one is published.
    browser.click("#publish");
    browser.wait(
        "the form",
        "return document.getElementById('field-description')",
    );
    browser.type_into("#field-description", "Rate-limit logins");
    browser.type_into("#field-phase", "analysis");
    browser.type_into("#field-done_definition", "limits in place");
    browser.type_into("#field-discovered_by", "ops");
    browser.type_into("#field-metadata", "[1, 2]");
    browser.click("#dialog button[type='submit']");
    let message = browser.wait(
        "the field marked",
        "const f = document.getElementById('field-metadata'); return f.getAttribute('aria-invalid') === 'true' && document.getElementById('field-metadata-error').textContent",
    );
    assert!(
        message.as_str().is_some_and(|m| m.contains("object")),
        "{message}"
    );
    let (_, page) = server.get(&format!("/v1/workflows/{id}/artifacts?producer=api"));
    assert_eq!(
        page["artifacts"],
        json!([]),
        "a refused publish stores nothing"
    );
    browser.type_into("#field-metadata", "{\"source\": \"dashboard\"}");
    browser.click("#dialog button[type='submit']");
    browser.wait(
        "the publish to be acknowledged",
        "return !document.getElementById('dialog').open && /Published WorkDiscovery/.test(document.getElementById('notices').textContent)",
    );
    let (_, page) = server.get(&format!("/v1/workflows/{id}/artifacts?producer=api"));
    let published = page["artifacts"].as_array().expect("artifacts");
    assert_eq!(published.len(), 1, "{page}");
    assert_eq!(
        published[0]["payload"],
        json!({ "description": "Rate-limit logins", "phase": "analysis", "priority": "medium",
                "done_definition": "limits in place", "discovered_by": "ops",
                "metadata": { "source": "dashboard" } })
    );

    // Cancel, confirmed.
    browser.click("#cancel");
    browser.click("#dialog button[type='submit']");
    browser.wait(
        "the run cancelled",
        "const b = document.querySelector('#run-status .badge'); return b && b.dataset.status === 'cancelled'",
    );
    assert_eq!(server.wait_ended(&id)["status"], "cancelled");
    browser.assert_console_only("rejecting, publishing and cancelling", &[422]);
}

#[test]
fn pause_and_resume_from_the_page_and_a_server_with_a_token_asks_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = "dashboard-token-0123456789";
    let server = Server::start_with(
        &dir.path().join("dashboard.db"),
        &["--token-env", "T_DASH"],
        &[("T_DASH", token)],
    );
    let (status, body) = server.request(
        "POST",
        "/v1/workflows",
        &[("Authorization", &format!("Bearer {token}"))],
        Some(
            json!({ "manifest": crate::serve::slow_manifest(400) })
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(status, 201, "{body}");
    let id = body["workflow_id"].as_str().expect("id").to_string();
    let browser = Browser::start(1280, 800);
    browser.goto(&format!("{}/#/run/{id}/board", server.url()));
    browser.wait(
        "the token dialog",
        "return document.getElementById('token')",
    );
    browser.type_into("#token", token);
    browser.click("#dialog button[type='submit']");
    browser.wait(
        "the run, live",
        "const b = document.querySelector('#run-status .badge'); return b && b.dataset.status === 'running' && document.getElementById('connection').dataset.state === 'live'",
    );
    browser.click("#pause");
    browser.wait(
        "the run paused",
        "const b = document.querySelector('#run-status .badge'); return b && b.dataset.status === 'paused'",
    );
    browser.screenshot("paused");
    let paused = server.request(
        "GET",
        &format!("/v1/workflows/{id}"),
        &[("Authorization", &format!("Bearer {token}"))],
        None,
    );
    assert_eq!(paused.1["status"], "paused", "{}", paused.1);
    browser.click("#resume");
    browser.wait(
        "the run to go on",
        "const b = document.querySelector('#run-status .badge'); return b && b.dataset.status === 'running' && document.getElementById('resume').disabled",
    );
    browser.assert_console_only("asking for a token", &[401]);
}
