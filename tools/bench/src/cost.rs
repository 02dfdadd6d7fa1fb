//! What a task costs on AWS, from the billed durations the bench measured under its Runtime API
//! and the list prices below, beside the always-on stack such systems usually run on: two
//! Fargate tasks of 0.5 vCPU and 1 GB behind an Application Load Balancer. PostgreSQL serves
//! both the same and is left out of both.
//!
//! A task is: one `POST /v1/tasks` through API Gateway's HTTP API (one API invocation, one
//! `SendMessage`), one share of a worker invocation (a batch), and that share of the event
//! source mapping's `ReceiveMessage` and `DeleteMessageBatch`.
//!
//! Lambda gives a function CPU in proportion to its memory, a whole vCPU at 1,769 MB. The bench
//! measures on whole cores, so a duration at a smaller size is estimated as the measured one
//! plus the CPU time it used, stretched: wall + cpu × (1769 / MB − 1). Each invocation is billed
//! in whole milliseconds, rounded up.

use crate::lambda::Warm;
use crate::report::{median, Line, Report};

/// us-east-1 list prices (USD), from the AWS pricing pages for Lambda, API Gateway, SQS, Fargate
/// and Elastic Load Balancing, as read on 2026-12-02.
mod price {
    /// Lambda on arm64, per GB-second (the first 7.5 billion a month).
    pub const LAMBDA_GB_SECOND: f64 = 0.000_013_333_4;
    pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
    /// HTTP API, per request (the first 300 million a month).
    pub const HTTP_API_REQUEST: f64 = 1.00 / 1e6;
    /// SQS standard queue, per request (64 KB chunk).
    pub const SQS_REQUEST: f64 = 0.40 / 1e6;
    /// Fargate, Linux on x86, per vCPU-hour and per GB-hour.
    pub const FARGATE_VCPU_HOUR: f64 = 0.040_48;
    pub const FARGATE_GB_HOUR: f64 = 0.004_445;
    /// Application Load Balancer, per hour and per LCU-hour.
    pub const ALB_HOUR: f64 = 0.0225;
    pub const ALB_LCU_HOUR: f64 = 0.008;
}

const HOURS_A_MONTH: f64 = 730.0;
const FULL_VCPU_MB: f64 = 1769.0;
pub const MEMORY_SIZES_MB: [f64; 3] = [128.0, 512.0, 1024.0];
pub const TASKS_A_MONTH: [f64; 3] = [1e6, 10e6, 100e6];

/// The measured figures a task's cost comes from.
pub struct Figures<'a> {
    /// Warm creates of the API.
    pub create: &'a Warm,
    /// Warm worker invocations of `batch_size` noop tasks.
    pub batch: &'a Warm,
    pub batch_size: usize,
}

/// The billed milliseconds of a median invocation at `mb`.
fn billed_ms(warm: &Warm, mb: f64) -> f64 {
    let stretch = (FULL_VCPU_MB / mb - 1.0).max(0.0);
    (median(&warm.billed) + warm.cpu_per_invocation * stretch).ceil()
}

/// Dollars per task at `mb`, every function at that size.
pub fn per_task(f: &Figures, mb: f64) -> f64 {
    let gb = mb / 1024.0;
    let batch = f.batch_size as f64;
    let api =
        gb * billed_ms(f.create, mb) / 1000.0 * price::LAMBDA_GB_SECOND + price::LAMBDA_REQUEST;
    let worker = (gb * billed_ms(f.batch, mb) / 1000.0 * price::LAMBDA_GB_SECOND
        + price::LAMBDA_REQUEST)
        / batch;
    let sqs = (1.0 + 2.0 / batch) * price::SQS_REQUEST;
    api + worker + sqs + price::HTTP_API_REQUEST
}

/// Dollars a month for two Fargate tasks of 0.5 vCPU / 1 GB and a load balancer carrying
/// `tasks` creates (one LCU takes 25 new connections a second: each create counted as one).
pub fn always_on(tasks: f64) -> f64 {
    let fargate =
        2.0 * (0.5 * price::FARGATE_VCPU_HOUR + 1.0 * price::FARGATE_GB_HOUR) * HOURS_A_MONTH;
    let per_second = tasks / (HOURS_A_MONTH * 3600.0);
    let lcus = per_second / 25.0;
    fargate + (price::ALB_HOUR + lcus * price::ALB_LCU_HOUR) * HOURS_A_MONTH
}

pub fn report(report: &mut Report, f: &Figures) {
    for mb in MEMORY_SIZES_MB {
        report.push(
            Line::new(
                format!("cost per million tasks, {mb:.0} MB"),
                per_task(f, mb) * 1e6,
                "$",
            )
            .note(format!(
                "create billed {:.0} ms, worker {:.0} ms a batch of {} (estimated at {mb:.0} MB); \
                 HTTP API, Lambda, SQS; arm64 us-east-1 list prices of 2026-12-02",
                billed_ms(f.create, mb),
                billed_ms(f.batch, mb),
                f.batch_size
            )),
        );
    }
    let cheapest = MEMORY_SIZES_MB
        .into_iter()
        .min_by(|a, b| per_task(f, *a).total_cmp(&per_task(f, *b)))
        .unwrap_or(128.0);
    for tasks in TASKS_A_MONTH {
        report.push(
            Line::new(
                format!(
                    "cost a month at {:.0} M tasks ({cheapest:.0} MB)",
                    tasks / 1e6
                ),
                per_task(f, cheapest) * tasks,
                "$",
            )
            .baseline("Fargate 2 x 0.5 vCPU / 1 GB + ALB", always_on(tasks))
            .note("PostgreSQL left out of both"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warm(billed: f64, cpu: f64) -> Warm {
        Warm {
            latency: vec![billed],
            billed: vec![billed],
            cpu_per_invocation: cpu,
        }
    }

    #[test]
    fn a_smaller_function_is_billed_for_its_cpu_time_stretched_and_rounded_up() {
        let w = warm(2.2, 0.5);
        assert_eq!(billed_ms(&w, 1769.0), 3.0);
        assert_eq!(billed_ms(&w, 3538.0), 3.0, "no faster than a whole vCPU");
        // 2.2 + 0.5 × (1769 / 128 − 1) = 8.61 → 9
        assert_eq!(billed_ms(&w, 128.0), 9.0);
    }

    #[test]
    fn a_task_costs_its_share_of_every_request() {
        let (create, batch) = (warm(1.0, 0.0), warm(1.0, 0.0));
        let f = Figures {
            create: &create,
            batch: &batch,
            batch_size: 10,
        };
        let gb_ms = 0.125 * 0.001 * price::LAMBDA_GB_SECOND;
        let expected = gb_ms
            + price::LAMBDA_REQUEST
            + (gb_ms + price::LAMBDA_REQUEST) / 10.0
            + 1.2 * price::SQS_REQUEST
            + price::HTTP_API_REQUEST;
        assert!((per_task(&f, 128.0) - expected).abs() < 1e-15);
    }

    #[test]
    fn the_always_on_stack_costs_the_same_at_any_small_volume() {
        // 2 × (0.02024 + 0.004445) × 730 + 0.0225 × 730 ≈ 52.47, plus LCUs.
        assert!((always_on(0.0) - 52.465).abs() < 0.01);
        assert!(always_on(100e6) > always_on(1e6));
    }
}
