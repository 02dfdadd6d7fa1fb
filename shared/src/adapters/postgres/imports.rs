//! Import bookkeeping and loading: the `imports` row per object version, and a session that
//! loads the rows in one transaction through a temporary staging table (binary COPY of rows
//! encoded into large buffers, then one `INSERT ... SELECT ... ON CONFLICT DO NOTHING` per chunk).

use std::sync::LazyLock;

use async_trait::async_trait;
use bytes::BytesMut;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{pin_mut, SinkExt, StreamExt};
use tokio_postgres::Row;

use super::copy::{encode_row, BUFFER_BYTES, COPY_HEADER, COPY_TRAILER, STAGING_COLUMNS};
use super::error::store_error;
use super::store::PostgresStore;
use crate::domain::{
    CorrelationId, Import, ImportCounts, ImportFormat, ImportId, ImportRow, ImportStatus, Priority,
    Scope, TaskId, Tenant,
};
use crate::ports::{
    CreatedTask, ImportClaim, ImportOutcome, ImportSession, ImportStore, NewImport, StoreError,
};

const IMPORT_COLUMNS: &str = "id, tenant, bucket, object_key, object_version, format, compressed, \
     status, rows_total, rows_accepted, rows_rejected, rows_created, report_key, errors_key, \
     error, correlation_id, started_at, finished_at";

static SELECT_BY_OBJECT: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {IMPORT_COLUMNS} FROM tms.imports WHERE bucket = $1 AND object_key = $2 AND object_version = $3")
});
static RESTART: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE tms.imports SET status = 'running', rows_total = 0, rows_accepted = 0, \
         rows_rejected = 0, rows_created = 0, report_key = NULL, errors_key = NULL, error = NULL, \
         started_at = now(), finished_at = NULL, updated_at = now() WHERE id = $1 RETURNING {IMPORT_COLUMNS}"
    )
});
/// The import's end, and its lifecycle event.
static FINISH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH done AS (
            UPDATE tms.imports SET status = $2, rows_total = $3, rows_accepted = $4,
                rows_rejected = $5, rows_created = $6, report_key = $7, errors_key = $8,
                error = $9, finished_at = now(), updated_at = now()
            WHERE id = $1 RETURNING {IMPORT_COLUMNS}
         ), {note}
         SELECT {IMPORT_COLUMNS} FROM done",
        note = super::notifications::notify_imports("done"),
    )
});
const INSERT_IMPORT: &str = "INSERT INTO tms.imports (id, tenant, bucket, object_key, object_version, \
     format, compressed, status, correlation_id) VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8) \
     ON CONFLICT (bucket, object_key, object_version) DO NOTHING";
const INSERT_STAGED: &str = "WITH ins AS (
        INSERT INTO tms.tasks (id, tenant, kind, payload, max_attempts, run_after, idempotency_key,
            request_hash, correlation_id, source, import_id, import_line, priority)
        SELECT id, $1, kind, payload, max_attempts, COALESCE(run_after, now()), idempotency_key,
            request_hash, $2, 'import', $3, import_line, priority
        FROM pg_temp.tms_import_rows
        ON CONFLICT (tenant, idempotency_key) DO NOTHING
        RETURNING id, run_after, correlation_id, priority
     ), ev AS (
        INSERT INTO tms.task_events (task_id, from_status, to_status, attempt, correlation_id)
        SELECT id, NULL, 'pending', 0, correlation_id FROM ins
     )
     SELECT id, run_after, priority FROM ins";

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

fn count(row: &Row, col: &str) -> Result<u64, StoreError> {
    let v: i64 = row.try_get(col).map_err(store_error)?;
    u64::try_from(v).map_err(|e| corrupt(col, e))
}

fn import_from_row(row: &Row) -> Result<Import, StoreError> {
    let get_str = |c: &str| -> Result<String, StoreError> { row.try_get(c).map_err(store_error) };
    let format = match get_str("format")?.as_str() {
        "csv" => ImportFormat::Csv,
        "jsonl" => ImportFormat::Jsonl,
        other => return Err(corrupt("format", other)),
    };
    let status =
        ImportStatus::parse(&get_str("status")?).ok_or_else(|| corrupt("status", "unknown"))?;
    Ok(Import {
        id: ImportId::from_uuid(row.try_get("id").map_err(store_error)?),
        tenant: Tenant::parse(&get_str("tenant")?).map_err(|e| corrupt("tenant", e))?,
        bucket: get_str("bucket")?,
        key: get_str("object_key")?,
        version: get_str("object_version")?,
        format,
        compressed: row.try_get("compressed").map_err(store_error)?,
        status,
        counts: ImportCounts {
            total: count(row, "rows_total")?,
            accepted: count(row, "rows_accepted")?,
            rejected: count(row, "rows_rejected")?,
            created: count(row, "rows_created")?,
        },
        report_key: row.try_get("report_key").map_err(store_error)?,
        errors_key: row.try_get("errors_key").map_err(store_error)?,
        error: row.try_get("error").map_err(store_error)?,
        correlation_id: CorrelationId::parse(&get_str("correlation_id")?)
            .map_err(|e| corrupt("correlation_id", e))?,
        started_at: row.try_get("started_at").map_err(store_error)?,
        finished_at: row.try_get("finished_at").map_err(store_error)?,
    })
}

/// The advisory lock key of one import.
fn lock_key(id: ImportId) -> i64 {
    let b = id.as_uuid().as_bytes();
    let hi = i64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
    let lo = i64::from_be_bytes(b[8..].try_into().expect("8 bytes"));
    hi ^ lo
}

#[async_trait]
impl ImportStore for PostgresStore {
    #[tracing::instrument(skip_all, fields(import_id = %new.id, tenant = %new.tenant))]
    async fn begin(&self, new: &NewImport) -> Result<ImportClaim, StoreError> {
        let client = self.pool().await?.get().await?;
        client
            .execute(
                INSERT_IMPORT,
                &[
                    new.id.as_uuid(),
                    &new.tenant.as_str(),
                    &new.bucket,
                    &new.key,
                    &new.version,
                    &new.format.as_str(),
                    &new.compressed,
                    &new.correlation_id.as_str(),
                ],
            )
            .await
            .map_err(store_error)?;
        let row = client
            .query_one(
                SELECT_BY_OBJECT.as_str(),
                &[&new.bucket, &new.key, &new.version],
            )
            .await
            .map_err(store_error)?;
        let import = import_from_row(&row)?;
        if import.status == ImportStatus::Completed {
            return Ok(ImportClaim::AlreadyCompleted(import));
        }
        let key = lock_key(import.id);
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await
            .map_err(store_error)?
            .get(0);
        if !locked {
            return Ok(ImportClaim::Busy(import));
        }
        let mut session = PgImportSession {
            client: Some(client),
            import: import.clone(),
            lock: key,
            created: 0,
        };
        let conn = session.client();
        let row = conn
            .query_one(RESTART.as_str(), &[import.id.as_uuid()])
            .await
            .map_err(store_error)?;
        let import = import_from_row(&row)?;
        conn.batch_execute(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS tms_import_rows ({STAGING_COLUMNS}); \
             TRUNCATE pg_temp.tms_import_rows; BEGIN"
        ))
        .await
        .map_err(store_error)?;
        session.import = import.clone();
        Ok(ImportClaim::Started {
            import,
            session: Box::new(session),
        })
    }

    async fn list_imports(
        &self,
        scope: &Scope,
        before: Option<ImportId>,
        limit: u32,
    ) -> Result<Vec<Import>, StoreError> {
        self.id_page(
            "tms.imports",
            IMPORT_COLUMNS,
            scope,
            before.map(|id| *id.as_uuid()),
            limit,
            import_from_row,
        )
        .await
    }

    async fn get_import(&self, scope: &Scope, id: ImportId) -> Result<Option<Import>, StoreError> {
        let client = self.pool().await?.get().await?;
        let sql = format!(
            "SELECT {IMPORT_COLUMNS} FROM tms.imports WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)"
        );
        let stmt = client.prepare_cached(&sql).await.map_err(store_error)?;
        client
            .query_opt(&stmt, &[id.as_uuid(), &scope.tenant().map(Tenant::as_str)])
            .await
            .map_err(store_error)?
            .as_ref()
            .map(import_from_row)
            .transpose()
    }
}

/// A connection holding the import's lock and its open transaction.
struct PgImportSession {
    client: Option<super::Object>,
    import: Import,
    lock: i64,
    created: u64,
}

impl PgImportSession {
    fn client(&mut self) -> &mut super::Object {
        self.client.as_mut().expect("the session is open")
    }
}

#[async_trait]
impl ImportSession for PgImportSession {
    async fn load_chunk(
        &mut self,
        mut rows: BoxStream<'_, Vec<ImportRow>>,
    ) -> Result<Vec<CreatedTask>, StoreError> {
        let tenant = self.import.tenant.as_str().to_owned();
        let correlation = self.import.correlation_id.as_str().to_owned();
        let import_id = *self.import.id.as_uuid();
        let client = self.client();
        let sink = client
            .copy_in("COPY pg_temp.tms_import_rows FROM STDIN (FORMAT binary)")
            .await
            .map_err(store_error)?;
        pin_mut!(sink);
        let mut buf = BytesMut::with_capacity(BUFFER_BYTES + 64 * 1024);
        buf.extend_from_slice(COPY_HEADER);
        while let Some(batch) = rows.next().await {
            for row in &batch {
                encode_row(&mut buf, row)?;
                if buf.len() >= BUFFER_BYTES {
                    sink.feed(buf.split().freeze()).await.map_err(store_error)?;
                }
            }
        }
        buf.extend_from_slice(COPY_TRAILER);
        sink.feed(buf.split().freeze()).await.map_err(store_error)?;
        sink.as_mut().finish().await.map_err(store_error)?;
        let insert = client
            .prepare_cached(INSERT_STAGED)
            .await
            .map_err(store_error)?;
        let rows = client
            .query(&insert, &[&tenant, &correlation, &import_id])
            .await
            .map_err(store_error)?;
        client
            .batch_execute("TRUNCATE pg_temp.tms_import_rows")
            .await
            .map_err(store_error)?;
        let created = rows
            .iter()
            .map(|r| {
                Ok(CreatedTask {
                    id: TaskId::from_uuid(r.try_get("id").map_err(store_error)?),
                    run_after: r
                        .try_get::<_, DateTime<Utc>>("run_after")
                        .map_err(store_error)?,
                    priority: Priority::parse(r.try_get("priority").map_err(store_error)?)
                        .map_err(|e| corrupt("priority", e))?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.created += created.len() as u64;
        Ok(created)
    }

    async fn finish(mut self: Box<Self>, outcome: &ImportOutcome) -> Result<Import, StoreError> {
        let failed = outcome.error.is_some();
        let lock = self.lock;
        let id = *self.import.id.as_uuid();
        let client = self.client();
        client
            .batch_execute(if failed { "ROLLBACK" } else { "COMMIT" })
            .await
            .map_err(store_error)?;
        let status = if failed {
            ImportStatus::Failed
        } else {
            ImportStatus::Completed
        };
        let created = if failed {
            0
        } else {
            outcome.counts.created as i64
        };
        let stmt = client.prepare_cached(&FINISH).await.map_err(store_error)?;
        let row = client
            .query_one(
                &stmt,
                &[
                    &id,
                    &status.as_str(),
                    &(outcome.counts.total as i64),
                    &(outcome.counts.accepted as i64),
                    &(outcome.counts.rejected as i64),
                    &created,
                    &outcome.report_key,
                    &outcome.errors_key,
                    &outcome.error,
                ],
            )
            .await
            .map_err(store_error)?;
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&lock])
            .await
            .map_err(store_error)?;
        self.client = None;
        import_from_row(&row)
    }
}

impl Drop for PgImportSession {
    fn drop(&mut self) {
        // NOTE: a session dropped unfinished (an error or a panic mid-import) takes its
        // connection out of the pool and closes it: the server rolls the transaction back and
        // releases the lock, and no later caller inherits either.
        if let Some(client) = self.client.take() {
            drop(super::Object::take(client));
        }
    }
}
