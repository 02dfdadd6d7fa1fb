//! The console's OpenID Connect sign-in against a fake provider on loopback: its discovery
//! document, a token endpoint that checks the grant, the client and PKCE, its key set, and ID
//! tokens signed with keys made at run time. Most tests play the browser; the last drives a real
//! one through the console, the provider's authorization page and back.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256,
};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chrono::Utc;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tms::ports::{PendingLogin, Secret};
use tms_api::console::oidc::{IdTokenRejection, Oidc, OidcError, OidcSettings, DEFAULT_SCOPES};
use url::{form_urlencoded, Url};

const CLIENT_ID: &str = "console-client";
const CLIENT_SECRET: &str = "s3cret/with:odd+chars";
const REDIRECT_URI: &str = "http://127.0.0.1:3000/console/auth/callback";

/// A signing key of the fake provider.
struct TestKey {
    kid: String,
    signer: Signer,
}

enum Signer {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
}

impl TestKey {
    fn es256(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        Self {
            kid: kid.to_owned(),
            signer: Signer::Es256(pair),
        }
    }

    fn rs256(kid: &str) -> Self {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        Self {
            kid: kid.to_owned(),
            signer: Signer::Rs256(pair),
        }
    }

    fn alg(&self) -> &'static str {
        match self.signer {
            Signer::Es256(_) => "ES256",
            Signer::Rs256(_) => "RS256",
        }
    }

    /// The public key as the key set publishes it.
    fn jwk(&self) -> Value {
        match &self.signer {
            Signer::Es256(pair) => {
                let point = pair.public_key().as_ref();
                assert_eq!(point.len(), 65);
                json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig", "alg": "ES256",
                    "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&point[33..])})
            }
            Signer::Rs256(pair) => {
                let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                json!({"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                    "n": URL_SAFE_NO_PAD.encode(&public.n),
                    "e": URL_SAFE_NO_PAD.encode(&public.e)})
            }
        }
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(
            &json!({"alg": self.alg(), "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }

    fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let message = signing_input(header, claims);
        let signature = match &self.signer {
            Signer::Es256(pair) => pair
                .sign(&SystemRandom::new(), message.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            Signer::Rs256(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message.as_bytes(),
                    &mut signature,
                )
                .unwrap();
                signature
            }
        };
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// A code the provider issued, and what it was issued for.
struct Grant {
    challenge: String,
    redirect_uri: String,
    id_token: String,
}

/// Who is signed in at the provider, for its authorization page: the key it signs with and
/// claims beyond the standard ones.
struct User {
    key: Arc<TestKey>,
    claims: Value,
}

#[derive(Default)]
struct Provider {
    user: Option<User>,
    /// The issuer the discovery document names.
    issuer: String,
    secret: Option<String>,
    keys: Vec<Value>,
    grants: HashMap<String, Grant>,
    token_endpoint_fails: bool,
    discovery_fetches: usize,
    jwks_fetches: usize,
    token_requests: usize,
}

type Shared = Arc<Mutex<Provider>>;

async fn discovery(State(provider): State<Shared>) -> Json<Value> {
    let mut provider = provider.lock().unwrap();
    provider.discovery_fetches += 1;
    let base = provider.issuer.trim_end_matches("/pool").to_owned();
    Json(json!({
        "issuer": provider.issuer,
        "authorization_endpoint": format!("{base}/oauth2/authorize"),
        "token_endpoint": format!("{base}/oauth2/token"),
        "jwks_uri": format!("{}/.well-known/jwks.json", provider.issuer),
        "response_types_supported": ["code"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn jwks(State(provider): State<Shared>) -> Json<Value> {
    let mut provider = provider.lock().unwrap();
    provider.jwks_fetches += 1;
    Json(json!({ "keys": provider.keys }))
}

fn oauth_error(status: StatusCode, error: &str) -> (StatusCode, Json<Value>) {
    (
        status,
        Json(json!({"error": error, "error_description": format!("refused: {error}")})),
    )
}

/// The token endpoint: checks the client (HTTP Basic for a confidential client, nothing for a
/// public one), the grant, its redirect URI and that SHA-256(code_verifier) is the challenge the
/// code was issued for; a code is used once.
async fn token(
    State(provider): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let mut provider = provider.lock().unwrap();
    provider.token_requests += 1;
    if provider.token_endpoint_fails {
        return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| STANDARD.decode(v).ok())
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| {
            let (id, secret) = v.split_once(':')?;
            let decode = |s: &str| {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            Some((decode(id)?, decode(secret)?))
        });
    let authenticated = match (&provider.secret, &basic, headers.get(header::AUTHORIZATION)) {
        (Some(secret), Some((id, given)), _) => id == CLIENT_ID && given == secret,
        (None, None, None) => true,
        _ => false,
    };
    if !authenticated {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let Some(grant) = form
        .get("code")
        .and_then(|code| provider.grants.remove(code))
    else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    if form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    if !(43..=128).contains(&verifier.len())
        || URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != grant.challenge
    {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    (
        StatusCode::OK,
        Json(
            json!({"access_token": "access", "token_type": "Bearer", "expires_in": 3600,
            "id_token": grant.id_token}),
        ),
    )
}

/// The authorization page of a user already signed in at the provider: it issues a code for the
/// request's client, challenge and redirect URI at once, with an ID token for its nonce, and
/// sends the browser back.
async fn authorize(
    State(provider): State<Shared>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> axum::response::Redirect {
    let mut provider = provider.lock().unwrap();
    let user = provider.user.as_ref().expect("a signed-in user");
    let now = Utc::now().timestamp();
    let mut claims = json!({
        "iss": provider.issuer, "aud": q["client_id"], "sub": "user-7", "token_use": "id",
        "iat": now, "exp": now + 3600, "nonce": q["nonce"],
    });
    for (name, value) in user.claims.as_object().unwrap() {
        claims[name] = value.clone();
    }
    let id_token = user.key.sign(&claims);
    let code = format!("code-{}", provider.grants.len() + 1);
    provider.grants.insert(
        code.clone(),
        Grant {
            challenge: q["code_challenge"].clone(),
            redirect_uri: q["redirect_uri"].clone(),
            id_token,
        },
    );
    let back = Url::parse_with_params(
        &q["redirect_uri"],
        [("code", &code), ("state", &q["state"])],
    )
    .unwrap();
    axum::response::Redirect::to(back.as_str())
}

/// The fake provider, serving `http://127.0.0.1:PORT/pool` as its issuer (Cognito's shape:
/// the pool under a path, the OAuth endpoints beside it).
struct Fake {
    issuer: String,
    provider: Shared,
}

impl Fake {
    async fn start(secret: Option<&str>) -> Self {
        let provider: Shared = Arc::default();
        let router = Router::new()
            .route("/pool/.well-known/openid-configuration", get(discovery))
            .route("/pool/.well-known/jwks.json", get(jwks))
            .route("/oauth2/token", post(token))
            .route("/oauth2/authorize", get(authorize))
            .with_state(provider.clone());
        let address = tms_testkit::http::serve(router).await;
        let issuer = format!("http://{address}/pool");
        {
            let mut state = provider.lock().unwrap();
            state.issuer = issuer.clone();
            state.secret = secret.map(str::to_owned);
        }
        Self { issuer, provider }
    }

    fn oidc(&self) -> Oidc {
        let secret = self
            .provider
            .lock()
            .unwrap()
            .secret
            .clone()
            .map(Secret::new);
        oidc_for(&self.issuer, secret)
    }

    fn publish(&self, keys: &[&TestKey]) {
        self.provider.lock().unwrap().keys = keys.iter().map(|k| k.jwk()).collect();
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Provider> {
        self.provider.lock().unwrap()
    }

    /// The browser's part: `begin`, the provider's authorization page (which issues `code` for
    /// the challenge and redirect URI of the URL, with the ID token `mint` makes from good claims
    /// for this sign-in), then `finish`.
    async fn sign_in(
        &self,
        oidc: &Oidc,
        code: &str,
        mint: impl FnOnce(Value) -> String,
    ) -> (Result<HashMap<String, String>, OidcError>, String) {
        let (url, login) = oidc.begin(REDIRECT_URI).await.expect("begin");
        let query = authorize_query(&url);
        let id_token = mint(self.claims(&login));
        self.state().grants.insert(
            code.to_owned(),
            Grant {
                challenge: query["code_challenge"].clone(),
                redirect_uri: query["redirect_uri"].clone(),
                id_token: id_token.clone(),
            },
        );
        (oidc.finish(code, &login, REDIRECT_URI).await, id_token)
    }

    /// Good ID token claims for `login`, as Cognito writes them.
    fn claims(&self, login: &PendingLogin) -> Value {
        let now = Utc::now().timestamp();
        json!({
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "sub": "5f3a-user",
            "token_use": "id",
            "auth_time": now,
            "iat": now,
            "exp": now + 3600,
            "nonce": login.nonce,
            "email": "ada@example.com",
            "email_verified": true,
            "custom:tenant": "acme",
            "custom:role": "operator",
            "cognito:groups": ["admins"],
            "address": {"country": "FR"},
        })
    }
}

fn oidc_for(issuer: &str, client_secret: Option<Secret>) -> Oidc {
    tms::tls::install_crypto_provider();
    Oidc::new(
        OidcSettings {
            issuer: issuer.to_owned(),
            client_id: CLIENT_ID.to_owned(),
            client_secret,
            scopes: DEFAULT_SCOPES.to_owned(),
        },
        reqwest::Client::new(),
    )
}

fn authorize_query(url: &str) -> HashMap<String, String> {
    Url::parse(url)
        .expect("an authorization URL")
        .query_pairs()
        .into_owned()
        .collect()
}

/// The rejection a failed sign-in reports, checking that its message never carries the token.
fn rejection(outcome: (Result<HashMap<String, String>, OidcError>, String)) -> IdTokenRejection {
    let (result, id_token) = outcome;
    match result {
        Err(OidcError::InvalidIdToken(reason)) => {
            let message = OidcError::InvalidIdToken(reason.clone()).to_string();
            for part in id_token.split('.').filter(|p| p.len() > 8) {
                assert!(!message.contains(part), "{message}");
            }
            reason
        }
        other => panic!("expected an invalid ID token, got {other:?}"),
    }
}

fn refused_code(result: Result<HashMap<String, String>, OidcError>) -> String {
    match result {
        Err(OidcError::CodeRefused(error)) => error,
        other => panic!("expected a refused code, got {other:?}"),
    }
}

#[tokio::test]
async fn a_good_sign_in_returns_the_verified_claims() {
    let fake = Fake::start(Some(CLIENT_SECRET)).await;
    let key = TestKey::es256("key-1");
    fake.publish(&[&key]);
    let oidc = fake.oidc();

    let (url, login) = oidc.begin(REDIRECT_URI).await.unwrap();
    let base = format!(
        "{}/oauth2/authorize?",
        fake.issuer.trim_end_matches("/pool")
    );
    assert!(url.starts_with(&base), "{url}");
    let query = authorize_query(&url);
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(query["redirect_uri"], REDIRECT_URI);
    assert_eq!(query["scope"], "openid email profile");
    assert_eq!(query["state"], login.state);
    assert_eq!(query["nonce"], login.nonce);
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(
        query["code_challenge"],
        URL_SAFE_NO_PAD.encode(Sha256::digest(login.verifier.as_bytes()))
    );
    assert!(!url.contains(&login.verifier));
    let expires_in = login.expires_at - Utc::now();
    assert!(
        expires_in > chrono::TimeDelta::minutes(9) && expires_in <= chrono::TimeDelta::minutes(10)
    );

    let id_token = key.sign(&fake.claims(&login));
    fake.state().grants.insert(
        "code-1".to_owned(),
        Grant {
            challenge: query["code_challenge"].clone(),
            redirect_uri: REDIRECT_URI.to_owned(),
            id_token,
        },
    );
    let claims = oidc.finish("code-1", &login, REDIRECT_URI).await.unwrap();
    assert_eq!(claims["sub"], "5f3a-user");
    assert_eq!(claims["email"], "ada@example.com");
    assert_eq!(claims["custom:tenant"], "acme");
    assert_eq!(claims["custom:role"], "operator");
    assert_eq!(claims["email_verified"], "true");
    assert_eq!(claims["iss"], fake.issuer);
    assert_eq!(claims["aud"], CLIENT_ID);
    assert!(claims["exp"].parse::<i64>().unwrap() > Utc::now().timestamp());
    assert!(!claims.contains_key("cognito:groups"));
    assert!(!claims.contains_key("address"));

    let (second, _) = fake.sign_in(&oidc, "code-2", |c| key.sign(&c)).await;
    assert_eq!(second.unwrap()["sub"], "5f3a-user");
    let state = fake.state();
    assert_eq!(state.discovery_fetches, 1, "discovery is kept");
    assert_eq!(state.jwks_fetches, 1, "the key set is kept");
}

#[tokio::test]
async fn a_public_client_signs_in_with_an_rs256_token() {
    let fake = Fake::start(None).await;
    let key = TestKey::rs256("rsa-1");
    let other = TestKey::es256("ec-1");
    fake.publish(&[&other, &key]);
    let oidc = fake.oidc();
    let (claims, _) = fake.sign_in(&oidc, "code", |c| key.sign(&c)).await;
    assert_eq!(claims.unwrap()["custom:tenant"], "acme");
}

#[tokio::test]
async fn a_token_for_another_sign_in_is_refused() {
    let fake = Fake::start(Some(CLIENT_SECRET)).await;
    let key = TestKey::es256("key-1");
    fake.publish(&[&key]);
    let oidc = fake.oidc();
    let other_nonce = fake.sign_in(&oidc, "c1", |mut c| {
        c["nonce"] = json!("another-sign-ins-nonce-0123456789abcdef");
        key.sign(&c)
    });
    assert_eq!(rejection(other_nonce.await), IdTokenRejection::Nonce);
    let no_nonce = fake.sign_in(&oidc, "c2", |mut c| {
        c.as_object_mut().unwrap().remove("nonce");
        key.sign(&c)
    });
    assert_eq!(rejection(no_nonce.await), IdTokenRejection::Nonce);
}

type ClaimEdit = fn(&mut Value);

#[tokio::test]
async fn a_token_for_another_client_or_from_another_issuer_is_refused() {
    let fake = Fake::start(Some(CLIENT_SECRET)).await;
    let key = TestKey::es256("key-1");
    fake.publish(&[&key]);
    let oidc = fake.oidc();
    let cases: [(&str, ClaimEdit, IdTokenRejection); 6] = [
        (
            "aud",
            |c| c["aud"] = json!("another-client"),
            IdTokenRejection::Audience,
        ),
        (
            "aud-list",
            |c| c["aud"] = json!(["another-client"]),
            IdTokenRejection::Audience,
        ),
        (
            "aud-several",
            |c| c["aud"] = json!([CLIENT_ID, "another-client"]),
            IdTokenRejection::Audience,
        ),
        (
            "azp",
            |c| c["azp"] = json!("another-client"),
            IdTokenRejection::Audience,
        ),
        (
            "iss",
            |c| c["iss"] = json!("https://evil.example/pool"),
            IdTokenRejection::Issuer,
        ),
        (
            "no-iss",
            |c| {
                c.as_object_mut().unwrap().remove("iss");
            },
            IdTokenRejection::MissingClaim("iss".to_owned()),
        ),
    ];
    for (code, edit, expected) in cases {
        let outcome = fake
            .sign_in(&oidc, code, |mut c| {
                edit(&mut c);
                key.sign(&c)
            })
            .await;
        assert_eq!(rejection(outcome), expected, "{code}");
    }
    let (several_with_azp, _) = fake
        .sign_in(&oidc, "azp-ok", |mut c| {
            c["aud"] = json!([CLIENT_ID, "another-client"]);
            c["azp"] = json!(CLIENT_ID);
            key.sign(&c)
        })
        .await;
    assert!(several_with_azp.is_ok());
}

#[tokio::test]
async fn an_expired_or_not_yet_valid_token_is_refused() {
    let fake = Fake::start(Some(CLIENT_SECRET)).await;
    let key = TestKey::es256("key-1");
    fake.publish(&[&key]);
    let oidc = fake.oidc();
    let now = Utc::now().timestamp();
    let expired = fake.sign_in(&oidc, "c1", |mut c| {
        c["exp"] = json!(now - 120);
        key.sign(&c)
    });
    assert_eq!(rejection(expired.await), IdTokenRejection::Expired);
    let without_exp = fake.sign_in(&oidc, "c2", |mut c| {
        c.as_object_mut().unwrap().remove("exp");
        key.sign(&c)
    });
    assert_eq!(
        rejection(without_exp.await),
        IdTokenRejection::MissingClaim("exp".to_owned())
    );
    let early = fake.sign_in(&oidc, "c3", |mut c| {
        c["nbf"] = json!(now + 600);
        key.sign(&c)
    });
    assert_eq!(rejection(early.await), IdTokenRejection::NotYetValid);
    let (within_leeway, _) = fake
        .sign_in(&oidc, "c4", |mut c| {
            c["exp"] = json!(now - 5);
            key.sign(&c)
        })
        .await;
    assert!(within_leeway.is_ok(), "a few seconds of clock skew pass");
}

#[tokio::test]
async fn a_token_signed_by_another_key_is_refused() {
    let fake = Fake::start(Some(CLIENT_SECRET)).await;
    let key = TestKey::es256("key-1");
    fake.publish(&[&key]);
    let oidc = fake.oidc();
    let impostor = TestKey::es256("key-1");
    let same_kid = fake.sign_in(&oidc, "c1", |c| impostor.sign(&c));
    assert_eq!(rejection(same_kid.await), IdTokenRejection::Signature);

    let tampered = fake.sign_in(&oidc, "c2", |c| {
        let good = key.sign(&c);
        let mut parts = good.split('.').map(str::to_owned).collect::<Vec<_>>();
        let mut claims = c.clone();
        claims["custom:role"] = json!("operator");
        claims["custom:tenant"] = json!("globex");
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        parts.join(".")
    });
    assert_eq!(rejection(tampered.await), IdTokenRejection::Signature);

    let rsa = TestKey::rs256("key-1");
    let other_family = fake.sign_in(&oidc, "c3", |c| rsa.sign(&c));
    assert_eq!(rejection(other_family.await), IdTokenRejection::KeyMismatch);

    let unknown = TestKey::es256("key-2");
    let before = fake.state().jwks_fetches;
    let unknown_kid = fake.sign_in(&oidc, "c4", |c| unknown.sign(&c));
    assert_eq!(rejection(unknown_kid.await), IdTokenRejection::UnknownKey);
    assert_eq!(
        fake.state().jwks_fetches,
        before + 1,
        "one refetch, no more"
    );
}

#[tokio::test]
async fn unsigned_and_hmac_tokens_are_refused() {
    let fake = Fake::start(Some(CLIENT_SECRET)).await;
    let key = TestKey::es256("key-1");
    fake.publish(&[&key]);
    let oidc = fake.oidc();
    for alg in ["none", "None", "NONE"] {
        let unsigned = fake.sign_in(&oidc, alg, |c| {
            format!(
                "{}.",
                signing_input(&json!({"alg": alg, "kid": "key-1"}), &c)
            )
        });
        assert_eq!(
            rejection(unsigned.await),
            IdTokenRejection::Algorithm,
            "{alg}"
        );
    }
    let public_jwk = key.jwk().to_string();
    for secret in [public_jwk.as_bytes(), CLIENT_SECRET.as_bytes()] {
        let hs256 = fake.sign_in(&oidc, "hs256", |c| {
            let message = signing_input(&json!({"alg": "HS256", "kid": "key-1"}), &c);
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
            mac.update(message.as_bytes());
            format!(
                "{message}.{}",
                URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
            )
        });
        assert_eq!(rejection(hs256.await), IdTokenRejection::Algorithm);
    }
    let relabelled = fake.sign_in(&oidc, "es384", |c| {
        key.sign_with_header(&json!({"alg": "ES384", "kid": "key-1"}), &c)
    });
    assert_eq!(rejection(relabelled.await), IdTokenRejection::KeyMismatch);
    let garbage = fake.sign_in(&oidc, "garbage", |_| "not-a-jwt".to_owned());
    assert_eq!(rejection(garbage.await), IdTokenRejection::Malformed);
}

#[tokio::test]
async fn the_token_endpoint_refuses_a_verifier_that_is_not_the_challenges() {
    let fake = Fake::start(Some(CLIENT_SECRET)).await;
    let key = TestKey::es256("key-1");
    fake.publish(&[&key]);
    let oidc = fake.oidc();
    let (url, login) = oidc.begin(REDIRECT_URI).await.unwrap();
    let query = authorize_query(&url);
    let grant = |code: &str| {
        fake.state().grants.insert(
            code.to_owned(),
            Grant {
                challenge: query["code_challenge"].clone(),
                redirect_uri: REDIRECT_URI.to_owned(),
                id_token: key.sign(&fake.claims(&login)),
            },
        );
    };

    grant("c1");
    let (_, other) = oidc.begin(REDIRECT_URI).await.unwrap();
    let forged = PendingLogin {
        verifier: other.verifier,
        ..login.clone()
    };
    let result = oidc.finish("c1", &forged, REDIRECT_URI).await;
    assert_eq!(refused_code(result), "invalid_grant");

    grant("c2");
    let result = oidc
        .finish("c2", &login, "http://127.0.0.1:3000/elsewhere")
        .await;
    assert_eq!(refused_code(result), "invalid_grant");

    grant("c3");
    let wrong_secret = oidc_for(&fake.issuer, Some(Secret::new("not-the-secret")));
    let result = wrong_secret.finish("c3", &login, REDIRECT_URI).await;
    assert_eq!(refused_code(result), "invalid_client");

    let result = oidc.finish("never-issued", &login, REDIRECT_URI).await;
    assert_eq!(refused_code(result), "invalid_grant");

    assert!(oidc.finish("c3", &login, REDIRECT_URI).await.is_ok());
    let reused = oidc.finish("c3", &login, REDIRECT_URI).await;
    assert_eq!(refused_code(reused), "invalid_grant");
}

#[tokio::test]
async fn a_rotated_key_is_found_after_one_refetch_of_the_key_set() {
    let fake = Fake::start(Some(CLIENT_SECRET)).await;
    let old = TestKey::es256("2024");
    fake.publish(&[&old]);
    let oidc = fake.oidc();
    let (first, _) = fake.sign_in(&oidc, "c1", |c| old.sign(&c)).await;
    assert!(first.is_ok());
    assert_eq!(fake.state().jwks_fetches, 1);

    let new = TestKey::rs256("2025");
    fake.publish(&[&new]);
    let (rotated, _) = fake.sign_in(&oidc, "c2", |c| new.sign(&c)).await;
    assert_eq!(rotated.unwrap()["sub"], "5f3a-user");
    assert_eq!(fake.state().jwks_fetches, 2);

    let (again, _) = fake.sign_in(&oidc, "c3", |c| new.sign(&c)).await;
    assert!(again.is_ok());
    assert_eq!(fake.state().jwks_fetches, 2, "the new set is kept");

    let retired = fake.sign_in(&oidc, "c4", |c| old.sign(&c));
    assert_eq!(rejection(retired.await), IdTokenRejection::UnknownKey);
    assert_eq!(fake.state().jwks_fetches, 3);
}

#[tokio::test]
async fn concurrent_sign_ins_that_meet_a_new_key_all_succeed() {
    let fake = Fake::start(Some(CLIENT_SECRET)).await;
    let old = TestKey::es256("old");
    fake.publish(&[&old]);
    let oidc = fake.oidc();
    assert!(fake
        .sign_in(&oidc, "warm", |c| old.sign(&c))
        .await
        .0
        .is_ok());
    let new = TestKey::es256("new");
    fake.publish(&[&old, &new]);
    let sign_ins =
        (0..5).map(|i| fake.sign_in(&oidc, ["a", "b", "c", "d", "e"][i], |c| new.sign(&c)));
    for (result, _) in futures::future::join_all(sign_ins).await {
        assert!(result.is_ok(), "{result:?}");
    }
    assert_eq!(fake.state().jwks_fetches, 2);
}

#[tokio::test]
async fn an_expired_sign_in_is_not_exchanged() {
    let fake = Fake::start(Some(CLIENT_SECRET)).await;
    let oidc = fake.oidc();
    let (_, login) = oidc.begin(REDIRECT_URI).await.unwrap();
    let stale = PendingLogin {
        expires_at: Utc::now() - chrono::TimeDelta::seconds(1),
        ..login
    };
    let result = oidc.finish("code", &stale, REDIRECT_URI).await;
    assert!(matches!(result, Err(OidcError::LoginExpired)), "{result:?}");
    assert_eq!(fake.state().token_requests, 0);
}

#[tokio::test]
async fn an_unreachable_or_failing_provider_is_retryable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let unreachable = oidc_for(&format!("http://{address}/pool"), None);
    let error = unreachable.begin(REDIRECT_URI).await.unwrap_err();
    assert!(matches!(error, OidcError::Unavailable(_)), "{error:?}");
    assert!(error.is_retryable());

    let fake = Fake::start(Some(CLIENT_SECRET)).await;
    let key = TestKey::es256("key-1");
    fake.publish(&[&key]);
    let oidc = fake.oidc();
    fake.state().token_endpoint_fails = true;
    let (result, _) = fake.sign_in(&oidc, "code", |c| key.sign(&c)).await;
    let error = result.unwrap_err();
    assert!(matches!(error, OidcError::Unavailable(_)), "{error:?}");
    assert!(error.is_retryable());

    let other_issuer = oidc_for(&format!("{}/", fake.issuer), None);
    let error = other_issuer.begin(REDIRECT_URI).await.unwrap_err();
    assert!(matches!(error, OidcError::Unavailable(_)), "{error:?}");
    assert!(
        error.to_string().contains("names another issuer"),
        "{error}"
    );
}

#[tokio::test]
async fn each_sign_in_gets_its_own_random_state_nonce_and_verifier() {
    let fake = Fake::start(None).await;
    let oidc = fake.oidc();
    let mut seen = Vec::new();
    for _ in 0..20 {
        let (url, login) = oidc.begin(REDIRECT_URI).await.unwrap();
        let query = authorize_query(&url);
        assert!(query["state"].len() >= 32 && query["nonce"].len() >= 32);
        assert!((43..=128).contains(&login.verifier.len()));
        for value in [&login.state, &login.nonce, &login.verifier] {
            assert!(value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)));
        }
        seen.extend([login.state, login.nonce, login.verifier]);
    }
    let count = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_signs_in_through_the_provider_in_a_real_browser() {
    let fake = Fake::start(None).await;
    let key = Arc::new(TestKey::es256("key-1"));
    fake.publish(&[&key]);
    fake.state().user = Some(User {
        key: key.clone(),
        claims: json!({"email": "ada@example.com", "custom:tenant": "acme", "custom:role": "viewer"}),
    });
    let api = support::TestApi::start_with(support::Options {
        oidc: Some(OidcSettings {
            issuer: fake.issuer.clone(),
            client_id: CLIENT_ID.to_owned(),
            client_secret: None,
            scopes: DEFAULT_SCOPES.to_owned(),
        }),
        ..support::Options::default()
    })
    .await;
    let browser = tms_testkit::browser::Browser::start(1280, 900).await;
    browser
        .open(&format!("{}/console/dead", api.url), "a.button")
        .await;
    browser.screenshot("console-sign-in").await;
    browser.click("a.button").await;
    browser.wait_for_url("/console/dead").await;
    browser.wait_for("table.tasks").await;
    let header = browser.text("header").await;
    assert!(
        header.contains("acme") && header.contains("viewer"),
        "{header}"
    );
    assert_eq!(
        fake.state().token_requests,
        1,
        "the code was exchanged once"
    );
    assert!(fake.state().grants.is_empty(), "and used");
    browser.close().await;
}
