//! The worker with its real adapters: PostgreSQL, and SQS and S3 in the emulator.

mod support;

use std::sync::Arc;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::*;
use tms::adapters::s3::S3ObjectStore;
use tms::adapters::ses::{self, SesMailer};
use tms::adapters::sqs::{SqsWorkQueue, REASON_ATTRIBUTE};
use tms::ports::TaskRepository;
use tms::telemetry::metrics::MemorySink;
use tms::{Status, TaskKind, WorkMessage, CORRELATION_ATTRIBUTE};
use tms_testkit::aws::{enable_versioning, sdk_config, test_bucket, TestQueue};
use tms_testkit::tasks::new_task;
use tms_testkit::TestDb;
use tms_worker::executor::{EmailDelivery, EmailExecutor};
use tms_worker::{Deps, Executor, Registry, WebhookExecutor, WebhookSettings};

struct Stack {
    db: TestDb,
    queue: TestQueue,
    s3: aws_sdk_s3::Client,
    bucket: String,
    deps: Deps,
}

async fn stack(executors: impl FnOnce(Arc<S3ObjectStore>) -> Registry) -> Stack {
    let db = TestDb::new().await;
    let aws = sdk_config().await;
    let queue = TestQueue::new(&aws, Some(5)).await;
    let (s3, bucket) = test_bucket(&aws).await;
    let objects = Arc::new(S3ObjectStore::new(s3.clone(), &bucket));
    let store = Arc::new(db.store());
    let deps = Deps {
        work: store.clone(),
        submissions: store.clone(),
        triggers: store.clone(),
        subscriptions: store.clone(),
        signing: store.clone(),
        events: None,
        notifications: store,
        queue: Arc::new(
            SqsWorkQueue::new(queue.client.clone(), &queue.url)
                .with_dead_letter_queue(queue.dlq_url.clone().unwrap()),
        ),
        producers: producers(),
        executors: executors(objects),
        metrics: Arc::new(MemorySink::default()),
        settings: settings(),
    };
    Stack {
        db,
        queue,
        s3,
        bucket,
        deps,
    }
}

fn builtin(objects: Arc<S3ObjectStore>) -> Registry {
    let webhook = WebhookExecutor::new(&WebhookSettings {
        policy: Default::default(),
        timeout: std::time::Duration::from_secs(1),
    });
    Registry::builtin(objects, webhook)
}

async fn object(s: &Stack, key: &str) -> Value {
    let out =
        s.s3.get_object()
            .bucket(&s.bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{key}: {e:?}"));
    assert_eq!(out.content_type(), Some("application/json"));
    serde_json::from_slice(&out.body.collect().await.unwrap().into_bytes()).unwrap()
}

#[tokio::test]
async fn email_and_archive_tasks_store_their_documents_in_the_bucket() {
    let s = stack(builtin).await;
    let email = json!({"sender": "Alice@Example.com", "recipient": "bob@example.org",
                       "subject": "Quarterly report", "body": "Attached. ✓"});
    let archive = json!({"name": "q3", "rows": [1, 2, 3]});
    let email_task = new_task("demo", "email", email.clone(), None);
    let archive_task = new_task("acme", "archive", archive.clone(), None);
    let store = s.db.store();
    store.create(&email_task).await.unwrap();
    store.create(&archive_task).await.unwrap();
    let before = chrono::Utc::now();
    let response = handle(
        &s.deps,
        vec![
            work_record("m-1", &email_task),
            work_record("m-2", &archive_task),
        ],
    )
    .await;
    assert!(failed_ids(&response).is_empty());

    let done = store
        .get(
            &tms::Scope::Tenant(email_task.tenant.clone()),
            email_task.id,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, Status::Succeeded);
    let result = done.result.unwrap();
    assert_eq!(result["bucket"], s.bucket.as_str());
    let key = result["key"].as_str().unwrap();
    let hash = hex::encode(&Sha256::digest(b"alice@example.com")[..8]);
    let date = before.format("%Y/%m/%d").to_string();
    let millis: i64 = key
        .strip_prefix(&format!("emails/{date}/email-"))
        .and_then(|rest| rest.strip_suffix(&format!("-{hash}.json")))
        .unwrap_or_else(|| panic!("{key} is not emails/{date}/email-<millis>-{hash}.json"))
        .parse()
        .unwrap();
    assert!(millis >= before.timestamp_millis());
    assert_eq!(object(&s, key).await, email);

    let done = store
        .get(
            &tms::Scope::Tenant(archive_task.tenant.clone()),
            archive_task.id,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, Status::Succeeded);
    let key = format!(
        "archive/acme/{}/{}.json",
        done.created_at.format("%Y/%m/%d"),
        archive_task.id
    );
    assert_eq!(
        done.result.unwrap(),
        json!({"bucket": s.bucket, "key": key})
    );
    assert_eq!(object(&s, &key).await, archive);
}

#[tokio::test]
async fn an_archive_run_again_after_its_outcome_was_lost_writes_its_object_once() {
    let aws = sdk_config().await;
    let (s3, bucket) = test_bucket(&aws).await;
    enable_versioning(&s3, &bucket).await;
    let archive = tms_worker::executor::ArchiveExecutor::new(Arc::new(S3ObjectStore::new(
        s3.clone(),
        &bucket,
    )));
    let db = TestDb::new().await;
    let task = db
        .store()
        .create(&new_task("acme", "archive", json!({"name": "q4"}), None))
        .await
        .unwrap()
        .task;
    // The first run's environment died before its outcome was recorded; the task runs again.
    let first = archive.execute(&task).await.expect("the first run");
    let again = archive.execute(&task).await.expect("the run again");
    assert_eq!(first, again, "the same result");
    let versions = s3
        .list_object_versions()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = versions.versions().iter().filter_map(|v| v.key()).collect();
    assert_eq!(
        keys,
        [first["key"].as_str().unwrap()],
        "one version of one object"
    );
}

#[tokio::test]
async fn a_malformed_message_is_moved_to_the_dead_letter_queue_with_its_reason() {
    let s = stack(builtin).await;
    let response = handle(
        &s.deps,
        vec![record(
            "m-1",
            r#"{"tenant":"demo","kind":"noop"}"#,
            Some("corr-9"),
        )],
    )
    .await;
    assert!(failed_ids(&response).is_empty(), "acknowledged at once");
    let dlq = s.queue.dlq_url.clone().unwrap();
    let letters = s.queue.drain(&dlq, 1).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].body(),
        Some(r#"{"tenant":"demo","kind":"noop"}"#)
    );
    let reason = letters[0].message_attributes().unwrap()[REASON_ATTRIBUTE]
        .string_value()
        .unwrap();
    assert!(reason.contains("payload"), "{reason}");
}

#[tokio::test]
async fn a_retryable_failure_sends_a_delayed_work_message() {
    let s = stack(builtin).await;
    let hook = new_task(
        "demo",
        "webhook",
        json!({"url": "https://hooks.example.com/x"}),
        None,
    );
    let store = s.db.store();
    store.create(&hook).await.unwrap();
    let deps = Deps {
        executors: Registry::default().with(TaskKind::Webhook, Arc::new(AlwaysUnavailable)),
        ..s.deps
    };
    assert!(failed_ids(&handle(&deps, vec![work_record("m-1", &hook)]).await).is_empty());
    let failed = store
        .get(&tms::Scope::Tenant(hook.tenant.clone()), hook.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, Status::Failed);
    assert!(failed.enqueued_at.is_some());
    let messages = s.queue.drain(&s.queue.url, 1).await;
    assert_eq!(messages.len(), 1);
    let message: WorkMessage = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    assert_eq!(message.task_id, hook.id);
    assert_eq!(
        messages[0].message_attributes().unwrap()[CORRELATION_ATTRIBUTE].string_value(),
        Some(hook.correlation_id.as_str())
    );
    let dlq = s.queue.dlq_url.clone().unwrap();
    assert!(
        s.queue
            .client
            .receive_message()
            .queue_url(dlq)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default()
            .is_empty(),
        "business failures never reach the SQS dead-letter queue"
    );
}

struct AlwaysUnavailable;

#[async_trait::async_trait]
impl tms_worker::Executor for AlwaysUnavailable {
    async fn execute(&self, _: &tms::Task) -> Result<Value, tms::TaskError> {
        Err(tms::TaskError::retryable("http_503", "unavailable"))
    }
}

/// The reason attribute of each dead letter, by body.
fn reasons(letters: &[aws_sdk_sqs::types::Message]) -> Vec<(String, String)> {
    letters
        .iter()
        .map(|m| {
            let reason = m.message_attributes().unwrap()[REASON_ATTRIBUTE]
                .string_value()
                .unwrap()
                .to_owned();
            (m.body().unwrap_or_default().to_owned(), reason)
        })
        .collect()
}

#[tokio::test]
async fn a_record_the_database_refuses_is_dead_lettered_and_its_batch_runs() {
    let s = stack(builtin).await;
    // A rule of this deployment's database the domain does not know about: any constraint the
    // submit statement trips must cost only its own record.
    s.db.admin()
        .await
        .batch_execute(
            "ALTER TABLE tms.tasks ADD CONSTRAINT no_refuse CHECK (payload->>'refuse' IS NULL)",
        )
        .await
        .unwrap();
    let pointed: Vec<_> = (0..4).map(|_| tms_testkit::tasks::noop("demo")).collect();
    s.db.store().create_batch(&pointed).await.unwrap();
    let refused = r#"{"tenant":"acme","kind":"noop","payload":{"refuse":true}}"#;
    let mut records: Vec<_> = pointed
        .iter()
        .enumerate()
        .map(|(i, t)| work_record(&format!("work-{i}"), t))
        .collect();
    records.extend((0..5).map(|i| {
        record(
            &format!("sub-{i}"),
            &format!(r#"{{"tenant":"acme","kind":"noop","payload":{{"n":{i}}}}}"#),
            None,
        )
    }));
    records.insert(3, record("sub-refused", refused, None));
    assert_eq!(records.len(), 10);

    let response = handle(&s.deps, records).await;
    assert_eq!(
        failed_ids(&response),
        Vec::<String>::new(),
        "nothing comes back"
    );
    let succeeded: i64 =
        s.db.admin()
            .await
            .query_one(
                "SELECT count(*) FROM tms.tasks WHERE status = 'succeeded'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(
        succeeded, 9,
        "the four pointed tasks and five submissions ran"
    );
    let letters = s.queue.drain(&s.queue.dlq_url.clone().unwrap(), 1).await;
    let letters = reasons(&letters);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].0, refused);
    assert!(
        letters[0].1.contains("the database refused the submission"),
        "{}",
        letters[0].1
    );

    // A timestamp out of the one run_after window never reaches the database.
    let far = r#"{"tenant":"acme","kind":"noop","payload":{},"run_after":"-5000-01-01T00:00:00Z"}"#;
    let response = handle(&s.deps, vec![record("sub-far", far, None)]).await;
    assert!(failed_ids(&response).is_empty());
    let letters = reasons(&s.queue.drain(&s.queue.dlq_url.clone().unwrap(), 1).await);
    assert_eq!(letters.len(), 1);
    assert!(letters[0].1.contains("/run_after"), "{}", letters[0].1);
}

#[tokio::test]
async fn queue_submissions_are_trusted_only_for_the_tenants_of_their_producer() {
    let mut s = stack(builtin).await;
    s.deps.producers = producers_from(&format!(r#"{{"{PRODUCER}": ["acme"], "AROAOTHER": "*"}}"#));
    let own = r#"{"tenant":"acme","kind":"noop","payload":{}}"#;
    let foreign = r#"{"tenant":"demo","kind":"noop","payload":{}}"#;
    let mut unsigned = record("sub-unsigned", own, None);
    unsigned.attributes.clear();
    let response = handle(
        &s.deps,
        vec![
            record("sub-own", own, None),
            record("sub-foreign", foreign, None),
            unsigned,
        ],
    )
    .await;
    assert!(failed_ids(&response).is_empty());
    let tenants: Vec<(String, i64)> =
        s.db.admin()
            .await
            .query(
                "SELECT tenant, count(*) FROM tms.tasks GROUP BY tenant",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    assert_eq!(
        tenants,
        [("acme".to_owned(), 1)],
        "only the allowed submission became a task"
    );
    let mut letters = reasons(&s.queue.drain(&s.queue.dlq_url.clone().unwrap(), 2).await);
    letters.sort();
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(letters[0].0, own);
    assert!(letters[0].1.contains("no SenderId"), "{}", letters[0].1);
    assert_eq!(letters[1].0, foreign);
    assert!(
        letters[1].1.contains(PRODUCER) && letters[1].1.contains("tenant demo"),
        "{}",
        letters[1].1
    );

    // A role session is matched by its role's id.
    let mut session = record("sub-session", foreign, None);
    session.attributes.insert(
        tms_worker::message::SENDER_ID.into(),
        "AROAOTHER:importer-session".into(),
    );
    assert!(failed_ids(&handle(&s.deps, vec![session]).await).is_empty());

    // Without a producer map no submission is trusted; with an unreadable one they come back.
    s.deps.producers = tms_worker::producer_map(
        Arc::new(tms_testkit::fakes::StaticSecrets(Default::default())),
        None,
    );
    assert!(failed_ids(&handle(&s.deps, vec![record("sub-off", own, None)]).await).is_empty());
    let letters = reasons(&s.queue.drain(&s.queue.dlq_url.clone().unwrap(), 1).await);
    assert!(
        letters[0].1.contains("TMS_PRODUCERS_PARAM"),
        "{}",
        letters[0].1
    );
    s.deps.producers = tms_worker::producer_map(
        Arc::new(tms_testkit::fakes::StaticSecrets(Default::default())),
        Some("/missing/producers".into()),
    );
    let pointed = tms_testkit::tasks::noop("demo");
    s.db.store().create(&pointed).await.unwrap();
    let response = handle(
        &s.deps,
        vec![
            record("sub-later", own, None),
            work_record("work-1", &pointed),
        ],
    )
    .await;
    assert_eq!(
        failed_ids(&response),
        ["sub-later"],
        "only the submission waits for the map"
    );
    let done =
        s.db.store()
            .get(&tms::Scope::Tenant(pointed.tenant.clone()), pointed.id)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(done.status, Status::Succeeded);
}

/// A sending identity of its own in the emulator's SES v2: a domain, so that its senders go out
/// as themselves, verified as `make dev` verifies the local one.
async fn verified_domain(aws: &aws_config::SdkConfig) -> String {
    let domain = format!("t{}.example.com", uuid::Uuid::new_v4().simple());
    aws_sdk_sesv2::Client::new(aws)
        .create_email_identity()
        .email_identity(&domain)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create the identity {domain}: {e:?}"));
    domain
}

/// The messages the emulator's SES sent, as `GET /_aws/ses` lists them, filtered by `filter`
/// (`id` or `email`, the sender).
async fn sent_messages(filter: &str, value: &str) -> Vec<Value> {
    tms::tls::install_crypto_provider();
    let listed: Value = reqwest::Client::new()
        .get(format!("{}/_aws/ses", tms_testkit::aws::emulator_url()))
        .query(&[(filter, value)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    listed["messages"].as_array().unwrap().clone()
}

/// The built-in executors, with `email` delivered through the emulator's SES from `identity`.
fn delivering(
    objects: Arc<S3ObjectStore>,
    aws: &aws_config::SdkConfig,
    identity: &str,
) -> Registry {
    let delivery = EmailDelivery {
        mailer: Arc::new(SesMailer::new(ses::client(aws))),
        identity: identity.parse().unwrap(),
    };
    let email = EmailExecutor::new(objects.clone()).with_delivery(Some(delivery), false);
    builtin(objects).with(TaskKind::Email, Arc::new(email))
}

async fn task_of(s: &Stack, new: &tms::NewTask) -> tms::Task {
    s.db.store()
        .get(&tms::Scope::Tenant(new.tenant.clone()), new.id)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn an_email_with_deliver_is_stored_then_sent_through_ses_with_its_message_id_in_the_result() {
    let aws = sdk_config().await;
    let domain = verified_domain(&aws).await;
    let s = stack(|objects| delivering(objects, &aws, &domain)).await;
    let sender = format!("billing@{domain}");
    let message = json!({"sender": sender, "recipient": "bob@example.org",
                         "subject": "Invoice 42", "body": "Due on Friday. ✓"});
    let mut payload = message.clone();
    payload["deliver"] = json!(true);
    let task = new_task("acme", "email", payload, None);
    s.db.store().create(&task).await.unwrap();
    assert!(failed_ids(&handle(&s.deps, vec![work_record("m-1", &task)]).await).is_empty());

    let done = task_of(&s, &task).await;
    assert_eq!(done.status, Status::Succeeded, "{:?}", done.last_error);
    let result = done.result.unwrap();
    let key = result["key"].as_str().unwrap();
    let id = result["message_id"].as_str().expect("the SES message id");
    assert_eq!(result["bucket"], s.bucket.as_str());
    assert_eq!(object(&s, key).await, message, "stored as before");
    let sent = sent_messages("id", id).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["Source"], sender.as_str());
    assert_eq!(
        sent[0]["Destination"]["ToAddresses"],
        json!(["bob@example.org"])
    );
    assert_eq!(sent[0]["Subject"], "Invoice 42");
    assert_eq!(sent[0]["Body"]["text_part"], "Due on Friday. ✓");
}

#[tokio::test]
async fn an_email_ses_rejects_ends_dead_and_one_without_deliver_is_not_sent() {
    let aws = sdk_config().await;
    // The identity is configured, but SES never verified it.
    let unverified = format!("u{}.example.com", uuid::Uuid::new_v4().simple());
    let s = stack(|objects| delivering(objects, &aws, &unverified)).await;
    let sender = format!("billing@{unverified}");
    let rejected = new_task(
        "acme",
        "email",
        json!({"sender": sender, "recipient": "bob@example.org", "subject": "Hi",
               "body": "x", "deliver": true}),
        None,
    );
    let kept = new_task(
        "acme",
        "email",
        json!({"sender": sender, "recipient": "bob@example.org", "subject": "Hi", "body": "x"}),
        None,
    );
    for t in [&rejected, &kept] {
        s.db.store().create(t).await.unwrap();
    }
    let response = handle(
        &s.deps,
        vec![work_record("m-1", &rejected), work_record("m-2", &kept)],
    )
    .await;
    assert!(failed_ids(&response).is_empty());

    let dead = task_of(&s, &rejected).await;
    assert_eq!(dead.status, Status::Dead, "not retried");
    assert_eq!(dead.attempts, 1);
    let error = dead.last_error.unwrap();
    assert_eq!(error.code, "email_rejected");
    assert!(
        error.message.contains("MessageRejected") && error.message.contains(&sender),
        "{}",
        error.message
    );
    let done = task_of(&s, &kept).await;
    assert_eq!(done.status, Status::Succeeded);
    assert!(done.result.unwrap().get("message_id").is_none());
    assert!(sent_messages("email", &sender).await.is_empty());
}
