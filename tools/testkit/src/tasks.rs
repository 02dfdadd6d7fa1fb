//! Building valid tasks for tests.

use serde_json::{json, Value};
use tms::{CorrelationId, NewTask, Priority, Source, Submission, SubmissionRules, Tenant};

pub fn tenant(name: &str) -> Tenant {
    Tenant::parse(name).expect("valid tenant")
}

/// A validated task of `kind` with `payload`.
pub fn new_task(tenant_name: &str, kind: &str, payload: Value, key: Option<&str>) -> NewTask {
    Submission {
        kind: kind.into(),
        payload,
        idempotency_key: key.map(str::to_owned),
        run_after: None,
        max_attempts: None,
        priority: Priority::default(),
    }
    .validate(
        tenant(tenant_name),
        CorrelationId::generate(),
        Source::Api,
        &SubmissionRules::default(),
    )
    .expect("valid submission")
}

pub fn noop(tenant_name: &str) -> NewTask {
    new_task(tenant_name, "noop", json!({}), None)
}

/// Work pointers (task id and tenant) for a claim, all of `tenant_name`.
pub fn pointers(tenant_name: &str, ids: &[tms::TaskId]) -> Vec<(tms::TaskId, Tenant)> {
    ids.iter().map(|id| (*id, tenant(tenant_name))).collect()
}
