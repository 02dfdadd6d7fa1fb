//! PostgreSQL binary COPY encoding of import rows for the staging table. Rows are encoded into
//! large buffers and streamed to the server, which is several times faster than a row-at-a-time
//! writer (see TOOLING.md).

use bytes::{BufMut, BytesMut};

use crate::domain::ImportRow;
use crate::ports::StoreError;

/// `PGCOPY\n\377\r\n\0`, no flags, no header extension.
pub(super) const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The field count -1 that ends binary COPY data.
pub(super) const COPY_TRAILER: &[u8] = &[0xff, 0xff];

/// Encoded rows are sent to the server in buffers of about this size.
pub(super) const BUFFER_BYTES: usize = 256 * 1024;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The staging table's columns, in [`encode_row`]'s order.
pub(super) const STAGING_COLUMNS: &str =
    "id uuid NOT NULL, kind text NOT NULL, payload json NOT NULL, max_attempts int4 NOT NULL, \
     run_after timestamptz, idempotency_key text NOT NULL, request_hash bytea NOT NULL, \
     import_line int8 NOT NULL, priority text NOT NULL";

fn field(buf: &mut BytesMut, bytes: &[u8]) {
    buf.put_i32(bytes.len() as i32);
    buf.put_slice(bytes);
}

fn out_of_range(row: &ImportRow, column: &str) -> StoreError {
    StoreError::Refused(format!(
        "line {}: {column} is out of the column's range",
        row.line
    ))
}

/// Appends one tuple.
///
/// # Errors
/// [`StoreError::Refused`] when a value does not fit its column (nothing is appended then).
pub(super) fn encode_row(buf: &mut BytesMut, row: &ImportRow) -> Result<(), StoreError> {
    let max_attempts =
        i32::try_from(row.max_attempts).map_err(|_| out_of_range(row, "max_attempts"))?;
    let line = i64::try_from(row.line).map_err(|_| out_of_range(row, "import_line"))?;
    buf.put_i16(9);
    field(buf, row.id.as_uuid().as_bytes());
    field(buf, row.kind.as_str().as_bytes());
    field(buf, row.payload.as_bytes());
    buf.put_i32(4);
    buf.put_i32(max_attempts);
    match row.run_after {
        Some(t) => {
            buf.put_i32(8);
            buf.put_i64(t.timestamp_micros() - PG_EPOCH_MICROS);
        }
        None => buf.put_i32(-1),
    }
    field(buf, row.idempotency_key.as_bytes());
    field(buf, &row.request_hash);
    buf.put_i32(8);
    buf.put_i64(line);
    field(buf, row.priority.as_str().as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::domain::{TaskId, TaskKind};

    fn row(line: u64) -> ImportRow {
        ImportRow {
            id: TaskId::new(),
            kind: TaskKind::Archive,
            payload: r#"{"name":"ü"}"#.into(),
            max_attempts: 3,
            run_after: Some(Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 1).unwrap()),
            idempotency_key: "key-1".into(),
            request_hash: [7; 32],
            line,
            priority: crate::domain::Priority::High,
        }
    }

    /// Reads one tuple's fields (`None` for NULL), advancing `at`; `None` at the trailer.
    fn tuple<'a>(data: &'a [u8], at: &mut usize) -> Option<Vec<Option<&'a [u8]>>> {
        let count = i16::from_be_bytes(data[*at..*at + 2].try_into().unwrap());
        *at += 2;
        if count == -1 {
            return None;
        }
        let mut fields = Vec::new();
        for _ in 0..count {
            let len = i32::from_be_bytes(data[*at..*at + 4].try_into().unwrap());
            *at += 4;
            if len < 0 {
                fields.push(None);
            } else {
                fields.push(Some(&data[*at..*at + len as usize]));
                *at += len as usize;
            }
        }
        Some(fields)
    }

    #[test]
    fn rows_are_encoded_as_binary_copy_tuples_of_the_staging_columns() {
        let first = row(2);
        let second = ImportRow {
            run_after: None,
            kind: TaskKind::Noop,
            ..row(3)
        };
        let mut buf = BytesMut::from(COPY_HEADER);
        encode_row(&mut buf, &first).unwrap();
        encode_row(&mut buf, &second).unwrap();
        buf.extend_from_slice(COPY_TRAILER);

        let data = &buf[..];
        assert!(data.starts_with(b"PGCOPY\n\xff\r\n\0"));
        let mut at = COPY_HEADER.len();
        let fields = tuple(data, &mut at).expect("the first row");
        assert_eq!(fields.len(), STAGING_COLUMNS.split(", ").count());
        let expected: [Option<&[u8]>; 9] = [
            Some(first.id.as_uuid().as_bytes()),
            Some(b"archive"),
            Some(r#"{"name":"ü"}"#.as_bytes()),
            Some(&3i32.to_be_bytes()),
            Some(&1_000_000i64.to_be_bytes()),
            Some(b"key-1"),
            Some(&[7; 32]),
            Some(&2i64.to_be_bytes()),
            Some(b"high"),
        ];
        assert_eq!(fields, expected);
        let fields = tuple(data, &mut at).expect("the second row");
        assert_eq!(fields[1], Some(&b"noop"[..]));
        assert_eq!(fields[4], None, "no run_after is NULL");
        assert_eq!(fields[7], Some(&3i64.to_be_bytes()[..]));
        assert_eq!(tuple(data, &mut at), None, "the trailer ends the data");
        assert_eq!(at, data.len());
    }

    #[test]
    fn a_value_out_of_its_column_range_is_refused_without_writing() {
        let mut buf = BytesMut::new();
        let too_many = ImportRow {
            max_attempts: u32::MAX,
            ..row(9)
        };
        let err = encode_row(&mut buf, &too_many).unwrap_err();
        assert!(
            err.is_refused() && err.to_string().contains("line 9"),
            "{err}"
        );
        let far = row(u64::MAX);
        assert!(encode_row(&mut buf, &far).unwrap_err().is_refused());
        assert!(buf.is_empty());
    }
}
