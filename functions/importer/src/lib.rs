//! The importer function: S3 notifications arrive through SQS; each object under
//! `imports/{tenant}/` is streamed, its rows validated with the domain rules, the valid ones
//! loaded with binary COPY and `INSERT ... ON CONFLICT DO NOTHING` in one transaction, a report
//! written under `reports/`, and the new tasks queued.

mod config;
pub mod event;
pub mod parse;
mod report;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::Utc;
use futures::stream::{self, StreamExt};
use lambda_runtime::{Error, LambdaEvent};
use tms::adapters::postgres::{open_store, SetupError};
use tms::adapters::s3::{self, S3ObjectStore};
use tms::adapters::{sqs::SqsWorkQueue, ssm::SsmSecrets};
use tms::ports::{
    CreatedTask, Dispatch, ImportClaim, ImportOutcome, ImportSession, ImportStore, NewImport,
    ObjectError, ObjectReader, ObjectStore, StoreError, TaskRepository, WorkQueue,
};
use tms::telemetry::metrics::{
    MetricSet, MetricSink, StdoutSink, IMPORT_ROWS_ACCEPTED, IMPORT_ROWS_REJECTED,
};
use tms::{
    CorrelationId, Import, ImportId, ImportKey, ImportKeyError, ImportLimits, ImportRow, Priority,
    TaskId, Tenant, WorkMessage,
};
use tokio::sync::mpsc;
use tracing::Instrument;

pub use config::Config;
use event::{CreatedObject, Notification};
use parse::{Msg, ParseError, ParseSummary, RowContext};
use report::Report;

/// Created tasks read back per enqueue round.
const ENQUEUE_BATCH: usize = 1000;

pub struct Deps {
    pub imports: Arc<dyn ImportStore>,
    pub tasks: Arc<dyn TaskRepository>,
    pub objects: Arc<dyn ObjectStore>,
    pub queue: Arc<dyn WorkQueue>,
    /// The deployment's event bus, for the import's lifecycle event (none: the relay's).
    pub events: Option<Arc<dyn tms::ports::EventPublisher>>,
    /// The lifecycle events not yet published.
    pub notifications: Arc<dyn tms::ports::NotificationStore>,
    pub metrics: Arc<dyn MetricSink>,
    pub rules: tms::SubmissionRules,
    pub chunk_rows: usize,
    pub limits: ImportLimits,
    pub enqueue: bool,
}

impl Deps {
    /// The real adapters: the database pool (created without connecting), S3 and SQS; the
    /// database password from SSM when `TMS_DATABASE_PASSWORD_PARAM` is set.
    ///
    /// # Errors
    /// [`SetupError`] when the password cannot be read or the pool cannot be set up.
    pub async fn build(config: &Config, aws: &aws_config::SdkConfig) -> Result<Self, SetupError> {
        let secrets = Arc::new(SsmSecrets::new(aws_sdk_ssm::Client::new(aws)));
        let store = Arc::new(open_store(&config.database, secrets)?);
        Ok(Self {
            imports: store.clone(),
            tasks: store.clone(),
            notifications: store,
            events: tms::adapters::events::publisher(aws, config.event_bus.as_deref()),
            objects: Arc::new(S3ObjectStore::new(s3::client(aws), &config.bucket)),
            queue: Arc::new(
                SqsWorkQueue::new(aws_sdk_sqs::Client::new(aws), &config.work_queue_url)
                    .with_high_priority_queue(config.high_work_queue_url.as_deref()),
            ),
            metrics: Arc::new(StdoutSink),
            rules: config.rules,
            chunk_rows: config.chunk_rows,
            limits: config.limits,
            enqueue: config.enqueue,
        })
    }
}

/// A failure worth a retry: the record is reported in `batchItemFailures`.
#[derive(Debug, thiserror::Error)]
pub enum Retry {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error("the object is being imported by another run")]
    Busy,
    #[error("{0}")]
    Read(String),
}

/// Handles a batch of S3 notifications. Only the records that hit an infrastructure failure
/// are reported, so SQS delivers them again; a bad file fails its import, not the batch.
#[tracing::instrument(skip_all, fields(records = event.payload.records.len()))]
pub async fn function_handler(
    deps: &Deps,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let mut response = SqsBatchResponse::default();
    for record in event.payload.records {
        if let Err(e) = handle_record(deps, &record).await {
            tracing::error!(message_id = record.message_id.as_deref().unwrap_or(""), error = %e, "import will be retried");
            response.batch_item_failures.push(failure(&record));
        }
    }
    Ok(response)
}

fn failure(record: &SqsMessage) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = record.message_id.clone().unwrap_or_default();
    f
}

async fn handle_record(deps: &Deps, record: &SqsMessage) -> Result<(), Retry> {
    let body = record.body.as_deref().unwrap_or("");
    match event::parse(body) {
        Ok(Notification::Test) => {
            tracing::info!("s3:TestEvent ignored");
            Ok(())
        }
        Ok(Notification::Created(objects)) => {
            for object in objects {
                import_object(deps, &object).await?;
            }
            Ok(())
        }
        Err(e) => {
            tracing::warn!(error = %e, "message ignored: not an S3 notification");
            Ok(())
        }
    }
}

async fn import_object(deps: &Deps, object: &CreatedObject) -> Result<(), Retry> {
    if object.bucket != deps.objects.bucket() {
        tracing::warn!(bucket = %object.bucket, key = %object.key, "object of another bucket ignored");
        return Ok(());
    }
    let (parsed, failure) = match ImportKey::parse(&object.key) {
        Ok(k) => (k, None),
        Err(ImportKeyError::Format) => match unsupported(&object.key) {
            Some(k) => (k, Some(ImportKeyError::Format.to_string())),
            None => return Ok(()),
        },
        Err(e) => {
            tracing::info!(key = %object.key, reason = %e, "object ignored: not an import");
            return Ok(());
        }
    };
    let correlation_id = CorrelationId::generate();
    let span = tracing::info_span!("import", tenant = %parsed.tenant, key = %object.key, correlation_id = %correlation_id, import_id = tracing::field::Empty);
    async move {
        // NOTE: the import is the object version actually read (GetObject's version id, else
        // its ETag), whatever the notification carried: one with and one without `versionId`
        // for the same write name the same import.
        let (source, version) = match failure {
            Some(reason) => (Source::Failed(reason), object.version.clone()),
            None => match deps
                .objects
                .open(&object.key, object.version_id.as_deref())
                .await
            {
                Ok(reader) => {
                    let version = reader
                        .identity()
                        .map_or_else(|| object.version.clone(), str::to_owned);
                    (Source::Object(reader), version)
                }
                Err(ObjectError::NotFound(_)) => (
                    Source::Failed("the object no longer exists".into()),
                    object.version.clone(),
                ),
                Err(e) => return Err(e.into()),
            },
        };
        let new = NewImport {
            id: ImportId::new(),
            tenant: parsed.tenant.clone(),
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            version,
            format: parsed.format,
            compressed: parsed.compressed,
            correlation_id: correlation_id.clone(),
        };
        match deps.imports.begin(&new).await? {
            ImportClaim::AlreadyCompleted(import) => {
                tracing::info!(import_id = %import.id, version = %import.version,
                    "already imported: nothing to do");
                Ok(())
            }
            ImportClaim::Busy(import) => {
                tracing::info!(import_id = %import.id, "being imported by another run");
                Err(Retry::Busy)
            }
            ImportClaim::Started { import, session } => {
                tracing::Span::current().record("import_id", tracing::field::display(import.id));
                run(deps, &parsed, import, session, source).await
            }
        }
    }
    .instrument(span)
    .await
}

/// What an import reads: the object, opened, or the reason it cannot be imported.
enum Source {
    Object(ObjectReader),
    Failed(String),
}

/// A key with an unsupported extension under a valid tenant: recorded as a failed import, so
/// the tenant sees why nothing happened.
fn unsupported(key: &str) -> Option<ImportKey> {
    let rest = key.strip_prefix(tms::IMPORTS_PREFIX)?;
    let (tenant, path) = rest.split_once('/')?;
    Some(ImportKey {
        tenant: Tenant::parse(tenant).ok()?,
        path: path.to_owned(),
        format: tms::ImportFormat::Csv,
        compressed: false,
    })
    .filter(|k| !k.path.is_empty())
}

async fn run(
    deps: &Deps,
    key: &ImportKey,
    import: Import,
    mut session: Box<dyn ImportSession>,
    source: Source,
) -> Result<(), Retry> {
    let started = Instant::now();
    let max = deps.limits.max_object_bytes;
    let mut created = None;
    let summary = match source {
        Source::Failed(reason) => ParseSummary::failed(reason),
        Source::Object(reader) if reader.size.is_some_and(|size| size > max) => {
            ParseSummary::failed(format!(
                "the object is {} bytes, more than the {max} bytes an import may be (the limit \
                 TMS_IMPORT_MAX_OBJECT_BYTES)",
                reader.size.unwrap_or_default()
            ))
        }
        Source::Object(reader) => match CreatedLog::new() {
            Ok(log) => {
                let log = created.insert(log);
                load(deps, &import, key, reader.body, &mut session, log).await?
            }
            Err(e) => ParseSummary::failed(parse::temp_storage_failed(&e)),
        },
    };
    let created_count = created.as_ref().map_or(0, |c| c.count);
    let outcome = write_reports(deps, key, &import, summary, created_count).await?;
    let finished = session.finish(&outcome).await?;
    publish_events(deps, &finished).await;
    tracing::info!(
        status = finished.status.as_str(),
        rows_total = finished.counts.total,
        rows_accepted = finished.counts.accepted,
        rows_rejected = finished.counts.rejected,
        rows_created = finished.counts.created,
        error = finished.error.as_deref().unwrap_or(""),
        seconds = started.elapsed().as_secs_f64(),
        "import finished"
    );
    MetricSet::new()
        .count(IMPORT_ROWS_ACCEPTED, finished.counts.accepted)
        .count(IMPORT_ROWS_REJECTED, finished.counts.rejected)
        .property("correlation_id", finished.correlation_id.as_str())
        .emit(deps.metrics.as_ref());
    if let Some(created) = created.filter(|_| outcome.error.is_none() && deps.enqueue) {
        enqueue(deps, &finished, created).await;
    }
    Ok(())
}

/// Streams the object through the parser (a blocking thread) into the session, chunk by
/// chunk, while the parser is still reading.
async fn load(
    deps: &Deps,
    import: &Import,
    key: &ImportKey,
    body: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    session: &mut Box<dyn ImportSession>,
    created: &mut CreatedLog,
) -> Result<ParseSummary, Retry> {
    let ctx = RowContext {
        bucket: import.bucket.clone(),
        key: import.key.clone(),
        version: import.version.clone(),
        tenant: import.tenant.clone(),
        import_id: import.id,
        correlation_id: import.correlation_id.clone(),
        rules: deps.rules,
        chunk_rows: deps.chunk_rows,
        limits: deps.limits,
    };
    let (tx, mut rx) = mpsc::channel::<Msg>(8);
    let (format, compressed) = (key.format, key.compressed);
    let runtime = tokio::runtime::Handle::current();
    let parser = tokio::task::spawn_blocking(move || {
        let reader = tokio_util::io::SyncIoBridge::new_with_handle(body, runtime);
        parse::parse(reader, format, compressed, &ctx, tx)
    });
    let mut load_error = None;
    let mut log_error = None;
    let mut chunks = 0u64;
    while let Some(first) = next_rows(&mut rx).await {
        let chunk = stream::unfold((Some(first), &mut rx), |(first, rx)| async move {
            if let Some(rows) = first {
                return Some((rows, (None, rx)));
            }
            match rx.recv().await {
                Some(Msg::Rows(rows)) => Some((rows, (None, rx))),
                Some(Msg::EndOfChunk) | None => None,
            }
        });
        match session.load_chunk(chunk.boxed()).await {
            Ok(new) => {
                chunks += 1;
                if let Err(e) = created.extend(&new) {
                    log_error = Some(e);
                    break;
                }
                tracing::info!(
                    chunk = chunks,
                    tasks_created = created.count,
                    "chunk loaded"
                );
            }
            Err(e) => {
                load_error = Some(e);
                break;
            }
        }
    }
    drop(rx);
    let parsed = parser
        .await
        .map_err(|e| Retry::Read(format!("the parser failed: {e}")))?;
    if let Some(e) = log_error {
        return Ok(ParseSummary::failed(parse::temp_storage_failed(&e)));
    }
    match (parsed, load_error) {
        // The file itself is unusable: that, not the COPY it cut short, is the outcome.
        (Ok(summary), _) if summary.unreadable.is_some() => Ok(summary),
        (Ok(summary), None) => Ok(summary),
        // Rows the domain accepted but the database refuses fail the file, as any other
        // content that cannot be imported; they are not retried.
        (_, Some(e)) if e.is_refused() => Ok(ParseSummary::failed(format!(
            "the database refused the file's rows: {e}"
        ))),
        (_, Some(e)) => Err(e.into()),
        (Err(ParseError::Read(e)), None) => Err(Retry::Read(with_sources(&e))),
        (Err(e), None) => Err(Retry::Read(with_sources(&e))),
    }
}

/// `e` and its sources, so that a log line says why a read failed ("streaming error" alone
/// does not).
fn with_sources(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn next_rows(rx: &mut mpsc::Receiver<Msg>) -> Option<Vec<ImportRow>> {
    loop {
        match rx.recv().await? {
            Msg::Rows(rows) => return Some(rows),
            Msg::EndOfChunk => continue,
        }
    }
}

/// Writes the report (and the errors file) and says how the import ended.
async fn write_reports(
    deps: &Deps,
    key: &ImportKey,
    import: &Import,
    mut summary: ParseSummary,
    created: u64,
) -> Result<ImportOutcome, Retry> {
    let errors_key = key.errors_key();
    let errors = std::mem::replace(&mut summary.errors, parse::ErrorLog::new(0));
    let (first, kept) = (errors.first.clone(), errors.kept());
    let errors_file = errors.into_file().unwrap_or_else(|e| {
        summary.unreadable = Some(parse::temp_storage_failed(&e));
        None
    });
    let failed = summary.unreadable.is_some();
    let wrote_errors = match &errors_file {
        Some(file) => {
            deps.objects
                .put_file(&errors_key, file.path(), "application/x-ndjson")
                .await?;
            true
        }
        None => false,
    };
    let report = Report {
        import_id: import.id,
        bucket: &import.bucket,
        key: &import.key,
        version: &import.version,
        status: if failed { "failed" } else { "completed" },
        rows_total: summary.total,
        rows_accepted: summary.accepted,
        rows_rejected: summary.rejected,
        rows_created: if failed { 0 } else { created },
        error: summary.unreadable.as_deref(),
        errors: &first,
        errors_kept: if wrote_errors { kept } else { 0 },
        errors_key: wrote_errors.then_some(errors_key.as_str()),
        started_at: import.started_at,
        finished_at: Utc::now(),
    };
    let body = serde_json::to_vec_pretty(&report).expect("a report serialises");
    deps.objects
        .put(&key.report_key(), body, "application/json")
        .await?;
    Ok(ImportOutcome {
        counts: report.counts(),
        report_key: Some(key.report_key()),
        errors_key: wrote_errors.then_some(errors_key),
        error: summary.unreadable,
    })
}

/// The tasks an import created, kept on disk (25 bytes each) so memory stays flat.
struct CreatedLog {
    file: std::io::BufWriter<tempfile::NamedTempFile>,
    count: u64,
}

impl CreatedLog {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            file: std::io::BufWriter::new(tempfile::NamedTempFile::new()?),
            count: 0,
        })
    }

    fn extend(&mut self, tasks: &[CreatedTask]) -> std::io::Result<()> {
        for t in tasks {
            self.file.write_all(t.id.as_uuid().as_bytes())?;
            self.file
                .write_all(&t.run_after.timestamp_micros().to_be_bytes())?;
            self.file
                .write_all(&[u8::from(t.priority == Priority::High)])?;
        }
        self.count += tasks.len() as u64;
        Ok(())
    }

    fn reader(self) -> std::io::Result<impl Read> {
        let mut file = self
            .file
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        std::io::Seek::rewind(&mut file)?;
        Ok(std::io::BufReader::new(file))
    }
}

fn read_created(reader: &mut impl Read, max: usize) -> std::io::Result<Vec<CreatedTask>> {
    let mut out = Vec::with_capacity(max);
    let mut rec = [0u8; 25];
    while out.len() < max {
        match reader.read_exact(&mut rec) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let id = uuid::Uuid::from_bytes(rec[..16].try_into().expect("16 bytes"));
        let micros = i64::from_be_bytes(rec[16..24].try_into().expect("8 bytes"));
        out.push(CreatedTask {
            id: TaskId::from_uuid(id),
            run_after: chrono::DateTime::from_timestamp_micros(micros).unwrap_or_else(Utc::now),
            priority: if rec[24] == 1 {
                Priority::High
            } else {
                Priority::Normal
            },
        });
    }
    Ok(out)
}

/// Sends the work messages of the created tasks (batches of 10, several in flight) and sets
/// their outbox marker. What cannot be sent (or read back from the temporary file) is left to
/// the relay: the tasks are committed.
async fn enqueue(deps: &Deps, import: &Import, created: CreatedLog) {
    let total = created.count;
    let mut reader = match created.reader() {
        Ok(reader) => reader,
        Err(e) => {
            tracing::warn!(error = %e, tasks = total, "created tasks cannot be read back; the relay will send them");
            return;
        }
    };
    let mut sent_total = 0u64;
    loop {
        let batch = match read_created(&mut reader, ENQUEUE_BATCH) {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "created tasks cannot be read back; the relay will send the rest");
                break;
            }
        };
        if batch.is_empty() {
            break;
        }
        let now = Utc::now();
        let dispatches: Vec<Dispatch> = batch
            .iter()
            .filter_map(|t| {
                let message = WorkMessage {
                    task_id: t.id,
                    tenant: import.tenant.clone(),
                    correlation_id: import.correlation_id.clone(),
                };
                Dispatch::when_due(message, t.run_after, now).map(|d| d.with_priority(t.priority))
            })
            .collect();
        if dispatches.is_empty() {
            continue;
        }
        match deps.queue.send(&dispatches).await {
            Ok(sent) => {
                sent_total += sent.len() as u64;
                if let Err(e) = deps.tasks.mark_enqueued(&sent).await {
                    tracing::warn!(error = %e, "outbox marker not set; the relay may send duplicates");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "work messages not sent; the relay will send them");
            }
        }
    }
    tracing::info!(tasks = total, sent = sent_total, "import queued");
}

/// Publishes the import's lifecycle event after its commit; what fails is the relay's.
async fn publish_events(deps: &Deps, import: &tms::Import) {
    match deps
        .notifications
        .unpublished_of(&[*import.id.as_uuid()])
        .await
    {
        Ok(events) => {
            tms::notify::publish(deps.events.as_deref(), deps.notifications.as_ref(), &events)
                .await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "the import's event is not read back; the relay will publish it")
        }
    }
}
