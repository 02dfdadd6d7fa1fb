use std::sync::Arc;

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use tms::adapters::postgres::{PgSettings, PostgresStore};
use tms::adapters::s3::{self, S3ObjectStore};
use tms::adapters::{aws, sqs::SqsWorkQueue, ssm::SsmSecrets};
use tms::config::Env;
use tms::ports::Secrets;
use tms::telemetry::metrics::StdoutSink;
use tms_importer::{function_handler, Config, Deps};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tms::telemetry::init_logging();
    let config = Config::from_env(&Env::process())?;
    let aws = aws::load_config().await;
    let password = match &config.database.password_param {
        Some(param) => Some(
            SsmSecrets::new(aws_sdk_ssm::Client::new(&aws))
                .get(param)
                .await?,
        ),
        None => None,
    };
    let store = Arc::new(PostgresStore::new(
        PgSettings::new(&config.database, password.as_ref())?.pool()?,
    ));
    let deps = Deps {
        imports: store.clone(),
        tasks: store,
        objects: Arc::new(S3ObjectStore::new(s3::client(&aws), &config.bucket)),
        queue: Arc::new(SqsWorkQueue::new(
            aws_sdk_sqs::Client::new(&aws),
            &config.work_queue_url,
        )),
        metrics: Arc::new(StdoutSink),
        policy: config.webhook_policy,
        chunk_rows: config.chunk_rows,
        enqueue: config.enqueue,
    };
    run(service_fn(|event: LambdaEvent<_>| {
        function_handler(&deps, event)
    }))
    .await
}
