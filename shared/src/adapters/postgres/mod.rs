//! PostgreSQL adapter: connection settings with TLS, the pool, migrations and the task store.

#[cfg(feature = "migrations")]
pub mod bootstrap;
mod console;
mod copy;
mod error;
mod filter;
mod imports;
mod limits;
#[cfg(feature = "migrations")]
pub mod migrate;
mod notifications;
mod overview;
mod pool;
mod rows;
mod scheduler;
mod schedules;
mod setup;
mod store;
mod submissions;
mod subscriptions;
mod triggers;

pub use error::store_error;
pub use pool::{Object, PasswordSource, PgSettings, PgSetupError, Pool};
pub use setup::{open_store, open_store_planning, Planning, SetupError};
pub use store::PostgresStore;
