//! `tms-local`: the local run of TMS.
//!
//!   tms-local dev         provision, bootstrap, serve the API, run the event-source runner
//!   tms-local runner      the event-source runner alone, configured by its environment
//!   tms-local bootstrap   run the database bootstrapper against the local stack
//!   tms-local demo        the walk-through against the running stack
//!   tms-local load        a volume through every entry point of the running stack (`make load`)
//!   tms-local emulator-check  receive + delete timed against a deep queue (`make emulator-check`)
//!
//! Run from the repository root (the `make` targets do); services come from `make services`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tms::config::Env;
use tms_local::demo::{render, Demo};
use tms_local::{bootstrap, Stack};

fn usage() -> ! {
    eprintln!("usage: tms-local dev|runner|bootstrap|demo|load|emulator-check");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    tms::telemetry::init_logging_with_default("info,aws_config=warn,aws_smithy_runtime=warn");
    let command = std::env::args().nth(1).unwrap_or_else(|| usage());
    let result = match command.as_str() {
        "dev" => dev().await,
        "runner" => run_runner().await,
        "bootstrap" => run_bootstrap().await,
        "demo" => demo().await,
        "load" => load().await,
        "emulator-check" => emulator_check().await,
        _ => usage(),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn stack() -> anyhow::Result<Stack> {
    Stack::from_env(&std::env::current_dir()?)
}

async fn run_bootstrap() -> anyhow::Result<()> {
    let stack = stack()?;
    stack.ensure_database().await?;
    let aws = stack.sdk_config().await;
    stack.provision(&aws).await?;
    let report = bootstrap(&stack).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn banner(stack: &Stack) -> String {
    let (tenant, token, _) = &stack.tokens[0];
    let url = stack.api_url();
    [
        String::new(),
        "TMS is running.".into(),
        format!("  API          {url}   (docs: {url}/docs)"),
        format!("  Console      {url}/console   (sign in with the token below)"),
        format!("  Token        {token}   (tenant {tenant})"),
        "  Environment  .local/dev.env".into(),
        String::new(),
        "Try it (in another terminal, from this folder):".into(),
        String::new(),
        "  # create a task".into(),
        format!("  curl -s -X POST {url}/v1/tasks -H 'Authorization: Bearer {token}' \\"),
        r#"    -H 'Content-Type: application/json' -d '{"kind":"noop","payload":{}}'"#.into(),
        String::new(),
        "  # upload an import with the aws CLI".into(),
        "  set -a; . .local/dev.env; set +a".into(),
        format!("  .local/venv/bin/aws s3 cp examples/tasks.csv s3://$TMS_BUCKET/imports/{tenant}/tasks.csv"),
        String::new(),
        "  # read a task back (the id from the first command)".into(),
        format!("  curl -s {url}/v1/tasks/<id> -H 'Authorization: Bearer {token}'"),
        String::new(),
        "Press Ctrl-C to stop.".into(),
    ]
    .join("\n")
}

async fn dev() -> anyhow::Result<()> {
    let stack = stack()?;
    if tms_local::healthy(&stack.api_url()).await {
        println!("TMS already runs here: nothing to start.{}", banner(&stack));
        return Ok(());
    }
    if tokio::net::TcpStream::connect(("127.0.0.1", stack.api_port))
        .await
        .is_ok()
    {
        bail!(
            "port {} is in use by another program: stop it, or set TMS_API_PORT to a free port",
            stack.api_port
        );
    }
    eprintln!("==> creating the database, queues, bucket and parameters in the local services");
    stack.ensure_database().await?;
    let aws = stack.sdk_config().await;
    let resources = stack.provision(&aws).await?;
    eprintln!("==> bootstrapping the database (roles, privileges, migrations)");
    bootstrap(&stack).await?;
    let api_binary: PathBuf = std::env::current_exe()?.with_file_name("tms-api");
    if !api_binary.exists() {
        bail!(
            "{} not found: build it with `cargo build -p tms-api`",
            api_binary.display()
        );
    }
    eprintln!("==> starting the API on {}", stack.api_url());
    let mut api = tokio::process::Command::new(&api_binary)
        .envs(stack.function_env(&resources))
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", api_binary.display()))?;
    let started = Instant::now();
    while !tms_local::healthy(&stack.api_url()).await {
        if let Some(status) = api.try_wait()? {
            bail!("the API exited ({status}) before it answered");
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the API did not answer on {} within 30 s", stack.api_url());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The path of this program now: after a rebuild the running one is a deleted file.
    let this = std::env::current_exe()?;
    let runner_env = tms_local::runner_env(&stack, &resources);
    let pid_file = stack.root.join(tms_local::RUNNER_PID_FILE);
    let mut runner = start_runner(&this, &runner_env, &pid_file)?;
    let env_file = stack.write_dev_env(&resources)?;
    tracing::info!(path = %env_file.display(), "dev.env written");
    println!("{}", banner(&stack));
    let outcome = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break Ok(()),
            status = api.wait() => break Err(anyhow::anyhow!("the API stopped unexpectedly ({:?})", status)),
            status = runner.wait() => {
                // As Lambda replaces an execution environment that died, a runner that was
                // killed is started again; one that exits on its own has a fault to show.
                use std::os::unix::process::ExitStatusExt as _;
                match status?.signal() {
                    Some(signal) => {
                        eprintln!("==> the event-source runner was killed (signal {signal}): starting it again");
                        runner = start_runner(&this, &runner_env, &pid_file)?;
                    }
                    None => break Err(anyhow::anyhow!("the event-source runner stopped unexpectedly (its log is above)")),
                }
            }
        }
    };
    eprintln!("\n==> stopping the API and the event-source runner");
    let _ = std::fs::remove_file(&pid_file);
    for child in [&mut runner, &mut api] {
        terminate(child).await;
    }
    outcome
}

/// Starts `program runner` (this program) with `env` and records its PID in `pid_file`. Like the API, it
/// has a process group of its own: Ctrl-C reaches `tms-local dev`, which stops both in turn.
fn start_runner(
    program: &std::path::Path,
    env: &[(String, String)],
    pid_file: &std::path::Path,
) -> anyhow::Result<tokio::process::Child> {
    let child = tokio::process::Command::new(program)
        .arg("runner")
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the event-source runner")?;
    let pid = child.id().context("the runner has no PID")?;
    std::fs::write(pid_file, format!("{pid}\n"))
        .with_context(|| format!("write {}", pid_file.display()))?;
    Ok(child)
}

/// Asks `child` to stop (SIGTERM), and kills it when it has not within 10 seconds.
async fn terminate(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// `tms-local runner`: the event-source runner alone, as `tms-local dev` starts it (and starts
/// again when it was killed); SIGINT or SIGTERM stops it.
async fn run_runner() -> anyhow::Result<()> {
    let runner =
        tms_local::runner_from(&Env::process(), &tms::adapters::aws::load_config().await).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(runner.run(stopped));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
    Ok(())
}

/// Reads `.local/dev.env`.
fn dev_env() -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(".local/dev.env")
        .context(".local/dev.env not found: start the stack with `make dev`")?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

async fn load() -> anyhow::Result<()> {
    let scenario = std::env::var("SCENARIO").unwrap_or_default();
    let fairness = match scenario.as_str() {
        "" | "volume" => None,
        "fairness" => Some(tms_local::fairness::Fairness::from_env()?),
        other => bail!("SCENARIO is volume (the default) or fairness, got {other:?}"),
    };
    let plan = tms_local::load::Plan::from_env()?;
    let env = dev_env()?;
    let get = |k: &str| {
        env.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .with_context(|| format!("{k} missing from .local/dev.env: restart `make dev`"))
    };
    let api = get("TMS_API_URL")?;
    if !tms_local::healthy(&api).await {
        bail!("the API does not answer at {api}: start the stack with `make dev`");
    }
    let stack = stack()?;
    let target = tms_local::load::Target {
        token: stack.tokens[0].1.clone(),
        resources: tms_local::Resources {
            work_queue_url: get("TMS_WORK_QUEUE_URL")?,
            high_work_queue_url: get("TMS_HIGH_WORK_QUEUE_URL")?,
            event_bus: get("TMS_EVENT_BUS")?,
            work_dlq_url: get("TMS_WORK_DLQ_URL")?,
            import_queue_url: get("TMS_IMPORT_QUEUE_URL")?,
            import_dlq_url: get("TMS_IMPORT_DLQ_URL")?,
            bucket: get("TMS_BUCKET")?,
        },
        aws: stack.sdk_config().await,
        api,
        stack,
    };
    if let Some(fairness) = fairness {
        let report = tms_local::fairness::run(&target, &fairness).await?;
        println!("\n{}", report.render());
        return Ok(());
    }
    let faults = tms_local::load::DevFaults {
        root: target.stack.root.clone(),
    };
    let report = tms_local::load::run(&target, plan, &faults).await?;
    println!("\n{}", report.render());
    if report.failed() {
        bail!("tasks were lost or executed twice");
    }
    if report.faults_missed > 0 {
        bail!("the run ended before all its faults were injected: run more tasks");
    }
    Ok(())
}

async fn emulator_check() -> anyhow::Result<()> {
    let backlog = match std::env::var("BACKLOG") {
        Ok(v) if !v.is_empty() => v
            .parse()
            .with_context(|| format!("BACKLOG must be a whole number, got {v:?}"))?,
        _ => 100_000,
    };
    let sqs = aws_sdk_sqs::Client::new(&stack()?.sdk_config().await);
    eprintln!("==> filling a fresh queue with {backlog} messages");
    let measured = tms_local::backlog::check(&sqs, backlog, 500).await?;
    println!("{}", measured.render());
    if measured.median >= tms_local::backlog::MEDIAN_BAR {
        bail!("the emulator is too slow with a deep queue");
    }
    Ok(())
}

async fn demo() -> anyhow::Result<()> {
    let env = dev_env()?;
    let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let api = get("TMS_API_URL").context("TMS_API_URL missing from .local/dev.env")?;
    if !tms_local::healthy(&api).await {
        bail!("the API does not answer at {api}: start the stack with `make dev`");
    }
    let tokens = tms_local::stack::parse_tokens(&get("TMS_DEV_TOKENS").unwrap_or_default())?;
    let (_, token, _) = tokens
        .first()
        .context("no token in TMS_DEV_TOKENS")?
        .clone();
    let event_bus = get("TMS_EVENT_BUS")
        .context("TMS_EVENT_BUS missing from .local/dev.env: restart `make dev`")?;
    let demo = Demo {
        api,
        token,
        http: tms_local::http_client(),
        timeout: Duration::from_secs(90),
        events: aws_sdk_eventbridge::Client::new(&stack()?.sdk_config().await),
        event_bus,
    };
    let report = demo.run().await?;
    println!("\n{}", render(&report));
    Ok(())
}
