//! The route handlers.

pub mod imports;
pub mod system;
pub mod tasks;
