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
    /// One delivery of a lifecycle event to a tenant's subscription: TMS creates these, never
    /// a client.
    Notification,
}

/// What a client is told when it submits a kind only TMS creates.
const CREATED_BY_TMS_ONLY: &str =
    "notification tasks are created by TMS only (one per delivery to \
     a subscription, see /v1/subscriptions); use one of: email, webhook, archive, noop";

impl TaskKind {
    /// Every kind a task may have.
    pub const ALL: [TaskKind; 5] = [
        Self::Email,
        Self::Webhook,
        Self::Archive,
        Self::Noop,
        Self::Notification,
    ];

    /// The kinds clients create tasks of (the API, imports, queue submissions, schedules and
    /// triggers).
    pub const SUBMITTABLE: [TaskKind; 4] = [Self::Email, Self::Webhook, Self::Archive, Self::Noop];

    /// Any kind, as stored or as a filter names it.
    ///
    /// # Errors
    /// A [`FieldError`] at `/kind` naming the kinds there are.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == raw)
            .ok_or_else(|| {
                FieldError::new(
                    "/kind",
                    "must be one of: email, webhook, archive, noop, notification",
                )
            })
    }

    /// A kind a client may create a task of.
    ///
    /// # Errors
    /// A [`FieldError`] at `/kind`: an unknown kind, or `notification`, which only TMS creates.
    pub fn parse_submittable(raw: &str) -> Result<Self, FieldError> {
        match Self::SUBMITTABLE.into_iter().find(|k| k.as_str() == raw) {
            Some(kind) => Ok(kind),
            None if raw == Self::Notification.as_str() => {
                Err(FieldError::new("/kind", CREATED_BY_TMS_ONLY))
            }
            None => Err(FieldError::new(
                "/kind",
                "must be one of: email, webhook, archive, noop",
            )),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Webhook => "webhook",
            Self::Archive => "archive",
            Self::Noop => "noop",
            Self::Notification => "notification",
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

    #[test]
    fn clients_may_not_submit_notification_tasks() {
        for kind in TaskKind::SUBMITTABLE {
            assert_eq!(TaskKind::parse_submittable(kind.as_str()).unwrap(), kind);
        }
        let refused = TaskKind::parse_submittable("notification").unwrap_err();
        assert_eq!(refused.pointer, "/kind");
        assert!(
            refused.message.contains("created by TMS only"),
            "{}",
            refused.message
        );
        assert_eq!(
            TaskKind::parse_submittable("fax").unwrap_err().message,
            "must be one of: email, webhook, archive, noop"
        );
    }
}
