//! Authentication: API tokens (their SHA-256 maps to a tenant and a role, one SSM SecureString
//! JSON, cached for five minutes, compared in constant time) or the claims of a JWT that API
//! Gateway's authorizer already verified (`custom:tenant`, else `sub`; `custom:role`). Either
//! way the request carries a [`Caller`]: a tenant and a role.

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
use tms::{Caller, Role, Tenant};

use crate::problem::Problem;
use crate::AppState;

pub const CACHE_TTL: Duration = tms::cache::SECRET_TTL;

type Digest32 = [u8; 32];

/// The SHA-256 of a token, hex-encoded as the token map stores it.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Parses the token map `{"<sha256 hex>": "<tenant>" | {"tenant": "<tenant>", "role":
/// "viewer" | "member" | "operator"}, ...}`: a bare tenant is a `member`, as are maps written
/// before roles existed.
///
/// # Errors
/// What is wrong with the map (never a token or hash).
pub fn parse_token_map(json: &str) -> Result<Vec<(Digest32, Caller)>, String> {
    let map: serde_json::Map<String, Value> =
        serde_json::from_str(json).map_err(|_| "the token map is not a JSON object".to_owned())?;
    map.into_iter()
        .enumerate()
        .map(|(i, (hash, value))| {
            let digest: Digest32 = hex::decode(&hash)
                .ok()
                .and_then(|d| d.try_into().ok())
                .ok_or_else(|| format!("entry {i}: the key is not a SHA-256 hex digest"))?;
            let (tenant, role) = match &value {
                Value::String(tenant) => (Some(tenant.as_str()), Ok(Role::Member)),
                Value::Object(entry) => (
                    entry["tenant"].as_str(),
                    match entry.get("role") {
                        None => Ok(Role::Member),
                        Some(role) => role.as_str().map_or_else(
                            || Err("the role must be a string".to_owned()),
                            Role::parse,
                        ),
                    },
                ),
                _ => (None, Ok(Role::Member)),
            };
            let tenant = tenant
                .and_then(|t| Tenant::parse(t).ok())
                .ok_or_else(|| format!("entry {i}: the value is not a valid tenant"))?;
            let role = role.map_err(|e| format!("entry {i}: {e}"))?;
            Ok((digest, Caller { tenant, role }))
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
    map: CachedSecret<Vec<(Digest32, Caller)>>,
}

impl TokenVerifier {
    /// `param`: the SSM parameter holding the token map; `None` disables API tokens.
    pub fn new(secrets: Arc<dyn Secrets>, param: Option<String>) -> Self {
        Self {
            map: CachedSecret::new(secrets, param, parse_token_map),
        }
    }

    /// The same verifier, reading the map again once it is older than `ttl` (default
    /// [`CACHE_TTL`]).
    #[must_use]
    pub fn with_ttl(self, ttl: Duration) -> Self {
        Self {
            map: self.map.with_ttl(ttl),
        }
    }

    /// Reads the token map now if it is not cached.
    ///
    /// # Errors
    /// [`AuthError::Unavailable`] when the token map cannot be loaded.
    pub async fn load(&self) -> Result<(), AuthError> {
        self.entries().await.map(drop)
    }

    /// The token map, read now if it is not cached; `None` without a parameter.
    async fn entries(&self) -> Result<Option<Arc<Vec<(Digest32, Caller)>>>, AuthError> {
        self.map
            .get()
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))
    }

    /// The caller `token` stands for, if it is known.
    ///
    /// # Errors
    /// [`AuthError::Unavailable`] when the token map cannot be loaded.
    pub async fn caller_for(&self, token: &str) -> Result<Option<Caller>, AuthError> {
        self.caller_for_hash(&Sha256::digest(token.as_bytes()).into())
            .await
    }

    /// The caller of the token whose SHA-256 is `digest`. Every entry is compared, in constant
    /// time.
    ///
    /// # Errors
    /// [`AuthError::Unavailable`] when the token map cannot be loaded.
    pub async fn caller_for_hash(&self, digest: &Digest32) -> Result<Option<Caller>, AuthError> {
        let Some(entries) = self.entries().await? else {
            return Ok(None);
        };
        let mut found = None;
        for (known, caller) in entries.iter() {
            if bool::from(known.ct_eq(digest)) {
                found = Some(caller.clone());
            }
        }
        Ok(found)
    }
}

/// The caller of verified claims: the tenant in `custom:tenant`, else `sub`; the role in
/// `custom:role`, else `member`.
///
/// # Errors
/// What is wrong with the claims.
pub fn caller_from_claims(
    claim: impl Fn(&str) -> Option<String>,
) -> Result<Option<Caller>, &'static str> {
    let Some(raw) = claim("custom:tenant").or_else(|| claim("sub")) else {
        return Ok(None);
    };
    let tenant =
        Tenant::parse(&raw).map_err(|_| "the token's tenant claim is not a valid tenant")?;
    let role = match claim("custom:role") {
        None => Role::Member,
        Some(role) => Role::parse(&role).map_err(|_| "the token's role claim is not a role")?,
    };
    Ok(Some(Caller { tenant, role }))
}

/// The caller from claims API Gateway's JWT authorizer verified, when there are any.
fn caller_from_authorizer(req: &Request) -> Option<Result<Caller, Problem>> {
    let lambda_http::request::RequestContext::ApiGatewayV2(ctx) =
        req.extensions()
            .get::<lambda_http::request::RequestContext>()?
    else {
        return None;
    };
    let claims = &ctx.authorizer.as_ref()?.jwt.as_ref()?.claims;
    caller_from_claims(|name| claims.get(name).cloned())
        .map_err(Problem::unauthorized)
        .transpose()
}

/// Middleware: resolves the [`Caller`] and stores it in the request, or answers 401.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let caller = match caller_from_authorizer(&req) {
        Some(result) => result,
        None => match bearer_token(&req) {
            Ok(token) => bearer_caller(&state, &token).await,
            Err(problem) => Err(problem),
        },
    };
    match caller {
        Ok(caller) => {
            tracing::Span::current().record("tenant", caller.tenant.as_str());
            req.extensions_mut().insert(caller);
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

async fn bearer_caller(state: &AppState, token: &str) -> Result<Caller, Problem> {
    match state.tokens.caller_for(token).await {
        Ok(Some(caller)) => Ok(caller),
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
            v.caller_for("t-demo")
                .await
                .unwrap()
                .unwrap()
                .tenant
                .as_str(),
            "demo"
        );
        assert_eq!(
            v.caller_for("t-acme")
                .await
                .unwrap()
                .unwrap()
                .tenant
                .as_str(),
            "acme"
        );
        assert!(v.caller_for("t-nope").await.unwrap().is_none());
        assert!(v.caller_for("").await.unwrap().is_none());
        assert_eq!(
            secrets.reads.load(Ordering::SeqCst),
            1,
            "read once within the TTL"
        );
    }

    /// Answers after a pause, as SSM does over the network.
    struct SlowSecrets(CountingSecrets);

    #[async_trait]
    impl Secrets for SlowSecrets {
        async fn get(&self, name: &str) -> Result<Secret, SecretsError> {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            self.0.get(name).await
        }
    }

    #[tokio::test]
    async fn a_request_arriving_while_the_map_loads_ahead_waits_for_that_load() {
        let map = serde_json::json!({ token_hash("t-demo"): "demo" });
        let secrets = Arc::new(SlowSecrets(CountingSecrets {
            value: map.to_string(),
            reads: AtomicUsize::new(0),
        }));
        let v = Arc::new(TokenVerifier::new(secrets.clone(), Some("/p".into())));
        let ahead = tokio::spawn({
            let v = v.clone();
            async move { v.load().await }
        });
        tokio::task::yield_now().await;
        let caller = v.caller_for("t-demo").await.unwrap().unwrap();
        assert_eq!(caller.tenant.as_str(), "demo");
        ahead.await.unwrap().unwrap();
        assert_eq!(
            secrets.0.reads.load(Ordering::SeqCst),
            1,
            "the request used the load already under way"
        );
    }

    #[test]
    fn a_bare_tenant_is_a_member_and_an_entry_may_name_its_role() {
        let map = serde_json::json!({
            token_hash("old"): "demo",
            token_hash("viewer"): {"tenant": "demo", "role": "viewer"},
            token_hash("ops"): {"tenant": "ops", "role": "operator"},
            token_hash("no-role"): {"tenant": "acme"},
        });
        let parsed = parse_token_map(&map.to_string()).unwrap();
        let role_of = |token: &str| {
            let digest: Digest32 = Sha256::digest(token.as_bytes()).into();
            parsed
                .iter()
                .find(|(d, _)| *d == digest)
                .map(|(_, c)| (c.tenant.as_str().to_owned(), c.role))
                .unwrap()
        };
        assert_eq!(role_of("old"), ("demo".into(), Role::Member));
        assert_eq!(role_of("viewer"), ("demo".into(), Role::Viewer));
        assert_eq!(role_of("ops"), ("ops".into(), Role::Operator));
        assert_eq!(role_of("no-role"), ("acme".into(), Role::Member));
        let bad = serde_json::json!({ token_hash("x"): {"tenant": "demo", "role": "admin"} });
        assert!(parse_token_map(&bad.to_string())
            .unwrap_err()
            .contains("role"));
    }

    #[test]
    fn claims_name_the_tenant_and_the_role() {
        let claims = |pairs: &[(&str, &str)]| {
            let map: std::collections::HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            caller_from_claims(move |name| map.get(name).cloned())
        };
        let c = claims(&[("sub", "user-1"), ("custom:tenant", "acme")])
            .unwrap()
            .unwrap();
        assert_eq!((c.tenant.as_str(), c.role), ("acme", Role::Member));
        let c = claims(&[("sub", "user-1"), ("custom:role", "viewer")])
            .unwrap()
            .unwrap();
        assert_eq!((c.tenant.as_str(), c.role), ("user-1", Role::Viewer));
        assert!(claims(&[("sub", "a/b")]).is_err());
        assert!(claims(&[("sub", "a"), ("custom:role", "root")]).is_err());
        assert_eq!(claims(&[]).unwrap(), None);
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
        assert!(v.caller_for("anything").await.unwrap().is_none());
        assert_eq!(secrets.reads.load(Ordering::SeqCst), 0);
    }
}
