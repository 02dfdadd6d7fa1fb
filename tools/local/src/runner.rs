//! The local event-source runner: a stand-in for Lambda's SQS event source mappings and
//! EventBridge schedules. It long-polls the emulated queues, invokes the same handlers a
//! deployment runs with genuine `SqsEvent` payloads, deletes only the messages the handler did
//! not report in `batchItemFailures` (the others come back after the visibility timeout, and
//! the queue's redrive moves them to the dead-letter queue after five receives), and fires the
//! scheduled jobs on their rates.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use lambda_runtime::{Context, LambdaEvent};
use tokio::sync::watch;

use crate::mappings::{
    Mapping, Schedule, HIGH_WORKER, IMPORTER, MAPPINGS, SCHEDULER_TIMEOUT, SCHEDULES,
};
use crate::stack::REGION;

/// How long one receive call waits for messages when the queue is empty.
const LONG_POLL_SECONDS: i32 = 2;

/// The handlers and queues the runner drives.
pub struct Runner {
    pub worker: tms_worker::Deps,
    pub importer: tms_importer::Deps,
    pub scheduler: tms_scheduler::Deps,
    pub sqs: aws_sdk_sqs::Client,
    pub work_queue_url: String,
    pub high_work_queue_url: String,
    pub import_queue_url: String,
}

fn context(timeout: Duration) -> Context {
    let mut ctx = Context::default();
    ctx.request_id = uuid::Uuid::new_v4().to_string();
    ctx.deadline = (SystemTime::now() + timeout)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    ctx.invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:tms-local".into();
    ctx
}

/// An SQS record as Lambda delivers it.
fn record(message: &Message, queue_arn: &str) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = message.message_id.clone();
    m.receipt_handle = message.receipt_handle.clone();
    m.body = message.body.clone();
    m.md5_of_body = message.md5_of_body.clone();
    m.md5_of_message_attributes = message.md5_of_message_attributes.clone();
    m.attributes = message
        .attributes
        .as_ref()
        .map(|a| {
            a.iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    m.message_attributes = message
        .message_attributes
        .as_ref()
        .map(|attrs| {
            attrs
                .iter()
                .map(|(k, v)| {
                    let mut a = SqsMessageAttribute::default();
                    a.string_value = v.string_value.clone();
                    a.data_type = Some(v.data_type.clone());
                    (k.clone(), a)
                })
                .collect::<HashMap<_, _>>()
        })
        .unwrap_or_default();
    m.event_source = Some("aws:sqs".into());
    m.event_source_arn = Some(queue_arn.to_owned());
    m.aws_region = Some(REGION.into());
    m
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .ok()
        .and_then(|o| o.attributes)
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .unwrap_or_default()
}

/// Receives up to one batch as the mapping would (batch size, batching window), invokes the
/// handler, and deletes what it settled. Returns the number of records delivered.
///
/// # Errors
/// When the queue cannot be read or written.
pub async fn deliver_once<F, Fut>(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    arn: &str,
    mapping: &Mapping,
    wait_seconds: i32,
    handler: F,
) -> anyhow::Result<usize>
where
    F: FnOnce(LambdaEvent<SqsEvent>) -> Fut,
    Fut: Future<Output = Result<SqsBatchResponse, lambda_runtime::Error>>,
{
    let mut messages: Vec<Message> = Vec::new();
    let mut window_ends: Option<Instant> = None;
    while messages.len() < mapping.batch_size {
        let wait = match window_ends {
            None => wait_seconds,
            Some(end) => {
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                left.as_secs().max(1) as i32
            }
        };
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages((mapping.batch_size - messages.len()).min(10) as i32)
            .wait_time_seconds(wait)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await?
            .messages
            .unwrap_or_default();
        if got.is_empty() && window_ends.is_none() {
            return Ok(0);
        }
        let first = messages.is_empty() && !got.is_empty();
        messages.extend(got);
        if first {
            window_ends = Some(Instant::now() + mapping.batching_window);
        }
        if mapping.batching_window.is_zero() {
            break;
        }
    }
    let mut event = SqsEvent::default();
    event.records = messages.iter().map(|m| record(m, arn)).collect();
    let delivered = event.records.len();
    let settled: Vec<&Message> =
        match handler(LambdaEvent::new(event, context(mapping.timeout))).await {
            Ok(response) => {
                let failed: Vec<&str> = response
                    .batch_item_failures
                    .iter()
                    .map(|f| f.item_identifier.as_str())
                    .collect();
                messages
                    .iter()
                    .filter(|m| !failed.contains(&m.message_id().unwrap_or("")))
                    .collect()
            }
            Err(e) => {
                // A function error returns the whole batch to the queue, as on Lambda.
                tracing::error!(function = mapping.function, error = %e, "invocation failed");
                Vec::new()
            }
        };
    delete_messages(sqs, url, &settled).await?;
    Ok(delivered)
}

/// Deletes `messages` from the queue at `url`, ten a `DeleteMessageBatch`.
///
/// # Errors
/// When the queue cannot be written.
pub async fn delete_messages(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    messages: &[&Message],
) -> anyhow::Result<()> {
    for chunk in messages.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or(""))
                    .build()
                    .expect("id and handle are set")
            })
            .collect();
        sqs.delete_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await?;
    }
    Ok(())
}

impl Runner {
    /// Runs the pollers and the schedules until `stop` turns true.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let mut tasks = Vec::new();
        for mapping in MAPPINGS {
            for _ in 0..mapping.maximum_concurrency.min(2) {
                let runner = self.clone();
                let stop = stop.clone();
                tasks.push(tokio::spawn(
                    async move { runner.poll(mapping, stop).await },
                ));
            }
        }
        for schedule in SCHEDULES {
            let runner = self.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(
                async move { runner.tick(schedule, stop).await },
            ));
        }
        futures::future::join_all(tasks).await;
    }

    async fn poll(self: Arc<Self>, mapping: Mapping, mut stop: watch::Receiver<bool>) {
        let url = if mapping == HIGH_WORKER {
            &self.high_work_queue_url
        } else if mapping == IMPORTER {
            &self.import_queue_url
        } else {
            &self.work_queue_url
        };
        let arn = queue_arn(&self.sqs, url).await;
        while !*stop.borrow() {
            let round = deliver_once(
                &self.sqs,
                url,
                &arn,
                &mapping,
                LONG_POLL_SECONDS,
                |event| async {
                    if mapping == IMPORTER {
                        tms_importer::function_handler(&self.importer, event).await
                    } else {
                        tms_worker::function_handler(&self.worker, event).await
                    }
                },
            );
            tokio::select! {
                result = round => if let Err(e) = result {
                    tracing::warn!(queue = %url, error = %e, "polling failed; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                },
                _ = stop.changed() => break,
            }
        }
    }

    async fn tick(self: Arc<Self>, schedule: Schedule, mut stop: watch::Receiver<bool>) {
        let mut interval = tokio::time::interval(schedule.every);
        interval.tick().await;
        loop {
            tokio::select! {
                _ = interval.tick() => {
                    let input: serde_json::Value = serde_json::from_str(schedule.input).expect("a JSON input");
                    match tms_scheduler::function_handler(&self.scheduler, LambdaEvent::new(input, context(SCHEDULER_TIMEOUT))).await {
                        Ok(out) => tracing::debug!(job = schedule.event, result = %out, "scheduled job ran"),
                        Err(e) => tracing::error!(job = schedule.event, error = %e, "scheduled job failed"),
                    }
                }
                _ = stop.changed() => break,
            }
        }
    }
}
