//! The scheduler's configuration, read once from the environment.

use std::time::Duration;

use tms::config::{ConfigError, DatabaseConfig, Env};
use tms::ports::RelayRules;
use tms::Backoff;

#[derive(Debug, Clone)]
pub struct Config {
    /// One connection is enough (as deployed): the job's lock then shares it with the job.
    pub database: DatabaseConfig,
    /// `TMS_WORK_QUEUE_URL`: where the relay and the reaper send work messages.
    pub work_queue_url: String,
    /// `TMS_HIGH_WORK_QUEUE_URL`: where the work messages of `high` tasks go (unset: the work
    /// queue).
    pub high_work_queue_url: Option<String>,
    /// `TMS_EVENT_BUS`: where the reaper's lifecycle events, and those no other function could
    /// publish, go.
    pub event_bus: Option<String>,
    pub jobs: Settings,
}

/// How the jobs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub relay: RelayRules,
    /// Messages the relay marks and sends at a time (an SQS batch).
    pub relay_batch: u32,
    /// Expired leases the reaper settles at a time.
    pub reap_batch: u32,
    /// `TMS_IMPORT_STALE_AFTER_SECONDS` (default 960: the importer's 900 s timeout and a
    /// minute): an import `running` longer than this whose importer is gone is marked failed.
    pub import_stale_after: Duration,
    /// `TMS_RETENTION_DAYS` (default 30): finished tasks older than this are deleted.
    pub retention: Duration,
    /// `TMS_RETENTION_CHUNK` (default 1000): tasks deleted per statement.
    pub retention_chunk: u32,
    /// Due schedules the `schedules` job evaluates per batch.
    pub schedule_batch: u32,
    /// The most tasks one batch of the `schedules` job creates (catch-up fires add up); a batch
    /// that would create more leaves its last schedules to the next batch.
    pub schedule_fires: u32,
    /// Rounds (batches or chunks) a job runs at most per invocation; the next run goes on.
    pub max_rounds: u32,
    /// The reaper's retry delays: `TMS_BACKOFF_BASE_SECONDS`, `TMS_BACKOFF_CAP_SECONDS`.
    pub backoff: Backoff,
    /// No new round starts when less time than this is left in the invocation.
    pub stop_margin: Duration,
    /// The budget of an invocation whose context carries no deadline (the function's timeout).
    pub default_budget: Duration,
}

const DAY: Duration = Duration::from_secs(86_400);

impl Default for Settings {
    fn default() -> Self {
        Self {
            relay: RelayRules::default(),
            relay_batch: 10,
            reap_batch: 100,
            import_stale_after: Duration::from_secs(960),
            retention: 30 * DAY,
            retention_chunk: 1000,
            schedule_batch: 500,
            schedule_fires: 2000,
            max_rounds: 1000,
            backoff: Backoff::default(),
            stop_margin: Duration::from_secs(10),
            default_budget: Duration::from_secs(120),
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
        let database = DatabaseConfig::from_env(env)?;
        let days: u32 = env.or("TMS_RETENTION_DAYS", 30)?;
        if days == 0 {
            return Err(invalid("TMS_RETENTION_DAYS", "must be at least 1"));
        }
        let retention_chunk: u32 = env.or("TMS_RETENTION_CHUNK", defaults.retention_chunk)?;
        if retention_chunk == 0 {
            return Err(invalid("TMS_RETENTION_CHUNK", "must be at least 1"));
        }
        let backoff = Backoff {
            base: env.seconds("TMS_BACKOFF_BASE_SECONDS", defaults.backoff.base)?,
            cap: env.seconds("TMS_BACKOFF_CAP_SECONDS", defaults.backoff.cap)?,
        };
        if backoff.cap < backoff.base {
            return Err(invalid(
                "TMS_BACKOFF_CAP_SECONDS",
                "must not be below TMS_BACKOFF_BASE_SECONDS",
            ));
        }
        let import_stale_after = env.seconds(
            "TMS_IMPORT_STALE_AFTER_SECONDS",
            defaults.import_stale_after,
        )?;
        if import_stale_after.is_zero() {
            return Err(invalid(
                "TMS_IMPORT_STALE_AFTER_SECONDS",
                "must be at least 1",
            ));
        }
        Ok(Self {
            database,
            work_queue_url: env.required("TMS_WORK_QUEUE_URL")?,
            high_work_queue_url: tms::config::high_work_queue(env)?,
            event_bus: tms::config::event_bus(env)?,
            jobs: Settings {
                retention: DAY * days,
                import_stale_after,
                retention_chunk,
                backoff,
                ..defaults
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUIRED: [(&str, &str); 2] = [
        ("TMS_DATABASE_URL", "postgres://tms_app@db.example:5432/tms"),
        (
            "TMS_WORK_QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/1/tms-work",
        ),
    ];

    #[test]
    fn defaults_and_retention_days() {
        let cfg = Config::from_env(&Env::from_pairs(REQUIRED)).unwrap();
        assert_eq!(cfg.jobs, Settings::default());
        assert_eq!(cfg.jobs.retention, Duration::from_secs(30 * 86_400));
        let env = Env::from_pairs(
            REQUIRED
                .into_iter()
                .chain([("TMS_RETENTION_DAYS", "7"), ("TMS_RETENTION_CHUNK", "50")]),
        );
        let cfg = Config::from_env(&env).unwrap();
        assert_eq!(cfg.jobs.retention, Duration::from_secs(7 * 86_400));
        assert_eq!(cfg.jobs.retention_chunk, 50);
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
            ("TMS_RETENTION_DAYS", "0"),
            ("TMS_RETENTION_DAYS", "a month"),
            ("TMS_RETENTION_CHUNK", "0"),
            ("TMS_DATABASE_POOL_SIZE", "0"),
            ("TMS_BACKOFF_CAP_SECONDS", "1"),
        ] {
            let env = Env::from_pairs(REQUIRED.into_iter().chain([(name, value)]));
            match Config::from_env(&env).unwrap_err() {
                ConfigError::Invalid { name: got, .. } => assert_eq!(got, name, "{value}"),
                other => panic!("{name}={value}: {other:?}"),
            }
        }
    }
}
