//! Typed configuration from `TMS_*` environment variables. A missing or invalid variable is an
//! error that names it; functions read their configuration once, in `main`.

use std::collections::HashMap;
use std::fmt::Display;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("missing environment variable {0}")]
    Missing(String),
    #[error("invalid environment variable {name}: {reason}")]
    Invalid { name: String, reason: String },
}

/// A source of variables: the process environment, or a fixed map in tests.
#[derive(Debug, Clone, Default)]
pub struct Env {
    fixed: Option<HashMap<String, String>>,
}

impl Env {
    pub fn process() -> Self {
        Self { fixed: None }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            fixed: Some(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            ),
        }
    }

    /// The raw value; an empty value counts as unset.
    pub fn raw(&self, name: &str) -> Option<String> {
        let value = match &self.fixed {
            Some(map) => map.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        value.filter(|v| !v.is_empty())
    }

    /// # Errors
    /// [`ConfigError::Missing`] or [`ConfigError::Invalid`], naming the variable.
    pub fn required<T>(&self, name: &str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.optional(name)?
            .ok_or_else(|| ConfigError::Missing(name.to_owned()))
    }

    /// # Errors
    /// [`ConfigError::Invalid`] when set but unparsable.
    pub fn optional<T>(&self, name: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.raw(name)
            .map(|raw| {
                raw.parse().map_err(|e: T::Err| ConfigError::Invalid {
                    name: name.to_owned(),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    /// # Errors
    /// [`ConfigError::Invalid`] when set but unparsable.
    pub fn or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.optional(name)?.unwrap_or(default))
    }

    /// A duration given in whole seconds.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when set but not a number of seconds.
    pub fn seconds(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        Ok(self
            .optional::<u64>(name)?
            .map_or(default, Duration::from_secs))
    }

    /// `true`/`false`/`1`/`0`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for any other value.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(name).as_deref() {
            None => Ok(default),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(ConfigError::Invalid {
                name: name.to_owned(),
                reason: format!("expected true or false, got {other:?}"),
            }),
        }
    }
}

/// How the client protects the connection, as libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    /// Encrypt without verifying the certificate.
    Require,
    /// Encrypt, verify the chain against the CA and the host name.
    #[default]
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "disable" => Ok(Self::Disable),
            "require" => Ok(Self::Require),
            "verify-full" => Ok(Self::VerifyFull),
            other => Err(format!(
                "unsupported sslmode {other:?}; expected disable, require or verify-full"
            )),
        }
    }
}

/// Where and how to reach PostgreSQL.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `postgres://user[:password]@host:port/db`; libpq's `sslmode` and `sslrootcert` query
    /// parameters are understood.
    pub url: String,
    pub ssl_mode: SslMode,
    pub ca_file: Option<PathBuf>,
    /// SSM parameter holding the password, when it is not in the URL.
    pub password_param: Option<String>,
    pub pool_size: usize,
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("ssl_mode", &self.ssl_mode)
            .field("ca_file", &self.ca_file)
            .field("password_param", &self.password_param)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// The URL with any password replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparsable url>".to_owned(),
    }
}

impl DatabaseConfig {
    /// Reads `TMS_DATABASE_URL` (required), `TMS_DATABASE_SSLMODE`, `TMS_DATABASE_CA_FILE`,
    /// `TMS_DATABASE_PASSWORD_PARAM`, `TMS_DATABASE_POOL_SIZE`, `TMS_DATABASE_CONNECT_TIMEOUT`.
    /// The variables win over the URL's own `sslmode`/`sslrootcert` parameters.
    ///
    /// # Errors
    /// The first missing or invalid variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let raw_url: String = env.required("TMS_DATABASE_URL")?;
        let invalid = |reason: String| ConfigError::Invalid {
            name: "TMS_DATABASE_URL".into(),
            reason,
        };
        let mut url = url::Url::parse(&raw_url)
            .map_err(|e| invalid(format!("not a postgres:// URL ({e})")))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(invalid(
                "the scheme must be postgres:// or postgresql://".into(),
            ));
        }
        let mut url_ssl_mode = None;
        let mut url_ca = None;
        let mut kept = Vec::new();
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "sslmode" => url_ssl_mode = Some(v.parse::<SslMode>().map_err(invalid)?),
                "sslrootcert" => url_ca = Some(PathBuf::from(v.as_ref())),
                _ => kept.push((k.into_owned(), v.into_owned())),
            }
        }
        url.set_query(None);
        if !kept.is_empty() {
            url.query_pairs_mut().extend_pairs(kept);
        }
        let pool_size = env.or("TMS_DATABASE_POOL_SIZE", 4usize)?;
        if pool_size == 0 {
            return Err(ConfigError::Invalid {
                name: "TMS_DATABASE_POOL_SIZE".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(Self {
            url: url.to_string(),
            ssl_mode: env
                .optional("TMS_DATABASE_SSLMODE")?
                .or(url_ssl_mode)
                .unwrap_or_default(),
            ca_file: env.optional("TMS_DATABASE_CA_FILE")?.or(url_ca),
            password_param: env.optional("TMS_DATABASE_PASSWORD_PARAM")?,
            pool_size,
            connect_timeout: env.seconds("TMS_DATABASE_CONNECT_TIMEOUT", Duration::from_secs(5))?,
        })
    }
}

/// `TMS_EVENT_BUS`: the deployment's event bus, where lifecycle events are published; unset
/// (or empty) leaves them recorded for a function that has one.
///
/// # Errors
/// Never in practice: any text names a bus.
pub fn event_bus(env: &Env) -> Result<Option<String>, ConfigError> {
    Ok(env
        .optional::<String>("TMS_EVENT_BUS")?
        .filter(|b| !b.is_empty()))
}

/// `TMS_HIGH_WORK_QUEUE_URL`: the work queue of `high` tasks (both stacks create it); unset,
/// they travel on the work queue with the others.
///
/// # Errors
/// Never in practice: any text names a queue.
pub fn high_work_queue(env: &Env) -> Result<Option<String>, ConfigError> {
    Ok(env
        .optional::<String>("TMS_HIGH_WORK_QUEUE_URL")?
        .filter(|u| !u.is_empty()))
}

/// The rules every submission is validated against, the same in the API, the importer and
/// the worker: `TMS_WEBHOOK_ALLOW` (which non-public webhook targets are allowed),
/// and `TMS_WEBHOOK_DENY_PORTS` (ports of non-public addresses no webhook may target).
///
/// # Errors
/// The first invalid variable.
pub fn submission_rules(env: &Env) -> Result<crate::SubmissionRules, ConfigError> {
    use crate::domain::webhook::{PortList, WebhookPolicy};
    let policy: WebhookPolicy = env.or("TMS_WEBHOOK_ALLOW", WebhookPolicy::default())?;
    let denied: PortList = env.or("TMS_WEBHOOK_DENY_PORTS", PortList::default())?;
    Ok(crate::SubmissionRules {
        webhook: policy.with_denied_ports(denied),
    })
}

/// `TMS_IMPORT_MAX_RECORD_BYTES`, `TMS_IMPORT_MAX_BYTES`, `TMS_IMPORT_MAX_ROWS`,
/// `TMS_IMPORT_MAX_ERRORS` and `TMS_IMPORT_MAX_OBJECT_BYTES`, each at least 1; the defaults are
/// [`crate::ImportLimits::default`]'s.
///
/// # Errors
/// The first invalid variable.
pub fn import_limits(env: &Env) -> Result<crate::ImportLimits, ConfigError> {
    let d = crate::ImportLimits::default();
    let positive = |name: &str, default: u64| -> Result<u64, ConfigError> {
        match env.or(name, default)? {
            0 => Err(ConfigError::Invalid {
                name: name.to_owned(),
                reason: "must be at least 1".into(),
            }),
            n => Ok(n),
        }
    };
    Ok(crate::ImportLimits {
        max_record_bytes: usize::try_from(positive(
            "TMS_IMPORT_MAX_RECORD_BYTES",
            d.max_record_bytes as u64,
        )?)
        .unwrap_or(usize::MAX),
        max_bytes: positive("TMS_IMPORT_MAX_BYTES", d.max_bytes)?,
        max_rows: positive("TMS_IMPORT_MAX_ROWS", d.max_rows)?,
        max_errors: positive("TMS_IMPORT_MAX_ERRORS", d.max_errors)?,
        max_object_bytes: positive("TMS_IMPORT_MAX_OBJECT_BYTES", d.max_object_bytes)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submission_rules_come_from_two_variables() {
        let rules = submission_rules(&Env::from_pairs([
            ("TMS_WEBHOOK_ALLOW", "http,loopback"),
            ("TMS_WEBHOOK_DENY_PORTS", "4566,3000"),
        ]))
        .unwrap();
        assert!(rules.webhook.allow_loopback);
        assert_eq!(rules.webhook.denied_ports.as_slice(), [4566, 3000]);
        assert_eq!(
            submission_rules(&Env::from_pairs([])).unwrap(),
            crate::SubmissionRules::default()
        );
        for (name, value) in [
            ("TMS_WEBHOOK_ALLOW", "everything"),
            ("TMS_WEBHOOK_DENY_PORTS", "http"),
        ] {
            match submission_rules(&Env::from_pairs([(name, value)])).unwrap_err() {
                ConfigError::Invalid { name: got, .. } => assert_eq!(got, name),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn missing_and_invalid_variables_are_named() {
        let env = Env::from_pairs([("TMS_X", "abc"), ("TMS_EMPTY", "")]);
        assert_eq!(
            env.required::<u32>("TMS_NOPE").unwrap_err().to_string(),
            "missing environment variable TMS_NOPE"
        );
        assert_eq!(
            env.required::<u32>("TMS_EMPTY").unwrap_err(),
            ConfigError::Missing("TMS_EMPTY".into())
        );
        let err = env.required::<u32>("TMS_X").unwrap_err().to_string();
        assert!(
            err.starts_with("invalid environment variable TMS_X: "),
            "{err}"
        );
        assert!(env.flag("TMS_X", false).is_err());
        assert_eq!(env.or("TMS_NOPE", 7u32).unwrap(), 7);
    }

    #[test]
    fn database_url_carries_libpq_tls_parameters() {
        let env = Env::from_pairs([(
            "TMS_DATABASE_URL",
            "postgres://app:s3cret@db.example:5432/tms?sslmode=require&sslrootcert=/ca.pem&application_name=x",
        )]);
        let cfg = DatabaseConfig::from_env(&env).unwrap();
        assert_eq!(cfg.ssl_mode, SslMode::Require);
        assert_eq!(cfg.ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(
            cfg.url,
            "postgres://app:s3cret@db.example:5432/tms?application_name=x"
        );
        assert!(!format!("{cfg:?}").contains("s3cret"));
    }

    #[test]
    fn database_variables_override_the_url_and_are_checked() {
        let env = Env::from_pairs([
            ("TMS_DATABASE_URL", "postgres://app@h/tms?sslmode=disable"),
            ("TMS_DATABASE_SSLMODE", "verify-full"),
        ]);
        assert_eq!(
            DatabaseConfig::from_env(&env).unwrap().ssl_mode,
            SslMode::VerifyFull
        );
        let missing = DatabaseConfig::from_env(&Env::from_pairs([])).unwrap_err();
        assert_eq!(missing, ConfigError::Missing("TMS_DATABASE_URL".into()));
        for (name, value) in [
            ("TMS_DATABASE_URL", "mysql://h/db"),
            ("TMS_DATABASE_URL", "postgres://h/db?sslmode=prefer"),
            ("TMS_DATABASE_SSLMODE", "verify-ca"),
            ("TMS_DATABASE_POOL_SIZE", "0"),
        ] {
            let mut pairs = vec![("TMS_DATABASE_URL", "postgres://h/db")];
            pairs.retain(|(k, _)| *k != name);
            pairs.push((name, value));
            match DatabaseConfig::from_env(&Env::from_pairs(pairs)).unwrap_err() {
                ConfigError::Invalid { name: got, .. } => assert_eq!(got, name),
                other => panic!("{other:?}"),
            }
        }
    }
}
