//! The pool replaces connections the server closed instead of failing the caller's query.

use tms::ports::TaskRepository;
use tms_testkit::tasks::noop;
use tms_testkit::TestDb;

#[tokio::test]
async fn a_connection_killed_between_two_calls_is_replaced() {
    let db = TestDb::new().await;
    let store = db.store();
    let task = noop("demo");
    store.create(&task).await.expect("first call");
    let admin = db.admin().await;
    let killed: i64 = admin
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()) k",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed >= 1, "the pool's connection was terminated");
    // pg_terminate_backend only signals: wait until the server has closed the connection (a
    // connection killed while the next call is already on its way fails that call, checked or
    // not).
    for _ in 0..100 {
        let left: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let found = store
        .get(&tms::Scope::Tenant(task.tenant.clone()), task.id)
        .await
        .expect("second call succeeds");
    assert_eq!(found.map(|t| t.id), Some(task.id));
    store.ping().await.expect("and the next one too");
}
