//! The HTTP API function: an axum router that runs under Lambda (API Gateway HTTP API, payload
//! 2.0) through `lambda_http`, or as a plain HTTP server on `127.0.0.1:$TMS_API_PORT`.

pub mod auth;
mod config;
pub mod console;
pub mod correlation;
pub mod cursor;
pub mod extract;
pub mod model;
pub mod openapi;
pub mod outbox;
pub mod problem;
pub mod routes;
pub mod warm;

use std::sync::{Arc, OnceLock};

use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
use chrono::Utc;
use tms::ports::{
    ConsoleStore, Dispatch, ImportStore, LimitStore, ObjectStore, ScheduleStore, SubscriptionStore,
    TaskRepository, TriggerStore, WebhookSigningStore, WorkQueue,
};
use tms::telemetry::metrics::MetricSink;
use tms::SubmissionRules;
use tms::{Status, Task, WorkMessage};

pub use config::{Config, OidcConfig};
use problem::Problem;

/// The adapters the API talks to.
pub struct Ports {
    pub repo: Arc<dyn TaskRepository>,
    pub imports: Arc<dyn ImportStore>,
    pub objects: Arc<dyn ObjectStore>,
    pub queue: Arc<dyn WorkQueue>,
    pub metrics: Arc<dyn MetricSink>,
    pub console: Arc<dyn ConsoleStore>,
    pub triggers: Arc<dyn TriggerStore>,
    pub schedules: Arc<dyn ScheduleStore>,
    pub subscriptions: Arc<dyn SubscriptionStore>,
    pub webhook_signing: Arc<dyn WebhookSigningStore>,
}

/// Everything the handlers use, built once per execution environment.
#[derive(Clone)]
pub struct AppState {
    pub repo: Arc<dyn TaskRepository>,
    pub imports: Arc<dyn ImportStore>,
    pub objects: Arc<dyn ObjectStore>,
    pub tokens: Arc<auth::TokenVerifier>,
    /// The console's sessions and sign-ins.
    pub console: Arc<dyn ConsoleStore>,
    /// The tenants' event triggers.
    pub triggers: Arc<dyn TriggerStore>,
    /// The tenants' schedules.
    pub schedules: Arc<dyn ScheduleStore>,
    /// The tenants' webhook subscriptions.
    pub subscriptions: Arc<dyn SubscriptionStore>,
    /// The secrets that sign the tenants' webhook tasks.
    pub webhook_signing: Arc<dyn WebhookSigningStore>,
    /// The tenants' flow-control limits (`/v1/limits` answers 503 without them).
    pub limits: Option<Arc<dyn LimitStore>>,
    /// The deployment's OpenID Connect issuer, when it configures one.
    pub oidc: Option<Arc<console::oidc::Oidc>>,
    pub cursor_key: cursor::CursorKey,
    pub rules: SubmissionRules,
    /// The largest import file an upload URL is signed for.
    pub max_upload_bytes: u64,
    pub metrics: Arc<dyn MetricSink>,
    /// Sends the work messages of created tasks and sets their markers.
    pub outbox: outbox::Outbox,
    /// The work queue, for its depth (the messages go through the outbox).
    queue: Arc<dyn WorkQueue>,
    /// The OpenAPI document and the docs page, built on their first request: building them
    /// took about 3 ms of every cold start, for pages most invocations never serve.
    pages: Arc<OnceLock<Pages>>,
}

/// `/openapi.json` and `/docs`, rendered.
pub struct Pages {
    pub openapi: String,
    pub docs: String,
}

impl AppState {
    /// Reads the token map and opens the database's first connection, both at once: a cold
    /// start runs this beside its first request, which then finds them ready or on their way
    /// instead of waiting for one and then the other. A failure is only logged; the request
    /// tries again and answers for it.
    pub async fn warm_up(&self) {
        let (tokens, db) = tokio::join!(self.tokens.load(), self.repo.connect());
        if let Err(e) = tokens {
            tracing::warn!(error = %e, "the token map could not be read ahead of the first request");
        }
        if let Err(e) = db {
            tracing::warn!(error = %e, "the database could not be reached ahead of the first request");
        }
    }

    /// The OpenAPI document and the docs page, built now if this is the first call.
    pub fn pages(&self) -> &Pages {
        self.pages.get_or_init(|| Pages {
            docs: openapi::docs_page(),
            openapi: openapi::document().to_string(),
        })
    }

    pub fn new(
        ports: Ports,
        tokens: auth::TokenVerifier,
        cursor_key: &str,
        rules: SubmissionRules,
    ) -> Self {
        let Ports {
            repo,
            imports,
            objects,
            queue,
            metrics,
            console,
            triggers,
            schedules,
            subscriptions,
            webhook_signing,
        } = ports;
        Self {
            outbox: outbox::Outbox::new(queue.clone(), repo.clone()),
            queue,
            repo,
            imports,
            objects,
            tokens: Arc::new(tokens),
            console,
            triggers,
            schedules,
            subscriptions,
            webhook_signing,
            limits: None,
            oidc: None,
            cursor_key: cursor::CursorKey::new(cursor_key),
            rules,
            max_upload_bytes: tms::ImportLimits::default().max_object_bytes,
            metrics,
            pages: Arc::default(),
        }
    }

    /// The same state, publishing the lifecycle events of the tasks requests end to
    /// `publisher` after their response.
    #[must_use]
    pub fn with_events(
        mut self,
        publisher: Arc<dyn tms::ports::EventPublisher>,
        notifications: Arc<dyn tms::ports::NotificationStore>,
    ) -> Self {
        self.outbox = self.outbox.with_events(publisher, notifications);
        self
    }

    /// The same state, reading and setting the tenants' flow-control limits in `limits`.
    // NOTE: a builder rather than a field of `Ports`, so the fakes' `Ports` stay as they are.
    #[must_use]
    pub fn with_limits(mut self, limits: Arc<dyn LimitStore>) -> Self {
        self.limits = Some(limits);
        self
    }

    /// The same state, signing the console's users in through `oidc` too.
    #[must_use]
    pub fn with_oidc(mut self, oidc: console::oidc::Oidc) -> Self {
        self.oidc = Some(Arc::new(oidc));
        self
    }

    /// The same state, signing upload URLs for files of at most `bytes`.
    #[must_use]
    pub fn with_max_upload_bytes(mut self, bytes: u64) -> Self {
        self.max_upload_bytes = bytes;
        self
    }

    /// About how many work messages wait in the queue; `None` when the queue cannot tell, the
    /// function may not read it, or it does not answer within a second.
    pub async fn queue_waiting(&self) -> Option<u64> {
        match tokio::time::timeout(std::time::Duration::from_secs(1), self.queue.waiting()).await {
            Ok(Ok(waiting)) => waiting,
            Ok(Err(e)) => {
                tracing::info!(error = %e, "the work queue's depth cannot be read");
                None
            }
            Err(_) => None,
        }
    }

    /// Hands the work messages of pending tasks due within 15 minutes to the outbox, which
    /// sends them after the response and then sets their markers (see [`outbox`]). A failed
    /// send is logged and left to the relay: the tasks are durable already.
    pub fn enqueue(&self, tasks: &[Task]) {
        let now = Utc::now();
        let dispatches: Vec<Dispatch> = tasks
            .iter()
            .filter(|t| t.status == Status::Pending)
            .filter_map(|t| {
                let message = WorkMessage {
                    task_id: t.id,
                    tenant: t.tenant.clone(),
                    correlation_id: t.correlation_id.clone(),
                };
                Dispatch::when_due(message, t.run_after, now).map(|d| d.with_priority(t.priority))
            })
            .collect();
        self.outbox.submit(dispatches);
    }
}

/// Why the API could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Store(#[from] tms::adapters::postgres::SetupError),
    #[error("cannot read the OpenID Connect client secret {0}: {1}")]
    OidcSecret(String, tms::ports::SecretsError),
}

/// The API as a deployment builds it, routed: see [`build_state`].
///
/// # Errors
/// See [`build_state`].
pub async fn build_router(
    config: &Config,
    aws: &aws_config::SdkConfig,
) -> Result<Router, BuildError> {
    Ok(router(build_state(config, aws).await?))
}

/// The state of the API as a deployment builds it: the database pool (created without
/// connecting), S3, SQS, the token map in SSM and, when configured, the console's OpenID
/// Connect client, from `config`.
///
/// # Errors
/// When the database settings can never work, or a confidential OIDC client's secret cannot
/// be read (read at start-up: a deployment with a public client, PKCE alone, reads none).
pub async fn build_state(
    config: &Config,
    aws: &aws_config::SdkConfig,
) -> Result<AppState, BuildError> {
    use tms::adapters::postgres::open_store;
    use tms::adapters::s3::{self, S3ObjectStore};
    use tms::adapters::{sqs::SqsWorkQueue, ssm::SsmSecrets};

    let secrets: Arc<dyn tms::ports::Secrets> =
        Arc::new(SsmSecrets::new(aws_sdk_ssm::Client::new(aws)));
    let store = Arc::new(open_store(&config.database, secrets.clone())?);
    let notifications: Arc<dyn tms::ports::NotificationStore> = store.clone();
    let limits: Arc<dyn LimitStore> = store.clone();
    let ports = Ports {
        repo: store.clone(),
        imports: store.clone(),
        console: store.clone(),
        triggers: store.clone(),
        schedules: store.clone(),
        subscriptions: store.clone(),
        webhook_signing: store,
        objects: Arc::new(S3ObjectStore::new(s3::client(aws), &config.bucket)),
        queue: Arc::new(
            SqsWorkQueue::new(aws_sdk_sqs::Client::new(aws), &config.work_queue_url)
                .with_high_priority_queue(config.high_work_queue_url.as_deref()),
        ),
        metrics: Arc::new(tms::telemetry::metrics::StdoutSink),
    };
    let tokens = auth::TokenVerifier::new(secrets.clone(), config.tokens_param.clone());
    let mut state = AppState::new(ports, tokens, &config.cursor_key, config.rules)
        .with_max_upload_bytes(config.max_upload_bytes)
        .with_limits(limits);
    if let Some(publisher) = tms::adapters::events::publisher(aws, config.event_bus.as_deref()) {
        state = state.with_events(publisher, notifications);
    }
    if let Some(oidc) = &config.oidc {
        let client_secret = match &oidc.client_secret_param {
            Some(name) => Some(
                secrets
                    .get(name)
                    .await
                    .map_err(|e| BuildError::OidcSecret(name.clone(), e))?,
            ),
            None => None,
        };
        let settings = console::oidc::OidcSettings {
            issuer: oidc.issuer.clone(),
            client_id: oidc.client_id.clone(),
            client_secret,
            scopes: oidc.scopes.clone(),
        };
        state = state.with_oidc(console::oidc::Oidc::new(
            settings,
            console::oidc::http_client(),
        ));
    }
    Ok(state)
}

async fn not_found() -> Problem {
    Problem::not_found("no such route")
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    use routes::{
        imports, limits, schedules, stats, subscriptions, system, tasks, triggers, webhook_signing,
    };
    let v1 = Router::new()
        .route("/v1/tasks", post(tasks::create_task).get(tasks::list_tasks))
        .route("/v1/tasks/batch", post(tasks::create_batch))
        .route("/v1/tasks/cancel", post(tasks::bulk_cancel))
        .route("/v1/tasks/redrive", post(tasks::bulk_redrive))
        .route("/v1/stats", get(stats::stats))
        .route(
            "/v1/limits",
            get(limits::get_limits).put(limits::put_limits),
        )
        .route("/v1/tasks/{id}", get(tasks::get_task))
        .route("/v1/tasks/{id}/events", get(tasks::task_events))
        .route("/v1/tasks/{id}/cancel", post(tasks::cancel_task))
        .route("/v1/tasks/{id}/redrive", post(tasks::redrive_task))
        .route(
            "/v1/imports",
            post(imports::create_import).get(imports::list_imports),
        )
        .route("/v1/imports/{id}", get(imports::get_import))
        .route(
            "/v1/triggers",
            post(triggers::create_trigger).get(triggers::list_triggers),
        )
        .route(
            "/v1/triggers/{id}",
            get(triggers::get_trigger).delete(triggers::delete_trigger),
        )
        .route(
            "/v1/schedules",
            post(schedules::create_schedule).get(schedules::list_schedules),
        )
        .route(
            "/v1/schedules/{id}",
            get(schedules::get_schedule)
                .patch(schedules::update_schedule)
                .delete(schedules::delete_schedule),
        )
        .route(
            "/v1/subscriptions",
            post(subscriptions::create_subscription).get(subscriptions::list_subscriptions),
        )
        .route(
            "/v1/subscriptions/{id}",
            get(subscriptions::get_subscription)
                .patch(subscriptions::update_subscription)
                .delete(subscriptions::delete_subscription),
        )
        .route(
            "/v1/subscriptions/{id}/rotate-secret",
            post(subscriptions::rotate_secret),
        )
        .route(
            "/v1/subscriptions/{id}/test",
            post(subscriptions::test_subscription),
        )
        .route(
            "/v1/webhook-signing",
            get(webhook_signing::get_signing)
                .put(webhook_signing::put_signing)
                .delete(webhook_signing::delete_signing),
        )
        .route(
            "/v1/webhook-signing/rotate",
            post(webhook_signing::rotate_signing),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    Router::new()
        .route("/health", get(system::health))
        .route("/openapi.json", get(system::openapi))
        .route("/docs", get(system::docs))
        .merge(v1)
        .merge(console::routes())
        .fallback(not_found)
        .with_state(state)
        .merge(swagger_ui_dist::generate_routes(
            swagger_ui_dist::ApiDefinition {
                uri_prefix: openapi::DOCS_ASSETS,
                api_definition: swagger_ui_dist::OpenApiSource::Uri("/openapi.json"),
                title: Some("TMS API reference"),
            },
        ))
        .layer(middleware::from_fn(correlation::correlate))
}
