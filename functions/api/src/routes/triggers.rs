//! Event triggers: a tenant's match on the deployment's EventBridge events and the task each
//! matching event creates.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tms::ports::CreateError;
use tms::{Caller, DetailMatch, Trigger, TriggerId, ValidationErrors, DEFAULT_MAX_ATTEMPTS};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{path_uuid, IdPage, IdPageParams};
use crate::extract::JsonBody;
use crate::model::NewKindView;
use crate::problem::Problem;
use crate::AppState;

/// An equality on one value of the event's `detail`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DetailMatchBody {
    /// A JSON pointer into `detail`, such as `/status`.
    #[schema(pattern = "^(/([^~]|~[01])*)*$", max_length = 256)]
    pub pointer: String,
    /// The value it must equal.
    #[schema(value_type = Object)]
    pub equals: Value,
}

/// The task a matching event creates.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskTemplate {
    pub kind: NewKindView,
    /// The payload; a value `{"$event": "/detail/orderId"}` takes the event's value at that
    /// JSON pointer (into the whole event: `/id`, `/time`, `/detail/...`).
    #[schema(value_type = Object)]
    pub payload: Value,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 20, default = 5)]
    pub max_attempts: Option<u32>,
}

/// `POST /v1/triggers`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTrigger {
    /// Unique among the tenant's triggers.
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
    /// The events' `source`.
    #[schema(min_length = 1, max_length = 256)]
    pub source: String,
    /// The events' `detail-type`.
    #[schema(min_length = 1, max_length = 256)]
    pub detail_type: String,
    pub detail_match: Option<DetailMatchBody>,
    pub task: TaskTemplate,
}

/// A trigger.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TriggerView {
    pub id: Uuid,
    pub tenant: String,
    pub name: String,
    pub source: String,
    pub detail_type: String,
    pub detail_match: Option<DetailMatchBody>,
    pub task: TaskTemplate,
    pub created_at: DateTime<Utc>,
}

impl From<&Trigger> for TriggerView {
    fn from(t: &Trigger) -> Self {
        Self {
            id: *t.id.as_uuid(),
            tenant: t.tenant.to_string(),
            name: t.name.clone(),
            source: t.event_source.clone(),
            detail_type: t.detail_type.clone(),
            detail_match: t.detail_match.as_ref().map(|m| DetailMatchBody {
                pointer: m.pointer.clone(),
                equals: m.equals.clone(),
            }),
            task: TaskTemplate {
                kind: tms::TaskKind::parse(&t.kind)
                    .ok()
                    .and_then(NewKindView::of)
                    .unwrap_or(NewKindView::Noop),
                payload: t.payload.clone(),
                max_attempts: Some(t.max_attempts),
            },
            created_at: t.created_at,
        }
    }
}

/// One page of triggers, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TriggerPage {
    pub items: Vec<TriggerView>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

fn not_found() -> Problem {
    Problem::not_found("no such trigger")
}

/// Registers a trigger: each event of the deployment's bus with this source and detail-type
/// (and detail value) creates one task, once per event.
#[utoipa::path(
    post, path = "/v1/triggers", tag = "triggers",
    request_body(content = CreateTrigger, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered.", body = TriggerView),
        (status = 409, description = "The tenant has a trigger of that name.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_trigger(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<CreateTrigger>,
) -> Result<Response, Problem> {
    caller.may_act("register triggers")?;
    let trigger = Trigger {
        id: TriggerId::new(),
        tenant: caller.tenant,
        name: body.name,
        event_source: body.source,
        detail_type: body.detail_type,
        detail_match: body.detail_match.map(|m| DetailMatch {
            pointer: m.pointer,
            equals: m.equals,
        }),
        kind: tms::TaskKind::from(body.task.kind).as_str().to_owned(),
        payload: body.task.payload,
        max_attempts: body.task.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
        created_at: Utc::now(),
    };
    trigger
        .validate()
        .map_err(|e: ValidationErrors| Problem::validation(&e, ""))?;
    match state.triggers.create_trigger(&trigger).await {
        Ok(()) => {}
        Err(CreateError::NameTaken) => {
            return Err(Problem::conflict(
                "name-taken",
                "the tenant already has a trigger of that name",
            ))
        }
        Err(CreateError::Store(e)) => return Err(e.into()),
    }
    tracing::info!(trigger_id = %trigger.id, "trigger registered");
    Ok((StatusCode::CREATED, Json(TriggerView::from(&trigger))).into_response())
}

const LIST: &str = "triggers";

/// Lists the tenant's triggers, newest first.
#[utoipa::path(
    get, path = "/v1/triggers", tag = "triggers",
    params(IdPageParams),
    responses((status = 200, description = "One page of triggers.", body = TriggerPage))
)]
pub async fn list_triggers(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    let page = IdPage::parse(&state, &caller, LIST, query.as_deref())?;
    let mut triggers = state
        .triggers
        .list_triggers(
            &page.scope,
            page.before.map(TriggerId::from_uuid),
            page.rows(),
        )
        .await?;
    let next_cursor = page.next_cursor(&state, &mut triggers, |x| *x.id.as_uuid());
    let page = TriggerPage {
        items: triggers.iter().map(Into::into).collect(),
        next_cursor,
    };
    Ok(Json(page).into_response())
}

/// One trigger.
#[utoipa::path(
    get, path = "/v1/triggers/{id}", tag = "triggers",
    params(("id" = Uuid, Path, description = "The trigger id")),
    responses(
        (status = 200, description = "The trigger.", body = TriggerView),
        (status = 404, description = "No such trigger for this tenant.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_trigger(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = TriggerId::from_uuid(path_uuid(&id, "trigger")?);
    let trigger = state
        .triggers
        .get_trigger(&caller.scope(None)?, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(TriggerView::from(&trigger)).into_response())
}

/// Removes a trigger; the tasks it created stay.
#[utoipa::path(
    delete, path = "/v1/triggers/{id}", tag = "triggers",
    params(("id" = Uuid, Path, description = "The trigger id")),
    responses(
        (status = 204, description = "Removed."),
        (status = 404, description = "No such trigger for this tenant.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_trigger(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    caller.may_act("remove triggers")?;
    let id = TriggerId::from_uuid(path_uuid(&id, "trigger")?);
    if state
        .triggers
        .delete_trigger(&caller.scope(None)?, id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found())
    }
}
