//! The worker's configuration, read once from the environment.

use std::time::Duration;

use tms::config::{submission_rules, ConfigError, DatabaseConfig, Env};
use tms::domain::email::EmailIdentity;
use tms::domain::webhook::WebhookPolicy;
use tms::{Backoff, SubmissionRules};

/// Time kept back from the invocation's deadline to record the outcomes and answer.
pub const RECORD_RESERVE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    /// `TMS_WORK_QUEUE_URL`: where retry messages go.
    pub work_queue_url: String,
    /// `TMS_HIGH_WORK_QUEUE_URL`: where the retry messages of `high` tasks go (unset: the work
    /// queue).
    pub high_work_queue_url: Option<String>,
    /// `TMS_WORK_DLQ_URL`: where malformed messages go.
    pub work_dlq_url: String,
    /// `TMS_BUCKET`: the data bucket the `email` and `archive` executors write to.
    pub bucket: String,
    /// `TMS_PRODUCERS_PARAM`: the SSM SecureString mapping queue producers (SQS `SenderId`) to
    /// the tenants they may submit tasks for; unset refuses every queue submission.
    pub producers_param: Option<String>,
    /// `TMS_EVENT_BUS`: the bus lifecycle events are published to; unset leaves them to a relay
    /// that has one.
    pub event_bus: Option<String>,
    pub webhook: WebhookSettings,
    pub email: EmailSettings,
    pub batch: Settings,
}

/// Which `email` tasks are delivered, and from where.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EmailSettings {
    /// `TMS_EMAIL_IDENTITY`: the verified SES identity, an address or a domain, that emails are
    /// sent from; unset, no email is delivered.
    pub identity: Option<EmailIdentity>,
    /// `TMS_EMAIL_DELIVER` (default false): whether an email whose payload does not say
    /// `deliver` is delivered.
    pub deliver_by_default: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookSettings {
    /// `TMS_WEBHOOK_ALLOW` and `TMS_WEBHOOK_DENY_PORTS`: which otherwise refused targets are
    /// allowed, and which ports of theirs never.
    pub policy: WebhookPolicy,
    /// `TMS_WEBHOOK_TIMEOUT_SECONDS` (default 10).
    pub timeout: Duration,
}

/// How a batch is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `TMS_WORKER_CONCURRENCY` (default 10): tasks executed at once.
    pub concurrency: usize,
    /// `TMS_LEASE_SECONDS` (default 120): how long a claim lasts. Longer than the function's
    /// timeout, so a task is claimed again only once its worker is surely gone.
    pub lease: Duration,
    /// `TMS_BACKOFF_BASE_SECONDS` (default 2), `TMS_BACKOFF_CAP_SECONDS` (default 3600).
    pub backoff: Backoff,
    /// `TMS_WORKER_STOP_MARGIN_SECONDS` (default 5): no task starts when less time than this
    /// is left in the invocation.
    pub stop_margin: Duration,
    /// Submissions on the queue are validated with the rules of the API, and the webhook
    /// policy the executor applies.
    pub rules: SubmissionRules,
    /// The time budget of an invocation whose context carries no deadline (the function's
    /// timeout).
    pub default_budget: Duration,
    /// `TMS_FAIR_SHARE` (default 5, 0 turns it off): how many due tasks of other tenants, whose
    /// messages wait behind a backlog, a batch of normal-priority messages runs besides its own.
    pub fair_share: u32,
    /// `TMS_FAIR_SHARE_AFTER_SECONDS` (default 2): how long a task must have been due before
    /// another tenant's batch runs it.
    pub fair_share_after: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            concurrency: 10,
            lease: Duration::from_secs(120),
            backoff: Backoff::default(),
            stop_margin: Duration::from_secs(5),
            rules: SubmissionRules::default(),
            default_budget: Duration::from_secs(60),
            fair_share: 5,
            fair_share_after: Duration::from_secs(2),
        }
    }
}

fn invalid(name: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_owned(),
        reason: reason.to_owned(),
    }
}

impl Config {
    /// # Errors
    /// The first missing or invalid variable, by name.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Settings::default();
        let rules = submission_rules(env)?;
        let policy = rules.webhook;
        let concurrency = env.or("TMS_WORKER_CONCURRENCY", defaults.concurrency)?;
        if concurrency == 0 {
            return Err(invalid("TMS_WORKER_CONCURRENCY", "must be at least 1"));
        }
        let lease = env.seconds("TMS_LEASE_SECONDS", defaults.lease)?;
        if lease.is_zero() {
            return Err(invalid("TMS_LEASE_SECONDS", "must be at least 1"));
        }
        let backoff = Backoff {
            base: env.seconds("TMS_BACKOFF_BASE_SECONDS", defaults.backoff.base)?,
            cap: env.seconds("TMS_BACKOFF_CAP_SECONDS", defaults.backoff.cap)?,
        };
        if backoff.base.is_zero() {
            return Err(invalid("TMS_BACKOFF_BASE_SECONDS", "must be at least 1"));
        }
        if backoff.cap < backoff.base {
            return Err(invalid(
                "TMS_BACKOFF_CAP_SECONDS",
                "must not be below TMS_BACKOFF_BASE_SECONDS",
            ));
        }
        let stop_margin = env.seconds("TMS_WORKER_STOP_MARGIN_SECONDS", defaults.stop_margin)?;
        if stop_margin <= RECORD_RESERVE {
            return Err(invalid(
                "TMS_WORKER_STOP_MARGIN_SECONDS",
                "must be more than the 2 seconds kept to record outcomes",
            ));
        }
        let fair_share = env.or("TMS_FAIR_SHARE", defaults.fair_share)?;
        if fair_share > 100 {
            return Err(invalid("TMS_FAIR_SHARE", "must be at most 100"));
        }
        let fair_share_after =
            env.seconds("TMS_FAIR_SHARE_AFTER_SECONDS", defaults.fair_share_after)?;
        let timeout = env.seconds("TMS_WEBHOOK_TIMEOUT_SECONDS", Duration::from_secs(10))?;
        let email = EmailSettings {
            identity: env.optional("TMS_EMAIL_IDENTITY")?,
            deliver_by_default: env.flag("TMS_EMAIL_DELIVER", false)?,
        };
        if email.deliver_by_default && email.identity.is_none() {
            return Err(invalid(
                "TMS_EMAIL_DELIVER",
                "needs TMS_EMAIL_IDENTITY, the identity emails are sent from",
            ));
        }
        if timeout.is_zero() {
            return Err(invalid("TMS_WEBHOOK_TIMEOUT_SECONDS", "must be at least 1"));
        }
        Ok(Self {
            database: DatabaseConfig::from_env(env)?,
            work_queue_url: env.required("TMS_WORK_QUEUE_URL")?,
            high_work_queue_url: tms::config::high_work_queue(env)?,
            work_dlq_url: env.required("TMS_WORK_DLQ_URL")?,
            bucket: env.required("TMS_BUCKET")?,
            producers_param: env.optional("TMS_PRODUCERS_PARAM")?,
            event_bus: tms::config::event_bus(env)?,
            webhook: WebhookSettings { policy, timeout },
            email,
            batch: Settings {
                concurrency,
                lease,
                backoff,
                stop_margin,
                rules,
                default_budget: defaults.default_budget,
                fair_share,
                fair_share_after,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUIRED: [(&str, &str); 4] = [
        ("TMS_DATABASE_URL", "postgres://tms_app@db.example:5432/tms"),
        (
            "TMS_WORK_QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/1/tms-work",
        ),
        (
            "TMS_WORK_DLQ_URL",
            "https://sqs.eu-west-1.amazonaws.com/1/tms-work-dlq",
        ),
        ("TMS_BUCKET", "tms-data"),
    ];

    #[test]
    fn defaults_apply_when_only_the_required_variables_are_set() {
        let cfg = Config::from_env(&Env::from_pairs(REQUIRED)).unwrap();
        assert_eq!(cfg.batch, Settings::default());
        assert_eq!(cfg.webhook.timeout, Duration::from_secs(10));
        assert_eq!(cfg.webhook.policy, WebhookPolicy::default());
        assert_eq!(cfg.bucket, "tms-data");
        assert_eq!(cfg.email, EmailSettings::default(), "no email is delivered");
    }

    #[test]
    fn the_email_identity_and_the_delivery_default_are_read() {
        let env = Env::from_pairs(REQUIRED.into_iter().chain([
            ("TMS_EMAIL_IDENTITY", "Example.COM"),
            ("TMS_EMAIL_DELIVER", "true"),
        ]));
        let cfg = Config::from_env(&env).unwrap();
        assert_eq!(
            cfg.email.identity,
            Some(EmailIdentity::Domain("example.com".into()))
        );
        assert!(cfg.email.deliver_by_default);
        let env = Env::from_pairs(REQUIRED.into_iter().chain([
            ("TMS_EMAIL_IDENTITY", "tms@example.com"),
            ("TMS_EMAIL_DELIVER", ""),
        ]));
        let cfg = Config::from_env(&env).unwrap();
        assert_eq!(cfg.email.identity.unwrap().as_str(), "tms@example.com");
        assert!(!cfg.email.deliver_by_default, "empty is the default");
    }

    #[test]
    fn tunables_are_read() {
        let env = Env::from_pairs(REQUIRED.into_iter().chain([
            ("TMS_WEBHOOK_ALLOW", "http,loopback"),
            ("TMS_WORKER_CONCURRENCY", "3"),
            ("TMS_LEASE_SECONDS", "90"),
            ("TMS_BACKOFF_BASE_SECONDS", "1"),
            ("TMS_BACKOFF_CAP_SECONDS", "60"),
            ("TMS_WEBHOOK_TIMEOUT_SECONDS", "4"),
            ("TMS_WORKER_STOP_MARGIN_SECONDS", "8"),
            ("TMS_FAIR_SHARE", "0"),
            ("TMS_FAIR_SHARE_AFTER_SECONDS", "30"),
            (
                "TMS_HIGH_WORK_QUEUE_URL",
                "https://sqs.eu-west-1.amazonaws.com/1/tms-work-high",
            ),
        ]));
        let cfg = Config::from_env(&env).unwrap();
        assert!(cfg.webhook.policy.allow_http && cfg.webhook.policy.allow_loopback);
        assert_eq!(cfg.batch.rules.webhook, cfg.webhook.policy);
        assert_eq!(cfg.batch.concurrency, 3);
        assert_eq!(cfg.batch.lease, Duration::from_secs(90));
        assert_eq!(cfg.batch.backoff.cap, Duration::from_secs(60));
        assert_eq!(cfg.batch.stop_margin, Duration::from_secs(8));
        assert_eq!(cfg.webhook.timeout, Duration::from_secs(4));
        assert_eq!(cfg.batch.fair_share, 0);
        assert_eq!(cfg.batch.fair_share_after, Duration::from_secs(30));
        assert_eq!(
            cfg.high_work_queue_url.as_deref(),
            Some("https://sqs.eu-west-1.amazonaws.com/1/tms-work-high")
        );
    }

    #[test]
    fn missing_and_invalid_variables_are_named() {
        for (name, _) in REQUIRED {
            let env = Env::from_pairs(REQUIRED.into_iter().filter(|(k, _)| *k != name));
            assert_eq!(
                Config::from_env(&env).unwrap_err(),
                ConfigError::Missing(name.to_owned())
            );
        }
        for (name, value) in [
            ("TMS_WEBHOOK_ALLOW", "everything"),
            ("TMS_WORKER_CONCURRENCY", "0"),
            ("TMS_WORKER_CONCURRENCY", "ten"),
            ("TMS_LEASE_SECONDS", "0"),
            ("TMS_BACKOFF_BASE_SECONDS", "0"),
            ("TMS_BACKOFF_CAP_SECONDS", "1"),
            ("TMS_WEBHOOK_TIMEOUT_SECONDS", "-1"),
            ("TMS_WORKER_STOP_MARGIN_SECONDS", "2"),
            ("TMS_FAIR_SHARE", "101"),
            ("TMS_FAIR_SHARE", "-1"),
            ("TMS_EMAIL_IDENTITY", "not an identity"),
            ("TMS_EMAIL_DELIVER", "yes"),
            // Delivering by default needs an identity to send from.
            ("TMS_EMAIL_DELIVER", "true"),
        ] {
            let env = Env::from_pairs(REQUIRED.into_iter().chain([(name, value)]));
            match Config::from_env(&env).unwrap_err() {
                ConfigError::Invalid { name: got, .. } => assert_eq!(got, name, "{value}"),
                other => panic!("{name}={value}: {other:?}"),
            }
        }
    }
}
