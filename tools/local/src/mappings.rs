//! How events reach the functions: the SQS event source mappings and the EventBridge
//! schedules of `template.yaml`, restated for the local runner. A test checks that the two
//! agree, so the local run behaves like a deployment.

use std::time::Duration;

/// One SQS event source mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// The function resource in `template.yaml`.
    pub function: &'static str,
    /// The event's name under the function's `Events`.
    pub event: &'static str,
    /// The queue resource it reads.
    pub queue: &'static str,
    pub batch_size: usize,
    pub batching_window: Duration,
    pub maximum_concurrency: usize,
    /// The function's timeout: the deadline of each invocation.
    pub timeout: Duration,
}

pub const WORKER: Mapping = Mapping {
    function: "WorkerFunction",
    event: "WorkQueue",
    queue: "WorkQueue",
    batch_size: 10,
    batching_window: Duration::from_secs(1),
    maximum_concurrency: 10,
    timeout: Duration::from_secs(60),
};

/// The worker's second mapping, from the work queue of `high` tasks: a backlog of `normal`
/// tasks on the work queue never stands in front of them.
pub const HIGH_WORKER: Mapping = Mapping {
    function: "WorkerFunction",
    event: "HighWorkQueue",
    queue: "HighWorkQueue",
    ..WORKER
};

pub const IMPORTER: Mapping = Mapping {
    function: "ImporterFunction",
    event: "ImportQueue",
    queue: "ImportQueue",
    batch_size: 1,
    batching_window: Duration::ZERO,
    maximum_concurrency: 2,
    timeout: Duration::from_secs(900),
};

pub const MAPPINGS: [Mapping; 3] = [WORKER, HIGH_WORKER, IMPORTER];

/// One EventBridge schedule of the scheduler function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// The event's name under `SchedulerFunction.Events`.
    pub event: &'static str,
    /// The schedule expression, as in the template.
    pub expression: &'static str,
    pub every: Duration,
    /// The constant input the function receives.
    pub input: &'static str,
}

pub const SCHEDULES: [Schedule; 5] = [
    Schedule {
        event: "Relay",
        expression: "rate(1 minute)",
        every: Duration::from_secs(60),
        input: r#"{"job":"relay"}"#,
    },
    Schedule {
        event: "Reap",
        expression: "rate(1 minute)",
        every: Duration::from_secs(60),
        input: r#"{"job":"reap"}"#,
    },
    Schedule {
        event: "Retention",
        expression: "rate(1 day)",
        every: Duration::from_secs(86_400),
        input: r#"{"job":"retention"}"#,
    },
    Schedule {
        event: "Stats",
        expression: "rate(5 minutes)",
        every: Duration::from_secs(300),
        input: r#"{"job":"stats"}"#,
    },
    Schedule {
        event: "Schedules",
        expression: "rate(1 minute)",
        every: Duration::from_secs(60),
        input: r#"{"job":"schedules"}"#,
    },
];

pub const SCHEDULER_TIMEOUT: Duration = Duration::from_secs(120);
