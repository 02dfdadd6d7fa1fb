use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use tms::adapters::aws;
use tms::config::Env;
use tms_importer::{function_handler, Config, Deps};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env(&Env::process())?;
    let aws = aws::load_config().await;
    let deps = Deps::build(&config, &aws).await?;
    run(service_fn(|event: LambdaEvent<SqsEvent>| {
        function_handler(&deps, event)
    }))
    .await
}
