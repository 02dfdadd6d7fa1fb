//! The privilege matrix: what each login user may and may not do in a database the
//! bootstrapper set up. Run with `--no-capture` to print the matrix.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tms::adapters::postgres::bootstrap;
use tms_testkit::{admin_settings, TestDb, TestRoles};

const TASK_ROW: &str = "INSERT INTO tms.tasks (id, tenant, kind, payload, correlation_id, source) \
                        VALUES (gen_random_uuid(), 'demo', 'noop', '{}', 'c', 'api')";

/// A probe: a name, the SQL (run in a transaction that is rolled back), and whether the
/// migrator, the application and the read-only user may run it.
struct Probe {
    name: &'static str,
    sql: String,
    allowed: [bool; 3],
}

fn probe(name: &'static str, sql: impl Into<String>, allowed: [bool; 3]) -> Probe {
    Probe {
        name,
        sql: sql.into(),
        allowed,
    }
}

fn probes(roles: &bootstrap::Roles) -> Vec<Probe> {
    const ALL: [bool; 3] = [true, true, true];
    const NONE: [bool; 3] = [false, false, false];
    const OWNER: [bool; 3] = [true, false, false];
    const WRITERS: [bool; 3] = [true, true, false];
    let mut list = vec![
        probe("CREATE TABLE in schema tms", "CREATE TABLE tms.probe (i int)", OWNER),
        probe("CREATE TABLE in schema public", "CREATE TABLE public.probe (i int)", NONE),
        probe("CREATE SCHEMA", "CREATE SCHEMA probe", NONE),
        probe("CREATE EXTENSION (trusted)", "CREATE EXTENSION pgcrypto", NONE),
        probe("DROP TABLE tms.tasks", "DROP TABLE tms.tasks CASCADE", OWNER),
        probe("ALTER TABLE tms.tasks", "ALTER TABLE tms.tasks ADD COLUMN probe int", OWNER),
        probe("CREATE INDEX on tms.tasks", "CREATE INDEX probe ON tms.tasks (kind)", OWNER),
        probe("CREATE FUNCTION in tms", "CREATE FUNCTION tms.probe() RETURNS int LANGUAGE sql AS 'SELECT 1'", OWNER),
        probe("TRUNCATE tms.tasks", "TRUNCATE tms.tasks CASCADE", OWNER),
        // A GRANT without the right only warns, so the probe checks that it took effect.
        probe(
            "GRANT on tms.tasks (takes effect)",
            "GRANT SELECT ON tms.tasks TO PUBLIC; DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_class c, \
             aclexplode(c.relacl) a WHERE c.oid = 'tms.tasks'::regclass AND a.grantee = 0) THEN \
             RAISE EXCEPTION 'nothing granted' USING ERRCODE = 'insufficient_privilege'; END IF; END $$",
            OWNER,
        ),
    ];
    for table in ["tasks", "task_events", "imports"] {
        let insert = match table {
            "tasks" => TASK_ROW.to_owned(),
            "task_events" => "INSERT INTO tms.task_events (task_id, from_status, to_status, attempt, correlation_id) \
                              SELECT id, NULL, 'pending', 0, 'c' FROM tms.tasks".to_owned(),
            _ => "INSERT INTO tms.imports SELECT * FROM tms.imports".to_owned(),
        };
        let (select, update, delete) = (
            format!("SELECT count(*) FROM tms.{table}"),
            format!("UPDATE tms.{table} SET correlation_id = correlation_id WHERE false"),
            format!("DELETE FROM tms.{table} WHERE false"),
        );
        list.push(Probe {
            name: Box::leak(format!("SELECT from tms.{table}").into_boxed_str()),
            sql: select,
            allowed: ALL,
        });
        list.push(Probe {
            name: Box::leak(format!("INSERT into tms.{table}").into_boxed_str()),
            sql: insert,
            allowed: WRITERS,
        });
        list.push(Probe {
            name: Box::leak(format!("UPDATE tms.{table}").into_boxed_str()),
            sql: update,
            allowed: WRITERS,
        });
        list.push(Probe {
            name: Box::leak(format!("DELETE from tms.{table}").into_boxed_str()),
            sql: delete,
            allowed: WRITERS,
        });
    }
    list.extend([
        probe(
            "SELECT the migration history",
            "SELECT count(*) FROM tms.refinery_schema_history",
            ALL,
        ),
        probe(
            "write the migration history",
            "DELETE FROM tms.refinery_schema_history WHERE false",
            OWNER,
        ),
        probe(
            "CREATE TEMP TABLE",
            "CREATE TEMP TABLE probe (i int)",
            [false, true, false],
        ),
        probe("CREATE ROLE", "CREATE ROLE probe", NONE),
        probe("SET ROLE to its own group", "SELECT 1", ALL), // replaced per user below
        probe("SET ROLE to another group", "SELECT 1", NONE), // replaced per user below
        probe("SET ROLE postgres", "SET ROLE postgres", NONE),
        probe("read pg_authid", "SELECT count(*) FROM pg_authid", NONE),
        probe(
            "SET ROLE pg_read_server_files",
            "SET ROLE pg_read_server_files",
            NONE,
        ),
        probe(
            "pg_read_file (server files)",
            "SELECT pg_read_file('postgresql.conf')",
            NONE,
        ),
        probe(
            "COPY from a server file",
            "COPY tms.imports FROM '/etc/hostname'",
            NONE,
        ),
    ]);
    let _ = roles;
    list
}

/// The SET ROLE probes depend on the user.
fn sql_for(probe: &Probe, user: usize, roles: &bootstrap::Roles) -> String {
    let own = [roles.migration(), roles.application(), roles.readonly()];
    let other = [roles.application(), roles.migration(), roles.application()];
    match probe.name {
        "SET ROLE to its own group" => format!("SET ROLE {}", bootstrap::quote_ident(&own[user])),
        "SET ROLE to another group" => format!("SET ROLE {}", bootstrap::quote_ident(&other[user])),
        _ => probe.sql.clone(),
    }
}

#[tokio::test]
async fn each_login_user_has_exactly_its_privileges() {
    let roles = TestRoles::new();
    let db = TestDb::empty().await;
    let neighbour = TestDb::new().await; // another deployment's database on the same cluster
    let report = bootstrap::bootstrap(&db.admin_settings(), &roles.roles, &roles.logins)
        .await
        .expect("bootstrap");
    assert!(!report.migrations_applied.is_empty());
    let r = &roles.roles;
    let users = [
        (r.migrator(), roles.logins.migrator.clone()),
        (r.app(), roles.logins.app.clone()),
        (r.dev(), roles.logins.dev.clone()),
    ];
    let probes = Arc::new(probes(r));
    let mut matrix: BTreeMap<usize, [bool; 3]> = BTreeMap::new();
    let mut connect_rows: Vec<(&str, [bool; 3], [bool; 3])> = Vec::new();
    let mut failures = Vec::new();
    for (u, (user, password)) in users.iter().enumerate() {
        let client = db.connect_as(user, password).await;
        let path: String = client
            .query_one("SHOW search_path", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(path, "tms", "{user}'s search_path is pinned");
        for (i, p) in probes.iter().enumerate() {
            let sql = sql_for(p, u, r);
            client.batch_execute("BEGIN").await.unwrap();
            let outcome = client.batch_execute(&sql).await;
            client.batch_execute("ROLLBACK").await.unwrap();
            let allowed = match &outcome {
                Ok(()) => true,
                Err(e) => {
                    let code = e.code().map(|c| c.code().to_owned()).unwrap_or_default();
                    // Refusals are privilege errors, never incidental ones.
                    assert!(
                        code == "42501"
                            || code == "0LP01"
                            || code == "22023" && p.name.starts_with("SET ROLE"),
                        "{user}: probe {:?} failed for another reason: {e:?}",
                        p.name
                    );
                    false
                }
            };
            matrix.entry(i).or_default()[u] = allowed;
            if allowed != p.allowed[u] {
                failures.push(format!(
                    "{user}: {} is {} but should be {}",
                    p.name,
                    if allowed { "allowed" } else { "refused" },
                    if p.allowed[u] { "allowed" } else { "refused" }
                ));
            }
        }
    }
    for (name, target, want) in [
        (
            "CONNECT to its own database",
            db.name.as_str(),
            [true, true, true],
        ),
        (
            "CONNECT to another TMS database",
            neighbour.name.as_str(),
            [false, false, false],
        ),
        // NOTE: PUBLIC may connect to the maintenance database by PostgreSQL's default; it holds
        // no TMS data and nothing can be created there. The bootstrapper leaves it alone.
        (
            "CONNECT to the maintenance database postgres",
            "postgres",
            [true, true, true],
        ),
    ] {
        let mut got = [false; 3];
        for (u, (user, password)) in users.iter().enumerate() {
            let settings = admin_settings(target).with_login(user, password);
            got[u] = tokio::time::timeout(Duration::from_secs(5), settings.connect())
                .await
                .is_ok_and(|r| r.is_ok());
            if got[u] != want[u] {
                failures.push(format!("{user}: {name} is {got:?}, expected {want:?}"));
            }
        }
        connect_rows.push((name, got, want));
    }
    println!(
        "\n{:<48} {:>9} {:>9} {:>9}",
        "probe",
        r.migrator(),
        r.app(),
        r.dev()
    );
    let mark = |b: bool| if b { "allowed" } else { "refused" };
    for (i, p) in probes.iter().enumerate() {
        let m = matrix[&i];
        println!(
            "{:<48} {:>9} {:>9} {:>9}",
            p.name,
            mark(m[0]),
            mark(m[1]),
            mark(m[2])
        );
    }
    for (name, got, _) in &connect_rows {
        println!(
            "{:<48} {:>9} {:>9} {:>9}",
            name,
            mark(got[0]),
            mark(got[1]),
            mark(got[2])
        );
    }
    println!("{} probes per user", probes.len() + connect_rows.len());
    assert!(probes.len() + connect_rows.len() >= 30);
    assert!(
        failures.is_empty(),
        "privilege matrix differs from the design:\n{}",
        failures.join("\n")
    );
}
