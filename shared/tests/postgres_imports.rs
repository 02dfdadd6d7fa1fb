//! The import session against the real cluster: what a chunk costs the database must not grow
//! with the rows the same import already loaded.

use bytes::BytesMut;
use futures::StreamExt;
use tms::adapters::postgres::copy::{encode_row, StagedRow, COPY_HEADER, COPY_TRAILER};
use tms::ports::{ImportClaim, ImportStore, NewImport};
use tms::{CorrelationId, ImportFormat, ImportId, TaskId};
use tms_testkit::tasks::tenant;
use tms_testkit::{statement_blocks, TestDb};

const CHUNK_ROWS: i64 = 1_000;
const CHUNKS: i64 = 12;

/// One chunk of binary COPY data, lines `first..first + CHUNK_ROWS`.
fn chunk(first: i64) -> bytes::Bytes {
    let mut buf = BytesMut::from(COPY_HEADER);
    for line in first..first + CHUNK_ROWS {
        let payload = format!(r#"{{"n":{line},"note":"row {line}"}}"#);
        let key = format!("bucket/imports/demo/rows.csv#v1:{line}");
        encode_row(
            &mut buf,
            &StagedRow {
                id: *TaskId::new().as_uuid(),
                kind: "noop",
                payload: &payload,
                max_attempts: 5,
                run_after: None,
                idempotency_key: &key,
                request_hash: &[7; 32],
                line,
            },
        );
    }
    buf.extend_from_slice(COPY_TRAILER);
    buf.freeze()
}

/// The staged insert of the import sessions (with everything it fires).
const STAGED_INSERT: &str = "%FROM pg_temp.tms_import_rows%";

/// The worst case is a table with pages but known to hold no rows when the import's connection
/// plans its statements: the foreign key that events once had was checked with a plan made then and kept
/// for the connection's life, which scanned a whole (tenant, status, id) index per event, so a
/// chunk cost grew with the rows the import had already loaded (a million-row import slowed
/// from seconds to minutes per chunk).
#[tokio::test]
async fn a_chunk_costs_the_same_however_many_rows_the_import_already_loaded() {
    let db = TestDb::new().await;
    let store = db.store();
    db.track_statements().await;
    let admin = db.admin().await;
    // The tables after retention deleted every task and autoanalyze ran: pages known to hold no
    // rows (a rolled-back import leaves the same). Every index then costs the same to the
    // planner for a lookup by id, and which one it takes is a tie; without index scans (which
    // can stop at the first match) any plan that looks rows up by id while an import inserts
    // shows its true cost.
    admin
        .batch_execute(
            "INSERT INTO tms.tasks (id, tenant, kind, payload, correlation_id, source) \
             SELECT gen_random_uuid(), 'demo', 'noop', '{}', 'c', 'api' FROM generate_series(1, 5000); \
             DELETE FROM tms.tasks; ANALYZE tms.tasks; \
             DO $$ BEGIN \
               EXECUTE format('ALTER DATABASE %I SET enable_indexscan = off', current_database()); \
             END $$",
        )
        .await
        .unwrap();
    let new = NewImport {
        id: ImportId::new(),
        tenant: tenant("demo"),
        bucket: "bucket".into(),
        key: "imports/demo/rows.csv".into(),
        version: "v1".into(),
        format: ImportFormat::Csv,
        compressed: false,
        correlation_id: CorrelationId::generate(),
    };
    let ImportClaim::Started { mut session, .. } = store.begin(&new).await.unwrap() else {
        panic!("a new import starts");
    };
    let mut blocks = Vec::new();
    let mut before = statement_blocks(&admin, STAGED_INSERT).await;
    for i in 0..CHUNKS {
        let data = futures::stream::iter([chunk(1 + i * CHUNK_ROWS)]).boxed();
        let created = session.load_chunk(data).await.unwrap();
        assert_eq!(
            created.len() as i64,
            CHUNK_ROWS,
            "chunk {i} creates its rows"
        );
        let after = statement_blocks(&admin, STAGED_INSERT).await;
        blocks.push(after - before);
        before = after;
    }
    let (second, last) = (blocks[1], blocks[blocks.len() - 1]);
    assert!(
        second > 0,
        "pg_stat_statements saw the staged insert: {blocks:?}"
    );
    assert!(
        last <= second * 2,
        "the last chunk touched {last} buffers, the second {second}: the cost per chunk grows \
         with the import's own rows (buffers per chunk: {blocks:?})"
    );
}
