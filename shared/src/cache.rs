//! [`CachedSecret`]: a secret read through the [`Secrets`] port, parsed once and kept for a
//! while, so a function reads a map (API tokens, queue producers) once per few minutes, not
//! once per request or batch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::RwLock;

use crate::ports::{Secrets, SecretsError};

/// How long a parsed secret is kept before it is read again.
pub const SECRET_TTL: Duration = Duration::from_secs(300);

/// Why a cached secret has no value to give.
#[derive(Debug, thiserror::Error)]
pub enum CachedSecretError {
    /// The secret is missing or the service failed: retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The secret was read but does not parse (the message never contains the value).
    #[error("parameter {name} is invalid: {reason}")]
    Invalid { name: String, reason: String },
}

type Parse<T> = fn(&str) -> Result<T, String>;

/// A secret named `name`, parsed by `parse` and cached for [`SECRET_TTL`]. Without a name
/// there is nothing to read, and [`CachedSecret::get`] answers `None`.
pub struct CachedSecret<T> {
    secrets: Arc<dyn Secrets>,
    name: Option<String>,
    parse: Parse<T>,
    ttl: Duration,
    cache: RwLock<Option<(Instant, Arc<T>)>>,
}

impl<T: Send + Sync> CachedSecret<T> {
    pub fn new(secrets: Arc<dyn Secrets>, name: Option<String>, parse: Parse<T>) -> Self {
        Self {
            secrets,
            name,
            parse,
            ttl: SECRET_TTL,
            cache: RwLock::new(None),
        }
    }

    /// The same secret, read again once its cached value is older than `ttl`.
    #[must_use]
    pub fn with_ttl(self, ttl: Duration) -> Self {
        Self { ttl, ..self }
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn fresh(&self, cached: &Option<(Instant, Arc<T>)>) -> Option<Arc<T>> {
        cached
            .as_ref()
            .filter(|(loaded, _)| loaded.elapsed() < self.ttl)
            .map(|(_, value)| value.clone())
    }

    /// The parsed value, read again once the cached one is older than the TTL (one reader at
    /// a time; the others wait for its result).
    ///
    /// # Errors
    /// [`CachedSecretError`] when the secret cannot be read or does not parse.
    pub async fn get(&self) -> Result<Option<Arc<T>>, CachedSecretError> {
        let Some(name) = &self.name else {
            return Ok(None);
        };
        if let Some(value) = self.fresh(&*self.cache.read().await) {
            return Ok(Some(value));
        }
        let mut cache = self.cache.write().await;
        if let Some(value) = self.fresh(&cache) {
            return Ok(Some(value));
        }
        let raw = self.secrets.get(name).await.map_err(|e| match e {
            SecretsError::NotFound(_) => {
                CachedSecretError::Unavailable(format!("parameter {name} not found"))
            }
            other => CachedSecretError::Unavailable(other.to_string()),
        })?;
        let value =
            Arc::new(
                (self.parse)(raw.expose()).map_err(|reason| CachedSecretError::Invalid {
                    name: name.clone(),
                    reason,
                })?,
            );
        *cache = Some((Instant::now(), value.clone()));
        Ok(Some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Secret;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(AtomicUsize, &'static str);

    #[async_trait]
    impl Secrets for Counting {
        async fn get(&self, name: &str) -> Result<Secret, SecretsError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            match self.1 {
                "missing" => Err(SecretsError::NotFound(name.into())),
                value => Ok(Secret::new(value)),
            }
        }
    }

    fn number(raw: &str) -> Result<u32, String> {
        raw.parse().map_err(|_| "not a number".to_owned())
    }

    #[tokio::test]
    async fn a_secret_is_read_once_per_ttl_and_never_echoed() {
        let secrets = Arc::new(Counting(AtomicUsize::new(0), "42"));
        let cached = CachedSecret::new(secrets.clone(), Some("/p".into()), number);
        assert_eq!(*cached.get().await.unwrap().unwrap(), 42);
        assert_eq!(*cached.get().await.unwrap().unwrap(), 42);
        assert_eq!(secrets.0.load(Ordering::SeqCst), 1);

        let bad = CachedSecret::new(
            Arc::new(Counting(AtomicUsize::new(0), "s3cret")),
            Some("/p".into()),
            number,
        );
        let err = bad.get().await.unwrap_err().to_string();
        assert!(err.contains("/p") && !err.contains("s3cret"), "{err}");
        let missing = CachedSecret::new(
            Arc::new(Counting(AtomicUsize::new(0), "missing")),
            Some("/p".into()),
            number,
        );
        assert!(matches!(
            missing.get().await,
            Err(CachedSecretError::Unavailable(_))
        ));
        let unnamed = CachedSecret::new(secrets.clone(), None, number);
        assert!(unnamed.get().await.unwrap().is_none());
        assert_eq!(secrets.0.load(Ordering::SeqCst), 1);
    }
}
