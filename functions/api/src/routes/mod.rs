//! The route handlers.

pub mod system;
pub mod tasks;
