//! Adapters: the ports implemented against PostgreSQL and AWS.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "events")]
pub mod events;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(feature = "ses")]
pub mod ses;
#[cfg(feature = "sqs")]
pub mod sqs;
#[cfg(feature = "ssm")]
pub mod ssm;
