//! Logging of the local tools and the tests: text on standard error. The functions log through
//! the Lambda runtime's own subscriber (`lambda_runtime::tracing::init_default_subscriber`:
//! JSON under `AWS_LAMBDA_LOG_FORMAT=JSON`, the level from `AWS_LAMBDA_LOG_LEVEL`, else
//! `RUST_LOG`), and metrics as EMF lines ([`metrics`]).
//!
//! The level here comes from `RUST_LOG`, else `AWS_LAMBDA_LOG_LEVEL`, else the default given;
//! `RUST_LOG` takes levels and per-target levels (`info`, `warn,tms=debug`).

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter `RUST_LOG`, else `AWS_LAMBDA_LOG_LEVEL`, else `default` describes; an unparsable
/// value falls through to the next.
fn filter(default: &str) -> Targets {
    filter_from(
        std::env::var("RUST_LOG").ok().as_deref(),
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
        default,
    )
}

fn filter_from(rust_log: Option<&str>, lambda_level: Option<&str>, default: &str) -> Targets {
    let parse = |v: &str| v.to_lowercase().parse::<Targets>().ok();
    rust_log
        .and_then(parse)
        .or_else(|| lambda_level.and_then(parse))
        .or_else(|| parse(default))
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO))
}

/// Installs the global subscriber once; later calls do nothing.
pub fn init_logging() {
    init_logging_with_default("info");
}

/// As [`init_logging`], with another filter when neither variable sets one.
pub fn init_logging_with_default(default: &str) {
    let result = tracing_subscriber::fmt()
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .finish()
        .with(filter(default))
        .try_init();
    drop(result);
}

pub mod metrics;

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn the_level_comes_from_rust_log_then_lambda_then_the_default() {
        let f = filter_from(Some("warn,tms=debug"), Some("ERROR"), "info");
        assert!(f.would_enable("tms::store", &Level::DEBUG));
        assert!(!f.would_enable("hyper", &Level::INFO));
        assert!(f.would_enable("hyper", &Level::WARN));
        let f = filter_from(None, Some("ERROR"), "info");
        assert!(!f.would_enable("tms", &Level::WARN));
        assert!(f.would_enable("tms", &Level::ERROR));
        let f = filter_from(Some("not a filter=="), None, "info");
        assert!(f.would_enable("tms", &Level::INFO));
        assert!(!f.would_enable("tms", &Level::DEBUG));
    }
}
