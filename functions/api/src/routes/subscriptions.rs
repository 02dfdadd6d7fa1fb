//! Webhook subscriptions: the URL a tenant's lifecycle events are delivered to, signed per the
//! Standard Webhooks specification, each delivery a `notification` task.

use std::borrow::Cow;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use tms::domain::notification::EVENT_TYPES;
use tms::domain::subscription::ROTATION_OVERLAP;
use tms::domain::webhook::{URL_MAX_LEN, URL_PATTERN};
use tms::telemetry::metrics::{MetricSet, TASKS_CREATED};
use tms::{
    Caller, SigningSecret, Subscription, SubscriptionFields, SubscriptionId, SubscriptionPatch,
    TaskKind,
};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

use super::{path_uuid, IdPage, IdPageParams};
use crate::extract::JsonBody;
use crate::model::{present, TaskView};
use crate::problem::Problem;
use crate::AppState;

/// `POST /v1/subscriptions`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    pub url: String,
    pub event_types: Vec<String>,
    #[serde(default, deserialize_with = "present")]
    pub kinds: Option<Vec<String>>,
}

/// Absent: `None`; `null`: `Some(None)`; a value: `Some(Some(value))`.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `PATCH /v1/subscriptions/{id}`: each field given replaces the stored one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchSubscription {
    #[serde(default, deserialize_with = "present")]
    pub url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub event_types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub kinds: Option<Option<Vec<String>>>,
}

/// A subscription (never its secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriptionView {
    pub id: Uuid,
    pub tenant: String,
    pub url: String,
    pub event_types: Vec<String>,
    /// Only the events of tasks of these kinds (import events always pass); null: every kind.
    pub kinds: Option<Vec<String>>,
    /// During a rotation's overlap: until when the replaced secret still signs.
    pub previous_secret_valid_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Subscription> for SubscriptionView {
    fn from(s: &Subscription) -> Self {
        Self {
            id: *s.id.as_uuid(),
            tenant: s.tenant.to_string(),
            url: s.url.clone(),
            event_types: s.event_types.clone(),
            kinds: s
                .kinds
                .as_ref()
                .map(|ks| ks.iter().map(|k| k.as_str().to_owned()).collect()),
            previous_secret_valid_until: s.keys.overlap_until(Utc::now()),
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// A subscription with its new signing secret, shown this once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriptionSecret {
    pub subscription: SubscriptionView,
    /// `whsec_` and the base64 of 32 random bytes: receivers verify signatures with it.
    #[schema(pattern = "^whsec_[A-Za-z0-9+/]+={0,2}$")]
    pub secret: String,
}

impl SubscriptionSecret {
    fn of(s: &Subscription) -> Self {
        Self {
            subscription: s.into(),
            secret: s.keys.current.expose().to_owned(),
        }
    }
}

/// One page of subscriptions, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriptionPage {
    pub items: Vec<SubscriptionView>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

fn not_found() -> Problem {
    Problem::not_found("no such subscription")
}

fn subscription_id(raw: &str) -> Result<SubscriptionId, Problem> {
    path_uuid(raw, "subscription").map(SubscriptionId::from_uuid)
}

/// Subscribes a URL to the tenant's lifecycle events of the given types (and kinds): each
/// event is POSTed there once, signed with the secret this answer shows once.
#[utoipa::path(
    post, path = "/v1/subscriptions", tag = "subscriptions",
    request_body(content = CreateSubscription, content_type = "application/json"),
    responses(
        (status = 201, description = "Subscribed; the signing secret is shown this once.", body = SubscriptionSecret),
    )
)]
pub async fn create_subscription(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<CreateSubscription>,
) -> Result<Response, Problem> {
    caller.may_act("subscribe to events")?;
    let fields = SubscriptionFields {
        url: body.url,
        event_types: body.event_types,
        kinds: body.kinds,
    };
    let subscription =
        Subscription::create(caller.tenant, fields, &state.rules.webhook, Utc::now())
            .map_err(|e| Problem::validation(&e, ""))?;
    state
        .subscriptions
        .create_subscription(&subscription)
        .await?;
    tracing::info!(subscription_id = %subscription.id, "subscription created");
    Ok((
        StatusCode::CREATED,
        Json(SubscriptionSecret::of(&subscription)),
    )
        .into_response())
}

const LIST: &str = "subscriptions";

/// Lists the tenant's subscriptions, newest first.
#[utoipa::path(
    get, path = "/v1/subscriptions", tag = "subscriptions",
    params(IdPageParams),
    responses((status = 200, description = "One page of subscriptions.", body = SubscriptionPage))
)]
pub async fn list_subscriptions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    let page = IdPage::parse(&state, &caller, LIST, query.as_deref())?;
    let mut subscriptions = state
        .subscriptions
        .list_subscriptions(
            &page.scope,
            page.before.map(SubscriptionId::from_uuid),
            page.rows(),
        )
        .await?;
    let next_cursor = page.next_cursor(&state, &mut subscriptions, |x| *x.id.as_uuid());
    let page = SubscriptionPage {
        items: subscriptions.iter().map(Into::into).collect(),
        next_cursor,
    };
    Ok(Json(page).into_response())
}

/// One subscription.
#[utoipa::path(
    get, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "The subscription id")),
    responses(
        (status = 200, description = "The subscription.", body = SubscriptionView),
        (status = 404, description = "No such subscription for this tenant.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_subscription(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = subscription_id(&id)?;
    let subscription = state
        .subscriptions
        .get_subscription(&caller.scope(None)?, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(SubscriptionView::from(&subscription)).into_response())
}

/// How often a change is tried again when another change came first.
const CHANGE_TRIES: usize = 3;

/// Changes the URL, the event types or the kinds (`null` removes the kind filter); the secret
/// stays.
#[utoipa::path(
    patch, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "The subscription id")),
    request_body(content = PatchSubscription, content_type = "application/json"),
    responses(
        (status = 200, description = "The subscription as changed.", body = SubscriptionView),
        (status = 404, description = "No such subscription for this tenant.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Other changes kept coming first; try again.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_subscription(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PatchSubscription>,
) -> Result<Response, Problem> {
    caller.may_act("change subscriptions")?;
    let id = subscription_id(&id)?;
    let scope = caller.scope(None)?;
    for _ in 0..CHANGE_TRIES {
        let current = state
            .subscriptions
            .get_subscription(&scope, id)
            .await?
            .ok_or_else(not_found)?;
        let patch = SubscriptionPatch {
            url: body.url.clone(),
            event_types: body.event_types.clone(),
            kinds: body.kinds.clone(),
        };
        let changed = current
            .change(patch, &state.rules.webhook, Utc::now())
            .map_err(|e| Problem::validation(&e, ""))?;
        if let Some(stored) = state
            .subscriptions
            .update_subscription(&scope, &changed, current.updated_at)
            .await?
        {
            tracing::info!(subscription_id = %id, "subscription changed");
            return Ok(Json(SubscriptionView::from(&stored)).into_response());
        }
    }
    Err(Problem::conflict(
        "concurrent-change",
        "the subscription kept changing meanwhile; try again",
    ))
}

/// Removes a subscription. Its deliveries not yet sent end `dead` at their next attempt
/// (error `subscription_deleted`), without a call.
#[utoipa::path(
    delete, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "The subscription id")),
    responses(
        (status = 204, description = "Removed."),
        (status = 404, description = "No such subscription for this tenant.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_subscription(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    caller.may_act("remove subscriptions")?;
    let id = subscription_id(&id)?;
    if state
        .subscriptions
        .delete_subscription(&caller.scope(None)?, id)
        .await?
    {
        tracing::info!(subscription_id = %id, "subscription removed");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found())
    }
}

/// Replaces the signing secret with a new one, shown this once. For 24 hours the replaced
/// secret signs too: each delivery carries both signatures, so receivers can switch over.
#[utoipa::path(
    post, path = "/v1/subscriptions/{id}/rotate-secret", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "The subscription id")),
    responses(
        (status = 200, description = "The new secret, shown this once.", body = SubscriptionSecret),
        (status = 404, description = "No such subscription for this tenant.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    caller.may_act("rotate subscription secrets")?;
    let id = subscription_id(&id)?;
    let secret = SigningSecret::generate();
    let rotated = state
        .subscriptions
        .rotate_subscription_secret(
            &caller.scope(None)?,
            id,
            &secret,
            Utc::now() + ROTATION_OVERLAP,
        )
        .await?
        .ok_or_else(not_found)?;
    tracing::info!(subscription_id = %id, "subscription secret rotated");
    Ok(Json(SubscriptionSecret::of(&rotated)).into_response())
}

/// Sends the subscription one synthetic event of its first type (`data.test` is true): a
/// delivery like any other, signed and retried.
#[utoipa::path(
    post, path = "/v1/subscriptions/{id}/test", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "The subscription id")),
    responses(
        (status = 202, description = "The delivery's task, pending.", body = TaskView),
        (status = 404, description = "No such subscription for this tenant.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn test_subscription(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    caller.may_act("test subscriptions")?;
    let id = subscription_id(&id)?;
    let subscription = state
        .subscriptions
        .get_subscription(&caller.scope(None)?, id)
        .await?
        .ok_or_else(not_found)?;
    let created = state
        .repo
        .create(&subscription.test_delivery(Utc::now()))
        .await?;
    let task = created.task;
    state.enqueue(std::slice::from_ref(&task));
    MetricSet::new()
        .count(TASKS_CREATED, 1)
        .emit(state.metrics.as_ref());
    tracing::info!(subscription_id = %id, task_id = %task.id, "test delivery created");
    Ok((StatusCode::ACCEPTED, Json(TaskView::from(&task))).into_response())
}

/// utoipa's schema model has no `const` or type lists, so the request bodies are registered
/// with a placeholder and their JSON Schema is set from [`schemas`].
fn placeholder() -> RefOr<Schema> {
    utoipa::openapi::ObjectBuilder::new().into()
}

impl PartialSchema for CreateSubscription {
    fn schema() -> RefOr<Schema> {
        placeholder()
    }
}

impl ToSchema for CreateSubscription {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("CreateSubscription")
    }
}

impl PartialSchema for PatchSubscription {
    fn schema() -> RefOr<Schema> {
        placeholder()
    }
}

impl ToSchema for PatchSubscription {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("PatchSubscription")
    }
}

/// The request schemas of the subscription routes, by component name: exactly what the
/// validation accepts (the URL as a webhook task's, under the default policy).
pub fn schemas() -> Vec<(&'static str, Value)> {
    let kinds: Vec<&str> = TaskKind::SUBMITTABLE.iter().map(TaskKind::as_str).collect();
    let url = json!({
        "type": "string", "format": "uri", "pattern": URL_PATTERN, "maxLength": URL_MAX_LEN,
        "description": "Where the events are POSTed: https, a host name (private, loopback, link-local and metadata addresses are refused, also when a name resolves to one at delivery)."
    });
    let event_types = json!({
        "type": "array", "minItems": 1, "maxItems": EVENT_TYPES.len(), "uniqueItems": true,
        "items": {"type": "string", "enum": EVENT_TYPES},
        "description": "The lifecycle events delivered."
    });
    let kind_list = json!({
        "type": "array", "minItems": 1, "maxItems": kinds.len(), "uniqueItems": true,
        "items": {"type": "string", "enum": kinds}
    });
    let mut kinds_create = kind_list.clone();
    kinds_create["description"] = json!(
        "Only the events of tasks of these kinds (import events always pass); every kind without it."
    );
    let mut kinds_patch = kind_list;
    kinds_patch["type"] = json!(["array", "null"]);
    kinds_patch["description"] = json!("The new kind filter; null removes it (every kind).");
    vec![
        (
            "CreateSubscription",
            json!({
                "type": "object", "additionalProperties": false,
                "required": ["url", "event_types"],
                "properties": {"url": url, "event_types": event_types, "kinds": kinds_create}
            }),
        ),
        (
            "PatchSubscription",
            json!({
                "type": "object", "additionalProperties": false,
                "properties": {"url": url, "event_types": event_types, "kinds": kinds_patch}
            }),
        ),
    ]
}
