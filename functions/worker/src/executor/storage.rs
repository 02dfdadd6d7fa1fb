//! `email` and `archive`: JSON documents in the data bucket; an `email` may also be delivered.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tms::domain::email::{EmailIdentity, OutgoingEmail};
use tms::ports::{MailError, Mailer, ObjectError, ObjectStore};
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
    /// Whether the message is sent too (absent: the deployment's default); an instruction, not
    /// part of the stored document.
    #[serde(default, skip_serializing)]
    deliver: Option<bool>,
}

/// How `email` tasks are delivered: through `mailer`, from `identity`.
#[derive(Clone)]
pub struct EmailDelivery {
    pub mailer: Arc<dyn Mailer>,
    pub identity: EmailIdentity,
}

pub struct EmailExecutor {
    objects: Arc<dyn ObjectStore>,
    last_millis: AtomicI64,
    delivery: Option<EmailDelivery>,
    deliver_by_default: bool,
}

impl EmailExecutor {
    /// Stores emails and delivers none.
    pub fn new(objects: Arc<dyn ObjectStore>) -> Self {
        Self {
            objects,
            last_millis: AtomicI64::new(0),
            delivery: None,
            deliver_by_default: false,
        }
    }

    /// Also delivers the emails whose payload says `deliver: true`, or, with `by_default`, those
    /// that do not say `deliver: false`. Without a `delivery`, an email to deliver fails.
    pub fn with_delivery(mut self, delivery: Option<EmailDelivery>, by_default: bool) -> Self {
        self.delivery = delivery;
        self.deliver_by_default = by_default;
        self
    }

    /// The message to send for `email`, when it is to be delivered; checked before anything is
    /// stored, so an email that cannot go out leaves nothing behind.
    fn outgoing(
        &self,
        email: &Email,
    ) -> Result<Option<(&EmailDelivery, OutgoingEmail)>, TaskError> {
        if !email.deliver.unwrap_or(self.deliver_by_default) {
            return Ok(None);
        }
        let Some(delivery) = &self.delivery else {
            return Err(TaskError::permanent(
                "email_delivery_off",
                "this deployment delivers no email (it has no sending identity, TMS_EMAIL_IDENTITY)",
            ));
        };
        let envelope = delivery
            .identity
            .envelope(&email.sender)
            .map_err(|e| TaskError::permanent("email_sender_refused", e.to_string()))?;
        Ok(Some((
            delivery,
            OutgoingEmail {
                envelope,
                recipient: email.recipient.clone(),
                subject: email.subject.clone(),
                body: email.body.clone(),
            },
        )))
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
        let outgoing = self.outgoing(&email)?;
        let key = email_key(self.unique_instant(), &email.sender);
        let mut result = put_json(self.objects.as_ref(), key, &email, Write::Replace).await?;
        if let Some((delivery, message)) = outgoing {
            let id = delivery.mailer.send(&message).await.map_err(mail_error)?;
            tracing::info!(task_id = %task.id, message_id = %id, "email delivered");
            result["message_id"] = Value::String(id);
        }
        Ok(result)
    }
}

/// Throttling and an unavailable service are retried; a rejected message is not.
fn mail_error(e: MailError) -> TaskError {
    match e {
        MailError::Throttled { .. } => TaskError::retryable("email_throttled", e.to_string()),
        MailError::Unavailable { .. } => TaskError::retryable("email_unavailable", e.to_string()),
        MailError::Rejected { .. } => TaskError::permanent("email_rejected", e.to_string()),
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

    mod delivery {
        use super::*;
        use std::sync::Mutex;
        use tms::ErrorClass;

        /// A bucket in memory: the keys written, in order.
        #[derive(Default)]
        struct Bucket(Mutex<Vec<(String, Value)>>);

        #[async_trait]
        impl ObjectStore for Bucket {
            fn bucket(&self) -> &str {
                "data"
            }
            async fn put(&self, key: &str, body: Vec<u8>, _: &str) -> Result<(), ObjectError> {
                let doc = serde_json::from_slice(&body).unwrap();
                self.0.lock().unwrap().push((key.to_owned(), doc));
                Ok(())
            }
            async fn put_new(
                &self,
                key: &str,
                body: Vec<u8>,
                ct: &str,
            ) -> Result<bool, ObjectError> {
                self.put(key, body, ct).await.map(|()| true)
            }
            async fn put_file(
                &self,
                _: &str,
                _: &std::path::Path,
                _: &str,
            ) -> Result<(), ObjectError> {
                unimplemented!("emails are not files")
            }
            async fn open(
                &self,
                key: &str,
                _: Option<&str>,
            ) -> Result<tms::ports::ObjectReader, ObjectError> {
                Err(ObjectError::NotFound(key.to_owned()))
            }
            async fn presign_put(
                &self,
                _: &str,
                _: u64,
                _: std::time::Duration,
            ) -> Result<String, ObjectError> {
                unimplemented!("not presigned")
            }
            async fn presign_get(
                &self,
                _: &str,
                _: std::time::Duration,
            ) -> Result<String, ObjectError> {
                unimplemented!("not presigned")
            }
        }

        /// A mailer that records what it is given and answers as told.
        struct FakeMailer {
            sent: Mutex<Vec<OutgoingEmail>>,
            answer: fn() -> Result<String, MailError>,
        }

        #[async_trait]
        impl Mailer for FakeMailer {
            async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError> {
                self.sent.lock().unwrap().push(email.clone());
                (self.answer)()
            }
        }

        struct Setup {
            bucket: Arc<Bucket>,
            mailer: Arc<FakeMailer>,
            executor: EmailExecutor,
        }

        fn setup(
            identity: Option<&str>,
            by_default: bool,
            answer: fn() -> Result<String, MailError>,
        ) -> Setup {
            let bucket = Arc::new(Bucket::default());
            let mailer = Arc::new(FakeMailer {
                sent: Mutex::default(),
                answer,
            });
            let delivery = identity.map(|i| EmailDelivery {
                mailer: mailer.clone(),
                identity: i.parse().unwrap(),
            });
            let executor = EmailExecutor::new(bucket.clone()).with_delivery(delivery, by_default);
            Setup {
                bucket,
                mailer,
                executor,
            }
        }

        fn sent_ok() -> Result<String, MailError> {
            Ok("0100-ses-message-id".into())
        }

        fn task(deliver: Option<bool>, sender: &str) -> Task {
            let mut payload = json!({"sender": sender, "recipient": "bob@example.org",
                                     "subject": "Invoice 42", "body": "Due Friday."});
            if let Some(d) = deliver {
                payload["deliver"] = json!(d);
            }
            tms_testkit::fakes::from_new(&tms_testkit::tasks::new_task(
                "acme", "email", payload, None,
            ))
        }

        #[tokio::test]
        async fn an_email_with_deliver_is_stored_then_sent_and_its_message_id_joins_the_result() {
            let s = setup(Some("tms@example.com"), false, sent_ok);
            let result = s
                .executor
                .execute(&task(Some(true), "alice@example.com"))
                .await
                .unwrap();
            let stored = s.bucket.0.lock().unwrap().clone();
            assert_eq!(stored.len(), 1);
            let (key, document) = &stored[0];
            assert_eq!(
                result,
                json!({"bucket": "data", "key": key, "message_id": "0100-ses-message-id"})
            );
            assert_eq!(
                document,
                &json!({"sender": "alice@example.com", "recipient": "bob@example.org",
                        "subject": "Invoice 42", "body": "Due Friday."}),
                "the stored email is the message, without the instruction"
            );
            assert_eq!(
                *s.mailer.sent.lock().unwrap(),
                [OutgoingEmail {
                    envelope: tms::domain::email::Envelope {
                        from: "tms@example.com".into(),
                        reply_to: Some("alice@example.com".into()),
                    },
                    recipient: "bob@example.org".into(),
                    subject: "Invoice 42".into(),
                    body: "Due Friday.".into(),
                }]
            );
        }

        #[tokio::test]
        async fn the_payload_decides_and_the_deployment_default_applies_without_it() {
            for (by_default, deliver, sent) in [
                (false, None, false),
                (false, Some(false), false),
                (false, Some(true), true),
                (true, None, true),
                (true, Some(false), false),
                (true, Some(true), true),
            ] {
                let s = setup(Some("example.com"), by_default, sent_ok);
                let result = s
                    .executor
                    .execute(&task(deliver, "alice@example.com"))
                    .await
                    .unwrap();
                let label = format!("default {by_default}, deliver {deliver:?}");
                assert_eq!(
                    s.mailer.sent.lock().unwrap().len(),
                    usize::from(sent),
                    "{label}"
                );
                assert_eq!(result.get("message_id").is_some(), sent, "{label}");
                assert_eq!(
                    s.bucket.0.lock().unwrap().len(),
                    1,
                    "{label}: stored either way"
                );
            }
        }

        /// How the fake mail service answers.
        type Answer = fn() -> Result<String, MailError>;

        #[tokio::test]
        async fn throttling_and_outages_are_retried_and_rejections_are_not() {
            let cases: [(Answer, ErrorClass, &str); 3] = [
                (
                    || {
                        Err(MailError::Throttled {
                            code: "TooManyRequestsException".into(),
                            message: "Maximum sending rate exceeded.".into(),
                        })
                    },
                    ErrorClass::Retryable,
                    "email_throttled",
                ),
                (
                    || {
                        Err(MailError::Unavailable {
                            code: "Timeout".into(),
                            message: "timed out".into(),
                        })
                    },
                    ErrorClass::Retryable,
                    "email_unavailable",
                ),
                (
                    || {
                        Err(MailError::Rejected {
                            code: "MessageRejected".into(),
                            message: "Email address is not verified.".into(),
                        })
                    },
                    ErrorClass::Permanent,
                    "email_rejected",
                ),
            ];
            for (answer, class, code) in cases {
                let s = setup(Some("tms@example.com"), false, answer);
                let e = s
                    .executor
                    .execute(&task(Some(true), "alice@example.com"))
                    .await
                    .unwrap_err();
                assert_eq!((e.class, e.code.as_str()), (class, code), "{e:?}");
                assert_eq!(s.bucket.0.lock().unwrap().len(), 1, "stored before sending");
            }
            let s = setup(Some("tms@example.com"), false, || {
                Err(MailError::Rejected {
                    code: "MessageRejected".into(),
                    message: "Email address is not verified.".into(),
                })
            });
            let e = s
                .executor
                .execute(&task(Some(true), "alice@example.com"))
                .await
                .unwrap_err();
            assert_eq!(
                e.message,
                "email rejected (MessageRejected): Email address is not verified."
            );
        }

        #[tokio::test]
        async fn an_email_that_cannot_go_out_fails_for_good_and_stores_nothing() {
            // No identity: this deployment delivers nothing.
            let s = setup(None, false, sent_ok);
            let e = s
                .executor
                .execute(&task(Some(true), "alice@example.com"))
                .await
                .unwrap_err();
            assert_eq!(
                (e.class, e.code.as_str()),
                (ErrorClass::Permanent, "email_delivery_off")
            );
            // A domain identity sends as its own addresses only.
            let s2 = setup(Some("example.com"), true, sent_ok);
            let e2 = s2
                .executor
                .execute(&task(None, "mallory@elsewhere.org"))
                .await
                .unwrap_err();
            assert_eq!(
                (e2.class, e2.code.as_str()),
                (ErrorClass::Permanent, "email_sender_refused")
            );
            assert!(
                e2.message.contains("mallory@elsewhere.org"),
                "{}",
                e2.message
            );
            for s in [s, s2] {
                assert!(s.bucket.0.lock().unwrap().is_empty());
                assert!(s.mailer.sent.lock().unwrap().is_empty());
            }
            // Without deliver, the same deployment without an identity stores as before.
            let s = setup(None, false, sent_ok);
            let result = s
                .executor
                .execute(&task(None, "alice@example.com"))
                .await
                .unwrap();
            assert!(result.get("message_id").is_none());
        }
    }
}
