//! The task routes: create (single and batch), read, list, events, cancel, redrive, and the
//! bulk cancel and redrive by filter.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use tms::ports::{CommandOutcome, ListQuery, TaskFilter};
use tms::telemetry::metrics::{MetricSet, TASKS_CREATED};
use tms::{
    parse_rfc3339, validate_idempotency_key, Caller, CorrelationId, LifecycleEvent, NewTask, Scope,
    Source, SourceKind, Status, Task, TaskId, TaskKind, Tenant, ValidationErrors,
};
use utoipa::IntoParams;

use crate::extract::JsonBody;
use crate::model::{
    BatchRequest, BatchResponse, BatchResult, BulkRequest, BulkResponse, CreateTaskRequest,
    EventList, KindView, SourceKindView, StatusView, TaskPage, TaskView, BATCH_MAX,
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
    Extension(caller): Extension<Caller>,
    Extension(correlation_id): Extension<CorrelationId>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CreateTaskRequest>,
) -> Result<Response, Problem> {
    caller.may_act("create tasks")?;
    let tenant = caller.tenant;
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
    Extension(caller): Extension<Caller>,
    Extension(correlation_id): Extension<CorrelationId>,
    JsonBody(body): JsonBody<BatchRequest>,
) -> Result<Response, Problem> {
    caller.may_act("create tasks")?;
    let tenant = caller.tenant;
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
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = task_id(&id)?;
    let task = state
        .repo
        .get(&caller.scope(None)?, id)
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
    /// Only tasks from this source.
    source: Option<SourceKindView>,
    /// Only tasks created at or after this instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    created_after: Option<String>,
    /// Only tasks created before this instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    created_before: Option<String>,
    /// Only tasks whose idempotency key or correlation id contains this text.
    #[param(max_length = 256)]
    q: Option<String>,
    /// Operators: only this tenant's tasks (every tenant's without it).
    #[param(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    tenant: Option<String>,
    /// Page size.
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_-]{44}$")]
    cursor: Option<String>,
}

/// The longest `q` a filter takes.
pub const TEXT_MAX: usize = 256;

/// A task list's filters, page and tenant, read from a query string.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    pub filter: TaskFilter,
    pub tenant: Option<Tenant>,
    pub limit: u32,
    pub cursor: Option<String>,
}

impl ListRequest {
    /// Parses `status`, `kind`, `source`, `created_after`, `created_before`, `q`, `tenant`,
    /// `limit` and `cursor`; other names are ignored. An empty `q` is no filter; any other empty
    /// value is invalid. `times` reads the two instants.
    ///
    /// # Errors
    /// 400 naming the first invalid value.
    pub fn parse(
        query: &str,
        times: impl Fn(&str) -> Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Self, Problem> {
        let mut request = Self {
            limit: super::DEFAULT_LIMIT,
            ..Self::default()
        };
        let bad = |name: &str, message: &str| Problem::bad_request(format!("{name} {message}"));
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let f = &mut request.filter;
            match name.as_ref() {
                "status" => {
                    f.status = Some(Status::parse(&value).map_err(|e| bad("status", &e.message))?)
                }
                "kind" => {
                    f.kind = Some(TaskKind::parse(&value).map_err(|e| bad("kind", &e.message))?)
                }
                "source" => {
                    f.source =
                        Some(SourceKind::parse(&value).map_err(|e| bad("source", &e.message))?)
                }
                "created_after" | "created_before" => {
                    let t = times(&value).ok_or_else(|| {
                        bad(
                            &name,
                            "must be an RFC 3339 date-time such as 2026-01-31T09:30:00Z",
                        )
                    })?;
                    if name == "created_after" {
                        f.created_after = Some(t);
                    } else {
                        f.created_before = Some(t);
                    }
                }
                "q" => {
                    if value.chars().count() > TEXT_MAX {
                        return Err(bad("q", &format!("must be at most {TEXT_MAX} characters")));
                    }
                    f.text = Some(value.into_owned()).filter(|q| !q.is_empty());
                }
                "tenant" => request.tenant = Some(super::tenant_param(&value)?),
                "limit" => request.limit = super::page_limit(&value)?,
                "cursor" => request.cursor = Some(value.into_owned()),
                _ => {}
            }
        }
        Ok(request)
    }
}

/// One page of a task list, and the cursor of the next one.
///
/// # Errors
/// 400 for a cursor not issued for this scope and filter, or the store's failure.
pub async fn list_page(
    state: &AppState,
    scope: &Scope,
    request: &ListRequest,
) -> Result<(Vec<Task>, Option<String>), Problem> {
    let before = request
        .cursor
        .as_deref()
        .map(|c| {
            state
                .cursor_key
                .decode(c, scope, &request.filter)
                .ok_or_else(|| {
                    Problem::bad_request(
                    "invalid cursor: pass the next_cursor of a previous page with the same filters",
                )
                })
        })
        .transpose()?;
    let mut tasks = state
        .repo
        .list(
            scope,
            &ListQuery {
                filter: request.filter.clone(),
                before,
                limit: request.limit + 1,
            },
        )
        .await?;
    let next_cursor = if tasks.len() > request.limit as usize {
        tasks.truncate(request.limit as usize);
        tasks
            .last()
            .map(|t| state.cursor_key.encode(t.id, scope, &request.filter))
    } else {
        None
    };
    Ok((tasks, next_cursor))
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
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    let request = ListRequest::parse(&query.unwrap_or_default(), parse_rfc3339)?;
    let scope = caller.scope(request.tenant.as_ref())?;
    let (tasks, next_cursor) = list_page(&state, &scope, &request).await?;
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
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = task_id(&id)?;
    let events = state
        .repo
        .events(&caller.scope(None)?, id)
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
    Extension(caller): Extension<Caller>,
    Extension(correlation_id): Extension<CorrelationId>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = task_id(&id)?;
    let task = command(&state, &caller, id, LifecycleEvent::Cancel, &correlation_id).await?;
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
    Extension(caller): Extension<Caller>,
    Extension(correlation_id): Extension<CorrelationId>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = task_id(&id)?;
    let task = command(
        &state,
        &caller,
        id,
        LifecycleEvent::Redrive,
        &correlation_id,
    )
    .await?;
    Ok(json_response(StatusCode::OK, &TaskView::from(&task)))
}

/// Cancels or redrives one task as `caller` (a redriven task is queued again).
///
/// # Errors
/// 403 for a role that only reads, 404, 409 when the task's status refuses it.
pub async fn command(
    state: &AppState,
    caller: &Caller,
    id: TaskId,
    event: LifecycleEvent,
    correlation_id: &CorrelationId,
) -> Result<Task, Problem> {
    caller.may_act(if event == LifecycleEvent::Redrive {
        "redrive tasks"
    } else {
        "cancel tasks"
    })?;
    let scope = caller.scope(None)?;
    let outcome = if event == LifecycleEvent::Redrive {
        state.repo.redrive(&scope, id, correlation_id).await?
    } else {
        state.repo.cancel(&scope, id, correlation_id).await?
    };
    let task = command_response(outcome)?;
    if event == LifecycleEvent::Redrive {
        state.enqueue(std::slice::from_ref(&task));
    } else {
        state.outbox.publish_events_of(vec![*task.id.as_uuid()]);
    }
    tracing::info!(task_id = %task.id, event = event.name(), "task changed by a user");
    Ok(task)
}

/// The most tasks one bulk call changes.
pub const BULK_MAX: u32 = 1000;
const BULK_DEFAULT: u32 = 100;

/// A bulk action: its scope and filter, and how many tasks at most.
#[derive(Debug, Clone)]
pub struct Bulk {
    pub scope: Scope,
    pub filter: TaskFilter,
    pub event: LifecycleEvent,
    pub limit: u32,
}

impl Bulk {
    /// The action applies to the tasks the filter covers that are in a status it applies
    /// from (a filter on another status covers none).
    ///
    /// # Errors
    /// 403 for a role that only reads or a non-operator naming another tenant; 422 for a
    /// limit out of range.
    pub fn new(
        caller: &Caller,
        event: LifecycleEvent,
        tenant: Option<&Tenant>,
        filter: TaskFilter,
        limit: Option<u32>,
    ) -> Result<Self, Problem> {
        caller.may_act(if event == LifecycleEvent::Redrive {
            "redrive tasks"
        } else {
            "cancel tasks"
        })?;
        let scope = caller.scope(tenant)?;
        let limit = limit.unwrap_or(BULK_DEFAULT);
        if !(1..=BULK_MAX).contains(&limit) {
            return Err(Problem::validation(
                &ValidationErrors::single("/limit", format!("must be from 1 to {BULK_MAX}")),
                "",
            ));
        }
        Ok(Self {
            scope,
            filter,
            event,
            limit,
        })
    }

    /// How many tasks the action applies to now (beyond its limit too).
    ///
    /// # Errors
    /// The store's failure.
    pub async fn count(&self, state: &AppState) -> Result<u64, Problem> {
        let mut total = 0;
        for status in self.event.applies_from() {
            if self.filter.status.is_some_and(|s| s != status) {
                continue;
            }
            let filter = TaskFilter {
                status: Some(status),
                ..self.filter.clone()
            };
            total += state.repo.count(&self.scope, &filter).await?;
        }
        Ok(total)
    }

    /// Applies the action; the tasks changed (redriven ones are queued again).
    ///
    /// # Errors
    /// The store's failure.
    pub async fn run(
        &self,
        state: &AppState,
        correlation_id: &CorrelationId,
    ) -> Result<Vec<Task>, Problem> {
        let changed = state
            .repo
            .bulk(
                &self.scope,
                &self.filter,
                self.event,
                self.limit,
                correlation_id,
            )
            .await?;
        if self.event == LifecycleEvent::Redrive {
            state.enqueue(&changed);
        } else {
            state
                .outbox
                .publish_events_of(changed.iter().map(|t| *t.id.as_uuid()).collect());
        }
        tracing::info!(
            event = self.event.name(),
            changed = changed.len(),
            "bulk action"
        );
        Ok(changed)
    }
}

async fn bulk(
    state: AppState,
    caller: Caller,
    correlation_id: CorrelationId,
    event: LifecycleEvent,
    body: BulkRequest,
) -> Result<Response, Problem> {
    let tenant = body
        .tenant
        .as_deref()
        .map(super::tenant_param)
        .transpose()?;
    if body
        .q
        .as_ref()
        .is_some_and(|q| q.chars().count() > TEXT_MAX)
    {
        return Err(Problem::validation(
            &ValidationErrors::single("/q", format!("must be at most {TEXT_MAX} characters")),
            "",
        ));
    }
    let filter = TaskFilter {
        status: body.status.map(Into::into),
        kind: body.kind.map(Into::into),
        source: body.source.map(Into::into),
        created_after: body.created_after,
        created_before: body.created_before,
        text: body.q.filter(|q| !q.is_empty()),
    };
    let bulk = Bulk::new(&caller, event, tenant.as_ref(), filter, body.limit)?;
    let response = if body.dry_run {
        BulkResponse {
            matched: Some(bulk.count(&state).await?),
            changed: 0,
        }
    } else {
        BulkResponse {
            matched: None,
            changed: bulk.run(&state, &correlation_id).await?.len() as u64,
        }
    };
    Ok(json_response(StatusCode::OK, &response))
}

/// Cancels the pending and failed tasks a filter covers, at most `limit` (the oldest first).
#[utoipa::path(
    post, path = "/v1/tasks/cancel", tag = "tasks",
    request_body(content = BulkRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "How many tasks were cancelled (or, with dry_run, would be).", body = BulkResponse),
        (status = 403, description = "The role only reads, or names another tenant.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn bulk_cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(correlation_id): Extension<CorrelationId>,
    JsonBody(body): JsonBody<BulkRequest>,
) -> Result<Response, Problem> {
    bulk(state, caller, correlation_id, LifecycleEvent::Cancel, body).await
}

/// Redrives the dead tasks a filter covers, at most `limit` (the oldest first).
#[utoipa::path(
    post, path = "/v1/tasks/redrive", tag = "tasks",
    request_body(content = BulkRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "How many tasks were redriven (or, with dry_run, would be).", body = BulkResponse),
        (status = 403, description = "The role only reads, or names another tenant.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn bulk_redrive(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(correlation_id): Extension<CorrelationId>,
    JsonBody(body): JsonBody<BulkRequest>,
) -> Result<Response, Problem> {
    bulk(state, caller, correlation_id, LifecycleEvent::Redrive, body).await
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
