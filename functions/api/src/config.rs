//! The API's configuration.

use tms::config::{import_limits, submission_rules};
use tms::config::{ConfigError, DatabaseConfig, Env};
use tms::SubmissionRules;

#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    /// `TMS_WORK_QUEUE_URL`.
    pub work_queue_url: String,
    /// `TMS_HIGH_WORK_QUEUE_URL`: where the work messages of `high` tasks go (unset: the work
    /// queue).
    pub high_work_queue_url: Option<String>,
    /// `TMS_BUCKET`: the data bucket, where import files are uploaded.
    pub bucket: String,
    /// `TMS_TOKENS_PARAM`: the SSM SecureString holding the API token map; unset disables API
    /// tokens (JWT authorizer only).
    pub tokens_param: Option<String>,
    /// `TMS_CURSOR_KEY`: the key that signs pagination cursors (stable per deployment).
    pub cursor_key: String,
    /// `TMS_WEBHOOK_ALLOW`, `TMS_WEBHOOK_DENY_PORTS`: what a submission is validated against.
    pub rules: SubmissionRules,
    /// `TMS_IMPORT_MAX_OBJECT_BYTES`: the largest import file an upload URL is signed for
    /// (default 256 MiB, as the importer's limit).
    pub max_upload_bytes: u64,
    /// `TMS_API_PORT`: the local HTTP port when not running under Lambda (default 3000).
    pub port: u16,
    /// `TMS_EVENT_BUS`: where the lifecycle events of the tasks a request cancels go.
    pub event_bus: Option<String>,
    /// The console's OpenID Connect sign-in, when `TMS_OIDC_ISSUER` and `TMS_OIDC_CLIENT_ID`
    /// are both set.
    pub oidc: Option<OidcConfig>,
}

/// `TMS_OIDC_ISSUER`, `TMS_OIDC_CLIENT_ID`, `TMS_OIDC_CLIENT_SECRET_PARAM` (an SSM
/// `SecureString` or `/aws/reference/secretsmanager/...` name, for a confidential client) and
/// `TMS_OIDC_SCOPES` (default `openid email profile`).
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
    pub client_secret_param: Option<String>,
    pub scopes: String,
}

impl OidcConfig {
    fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let issuer = env
            .optional::<String>("TMS_OIDC_ISSUER")?
            .filter(|v| !v.is_empty());
        let client_id = env
            .optional::<String>("TMS_OIDC_CLIENT_ID")?
            .filter(|v| !v.is_empty());
        let (Some(issuer), Some(client_id)) = (issuer, client_id) else {
            return Ok(None);
        };
        Ok(Some(Self {
            issuer,
            client_id,
            client_secret_param: env
                .optional::<String>("TMS_OIDC_CLIENT_SECRET_PARAM")?
                .filter(|v| !v.is_empty()),
            scopes: env
                .optional::<String>("TMS_OIDC_SCOPES")?
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| crate::console::oidc::DEFAULT_SCOPES.to_owned()),
        }))
    }
}

impl Config {
    /// # Errors
    /// The first missing or invalid variable, by name.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            database: DatabaseConfig::from_env(env)?,
            work_queue_url: env.required("TMS_WORK_QUEUE_URL")?,
            high_work_queue_url: tms::config::high_work_queue(env)?,
            bucket: env.required("TMS_BUCKET")?,
            tokens_param: env.optional("TMS_TOKENS_PARAM")?,
            cursor_key: env.required("TMS_CURSOR_KEY")?,
            rules: submission_rules(env)?,
            max_upload_bytes: import_limits(env)?.max_object_bytes,
            port: env.or("TMS_API_PORT", 3000)?,
            event_bus: tms::config::event_bus(env)?,
            oidc: OidcConfig::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [(&str, &str); 5] = [
        ("TMS_BUCKET", "tms-data"),
        ("TMS_DATABASE_URL", "postgres://tms_app@db:5432/tms"),
        (
            "TMS_WORK_QUEUE_URL",
            "http://127.0.0.1:4566/000000000000/tms-work",
        ),
        ("TMS_TOKENS_PARAM", "/tms/api-tokens"),
        ("TMS_CURSOR_KEY", "k"),
    ];

    #[test]
    fn reads_every_variable_and_names_the_missing_ones() {
        let cfg = Config::from_env(&Env::from_pairs(ALL)).unwrap();
        assert_eq!(cfg.port, 3000);
        assert_eq!(cfg.rules, SubmissionRules::default());
        for name in [
            "TMS_DATABASE_URL",
            "TMS_WORK_QUEUE_URL",
            "TMS_BUCKET",
            "TMS_CURSOR_KEY",
        ] {
            let env = Env::from_pairs(ALL.into_iter().filter(|(k, _)| *k != name));
            assert_eq!(
                Config::from_env(&env).unwrap_err(),
                ConfigError::Missing(name.into())
            );
        }
        let bad = Env::from_pairs(ALL.into_iter().chain([("TMS_WEBHOOK_ALLOW", "everything")]));
        assert!(
            matches!(Config::from_env(&bad).unwrap_err(), ConfigError::Invalid { name, .. } if name == "TMS_WEBHOOK_ALLOW")
        );
    }

    #[test]
    fn high_tasks_have_their_own_queue_when_one_is_named() {
        let cfg = Config::from_env(&Env::from_pairs(ALL)).unwrap();
        assert_eq!(cfg.high_work_queue_url, None);
        let high = "http://127.0.0.1:4566/000000000000/tms-work-high";
        let env = Env::from_pairs(ALL.into_iter().chain([("TMS_HIGH_WORK_QUEUE_URL", high)]));
        assert_eq!(
            Config::from_env(&env)
                .unwrap()
                .high_work_queue_url
                .as_deref(),
            Some(high)
        );
    }
}
