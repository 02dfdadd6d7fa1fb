//! Reading an import object row by row. Runs on a blocking thread: the object arrives as a
//! stream, each valid row is validated with the domain rules and sent to the loader in bounded
//! batches, and each invalid row is logged with its line and reason. Memory stays flat whatever
//! the file size.

use std::cell::Cell;
use std::io::{BufRead, BufReader, Read, Write};
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tms::{
    import_row_key, parse_rfc3339, CorrelationId, ImportFormat, ImportId, ImportLimits, ImportRow,
    NewTask, Priority, Source, Submission, Tenant,
};
use tokio::sync::mpsc::Sender;

/// Valid rows are sent to the loader in batches holding about this many bytes.
pub const BATCH_BYTES: usize = 256 * 1024;
/// What a row holds besides its payload and key.
const ROW_BYTES: usize = std::mem::size_of::<ImportRow>();
/// How many errors the report lists (the `.errors.jsonl` object keeps up to
/// [`ImportLimits::max_errors`]).
pub const REPORT_ERRORS: usize = 100;
/// The default bound of a JSON line or CSV record ([`ImportLimits::max_record_bytes`]).
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
const RESERVED_CSV_COLUMNS: [&str; 3] = ["kind", "idempotency_key", "run_after"];

/// What the parser sends the loader.
#[derive(Debug)]
pub enum Msg {
    /// Valid rows of the current chunk, in file order.
    Rows(Vec<ImportRow>),
    /// The chunk is complete: load it.
    EndOfChunk,
}

/// What every row of one import shares.
#[derive(Debug, Clone)]
pub struct RowContext {
    pub bucket: String,
    pub key: String,
    pub version: String,
    pub tenant: Tenant,
    pub import_id: ImportId,
    pub correlation_id: CorrelationId,
    pub rules: tms::SubmissionRules,
    /// Valid rows per chunk (one COPY and one INSERT each).
    pub chunk_rows: usize,
    pub limits: ImportLimits,
}

/// The longest reason a rejected row keeps, in bytes: messages quote the offending values, and
/// a row's reason must not grow with the row (this bounds the errors file, see `template.yaml`).
pub const REASON_MAX: usize = 1024;

/// `reason`, cut at [`REASON_MAX`] bytes (on a character boundary) with an ellipsis.
fn bounded_reason(mut reason: String) -> String {
    if reason.len() > REASON_MAX {
        let mut end = REASON_MAX - '…'.len_utf8();
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    reason
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    pub line: u64,
    pub reason: String,
}

/// Rejected rows: the first [`REPORT_ERRORS`] in memory, the first `kept` in a temporary
/// file (so a file of garbage cannot fill the disk), and the count of all of them.
#[derive(Debug)]
pub struct ErrorLog {
    pub first: Vec<RowError>,
    pub count: u64,
    /// How many the file holds at most.
    keep: u64,
    file: Option<std::io::BufWriter<Spool>>,
}

/// Where the errors file is written: a temporary file, or in tests a device that fails.
#[derive(Debug)]
enum Spool {
    Temp(tempfile::NamedTempFile),
    #[cfg(test)]
    Device(std::fs::File),
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Temp(f) => f.write(buf),
            #[cfg(test)]
            Self::Device(f) => f.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Temp(f) => f.flush(),
            #[cfg(test)]
            Self::Device(f) => f.flush(),
        }
    }
}

impl ErrorLog {
    pub fn new(keep: u64) -> Self {
        Self {
            first: Vec::new(),
            count: 0,
            keep,
            file: None,
        }
    }

    fn push(&mut self, error: RowError) -> std::io::Result<()> {
        if self.count < self.keep {
            let file = match &mut self.file {
                Some(f) => f,
                None => self.file.insert(std::io::BufWriter::new(Spool::Temp(
                    tempfile::NamedTempFile::new()?,
                ))),
            };
            serde_json::to_writer(&mut *file, &error)?;
            file.write_all(b"\n")?;
        }
        self.count += 1;
        if self.first.len() < REPORT_ERRORS {
            self.first.push(error);
        }
        Ok(())
    }

    /// How many errors the file holds.
    pub fn kept(&self) -> u64 {
        self.count.min(self.keep)
    }

    /// The file holding the kept errors as JSON Lines, when there was any.
    ///
    /// # Errors
    /// When the buffered lines cannot be written out.
    pub fn into_file(self) -> std::io::Result<Option<tempfile::NamedTempFile>> {
        let Some(file) = self.file else {
            return Ok(None);
        };
        match file
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?
        {
            Spool::Temp(f) => Ok(Some(f)),
            #[cfg(test)]
            Spool::Device(_) => Ok(None),
        }
    }
}

/// A bound of [`ImportLimits`] that the file broke, as an I/O error of the reader.
#[derive(Debug, thiserror::Error)]
enum OverLimit {
    #[error(
        "the file is larger than {0} bytes once decompressed (the limit TMS_IMPORT_MAX_BYTES)"
    )]
    Bytes(u64),
    #[error(
        "a CSV record is longer than {0} bytes (the limit TMS_IMPORT_MAX_RECORD_BYTES); an \
         unterminated quote makes the rest of a file one record"
    )]
    Record(usize),
}

/// What [`Bounded`] has read, shared with the parser that marks where each record starts.
#[derive(Debug, Default)]
struct ReadCount {
    total: Cell<u64>,
    record_start: Cell<u64>,
}

impl ReadCount {
    fn mark_record(&self) {
        self.record_start.set(self.total.get());
    }
}

/// Counts the bytes read (after decompression) and fails the read once the file or the record
/// being read is over its limit, before the parser buffers more of it. The CSV parser reads
/// ahead by its buffer (8 KiB), so a record is cut within that of its limit.
struct Bounded<R> {
    inner: R,
    count: Rc<ReadCount>,
    max_bytes: u64,
    max_record: Option<usize>,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.count.total.get() + n as u64;
        self.count.total.set(total);
        if total > self.max_bytes {
            return Err(std::io::Error::other(OverLimit::Bytes(self.max_bytes)));
        }
        if let Some(max) = self.max_record {
            if total - self.count.record_start.get() > max as u64 + 8192 {
                return Err(std::io::Error::other(OverLimit::Record(max)));
            }
        }
        Ok(n)
    }
}

fn over_limit(e: &std::io::Error) -> Option<String> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<OverLimit>())
        .map(ToString::to_string)
}

/// The outcome of reading a whole object.
#[derive(Debug)]
pub struct ParseSummary {
    pub total: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub errors: ErrorLog,
    /// Why the file cannot be imported at all (bad gzip, not UTF-8, no header): the import
    /// fails and nothing of it is kept.
    pub unreadable: Option<String>,
}

impl ParseSummary {
    /// No row read yet; the errors file keeps at most `keep` errors.
    fn empty(keep: u64) -> Self {
        Self {
            total: 0,
            accepted: 0,
            rejected: 0,
            errors: ErrorLog::new(keep),
            unreadable: None,
        }
    }

    /// An import that failed before any row: `reason` says why.
    pub fn failed(reason: impl Into<String>) -> Self {
        Self {
            unreadable: Some(reason.into()),
            ..Self::empty(0)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("the loader stopped")]
    Cancelled,
    #[error("cannot read the object: {0}")]
    Read(std::io::Error),
}

/// Why the import fails when its temporary storage cannot be written (a full disk among
/// others): retrying would fail the same way.
pub fn temp_storage_failed(e: &std::io::Error) -> String {
    format!(
        "the importer's temporary storage failed ({e}); its ephemeral storage is sized for the \
         documented limits"
    )
}

/// An I/O error from reading the object: a corrupt file, a limit the file broke, or a broken
/// transfer (worth a retry).
fn classify(e: std::io::Error, compressed: bool) -> Result<String, ParseError> {
    use std::io::ErrorKind::*;
    if let Some(reason) = over_limit(&e) {
        return Ok(reason);
    }
    match e.kind() {
        InvalidData | InvalidInput => Ok(if compressed {
            format!("the file is not valid gzip: {e}")
        } else {
            format!("the file cannot be read: {e}")
        }),
        UnexpectedEof if compressed => Ok(format!("the gzip stream is truncated: {e}")),
        _ => Err(ParseError::Read(e)),
    }
}

/// Gathers valid rows into batches of about [`BATCH_BYTES`] and chunks of `chunk_rows`.
struct Batcher {
    tx: Sender<Msg>,
    batch: Vec<ImportRow>,
    batch_bytes: usize,
    in_chunk: usize,
    chunk_rows: usize,
}

impl Batcher {
    fn row(&mut self, row: ImportRow) -> Result<(), ParseError> {
        self.batch_bytes += row.payload.capacity() + row.idempotency_key.capacity() + ROW_BYTES;
        self.batch.push(row);
        self.in_chunk += 1;
        if self.in_chunk >= self.chunk_rows {
            self.end_chunk()
        } else if self.batch_bytes >= BATCH_BYTES {
            self.flush()
        } else {
            Ok(())
        }
    }

    fn flush(&mut self) -> Result<(), ParseError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let capacity = self.batch.len();
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(capacity));
        self.batch_bytes = 0;
        self.tx
            .blocking_send(Msg::Rows(batch))
            .map_err(|_| ParseError::Cancelled)
    }

    fn end_chunk(&mut self) -> Result<(), ParseError> {
        if self.in_chunk == 0 {
            return Ok(());
        }
        self.flush()?;
        self.in_chunk = 0;
        self.tx
            .blocking_send(Msg::EndOfChunk)
            .map_err(|_| ParseError::Cancelled)
    }
}

/// Validates rows and feeds the valid ones to the batcher.
struct Rows<'a> {
    ctx: &'a RowContext,
    batcher: Batcher,
    summary: ParseSummary,
    /// The errors file could not be written: the import fails.
    log_failure: Option<std::io::Error>,
    /// A row beyond the limit was met: the import fails.
    over_rows: bool,
}

impl Rows<'_> {
    /// Why no further row may be read: the file had more rows than the limit allows, or the
    /// errors file cannot be written.
    fn stop(&self) -> Option<String> {
        if let Some(e) = &self.log_failure {
            return Some(temp_storage_failed(e));
        }
        let max = self.ctx.limits.max_rows;
        self.over_rows
            .then(|| format!("the file has more than {max} rows (the limit TMS_IMPORT_MAX_ROWS)"))
    }

    /// Whether one more row is over the limit (then it is not taken, and [`Rows::stop`] says so).
    fn full(&mut self) -> bool {
        self.over_rows |= self.summary.total >= self.ctx.limits.max_rows;
        self.over_rows
    }

    fn reject(&mut self, line: u64, reason: String) -> Result<(), ParseError> {
        if self.full() {
            return Ok(());
        }
        self.summary.total += 1;
        self.summary.rejected += 1;
        let reason = bounded_reason(reason);
        if let Err(e) = self.summary.errors.push(RowError { line, reason }) {
            self.log_failure = Some(e);
        }
        Ok(())
    }

    fn submit(&mut self, line: u64, submission: Submission) -> Result<(), ParseError> {
        if self.full() {
            return Ok(());
        }
        let source = Source::Import {
            import_id: self.ctx.import_id,
            line,
        };
        let validated = submission.validate(
            self.ctx.tenant.clone(),
            self.ctx.correlation_id.clone(),
            source,
            &self.ctx.rules,
        );
        let task: NewTask = match validated {
            Ok(task) => task,
            Err(errors) => return self.reject(line, errors.to_string()),
        };
        let payload = serde_json::to_string(&task.payload).expect("a JSON value serialises");
        let key = task.idempotency_key.expect("import rows always have a key");
        self.batcher.row(ImportRow {
            id: task.id,
            kind: task.kind,
            payload,
            max_attempts: task.max_attempts,
            run_after: task.run_after,
            idempotency_key: key,
            request_hash: task.request_hash,
            line,
            priority: task.priority,
        })?;
        self.summary.total += 1;
        self.summary.accepted += 1;
        Ok(())
    }

    fn default_key(&self, line: u64) -> String {
        import_row_key(&self.ctx.bucket, &self.ctx.key, &self.ctx.version, line)
    }

    fn finish(mut self, unreadable: Option<String>) -> Result<ParseSummary, ParseError> {
        let unreadable = unreadable.or_else(|| self.stop());
        if unreadable.is_none() {
            self.batcher.end_chunk()?;
        }
        self.summary.unreadable = unreadable;
        Ok(self.summary)
    }
}

/// Reads the whole object, sending valid rows to `tx` in chunks.
///
/// # Errors
/// [`ParseError`] when reading fails for a reason other than the file's content, or the loader
/// stopped listening.
pub fn parse<'a>(
    reader: impl Read + 'a,
    format: ImportFormat,
    compressed: bool,
    ctx: &RowContext,
    tx: Sender<Msg>,
) -> Result<ParseSummary, ParseError> {
    let errors = ErrorLog::new(ctx.limits.max_errors);
    parse_into(reader, format, compressed, ctx, tx, errors)
}

fn parse_into<'a>(
    reader: impl Read + 'a,
    format: ImportFormat,
    compressed: bool,
    ctx: &RowContext,
    tx: Sender<Msg>,
    errors: ErrorLog,
) -> Result<ParseSummary, ParseError> {
    let reader: Box<dyn Read + 'a> = if compressed {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    let count = Rc::new(ReadCount::default());
    let reader = Box::new(Bounded {
        inner: reader,
        count: count.clone(),
        max_bytes: ctx.limits.max_bytes,
        max_record: (format == ImportFormat::Csv).then_some(ctx.limits.max_record_bytes),
    });
    let rows = Rows {
        ctx,
        batcher: Batcher {
            tx,
            batch: Vec::new(),
            batch_bytes: 0,
            in_chunk: 0,
            chunk_rows: ctx.chunk_rows.max(1),
        },
        summary: ParseSummary {
            errors,
            ..ParseSummary::empty(0)
        },
        log_failure: None,
        over_rows: false,
    };
    match format {
        ImportFormat::Csv => parse_csv(reader, compressed, rows, &count),
        ImportFormat::Jsonl => parse_jsonl(reader, compressed, rows),
    }
}

fn utf8(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

const BOM: &str = "\u{feff}";

fn parse_csv(
    reader: Box<dyn Read + '_>,
    compressed: bool,
    mut rows: Rows<'_>,
    count: &ReadCount,
) -> Result<ParseSummary, ParseError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut record = csv::ByteRecord::new();
    let read = |csv: &mut csv::Reader<Box<dyn Read + '_>>, record: &mut csv::ByteRecord| match csv
        .read_byte_record(record)
    {
        Ok(more) => Ok(Ok(more)),
        Err(e) => match e.into_kind() {
            csv::ErrorKind::Io(io) => classify(io, compressed).map(Err),
            other => Ok(Err(format!("the CSV cannot be parsed: {other:?}"))),
        },
    };
    match read(&mut csv, &mut record)? {
        Ok(true) => {}
        Ok(false) => {
            return rows.finish(Some(
                "the file is empty: a CSV import needs a header row".into(),
            ))
        }
        Err(reason) => return rows.finish(Some(reason)),
    }
    let mut header = Vec::with_capacity(record.len());
    for (i, field) in record.iter().enumerate() {
        let Some(name) = utf8(field) else {
            return rows.finish(Some("the header row is not UTF-8".into()));
        };
        let name = if i == 0 {
            name.strip_prefix(BOM).unwrap_or(name)
        } else {
            name
        };
        header.push(name.trim().to_owned());
    }
    if let Some(problem) = header_problem(&header) {
        return rows.finish(Some(problem));
    }
    let kind_at = header.iter().position(|h| h == "kind").expect("checked");
    let key_at = header.iter().position(|h| h == "idempotency_key");
    let run_after_at = header.iter().position(|h| h == "run_after");
    loop {
        if let Some(reason) = rows.stop() {
            return rows.finish(Some(reason));
        }
        count.mark_record();
        match read(&mut csv, &mut record)? {
            Ok(true) => {}
            Ok(false) => break,
            Err(reason) => return rows.finish(Some(reason)),
        }
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != header.len() {
            rows.reject(
                line,
                format!("expected {} fields, found {}", header.len(), record.len()),
            )?;
            continue;
        }
        let mut fields = Vec::with_capacity(record.len());
        for field in record.iter() {
            match utf8(field) {
                Some(f) => fields.push(f),
                None => return rows.finish(Some(format!("the file is not UTF-8 (line {line})"))),
            }
        }
        let mut payload = Map::new();
        for (i, value) in fields.iter().enumerate() {
            if !value.is_empty() && !RESERVED_CSV_COLUMNS.contains(&header[i].as_str()) {
                payload.insert(header[i].clone(), Value::String((*value).to_owned()));
            }
        }
        let run_after = match run_after_at.map(|i| fields[i]).filter(|v| !v.is_empty()) {
            None => None,
            Some(raw) => {
                match parse_rfc3339(raw) {
                    Some(t) => Some(t),
                    None => {
                        rows.reject(line, "/run_after: must be an RFC 3339 date-time such as 2026-01-31T09:30:00Z".into())?;
                        continue;
                    }
                }
            }
        };
        let key = key_at
            .map(|i| fields[i])
            .filter(|v| !v.is_empty())
            .map_or_else(|| rows.default_key(line), str::to_owned);
        let submission = Submission {
            kind: fields[kind_at].to_owned(),
            payload: Value::Object(payload),
            idempotency_key: Some(key),
            run_after,
            max_attempts: None,
            priority: Priority::default(),
        };
        rows.submit(line, submission)?;
    }
    rows.finish(None)
}

fn header_problem(header: &[String]) -> Option<String> {
    if header.iter().any(String::is_empty) {
        return Some("the header row has an empty column name".into());
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = header.iter().find(|h| !seen.insert(h.as_str())) {
        return Some(format!("the header row names column {dup:?} twice"));
    }
    if !header.iter().any(|h| h == "kind") {
        return Some("the header row has no kind column".into());
    }
    None
}

/// One line of a JSON Lines import.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonlRow {
    kind: String,
    payload: Value,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    run_after: Option<String>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    priority: Priority,
}

/// Reads one line into `buf` without holding more than `cap` bytes of it. Returns `None` at
/// the end of the input, else whether the line was longer than `cap` (and was skipped).
fn read_line_capped(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(any.then_some(too_long));
        }
        any = true;
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        if !too_long {
            if buf.len() + chunk.len() > cap + 2 {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let used = chunk.len();
        reader.consume(used);
        if done {
            return Ok(Some(too_long));
        }
    }
}

fn parse_jsonl(
    reader: Box<dyn Read + '_>,
    compressed: bool,
    mut rows: Rows<'_>,
) -> Result<ParseSummary, ParseError> {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut buf = Vec::new();
    let mut line = 0u64;
    let max_line = rows.ctx.limits.max_record_bytes;
    loop {
        if let Some(reason) = rows.stop() {
            return rows.finish(Some(reason));
        }
        let too_long = match read_line_capped(&mut reader, &mut buf, max_line) {
            Ok(None) => break,
            Ok(Some(too_long)) => too_long,
            Err(e) => return rows.finish(Some(classify(e, compressed)?)),
        };
        line += 1;
        if too_long {
            rows.reject(
                line,
                format!(
                    "the line is longer than {max_line} bytes (the limit \
                     TMS_IMPORT_MAX_RECORD_BYTES)"
                ),
            )?;
            continue;
        }
        let Some(text) = utf8(&buf) else {
            return rows.finish(Some(format!("the file is not UTF-8 (line {line})")));
        };
        let text = if line == 1 {
            text.strip_prefix(BOM).unwrap_or(text)
        } else {
            text
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let parsed: JsonlRow = match serde_json::from_str(text) {
            Ok(row) => row,
            Err(e) => {
                rows.reject(line, format!("not a task submission: {e}"))?;
                continue;
            }
        };
        let run_after = match parsed.run_after.as_deref().map(parse_rfc3339) {
            None => None,
            Some(Some(t)) => Some(t),
            Some(None) => {
                rows.reject(
                    line,
                    "/run_after: must be an RFC 3339 date-time such as 2026-01-31T09:30:00Z".into(),
                )?;
                continue;
            }
        };
        let key = parsed
            .idempotency_key
            .unwrap_or_else(|| rows.default_key(line));
        rows.submit(
            line,
            Submission {
                kind: parsed.kind,
                payload: parsed.payload,
                idempotency_key: Some(key),
                run_after,
                max_attempts: parsed.max_attempts,
                priority: parsed.priority,
            },
        )?;
    }
    rows.finish(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(chunk_rows: usize) -> RowContext {
        ctx_with(chunk_rows, ImportLimits::default())
    }

    fn ctx_with(chunk_rows: usize, limits: ImportLimits) -> RowContext {
        RowContext {
            bucket: "b".into(),
            key: "imports/demo/x.csv".into(),
            version: "v1".into(),
            tenant: Tenant::parse("demo").unwrap(),
            import_id: ImportId::new(),
            correlation_id: CorrelationId::generate(),
            rules: tms::SubmissionRules::default(),
            chunk_rows,
            limits,
        }
    }

    /// Runs the parser, returning its summary and the chunks it produced (as row counts).
    fn run(
        input: &[u8],
        format: ImportFormat,
        compressed: bool,
        chunk_rows: usize,
    ) -> (ParseSummary, Vec<usize>) {
        run_with(input, format, compressed, &ctx(chunk_rows), None)
    }

    fn run_with(
        input: impl Read,
        format: ImportFormat,
        compressed: bool,
        ctx: &RowContext,
        errors: Option<ErrorLog>,
    ) -> (ParseSummary, Vec<usize>) {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let errors = errors.unwrap_or_else(|| ErrorLog::new(ctx.limits.max_errors));
        let summary = parse_into(input, format, compressed, ctx, tx, errors).expect("parse");
        let mut chunks = Vec::new();
        let mut current = 0;
        let mut last_line = 0;
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Msg::Rows(rows) => {
                    assert!(!rows.is_empty(), "no batch is empty");
                    for row in &rows {
                        assert!(row.line > last_line, "rows arrive in file order");
                        last_line = row.line;
                    }
                    current += rows.len();
                }
                Msg::EndOfChunk => {
                    assert!(current > 0, "no chunk is empty");
                    chunks.push(current);
                    current = 0;
                }
            }
        }
        assert_eq!(current, 0, "no chunk is left unterminated");
        (summary, chunks)
    }

    #[test]
    fn csv_rows_become_chunks_and_bad_rows_are_reported_by_line() {
        let csv = "kind,sender,recipient,subject,body\n\
                   email,a@example.com,b@example.com,Hi,\"multi\nline, with \"\"quotes\"\"\"\n\
                   email,not-an-address,b@example.com,Hi,x\n\
                   noop,,,,\n\
                   fax,,,,\n\
                   noop,too,many,fields,here,extra\n";
        let (summary, chunks) = run(csv.as_bytes(), ImportFormat::Csv, false, 2);
        assert_eq!(
            (summary.total, summary.accepted, summary.rejected),
            (5, 2, 3)
        );
        assert_eq!(chunks, vec![2]);
        let errors: Vec<(u64, &str)> = summary
            .errors
            .first
            .iter()
            .map(|e| (e.line, e.reason.as_str()))
            .collect();
        assert_eq!(
            errors[0].0, 4,
            "the line where the record starts (line 2 spans two lines)"
        );
        assert!(errors[0].1.contains("/payload/sender"), "{errors:?}");
        assert_eq!(errors[1].0, 6);
        assert!(errors[1].1.contains("/kind"));
        assert_eq!(errors[2], (7, "expected 5 fields, found 6"));
        assert!(summary.unreadable.is_none());
    }

    #[test]
    fn chunks_hold_at_most_chunk_rows() {
        let mut csv = String::from("kind,n\n");
        for i in 0..25 {
            csv.push_str(&format!("noop,{i}\n"));
        }
        let (summary, chunks) = run(csv.as_bytes(), ImportFormat::Csv, false, 10);
        assert_eq!(summary.accepted, 25);
        assert_eq!(chunks, vec![10, 10, 5]);
    }

    #[test]
    fn a_row_of_the_notification_kind_is_rejected() {
        let lines = "{\"kind\":\"noop\",\"payload\":{}}\n\
                     {\"kind\":\"notification\",\"payload\":{}}\n";
        let (summary, _) = run(lines.as_bytes(), ImportFormat::Jsonl, false, 10);
        assert_eq!((summary.accepted, summary.rejected), (1, 1));
        let error = &summary.errors.first[0];
        assert_eq!(error.line, 2);
        assert!(
            error.reason.contains("/kind") && error.reason.contains("created by TMS only"),
            "{}",
            error.reason
        );
    }

    #[test]
    fn row_reasons_are_bounded() {
        assert_eq!(bounded_reason("short".into()), "short");
        let long = bounded_reason("é".repeat(2000));
        assert!(
            long.len() <= REASON_MAX && long.ends_with('…'),
            "{}",
            long.len()
        );
        // serde quotes an unknown field's name in its message.
        let line = format!(
            r#"{{"kind":"noop","payload":{{}},"{}":1}}"#,
            "x".repeat(5000)
        );
        let (summary, _) = run(line.as_bytes(), ImportFormat::Jsonl, false, 10);
        assert_eq!(summary.rejected, 1);
        let reason = &summary.errors.first[0].reason;
        assert!(
            reason.len() <= REASON_MAX && reason.contains("unknown field"),
            "{reason}"
        );
    }

    #[test]
    fn unreadable_files_fail_with_a_reason() {
        let cases: [(&[u8], ImportFormat, bool, &str); 6] = [
            (b"", ImportFormat::Csv, false, "empty"),
            (
                b"sender,recipient\nx,y\n",
                ImportFormat::Csv,
                false,
                "no kind column",
            ),
            (b"kind,kind\nnoop,noop\n", ImportFormat::Csv, false, "twice"),
            (
                b"kind,n\nnoop,\xff\xfe\n",
                ImportFormat::Csv,
                false,
                "not UTF-8",
            ),
            (
                b"{\"kind\":\"noop\",\"payload\":{}}\n\xc3\x28\n",
                ImportFormat::Jsonl,
                false,
                "not UTF-8 (line 2)",
            ),
            (
                b"this is not gzip at all",
                ImportFormat::Jsonl,
                true,
                "gzip",
            ),
        ];
        for (input, format, gz, want) in cases {
            let (summary, _) = run(input, format, gz, 10);
            let reason = summary.unreadable.unwrap_or_default();
            assert!(reason.contains(want), "{want}: {reason}");
        }
    }

    #[test]
    fn jsonl_lines_with_defaults_blank_lines_and_errors() {
        // Within the run_after window (a year ahead by default) whenever the test runs.
        let later = (chrono::Utc::now() + chrono::Duration::days(30))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let jsonl = format!("\u{feff}{{\"kind\":\"noop\",\"payload\":{{}}}}\n\
                     \n\
                     {{\"kind\":\"archive\",\"payload\":{{\"name\":\"x\"}},\"idempotency_key\":\"mine\",\"run_after\":\"{later}\",\"max_attempts\":3}}\r\n\
                     {{\"kind\":\"noop\"}}\n\
                     not json\n\
                     {{\"kind\":\"noop\",\"payload\":{{}},\"run_after\":\"soon\"}}\n\
                     {{\"kind\":\"noop\",\"payload\":{{}},\"tenant\":\"other\"}}");
        let (summary, chunks) = run(jsonl.as_bytes(), ImportFormat::Jsonl, false, 100);
        assert_eq!(
            (summary.total, summary.accepted, summary.rejected),
            (6, 2, 4)
        );
        assert_eq!(chunks, vec![2]);
        let lines: Vec<u64> = summary.errors.first.iter().map(|e| e.line).collect();
        assert_eq!(lines, [4, 5, 6, 7]);
    }

    /// The batches the parser sent (end-of-chunk markers left out).
    fn batches(input: &[u8], format: ImportFormat, chunk_rows: usize) -> Vec<Vec<ImportRow>> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let ctx = ctx(chunk_rows);
        parse(input, format, false, &ctx, tx).expect("parse");
        let mut out = Vec::new();
        while let Ok(msg) = rx.try_recv() {
            if let Msg::Rows(rows) = msg {
                out.push(rows);
            }
        }
        out
    }

    #[test]
    fn valid_rows_carry_the_validated_task() {
        let later = (chrono::Utc::now() + chrono::Duration::days(30))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let jsonl = format!(
            "{{\"kind\":\"archive\",\"payload\":{{\"name\":\"ü\"}},\"idempotency_key\":\"mine\",\"run_after\":\"{later}\",\"max_attempts\":3}}\n\
             {{\"kind\":\"noop\",\"payload\":{{}}}}\n"
        );
        let rows: Vec<ImportRow> = batches(jsonl.as_bytes(), ImportFormat::Jsonl, 10)
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(rows.len(), 2);
        let (first, second) = (&rows[0], &rows[1]);
        assert_eq!(
            (first.kind, first.payload.as_str(), first.max_attempts),
            (tms::TaskKind::Archive, r#"{"name":"ü"}"#, 3)
        );
        assert_eq!((first.idempotency_key.as_str(), first.line), ("mine", 1));
        assert_eq!(first.run_after, parse_rfc3339(&later));
        assert_eq!(
            (second.run_after, second.line, second.max_attempts),
            (None, 2, tms::DEFAULT_MAX_ATTEMPTS)
        );
        assert_eq!(second.idempotency_key, "b/imports/demo/x.csv#v1:2");
        assert_ne!(first.id, second.id);
        assert_ne!(first.request_hash, second.request_hash);
    }

    #[test]
    fn batches_stay_near_their_size_within_a_chunk() {
        let mut jsonl = String::new();
        for _ in 0..100 {
            jsonl.push_str(&format!(
                "{{\"kind\":\"noop\",\"payload\":{{\"x\":\"{}\"}}}}\n",
                "a".repeat(10 * 1024)
            ));
        }
        let sent = batches(jsonl.as_bytes(), ImportFormat::Jsonl, 1000);
        assert!(sent.len() > 1, "{} batches", sent.len());
        assert_eq!(sent.iter().map(Vec::len).sum::<usize>(), 100);
        for batch in &sent {
            let bytes: usize = batch
                .iter()
                .map(|r| r.payload.capacity() + r.idempotency_key.capacity() + ROW_BYTES)
                .sum();
            let last = batch.last().map_or(0, |r| r.payload.capacity());
            assert!(
                bytes < BATCH_BYTES + last + 1024,
                "{bytes} bytes in a batch"
            );
        }
    }

    #[test]
    fn gzip_is_read_transparently() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"kind\nnoop\nnoop\n").unwrap();
        let (summary, chunks) = run(&gz.finish().unwrap(), ImportFormat::Csv, true, 10);
        assert_eq!((summary.accepted, chunks), (2, vec![2]));
    }

    #[test]
    fn an_overlong_jsonl_line_is_rejected_without_holding_it() {
        let long = format!("{{\"kind\":\"noop\",\"payload\":{{\"x\":\"{}\"}}}}\n{{\"kind\":\"noop\",\"payload\":{{}}}}\n", "a".repeat(MAX_LINE_BYTES + 10));
        let (summary, _) = run(long.as_bytes(), ImportFormat::Jsonl, false, 10);
        assert_eq!((summary.accepted, summary.rejected), (1, 1));
        assert!(summary.errors.first[0].reason.contains("longer than"));
    }

    #[test]
    fn the_error_log_keeps_the_first_hundred_and_writes_all() {
        let mut csv = String::from("kind\n");
        for _ in 0..150 {
            csv.push_str("fax\n");
        }
        let (summary, _) = run(csv.as_bytes(), ImportFormat::Csv, false, 10);
        assert_eq!(summary.errors.first.len(), REPORT_ERRORS);
        assert_eq!(summary.errors.count, 150);
        let file = summary.errors.into_file().unwrap().unwrap();
        let text = std::fs::read_to_string(file.path()).unwrap();
        assert_eq!(text.lines().count(), 150);
        let first: RowError = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first.line, 2);
    }

    /// An endless source that counts what was taken from it.
    struct Endless<'a> {
        head: &'a [u8],
        fill: u8,
        taken: &'a std::cell::Cell<u64>,
    }

    impl Read for Endless<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = if self.head.is_empty() {
                buf.fill(self.fill);
                buf.len()
            } else {
                let n = self.head.len().min(buf.len());
                buf[..n].copy_from_slice(&self.head[..n]);
                self.head = &self.head[n..];
                n
            };
            self.taken.set(self.taken.get() + n as u64);
            Ok(n)
        }
    }

    fn limits(f: impl FnOnce(&mut ImportLimits)) -> ImportLimits {
        let mut l = ImportLimits::default();
        f(&mut l);
        l
    }

    #[test]
    fn an_unterminated_csv_quote_fails_the_file_without_reading_it_all() {
        let taken = std::cell::Cell::new(0);
        let source = Endless {
            head: b"kind,note\nnoop,\"never closed",
            fill: b'x',
            taken: &taken,
        };
        let ctx = ctx_with(10, limits(|l| l.max_record_bytes = 64 * 1024));
        let (summary, chunks) =
            run_with(source.take(50 << 20), ImportFormat::Csv, false, &ctx, None);
        let reason = summary.unreadable.unwrap_or_default();
        assert!(reason.contains("TMS_IMPORT_MAX_RECORD_BYTES"), "{reason}");
        assert!(chunks.is_empty(), "nothing is loaded");
        assert!(
            taken.get() < 64 * 1024 + 64 * 1024,
            "read {} bytes of a 50 MiB record before giving up",
            taken.get()
        );
    }

    #[test]
    fn a_gzip_that_expands_past_the_limit_fails_naming_it() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(b"kind,n\n").unwrap();
        for _ in 0..200_000 {
            gz.write_all(b"noop,0000000000000000\n").unwrap();
        }
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 100 * 1024, "{} bytes compressed", bomb.len());
        let ctx = ctx_with(1000, limits(|l| l.max_bytes = 1024 * 1024));
        let (summary, _) = run_with(&bomb[..], ImportFormat::Csv, true, &ctx, None);
        let reason = summary.unreadable.unwrap_or_default();
        assert!(reason.contains("TMS_IMPORT_MAX_BYTES"), "{reason}");
    }

    #[test]
    fn more_rows_than_the_limit_fail_the_file() {
        let mut csv = String::from("kind\n");
        for _ in 0..11 {
            csv.push_str("noop\n");
        }
        let ctx = ctx_with(100, limits(|l| l.max_rows = 10));
        let (summary, _) = run_with(csv.as_bytes(), ImportFormat::Csv, false, &ctx, None);
        assert!(summary
            .unreadable
            .unwrap_or_default()
            .contains("TMS_IMPORT_MAX_ROWS"));
        let mut jsonl = String::new();
        for _ in 0..10 {
            jsonl.push_str("{\"kind\":\"noop\",\"payload\":{}}\n");
        }
        let (summary, _) = run_with(jsonl.as_bytes(), ImportFormat::Jsonl, false, &ctx, None);
        assert_eq!(
            (summary.accepted, summary.unreadable),
            (10, None),
            "ten rows fit"
        );
    }

    #[test]
    fn the_errors_file_keeps_the_first_errors_and_counts_them_all() {
        let mut csv = String::from("kind\n");
        for _ in 0..150 {
            csv.push_str("fax\n");
        }
        let ctx = ctx_with(10, limits(|l| l.max_errors = 20));
        let (summary, _) = run_with(csv.as_bytes(), ImportFormat::Csv, false, &ctx, None);
        assert_eq!(
            (
                summary.rejected,
                summary.errors.count,
                summary.errors.kept()
            ),
            (150, 150, 20)
        );
        assert!(summary.unreadable.is_none());
        let file = summary.errors.into_file().unwrap().unwrap();
        let text = std::fs::read_to_string(file.path()).unwrap();
        assert_eq!(text.lines().count(), 20);
    }

    #[test]
    fn a_full_disk_fails_the_import_instead_of_retrying_it() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let log = ErrorLog {
            file: Some(std::io::BufWriter::with_capacity(16, Spool::Device(full))),
            ..ErrorLog::new(100)
        };
        let (summary, chunks) = run_with(
            &b"kind\nfax\nnoop\n"[..],
            ImportFormat::Csv,
            false,
            &ctx(10),
            Some(log),
        );
        let reason = summary.unreadable.unwrap_or_default();
        assert!(reason.contains("temporary storage"), "{reason}");
        assert!(chunks.is_empty());
    }
}
