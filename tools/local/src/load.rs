//! `make load`: drives a volume of tasks through every entry point of the running stack (batch
//! creates over HTTP, one import file, queue submissions), waits until every task is terminal,
//! and reports what was lost or executed twice, the rates and the end-to-end latency.
//!
//! Every task of a run carries `{"load": "<run id>"}` in its payload, so the counts read the
//! database for exactly this run's tasks. One task in a hundred is an `archive` task: the
//! bucket is versioned, so an archive written twice leaves two versions of its object.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::{stream, StreamExt, TryStreamExt};
use serde_json::{json, Value};

use crate::{Resources, Stack};

/// How much to drive, from `LOAD_API`, `LOAD_ROWS`, `LOAD_QUEUE` and `LOAD_WAIT_SECONDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Tasks created through `POST /v1/tasks/batch`, 100 a request.
    pub api: usize,
    /// Rows of the one import file (JSON Lines).
    pub rows: usize,
    /// Task submissions sent to the work queue, 10 a `SendMessageBatch`.
    pub queue: usize,
    /// How long to wait for every task to end before counting the rest as lost.
    pub wait: Duration,
}

/// The largest import a run may ask for.
pub const MAX_ROWS: usize = 1_000_000;

impl Plan {
    /// # Errors
    /// A variable that is not a number, or more rows than [`MAX_ROWS`].
    pub fn from_env() -> anyhow::Result<Self> {
        let number = |name: &str, default: usize| -> anyhow::Result<usize> {
            match std::env::var(name) {
                Ok(v) if !v.is_empty() => v
                    .parse()
                    .with_context(|| format!("{name} must be a whole number, got {v:?}")),
                _ => Ok(default),
            }
        };
        let plan = Self {
            api: number("LOAD_API", 10_000)?,
            rows: number("LOAD_ROWS", 100_000)?,
            queue: number("LOAD_QUEUE", 1_000)?,
            wait: Duration::from_secs(number("LOAD_WAIT_SECONDS", 1_800)? as u64),
        };
        if plan.rows > MAX_ROWS {
            bail!("LOAD_ROWS is at most {MAX_ROWS}");
        }
        Ok(plan)
    }

    pub fn total(&self) -> usize {
        self.api + self.rows + self.queue
    }
}

/// Where the load goes: the running stack's API, token, queue and bucket.
pub struct Target {
    pub stack: Stack,
    pub resources: Resources,
    pub api: String,
    pub token: String,
    pub aws: aws_config::SdkConfig,
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct Report {
    pub run: String,
    pub expected: u64,
    pub created: u64,
    pub statuses: HashMap<String, u64>,
    /// Expected tasks not terminal (or never created) when the wait ended.
    pub lost: u64,
    /// Tasks that entered `succeeded` more than once.
    pub duplicate_runs: u64,
    /// Archive tasks whose object was written more than once.
    pub duplicate_objects: u64,
    /// Seconds each entry point took to accept its tasks.
    pub stages: Vec<(&'static str, usize, f64)>,
    /// Seconds from the first create to the last task's end.
    pub end_to_end: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
}

impl Report {
    pub fn failed(&self) -> bool {
        self.lost > 0 || self.duplicate_runs > 0 || self.duplicate_objects > 0
    }

    pub fn render(&self) -> String {
        let get = |s: &str| self.statuses.get(s).copied().unwrap_or(0);
        let mut out = String::new();
        let _ = writeln!(out, "load run {}", self.run);
        let _ = writeln!(out, "  {:<34} {:>12}", "expected", self.expected);
        for (label, value) in [
            ("created", self.created),
            ("succeeded", get("succeeded")),
            ("dead", get("dead")),
            ("cancelled", get("cancelled")),
            ("lost (never terminal)", self.lost),
            ("executed twice (state)", self.duplicate_runs),
            ("executed twice (archive objects)", self.duplicate_objects),
        ] {
            let _ = writeln!(out, "  {label:<34} {value:>12}");
        }
        for (stage, n, seconds) in self.stages.iter().filter(|(_, n, _)| *n > 0) {
            let _ = writeln!(
                out,
                "  {:<34} {:>12.0} tasks/s ({n} in {seconds:.1} s)",
                format!("accepted by {stage}"),
                *n as f64 / seconds.max(0.001)
            );
        }
        let _ = writeln!(
            out,
            "  {:<34} {:>12.0} tasks/s ({} in {:.1} s)",
            "end to end",
            self.created as f64 / self.end_to_end.max(0.001),
            self.created,
            self.end_to_end
        );
        let _ = writeln!(
            out,
            "  {:<34} {:>9.0} ms / {:.0} ms",
            "latency created -> ended p50 / p99", self.latency_p50_ms, self.latency_p99_ms
        );
        out
    }
}

fn payload(run: &str, n: usize) -> (&'static str, Value) {
    if n % 100 == 99 {
        (
            "archive",
            json!({"load": run, "n": n, "name": format!("load-{n}")}),
        )
    } else {
        ("noop", json!({"load": run, "n": n}))
    }
}

/// Drives `plan` against `target` and measures it.
///
/// # Errors
/// When an entry point refuses the load or a service does not answer.
pub async fn run(target: &Target, plan: Plan) -> anyhow::Result<Report> {
    let run = format!("load-{}", uuid::Uuid::now_v7().simple());
    let db = target
        .stack
        .admin_client(&target.stack.names.database)
        .await?;
    let started = Instant::now();
    let mut report = Report {
        run: run.clone(),
        expected: plan.total() as u64,
        ..Report::default()
    };
    eprintln!(
        "==> {run}: {} batch creates, an import of {} rows, {} queue submissions",
        plan.api, plan.rows, plan.queue
    );
    let t = Instant::now();
    create_through_api(target, &run, plan.api).await?;
    report
        .stages
        .push(("the API", plan.api, t.elapsed().as_secs_f64()));
    let key = upload_import(target, &run, plan.api, plan.rows).await?;
    let t = Instant::now();
    submit_to_queue(target, &run, plan.api + plan.rows, plan.queue).await?;
    report
        .stages
        .push(("the queue", plan.queue, t.elapsed().as_secs_f64()));

    let deadline = started + plan.wait;
    let mut import_seconds = None;
    loop {
        let rows = db
            .query(
                "SELECT status, count(*) FROM tms.tasks WHERE payload->>'load' = $1 GROUP BY status",
                &[&run],
            )
            .await?;
        report.statuses = rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
            .collect();
        report.created = report.statuses.values().sum();
        let terminal: u64 = ["succeeded", "dead", "cancelled"]
            .iter()
            .filter_map(|s| report.statuses.get(*s))
            .sum();
        if import_seconds.is_none() {
            if let Some(row) = db
                .query_opt(
                    "SELECT status, error, extract(epoch FROM finished_at - started_at)::float8 \
                     FROM tms.imports WHERE object_key = $1 AND status <> 'running'",
                    &[&key],
                )
                .await?
            {
                let status: String = row.get(0);
                if status == "failed" {
                    let error: Option<String> = row.get(1);
                    bail!("the import failed: {}", error.unwrap_or_default());
                }
                import_seconds = row.get::<_, Option<f64>>(2);
            }
        }
        eprint!(
            "\r    {:>5.0} s: created {}/{}, ended {terminal}, running {}, pending {}, failed {}   ",
            started.elapsed().as_secs_f64(),
            report.created,
            report.expected,
            report.statuses.get("running").copied().unwrap_or(0),
            report.statuses.get("pending").copied().unwrap_or(0),
            report.statuses.get("failed").copied().unwrap_or(0),
        );
        if terminal == report.expected || Instant::now() >= deadline {
            eprintln!();
            report.lost = report.expected.saturating_sub(terminal);
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    if let Some(seconds) = import_seconds {
        report.stages.insert(1, ("the import", plan.rows, seconds));
    }
    let row = db
        .query_one(
            "SELECT count(*) FILTER (WHERE n > 1) FROM (
                 SELECT count(*) AS n FROM tms.task_events e JOIN tms.tasks t ON t.id = e.task_id
                 WHERE t.payload->>'load' = $1 AND e.to_status = 'succeeded' GROUP BY e.task_id) s",
            &[&run],
        )
        .await?;
    report.duplicate_runs = row.get::<_, i64>(0) as u64;
    let row = db
        .query_one(
            "SELECT extract(epoch FROM max(updated_at) - min(created_at))::float8,
                    (percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)) * 1000)::float8,
                    (percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)) * 1000)::float8
             FROM tms.tasks WHERE payload->>'load' = $1 AND status IN ('succeeded', 'dead', 'cancelled')",
            &[&run],
        )
        .await?;
    report.end_to_end = row.get::<_, Option<f64>>(0).unwrap_or_default();
    report.latency_p50_ms = row.get::<_, Option<f64>>(1).unwrap_or_default();
    report.latency_p99_ms = row.get::<_, Option<f64>>(2).unwrap_or_default();
    report.duplicate_objects = duplicate_archives(target, &db, &run).await?;
    Ok(report)
}

async fn create_through_api(target: &Target, run: &str, count: usize) -> anyhow::Result<()> {
    let http = crate::http_client();
    in_batches(0..count, 100, |range| {
        let http = http.clone();
        async move {
            let tasks: Vec<Value> = range
                .map(|n| {
                    let (kind, payload) = payload(run, n);
                    json!({"kind": kind, "payload": payload})
                })
                .collect();
            let resp = http
                .post(format!("{}/v1/tasks/batch", target.api))
                .bearer_auth(&target.token)
                .json(&json!({ "tasks": tasks }))
                .send()
                .await?;
            if resp.status() != 200 {
                bail!(
                    "a batch create answered {}: {}",
                    resp.status(),
                    resp.text().await?
                );
            }
            anyhow::Ok(())
        }
    })
    .await
}

/// Runs `send` on `range` cut into slices of `size`, four at a time; the first error stops it.
async fn in_batches<F, Fut>(
    range: std::ops::Range<usize>,
    size: usize,
    send: F,
) -> anyhow::Result<()>
where
    F: Fn(std::ops::Range<usize>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let end = range.end;
    stream::iter(range.step_by(size).map(|s| s..(s + size).min(end)))
        .map(send)
        .buffer_unordered(4)
        .try_collect::<Vec<()>>()
        .await
        .map(drop)
}

/// Uploads one JSON Lines file of `rows` tasks (numbered from `first`) the way a client does:
/// an upload URL from the API, then a PUT. Returns the object's key.
async fn upload_import(
    target: &Target,
    run: &str,
    first: usize,
    rows: usize,
) -> anyhow::Result<String> {
    let mut body = Vec::with_capacity(rows * 48);
    for n in first..first + rows {
        let (kind, payload) = payload(run, n);
        serde_json::to_writer(&mut body, &json!({"kind": kind, "payload": payload}))?;
        body.push(b'\n');
    }
    let http = crate::http_client();
    let resp = http
        .post(format!("{}/v1/imports", target.api))
        .bearer_auth(&target.token)
        .json(&json!({"filename": format!("{run}.jsonl"), "size_bytes": body.len()}))
        .send()
        .await?;
    if resp.status() != 201 {
        bail!(
            "asking for an upload URL answered {}: {}",
            resp.status(),
            resp.text().await?
        );
    }
    let upload: Value = resp.json().await?;
    let put = http
        .put(upload["upload_url"].as_str().context("an upload URL")?)
        .body(body)
        .send()
        .await?;
    if !put.status().is_success() {
        bail!("the upload answered {}", put.status());
    }
    Ok(upload["key"].as_str().unwrap_or_default().to_owned())
}

/// Sends `count` task submissions (numbered from `first`) to the work queue, ten a call.
async fn submit_to_queue(
    target: &Target,
    run: &str,
    first: usize,
    count: usize,
) -> anyhow::Result<()> {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    let sqs = aws_sdk_sqs::Client::new(&target.aws);
    let tenant = target.stack.tokens[0].0.clone();
    in_batches(first..first + count, 10, |range| {
        let (sqs, tenant) = (sqs.clone(), tenant.clone());
        async move {
            let entries = range
                .map(|n| {
                    let (kind, payload) = payload(run, n);
                    let body = json!({"tenant": tenant, "kind": kind, "payload": payload});
                    SendMessageBatchRequestEntry::builder()
                        .id(n.to_string())
                        .message_body(body.to_string())
                        .build()
                        .expect("id and body are set")
                })
                .collect();
            let out = sqs
                .send_message_batch()
                .queue_url(&target.resources.work_queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .context("send queue submissions")?;
            if !out.failed().is_empty() {
                bail!("the queue refused {} submissions", out.failed().len());
            }
            anyhow::Ok(())
        }
    })
    .await
}

/// Archive tasks of the run whose object has more than one version (written twice).
async fn duplicate_archives(
    target: &Target,
    db: &tokio_postgres::Client,
    run: &str,
) -> anyhow::Result<u64> {
    let keys: std::collections::HashSet<String> = db
        .query(
            "SELECT result->>'key' FROM tms.tasks WHERE payload->>'load' = $1 AND kind = 'archive' \
             AND status = 'succeeded'",
            &[&run],
        )
        .await?
        .iter()
        .filter_map(|r| r.get::<_, Option<String>>(0))
        .collect();
    let s3 = tms::adapters::s3::client(&target.aws);
    let mut versions: HashMap<String, u32> = HashMap::new();
    let prefix = format!("archive/{}/", target.stack.tokens[0].0);
    let (mut key_marker, mut version_marker) = (None, None);
    loop {
        let page = s3
            .list_object_versions()
            .bucket(&target.resources.bucket)
            .prefix(&prefix)
            .set_key_marker(key_marker)
            .set_version_id_marker(version_marker)
            .send()
            .await
            .context("list the archive's object versions")?;
        for v in page.versions() {
            if let Some(key) = v.key().filter(|k| keys.contains(*k)) {
                *versions.entry(key.to_owned()).or_default() += 1;
            }
        }
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        version_marker = page.next_version_id_marker().map(str::to_owned);
    }
    Ok(versions.values().filter(|n| **n > 1).count() as u64)
}
