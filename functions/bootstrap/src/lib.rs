//! The database bootstrapper function: one handler for CloudFormation custom resources,
//! Terraform `aws_lambda_invocation` and direct invocations, and Secrets Manager's rotation of
//! the login users' secrets ([`rotation`]). The work itself
//! ([`tms::adapters::postgres::bootstrap`]) is behind the [`Bootstrap`] port so the response
//! contract can be tested with failing, panicking and slow fakes.

pub mod cfn;
mod config;
pub mod event;
pub mod rotation;
pub mod secretsmanager;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest as CfnRequest;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::{json, Value};
use tms::adapters::postgres::bootstrap::{self, BootstrapError, BootstrapReport, Logins};
use tms::adapters::postgres::{PgSettings, PgSetupError};
use tms::deadline::Deadline;
use tms::ports::{Secret, Secrets, SecretsError};

pub use config::Config;
use event::{Invocation, TerraformAction};
use rotation::{Done, LoginPasswords, RotationError, RotationSecrets};

/// Time kept back from the invocation's deadline to deliver the response.
pub const RESPONSE_MARGIN: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("the admin secret {0} is neither a password nor JSON with a \"password\" field")]
    AdminSecret(String),
    #[error(
        "the login secret {param} is neither a password nor JSON with a \"password\" field for \
         user {user}"
    )]
    LoginSecret { param: String, user: String },
    #[error(transparent)]
    Setup(#[from] PgSetupError),
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
}

/// The work of one bootstrap.
#[async_trait]
pub trait Bootstrap: Send + Sync {
    /// # Errors
    /// [`BootError`] saying which step failed, never containing a password.
    async fn run(&self) -> Result<BootstrapReport, BootError>;
}

/// The real work: secrets from SSM, then roles, privileges and migrations.
pub struct DatabaseBootstrap {
    config: Config,
    secrets: Arc<dyn Secrets>,
}

impl DatabaseBootstrap {
    pub fn new(config: Config, secrets: Arc<dyn Secrets>) -> Self {
        Self { config, secrets }
    }
}

/// The admin secret: a bare password, or JSON `{"username"?, "password"}` (the shape of an RDS
/// managed master secret).
fn admin_login(param: &str, secret: &Secret) -> Result<(Option<String>, Secret), BootError> {
    let login = secret
        .login()
        .ok_or_else(|| BootError::AdminSecret(param.to_owned()))?;
    Ok((login.username, login.password))
}

/// A login user's password: a bare password, or JSON `{"username", "password"}` (the shape RDS
/// Proxy and rotation need) naming that user.
fn user_password(param: &str, user: &str, secret: &Secret) -> Result<Secret, BootError> {
    match secret.login() {
        Some(login) if login.username.as_deref().is_none_or(|u| u == user) => Ok(login.password),
        _ => Err(BootError::LoginSecret {
            param: param.to_owned(),
            user: user.to_owned(),
        }),
    }
}

impl DatabaseBootstrap {
    /// The admin's connection settings, its password from the admin secret.
    async fn admin(&self) -> Result<PgSettings, BootError> {
        let c = &self.config;
        let secret = self.secrets.get(&c.admin_secret_param).await?;
        let (user, password) = admin_login(&c.admin_secret_param, &secret)?;
        let settings = PgSettings::new(&c.database, Some(&password))?;
        Ok(match user {
            Some(user) => settings.with_login(&user, &password),
            None => settings,
        })
    }
}

#[async_trait]
impl Bootstrap for DatabaseBootstrap {
    async fn run(&self) -> Result<BootstrapReport, BootError> {
        let c = &self.config;
        let s = &self.secrets;
        let (settings, migrator, app, dev) = futures::try_join!(
            self.admin(),
            async { Ok(s.get(&c.migrator_password_param).await?) },
            async { Ok(s.get(&c.app_password_param).await?) },
            async { Ok(s.get(&c.dev_password_param).await?) },
        )?;
        let logins = Logins {
            migrator: user_password(&c.migrator_password_param, &c.roles.migrator(), &migrator)?,
            app: user_password(&c.app_password_param, &c.roles.app(), &app)?,
            dev: user_password(&c.dev_password_param, &c.roles.dev(), &dev)?,
        };
        Ok(bootstrap::bootstrap(&settings, &c.roles, &logins).await?)
    }
}

#[async_trait]
impl LoginPasswords for DatabaseBootstrap {
    fn manages(&self, user: &str) -> bool {
        self.config.roles.is_login(user)
    }

    async fn set(&self, user: &str, password: &Secret) -> Result<(), RotationError> {
        let admin = self
            .admin()
            .await
            .map_err(|e| RotationError::Database(e.to_string()))?;
        bootstrap::set_password(&admin, &self.config.roles, user, password)
            .await
            .map_err(|e| RotationError::Database(e.to_string()))
    }

    async fn check(&self, user: &str, password: &Secret) -> Result<(), RotationError> {
        let server = PgSettings::new(&self.config.database, None)
            .map_err(|e| RotationError::Database(e.to_string()))?;
        bootstrap::check_login(&server, user, password)
            .await
            .map_err(|e| RotationError::Database(e.to_string()))
    }
}

/// The rotation's two sides: Secrets Manager and the database.
pub struct Rotation {
    pub secrets: Arc<dyn RotationSecrets>,
    pub logins: Arc<dyn LoginPasswords>,
}

pub struct Deps {
    pub bootstrap: Arc<dyn Bootstrap>,
    /// `None` where no rotation is wired (the local stack).
    pub rotation: Option<Rotation>,
    pub http: LazyHttp,
}

/// The HTTP client for CloudFormation's response URL, built by its first use: building it
/// loads the system's CA store, which would otherwise cost every cold start tens of milliseconds.
#[derive(Default)]
pub struct LazyHttp(std::sync::OnceLock<reqwest::Client>);

impl LazyHttp {
    pub fn get(&self) -> &reqwest::Client {
        self.0.get_or_init(|| {
            tms::tls::install_crypto_provider();
            reqwest::Client::new()
        })
    }
}

/// The function's timeout, assumed when the runtime gives no usable deadline.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(300);

/// Runs the work in its own task so a panic is caught, and under a timeout that leaves
/// [`RESPONSE_MARGIN`] before the invocation's deadline.
async fn run_guarded(
    work: Arc<dyn Bootstrap>,
    deadline: Deadline,
) -> Result<BootstrapReport, String> {
    let budget = deadline
        .remaining()
        .saturating_sub(RESPONSE_MARGIN)
        .max(Duration::from_millis(100));
    match tokio::time::timeout(budget, tokio::spawn(async move { work.run().await })).await {
        Ok(Ok(Ok(report))) => Ok(report),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(join)) if join.is_panic() => {
            Err("the bootstrap panicked (see the function's log)".into())
        }
        Ok(Err(join)) => Err(format!("the bootstrap was cancelled: {join}")),
        Err(_) => Err(format!(
            "the bootstrap did not finish within {} s, before the function's deadline",
            budget.as_secs()
        )),
    }
}

/// The answer to a Terraform or direct invocation.
pub fn report_json(report: &BootstrapReport) -> Value {
    json!({"status": "ok", "report": report})
}

/// Handles one invocation of any of the three shapes.
///
/// # Errors
/// For Terraform and direct invocations, the failure of the work (so the caller sees it); a
/// CloudFormation event fails only when its response cannot be delivered.
#[tracing::instrument(skip_all, fields(request_id = %event.context.request_id))]
pub async fn function_handler(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let deadline = Deadline::from_epoch_millis(event.context.deadline, DEFAULT_BUDGET);
    match event::classify(&event.payload)? {
        Invocation::CloudFormation(request) => {
            let ids = cfn::RequestIds::of(&request);
            let outcome = match *request {
                // NOTE: Delete never touches the database (data is never dropped), and so also
                // succeeds for the Delete that follows a failed Create.
                CfnRequest::Delete(_) => Ok(HashMap::new()),
                _ => run_guarded(deps.bootstrap.clone(), deadline)
                    .await
                    .map(|r| {
                        HashMap::from([
                            ("Database".to_owned(), r.database),
                            (
                                "MigrationsApplied".to_owned(),
                                r.migrations_applied.len().to_string(),
                            ),
                        ])
                    }),
            };
            match &outcome {
                Ok(_) => {
                    tracing::info!(logical_id = %ids.logical_resource_id, "bootstrap succeeded")
                }
                Err(reason) => {
                    tracing::error!(logical_id = %ids.logical_resource_id, %reason, "bootstrap failed")
                }
            }
            let failed = outcome.is_err();
            let body = cfn::response_body(&ids, outcome);
            cfn::deliver(deps.http.get(), &ids.response_url, body).await?;
            Ok(json!({"status": if failed { "FAILED" } else { "SUCCESS" }}))
        }
        Invocation::Rotation(request) => {
            let Some(rotation) = &deps.rotation else {
                return Err("this bootstrapper is not wired for rotation".into());
            };
            let step = request.step.name();
            match rotation::rotate(
                &request,
                rotation.secrets.as_ref(),
                rotation.logins.as_ref(),
            )
            .await
            {
                Ok(done) => Ok(
                    json!({"status": "ok", "step": step, "already_done": done == Done::AlreadyDone}),
                ),
                Err(e) => {
                    tracing::error!(step, secret = %request.secret_id, error = %e, "rotation step failed");
                    Err(e.into())
                }
            }
        }
        Invocation::Terraform(TerraformAction::Delete) => {
            Ok(json!({"status": "skipped", "reason": "delete leaves the database as it is"}))
        }
        Invocation::Terraform(_) | Invocation::Direct => {
            let report = run_guarded(deps.bootstrap.clone(), deadline).await?;
            tracing::info!(
                roles_created = report.roles_created.len(),
                migrations_applied = report.migrations_applied.len(),
                "bootstrap succeeded"
            );
            Ok(report_json(&report))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_secret_shapes() {
        let (user, pw) = admin_login("p", &Secret::new("plain")).unwrap();
        assert_eq!((user, pw.expose()), (None, "plain"));
        let rds = Secret::new(r#"{"username":"master","password":"s3cret"}"#);
        let (user, pw) = admin_login("p", &rds).unwrap();
        assert_eq!((user.as_deref(), pw.expose()), (Some("master"), "s3cret"));
        let err = admin_login("/x", &Secret::new(r#"{"user":"a"}"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/x") && !err.contains("user\":"), "{err}");
    }

    #[test]
    fn a_login_secret_is_a_password_or_json_naming_its_user() {
        let plain = user_password("/p", "tms_app", &Secret::new("pw")).unwrap();
        assert_eq!(plain.expose(), "pw");
        let json = Secret::new(r#"{"username":"tms_app","password":"pw2"}"#);
        assert_eq!(
            user_password("/p", "tms_app", &json).unwrap().expose(),
            "pw2"
        );
        let err = user_password("/p", "tms_dev", &json)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/p") && err.contains("tms_dev") && !err.contains("pw2"),
            "{err}"
        );
    }
}
