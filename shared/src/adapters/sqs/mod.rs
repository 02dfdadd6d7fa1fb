//! [`SqsWorkQueue`]: work messages on SQS through the SDK's client, sent in batches of ten,
//! several batches in flight, each on the work queue of its task's priority.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName, SendMessageBatchRequestEntry};
use futures::stream::{self, StreamExt};

use crate::domain::{Priority, TaskId, CORRELATION_ATTRIBUTE, PRIORITY_ATTRIBUTE};
use crate::ports::{Dispatch, QueueError, WorkQueue, MAX_MESSAGE_DELAY};

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

fn string_attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("the data type is set")
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(
    e: aws_sdk_sqs::error::SdkError<E>,
) -> QueueError {
    QueueError::Unavailable(
        aws_sdk_sqs::error::DisplayErrorContext(e)
            .to_string()
            .into(),
    )
}

#[derive(Clone)]
pub struct SqsWorkQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    /// The queue of `high` tasks; without one they travel on the work queue.
    high_queue_url: Option<String>,
    dead_letter_url: Option<String>,
}

impl SqsWorkQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            high_queue_url: None,
            dead_letter_url: None,
        }
    }

    pub fn with_dead_letter_queue(mut self, url: impl Into<String>) -> Self {
        self.dead_letter_url = Some(url.into());
        self
    }

    /// Sends the messages of `high` tasks to the queue at `url` (none: the work queue).
    pub fn with_high_priority_queue(mut self, url: Option<impl Into<String>>) -> Self {
        self.high_queue_url = url.map(Into::into);
        self
    }

    fn url_of(&self, priority: Priority) -> &str {
        match (priority, &self.high_queue_url) {
            (Priority::High, Some(url)) => url,
            _ => &self.queue_url,
        }
    }

    async fn depth(&self, url: &str) -> Result<Option<u64>, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|n| n.parse().ok()))
    }

    /// Sends one batch of messages of one priority.
    async fn send_batch(&self, batch: &[Dispatch]) -> Result<Vec<TaskId>, QueueError> {
        let url = self.url_of(batch.first().map_or(Priority::Normal, |d| d.priority));
        let entries = batch
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(
                        serde_json::to_string(&d.message).expect("a work message serialises"),
                    )
                    .delay_seconds(delay_seconds(d.delay))
                    .message_attributes(
                        CORRELATION_ATTRIBUTE,
                        string_attribute(d.message.correlation_id.as_str()),
                    );
                match d.priority {
                    Priority::High => entry.message_attributes(
                        PRIORITY_ATTRIBUTE,
                        string_attribute(Priority::High.as_str()),
                    ),
                    Priority::Normal => entry,
                }
                .build()
                .expect("id and body are set")
            })
            .collect();
        let out = self
            .client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(unavailable)?;
        for failed in out.failed() {
            tracing::warn!(
                entry = failed.id(),
                code = failed.code(),
                message = failed.message(),
                "work message not accepted; the relay will send it"
            );
        }
        Ok(out
            .successful()
            .iter()
            .filter_map(|ok| ok.id().parse::<usize>().ok())
            .filter_map(|i| batch.get(i).map(|d| d.message.task_id))
            .collect())
    }
}

#[async_trait]
impl WorkQueue for SqsWorkQueue {
    #[tracing::instrument(skip_all, fields(count = dispatches.len()))]
    async fn send(&self, dispatches: &[Dispatch]) -> Result<Vec<TaskId>, QueueError> {
        let (high, normal): (Vec<Dispatch>, Vec<Dispatch>) = dispatches
            .iter()
            .cloned()
            .partition(|d| d.priority == Priority::High);
        let batches: Vec<_> = high
            .chunks(BATCH_SIZE)
            .chain(normal.chunks(BATCH_SIZE))
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
        self.client
            .send_message()
            .queue_url(url)
            .message_body(body)
            .message_attributes(REASON_ATTRIBUTE, string_attribute(reason))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn waiting(&self) -> Result<Option<u64>, QueueError> {
        let normal = self.depth(&self.queue_url).await?;
        let Some(high_url) = &self.high_queue_url else {
            return Ok(normal);
        };
        let high = self.depth(high_url).await?;
        Ok(normal.zip(high).map(|(n, h)| n + h))
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
