//! The route handlers.

pub mod imports;
pub mod limits;
pub mod schedules;
pub mod stats;
pub mod subscriptions;
pub mod system;
pub mod tasks;
pub mod triggers;
pub mod webhook_signing;

use uuid::Uuid;

use crate::problem::Problem;

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// An id in the path, in its canonical hyphenated form, or 400.
pub(crate) fn path_uuid(raw: &str, what: &str) -> Result<Uuid, Problem> {
    (raw.len() == 36)
        .then(|| Uuid::parse_str(raw).ok())
        .flatten()
        .ok_or_else(|| {
            Problem::bad_request(format!(
                "the {what} id must be a UUID such as 0190a8e2-6b5c-7cc1-8f00-000000000001"
            ))
        })
}

/// The `limit` query parameter: 1 to [`MAX_LIMIT`], or 400.
pub(crate) fn page_limit(raw: &str) -> Result<u32, Problem> {
    raw.parse::<u32>()
        .ok()
        .filter(|l| (1..=MAX_LIMIT).contains(l))
        .ok_or_else(|| {
            Problem::bad_request(format!("limit must be an integer from 1 to {MAX_LIMIT}"))
        })
}

/// The `tenant` query parameter (operators narrow a list to one tenant with it), or 400.
pub(crate) fn tenant_param(raw: &str) -> Result<tms::Tenant, Problem> {
    tms::Tenant::parse(raw).map_err(|e| Problem::bad_request(format!("tenant {}", e.message)))
}
