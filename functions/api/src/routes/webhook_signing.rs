//! A tenant's webhook signing secret: when set, every call of the tenant's `webhook` tasks
//! carries the Standard Webhooks headers (`webhook-id`: the task id; `webhook-timestamp`;
//! `webhook-signature` over the body sent).

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tms::domain::subscription::ROTATION_OVERLAP;
use tms::{Caller, Scope, SigningSecret, Tenant, WebhookSigning};
use utoipa::{IntoParams, ToSchema};

use super::tenant_param;
use crate::problem::Problem;
use crate::AppState;

/// A tenant's webhook signing (never its secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookSigningView {
    pub tenant: String,
    /// During a rotation's overlap: until when the replaced secret still signs.
    pub previous_secret_valid_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&WebhookSigning> for WebhookSigningView {
    fn from(w: &WebhookSigning) -> Self {
        Self {
            tenant: w.tenant.to_string(),
            previous_secret_valid_until: w.keys.overlap_until(Utc::now()),
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// The tenant's webhook signing with its new secret, shown this once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookSigningSecret {
    pub signing: WebhookSigningView,
    /// `whsec_` and the base64 of 32 random bytes: receivers verify signatures with it.
    #[schema(pattern = "^whsec_[A-Za-z0-9+/]+={0,2}$")]
    pub secret: String,
}

impl WebhookSigningSecret {
    fn of(w: &WebhookSigning) -> Self {
        Self {
            signing: w.into(),
            secret: w.keys.current.expose().to_owned(),
        }
    }
}

/// Whose signing a request is about.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SigningParams {
    /// Operators: this tenant's (their own without it). Others: their own only.
    #[param(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    tenant: Option<String>,
}

/// The tenant of the request: `?tenant=` (operators, or a caller naming its own), else the
/// caller's.
fn tenant_of(caller: &Caller, query: Option<String>) -> Result<Tenant, Problem> {
    let mut named = None;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if name == "tenant" {
            named = Some(tenant_param(&value)?);
        }
    }
    Ok(match caller.scope(named.as_ref())? {
        Scope::Tenant(t) => t,
        Scope::All => caller.tenant.clone(),
    })
}

fn not_set() -> Problem {
    Problem::not_found("the tenant has no webhook signing secret")
}

/// Whether the tenant's webhook tasks are signed, since when, and any rotation's overlap.
#[utoipa::path(
    get, path = "/v1/webhook-signing", tag = "webhook signing",
    params(SigningParams),
    responses(
        (status = 200, description = "The tenant's webhook tasks are signed.", body = WebhookSigningView),
        (status = 404, description = "The tenant's webhook tasks are not signed.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_signing(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    let tenant = tenant_of(&caller, query)?;
    let signing = state
        .webhook_signing
        .webhook_signing(&tenant)
        .await?
        .ok_or_else(not_set)?;
    Ok(Json(WebhookSigningView::from(&signing)).into_response())
}

/// Signs the tenant's webhook tasks from now with a new secret, shown this once. A secret set
/// before stops signing at once; rotate instead for an overlap.
#[utoipa::path(
    put, path = "/v1/webhook-signing", tag = "webhook signing",
    params(SigningParams),
    responses(
        (status = 200, description = "The new secret, shown this once.", body = WebhookSigningSecret),
    )
)]
pub async fn put_signing(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    caller.may_act("set webhook signing secrets")?;
    let tenant = tenant_of(&caller, query)?;
    let signing = state
        .webhook_signing
        .set_webhook_signing(&tenant, &SigningSecret::generate())
        .await?;
    tracing::info!(%tenant, "webhook signing secret set");
    Ok(Json(WebhookSigningSecret::of(&signing)).into_response())
}

/// Replaces the secret with a new one, shown this once. For 24 hours the replaced secret signs
/// too: each call carries both signatures, so receivers can switch over.
#[utoipa::path(
    post, path = "/v1/webhook-signing/rotate", tag = "webhook signing",
    params(SigningParams),
    responses(
        (status = 200, description = "The new secret, shown this once.", body = WebhookSigningSecret),
        (status = 404, description = "The tenant's webhook tasks are not signed: PUT a secret first.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn rotate_signing(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    caller.may_act("rotate webhook signing secrets")?;
    let tenant = tenant_of(&caller, query)?;
    let signing = state
        .webhook_signing
        .rotate_webhook_signing(
            &tenant,
            &SigningSecret::generate(),
            Utc::now() + ROTATION_OVERLAP,
        )
        .await?
        .ok_or_else(not_set)?;
    tracing::info!(%tenant, "webhook signing secret rotated");
    Ok((StatusCode::OK, Json(WebhookSigningSecret::of(&signing))).into_response())
}

/// Stops signing the tenant's webhook tasks.
#[utoipa::path(
    delete, path = "/v1/webhook-signing", tag = "webhook signing",
    params(SigningParams),
    responses(
        (status = 204, description = "Removed: the tenant's webhook tasks are sent unsigned."),
        (status = 404, description = "The tenant's webhook tasks were not signed.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_signing(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    caller.may_act("remove webhook signing secrets")?;
    let tenant = tenant_of(&caller, query)?;
    if state
        .webhook_signing
        .delete_webhook_signing(&tenant)
        .await?
    {
        tracing::info!(%tenant, "webhook signing secret removed");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_set())
    }
}
