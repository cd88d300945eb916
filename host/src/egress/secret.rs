//! Header values the host adds on a plugin's requests: `${env:NAME}` templates, the
//! refusal of literal secrets in manifests, and redaction.
//!
//! A manifest is shared, committed and recorded with every run, so a secret never lives
//! in it: a header value that looks like one (an `Authorization` header, a known token
//! prefix, a long random-looking run of characters) must come from the environment of the
//! process that runs the plugin. The value reaches the wire and nothing else: the plugin
//! never sees it (the host adds it after the guest's request is built), and what the host
//! logs, stores or records has every secret value replaced by `[redacted]`.

use std::collections::BTreeMap;

/// What a secret is replaced with wherever the host shows or keeps text.
pub const REDACTED: &str = "[redacted]";

/// A header value with `${env:NAME}` parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Env(String),
}

/// Header names whose values are credentials whatever they look like.
const SECRET_NAMES: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
];
/// Words that make a header name a credential's (`X-Auth-Token`, `Api-Key`).
const SECRET_WORDS: [&str; 5] = ["token", "secret", "key", "auth", "password"];
/// Prefixes of well-known tokens (GitHub, OpenAI, Slack, AWS, GitLab).
const TOKEN_PREFIXES: [&str; 10] = [
    "ghp_",
    "gho_",
    "ghs_",
    "ghu_",
    "github_pat_",
    "sk-",
    "xoxb-",
    "xoxp-",
    "AKIA",
    "glpat-",
];

impl Template {
    /// Parse `text`; `Err` says what is wrong with a `${…}` part.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("'${{' without a closing '}}' in '{text}'"))?;
            let name = after[..end].strip_prefix("env:").ok_or_else(|| {
                format!(
                    "'${{{}}}': only ${{env:NAME}} is known (a variable of the environment the plugin runs in)",
                    &after[..end]
                )
            })?;
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "'${{env:{name}}}' does not name an environment variable"
                ));
            }
            parts.push(Part::Env(name.to_string()));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The environment variables it reads.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Env(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// `Err(why)` when the literal parts of the value of header `name` hold a secret.
    pub fn check_literal(&self, name: &str) -> Result<(), String> {
        let lower = name.to_ascii_lowercase();
        let credential = SECRET_NAMES.contains(&lower.as_str())
            || SECRET_WORDS.iter().any(|w| lower.contains(w));
        let from_env = self.variables().next().is_some();
        if credential && !from_env {
            return Err(format!(
                "header {name} carries a credential, but its value is written in the manifest; write it as ${{env:NAME}} and set NAME where the plugin runs"
            ));
        }
        for part in &self.parts {
            if let Part::Text(text) = part
                && looks_secret(text)
            {
                return Err(format!(
                    "header {name} holds what looks like a literal secret; write it as ${{env:NAME}} and set NAME where the plugin runs"
                ));
            }
        }
        Ok(())
    }

    /// The value, with each variable taken from `env`; `Err(name)` names one not set.
    pub fn resolve(&self, env: &BTreeMap<String, String>) -> Result<(String, Vec<String>), String> {
        let mut value = String::new();
        let mut secrets = Vec::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => value.push_str(text),
                Part::Env(name) => {
                    let v = env.get(name).ok_or_else(|| name.clone())?;
                    value.push_str(v);
                    if !v.is_empty() {
                        secrets.push(v.clone());
                    }
                }
            }
        }
        Ok((value, secrets))
    }
}

/// Whether literal text looks like a token: a known prefix, or a run of 32 or more
/// letters, digits, `_` and `-` that has both letters and digits.
fn looks_secret(text: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .any(|word| {
            TOKEN_PREFIXES
                .iter()
                .any(|p| word.starts_with(p) && word.len() >= p.len() + 8)
                || (word.len() >= 32
                    && word.chars().any(|c| c.is_ascii_digit())
                    && word.chars().any(|c| c.is_ascii_alphabetic()))
        })
}

/// `text` with every one of `secrets` replaced by [`REDACTED`].
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
    out
}

/// `bytes` with every one of `secrets` replaced by [`REDACTED`].
pub fn redact_bytes(bytes: &[u8], secrets: &[String]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        let needle = s.as_bytes();
        let mut at = 0;
        while let Some(found) = out[at..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + at)
        {
            out.splice(found..found + needle.len(), REDACTED.bytes());
            at = found + REDACTED.len();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        [(
            "GITHUB_TOKEN".to_string(),
            "ghp_secret123456789".to_string(),
        )]
        .into()
    }

    #[test]
    fn a_template_takes_its_variables_from_the_environment() {
        let t = Template::parse("Bearer ${env:GITHUB_TOKEN}").expect("test value");
        assert_eq!(t.variables().collect::<Vec<_>>(), ["GITHUB_TOKEN"]);
        let (value, secrets) = t.resolve(&env()).expect("test value");
        assert_eq!(value, "Bearer ghp_secret123456789");
        assert_eq!(secrets, ["ghp_secret123456789"]);
        assert_eq!(
            Template::parse("${env:MISSING}")
                .expect("test value")
                .resolve(&env()),
            Err("MISSING".to_string())
        );
        assert_eq!(
            Template::parse("plain")
                .expect("test value")
                .resolve(&env())
                .expect("test value")
                .0,
            "plain"
        );
    }

    #[test]
    fn a_malformed_template_says_what_is_wrong() {
        for (text, says) in [
            ("${env:TOKEN", "without a closing"),
            ("${file:/etc/passwd}", "only ${env:NAME} is known"),
            ("${env:1ABC}", "does not name"),
            ("${env:}", "does not name"),
        ] {
            let err = Template::parse(text).expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn a_literal_secret_is_refused_and_an_ordinary_value_is_not() {
        let literal = |name: &str, value: &str| {
            Template::parse(value)
                .expect("test value")
                .check_literal(name)
        };
        assert!(literal("Authorization", "Bearer abc").is_err());
        assert!(literal("X-Auth-Token", "whatever").is_err());
        assert!(literal("X-Note", "ghp_0123456789abcdefghij").is_err());
        assert!(literal("X-Note", "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7").is_err());
        assert!(literal("Authorization", "Bearer ${env:GITHUB_TOKEN}").is_ok());
        assert!(literal("Accept", "application/vnd.github+json").is_ok());
        assert!(literal("X-GitHub-Api-Version", "2022-11-28").is_ok());
        assert!(literal("User-Agent", "murmur-github-issues/0.1.0").is_ok());
    }

    #[test]
    fn redaction_replaces_every_occurrence_of_every_secret() {
        let secrets = vec!["s3cret".to_string(), String::new()];
        assert_eq!(
            redact("a s3cret and s3cret", &secrets),
            "a [redacted] and [redacted]"
        );
        assert_eq!(
            redact_bytes(b"xs3crets3cret", &secrets),
            b"x[redacted][redacted]".to_vec()
        );
        assert_eq!(redact_bytes(b"nothing", &secrets), b"nothing".to_vec());
    }
}
