//! `make emulator-check`: whether the AWS emulator holds a deep queue the way the product needs.
//! A fresh queue is filled with a backlog (default 100,000 messages), then a consumer's round
//! (`ReceiveMessage` of ten, `DeleteMessageBatch` of what it got) is timed against it. The local
//! stack's bar is a median round under 50 ms: moto 5 took seconds at a few thousand messages.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures::{stream, StreamExt, TryStreamExt};

/// The median round the local stack needs.
pub const MEDIAN_BAR: Duration = Duration::from_millis(50);

/// What a check measured.
#[derive(Debug)]
pub struct Measured {
    pub backlog: usize,
    pub fill_seconds: f64,
    pub rounds: usize,
    pub median: Duration,
    pub p99: Duration,
}

impl Measured {
    pub fn render(&self) -> String {
        format!(
            "backlog {} messages (sent in {:.1} s, {:.0}/s)\n\
             receive 10 + delete batch, {} rounds: median {:.1} ms, p99 {:.1} ms (bar: median under {} ms)",
            self.backlog,
            self.fill_seconds,
            self.backlog as f64 / self.fill_seconds.max(0.001),
            self.rounds,
            self.median.as_secs_f64() * 1000.0,
            self.p99.as_secs_f64() * 1000.0,
            MEDIAN_BAR.as_millis()
        )
    }
}

/// Fills a fresh queue with `backlog` messages, times `rounds` consumer rounds against it, and
/// deletes the queue.
///
/// # Errors
/// When the emulator refuses a call.
pub async fn check(
    sqs: &aws_sdk_sqs::Client,
    backlog: usize,
    rounds: usize,
) -> anyhow::Result<Measured> {
    let name = format!("backlog-check-{}", uuid::Uuid::new_v4().simple());
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .context("create the queue")?
        .queue_url
        .context("a queue URL")?;
    let measured = measure(sqs, &url, backlog, rounds).await;
    let deleted = sqs.delete_queue().queue_url(&url).send().await;
    let measured = measured?;
    deleted.context("delete the queue")?;
    Ok(measured)
}

async fn measure(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    backlog: usize,
    rounds: usize,
) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(200));
    let mut sent = 0usize;
    let mut batches = stream::iter((0..backlog).step_by(10))
        .map(|first| {
            let entries = (first..(first + 10).min(backlog))
                .map(|n| {
                    SendMessageBatchRequestEntry::builder()
                        .id(n.to_string())
                        .message_body(&body)
                        .build()
                        .expect("id and body are set")
                })
                .collect();
            sqs.send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
        })
        .buffer_unordered(8);
    while let Some(out) = batches.try_next().await.context("send the backlog")? {
        if !out.failed().is_empty() {
            bail!("the emulator refused {} messages", out.failed().len());
        }
        sent += out.successful().len();
        if sent.is_multiple_of(10_000) {
            eprint!("\r    {sent}/{backlog} messages sent   ");
        }
    }
    eprintln!();
    let fill_seconds = started.elapsed().as_secs_f64();
    let mut took = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let round = Instant::now();
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .context("receive")?
            .messages
            .unwrap_or_default();
        if got.is_empty() {
            bail!("the queue answered no message with a backlog in it");
        }
        let got: Vec<_> = got.iter().collect();
        crate::runner::delete_messages(sqs, url, &got)
            .await
            .context("delete")?;
        took.push(round.elapsed());
    }
    took.sort();
    let at = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize];
    Ok(Measured {
        backlog,
        fill_seconds,
        rounds,
        median: at(0.5),
        p99: at(0.99),
    })
}
