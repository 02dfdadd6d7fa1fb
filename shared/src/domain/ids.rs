//! Identifier newtypes that validate on construction.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::validation::FieldError;

/// A task identifier: a UUID v7, so identifiers sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(Uuid);

impl TaskId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The creation instant encoded in a v7 identifier, if it is one.
    pub fn timestamp_millis(&self) -> Option<u64> {
        let (secs, nanos) = self.0.get_timestamp()?.to_unix();
        Some(secs * 1000 + u64::from(nanos) / 1_000_000)
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for TaskId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A UUID v7 identifier newtype: time-ordered, parsed from and shown as a hyphenated UUID.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// An import identifier (one per imported object version).
    ImportId
);
uuid_id!(
    /// A schedule's identifier.
    ScheduleId
);
uuid_id!(
    /// An event trigger's identifier.
    TriggerId
);
uuid_id!(
    /// A webhook subscription's identifier.
    SubscriptionId
);

/// The owner of a task. Every read and write is scoped by it, and it names S3 prefixes, so it is
/// restricted to 1–64 characters of `[A-Za-z0-9._-]`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Tenant(String);

impl Tenant {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let valid = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw.as_bytes()[0].is_ascii_alphanumeric()
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::new(
                "/tenant",
                "must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Tenant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Tenant::parse(&raw).map_err(|e| serde::de::Error::custom(e.message))
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A correlation identifier: accepted from `X-Correlation-Id` when it is 1–128 characters of
/// `[A-Za-z0-9._:-]`, otherwise generated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct CorrelationId(String);

impl CorrelationId {
    pub const MAX_LEN: usize = 128;

    pub fn generate() -> Self {
        Self(Uuid::new_v4().to_string())
    }

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let valid = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::new(
                "/correlation_id",
                "must be 1-128 characters of letters, digits, '.', '_', ':' or '-'",
            ))
        }
    }

    /// Parses when valid, generates a fresh one otherwise (for inputs we cannot refuse, such
    /// as a queue message attribute).
    pub fn parse_or_generate(raw: Option<&str>) -> Self {
        raw.and_then(|r| Self::parse(r).ok())
            .unwrap_or_else(Self::generate)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for CorrelationId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        CorrelationId::parse(&raw).map_err(|e| serde::de::Error::custom(e.message))
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_v7_and_time_ordered() {
        let a = TaskId::new();
        let b = TaskId::new();
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert!(a < b);
        assert!(a.timestamp_millis().is_some());
    }

    #[test]
    fn tenant_rules() {
        for ok in ["demo", "acme-corp", "t_1", "A.b", "9", &"x".repeat(64)] {
            assert!(Tenant::parse(ok).is_ok(), "{ok} should be valid");
        }
        for bad in ["", "-x", ".x", "a/b", "a b", "ä", &"x".repeat(65), "a\0"] {
            let err = Tenant::parse(bad).unwrap_err();
            assert_eq!(err.pointer, "/tenant");
        }
    }

    #[test]
    fn correlation_id_rules() {
        assert!(CorrelationId::parse("req-1:abc.DEF_2").is_ok());
        assert!(CorrelationId::parse("").is_err());
        assert!(CorrelationId::parse("has space").is_err());
        assert!(CorrelationId::parse(&"a".repeat(129)).is_err());
        let generated = CorrelationId::parse_or_generate(Some("bad value"));
        assert!(CorrelationId::parse(generated.as_str()).is_ok());
        assert_eq!(
            CorrelationId::parse_or_generate(Some("keep-me")).as_str(),
            "keep-me"
        );
    }
}
