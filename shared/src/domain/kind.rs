//! The built-in task kinds. Each names the executor that runs it.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::validation::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Email,
    Webhook,
    Archive,
    Noop,
}

impl TaskKind {
    pub const ALL: [TaskKind; 4] = [Self::Email, Self::Webhook, Self::Archive, Self::Noop];

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == raw)
            .ok_or_else(|| {
                FieldError::new("/kind", "must be one of: email, webhook, archive, noop")
            })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Webhook => "webhook",
            Self::Archive => "archive",
            Self::Noop => "noop",
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_and_rejects_others() {
        for kind in TaskKind::ALL {
            assert_eq!(TaskKind::parse(kind.as_str()).unwrap(), kind);
        }
        assert_eq!(TaskKind::parse("Email").unwrap_err().pointer, "/kind");
        assert!(TaskKind::parse("").is_err());
    }
}
