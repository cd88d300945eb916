//! Who gets in, and what they may do.
//!
//! A server with no token (loopback only) lets every request act as the operator. With
//! tokens, a request must carry one (`Authorization: Bearer …`), and its token decides
//! its [`Access`]: the operator's, or one limited to a tenant (it reads and publishes
//! only what that tenant's visibility allows, and starts or steers no run) and/or to
//! reading (GET only). Tokens come from environment variables, never from files or the
//! command line: `--token-env NAME` names the operator's, and `--tokens FILE` lists
//! limited ones by the variable that holds each.

use super::api::ApiError;
use anyhow::{Context, Result, bail};
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use murmur::artifact::{Artifact, Viewer, Visibility};
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;

/// What a request may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Access {
    /// Only what this tenant may see, and nothing but publishing and reading.
    pub tenant: Option<String>,
    /// GET only.
    pub read_only: bool,
}

impl Access {
    /// Whether the artifact is one this access may read.
    pub(crate) fn sees(&self, artifact: &Artifact) -> bool {
        match &self.tenant {
            None => true,
            Some(t) => artifact.visible_to(&Viewer {
                name: "",
                labels: &[],
                tenant: Some(t),
                operator: false,
            }),
        }
    }

    /// Refuse what only the operator may do (start, steer and decide on runs, the
    /// whole graph, every event).
    pub(crate) fn operator_only(&self, what: &str) -> Result<(), ApiError> {
        match &self.tenant {
            None => Ok(()),
            Some(t) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("{what}: this token is limited to tenant '{t}'"),
            )),
        }
    }

    /// The visibility a publish gets: a tenant's token publishes for its tenant only.
    pub(crate) fn publish_as(&self, asked: Visibility) -> Result<Visibility, ApiError> {
        match (&self.tenant, asked) {
            (None, v) => Ok(v),
            (Some(t), Visibility::Public) => Ok(Visibility::Tenant(t.clone())),
            (Some(t), Visibility::Tenant(v)) if *t == v => Ok(Visibility::Tenant(v)),
            (Some(t), _) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("this token publishes only with visibility tenant '{t}'"),
            )
            .at("/visibility")),
        }
    }
}

/// One token and what it allows.
#[derive(Debug)]
struct Token {
    secret: String,
    access: Access,
}

/// The tokens a server accepts.
#[derive(Debug, Default)]
pub(crate) struct Tokens(Vec<Token>);

/// `--tokens FILE`: `[[token]]` tables naming the variable that holds each token.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    token: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    env: String,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    read_only: bool,
}

/// The token in variable `name`, at least 16 characters.
fn secret(name: &str, what: &str) -> Result<String> {
    let token =
        std::env::var(name).with_context(|| format!("{what}: the variable {name} is not set"))?;
    let token = token.trim().to_string();
    if token.len() < 16 {
        bail!("{what}: the token in {name} is shorter than 16 characters");
    }
    Ok(token)
}

impl Tokens {
    /// The operator's token from `token_env`, and the limited ones `file` lists.
    pub(crate) fn load(token_env: Option<&str>, file: Option<&Path>) -> Result<Self> {
        let mut tokens = Vec::new();
        if let Some(name) = token_env {
            tokens.push(Token {
                secret: secret(name, "--token-env")?,
                access: Access::default(),
            });
        }
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--tokens {}", path.display()))?;
            let parsed: TokensFile =
                toml::from_str(&text).with_context(|| format!("--tokens {}", path.display()))?;
            for entry in parsed.token {
                if entry.tenant.as_deref().is_some_and(str::is_empty) {
                    bail!(
                        "--tokens {}: token {}: an empty tenant",
                        path.display(),
                        entry.env
                    );
                }
                tokens.push(Token {
                    secret: secret(&entry.env, &format!("--tokens {}", path.display()))?,
                    access: Access {
                        tenant: entry.tenant,
                        read_only: entry.read_only,
                    },
                });
            }
        }
        for (i, a) in tokens.iter().enumerate() {
            if tokens[..i]
                .iter()
                .any(|b| same(a.secret.as_bytes(), b.secret.as_bytes()))
            {
                bail!("two tokens are the same: each must be its own");
            }
        }
        Ok(Self(tokens))
    }

    /// Whether requests need a token.
    pub(crate) fn required(&self) -> bool {
        !self.0.is_empty()
    }

    fn access_of(&self, given: &str) -> Option<&Access> {
        // Every token is compared, whichever matches, so the time does not say which.
        let mut found = None;
        for t in &self.0 {
            if same(given.as_bytes(), t.secret.as_bytes()) {
                found = Some(&t.access);
            }
        }
        found
    }
}

/// Let `request` through with its access: the operator's when no token is required;
/// else its token's (401 without a known token, 403 for a read-only token's write).
pub(crate) async fn admit(tokens: Arc<Tokens>, mut request: Request, next: Next) -> Response {
    let access = if tokens.required() {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match given.and_then(|g| tokens.access_of(g)) {
            Some(access) => access.clone(),
            None => {
                let mut response = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "this server needs `Authorization: Bearer <token>`",
                )
                .into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                return response;
            }
        }
    } else {
        Access::default()
    };
    if access.read_only && !matches!(*request.method(), Method::GET | Method::HEAD) {
        return ApiError::new(StatusCode::FORBIDDEN, "this token may only read").into_response();
    }
    request.extensions_mut().insert(access);
    next.run(request).await
}

/// Whether `a` and `b` are equal, in a time that depends on their lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_byte_for_byte() {
        assert!(same(b"secret-token", b"secret-token"));
        assert!(!same(b"secret-token", b"secret-tokeN"));
        assert!(!same(b"secret", b"secret-token"));
    }

    #[test]
    fn a_tenant_token_publishes_only_for_its_tenant() {
        let acme = Access {
            tenant: Some("acme".into()),
            read_only: false,
        };
        assert_eq!(
            acme.publish_as(Visibility::Public).ok(),
            Some(Visibility::Tenant("acme".into()))
        );
        assert!(acme.publish_as(Visibility::Tenant("other".into())).is_err());
        assert!(acme.publish_as(Visibility::Private(Box::new([]))).is_err());
        assert!(acme.operator_only("start a run").is_err());
        assert!(Access::default().operator_only("start a run").is_ok());
    }
}
