//! What the console's templates show: each page's data, already formatted, and the frame every
//! page shares (title, navigation, the signed-in caller, a notice).

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use tms::{Import, Status, Task, TaskEvent, TaskKind};

use super::session::Session;
use crate::problem::Problem;

/// A page rendered, or a 500 when a template fails (which would be a bug).
pub fn render(template: &impl Template, status: StatusCode) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console template failed to render");
            Problem::internal().into_response()
        }
    }
}

/// One link of the navigation.
pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// The signed-in caller, as the frame shows it.
pub struct User {
    pub tenant: String,
    pub role: String,
    pub subject: String,
    pub csrf: String,
}

/// What every page shares.
pub struct Chrome {
    pub title: String,
    pub nav: Vec<NavItem>,
    pub user: Option<User>,
    pub notice: Option<String>,
}

impl Chrome {
    /// The frame of a page of a signed-in session; `current` names the navigation item.
    pub fn new(title: impl Into<String>, current: &str, session: &Session) -> Self {
        let items = [
            ("/console", "Overview"),
            ("/console/tasks", "Tasks"),
            ("/console/dead", "Dead tasks"),
            ("/console/imports", "Imports"),
            ("/console/schedules", "Schedules"),
            ("/console/triggers", "Triggers"),
            ("/console/subscriptions", "Subscriptions"),
            ("/console/limits", "Limits"),
        ];
        Self {
            title: title.into(),
            nav: items
                .into_iter()
                .map(|(href, label)| NavItem {
                    href,
                    label,
                    current: href == current,
                })
                .collect(),
            user: Some(User {
                tenant: session.caller.tenant.to_string(),
                role: session.caller.role.to_string(),
                subject: session.subject.clone(),
                csrf: session.csrf.clone(),
            }),
            notice: None,
        }
    }

    /// The frame of the sign-in page.
    pub fn signed_out(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            nav: Vec::new(),
            user: None,
            notice: None,
        }
    }
}

/// `2026-12-06 21:05:03`, UTC.
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A duration for people: `850 ms`, `12.3 s`, `4 min 5 s`, `2 h 10 min`.
pub fn duration_ms(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms < 3_600_000.0 {
        let s = (ms / 1000.0) as u64;
        format!("{} min {} s", s / 60, s % 60)
    } else {
        let m = (ms / 60_000.0) as u64;
        format!("{} h {} min", m / 60, m % 60)
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// One hidden field of a form.
pub struct Field {
    pub name: String,
    pub value: String,
}

/// One option of a select, and whether it is chosen.
pub struct Choice {
    pub value: &'static str,
    pub selected: bool,
}

pub fn choices<T: Copy + PartialEq>(
    all: &[T],
    name: impl Fn(&T) -> &'static str,
    chosen: Option<T>,
) -> Vec<Choice> {
    all.iter()
        .map(|v| Choice {
            value: name(v),
            selected: chosen == Some(*v),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "console/login.html")]
pub struct LoginPage {
    pub chrome: Chrome,
    pub next: String,
    pub next_encoded: String,
    pub login_csrf: String,
    pub error: Option<String>,
    pub oidc: bool,
}

#[derive(Template)]
#[template(path = "console/error.html")]
pub struct ErrorPage {
    pub chrome: Chrome,
    pub heading: String,
    pub message: String,
    pub back: String,
}

/// A figure of the overview, linking to the tasks behind it.
pub struct Card {
    pub label: &'static str,
    pub value: String,
    pub href: String,
    pub alert: bool,
}

/// One minute of the chart.
pub struct Bar {
    pub x: usize,
    pub ok_y: f64,
    pub ok_h: f64,
    pub failed_y: f64,
    pub failed_h: f64,
    pub title: String,
}

pub struct MinuteRow {
    pub minute: String,
    pub succeeded: u64,
    pub failed: u64,
}

pub struct CountCell {
    pub count: u64,
    pub href: String,
}

pub struct KindRow {
    pub kind: String,
    pub cells: Vec<CountCell>,
}

/// Tasks a limit deferred, for one reason.
pub struct DeferredRow {
    pub reason: &'static str,
    pub description: &'static str,
    pub count: u64,
}

#[derive(Template)]
#[template(path = "console/overview.html")]
pub struct OverviewPage {
    pub chrome: Chrome,
    pub scope_label: String,
    pub operator: bool,
    pub tenant: String,
    pub cards: Vec<Card>,
    pub chart_label: String,
    pub bars: Vec<Bar>,
    pub minutes: Vec<MinuteRow>,
    pub statuses: Vec<&'static str>,
    pub kinds: Vec<KindRow>,
    /// The reasons that have deferred tasks.
    pub deferred: Vec<DeferredRow>,
}

/// A task as a row of a list.
pub struct TaskRow {
    pub id: String,
    pub short_id: String,
    pub status: &'static str,
    pub kind: &'static str,
    pub tenant: String,
    pub source: &'static str,
    pub attempts: String,
    pub created: String,
    pub key: String,
}

impl From<&Task> for TaskRow {
    fn from(t: &Task) -> Self {
        let id = t.id.to_string();
        Self {
            short_id: format!("…{}", &id[id.len() - 12..]),
            id,
            status: t.status.as_str(),
            kind: t.kind.as_str(),
            tenant: t.tenant.to_string(),
            source: t.source.as_str(),
            attempts: format!("{}/{}", t.attempts, t.max_attempts),
            created: time(t.created_at),
            key: t.idempotency_key.clone().unwrap_or_default(),
        }
    }
}

/// The filter form's values, as the browser sent them.
#[derive(Default)]
pub struct FormValues {
    pub created_after: String,
    pub created_before: String,
    pub q: String,
    pub tenant: String,
}

/// A bulk action offered for the list's filter.
pub struct BulkOffer {
    pub csrf: String,
    pub action: &'static str,
    pub label: String,
    pub fields: Vec<Field>,
}

#[derive(Template)]
#[template(path = "console/tasks.html")]
pub struct TasksPage {
    pub chrome: Chrome,
    pub heading: String,
    pub caption: String,
    pub action: &'static str,
    pub show_status: bool,
    pub operator: bool,
    pub statuses: Vec<Choice>,
    pub kinds: Vec<Choice>,
    pub sources: Vec<Choice>,
    pub form: FormValues,
    pub bulk: Option<BulkOffer>,
    pub rows: Vec<TaskRow>,
    pub next_url: Option<String>,
}

/// A task in full.
pub struct TaskDetail {
    pub id: String,
    pub tenant: String,
    pub status: &'static str,
    pub kind: &'static str,
    pub attempts: u32,
    pub max_attempts: u32,
    pub source: String,
    pub priority: &'static str,
    /// Why flow control deferred it and until when, while it waits on a limit.
    pub deferred: Option<String>,
    pub correlation_id: String,
    pub correlation_encoded: String,
    pub key: String,
    pub created: String,
    pub updated: String,
    pub run_after: String,
    pub enqueued: String,
    pub payload: String,
    pub result: Option<String>,
    pub error: Option<String>,
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

impl From<&Task> for TaskDetail {
    fn from(t: &Task) -> Self {
        let source = match &t.source {
            tms::Source::Import { import_id, line } => format!("import {import_id}, line {line}"),
            other => other.as_str().to_owned(),
        };
        Self {
            id: t.id.to_string(),
            tenant: t.tenant.to_string(),
            status: t.status.as_str(),
            kind: t.kind.as_str(),
            attempts: t.attempts,
            max_attempts: t.max_attempts,
            source,
            priority: t.priority.as_str(),
            deferred: t.deferred_reason.map(|r| {
                format!(
                    "{} ({r}); runs from {} UTC",
                    r.describe(),
                    time(t.run_after)
                )
            }),
            correlation_id: t.correlation_id.to_string(),
            correlation_encoded: encode(t.correlation_id.as_str()),
            key: t.idempotency_key.clone().unwrap_or_else(|| "—".into()),
            created: time(t.created_at),
            updated: time(t.updated_at),
            run_after: time(t.run_after),
            enqueued: t.enqueued_at.map_or_else(|| "—".into(), time),
            payload: pretty(&t.payload),
            result: t.result.as_ref().map(pretty),
            error: t.last_error.as_ref().map(|e| {
                let class = match e.class {
                    tms::ErrorClass::Retryable => "retryable",
                    tms::ErrorClass::Permanent => "permanent",
                };
                format!("{} ({class}): {}", e.code, e.message)
            }),
        }
    }
}

/// One transition of the timeline.
pub struct EventRow {
    pub at: String,
    pub to: &'static str,
    pub transition: String,
    pub attempt: u32,
    pub error: Option<String>,
    pub correlation_id: String,
}

impl From<&TaskEvent> for EventRow {
    fn from(e: &TaskEvent) -> Self {
        Self {
            at: time(e.at),
            to: e.to.as_str(),
            transition: match e.from {
                Some(from) => format!("{from} → {}", e.to),
                None => format!("created, {}", e.to),
            },
            attempt: e.attempt,
            error: e
                .error
                .as_ref()
                .map(|err| format!("{}: {}", err.code, err.message)),
            correlation_id: e.correlation_id.to_string(),
        }
    }
}

#[derive(Template)]
#[template(path = "console/task.html")]
pub struct TaskPage {
    pub chrome: Chrome,
    pub task: TaskDetail,
    pub events: Vec<EventRow>,
    pub can_act: bool,
    pub can_cancel: bool,
    pub can_redrive: bool,
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "console/confirm.html")]
pub struct ConfirmPage {
    pub chrome: Chrome,
    pub heading: String,
    pub count: u64,
    pub what: &'static str,
    pub verb: &'static str,
    pub over_limit: bool,
    pub limit: u32,
    pub description: Vec<Field>,
    pub csrf: String,
    pub action: &'static str,
    pub fields: Vec<Field>,
    pub button: String,
    pub back: String,
}

/// An import as a row of the list.
pub struct ImportRowView {
    pub id: String,
    pub key: String,
    pub tenant: String,
    pub status: &'static str,
    pub error: Option<String>,
    pub total: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub created: u64,
    pub started: String,
    pub took: String,
    pub report: bool,
    pub errors: bool,
}

impl From<&Import> for ImportRowView {
    fn from(i: &Import) -> Self {
        let took = match i.finished_at {
            Some(end) => duration_ms((end - i.started_at).num_milliseconds() as f64),
            None => format!(
                "running for {}",
                duration_ms((Utc::now() - i.started_at).num_milliseconds() as f64)
            ),
        };
        Self {
            id: i.id.to_string(),
            key: i.key.clone(),
            tenant: i.tenant.to_string(),
            status: i.status.as_str(),
            error: i.error.clone(),
            total: i.counts.total,
            accepted: i.counts.accepted,
            rejected: i.counts.rejected,
            created: i.counts.created,
            started: time(i.started_at),
            took,
            report: i.report_key.is_some(),
            errors: i.errors_key.is_some(),
        }
    }
}

#[derive(Template)]
#[template(path = "console/imports.html")]
pub struct ImportsPage {
    pub chrome: Chrome,
    pub operator: bool,
    pub rows: Vec<ImportRowView>,
    pub next_url: Option<String>,
}

/// Every status, in lifecycle order, and every kind: the overview's table axes.
pub fn statuses() -> Vec<&'static str> {
    Status::ALL.iter().map(Status::as_str).collect()
}

pub fn kinds() -> Vec<&'static str> {
    TaskKind::ALL.iter().map(TaskKind::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_ms(850.0), "850 ms");
        assert_eq!(duration_ms(12_345.0), "12.3 s");
        assert_eq!(duration_ms(245_000.0), "4 min 5 s");
        assert_eq!(duration_ms(7_800_000.0), "2 h 10 min");
    }
}

/// A trigger as a row of the list.
pub struct TriggerRow {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub source: String,
    pub detail_type: String,
    pub detail_match: String,
    pub kind: String,
    pub created: String,
}

impl From<&tms::Trigger> for TriggerRow {
    fn from(t: &tms::Trigger) -> Self {
        Self {
            id: t.id.to_string(),
            name: t.name.clone(),
            tenant: t.tenant.to_string(),
            source: t.event_source.clone(),
            detail_type: t.detail_type.clone(),
            detail_match: t.detail_match.as_ref().map_or_else(
                || "every event".into(),
                |m| format!("{} = {}", m.pointer, m.equals),
            ),
            kind: t.kind.clone(),
            created: time(t.created_at),
        }
    }
}

#[derive(Template)]
#[template(path = "console/triggers.html")]
pub struct TriggersPage {
    pub chrome: Chrome,
    pub operator: bool,
    pub can_act: bool,
    pub csrf: String,
    pub rows: Vec<TriggerRow>,
    pub next_url: Option<String>,
}

/// A schedule as a row of the list.
pub struct ScheduleRow {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub expression: String,
    pub timezone: String,
    pub kind: String,
    /// `Active`, `Paused` or `Ended` (its window is over).
    pub state: &'static str,
    pub paused: bool,
    pub next_run: String,
    pub last_fire: String,
}

impl From<&tms::Schedule> for ScheduleRow {
    fn from(s: &tms::Schedule) -> Self {
        let next = s.next_run();
        Self {
            id: s.id.to_string(),
            name: s.name.clone(),
            tenant: s.tenant.to_string(),
            expression: s.timing.expression.as_str().to_owned(),
            timezone: s.timing.timezone.name().to_owned(),
            kind: s.template.kind.as_str().to_owned(),
            state: match (s.paused, next) {
                (true, _) => "Paused",
                (false, None) => "Ended",
                (false, Some(_)) => "Active",
            },
            paused: s.paused,
            next_run: next.map_or_else(|| "—".into(), time),
            last_fire: s.last_fire_at.map_or_else(|| "never".into(), time),
        }
    }
}

#[derive(Template)]
#[template(path = "console/schedules.html")]
pub struct SchedulesPage {
    pub chrome: Chrome,
    pub operator: bool,
    pub can_act: bool,
    pub csrf: String,
    pub rows: Vec<ScheduleRow>,
    pub next_url: Option<String>,
}

/// A webhook subscription as a row of the list (never its secret).
pub struct SubscriptionRow {
    pub id: String,
    pub tenant: String,
    pub url: String,
    pub event_types: String,
    pub kinds: String,
    pub created: String,
}

impl From<&tms::Subscription> for SubscriptionRow {
    fn from(s: &tms::Subscription) -> Self {
        Self {
            id: s.id.to_string(),
            tenant: s.tenant.to_string(),
            url: s.url.clone(),
            event_types: s.event_types.join(", "),
            kinds: s.kinds.as_ref().map_or_else(
                || "every kind".into(),
                |ks| {
                    ks.iter()
                        .map(TaskKind::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ),
            created: time(s.created_at),
        }
    }
}

#[derive(Template)]
#[template(path = "console/subscriptions.html")]
pub struct SubscriptionsPage {
    pub chrome: Chrome,
    pub operator: bool,
    pub can_act: bool,
    pub csrf: String,
    pub rows: Vec<SubscriptionRow>,
    pub next_url: Option<String>,
}

/// One limited key of a tenant: what limits it and what it uses now.
pub struct LimitRow {
    /// `all tasks`, `kind webhook`, `host api.partner.example`.
    pub key: String,
    pub max_running: String,
    pub rate: String,
    pub running: String,
    pub tokens: String,
}

impl LimitRow {
    fn new(
        key: String,
        max_running: Option<u32>,
        rate: Option<crate::routes::limits::RateView>,
        usage: Option<&crate::routes::limits::UsageView>,
    ) -> Self {
        let dash = || "—".to_owned();
        Self {
            key,
            max_running: max_running.map_or_else(dash, |n| n.to_string()),
            rate: rate.map_or_else(dash, |r| {
                format!("{} a second, burst {}", r.per_second, r.burst)
            }),
            running: usage
                .and_then(|u| u.running)
                .map_or_else(dash, |n| n.to_string()),
            tokens: usage
                .and_then(|u| u.tokens)
                .map_or_else(dash, |t| format!("{t:.2}")),
        }
    }

    /// The rows of a tenant's limits, as `GET /v1/limits` answers them: all its tasks first,
    /// then each kind, then each host.
    pub fn of(view: &crate::routes::limits::TenantLimitsView) -> Vec<Self> {
        let limits = &view.limits;
        let mut rows = Vec::new();
        if limits.max_running.is_some() || limits.rate.is_some() {
            rows.push(Self::new(
                "all tasks".into(),
                limits.max_running,
                limits.rate,
                view.usage.tenant.as_ref(),
            ));
        }
        for (kind, limit) in &limits.kinds {
            rows.push(Self::new(
                format!("kind {kind}"),
                limit.max_running,
                limit.rate,
                view.usage.kinds.get(kind),
            ));
        }
        for (host, rate) in &limits.hosts {
            rows.push(Self::new(
                format!("webhook host {host}"),
                None,
                Some(*rate),
                view.usage.hosts.get(host),
            ));
        }
        rows
    }
}

#[derive(Template)]
#[template(path = "console/limits.html")]
pub struct LimitsPage {
    pub chrome: Chrome,
    pub operator: bool,
    pub tenant: String,
    pub tenant_encoded: String,
    pub rows: Vec<LimitRow>,
    pub updated: String,
}
