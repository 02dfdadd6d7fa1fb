//! [`SqsWorkQueue`]: work messages on SQS, sent in batches of ten, several batches in flight,
//! through [`SqsClient`].

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use crate::domain::{TaskId, CORRELATION_ATTRIBUTE};
use crate::ports::{Dispatch, QueueError, WorkQueue, MAX_MESSAGE_DELAY};

mod client;

pub use client::{SqsClient, SqsError};

/// SQS accepts at most ten messages per batch.
pub const BATCH_SIZE: usize = 10;
/// Batches sent at once.
const BATCHES_IN_FLIGHT: usize = 8;
/// The attribute that says why a message was moved to the dead-letter queue.
pub const REASON_ATTRIBUTE: &str = "tms_dead_letter_reason";

/// SQS delays count whole seconds. A delayed message must never arrive before its task is due
/// (the worker would find it not claimable yet and the retry would wait for the relay), so a
/// delay is rounded up, plus a second for clock differences between SQS and the database.
fn delay_seconds(delay: Duration) -> i32 {
    if delay.is_zero() {
        return 0;
    }
    let whole = delay.as_millis().div_ceil(1000) as u64 + 1;
    whole.min(MAX_MESSAGE_DELAY.as_secs()) as i32
}

/// A `String` message attribute, as SQS's JSON protocol writes one.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct StringAttribute<'a> {
    data_type: &'static str,
    string_value: &'a str,
}

fn attribute<'a>(name: &'a str, value: &'a str) -> BTreeMap<&'a str, StringAttribute<'a>> {
    BTreeMap::from([(
        name,
        StringAttribute {
            data_type: "String",
            string_value: value,
        },
    )])
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessageBatch<'a> {
    queue_url: &'a str,
    entries: Vec<BatchEntry<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct BatchEntry<'a> {
    id: String,
    message_body: String,
    delay_seconds: i32,
    message_attributes: BTreeMap<&'a str, StringAttribute<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessageBatchResult {
    #[serde(default)]
    successful: Vec<BatchSent>,
    #[serde(default)]
    failed: Vec<BatchFailed>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchSent {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchFailed {
    id: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessage<'a> {
    queue_url: &'a str,
    message_body: &'a str,
    message_attributes: BTreeMap<&'a str, StringAttribute<'a>>,
}

fn unavailable(e: SqsError) -> QueueError {
    QueueError::Unavailable(e.into())
}

#[derive(Clone)]
pub struct SqsWorkQueue {
    client: SqsClient,
    queue_url: String,
    dead_letter_url: Option<String>,
}

impl SqsWorkQueue {
    pub fn new(client: SqsClient, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dead_letter_url: None,
        }
    }

    pub fn with_dead_letter_queue(mut self, url: impl Into<String>) -> Self {
        self.dead_letter_url = Some(url.into());
        self
    }

    async fn send_batch(&self, batch: &[Dispatch]) -> Result<Vec<TaskId>, QueueError> {
        let entries = batch
            .iter()
            .enumerate()
            .map(|(i, d)| BatchEntry {
                id: i.to_string(),
                message_body: serde_json::to_string(&d.message).expect("a work message serialises"),
                delay_seconds: delay_seconds(d.delay),
                message_attributes: attribute(
                    CORRELATION_ATTRIBUTE,
                    d.message.correlation_id.as_str(),
                ),
            })
            .collect();
        let request = SendMessageBatch {
            queue_url: &self.queue_url,
            entries,
        };
        let out: SendMessageBatchResult = self
            .client
            .call(&self.queue_url, "SendMessageBatch", &request)
            .await
            .map_err(unavailable)?;
        for failed in &out.failed {
            tracing::warn!(
                entry = failed.id,
                code = failed.code,
                message = failed.message,
                "work message not accepted; the relay will send it"
            );
        }
        Ok(out
            .successful
            .iter()
            .filter_map(|ok| ok.id.parse::<usize>().ok())
            .filter_map(|i| batch.get(i).map(|d| d.message.task_id))
            .collect())
    }
}

#[async_trait]
impl WorkQueue for SqsWorkQueue {
    #[tracing::instrument(skip_all, fields(count = dispatches.len()))]
    async fn send(&self, dispatches: &[Dispatch]) -> Result<Vec<TaskId>, QueueError> {
        let batches: Vec<_> = dispatches
            .chunks(BATCH_SIZE)
            .map(|batch| self.send_batch(batch))
            .collect();
        let results: Vec<_> = stream::iter(batches)
            .buffer_unordered(BATCHES_IN_FLIGHT)
            .collect()
            .await;
        let mut sent = Vec::with_capacity(dispatches.len());
        let mut last_error = None;
        for result in results {
            match result {
                Ok(ids) => sent.extend(ids),
                Err(e) => {
                    tracing::warn!(error = %e, "work message batch not sent; the relay will send it");
                    last_error = Some(e);
                }
            }
        }
        match last_error {
            Some(e) if sent.is_empty() => Err(e),
            _ => Ok(sent),
        }
    }

    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), QueueError> {
        let url = self
            .dead_letter_url
            .as_deref()
            .ok_or_else(|| QueueError::Unavailable("no dead-letter queue is configured".into()))?;
        let request = SendMessage {
            queue_url: url,
            message_body: body,
            message_attributes: attribute(REASON_ATTRIBUTE, reason),
        };
        let _: serde::de::IgnoredAny = self
            .client
            .call(url, "SendMessage", &request)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn waiting(&self) -> Result<Option<u64>, QueueError> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct GetQueueAttributes<'a> {
            queue_url: &'a str,
            attribute_names: [&'a str; 1],
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Attributes {
            #[serde(default)]
            attributes: std::collections::HashMap<String, String>,
        }
        let request = GetQueueAttributes {
            queue_url: &self.queue_url,
            attribute_names: ["ApproximateNumberOfMessages"],
        };
        let answer: Attributes = self
            .client
            .call(&self.queue_url, "GetQueueAttributes", &request)
            .await
            .map_err(unavailable)?;
        Ok(answer
            .attributes
            .get("ApproximateNumberOfMessages")
            .and_then(|n| n.parse().ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_round_up_and_never_exceed_the_sqs_limit() {
        assert_eq!(delay_seconds(Duration::ZERO), 0);
        assert_eq!(delay_seconds(Duration::from_millis(1)), 2);
        assert_eq!(delay_seconds(Duration::from_millis(1700)), 3);
        assert_eq!(delay_seconds(Duration::from_secs(2)), 3);
        assert_eq!(delay_seconds(Duration::from_secs(899)), 900);
        assert_eq!(delay_seconds(Duration::from_secs(5000)), 900);
    }
}
