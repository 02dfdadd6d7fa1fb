//! `GET /v1/stats`: what the console's overview shows, for the caller's scope.

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use tms::ports::Overview;
use tms::{Caller, Scope, Status};
use utoipa::IntoParams;

use crate::model::{CountView, DeferredView, MinuteView, StatsView};
use crate::problem::Problem;
use crate::AppState;

/// The scope of `GET /v1/stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct StatsParams {
    /// Operators: only this tenant's tasks (every tenant's without it).
    #[param(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    tenant: Option<String>,
}

/// Counts per status and kind, throughput and failures per minute over the last hour,
/// latency percentiles, the oldest pending task, dead tasks, tasks deferred by flow control per
/// reason, and the work queues' depth.
#[utoipa::path(
    get, path = "/v1/stats", tag = "tasks",
    params(StatsParams),
    responses((status = 200, description = "The tenant's (or, for operators, every tenant's) figures.", body = StatsView))
)]
pub async fn stats(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    let mut tenant = None;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if name == "tenant" {
            tenant = Some(super::tenant_param(&value)?);
        }
    }
    let scope = caller.scope(tenant.as_ref())?;
    Ok(Json(read(&state, &scope).await?).into_response())
}

/// The figures of `scope`.
///
/// # Errors
/// The store's failure; a queue that cannot be read only leaves its depth out.
pub async fn read(state: &AppState, scope: &Scope) -> Result<StatsView, Problem> {
    let (overview, waiting) = tokio::join!(state.repo.overview(scope), state.queue_waiting());
    Ok(view(overview?, waiting))
}

fn view(overview: Overview, queue_waiting: Option<u64>) -> StatsView {
    let mut by_status = serde_json::Map::new();
    for status in Status::ALL {
        let n: u64 = overview
            .counts
            .iter()
            .filter(|(s, _, _)| *s == status)
            .map(|(_, _, n)| n)
            .sum();
        by_status.insert(status.as_str().into(), n.into());
    }
    let dead = by_status[Status::Dead.as_str()].as_u64().unwrap_or(0);
    StatsView {
        counts: overview
            .counts
            .into_iter()
            .map(|(status, kind, count)| CountView {
                status: status.into(),
                kind,
                count,
            })
            .collect(),
        by_status,
        per_minute: overview
            .per_minute
            .into_iter()
            .map(|m| MinuteView {
                minute: m.minute,
                succeeded: m.succeeded,
                failed: m.failed,
            })
            .collect(),
        latency_p50_ms: overview.latency_p50_ms,
        latency_p95_ms: overview.latency_p95_ms,
        oldest_pending_seconds: overview.oldest_pending.map(|d| d.as_secs_f64()),
        dead,
        deferred: DeferredView::of(&overview.deferred),
        queue_waiting,
    }
}
