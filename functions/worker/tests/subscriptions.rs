//! Subscriptions and signed webhooks against the real database and a real HTTP receiver on
//! loopback: TMS's own lifecycle events on the work queue become one `notification` task per
//! matching subscription (once per event, however often it arrives), delivered in the same
//! invocation with the Standard Webhooks headers, and every signature is checked by the
//! reference implementation (the Python `standardwebhooks` library), during a rotation's
//! overlap with each of the two secrets. Deliveries publish no lifecycle events of their own.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use support::*;
use tms::adapters::postgres::PostgresStore;
use tms::domain::subscription::ROTATION_OVERLAP;
use tms::domain::webhook::WebhookPolicy;
use tms::notification::{IMPORT_COMPLETED, TASK_DEAD, TASK_SUCCEEDED};
use tms::ports::{
    NotificationStore, SubscriptionStore, TaskFilter, TaskRepository, WebhookSigningStore,
};
use tms::telemetry::metrics::MemorySink;
use tms::{
    Notification, Scope, SigningSecret, SourceKind, Status, Subscription, SubscriptionFields, Task,
    TaskKind, Tenant,
};
use tms_testkit::fakes::{MemoryBus, NoObjects};
use tms_testkit::tasks::new_task;
use tms_testkit::webhooks::{verify_standard_webhooks, Received, Receiver};
use tms_testkit::TestDb;
use tms_worker::{Registry, WebhookExecutor, WebhookSettings};

/// The account of the queue the test records come from (see `support::record`).
const OWN_ACCOUNT: &str = "000000000000";
const WAIT: Duration = Duration::from_secs(10);

fn policy() -> WebhookPolicy {
    "http,loopback".parse().unwrap()
}

struct Fixture {
    db: TestDb,
    store: PostgresStore,
    bus: Arc<MemoryBus>,
    queue: Arc<MemoryQueue>,
    receiver: Receiver,
    deps: tms_worker::Deps,
}

async fn fixture() -> Fixture {
    let db = TestDb::new().await;
    let store = db.store();
    let bus = Arc::new(MemoryBus::default());
    let queue = Arc::new(MemoryQueue::default());
    let webhook = WebhookExecutor::new(&WebhookSettings {
        policy: policy(),
        timeout: Duration::from_secs(5),
    });
    let mut deps = pg_deps(
        &store,
        queue.clone(),
        Registry::builtin(Arc::new(NoObjects), webhook),
        Arc::new(MemorySink::default()),
    );
    deps.events = Some(bus.clone());
    Fixture {
        db,
        store,
        bus,
        queue,
        receiver: Receiver::start().await,
        deps,
    }
}

fn tenant(name: &str) -> Tenant {
    Tenant::parse(name).unwrap()
}

impl Fixture {
    async fn subscribe(
        &self,
        tenant_name: &str,
        path: &str,
        types: &[&str],
        kinds: Option<&[&str]>,
    ) -> Subscription {
        let s = Subscription::create(
            tenant(tenant_name),
            SubscriptionFields {
                url: self.receiver.url(path),
                event_types: types.iter().map(|t| (*t).to_owned()).collect(),
                kinds: kinds.map(|ks| ks.iter().map(|k| (*k).to_owned()).collect()),
            },
            &policy(),
            Utc::now(),
        )
        .unwrap();
        self.store.create_subscription(&s).await.unwrap();
        s
    }

    /// Runs a task of `tenant_name` to its end and returns the lifecycle event it published.
    async fn ended(&self, tenant_name: &str, payload: Value) -> (tms::NewTask, Notification) {
        let task = new_task(tenant_name, "noop", payload, None);
        self.store.create(&task).await.unwrap();
        let before = self.bus.events().len();
        let response = handle(
            &self.deps,
            vec![work_record(&format!("w-{}", task.id), &task)],
        )
        .await;
        assert!(failed_ids(&response).is_empty());
        let events = self.bus.events();
        assert_eq!(events.len(), before + 1, "the task's end was published");
        (task, events.last().unwrap().clone())
    }

    async fn deliveries(&self, tenant_name: &str) -> Vec<Task> {
        self.store
            .list(
                &Scope::Tenant(tenant(tenant_name)),
                &tms::ports::ListQuery {
                    filter: TaskFilter {
                        source: Some(SourceKind::Subscription),
                        ..TaskFilter::default()
                    },
                    limit: 100,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
    }

    async fn task(&self, id: tms::TaskId) -> Task {
        self.store.get(&Scope::All, id).await.unwrap().unwrap()
    }
}

/// The event as the bus's rule delivers it to the work queue: an EventBridge envelope (whose
/// own id differs each time the event is published) from `account`.
fn envelope(event: &Notification, account: &str) -> String {
    json!({
        "version": "0", "id": uuid::Uuid::new_v4(), "detail-type": event.detail_type,
        "source": "tms", "account": account,
        "time": event.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": "us-east-1", "resources": [], "detail": event.detail
    })
    .to_string()
}

fn verified_by(secret: &SigningSecret, requests: &[Received]) -> Vec<Result<(), String>> {
    verify_standard_webhooks(secret.expose(), requests)
}

#[tokio::test]
async fn a_lifecycle_event_is_delivered_once_to_each_matching_subscription_signed() {
    let f = fixture().await;
    let noop_successes = f
        .subscribe("acme", "/a", &[TASK_SUCCEEDED], Some(&["noop"]))
        .await;
    let deaths = f.subscribe("acme", "/b", &[TASK_DEAD], None).await;
    let webhook_successes = f
        .subscribe("acme", "/c", &[TASK_SUCCEEDED], Some(&["webhook"]))
        .await;
    let other_tenant = f.subscribe("globex", "/d", &[TASK_SUCCEEDED], None).await;
    let (task, event) = f.ended("acme", json!({})).await;

    let response = handle(
        &f.deps,
        vec![record("e-1", &envelope(&event, OWN_ACCOUNT), None)],
    )
    .await;
    assert!(failed_ids(&response).is_empty());
    let received = f.receiver.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1, "{received:?}");
    let got = &received[0];
    assert_eq!(got.path, "/a", "only the subscription to noop successes");
    assert_eq!(
        got.header("webhook-id"),
        Some(event.id.to_string().as_str())
    );
    assert_eq!(got.header("content-type"), Some("application/json"));
    let sent_at: i64 = got.header("webhook-timestamp").unwrap().parse().unwrap();
    assert!((Utc::now().timestamp() - sent_at).abs() < 60);
    assert_eq!(
        got.json(),
        // The event's time as the bus's envelope carries it: to the second.
        json!({"type": TASK_SUCCEEDED,
               "timestamp": chrono::DateTime::from_timestamp(event.created_at.timestamp(), 0)
                   .unwrap()
                   .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
               "data": event.detail}),
    );
    assert_eq!(got.json()["data"]["task_id"], json!(task.id.to_string()));
    assert_eq!(
        verified_by(&noop_successes.keys.current, &received),
        [Ok(())]
    );
    assert!(
        verified_by(&deaths.keys.current, &received)[0].is_err(),
        "another subscription's secret does not verify it"
    );
    let mut tampered = received[0].clone();
    tampered.body = br#"{"type":"Task Succeeded","data":{}}"#.to_vec();
    assert!(verified_by(&noop_successes.keys.current, &[tampered])[0].is_err());

    let delivered = f.deliveries("acme").await;
    assert_eq!(delivered.len(), 1);
    let delivery = &delivered[0];
    assert_eq!(delivery.kind, TaskKind::Notification);
    assert_eq!(
        delivery.status,
        Status::Succeeded,
        "run in the same invocation"
    );
    assert_eq!(
        delivery.idempotency_key.as_deref(),
        Some(format!("notification:{}:{}", event.id, noop_successes.id).as_str())
    );
    assert_eq!(
        delivery.correlation_id, task.correlation_id,
        "the event's correlation id"
    );
    assert!(
        f.deliveries("globex").await.is_empty(),
        "{other_tenant:?} is another tenant's"
    );
    let _ = (deaths, webhook_successes);

    // The same event again: redelivered by the queue, and published again by the relay (a new
    // envelope id, the same event id). Nothing more is created or sent.
    let again = envelope(&event, OWN_ACCOUNT);
    let response = handle(
        &f.deps,
        vec![
            record("e-2", &again, None),
            record("e-3", &envelope(&event, OWN_ACCOUNT), None),
        ],
    )
    .await;
    assert!(failed_ids(&response).is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(f.receiver.received().len(), 1, "delivered once");
    assert_eq!(f.deliveries("acme").await.len(), 1);
}

#[tokio::test]
async fn deliveries_publish_no_lifecycle_events_of_their_own() {
    let f = fixture().await;
    f.subscribe("acme", "/all", &[TASK_SUCCEEDED, TASK_DEAD], None)
        .await;
    let (_, event) = f.ended("acme", json!({})).await;
    let published = f.bus.events().len();
    handle(
        &f.deps,
        vec![record("e-1", &envelope(&event, OWN_ACCOUNT), None)],
    )
    .await;
    let delivery = f.deliveries("acme").await.remove(0);
    assert_eq!(delivery.status, Status::Succeeded);
    assert_eq!(
        f.bus.events().len(),
        published,
        "the delivery's success is not published"
    );
    assert!(f
        .store
        .unpublished_of(&[*delivery.id.as_uuid()])
        .await
        .unwrap()
        .is_empty());

    // Nor is a delivery's cancellation (the API's path to an end).
    f.receiver.answer(503);
    let (_, second) = f.ended("acme", json!({})).await;
    handle(
        &f.deps,
        vec![record("e-2", &envelope(&second, OWN_ACCOUNT), None)],
    )
    .await;
    let waiting = f
        .deliveries("acme")
        .await
        .into_iter()
        .find(|t| t.status == Status::Failed)
        .expect("a delivery waiting for its retry");
    let cancelled = f
        .store
        .cancel(&Scope::All, waiting.id, &waiting.correlation_id)
        .await
        .unwrap();
    assert!(
        matches!(cancelled, tms::ports::CommandOutcome::Done(ref t) if t.status == Status::Cancelled)
    );
    assert!(f
        .store
        .unpublished_of(&[*waiting.id.as_uuid()])
        .await
        .unwrap()
        .is_empty());
    let kept: i64 =
        f.db.admin()
            .await
            .query_one(
                "SELECT count(*) FROM tms.notifications WHERE detail->>'kind' = 'notification'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(kept, 0);
}

#[tokio::test]
async fn a_retried_delivery_keeps_its_id_and_is_signed_at_each_attempt() {
    let f = fixture().await;
    let s = f.subscribe("acme", "/flaky", &[TASK_SUCCEEDED], None).await;
    let (_, event) = f.ended("acme", json!({})).await;
    f.receiver.answer(503);
    handle(
        &f.deps,
        vec![record("e-1", &envelope(&event, OWN_ACCOUNT), None)],
    )
    .await;
    let delivery = f.deliveries("acme").await.remove(0);
    assert_eq!(delivery.status, Status::Failed);
    assert_eq!(delivery.last_error.as_ref().unwrap().code, "http_503");
    let retry = f
        .queue
        .sent
        .lock()
        .unwrap()
        .iter()
        .find(|d| d.message.task_id == delivery.id)
        .cloned()
        .expect("a retry message");
    f.receiver.answer(200);
    tokio::time::sleep(retry.delay + Duration::from_millis(100)).await;
    let body = serde_json::to_string(&retry.message).unwrap();
    handle(&f.deps, vec![record("w-retry", &body, None)]).await;
    assert_eq!(f.task(delivery.id).await.status, Status::Succeeded);
    let received = f.receiver.received();
    assert_eq!(received.len(), 2);
    assert_eq!(
        received[0].header("webhook-id"),
        received[1].header("webhook-id")
    );
    assert_eq!(
        received[0].body, received[1].body,
        "the same body each time"
    );
    assert_eq!(verified_by(&s.keys.current, &received), [Ok(()), Ok(())]);
}

#[tokio::test]
async fn during_a_rotation_each_delivery_is_signed_with_both_secrets() {
    let f = fixture().await;
    let s = f
        .subscribe("acme", "/rotating", &[TASK_SUCCEEDED], None)
        .await;
    let old = s.keys.current.clone();
    let new = SigningSecret::generate();
    let rotated = f
        .store
        .rotate_subscription_secret(&Scope::All, s.id, &new, Utc::now() + ROTATION_OVERLAP)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rotated.keys.previous.as_ref(), Some(&old));
    let (_, event) = f.ended("acme", json!({})).await;
    handle(
        &f.deps,
        vec![record("e-1", &envelope(&event, OWN_ACCOUNT), None)],
    )
    .await;
    let received = f.receiver.wait_for(1, WAIT).await;
    let signatures: Vec<&str> = received[0]
        .header("webhook-signature")
        .unwrap()
        .split(' ')
        .collect();
    assert_eq!(signatures.len(), 2, "{signatures:?}");
    assert!(signatures.iter().all(|s| s.starts_with("v1,")));
    assert_eq!(
        verified_by(&new, &received),
        [Ok(())],
        "the new secret verifies"
    );
    assert_eq!(
        verified_by(&old, &received),
        [Ok(())],
        "and so does the old one"
    );
    assert!(verified_by(&SigningSecret::generate(), &received)[0].is_err());

    // Once the overlap is over, only the new secret signs.
    f.db.admin()
        .await
        .execute(
            "UPDATE tms.subscriptions SET previous_until = now() - interval '1 second' WHERE id = $1",
            &[s.id.as_uuid()],
        )
        .await
        .unwrap();
    let (_, later) = f.ended("acme", json!({})).await;
    handle(
        &f.deps,
        vec![record("e-2", &envelope(&later, OWN_ACCOUNT), None)],
    )
    .await;
    let received = f.receiver.wait_for(2, WAIT).await;
    assert_eq!(
        received[1]
            .header("webhook-signature")
            .unwrap()
            .split(' ')
            .count(),
        1
    );
    assert_eq!(verified_by(&new, &received[1..]), [Ok(())]);
    assert!(verified_by(&old, &received[1..])[0].is_err());
}

#[tokio::test]
async fn a_deleted_subscriptions_deliveries_end_dead_without_a_call() {
    let f = fixture().await;
    let s = f.subscribe("acme", "/gone", &[TASK_SUCCEEDED], None).await;
    let (_, event) = f.ended("acme", json!({})).await;
    f.receiver.answer(503);
    handle(
        &f.deps,
        vec![record("e-1", &envelope(&event, OWN_ACCOUNT), None)],
    )
    .await;
    let delivery = f.deliveries("acme").await.remove(0);
    assert_eq!(delivery.status, Status::Failed);
    assert!(f
        .store
        .delete_subscription(&Scope::All, s.id)
        .await
        .unwrap());
    let retry = f
        .queue
        .sent
        .lock()
        .unwrap()
        .iter()
        .find(|d| d.message.task_id == delivery.id)
        .cloned()
        .unwrap();
    tokio::time::sleep(retry.delay + Duration::from_millis(100)).await;
    handle(
        &f.deps,
        vec![record(
            "w-1",
            &serde_json::to_string(&retry.message).unwrap(),
            None,
        )],
    )
    .await;
    let dead = f.task(delivery.id).await;
    assert_eq!(dead.status, Status::Dead);
    let error = dead.last_error.unwrap();
    assert_eq!(error.code, "subscription_deleted");
    assert!(
        error.message.contains(&s.id.to_string()),
        "{}",
        error.message
    );
    assert_eq!(f.receiver.received().len(), 1, "no call after the deletion");
}

#[tokio::test]
async fn a_tms_event_from_another_account_is_dead_lettered_and_delivers_nothing() {
    let f = fixture().await;
    f.subscribe("acme", "/a", &[TASK_SUCCEEDED, IMPORT_COMPLETED], None)
        .await;
    let (_, event) = f.ended("acme", json!({})).await;
    let response = handle(
        &f.deps,
        vec![record("e-1", &envelope(&event, "999988887777"), None)],
    )
    .await;
    assert!(failed_ids(&response).is_empty(), "settled, not retried");
    let dead_letters = f.queue.dead_letters.lock().unwrap().clone();
    assert_eq!(dead_letters.len(), 1);
    assert!(
        dead_letters[0].1.contains("999988887777") && dead_letters[0].1.contains(OWN_ACCOUNT),
        "{dead_letters:?}"
    );
    assert!(f.deliveries("acme").await.is_empty());
    assert!(f.receiver.received().is_empty());
}

#[tokio::test]
async fn a_tenants_webhook_tasks_are_signed_while_it_has_a_secret() {
    let f = fixture().await;
    let acme = tenant("acme");
    let first = f
        .store
        .set_webhook_signing(&acme, &SigningSecret::generate())
        .await
        .unwrap()
        .keys
        .current;
    let webhook = |tenant_name: &str, path: &str| {
        let mut task = new_task(
            tenant_name,
            "webhook",
            json!({"url": "https://placeholder.example/", "body": {"order": 42, "note": "ünïcode"},
                   "headers": {"X-Partner": "p-1", "webhook-signature": "v1,forged"}}),
            None,
        );
        task.payload["url"] = json!(f.receiver.url(path));
        task
    };
    let signed = webhook("acme", "/signed");
    let unsigned = webhook("globex", "/unsigned");
    for t in [&signed, &unsigned] {
        f.store.create(t).await.unwrap();
    }
    handle(
        &f.deps,
        vec![work_record("w-1", &signed), work_record("w-2", &unsigned)],
    )
    .await;
    let received = f.receiver.wait_for(2, WAIT).await;
    let at = |path: &str| received.iter().find(|r| r.path == path).unwrap().clone();
    let signed_call = at("/signed");
    assert_eq!(
        signed_call.header("webhook-id"),
        Some(signed.id.to_string().as_str())
    );
    assert_eq!(signed_call.header("x-partner"), Some("p-1"));
    assert!(
        !signed_call
            .header("webhook-signature")
            .unwrap()
            .contains("forged"),
        "the task's own signature header is replaced"
    );
    assert_eq!(signed_call.json(), json!({"order": 42, "note": "ünïcode"}));
    assert_eq!(
        verify_standard_webhooks(first.expose(), std::slice::from_ref(&signed_call)),
        [Ok(())]
    );
    let unsigned_call = at("/unsigned");
    assert_eq!(
        unsigned_call.header("webhook-id"),
        None,
        "globex has no secret"
    );
    assert_eq!(unsigned_call.header("webhook-signature"), Some("v1,forged"));

    // Rotated: both secrets verify the next call.
    let second = SigningSecret::generate();
    f.store
        .rotate_webhook_signing(&acme, &second, Utc::now() + ROTATION_OVERLAP)
        .await
        .unwrap()
        .unwrap();
    let next = webhook("acme", "/rotated");
    f.store.create(&next).await.unwrap();
    handle(&f.deps, vec![work_record("w-3", &next)]).await;
    let received = f.receiver.wait_for(3, WAIT).await;
    let rotated_call = received
        .iter()
        .find(|r| r.path == "/rotated")
        .unwrap()
        .clone();
    assert_eq!(
        verify_standard_webhooks(second.expose(), std::slice::from_ref(&rotated_call)),
        [Ok(())]
    );
    assert_eq!(
        verify_standard_webhooks(first.expose(), &[rotated_call]),
        [Ok(())]
    );

    // Removed: the next call is unsigned.
    assert!(f.store.delete_webhook_signing(&acme).await.unwrap());
    let last = webhook("acme", "/after");
    f.store.create(&last).await.unwrap();
    handle(&f.deps, vec![work_record("w-4", &last)]).await;
    let received = f.receiver.wait_for(4, WAIT).await;
    let after = received.iter().find(|r| r.path == "/after").unwrap();
    assert_eq!(after.header("webhook-id"), None);
    assert_eq!(f.task(last.id).await.status, Status::Succeeded);
}
