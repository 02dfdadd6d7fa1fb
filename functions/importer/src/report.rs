//! The import report: `reports/{tenant}/{path}.report.json` with the counts and the first
//! errors, and `.errors.jsonl` with the first errors up to the limit of the errors file.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tms::{ImportCounts, ImportId};

use crate::parse::RowError;

#[derive(Debug, Clone, Serialize)]
pub struct Report<'a> {
    pub import_id: ImportId,
    pub bucket: &'a str,
    pub key: &'a str,
    pub version: &'a str,
    pub status: &'static str,
    pub rows_total: u64,
    pub rows_accepted: u64,
    pub rows_rejected: u64,
    pub rows_created: u64,
    pub error: Option<&'a str>,
    /// The first errors (at most 100); `rows_rejected` counts them all.
    pub errors: &'a [RowError],
    /// How many errors `errors_key` holds: all of them, or the first `TMS_IMPORT_MAX_ERRORS`.
    pub errors_kept: u64,
    pub errors_key: Option<&'a str>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

impl Report<'_> {
    pub fn counts(&self) -> ImportCounts {
        ImportCounts {
            total: self.rows_total,
            accepted: self.rows_accepted,
            rejected: self.rows_rejected,
            created: self.rows_created,
        }
    }
}
