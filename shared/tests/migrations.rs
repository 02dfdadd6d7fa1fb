//! Migrations: embedded, applied once under the advisory lock, and constraints that make
//! invalid rows impossible.

use tms::adapters::postgres::migrate;
use tms_testkit::TestDb;

#[tokio::test]
async fn migrations_apply_once_even_when_run_concurrently() {
    let db = TestDb::empty().await;
    let (mut a, mut b) = (db.admin().await, db.admin().await);
    let (ra, rb) = tokio::join!(migrate::migrate(&mut a), migrate::migrate(&mut b));
    let (ra, rb) = (ra.expect("first run"), rb.expect("second run"));
    let mut applied = [ra, rb].concat();
    applied.sort();
    assert_eq!(
        applied,
        migrate::embedded(),
        "each migration applied exactly once"
    );
    assert!(
        migrate::migrate(&mut a).await.unwrap().is_empty(),
        "a third run changes nothing"
    );
    let tables: Vec<String> = a
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'tms' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        tables,
        [
            "console_logins",
            "console_sessions",
            "flow_limits",
            "imports",
            "notifications",
            "refinery_schema_history",
            "schedules",
            "subscriptions",
            "task_events",
            "tasks",
            "triggers",
            "webhook_signing"
        ]
    );
    let public: i64 = a
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(public, 0, "nothing is created in schema public");
}

const INSERT: &str = "INSERT INTO tms.tasks (id, tenant, kind, payload, correlation_id, source) \
                      VALUES (gen_random_uuid(), 'demo', 'noop', '{}', 'c', 'api')";

async fn violates(client: &tokio_postgres::Client, sql: &str) -> String {
    let err = client.batch_execute(sql).await.expect_err(sql);
    err.as_db_error()
        .and_then(|e| e.constraint().map(str::to_owned))
        .or_else(|| err.code().map(|c| c.code().to_owned()))
        .unwrap_or_else(|| err.to_string())
}

#[tokio::test]
async fn constraints_reject_invalid_rows() {
    let db = TestDb::new().await;
    let c = db.admin().await;
    c.batch_execute(INSERT)
        .await
        .expect("a valid row is accepted");
    let cases = [
        (format!("{INSERT}; UPDATE tms.tasks SET status = 'paused'"), "tasks_status_check"),
        (format!("{INSERT}; UPDATE tms.tasks SET attempts = 6"), "tasks_attempts_within_budget"),
        (format!("{INSERT}; UPDATE tms.tasks SET max_attempts = 21"), "tasks_max_attempts_check"),
        (format!("{INSERT}; UPDATE tms.tasks SET status = 'running'"), "tasks_lease_iff_running"),
        (format!("{INSERT}; UPDATE tms.tasks SET status = 'succeeded'"), "tasks_result_iff_succeeded"),
        (format!("{INSERT}; UPDATE tms.tasks SET status = 'dead'"), "tasks_error_when_dead"),
        (INSERT.replace("'{}'", "'[]'"), "tasks_payload_check"),
        (INSERT.replace("'demo'", "'a/b'"), "tasks_tenant_check"),
        (INSERT.replace("'api'", "'import'"), "tasks_import_source"),
        (
            "INSERT INTO tms.task_events (task_id, from_status, to_status, attempt, correlation_id) \
             SELECT id, 'succeeded', 'running', 1, 'c' FROM tms.tasks LIMIT 1"
                .to_owned(),
            "task_events_allowed_transition",
        ),
    ];
    for (sql, constraint) in cases {
        let sql = format!("BEGIN; {sql}; COMMIT");
        assert_eq!(violates(&c, &sql).await, constraint, "{sql}");
        c.batch_execute("ROLLBACK").await.ok();
    }
    let keyed = INSERT
        .replace("source)", "source, idempotency_key, request_hash)")
        .replace("'api')", "'api', 'k1', sha256('x'))");
    c.batch_execute(&keyed).await.unwrap();
    assert_eq!(violates(&c, &keyed).await, "tasks_idempotency_key_unique");
    let other_tenant = keyed.replace("'demo'", "'other'");
    c.batch_execute(&other_tenant)
        .await
        .expect("keys are unique per tenant only");
}
