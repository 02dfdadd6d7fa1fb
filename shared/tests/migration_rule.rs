//! The expand/contract rule (README, "Migrations"): a migration may not break the code of the
//! release before it, which keeps running while a deployment shifts traffic and after a
//! rollback. Statements that remove or narrow what that code uses are allowed only in a
//! migration marked `-- contract:`, written a release after the code stopped using it.

use std::path::Path;

/// Statements that break code written for the schema before them.
const BREAKING: [(&str, &str); 8] = [
    (r"(?i)\bdrop\s+table\b", "drops a table"),
    (r"(?i)\bdrop\s+column\b", "drops a column"),
    (
        r"(?i)\brename\s+(column\s+)?\w+\s+to\b|\brename\s+to\b",
        "renames",
    ),
    (
        r"(?i)\balter\s+column\s+\w+\s+(set\s+data\s+)?type\b",
        "changes a column's type",
    ),
    (
        r"(?i)\balter\s+column\s+\w+\s+set\s+not\s+null\b",
        "makes a column NOT NULL",
    ),
    // Checked by `not_null_without_default` (the regex crate has no look-ahead).
    (
        r"(?i)\badd\s+column\s+[^,;]*\bnot\s+null\b",
        "adds a NOT NULL column without a default",
    ),
    (
        r"(?i)\bdrop\s+(view|function|type|schema)\b",
        "drops an object",
    ),
    (r"(?i)\btruncate\b", "empties a table"),
];

/// The `ADD COLUMN ... NOT NULL` clauses of `code` that have no default.
fn not_null_without_default(code: &str) -> bool {
    regex::Regex::new(r"(?i)\badd\s+column\s+[^,;]*")
        .unwrap()
        .find_iter(code)
        .map(|m| m.as_str().to_ascii_lowercase())
        .any(|clause| {
            regex::Regex::new(r"\bnot\s+null\b")
                .unwrap()
                .is_match(&clause)
                && !regex::Regex::new(r"\bdefault\b").unwrap().is_match(&clause)
        })
}

/// What in `sql` breaks the previous release's code, unless the migration is marked as a
/// contract step.
fn breaking(sql: &str) -> Vec<&'static str> {
    if sql
        .lines()
        .any(|l| l.trim_start().starts_with("-- contract:"))
    {
        return Vec::new();
    }
    let code: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    BREAKING
        .iter()
        .filter(|(pattern, what)| {
            regex::Regex::new(pattern).unwrap().is_match(&code)
                && (!what.starts_with("adds a NOT NULL") || not_null_without_default(&code))
        })
        .map(|(_, what)| *what)
        .collect()
}

#[test]
fn every_migration_is_backward_compatible_or_a_marked_contract_step() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("sql") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let sql = std::fs::read_to_string(&path).unwrap();
        let found = breaking(&sql);
        // V1 creates the schema: there is no release before it.
        if !name.starts_with("V1__") {
            assert!(
                found.is_empty(),
                "{name} {}: the previous release's code would break (expand first; contract a \
                 release later in a migration marked `-- contract: <what no code uses now>`)",
                found.join(", ")
            );
        }
        checked += 1;
    }
    assert!(checked >= 4, "the migrations were found ({checked})");
}

#[test]
fn the_rule_tells_expand_from_contract() {
    for expand in [
        "ALTER TABLE tms.tasks ADD COLUMN note text;",
        "ALTER TABLE tms.tasks ADD COLUMN tries int NOT NULL DEFAULT 0;",
        "CREATE TABLE tms.x (id int NOT NULL);",
        "CREATE INDEX CONCURRENTLY x ON tms.tasks (kind);",
        "ALTER TABLE tms.task_events DROP CONSTRAINT task_events_task_id_fkey;",
        "-- we no longer drop table here\nSELECT 1;",
    ] {
        assert_eq!(breaking(expand), Vec::<&str>::new(), "{expand}");
    }
    for (contract, what) in [
        ("DROP TABLE tms.old;", "drops a table"),
        ("ALTER TABLE tms.tasks DROP COLUMN note;", "drops a column"),
        (
            "ALTER TABLE tms.tasks RENAME COLUMN note TO remark;",
            "renames",
        ),
        (
            "ALTER TABLE tms.tasks ALTER COLUMN tries TYPE bigint;",
            "changes a column's type",
        ),
        (
            "ALTER TABLE tms.tasks ALTER COLUMN note SET NOT NULL;",
            "makes a column NOT NULL",
        ),
        (
            "ALTER TABLE tms.tasks ADD COLUMN owner text NOT NULL;",
            "adds a NOT NULL column without a default",
        ),
    ] {
        assert_eq!(breaking(contract), [what], "{contract}");
        let marked =
            format!("-- contract: nothing reads it since the previous release\n{contract}");
        assert!(breaking(&marked).is_empty(), "{marked}");
    }
}
