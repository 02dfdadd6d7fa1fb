//! Import objects: which keys are imports, of which tenant and format, and where their
//! reports go.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use sha2::{Digest, Sha256};

use super::ids::{CorrelationId, ImportId, TaskId, Tenant};
use super::kind::TaskKind;
use super::submission::is_idempotency_key;

pub const IMPORTS_PREFIX: &str = "imports/";
pub const REPORTS_PREFIX: &str = "reports/";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportFormat {
    Csv,
    Jsonl,
}

impl ImportFormat {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
        }
    }
}

impl fmt::Display for ImportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An object key under `imports/{tenant}/`, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportKey {
    pub tenant: Tenant,
    /// The key below `imports/{tenant}/`.
    pub path: String,
    pub format: ImportFormat,
    pub compressed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportKeyError {
    #[error("the key is not under imports/")]
    NotAnImport,
    #[error("the key does not name a valid tenant after imports/")]
    Tenant,
    #[error("the key names no file below imports/{{tenant}}/")]
    NoPath,
    #[error("unsupported file type: expected .csv, .jsonl or .ndjson, optionally .gz")]
    Format,
}

impl ImportKey {
    /// Understands a (decoded) object key.
    ///
    /// # Errors
    /// [`ImportKeyError`] saying why the key is not an import.
    pub fn parse(key: &str) -> Result<Self, ImportKeyError> {
        let rest = key
            .strip_prefix(IMPORTS_PREFIX)
            .ok_or(ImportKeyError::NotAnImport)?;
        let (tenant, path) = rest.split_once('/').ok_or(ImportKeyError::Tenant)?;
        let tenant = Tenant::parse(tenant).map_err(|_| ImportKeyError::Tenant)?;
        if path.is_empty() || path.ends_with('/') {
            return Err(ImportKeyError::NoPath);
        }
        let lower = path.to_ascii_lowercase();
        let (stem, compressed) = match lower.strip_suffix(".gz") {
            Some(stem) => (stem, true),
            None => (lower.as_str(), false),
        };
        let format = if stem.ends_with(".csv") {
            ImportFormat::Csv
        } else if stem.ends_with(".jsonl") || stem.ends_with(".ndjson") {
            ImportFormat::Jsonl
        } else {
            return Err(ImportKeyError::Format);
        };
        Ok(Self {
            tenant,
            path: path.to_owned(),
            format,
            compressed,
        })
    }

    /// `imports/{tenant}/{path}`.
    pub fn key(&self) -> String {
        format!("{IMPORTS_PREFIX}{}/{}", self.tenant, self.path)
    }

    /// `reports/{tenant}/{path}.report.json`: never under `imports/`, so a report never
    /// triggers an import.
    pub fn report_key(&self) -> String {
        format!("{REPORTS_PREFIX}{}/{}.report.json", self.tenant, self.path)
    }

    /// `reports/{tenant}/{path}.errors.jsonl`.
    pub fn errors_key(&self) -> String {
        format!("{REPORTS_PREFIX}{}/{}.errors.jsonl", self.tenant, self.path)
    }
}

/// The default idempotency key of an import row: `{bucket}/{key}#{version or etag}:{line}`,
/// so a redelivered notification creates nothing twice and a new version is a new import.
/// It follows the one idempotency-key rule: bytes of the key and version outside visible ASCII
/// (and `%`) are percent-encoded, and a key that would still be longer than the rule allows is
/// `sha256:{hex of bucket/key#version}:{line}` instead (as stable, only less readable).
pub fn import_row_key(bucket: &str, key: &str, version: &str, line: u64) -> String {
    let natural = format!("{bucket}/{}#{}:{line}", encode(key), encode(version));
    if is_idempotency_key(&natural) {
        return natural;
    }
    let digest = Sha256::digest(format!("{bucket}/{key}#{version}").as_bytes());
    format!("sha256:{}:{line}", hex::encode(digest))
}

fn encode(raw: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The bounds of one import. Each is configurable (the variable in brackets); a file over one
/// ends `failed` with a reason naming it, and creates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    /// Bytes of one CSV record or JSON line (`TMS_IMPORT_MAX_RECORD_BYTES`, 1 MiB). A longer
    /// JSON line is rejected as a row; a longer CSV record fails the file (an unterminated quote
    /// makes the rest of a CSV one record, and no later row can be told apart).
    pub max_record_bytes: usize,
    /// Bytes read after decompression (`TMS_IMPORT_MAX_BYTES`, 1 GiB): a small gzip cannot
    /// expand without bound.
    pub max_bytes: u64,
    /// Data rows (`TMS_IMPORT_MAX_ROWS`, 2 000 000).
    pub max_rows: u64,
    /// Rejected rows kept in the errors file (`TMS_IMPORT_MAX_ERRORS`, 10 000); the report
    /// still counts them all.
    pub max_errors: u64,
    /// Bytes of the uploaded object (`TMS_IMPORT_MAX_OBJECT_BYTES`, 256 MiB): what a presigned
    /// upload may carry, and what the importer reads at most.
    pub max_object_bytes: u64,
}

impl Default for ImportLimits {
    fn default() -> Self {
        Self {
            max_record_bytes: 1024 * 1024,
            max_bytes: 1024 * 1024 * 1024,
            max_rows: 2_000_000,
            max_errors: 10_000,
            max_object_bytes: 256 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportStatus {
    Running,
    Completed,
    Failed,
}

impl ImportStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "running" => Some(Self::Running),
            "completed" => Some(Self::Completed),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// Row counts of an import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportCounts {
    /// Data rows read.
    pub total: u64,
    /// Valid rows (created now or by an earlier delivery).
    pub accepted: u64,
    /// Invalid rows, each reported with its line and reason.
    pub rejected: u64,
    /// Tasks this run created.
    pub created: u64,
}

/// One import: an object version and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Import {
    pub id: ImportId,
    pub tenant: Tenant,
    pub bucket: String,
    pub key: String,
    pub version: String,
    pub format: ImportFormat,
    pub compressed: bool,
    pub status: ImportStatus,
    pub counts: ImportCounts,
    pub report_key: Option<String>,
    pub errors_key: Option<String>,
    pub error: Option<String>,
    pub correlation_id: CorrelationId,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// One valid row of an import, ready to load: the task it creates unless the tenant already
/// has its idempotency key. The tenant, correlation id and import id are the import's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    pub id: TaskId,
    pub kind: TaskKind,
    /// The validated payload as JSON text.
    pub payload: String,
    pub max_attempts: u32,
    /// `None`: due at once (when the row is loaded).
    pub run_after: Option<DateTime<Utc>>,
    pub idempotency_key: String,
    /// SHA-256 of the canonical submission.
    pub request_hash: [u8; 32],
    /// The line of the file where the row starts.
    pub line: u64,
    pub priority: super::flow::Priority,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_under_a_tenant_with_a_supported_extension_are_imports() {
        let k = ImportKey::parse("imports/demo/2026/batch 1.CSV.gz").unwrap();
        assert_eq!(
            (k.tenant.as_str(), k.path.as_str(), k.format, k.compressed),
            ("demo", "2026/batch 1.CSV.gz", ImportFormat::Csv, true)
        );
        assert_eq!(k.key(), "imports/demo/2026/batch 1.CSV.gz");
        assert_eq!(
            k.report_key(),
            "reports/demo/2026/batch 1.CSV.gz.report.json"
        );
        assert_eq!(
            k.errors_key(),
            "reports/demo/2026/batch 1.CSV.gz.errors.jsonl"
        );
        assert_eq!(
            ImportKey::parse("imports/acme/x.ndjson").unwrap().format,
            ImportFormat::Jsonl
        );
        assert_eq!(
            ImportKey::parse("imports/acme/ünï/x.jsonl").unwrap().path,
            "ünï/x.jsonl"
        );
    }

    #[test]
    fn other_keys_are_refused_with_a_reason() {
        for (key, err) in [
            ("reports/demo/x.csv", ImportKeyError::NotAnImport),
            ("imports/x.csv", ImportKeyError::Tenant),
            ("imports/bad tenant/x.csv", ImportKeyError::Tenant),
            ("imports/demo/", ImportKeyError::NoPath),
            ("imports/demo/x.txt", ImportKeyError::Format),
            ("imports/demo/x.csv.zip", ImportKeyError::Format),
        ] {
            assert_eq!(ImportKey::parse(key).unwrap_err(), err, "{key}");
        }
    }

    #[test]
    fn row_keys_name_the_object_version_and_line() {
        assert_eq!(
            import_row_key("b", "imports/demo/x.csv", "v1", 7),
            "b/imports/demo/x.csv#v1:7"
        );
        assert_eq!(
            import_row_key("b", "imports/demo/my file ü%.csv", "v1", 7),
            "b/imports/demo/my%20file%20%C3%BC%25.csv#v1:7"
        );
    }

    #[test]
    fn every_row_key_follows_the_idempotency_key_rule() {
        let long = format!("imports/demo/{}.csv", "d/".repeat(300));
        let key = import_row_key("bucket", &long, "v1", 123_456_789);
        assert!(
            key.starts_with("sha256:") && key.ends_with(":123456789"),
            "{key}"
        );
        assert!(crate::validate_idempotency_key(&key).is_ok());
        assert_eq!(
            key,
            import_row_key("bucket", &long, "v1", 123_456_789),
            "stable"
        );
        assert_ne!(key, import_row_key("bucket", &long, "v2", 123_456_789));
        for k in ["imports/demo/\u{1}.csv", "imports/demo/tab\tx.csv"] {
            assert!(crate::validate_idempotency_key(&import_row_key("b", k, "v", 1)).is_ok());
        }
    }
}
