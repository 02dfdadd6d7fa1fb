//! Console sessions: a random id in an HttpOnly, SameSite=Strict cookie (Secure unless the page
//! is served on loopback), its SHA-256 in the database with the caller, the anti-forgery token
//! and the expiry. A session made from an API token is checked against the token map on every
//! request: a token taken out of the map signs its sessions out within the map's cache time,
//! and a changed role applies at once.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::Utc;
use cookie::{Cookie, SameSite};
use rand::Rng as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tms::ports::ConsoleSession;
use tms::Caller;

use crate::problem::Problem;
use crate::AppState;

/// The session cookie.
pub const SESSION_COOKIE: &str = "tms_session";
/// The sign-in form's anti-forgery cookie (double submit: the form carries the same value).
pub const LOGIN_COOKIE: &str = "tms_login";
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// `bytes` random bytes, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// Whether two secrets are equal, compared in constant time.
pub fn same_secret(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether the page was asked for on loopback (`make dev`), where cookies cannot be Secure
/// because there is no TLS.
pub fn on_loopback(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(name, _)| name);
    matches!(name, "127.0.0.1" | "localhost" | "[::1]")
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, path `/console`, Secure off loopback;
/// `max_age` zero removes the cookie.
pub fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age: Duration) -> HeaderValue {
    let cookie = Cookie::build((name, value))
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(!on_loopback(headers))
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        ))
        .build();
    HeaderValue::from_str(&cookie.to_string()).expect("cookie values are base64url")
}

/// The value of cookie `name` in the request, if it sent one.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// Starts a session for `caller`; the `Set-Cookie` value that hands it to the browser.
///
/// # Errors
/// The store's failure.
pub async fn start(
    state: &AppState,
    headers: &HeaderMap,
    caller: Caller,
    subject: String,
    token_hash: Option<[u8; 32]>,
) -> Result<HeaderValue, Problem> {
    let id = random_token(32);
    let session = ConsoleSession {
        id_hash: digest(&id),
        caller,
        subject,
        token_hash,
        csrf: random_token(32),
        expires_at: Utc::now()
            + chrono::Duration::from_std(SESSION_TTL).expect("a session's lifetime"),
    };
    state.console.create_session(&session).await?;
    tracing::info!(tenant = %session.caller.tenant, role = %session.caller.role,
        subject = %session.subject, "console sign-in");
    Ok(set_cookie(headers, SESSION_COOKIE, &id, SESSION_TTL))
}

/// Ends the request's session, if it has one; the `Set-Cookie` value that removes the cookie.
///
/// # Errors
/// The store's failure.
pub async fn end(state: &AppState, headers: &HeaderMap) -> Result<HeaderValue, Problem> {
    if let Some(id) = cookie_value(headers, SESSION_COOKIE) {
        state.console.end_session(&digest(&id)).await?;
    }
    Ok(set_cookie(headers, SESSION_COOKIE, "", Duration::ZERO))
}

/// A signed-in browser: every console page but sign-in takes one. Without a valid session the
/// request is sent to the sign-in page (and back here after it).
#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    pub subject: String,
    /// The anti-forgery token the page's forms carry.
    pub csrf: String,
}

impl Session {
    /// # Errors
    /// 403 when a form's anti-forgery token is not the session's.
    pub fn check_csrf(&self, sent: &str) -> Result<(), Problem> {
        if same_secret(&self.csrf, sent) {
            Ok(())
        } else {
            Err(Problem::forbidden(
                "the form is stale or was not sent from this console; reload the page and try again",
            ))
        }
    }
}

/// Where the sign-in page sends the browser back to: a console path, never another site.
pub fn return_path(raw: Option<&str>) -> String {
    raw.filter(|p| p.starts_with("/console") && !p.contains("//") && !p.contains('\\'))
        .unwrap_or("/console")
        .to_owned()
}

fn to_sign_in(parts: &Parts) -> Response {
    let here = parts
        .uri
        .path_and_query()
        .map_or("/console", |p| p.as_str());
    let next: String =
        url::form_urlencoded::byte_serialize(return_path(Some(here)).as_bytes()).collect();
    Redirect::to(&format!("/console/login?next={next}")).into_response()
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(id) = cookie_value(&parts.headers, SESSION_COOKIE) else {
            return Err(to_sign_in(parts));
        };
        let Some(stored) = state
            .console
            .session(&digest(&id))
            .await
            .map_err(|e| Problem::from(e).into_response())?
        else {
            return Err(to_sign_in(parts));
        };
        let caller = match stored.token_hash {
            None => stored.caller,
            Some(hash) => match state.tokens.caller_for_hash(&hash).await {
                Ok(Some(caller)) => caller,
                Ok(None) => {
                    // The token left the map: so does every session made from it.
                    let _ = state.console.end_session(&stored.id_hash).await;
                    return Err(to_sign_in(parts));
                }
                Err(e) => {
                    tracing::error!(error = %e, "token map unavailable");
                    return Err(
                        Problem::unavailable("authentication is unavailable; retry later")
                            .into_response(),
                    );
                }
            },
        };
        tracing::Span::current().record("tenant", caller.tenant.as_str());
        Ok(Self {
            caller,
            subject: stored.subject,
            csrf: stored.csrf,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(h: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(h).unwrap());
        headers
    }

    #[test]
    fn cookies_are_secure_except_on_loopback() {
        for local in [
            "127.0.0.1:3000",
            "localhost",
            "localhost:8080",
            "[::1]:3000",
        ] {
            assert!(on_loopback(&host(local)), "{local}");
            let c = set_cookie(&host(local), SESSION_COOKIE, "v", SESSION_TTL);
            assert!(!c.to_str().unwrap().contains("Secure"), "{local}");
        }
        for remote in [
            "abc.execute-api.us-east-1.amazonaws.com",
            "127.0.0.1.evil.example",
        ] {
            assert!(!on_loopback(&host(remote)), "{remote}");
        }
        let c = set_cookie(&host("tms.example.com"), SESSION_COOKIE, "v", SESSION_TTL);
        let c = c.to_str().unwrap();
        for attribute in [
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Path=/console",
            "Max-Age=28800",
        ] {
            assert!(c.contains(attribute), "{attribute} in {c}");
        }
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; tms_session=xyz; b=2"),
        );
        assert_eq!(
            cookie_value(&headers, SESSION_COOKIE).as_deref(),
            Some("xyz")
        );
        assert_eq!(cookie_value(&headers, LOGIN_COOKIE), None);
    }

    #[test]
    fn the_way_back_stays_in_the_console() {
        assert_eq!(
            return_path(Some("/console/tasks?status=dead")),
            "/console/tasks?status=dead"
        );
        for away in [
            "https://evil.example/",
            "//evil.example",
            "/v1/tasks",
            "/console/\\\\evil",
        ] {
            assert_eq!(return_path(Some(away)), "/console", "{away}");
        }
        assert_eq!(return_path(None), "/console");
    }

    #[test]
    fn tokens_are_random_and_long() {
        let (a, b) = (random_token(32), random_token(32));
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(same_secret(&a, &a.clone()) && !same_secret(&a, &b));
    }
}
