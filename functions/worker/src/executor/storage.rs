//! `email` and `archive`: JSON documents in the data bucket.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tms::ports::{ObjectError, ObjectStore};
use tms::{Task, TaskError, TaskId, Tenant};

use super::{invalid_payload, Executor};

/// `emails/YYYY/MM/DD/email-{unix_millis}-{sender_hash}.json`, the date in UTC and the hash the
/// first 16 hex digits of the SHA-256 of the lower-cased sender.
pub fn email_key(at: DateTime<Utc>, sender: &str) -> String {
    let digest = Sha256::digest(sender.to_lowercase().as_bytes());
    format!(
        "emails/{}/email-{}-{}.json",
        at.format("%Y/%m/%d"),
        at.timestamp_millis(),
        hex::encode(&digest[..8])
    )
}

/// `archive/{tenant}/YYYY/MM/DD/{task_id}.json`, dated by the task's creation.
pub fn archive_key(tenant: &Tenant, created_at: DateTime<Utc>, id: TaskId) -> String {
    format!(
        "archive/{tenant}/{}/{id}.json",
        created_at.format("%Y/%m/%d")
    )
}

/// How a document is written: over whatever the key holds, or only when it holds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    Replace,
    /// The key names the task, so an object there is this task's own document, written by a
    /// run whose outcome was never recorded (its environment died): it is not written again.
    Once,
}

async fn put_json(
    objects: &dyn ObjectStore,
    key: String,
    document: &impl Serialize,
    write: Write,
) -> Result<Value, TaskError> {
    let body = serde_json::to_vec(document).map_err(invalid_payload)?;
    let content_type = "application/json";
    let written = match write {
        Write::Replace => objects.put(&key, body, content_type).await,
        Write::Once => objects.put_new(&key, body, content_type).await.map(drop),
    };
    written.map_err(|e| match e {
        ObjectError::NotFound(_) => TaskError::permanent("storage_missing", e.to_string()),
        ObjectError::Unavailable(_) => TaskError::retryable("storage_unavailable", e.to_string()),
    })?;
    Ok(json!({"bucket": objects.bucket(), "key": key}))
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Email {
    sender: String,
    recipient: String,
    subject: String,
    body: String,
}

pub struct EmailExecutor {
    objects: Arc<dyn ObjectStore>,
    last_millis: AtomicI64,
}

impl EmailExecutor {
    pub fn new(objects: Arc<dyn ObjectStore>) -> Self {
        Self {
            objects,
            last_millis: AtomicI64::new(0),
        }
    }

    /// NOTE: the key names a millisecond, not the task, so two emails from one sender in the
    /// same millisecond would share it; within this execution environment each email gets a
    /// millisecond of its own.
    fn unique_instant(&self) -> DateTime<Utc> {
        let now = Utc::now().timestamp_millis();
        let previous = self
            .last_millis
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or(now);
        DateTime::from_timestamp_millis(now.max(previous + 1)).unwrap_or_else(Utc::now)
    }
}

#[async_trait]
impl Executor for EmailExecutor {
    async fn execute(&self, task: &Task) -> Result<Value, TaskError> {
        let email: Email = serde_json::from_value(task.payload.clone()).map_err(invalid_payload)?;
        let key = email_key(self.unique_instant(), &email.sender);
        put_json(self.objects.as_ref(), key, &email, Write::Replace).await
    }
}

pub struct ArchiveExecutor {
    objects: Arc<dyn ObjectStore>,
}

impl ArchiveExecutor {
    pub fn new(objects: Arc<dyn ObjectStore>) -> Self {
        Self { objects }
    }
}

#[async_trait]
impl Executor for ArchiveExecutor {
    async fn execute(&self, task: &Task) -> Result<Value, TaskError> {
        let key = archive_key(&task.tenant, task.created_at, task.id);
        put_json(self.objects.as_ref(), key, &task.payload, Write::Once).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn email_keys_follow_the_documented_layout() {
        let at = Utc.with_ymd_and_hms(2026, 3, 7, 23, 59, 58).unwrap();
        let key = email_key(at, "Alice@Example.COM");
        // sha256("alice@example.com") = ff8d9819fc0e12bf...
        assert_eq!(
            key,
            format!(
                "emails/2026/03/07/email-{}-ff8d9819fc0e12bf.json",
                at.timestamp_millis()
            )
        );
        assert_eq!(key, email_key(at, "alice@example.com"), "case-insensitive");
    }

    #[test]
    fn archive_keys_are_dated_by_creation() {
        let id: TaskId = "0190a8e2-6b5c-7cc1-8f00-000000000001".parse().unwrap();
        let created = Utc.with_ymd_and_hms(2025, 12, 31, 23, 0, 0).unwrap();
        assert_eq!(
            archive_key(&Tenant::parse("acme").unwrap(), created, id),
            "archive/acme/2025/12/31/0190a8e2-6b5c-7cc1-8f00-000000000001.json"
        );
    }

    #[test]
    fn each_email_gets_a_millisecond_of_its_own() {
        let ex = EmailExecutor::new(Arc::new(tms_testkit::fakes::NoObjects));
        let instants: Vec<_> = (0..1000).map(|_| ex.unique_instant()).collect();
        assert!(instants.windows(2).all(|w| w[0] < w[1]));
    }
}
