//! `make load`: drives a volume of tasks through every entry point of the running stack (batch
//! creates over HTTP, one import file, queue submissions), waits until every task is terminal,
//! and reports what was lost or executed twice, the rates and the end-to-end latency.
//!
//! Every task of a run carries `{"load": "<run id>"}` in its payload, so the counts read the
//! database for exactly this run's tasks. One task in a hundred is an `archive` task: the
//! bucket is versioned, so an archive written twice leaves two versions of its object.
//!
//! With `FAULTS=1` the run also breaks the stack while it waits: the event-source runner is
//! killed with SIGKILL (and started again) twice and PostgreSQL is restarted once, at set
//! shares of the tasks ended; the counts must come out the same.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_trait::async_trait;
use futures::{stream, StreamExt, TryStreamExt};
use serde_json::{json, Value};

use crate::{Resources, Stack};

/// A fault a run injects while it waits for its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The event-source runner is killed with SIGKILL, in the middle of its batches, and a new
    /// one is started (as Lambda replaces an execution environment that died).
    KillRunner,
    /// PostgreSQL is stopped and started again: every connection of the stack breaks.
    RestartDatabase,
}

/// The faults of `FAULTS=1`, each at a share of the run's tasks ended.
pub const FAULTS: [(f64, Fault); 3] = [
    (0.15, Fault::KillRunner),
    (0.40, Fault::RestartDatabase),
    (0.65, Fault::KillRunner),
];

/// Carries faults out: on the stack `make dev` runs ([`DevFaults`]), or on a test's own.
#[async_trait]
pub trait Faults: Sync {
    /// Injects `fault`, returns once the stack is back, and says what was done.
    async fn inject(&self, fault: Fault) -> anyhow::Result<String>;
}

/// The faults of the stack `make dev` runs: its runner's PID is in `.local/runner.pid` (and
/// `tms-local dev` starts a new runner when it was killed); its cluster is `scripts/postgres.sh`'s.
pub struct DevFaults {
    pub root: std::path::PathBuf,
}

impl DevFaults {
    fn runner_pid(&self) -> anyhow::Result<u32> {
        let path = self.root.join(crate::RUNNER_PID_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} not found: is the stack `make dev` runs up?",
                path.display()
            )
        })?;
        text.trim()
            .parse()
            .with_context(|| format!("{} holds no PID", path.display()))
    }
}

async fn succeeds(program: &std::path::Path, args: &[&str]) -> anyhow::Result<()> {
    let status = tokio::process::Command::new(program)
        .args(args)
        .status()
        .await
        .with_context(|| format!("cannot run {}", program.display()))?;
    if !status.success() {
        bail!("{} {} failed ({status})", program.display(), args.join(" "));
    }
    Ok(())
}

#[async_trait]
impl Faults for DevFaults {
    async fn inject(&self, fault: Fault) -> anyhow::Result<String> {
        let started = Instant::now();
        match fault {
            Fault::KillRunner => {
                let pid = self.runner_pid()?;
                succeeds("kill".as_ref(), &["-KILL", &pid.to_string()]).await?;
                loop {
                    if let Ok(new) = self.runner_pid() {
                        if new != pid
                            && succeeds("kill".as_ref(), &["-0", &new.to_string()])
                                .await
                                .is_ok()
                        {
                            return Ok(format!(
                                "killed the runner (PID {pid}, SIGKILL); PID {new} ran {:.1} s later",
                                started.elapsed().as_secs_f64()
                            ));
                        }
                    }
                    if started.elapsed() > Duration::from_secs(30) {
                        bail!("no runner was started within 30 s of killing PID {pid}");
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Fault::RestartDatabase => {
                succeeds(&self.root.join("scripts/postgres.sh"), &["restart"]).await?;
                Ok(format!(
                    "restarted PostgreSQL in {:.1} s",
                    started.elapsed().as_secs_f64()
                ))
            }
        }
    }
}

/// How much to drive, from `LOAD_API`, `LOAD_ROWS`, `LOAD_QUEUE`, `LOAD_WAIT_SECONDS` and
/// `FAULTS`.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Tasks created through `POST /v1/tasks/batch`, 100 a request.
    pub api: usize,
    /// Rows of the one import file (JSON Lines).
    pub rows: usize,
    /// Task submissions sent to the work queue, 10 a `SendMessageBatch`.
    pub queue: usize,
    /// How long to wait for every task to end before counting the rest as lost.
    pub wait: Duration,
    /// What to break while waiting, each at a share of the tasks ended.
    pub faults: Vec<(f64, Fault)>,
}

/// The whole number in the environment variable `name`, `default` when it is unset or empty.
///
/// # Errors
/// When it is not a whole number.
pub(crate) fn number(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .with_context(|| format!("{name} must be a whole number, got {v:?}")),
        _ => Ok(default),
    }
}

/// The largest import a run may ask for.
pub const MAX_ROWS: usize = 1_000_000;

impl Plan {
    /// # Errors
    /// A variable that is not a number, or more rows than [`MAX_ROWS`].
    pub fn from_env() -> anyhow::Result<Self> {
        let plan = Self {
            api: number("LOAD_API", 10_000)?,
            rows: number("LOAD_ROWS", 100_000)?,
            queue: number("LOAD_QUEUE", 1_000)?,
            wait: Duration::from_secs(number("LOAD_WAIT_SECONDS", 1_800)? as u64),
            faults: match number("FAULTS", 0)? {
                0 => Vec::new(),
                1 => FAULTS.to_vec(),
                n => bail!("FAULTS is 0 or 1, got {n}"),
            },
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
    /// The faults injected: at what share of the tasks ended, and what was done.
    pub faults: Vec<(f64, String)>,
    /// Planned faults not injected: the run ended first.
    pub faults_missed: usize,
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
        for (share, what) in &self.faults {
            let _ = writeln!(
                out,
                "  {:<34} {what}",
                format!("fault at {:.0}% ended", share * 100.0)
            );
        }
        if self.faults_missed > 0 {
            let _ = writeln!(
                out,
                "  {:<34} {} (the run ended first)",
                "faults not injected", self.faults_missed
            );
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

/// A connection to the stack's database, tried for up to a minute (PostgreSQL may be restarting).
pub(crate) async fn connect(target: &Target) -> anyhow::Result<tokio_postgres::Client> {
    let started = Instant::now();
    loop {
        match target
            .stack
            .admin_client(&target.stack.names.database)
            .await
        {
            Ok(client) => return Ok(client),
            Err(e) if started.elapsed() < Duration::from_secs(60) => {
                tracing::debug!(error = %e, "the database does not answer yet");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// What one look at the database saw: the run's tasks by status, and whether its import ended
/// (in how many seconds); the import is looked up only while `import_key` is given.
struct Progress {
    statuses: HashMap<String, u64>,
    import_seconds: Option<Option<f64>>,
}

async fn progress(
    db: &tokio_postgres::Client,
    run: &str,
    import_key: Option<&str>,
) -> anyhow::Result<Progress> {
    let rows = db
        .query(
            "SELECT status, count(*) FROM tms.tasks WHERE payload->>'load' = $1 GROUP BY status",
            &[&run],
        )
        .await?;
    let statuses = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
        .collect();
    let import = match import_key {
        Some(key) => {
            db.query_opt(
                "SELECT status, error, extract(epoch FROM finished_at - started_at)::float8 \
                 FROM tms.imports WHERE object_key = $1 AND status <> 'running'",
                &[&key],
            )
            .await?
        }
        None => None,
    };
    let import_seconds = match import {
        Some(row) if row.get::<_, String>(0) == "failed" => {
            let error: Option<String> = row.get(1);
            bail!("the import failed: {}", error.unwrap_or_default());
        }
        Some(row) => Some(row.get::<_, Option<f64>>(2)),
        None => None,
    };
    Ok(Progress {
        statuses,
        import_seconds,
    })
}

/// Drives `plan` against `target` and measures it; `faults` injects the plan's faults.
///
/// # Errors
/// When an entry point refuses the load, a service does not answer, or a fault cannot be
/// injected.
pub async fn run(target: &Target, plan: Plan, faults: &dyn Faults) -> anyhow::Result<Report> {
    let run = format!("load-{}", uuid::Uuid::now_v7().simple());
    let mut db = connect(target).await?;
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
    // Once the import ended: how many seconds it took, when it says.
    let mut import_ended: Option<Option<f64>> = None;
    let mut planned = plan.faults.iter().peekable();
    // Faults want a closer look: a small run ends in seconds.
    let every = if plan.faults.is_empty() {
        Duration::from_secs(2)
    } else {
        Duration::from_millis(500)
    };
    loop {
        let pending_import = import_ended.is_none().then_some(key.as_str());
        let seen = match progress(&db, &run, pending_import).await {
            Ok(seen) => seen,
            Err(e) if db.is_closed() => {
                eprintln!("\n    the database connection broke ({e:#}): connecting again");
                db = connect(target).await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        report.statuses = seen.statuses;
        report.created = report.statuses.values().sum();
        let terminal: u64 = ["succeeded", "dead", "cancelled"]
            .iter()
            .filter_map(|s| report.statuses.get(*s))
            .sum();
        if seen.import_seconds.is_some() {
            import_ended = seen.import_seconds;
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
        // One fault a look, so that the stack works between two of them.
        let ended = terminal as f64 / report.expected.max(1) as f64;
        if let Some((_, fault)) = planned.next_if(|(share, _)| ended >= *share) {
            eprintln!("\n    {:.0}% ended: injecting {fault:?}", ended * 100.0);
            let what = faults.inject(*fault).await?;
            eprintln!("    {what}");
            report.faults.push((ended, what));
        }
        tokio::time::sleep(every).await;
    }
    report.faults_missed = planned.count();
    if let Some(Some(seconds)) = import_ended {
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
