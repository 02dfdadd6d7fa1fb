//! Secrets Manager rotation of the login users' passwords (`tms_migrator`, `tms_app`,
//! `tms_dev`): the four steps Secrets Manager invokes the bootstrapper with, for a secret holding
//! `{"username", "password"}`. Single-user rotation: the user's password changes in `setSecret`,
//! and running functions keep their open connections; a new connection refused the old password
//! makes them read the secret again (see `tms::adapters::postgres::PasswordSource`).
//!
//! Each step is idempotent: Secrets Manager retries a failed step, and a rotation that failed
//! half-way is started again with the same token.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value};
use tms::ports::Secret;

pub const CURRENT: &str = "AWSCURRENT";
pub const PENDING: &str = "AWSPENDING";

/// One step of a rotation, as Secrets Manager sends it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RotationRequest {
    #[serde(rename = "SecretId")]
    pub secret_id: String,
    /// The version id of the secret value this rotation creates.
    #[serde(rename = "ClientRequestToken")]
    pub token: String,
    #[serde(rename = "Step")]
    pub step: Step,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Step {
    #[serde(rename = "createSecret")]
    Create,
    #[serde(rename = "setSecret")]
    Set,
    #[serde(rename = "testSecret")]
    Test,
    #[serde(rename = "finishSecret")]
    Finish,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Self::Create => "createSecret",
            Self::Set => "setSecret",
            Self::Test => "testSecret",
            Self::Finish => "finishSecret",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("secret {secret}: version {token} is not pending rotation")]
    NotPending { secret: String, token: String },
    #[error("secret {secret}: no {stage} value")]
    NoValue { secret: String, stage: String },
    #[error(
        "secret {0}: not a login the bootstrapper rotates (expected JSON with \"username\" and \
         \"password\")"
    )]
    NotALogin(String),
    #[error("secret {secret}: user {user} is not one of the login users the bootstrapper created")]
    UnknownUser { secret: String, user: String },
    #[error("secret {secret}: the pending value names user {pending}, the current one {current}")]
    UserChanged {
        secret: String,
        current: String,
        pending: String,
    },
    #[error("Secrets Manager: {0}")]
    Secrets(String),
    #[error("database: {0}")]
    Database(String),
}

/// The versions of a secret and their stages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Versions(pub Vec<(String, Vec<String>)>);

impl Versions {
    pub fn stages(&self, version: &str) -> Option<&[String]> {
        self.0
            .iter()
            .find(|(id, _)| id == version)
            .map(|(_, stages)| stages.as_slice())
    }

    pub fn holding(&self, stage: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, stages)| stages.iter().any(|s| s == stage))
            .map(|(id, _)| id.as_str())
    }
}

/// What a rotation needs from Secrets Manager.
#[async_trait]
pub trait RotationSecrets: Send + Sync {
    /// # Errors
    /// [`RotationError::Secrets`] when the service fails.
    async fn versions(&self, secret: &str) -> Result<Versions, RotationError>;

    /// The value of `version` (when given) in `stage`; `None` when there is none.
    ///
    /// # Errors
    /// [`RotationError::Secrets`] when the service fails.
    async fn value(
        &self,
        secret: &str,
        version: Option<&str>,
        stage: &str,
    ) -> Result<Option<Secret>, RotationError>;

    /// Stores `value` as version `token`, staged [`PENDING`].
    ///
    /// # Errors
    /// [`RotationError::Secrets`] when the service fails.
    async fn put_pending(
        &self,
        secret: &str,
        token: &str,
        value: &Secret,
    ) -> Result<(), RotationError>;

    /// A new password (32 characters, letters and digits).
    ///
    /// # Errors
    /// [`RotationError::Secrets`] when the service fails.
    async fn random_password(&self) -> Result<Secret, RotationError>;

    /// Moves [`CURRENT`] to `token` from `from`.
    ///
    /// # Errors
    /// [`RotationError::Secrets`] when the service fails.
    async fn promote(&self, secret: &str, token: &str, from: &str) -> Result<(), RotationError>;
}

/// What a rotation does in the database.
#[async_trait]
pub trait LoginPasswords: Send + Sync {
    /// Whether the bootstrapper created `user` (the three login users of its roles).
    fn manages(&self, user: &str) -> bool;

    /// Sets `user`'s password, as the admin.
    ///
    /// # Errors
    /// [`RotationError::Database`] when the database fails.
    async fn set(&self, user: &str, password: &Secret) -> Result<(), RotationError>;

    /// Logs in as `user` with `password`.
    ///
    /// # Errors
    /// [`RotationError::Database`] when the login is refused or fails.
    async fn check(&self, user: &str, password: &Secret) -> Result<(), RotationError>;
}

/// A rotation step's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// The step did its work.
    Done,
    /// The step's work was already done (a retried step, or a token already current).
    AlreadyDone,
}

/// The login in a secret value; its username must be one the bootstrapper manages.
fn login_of(
    secret: &str,
    value: &Secret,
    logins: &dyn LoginPasswords,
) -> Result<(String, Secret), RotationError> {
    let login = value
        .login()
        .ok_or_else(|| RotationError::NotALogin(secret.to_owned()))?;
    let user = login
        .username
        .ok_or_else(|| RotationError::NotALogin(secret.to_owned()))?;
    if !logins.manages(&user) {
        return Err(RotationError::UnknownUser {
            secret: secret.to_owned(),
            user,
        });
    }
    Ok((user, login.password))
}

/// The current value with another password; its other fields are kept.
fn with_password(current: &Secret, password: &Secret) -> Secret {
    let mut fields: Map<String, Value> =
        serde_json::from_str(current.expose().trim()).unwrap_or_default();
    fields.insert(
        "password".into(),
        Value::String(password.expose().to_owned()),
    );
    Secret::new(Value::Object(fields).to_string())
}

/// Runs one rotation step.
///
/// # Errors
/// [`RotationError`] saying what is wrong; never a password.
pub async fn rotate(
    request: &RotationRequest,
    secrets: &dyn RotationSecrets,
    logins: &dyn LoginPasswords,
) -> Result<Done, RotationError> {
    let RotationRequest {
        secret_id: secret,
        token,
        step,
    } = request;
    let versions = secrets.versions(secret).await?;
    match versions.stages(token) {
        Some(stages) if stages.iter().any(|s| s == CURRENT) => return Ok(Done::AlreadyDone),
        Some(stages) if stages.iter().any(|s| s == PENDING) => {}
        // Secrets Manager stages the token before createSecret; a createSecret retried after
        // the version was dropped may create it.
        None if *step == Step::Create => {}
        _ => {
            return Err(RotationError::NotPending {
                secret: secret.clone(),
                token: token.clone(),
            })
        }
    }
    let current =
        secrets
            .value(secret, None, CURRENT)
            .await?
            .ok_or_else(|| RotationError::NoValue {
                secret: secret.clone(),
                stage: CURRENT.into(),
            })?;
    let (user, _) = login_of(secret, &current, logins)?;
    let pending = || async {
        let value = secrets
            .value(secret, Some(token), PENDING)
            .await?
            .ok_or_else(|| RotationError::NoValue {
                secret: secret.clone(),
                stage: PENDING.into(),
            })?;
        let (pending_user, password) = login_of(secret, &value, logins)?;
        if pending_user != user {
            return Err(RotationError::UserChanged {
                secret: secret.clone(),
                current: user.clone(),
                pending: pending_user,
            });
        }
        Ok(password)
    };
    match step {
        Step::Create => {
            if secrets.value(secret, Some(token), PENDING).await?.is_some() {
                return Ok(Done::AlreadyDone);
            }
            let password = secrets.random_password().await?;
            secrets
                .put_pending(secret, token, &with_password(&current, &password))
                .await?;
            tracing::info!(secret, user, "rotation: new password stored as pending");
        }
        Step::Set => {
            let password = pending().await?;
            logins.set(&user, &password).await?;
            tracing::info!(
                secret,
                user,
                "rotation: the user's password set to the pending one"
            );
        }
        Step::Test => {
            let password = pending().await?;
            logins.check(&user, &password).await?;
            tracing::info!(secret, user, "rotation: the pending password logs in");
        }
        Step::Finish => {
            let from = versions.holding(CURRENT).unwrap_or_default();
            secrets.promote(secret, token, from).await?;
            tracing::info!(secret, user, "rotation: the pending password is current");
        }
    }
    Ok(Done::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_four_steps_as_secrets_manager_sends_them() {
        for (name, step) in [
            ("createSecret", Step::Create),
            ("setSecret", Step::Set),
            ("testSecret", Step::Test),
            ("finishSecret", Step::Finish),
        ] {
            let request: RotationRequest = serde_json::from_value(json!({
                "SecretId": "arn:aws:secretsmanager:eu-west-1:1:secret:tms-app-AbC123",
                "ClientRequestToken": "b3f1",
                "Step": name,
                "RotationToken": "ignored"
            }))
            .unwrap();
            assert_eq!(request.step, step);
            assert_eq!(step.name(), name);
        }
    }

    #[test]
    fn a_new_value_keeps_the_other_fields() {
        let current = Secret::new(r#"{"username":"tms_app","password":"old","engine":"postgres"}"#);
        let next: Value =
            serde_json::from_str(with_password(&current, &Secret::new("new")).expose()).unwrap();
        assert_eq!(
            next,
            json!({"username": "tms_app", "password": "new", "engine": "postgres"})
        );
    }
}
