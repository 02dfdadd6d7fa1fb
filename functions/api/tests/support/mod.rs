//! An API served over real HTTP on a loopback port, backed by a fresh database and a queue of
//! its own in the emulator.

#![allow(dead_code)]

use std::sync::Arc;

use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::{Client, RequestBuilder, Response};
use serde_json::Value;
use tms::adapters::postgres::PostgresStore;
use tms::adapters::s3::S3ObjectStore;
use tms::adapters::sqs::SqsWorkQueue;
use tms::adapters::ssm::SsmSecrets;
use tms::ports::{ClaimPolicy, Outcome, TaskRepository, WorkQueue, WorkStore};
use tms::telemetry::metrics::MemorySink;
use tms::SubmissionRules;
use tms::{Status, TaskError, TaskId};
use tms_api::auth::{token_hash, TokenVerifier};
use tms_api::{router, AppState, Ports};
use tms_testkit::aws::{put_secure_parameter, sdk_config, test_bucket, TestQueue};
use tms_testkit::http::serve;
use tms_testkit::TestDb;

pub const DEMO_TOKEN: &str = "token-for-demo";
pub const ACME_TOKEN: &str = "token-for-acme";
/// Reads demo's tasks, changes nothing.
pub const VIEWER_TOKEN: &str = "token-for-demo-viewer";
/// Reads and acts on every tenant's tasks (its own tenant is `ops`).
pub const OPERATOR_TOKEN: &str = "token-for-operator";

pub struct TestApi {
    pub url: String,
    /// The SSM parameter holding the token map.
    pub token_param: String,
    pub aws: aws_config::SdkConfig,
    pub db: TestDb,
    pub queue: TestQueue,
    /// The queue of `high` tasks, when the options asked for one.
    pub high_queue: Option<TestQueue>,
    pub store: PostgresStore,
    pub metrics: Arc<MemorySink>,
    /// The API's outbox, to wait for the sends that follow a response.
    pub outbox: tms_api::outbox::Outbox,
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    pub http: Client,
}

#[derive(Default)]
pub struct Options {
    pub queue_url: Option<String>,
    pub repo: Option<Arc<dyn TaskRepository>>,
    pub rules: SubmissionRules,
    pub max_upload_bytes: Option<u64>,
    /// How long the token map is cached (the default's five minutes otherwise).
    pub token_ttl: Option<std::time::Duration>,
    /// The console's OpenID Connect provider.
    pub oidc: Option<tms_api::console::oidc::OidcSettings>,
    /// The bus lifecycle events are published to.
    pub events: Option<Arc<dyn tms::ports::EventPublisher>>,
    /// The outbox collects each request's messages and events until `outbox.settle()`, as
    /// under Lambda (otherwise it sends them from a task of their own after the response).
    pub collecting: bool,
    /// Send the work messages of `high` tasks to a queue of their own.
    pub high_queue: bool,
}

impl TestApi {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let db = TestDb::new().await;
        let aws = sdk_config().await;
        let queue = TestQueue::new(&aws, Some(5)).await;
        let param = format!("/test/{}/api-tokens", uuid::Uuid::new_v4().simple());
        let map = serde_json::json!({
            token_hash(DEMO_TOKEN): "demo",
            token_hash(ACME_TOKEN): "acme",
            token_hash(VIEWER_TOKEN): {"tenant": "demo", "role": "viewer"},
            token_hash(OPERATOR_TOKEN): {"tenant": "ops", "role": "operator"},
        });
        put_secure_parameter(&aws, &param, &map.to_string()).await;
        let store = db.store();
        let repo: Arc<dyn TaskRepository> = options.repo.unwrap_or_else(|| Arc::new(store.clone()));
        let queue_url = options.queue_url.unwrap_or_else(|| queue.url.clone());
        let high_queue = if options.high_queue {
            Some(TestQueue::new(&aws, None).await)
        } else {
            None
        };
        let work_queue: Arc<dyn WorkQueue> = Arc::new(
            SqsWorkQueue::new(queue.client.clone(), queue_url)
                .with_high_priority_queue(high_queue.as_ref().map(|q| q.url.clone())),
        );
        let metrics = Arc::new(MemorySink::default());
        let (s3, bucket) = test_bucket(&aws).await;
        let ports = Ports {
            repo,
            imports: Arc::new(store.clone()),
            objects: Arc::new(S3ObjectStore::new(s3.clone(), &bucket)),
            queue: work_queue,
            metrics: metrics.clone(),
            console: Arc::new(store.clone()),
            triggers: Arc::new(store.clone()),
            schedules: Arc::new(store.clone()),
            subscriptions: Arc::new(store.clone()),
            webhook_signing: Arc::new(store.clone()),
        };
        let secrets = Arc::new(SsmSecrets::new(aws_sdk_ssm::Client::new(&aws)));
        let mut verifier = TokenVerifier::new(secrets, Some(param.clone()));
        if let Some(ttl) = options.token_ttl {
            verifier = verifier.with_ttl(ttl);
        }
        let state = AppState::new(ports, verifier, "test-cursor-key", options.rules)
            .with_limits(Arc::new(store.clone()));
        let mut state = match options.max_upload_bytes {
            Some(bytes) => state.with_max_upload_bytes(bytes),
            None => state,
        };
        if let Some(settings) = options.oidc {
            let http = tms_api::console::oidc::http_client();
            state = state.with_oidc(tms_api::console::oidc::Oidc::new(settings, http));
        }
        if let Some(bus) = options.events {
            state = state.with_events(bus, Arc::new(store.clone()));
        }
        if options.collecting {
            state.outbox = state.outbox.collecting();
        }
        let outbox = state.outbox.clone();
        let addr = serve(router(state)).await;
        Self {
            url: format!("http://{addr}"),
            token_param: param,
            aws,
            db,
            queue,
            high_queue,
            store,
            metrics,
            outbox,
            s3,
            bucket,
            http: {
                tms::tls::install_crypto_provider();
                Client::new()
            },
        }
    }

    /// Writes `map` as the token map.
    pub async fn replace_token_map(&self, map: &Value) {
        put_secure_parameter(&self.aws, &self.token_param, &map.to_string()).await;
    }

    /// Makes the tenant's task `dead` as a worker would: claimed, then a permanent failure.
    pub async fn kill(&self, tenant: &str, id: TaskId) {
        let claimed = self
            .store
            .claim(
                &tms_testkit::tasks::pointers(tenant, &[id]),
                &ClaimPolicy::lease(std::time::Duration::from_secs(60)),
            )
            .await
            .unwrap()
            .tasks;
        assert_eq!(claimed.len(), 1, "the task is claimable");
        let recorded = self
            .store
            .record(&[Outcome::of(
                &claimed[0].task,
                Status::Dead,
                None,
                Some(TaskError::permanent("http_404", "gone")),
            )])
            .await
            .unwrap();
        assert_eq!(recorded.ids, [id]);
    }

    pub fn get(&self, path: &str, token: &str) -> RequestBuilder {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
    }

    pub fn put(&self, path: &str, token: &str, body: &Value) -> RequestBuilder {
        self.http
            .put(format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(body)
    }

    pub fn post(&self, path: &str, token: &str, body: &Value) -> RequestBuilder {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(body)
    }

    /// POST /v1/tasks as the demo tenant.
    pub async fn create(&self, body: &Value) -> Response {
        self.post("/v1/tasks", DEMO_TOKEN, body)
            .send()
            .await
            .expect("request")
    }
}

pub async fn json(resp: Response) -> Value {
    resp.json().await.expect("a JSON body")
}

pub fn is_problem(resp: &Response) -> bool {
    resp.headers()
        .get("content-type")
        .is_some_and(|ct| ct.to_str().unwrap().starts_with("application/problem+json"))
}

/// Asserts the status, that the body is a problem of that status, and returns it.
pub async fn problem(resp: Response, status: u16) -> Value {
    assert_eq!(resp.status().as_u16(), status, "status");
    assert!(
        is_problem(&resp),
        "content type {:?}",
        resp.headers().get("content-type")
    );
    assert!(resp.headers().contains_key("x-correlation-id"));
    let body = json(resp).await;
    assert_eq!(body["status"], status);
    assert!(body["type"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
    body
}

pub fn noop() -> Value {
    serde_json::json!({"kind": "noop", "payload": {}})
}

/// The `name=value` of a Set-Cookie header named `name`.
pub fn cookie(resp: &Response, name: &str) -> String {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .find(|h| h.starts_with(&format!("{name}=")))
        .map(|h| h.split(';').next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("a {name} cookie"))
}

impl TestApi {
    /// The console's page at `path` as `token` sees it, signed in as a browser would.
    pub async fn console_page(&self, token: &str, path: &str) -> String {
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap();
        let form = http
            .get(format!("{}/console/login", self.url))
            .send()
            .await
            .unwrap();
        let login = cookie(&form, "tms_login");
        let csrf = login.split_once('=').unwrap().1.to_owned();
        let signed_in = http
            .post(format!("{}/console/login", self.url))
            .header(COOKIE, &login)
            .form(&[("token", token), ("csrf", &csrf), ("next", "/console")])
            .send()
            .await
            .unwrap();
        assert_eq!(signed_in.status(), 303);
        let session = cookie(&signed_in, "tms_session");
        let page = http
            .get(format!("{}{path}", self.url))
            .header(COOKIE, session)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        page.text().await.unwrap()
    }
}
