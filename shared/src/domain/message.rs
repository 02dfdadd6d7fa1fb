//! The work message: a thin pointer to a task. The database, not the message, says what to do,
//! so duplicate, late and out-of-order messages are harmless.

use serde::{Deserialize, Serialize};

use super::ids::{CorrelationId, TaskId, Tenant};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkMessage {
    pub task_id: TaskId,
    pub tenant: Tenant,
    pub correlation_id: CorrelationId,
}

/// The message attribute that carries the correlation id beside the body.
pub const CORRELATION_ATTRIBUTE: &str = "correlation_id";

/// The message attribute that marks the message of a `high` task (the body stays a pointer).
pub const PRIORITY_ATTRIBUTE: &str = "priority";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_message_round_trips_as_the_documented_json() {
        let json = r#"{"task_id":"0190a8e2-6b5c-7cc1-8f00-000000000001","tenant":"demo","correlation_id":"c-1"}"#;
        let msg: WorkMessage = serde_json::from_str(json).unwrap();
        assert_eq!(msg.tenant.as_str(), "demo");
        assert_eq!(serde_json::to_string(&msg).unwrap(), json);
        assert!(serde_json::from_str::<WorkMessage>(
            r#"{"task_id":"x","tenant":"demo","correlation_id":"c"}"#
        )
        .is_err());
    }
}
