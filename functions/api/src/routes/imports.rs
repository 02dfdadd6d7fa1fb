//! The import routes: a presigned upload URL under the caller's `imports/{tenant}/` prefix,
//! and the status and counts of the tenant's imports.

use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tms::{Caller, Import, ImportId, ImportKey, ValidationErrors};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::extract::JsonBody;
use crate::problem::Problem;
use crate::routes::{path_uuid, IdPage, IdPageParams};
use crate::AppState;

/// How long an upload URL stays valid.
pub const UPLOAD_URL_TTL: Duration = Duration::from_secs(900);
pub const FILENAME_MAX: usize = 512;
/// Where the file goes below `imports/{tenant}/`: no control characters or backslashes, no
/// segment (or the whole name) starting with `.` or `/`, and a supported extension.
pub const FILENAME_PATTERN: &str = concat!(
    r"^[^\x00-\x1f\x7f./\\](?:[^\x00-\x1f\x7f/\\]|/[^\x00-\x1f\x7f./\\])*",
    r"\.(?:[Cc][Ss][Vv]|[Jj][Ss][Oo][Nn][Ll]|[Nn][Dd][Jj][Ss][Oo][Nn])(?:\.[Gg][Zz])?$"
);

fn forbidden(c: char) -> bool {
    c.is_ascii_control() || c == '\\'
}

/// Exactly [`FILENAME_PATTERN`] and [`FILENAME_MAX`].
fn valid_filename(name: &str) -> bool {
    let mut prev: Option<char> = None;
    let shape = name.chars().all(|c| {
        let ok = !forbidden(c)
            && match prev {
                None => c != '.' && c != '/',
                Some('/') => c != '.' && c != '/',
                Some(_) => true,
            };
        prev = Some(c);
        ok
    });
    let lower = name.to_ascii_lowercase();
    let stem = lower.strip_suffix(".gz").unwrap_or(&lower);
    let extension = [".csv", ".jsonl", ".ndjson"]
        .iter()
        .any(|ext| stem.len() > ext.len() && stem.ends_with(ext));
    shape && extension && !name.ends_with('/') && name.chars().count() <= FILENAME_MAX
}

/// `POST /v1/imports`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateImport {
    /// The file's name below your import prefix, e.g. `2026/orders.csv.gz`.
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f./\\\\](?:[^\\x00-\\x1f\\x7f/\\\\]|/[^\\x00-\\x1f\\x7f./\\\\])*\\.(?:[Cc][Ss][Vv]|[Jj][Ss][Oo][Nn][Ll]|[Nn][Dd][Jj][Ss][Oo][Nn])(?:\\.[Gg][Zz])?$",
        max_length = 512,
        min_length = 5
    )]
    pub filename: String,
    /// The file's exact size in bytes: the upload URL is signed for this length, at most
    /// `TMS_IMPORT_MAX_OBJECT_BYTES` (default 256 MiB).
    #[schema(minimum = 1, maximum = 268_435_456)]
    #[serde(deserialize_with = "crate::model::whole_number")]
    pub size_bytes: u64,
}

/// Where and how to upload the file; the import starts when the upload completes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportUpload {
    /// PUT exactly `size_bytes` bytes to this URL (no header besides Content-Length needed).
    pub upload_url: String,
    #[schema(example = "PUT")]
    pub method: String,
    pub bucket: String,
    pub key: String,
    pub expires_at: chrono::DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = ImportStatus)]
pub enum ImportStatusView {
    Running,
    Completed,
    Failed,
}

/// One import: an object version and what became of it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Import)]
pub struct ImportView {
    pub id: Uuid,
    pub bucket: String,
    pub key: String,
    /// The object's version id, or its ETag in an unversioned bucket.
    pub version: String,
    #[schema(example = "csv")]
    pub format: String,
    pub compressed: bool,
    pub status: ImportStatusView,
    pub rows_total: u64,
    pub rows_accepted: u64,
    pub rows_rejected: u64,
    /// Tasks the last run created (rows already imported by an earlier delivery are not counted).
    pub rows_created: u64,
    pub report_key: Option<String>,
    pub errors_key: Option<String>,
    pub error: Option<String>,
    pub correlation_id: String,
    pub started_at: chrono::DateTime<Utc>,
    pub finished_at: Option<chrono::DateTime<Utc>>,
}

impl From<&Import> for ImportView {
    fn from(i: &Import) -> Self {
        Self {
            id: *i.id.as_uuid(),
            bucket: i.bucket.clone(),
            key: i.key.clone(),
            version: i.version.clone(),
            format: i.format.as_str().to_owned(),
            compressed: i.compressed,
            status: match i.status {
                tms::ImportStatus::Running => ImportStatusView::Running,
                tms::ImportStatus::Completed => ImportStatusView::Completed,
                tms::ImportStatus::Failed => ImportStatusView::Failed,
            },
            rows_total: i.counts.total,
            rows_accepted: i.counts.accepted,
            rows_rejected: i.counts.rejected,
            rows_created: i.counts.created,
            report_key: i.report_key.clone(),
            errors_key: i.errors_key.clone(),
            error: i.error.clone(),
            correlation_id: i.correlation_id.to_string(),
            started_at: i.started_at,
            finished_at: i.finished_at,
        }
    }
}

/// One page of imports, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportPage {
    pub items: Vec<ImportView>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Returns a presigned URL to upload an import file under `imports/{tenant}/`.
#[utoipa::path(
    post, path = "/v1/imports", tag = "imports",
    request_body(content = CreateImport, content_type = "application/json"),
    responses((status = 201, description = "Upload the file with a PUT to upload_url.", body = ImportUpload))
)]
pub async fn create_import(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<CreateImport>,
) -> Result<Response, Problem> {
    caller.may_act("import tasks")?;
    let tenant = caller.tenant;
    if !valid_filename(&body.filename) {
        return Err(Problem::validation(
            &ValidationErrors::single(
                "/filename",
                "must be a relative path (no control characters, backslashes, or segments starting with '.') ending in .csv, .jsonl or .ndjson, optionally .gz, at most 512 characters",
            ),
            "",
        ));
    }
    if !(1..=state.max_upload_bytes).contains(&body.size_bytes) {
        return Err(Problem::validation(
            &ValidationErrors::single(
                "/size_bytes",
                format!(
                    "must be between 1 and {} bytes (the import file size limit)",
                    state.max_upload_bytes
                ),
            ),
            "",
        ));
    }
    let key = format!("{}{}/{}", tms::IMPORTS_PREFIX, tenant, body.filename);
    ImportKey::parse(&key).map_err(|e| {
        Problem::validation(&ValidationErrors::single("/filename", e.to_string()), "")
    })?;
    let url = state
        .objects
        .presign_put(&key, body.size_bytes, UPLOAD_URL_TTL)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "cannot presign an upload URL");
            Problem::unavailable("cannot sign an upload URL right now; retry later")
        })?;
    let expires_at =
        Utc::now() + chrono::Duration::from_std(UPLOAD_URL_TTL).expect("a short duration");
    tracing::info!(key = %key, "upload URL issued");
    let upload = ImportUpload {
        upload_url: url,
        method: "PUT".into(),
        bucket: state.objects.bucket().to_owned(),
        key,
        expires_at,
    };
    Ok((StatusCode::CREATED, Json(upload)).into_response())
}

const LIST: &str = "imports";

/// Lists the tenant's imports, newest first.
#[utoipa::path(
    get, path = "/v1/imports", tag = "imports",
    params(IdPageParams),
    responses((status = 200, description = "One page of imports.", body = ImportPage))
)]
pub async fn list_imports(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    let page = IdPage::parse(&state, &caller, LIST, query.as_deref())?;
    let mut imports = state
        .imports
        .list_imports(
            &page.scope,
            page.before.map(ImportId::from_uuid),
            page.rows(),
        )
        .await?;
    let next_cursor = page.next_cursor(&state, &mut imports, |x| *x.id.as_uuid());
    let page = ImportPage {
        items: imports.iter().map(Into::into).collect(),
        next_cursor,
    };
    Ok((StatusCode::OK, Json(page)).into_response())
}

/// One import's status and counts.
#[utoipa::path(
    get, path = "/v1/imports/{id}", tag = "imports",
    params(("id" = Uuid, Path, description = "The import id")),
    responses(
        (status = 200, description = "The import.", body = ImportView),
        (status = 404, description = "No such import for this tenant.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_import(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = ImportId::from_uuid(path_uuid(&id, "import")?);
    let import = state
        .imports
        .get_import(&caller.scope(None)?, id)
        .await?
        .ok_or_else(|| Problem::not_found("no such import"))?;
    Ok((StatusCode::OK, Json(ImportView::from(&import))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_follow_the_documented_pattern() {
        let pattern = regex::Regex::new(FILENAME_PATTERN).unwrap();
        for name in [
            "a.csv",
            "2026/orders.CSV.gz",
            "März report (final)+v2.ndjson",
            "x..y.jsonl",
            "a b/c.d.csv",
            "ä.csv",
        ] {
            assert!(valid_filename(name), "{name}");
            assert!(pattern.is_match(name), "{name}");
        }
        for name in [
            ".csv",
            "a.txt",
            "/a.csv",
            "a//b.csv",
            "a/.b.csv",
            "../a.csv",
            "a\\b.csv",
            "a\nb.csv",
            "a.csv.zip",
            ".hidden.csv",
            "a/",
            "csv",
        ] {
            assert!(!valid_filename(name), "{name}");
            assert!(!pattern.is_match(name), "{name}");
        }
        let long = format!("{}.csv", "a".repeat(FILENAME_MAX));
        assert!(!valid_filename(&long));
    }

    #[test]
    fn the_schema_pattern_is_the_validation_pattern() {
        let schema =
            serde_json::to_value(<CreateImport as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(
            schema["properties"]["filename"]["pattern"],
            FILENAME_PATTERN
        );
    }
}
