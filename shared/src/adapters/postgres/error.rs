//! Mapping driver and pool errors to [`StoreError`].

use tokio_postgres::error::SqlState;

use crate::ports::StoreError;

/// Connection-level failures are `Unavailable` (retry later); content the server refuses
/// (data exceptions, integrity constraints, program limits such as an index row's size) is
/// `Refused`; the rest are `Database`.
pub fn store_error(err: tokio_postgres::Error) -> StoreError {
    if is_connectivity(&err) {
        return StoreError::Unavailable(Box::new(err));
    }
    match err.as_db_error() {
        Some(db) if refuses_content(db.code()) => StoreError::Refused(match db.constraint() {
            Some(constraint) => format!("{} (constraint {constraint})", db.message()),
            None => db.message().to_owned(),
        }),
        _ => StoreError::Database(Box::new(err)),
    }
}

/// SQLSTATE classes 22 (data exception), 23 (integrity constraint violation) and 54 (program
/// limit exceeded).
fn refuses_content(code: &SqlState) -> bool {
    matches!(&code.code()[..2], "22" | "23" | "54")
}

fn is_connectivity(err: &tokio_postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    if let Some(code) = err.code() {
        let class = &code.code()[..2];
        return class == "08"
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
            ]
            .contains(code);
    }
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError;
        match err {
            PoolError::Backend(e) => store_error(e),
            other => StoreError::Unavailable(Box::new(other)),
        }
    }
}
