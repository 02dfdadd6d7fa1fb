//! Authentication: API tokens (their SHA-256 maps to a tenant, one SSM SecureString JSON,
//! cached for five minutes, compared in constant time) or the claims of a JWT that API
//! Gateway's authorizer already verified (`custom:tenant`, else `sub`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tms::cache::CachedSecret;
use tms::ports::Secrets;
use tms::Tenant;

use crate::problem::Problem;
use crate::AppState;

pub const CACHE_TTL: Duration = tms::cache::SECRET_TTL;

type Digest32 = [u8; 32];

/// The SHA-256 of a token, hex-encoded as the token map stores it.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Parses the token map `{"<sha256 hex>": "<tenant>", ...}`.
///
/// # Errors
/// What is wrong with the map (never a token or hash).
pub fn parse_token_map(json: &str) -> Result<Vec<(Digest32, Tenant)>, String> {
    let map: serde_json::Map<String, Value> =
        serde_json::from_str(json).map_err(|_| "the token map is not a JSON object".to_owned())?;
    map.into_iter()
        .enumerate()
        .map(|(i, (hash, tenant))| {
            let digest: Digest32 = hex::decode(&hash)
                .ok()
                .and_then(|d| d.try_into().ok())
                .ok_or_else(|| format!("entry {i}: the key is not a SHA-256 hex digest"))?;
            let tenant = tenant
                .as_str()
                .and_then(|t| Tenant::parse(t).ok())
                .ok_or_else(|| format!("entry {i}: the value is not a valid tenant"))?;
            Ok((digest, tenant))
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("API tokens cannot be loaded: {0}")]
    Unavailable(String),
}

/// Looks tokens up in the token map, reloading it every [`CACHE_TTL`].
pub struct TokenVerifier {
    map: CachedSecret<Vec<(Digest32, Tenant)>>,
}

impl TokenVerifier {
    /// `param`: the SSM parameter holding the token map; `None` disables API tokens.
    pub fn new(secrets: Arc<dyn Secrets>, param: Option<String>) -> Self {
        Self {
            map: CachedSecret::new(secrets, param, parse_token_map),
        }
    }

    /// The tenant of `token`, if it is known. Every entry is compared, in constant time.
    ///
    /// # Errors
    /// [`AuthError::Unavailable`] when the token map cannot be loaded.
    pub async fn tenant_for(&self, token: &str) -> Result<Option<Tenant>, AuthError> {
        let digest: Digest32 = Sha256::digest(token.as_bytes()).into();
        let Some(entries) = self
            .map
            .get()
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?
        else {
            return Ok(None);
        };
        let mut found = None;
        for (known, tenant) in entries.iter() {
            if bool::from(known.ct_eq(&digest)) {
                found = Some(tenant.clone());
            }
        }
        Ok(found)
    }
}

/// The tenant from claims API Gateway's JWT authorizer verified, when there are any.
fn tenant_from_claims(req: &Request) -> Option<Result<Tenant, Problem>> {
    let lambda_http::request::RequestContext::ApiGatewayV2(ctx) =
        req.extensions()
            .get::<lambda_http::request::RequestContext>()?
    else {
        return None;
    };
    let claims = &ctx.authorizer.as_ref()?.jwt.as_ref()?.claims;
    let raw = claims.get("custom:tenant").or_else(|| claims.get("sub"))?;
    Some(
        Tenant::parse(raw)
            .map_err(|_| Problem::unauthorized("the token's tenant claim is not a valid tenant")),
    )
}

/// Middleware: resolves the caller's tenant and stores it in the request, or answers 401.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let tenant = match tenant_from_claims(&req) {
        Some(result) => result,
        None => match bearer_token(&req) {
            Ok(token) => bearer_tenant(&state, &token).await,
            Err(problem) => Err(problem),
        },
    };
    match tenant {
        Ok(tenant) => {
            tracing::Span::current().record("tenant", tenant.as_str());
            req.extensions_mut().insert(tenant);
            next.run(req).await
        }
        Err(problem) => problem.into_response(),
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(req: &Request) -> Result<String, Problem> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| Problem::unauthorized("missing Authorization header (Bearer token)"))?;
    header
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            Problem::unauthorized("malformed Authorization header: expected `Bearer <token>`")
        })
}

async fn bearer_tenant(state: &AppState, token: &str) -> Result<Tenant, Problem> {
    match state.tokens.tenant_for(token).await {
        Ok(Some(tenant)) => Ok(tenant),
        Ok(None) => Err(Problem::unauthorized("unknown token")),
        Err(e) => {
            tracing::error!(error = %e, "token map unavailable");
            Err(Problem::unavailable(
                "authentication is unavailable; retry later",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tms::ports::{Secret, SecretsError};

    struct CountingSecrets {
        value: String,
        reads: AtomicUsize,
    }

    #[async_trait]
    impl Secrets for CountingSecrets {
        async fn get(&self, _name: &str) -> Result<Secret, SecretsError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(Secret::new(self.value.clone()))
        }
    }

    #[tokio::test]
    async fn known_tokens_map_to_their_tenant_and_the_map_is_cached() {
        let map = serde_json::json!({ token_hash("t-demo"): "demo", token_hash("t-acme"): "acme" });
        let secrets = Arc::new(CountingSecrets {
            value: map.to_string(),
            reads: AtomicUsize::new(0),
        });
        let v = TokenVerifier::new(secrets.clone(), Some("/p".into()));
        assert_eq!(
            v.tenant_for("t-demo").await.unwrap().unwrap().as_str(),
            "demo"
        );
        assert_eq!(
            v.tenant_for("t-acme").await.unwrap().unwrap().as_str(),
            "acme"
        );
        assert!(v.tenant_for("t-nope").await.unwrap().is_none());
        assert!(v.tenant_for("").await.unwrap().is_none());
        assert_eq!(
            secrets.reads.load(Ordering::SeqCst),
            1,
            "read once within the TTL"
        );
    }

    #[test]
    fn malformed_maps_are_refused_without_echoing_secrets() {
        assert!(parse_token_map("[]").is_err());
        let err = parse_token_map(r#"{"abc": "demo"}"#).unwrap_err();
        assert!(!err.contains("abc"));
        assert!(parse_token_map(&format!(r#"{{"{}": "a/b"}}"#, token_hash("x"))).is_err());
        assert_eq!(parse_token_map("{}").unwrap().len(), 0);
    }

    #[tokio::test]
    async fn without_a_parameter_no_token_is_known() {
        let secrets = Arc::new(CountingSecrets {
            value: String::new(),
            reads: AtomicUsize::new(0),
        });
        let v = TokenVerifier::new(secrets.clone(), None);
        assert!(v.tenant_for("anything").await.unwrap().is_none());
        assert_eq!(secrets.reads.load(Ordering::SeqCst), 0);
    }
}
