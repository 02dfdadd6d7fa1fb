//! [`SsmSecrets`]: secrets from SSM Parameter Store, decrypted. A Secrets Manager secret is
//! read through the `/aws/reference/secretsmanager/<name>` path of the same API; a reference
//! that names the secret by ARN (what CloudFormation and Terraform hand out) is asked for by the
//! secret's name, the form Parameter Store documents (see [`parameter_name`]).

use std::borrow::Cow;

use async_trait::async_trait;
use aws_sdk_ssm::error::SdkError;
use aws_sdk_ssm::operation::get_parameter::GetParameterError;

use crate::ports::{Secret, Secrets, SecretsError};

/// The prefix of Parameter Store's references to Secrets Manager secrets.
pub const SECRETS_MANAGER_REFERENCE: &str = "/aws/reference/secretsmanager/";

/// The parameter to ask for: `name`, except that a Secrets Manager reference by ARN
/// (`/aws/reference/secretsmanager/arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbC123`)
/// becomes the reference by the secret's name (`/aws/reference/secretsmanager/db`). Secrets
/// Manager ends every secret ARN with `-` and six random characters after the name.
pub fn parameter_name(name: &str) -> Cow<'_, str> {
    let secret_name = name
        .strip_prefix(SECRETS_MANAGER_REFERENCE)
        .filter(|id| id.starts_with("arn:"))
        .and_then(|arn| {
            let parts: Vec<&str> = arn.splitn(7, ':').collect();
            match parts.as_slice() {
                [_, _, "secretsmanager", _, _, "secret", resource] => Some(*resource),
                _ => None,
            }
        })
        .and_then(|resource| {
            let (secret, suffix) = resource.rsplit_once('-')?;
            (suffix.len() == 6 && !secret.is_empty()).then_some(secret)
        });
    match secret_name {
        Some(secret) => Cow::Owned(format!("{SECRETS_MANAGER_REFERENCE}{secret}")),
        None => Cow::Borrowed(name),
    }
}

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
            .name(parameter_name(name))
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

#[cfg(test)]
mod tests {
    use super::parameter_name;

    #[test]
    fn a_secrets_manager_reference_by_arn_asks_for_the_secret_by_name() {
        let cases = [
            (
                "/aws/reference/secretsmanager/arn:aws:secretsmanager:eu-west-1:123456789012:secret:tms-db-app-Xy12Ab",
                "/aws/reference/secretsmanager/tms-db-app",
            ),
            (
                "/aws/reference/secretsmanager/arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:rds!db-0f8e1c2a-9b7d-4c1e-8f00-5a6b7c8d9e0f-a1B2c3",
                "/aws/reference/secretsmanager/rds!db-0f8e1c2a-9b7d-4c1e-8f00-5a6b7c8d9e0f",
            ),
            (
                "/aws/reference/secretsmanager/arn:aws:secretsmanager:eu-west-1:123456789012:secret:team/db:admin-Q1w2E3",
                "/aws/reference/secretsmanager/team/db:admin",
            ),
        ];
        for (given, asked) in cases {
            assert_eq!(parameter_name(given), asked);
        }
    }

    #[test]
    fn other_names_are_asked_for_as_given() {
        for name in [
            "/tms/prod/api-tokens",
            "/aws/reference/secretsmanager/tms-db-app",
            "/aws/reference/secretsmanager/arn:aws:ssm:eu-west-1:123456789012:parameter/x-Ab12Cd",
            "/aws/reference/secretsmanager/arn:aws:secretsmanager:eu-west-1:123456789012:secret:short-ab",
            "/tms/arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbC123",
        ] {
            assert_eq!(parameter_name(name), name);
        }
    }
}
