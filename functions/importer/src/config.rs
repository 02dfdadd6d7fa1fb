//! The importer's configuration.

use tms::config::{import_limits, submission_rules};
use tms::config::{ConfigError, DatabaseConfig, Env};
use tms::{ImportLimits, SubmissionRules};

#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    /// `TMS_BUCKET`: the data bucket holding `imports/` and `reports/`.
    pub bucket: String,
    /// `TMS_WORK_QUEUE_URL`.
    pub work_queue_url: String,
    /// `TMS_HIGH_WORK_QUEUE_URL`: where the work messages of `high` tasks go (unset: the work
    /// queue).
    pub high_work_queue_url: Option<String>,
    /// What rows are validated against, as in the API (`tms::config::submission_rules`).
    pub rules: SubmissionRules,
    /// `TMS_IMPORT_CHUNK_ROWS`: rows per COPY and INSERT (default 50 000).
    pub chunk_rows: usize,
    /// `TMS_IMPORT_MAX_*`: the bounds of one import (`tms::config::import_limits`).
    pub limits: ImportLimits,
    /// `TMS_IMPORT_ENQUEUE`: send work messages for the new tasks (default true; false leaves
    /// them to the relay).
    pub enqueue: bool,
    /// `TMS_EVENT_BUS`: where the import's lifecycle event is published.
    pub event_bus: Option<String>,
}

impl Config {
    /// # Errors
    /// The first missing or invalid variable, by name.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            database: DatabaseConfig::from_env(env)?,
            bucket: env.required("TMS_BUCKET")?,
            work_queue_url: env.required("TMS_WORK_QUEUE_URL")?,
            high_work_queue_url: tms::config::high_work_queue(env)?,
            event_bus: tms::config::event_bus(env)?,
            rules: submission_rules(env)?,
            chunk_rows: env.or("TMS_IMPORT_CHUNK_ROWS", 50_000usize)?.max(1),
            limits: import_limits(env)?,
            enqueue: env.flag("TMS_IMPORT_ENQUEUE", true)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_missing_variables() {
        let all = [
            ("TMS_DATABASE_URL", "postgres://tms_app@db/tms"),
            ("TMS_BUCKET", "data"),
            ("TMS_WORK_QUEUE_URL", "http://q"),
        ];
        let cfg = Config::from_env(&Env::from_pairs(all)).unwrap();
        assert_eq!((cfg.chunk_rows, cfg.enqueue), (50_000, true));
        assert_eq!(cfg.limits, ImportLimits::default());
        let tight = Env::from_pairs(all.into_iter().chain([
            ("TMS_IMPORT_MAX_ROWS", "10"),
            ("TMS_IMPORT_MAX_OBJECT_BYTES", "2048"),
        ]));
        let limits = Config::from_env(&tight).unwrap().limits;
        assert_eq!((limits.max_rows, limits.max_object_bytes), (10, 2048));
        let zero = Env::from_pairs(all.into_iter().chain([("TMS_IMPORT_MAX_BYTES", "0")]));
        assert!(matches!(
            Config::from_env(&zero).unwrap_err(),
            ConfigError::Invalid { name, .. } if name == "TMS_IMPORT_MAX_BYTES"
        ));
        for (name, _) in all {
            let env = Env::from_pairs(all.into_iter().filter(|(k, _)| *k != name));
            assert_eq!(
                Config::from_env(&env).unwrap_err(),
                ConfigError::Missing(name.into())
            );
        }
    }
}
