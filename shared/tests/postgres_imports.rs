//! The import session against the real cluster: typed rows are loaded and read back as the
//! tasks they create, and what a chunk costs the database must not grow with the rows the same
//! import already loaded.

use chrono::{DateTime, TimeZone, Utc};
use futures::StreamExt;
use tms::ports::{ImportClaim, ImportOutcome, ImportSession, ImportStore, NewImport};
use tms::{CorrelationId, ImportCounts, ImportFormat, ImportId, ImportRow, TaskId, TaskKind};
use tms_testkit::tasks::tenant;
use tms_testkit::{statement_blocks, TestDb};

const CHUNK_ROWS: u64 = 1_000;
const CHUNKS: u64 = 12;

fn noop_row(line: u64) -> ImportRow {
    ImportRow {
        id: TaskId::new(),
        kind: TaskKind::Noop,
        payload: format!(r#"{{"n":{line},"note":"row {line}"}}"#),
        max_attempts: 5,
        run_after: None,
        idempotency_key: format!("bucket/imports/demo/rows.csv#v1:{line}"),
        request_hash: [7; 32],
        line,
        priority: tms::Priority::Normal,
    }
}

/// One chunk of rows, lines `first..first + CHUNK_ROWS`.
fn chunk(first: u64) -> Vec<ImportRow> {
    (first..first + CHUNK_ROWS).map(noop_row).collect()
}

fn new_import(key: &str) -> NewImport {
    NewImport {
        id: ImportId::new(),
        tenant: tenant("demo"),
        bucket: "bucket".into(),
        key: key.into(),
        version: "v1".into(),
        format: ImportFormat::Csv,
        compressed: false,
        correlation_id: CorrelationId::generate(),
    }
}

async fn start(store: &impl ImportStore, new: &NewImport) -> Box<dyn ImportSession> {
    match store.begin(new).await.unwrap() {
        ImportClaim::Started { session, .. } => session,
        _ => panic!("a new import starts"),
    }
}

fn completed(created: u64) -> ImportOutcome {
    ImportOutcome {
        counts: ImportCounts {
            total: created,
            accepted: created,
            rejected: 0,
            created,
        },
        report_key: None,
        errors_key: None,
        error: None,
    }
}

#[tokio::test]
async fn typed_rows_are_loaded_as_the_tasks_they_describe() {
    let db = TestDb::new().await;
    let store = db.store();
    let new = new_import("imports/demo/typed.jsonl");
    let mut session = start(&store, &new).await;
    let later = Utc.with_ymd_and_hms(2031, 5, 6, 7, 8, 9).unwrap()
        + chrono::Duration::microseconds(123_456);
    let rows = [
        ImportRow {
            id: TaskId::new(),
            kind: TaskKind::Archive,
            payload: r#"{"name": "ünïcode \"quoted\"", "n": [1, 2.5, null]}"#.into(),
            max_attempts: 3,
            run_after: Some(later),
            idempotency_key: "mine".into(),
            request_hash: std::array::from_fn(|i| i as u8),
            line: 2,
            priority: tms::Priority::High,
        },
        noop_row(4),
        ImportRow {
            // A key an earlier row of the chunk holds: the first one wins.
            id: TaskId::new(),
            idempotency_key: "mine".into(),
            ..noop_row(5)
        },
        // Enough rows for several of the adapter's buffers.
        ImportRow {
            payload: format!(r#"{{"big":"{}"}}"#, "x".repeat(200 * 1024)),
            ..noop_row(6)
        },
        ImportRow {
            payload: format!(r#"{{"big":"{}"}}"#, "y".repeat(200 * 1024)),
            ..noop_row(7)
        },
    ];
    let (first, rest) = rows.split_at(2);
    let batches = futures::stream::iter([first.to_vec(), rest.to_vec()]).boxed();
    let created = session.load_chunk(batches).await.unwrap();
    let mut created_ids: Vec<TaskId> = created.iter().map(|t| t.id).collect();
    created_ids.sort();
    let mut want = vec![rows[0].id, rows[1].id, rows[3].id, rows[4].id];
    want.sort();
    assert_eq!(created_ids, want, "one task per new key");
    let first_created = created.iter().find(|t| t.id == rows[0].id).unwrap();
    assert_eq!(first_created.run_after, later);
    assert_eq!(
        first_created.priority,
        tms::Priority::High,
        "its message goes to the high-priority queue"
    );
    let other = created.iter().find(|t| t.id == rows[1].id).unwrap();
    assert_eq!(other.priority, tms::Priority::Normal);
    // A second chunk with keys the import already created creates nothing.
    let again = futures::stream::iter([vec![noop_row(4)]]).boxed();
    assert!(session.load_chunk(again).await.unwrap().is_empty());
    session.finish(&completed(4)).await.unwrap();

    let admin = db.admin().await;
    let stored = admin
        .query(
            "SELECT id, tenant, kind, payload::text AS payload, max_attempts, run_after,              idempotency_key, request_hash, correlation_id, source, import_id, import_line,              status, created_at, priority FROM tms.tasks ORDER BY import_line",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(stored.len(), 4);
    for (row, want) in stored.iter().zip([&rows[0], &rows[1], &rows[3], &rows[4]]) {
        let line = want.line;
        assert_eq!(row.get::<_, uuid::Uuid>("id"), *want.id.as_uuid(), "{line}");
        assert_eq!(row.get::<_, &str>("tenant"), "demo");
        assert_eq!(row.get::<_, &str>("kind"), want.kind.as_str());
        assert_eq!(row.get::<_, &str>("payload"), want.payload, "{line}");
        assert_eq!(row.get::<_, i32>("max_attempts") as u32, want.max_attempts);
        assert_eq!(
            row.get::<_, &str>("priority"),
            want.priority.as_str(),
            "{line}"
        );
        let run_after: DateTime<Utc> = row.get("run_after");
        match want.run_after {
            Some(t) => assert_eq!(run_after, t),
            None => assert_eq!(
                run_after,
                row.get::<_, DateTime<Utc>>("created_at"),
                "due when loaded"
            ),
        }
        assert_eq!(row.get::<_, &str>("idempotency_key"), want.idempotency_key);
        assert_eq!(row.get::<_, &[u8]>("request_hash"), want.request_hash);
        assert_eq!(
            row.get::<_, &str>("correlation_id"),
            new.correlation_id.as_str()
        );
        assert_eq!(row.get::<_, &str>("source"), "import");
        assert_eq!(row.get::<_, uuid::Uuid>("import_id"), *new.id.as_uuid());
        assert_eq!(row.get::<_, i64>("import_line") as u64, line);
        assert_eq!(row.get::<_, &str>("status"), "pending");
    }
}

#[tokio::test]
async fn a_row_the_database_refuses_is_reported_as_refused() {
    let db = TestDb::new().await;
    let store = db.store();
    for (key, row) in [
        (
            "imports/demo/check.csv",
            ImportRow {
                max_attempts: 21,
                ..noop_row(2)
            },
        ),
        (
            "imports/demo/range.csv",
            ImportRow {
                max_attempts: u32::MAX,
                ..noop_row(2)
            },
        ),
        (
            "imports/demo/array.csv",
            ImportRow {
                payload: "[1]".into(),
                ..noop_row(2)
            },
        ),
    ] {
        let mut session = start(&store, &new_import(key)).await;
        let batches = futures::stream::iter([vec![noop_row(1), row]]).boxed();
        let err = session.load_chunk(batches).await.unwrap_err();
        assert!(err.is_refused(), "{key}: {err}");
    }
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
    let mut session = start(&store, &new_import("imports/demo/rows.csv")).await;
    let mut blocks = Vec::new();
    let mut before = statement_blocks(&admin, STAGED_INSERT).await;
    for i in 0..CHUNKS {
        let data = futures::stream::iter([chunk(1 + i * CHUNK_ROWS)]).boxed();
        let created = session.load_chunk(data).await.unwrap();
        assert_eq!(
            created.len() as u64,
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
