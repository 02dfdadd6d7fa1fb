//! Schedules: a tenant's cron expressions or rates, each fire creating a task from the
//! schedule's template (the scheduler's `schedules` job creates them). Create, list, read with
//! a preview of the next runs, change (pause, resume, anything else) and delete.

use std::borrow::Cow;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use tms::ports::{CreateError, ScheduleUpdate};
use tms::{
    Caller, MissedPolicy, Schedule, ScheduleId, ScheduleInput, SchedulePatch, Scope, TaskKind,
    TaskTemplateInput, Timezone, ValidationErrors, CATCH_UP_LIMIT, EXPRESSION_MAX,
    MAX_ATTEMPTS_LIMIT, PREVIEW_LIMIT, SCHEDULE_NAME_MAX, SCHEDULE_NAME_PATTERN,
};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use uuid::Uuid;

use super::{path_uuid, IdPage, IdPageParams};
use crate::extract::JsonBody;
use crate::model::{integer, payload_name, present, rfc3339, whole_number, KindView};
use crate::problem::Problem;
use crate::AppState;

/// The task a schedule's fires create, as a request gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskBody {
    pub kind: String,
    pub payload: Value,
    #[serde(default, deserialize_with = "integer")]
    pub max_attempts: Option<u32>,
}

impl From<TaskBody> for TaskTemplateInput {
    fn from(t: TaskBody) -> Self {
        Self {
            kind: t.kind,
            payload: t.payload,
            max_attempts: t.max_attempts,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MissedPolicyName {
    Skip,
    CatchUp,
}

/// The missed-run policy, as a request gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissedBody {
    pub policy: MissedPolicyName,
    #[serde(default, deserialize_with = "integer")]
    pub max: Option<u32>,
}

impl MissedBody {
    fn policy(self) -> Result<MissedPolicy, Problem> {
        let invalid = |message: &str| {
            Problem::validation(&ValidationErrors::single("/missed/max", message), "")
        };
        match (self.policy, self.max) {
            (MissedPolicyName::Skip, None) => Ok(MissedPolicy::Skip),
            (MissedPolicyName::Skip, Some(_)) => Err(invalid("only catch_up takes a max")),
            (MissedPolicyName::CatchUp, Some(max)) => Ok(MissedPolicy::CatchUp { max }),
            (MissedPolicyName::CatchUp, None) => Err(invalid("is required with catch_up")),
        }
    }
}

/// `POST /v1/schedules`; its schema is [`create_schema`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    pub name: String,
    pub expression: String,
    pub timezone: String,
    pub task: TaskBody,
    #[serde(default, deserialize_with = "rfc3339")]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "rfc3339")]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "present")]
    pub missed: Option<MissedBody>,
    #[serde(default)]
    pub paused: bool,
}

/// An RFC 3339 date-time or null (which clears the value).
fn nullable_rfc3339<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<DateTime<Utc>>>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None => Ok(Some(None)),
        Some(value) => rfc3339(value)
            .map(Some)
            .map_err(|e: serde_json::Error| serde::de::Error::custom(e)),
    }
}

/// The largest version a request may name (the largest integer a JSON number holds exactly).
const VERSION_MAX: u64 = (1 << 53) - 1;

fn version<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let n = whole_number(d)?;
    if (1..=VERSION_MAX).contains(&n) {
        Ok(Some(n as i64))
    } else {
        Err(serde::de::Error::custom(format!(
            "must be a whole number from 1 to {VERSION_MAX}"
        )))
    }
}

/// `PATCH /v1/schedules/{id}`; its schema is [`update_schema`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSchedule {
    #[serde(default, deserialize_with = "present")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub expression: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub timezone: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub task: Option<TaskBody>,
    #[serde(default, deserialize_with = "nullable_rfc3339")]
    pub starts_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "nullable_rfc3339")]
    pub ends_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "present")]
    pub missed: Option<MissedBody>,
    #[serde(default, deserialize_with = "present")]
    pub paused: Option<bool>,
    #[serde(default, deserialize_with = "version")]
    pub version: Option<i64>,
}

/// The task each fire creates.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScheduleTask {
    pub kind: KindView,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub max_attempts: u32,
}

/// What the scheduler does with fires that were due while it did not run.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = MissedPolicy)]
pub struct MissedView {
    /// `skip`: only the latest missed fire, and only when at most 5 minutes late;
    /// `catch_up`: the `max` most recent missed fires, oldest first.
    pub policy: MissedPolicyName,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 1, maximum = 1000)]
    pub max: Option<u32>,
}

/// A schedule.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Schedule)]
pub struct ScheduleView {
    pub id: Uuid,
    /// The tenant that owns it.
    pub tenant: String,
    pub name: String,
    /// Five cron fields (minute hour day-of-month month day-of-week) or `rate(N unit)`.
    pub expression: String,
    /// The IANA time zone the cron expression is read in.
    pub timezone: String,
    pub task: ScheduleTask,
    /// Fires at or after this instant.
    pub starts_at: Option<DateTime<Utc>>,
    /// Fires before this instant.
    pub ends_at: Option<DateTime<Utc>>,
    pub missed: MissedView,
    pub paused: bool,
    /// The next fire; null while paused and once the window ended.
    pub next_run_at: Option<DateTime<Utc>>,
    /// The latest fire whose task was created.
    pub last_fire_at: Option<DateTime<Utc>>,
    /// With `?preview=N`: the next N fire times (for a paused schedule, those it would have if
    /// resumed now).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_runs: Option<Vec<DateTime<Utc>>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Incremented by each change; send it back in a change to make it conditional.
    pub version: i64,
}

impl From<&Schedule> for ScheduleView {
    fn from(s: &Schedule) -> Self {
        let (policy, max) = match s.missed {
            MissedPolicy::Skip => (MissedPolicyName::Skip, None),
            MissedPolicy::CatchUp { max } => (MissedPolicyName::CatchUp, Some(max)),
        };
        Self {
            id: *s.id.as_uuid(),
            tenant: s.tenant.to_string(),
            name: s.name.clone(),
            expression: s.timing.expression.as_str().to_owned(),
            timezone: s.timing.timezone.name().to_owned(),
            task: ScheduleTask {
                kind: s.template.kind.into(),
                payload: s.template.payload.clone(),
                max_attempts: s.template.max_attempts,
            },
            starts_at: s.timing.starts_at,
            ends_at: s.timing.ends_at,
            missed: MissedView { policy, max },
            paused: s.paused,
            next_run_at: s.next_run(),
            last_fire_at: s.last_fire_at,
            next_runs: None,
            created_at: s.created_at,
            updated_at: s.updated_at,
            version: s.version,
        }
    }
}

/// One page of schedules, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SchedulePage {
    pub items: Vec<ScheduleView>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

fn not_found() -> Problem {
    Problem::not_found("no such schedule")
}

fn name_taken() -> Problem {
    Problem::conflict(
        "name-taken",
        "the tenant already has a schedule of that name",
    )
}

fn changed(current: &Schedule) -> Problem {
    Problem::conflict(
        "version-conflict",
        format!(
            "the schedule changed meanwhile (it is at version {}); read it again and retry",
            current.version
        ),
    )
}

fn schedule_id(raw: &str) -> Result<ScheduleId, Problem> {
    path_uuid(raw, "schedule").map(ScheduleId::from_uuid)
}

/// Creates a schedule; its first run is the first fire after now.
#[utoipa::path(
    post, path = "/v1/schedules", tag = "schedules",
    request_body(content = CreateSchedule, content_type = "application/json"),
    responses(
        (status = 201, description = "Created.", body = ScheduleView),
        (status = 409, description = "The tenant has a schedule of that name.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_schedule(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<CreateSchedule>,
) -> Result<Response, Problem> {
    caller.may_act("manage schedules")?;
    let missed = body
        .missed
        .map_or(Ok(MissedPolicy::Skip), MissedBody::policy)?;
    let input = ScheduleInput {
        name: body.name,
        expression: body.expression,
        timezone: body.timezone,
        task: body.task.into(),
        starts_at: body.starts_at,
        ends_at: body.ends_at,
        missed,
        paused: body.paused,
    };
    let schedule = input
        .validate(caller.tenant, &state.rules, Utc::now())
        .map_err(|e| Problem::validation(&e, ""))?;
    match state.schedules.create_schedule(&schedule).await {
        Ok(()) => {}
        Err(CreateError::NameTaken) => return Err(name_taken()),
        Err(CreateError::Store(e)) => return Err(e.into()),
    }
    tracing::info!(schedule_id = %schedule.id, "schedule created");
    Ok((StatusCode::CREATED, Json(ScheduleView::from(&schedule))).into_response())
}

const LIST: &str = "schedules";

/// Lists the tenant's schedules, newest first.
#[utoipa::path(
    get, path = "/v1/schedules", tag = "schedules",
    params(IdPageParams),
    responses((status = 200, description = "One page of schedules.", body = SchedulePage))
)]
pub async fn list_schedules(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    let page = IdPage::parse(&state, &caller, LIST, query.as_deref())?;
    let mut schedules = state
        .schedules
        .list_schedules(
            &page.scope,
            page.before.map(ScheduleId::from_uuid),
            page.rows(),
        )
        .await?;
    let next_cursor = page.next_cursor(&state, &mut schedules, |x| *x.id.as_uuid());
    let page = SchedulePage {
        items: schedules.iter().map(Into::into).collect(),
        next_cursor,
    };
    Ok(Json(page).into_response())
}

/// The preview of `GET /v1/schedules/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PreviewParams {
    /// List the next N fire times as `next_runs`.
    #[param(minimum = 1, maximum = 50)]
    preview: Option<u32>,
}

/// The `preview` query parameter: 1 to [`PREVIEW_LIMIT`], or 400.
fn preview_param(query: Option<&str>) -> Result<Option<usize>, Problem> {
    let mut preview = None;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if name == "preview" {
            let n = value
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=PREVIEW_LIMIT).contains(n))
                .ok_or_else(|| {
                    Problem::bad_request(format!(
                        "preview must be an integer from 1 to {PREVIEW_LIMIT}"
                    ))
                })?;
            preview = Some(n);
        }
    }
    Ok(preview)
}

/// The next `n` fires: the next run and those after it; for a paused schedule, those it would
/// have if resumed now.
fn next_runs(s: &Schedule, n: usize, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    match s.next_run() {
        Some(next) => std::iter::once(next)
            .chain(s.timing.preview(next, n - 1))
            .collect(),
        None if s.paused => s.timing.preview(now, n),
        None => Vec::new(),
    }
}

/// One schedule, with `?preview=N` its next N fire times.
#[utoipa::path(
    get, path = "/v1/schedules/{id}", tag = "schedules",
    params(("id" = Uuid, Path, description = "The schedule id"), PreviewParams),
    responses(
        (status = 200, description = "The schedule.", body = ScheduleView),
        (status = 404, description = "No such schedule for this tenant.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_schedule(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    let id = schedule_id(&id)?;
    let preview = preview_param(query.as_deref())?;
    let schedule = state
        .schedules
        .get_schedule(&caller.scope(None)?, id)
        .await?
        .ok_or_else(not_found)?;
    let mut view = ScheduleView::from(&schedule);
    view.next_runs = preview.map(|n| next_runs(&schedule, n, Utc::now()));
    Ok(Json(view).into_response())
}

/// Changes a schedule: pause (`"paused": true`), resume (`false`: it runs again from the next
/// fire after now; fires missed while paused are not created), or any other field. With
/// `version`, only if the schedule is still at that version.
#[utoipa::path(
    patch, path = "/v1/schedules/{id}", tag = "schedules",
    params(("id" = Uuid, Path, description = "The schedule id")),
    request_body(content = UpdateSchedule, content_type = "application/json"),
    responses(
        (status = 200, description = "Changed.", body = ScheduleView),
        (status = 404, description = "No such schedule for this tenant.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant has another schedule of that name, or the schedule is no longer at the version given.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_schedule(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateSchedule>,
) -> Result<Response, Problem> {
    caller.may_act("manage schedules")?;
    let id = schedule_id(&id)?;
    let scope = caller.scope(None)?;
    let missed = body.missed.clone().map(MissedBody::policy).transpose()?;
    let patch = SchedulePatch {
        name: body.name,
        expression: body.expression,
        timezone: body.timezone,
        task: body.task.map(Into::into),
        starts_at: body.starts_at,
        ends_at: body.ends_at,
        missed,
        paused: body.paused,
    };
    let schedule = change(&state, &scope, id, patch, body.version).await?;
    Ok(Json(ScheduleView::from(&schedule)).into_response())
}

/// Applies `patch` to the schedule `id` of `scope`, at `version` if one is given; without a
/// version, a change that meets another one is tried again on the new state.
pub(crate) async fn change(
    state: &AppState,
    scope: &Scope,
    id: ScheduleId,
    patch: SchedulePatch,
    version: Option<i64>,
) -> Result<Schedule, Problem> {
    let attempts = if version.is_some() { 1 } else { 3 };
    let mut current = state
        .schedules
        .get_schedule(scope, id)
        .await?
        .ok_or_else(not_found)?;
    for _ in 0..attempts {
        if version.is_some_and(|v| v != current.version) {
            return Err(changed(&current));
        }
        let patched = current
            .patch(patch.clone(), &state.rules, Utc::now())
            .map_err(|e| Problem::validation(&e, ""))?;
        match state
            .schedules
            .update_schedule(scope, &patched.schedule, patched.rescheduled)
            .await
        {
            Ok(ScheduleUpdate::Updated(schedule)) => {
                tracing::info!(schedule_id = %schedule.id, version = schedule.version,
                    paused = schedule.paused, rescheduled = patched.rescheduled,
                    "schedule changed");
                return Ok(schedule);
            }
            Ok(ScheduleUpdate::NotFound) => return Err(not_found()),
            Ok(ScheduleUpdate::Conflict(now)) => current = now,
            Err(CreateError::NameTaken) => return Err(name_taken()),
            Err(CreateError::Store(e)) => return Err(e.into()),
        }
    }
    Err(changed(&current))
}

/// Deletes a schedule; the tasks it created stay.
#[utoipa::path(
    delete, path = "/v1/schedules/{id}", tag = "schedules",
    params(("id" = Uuid, Path, description = "The schedule id")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "No such schedule for this tenant.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_schedule(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    caller.may_act("manage schedules")?;
    let id = schedule_id(&id)?;
    if state
        .schedules
        .delete_schedule(&caller.scope(None)?, id)
        .await?
    {
        tracing::info!(schedule_id = %id, "schedule deleted");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found())
    }
}

/// A Python identifier for each zone name, unique (the client generator names enum members
/// after values, and `Etc/GMT+1` and `Etc/GMT-1` would meet).
fn zone_var_name(name: &str) -> String {
    name.replace('+', "_PLUS_")
        .replace('-', "_MINUS_")
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("_")
        .to_ascii_uppercase()
}

fn timestamp_schema(description: &str, nullable: bool) -> Value {
    let mut schema = json!({
        "type": "string", "format": "date-time", "pattern": tms::RUN_AFTER_PATTERN,
        "description": format!("{description} (RFC 3339), from {} to {}.", tms::RUN_AFTER_EARLIEST, tms::RUN_AFTER_LATEST)
    });
    if nullable {
        schema["type"] = json!(["string", "null"]);
        schema["description"] = json!(format!(
            "{} Null clears it.",
            schema["description"].as_str().unwrap_or_default()
        ));
    }
    schema
}

/// The request schemas of the schedule routes, by component name: JSON Schema that states
/// what the validation accepts (beyond it: `ends_at` after `starts_at`, and a cron expression
/// that matches some date).
pub fn schemas() -> Vec<(&'static str, Value)> {
    let template_branches: Vec<Value> = TaskKind::SUBMITTABLE
        .iter()
        .map(|kind| {
            json!({
                "title": format!("{kind} schedule task"),
                "type": "object",
                "additionalProperties": false,
                "required": ["kind", "payload"],
                "properties": {
                    "kind": {"type": "string", "const": kind.as_str()},
                    "payload": {"$ref": format!("#/components/schemas/{}", payload_name(kind.as_str()))},
                    "max_attempts": {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS_LIMIT, "default": 5}
                }
            })
        })
        .collect();
    let zones: Vec<&str> = Timezone::names().collect();
    let var_names: Vec<String> = zones.iter().map(|z| zone_var_name(z)).collect();
    let properties = |update: bool| {
        let mut p = json!({
            "name": {
                "type": "string", "minLength": 1, "maxLength": SCHEDULE_NAME_MAX,
                "pattern": SCHEDULE_NAME_PATTERN,
                "description": "Unique among the tenant's schedules; no control characters."
            },
            "expression": {
                "type": "string", "minLength": 1, "maxLength": EXPRESSION_MAX,
                "pattern": tms::expression_pattern(),
                "description": "Five cron fields, minute hour day-of-month month day-of-week (numbers, `*`, lists, ranges that may wrap around such as `22-2`, steps such as `*/15` or `8-18/2`, month and weekday names), read in `timezone`; or `rate(N minute|minutes|hour|hours|day|days)`, fixed intervals from `starts_at` (else from the creation). A cron expression must match some date (not 30 February).",
                "examples": ["30 2 * * *", "*/15 8-18 * * MON-FRI", "rate(5 minutes)"]
            },
            "timezone": {"$ref": "#/components/schemas/Timezone"},
            "task": {"$ref": "#/components/schemas/ScheduleTaskRequest"},
            "starts_at": timestamp_schema("Fires at or after this instant", update),
            "ends_at": timestamp_schema("Fires before this instant; after starts_at", update),
            "missed": {"$ref": "#/components/schemas/MissedPolicyRequest"},
            "paused": {"type": "boolean", "description": "A paused schedule does not fire; resumed, it runs from the next fire after now."}
        });
        if update {
            p["version"] = json!({
                "type": "integer", "minimum": 1, "maximum": VERSION_MAX,
                "description": "Change only if the schedule is still at this version (409 otherwise)."
            });
        } else {
            p["paused"]["default"] = json!(false);
        }
        p
    };
    vec![
        (
            "CreateSchedule",
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["name", "expression", "timezone", "task"],
                "properties": properties(false)
            }),
        ),
        (
            "UpdateSchedule",
            json!({
                "type": "object",
                "additionalProperties": false,
                "description": "Each field given replaces the schedule's.",
                "properties": properties(true)
            }),
        ),
        (
            "ScheduleTaskRequest",
            json!({
                "description": "The task each fire creates. Strings must not contain NUL characters; the payload is at most 256 KiB as JSON.",
                "oneOf": template_branches
            }),
        ),
        (
            "MissedPolicyRequest",
            json!({
                "description": "What to do with fires that were due while the scheduler did not run (default skip).",
                "oneOf": [
                    {
                        "title": "skip missed runs",
                        "description": "Create only the latest missed fire, and only when it is at most 5 minutes late.",
                        "type": "object", "additionalProperties": false, "required": ["policy"],
                        "properties": {"policy": {"type": "string", "const": "skip"}}
                    },
                    {
                        "title": "catch up missed runs",
                        "description": "Create the max most recent missed fires, oldest first.",
                        "type": "object", "additionalProperties": false, "required": ["policy", "max"],
                        "properties": {
                            "policy": {"type": "string", "const": "catch_up"},
                            "max": {"type": "integer", "minimum": 1, "maximum": CATCH_UP_LIMIT}
                        }
                    }
                ]
            }),
        ),
        (
            "Timezone",
            json!({
                "type": "string",
                "description": "An IANA time zone name.",
                "enum": zones,
                "x-enum-varnames": var_names
            }),
        ),
    ]
}

/// utoipa's model has no `const`: these bodies are registered with a placeholder and their
/// JSON Schema is set by [`crate::openapi::document`] from [`schemas`].
fn placeholder() -> RefOr<Schema> {
    utoipa::openapi::ObjectBuilder::new().into()
}

impl PartialSchema for CreateSchedule {
    fn schema() -> RefOr<Schema> {
        placeholder()
    }
}

impl ToSchema for CreateSchedule {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("CreateSchedule")
    }
}

impl PartialSchema for UpdateSchedule {
    fn schema() -> RefOr<Schema> {
        placeholder()
    }
}

impl ToSchema for UpdateSchedule {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("UpdateSchedule")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn zone_names_fit_the_column_and_have_distinct_identifiers() {
        let names: Vec<&str> = Timezone::names().collect();
        assert!(names.iter().all(|n| (1..=64).contains(&n.len())));
        let vars: HashSet<String> = names.iter().map(|n| zone_var_name(n)).collect();
        assert_eq!(vars.len(), names.len());
        assert_eq!(zone_var_name("Etc/GMT+1"), "ETC_GMT_PLUS_1");
        assert_eq!(
            zone_var_name("America/Port-au-Prince"),
            "AMERICA_PORT_MINUS_AU_MINUS_PRINCE"
        );
    }

    #[test]
    fn a_missed_policy_takes_a_max_exactly_with_catch_up() {
        let parse = |body: &str| {
            crate::extract::parse_json::<MissedBody>(body.as_bytes()).and_then(MissedBody::policy)
        };
        assert_eq!(parse(r#"{"policy":"skip"}"#).unwrap(), MissedPolicy::Skip);
        assert_eq!(
            parse(r#"{"policy":"catch_up","max":3}"#).unwrap(),
            MissedPolicy::CatchUp { max: 3 }
        );
        for (bad, pointer) in [
            (r#"{"policy":"skip","max":3}"#, "/missed/max"),
            (r#"{"policy":"catch_up"}"#, "/missed/max"),
            (r#"{"policy":"later"}"#, "/policy"),
            (r#"{"policy":"skip","extra":1}"#, "/extra"),
        ] {
            let problem = parse(bad).unwrap_err();
            assert_eq!(problem.status, 422, "{bad}");
            assert_eq!(problem.errors[0].pointer, pointer, "{bad}");
        }
    }

    #[test]
    fn a_change_clears_the_window_with_null() {
        let body: UpdateSchedule = crate::extract::parse_json(
            br#"{"starts_at": null, "ends_at": "2026-01-31T09:30:00Z", "version": 3}"#,
        )
        .unwrap();
        assert_eq!(body.starts_at, Some(None));
        assert!(body.ends_at.is_some_and(|e| e.is_some()));
        assert_eq!(body.version, Some(3));
        let none: UpdateSchedule = crate::extract::parse_json(b"{}").unwrap();
        assert_eq!((none.starts_at, none.version), (None, None));
        for bad in [
            r#"{"name": null}"#,
            r#"{"paused": null}"#,
            r#"{"version": 0}"#,
            r#"{"version": 9007199254740992}"#,
            r#"{"starts_at": "tomorrow"}"#,
        ] {
            assert_eq!(
                crate::extract::parse_json::<UpdateSchedule>(bad.as_bytes())
                    .unwrap_err()
                    .status,
                422,
                "{bad}"
            );
        }
    }
}
