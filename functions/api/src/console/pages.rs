//! The console's pages and actions: each reads and acts through the same ports, scopes and
//! role checks as the API's routes.

use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use tms::ports::TaskFilter;
use tms::{CorrelationId, ImportId, LifecycleEvent, Role, Scope, SourceKind, Status, TaskKind};

use super::session::{self, Session};
use super::view::{
    self, choices, encode, render, Bar, BulkOffer, Card, Chrome, ConfirmPage, CountCell,
    DeferredRow, ErrorPage, EventRow, Field, FormValues, ImportRowView, ImportsPage, KindRow,
    LimitRow, LimitsPage, LoginPage, MinuteRow, OverviewPage, ScheduleRow, SchedulesPage,
    SubscriptionRow, SubscriptionsPage, TaskDetail, TaskPage, TaskRow, TasksPage, TriggerRow,
    TriggersPage,
};
use crate::problem::Problem;
use crate::routes::tasks::{list_page, Bulk, ListRequest, BULK_MAX};
use crate::AppState;

/// How long a link to an import's report works.
const REPORT_LINK_TTL: Duration = Duration::from_secs(300);
/// Rows per page of the console's lists.
const PAGE_ROWS: u32 = 50;

/// A problem as a console page (with the frame when there is a session).
fn error_page(problem: &Problem, session: Option<&Session>, back: &str) -> Response {
    let chrome = match session {
        Some(s) => Chrome::new("Error", "", s),
        None => Chrome::signed_out("Error"),
    };
    let page = ErrorPage {
        chrome,
        heading: problem.title.clone(),
        message: problem.detail.clone().unwrap_or_default(),
        back: back.to_owned(),
    };
    render(&page, problem.status_code())
}

/// A handler's result: a page, or its problem shown as a page.
fn page(result: Result<Response, Problem>, session: &Session, back: &str) -> Response {
    result.unwrap_or_else(|problem| error_page(&problem, Some(session), back))
}

// --- sign-in -------------------------------------------------------------------------------

fn login_form(
    headers: &HeaderMap,
    state: &AppState,
    next: &str,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let login_csrf = session::random_token(32);
    let page = LoginPage {
        chrome: Chrome::signed_out("Sign in"),
        next: next.to_owned(),
        next_encoded: encode(next),
        login_csrf: login_csrf.clone(),
        error,
        oidc: state.oidc.is_some(),
    };
    let mut response = render(&page, status);
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(
            headers,
            session::LOGIN_COOKIE,
            &login_csrf,
            Duration::from_secs(3600),
        ),
    );
    response
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<NextQuery>,
) -> Response {
    let next = session::return_path(q.next.as_deref());
    login_form(&headers, &state, &next, None, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    csrf: String,
    next: Option<String>,
}

/// Exchanges an API token for a session.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = session::return_path(form.next.as_deref());
    let expected = session::cookie_value(&headers, session::LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !session::same_secret(&expected, &form.csrf) {
        let message = "The sign-in form expired; please sign in again.".to_owned();
        return login_form(
            &headers,
            &state,
            &next,
            Some(message),
            StatusCode::FORBIDDEN,
        );
    }
    let token = form.token.trim();
    let hash: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()).into();
    match state.tokens.caller_for_hash(&hash).await {
        Ok(Some(caller)) => {
            let subject = format!("token {}", &hex::encode(hash)[..8]);
            match session::start(&state, &headers, caller, subject, Some(hash)).await {
                Ok(cookie) => {
                    let mut response = Redirect::to(&next).into_response();
                    response.headers_mut().append(header::SET_COOKIE, cookie);
                    response
                }
                Err(problem) => error_page(&problem, None, "/console/login"),
            }
        }
        Ok(None) => {
            tracing::info!("console sign-in with an unknown token");
            let message = "That token is not known.".to_owned();
            login_form(
                &headers,
                &state,
                &next,
                Some(message),
                StatusCode::UNAUTHORIZED,
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "token map unavailable");
            let problem = Problem::unavailable("sign-in is unavailable; retry later");
            error_page(&problem, None, "/console/login")
        }
    }
}

/// Where the provider sends the browser back: this console's callback, on the host the browser
/// asked for (`http` only on loopback).
fn callback_uri(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let scheme = if session::on_loopback(headers) {
        "http"
    } else {
        "https"
    };
    format!("{scheme}://{host}/console/callback")
}

/// The cookie that carries the page to return to across an OIDC sign-in.
const NEXT_COOKIE: &str = "tms_next";

fn oidc_unavailable(e: &super::oidc::OidcError) -> Response {
    tracing::warn!(error = %e, "OIDC sign-in failed");
    let problem = if e.is_retryable() {
        Problem::unavailable("the sign-in provider is unavailable; retry later")
    } else {
        Problem::forbidden("the sign-in provider's answer could not be verified; sign in again")
    };
    error_page(&problem, None, "/console/login")
}

/// Sends the browser to the deployment's OpenID Connect provider.
pub async fn oidc_start(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<NextQuery>,
) -> Response {
    let Some(oidc) = state.oidc.as_ref() else {
        return error_page(
            &Problem::not_found("this deployment has no OpenID Connect provider"),
            None,
            "/console/login",
        );
    };
    let (url, login) = match oidc.begin(&callback_uri(&headers)).await {
        Ok(begun) => begun,
        Err(e) => return oidc_unavailable(&e),
    };
    if let Err(problem) = state.console.begin_login(&login).await {
        return error_page(&Problem::from(problem), None, "/console/login");
    }
    let next = session::return_path(q.next.as_deref());
    let mut response = Redirect::to(&url).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(
            &headers,
            NEXT_COOKIE,
            &encode(&next),
            Duration::from_secs(600),
        ),
    );
    response
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The provider's redirect back: the code is exchanged, the ID token verified, its claims name
/// the tenant (`custom:tenant`, else `sub`) and the role (`custom:role`, else `member`).
pub async fn oidc_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<CallbackQuery>,
) -> Response {
    let again = |message: &str, status| {
        login_form(
            &headers,
            &state,
            "/console",
            Some(message.to_owned()),
            status,
        )
    };
    let Some(oidc) = state.oidc.as_ref() else {
        return again(
            "This deployment has no OpenID Connect provider.",
            StatusCode::NOT_FOUND,
        );
    };
    if let Some(error) = q.error {
        tracing::info!(error, "the OIDC provider refused the sign-in");
        return again(
            "The sign-in provider did not sign you in.",
            StatusCode::UNAUTHORIZED,
        );
    }
    let (Some(code), Some(login_state)) = (q.code, q.state) else {
        return again(
            "The sign-in provider's answer is incomplete.",
            StatusCode::BAD_REQUEST,
        );
    };
    let login = match state.console.take_login(&login_state).await {
        Ok(Some(login)) => login,
        Ok(None) => {
            return again(
                "That sign-in expired or was already used; please sign in again.",
                StatusCode::BAD_REQUEST,
            )
        }
        Err(e) => return error_page(&Problem::from(e), None, "/console/login"),
    };
    let claims = match oidc.finish(&code, &login, &callback_uri(&headers)).await {
        Ok(claims) => claims,
        Err(e) => return oidc_unavailable(&e),
    };
    let caller = match crate::auth::caller_from_claims(|name| claims.get(name).cloned()) {
        Ok(Some(caller)) => caller,
        Ok(None) | Err(_) => {
            return again(
                "Your account names no valid tenant or role for this console.",
                StatusCode::FORBIDDEN,
            )
        }
    };
    let who = claims
        .get("email")
        .or_else(|| claims.get("sub"))
        .cloned()
        .unwrap_or_default();
    let next = session::cookie_value(&headers, NEXT_COOKIE).and_then(|n| {
        url::form_urlencoded::parse(format!("n={n}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    });
    match session::start(&state, &headers, caller, format!("oidc {who}"), None).await {
        Ok(cookie) => {
            let mut response = Redirect::to(&session::return_path(next.as_deref())).into_response();
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response.headers_mut().append(
                header::SET_COOKIE,
                session::set_cookie(&headers, NEXT_COOKIE, "", Duration::ZERO),
            );
            response
        }
        Err(problem) => error_page(&problem, None, "/console/login"),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(problem) = session.check_csrf(&form.csrf) {
        return error_page(&problem, Some(&session), "/console");
    }
    match session::end(&state, &headers).await {
        Ok(cookie) => {
            let mut response = Redirect::to("/console/login").into_response();
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response
        }
        Err(problem) => error_page(&problem, Some(&session), "/console"),
    }
}

// --- overview ------------------------------------------------------------------------------

/// The tenant an operator's page is narrowed to (`?tenant=`); others always see their own.
fn page_scope(session: &Session, raw_tenant: Option<&str>) -> Result<(Scope, String), Problem> {
    let tenant = raw_tenant
        .filter(|t| !t.is_empty())
        .map(crate::routes::tenant_param)
        .transpose()?;
    let scope = session.caller.scope(tenant.as_ref())?;
    let label = match &scope {
        Scope::Tenant(t) => format!("tenant {t}"),
        Scope::All => "every tenant".to_owned(),
    };
    Ok((scope, label))
}

fn query_value(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub async fn overview(
    State(state): State<AppState>,
    session: Session,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let result = async {
        let tenant = query_value(&query, "tenant").unwrap_or_default();
        let (scope, scope_label) = page_scope(&session, Some(&tenant))?;
        let stats = crate::routes::stats::read(&state, &scope).await?;
        let tenant_param = if tenant.is_empty() {
            String::new()
        } else {
            format!("&tenant={}", encode(&tenant))
        };
        let count_of = |s: Status| stats.by_status[s.as_str()].as_u64().unwrap_or(0);
        let mut cards: Vec<Card> = Status::ALL
            .iter()
            .map(|&s| Card {
                label: s.as_str(),
                value: count_of(s).to_string(),
                href: format!("/console/tasks?status={s}{tenant_param}"),
                alert: s == Status::Dead && count_of(s) > 0,
            })
            .collect();
        let all_tasks = format!("/console/tasks?status=pending{tenant_param}");
        cards.push(Card {
            label: "oldest pending task waited",
            value: stats
                .oldest_pending_seconds
                .map_or_else(|| "—".into(), |s| view::duration_ms(s * 1000.0)),
            href: all_tasks,
            alert: stats.oldest_pending_seconds.is_some_and(|s| s > 300.0),
        });
        let latency = |ms: Option<f64>| ms.map_or_else(|| "—".into(), view::duration_ms);
        cards.push(Card {
            label: "p50 created → succeeded (last hour)",
            value: latency(stats.latency_p50_ms),
            href: format!("/console/tasks?status=succeeded{tenant_param}"),
            alert: false,
        });
        cards.push(Card {
            label: "p95 created → succeeded (last hour)",
            value: latency(stats.latency_p95_ms),
            href: format!("/console/tasks?status=succeeded{tenant_param}"),
            alert: false,
        });
        cards.push(Card {
            label: "work messages waiting in the queue",
            value: stats
                .queue_waiting
                .map_or_else(|| "—".into(), |n| n.to_string()),
            href: format!("/console/tasks?status=pending{tenant_param}"),
            alert: false,
        });
        let deferred_total = stats.deferred.total();
        cards.push(Card {
            label: "tasks deferred by a limit",
            value: deferred_total.to_string(),
            href: format!("/console/tasks?status=pending{tenant_param}"),
            alert: false,
        });
        let deferred = stats
            .deferred
            .counts()
            .into_iter()
            .filter(|(_, count)| *count > 0)
            .map(|(reason, count)| DeferredRow {
                reason: reason.as_str(),
                description: reason.describe(),
                count,
            })
            .collect();
        let (bars, minutes, chart_label) = chart(&stats.per_minute);
        let kinds = view::kinds()
            .into_iter()
            .map(|kind| KindRow {
                kind: kind.to_owned(),
                cells: Status::ALL
                    .iter()
                    .map(|s| CountCell {
                        count: stats
                            .counts
                            .iter()
                            .filter(|c| c.kind == kind && tms::Status::from(c.status) == *s)
                            .map(|c| c.count)
                            .sum(),
                        href: format!("/console/tasks?status={s}&kind={kind}{tenant_param}"),
                    })
                    .collect(),
            })
            .filter(|row| row.cells.iter().any(|c| c.count > 0))
            .collect();
        let page = OverviewPage {
            chrome: Chrome::new("Overview", "/console", &session),
            scope_label,
            operator: session.caller.role == Role::Operator,
            tenant,
            cards,
            chart_label,
            bars,
            minutes,
            statuses: view::statuses(),
            kinds,
            deferred,
        };
        Ok(render(&page, StatusCode::OK))
    }
    .await;
    page(result, &session, "/console")
}

/// The last hour's bars (60 minutes, 10 px apart, scaled to the busiest minute), its rows, and
/// what the chart says in words.
fn chart(minutes: &[crate::model::MinuteView]) -> (Vec<Bar>, Vec<MinuteRow>, String) {
    let now = Utc::now();
    let start = now - chrono::Duration::minutes(59);
    let busiest = minutes
        .iter()
        .map(|m| m.succeeded + m.failed)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let height = 110.0;
    let bars = minutes
        .iter()
        .filter_map(|m| {
            let offset = (m.minute - start).num_minutes();
            (0..60).contains(&offset).then(|| {
                let ok_h = m.succeeded as f64 / busiest * height;
                let failed_h = m.failed as f64 / busiest * height;
                Bar {
                    x: offset as usize * 10,
                    ok_y: 115.0 - ok_h,
                    ok_h,
                    failed_y: 115.0 - ok_h - failed_h,
                    failed_h,
                    title: format!(
                        "{}: {} succeeded, {} failed",
                        m.minute.format("%H:%M"),
                        m.succeeded,
                        m.failed
                    ),
                }
            })
        })
        .collect();
    let rows = minutes
        .iter()
        .rev()
        .map(|m| MinuteRow {
            minute: m.minute.format("%H:%M").to_string(),
            succeeded: m.succeeded,
            failed: m.failed,
        })
        .collect();
    let ok: u64 = minutes.iter().map(|m| m.succeeded).sum();
    let failed: u64 = minutes.iter().map(|m| m.failed).sum();
    let label = format!(
        "In the last hour {ok} tasks succeeded and {failed} attempts failed, at most {} in one minute",
        busiest as u64
    );
    (bars, rows, label)
}

// --- task lists ----------------------------------------------------------------------------

/// A `datetime-local` value (`2026-12-06T21:05` or with seconds), read as UTC, or RFC 3339.
fn form_time(raw: &str) -> Option<DateTime<Utc>> {
    tms::parse_rfc3339(raw).or_else(|| {
        ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(raw, f).ok())
            .map(|t| t.and_utc())
    })
}

/// The list request a console query describes (the form sends empty fields: they are absent).
fn list_request(query: &str, status: Option<Status>) -> Result<(ListRequest, FormValues), Problem> {
    let kept: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut request = ListRequest::parse(
        &url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&kept)
            .finish(),
        form_time,
    )?;
    if status.is_some() {
        request.filter.status = status;
    }
    if !kept.iter().any(|(k, _)| k == "limit") {
        request.limit = PAGE_ROWS;
    }
    let value = |name: &str| {
        kept.iter()
            .find(|(k, _)| k == name)
            .map_or_else(String::new, |(_, v)| v.clone())
    };
    let form = FormValues {
        created_after: value("created_after"),
        created_before: value("created_before"),
        q: value("q"),
        tenant: value("tenant"),
    };
    Ok((request, form))
}

/// The filter as the form's fields (for links and hidden inputs), the cursor left out.
fn filter_fields(filter: &TaskFilter, form: &FormValues) -> Vec<Field> {
    let mut fields = Vec::new();
    let mut add = |name: &str, value: String| {
        if !value.is_empty() {
            fields.push(Field {
                name: name.to_owned(),
                value,
            });
        }
    };
    add(
        "status",
        filter.status.map_or(String::new(), |s| s.to_string()),
    );
    add("kind", filter.kind.map_or(String::new(), |k| k.to_string()));
    add(
        "source",
        filter
            .source
            .map_or(String::new(), |s| s.as_str().to_owned()),
    );
    add("created_after", form.created_after.clone());
    add("created_before", form.created_before.clone());
    add("q", form.q.clone());
    add("tenant", form.tenant.clone());
    fields
}

fn query_string(fields: &[Field]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter().map(|f| (&f.name, &f.value)))
        .finish()
}

/// The tasks page, or the dead tasks page (`dead`: the status is fixed and redrive offered).
async fn task_list(
    state: &AppState,
    session: &Session,
    query: &str,
    dead: bool,
) -> Result<Response, Problem> {
    let (request, form) = list_request(query, dead.then_some(Status::Dead))?;
    let scope = session.caller.scope(request.tenant.as_ref())?;
    let (tasks, next) = list_page(state, &scope, &request).await?;
    let fields = filter_fields(&request.filter, &form);
    let action = if dead {
        "/console/dead"
    } else {
        "/console/tasks"
    };
    let next_url = next.map(|cursor| {
        let mut q = fields
            .iter()
            .filter(|f| !(dead && f.name == "status"))
            .collect::<Vec<_>>();
        let cursor = Field {
            name: "cursor".into(),
            value: cursor,
        };
        q.push(&cursor);
        format!(
            "{action}?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(q.iter().map(|f| (&f.name, &f.value)))
                .finish()
        )
    });
    let applies = |event: LifecycleEvent| {
        request
            .filter
            .status
            .is_none_or(|s| event.applies_from().contains(&s))
    };
    let bulk = if !session.caller.role.can_act() {
        None
    } else if dead {
        Some(("redrive", "Redrive every dead task that matches…"))
    } else if applies(LifecycleEvent::Cancel) {
        Some((
            "cancel",
            "Cancel every pending or failed task that matches…",
        ))
    } else {
        None
    }
    .map(|(action, label)| BulkOffer {
        csrf: session.csrf.clone(),
        action,
        label: label.to_owned(),
        fields: fields
            .iter()
            .map(|f| Field {
                name: f.name.clone(),
                value: f.value.clone(),
            })
            .collect(),
    });
    let heading = if dead { "Dead tasks" } else { "Tasks" };
    let mut chrome = Chrome::new(heading, action, session);
    chrome.notice = notice_for(query);
    let page = TasksPage {
        chrome,
        heading: heading.to_owned(),
        caption: if dead {
            "Tasks that failed for good: redrive them once their cause is fixed".to_owned()
        } else {
            "Newest first".to_owned()
        },
        action,
        show_status: !dead,
        operator: session.caller.role == Role::Operator,
        statuses: choices(&Status::ALL, Status::as_str, request.filter.status),
        kinds: choices(&TaskKind::ALL, TaskKind::as_str, request.filter.kind),
        sources: choices(&SourceKind::ALL, SourceKind::as_str, request.filter.source),
        form,
        bulk,
        rows: tasks.iter().map(TaskRow::from).collect(),
        next_url,
    };
    Ok(render(&page, StatusCode::OK))
}

pub async fn tasks(
    State(state): State<AppState>,
    session: Session,
    RawQuery(q): RawQuery,
) -> Response {
    let result = task_list(&state, &session, &q.unwrap_or_default(), false).await;
    page(result, &session, "/console/tasks")
}

pub async fn dead(
    State(state): State<AppState>,
    session: Session,
    RawQuery(q): RawQuery,
) -> Response {
    let result = task_list(&state, &session, &q.unwrap_or_default(), true).await;
    page(result, &session, "/console/dead")
}

// --- one task ------------------------------------------------------------------------------

fn notice_for(query: &str) -> Option<String> {
    let done = query_value(query, "done")?;
    let n = query_value(query, "n").and_then(|n| n.parse::<u64>().ok());
    Some(match (done.as_str(), n) {
        ("cancel", None) => "The task was cancelled.".to_owned(),
        ("redrive", None) => "The task was redriven: it is pending and queued again.".to_owned(),
        ("cancel", Some(n)) => format!("{n} tasks were cancelled."),
        ("redrive", Some(n)) => format!("{n} tasks were redriven and queued again."),
        _ => return None,
    })
}

pub async fn task(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let result = async {
        let id = tms::TaskId::from_uuid(crate::routes::path_uuid(&id, "task")?);
        let scope = session.caller.scope(None)?;
        let (task, events) =
            tokio::try_join!(state.repo.get(&scope, id), state.repo.events(&scope, id))?;
        let task = task.ok_or_else(|| Problem::not_found("no such task"))?;
        let can_act = session.caller.role.can_act();
        let mut chrome = Chrome::new(format!("Task {id}"), "/console/tasks", &session);
        chrome.notice = notice_for(&q.unwrap_or_default());
        let page = TaskPage {
            chrome,
            can_act,
            can_cancel: task.lifecycle().apply(LifecycleEvent::Cancel).is_ok(),
            can_redrive: task.lifecycle().apply(LifecycleEvent::Redrive).is_ok(),
            task: TaskDetail::from(&task),
            events: events
                .unwrap_or_default()
                .iter()
                .map(EventRow::from)
                .collect(),
            csrf: session.csrf.clone(),
        };
        Ok(render(&page, StatusCode::OK))
    }
    .await;
    page(result, &session, "/console/tasks")
}

async fn task_command(
    state: &AppState,
    session: &Session,
    correlation_id: &CorrelationId,
    id: &str,
    csrf: &str,
    event: LifecycleEvent,
) -> Result<Response, Problem> {
    session.check_csrf(csrf)?;
    let id = tms::TaskId::from_uuid(crate::routes::path_uuid(id, "task")?);
    crate::routes::tasks::command(state, &session.caller, id, event, correlation_id).await?;
    let done = if event == LifecycleEvent::Redrive {
        "redrive"
    } else {
        "cancel"
    };
    Ok(Redirect::to(&format!("/console/tasks/{id}?done={done}")).into_response())
}

pub async fn cancel(
    State(state): State<AppState>,
    session: Session,
    Extension(correlation_id): Extension<CorrelationId>,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let back = format!("/console/tasks/{id}");
    let result = task_command(
        &state,
        &session,
        &correlation_id,
        &id,
        &form.csrf,
        LifecycleEvent::Cancel,
    )
    .await;
    page(result, &session, &back)
}

pub async fn redrive(
    State(state): State<AppState>,
    session: Session,
    Extension(correlation_id): Extension<CorrelationId>,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let back = format!("/console/tasks/{id}");
    let result = task_command(
        &state,
        &session,
        &correlation_id,
        &id,
        &form.csrf,
        LifecycleEvent::Redrive,
    )
    .await;
    page(result, &session, &back)
}

// --- bulk actions --------------------------------------------------------------------------

/// A bulk form: the action, the list's filter fields and the anti-forgery token.
fn bulk_form(body: &str) -> (String, String, String) {
    let value = |name: &str| query_value(body, name).unwrap_or_default();
    let filter: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .filter(|(k, v)| {
            !v.is_empty()
                && matches!(
                    k.as_ref(),
                    "status"
                        | "kind"
                        | "source"
                        | "created_after"
                        | "created_before"
                        | "q"
                        | "tenant"
                )
        })
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&filter)
        .finish();
    (value("action"), value("csrf"), query)
}

/// The action of a bulk form and the list it came from.
fn bulk_of(
    session: &Session,
    action: &str,
    query: &str,
) -> Result<(Bulk, FormValues, &'static str), Problem> {
    let (event, back) = match action {
        "redrive" => (LifecycleEvent::Redrive, "/console/dead"),
        "cancel" => (LifecycleEvent::Cancel, "/console/tasks"),
        _ => return Err(Problem::bad_request("unknown bulk action")),
    };
    let (request, form) = list_request(query, None)?;
    let bulk = Bulk::new(
        &session.caller,
        event,
        request.tenant.as_ref(),
        request.filter,
        Some(BULK_MAX),
    )?;
    Ok((bulk, form, back))
}

/// Counts what a bulk action would change and asks to confirm it.
pub async fn bulk_confirm(
    State(state): State<AppState>,
    session: Session,
    body: String,
) -> Response {
    let (action, csrf, query) = bulk_form(&body);
    let result = async {
        session.check_csrf(&csrf)?;
        let (bulk, form, back) = bulk_of(&session, &action, &query)?;
        let count = bulk.count(&state).await?;
        let fields = filter_fields(&bulk.filter, &form);
        let description = if fields.is_empty() {
            vec![Field {
                name: "filter".into(),
                value: "none: every task the action applies to".into(),
            }]
        } else {
            fields
                .iter()
                .map(|f| Field {
                    name: f.name.replace('_', " "),
                    value: f.value.clone(),
                })
                .collect()
        };
        let (heading, what, verb, button) = if bulk.event == LifecycleEvent::Redrive {
            (
                "Redrive dead tasks",
                "dead tasks",
                "match",
                format!("Redrive {} tasks", count.min(u64::from(bulk.limit))),
            )
        } else {
            (
                "Cancel tasks",
                "pending or failed tasks",
                "match",
                format!("Cancel {} tasks", count.min(u64::from(bulk.limit))),
            )
        };
        let back_url = if fields.is_empty() {
            back.to_owned()
        } else {
            format!("{back}?{}", query_string(&fields))
        };
        let page = ConfirmPage {
            chrome: Chrome::new(heading, back, &session),
            heading: heading.to_owned(),
            count,
            what,
            verb,
            over_limit: count > u64::from(bulk.limit),
            limit: bulk.limit,
            description,
            csrf: session.csrf.clone(),
            action: if bulk.event == LifecycleEvent::Redrive {
                "redrive"
            } else {
                "cancel"
            },
            fields,
            button,
            back: back_url,
        };
        Ok(render(&page, StatusCode::OK))
    }
    .await;
    page(result, &session, "/console/tasks")
}

/// Runs a confirmed bulk action and goes back to the list.
pub async fn bulk_run(
    State(state): State<AppState>,
    session: Session,
    Extension(correlation_id): Extension<CorrelationId>,
    body: String,
) -> Response {
    let (action, csrf, query) = bulk_form(&body);
    let result = async {
        session.check_csrf(&csrf)?;
        let (bulk, form, back) = bulk_of(&session, &action, &query)?;
        let changed = bulk.run(&state, &correlation_id).await?;
        let mut fields = filter_fields(&bulk.filter, &form);
        fields.retain(|f| !(back == "/console/dead" && f.name == "status"));
        let mut target = format!("{back}?done={action}&n={}", changed.len());
        if !fields.is_empty() {
            target.push('&');
            target.push_str(&query_string(&fields));
        }
        Ok(Redirect::to(&target).into_response())
    }
    .await;
    page(result, &session, "/console/tasks")
}

// --- imports -------------------------------------------------------------------------------

pub async fn imports(
    State(state): State<AppState>,
    session: Session,
    RawQuery(q): RawQuery,
) -> Response {
    let query = q.unwrap_or_default();
    let result = async {
        let (scope, _) = page_scope(&session, query_value(&query, "tenant").as_deref())?;
        let before =
            page_cursor(&state, "console-imports", &scope, &query)?.map(ImportId::from_uuid);
        let mut rows = state
            .imports
            .list_imports(&scope, before, PAGE_ROWS + 1)
            .await?;
        let next_url = next_page(
            &state,
            "console-imports",
            "/console/imports",
            &scope,
            &mut rows,
            |i| *i.id.as_uuid(),
        );
        let page = ImportsPage {
            chrome: Chrome::new("Imports", "/console/imports", &session),
            operator: session.caller.role == Role::Operator,
            rows: rows.iter().map(ImportRowView::from).collect(),
            next_url,
        };
        Ok(render(&page, StatusCode::OK))
    }
    .await;
    page(result, &session, "/console/imports")
}

/// Sends the browser to a short-lived link to an import's report or errors file.
pub async fn import_file(
    State(state): State<AppState>,
    session: Session,
    Path((id, file)): Path<(String, String)>,
) -> Response {
    let result = async {
        let id = ImportId::from_uuid(crate::routes::path_uuid(&id, "import")?);
        let import = state
            .imports
            .get_import(&session.caller.scope(None)?, id)
            .await?
            .ok_or_else(|| Problem::not_found("no such import"))?;
        let key = match file.as_str() {
            "report" => import.report_key,
            "errors" => import.errors_key,
            _ => None,
        }
        .ok_or_else(|| Problem::not_found("this import has no such file"))?;
        let url = state
            .objects
            .presign_get(&key, REPORT_LINK_TTL)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot presign a report link");
                Problem::unavailable("cannot sign a link to the report right now; retry later")
            })?;
        Ok(Redirect::to(&url).into_response())
    }
    .await;
    page(result, &session, "/console/imports")
}

/// A keyset page of a console list: the rows of `scope` before the `cursor` in `query`, at
/// most [`PAGE_ROWS`], and the link to the next page (in the same scope).
fn next_page<T>(
    state: &AppState,
    list: &str,
    path: &str,
    scope: &Scope,
    rows: &mut Vec<T>,
    id: impl Fn(&T) -> uuid::Uuid,
) -> Option<String> {
    (rows.len() > PAGE_ROWS as usize).then(|| {
        rows.truncate(PAGE_ROWS as usize);
        let last = id(rows.last().expect("a full page"));
        let cursor = state.cursor_key.encode_scoped(list, &last, scope, &[]);
        // The cursor holds for its scope only: the next page keeps the tenant (a tenant name
        // needs no escaping in a query).
        match scope {
            Scope::Tenant(tenant) => format!("{path}?tenant={tenant}&cursor={cursor}"),
            Scope::All => format!("{path}?cursor={cursor}"),
        }
    })
}

/// The id a console list's `cursor` continues after.
fn page_cursor(
    state: &AppState,
    list: &str,
    scope: &Scope,
    query: &str,
) -> Result<Option<uuid::Uuid>, Problem> {
    query_value(query, "cursor")
        .map(|c| {
            state
                .cursor_key
                .decode_scoped(list, &c, scope, &[])
                .ok_or_else(|| Problem::bad_request("invalid cursor"))
        })
        .transpose()
}

pub async fn triggers(
    State(state): State<AppState>,
    session: Session,
    RawQuery(q): RawQuery,
) -> Response {
    let query = q.unwrap_or_default();
    let result = async {
        let (scope, _) = page_scope(&session, query_value(&query, "tenant").as_deref())?;
        let before =
            page_cursor(&state, "console-triggers", &scope, &query)?.map(tms::TriggerId::from_uuid);
        let mut rows = state
            .triggers
            .list_triggers(&scope, before, PAGE_ROWS + 1)
            .await?;
        let next_url = next_page(
            &state,
            "console-triggers",
            "/console/triggers",
            &scope,
            &mut rows,
            |t| *t.id.as_uuid(),
        );
        let mut chrome = Chrome::new("Event triggers", "/console/triggers", &session);
        if query_value(&query, "done").as_deref() == Some("removed") {
            chrome.notice = Some("The trigger was removed; the tasks it created stay.".into());
        }
        let page = TriggersPage {
            chrome,
            operator: session.caller.role == Role::Operator,
            can_act: session.caller.role.can_act(),
            csrf: session.csrf.clone(),
            rows: rows.iter().map(TriggerRow::from).collect(),
            next_url,
        };
        Ok(render(&page, StatusCode::OK))
    }
    .await;
    page(result, &session, "/console/triggers")
}

pub async fn delete_trigger(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let result = async {
        session.check_csrf(&form.csrf)?;
        session.caller.may_act("remove triggers")?;
        let id = tms::TriggerId::from_uuid(crate::routes::path_uuid(&id, "trigger")?);
        if !state
            .triggers
            .delete_trigger(&session.caller.scope(None)?, id)
            .await?
        {
            return Err(Problem::not_found("no such trigger"));
        }
        Ok(Redirect::to("/console/triggers?done=removed").into_response())
    }
    .await;
    page(result, &session, "/console/triggers")
}

pub async fn schedules(
    State(state): State<AppState>,
    session: Session,
    RawQuery(q): RawQuery,
) -> Response {
    let query = q.unwrap_or_default();
    let result = async {
        let (scope, _) = page_scope(&session, query_value(&query, "tenant").as_deref())?;
        let before = page_cursor(&state, "console-schedules", &scope, &query)?
            .map(tms::ScheduleId::from_uuid);
        let mut rows = state
            .schedules
            .list_schedules(&scope, before, PAGE_ROWS + 1)
            .await?;
        let next_url = next_page(
            &state,
            "console-schedules",
            "/console/schedules",
            &scope,
            &mut rows,
            |s| *s.id.as_uuid(),
        );
        let mut chrome = Chrome::new("Schedules", "/console/schedules", &session);
        chrome.notice = match query_value(&query, "done").as_deref() {
            Some("paused") => {
                Some("The schedule was paused; it creates no tasks until resumed.".into())
            }
            Some("resumed") => Some(
                "The schedule was resumed from its next fire; missed fires are not created.".into(),
            ),
            Some("removed") => Some("The schedule was removed; the tasks it created stay.".into()),
            _ => None,
        };
        let page = SchedulesPage {
            chrome,
            operator: session.caller.role == Role::Operator,
            can_act: session.caller.role.can_act(),
            csrf: session.csrf.clone(),
            rows: rows.iter().map(ScheduleRow::from).collect(),
            next_url,
        };
        Ok(render(&page, StatusCode::OK))
    }
    .await;
    page(result, &session, "/console/schedules")
}

/// Pauses, resumes or removes a schedule.
pub async fn schedule_action(
    State(state): State<AppState>,
    session: Session,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let result = async {
        session.check_csrf(&form.csrf)?;
        session.caller.may_act("manage schedules")?;
        let id = tms::ScheduleId::from_uuid(crate::routes::path_uuid(&id, "schedule")?);
        let scope = session.caller.scope(None)?;
        let paused = match action.as_str() {
            "pause" => true,
            "resume" => false,
            "delete" => {
                if !state.schedules.delete_schedule(&scope, id).await? {
                    return Err(Problem::not_found("no such schedule"));
                }
                return Ok(Redirect::to("/console/schedules?done=removed").into_response());
            }
            _ => return Err(Problem::not_found("no such page")),
        };
        let patch = tms::SchedulePatch {
            paused: Some(paused),
            ..tms::SchedulePatch::default()
        };
        crate::routes::schedules::change(&state, &scope, id, patch, None).await?;
        let done = if paused { "paused" } else { "resumed" };
        Ok(Redirect::to(&format!("/console/schedules?done={done}")).into_response())
    }
    .await;
    page(result, &session, "/console/schedules")
}

pub async fn subscriptions(
    State(state): State<AppState>,
    session: Session,
    RawQuery(q): RawQuery,
) -> Response {
    let query = q.unwrap_or_default();
    let result = async {
        let (scope, _) = page_scope(&session, query_value(&query, "tenant").as_deref())?;
        let before = page_cursor(&state, "console-subscriptions", &scope, &query)?
            .map(tms::SubscriptionId::from_uuid);
        let mut rows = state
            .subscriptions
            .list_subscriptions(&scope, before, PAGE_ROWS + 1)
            .await?;
        let next_url = next_page(
            &state,
            "console-subscriptions",
            "/console/subscriptions",
            &scope,
            &mut rows,
            |s| *s.id.as_uuid(),
        );
        let mut chrome = Chrome::new("Webhook subscriptions", "/console/subscriptions", &session);
        if query_value(&query, "done").as_deref() == Some("removed") {
            chrome.notice = Some(
                "The subscription was removed; its deliveries not yet sent will not be sent."
                    .into(),
            );
        }
        let page = SubscriptionsPage {
            chrome,
            operator: session.caller.role == Role::Operator,
            can_act: session.caller.role.can_act(),
            csrf: session.csrf.clone(),
            rows: rows.iter().map(SubscriptionRow::from).collect(),
            next_url,
        };
        Ok(render(&page, StatusCode::OK))
    }
    .await;
    page(result, &session, "/console/subscriptions")
}

/// Removes a subscription, as `DELETE /v1/subscriptions/{id}` does.
pub async fn delete_subscription(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let result = async {
        session.check_csrf(&form.csrf)?;
        session.caller.may_act("remove subscriptions")?;
        let id = tms::SubscriptionId::from_uuid(crate::routes::path_uuid(&id, "subscription")?);
        if !state
            .subscriptions
            .delete_subscription(&session.caller.scope(None)?, id)
            .await?
        {
            return Err(Problem::not_found("no such subscription"));
        }
        tracing::info!(subscription_id = %id, "subscription removed");
        Ok(Redirect::to("/console/subscriptions?done=removed").into_response())
    }
    .await;
    page(result, &session, "/console/subscriptions")
}

/// A tenant's flow-control limits and what each limited key uses now, as `GET /v1/limits`
/// reads them; operators choose the tenant with `?tenant=` (their own without it).
pub async fn limits(
    State(state): State<AppState>,
    session: Session,
    RawQuery(q): RawQuery,
) -> Response {
    let query = q.unwrap_or_default();
    let result = async {
        let (scope, _) = page_scope(&session, query_value(&query, "tenant").as_deref())?;
        let tenant = match scope {
            Scope::Tenant(t) => t,
            Scope::All => session.caller.tenant.clone(),
        };
        let stored = crate::routes::limits::store(&state)?
            .limits(&tenant)
            .await?;
        let view = crate::routes::limits::TenantLimitsView::of(&tenant, &stored);
        let page = LimitsPage {
            chrome: Chrome::new("Limits", "/console/limits", &session),
            operator: session.caller.role == Role::Operator,
            tenant_encoded: encode(tenant.as_str()),
            tenant: tenant.to_string(),
            rows: LimitRow::of(&view),
            updated: stored.updated_at.map_or_else(|| "never".into(), view::time),
        };
        Ok(render(&page, StatusCode::OK))
    }
    .await;
    page(result, &session, "/console/limits")
}

/// The console's stylesheet, from the binary.
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../assets/console.css"),
    )
        .into_response()
}

/// Unknown console paths.
pub async fn not_found() -> Response {
    error_page(&Problem::not_found("no such page"), None, "/console")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_times_are_utc_and_take_the_browser_s_format() {
        assert_eq!(
            form_time("2026-12-06T21:05").unwrap().to_rfc3339(),
            "2026-12-06T21:05:00+00:00"
        );
        assert_eq!(
            form_time("2026-12-06T21:05:09").unwrap().to_rfc3339(),
            "2026-12-06T21:05:09+00:00"
        );
        assert!(form_time("2026-12-06T21:05:09Z").is_some());
        assert!(form_time("yesterday").is_none());
    }

    #[test]
    fn empty_form_fields_are_no_filter() {
        let (request, form) =
            list_request("status=&kind=noop&q=&created_after=2026-12-06T21:05", None).unwrap();
        assert_eq!(request.filter.status, None);
        assert_eq!(request.filter.kind, Some(TaskKind::Noop));
        assert_eq!(request.filter.text, None);
        assert!(request.filter.created_after.is_some());
        assert_eq!(form.created_after, "2026-12-06T21:05");
        assert_eq!(request.limit, PAGE_ROWS);
        assert!(list_request("status=paused", None).is_err());
    }

    #[test]
    fn notices_come_from_a_fixed_set() {
        assert_eq!(
            notice_for("done=redrive&n=3").unwrap(),
            "3 tasks were redriven and queued again."
        );
        assert!(notice_for("done=<script>").is_none());
        assert!(notice_for("").is_none());
    }
}
