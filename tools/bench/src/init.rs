//! Init: the time from starting each release function binary to its first Runtime API poll
//! (`GET /2018-06-01/runtime/invocation/next`), with the environment `make dev` gives the
//! function, against a Python 3 + boto3 program that creates the same clients (sqs, s3, ssm) and
//! polls the same endpoint. Median of several runs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::bench::Bench;
use crate::report::{median, Line, Promise, Report};

pub const FUNCTIONS: [&str; 5] = ["api", "worker", "importer", "scheduler", "bootstrap"];
pub const MAX_INIT_MS: f64 = 10.0;

const PYTHON_BASELINE: &str = r#"import http.client, os
import boto3

session = boto3.session.Session()
endpoint = os.environ["AWS_ENDPOINT_URL"]
clients = [session.client(name, endpoint_url=endpoint) for name in ("sqs", "s3", "ssm")]
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
connection = http.client.HTTPConnection(host, int(port))
connection.request("GET", "/2018-06-01/runtime/invocation/next")
connection.getresponse()
"#;

/// Waits for the first `GET .../runtime/invocation/next` on `listener`; returns when its request
/// head arrived. Connections stay open unanswered, as a Runtime API with no event holds them.
async fn first_poll(listener: &TcpListener) -> std::io::Result<Instant> {
    let mut held = Vec::new();
    loop {
        let (mut stream, _) = listener.accept().await?;
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let at = Instant::now();
        let text = String::from_utf8_lossy(&head);
        if text.starts_with("GET ")
            && text
                .lines()
                .next()
                .is_some_and(|l| l.contains("/runtime/invocation/next"))
        {
            return Ok(at);
        }
        held.push(stream);
    }
}

/// `program` as Lambda starts a function: its environment `env`, Lambda's own variables, the
/// Runtime API at `runtime_api`; its output discarded, and killed when dropped.
pub fn lambda_command(
    program: &Path,
    args: &[&str],
    env: &[(String, String)],
    name: &str,
    runtime_api: &str,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(env.iter().cloned())
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        // Lambda sets both; boto3 reads only this one.
        .env("AWS_DEFAULT_REGION", tms_local::stack::REGION)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Starts `program` with the Runtime API pointed at a local listener; the time to its first poll.
async fn time_to_first_poll(
    program: &Path,
    args: &[&str],
    env: &[(String, String)],
    name: &str,
) -> anyhow::Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let runtime_api = format!("127.0.0.1:{}", listener.local_addr()?.port());
    let mut command = lambda_command(program, args, env, name, &runtime_api);
    command.stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("start {}", program.display()))?;
    let outcome = tokio::select! {
        polled = first_poll(&listener) => Ok(polled?),
        status = child.wait() => Err(status),
        () = tokio::time::sleep(Duration::from_secs(20)) => bail!("{name} did not poll within 20 s"),
    };
    match outcome {
        Ok(at) => {
            child.start_kill()?;
            child.wait().await?;
            Ok(at - started)
        }
        Err(status) => {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                pipe.read_to_string(&mut stderr).await.ok();
            }
            bail!(
                "{name} exited ({}) before polling: {}",
                status?,
                stderr.trim()
            )
        }
    }
}

/// The times to first poll of `runs` starts, in milliseconds.
async fn runs_ms(
    runs: usize,
    program: &Path,
    args: &[&str],
    env: &[(String, String)],
    name: &str,
) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let took = time_to_first_poll(program, args, env, name).await?;
        times.push(took.as_secs_f64() * 1000.0);
    }
    Ok(times)
}

/// The project's Python environment (`scripts/venv.sh tools` installs boto3 there).
pub fn python(root: &Path) -> PathBuf {
    let venv =
        std::env::var_os("TMS_VENV").map_or_else(|| PathBuf::from(".local/venv"), PathBuf::from);
    root.join(venv).join("bin/python")
}

pub async fn measure(bench: &Bench, report: &mut Report) -> anyhow::Result<()> {
    let runs = bench.settings.init_runs.max(1);
    let script = bench.scratch.join("init_baseline.py");
    std::fs::write(&script, PYTHON_BASELINE)?;
    let script = script.display().to_string();
    let env = bench.function_env(&[]);
    println!("  python + boto3: {runs} starts");
    let python_ms = median(
        &runs_ms(
            runs,
            &python(&bench.stack.root),
            &[&script],
            &env,
            "python-boto3",
        )
        .await
        .context("the Python + boto3 baseline (run `scripts/venv.sh tools` for boto3)")?,
    );
    for function in FUNCTIONS {
        let name = format!("tms-{function}");
        let env = if function == "bootstrap" {
            bench.stack.bootstrap_env()
        } else {
            bench.function_env(&[])
        };
        let binary = bench.release.join(&name);
        let times = runs_ms(runs, &binary, &[], &env, &name).await?;
        report.push(
            Line::runs(format!("init {name}: to first poll"), &times, "ms")
                .baseline("python + boto3", python_ms)
                .promise(Promise::AtMost(MAX_INIT_MS)),
        );
    }
    Ok(())
}
