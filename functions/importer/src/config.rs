//! The importer's configuration.

use tms::config::{ConfigError, DatabaseConfig, Env};
use tms::domain::webhook::WebhookPolicy;

#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    /// `TMS_BUCKET`: the data bucket holding `imports/` and `reports/`.
    pub bucket: String,
    /// `TMS_WORK_QUEUE_URL`.
    pub work_queue_url: String,
    /// `TMS_WEBHOOK_ALLOW`: validation of webhook rows, as in the API.
    pub webhook_policy: WebhookPolicy,
    /// `TMS_IMPORT_CHUNK_ROWS`: rows per COPY and INSERT (default 50 000).
    pub chunk_rows: usize,
    /// `TMS_IMPORT_ENQUEUE`: send work messages for the new tasks (default true; false leaves
    /// them to the relay).
    pub enqueue: bool,
}

impl Config {
    /// # Errors
    /// The first missing or invalid variable, by name.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            database: DatabaseConfig::from_env(env)?,
            bucket: env.required("TMS_BUCKET")?,
            work_queue_url: env.required("TMS_WORK_QUEUE_URL")?,
            webhook_policy: env.or("TMS_WEBHOOK_ALLOW", WebhookPolicy::default())?,
            chunk_rows: env.or("TMS_IMPORT_CHUNK_ROWS", 50_000usize)?.max(1),
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
        for (name, _) in all {
            let env = Env::from_pairs(all.into_iter().filter(|(k, _)| *k != name));
            assert_eq!(
                Config::from_env(&env).unwrap_err(),
                ConfigError::Missing(name.into())
            );
        }
    }
}
