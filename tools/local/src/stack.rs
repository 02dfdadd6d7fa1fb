//! The local stack: names, ports and credentials of the project-local services, the resources
//! it provisions in the AWS emulator (queues, bus, bucket, parameters, the email identity), and
//! the environment each function runs with.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::types::{
    BucketVersioningStatus, Event, FilterRule, FilterRuleName, NotificationConfiguration,
    NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter, VersioningConfiguration,
};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use aws_sdk_ssm::config::Credentials;
use aws_sdk_ssm::types::ParameterType;
use tms_api::auth::token_hash;

/// The local names of the deployed resources.
#[derive(Debug, Clone)]
pub struct Names {
    pub work_queue: String,
    /// The work queue of `high` tasks, which the worker reads besides the work queue.
    pub high_work_queue: String,
    /// The event bus, whose rule delivers every event to the work queue.
    pub event_bus: String,
    pub import_queue: String,
    pub bucket: String,
    /// SSM parameters live below this path.
    pub params: String,
    pub database: String,
}

impl Names {
    pub fn with_prefix(prefix: &str, database: &str) -> Self {
        Self {
            work_queue: format!("{prefix}-work"),
            high_work_queue: format!("{prefix}-work-high"),
            event_bus: format!("{prefix}-events"),
            import_queue: format!("{prefix}-import"),
            bucket: format!("{prefix}-data"),
            params: format!("/{prefix}/local"),
            database: database.to_owned(),
        }
    }
}

/// The queues and bucket, once provisioned.
#[derive(Debug, Clone)]
pub struct Resources {
    pub work_queue_url: String,
    pub high_work_queue_url: String,
    /// The event bus's name.
    pub event_bus: String,
    pub work_dlq_url: String,
    pub import_queue_url: String,
    pub import_dlq_url: String,
    pub bucket: String,
}

/// Local queue settings. Redrive is as deployed (five receives); visibility is shorter than in
/// AWS so that a failed message comes back within a minute while you watch.
const WORK_VISIBILITY_SECONDS: &str = "60";
const IMPORT_VISIBILITY_SECONDS: &str = "300";
const MAX_RECEIVE_COUNT: &str = "5";
pub const REGION: &str = "us-east-1";
pub const CURSOR_KEY: &str = "tms-local-cursor-key";
/// The identity emails are delivered from locally, unless `TMS_EMAIL_IDENTITY` names another.
pub const EMAIL_IDENTITY: &str = "tms@example.com";

#[derive(Debug, Clone)]
pub struct Stack {
    pub root: PathBuf,
    pub api_port: u16,
    pub aws_port: u16,
    pub pg_port: u16,
    /// The local cluster's folder (`TMS_PG_DIR`, default `.local/pg`): its CA and passwords.
    pub pg_dir: PathBuf,
    pub names: Names,
    /// `TMS_DEV_TOKENS`: (tenant, token, role).
    pub tokens: Vec<(String, String, tms::Role)>,
    /// `TMS_EMAIL_IDENTITY` (default [`EMAIL_IDENTITY`]): verified in the emulator's SES, the
    /// worker delivers emails from it.
    pub email_identity: String,
}

fn port(name: &str, default: u16) -> anyhow::Result<u16> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .with_context(|| format!("{name} must be a port number, got {v:?}")),
        _ => Ok(default),
    }
}

/// Parses `TMS_DEV_TOKENS` (`tenant:token,tenant:token`).
pub fn parse_tokens(raw: &str) -> anyhow::Result<Vec<(String, String, tms::Role)>> {
    raw.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|entry| {
            let mut parts = entry.splitn(3, ':');
            let (Some(tenant), Some(token)) = (parts.next(), parts.next()) else {
                bail!("TMS_DEV_TOKENS entry {entry:?} is not tenant:token[:role]");
            };
            tms::Tenant::parse(tenant)
                .map_err(|e| anyhow::anyhow!("TMS_DEV_TOKENS: tenant {tenant:?} {}", e.message))?;
            if token.is_empty() {
                bail!("TMS_DEV_TOKENS: the token of {tenant} is empty");
            }
            let role = parts
                .next()
                .map_or(Ok(tms::Role::Member), tms::Role::parse)
                .map_err(|e| anyhow::anyhow!("TMS_DEV_TOKENS: {tenant}: {e}"))?;
            Ok((tenant.to_owned(), token.to_owned(), role))
        })
        .collect()
}

impl Stack {
    /// The stack of this checkout (`root`), with the ports and tokens of the environment.
    ///
    /// # Errors
    /// An invalid port or token variable.
    pub fn from_env(root: &Path) -> anyhow::Result<Self> {
        let tokens = parse_tokens(
            &std::env::var("TMS_DEV_TOKENS").unwrap_or_else(|_| "demo:tms-dev-token".into()),
        )?;
        if tokens.is_empty() {
            bail!("TMS_DEV_TOKENS names no token");
        }
        let email_identity = std::env::var("TMS_EMAIL_IDENTITY")
            .ok()
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| EMAIL_IDENTITY.into());
        email_identity
            .parse::<tms::domain::email::EmailIdentity>()
            .map_err(|e| anyhow::anyhow!("TMS_EMAIL_IDENTITY {email_identity:?}: {e}"))?;
        Ok(Self {
            root: root.to_owned(),
            api_port: port("TMS_API_PORT", 3000)?,
            aws_port: port("TMS_AWS_PORT", 4566)?,
            pg_port: port("TMS_PG_PORT", 55432)?,
            pg_dir: root.join(
                std::env::var_os("TMS_PG_DIR")
                    .filter(|d| !d.is_empty())
                    .map_or_else(|| PathBuf::from(".local/pg"), PathBuf::from),
            ),
            names: Names::with_prefix("tms", "tms"),
            tokens,
            email_identity,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.aws_port)
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.pg_dir.join("tls/ca.crt")
    }

    fn read(&self, relative: &str) -> anyhow::Result<String> {
        let path = self.pg_dir.join(relative);
        std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (is the local PostgreSQL initialised? run `make dev`)",
                path.display()
            )
        })
    }

    pub fn admin_password(&self) -> anyhow::Result<String> {
        Ok(self.read("admin.password")?.trim().to_owned())
    }

    /// The passwords of tms_migrator, tms_app and tms_dev (`roles.env` in the cluster's folder).
    pub fn role_passwords(&self) -> anyhow::Result<[String; 3]> {
        let text = self.read("roles.env")?;
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .map(|v| v.trim().to_owned())
                .with_context(|| format!("{key} missing from roles.env"))
        };
        Ok([
            get("TMS_MIGRATOR_PASSWORD")?,
            get("TMS_APP_PASSWORD")?,
            get("TMS_DEV_PASSWORD")?,
        ])
    }

    /// SDK configuration for the emulator.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new("test", "test", None, None, "tms-local"))
            .load()
            .await
    }

    fn param(&self, name: &str) -> String {
        format!("{}/{name}", self.names.params)
    }

    /// Creates the application database when missing.
    ///
    /// # Errors
    /// When the local PostgreSQL cannot be reached.
    pub async fn ensure_database(&self) -> anyhow::Result<()> {
        let client = self.admin_client("postgres").await?;
        let exists = client
            .query_opt(
                "SELECT 1 FROM pg_database WHERE datname = $1",
                &[&self.names.database],
            )
            .await?
            .is_some();
        if !exists {
            client
                .batch_execute(&format!("CREATE DATABASE {}", self.names.database))
                .await?;
            tracing::info!(database = %self.names.database, "database created");
        }
        Ok(())
    }

    /// A connection to `dbname` of the local cluster as its superuser (over TLS, verified).
    ///
    /// # Errors
    /// When the cluster does not answer or refuses the login.
    pub async fn admin_client(&self, dbname: &str) -> anyhow::Result<tokio_postgres::Client> {
        let admin = tms::config::DatabaseConfig {
            url: format!("postgres://postgres@127.0.0.1:{}/{dbname}", self.pg_port),
            ssl_mode: tms::config::SslMode::VerifyFull,
            ca_file: Some(self.ca_file()),
            password_param: None,
            pool_size: 1,
            connect_timeout: std::time::Duration::from_secs(5),
        };
        let password = tms::ports::Secret::new(self.admin_password()?);
        tms::adapters::postgres::PgSettings::new(&admin, Some(&password))?
            .connect()
            .await
            .with_context(|| {
                format!(
                    "cannot connect to the local PostgreSQL on port {}",
                    self.pg_port
                )
            })
    }

    /// Creates (or finds) the queues with their dead-letter queues, the event bus with its rule
    /// to the work queue, the bucket with versioning and its notification to the import queue,
    /// the SSM parameters, and the email identity, verified. Safe to run again.
    ///
    /// # Errors
    /// When the emulator refuses a call.
    pub async fn provision(&self, aws: &SdkConfig) -> anyhow::Result<Resources> {
        let sqs = aws_sdk_sqs::Client::new(aws);
        let (work_queue_url, work_dlq_url) =
            queue_with_dlq(&sqs, &self.names.work_queue, WORK_VISIBILITY_SECONDS).await?;
        let (high_work_queue_url, _) =
            queue_with_dlq(&sqs, &self.names.high_work_queue, WORK_VISIBILITY_SECONDS).await?;
        let (import_queue_url, import_dlq_url) =
            queue_with_dlq(&sqs, &self.names.import_queue, IMPORT_VISIBILITY_SECONDS).await?;
        let import_arn = queue_arn(&sqs, &import_queue_url).await?;
        let work_arn = queue_arn(&sqs, &work_queue_url).await?;
        self.event_bus(aws, &work_arn).await?;
        self.email_identity(aws).await?;
        let s3 = tms::adapters::s3::client(aws);
        let bucket = &self.names.bucket;
        if s3.head_bucket().bucket(bucket).send().await.is_err() {
            s3.create_bucket()
                .bucket(bucket)
                .send()
                .await
                .context("create the data bucket")?;
        }
        s3.put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .context("enable versioning")?;
        let filter = NotificationConfigurationFilter::builder()
            .key(
                S3KeyFilter::builder()
                    .filter_rules(
                        FilterRule::builder()
                            .name(FilterRuleName::Prefix)
                            .value(tms::IMPORTS_PREFIX)
                            .build(),
                    )
                    .build(),
            )
            .build();
        s3.put_bucket_notification_configuration()
            .bucket(bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(
                        QueueConfiguration::builder()
                            .id("imports")
                            .queue_arn(import_arn)
                            .events(Event::S3ObjectCreated)
                            .filter(filter)
                            .build()?,
                    )
                    .build(),
            )
            .send()
            .await
            .context("notify the import queue")?;
        // The local producers are whoever the emulator says sends with these credentials; the
        // map lets that principal submit for every tenant, as an account's own producers may.
        // Events put on the local bus carry the emulator's account, which may create any
        // tenant's tasks through its triggers.
        let sender = sender_id(&sqs, &self.names.work_queue).await?;
        let account = work_arn.split(':').nth(4).unwrap_or_default();
        let producers = serde_json::json!({ sender: "*", account: "*" }).to_string();
        let ssm = aws_sdk_ssm::Client::new(aws);
        let tokens: serde_json::Map<String, serde_json::Value> = self
            .tokens
            .iter()
            .map(|(tenant, token, role)| {
                let entry = if *role == tms::Role::Member {
                    serde_json::Value::String(tenant.clone())
                } else {
                    serde_json::json!({"tenant": tenant, "role": role})
                };
                (token_hash(token), entry)
            })
            .collect();
        let admin = serde_json::json!({"username": "postgres", "password": self.admin_password()?})
            .to_string();
        let [migrator, app, dev] = self.role_passwords()?;
        for (name, value) in [
            ("api-tokens", serde_json::Value::Object(tokens).to_string()),
            ("producers", producers),
            ("db/admin", admin),
            ("db/migrator", migrator),
            ("db/app", app),
            ("db/dev", dev),
        ] {
            ssm.put_parameter()
                .name(self.param(name))
                .value(value)
                .r#type(ParameterType::SecureString)
                .overwrite(true)
                .send()
                .await
                .with_context(|| format!("put parameter {}", self.param(name)))?;
        }
        Ok(Resources {
            work_queue_url,
            high_work_queue_url,
            event_bus: self.names.event_bus.clone(),
            work_dlq_url,
            import_queue_url,
            import_dlq_url,
            bucket: bucket.clone(),
        })
    }

    /// The event bus and its rule: every event to the work queue, as the stacks deliver them.
    async fn event_bus(&self, aws: &SdkConfig, work_arn: &str) -> anyhow::Result<()> {
        let events = aws_sdk_eventbridge::Client::new(aws);
        let bus = &self.names.event_bus;
        let exists = events.describe_event_bus().name(bus).send().await.is_ok();
        if !exists {
            events
                .create_event_bus()
                .name(bus)
                .send()
                .await
                .context("create the event bus")?;
        }
        let rule = format!("{bus}-to-work");
        events
            .put_rule()
            .name(&rule)
            .event_bus_name(bus)
            .event_pattern(r#"{"source": [{"prefix": ""}]}"#)
            .send()
            .await
            .context("put the event bus's rule")?;
        events
            .put_targets()
            .rule(&rule)
            .event_bus_name(bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("work")
                    .arn(work_arn)
                    .build()?,
            )
            .send()
            .await
            .context("target the work queue")?;
        Ok(())
    }

    /// The identity the worker delivers emails from, created in the emulator's SES v2 (which
    /// verifies it at once, as the emulator's SES does).
    async fn email_identity(&self, aws: &SdkConfig) -> anyhow::Result<()> {
        let created = aws_sdk_sesv2::Client::new(aws)
            .create_email_identity()
            .email_identity(&self.email_identity)
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(anyhow::Error::new(e).context(format!(
                "create the email identity {} in the emulator's SES",
                self.email_identity
            ))),
        }
    }

    fn aws_env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint()),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_ACCESS_KEY_ID".into(), "test".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ]
    }

    /// The environment of the API, worker, importer and scheduler (as the application user).
    pub fn function_env(&self, res: &Resources) -> Vec<(String, String)> {
        let mut env = self.aws_env();
        env.extend(
            [
                (
                    "TMS_DATABASE_URL",
                    format!(
                        "postgres://tms_app@127.0.0.1:{}/{}",
                        self.pg_port, self.names.database
                    ),
                ),
                ("TMS_DATABASE_SSLMODE", "verify-full".into()),
                ("TMS_DATABASE_CA_FILE", self.ca_file().display().to_string()),
                ("TMS_DATABASE_PASSWORD_PARAM", self.param("db/app")),
                ("TMS_WORK_QUEUE_URL", res.work_queue_url.clone()),
                ("TMS_HIGH_WORK_QUEUE_URL", res.high_work_queue_url.clone()),
                ("TMS_WORK_DLQ_URL", res.work_dlq_url.clone()),
                ("TMS_EVENT_BUS", res.event_bus.clone()),
                ("TMS_BUCKET", res.bucket.clone()),
                ("TMS_TOKENS_PARAM", self.param("api-tokens")),
                ("TMS_PRODUCERS_PARAM", self.param("producers")),
                ("TMS_CURSOR_KEY", CURSOR_KEY.into()),
                // NOTE: the local run allows webhooks to loopback over plain http, so the demo
                // can run its own receiver; every other private or metadata address stays
                // refused, and so do the ports of the stack itself (the API, the emulator and
                // PostgreSQL), so that no webhook can act as one tenant on another's behalf.
                ("TMS_WEBHOOK_ALLOW", "http,loopback".into()),
                (
                    "TMS_WEBHOOK_DENY_PORTS",
                    format!("{},{},{}", self.api_port, self.aws_port, self.pg_port),
                ),
                ("TMS_API_PORT", self.api_port.to_string()),
                ("TMS_EMAIL_IDENTITY", self.email_identity.clone()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        env
    }

    /// The environment of the bootstrapper (the admin connection and the secrets' names).
    pub fn bootstrap_env(&self) -> Vec<(String, String)> {
        let mut env = self.aws_env();
        env.extend(
            [
                (
                    "TMS_DATABASE_URL",
                    format!(
                        "postgres://postgres@127.0.0.1:{}/{}",
                        self.pg_port, self.names.database
                    ),
                ),
                ("TMS_DATABASE_SSLMODE", "verify-full".into()),
                ("TMS_DATABASE_CA_FILE", self.ca_file().display().to_string()),
                ("TMS_ADMIN_SECRET_PARAM", self.param("db/admin")),
                ("TMS_MIGRATOR_PASSWORD_PARAM", self.param("db/migrator")),
                ("TMS_APP_PASSWORD_PARAM", self.param("db/app")),
                ("TMS_DEV_PASSWORD_PARAM", self.param("db/dev")),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        env
    }

    /// `.local/dev.env`: what a developer needs to talk to the running stack.
    ///
    /// # Errors
    /// When the passwords cannot be read.
    pub fn dev_env(&self, res: &Resources) -> anyhow::Result<Vec<(String, String)>> {
        let [_, app, _] = self.role_passwords()?;
        let tokens = self
            .tokens
            .iter()
            .map(|(t, k, role)| match role {
                tms::Role::Member => format!("{t}:{k}"),
                other => format!("{t}:{k}:{other}"),
            })
            .collect::<Vec<_>>()
            .join(",");
        let mut env = vec![
            ("TMS_API_URL".to_owned(), self.api_url()),
            ("TMS_DEV_TOKENS".to_owned(), tokens),
            (
                "DATABASE_URL".to_owned(),
                format!(
                    "postgres://postgres:{}@127.0.0.1:{}/{}?sslmode=verify-full",
                    self.admin_password()?,
                    self.pg_port,
                    self.names.database
                ),
            ),
            (
                "TMS_APP_DATABASE_URL".to_owned(),
                format!(
                    "postgres://tms_app:{app}@127.0.0.1:{}/{}?sslmode=verify-full",
                    self.pg_port, self.names.database
                ),
            ),
        ];
        env.extend(self.aws_env());
        env.extend([
            ("TMS_WORK_QUEUE_URL".to_owned(), res.work_queue_url.clone()),
            (
                "TMS_HIGH_WORK_QUEUE_URL".to_owned(),
                res.high_work_queue_url.clone(),
            ),
            ("TMS_WORK_DLQ_URL".to_owned(), res.work_dlq_url.clone()),
            ("TMS_EVENT_BUS".to_owned(), res.event_bus.clone()),
            (
                "TMS_IMPORT_QUEUE_URL".to_owned(),
                res.import_queue_url.clone(),
            ),
            ("TMS_IMPORT_DLQ_URL".to_owned(), res.import_dlq_url.clone()),
            ("TMS_BUCKET".to_owned(), res.bucket.clone()),
            ("TMS_EMAIL_IDENTITY".to_owned(), self.email_identity.clone()),
            (
                "PGSSLROOTCERT".to_owned(),
                self.ca_file().display().to_string(),
            ),
        ]);
        Ok(env)
    }

    /// Writes `.local/dev.env` (`KEY=value` lines).
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write_dev_env(&self, res: &Resources) -> anyhow::Result<PathBuf> {
        let path = self.root.join(".local/dev.env");
        let body: String = self
            .dev_env(res)?
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        std::fs::write(&path, body).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<String> {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .context("the queue has no ARN")
}

/// The `SenderId` the emulator stamps on messages sent with the local credentials, read from a
/// probe message on a queue of its own.
async fn sender_id(sqs: &aws_sdk_sqs::Client, name: &str) -> anyhow::Result<String> {
    let url = sqs
        .create_queue()
        .queue_name(format!("{name}-sender-probe"))
        .send()
        .await
        .context("create the sender probe queue")?
        .queue_url
        .context("no queue url")?;
    sqs.send_message()
        .queue_url(&url)
        .message_body("who sends?")
        .send()
        .await
        .context("send the sender probe")?;
    let message = sqs
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(5)
        .message_system_attribute_names(MessageSystemAttributeName::SenderId)
        .send()
        .await
        .context("receive the sender probe")?
        .messages
        .unwrap_or_default()
        .into_iter()
        .next()
        .context("the sender probe did not arrive")?;
    if let Some(handle) = message.receipt_handle() {
        sqs.delete_message()
            .queue_url(&url)
            .receipt_handle(handle)
            .send()
            .await
            .context("delete the sender probe")?;
    }
    message
        .attributes
        .and_then(|a| a.get(&MessageSystemAttributeName::SenderId).cloned())
        .context("the emulator sent no SenderId")
}

/// A queue and its dead-letter queue (after five receives), SSE on.
async fn queue_with_dlq(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    visibility: &str,
) -> anyhow::Result<(String, String)> {
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
        .send()
        .await
        .with_context(|| format!("create queue {name}-dlq"))?
        .queue_url
        .context("no queue url")?;
    let redrive = serde_json::json!({"deadLetterTargetArn": queue_arn(sqs, &dlq).await?, "maxReceiveCount": MAX_RECEIVE_COUNT}).to_string();
    let queue = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::VisibilityTimeout, visibility)
        .attributes(QueueAttributeName::MessageRetentionPeriod, "345600")
        .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .with_context(|| format!("create queue {name}"))?
        .queue_url
        .context("no queue url")?;
    Ok((queue, dlq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_tokens_name_a_tenant_a_token_and_optionally_a_role() {
        let tokens = parse_tokens("demo:t1, ops:t2:operator ,demo:t3:viewer").unwrap();
        assert_eq!(
            tokens,
            [
                ("demo".to_owned(), "t1".to_owned(), tms::Role::Member),
                ("ops".to_owned(), "t2".to_owned(), tms::Role::Operator),
                ("demo".to_owned(), "t3".to_owned(), tms::Role::Viewer),
            ]
        );
        for bad in ["demo", "demo:", "a/b:t", "demo:t:admin"] {
            assert!(parse_tokens(bad).is_err(), "{bad}");
        }
    }
}
