//! The five jobs. Each works in bounded rounds and stops starting rounds when the invocation's
//! time runs short or the round limit is reached; the next scheduled run carries on.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tms::deadline::Deadline;
use tms::ports::{Dispatch, DueCursor, RelayRules, ScheduleRun, StoreError};
use tms::retry::{failure_outcome, retry_dispatch, send_marked};
use tms::telemetry::metrics::{
    MetricSet, DEAD_TASKS, OLDEST_PENDING_AGE_SECONDS, TASKS_CREATED, TASKS_DEAD, TASKS_FAILED,
    TASKS_IN_STATUS,
};
use tms::{LifecycleEvent, NewTask, Status, TaskError, TaskId, WorkMessage};

use crate::Deps;

/// Whether another round may start.
fn may_continue(deps: &Deps, deadline: &Deadline, rounds: u32) -> bool {
    let settings = &deps.settings;
    if rounds >= settings.max_rounds {
        tracing::info!(rounds, "round limit reached; the next run goes on");
        return false;
    }
    if deadline.remaining() < settings.stop_margin {
        tracing::warn!(rounds, "too little time left; the next run goes on");
        return false;
    }
    true
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct RelayReport {
    pub sent: usize,
    /// Not accepted by the queue; tried again on the next run.
    pub unsent: usize,
    /// Lifecycle events published again (their function could not).
    pub events: usize,
}

/// Sends the work messages that are missing: tasks whose API-side send failed, retries the
/// worker could not send or that were due too late for an SQS delay, and messages presumed lost.
///
/// Messages are presumed lost only while the queue holds no backlog (or cannot say): behind a
/// backlog, an old message may simply be waiting, and sending every waiting task again would
/// double the backlog each run.
pub async fn relay(deps: &Deps, deadline: &Deadline) -> Result<RelayReport, StoreError> {
    let settings = &deps.settings;
    let rules = RelayRules {
        resend_presumed_lost: settings.relay.resend_presumed_lost
            && match deps.queue.waiting().await {
                Ok(None | Some(0)) => true,
                Ok(Some(waiting)) => {
                    tracing::info!(
                        waiting,
                        "the queue holds a backlog: no message is presumed lost"
                    );
                    false
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the queue's backlog is unknown: no message is presumed lost this run");
                    false
                }
            },
        ..settings.relay
    };
    let mut report = RelayReport::default();
    let mut rounds = 0;
    while may_continue(deps, deadline, rounds) {
        rounds += 1;
        let batch = deps.store.relay_batch(&rules, settings.relay_batch).await?;
        let sent = send_marked(deps.queue.as_ref(), deps.work.as_ref(), &batch).await;
        for d in &batch {
            tracing::debug!(task_id = %d.message.task_id, tenant = %d.message.tenant,
                correlation_id = %d.message.correlation_id, delay_s = d.delay.as_secs(),
                "work message relayed");
        }
        report.sent += sent.sent;
        report.unsent += sent.unsent;
        if sent.unsent > 0 || batch.len() < settings.relay_batch as usize {
            break;
        }
    }
    report.events = relay_events(deps, deadline).await?;
    tracing::info!(
        sent = report.sent,
        unsent = report.unsent,
        events = report.events,
        "relay done"
    );
    Ok(report)
}

/// Publishes the lifecycle events left unpublished for [`EVENTS_UNPUBLISHED_AFTER`]: their
/// function stopped, or the bus refused them. A batch at a time; published ones are forgotten.
async fn relay_events(deps: &Deps, deadline: &Deadline) -> Result<usize, StoreError> {
    let Some(publisher) = deps.events.as_deref() else {
        return Ok(0);
    };
    let batch = deps.settings.relay_batch.max(10) * 10;
    let mut published = 0;
    let mut rounds = 0;
    while may_continue(deps, deadline, rounds) {
        rounds += 1;
        let events = deps
            .notifications
            .unpublished(EVENTS_UNPUBLISHED_AFTER, batch)
            .await?;
        let sent =
            tms::notify::publish(Some(publisher), deps.notifications.as_ref(), &events).await;
        published += sent;
        if sent < events.len() || events.len() < batch as usize {
            break;
        }
    }
    Ok(published)
}

/// How long a lifecycle event may wait for its own function to publish it.
pub const EVENTS_UNPUBLISHED_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct ReapReport {
    pub failed: u64,
    pub dead: u64,
    pub retries_sent: usize,
    /// Imports left `running` by an importer that stopped, now `failed`.
    pub imports_failed: u64,
}

/// Settles `running` tasks whose lease expired (their worker is gone): `failed` with a retry
/// while attempts remain, `dead` otherwise, as the domain decides. Then marks `failed` the
/// imports whose importer stopped before finishing.
pub async fn reap(deps: &Deps, deadline: &Deadline) -> Result<ReapReport, StoreError> {
    let settings = &deps.settings;
    let mut report = ReapReport {
        imports_failed: deps
            .store
            .fail_stale_imports(settings.import_stale_after, settings.reap_batch)
            .await?,
        ..ReapReport::default()
    };
    if report.imports_failed > 0 {
        tracing::warn!(
            imports = report.imports_failed,
            "imports left running by a stopped importer marked failed"
        );
    }
    let mut rounds = 0;
    while may_continue(deps, deadline, rounds) {
        rounds += 1;
        let expired = deps.store.expired_leases(settings.reap_batch).await?;
        let error = TaskError::retryable(
            "lease_expired",
            "the worker's lease ran out before it recorded an outcome",
        );
        let outcomes: Vec<_> = expired
            .iter()
            .filter_map(|task| {
                failure_outcome(
                    task,
                    LifecycleEvent::LeaseExpired,
                    error.clone(),
                    &settings.backoff,
                )
                .inspect_err(|e| {
                    tracing::error!(task_id = %task.id, tenant = %task.tenant,
                        correlation_id = %task.correlation_id, error = %e,
                        "expired lease refused by the lifecycle")
                })
                .ok()
            })
            .collect();
        let recorded = deps.work.record(&outcomes).await?;
        tms::notify::publish(
            deps.events.as_deref(),
            deps.notifications.as_ref(),
            &recorded.events,
        )
        .await;
        let recorded: HashSet<TaskId> = recorded.ids.into_iter().collect();
        let mut retries = Vec::new();
        for (task, outcome) in expired.iter().zip(&outcomes) {
            if !recorded.contains(&outcome.id) {
                continue;
            }
            tracing::warn!(task_id = %task.id, tenant = %task.tenant,
                correlation_id = %task.correlation_id, attempt = task.attempts,
                status = %outcome.to, "expired lease settled");
            match outcome.to {
                Status::Failed => report.failed += 1,
                Status::Dead => report.dead += 1,
                _ => {}
            }
            retries.extend(retry_dispatch(task, outcome));
        }
        report.retries_sent += send_marked(deps.queue.as_ref(), deps.work.as_ref(), &retries)
            .await
            .sent;
        if recorded.is_empty() || expired.len() < settings.reap_batch as usize {
            break;
        }
    }
    MetricSet::new()
        .count(TASKS_FAILED, report.failed)
        .count(TASKS_DEAD, report.dead)
        .emit(deps.metrics.as_ref());
    tracing::info!(
        failed = report.failed,
        dead = report.dead,
        imports_failed = report.imports_failed,
        "reap done"
    );
    Ok(report)
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct RetentionReport {
    pub deleted: u64,
    pub chunks: u32,
    /// Expired console sessions and sign-ins deleted.
    pub sessions: u64,
}

/// Deletes `succeeded` and `cancelled` tasks older than the retention, a bounded chunk per
/// statement so no statement holds many locks or runs long, and the console's expired sessions.
pub async fn retention(deps: &Deps, deadline: &Deadline) -> Result<RetentionReport, StoreError> {
    let settings = &deps.settings;
    let mut report = RetentionReport {
        sessions: deps.store.purge_console().await?,
        ..RetentionReport::default()
    };
    while may_continue(deps, deadline, report.chunks) {
        let deleted = deps
            .store
            .purge_finished(settings.retention, settings.retention_chunk)
            .await?;
        report.chunks += 1;
        report.deleted += deleted;
        if deleted < u64::from(settings.retention_chunk) {
            break;
        }
    }
    tracing::info!(
        deleted = report.deleted,
        chunks = report.chunks,
        sessions = report.sessions,
        "retention done"
    );
    Ok(report)
}

#[derive(Debug, Serialize, PartialEq)]
pub struct StatsReport {
    pub by_status: serde_json::Map<String, serde_json::Value>,
    pub oldest_pending_age_seconds: f64,
}

/// Emits the gauges: tasks per status, the age of the most overdue pending task, dead tasks.
pub async fn stats(deps: &Deps) -> Result<StatsReport, StoreError> {
    let stats = deps.store.stats().await?;
    let mut by_status = serde_json::Map::new();
    let mut dead = 0;
    for (status, n) in &stats.by_status {
        MetricSet::new()
            .dimension("Status", status.as_str())
            .count(TASKS_IN_STATUS, *n)
            .emit(deps.metrics.as_ref());
        by_status.insert(status.as_str().to_owned(), (*n).into());
        if *status == Status::Dead {
            dead = *n;
        }
    }
    let oldest = stats.oldest_pending.unwrap_or_default().as_secs_f64();
    MetricSet::new()
        .seconds(OLDEST_PENDING_AGE_SECONDS, oldest)
        .count(DEAD_TASKS, dead)
        .emit(deps.metrics.as_ref());
    Ok(StatsReport {
        by_status,
        oldest_pending_age_seconds: oldest,
    })
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct SchedulesReport {
    /// Due schedules evaluated.
    pub schedules: usize,
    /// Tasks created for their fires.
    pub created: usize,
    /// Fires whose task existed already (a run that stopped before its bookkeeping).
    pub existing: usize,
    /// Schedules whose missed-run policy dropped due fires.
    pub dropped: usize,
    pub batches: u32,
    /// Work messages sent for the created tasks.
    pub sent: usize,
    /// Not accepted by the queue; the relay sends them.
    pub unsent: usize,
}

/// Creates the tasks of the tenants' due schedules: see [`schedules_at`], at the time of the
/// call.
pub async fn schedules(deps: &Deps, deadline: &Deadline) -> Result<SchedulesReport, StoreError> {
    schedules_at(deps, deadline, Utc::now()).await
}

/// Creates the tasks of the schedules due at `now`, a bounded batch at a time, each batch in
/// three statements whatever its size: the due schedules (most overdue first), every fire's
/// task (keyed `schedule:{id}:{fire time}`, so a fire whose task exists is not created again),
/// and the bookkeeping of every schedule with the outbox markers of the created tasks. Then the
/// created tasks' work messages are sent (the relay sends any the queue refused). A batch that
/// would create more than `schedule_fires` tasks leaves its last schedules to the next batch.
pub async fn schedules_at(
    deps: &Deps,
    deadline: &Deadline,
    now: DateTime<Utc>,
) -> Result<SchedulesReport, StoreError> {
    let settings = &deps.settings;
    let mut report = SchedulesReport::default();
    let mut after: Option<DueCursor> = None;
    while may_continue(deps, deadline, report.batches) {
        report.batches += 1;
        let due = deps
            .schedules
            .due_schedules(now, after, settings.schedule_batch)
            .await?;
        let mut tasks: Vec<NewTask> = Vec::new();
        let mut runs = Vec::with_capacity(due.len());
        for schedule in &due {
            let Some(due_at) = schedule.next_run_at else {
                continue;
            };
            let run = schedule.due(now);
            if !runs.is_empty() && tasks.len() + run.fires.len() > settings.schedule_fires as usize
            {
                break;
            }
            after = Some((due_at, schedule.id));
            if run.dropped {
                report.dropped += 1;
                tracing::info!(schedule_id = %schedule.id, tenant = %schedule.tenant,
                    policy = schedule.missed.as_str(), "missed fires dropped by the policy");
            }
            tasks.extend(run.fires.iter().map(|at| schedule.fire(*at)));
            runs.push(ScheduleRun {
                id: schedule.id,
                version: schedule.version,
                due_at,
                next_run_at: run.next_run_at,
                last_fire_at: run.fires.last().copied(),
            });
        }
        report.schedules += runs.len();
        let submitted = if tasks.is_empty() {
            Vec::new()
        } else {
            deps.submissions.submit(&tasks).await?
        };
        let created: Vec<&NewTask> = tasks
            .iter()
            .zip(&submitted)
            .filter(|(_, s)| s.is_some_and(|s| !s.replayed))
            .map(|(task, _)| task)
            .collect();
        report.created += created.len();
        report.existing += tasks.len() - created.len();
        let sent_at = Utc::now();
        let dispatches: Vec<Dispatch> = created
            .iter()
            .filter_map(|task| {
                let message = WorkMessage {
                    task_id: task.id,
                    tenant: task.tenant.clone(),
                    correlation_id: task.correlation_id.clone(),
                };
                Dispatch::when_due(message, task.run_after.unwrap_or(now), sent_at)
                    .map(|d| d.with_priority(task.priority))
            })
            .collect();
        let enqueued: Vec<TaskId> = dispatches.iter().map(|d| d.message.task_id).collect();
        deps.schedules.record_runs(&runs, &enqueued).await?;
        for task in &created {
            tracing::debug!(task_id = %task.id, tenant = %task.tenant,
                correlation_id = %task.correlation_id,
                key = task.idempotency_key.as_deref().unwrap_or_default(), "schedule fired");
        }
        let sent = send_marked(deps.queue.as_ref(), deps.work.as_ref(), &dispatches).await;
        report.sent += sent.sent;
        report.unsent += sent.unsent;
        let rest_left = runs.len() < due.len();
        if !rest_left && due.len() < settings.schedule_batch as usize {
            break;
        }
    }
    if report.created > 0 {
        MetricSet::new()
            .count(TASKS_CREATED, report.created as u64)
            .emit(deps.metrics.as_ref());
    }
    tracing::info!(
        schedules = report.schedules,
        created = report.created,
        existing = report.existing,
        dropped = report.dropped,
        batches = report.batches,
        "schedules done"
    );
    Ok(report)
}
