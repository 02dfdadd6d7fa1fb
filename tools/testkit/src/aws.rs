//! The AWS emulator (LocalStack) started by `scripts/aws-emulator.sh`.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ssm::config::Credentials;

pub fn emulator_url() -> String {
    let port = std::env::var("TMS_AWS_PORT").unwrap_or_else(|_| "4566".into());
    format!("http://127.0.0.1:{port}")
}

/// SDK configuration for the emulator, or a failed test saying how to start it.
pub async fn sdk_config() -> SdkConfig {
    let url = emulator_url();
    let reachable = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .is_ok();
    assert!(
        reachable,
        "the AWS emulator does not answer at {url}: run `make test`, or start it with \
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

/// Creates (or overwrites) a Secrets Manager secret through the emulator's JSON API; returns
/// its ARN.
pub async fn put_secret(name: &str, value: &str) -> String {
    tms::tls::install_crypto_provider();
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
        // The SDKs send an idempotency token of their own; some emulators require one.
        serde_json::json!({"Name": name, "SecretString": value,
            "ClientRequestToken": uuid::Uuid::new_v4().to_string()}),
    )
    .await
    .expect("emulator reachable");
    let answer = if created.status().is_success() {
        created
    } else {
        let updated = call(
            "secretsmanager.PutSecretValue",
            serde_json::json!({"SecretId": name, "SecretString": value,
                "ClientRequestToken": uuid::Uuid::new_v4().to_string()}),
        )
        .await
        .expect("emulator reachable");
        assert!(
            updated.status().is_success(),
            "put secret {name}: {:?}",
            updated.text().await
        );
        updated
    };
    let body: serde_json::Value = answer.json().await.expect("a JSON answer");
    body["ARN"]
        .as_str()
        .unwrap_or_else(|| panic!("put secret {name}: no ARN in {body}"))
        .to_owned()
}

/// A queue of its own for one test; with `dlq`, a dead-letter queue after `max_receives`.
pub struct TestQueue {
    pub url: String,
    pub dlq_url: Option<String>,
    /// The SDK's client: for what the tests set up and read back, and the adapter under test.
    pub client: aws_sdk_sqs::Client,
}

impl TestQueue {
    pub async fn new(config: &SdkConfig, dlq_after: Option<i32>) -> Self {
        let client = aws_sdk_sqs::Client::new(config);
        let name = format!("t-{}", uuid::Uuid::new_v4().simple());
        let mut dlq_url = None;
        let mut create = client.create_queue().queue_name(&name);
        if let Some(max) = dlq_after {
            let dlq = client
                .create_queue()
                .queue_name(format!("{name}-dlq"))
                .send()
                .await
                .expect("create dead-letter queue")
                .queue_url
                .expect("queue url");
            let arn = client
                .get_queue_attributes()
                .queue_url(&dlq)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .send()
                .await
                .expect("dead-letter queue arn")
                .attributes
                .and_then(|a| {
                    a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                        .cloned()
                })
                .expect("queue arn");
            create = create.attributes(
                aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
                serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": max.to_string()})
                    .to_string(),
            );
            dlq_url = Some(dlq);
        }
        let url = create
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("queue url");
        Self {
            url,
            dlq_url,
            client,
        }
    }

    /// Receives up to `max` messages (waiting up to a second per call) and deletes them.
    pub async fn drain(&self, url: &str, max: usize) -> Vec<aws_sdk_sqs::types::Message> {
        let mut all = Vec::new();
        for _ in 0..50 {
            if all.len() >= max {
                break;
            }
            let out = self
                .client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .send()
                .await
                .expect("receive");
            let batch = out.messages.unwrap_or_default();
            if batch.is_empty() && !all.is_empty() {
                break;
            }
            for m in &batch {
                if let Some(handle) = m.receipt_handle() {
                    let _ = self
                        .client
                        .delete_message()
                        .queue_url(url)
                        .receipt_handle(handle)
                        .send()
                        .await;
                }
            }
            all.extend(batch);
        }
        all
    }
}

/// Turns versioning on for `bucket`.
pub async fn enable_versioning(client: &aws_sdk_s3::Client, bucket: &str) {
    client
        .put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("enable versioning");
}

/// A bucket of its own for one test.
pub async fn test_bucket(config: &SdkConfig) -> (aws_sdk_s3::Client, String) {
    let client = tms::adapters::s3::client(config);
    let bucket = format!("t-{}", uuid::Uuid::new_v4().simple());
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    (client, bucket)
}
