use std::sync::Arc;

use lambda_http::Error;
use tms::adapters::postgres::{PgSettings, PostgresStore};
use tms::adapters::s3::{self, S3ObjectStore};
use tms::adapters::{aws, sqs::SqsWorkQueue, ssm::SsmSecrets};
use tms::config::Env;
use tms::ports::Secrets;
use tms::telemetry::metrics::StdoutSink;
use tms_api::{auth::TokenVerifier, router, AppState, Config, Ports};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tms::telemetry::init_logging();
    let config = Config::from_env(&Env::process())?;
    let aws = aws::load_config().await;
    let secrets: Arc<dyn Secrets> = Arc::new(SsmSecrets::new(aws_sdk_ssm::Client::new(&aws)));
    let password = match &config.database.password_param {
        Some(param) => Some(secrets.get(param).await?),
        None => None,
    };
    let store = Arc::new(PostgresStore::new(
        PgSettings::new(&config.database, password.as_ref())?.pool()?,
    ));
    let ports = Ports {
        repo: store.clone(),
        imports: store,
        objects: Arc::new(S3ObjectStore::new(s3::client(&aws), &config.bucket)),
        queue: Arc::new(SqsWorkQueue::new(
            aws_sdk_sqs::Client::new(&aws),
            &config.work_queue_url,
        )),
        metrics: Arc::new(StdoutSink),
    };
    let tokens = TokenVerifier::new(secrets, config.tokens_param.clone());
    let app = router(AppState::new(
        ports,
        tokens,
        &config.cursor_key,
        config.webhook_policy,
    ));
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return lambda_http::run(app).await;
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
    tracing::info!(url = %format!("http://127.0.0.1:{}", config.port), "serving the API");
    axum::serve(listener, app).await?;
    Ok(())
}
