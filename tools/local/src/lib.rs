//! The local run of TMS: the resources a deployment has, provisioned in the AWS emulator; the
//! event-source runner standing in for Lambda's mappings and schedules; and the demo.

pub mod backlog;
pub mod demo;
pub mod fairness;
pub mod load;
pub mod mappings;
pub mod runner;
pub mod stack;

use std::sync::Arc;

use anyhow::Context as _;
use tms::config::Env;

pub use stack::{Resources, Stack};

/// Where `tms-local dev` writes the PID of the runner it runs (`make load FAULTS=1` kills it).
pub const RUNNER_PID_FILE: &str = ".local/runner.pid";

/// An HTTP client for the local stack (TLS on the process's aws-lc provider, as in the functions).
pub fn http_client() -> reqwest::Client {
    tms::tls::install_crypto_provider();
    reqwest::Client::new()
}

/// Whether the API at `url` answers `GET /health` with a success within 2 seconds.
pub async fn healthy(url: &str) -> bool {
    http_client()
        .get(format!("{url}/health"))
        .timeout(std::time::Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// The environment of the event-source runner: the functions' own, and the import queue.
pub fn runner_env(stack: &Stack, res: &Resources) -> Vec<(String, String)> {
    let mut env = stack.function_env(res);
    env.push(("TMS_IMPORT_QUEUE_URL".into(), res.import_queue_url.clone()));
    env
}

/// Builds the three event-driven functions as a deployment would, from the local environment.
///
/// # Errors
/// When a function's configuration or adapters cannot be built.
pub async fn runner(stack: &Stack, res: &Resources) -> anyhow::Result<Arc<runner::Runner>> {
    let vars = runner_env(stack, res);
    let env = Env::from_pairs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    runner_from(&env, &stack.sdk_config().await).await
}

/// Builds the event-driven functions from `env` (that of [`runner_env`]).
///
/// # Errors
/// When a function's configuration or adapters cannot be built.
pub async fn runner_from(
    env: &Env,
    aws: &aws_config::SdkConfig,
) -> anyhow::Result<Arc<runner::Runner>> {
    let worker = tms_worker::Deps::build(&tms_worker::Config::from_env(env)?, aws)
        .await
        .context("worker")?;
    let importer = tms_importer::Deps::build(&tms_importer::Config::from_env(env)?, aws)
        .await
        .context("importer")?;
    let scheduler = tms_scheduler::Deps::build(&tms_scheduler::Config::from_env(env)?, aws)
        .await
        .context("scheduler")?;
    Ok(Arc::new(runner::Runner {
        worker,
        importer,
        scheduler,
        sqs: aws_sdk_sqs::Client::new(aws),
        work_queue_url: env.required("TMS_WORK_QUEUE_URL")?,
        high_work_queue_url: env.required("TMS_HIGH_WORK_QUEUE_URL")?,
        import_queue_url: env.required("TMS_IMPORT_QUEUE_URL")?,
    }))
}

/// Runs the bootstrapper's handler as CloudFormation or Terraform would invoke it, with a
/// direct `{"action": "bootstrap"}`.
///
/// # Errors
/// When the bootstrap fails.
pub async fn bootstrap(stack: &Stack) -> anyhow::Result<serde_json::Value> {
    let aws = stack.sdk_config().await;
    let vars = stack.bootstrap_env();
    let env = Env::from_pairs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let config = tms_bootstrap::Config::from_env(&env)?;
    let secrets = Arc::new(tms::adapters::ssm::SsmSecrets::new(
        aws_sdk_ssm::Client::new(&aws),
    ));
    let deps = tms_bootstrap::Deps {
        bootstrap: Arc::new(tms_bootstrap::DatabaseBootstrap::new(config, secrets)),
        rotation: None,
        http: Default::default(),
    };
    let mut ctx = lambda_runtime::Context::default();
    ctx.deadline = (std::time::SystemTime::now() + std::time::Duration::from_secs(300))
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    tms_bootstrap::function_handler(
        &deps,
        lambda_runtime::LambdaEvent::new(serde_json::json!({"action": "bootstrap"}), ctx),
    )
    .await
    .map_err(|e| anyhow::anyhow!("bootstrap failed: {e}"))
}
