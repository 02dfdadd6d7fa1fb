//! TMS shared crate: the pure domain, the ports the functions depend on, the adapters that
//! implement them, configuration from the environment and telemetry.

pub mod cache;
pub mod config;
pub mod deadline;
pub mod domain;
pub mod notify;
pub mod ports;
pub mod retry;
pub mod telemetry;
pub mod tls;

pub mod adapters;

pub use domain::*;
