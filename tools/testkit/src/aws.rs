//! The AWS emulator (moto server) started by `scripts/aws-emulator.sh`.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ssm::config::Credentials;

pub fn emulator_url() -> String {
    let port = std::env::var("TMS_AWS_PORT").unwrap_or_else(|_| "4566".into());
    format!("http://127.0.0.1:{port}")
}

/// SDK configuration for the emulator, or a failed test saying how to start it.
pub async fn sdk_config() -> SdkConfig {
    let url = emulator_url();
    let probe = format!("{}/moto-api/data.json", url);
    let reachable = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .is_ok();
    assert!(
        reachable,
        "the AWS emulator does not answer at {url} ({probe}): run `make test`, or start it with \
         `scripts/aws-emulator.sh start` before `cargo test`"
    );
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "emulator"))
        .load()
        .await
}

/// Stores a SecureString parameter.
pub async fn put_secure_parameter(config: &SdkConfig, name: &str, value: &str) {
    aws_sdk_ssm::Client::new(config)
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("put parameter {name}: {e:?}"));
}

/// Creates (or overwrites) a Secrets Manager secret through the emulator's JSON API.
pub async fn put_secret(name: &str, value: &str) {
    let client = reqwest::Client::new();
    let call = |target: &'static str, body: serde_json::Value| {
        client
            .post(emulator_url())
            .header("X-Amz-Target", target)
            .header("Content-Type", "application/x-amz-json-1.1")
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/secretsmanager/aws4_request, \
                 SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
    };
    let created = call(
        "secretsmanager.CreateSecret",
        serde_json::json!({"Name": name, "SecretString": value}),
    )
    .await
    .expect("emulator reachable");
    if !created.status().is_success() {
        let updated = call(
            "secretsmanager.PutSecretValue",
            serde_json::json!({"SecretId": name, "SecretString": value}),
        )
        .await
        .expect("emulator reachable");
        assert!(
            updated.status().is_success(),
            "put secret {name}: {:?}",
            updated.text().await
        );
    }
}
