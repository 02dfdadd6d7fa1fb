//! `make load SCENARIO=fairness`: one tenant's backlog must not delay another tenant's tasks.
//!
//! A large import for tenant `fair-big` is queued first (default 100,000 noop tasks); once all
//! its tasks exist, a small import for tenant `fair-small` (default 100) is queued behind it on
//! the same work queue. The run waits for the small tenant's tasks, notes how far the big
//! tenant's backlog had come by then, then (unless told not to) waits for the big one too, and
//! prints both tenants' latency (created → succeeded). Without the worker's fair claim the small
//! tenant's messages wait behind the whole backlog; with it they finish in a time that follows
//! their own count.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::json;

use crate::load::{connect, number, Target};

pub const BIG: &str = "fair-big";
pub const SMALL: &str = "fair-small";

/// How much each tenant queues, and how long to wait.
#[derive(Debug, Clone, PartialEq)]
pub struct Fairness {
    pub big: usize,
    pub small: usize,
    /// Wait for the big tenant's backlog to drain too (for its latency).
    pub drain_big: bool,
    pub wait: Duration,
}

impl Fairness {
    /// From `FAIR_BIG` (100,000), `FAIR_SMALL` (100) and `LOAD_WAIT_SECONDS` (1,800).
    ///
    /// # Errors
    /// A variable that is not a whole number, or a size of 0.
    pub fn from_env() -> anyhow::Result<Self> {
        let plan = Self {
            big: number("FAIR_BIG", 100_000)?,
            small: number("FAIR_SMALL", 100)?,
            drain_big: true,
            wait: Duration::from_secs(number("LOAD_WAIT_SECONDS", 1_800)? as u64),
        };
        if plan.big == 0 || plan.small == 0 || plan.big > crate::load::MAX_ROWS {
            bail!(
                "FAIR_BIG is 1 to {} and FAIR_SMALL at least 1",
                crate::load::MAX_ROWS
            );
        }
        Ok(plan)
    }
}

/// One tenant's tasks of the run once they ended: created → succeeded, in seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latency {
    pub succeeded: u64,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

/// What a fairness run measured.
#[derive(Debug, Clone, Default)]
pub struct FairnessReport {
    pub plan_big: usize,
    pub plan_small: usize,
    /// Seconds the big import took to create all its tasks.
    pub big_queued_seconds: f64,
    /// Seconds from queuing the small import to its last task's success.
    pub small_done_seconds: f64,
    /// The big tenant's tasks that had succeeded when the small tenant's last one did.
    pub big_succeeded_then: u64,
    pub small: Latency,
    /// `None` when the run did not wait for the big backlog.
    pub big: Option<Latency>,
    pub big_done_seconds: Option<f64>,
}

impl FairnessReport {
    pub fn render(&self) -> String {
        let latency = |l: &Latency| {
            format!(
                "{} succeeded; latency p50 {:.2} s, p95 {:.2} s, max {:.2} s",
                l.succeeded, l.p50, l.p95, l.max
            )
        };
        let mut out = format!(
            "fairness: {} tasks of {BIG} queued first ({:.1} s to create), then {} of {SMALL}\n\
             {SMALL}: all done {:.2} s after being queued; {}\n\
             {BIG} when {SMALL} was done: {} of {} succeeded ({:.1}%)\n",
            self.plan_big,
            self.big_queued_seconds,
            self.plan_small,
            self.small_done_seconds,
            latency(&self.small),
            self.big_succeeded_then,
            self.plan_big,
            100.0 * self.big_succeeded_then as f64 / self.plan_big.max(1) as f64,
        );
        match (&self.big, self.big_done_seconds) {
            (Some(big), Some(seconds)) => out.push_str(&format!(
                "{BIG}: all done {seconds:.1} s after being queued; {}\n",
                latency(big)
            )),
            _ => out.push_str(&format!("{BIG}: not waited for\n")),
        }
        out
    }
}

/// Puts a JSON Lines import of `rows` noop tasks for `tenant` straight into the bucket's
/// `imports/{tenant}/` (as an uploader of that tenant would), tagged with `run`.
async fn import(target: &Target, tenant: &str, run: &str, rows: usize) -> anyhow::Result<()> {
    let mut body = Vec::with_capacity(rows * 40);
    for n in 0..rows {
        serde_json::to_writer(
            &mut body,
            &json!({"kind": "noop", "payload": {"load": run, "n": n}}),
        )?;
        body.push(b'\n');
    }
    tms::adapters::s3::client(&target.aws)
        .put_object()
        .bucket(&target.resources.bucket)
        .key(format!("{}{tenant}/{run}.jsonl", tms::IMPORTS_PREFIX))
        .body(body.into())
        .send()
        .await
        .with_context(|| format!("upload the import of {tenant}"))?;
    Ok(())
}

/// The run's tasks of `tenant`: how many exist and how many succeeded.
async fn counts(
    db: &tokio_postgres::Client,
    tenant: &str,
    run: &str,
) -> anyhow::Result<(u64, u64)> {
    let row = db
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded') FROM tms.tasks \
             WHERE tenant = $1 AND payload->>'load' = $2",
            &[&tenant, &run],
        )
        .await?;
    Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
}

async fn latency(db: &tokio_postgres::Client, tenant: &str, run: &str) -> anyhow::Result<Latency> {
    let row = db
        .query_one(
            "SELECT count(*), \
                coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY s), 0), \
                coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY s), 0), \
                coalesce(max(s), 0) \
             FROM (SELECT extract(epoch FROM updated_at - created_at)::float8 AS s \
                   FROM tms.tasks WHERE tenant = $1 AND payload->>'load' = $2 \
                     AND status = 'succeeded') d",
            &[&tenant, &run],
        )
        .await?;
    Ok(Latency {
        succeeded: row.get::<_, i64>(0) as u64,
        p50: row.get(1),
        p95: row.get(2),
        max: row.get(3),
    })
}

/// Waits until `done` says the counts are there, printing a progress line; fails at `deadline`.
async fn wait_for(
    db: &tokio_postgres::Client,
    tenant: &str,
    run: &str,
    deadline: Instant,
    what: &str,
    done: impl Fn(u64, u64) -> bool,
) -> anyhow::Result<(u64, u64)> {
    loop {
        let (created, succeeded) = counts(db, tenant, run).await?;
        eprint!("\r    {tenant}: {created} created, {succeeded} succeeded      ");
        if done(created, succeeded) {
            eprintln!();
            return Ok((created, succeeded));
        }
        if Instant::now() > deadline {
            eprintln!();
            bail!("{tenant}: {what} did not happen in time ({created} created, {succeeded} succeeded)");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs the scenario against `target` (its runner must be running).
///
/// # Errors
/// When the bucket or the database refuses, or the tasks do not end within the plan's wait.
pub async fn run(target: &Target, plan: &Fairness) -> anyhow::Result<FairnessReport> {
    let run = format!("fair-{}", uuid::Uuid::now_v7().simple());
    let db = connect(target).await?;
    let deadline = Instant::now() + plan.wait;
    let mut report = FairnessReport {
        plan_big: plan.big,
        plan_small: plan.small,
        ..FairnessReport::default()
    };

    eprintln!("==> queuing {} tasks of {BIG}", plan.big);
    let started = Instant::now();
    import(target, BIG, &run, plan.big).await?;
    wait_for(&db, BIG, &run, deadline, "the import", |created, _| {
        created as usize == plan.big
    })
    .await?;
    report.big_queued_seconds = started.elapsed().as_secs_f64();

    eprintln!("==> queuing {} tasks of {SMALL} behind them", plan.small);
    let small_started = Instant::now();
    import(target, SMALL, &run, plan.small).await?;
    wait_for(
        &db,
        SMALL,
        &run,
        deadline,
        "its tasks' success",
        |_, succeeded| succeeded as usize == plan.small,
    )
    .await?;
    report.small_done_seconds = small_started.elapsed().as_secs_f64();
    report.big_succeeded_then = counts(&db, BIG, &run).await?.1;
    report.small = latency(&db, SMALL, &run).await?;

    if plan.drain_big {
        eprintln!("==> waiting for the rest of {BIG}");
        wait_for(
            &db,
            BIG,
            &run,
            deadline,
            "its tasks' success",
            |_, succeeded| succeeded as usize == plan.big,
        )
        .await?;
        report.big_done_seconds = Some(started.elapsed().as_secs_f64());
        report.big = Some(latency(&db, BIG, &run).await?);
    }
    Ok(report)
}
