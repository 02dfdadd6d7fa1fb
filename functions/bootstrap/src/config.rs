//! The bootstrapper's configuration.

use tms::adapters::postgres::bootstrap::Roles;
use tms::config::{ConfigError, DatabaseConfig, Env};

#[derive(Debug, Clone)]
pub struct Config {
    /// The admin connection (`TMS_DATABASE_URL` without a password, TLS settings).
    pub database: DatabaseConfig,
    /// `TMS_ADMIN_SECRET_PARAM`: the admin's password, or JSON `{"username","password"}` such as
    /// the RDS-managed master secret read through `/aws/reference/secretsmanager/<name>`.
    pub admin_secret_param: String,
    /// `TMS_MIGRATOR_PASSWORD_PARAM`, `TMS_APP_PASSWORD_PARAM`, `TMS_DEV_PASSWORD_PARAM`.
    pub migrator_password_param: String,
    pub app_password_param: String,
    pub dev_password_param: String,
    /// `TMS_ROLE_PREFIX` (default `tms`).
    pub roles: Roles,
}

impl Config {
    /// # Errors
    /// The first missing or invalid variable, by name.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let prefix: String = env.or("TMS_ROLE_PREFIX", "tms".to_owned())?;
        let roles = Roles::with_prefix(&prefix).map_err(|reason| ConfigError::Invalid {
            name: "TMS_ROLE_PREFIX".into(),
            reason,
        })?;
        Ok(Self {
            database: DatabaseConfig::from_env(env)?,
            admin_secret_param: env.required("TMS_ADMIN_SECRET_PARAM")?,
            migrator_password_param: env.required("TMS_MIGRATOR_PASSWORD_PARAM")?,
            app_password_param: env.required("TMS_APP_PASSWORD_PARAM")?,
            dev_password_param: env.required("TMS_DEV_PASSWORD_PARAM")?,
            roles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [(&str, &str); 5] = [
        ("TMS_DATABASE_URL", "postgres://admin@db.example:5432/tms"),
        (
            "TMS_ADMIN_SECRET_PARAM",
            "/aws/reference/secretsmanager/rds-master",
        ),
        ("TMS_MIGRATOR_PASSWORD_PARAM", "/tms/migrator"),
        ("TMS_APP_PASSWORD_PARAM", "/tms/app"),
        ("TMS_DEV_PASSWORD_PARAM", "/tms/dev"),
    ];

    #[test]
    fn reads_every_variable() {
        let cfg = Config::from_env(&Env::from_pairs(ALL)).unwrap();
        assert_eq!(cfg.roles, Roles::default());
        assert_eq!(cfg.app_password_param, "/tms/app");
    }

    #[test]
    fn each_missing_variable_is_named() {
        for (name, _) in ALL {
            let env = Env::from_pairs(ALL.into_iter().filter(|(k, _)| *k != name));
            assert_eq!(
                Config::from_env(&env).unwrap_err(),
                ConfigError::Missing(name.to_owned())
            );
        }
        let bad = Env::from_pairs(ALL.into_iter().chain([("TMS_ROLE_PREFIX", "Bad-Prefix")]));
        assert!(matches!(
            Config::from_env(&bad).unwrap_err(),
            ConfigError::Invalid { name, .. } if name == "TMS_ROLE_PREFIX"
        ));
    }
}
