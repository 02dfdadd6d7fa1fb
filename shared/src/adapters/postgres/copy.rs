//! PostgreSQL binary COPY encoding of import rows for the staging table. Rows are encoded into
//! large buffers and streamed to the server, which is several times faster than a row-at-a-time
//! writer (see TOOLING.md).

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// `PGCOPY\n\377\r\n\0`, no flags, no header extension.
pub const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The field count -1 that ends binary COPY data.
pub const COPY_TRAILER: &[u8] = &[0xff, 0xff];

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// One valid row of an import, as the staging table holds it.
#[derive(Debug, Clone, Copy)]
pub struct StagedRow<'a> {
    pub id: Uuid,
    pub kind: &'a str,
    /// The payload as JSON text.
    pub payload: &'a str,
    pub max_attempts: i32,
    pub run_after: Option<DateTime<Utc>>,
    pub idempotency_key: &'a str,
    pub request_hash: &'a [u8; 32],
    pub line: i64,
}

/// The staging table's columns, in [`encode_row`]'s order.
pub const STAGING_COLUMNS: &str =
    "id uuid NOT NULL, kind text NOT NULL, payload json NOT NULL, max_attempts int4 NOT NULL, \
     run_after timestamptz, idempotency_key text NOT NULL, request_hash bytea NOT NULL, \
     import_line int8 NOT NULL";

fn field(buf: &mut BytesMut, bytes: &[u8]) {
    buf.put_i32(bytes.len() as i32);
    buf.put_slice(bytes);
}

/// Appends one tuple.
pub fn encode_row(buf: &mut BytesMut, row: &StagedRow<'_>) {
    buf.put_i16(8);
    field(buf, row.id.as_bytes());
    field(buf, row.kind.as_bytes());
    field(buf, row.payload.as_bytes());
    buf.put_i32(4);
    buf.put_i32(row.max_attempts);
    match row.run_after {
        Some(t) => {
            buf.put_i32(8);
            buf.put_i64(t.timestamp_micros() - PG_EPOCH_MICROS);
        }
        None => buf.put_i32(-1),
    }
    field(buf, row.idempotency_key.as_bytes());
    field(buf, row.request_hash);
    buf.put_i32(8);
    buf.put_i64(row.line);
}
