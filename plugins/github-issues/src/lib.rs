//! `github-issues`: one GitHub issue per work discovery, and an `ExternalLink` back.
//!
//! An agent (world `http-agent`) written as an example for plugin authors: it reaches
//! GitHub's REST API only through the host (the manifest's `http` list names the API and
//! adds the token as a header the plugin never sees), keeps its state in `kv`, and treats
//! GitHub's answers as data.
//!
//! **Never two issues for one discovery**, across retries, `resume` after a kill and
//! reruns of the workflow: the issue's body carries a marker (`<!-- murmur-discovery: FP
//! -->`, a fingerprint of the discovery's phase, description and done definition, so a
//! rerun's discovery of the same work finds the issue the first run opened), and before
//! creating one the plugin looks for it, first in `kv` (the mapping it records after each
//! creation), then among the repository's issues labelled `murmur` (newest first; the
//! issues list, not the search API, whose index lags behind new issues). A kill between
//! creating an issue and recording it is thus caught by the marker.
//!
//! **Rate limits**: a 429, or a 403 with `x-ratelimit-remaining: 0` or `retry-after`, is
//! waited out (`retry-after` seconds, or until `x-ratelimit-reset` by the answer's own
//! `date`) when the wait fits in `max_wait_ms`; otherwise the invocation fails
//! `retryable` and the host tries it again later.
//!
//! Configuration (`[plugin.config]`):
//! - `repo = "owner/name"` (required);
//! - `api_url` (default `https://api.github.com`; GitHub Enterprise's, or a test server);
//! - `phases = ["implementation"]`: only discoveries for these phases (default: all);
//! - `min_priority = "high"`: only discoveries at least this urgent (default `low`);
//! - `labels = ["murmur"]`: labels every issue gets, besides `phase:…` and `priority:…`
//!   (the first one is the label the duplicate check lists by; default `["murmur"]`);
//! - `max_wait_ms` (default 20,000), `max_pages` of issues to look through (default 10).
//!
//! A CEL filter goes where every agent's does: `[[plugin.subscribe]]` in the manifest.

use murmur_guest::http::{sleep, Request, Response};
use murmur_guest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    repo: String,
    #[serde(default = "default_api")]
    api_url: String,
    #[serde(default)]
    phases: Vec<String>,
    #[serde(default)]
    min_priority: Priority,
    #[serde(default = "default_labels")]
    labels: Vec<String>,
    #[serde(default = "default_wait")]
    max_wait_ms: u64,
    #[serde(default = "default_pages")]
    max_pages: u32,
}

fn default_api() -> String {
    "https://api.github.com".into()
}
fn default_labels() -> Vec<String> {
    vec!["murmur".into()]
}
fn default_wait() -> u64 {
    20_000
}
fn default_pages() -> u32 {
    10
}

/// What the plugin publishes for each discovery it mirrored.
#[derive(Serialize, Deserialize)]
struct ExternalLink {
    url: String,
    number: u64,
    discovery_id: String,
    repo: String,
}

/// The part of GitHub's issue object used here.
#[derive(Deserialize)]
struct Issue {
    number: u64,
    html_url: String,
    #[serde(default)]
    body: Option<String>,
}

struct GitHubIssues;

fn rank(p: Priority) -> u8 {
    match p {
        Priority::Low => 0,
        Priority::Medium => 1,
        Priority::High => 2,
        Priority::Critical => 3,
    }
}

fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::Low => "low",
        Priority::Medium => "medium",
        Priority::High => "high",
        Priority::Critical => "critical",
    }
}

fn marker(fingerprint: &str) -> String {
    format!("<!-- murmur-discovery: {fingerprint} -->")
}

/// The same work's fingerprint in every run: FNV-1a (64 bits, as 16 hex digits) over the
/// phase, the description and the done definition, whitespace collapsed. Discoveries of
/// the same work within one run are the host's to record as duplicates.
fn fingerprint(work: &WorkDiscovery) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for field in [&work.phase, &work.description, &work.done_definition] {
        let text = field.split_whitespace().collect::<Vec<_>>().join(" ");
        for b in text.bytes().chain([0u8]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

impl Agent for GitHubIssues {
    fn describe() -> PluginInfo {
        PluginInfo::agent("github-issues", env!("CARGO_PKG_VERSION"))
            .description("Creates one GitHub issue per work discovery and links it back")
            .subscribe(Subscription::to("WorkDiscovery"))
            .publishes(["ExternalLink"])
            .capabilities(["kv"])
    }

    fn handle(inv: Invocation) -> Result<Vec<Output>, PluginError> {
        let config: Config = inv.config()?;
        if config.repo.split('/').count() != 2 {
            return Err(PluginError::failed(format!("config.repo is '{}'; expected owner/name", config.repo)));
        }
        let artifact = inv.first_input()?.clone();
        let work: WorkDiscovery = artifact.parse()?;
        if (!config.phases.is_empty() && !config.phases.contains(&work.phase))
            || rank(work.priority) < rank(config.min_priority)
        {
            return Ok(Vec::new());
        }
        let fingerprint = fingerprint(&work);
        let kv_key = format!("issue/{fingerprint}");
        let kv_err = |e: murmur_guest::kv::HostError| PluginError::failed(format!("kv: {e:?}"));
        let link = |number: u64, url: String| {
            Output::json(
                "ExternalLink",
                &ExternalLink { url, number, discovery_id: artifact.id.clone(), repo: config.repo.clone() },
            )
        };
        if let Some(known) = murmur_guest::kv::get(&kv_key).map_err(kv_err)? {
            let known: ExternalLink =
                serde_json::from_str(&known).map_err(|e| PluginError::failed(format!("kv {kv_key}: {e}")))?;
            return Ok(vec![link(known.number, known.url)?]);
        }
        let github = GitHub { config: &config };
        let issue = match github.find(&marker(&fingerprint))? {
            Some(issue) => issue,
            None => github.create(&inv, &artifact, &work, &fingerprint)?,
        };
        let record = ExternalLink {
            url: issue.html_url.clone(),
            number: issue.number,
            discovery_id: artifact.id.clone(),
            repo: config.repo.clone(),
        };
        let text = serde_json::to_string(&record).map_err(|e| PluginError::failed(e.to_string()))?;
        murmur_guest::kv::set(&kv_key, &text).map_err(kv_err)?;
        Ok(vec![link(issue.number, issue.html_url)?])
    }
}

/// The REST calls, with rate limits waited out.
struct GitHub<'a> {
    config: &'a Config,
}

impl GitHub<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}/repos/{}{path}", self.config.api_url.trim_end_matches('/'), self.config.repo)
    }

    /// Send `request`, waiting out rate limits within `max_wait_ms`.
    fn send(&self, request: Request) -> Result<Response, PluginError> {
        let request = request
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .header("user-agent", concat!("murmur-github-issues/", env!("CARGO_PKG_VERSION")));
        let mut waited = 0u64;
        loop {
            let answer = request.clone().send()?;
            let Some(wait_ms) = rate_limited(&answer) else {
                return Ok(answer);
            };
            if waited + wait_ms > self.config.max_wait_ms {
                return Err(PluginError::retryable(format!(
                    "GitHub's rate limit holds for {} s more (status {}); waiting longer than max_wait_ms ({} ms) is left to a later attempt",
                    wait_ms.div_ceil(1000),
                    answer.status,
                    self.config.max_wait_ms
                )));
            }
            log(Level::Info, &format!("rate limited by GitHub (status {}): waiting {wait_ms} ms", answer.status));
            sleep(wait_ms);
            waited += wait_ms;
        }
    }

    /// The issue whose body carries `marker`, among the newest `max_pages` pages of the
    /// repository's issues with the first configured label.
    fn find(&self, marker: &str) -> Result<Option<Issue>, PluginError> {
        let label = self.config.labels.first().map(String::as_str).unwrap_or("murmur");
        for page in 1..=self.config.max_pages {
            let url = self.url(&format!(
                "/issues?state=all&labels={}&sort=created&direction=desc&per_page=100&page={page}",
                encode(label)
            ));
            let answer = self.send(Request::get(&url))?;
            if answer.status != 200 {
                return Err(failure("listing issues", &answer));
            }
            let issues: Vec<Issue> = answer.json()?;
            let full = issues.len() == 100;
            if let Some(found) = issues.into_iter().find(|i| i.body.as_deref().is_some_and(|b| b.contains(marker))) {
                return Ok(Some(found));
            }
            if !full {
                break;
            }
        }
        Ok(None)
    }

    fn create(
        &self,
        inv: &Invocation,
        artifact: &Artifact,
        work: &WorkDiscovery,
        fingerprint: &str,
    ) -> Result<Issue, PluginError> {
        let first_line = work.description.lines().next().unwrap_or("work discovered").trim();
        let mut title: String = first_line.chars().take(100).collect();
        if title.len() < first_line.len() {
            title.push('…');
        }
        let body = format!(
            "{description}\n\n**Done when:** {done}\n\n| | |\n|---|---|\n| Phase | {phase} |\n| Priority | {priority} |\n| Discovered by | {by} |\n| Run | `{run}` |\n| Discovery artifact | `{id}` |\n\n{marker}\n",
            description = work.description,
            done = work.done_definition,
            phase = work.phase,
            priority = priority_name(work.priority),
            by = work.discovered_by,
            run = inv.workflow_id,
            id = artifact.id,
            marker = marker(fingerprint),
        );
        let mut labels = self.config.labels.clone();
        labels.push(format!("phase:{}", work.phase));
        labels.push(format!("priority:{}", priority_name(work.priority)));
        let request = Request::post(&self.url("/issues"))
            .json(&serde_json::json!({ "title": title, "body": body, "labels": labels }))?;
        let answer = self.send(request)?;
        if answer.status != 201 {
            return Err(failure("creating the issue", &answer));
        }
        answer.json()
    }
}

/// How long to wait when `answer` is GitHub's rate limit, in milliseconds.
fn rate_limited(answer: &Response) -> Option<u64> {
    let limited = answer.status == 429
        || (answer.status == 403
            && (answer.header("x-ratelimit-remaining") == Some("0") || answer.header("retry-after").is_some()));
    if !limited {
        return None;
    }
    if let Some(seconds) = answer.header("retry-after").and_then(|s| s.trim().parse::<u64>().ok()) {
        return Some(seconds * 1000);
    }
    let reset = answer.header("x-ratelimit-reset").and_then(|s| s.trim().parse::<u64>().ok());
    let now = answer.header("date").and_then(http_date);
    match (reset, now) {
        (Some(reset), Some(now)) => Some(reset.saturating_sub(now).max(1) * 1000),
        // GitHub's advice when it says nothing more: wait a minute.
        _ => Some(60_000),
    }
}

/// A failed call, as the error the host should act on: 5xx is worth retrying.
fn failure(what: &str, answer: &Response) -> PluginError {
    let text: String = answer.text().chars().take(300).collect();
    let message = format!("{what}: GitHub answered {}: {text}", answer.status);
    if answer.status >= 500 {
        PluginError::retryable(message)
    } else {
        PluginError::failed(message)
    }
}

/// Percent-encode a query value.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Seconds since 1970 of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn http_date(text: &str) -> Option<u64> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = months.iter().position(|m| m == month)? as i64 + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else { return None };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + m * 60 + s).ok()
}

murmur_guest::export_agent!(GitHubIssues);
