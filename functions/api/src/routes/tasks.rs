//! The task routes: create (single and batch), read, list, events, cancel, redrive.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use tms::ports::{CommandOutcome, ListQuery};
use tms::telemetry::metrics::{MetricSet, TASKS_CREATED};
use tms::{
    validate_idempotency_key, CorrelationId, NewTask, Source, Status, Task, TaskId, TaskKind,
    Tenant, ValidationErrors,
};
use utoipa::IntoParams;

use super::DEFAULT_LIMIT;
use crate::extract::JsonBody;
use crate::model::{
    BatchRequest, BatchResponse, BatchResult, CreateTaskRequest, EventList, KindView, StatusView,
    TaskPage, TaskView, BATCH_MAX,
};
use crate::problem::Problem;
use crate::AppState;

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    let key = value.to_str().map_err(|_| {
        Problem::bad_request("Idempotency-Key must be 1-255 visible ASCII characters")
    })?;
    validate_idempotency_key(key)
        .map_err(|e| Problem::bad_request(format!("Idempotency-Key {}", e.message)))?;
    Ok(Some(key.to_owned()))
}

/// A task id in its canonical hyphenated form.
fn task_id(raw: &str) -> Result<TaskId, Problem> {
    super::path_uuid(raw, "task").map(TaskId::from_uuid)
}

fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    (status, Json(body)).into_response()
}

fn task_not_found() -> Problem {
    Problem::not_found("no such task")
}

/// Validates every submission, naming each invalid field under `prefix{i}`.
fn validate_all(
    state: &AppState,
    tenant: &Tenant,
    correlation_id: &CorrelationId,
    submissions: Vec<(tms::Submission, String)>,
) -> Result<Vec<NewTask>, Problem> {
    let mut valid = Vec::with_capacity(submissions.len());
    let mut errors = Vec::new();
    for (submission, prefix) in submissions {
        match submission.validate(
            tenant.clone(),
            correlation_id.clone(),
            Source::Api,
            &state.rules,
        ) {
            Ok(task) => valid.push(task),
            Err(e) => errors.extend(e.0.into_iter().map(|mut f| {
                f.pointer = format!("{prefix}{}", f.pointer);
                f
            })),
        }
    }
    if errors.is_empty() {
        Ok(valid)
    } else {
        Err(Problem::validation(&ValidationErrors(errors), ""))
    }
}

fn created_metric(state: &AppState, count: usize) {
    if count > 0 {
        MetricSet::new()
            .count(TASKS_CREATED, count as u64)
            .emit(state.metrics.as_ref());
    }
}

/// Creates a task.
#[utoipa::path(
    post, path = "/v1/tasks", tag = "tasks",
    request_body(content = CreateTaskRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Created and queued for execution.", body = TaskView),
        (status = 200, description = "Replay: a task with this Idempotency-Key and the same body exists.", body = TaskView),
        (status = 409, description = "The Idempotency-Key was used with another body.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_task(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Extension(correlation_id): Extension<CorrelationId>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CreateTaskRequest>,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers)?;
    let mut tasks = validate_all(
        &state,
        &tenant,
        &correlation_id,
        vec![(body.into_submission(key), String::new())],
    )?;
    let new = tasks.pop().expect("one submission");
    let created = state.repo.create(&new).await?;
    if created.replayed {
        if !created.hash_matches {
            return Err(Problem::conflict(
                "idempotency-key-reused",
                "this Idempotency-Key was already used with a different request body",
            ));
        }
        tracing::info!(task_id = %created.task.id, "idempotent replay");
        let mut response = json_response(StatusCode::OK, &TaskView::from(&created.task));
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        return Ok(response);
    }
    let task = created.task;
    state.enqueue(std::slice::from_ref(&task));
    created_metric(&state, 1);
    // On the request's line rather than a line of its own (one line per create, not two).
    tracing::Span::current().record("task_id", tracing::field::display(task.id));
    let mut response = json_response(StatusCode::ACCEPTED, &TaskView::from(&task));
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/tasks/{}", task.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Creates up to 100 tasks in one transaction.
#[utoipa::path(
    post, path = "/v1/tasks/batch", tag = "tasks",
    request_body(content = BatchRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Every task was validated and stored in one transaction; one result per task.", body = BatchResponse),
    )
)]
pub async fn create_batch(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Extension(correlation_id): Extension<CorrelationId>,
    JsonBody(body): JsonBody<BatchRequest>,
) -> Result<Response, Problem> {
    if body.tasks.is_empty() || body.tasks.len() > BATCH_MAX {
        return Err(Problem::validation(
            &ValidationErrors::single("/tasks", format!("must hold 1-{BATCH_MAX} tasks")),
            "",
        ));
    }
    let submissions = body
        .tasks
        .into_iter()
        .enumerate()
        .map(|(i, item)| (item.into_submission(), format!("/tasks/{i}")))
        .collect();
    let valid = validate_all(&state, &tenant, &correlation_id, submissions)?;
    let created = state.repo.create_batch(&valid).await?;
    let fresh: Vec<Task> = created
        .iter()
        .filter(|c| !c.replayed)
        .map(|c| c.task.clone())
        .collect();
    state.enqueue(&fresh);
    created_metric(&state, fresh.len());
    let results = created
        .into_iter()
        .enumerate()
        .map(|(index, c)| {
            if c.replayed && !c.hash_matches {
                BatchResult {
                    index,
                    status: 409,
                    task: None,
                    error: Some(Problem::conflict(
                        "idempotency-key-reused",
                        "this idempotency_key was already used with a different request",
                    )),
                }
            } else {
                BatchResult {
                    index,
                    status: if c.replayed { 200 } else { 202 },
                    task: Some(TaskView::from(&c.task)),
                    error: None,
                }
            }
        })
        .collect();
    Ok(json_response(StatusCode::OK, &BatchResponse { results }))
}

/// Gets a task.
#[utoipa::path(
    get, path = "/v1/tasks/{id}", tag = "tasks",
    params(("id" = Uuid, Path, description = "The task id")),
    responses(
        (status = 200, description = "The task.", body = TaskView),
        (status = 404, description = "No such task for this tenant.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_task(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = task_id(&id)?;
    let task = state
        .repo
        .get(&tenant, id)
        .await?
        .ok_or_else(task_not_found)?;
    Ok(json_response(StatusCode::OK, &TaskView::from(&task)))
}

/// The filters and page of `GET /v1/tasks`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListParams {
    /// Only tasks in this status.
    status: Option<StatusView>,
    /// Only tasks of this kind.
    kind: Option<KindView>,
    /// Page size.
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_-]{44}$")]
    cursor: Option<String>,
}

/// Lists the tenant's tasks, newest first.
#[utoipa::path(
    get, path = "/v1/tasks", tag = "tasks",
    params(ListParams),
    responses(
        (status = 200, description = "One page of tasks.", body = TaskPage),
    )
)]
pub async fn list_tasks(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    let mut status = None;
    let mut kind = None;
    let mut limit = DEFAULT_LIMIT;
    let mut cursor = None;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "status" => {
                status = Some(
                    Status::parse(&value)
                        .map_err(|e| Problem::bad_request(format!("status {}", e.message)))?,
                )
            }
            "kind" => {
                kind = Some(
                    TaskKind::parse(&value)
                        .map_err(|e| Problem::bad_request(format!("kind {}", e.message)))?,
                )
            }
            "limit" => limit = super::page_limit(&value)?,
            "cursor" => cursor = Some(value.into_owned()),
            _ => {}
        }
    }
    let before = cursor
        .map(|c| {
            state
                .cursor_key
                .decode(&c, &tenant, status, kind)
                .ok_or_else(|| Problem::bad_request("invalid cursor: pass the next_cursor of a previous page with the same filters"))
        })
        .transpose()?;
    let mut tasks = state
        .repo
        .list(
            &tenant,
            &ListQuery {
                status,
                kind,
                before,
                limit: limit + 1,
            },
        )
        .await?;
    let next_cursor = if tasks.len() > limit as usize {
        tasks.truncate(limit as usize);
        tasks
            .last()
            .map(|t| state.cursor_key.encode(t.id, &tenant, status, kind))
    } else {
        None
    };
    let page = TaskPage {
        items: tasks.iter().map(TaskView::from).collect(),
        next_cursor,
    };
    Ok(json_response(StatusCode::OK, &page))
}

/// A task's transition history, oldest first.
#[utoipa::path(
    get, path = "/v1/tasks/{id}/events", tag = "tasks",
    params(("id" = Uuid, Path, description = "The task id")),
    responses(
        (status = 200, description = "The transitions.", body = EventList),
        (status = 404, description = "No such task for this tenant.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn task_events(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = task_id(&id)?;
    let events = state
        .repo
        .events(&tenant, id)
        .await?
        .ok_or_else(task_not_found)?;
    Ok(json_response(
        StatusCode::OK,
        &EventList {
            items: events.iter().map(Into::into).collect(),
        },
    ))
}

fn command_response(outcome: CommandOutcome) -> Result<Task, Problem> {
    match outcome {
        CommandOutcome::Done(task) => Ok(task),
        CommandOutcome::NotFound => Err(task_not_found()),
        CommandOutcome::Refused { reason, .. } => {
            Err(Problem::conflict("invalid-transition", reason.to_string()))
        }
    }
}

/// Cancels a pending or failed task.
#[utoipa::path(
    post, path = "/v1/tasks/{id}/cancel", tag = "tasks",
    params(("id" = Uuid, Path, description = "The task id")),
    responses(
        (status = 200, description = "Cancelled.", body = TaskView),
        (status = 404, description = "No such task for this tenant.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The task is running or already finished.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel_task(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Extension(correlation_id): Extension<CorrelationId>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = task_id(&id)?;
    let task = command_response(state.repo.cancel(&tenant, id, &correlation_id).await?)?;
    tracing::info!(task_id = %task.id, "task cancelled");
    Ok(json_response(StatusCode::OK, &TaskView::from(&task)))
}

/// Sends a dead task back to pending, attempts reset.
#[utoipa::path(
    post, path = "/v1/tasks/{id}/redrive", tag = "tasks",
    params(("id" = Uuid, Path, description = "The task id")),
    responses(
        (status = 200, description = "Pending again and queued.", body = TaskView),
        (status = 404, description = "No such task for this tenant.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The task is not dead.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn redrive_task(
    State(state): State<AppState>,
    Extension(tenant): Extension<Tenant>,
    Extension(correlation_id): Extension<CorrelationId>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = task_id(&id)?;
    let task = command_response(state.repo.redrive(&tenant, id, &correlation_id).await?)?;
    state.enqueue(std::slice::from_ref(&task));
    tracing::info!(task_id = %task.id, "task redriven");
    Ok(json_response(StatusCode::OK, &TaskView::from(&task)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys() {
        let mut h = HeaderMap::new();
        assert_eq!(idempotency_key(&h).unwrap(), None);
        h.insert(
            IDEMPOTENCY_KEY_HEADER,
            HeaderValue::from_static("order-42:v1"),
        );
        assert_eq!(idempotency_key(&h).unwrap().as_deref(), Some("order-42:v1"));
        for bad in ["has space", ""] {
            h.insert(IDEMPOTENCY_KEY_HEADER, HeaderValue::from_str(bad).unwrap());
            assert_eq!(idempotency_key(&h).unwrap_err().status, 400, "{bad:?}");
        }
        h.insert(
            IDEMPOTENCY_KEY_HEADER,
            HeaderValue::from_str(&"k".repeat(256)).unwrap(),
        );
        assert!(idempotency_key(&h).is_err());
    }

    #[test]
    fn task_ids_must_be_canonical_uuids() {
        assert!(task_id("0190a8e2-6b5c-7cc1-8f00-000000000001").is_ok());
        for bad in [
            "0190a8e26b5c7cc18f00000000000001",
            "{0190a8e2-6b5c-7cc1-8f00-000000000001}",
            "x",
            "",
        ] {
            assert_eq!(task_id(bad).unwrap_err().status, 400, "{bad}");
        }
    }
}
