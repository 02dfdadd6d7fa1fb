//! The scheduler function: EventBridge schedules invoke it with the job to run as input
//! (`{"job": "relay"}`, `"reap"`, `"retention"`, `"stats"`, `"schedules"`); each job runs under an advisory lock of its own, so a second run of
//! the same job at the same time skips instead of doing the work twice.

mod config;
pub mod jobs;

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tms::adapters::postgres::{open_store, SetupError};
use tms::adapters::sqs::SqsWorkQueue;
use tms::adapters::ssm::SsmSecrets;
use tms::deadline::Deadline;
use tms::ports::{
    EventPublisher, NotificationStore, ScheduleStore, SchedulerStore, StoreError, SubmissionStore,
    WorkQueue, WorkStore,
};
use tms::telemetry::metrics::{MetricSink, StdoutSink};

pub use config::{Config, Settings};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Job {
    Relay,
    Reap,
    Retention,
    Stats,
    Schedules,
}

impl Job {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Relay => "relay",
            Self::Reap => "reap",
            Self::Retention => "retention",
            Self::Stats => "stats",
            Self::Schedules => "schedules",
        }
    }

    /// The job named by the schedule's input: `{"job": ...}`, or the same under `detail` of
    /// an EventBridge event.
    ///
    /// # Errors
    /// [`JobError::Unknown`] when no known job is named.
    pub fn from_event(event: &Value) -> Result<Self, JobError> {
        let named = event
            .get("job")
            .or_else(|| event.get("detail").and_then(|d| d.get("job")))
            .ok_or(JobError::Unknown)?;
        Job::deserialize(named).map_err(|_| JobError::Unknown)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the input names no job: expected {{\"job\": \"relay\" | \"reap\" | \"retention\" | \"stats\" | \"schedules\"}}")]
    Unknown,
    #[error("the {job} job failed: {source}")]
    Store {
        job: &'static str,
        #[source]
        source: StoreError,
    },
}

/// Everything the jobs need, built once per execution environment.
pub struct Deps {
    pub store: Arc<dyn SchedulerStore>,
    pub work: Arc<dyn WorkStore>,
    pub queue: Arc<dyn WorkQueue>,
    pub metrics: Arc<dyn MetricSink>,
    /// The `schedules` job's due schedules and bookkeeping.
    pub schedules: Arc<dyn ScheduleStore>,
    /// Creates the tasks of the schedules' fires.
    pub submissions: Arc<dyn SubmissionStore>,
    /// The deployment's event bus (none: lifecycle events wait for a scheduler that has one).
    pub events: Option<Arc<dyn EventPublisher>>,
    /// The lifecycle events not yet published.
    pub notifications: Arc<dyn NotificationStore>,
    pub settings: Settings,
}

impl Deps {
    /// The real adapters: the database pool (created without connecting) and SQS; the
    /// database password from SSM when `TMS_DATABASE_PASSWORD_PARAM` is set.
    ///
    /// # Errors
    /// [`SetupError`] when the password cannot be read or the pool cannot be set up.
    pub async fn build(config: &Config, aws: &aws_config::SdkConfig) -> Result<Self, SetupError> {
        let secrets = Arc::new(SsmSecrets::new(aws_sdk_ssm::Client::new(aws)));
        let store = Arc::new(open_store(&config.database, secrets)?);
        Ok(Self {
            store: store.clone(),
            work: store.clone(),
            schedules: store.clone(),
            submissions: store.clone(),
            events: tms::adapters::events::publisher(aws, config.event_bus.as_deref()),
            notifications: store,
            queue: Arc::new(
                SqsWorkQueue::new(aws_sdk_sqs::Client::new(aws), &config.work_queue_url)
                    .with_high_priority_queue(config.high_work_queue_url.as_deref()),
            ),
            metrics: Arc::new(StdoutSink),
            settings: config.jobs,
        })
    }
}

async fn run_job(deps: &Deps, job: Job, deadline: &Deadline) -> Result<Value, StoreError> {
    let report = match job {
        Job::Relay => json!(jobs::relay(deps, deadline).await?),
        Job::Reap => json!(jobs::reap(deps, deadline).await?),
        Job::Retention => json!(jobs::retention(deps, deadline).await?),
        Job::Stats => json!(jobs::stats(deps).await?),
        Job::Schedules => json!(jobs::schedules(deps, deadline).await?),
    };
    Ok(report)
}

/// Runs the job the event names, under its lock.
///
/// # Errors
/// [`JobError`] for an input naming no job or a job the database failed; EventBridge counts
/// the failed invocation and the next run tries again.
#[tracing::instrument(skip_all, fields(job))]
pub async fn function_handler(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let job = Job::from_event(&event.payload)?;
    tracing::Span::current().record("job", job.name());
    let deadline =
        Deadline::from_epoch_millis(event.context.deadline, deps.settings.default_budget);
    let store_error = |source| JobError::Store {
        job: job.name(),
        source,
    };
    let Some(lock) = deps.store.lock_job(job.name()).await.map_err(store_error)? else {
        tracing::info!("another run of this job holds its lock; skipped");
        return Ok(json!({"job": job, "status": "skipped"}));
    };
    let result = run_job(deps, job, &deadline).await;
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "job lock not released; its connection was closed instead");
    }
    let report = result.map_err(store_error)?;
    Ok(json!({"job": job, "status": "done", "report": report}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_comes_from_the_schedule_input() {
        for job in [
            Job::Relay,
            Job::Reap,
            Job::Retention,
            Job::Stats,
            Job::Schedules,
        ] {
            assert_eq!(Job::from_event(&json!({"job": job.name()})).unwrap(), job);
            let envelope = json!({"detail-type": "Scheduled Event", "source": "aws.events",
                                  "detail": {"job": job.name()}});
            assert_eq!(Job::from_event(&envelope).unwrap(), job);
        }
        for bad in [
            json!({}),
            json!({"job": "vacuum"}),
            json!({"job": 1}),
            json!({"detail-type": "Scheduled Event", "detail": {}}),
            json!("relay"),
        ] {
            assert!(Job::from_event(&bad).is_err(), "{bad}");
        }
    }
}
