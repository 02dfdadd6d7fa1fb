//! The worker with its real adapters: PostgreSQL, and SQS and S3 in the emulator.

mod support;

use std::sync::Arc;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::*;
use tms::adapters::s3::S3ObjectStore;
use tms::adapters::sqs::{SqsWorkQueue, REASON_ATTRIBUTE};
use tms::ports::TaskRepository;
use tms::telemetry::metrics::MemorySink;
use tms::{Status, TaskKind, WorkMessage, CORRELATION_ATTRIBUTE};
use tms_testkit::aws::{sdk_config, test_bucket, TestQueue};
use tms_testkit::tasks::new_task;
use tms_testkit::TestDb;
use tms_worker::{Deps, Registry, WebhookExecutor, WebhookSettings};

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
        submissions: store,
        queue: Arc::new(
            SqsWorkQueue::new(queue.sqs.clone(), &queue.url)
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
        .get(&email_task.tenant, email_task.id)
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
        .get(&archive_task.tenant, archive_task.id)
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
    let failed = store.get(&hook.tenant, hook.id).await.unwrap().unwrap();
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
