//! The `WHERE` conditions of a [`Scope`] and a [`TaskFilter`]: one statement per combination of
//! conditions given (each gets a plan that uses its index), the values as parameters.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;

use crate::domain::{Scope, Status};
use crate::ports::TaskFilter;

/// A parameter of a built statement.
pub(crate) enum Param {
    Text(String),
    Time(DateTime<Utc>),
    Uuid(uuid::Uuid),
    Int(i64),
    Texts(Vec<String>),
}

impl Param {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Self::Text(v) => v,
            Self::Time(v) => v,
            Self::Uuid(v) => v,
            Self::Int(v) => v,
            Self::Texts(v) => v,
        }
    }
}

/// Conditions joined by `AND`, with their parameters (`$1`...).
#[derive(Default)]
pub(crate) struct Conditions {
    sql: String,
    params: Vec<Param>,
}

impl Conditions {
    /// The scope's and the filter's conditions on the task table aliased `alias.` (or none).
    pub(crate) fn tasks(scope: &Scope, filter: &TaskFilter, alias: &str) -> Self {
        let mut c = Self::default();
        if let Some(tenant) = scope.tenant() {
            c.push(
                &format!("{alias}tenant = $"),
                Param::Text(tenant.as_str().into()),
            );
        }
        if let Some(status) = filter.status {
            c.push(
                &format!("{alias}status = $"),
                Param::Text(status.as_str().into()),
            );
        }
        if let Some(kind) = filter.kind {
            c.push(
                &format!("{alias}kind = $"),
                Param::Text(kind.as_str().into()),
            );
        }
        if let Some(source) = filter.source {
            c.push(
                &format!("{alias}source = $"),
                Param::Text(source.as_str().into()),
            );
        }
        if let Some(after) = filter.created_after {
            c.push(&format!("{alias}created_at >= $"), Param::Time(after));
        }
        if let Some(before) = filter.created_before {
            c.push(&format!("{alias}created_at < $"), Param::Time(before));
        }
        if let Some(text) = filter.text.as_deref().filter(|t| !t.is_empty()) {
            let pattern = format!("%{}%", escape_like(text));
            let n = c.param(Param::Text(pattern));
            c.and(&format!(
                "({alias}idempotency_key ILIKE ${n} OR {alias}correlation_id ILIKE ${n})"
            ));
        }
        c
    }

    /// Adds `condition` followed by the number of `value`'s parameter.
    pub(crate) fn push(&mut self, condition: &str, value: Param) {
        let n = self.param(value);
        self.and(&format!("{condition}{n}"));
    }

    /// Only tasks in one of `statuses`.
    pub(crate) fn statuses(&mut self, alias: &str, statuses: &[Status]) {
        let names = statuses.iter().map(|s| s.as_str().to_owned()).collect();
        self.push(&format!("{alias}status = ANY($"), Param::Texts(names));
        self.sql.push(')');
    }

    /// Adds a parameter; its number.
    pub(crate) fn param(&mut self, value: Param) -> usize {
        self.params.push(value);
        self.params.len()
    }

    pub(crate) fn and(&mut self, condition: &str) {
        if !self.sql.is_empty() {
            self.sql.push_str(" AND ");
        }
        self.sql.push_str(condition);
    }

    /// ` WHERE ...`, or nothing without conditions.
    pub(crate) fn where_clause(&self) -> String {
        let mut out = String::new();
        if !self.sql.is_empty() {
            let _ = write!(out, " WHERE {}", self.sql);
        }
        out
    }

    pub(crate) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params.iter().map(Param::as_sql).collect()
    }
}

/// `text` matched literally by `LIKE`/`ILIKE` (its `%`, `_` and `\` escaped).
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{SourceKind, TaskKind, Tenant};

    #[test]
    fn each_filter_adds_its_condition_and_parameter() {
        let scope = Scope::Tenant(Tenant::parse("demo").unwrap());
        let filter = TaskFilter {
            status: Some(Status::Dead),
            kind: Some(TaskKind::Webhook),
            source: Some(SourceKind::Import),
            created_after: Some(DateTime::UNIX_EPOCH),
            created_before: None,
            text: Some("50%_off".into()),
        };
        let c = Conditions::tasks(&scope, &filter, "t.");
        assert_eq!(
            c.where_clause(),
            " WHERE t.tenant = $1 AND t.status = $2 AND t.kind = $3 AND t.source = $4 \
             AND t.created_at >= $5 AND (t.idempotency_key ILIKE $6 OR t.correlation_id ILIKE $6)"
        );
        assert_eq!(c.params().len(), 6);
        assert!(matches!(&c.params[5], Param::Text(p) if p == "%50\\%\\_off%"));
        let all = Conditions::tasks(&Scope::All, &TaskFilter::default(), "");
        assert_eq!(all.where_clause(), "");
    }
}
