//! [`SsmSecrets`]: secrets from SSM Parameter Store, decrypted. A Secrets Manager secret is
//! read through the `/aws/reference/secretsmanager/<name>` path of the same API.

use async_trait::async_trait;
use aws_sdk_ssm::error::SdkError;
use aws_sdk_ssm::operation::get_parameter::GetParameterError;

use crate::ports::{Secret, Secrets, SecretsError};

#[derive(Clone)]
pub struct SsmSecrets {
    client: aws_sdk_ssm::Client,
}

impl SsmSecrets {
    pub fn new(client: aws_sdk_ssm::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl Secrets for SsmSecrets {
    #[tracing::instrument(skip(self))]
    async fn get(&self, name: &str) -> Result<Secret, SecretsError> {
        let out = self
            .client
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|err| match &err {
                SdkError::ServiceError(e)
                    if matches!(e.err(), GetParameterError::ParameterNotFound(_)) =>
                {
                    SecretsError::NotFound(name.to_owned())
                }
                _ => SecretsError::Unavailable {
                    name: name.to_owned(),
                    source: aws_sdk_ssm::error::DisplayErrorContext(&err)
                        .to_string()
                        .into(),
                },
            })?;
        out.parameter
            .and_then(|p| p.value)
            .map(Secret::new)
            .ok_or_else(|| SecretsError::NotFound(name.to_owned()))
    }
}
