//! Worker: noop tasks through `tms_worker::function_handler` — in-process, batches of 10 and 100
//! work messages as SQS delivers them, the real database, the queue port replaced by an in-memory
//! one, as many batches at once as Lambda would run environments — against pgbench running the
//! store's two batched statements (claim the batch's tasks, record their outcomes) for the same
//! batches at the same concurrency. The SQL statements each batch sends are counted with
//! `pg_stat_statements`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context as _};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use lambda_runtime::{Context, LambdaEvent};
use tms::config::Env;
use tms::telemetry::metrics::MetricSink;
use tms::{CorrelationId, TaskId, Tenant, WorkMessage, CORRELATION_ATTRIBUTE};
use tms_testkit::fakes::MemoryQueue;

use crate::bench::{insert_pending_tasks, task_id, with_steal, Bench, Steal, SQL_TASK_ID};
use crate::null_sqs::NullSqs;
use crate::report::{median, number, Line, Promise, Report};

pub(crate) const TENANT: &str = "bench";

/// The columns the store's claim returns (`task_columns(Some("t"))`).
const CLAIMED_COLUMNS: &str = "t.id, t.tenant, t.kind, t.payload, t.status, t.attempts, \
    t.max_attempts, t.run_after, t.lease_until, t.idempotency_key, t.correlation_id, t.source, \
    t.import_id, t.import_line, t.result, t.last_error, t.enqueued_at, t.created_at, \
    t.updated_at, t.version";

/// The store's `CLAIM` and `RECORD` for batch `:b` of `size` (tasks size·b+1..size·b+size), with
/// the values the handler binds for a batch of noop tasks: the claimable statuses, a 120 s lease,
/// then `succeeded` with `{}` at the version the claim left (2).
pub(crate) fn batch_script(size: usize) -> String {
    script(size, false)
}

/// [`batch_script`] writing what SPEC §3 added to a batch since: the record also inserts each
/// ended task's lifecycle event (a detail of the worker's shape, parsed from text as the
/// worker's parameter is, under the task's id: the worker makes its ids itself), and a third
/// statement forgets them as the worker does once they are published.
pub(crate) fn batch_script_with_events(size: usize) -> String {
    script(size, true)
}

fn script(size: usize, events: bool) -> String {
    let ids = format!(
        "ARRAY(SELECT {} FROM generate_series(1, {size}) g)",
        SQL_TASK_ID.replace("{n}", &format!(":b * {size} + g"))
    );
    let (note, forget) = if events {
        (
            format!(
                ", note AS (
    INSERT INTO tms.notifications (id, tenant, detail_type, detail, subject)
    SELECT id, '{TENANT}', 'Task Succeeded',
        ('{{\"event_id\":\"' || id || '\",\"tenant\":\"{TENANT}\",\"task_id\":\"' || id
         || '\",\"kind\":\"noop\",\"status\":\"succeeded\",\"correlation_id\":\"'
         || correlation_id || '\",\"attempts\":' || attempts || ',\"result\":{{}}}}')::jsonb,
        id
    FROM updated
)"
            ),
            format!(
                "WITH async AS (SELECT set_config('synchronous_commit', 'off', true))
DELETE FROM tms.notifications USING async WHERE id = ANY({ids});
"
            ),
        )
    } else {
        (String::new(), String::new())
    };
    format!(
        "\\set i :i + 1
\\set b :client_id * :per_client + :i - 1
WITH candidates AS (
    SELECT id, status AS from_status FROM tms.tasks
    WHERE id = ANY({ids}) AND status = ANY(ARRAY['pending', 'failed', 'running'])
      AND attempts < max_attempts
      AND CASE WHEN status = 'running' THEN lease_until < now() ELSE run_after <= now() END
    ORDER BY id
    FOR UPDATE
), claimed AS (
    UPDATE tms.tasks t SET status = 'running', attempts = t.attempts + 1,
        lease_until = now() + 120000::int8 * interval '1 millisecond',
        version = t.version + 1, updated_at = now()
    FROM candidates c WHERE t.id = c.id
    RETURNING {CLAIMED_COLUMNS}, c.from_status
), ev AS (
    INSERT INTO tms.task_events (task_id, from_status, to_status, attempt, correlation_id)
    SELECT id, from_status, status, attempts, correlation_id FROM claimed
)
SELECT * FROM claimed;
WITH input AS (
    SELECT * FROM unnest({ids}, array_fill(2::int8, ARRAY[{size}]),
        array_fill('succeeded'::text, ARRAY[{size}]), array_fill('{{}}'::jsonb, ARRAY[{size}]),
        array_fill(NULL::jsonb, ARRAY[{size}]), array_fill(NULL::int8, ARRAY[{size}]),
        array_fill(false, ARRAY[{size}]))
        AS i(id, version, to_status, result, error, retry_ms, enqueue)
), updated AS (
    UPDATE tms.tasks t SET
        status = i.to_status,
        result = i.result,
        last_error = COALESCE(i.error, t.last_error),
        lease_until = NULL,
        run_after = CASE WHEN i.retry_ms IS NULL THEN t.run_after
                         ELSE now() + i.retry_ms * interval '1 millisecond' END,
        enqueued_at = CASE WHEN i.enqueue THEN now()
                           WHEN i.to_status = 'failed' THEN NULL
                           ELSE t.enqueued_at END,
        version = t.version + 1,
        updated_at = now()
    FROM input i
    WHERE t.id = i.id AND t.version = i.version AND t.status = 'running'
    RETURNING t.id, t.attempts, t.correlation_id, i.to_status, i.error
), ev AS (
    INSERT INTO tms.task_events (task_id, from_status, to_status, attempt, error, correlation_id)
    SELECT id, 'running', to_status, attempts, error, correlation_id FROM updated
){note}
SELECT id FROM updated;
{forget}"
    )
}

/// Metric lines are formatted as in Lambda, then dropped instead of printed amid the report.
struct Discard;

impl MetricSink for Discard {
    fn emit(&self, _line: String) {}
}

/// Batch `b` of `size` as the event source mapping delivers it.
pub(crate) fn batch_event(b: i64, size: i64, tenant: &Tenant) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = (1..=size)
        .map(|k| {
            let correlation = CorrelationId::generate();
            let message = WorkMessage {
                task_id: TaskId::from_uuid(task_id(b * size + k)),
                tenant: tenant.clone(),
                correlation_id: correlation.clone(),
            };
            let mut record = SqsMessage::default();
            record.message_id = Some(uuid::Uuid::new_v4().to_string());
            record.receipt_handle = Some(format!("bench-{b}-{k}"));
            record.body = Some(serde_json::to_string(&message).expect("a work message serialises"));
            record.event_source = Some("aws:sqs".into());
            record.event_source_arn = Some("arn:aws:sqs:us-east-1:000000000000:tms-work".into());
            record.aws_region = Some("us-east-1".into());
            record
                .attributes
                .insert("ApproximateReceiveCount".into(), "1".into());
            let mut attribute = SqsMessageAttribute::default();
            attribute.string_value = Some(correlation.as_str().to_owned());
            attribute.data_type = Some("String".into());
            record
                .message_attributes
                .insert(CORRELATION_ATTRIBUTE.into(), attribute);
            record
        })
        .collect();
    event
}

fn context() -> Context {
    let mut ctx = Context::default();
    ctx.request_id = uuid::Uuid::new_v4().to_string();
    ctx.deadline = (SystemTime::now() + Duration::from_secs(60))
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    ctx
}

/// Runs the batches through the handler, `concurrency` at a time; returns the seconds taken
/// and the records reported as failures.
async fn run_batches(
    deps: &Arc<tms_worker::Deps>,
    batches: Vec<SqsEvent>,
    concurrency: usize,
) -> anyhow::Result<(f64, usize)> {
    let queue = Arc::new(Mutex::new(batches.into_iter()));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (deps, queue) = (deps.clone(), queue.clone());
            tokio::spawn(async move {
                let mut failures = 0;
                loop {
                    let next = queue.lock().expect("batch queue").next();
                    let Some(event) = next else { break };
                    let response =
                        tms_worker::function_handler(&deps, LambdaEvent::new(event, context()))
                            .await
                            .map_err(|e| anyhow::anyhow!("the handler failed: {e}"))?;
                    failures += response.batch_item_failures.len();
                }
                anyhow::Ok(failures)
            })
        })
        .collect();
    let mut failures = 0;
    for worker in workers {
        failures += worker.await??;
    }
    Ok((started.elapsed().as_secs_f64(), failures))
}

/// Statements the application user ran in the bench's database so far.
async fn statements(bench: &Bench) -> anyhow::Result<i64> {
    let admin = bench.admin(&bench.stack.names.database).await?;
    tms_testkit::statements_run_by(&admin, "tms_app")
        .await
        .context(
        "pg_stat_statements: the bench's cluster must preload it (scripts/postgres.sh does when \
             the server has the module)",
    )
}

/// One run through the handler and the host's steal during it (see [`Steal`]).
struct HandlerRun {
    tasks_per_second: f64,
    statements_per_batch: f64,
    steal: f64,
}

/// One run through the handler.
async fn handler_run(bench: &Bench, size: i64, tenant: &Tenant) -> anyhow::Result<HandlerRun> {
    let concurrency = bench.settings.worker_concurrency;
    let batches = (bench.settings.worker_tasks as i64 / size).max(concurrency as i64);
    let tasks = batches * size;
    // The batches after the measured ones warm the pool's connections and prepared statements
    // (pgbench's rate leaves its connection set-up out as well).
    let warm_up = concurrency as i64;

    bench.reset_tables().await?;
    insert_pending_tasks(bench, TENANT, tasks + warm_up * size).await?;
    let vars = bench.function_env(&[("TMS_DATABASE_POOL_SIZE", concurrency.to_string())]);
    let env = Env::from_pairs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut deps =
        tms_worker::Deps::build(&tms_worker::Config::from_env(&env)?, &bench.aws).await?;
    deps.metrics = Arc::new(Discard);
    deps.queue = Arc::new(MemoryQueue::default());
    // The lifecycle event of every task it ends, through the SDK to a null endpoint.
    let null = NullSqs::start().await?;
    deps.events = tms::adapters::events::publisher(
        &bench.aws.to_builder().endpoint_url(&null.url).build(),
        tms::config::event_bus(&env)?.as_deref(),
    );
    let deps = Arc::new(deps);
    let warm: Vec<SqsEvent> = (batches..batches + warm_up)
        .map(|b| batch_event(b, size, tenant))
        .collect();
    run_batches(&deps, warm, concurrency).await?;
    let events: Vec<SqsEvent> = (0..batches).map(|b| batch_event(b, size, tenant)).collect();
    let before = statements(bench).await?;
    let ((seconds, failures), steal) = with_steal(run_batches(&deps, events, concurrency)).await?;
    let sent = statements(bench).await? - before;
    drop(deps);
    let succeeded = bench.count_tasks("succeeded").await?;
    ensure!(
        failures == 0 && succeeded == tasks + warm_up * size,
        "the handler left {failures} failures and {succeeded} of {} tasks succeeded",
        tasks + warm_up * size
    );
    Ok(HandlerRun {
        tasks_per_second: tasks as f64 / seconds,
        statements_per_batch: sent as f64 / batches as f64,
        steal,
    })
}

/// One pgbench run of the same batches: tasks/s, and the host's steal during it.
async fn pgbench_run(bench: &Bench, size: i64) -> anyhow::Result<(f64, f64)> {
    let concurrency = bench.settings.worker_concurrency;
    let batches = (bench.settings.worker_tasks as i64 / size).max(concurrency as i64);
    let per_client = batches / concurrency as i64;
    let tasks = per_client * concurrency as i64 * size;
    bench.reset_tables().await?;
    insert_pending_tasks(bench, TENANT, tasks).await?;
    let (run, steal) = with_steal(bench.pgbench(
        &format!("worker-batch-{size}"),
        &batch_script(size as usize),
        &[
            format!("--client={concurrency}"),
            format!("--jobs={}", concurrency.min(2)),
            format!("--transactions={per_client}"),
            "--define=i=0".into(),
            format!("--define=per_client={per_client}"),
        ],
    ))
    .await?;
    let succeeded = bench.count_tasks("succeeded").await?;
    ensure!(
        succeeded == tasks,
        "pgbench's batches left {succeeded} of {tasks} tasks succeeded: its script did not name every batch"
    );
    Ok((run.tps * size as f64, steal))
}

pub async fn measure(bench: &Bench, report: &mut Report) -> anyhow::Result<()> {
    let tenant = Tenant::parse(TENANT).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    bench
        .admin(&bench.stack.names.database)
        .await?
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await?;
    let runs = bench.settings.runs;
    for &size in &bench.settings.worker_batch_sizes {
        let size = size as i64;
        let (mut rates, mut per_batch, mut baseline) = (Vec::new(), Vec::new(), Vec::new());
        let mut steal = Steal::default();
        for run in 1..=runs {
            let (handler, pgbench) = steal
                .pair(
                    &format!("batches of {size}, run {run}/{runs}"),
                    || async {
                        let handler = handler_run(bench, size, &tenant).await?;
                        let (pgbench, pgbench_steal) = pgbench_run(bench, size).await?;
                        let steal = handler.steal.max(pgbench_steal);
                        Ok(((handler, pgbench), steal))
                    },
                    |(handler, pgbench)| {
                        format!(
                            "handler {} tasks/s ({} statements per batch), pgbench {} tasks/s",
                            number(handler.tasks_per_second),
                            number(handler.statements_per_batch),
                            number(*pgbench)
                        )
                    },
                )
                .await?;
            rates.push(handler.tasks_per_second);
            per_batch.push(handler.statements_per_batch);
            baseline.push(pgbench);
        }
        report.push(
            Line::runs(
                format!("worker noop, batches of {size}: tasks/s"),
                &rates,
                "tasks/s",
            )
            .baseline("pgbench claim+record", median(&baseline))
            .note(format!(
                "{} batches at a time",
                bench.settings.worker_concurrency
            ))
            .note(steal.note()),
        );
        report.push(
            Line::runs(
                format!("worker noop, batches of {size}: SQL statements per batch"),
                &per_batch,
                "statements",
            )
            .promise(Promise::AtMost(3.0)),
        );
    }
    Ok(())
}
