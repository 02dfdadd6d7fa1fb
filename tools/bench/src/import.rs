//! Import: rows/s and peak memory of the importer's load path — the real handler, in a child
//! process of its own, reading a CSV object from the emulator's bucket with the enqueue step off
//! (`TMS_IMPORT_ENQUEUE=false`) — against `psql \copy` of the same rows into `tms.tasks`.
//! Then, reported only: the enqueue step's messages/s, sent to the null SQS endpoint (see
//! `null_sqs`: the emulator's own rate would be the figure otherwise).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context as _};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_s3::primitives::ByteStream;
use lambda_runtime::LambdaEvent;
use serde_json::{json, Value};
use tms::config::Env;
use tms::{CorrelationId, ImportId, Source, Submission, Tenant};

use crate::bench::{with_steal, Bench, Steal};
use crate::null_sqs::NullSqs;
use crate::report::{median, number, Line, Promise, Report};

const TENANT: &str = "bench";
/// Bytes per CSV line, newline included: the row size of TOOLING.md's `psql \copy` figures.
pub const ROW_BYTES: usize = 178;
const HEADER: &str = "kind,customer,order_id,sku,quantity,note\n";
const FILLER: &str = "deliver to the loading dock between nine and five and ring the bell twice; \
    leave the parcel with the front desk if nobody answers; the customer asks for a call ahead \
    of every delivery";

/// The columns `psql \copy` fills: those the importer's `INSERT ... SELECT` fills.
const COPY_COLUMNS: &str = "id, tenant, kind, payload, max_attempts, run_after, idempotency_key, \
    request_hash, correlation_id, source, import_id, import_line";

pub const MAX_RSS_MIB: f64 = 64.0;
/// "Flat": the larger import may peak at most this much higher than the smaller one.
pub const FLAT_GROWTH: f64 = 1.20;

/// The fields of row `i` after `kind`, sized so that the line is [`ROW_BYTES`] long.
fn fields(i: u64) -> [String; 5] {
    let fixed = [
        format!("customer-{:08}", i % 100_000_000),
        format!("ORD-{i:010}"),
        format!("SKU-{:05}", i % 100_000),
        format!("{}", 1 + i % 9),
    ];
    let used = "noop,".len() + fixed.iter().map(|f| f.len() + 1).sum::<usize>() + 1;
    let note = format!("ref {i:010} {FILLER}");
    let note = note[..ROW_BYTES - used].to_owned();
    let [customer, order, sku, quantity] = fixed;
    [customer, order, sku, quantity, note]
}

fn size_label(rows: u64) -> String {
    if rows.is_multiple_of(1_000_000) {
        format!("{}M", rows / 1_000_000)
    } else if rows.is_multiple_of(1000) {
        format!("{}k", rows / 1000)
    } else {
        rows.to_string()
    }
}

/// The import object: a header, then `rows` noop rows of [`ROW_BYTES`] each.
fn write_import_csv(path: &Path, rows: u64) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(HEADER.as_bytes())?;
    for i in 1..=rows {
        let [customer, order, sku, quantity, note] = fields(i);
        writeln!(out, "noop,{customer},{order},{sku},{quantity},{note}")?;
    }
    out.flush()?;
    Ok(())
}

/// The same rows as the importer inserts them (validated by the same domain code: ids, keys,
/// request hashes), as CSV for `psql \copy` into [`COPY_COLUMNS`].
fn write_copy_csv(path: &Path, rows: u64, key: &str) -> anyhow::Result<()> {
    let tenant = Tenant::parse(TENANT).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let correlation = CorrelationId::generate();
    let import_id = ImportId::new();
    let run_after = chrono::Utc::now().to_rfc3339();
    let rules = tms::SubmissionRules::default();
    let mut out = csv::Writer::from_path(path)?;
    for line in 2..rows + 2 {
        let [customer, order, sku, quantity, note] = fields(line - 1);
        let payload = json!({"customer": customer, "order_id": order, "sku": sku,
            "quantity": quantity, "note": note});
        let task = Submission {
            kind: "noop".into(),
            payload,
            idempotency_key: Some(tms::import_row_key("tms-data", key, "copy", line)),
            run_after: None,
            max_attempts: None,
            priority: tms::Priority::default(),
        }
        .validate(
            tenant.clone(),
            correlation.clone(),
            Source::Import { import_id, line },
            &rules,
        )
        .map_err(|e| anyhow::anyhow!("row {line}: {e}"))?;
        let hash: String = task
            .request_hash
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        out.write_record([
            task.id.as_uuid().to_string(),
            task.tenant.as_str().to_owned(),
            task.kind.as_str().to_owned(),
            task.payload.to_string(),
            task.max_attempts.to_string(),
            run_after.clone(),
            task.idempotency_key.unwrap_or_default(),
            format!("\\x{hash}"),
            task.correlation_id.as_str().to_owned(),
            "import".to_owned(),
            import_id.as_uuid().to_string(),
            line.to_string(),
        ])?;
    }
    out.flush()?;
    Ok(())
}

/// `psql \copy` of `csv` into `tms.tasks`, as the application user; wall-clock seconds.
async fn psql_copy(bench: &Bench, csv: &Path) -> anyhow::Result<f64> {
    let command = format!(
        "\\copy tms.tasks ({COPY_COLUMNS}) FROM '{}' WITH (FORMAT csv)",
        csv.display()
    );
    let args = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", &command].map(String::from);
    let started = Instant::now();
    bench.libpq_tool(Path::new("psql"), &args).await?;
    Ok(started.elapsed().as_secs_f64())
}

/// Uploads the object and returns the S3 notification the import queue would carry.
async fn upload(bench: &Bench, file: &Path, key: &str) -> anyhow::Result<String> {
    let s3 = tms::adapters::s3::client(&bench.aws);
    let size = std::fs::metadata(file)?.len();
    let put = s3
        .put_object()
        .bucket(&bench.resources.bucket)
        .key(key)
        .body(ByteStream::from_path(file).await?)
        .send()
        .await
        .with_context(|| format!("upload {key}"))?;
    let mut object = json!({"key": key, "size": size, "eTag": put.e_tag().unwrap_or_default()});
    if let Some(version) = put.version_id() {
        object["versionId"] = json!(version);
    }
    Ok(json!({"Records": [{"eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bench.resources.bucket}, "object": object}}]})
    .to_string())
}

/// What the import child reports.
#[derive(Debug)]
struct ChildRun {
    seconds: f64,
    peak_mib: f64,
}

/// Runs the import child; with `sqs`, enqueueing to it.
async fn run_child(
    bench: &Bench,
    notification: &str,
    sqs: Option<&NullSqs>,
    name: &str,
) -> anyhow::Result<ChildRun> {
    let result = bench.scratch.join(format!("{name}.result.json"));
    let _ = std::fs::remove_file(&result);
    let log = std::fs::File::create(bench.scratch.join(format!("{name}.log")))?;
    let status = tokio::process::Command::new(std::env::current_exe()?)
        .args(["import-child", notification])
        .arg(&result)
        .envs(bench.function_env(&[
            ("TMS_IMPORT_ENQUEUE", sqs.is_some().to_string()),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ]))
        .envs(sqs.map(NullSqs::env).into_iter().flatten())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .await?;
    ensure!(
        status.success(),
        "the import child failed ({status}): see .local/bench/{name}.log"
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&result)?)?;
    let failures = report["failures"].as_u64().unwrap_or(u64::MAX);
    ensure!(
        failures == 0,
        "the importer reported the record as failed: see .local/bench/{name}.log"
    );
    Ok(ChildRun {
        seconds: report["seconds"].as_f64().context("no seconds")?,
        peak_mib: report["vm_hwm_kib"].as_f64().context("no vm_hwm_kib")? / 1024.0,
    })
}

/// How the import of `key` ended, from `tms.imports`: status, rows created, rows rejected.
async fn import_counts(bench: &Bench, key: &str) -> anyhow::Result<(String, i64, i64)> {
    let admin = bench.admin(&bench.stack.names.database).await?;
    let row = admin
        .query_one(
            "SELECT status, rows_created, rows_rejected FROM tms.imports WHERE object_key = $1",
            &[&key],
        )
        .await?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// One `psql \copy` of the rows and one import of the same rows, each into empty tables:
/// psql's seconds, the import's run, and the larger steal of the two.
async fn import_pair(
    bench: &Bench,
    rows: u64,
    copy: &Path,
    notification: &str,
    key: &str,
    label: &str,
) -> anyhow::Result<((f64, ChildRun), f64)> {
    bench.reset_tables().await?;
    let (psql_seconds, psql_steal) = with_steal(psql_copy(bench, copy)).await?;
    let copied = bench.count_tasks("pending").await?;
    ensure!(
        copied == rows as i64,
        "psql copied {copied} rows, not {rows}"
    );

    bench.reset_tables().await?;
    let (child, import_steal) = with_steal(run_child(
        bench,
        notification,
        None,
        &format!("import-{label}"),
    ))
    .await?;
    let (status, created, rejected) = import_counts(bench, key).await?;
    ensure!(
        status == "completed" && created == rows as i64,
        "the import of {key} ended {status}: {created} of {rows} rows created, {rejected} rejected (see its report under reports/)"
    );
    Ok(((psql_seconds, child), psql_steal.max(import_steal)))
}

pub async fn measure(bench: &Bench, report: &mut Report) -> anyhow::Result<()> {
    let [small, large] = bench.settings.import_rows;
    let mut peaks = Vec::new();
    let mut small_import = None;
    for rows in [small, large] {
        let label = size_label(rows);
        println!("  writing the {label}-row import object and the same rows for psql");
        let object = bench.scratch.join(format!("import-{label}.csv"));
        let copy = bench.scratch.join(format!("copy-{label}.csv"));
        let key = format!("imports/{TENANT}/load-{label}.csv");
        write_import_csv(&object, rows)?;
        write_copy_csv(&copy, rows, &key)?;

        let notification = upload(bench, &object, &key).await?;
        let runs = bench.settings.runs;
        let (mut rates, mut baseline, mut rss) = (Vec::new(), Vec::new(), Vec::new());
        let mut load_seconds = Vec::new();
        let mut steal = Steal::default();
        for run in 1..=runs {
            let (psql_seconds, child) = steal
                .pair(
                    &format!("{label} rows, run {run}/{runs}"),
                    || import_pair(bench, rows, &copy, &notification, &key, &label),
                    |(psql_seconds, child)| {
                        format!(
                            "importer {} rows/s (peak RSS {} MiB), psql \\copy {} rows/s",
                            number(rows as f64 / child.seconds),
                            number(child.peak_mib),
                            number(rows as f64 / psql_seconds)
                        )
                    },
                )
                .await?;
            rates.push(rows as f64 / child.seconds);
            baseline.push(rows as f64 / psql_seconds);
            rss.push(child.peak_mib);
            load_seconds.push(child.seconds);
        }
        report.push(
            Line::runs(format!("import {label}: rows/s"), &rates, "rows/s")
                .baseline("psql \\copy", median(&baseline))
                .promise(Promise::RatioAtLeast(0.60))
                .note(steal.note()),
        );
        report.push(
            Line::runs(format!("import {label}: peak RSS"), &rss, "MiB")
                .promise(Promise::AtMost(MAX_RSS_MIB)),
        );
        peaks.push((label, median(&rss)));
        if small_import.is_none() {
            small_import = Some((notification, median(&load_seconds)));
        }
        let _ = std::fs::remove_file(&copy);
        let _ = std::fs::remove_file(&object);
    }
    let [(small_label, small_peak), (large_label, large_peak)] =
        [peaks[0].clone(), peaks[1].clone()];
    report.push(
        Line::new(
            format!("import peak RSS, {large_label} vs {small_label}"),
            large_peak,
            "MiB",
        )
        .baseline(format!("{small_label} import"), small_peak)
        .promise(Promise::RatioAtMost(FLAT_GROWTH)),
    );

    // The enqueue step: the small import again (fresh tables, so every row is created) with
    // enqueue on; its extra time over the load-only run is the time spent sending and marking.
    let (notification, load_seconds) = small_import.expect("the small import ran");
    bench.reset_tables().await?;
    let label = size_label(small);
    let sqs = NullSqs::start().await?;
    let run = run_child(
        bench,
        &notification,
        Some(&sqs),
        &format!("import-{label}-enqueue"),
    )
    .await?;
    let enqueued = count_enqueued(bench).await?;
    let sending = run.seconds - load_seconds;
    let name = format!("import {label}: enqueue phase");
    if enqueued == small as i64 && sqs.accepted() == small && sending > 0.0 {
        report.push(
            Line::new(name, small as f64 / sending, "msg/s").note(format!(
                "to the null SQS endpoint: {} s with enqueue - {} s without",
                number(run.seconds),
                number(load_seconds)
            )),
        );
    } else {
        report.push(Line::missing(
            name,
            "msg/s",
            Promise::None,
            format!(
                "not measured: {enqueued} of {small} tasks marked enqueued, {} messages accepted",
                sqs.accepted()
            ),
        ));
    }
    Ok(())
}

async fn count_enqueued(bench: &Bench) -> anyhow::Result<i64> {
    let admin = bench.admin(&bench.stack.names.database).await?;
    Ok(admin
        .query_one(
            "SELECT count(*) FROM tms.tasks WHERE enqueued_at IS NOT NULL",
            &[],
        )
        .await?
        .get(0))
}

/// The peak resident set of this process so far (`VmHWM`), in KiB.
fn vm_hwm_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}

/// `tms-bench import-child NOTIFICATION RESULT_FILE`: one SQS record carrying the S3
/// notification, through the importer's handler built as `main.rs` builds it; writes the
/// handler's duration and the process's peak memory to RESULT_FILE.
pub async fn child(notification: &str, result: &Path) -> anyhow::Result<()> {
    tms::telemetry::init_logging();
    let config = tms_importer::Config::from_env(&Env::process())?;
    let aws = tms::adapters::aws::load_config().await;
    let deps = tms_importer::Deps::build(&config, &aws).await?;
    let mut record = SqsMessage::default();
    record.message_id = Some(uuid::Uuid::new_v4().to_string());
    record.body = Some(notification.to_owned());
    record.event_source = Some("aws:sqs".into());
    let mut event = SqsEvent::default();
    event.records = vec![record];
    let mut ctx = lambda_runtime::Context::default();
    ctx.request_id = uuid::Uuid::new_v4().to_string();
    ctx.deadline = (SystemTime::now() + Duration::from_secs(900))
        .duration_since(UNIX_EPOCH)?
        .as_millis() as u64;
    let started = Instant::now();
    let response = tms_importer::function_handler(&deps, LambdaEvent::new(event, ctx))
        .await
        .map_err(|e| anyhow::anyhow!("the handler failed: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let out = json!({
        "seconds": seconds,
        "failures": response.batch_item_failures.len(),
        "vm_hwm_kib": vm_hwm_kib()?,
    });
    std::fs::write(result, out.to_string())?;
    Ok(())
}

/// The arguments of `import-child`.
pub fn child_args(args: &[String]) -> anyhow::Result<(String, PathBuf)> {
    match args {
        [notification, result] => Ok((notification.clone(), PathBuf::from(result))),
        _ => bail!("usage: tms-bench import-child NOTIFICATION RESULT_FILE"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_have_the_promised_size() {
        for i in [1, 99, 123_456, 9_999_999] {
            let [customer, order, sku, quantity, note] = fields(i);
            let line = format!("noop,{customer},{order},{sku},{quantity},{note}\n");
            assert_eq!(line.len(), ROW_BYTES, "{line}");
            assert_eq!(line.split(',').count(), HEADER.split(',').count(), "{line}");
        }
    }

    #[test]
    fn sizes_are_labelled_as_people_say_them() {
        assert_eq!(size_label(100_000), "100k");
        assert_eq!(size_label(1_000_000), "1M");
    }
}
