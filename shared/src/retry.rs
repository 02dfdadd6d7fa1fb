//! Retries after a failed attempt, shared by the worker and the reaper: the outcome the domain
//! decides, and the delayed work message that brings a `failed` task back when it is due.

use crate::domain::{
    Backoff, LifecycleEvent, Status, Task, TaskError, TransitionError, WorkMessage,
};
use crate::ports::{Dispatch, Outcome, WorkQueue, WorkStore};

pub use crate::ports::MAX_MESSAGE_DELAY;

/// The outcome of an attempt of a `running` task that ended with `error`, as `event` (a
/// failure or an expired lease) decides: `failed` with a backoff delay while attempts remain,
/// `dead` otherwise. A retry due within [`MAX_MESSAGE_DELAY`] is marked for sending.
///
/// # Errors
/// [`TransitionError`] when the task is not in a state the event applies to.
pub fn failure_outcome(
    task: &Task,
    event: LifecycleEvent,
    error: TaskError,
    backoff: &Backoff,
) -> Result<Outcome, TransitionError> {
    let next = task.lifecycle().apply(event)?;
    let retry_in =
        (next.status == Status::Failed).then(|| backoff.delay(task.attempts, &mut rand::rng()));
    Ok(Outcome {
        retry_in,
        enqueue: retry_in.is_some_and(|d| d <= MAX_MESSAGE_DELAY),
        ..Outcome::of(task, next.status, None, Some(error))
    })
}

/// The delayed message for a recorded outcome marked for sending.
pub fn retry_dispatch(task: &Task, outcome: &Outcome) -> Option<Dispatch> {
    outcome.enqueue.then(|| Dispatch {
        message: WorkMessage {
            task_id: task.id,
            tenant: task.tenant.clone(),
            correlation_id: task.correlation_id.clone(),
        },
        delay: outcome.retry_in.unwrap_or_default(),
        priority: task.priority,
    })
}

/// What became of messages whose outbox marker was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Sent {
    pub sent: usize,
    /// Not accepted by the queue: their marker was cleared so the relay sends them.
    pub unsent: usize,
}

/// Sends messages whose outbox marker is already set and clears the marker of those the queue
/// did not accept. Failures are logged, never returned: the relay covers every message not
/// sent.
pub async fn send_marked(
    queue: &dyn WorkQueue,
    store: &dyn WorkStore,
    dispatches: &[Dispatch],
) -> Sent {
    if dispatches.is_empty() {
        return Sent::default();
    }
    let sent = match queue.send(dispatches).await {
        Ok(sent) => sent,
        Err(e) => {
            tracing::warn!(error = %e, count = dispatches.len(),
                "work messages not sent; the relay will send them");
            Vec::new()
        }
    };
    let unsent: Vec<_> = dispatches
        .iter()
        .map(|d| d.message.task_id)
        .filter(|id| !sent.contains(id))
        .collect();
    if !unsent.is_empty() {
        if let Err(e) = store.clear_enqueued(&unsent).await {
            tracing::warn!(error = %e, count = unsent.len(),
                "outbox marker not cleared; the relay will send once the message counts as lost");
        }
    }
    Sent {
        sent: dispatches.len() - unsent.len(),
        unsent: unsent.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CorrelationId, Source, TaskId, TaskKind, Tenant};
    use chrono::Utc;
    use std::time::Duration;

    fn running(attempts: u32, max_attempts: u32) -> Task {
        let now = Utc::now();
        Task {
            id: TaskId::new(),
            tenant: Tenant::parse("demo").unwrap(),
            kind: TaskKind::Noop,
            payload: serde_json::json!({}),
            status: Status::Running,
            attempts,
            max_attempts,
            run_after: now,
            lease_until: Some(now),
            idempotency_key: None,
            correlation_id: CorrelationId::generate(),
            source: Source::Api,
            priority: crate::domain::Priority::High,
            deferred_reason: None,
            result: None,
            last_error: None,
            enqueued_at: None,
            created_at: now,
            updated_at: now,
            version: 3,
        }
    }

    #[test]
    fn a_retryable_failure_with_attempts_left_is_retried_within_the_backoff() {
        let backoff = Backoff {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(3600),
        };
        let task = running(3, 5);
        let error = TaskError::retryable("http_503", "unavailable");
        let o = failure_outcome(
            &task,
            LifecycleEvent::Fail { retryable: true },
            error.clone(),
            &backoff,
        )
        .unwrap();
        assert_eq!(
            (o.to, o.version, &o.error),
            (Status::Failed, 3, &Some(error))
        );
        assert!(o.retry_in.unwrap() <= Duration::from_secs(8));
        assert!(o.enqueue);
        let d = retry_dispatch(&task, &o).unwrap();
        assert_eq!(d.message.task_id, task.id);
        assert_eq!(
            d.priority, task.priority,
            "a retry travels on its task's queue"
        );
        assert_eq!(Some(d.delay), o.retry_in);
    }

    #[test]
    fn long_delays_are_left_to_the_relay_and_the_last_attempt_dies() {
        let slow = Backoff {
            base: Duration::from_secs(3600),
            cap: Duration::from_secs(3600),
        };
        let mut left_to_relay = 0;
        for _ in 0..50 {
            let o = failure_outcome(
                &running(1, 5),
                LifecycleEvent::LeaseExpired,
                TaskError::retryable("lease_expired", "x"),
                &slow,
            )
            .unwrap();
            assert_eq!(o.to, Status::Failed);
            assert_eq!(o.enqueue, o.retry_in.unwrap() <= MAX_MESSAGE_DELAY);
            left_to_relay += usize::from(!o.enqueue);
        }
        assert!(
            left_to_relay > 0,
            "most delays of up to an hour exceed 15 minutes"
        );
        let last = failure_outcome(
            &running(5, 5),
            LifecycleEvent::Fail { retryable: true },
            TaskError::retryable("http_503", "x"),
            &slow,
        )
        .unwrap();
        assert_eq!(
            (last.to, last.retry_in, last.enqueue),
            (Status::Dead, None, false)
        );
        let permanent = failure_outcome(
            &running(1, 5),
            LifecycleEvent::Fail { retryable: false },
            TaskError::permanent("http_404", "x"),
            &slow,
        )
        .unwrap();
        assert_eq!(permanent.to, Status::Dead);
        assert!(retry_dispatch(&running(1, 5), &permanent).is_none());
        assert!(failure_outcome(
            &Task {
                status: Status::Succeeded,
                ..running(1, 5)
            },
            LifecycleEvent::LeaseExpired,
            TaskError::retryable("x", "y"),
            &slow
        )
        .is_err());
    }

    #[test]
    fn an_outcome_that_ends_its_task_carries_the_lifecycle_event_and_no_other_does() {
        let task = running(2, 5);
        let dead = failure_outcome(
            &task,
            LifecycleEvent::Fail { retryable: false },
            TaskError::permanent("http_404", "gone"),
            &Backoff::default(),
        )
        .unwrap();
        let event = dead.event.expect("a dead task's event");
        assert_eq!(
            (event.detail_type.as_str(), event.subject, &event.tenant),
            ("Task Dead", *task.id.as_uuid(), &task.tenant)
        );
        assert_eq!(
            event.detail,
            serde_json::json!({
                "event_id": event.id, "tenant": "demo", "task_id": task.id, "kind": "noop",
                "status": "dead", "correlation_id": task.correlation_id.as_str(), "attempts": 2,
                "error": {"class": "permanent", "code": "http_404", "message": "gone"}
            })
        );
        let retried = failure_outcome(
            &task,
            LifecycleEvent::Fail { retryable: true },
            TaskError::retryable("http_503", "x"),
            &Backoff::default(),
        )
        .unwrap();
        assert_eq!((retried.to, retried.event), (Status::Failed, None));

        // A null result is left out, like every field the task lacks; each event its own id.
        let done = Outcome::of(
            &task,
            Status::Succeeded,
            Some(serde_json::Value::Null),
            None,
        );
        let again = Outcome::of(&task, Status::Succeeded, Some(serde_json::json!({})), None);
        let (done, again) = (done.event.unwrap(), again.event.unwrap());
        assert_eq!(done.detail.get("result"), None);
        assert_eq!(again.detail["result"], serde_json::json!({}));
        assert_ne!(done.id, again.id);
        // A notification's own delivery publishes nothing about itself.
        let delivery = Task {
            kind: TaskKind::Notification,
            ..running(1, 5)
        };
        assert_eq!(
            Outcome::of(&delivery, Status::Succeeded, None, None).event,
            None
        );
    }
}
