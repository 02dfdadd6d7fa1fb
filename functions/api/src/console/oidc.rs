//! OpenID Connect sign-in for the console: the authorization code flow with PKCE (S256) against
//! the deployment's issuer (Amazon Cognito or any OpenID Connect provider), and the verification
//! of the ID token it ends with.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tms::ports::{PendingLogin, Secret};
use tokio::sync::{Mutex, OnceCell};
use url::{form_urlencoded, Host, Url};

/// The scopes asked for when the deployment names none.
pub const DEFAULT_SCOPES: &str = "openid email profile";
/// How long a sign-in may take between [`Oidc::begin`] and [`Oidc::finish`].
pub const LOGIN_TTL: TimeDelta = TimeDelta::minutes(10);
/// How long one request to the provider may take.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(5);
/// The clock skew allowed on an ID token's `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: u64 = 60;
/// The largest answer read from the provider.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// The deployment's OpenID Connect client.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The issuer identifier, exactly as its ID tokens' `iss` (e.g.
    /// `https://cognito-idp.us-east-1.amazonaws.com/us-east-1_abc`); its discovery document is
    /// at `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// The secret of a confidential client (sent with HTTP Basic); `None` for a public client.
    pub client_secret: Option<Secret>,
    /// Space-separated; `openid` is added when missing.
    pub scopes: String,
}

/// The client the console calls its provider with: rustls with the system's roots, no
/// redirects followed, the provider timeout on every request.
pub fn http_client() -> reqwest::Client {
    tms::tls::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(PROVIDER_TIMEOUT)
        .build()
        .expect("a TLS client with the system's roots")
}

/// Why a sign-in through the provider failed.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider cannot be reached, or its discovery document, key set or token endpoint
    /// answered something unusable: try again later (a 503 page).
    #[error("the sign-in provider is unavailable: {0}")]
    Unavailable(String),
    /// The token endpoint refused the authorization code (used, expired, or not issued for this
    /// verifier, redirect URI or client), with the OAuth error code it gave.
    #[error("the sign-in provider refused the authorization code ({0})")]
    CodeRefused(String),
    /// The sign-in took longer than [`LOGIN_TTL`].
    #[error("the sign-in expired")]
    LoginExpired,
    /// The ID token failed verification.
    #[error("the ID token is invalid: {0}")]
    InvalidIdToken(#[from] IdTokenRejection),
}

impl OidcError {
    /// Whether the same sign-in can succeed later (the provider was unavailable), as opposed to
    /// one that has to start over or never succeeds.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// What is wrong with an ID token (never its content).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenRejection {
    #[error("the token endpoint's answer has none")]
    Missing,
    #[error("it is not a well-formed signed JWT")]
    Malformed,
    #[error("its algorithm is not accepted (only RSA, ECDSA and EdDSA signatures are)")]
    Algorithm,
    #[error("the provider's key set has no key with its key id")]
    UnknownKey,
    #[error("the key it names is not a signing key for its algorithm")]
    KeyMismatch,
    #[error("the provider's key cannot be used")]
    UnusableKey,
    #[error("its signature does not verify")]
    Signature,
    #[error("another issuer issued it")]
    Issuer,
    #[error("it was not issued to this client")]
    Audience,
    #[error("it has expired")]
    Expired,
    #[error("it is not valid yet")]
    NotYetValid,
    #[error("it has no {0} claim")]
    MissingClaim(String),
    #[error("its {0} claim is malformed")]
    MalformedClaim(String),
    #[error("its nonce is not this sign-in's")]
    Nonce,
}

/// The provider's endpoints, from its discovery document.
#[derive(Debug, Clone)]
struct Endpoints {
    authorization: Url,
    token: Url,
    jwks: Url,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct KeySet {
    keys: Vec<Value>,
}

/// The key set as last fetched; `generation` counts the fetches.
#[derive(Default)]
struct KeyCache {
    keys: Option<Arc<Vec<Jwk>>>,
    generation: u64,
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenErrorResponse {
    error: String,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    crit: Option<Value>,
}

/// The deployment's OpenID Connect provider, built once per execution environment: its
/// discovery document and key set are fetched on first use and kept (the key set is fetched
/// again when an ID token names a key it lacks, as after a key rotation).
pub struct Oidc {
    settings: OidcSettings,
    http: reqwest::Client,
    endpoints: OnceCell<Endpoints>,
    keys: Mutex<KeyCache>,
}

impl Oidc {
    /// The provider of `settings`, reached with `http` (nothing is fetched before the first
    /// sign-in).
    pub fn new(settings: OidcSettings, http: reqwest::Client) -> Self {
        Self {
            settings,
            http,
            endpoints: OnceCell::new(),
            keys: Mutex::new(KeyCache::default()),
        }
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// Starts a sign-in: the provider's authorization URL to send the browser to, and the
    /// sign-in to keep (by its `state`) until the provider redirects back to `redirect_uri`.
    ///
    /// # Errors
    /// [`OidcError::Unavailable`] when the discovery document cannot be fetched or is unusable.
    #[tracing::instrument(skip_all)]
    pub async fn begin(&self, redirect_uri: &str) -> Result<(String, PendingLogin), OidcError> {
        let endpoints = self.endpoints().await?;
        let login = new_login(Utc::now());
        let url = authorization_url(
            &endpoints.authorization,
            &self.settings,
            redirect_uri,
            &login,
        );
        Ok((url.into(), login))
    }

    /// Finishes the sign-in `login` the provider redirected back with `code`: exchanges the code
    /// at the token endpoint and verifies the ID token it returns. The verified claims, with
    /// numbers and booleans as text and arrays and objects left out (`sub`, `email`,
    /// `custom:tenant`, `custom:role`, ...).
    ///
    /// # Errors
    /// [`OidcError::LoginExpired`] past the sign-in's expiry; [`OidcError::Unavailable`] when
    /// the provider cannot be reached; [`OidcError::CodeRefused`] when the token endpoint refuses
    /// the code; [`OidcError::InvalidIdToken`] when the ID token fails verification.
    #[tracing::instrument(skip_all)]
    pub async fn finish(
        &self,
        code: &str,
        login: &PendingLogin,
        redirect_uri: &str,
    ) -> Result<HashMap<String, String>, OidcError> {
        if login.expires_at <= Utc::now() {
            return Err(OidcError::LoginExpired);
        }
        let endpoints = self.endpoints().await?;
        let id_token = self
            .exchange(&endpoints.token, code, login, redirect_uri)
            .await?;
        self.verify(&id_token, &login.nonce).await
    }

    async fn endpoints(&self) -> Result<&Endpoints, OidcError> {
        self.endpoints
            .get_or_try_init(|| async {
                let issuer = &self.settings.issuer;
                let discovery_url = provider_url(&format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                ))
                .map_err(|e| OidcError::Unavailable(format!("the issuer {e}")))?;
                let doc: Discovery = self.get_json(discovery_url, "discovery document").await?;
                parse_discovery(doc, issuer).map_err(|e| {
                    OidcError::Unavailable(format!("the discovery document of {issuer} {e}"))
                })
            })
            .await
    }

    async fn get_json<T: DeserializeOwned>(&self, url: Url, what: &str) -> Result<T, OidcError> {
        let unavailable = |e: String| OidcError::Unavailable(format!("the {what} at {url}: {e}"));
        let response = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(PROVIDER_TIMEOUT)
            .send()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(unavailable(format!("HTTP {status}")));
        }
        let body = read_limited(response).await.map_err(unavailable)?;
        serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("not the JSON expected: {e}")))
    }

    /// The ID token the token endpoint returns for `code`.
    async fn exchange(
        &self,
        token_endpoint: &Url,
        code: &str,
        login: &PendingLogin,
        redirect_uri: &str,
    ) -> Result<String, OidcError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("code_verifier", &login.verifier)
            .finish();
        let mut request = self
            .http
            .post(token_endpoint.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(PROVIDER_TIMEOUT)
            .body(body);
        if let Some(secret) = &self.settings.client_secret {
            request = request.header(
                reqwest::header::AUTHORIZATION,
                basic_credentials(&self.settings.client_id, secret),
            );
        }
        let unavailable =
            |e: String| OidcError::Unavailable(format!("the token endpoint {token_endpoint}: {e}"));
        let response = request
            .send()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        let status = response.status();
        let body = read_limited(response).await.map_err(unavailable)?;
        if status.is_success() {
            let answer: TokenResponse = serde_json::from_slice(&body)
                .map_err(|e| unavailable(format!("not a token response: {e}")))?;
            return answer
                .id_token
                .ok_or(OidcError::InvalidIdToken(IdTokenRejection::Missing));
        }
        if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
            let (error, description) = match serde_json::from_slice::<TokenErrorResponse>(&body) {
                Ok(e) => (
                    printable(&e.error),
                    e.error_description.as_deref().map(printable),
                ),
                Err(_) => (format!("HTTP {}", status.as_u16()), None),
            };
            tracing::warn!(
                status = status.as_u16(),
                error = %error,
                description = description.as_deref().unwrap_or_default(),
                "token endpoint refused the code"
            );
            return Err(OidcError::CodeRefused(error));
        }
        Err(unavailable(format!("HTTP {status}")))
    }

    /// The claims of `id_token` once its signature and claims are verified.
    async fn verify(
        &self,
        id_token: &str,
        nonce: &str,
    ) -> Result<HashMap<String, String>, OidcError> {
        let (alg, kid) = read_header(id_token)?;
        let (keys, generation) = self.keys(None).await?;
        let jwk = match select_key(&keys, kid.as_deref()) {
            Some(jwk) => jwk.clone(),
            None => {
                tracing::info!(
                    kid = kid.as_deref(),
                    "signing key unknown; fetching the key set again"
                );
                let (keys, _) = self.keys(Some(generation)).await?;
                select_key(&keys, kid.as_deref())
                    .cloned()
                    .ok_or(IdTokenRejection::UnknownKey)?
            }
        };
        let key = decoding_key(&jwk, alg)?;
        Ok(verify_claims(
            id_token,
            &key,
            alg,
            &self.settings.issuer,
            &self.settings.client_id,
            nonce,
        )?)
    }

    /// The key set, fetched when none is kept or when the kept one is the `stale` generation
    /// (once for every caller that found it stale together).
    async fn keys(&self, stale: Option<u64>) -> Result<(Arc<Vec<Jwk>>, u64), OidcError> {
        let mut cache = self.keys.lock().await;
        if let Some(keys) = &cache.keys {
            if stale != Some(cache.generation) {
                return Ok((keys.clone(), cache.generation));
            }
        }
        let jwks = self.endpoints().await?.jwks.clone();
        let set: KeySet = self.get_json(jwks, "key set").await?;
        let keys = Arc::new(
            set.keys
                .into_iter()
                .filter_map(|key| serde_json::from_value::<Jwk>(key).ok())
                .collect::<Vec<_>>(),
        );
        cache.keys = Some(keys.clone());
        cache.generation += 1;
        Ok((keys, cache.generation))
    }
}

/// A fresh sign-in: random `state`, `nonce` (256 bits each) and PKCE verifier (384 bits, 64
/// characters), valid for [`LOGIN_TTL`] from `now`.
fn new_login(now: DateTime<Utc>) -> PendingLogin {
    PendingLogin {
        state: super::session::random_token(32),
        verifier: super::session::random_token(48),
        nonce: super::session::random_token(32),
        expires_at: now + LOGIN_TTL,
    }
}

/// The S256 code challenge of a PKCE verifier.
pub fn code_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn authorization_url(
    endpoint: &Url,
    settings: &OidcSettings,
    redirect_uri: &str,
    login: &PendingLogin,
) -> Url {
    let mut scope = settings.scopes.split_whitespace().collect::<Vec<_>>();
    if !scope.contains(&"openid") {
        scope.insert(0, "openid");
    }
    let mut url = endpoint.clone();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &settings.client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", &scope.join(" "))
        .append_pair("state", &login.state)
        .append_pair("nonce", &login.nonce)
        .append_pair("code_challenge", &code_challenge(&login.verifier))
        .append_pair("code_challenge_method", "S256");
    url
}

/// `raw` as a URL the provider may be reached at: HTTPS, or HTTP on loopback (a local run).
fn provider_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(Host::Domain(name)) => name == "localhost",
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(format!("{raw:?} is not an https URL")),
    }
}

fn parse_discovery(doc: Discovery, issuer: &str) -> Result<Endpoints, String> {
    if doc.issuer != issuer {
        return Err(format!("names another issuer, {:?}", doc.issuer));
    }
    if let Some(methods) = &doc.code_challenge_methods_supported {
        if !methods.iter().any(|m| m == "S256") {
            return Err("does not offer PKCE with S256".to_owned());
        }
    }
    Ok(Endpoints {
        authorization: provider_url(&doc.authorization_endpoint)
            .map_err(|e| format!("has an authorization_endpoint {e}"))?,
        token: provider_url(&doc.token_endpoint)
            .map_err(|e| format!("has a token_endpoint {e}"))?,
        jwks: provider_url(&doc.jwks_uri).map_err(|e| format!("has a jwks_uri {e}"))?,
    })
}

/// HTTP Basic credentials of a client (RFC 6749 2.3.1: each part form-encoded first).
fn basic_credentials(client_id: &str, secret: &Secret) -> String {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(client_id), encode(secret.expose()));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(format!("an answer over {MAX_RESPONSE_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Provider text fit for a log line or an error: printable ASCII, at most 100 characters.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(100)
        .collect()
}

/// The token's algorithm, if it is one of the accepted asymmetric ones, and its key id.
fn read_header(token: &str) -> Result<(Algorithm, Option<String>), IdTokenRejection> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdTokenRejection::Malformed);
    };
    let header: RawHeader = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or(IdTokenRejection::Malformed)?;
    if header.crit.is_some() {
        return Err(IdTokenRejection::Malformed);
    }
    let alg = Algorithm::from_str(&header.alg).map_err(|_| IdTokenRejection::Algorithm)?;
    if alg.family() == AlgorithmFamily::Hmac {
        return Err(IdTokenRejection::Algorithm);
    }
    Ok((alg, header.kid))
}

/// The key `kid` names; without a key id, the only key of a set of one.
fn select_key<'a>(keys: &'a [Jwk], kid: Option<&str>) -> Option<&'a Jwk> {
    match kid {
        Some(kid) => keys
            .iter()
            .find(|key| key.common.key_id.as_deref() == Some(kid)),
        None => match keys {
            [only] => Some(only),
            _ => None,
        },
    }
}

/// `jwk` as the key to verify a signature made with `alg`, if it is a signing key of that
/// algorithm: an RSA key for RS* and PS*, a P-256 or P-384 key for ES256 or ES384, an Ed25519
/// key for EdDSA, and the algorithm the key names, if it names one.
fn decoding_key(jwk: &Jwk, alg: Algorithm) -> Result<DecodingKey, IdTokenRejection> {
    let fits = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), alg) => alg.family() == AlgorithmFamily::Rsa,
        (AlgorithmParameters::EllipticCurve(key), Algorithm::ES256) => {
            key.curve == EllipticCurve::P256
        }
        (AlgorithmParameters::EllipticCurve(key), Algorithm::ES384) => {
            key.curve == EllipticCurve::P384
        }
        (AlgorithmParameters::OctetKeyPair(key), Algorithm::EdDSA) => {
            key.curve == EllipticCurve::Ed25519
        }
        _ => false,
    };
    let named = jwk
        .common
        .key_algorithm
        .is_none_or(|named| named == KeyAlgorithm::from(alg));
    let signing = matches!(
        jwk.common.public_key_use,
        None | Some(PublicKeyUse::Signature)
    );
    if !(fits && named && signing) {
        return Err(IdTokenRejection::KeyMismatch);
    }
    DecodingKey::from_jwk(jwk).map_err(|_| IdTokenRejection::UnusableKey)
}

/// The claims of `token` once its signature, `iss`, `aud` (and `azp`), `exp`, `nbf` and `nonce`
/// are verified.
fn verify_claims(
    token: &str,
    key: &DecodingKey,
    alg: Algorithm,
    issuer: &str,
    client_id: &str,
    nonce: &str,
) -> Result<HashMap<String, String>, IdTokenRejection> {
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_nbf = true;
    let claims = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
        .map_err(|e| rejection(e.kind()))?
        .claims;
    let several_audiences = claims
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|aud| aud.len() > 1);
    match claims.get("azp") {
        Some(azp) if azp.as_str() != Some(client_id) => return Err(IdTokenRejection::Audience),
        None if several_audiences => return Err(IdTokenRejection::Audience),
        _ => {}
    }
    let token_nonce = claims
        .get("nonce")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !bool::from(token_nonce.as_bytes().ct_eq(nonce.as_bytes())) || nonce.is_empty() {
        return Err(IdTokenRejection::Nonce);
    }
    Ok(text_claims(claims))
}

fn rejection(kind: &jsonwebtoken::errors::ErrorKind) -> IdTokenRejection {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::InvalidSignature => IdTokenRejection::Signature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm => IdTokenRejection::Algorithm,
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => IdTokenRejection::UnusableKey,
        ErrorKind::ExpiredSignature => IdTokenRejection::Expired,
        ErrorKind::ImmatureSignature => IdTokenRejection::NotYetValid,
        ErrorKind::InvalidIssuer => IdTokenRejection::Issuer,
        ErrorKind::InvalidAudience => IdTokenRejection::Audience,
        ErrorKind::MissingRequiredClaim(claim) => IdTokenRejection::MissingClaim(printable(claim)),
        ErrorKind::InvalidClaimFormat(claim) => IdTokenRejection::MalformedClaim(printable(claim)),
        _ => IdTokenRejection::Malformed,
    }
}

/// The claims that are text, numbers or booleans, as text.
fn text_claims(claims: Map<String, Value>) -> HashMap<String, String> {
    claims
        .into_iter()
        .filter_map(|(name, value)| match value {
            Value::String(text) => Some((name, text)),
            Value::Number(number) => Some((name, number.to_string())),
            Value::Bool(flag) => Some((name, flag.to_string())),
            Value::Null | Value::Array(_) | Value::Object(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn settings(scopes: &str) -> OidcSettings {
        OidcSettings {
            issuer: "https://issuer.example".to_owned(),
            client_id: "console".to_owned(),
            client_secret: None,
            scopes: scopes.to_owned(),
        }
    }

    fn jwk(value: Value) -> Jwk {
        serde_json::from_value(value).unwrap()
    }

    fn ec_key(extra: Value) -> Jwk {
        let mut key = json!({"kty": "EC", "crv": "P-256", "kid": "ec",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        key.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        jwk(key)
    }

    fn rsa_key(extra: Value) -> Jwk {
        let mut key = json!({"kty": "RSA", "kid": "rsa", "e": "AQAB",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
        key.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        jwk(key)
    }

    fn token_with_header(header: Value) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(json!({"sub": "u"}).to_string())
        )
    }

    #[test]
    fn code_challenge_is_rfc_7636s_s256() {
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn a_login_is_random_long_enough_and_expires_in_ten_minutes() {
        let now = Utc::now();
        let logins = (0..50).map(|_| new_login(now)).collect::<Vec<_>>();
        let unreserved = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
        };
        for login in &logins {
            assert!(login.state.len() >= 32 && unreserved(&login.state));
            assert!(login.nonce.len() >= 32 && unreserved(&login.nonce));
            assert!((43..=128).contains(&login.verifier.len()) && unreserved(&login.verifier));
            assert_eq!(login.expires_at, now + TimeDelta::minutes(10));
        }
        let mut values = logins
            .iter()
            .flat_map(|l| [&l.state, &l.nonce, &l.verifier])
            .collect::<Vec<_>>();
        values.sort();
        values.dedup();
        assert_eq!(values.len(), 150);
    }

    #[test]
    fn the_authorization_url_asks_for_a_code_with_pkce() {
        let endpoint = Url::parse("https://auth.example/oauth2/authorize?tenant=x").unwrap();
        let login = new_login(Utc::now());
        let url = authorization_url(
            &endpoint,
            &settings("email profile"),
            "https://api.example/console/callback",
            &login,
        );
        let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
        let expected = [
            ("tenant", "x"),
            ("response_type", "code"),
            ("client_id", "console"),
            ("redirect_uri", "https://api.example/console/callback"),
            ("scope", "openid email profile"),
            ("state", &login.state),
            ("nonce", &login.nonce),
            ("code_challenge", &code_challenge(&login.verifier)),
            ("code_challenge_method", "S256"),
        ];
        assert_eq!(query.len(), expected.len());
        for (name, value) in expected {
            assert_eq!(query[name], value, "{name}");
        }
        assert!(!url.as_str().contains(&login.verifier));
    }

    #[test]
    fn scopes_that_name_openid_are_kept_as_they_are() {
        let endpoint = Url::parse("https://auth.example/authorize").unwrap();
        let url = authorization_url(
            &endpoint,
            &settings(DEFAULT_SCOPES),
            "https://a/cb",
            &new_login(Utc::now()),
        );
        let scope = url
            .query_pairs()
            .find(|(k, _)| k == "scope")
            .unwrap()
            .1
            .into_owned();
        assert_eq!(scope, "openid email profile");
    }

    #[test]
    fn the_provider_is_reached_over_https_or_on_loopback() {
        for ok in [
            "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_abc",
            "http://127.0.0.1:9000/issuer",
            "http://localhost:9000",
            "http://[::1]:9000",
        ] {
            assert!(provider_url(ok).is_ok(), "{ok}");
        }
        for refused in ["http://issuer.example", "ftp://issuer.example", "not a url"] {
            assert!(provider_url(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn discovery_must_name_the_configured_issuer_and_offer_s256() {
        let doc = |issuer: &str, methods: Option<Vec<&str>>| Discovery {
            issuer: issuer.to_owned(),
            authorization_endpoint: "https://auth.example/authorize".to_owned(),
            token_endpoint: "https://auth.example/token".to_owned(),
            jwks_uri: "https://issuer.example/jwks.json".to_owned(),
            code_challenge_methods_supported: methods
                .map(|m| m.into_iter().map(str::to_owned).collect()),
        };
        let issuer = "https://issuer.example";
        assert!(parse_discovery(doc(issuer, None), issuer).is_ok());
        assert!(parse_discovery(doc(issuer, Some(vec!["plain", "S256"])), issuer).is_ok());
        assert!(parse_discovery(doc(issuer, Some(vec!["plain"])), issuer).is_err());
        assert!(parse_discovery(doc("https://issuer.example/", None), issuer).is_err());
        let mut plain_http = doc(issuer, None);
        plain_http.token_endpoint = "http://auth.example/token".to_owned();
        assert!(parse_discovery(plain_http, issuer).is_err());
    }

    #[test]
    fn basic_credentials_form_encode_each_part() {
        let header = basic_credentials("my client", &Secret::new("s3cr:t"));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(header.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(decoded, b"my+client:s3cr%3At");
    }

    #[test]
    fn only_asymmetric_algorithms_are_accepted() {
        for alg in ["none", "None", "HS256", "HS384", "HS512", "XX1"] {
            assert_eq!(
                read_header(&token_with_header(json!({"alg": alg, "kid": "k"}))),
                Err(IdTokenRejection::Algorithm),
                "{alg}"
            );
        }
        for alg in ["RS256", "PS256", "ES256", "ES384", "EdDSA"] {
            let (read, kid) =
                read_header(&token_with_header(json!({"alg": alg, "kid": "k"}))).unwrap();
            assert_eq!(read, Algorithm::from_str(alg).unwrap());
            assert_eq!(kid.as_deref(), Some("k"));
        }
    }

    #[test]
    fn malformed_tokens_and_critical_extensions_are_refused() {
        for token in [
            String::new(),
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            "!!!.e30.c2ln".to_owned(),
            format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode("[]")),
            token_with_header(json!({"alg": "RS256", "crit": ["exp"], "exp": 1})),
        ] {
            assert_eq!(
                read_header(&token),
                Err(IdTokenRejection::Malformed),
                "{token}"
            );
        }
    }

    #[test]
    fn a_key_verifies_only_the_algorithm_it_is_for() {
        assert!(decoding_key(&ec_key(json!({})), Algorithm::ES256).is_ok());
        assert!(decoding_key(
            &ec_key(json!({"alg": "ES256", "use": "sig"})),
            Algorithm::ES256
        )
        .is_ok());
        assert!(decoding_key(&rsa_key(json!({"alg": "RS256"})), Algorithm::RS256).is_ok());
        assert!(decoding_key(&rsa_key(json!({})), Algorithm::PS256).is_ok());
        for (key, alg) in [
            (ec_key(json!({})), Algorithm::ES384),
            (ec_key(json!({})), Algorithm::RS256),
            (ec_key(json!({"alg": "ES384"})), Algorithm::ES256),
            (ec_key(json!({"use": "enc"})), Algorithm::ES256),
            (rsa_key(json!({"alg": "RS256"})), Algorithm::PS256),
            (rsa_key(json!({})), Algorithm::ES256),
            (rsa_key(json!({})), Algorithm::EdDSA),
            (
                jwk(json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h"})),
                Algorithm::RS256,
            ),
        ] {
            assert_eq!(
                decoding_key(&key, alg).err(),
                Some(IdTokenRejection::KeyMismatch),
                "{alg:?} {key:?}"
            );
        }
    }

    #[test]
    fn the_key_is_chosen_by_its_id_or_as_the_only_one() {
        let keys = vec![ec_key(json!({})), rsa_key(json!({}))];
        assert_eq!(
            select_key(&keys, Some("rsa")).and_then(|k| k.common.key_id.as_deref()),
            Some("rsa")
        );
        assert!(select_key(&keys, Some("other")).is_none());
        assert!(select_key(&keys, None).is_none());
        assert!(select_key(&keys[..1], None).is_some());
        assert!(select_key(&[], Some("rsa")).is_none());
    }

    #[test]
    fn claims_keep_text_numbers_and_booleans_as_text() {
        let claims = json!({"sub": "u-1", "custom:tenant": "acme", "exp": 1_700_000_000,
            "email_verified": true, "ratio": 0.5, "cognito:groups": ["a"], "address": {"x": 1},
            "middle_name": null});
        let Value::Object(claims) = claims else {
            unreachable!()
        };
        let text = text_claims(claims);
        let expected: HashMap<String, String> = [
            ("sub", "u-1"),
            ("custom:tenant", "acme"),
            ("exp", "1700000000"),
            ("email_verified", "true"),
            ("ratio", "0.5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(text, expected);
    }

    #[test]
    fn verification_errors_map_to_their_reasons() {
        use jsonwebtoken::errors::ErrorKind;
        let cases = [
            (ErrorKind::InvalidSignature, IdTokenRejection::Signature),
            (ErrorKind::ExpiredSignature, IdTokenRejection::Expired),
            (ErrorKind::ImmatureSignature, IdTokenRejection::NotYetValid),
            (ErrorKind::InvalidIssuer, IdTokenRejection::Issuer),
            (ErrorKind::InvalidAudience, IdTokenRejection::Audience),
            (ErrorKind::InvalidAlgorithm, IdTokenRejection::Algorithm),
            (ErrorKind::InvalidToken, IdTokenRejection::Malformed),
            (
                ErrorKind::MissingRequiredClaim("sub".to_owned()),
                IdTokenRejection::MissingClaim("sub".to_owned()),
            ),
        ];
        for (kind, expected) in cases {
            assert_eq!(rejection(&kind), expected, "{kind:?}");
        }
    }

    #[tokio::test]
    async fn a_caller_that_found_the_key_set_stale_gets_the_one_fetched_since() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::OnceLock;

        use axum::routing::get;
        use axum::Json;

        let base = Arc::new(OnceLock::<String>::new());
        let fetches = Arc::new(AtomicUsize::new(0));
        let discovery = {
            let base = base.clone();
            move || async move {
                let base = base.get().unwrap();
                Json(
                    json!({"issuer": base, "authorization_endpoint": format!("{base}/authorize"),
                    "token_endpoint": format!("{base}/token"), "jwks_uri": format!("{base}/jwks")}),
                )
            }
        };
        let jwks = {
            let fetches = fetches.clone();
            move || async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                Json(json!({"keys": [{"kty": "EC", "alg": 5}, ec_key(json!({}))]}))
            }
        };
        let router = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks));
        let address = tms_testkit::http::serve(router).await;
        base.set(format!("http://{address}")).unwrap();
        tms::tls::install_crypto_provider();
        let oidc = Oidc::new(
            OidcSettings {
                issuer: format!("http://{address}"),
                ..settings(DEFAULT_SCOPES)
            },
            reqwest::Client::new(),
        );

        let (keys, first) = oidc.keys(None).await.unwrap();
        assert_eq!(keys.len(), 1, "the key it cannot read is left out");
        assert_eq!(oidc.keys(None).await.unwrap().1, first);
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        let (_, refetched) = oidc.keys(Some(first)).await.unwrap();
        assert_ne!(refetched, first);
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        let (_, seen_by_another) = oidc.keys(Some(first)).await.unwrap();
        assert_eq!(seen_by_another, refetched);
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn only_an_unavailable_provider_is_retryable() {
        assert!(OidcError::Unavailable("down".to_owned()).is_retryable());
        assert!(!OidcError::CodeRefused("invalid_grant".to_owned()).is_retryable());
        assert!(!OidcError::LoginExpired.is_retryable());
        assert!(!OidcError::InvalidIdToken(IdTokenRejection::Nonce).is_retryable());
    }
}
