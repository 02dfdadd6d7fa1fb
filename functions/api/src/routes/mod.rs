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

use tms::{Caller, Scope};
use uuid::Uuid;

use crate::problem::Problem;
use crate::AppState;

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

/// The query of [`IdPage`], for the OpenAPI document.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct IdPageParams {
    /// Page size.
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_-]{44}$")]
    cursor: Option<String>,
    /// Operators: only this tenant's (every tenant's without it).
    #[param(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    tenant: Option<String>,
}

/// A page of one of the lists keyed by id, newest first (imports, schedules, triggers,
/// subscriptions): `limit`, `cursor` (the `next_cursor` of a previous page, valid for the same
/// list and scope only) and, for operators, `tenant`.
pub(crate) struct IdPage {
    list: &'static str,
    pub scope: Scope,
    pub limit: u32,
    /// The id the page continues after.
    pub before: Option<Uuid>,
}

impl IdPage {
    /// The page `query` asks for of the list named `list`, in the caller's scope.
    pub(crate) fn parse(
        state: &AppState,
        caller: &Caller,
        list: &'static str,
        query: Option<&str>,
    ) -> Result<Self, Problem> {
        let mut limit = DEFAULT_LIMIT;
        let mut cursor = None;
        let mut tenant = None;
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match name.as_ref() {
                "limit" => limit = page_limit(&value)?,
                "cursor" => cursor = Some(value.into_owned()),
                "tenant" => tenant = Some(tenant_param(&value)?),
                _ => {}
            }
        }
        let scope = caller.scope(tenant.as_ref())?;
        let before = cursor
            .map(|c| {
                state
                    .cursor_key
                    .decode_scoped(list, &c, &scope, &[])
                    .ok_or_else(|| {
                        Problem::bad_request(
                            "invalid cursor: pass the next_cursor of a previous page",
                        )
                    })
            })
            .transpose()?;
        Ok(Self {
            list,
            scope,
            limit,
            before,
        })
    }

    /// How many rows to read: one more than the page, which tells whether another follows.
    pub(crate) fn rows(&self) -> u32 {
        self.limit + 1
    }

    /// Cuts `rows` to the page; the cursor of the next page when there is one.
    pub(crate) fn next_cursor<T>(
        &self,
        state: &AppState,
        rows: &mut Vec<T>,
        id: impl Fn(&T) -> Uuid,
    ) -> Option<String> {
        (rows.len() > self.limit as usize).then(|| {
            rows.truncate(self.limit as usize);
            let last = id(rows.last().expect("a full page"));
            state
                .cursor_key
                .encode_scoped(self.list, &last, &self.scope, &[])
        })
    }
}
