//! The worker function: consumes the work queue in batches (SQS event source mapping with
//! `ReportBatchItemFailures`), runs each claimable task once with exactly-once state, retries
//! failures with backoff, turns what cannot succeed into `dead` tasks, and moves malformed
//! messages to the dead-letter queue.

mod batch;
mod config;
pub mod executor;
pub mod message;
pub mod producers;

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use tms::adapters::postgres::{open_store_planning, Planning, SetupError};
use tms::adapters::s3::{self, S3ObjectStore};
use tms::adapters::ses::{self, SesMailer};
use tms::adapters::sqs::SqsWorkQueue;
use tms::adapters::ssm::SsmSecrets;
use tms::cache::CachedSecret;
use tms::deadline::Deadline;
use tms::ports::{
    EventPublisher, NotificationStore, Secrets, SigningLookup, SubmissionStore, SubscriptionStore,
    TriggerStore, WorkQueue, WorkStore,
};
use tms::telemetry::metrics::{MetricSink, StdoutSink};

pub use config::{Config, EmailSettings, Settings, WebhookSettings};
pub use executor::{Executor, Registry, WebhookExecutor};
pub use producers::{parse_producer_map, ProducerMap};

/// Everything a batch needs, built once per execution environment.
pub struct Deps {
    pub work: Arc<dyn WorkStore>,
    pub submissions: Arc<dyn SubmissionStore>,
    /// The tenants' event triggers.
    pub triggers: Arc<dyn TriggerStore>,
    /// The tenants' webhook subscriptions, which TMS's own lifecycle events are delivered to.
    pub subscriptions: Arc<dyn SubscriptionStore>,
    /// The signing keys of webhook tasks and deliveries.
    pub signing: Arc<dyn SigningLookup>,
    /// The deployment's event bus, for lifecycle events (none: the relay publishes them).
    pub events: Option<Arc<dyn EventPublisher>>,
    /// The lifecycle events not yet published.
    pub notifications: Arc<dyn NotificationStore>,
    pub queue: Arc<dyn WorkQueue>,
    /// Who may submit tasks for which tenant on the queue (`TMS_PRODUCERS_PARAM`).
    pub producers: CachedSecret<ProducerMap>,
    pub executors: Registry,
    pub metrics: Arc<dyn MetricSink>,
    pub settings: Settings,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Database(#[from] SetupError),
}

impl Deps {
    /// The real adapters: the database pool (created without connecting), SQS, S3 and the
    /// webhook client; the database password from SSM when `TMS_DATABASE_PASSWORD_PARAM` is set.
    ///
    /// # Errors
    /// [`BuildError`] when the password cannot be read or a client cannot be set up.
    pub async fn build(config: &Config, aws: &aws_config::SdkConfig) -> Result<Self, BuildError> {
        let secrets: Arc<dyn Secrets> = Arc::new(SsmSecrets::new(aws_sdk_ssm::Client::new(aws)));
        // The claim and the record are large statements looked up by id: planned once.
        let store = Arc::new(open_store_planning(
            &config.database,
            secrets.clone(),
            Planning::Once,
        )?);
        let queue = SqsWorkQueue::new(aws_sdk_sqs::Client::new(aws), &config.work_queue_url)
            .with_high_priority_queue(config.high_work_queue_url.as_deref())
            .with_dead_letter_queue(&config.work_dlq_url);
        let objects = Arc::new(S3ObjectStore::new(s3::client(aws), &config.bucket));
        let email = executor::EmailExecutor::new(objects.clone()).with_delivery(
            email_delivery(&config.email, aws),
            config.email.deliver_by_default,
        );
        Ok(Self {
            work: store.clone(),
            submissions: store.clone(),
            triggers: store.clone(),
            subscriptions: store.clone(),
            signing: store.clone(),
            events: tms::adapters::events::publisher(aws, config.event_bus.as_deref()),
            notifications: store,
            queue: Arc::new(queue),
            producers: producer_map(secrets, config.producers_param.clone()),
            executors: Registry::builtin(objects, WebhookExecutor::new(&config.webhook))
                .with(tms::TaskKind::Email, Arc::new(email)),
            metrics: Arc::new(StdoutSink),
            settings: config.batch,
        })
    }
}

/// Delivery through SES v2 from the configured identity; none without one.
fn email_delivery(
    settings: &EmailSettings,
    aws: &aws_config::SdkConfig,
) -> Option<executor::EmailDelivery> {
    settings
        .identity
        .clone()
        .map(|identity| executor::EmailDelivery {
            mailer: Arc::new(SesMailer::new(ses::client(aws))),
            identity,
        })
}

/// The producer map named `param`, read through `secrets` and cached.
pub fn producer_map(secrets: Arc<dyn Secrets>, param: Option<String>) -> CachedSecret<ProducerMap> {
    CachedSecret::new(secrets, param, parse_producer_map)
}

/// Handles one batch. Never fails as a whole: every record the batch could not settle is
/// listed in `batchItemFailures` and comes back after the visibility timeout.
///
/// # Errors
/// None in practice; the signature is the runtime's.
#[tracing::instrument(skip_all, fields(records = event.payload.records.len()))]
pub async fn function_handler(
    deps: &Deps,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let deadline =
        Deadline::from_epoch_millis(event.context.deadline, deps.settings.default_budget);
    let failures = batch::process(deps, &event.payload.records, deadline).await;
    let mut response = SqsBatchResponse::default();
    for id in failures {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    Ok(response)
}
