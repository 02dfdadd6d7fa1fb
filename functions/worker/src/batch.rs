//! One batch of records: events matched to the tenants' triggers in one statement (and TMS's
//! own lifecycle events to the tenants' subscriptions in another), submissions, the events'
//! tasks and the deliveries created in one statement, every claimable task claimed in one
//! statement, the signing keys of the claimed webhook tasks and deliveries looked up in one
//! statement (when there are any), the claimed tasks run concurrently under the invocation's
//! deadline, and every outcome recorded in one statement. A record whose content
//! the database refuses is dead-lettered like any malformed message; only what the database
//! could not be asked (it is down) is reported failed.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsMessage;
use chrono::Utc;
use futures::{FutureExt, StreamExt};
use serde_json::Value;
use tms::deadline::Deadline;
use tms::ports::{
    Claim, ClaimPolicy, ClaimedTask, Deferral, Outcome, Signing, StoreError, Submitted,
};
use tms::retry::{failure_outcome, retry_dispatch, send_marked};
use tms::telemetry::metrics::{
    MetricSet, BATCH_ITEM_FAILURES, EVENTS_UNMATCHED, EXECUTOR_DURATION_MS, TASKS_DEAD,
    TASKS_DEFERRED, TASKS_FAILED, TASKS_SUCCEEDED, TASK_LATENCY_MS,
};
use tms::{
    DeferReason, Delivery, Event, LifecycleEvent, NewTask, Notification, Priority, Status,
    Subscription, SubscriptionId, Task, TaskError, TaskId, TaskKind, Tenant, Trigger, WorkMessage,
    PRIORITY_ATTRIBUTE,
};
use tracing::{Instrument, Span};

use crate::config::RECORD_RESERVE;
use crate::message::{self, Parsed};
use crate::producers::ProducerMap;
use crate::Deps;

/// What became of one submission in the submit statement.
enum Stored {
    Done(Option<Submitted>),
    /// The database refused this submission's content.
    Refused(String),
    /// The database failed while this submission was tried alone.
    Unavailable,
}

/// What a record stands for once parsed and its submissions stored.
enum Target {
    /// The tasks it points at or created (none for an event no trigger took).
    Tasks(Vec<WorkMessage>),
    Malformed(String),
    /// Not settled in this invocation: the message comes back.
    Retry,
}

struct Entry<'a> {
    record: &'a SqsMessage,
    target: Target,
}

/// The attempt of one claimed task.
struct Execution {
    claimed: ClaimedTask,
    span: Span,
    /// `None`: not started, too little time was left.
    run: Option<(Result<Value, TaskError>, Duration)>,
}

#[derive(Debug, Default)]
struct Tally {
    succeeded: u64,
    failed: u64,
    dead: u64,
}

/// Runs the batch and returns the message ids to report as failures.
pub async fn process(deps: &Deps, records: &[SqsMessage], deadline: Deadline) -> Vec<String> {
    let (failures, tally) = run(deps, records, deadline).await;
    MetricSet::new()
        .count(TASKS_SUCCEEDED, tally.succeeded)
        .count(TASKS_FAILED, tally.failed)
        .count(TASKS_DEAD, tally.dead)
        .count(BATCH_ITEM_FAILURES, failures.len() as u64)
        .emit(deps.metrics.as_ref());
    failures
}

fn every_record(records: &[SqsMessage]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| r.message_id.clone())
        .collect()
}

fn database_failed(records: &[SqsMessage], step: &str, error: &StoreError) -> (Vec<String>, Tally) {
    tracing::error!(%error, step, records = records.len(),
        "database failed mid-batch; every record is reported for redelivery");
    (every_record(records), Tally::default())
}

async fn run(deps: &Deps, records: &[SqsMessage], deadline: Deadline) -> (Vec<String>, Tally) {
    let settings = &deps.settings;
    if deadline.remaining() < settings.stop_margin {
        tracing::warn!(
            remaining_ms = deadline.remaining().as_millis() as u64,
            records = records.len(),
            "too little time left to start: every record comes back"
        );
        return (every_record(records), Tally::default());
    }
    let parsed: Vec<Parsed> = records
        .iter()
        .map(|r| message::parse(r, &settings.rules))
        .collect();
    let parsed = match authorise(deps, records, parsed).await {
        Ok(parsed) => parsed,
        Err(e) => return database_failed(records, "match events", &e),
    };
    let submitted = match submit(deps, &parsed).await {
        Ok(s) => s,
        Err(e) => return database_failed(records, "submit", &e),
    };
    let entries: Vec<Entry> = records
        .iter()
        .zip(parsed)
        .enumerate()
        .map(|(i, (record, parsed))| Entry {
            record,
            target: target(parsed, submitted.get(&i)),
        })
        .collect();
    let mut pointers: Vec<(TaskId, Tenant)> = entries
        .iter()
        .flat_map(|e| match &e.target {
            Target::Tasks(ms) => ms.iter().map(|m| (m.task_id, m.tenant.clone())).collect(),
            _ => Vec::new(),
        })
        .collect();
    pointers.sort();
    pointers.dedup();
    let Claim {
        tasks: claimed,
        deferred,
    } = match deps
        .work
        .claim(&pointers, &claim_policy(settings, records))
        .await
    {
        Ok(claim) => claim,
        Err(e) => return database_failed(records, "claim", &e),
    };
    report_deferrals(deps, &deferred);
    let signing = match signing_of(deps, &claimed).await {
        Ok(signing) => signing,
        Err(e) => return database_failed(records, "signing keys", &e),
    };
    let executions = execute_all(deps, claimed, &signing, deadline).await;
    let outcomes: Vec<Outcome> = executions.iter().filter_map(|x| outcome(deps, x)).collect();
    let recorded = match deps.work.record(&outcomes).await {
        Ok(recorded) => recorded,
        Err(e) => return database_failed(records, "record", &e),
    };
    // The lifecycle events go to the bus while the outcomes are reported, the retries sent
    // and the records settled: none of those waits for the other.
    let publish = tms::notify::publish(
        deps.events.as_deref(),
        deps.notifications.as_ref(),
        &recorded.events,
    );
    let ids: HashSet<TaskId> = recorded.ids.iter().copied().collect();
    let finish = async {
        let tally = report(deps, &executions, &outcomes, &ids);
        send_messages(deps, &executions, &outcomes, &ids, &deferred).await;
        (settle(deps, &entries, &executions, &deferred).await, tally)
    };
    let (_, finished) = tokio::join!(publish, finish);
    finished
}

/// The fair share is for batches of normal-priority messages: a batch carrying a `high` task's
/// message takes no other tenant's tasks, which would hold its outcomes back until they ran.
fn claim_policy(settings: &crate::Settings, records: &[SqsMessage]) -> ClaimPolicy {
    let high = records.iter().any(|r| {
        r.message_attributes
            .get(PRIORITY_ATTRIBUTE)
            .and_then(|a| a.string_value.as_deref())
            == Some(Priority::High.as_str())
    });
    ClaimPolicy {
        lease: settings.lease,
        fair_share: if high { 0 } else { settings.fair_share },
        fair_share_after: settings.fair_share_after,
    }
}

/// Logs each task the claim deferred and counts them per tenant and reason.
fn report_deferrals(deps: &Deps, deferred: &[Deferral]) {
    let mut counts: HashMap<(&Tenant, DeferReason), u64> = HashMap::new();
    for d in deferred {
        let task = &d.task;
        tracing::info!(task_id = %task.id, tenant = %task.tenant,
            correlation_id = %task.correlation_id, reason = %d.reason,
            delay_ms = d.delay.as_millis() as u64, "task deferred: a limit is reached");
        *counts.entry((&task.tenant, d.reason)).or_default() += 1;
    }
    for ((tenant, reason), n) in counts {
        MetricSet::new()
            .dimension("Tenant", tenant.as_str())
            .dimension("Reason", reason.as_str())
            .count(TASKS_DEFERRED, n)
            .emit(deps.metrics.as_ref());
    }
}

/// Sends the delayed messages of the retries and of the deferred tasks (whose markers the
/// record and the claim set), on the queue of each task's priority.
async fn send_messages(
    deps: &Deps,
    executions: &[Execution],
    outcomes: &[Outcome],
    recorded: &HashSet<TaskId>,
    deferred: &[Deferral],
) {
    let tasks: HashMap<TaskId, &Task> = executions
        .iter()
        .map(|x| (x.claimed.task.id, &x.claimed.task))
        .collect();
    let messages: Vec<_> = outcomes
        .iter()
        .filter(|o| recorded.contains(&o.id))
        .filter_map(|o| retry_dispatch(tasks.get(&o.id)?, o))
        .chain(deferred.iter().filter_map(Deferral::dispatch))
        .collect();
    send_marked(deps.queue.as_ref(), deps.work.as_ref(), &messages).await;
}

/// Acknowledges what is settled: tasks that ran, were deferred (their delayed message is sent)
/// or were not claimable, and malformed messages once dead-lettered. Returns the message ids of
/// the rest.
async fn settle(
    deps: &Deps,
    entries: &[Entry<'_>],
    executions: &[Execution],
    deferred: &[Deferral],
) -> Vec<String> {
    let claimed: HashSet<TaskId> = executions.iter().map(|x| x.claimed.task.id).collect();
    let deferred: HashSet<TaskId> = deferred.iter().map(|d| d.task.id).collect();
    let unstarted: HashSet<TaskId> = executions
        .iter()
        .filter(|x| x.run.is_none())
        .map(|x| x.claimed.task.id)
        .collect();
    let mut failures = Vec::new();
    for entry in entries {
        let settled = match &entry.target {
            Target::Tasks(ms) => ms.iter().all(|m| {
                if !claimed.contains(&m.task_id) && !deferred.contains(&m.task_id) {
                    tracing::info!(task_id = %m.task_id, tenant = %m.tenant,
                        correlation_id = %m.correlation_id,
                        "task not claimable (done, leased, not due or unknown); acknowledged");
                }
                !unstarted.contains(&m.task_id)
            }),
            Target::Malformed(reason) => dead_letter(deps, entry.record, reason).await,
            Target::Retry => false,
        };
        if !settled {
            failures.extend(entry.record.message_id.clone());
        }
    }
    failures
}

/// Trusts a submission's tenant, and an event's for each trigger it matches, only for the
/// producers the producer map allows to submit for it (an event's producer is the account that
/// put it); refused submissions become malformed, refused triggers create nothing. Without a
/// readable map nothing can be judged, and such records come back later.
///
/// # Errors
/// The database's failure to match the events.
async fn authorise(
    deps: &Deps,
    records: &[SqsMessage],
    parsed: Vec<Parsed>,
) -> Result<Vec<Parsed>, StoreError> {
    if !parsed.iter().any(|p| {
        matches!(
            p,
            Parsed::Submissions(_) | Parsed::Event(_) | Parsed::Lifecycle(_)
        )
    }) {
        return Ok(parsed);
    }
    let triggers = triggers_of(deps, &parsed).await?;
    let subscriptions = subscriptions_of(deps, &parsed).await?;
    let map = match deps.producers.get().await {
        Ok(Some(map)) => Ok(map),
        Ok(None) => Err(None),
        Err(e) => Err(Some(e.to_string())),
    };
    let mut unmatched = 0;
    let parsed = records
        .iter()
        .zip(parsed)
        .map(|(record, parsed)| match (parsed, &map) {
            (Parsed::Lifecycle(event), _) => {
                Parsed::Submissions(deliveries(&event, &subscriptions))
            }
            (Parsed::Event(event), Ok(map)) => {
                let tasks = event_tasks(deps, &event, &triggers, map);
                if tasks.is_empty() {
                    unmatched += 1;
                }
                Parsed::Submissions(tasks)
            }
            (Parsed::Submissions(tasks), Ok(map)) => {
                match tasks
                    .iter()
                    .try_for_each(|t| map.authorise(message::sender_of(record), &t.tenant))
                {
                    Ok(()) => Parsed::Submissions(tasks),
                    Err(denied) => Parsed::Malformed(format!("submission refused: {denied}")),
                }
            }
            (Parsed::Event(event), Err(None)) => {
                tracing::info!(event_id = %event.id, source = %event.source,
                    "event ignored: this deployment names no producer map (TMS_PRODUCERS_PARAM)");
                unmatched += 1;
                Parsed::Submissions(Vec::new())
            }
            (Parsed::Submissions(_), Err(None)) => Parsed::Malformed(
                "queue submissions are disabled: this deployment names no producer map \
                 (TMS_PRODUCERS_PARAM)"
                    .into(),
            ),
            (Parsed::Event(_) | Parsed::Submissions(_), Err(Some(e))) => {
                Parsed::Later(format!("the producer map cannot be read: {e}"))
            }
            (other, _) => other,
        })
        .collect();
    if unmatched > 0 {
        MetricSet::new()
            .count(EVENTS_UNMATCHED, unmatched)
            .emit(deps.metrics.as_ref());
    }
    Ok(parsed)
}

/// The triggers on the (source, detail-type) pairs of the batch's events, in one statement.
async fn triggers_of(deps: &Deps, parsed: &[Parsed]) -> Result<Vec<Trigger>, StoreError> {
    let mut pairs: Vec<(String, String)> = parsed
        .iter()
        .filter_map(|p| match p {
            Parsed::Event(e) => Some((e.source.clone(), e.detail_type.clone())),
            _ => None,
        })
        .collect();
    pairs.sort();
    pairs.dedup();
    deps.triggers.triggers_for(&pairs).await
}

/// The subscriptions of the batch's lifecycle events' tenants to their types, in one statement.
async fn subscriptions_of(deps: &Deps, parsed: &[Parsed]) -> Result<Vec<Subscription>, StoreError> {
    let mut tenants = Vec::new();
    let mut types = Vec::new();
    for p in parsed {
        if let Parsed::Lifecycle(n) = p {
            tenants.push(n.tenant.clone());
            types.push(n.detail_type.clone());
        }
    }
    tenants.sort();
    tenants.dedup();
    types.sort();
    types.dedup();
    deps.subscriptions.subscriptions_for(&tenants, &types).await
}

/// The deliveries of a lifecycle event: one `notification` task per subscription that takes it.
fn deliveries(event: &Notification, subscriptions: &[Subscription]) -> Vec<NewTask> {
    let tasks: Vec<NewTask> = subscriptions
        .iter()
        .filter(|s| s.matches(event))
        .map(|s| s.delivery(event))
        .collect();
    tracing::info!(event_id = %event.id, tenant = %event.tenant,
        detail_type = %event.detail_type, deliveries = tasks.len(),
        "lifecycle event matched to the tenant's subscriptions");
    tasks
}

/// The signing keys of the claimed webhook tasks' tenants and the claimed deliveries'
/// subscriptions, in one statement; none (and no statement) when no claimed task signs.
async fn signing_of(deps: &Deps, claimed: &[ClaimedTask]) -> Result<Signing, StoreError> {
    let mut tenants: Vec<Tenant> = Vec::new();
    let mut subscriptions: Vec<SubscriptionId> = Vec::new();
    for c in claimed {
        match c.task.kind {
            TaskKind::Webhook => tenants.push(c.task.tenant.clone()),
            TaskKind::Notification => {
                if let Ok(d) = serde_json::from_value::<Delivery>(c.task.payload.clone()) {
                    subscriptions.push(d.subscription_id);
                }
            }
            _ => {}
        }
    }
    tenants.sort();
    tenants.dedup();
    subscriptions.sort();
    subscriptions.dedup();
    deps.signing.signing_for(&tenants, &subscriptions).await
}

/// The tasks an event creates: one per trigger that matches it, of a tenant the event's account
/// may submit for.
fn event_tasks(
    deps: &Deps,
    event: &Event,
    triggers: &[Trigger],
    map: &ProducerMap,
) -> Vec<NewTask> {
    let mut tasks = Vec::new();
    for trigger in triggers.iter().filter(|t| t.matches(event)) {
        if let Err(denied) = map.authorise(Some(&event.account), &trigger.tenant) {
            tracing::info!(event_id = %event.id, trigger_id = %trigger.id, %denied,
                "the event's account may not create tasks for the trigger's tenant");
            continue;
        }
        match trigger.task_for(event, &deps.settings.rules) {
            Ok(task) => tasks.push(task),
            Err(reason) => tracing::warn!(event_id = %event.id, trigger_id = %trigger.id,
                tenant = %trigger.tenant, reason, "the event matched, but makes no valid task"),
        }
    }
    if tasks.is_empty() {
        tracing::info!(event_id = %event.id, source = %event.source,
            detail_type = %event.detail_type, "no trigger took the event; acknowledged");
    }
    tasks
}

/// Stores the batch's tasks in one statement; by record index and position. When the database
/// refuses the statement's content, each task is tried alone so that only the records of refused
/// ones are dead-lettered.
async fn submit(deps: &Deps, parsed: &[Parsed]) -> Result<HashMap<usize, Vec<Stored>>, StoreError> {
    let (indexes, tasks): (Vec<usize>, Vec<NewTask>) = parsed
        .iter()
        .enumerate()
        .flat_map(|(i, p)| match p {
            Parsed::Submissions(tasks) => tasks.iter().map(|t| (i, t.clone())).collect(),
            _ => Vec::new(),
        })
        .unzip();
    let mut stored: HashMap<usize, Vec<Stored>> = HashMap::new();
    if tasks.is_empty() {
        return Ok(stored);
    }
    let results: Vec<Stored> = match deps.submissions.submit(&tasks).await {
        Ok(results) => results.into_iter().map(Stored::Done).collect(),
        Err(e) if e.is_refused() => {
            tracing::warn!(error = %e, count = tasks.len(),
                "the database refused the batch's submissions; trying each alone");
            let mut one_by_one = Vec::with_capacity(tasks.len());
            for task in &tasks {
                one_by_one.push(
                    match deps.submissions.submit(std::slice::from_ref(task)).await {
                        Ok(mut results) => Stored::Done(results.pop().flatten()),
                        Err(StoreError::Refused(reason)) => Stored::Refused(reason),
                        Err(e) => {
                            tracing::error!(error = %e, tenant = %task.tenant,
                            "a submission could not be stored; it comes back");
                            Stored::Unavailable
                        }
                    },
                );
            }
            one_by_one
        }
        Err(e) => return Err(e),
    };
    for (i, result) in indexes.into_iter().zip(results) {
        stored.entry(i).or_default().push(result);
    }
    Ok(stored)
}

fn target(parsed: Parsed, stored: Option<&Vec<Stored>>) -> Target {
    let tasks = match parsed {
        Parsed::Work(m) => return Target::Tasks(vec![m]),
        Parsed::Malformed(reason) => return Target::Malformed(reason),
        Parsed::Later(reason) => {
            tracing::warn!(reason, "the record cannot be judged now; it comes back");
            return Target::Retry;
        }
        Parsed::Event(_) | Parsed::Lifecycle(_) => {
            unreachable!("events are matched before they are stored")
        }
        Parsed::Submissions(tasks) => tasks,
    };
    let empty = Vec::new();
    let stored = stored.unwrap_or(&empty);
    let mut messages = Vec::with_capacity(tasks.len());
    for (task, stored) in tasks.into_iter().zip(stored) {
        match stored {
            Stored::Refused(reason) => {
                return Target::Malformed(format!("the database refused the submission: {reason}"))
            }
            Stored::Unavailable => return Target::Retry,
            Stored::Done(Some(s)) if s.replayed && !s.hash_matches => {
                return Target::Malformed(format!(
                    "idempotency key {:?} of tenant {} already belongs to task {} with another \
                     submission",
                    task.idempotency_key.as_deref().unwrap_or_default(),
                    task.tenant,
                    s.id
                ))
            }
            Stored::Done(Some(s)) => {
                tracing::info!(task_id = %s.id, tenant = %task.tenant,
                    correlation_id = %task.correlation_id, replayed = s.replayed,
                    source = task.source.as_str(), "task submitted on the queue");
                messages.push(WorkMessage {
                    task_id: s.id,
                    tenant: task.tenant,
                    correlation_id: task.correlation_id,
                });
            }
            Stored::Done(None) => {
                tracing::info!(tenant = %task.tenant, correlation_id = %task.correlation_id,
                    "the submission's key was taken concurrently; it comes back");
                return Target::Retry;
            }
        }
    }
    Target::Tasks(messages)
}

fn task_span(task: &Task) -> Span {
    tracing::info_span!("task", task_id = %task.id, tenant = %task.tenant,
        correlation_id = %task.correlation_id, kind = %task.kind, attempt = task.attempts)
}

async fn execute_all(
    deps: &Deps,
    claimed: Vec<ClaimedTask>,
    signing: &Signing,
    deadline: Deadline,
) -> Vec<Execution> {
    futures::stream::iter(claimed)
        .map(|claimed| {
            let span = task_span(&claimed.task);
            async move {
                let run = execute(deps, &claimed.task, signing, deadline)
                    .instrument(span.clone())
                    .await;
                Execution { claimed, span, run }
            }
        })
        .buffer_unordered(deps.settings.concurrency)
        .collect()
        .await
}

async fn execute(
    deps: &Deps,
    task: &Task,
    signing: &Signing,
    deadline: Deadline,
) -> Option<(Result<Value, TaskError>, Duration)> {
    let remaining = deadline.remaining();
    if remaining < deps.settings.stop_margin {
        tracing::warn!(
            remaining_ms = remaining.as_millis() as u64,
            "too little time left to start the task; its message comes back"
        );
        return None;
    }
    let started = Instant::now();
    let result = match deps.executors.get(task.kind) {
        None => Err(TaskError::permanent(
            "no_executor",
            format!("no executor runs tasks of kind {}", task.kind),
        )),
        Some(executor) => {
            let budget = remaining.saturating_sub(RECORD_RESERVE);
            let attempt = AssertUnwindSafe(executor.execute_signed(task, signing)).catch_unwind();
            match tokio::time::timeout(budget, attempt).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(TaskError::permanent(
                    "executor_panicked",
                    "the executor panicked (see the worker's log)",
                )),
                Err(_) => Err(TaskError::retryable(
                    "deadline",
                    "the attempt was cut short by the end of the invocation",
                )),
            }
        }
    };
    Some((result, started.elapsed()))
}

/// The outcome the domain decides for an attempt: what it ended with, or for one that never
/// started, the claim given back (another tenant's task taken for its fair share gets a
/// message of its own: the one it had may have been acknowledged while this batch held it).
fn outcome(deps: &Deps, execution: &Execution) -> Option<Outcome> {
    let task = &execution.claimed.task;
    let Some((result, took)) = execution.run.as_ref() else {
        let released = task
            .lifecycle()
            .apply(LifecycleEvent::Release {
                claimed_from: execution.claimed.from,
            })
            .map(|next| Outcome {
                enqueue: execution.claimed.stolen,
                released: true,
                ..Outcome::of(task, next.status, None, None)
            });
        return released
            .inspect_err(|e| {
                execution
                    .span
                    .in_scope(|| tracing::error!(error = %e, "claim could not be released"));
            })
            .ok();
    };
    let decided = match result {
        Ok(value) => task
            .lifecycle()
            .apply(LifecycleEvent::Succeed)
            .map(|next| Outcome {
                ran: Some(*took),
                ..Outcome::of(task, next.status, Some(value.clone()), None)
            }),
        Err(error) => failure_outcome(
            task,
            LifecycleEvent::Fail {
                retryable: error.is_retryable(),
            },
            error.clone(),
            &deps.settings.backoff,
        )
        .map(|o| Outcome {
            ran: Some(*took),
            ..o
        }),
    };
    decided
        .inspect_err(|e| {
            execution
                .span
                .in_scope(|| tracing::error!(error = %e, "claimed task refused its outcome"));
        })
        .ok()
}

/// Logs each attempt's end and writes the batch's metrics (the executor durations by kind, and
/// the latency of every task that succeeded, as data points of one line each: a line per task
/// cost more than the noop tasks themselves); counts the recorded transitions.
fn report(
    deps: &Deps,
    executions: &[Execution],
    outcomes: &[Outcome],
    recorded: &HashSet<TaskId>,
) -> Tally {
    let by_id: HashMap<TaskId, &Outcome> = outcomes.iter().map(|o| (o.id, o)).collect();
    let mut tally = Tally::default();
    let mut durations: HashMap<TaskKind, Vec<f64>> = HashMap::new();
    let mut latencies = Vec::new();
    let now = Utc::now();
    for x in executions {
        let task = &x.claimed.task;
        let Some((_, took)) = &x.run else {
            if recorded.contains(&task.id) {
                x.span.in_scope(|| {
                    tracing::info!("claim released: not started before the deadline, its attempt not counted; the message comes back")
                });
            }
            continue;
        };
        let took_ms = took.as_secs_f64() * 1000.0;
        durations.entry(task.kind).or_default().push(took_ms);
        let Some(o) = by_id.get(&task.id) else {
            continue;
        };
        let _in_span = x.span.enter();
        if !recorded.contains(&task.id) {
            tracing::warn!(status = %o.to,
                "outcome not recorded: the task was claimed again meanwhile");
            continue;
        }
        let code = o.error.as_ref().map(|e| e.code.as_str());
        tracing::info!(status = %o.to, took_ms, error_code = code, "task attempt recorded");
        match o.to {
            Status::Succeeded => {
                tally.succeeded += 1;
                let latency = (now - task.created_at).num_milliseconds().max(0);
                latencies.push(latency as f64);
            }
            Status::Failed => tally.failed += 1,
            Status::Dead => tally.dead += 1,
            _ => {}
        }
    }
    let sink = deps.metrics.as_ref();
    for (kind, took) in &durations {
        MetricSet::new()
            .dimension("Kind", kind.as_str())
            .emit_millis_each(EXECUTOR_DURATION_MS, took, sink);
    }
    MetricSet::new().emit_millis_each(TASK_LATENCY_MS, &latencies, sink);
    tally
}

/// Moves a malformed record to the dead-letter queue; `false` when that failed.
async fn dead_letter(deps: &Deps, record: &SqsMessage, reason: &str) -> bool {
    let body = record.body.as_deref().unwrap_or_default();
    let message_id = record.message_id.as_deref().unwrap_or_default();
    let correlation_id = message::correlation_of(record);
    match deps.queue.dead_letter(body, reason).await {
        Ok(()) => {
            tracing::warn!(message_id, %correlation_id, reason, "malformed message dead-lettered");
            true
        }
        Err(e) => {
            tracing::error!(message_id, %correlation_id, error = %e,
                "malformed message could not be dead-lettered; it comes back");
            false
        }
    }
}
