//! PostgreSQL adapter: connection settings with TLS, the pool, migrations and the task store.

pub mod bootstrap;
mod error;
pub mod migrate;
mod pool;
mod rows;
mod scheduler;
mod store;
mod submissions;

pub use error::store_error;
pub use pool::{PgSettings, PgSetupError, Pool};
pub use store::PostgresStore;
