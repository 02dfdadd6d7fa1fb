use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use tms::adapters::aws;
use tms::config::Env;
use tms_worker::{function_handler, Config, Deps};

// One thread: under Lambda an environment runs one batch at a time on a fraction of a vCPU
// below 1,769 MB, and a batch's tasks wait on the network, not on each other's CPU
// (BENCHMARKS.md has the measurement).
#[tokio::main(flavor = "current_thread")]
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
