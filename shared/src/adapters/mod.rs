//! Adapters: the ports implemented against PostgreSQL and AWS.

#[cfg(feature = "postgres")]
pub mod postgres;
