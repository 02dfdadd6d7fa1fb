//! Loading the AWS configuration once per execution environment. `AWS_ENDPOINT_URL` points every
//! client at a local emulator.

/// The shared SDK configuration from the environment (region, credentials, endpoint).
pub async fn load_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}
