//! [`SecretsManagerRotation`]: the rotation's Secrets Manager calls (aws-sdk-secretsmanager,
//! linked into the bootstrapper only).

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_sdk_secretsmanager::Client;
use tms::ports::Secret;

use crate::rotation::{RotationError, RotationSecrets, Versions, CURRENT, PENDING};

pub struct SecretsManagerRotation {
    client: Client,
}

impl SecretsManagerRotation {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn failed<E, R>(call: &'static str) -> impl Fn(SdkError<E, R>) -> RotationError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |e| RotationError::Secrets(format!("{call}: {}", DisplayErrorContext(&e)))
}

#[async_trait]
impl RotationSecrets for SecretsManagerRotation {
    async fn versions(&self, secret: &str) -> Result<Versions, RotationError> {
        let out = self
            .client
            .describe_secret()
            .secret_id(secret)
            .send()
            .await
            .map_err(failed("DescribeSecret"))?;
        let mut versions: Vec<(String, Vec<String>)> = out
            .version_ids_to_stages()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        versions.sort();
        Ok(Versions(versions))
    }

    async fn value(
        &self,
        secret: &str,
        version: Option<&str>,
        stage: &str,
    ) -> Result<Option<Secret>, RotationError> {
        let sent = self
            .client
            .get_secret_value()
            .secret_id(secret)
            .set_version_id(version.map(str::to_owned))
            .version_stage(stage)
            .send()
            .await;
        match sent {
            Ok(out) => Ok(out.secret_string().map(Secret::new)),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), GetSecretValueError::ResourceNotFoundException(_)) =>
            {
                Ok(None)
            }
            Err(e) => Err(failed("GetSecretValue")(e)),
        }
    }

    async fn put_pending(
        &self,
        secret: &str,
        token: &str,
        value: &Secret,
    ) -> Result<(), RotationError> {
        self.client
            .put_secret_value()
            .secret_id(secret)
            .client_request_token(token)
            .secret_string(value.expose())
            .version_stages(PENDING)
            .send()
            .await
            .map_err(failed("PutSecretValue"))?;
        Ok(())
    }

    async fn random_password(&self) -> Result<Secret, RotationError> {
        let out = self
            .client
            .get_random_password()
            .password_length(32)
            .exclude_punctuation(true)
            .send()
            .await
            .map_err(failed("GetRandomPassword"))?;
        out.random_password()
            .map(Secret::new)
            .ok_or_else(|| RotationError::Secrets("GetRandomPassword: no password".into()))
    }

    async fn promote(&self, secret: &str, token: &str, from: &str) -> Result<(), RotationError> {
        let mut call = self
            .client
            .update_secret_version_stage()
            .secret_id(secret)
            .version_stage(CURRENT)
            .move_to_version_id(token);
        if !from.is_empty() {
            call = call.remove_from_version_id(from);
        }
        call.send()
            .await
            .map_err(failed("UpdateSecretVersionStage"))?;
        Ok(())
    }
}
