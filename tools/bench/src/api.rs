//! API create as a local server (information: under Lambda an environment serves one request at
//! a time, which `lambda` measures): requests/s and p50/p99 latency of `POST /v1/tasks` (noop)
//! against the release `tms-api` served over plain HTTP, at each client count (1 and 8), against pgbench running the
//! store's insert (the task and its first event, one statement) with as many clients for as
//! long, each API run followed by its pgbench run. The API sends its work messages to the null
//! SQS endpoint (see `null_sqs`) after answering, then sets their outbox markers; each run
//! checks that every task it created was sent and marked.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::bench::{with_steal, Bench, Pgbench, Steal};
use crate::null_sqs::NullSqs;
use crate::report::{median, number, quantile, Line, Report};

const BODY: &str = r#"{"kind":"noop","payload":{}}"#;
const WARM_UP: Duration = Duration::from_secs(2);

/// The columns the store returns (`task_columns`), in its order.
const TASK_COLUMNS: &str = "id, tenant, kind, payload, status, attempts, max_attempts, run_after, \
    lease_until, idempotency_key, correlation_id, source, import_id, import_line, result, \
    last_error, enqueued_at, created_at, updated_at, version";

/// The store's `INSERT_TASK` with the values of an API create without `Idempotency-Key`. The id
/// is time-ordered like a UUID v7 (PostgreSQL 15 has no generator for those).
pub(crate) fn insert_script(tenant: &str) -> String {
    format!(
        "\\set n random(1, 2000000000)
WITH ins AS (
    INSERT INTO tms.tasks (id, tenant, kind, payload, max_attempts, run_after,
        idempotency_key, request_hash, correlation_id, source, import_id, import_line)
    VALUES ((lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::int8), 12, '0')
                || '7' || substr(md5(random()::text), 1, 19))::uuid,
        '{tenant}', 'noop', '{{}}', 5, COALESCE(NULL::timestamptz, now()), NULL,
        sha256(:n::text::bytea), gen_random_uuid()::text, 'api', NULL, NULL)
    ON CONFLICT (tenant, idempotency_key) DO NOTHING
    RETURNING {TASK_COLUMNS}
), ev AS (
    INSERT INTO tms.task_events (task_id, from_status, to_status, attempt, correlation_id)
    SELECT id, NULL, status, attempts, correlation_id FROM ins
)
SELECT {TASK_COLUMNS} FROM ins;
"
    )
}

#[derive(Debug, Default)]
struct Load {
    accepted: u64,
    failed: u64,
    first_failure: Option<String>,
    seconds: f64,
    /// Of every accepted request, in milliseconds.
    latencies_ms: Vec<f64>,
}

impl Load {
    fn absorb(&mut self, other: Load) {
        self.accepted += other.accepted;
        self.failed += other.failed;
        self.first_failure = self.first_failure.take().or(other.first_failure);
        self.latencies_ms.extend(other.latencies_ms);
    }
}

/// `concurrency` clients, each on one HTTP/1.1 keep-alive connection of its own, sending
/// creates back to back until `duration` is over. The client is as bare as pgbench's: its
/// clients run on `min(concurrency, 2)` threads of their own (pgbench's `--jobs`), each a
/// single-threaded runtime, apart from the bench's runtime and its null SQS endpoint; a client
/// writes a request built once and reads the answer whole into one buffer ([`Connection`]).
/// The load generator shares the two cores with the API and PostgreSQL, as pgbench's client
/// does.
async fn drive(
    addr: std::net::SocketAddr,
    token: &str,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Load> {
    let request: Arc<[u8]> = create_request(addr, token).into();
    let started = Instant::now();
    let deadline = started + duration;
    let jobs = concurrency.clamp(1, 2);
    let threads: Vec<_> = (0..jobs)
        .map(|job| {
            let clients = concurrency / jobs + usize::from(job < concurrency % jobs);
            let request = request.clone();
            std::thread::spawn(move || -> anyhow::Result<Load> {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(job_clients(addr, request, clients, deadline))
            })
        })
        .collect();
    let mut total = Load::default();
    for thread in threads {
        let load = tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("a load generator thread panicked"))??;
        total.absorb(load);
    }
    total.seconds = started.elapsed().as_secs_f64();
    Ok(total)
}

/// The clients of one load generator thread, until `deadline`.
async fn job_clients(
    addr: std::net::SocketAddr,
    request: Arc<[u8]>,
    clients: usize,
    deadline: Instant,
) -> anyhow::Result<Load> {
    let mut workers = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut connection = Connection::open(addr).await?;
        let request = request.clone();
        workers.push(tokio::spawn(async move {
            let mut load = Load::default();
            while Instant::now() < deadline {
                let sent_at = Instant::now();
                let answer = connection.exchange(&request).await.and_then(|status| {
                    ensure!(status == 202, "HTTP {status}");
                    Ok(())
                });
                match answer {
                    Ok(()) => {
                        load.latencies_ms
                            .push(sent_at.elapsed().as_secs_f64() * 1000.0);
                        load.accepted += 1;
                    }
                    Err(e) => {
                        load.failed += 1;
                        load.first_failure.get_or_insert_with(|| format!("{e:#}"));
                        // The connection may be mid-answer or closed: start a fresh one.
                        match Connection::open(addr).await {
                            Ok(fresh) => connection = fresh,
                            Err(_) => break,
                        }
                    }
                }
            }
            load
        }));
    }
    let mut total = Load::default();
    for worker in workers {
        let load = worker.await?;
        total.absorb(load);
    }
    Ok(total)
}

/// `POST /v1/tasks` with the noop body, as bytes on the wire.
fn create_request(addr: std::net::SocketAddr, token: &str) -> Vec<u8> {
    format!(
        "POST /v1/tasks HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    )
    .into_bytes()
}

/// A keep-alive HTTP/1.1 connection to the API, one request at a time.
struct Connection {
    stream: tokio::net::TcpStream,
    /// The answer being read; reused.
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to the API on {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buffer: Vec::with_capacity(4096),
        })
    }

    /// Writes `request` and reads its answer to the end of its body; returns its status.
    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<u16> {
        self.stream.write_all(request).await?;
        self.buffer.clear();
        let (status, end) = loop {
            self.fill().await?;
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = response.parse(&self.buffer)? {
                let status = response.code.context("an answer without a status")?;
                let length = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .context("an answer without Content-Length")?;
                let length: usize = std::str::from_utf8(length.value)?.trim().parse()?;
                break (status, head + length);
            }
        };
        while self.buffer.len() < end {
            self.fill().await?;
        }
        ensure!(
            self.buffer.len() == end,
            "the API sent more than one answer"
        );
        Ok(status)
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        if self.stream.read_buf(&mut self.buffer).await? == 0 {
            bail!("the API closed the connection");
        }
        Ok(())
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The release API, served with `make dev`'s environment, a pool as large as the largest load,
/// its work messages sent to the null SQS endpoint, and JSON logs as under Lambda.
struct Api {
    process: tokio::process::Child,
    addr: std::net::SocketAddr,
}

impl Api {
    async fn start(bench: &Bench, sqs: &NullSqs, pool: usize) -> anyhow::Result<Self> {
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let binary = bench.release.join("tms-api");
        let log = std::fs::File::create(bench.scratch.join("api.log"))?;
        let mut process = tokio::process::Command::new(&binary)
            .envs(bench.function_env(&[
                ("TMS_API_PORT", port.to_string()),
                ("AWS_ENDPOINT_URL_SQS", sqs.url.clone()),
                ("AWS_ENDPOINT_URL_EVENTBRIDGE", sqs.url.clone()),
                ("TMS_DATABASE_POOL_SIZE", pool.to_string()),
                ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
            ]))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let started = Instant::now();
        while !tms_local::healthy(&url).await {
            if let Some(status) = process.try_wait()? {
                bail!("tms-api exited ({status}) before it answered: see .local/bench/api.log");
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("tms-api did not answer within 30 s: see .local/bench/api.log");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            process,
            addr: ([127, 0, 0, 1], port).into(),
        })
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        self.process.start_kill()?;
        self.process.wait().await?;
        Ok(())
    }
}

/// The figures of one client count: each run's rate, every run's requests together, and what
/// the host took.
#[derive(Default)]
struct Series {
    rates: Vec<f64>,
    all: Load,
    steal: Steal,
}

/// Waits until every task of the last run has its marker set (they are written after the
/// answers), at most 5 s; returns how many tasks there are.
async fn all_marked(bench: &Bench) -> anyhow::Result<i64> {
    let admin = bench.admin(&bench.stack.names.database).await?;
    let settled = Instant::now() + Duration::from_secs(5);
    loop {
        let row = admin
            .query_one("SELECT count(*), count(enqueued_at) FROM tms.tasks", &[])
            .await?;
        let (created, enqueued): (i64, i64) = (row.get(0), row.get(1));
        if created == enqueued {
            return Ok(created);
        }
        ensure!(
            Instant::now() < settled,
            "{} of {created} created tasks were not marked sent within 5 s: see .local/bench/api.log",
            created - enqueued
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The runs of one client count, each API run followed by a pgbench run with as many clients,
/// measured again while the host steals (see [`Steal`]).
async fn paired_runs(
    bench: &Bench,
    api: &Api,
    clients: usize,
) -> anyhow::Result<(Series, Vec<Pgbench>)> {
    let runs = bench.settings.runs;
    let mut series = Series::default();
    let mut baseline = Vec::new();
    for run in 1..=runs {
        let pair = series
            .steal
            .pair(
                &format!("API, {clients} client(s), run {run}/{runs}"),
                || one_pair(bench, api, clients),
                |pair: &Pair| {
                    format!(
                        "{} req/s ({} tasks, all sent and marked); pgbench insert: {} tps",
                        number(pair.rate()),
                        number(pair.created as f64),
                        number(pair.pgbench.tps)
                    )
                },
            )
            .await?;
        series.rates.push(pair.rate());
        series.all.absorb(pair.load);
        baseline.push(pair.pgbench);
    }
    Ok((series, baseline))
}

/// One API run and its pgbench run.
struct Pair {
    load: Load,
    created: i64,
    pgbench: Pgbench,
}

impl Pair {
    fn rate(&self) -> f64 {
        self.load.accepted as f64 / self.load.seconds
    }
}

/// One pair, with the larger steal of its two runs.
async fn one_pair(bench: &Bench, api: &Api, clients: usize) -> anyhow::Result<(Pair, f64)> {
    let token = &bench.stack.tokens[0].1;
    let duration = Duration::from_secs(bench.settings.api_seconds);
    bench.reset_tables().await?;
    drive(api.addr, token, clients, WARM_UP).await?;
    let (load, api_steal) = with_steal(drive(api.addr, token, clients, duration)).await?;
    let created = all_marked(bench).await?;

    bench.reset_tables().await?;
    let (pgbench, pgbench_steal) = with_steal(bench.pgbench(
        &format!("api-insert-{clients}"),
        &insert_script(&bench.stack.tokens[0].0),
        &[
            format!("--client={clients}"),
            format!("--jobs={}", clients.min(2)),
            format!("--time={}", bench.settings.api_seconds),
        ],
    ))
    .await?;
    Ok((
        Pair {
            load,
            created,
            pgbench,
        },
        api_steal.max(pgbench_steal),
    ))
}

pub async fn measure(bench: &Bench, report: &mut Report) -> anyhow::Result<()> {
    let sqs = NullSqs::start().await?;
    let pool = bench
        .settings
        .api_clients
        .iter()
        .copied()
        .max()
        .unwrap_or(1);
    let api = Api::start(bench, &sqs, pool).await?;
    let mut measured = Vec::new();
    for &clients in &bench.settings.api_clients {
        measured.push((clients, paired_runs(bench, &api, clients).await));
    }
    api.stop().await?;

    for (clients, runs) in measured {
        let (mut series, baseline) = runs?;
        let tps: Vec<f64> = baseline.iter().map(|r| r.tps).collect();
        let latency: Vec<f64> = baseline.iter().map(|r| r.latency_ms).collect();
        let mut line = Line::runs(
            format!("API create as a local server, {clients} client(s): requests/s"),
            &series.rates,
            "req/s",
        )
        .baseline("pgbench insert", median(&tps))
        .note(series.steal.note());
        if series.all.failed > 0 {
            line = line.note(format!(
                "{} requests failed (first: {})",
                series.all.failed,
                series.all.first_failure.take().unwrap_or_default()
            ));
        }
        report.push(line);
        series.all.latencies_ms.sort_by(f64::total_cmp);
        for (label, q) in [("p50", 0.50), ("p99", 0.99)] {
            report.push(
                Line::new(
                    format!("API create, {clients} client(s): latency {label}"),
                    quantile(&series.all.latencies_ms, q),
                    "ms",
                )
                .note(format!(
                    "of {} requests; pgbench's mean transaction latency {} ms",
                    number(series.all.latencies_ms.len() as f64),
                    number(median(&latency))
                )),
            );
        }
    }
    println!(
        "  {} messages sent to the null SQS endpoint in all, in {} SendMessageBatch requests",
        number(sqs.accepted() as f64),
        number(sqs.requests() as f64)
    );
    Ok(())
}
