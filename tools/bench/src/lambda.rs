//! The API's create as Lambda runs it: the release `tms-api` started against the bench's
//! Runtime API (`tms_testkit::runtime_api`), one invocation at a time, with the event API Gateway's HTTP API
//! sends for `POST /v1/tasks`; beside it the Python peer (`tools/bench/peer/create.py` under
//! `awslambdaric`, boto3, psycopg) under the same Runtime API with the same services.
//!
//! - cold, several starts: init (start → first `/next`) and init + the first create (its first
//!   TLS database connection, the token map from SSM);
//! - warm, one environment: latency (event → `/response`) and billed (event → next `/next`).
//!
//! Both send their work messages to the null SQS endpoint (the emulator would be measured
//! otherwise); SSM and PostgreSQL are the bench's own.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use serde_json::Value;
use tms::Tenant;

use crate::bench::{insert_pending_tasks, Bench, Pgbench};
use crate::cost::{self, Figures};
use crate::init::{lambda_command, python, MAX_INIT_MS};
use crate::null_sqs::NullSqs;
use crate::report::{median, number, quantile, Line, Promise, Report};
use crate::worker::{batch_event, batch_script, batch_script_with_events, TENANT};
use tms_testkit::runtime_api::{Invoked, RuntimeApi};

/// The fixture of the API's tests: what API Gateway's HTTP API sends for a create.
const FIXTURE: &str = include_str!("../../../functions/api/tests/fixtures/apigw-v2-create.json");

/// How long the function may take to poll or answer before the run fails.
const WITHIN: Duration = Duration::from_secs(30);

/// Promised: warm p50 latency within this of pgbench's single insert at one client.
const LATENCY_MARGIN_MS: f64 = 0.5;
/// Promised: our init + first create ≤ this share of the peer's.
const COLD_RATIO: f64 = 0.1;
/// Promised: our warm billed p50 ≤ this share of the peer's.
const BILLED_RATIO: f64 = 0.25;
/// Promised: billed ms per noop task in batches of 100 ≤ this × pgbench's per task.
const WORKER_RATIO: f64 = 2.0;

/// A program that serves the create under a Runtime API.
struct Function {
    name: &'static str,
    program: PathBuf,
    args: Vec<&'static str>,
    dir: Option<PathBuf>,
}

/// A create without an idempotency key, authorised with `token`.
fn create_event(token: &str) -> anyhow::Result<Vec<u8>> {
    let mut event: Value = serde_json::from_str(FIXTURE)?;
    let headers = event["headers"]
        .as_object_mut()
        .context("the fixture's headers")?;
    headers.remove("idempotency-key");
    headers.remove("x-correlation-id");
    headers.insert("authorization".into(), format!("Bearer {token}").into());
    event["body"] = r#"{"kind":"noop","payload":{}}"#.into();
    event["isBase64Encoded"] = false.into();
    Ok(serde_json::to_vec(&event)?)
}

/// The HTTP status the function answered with.
fn status(invoked: &Invoked) -> anyhow::Result<u64> {
    ensure!(
        !invoked.outcome.error,
        "the function reported an error: {}",
        String::from_utf8_lossy(&invoked.outcome.body)
    );
    let response: Value = serde_json::from_slice(&invoked.outcome.body)
        .context("the function's response is not JSON")?;
    response["statusCode"]
        .as_u64()
        .with_context(|| format!("a response without statusCode: {response}"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Function {
    /// Starts one execution environment against `api`.
    fn start(
        &self,
        env: &[(String, String)],
        api: &RuntimeApi,
    ) -> anyhow::Result<tokio::process::Child> {
        let mut command = lambda_command(&self.program, &self.args, env, self.name, &api.address);
        if let Some(dir) = &self.dir {
            command.current_dir(dir).env("LAMBDA_TASK_ROOT", dir);
        }
        command
            .spawn()
            .with_context(|| format!("start {}", self.program.display()))
    }

    /// One cold start: init, and init + the first create, in milliseconds.
    async fn cold(&self, env: &[(String, String)], event: &[u8]) -> anyhow::Result<(f64, f64)> {
        let mut api = RuntimeApi::start(self.name).await?;
        let started = Instant::now();
        let mut child = self.start(env, &api)?;
        let polled = api
            .polled(WITHIN)
            .await
            .with_context(|| format!("{} at init", self.name))?;
        let first = api.invoke(event.to_vec(), WITHIN).await?;
        let code = status(&first)?;
        ensure!(
            code == 202,
            "{}: the first create answered {code}",
            self.name
        );
        child.kill().await?;
        Ok((ms(polled - started), ms(first.outcome.at - started)))
    }

    /// `events` in one warm environment (after the first, which warms it), each checked by
    /// `check`.
    async fn warm(
        &self,
        env: &[(String, String)],
        events: impl IntoIterator<Item = Vec<u8>>,
        check: impl Fn(&Invoked) -> anyhow::Result<()>,
    ) -> anyhow::Result<Warm> {
        let mut api = RuntimeApi::start(self.name).await?;
        let mut child = self.start(env, &api)?;
        let pid = child.id().context("the function has no PID")?;
        let mut warm = Warm::default();
        let mut cpu_before = None;
        for (n, event) in events.into_iter().enumerate() {
            let invoked = api.invoke(event, WITHIN).await?;
            check(&invoked).with_context(|| format!("{}: invocation {n}", self.name))?;
            if n == 0 {
                cpu_before = Some(cpu_ms(pid)?);
                continue;
            }
            warm.latency.push(ms(invoked.latency));
            warm.billed.push(ms(invoked.billed));
        }
        let used = cpu_ms(pid)? - cpu_before.unwrap_or_default();
        warm.cpu_per_invocation = used / warm.billed.len().max(1) as f64;
        child.kill().await?;
        warm.latency.sort_by(f64::total_cmp);
        warm.billed.sort_by(f64::total_cmp);
        Ok(warm)
    }
}

/// Warm invocations: latencies and billed durations (sorted), and the CPU time each used, in
/// milliseconds.
#[derive(Debug, Default)]
pub struct Warm {
    pub latency: Vec<f64>,
    pub billed: Vec<f64>,
    pub cpu_per_invocation: f64,
}

/// The CPU time (user and system) process `pid` used so far, in milliseconds.
fn cpu_ms(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // After the command's closing parenthesis: state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i - 3)
            .context("a short /proc stat line")?
            .parse::<f64>()?)
    };
    // Linux counts in USER_HZ, 100 a second on every architecture it runs on.
    Ok((ticks(14)? + ticks(15)?) * 10.0)
}

fn created(invoked: &Invoked) -> anyhow::Result<()> {
    let code = status(invoked)?;
    ensure!(code == 202, "a create answered {code}");
    Ok(())
}

/// What one function measured.
struct Measured {
    init: Vec<f64>,
    first: Vec<f64>,
    warm: Warm,
}

async fn measure_one(
    function: &Function,
    env: &[(String, String)],
    event: &[u8],
    starts: usize,
    creates: usize,
) -> anyhow::Result<Measured> {
    println!(
        "  {}: {starts} cold starts, {creates} warm creates",
        function.name
    );
    let (mut init, mut first) = (Vec::new(), Vec::new());
    for _ in 0..starts {
        let (i, f) = function.cold(env, event).await?;
        init.push(i);
        first.push(f);
    }
    let warm = function
        .warm(
            env,
            std::iter::repeat_n(event.to_vec(), creates + 1),
            created,
        )
        .await?;
    Ok(Measured { init, first, warm })
}

/// The worker under the Runtime API: batches of noop tasks of each size, billed ms per task,
/// against pgbench's batched claim and record at one client. Returns the warm figures by size.
async fn measure_worker(
    bench: &Bench,
    report: &mut Report,
    env: &[(String, String)],
) -> anyhow::Result<Vec<(usize, Warm)>> {
    let tenant = Tenant::parse(TENANT).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let worker = Function {
        name: "tms-worker",
        program: bench.release.join("tms-worker"),
        args: Vec::new(),
        dir: None,
    };
    let mut measured = Vec::new();
    for size in bench.settings.worker_batch_sizes.clone() {
        let batches = (bench.settings.worker_tasks / size).max(20);
        let tasks = ((batches + 1) * size) as i64;
        println!("  tms-worker: {batches} batches of {size} noop tasks");
        bench.reset_tables().await?;
        insert_pending_tasks(bench, TENANT, tasks).await?;
        let events = (0..=batches as i64).map(|b| {
            serde_json::to_vec(&batch_event(b, size as i64, &tenant)).expect("an SQS event")
        });
        let warm = worker
            .warm(env, events, |invoked| {
                ensure!(
                    !invoked.outcome.error,
                    "the worker reported an error: {}",
                    String::from_utf8_lossy(&invoked.outcome.body)
                );
                let response: Value = serde_json::from_slice(&invoked.outcome.body)?;
                ensure!(
                    response["batchItemFailures"]
                        .as_array()
                        .is_some_and(Vec::is_empty),
                    "records failed: {response}"
                );
                Ok(())
            })
            .await?;
        let succeeded = bench.count_tasks("succeeded").await?;
        ensure!(succeeded == tasks, "{succeeded} of {tasks} tasks succeeded");
        let pgbench = pgbench_batches(
            bench,
            &format!("lambda-worker-batch-{size}"),
            &batch_script(size),
            batches,
            size,
        )
        .await?;
        let per_task = median(&warm.billed) / size as f64;
        let promise = if size >= 100 {
            Promise::RatioAtMost(WORKER_RATIO)
        } else {
            Promise::None
        };
        report.push(
            Line::new(
                format!("lambda tms-worker: billed per noop task, batches of {size}"),
                per_task,
                "ms",
            )
            .baseline(
                "pgbench claim + record, 1 client",
                pgbench.latency_ms / size as f64,
            )
            .promise(promise)
            .note(format!(
                "median batch billed {:.2} ms (p99 {:.2}) of {} batches; {:.2} ms CPU a batch",
                median(&warm.billed),
                quantile(&warm.billed, 0.99),
                warm.billed.len(),
                warm.cpu_per_invocation
            )),
        );
        if size >= 100 {
            let with_events = pgbench_batches(
                bench,
                &format!("lambda-worker-batch-{size}-events"),
                &batch_script_with_events(size),
                batches,
                size,
            )
            .await?;
            report.push(
                Line::new(
                    format!(
                        "lambda tms-worker: billed per noop task, batches of {size}, against pgbench writing the lifecycle events"
                    ),
                    per_task,
                    "ms",
                )
                .baseline(
                    "pgbench claim + record + lifecycle rows inserted and forgotten, 1 client",
                    with_events.latency_ms / size as f64,
                )
                .note(
                    "information for SPEC §7's owner: the promised baseline predates the lifecycle \
                     events SPEC §3 has the record write; this one writes them too",
                ),
            );
        }
        measured.push((size, warm));
    }
    Ok(measured)
}

/// pgbench running `script` at one client over `batches` batches of `size` fresh pending tasks
/// (one more batch is inserted, as for the worker); every task its batches name must succeed.
async fn pgbench_batches(
    bench: &Bench,
    name: &str,
    script: &str,
    batches: usize,
    size: usize,
) -> anyhow::Result<Pgbench> {
    bench.reset_tables().await?;
    insert_pending_tasks(bench, TENANT, ((batches + 1) * size) as i64).await?;
    let run = bench
        .pgbench(
            name,
            script,
            &[
                "--client=1".to_owned(),
                format!("--transactions={batches}"),
                "--define=i=0".into(),
                format!("--define=per_client={batches}"),
            ],
        )
        .await?;
    let succeeded = bench.count_tasks("succeeded").await?;
    ensure!(
        succeeded == (batches * size) as i64,
        "pgbench's {name} left {succeeded} of {} tasks succeeded",
        batches * size
    );
    Ok(run)
}

pub async fn measure(bench: &Bench, report: &mut Report) -> anyhow::Result<()> {
    let sqs = NullSqs::start().await?;
    let env = bench.function_env(&sqs.env());
    let event = create_event(&bench.stack.tokens[0].1)?;
    let starts = bench.settings.init_runs.max(1);
    let creates = if bench.settings.quick { 200 } else { 2_000 };
    let root = &bench.stack.root;
    let ours = Function {
        name: "tms-api",
        program: bench.release.join("tms-api"),
        args: Vec::new(),
        dir: None,
    };
    let peer = Function {
        name: "python-peer",
        program: python(root),
        args: vec!["-m", "awslambdaric", "create.handler"],
        dir: Some(root.join("tools/bench/peer")),
    };
    bench.reset_tables().await?;
    let ours_m = measure_one(&ours, &env, &event, starts, creates).await?;
    let peer_m = measure_one(&peer, &env, &event, starts, creates)
        .await
        .context("the Python peer (`scripts/venv.sh tools peer` installs it)")?;
    bench.reset_tables().await?;
    let pgbench = bench
        .pgbench(
            "lambda-insert-1",
            &crate::api::insert_script(&bench.stack.tokens[0].0),
            &[
                "--client=1".to_owned(),
                format!("--time={}", bench.settings.api_seconds),
            ],
        )
        .await?;

    let p = |v: &[f64], q: f64| quantile(v, q);
    let peer_label = "python peer";
    report.push(
        Line::runs(
            "lambda tms-api: init (start to first /next)",
            &ours_m.init,
            "ms",
        )
        .baseline(peer_label, median(&peer_m.init))
        .promise(Promise::AtMost(MAX_INIT_MS)),
    );
    report.push(
        Line::runs(
            "lambda tms-api: init + first create (TLS connection, SSM token map)",
            &ours_m.first,
            "ms",
        )
        .baseline(peer_label, median(&peer_m.first))
        .promise(Promise::RatioAtMost(COLD_RATIO)),
    );
    report.push(
        Line::new(
            "lambda tms-api: warm create latency p50",
            p(&ours_m.warm.latency, 0.5),
            "ms",
        )
        .baseline("pgbench single insert, 1 client", pgbench.latency_ms)
        .promise(Promise::AtMost(pgbench.latency_ms + LATENCY_MARGIN_MS))
        .note(format!(
            "of {} creates; the python peer's p50 {:.2} ms",
            ours_m.warm.latency.len(),
            p(&peer_m.warm.latency, 0.5)
        )),
    );
    report.push(
        Line::new(
            "lambda tms-api: warm create latency p99",
            p(&ours_m.warm.latency, 0.99),
            "ms",
        )
        .baseline(peer_label, p(&peer_m.warm.latency, 0.99)),
    );
    report.push(
        Line::new(
            "lambda tms-api: warm create billed p50",
            p(&ours_m.warm.billed, 0.5),
            "ms",
        )
        .baseline(peer_label, p(&peer_m.warm.billed, 0.5))
        .promise(Promise::RatioAtMost(BILLED_RATIO))
        .note(
            "event handed out to the next /next: includes the work message sent after the response",
        ),
    );
    report.push(
        Line::new(
            "lambda tms-api: warm create billed p99",
            p(&ours_m.warm.billed, 0.99),
            "ms",
        )
        .baseline(peer_label, p(&peer_m.warm.billed, 0.99)),
    );
    ensure!(
        sqs.accepted() as usize >= 2 * (starts + creates + 1),
        "the null SQS endpoint took {} work messages for {} creates",
        sqs.accepted(),
        2 * (starts + creates + 1)
    );
    let workers = measure_worker(bench, report, &env).await?;
    println!(
        "  {} lifecycle events published by the worker to the null EventBridge endpoint",
        number(sqs.events() as f64)
    );
    let (batch, worker) = workers
        .iter()
        .min_by_key(|(size, _)| *size)
        .context("no worker batch size measured")?;
    cost::report(
        report,
        &Figures {
            create: &ours_m.warm,
            batch: worker,
            batch_size: *batch,
        },
    );
    Ok(())
}
