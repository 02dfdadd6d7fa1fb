//! Package size: each function's arm64 zip as `make build` leaves it.

use std::time::SystemTime;

use crate::bench::Bench;
use crate::init::FUNCTIONS;
use crate::report::{Line, Promise, Report};

/// 5 MB, in decimal megabytes as the figure is printed.
pub const MAX_ZIP_MB: f64 = 10.0;

pub fn measure(bench: &Bench, report: &mut Report) {
    for function in FUNCTIONS {
        let name = format!("tms-{function}");
        let zip = bench
            .stack
            .root
            .join("target/lambda")
            .join(&name)
            .join("bootstrap.zip");
        let line = match std::fs::metadata(&zip) {
            Ok(meta) => {
                let age = meta
                    .modified()
                    .ok()
                    .and_then(|m| SystemTime::now().duration_since(m).ok())
                    .map_or(String::new(), |d| {
                        format!("built {} h ago", d.as_secs() / 3600)
                    });
                Line::new(
                    format!("package {name}: zip"),
                    meta.len() as f64 / 1e6,
                    "MB",
                )
                .promise(Promise::AtMost(MAX_ZIP_MB))
                .note(format!(
                    "{}; {age}",
                    zip.strip_prefix(&bench.stack.root)
                        .unwrap_or(&zip)
                        .display()
                ))
            }
            Err(_) => Line::missing(
                format!("package {name}: zip"),
                "MB",
                Promise::AtMost(MAX_ZIP_MB),
                format!("{} not found: run `make build` first", zip.display()),
            ),
        };
        report.push(line);
    }
}
