//! The importer against the real database and the emulator: objects in a bucket of its own,
//! notifications built as S3 sends them (or delivered by the emulator itself), tasks in a fresh
//! database, work messages in a queue of its own.

use std::io::Write;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use tms::adapters::postgres::PostgresStore;
use tms::adapters::s3::S3ObjectStore;
use tms::adapters::sqs::SqsWorkQueue;
use tms::ports::ImportStore;
use tms::telemetry::metrics::{parse_emf, MemorySink};
use tms::{ImportStatus, WorkMessage};
use tms_importer::{function_handler, Deps};
use tms_testkit::aws::{sdk_config, test_bucket, TestQueue};
use tms_testkit::tasks::tenant;
use tms_testkit::TestDb;

struct Harness {
    db: TestDb,
    store: PostgresStore,
    s3: aws_sdk_s3::Client,
    bucket: String,
    queue: TestQueue,
    metrics: Arc<MemorySink>,
    deps: Deps,
}

async fn harness(versioned: bool, enqueue: bool) -> Harness {
    let db = TestDb::new().await;
    let aws = sdk_config().await;
    let (s3, bucket) = test_bucket(&aws).await;
    if versioned {
        tms_testkit::aws::enable_versioning(&s3, &bucket).await;
    }
    let queue = TestQueue::new(&aws, Some(5)).await;
    let store = db.store();
    let metrics = Arc::new(MemorySink::default());
    let deps = Deps {
        imports: Arc::new(store.clone()),
        tasks: Arc::new(store.clone()),
        events: None,
        notifications: Arc::new(store.clone()),
        objects: Arc::new(S3ObjectStore::new(s3.clone(), &bucket)),
        queue: Arc::new(SqsWorkQueue::new(queue.client.clone(), &queue.url)),
        metrics: metrics.clone(),
        rules: tms::SubmissionRules::default(),
        chunk_rows: 1000,
        limits: tms::ImportLimits::default(),
        enqueue,
    };
    Harness {
        db,
        store,
        s3,
        bucket,
        queue,
        metrics,
        deps,
    }
}

/// What S3 puts in a key: `+` for spaces, percent-encoding otherwise (as the emulator does).
fn s3_encode(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        match b {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl Harness {
    async fn put(&self, key: &str, body: Vec<u8>) -> (Option<String>, String) {
        let out = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap();
        (
            out.version_id().map(str::to_owned),
            out.e_tag().unwrap_or("").to_owned(),
        )
    }

    fn notification(&self, key: &str, version: Option<&str>, etag: &str) -> Value {
        let mut object = json!({"key": s3_encode(key), "size": 1, "eTag": etag.trim_matches('"'), "sequencer": "0A"});
        if let Some(v) = version {
            object["versionId"] = json!(v);
        }
        json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-11-22T10:00:00.000Z", "eventName": "ObjectCreated:Put",
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "imports",
                   "bucket": {"name": self.bucket, "arn": format!("arn:aws:s3:::{}", self.bucket)},
                   "object": object}}]})
    }

    async fn deliver(&self, bodies: &[Value]) -> Vec<String> {
        let records = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let mut m = SqsMessage::default();
                m.message_id = Some(format!("m-{i}"));
                m.body = Some(b.to_string());
                m
            })
            .collect();
        let mut event = SqsEvent::default();
        event.records = records;
        let out = function_handler(&self.deps, LambdaEvent::new(event, Context::default()))
            .await
            .unwrap();
        out.batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect()
    }

    /// Uploads and delivers its notification; returns the batch item failures.
    async fn import(&self, key: &str, body: Vec<u8>) -> Vec<String> {
        let (version, etag) = self.put(key, body).await;
        self.deliver(&[self.notification(key, version.as_deref(), &etag)])
            .await
    }

    async fn imports(&self) -> Vec<tms::Import> {
        self.store
            .list_imports(&tms::Scope::Tenant(tenant("demo").clone()), None, 100)
            .await
            .unwrap()
    }

    /// The import of `key` (there must be one).
    async fn import_of(&self, key: &str) -> tms::Import {
        self.imports()
            .await
            .into_iter()
            .find(|i| i.key == key)
            .unwrap_or_else(|| panic!("no import of {key}"))
    }

    async fn task_count(&self) -> i64 {
        self.db
            .admin()
            .await
            .query_one("SELECT count(*) FROM tms.tasks", &[])
            .await
            .unwrap()
            .get(0)
    }

    async fn object(&self, key: &str) -> Option<String> {
        let got = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .ok()?;
        Some(String::from_utf8(got.body.collect().await.unwrap().into_bytes().to_vec()).unwrap())
    }
}

const CSV: &str = "kind,sender,recipient,subject,body,name\n\
email,a@example.com,b@example.com,\"Hello, \"\"world\"\"\",\"two\nlines\",\n\
noop,,,,,\n\
email,bad-address,b@example.com,Hi,x,\n\
archive,,,,,q3-report\n\
fax,,,,,\n";

#[tokio::test]
async fn a_csv_import_creates_the_valid_rows_reports_the_others_and_queues_the_tasks() {
    let h = harness(false, true).await;
    assert!(h
        .import("imports/demo/batch.csv", CSV.as_bytes().to_vec())
        .await
        .is_empty());
    let imports = h.imports().await;
    assert_eq!(imports.len(), 1);
    let import = &imports[0];
    assert_eq!(import.status, ImportStatus::Completed);
    assert_eq!(
        (
            import.counts.total,
            import.counts.accepted,
            import.counts.rejected,
            import.counts.created
        ),
        (5, 3, 2, 3)
    );
    assert_eq!(
        import.report_key.as_deref(),
        Some("reports/demo/batch.csv.report.json")
    );
    let rows = h.db.admin().await
        .query("SELECT kind, payload::text, import_line, idempotency_key, status, source, correlation_id FROM tms.tasks ORDER BY import_line", &[])
        .await
        .unwrap();
    let lines: Vec<i64> = rows.iter().map(|r| r.get(2)).collect();
    assert_eq!(lines, [2, 4, 6], "the line each record starts on");
    let email: Value = serde_json::from_str(rows[0].get::<_, &str>(1)).unwrap();
    assert_eq!(
        email,
        json!({"sender": "a@example.com", "recipient": "b@example.com", "subject": "Hello, \"world\"", "body": "two\nlines"})
    );
    assert_eq!(
        rows[0].get::<_, &str>(3),
        format!("{}/imports/demo/batch.csv#{}:2", h.bucket, import.version)
    );
    assert!(rows.iter().all(|r| r.get::<_, &str>(5) == "import"
        && r.get::<_, &str>(6) == import.correlation_id.as_str()));

    let report: Value = serde_json::from_str(
        &h.object("reports/demo/batch.csv.report.json")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (
            report["rows_total"].as_u64(),
            report["rows_accepted"].as_u64(),
            report["rows_rejected"].as_u64()
        ),
        (Some(5), Some(3), Some(2))
    );
    assert_eq!(report["status"], "completed");
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["line"], 5);
    assert!(errors[0]["reason"]
        .as_str()
        .unwrap()
        .contains("/payload/sender"));
    assert_eq!(errors[1]["line"], 7);
    let all_errors = h
        .object("reports/demo/batch.csv.errors.jsonl")
        .await
        .unwrap();
    assert_eq!(all_errors.lines().count(), 2);
    let listing =
        h.s3.list_objects_v2()
            .bucket(&h.bucket)
            .prefix("imports/")
            .send()
            .await
            .unwrap();
    assert_eq!(
        listing.contents().len(),
        1,
        "nothing is written under imports/"
    );

    let messages = h.queue.drain(&h.queue.url, 3).await;
    assert_eq!(messages.len(), 3);
    let msg: WorkMessage = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    assert_eq!(msg.tenant.as_str(), "demo");
    let unmarked: i64 =
        h.db.admin()
            .await
            .query_one(
                "SELECT count(*) FROM tms.tasks WHERE enqueued_at IS NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(unmarked, 0, "every queued task has its outbox marker");
    let metric = h
        .metrics
        .lines()
        .into_iter()
        .find(|l| l.contains("ImportRowsAccepted"))
        .unwrap();
    let values = parse_emf(&metric).unwrap();
    assert_eq!(
        (
            values["ImportRowsAccepted"].as_f64(),
            values["ImportRowsRejected"].as_f64()
        ),
        (Some(3.0), Some(2.0))
    );
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

#[tokio::test]
async fn json_lines_and_gzip_are_imported() {
    let h = harness(false, false).await;
    let jsonl = "{\"kind\":\"noop\",\"payload\":{\"n\":1}}\n\
                 {\"kind\":\"archive\",\"payload\":{\"name\":\"x\"},\"idempotency_key\":\"my-key\",\"max_attempts\":3}\n\
                 {\"kind\":\"noop\",\"payload\":[]}\n";
    assert!(h
        .import("imports/demo/a.jsonl", jsonl.as_bytes().to_vec())
        .await
        .is_empty());
    assert!(h
        .import(
            "imports/demo/b.ndjson.gz",
            gzip(jsonl.replace("my-key", "other-key").as_bytes())
        )
        .await
        .is_empty());
    assert!(h
        .import("imports/demo/c.csv.gz", gzip(b"kind\nnoop\nnoop\n"))
        .await
        .is_empty());
    let mut counts: Vec<(String, u64, u64)> = h
        .imports()
        .await
        .iter()
        .map(|i| (i.key.clone(), i.counts.accepted, i.counts.rejected))
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("imports/demo/a.jsonl".to_owned(), 2, 1),
            ("imports/demo/b.ndjson.gz".to_owned(), 2, 1),
            ("imports/demo/c.csv.gz".to_owned(), 2, 0),
        ]
    );
    let keyed: i64 =
        h.db.admin()
            .await
            .query_one(
                "SELECT max_attempts FROM tms.tasks WHERE idempotency_key = 'my-key'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i32>(0)
            .into();
    assert_eq!(keyed, 3);
    assert_eq!(h.task_count().await, 6);
}

#[tokio::test]
async fn a_redelivered_notification_creates_nothing_twice() {
    let h = harness(false, true).await;
    let (version, etag) = h
        .put("imports/demo/again.csv", CSV.as_bytes().to_vec())
        .await;
    let note = h.notification("imports/demo/again.csv", version.as_deref(), &etag);
    assert!(h.deliver(std::slice::from_ref(&note)).await.is_empty());
    assert!(h.deliver(&[note.clone(), note]).await.is_empty());
    assert_eq!(h.task_count().await, 3);
    let imports = h.imports().await;
    assert_eq!(imports.len(), 1);
    assert_eq!(
        imports[0].counts.created, 3,
        "the completed import is not run again"
    );
}

#[tokio::test]
async fn two_versions_of_one_key_are_two_imports() {
    let h = harness(true, false).await;
    assert!(h
        .import("imports/demo/daily.csv", b"kind\nnoop\nnoop\n".to_vec())
        .await
        .is_empty());
    assert!(h
        .import(
            "imports/demo/daily.csv",
            b"kind\nnoop\nnoop\nnoop\n".to_vec()
        )
        .await
        .is_empty());
    let imports = h.imports().await;
    assert_eq!(imports.len(), 2);
    assert_ne!(imports[0].version, imports[1].version);
    assert_eq!(
        h.task_count().await,
        5,
        "the second version's rows are new tasks"
    );
}

#[tokio::test]
async fn unreadable_files_fail_their_import_not_the_batch_and_create_nothing() {
    let h = harness(false, false).await;
    let mut broken_gzip = gzip(&"kind\nnoop\n".repeat(5000).into_bytes());
    broken_gzip.truncate(broken_gzip.len() / 2);
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "imports/demo/bad.csv.gz",
            b"this is not gzip".to_vec(),
            "gzip",
        ),
        ("imports/demo/cut.csv.gz", broken_gzip, "gzip"),
        (
            "imports/demo/latin1.csv",
            b"kind,name\nnoop,caf\xe9\n".to_vec(),
            "not UTF-8",
        ),
        ("imports/demo/empty.csv", Vec::new(), "header"),
        (
            "imports/demo/notes.txt",
            b"hello".to_vec(),
            "unsupported file type",
        ),
    ];
    for (key, body, reason) in cases {
        assert!(
            h.import(key, body).await.is_empty(),
            "{key}: not a batch failure"
        );
        let import = h.import_of(key).await;
        assert_eq!(import.status, ImportStatus::Failed, "{key}");
        assert!(
            import.error.as_deref().unwrap_or("").contains(reason),
            "{key}: {:?}",
            import.error
        );
        let report: Value = serde_json::from_str(
            &h.object(import.report_key.as_deref().unwrap())
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(report["status"], "failed");
    }
    assert_eq!(
        h.task_count().await,
        0,
        "a failed import creates nothing, not even the rows before the damage"
    );
}

#[tokio::test]
async fn other_objects_and_test_events_are_ignored() {
    let h = harness(false, false).await;
    let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-22T10:00:00.000Z",
        "Bucket": h.bucket, "RequestId": "r", "HostId": "h"});
    let elsewhere = h.notification("reports/demo/x.csv", None, "e");
    let no_tenant = h.notification("imports/x.csv", None, "e");
    assert!(h
        .deliver(&[test_event, elsewhere, no_tenant, json!("garbage")])
        .await
        .is_empty());
    assert!(h.imports().await.is_empty());
}

#[tokio::test]
async fn a_database_outage_reports_the_record_for_redelivery() {
    let mut h = harness(false, false).await;
    let unreachable = tms::config::DatabaseConfig {
        url: "postgres://tms_app@127.0.0.1:9/tms".into(),
        ssl_mode: tms::config::SslMode::Disable,
        ca_file: None,
        password_param: None,
        pool_size: 1,
        connect_timeout: std::time::Duration::from_secs(1),
    };
    let down = Arc::new(PostgresStore::new(
        tms::adapters::postgres::PgSettings::new(&unreachable, None)
            .unwrap()
            .pool()
            .unwrap(),
    ));
    h.deps.imports = down.clone();
    h.deps.tasks = down;
    let failures = h
        .import("imports/demo/x.csv", b"kind\nnoop\n".to_vec())
        .await;
    assert_eq!(failures, ["m-0"]);
}

#[tokio::test]
async fn a_hundred_thousand_rows_are_counted_exactly() {
    let mut h = harness(false, false).await;
    h.deps.chunk_rows = 50_000;
    let mut csv = String::with_capacity(3_000_000);
    csv.push_str("kind,n,note\n");
    for i in 0..100_000 {
        if i % 1000 == 999 {
            csv.push_str(&format!("fax,{i},bad\n"));
        } else {
            csv.push_str(&format!("noop,{i},\"row, {i}\"\n"));
        }
    }
    assert!(h
        .import("imports/demo/big.csv", csv.into_bytes())
        .await
        .is_empty());
    let import = h.imports().await.remove(0);
    assert_eq!(import.status, ImportStatus::Completed);
    assert_eq!(
        (
            import.counts.total,
            import.counts.accepted,
            import.counts.rejected,
            import.counts.created
        ),
        (100_000, 99_900, 100, 99_900)
    );
    assert_eq!(h.task_count().await, 99_900);
    let events: i64 =
        h.db.admin()
            .await
            .query_one("SELECT count(*) FROM tms.task_events", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(events, 99_900, "each task has its creation event");
    let report: Value =
        serde_json::from_str(&h.object("reports/demo/big.csv.report.json").await.unwrap()).unwrap();
    assert_eq!(report["errors"].as_array().unwrap().len(), 100);
    assert_eq!(
        h.object("reports/demo/big.csv.errors.jsonl")
            .await
            .unwrap()
            .lines()
            .count(),
        100
    );
}

#[tokio::test]
async fn keys_with_spaces_and_unicode_arrive_through_a_real_bucket_notification() {
    let h = harness(false, false).await;
    let aws = sdk_config().await;
    let notifications = TestQueue::new(&aws, None).await;
    let arn = notifications
        .client
        .get_queue_attributes()
        .queue_url(&notifications.url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    h.s3.put_bucket_notification_configuration()
        .bucket(&h.bucket)
        .notification_configuration(
            aws_sdk_s3::types::NotificationConfiguration::builder()
                .queue_configurations(
                    aws_sdk_s3::types::QueueConfiguration::builder()
                        .queue_arn(arn)
                        .events(aws_sdk_s3::types::Event::S3ObjectCreated)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let key = "imports/demo/März report (final)+v2.csv";
    h.put(key, "kind,name\narchive,über\n".as_bytes().to_vec())
        .await;
    let bodies: Vec<Value> = notifications
        .drain(&notifications.url, 2)
        .await
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect();
    assert!(h.deliver(&bodies).await.is_empty());
    let import = h.imports().await.remove(0);
    assert_eq!(import.key, key, "the key is decoded exactly");
    assert_eq!(import.counts.accepted, 1);
    assert!(h
        .object("reports/demo/März report (final)+v2.csv.report.json")
        .await
        .is_some());
}

#[tokio::test]
async fn a_notification_with_or_without_its_version_id_names_one_import() {
    for versioned in [true, false] {
        let h = harness(versioned, false).await;
        let key = "imports/demo/same-write.csv";
        let (version, etag) = h.put(key, b"kind\nnoop\nnoop\n".to_vec()).await;
        assert_eq!(version.is_some(), versioned);
        let with = h.notification(key, version.as_deref(), &etag);
        let without = h.notification(key, None, &etag);
        assert!(h.deliver(&[with]).await.is_empty());
        assert!(h.deliver(&[without]).await.is_empty());
        let imports = h.imports().await;
        assert_eq!(imports.len(), 1, "versioned {versioned}: {imports:?}");
        let want = version.unwrap_or_else(|| etag.trim_matches('"').to_owned());
        assert_eq!(
            imports[0].version.trim_matches('"'),
            want,
            "the version read is the import's identity"
        );
        assert_eq!(h.task_count().await, 2);
    }
}

#[tokio::test]
async fn files_over_a_limit_fail_naming_it_and_create_nothing() {
    let mut h = harness(false, false).await;
    let defaults = tms::ImportLimits::default();
    let jsonl_row = "{\"kind\":\"noop\",\"payload\":{}}\n";
    let cases: [(&str, Vec<u8>, tms::ImportLimits, &str); 4] = [
        (
            "imports/demo/rows.csv",
            b"kind\nnoop\nnoop\nnoop\nnoop\n".to_vec(),
            tms::ImportLimits {
                max_rows: 3,
                ..defaults
            },
            "TMS_IMPORT_MAX_ROWS",
        ),
        (
            // An unterminated quote: the rest of the file is one record.
            "imports/demo/quote.csv",
            format!("kind,name\nnoop,\"{}\n", "x\n".repeat(20_000)).into_bytes(),
            tms::ImportLimits {
                max_record_bytes: 1024,
                ..defaults
            },
            "TMS_IMPORT_MAX_RECORD_BYTES",
        ),
        (
            "imports/demo/bomb.jsonl.gz",
            gzip(jsonl_row.repeat(10_000).as_bytes()),
            tms::ImportLimits {
                max_bytes: 64 * 1024,
                ..defaults
            },
            "TMS_IMPORT_MAX_BYTES",
        ),
        (
            "imports/demo/big.jsonl",
            jsonl_row.repeat(100).into_bytes(),
            tms::ImportLimits {
                max_object_bytes: 2048,
                ..defaults
            },
            "TMS_IMPORT_MAX_OBJECT_BYTES",
        ),
    ];
    for (key, body, limits, limit) in cases {
        h.deps.limits = limits;
        assert!(
            h.import(key, body).await.is_empty(),
            "{key}: not a batch failure"
        );
        let import = h.import_of(key).await;
        assert_eq!(import.status, ImportStatus::Failed, "{key}");
        let error = import.error.unwrap_or_default();
        assert!(error.contains(limit), "{key}: {error}");
    }
    assert_eq!(h.task_count().await, 0, "nothing created");

    // The errors limit bounds the file, not the import: every row is still counted.
    h.deps.limits = tms::ImportLimits {
        max_errors: 2,
        ..defaults
    };
    let key = "imports/demo/garbage.csv";
    assert!(h
        .import(key, b"kind\nfax\nfax\nfax\nnoop\n".to_vec())
        .await
        .is_empty());
    let import = h.import_of(key).await;
    assert_eq!(import.status, ImportStatus::Completed);
    assert_eq!((import.counts.rejected, import.counts.created), (3, 1));
    let errors = h
        .object(import.errors_key.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(errors.lines().count(), 2, "{errors}");
    let report: Value = serde_json::from_str(
        &h.object(import.report_key.as_deref().unwrap())
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(report["errors_kept"], 2, "{report}");
}

#[tokio::test]
async fn rows_the_database_refuses_fail_the_import_and_are_not_retried() {
    let h = harness(false, false).await;
    h.db.admin()
        .await
        .batch_execute(
            "ALTER TABLE tms.tasks ADD CONSTRAINT no_refuse CHECK (payload->>'refuse' IS NULL)",
        )
        .await
        .unwrap();
    let key = "imports/demo/refused.jsonl";
    let body =
        "{\"kind\":\"noop\",\"payload\":{}}\n{\"kind\":\"noop\",\"payload\":{\"refuse\":1}}\n";
    assert!(
        h.import(key, body.as_bytes().to_vec()).await.is_empty(),
        "not a batch failure"
    );
    let import = h.import_of(key).await;
    assert_eq!(import.status, ImportStatus::Failed);
    assert!(
        import
            .error
            .as_deref()
            .unwrap_or("")
            .contains("database refused"),
        "{:?}",
        import.error
    );
    assert_eq!(h.task_count().await, 0);
}

#[tokio::test]
async fn an_import_that_ends_is_published_with_its_counts_once_and_forgotten() {
    let mut h = harness(false, false).await;
    let bus = Arc::new(tms_testkit::fakes::MemoryBus::default());
    h.deps.events = Some(bus.clone());
    assert!(h
        .import("imports/demo/batch.csv", CSV.as_bytes().to_vec())
        .await
        .is_empty());
    assert!(h
        .import("imports/demo/bad.csv.gz", b"this is not gzip".to_vec())
        .await
        .is_empty());
    let (completed, failed) = (
        h.import_of("imports/demo/batch.csv").await,
        h.import_of("imports/demo/bad.csv.gz").await,
    );

    let events = bus.events();
    assert_eq!(events.len(), 2, "{events:?}");
    let of = |id: tms::ImportId| {
        events
            .iter()
            .find(|e| e.subject == *id.as_uuid())
            .unwrap_or_else(|| panic!("no event of import {id}"))
    };
    let done = of(completed.id);
    assert_eq!(done.detail_type, "Import Completed");
    assert_eq!(done.tenant.as_str(), "demo");
    assert_eq!(
        (
            &done.detail["import_id"],
            &done.detail["key"],
            &done.detail["rows_total"],
            &done.detail["rows_accepted"],
            &done.detail["rows_rejected"],
            &done.detail["rows_created"],
            &done.detail["event_id"],
        ),
        (
            &json!(completed.id.to_string()),
            &json!("imports/demo/batch.csv"),
            &json!(5),
            &json!(3),
            &json!(2),
            &json!(3),
            &json!(done.id.to_string()),
        )
    );
    let lost = of(failed.id);
    assert_eq!(lost.detail_type, "Import Failed");
    assert!(
        lost.detail["error"].as_str().unwrap_or("").contains("gzip"),
        "{}",
        lost.detail
    );

    let kept: i64 =
        h.db.admin()
            .await
            .query_one("SELECT count(*) FROM tms.notifications", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(kept, 0, "published events are forgotten");
    assert!(h
        .import("imports/demo/batch.csv", CSV.as_bytes().to_vec())
        .await
        .is_empty());
    assert_eq!(
        bus.events().len(),
        2,
        "a redelivered notification of a finished import publishes nothing again"
    );
}
