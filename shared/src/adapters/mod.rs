//! Adapters: the ports implemented against PostgreSQL and AWS.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "ssm")]
pub mod ssm;
