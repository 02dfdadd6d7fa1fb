//! Import objects: which keys are imports, of which tenant and format, and where their
//! reports go.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ids::{CorrelationId, ImportId, Tenant};

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
pub fn import_row_key(bucket: &str, key: &str, version: &str, line: u64) -> String {
    format!("{bucket}/{key}#{version}:{line}")
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
    }
}
