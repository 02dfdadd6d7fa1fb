//! `tms-bench`: the performance promises of SPEC §7, each measured against a baseline taken in
//! the same run (absolute rates swing with the shared disks; ratios within one run do not).
//!
//!   tms-bench run                                  every measurement, then the summary table
//!   tms-bench import-child NOTIFICATION RESULT     (internal) one import, in a process of its own
//!
//! `make bench` (scripts/bench.sh) builds the release binaries, starts a PostgreSQL cluster
//! (durable: fsync on) and an AWS emulator of the bench's own, on their own ports, runs
//! `tms-bench run` from the repository root and stops them. `BENCH_STRICT=1` makes an unmet
//! promise fail the run; `BENCH_QUICK=1` shrinks the sizes for a smoke run; `BENCH_ONLY=api,worker`
//! runs only the measurements named (init, lambda, package, import, api, worker). Each measurement runs
//! several times (`BENCH_RUNS`, default 3) and reports the median; the results, with the machine
//! they were measured on, are written to `BENCHMARKS.md`.

mod api;
mod bench;
mod cost;
mod import;
mod init;
mod lambda;
mod null_sqs;
mod package;
mod report;
mod worker;

use std::sync::Mutex;

use anyhow::Context as _;
use bench::{Bench, Settings};
use report::Report;

fn usage() -> ! {
    eprintln!("usage: tms-bench run | tms-bench import-child NOTIFICATION RESULT_FILE");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run().await,
        Some("import-child") => match import::child_args(&args[1..]) {
            Ok((notification, result)) => {
                import::child(&notification, &result).await.map(|()| true)
            }
            Err(e) => Err(e),
        },
        _ => usage(),
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// The handlers that run in this process (the worker's) log as under Lambda: JSON at INFO, into
/// `.local/bench/bench.log` rather than amid the report.
fn log_to_file(path: &std::path::Path) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .with_writer(Mutex::new(file))
        .json()
        .try_init()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Every measurement; `Ok(false)` when a promise is not met and `BENCH_STRICT=1`.
async fn run() -> anyhow::Result<bool> {
    let settings = Settings::from_env()?;
    let root = std::env::current_dir()?;
    std::fs::create_dir_all(root.join(".local/bench"))?;
    log_to_file(&root.join(".local/bench/bench.log"))?;
    println!(
        "==> setting up: a fresh database on the bench's PostgreSQL, the emulator's resources"
    );
    let bench = Bench::setup(&root, settings).await?;
    let mut report = Report::default();

    if bench.settings.wants("init") {
        println!("\n==> init: start to first Runtime API poll");
        init::measure(&bench, &mut report).await?;
    }
    if bench.settings.wants("lambda") {
        println!("\n==> the API under a Runtime API (cold and warm), beside the Python peer");
        lambda::measure(&bench, &mut report).await?;
    }
    if bench.settings.wants("package") {
        println!("\n==> package size");
        package::measure(&bench, &mut report);
    }
    if bench.settings.wants("import") {
        println!("\n==> import");
        import::measure(&bench, &mut report).await?;
    }
    if bench.settings.wants("api") {
        println!("\n==> API create");
        api::measure(&bench, &mut report).await?;
    }
    if bench.settings.wants("worker") {
        println!("\n==> worker");
        worker::measure(&bench, &mut report).await?;
    }

    println!("\n==> summary\n\n{}", report::summary(&report.lines));
    let markdown = report::markdown(
        &report.lines,
        &bench.machine().await,
        &bench.settings.describe(),
    );
    std::fs::write(root.join("BENCHMARKS.md"), markdown).context("write BENCHMARKS.md")?;
    println!("results written to BENCHMARKS.md");
    let unmet = report.unmet();
    if unmet.is_empty() {
        println!("every promise met");
        return Ok(true);
    }
    let names: Vec<&str> = unmet.iter().map(|l| l.name.as_str()).collect();
    println!("{} promise(s) not met: {}", unmet.len(), names.join("; "));
    Ok(!bench.settings.strict)
}
