use std::sync::Arc;

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;
use tms::adapters::{aws, ssm::SsmSecrets};
use tms::config::Env;
use tms_bootstrap::secretsmanager::SecretsManagerRotation;
use tms_bootstrap::{function_handler, Config, DatabaseBootstrap, Deps, Rotation};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env(&Env::process())?;
    let aws = aws::load_config().await;
    let secrets = Arc::new(SsmSecrets::new(aws_sdk_ssm::Client::new(&aws)));
    let database = Arc::new(DatabaseBootstrap::new(config, secrets));
    let rotation = Rotation {
        secrets: Arc::new(SecretsManagerRotation::new(
            aws_sdk_secretsmanager::Client::new(&aws),
        )),
        logins: database.clone(),
    };
    let deps = Deps {
        bootstrap: database,
        rotation: Some(rotation),
        http: Default::default(),
    };
    run(service_fn(|event: LambdaEvent<Value>| {
        function_handler(&deps, event)
    }))
    .await
}
