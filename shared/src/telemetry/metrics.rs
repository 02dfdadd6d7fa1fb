//! Metrics as CloudWatch Embedded Metric Format (EMF) lines on stdout: CloudWatch Logs turns
//! each line into metric data points, with no API call and no agent.
//!
//! Every metric carries the dimension `Service=tms` (alarms select on it); some add more (such
//! as `Kind`).

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{json, Map, Value};

pub const NAMESPACE: &str = "TMS";
pub const SERVICE: &str = "tms";

pub const TASKS_CREATED: &str = "TasksCreated";
pub const TASKS_SUCCEEDED: &str = "TasksSucceeded";
pub const TASKS_FAILED: &str = "TasksFailed";
pub const TASKS_DEAD: &str = "TasksDead";
pub const TASK_LATENCY_MS: &str = "TaskLatencyMs";
pub const EXECUTOR_DURATION_MS: &str = "ExecutorDurationMs";
pub const BATCH_ITEM_FAILURES: &str = "BatchItemFailures";
pub const IMPORT_ROWS_ACCEPTED: &str = "ImportRowsAccepted";
pub const IMPORT_ROWS_REJECTED: &str = "ImportRowsRejected";
/// Tasks the worker's claim deferred because a limit was reached (dimensions `Tenant` and
/// `Reason`).
pub const TASKS_DEFERRED: &str = "TasksDeferred";
/// Events of the bus no trigger took (or whose account may not create the trigger's tasks).
pub const EVENTS_UNMATCHED: &str = "EventsUnmatched";
/// The `stats` gauges: tasks in each status (dimension `Status`), how long the most overdue
/// pending task has been due, and the dead tasks awaiting an operator.
pub const TASKS_IN_STATUS: &str = "TasksInStatus";
pub const OLDEST_PENDING_AGE_SECONDS: &str = "OldestPendingAgeSeconds";
pub const DEAD_TASKS: &str = "DeadTasks";

/// Where metric lines go.
pub trait MetricSink: Send + Sync {
    fn emit(&self, line: String);
}

/// Standard output, which Lambda forwards to CloudWatch Logs.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdoutSink;

impl MetricSink for StdoutSink {
    fn emit(&self, line: String) {
        println!("{line}");
    }
}

/// Keeps the lines, for tests.
#[derive(Debug, Default)]
pub struct MemorySink(Mutex<Vec<String>>);

impl MemorySink {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().expect("metric lines").clone()
    }
}

impl MetricSink for MemorySink {
    fn emit(&self, line: String) {
        self.0.lock().expect("metric lines").push(line);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Seconds,
}

impl Unit {
    fn as_str(&self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
            Self::Seconds => "Seconds",
        }
    }
}

/// The most values one metric takes in one EMF line.
pub const MAX_VALUES_PER_METRIC: usize = 100;

/// Values sharing one set of dimensions, written as one EMF line.
#[derive(Debug, Clone)]
pub struct MetricSet {
    dimensions: Vec<(&'static str, String)>,
    /// A number, or an array of up to [`MAX_VALUES_PER_METRIC`] numbers.
    values: Vec<(&'static str, Unit, Value)>,
    properties: Map<String, Value>,
}

impl Default for MetricSet {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricSet {
    pub fn new() -> Self {
        Self {
            dimensions: vec![("Service", SERVICE.to_owned())],
            values: Vec::new(),
            properties: Map::new(),
        }
    }

    pub fn dimension(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.dimensions.push((name, value.into()));
        self
    }

    pub fn count(mut self, name: &'static str, value: u64) -> Self {
        self.values.push((name, Unit::Count, json!(value as f64)));
        self
    }

    pub fn millis(mut self, name: &'static str, value: f64) -> Self {
        self.values.push((name, Unit::Milliseconds, json!(value)));
        self
    }

    /// Several observations of one metric, each a data point (at most
    /// [`MAX_VALUES_PER_METRIC`]: [`MetricSet::emit_millis_each`] splits them).
    fn millis_each(mut self, name: &'static str, values: &[f64]) -> Self {
        self.values.push((name, Unit::Milliseconds, json!(values)));
        self
    }

    pub fn seconds(mut self, name: &'static str, value: f64) -> Self {
        self.values.push((name, Unit::Seconds, json!(value)));
        self
    }

    /// Writes `values` of metric `name` as lines of up to [`MAX_VALUES_PER_METRIC`] data
    /// points each, with this set's dimensions (nothing when `values` is empty).
    pub fn emit_millis_each(&self, name: &'static str, values: &[f64], sink: &dyn MetricSink) {
        for chunk in values.chunks(MAX_VALUES_PER_METRIC) {
            self.clone().millis_each(name, chunk).emit(sink);
        }
    }

    /// A searchable field that is not a dimension (a correlation id, a task id).
    pub fn property(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.properties.insert(name.to_owned(), value.into());
        self
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The EMF document for these values at `timestamp_ms`.
    pub fn to_json(&self, timestamp_ms: u64) -> Value {
        serde_json::to_value(Document {
            set: self,
            timestamp_ms,
        })
        .expect("an EMF document is JSON")
    }

    /// Writes the line (nothing when there are no values).
    pub fn emit(&self, sink: &dyn MetricSink) {
        if self.is_empty() {
            return;
        }
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let line = serde_json::to_string(&Document {
            set: self,
            timestamp_ms,
        })
        .expect("an EMF document is JSON");
        sink.emit(line);
    }
}

/// A set's EMF document, written as it is serialized: building it as a `Value` first (a map
/// per object, a string per key) cost the API a few percent of its CPU per create. A root
/// member is written once: a metric's value wins over a dimension or property of its name, and
/// a dimension over a property.
struct Document<'a> {
    set: &'a MetricSet,
    timestamp_ms: u64,
}

impl Serialize for Document<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let set = self.set;
        let is_value = |key: &str| set.values.iter().any(|(name, _, _)| *name == key);
        let is_dimension = |key: &str| set.dimensions.iter().any(|(name, _)| *name == key);
        let mut root = serializer.serialize_map(None)?;
        for (key, value) in &set.properties {
            if !is_value(key) && !is_dimension(key) {
                root.serialize_entry(key, value)?;
            }
        }
        for (name, value) in &set.dimensions {
            if !is_value(name) {
                root.serialize_entry(name, value)?;
            }
        }
        for (name, _, value) in &set.values {
            root.serialize_entry(name, value)?;
        }
        root.serialize_entry(
            "_aws",
            &Metadata {
                set,
                timestamp_ms: self.timestamp_ms,
            },
        )?;
        root.end()
    }
}

/// `_aws`: the timestamp and the one directive.
struct Metadata<'a> {
    set: &'a MetricSet,
    timestamp_ms: u64,
}

impl Serialize for Metadata<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let names: Vec<&str> = self.set.dimensions.iter().map(|(n, _)| *n).collect();
        let metrics: Vec<Definition> = self
            .set
            .values
            .iter()
            .map(|(name, unit, _)| Definition {
                name,
                unit: unit.as_str(),
            })
            .collect();
        let mut aws = serializer.serialize_map(Some(2))?;
        aws.serialize_entry("Timestamp", &self.timestamp_ms)?;
        aws.serialize_entry(
            "CloudWatchMetrics",
            &[Directive {
                namespace: NAMESPACE,
                dimensions: [names],
                metrics,
            }],
        )?;
        aws.end()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Directive<'a> {
    namespace: &'static str,
    dimensions: [Vec<&'a str>; 1],
    metrics: Vec<Definition<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Definition<'a> {
    name: &'a str,
    unit: &'static str,
}

/// Checks one line against the EMF specification's structure: the `_aws` metadata with a
/// timestamp, each directive's namespace, dimension sets and metric definitions, and a root
/// member for every dimension and metric named. Returns the metric values by name.
///
/// # Errors
/// What is missing or malformed.
pub fn parse_emf(line: &str) -> Result<Map<String, Value>, String> {
    let root: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let root = root.as_object().ok_or("not a JSON object")?;
    let aws = root
        .get("_aws")
        .and_then(Value::as_object)
        .ok_or("no _aws object")?;
    aws.get("Timestamp")
        .and_then(Value::as_u64)
        .ok_or("_aws.Timestamp is not a number of milliseconds")?;
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .filter(|d| !d.is_empty())
        .ok_or("_aws.CloudWatchMetrics is not a non-empty array")?;
    let mut values = Map::new();
    for d in directives {
        let namespace = d
            .get("Namespace")
            .and_then(Value::as_str)
            .ok_or("a directive has no Namespace")?;
        if namespace.is_empty() || namespace.len() > 255 {
            return Err("Namespace must be 1-255 characters".into());
        }
        let sets = d
            .get("Dimensions")
            .and_then(Value::as_array)
            .ok_or("a directive has no Dimensions")?;
        for set in sets {
            let set = set.as_array().ok_or("a dimension set is not an array")?;
            if set.len() > 30 {
                return Err("a dimension set has more than 30 keys".into());
            }
            for key in set {
                let key = key.as_str().ok_or("a dimension key is not a string")?;
                if !root.get(key).is_some_and(Value::is_string) {
                    return Err(format!("dimension {key} has no string value at the root"));
                }
            }
        }
        let metrics = d
            .get("Metrics")
            .and_then(Value::as_array)
            .ok_or("a directive has no Metrics")?;
        if metrics.is_empty() || metrics.len() > 100 {
            return Err("a directive must define 1-100 metrics".into());
        }
        for m in metrics {
            let name = m
                .get("Name")
                .and_then(Value::as_str)
                .ok_or("a metric has no Name")?;
            if let Some(unit) = m.get("Unit") {
                unit.as_str().ok_or("a metric Unit is not a string")?;
            }
            let value = root
                .get(name)
                .ok_or_else(|| format!("metric {name} has no value at the root"))?;
            let numeric = value.is_number()
                || value.as_array().is_some_and(|a| {
                    (1..=MAX_VALUES_PER_METRIC).contains(&a.len()) && a.iter().all(Value::is_number)
                });
            if !numeric {
                return Err(format!(
                    "metric {name} is not a number or an array of 1-100 numbers"
                ));
            }
            values.insert(name.to_owned(), value.clone());
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_set_is_one_valid_emf_line() {
        let sink = MemorySink::default();
        MetricSet::new()
            .dimension("Kind", "email")
            .count(TASKS_SUCCEEDED, 3)
            .millis(EXECUTOR_DURATION_MS, 12.5)
            .property("correlation_id", "c-1")
            .emit(&sink);
        let lines = sink.lines();
        assert_eq!(lines.len(), 1);
        let values = parse_emf(&lines[0]).unwrap();
        assert_eq!(values[TASKS_SUCCEEDED], json!(3.0));
        assert_eq!(values[EXECUTOR_DURATION_MS], json!(12.5));
        let v: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "TMS");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Service", "Kind"]])
        );
        assert_eq!(v["Service"], "tms");
        assert_eq!(v["Kind"], "email");
        assert_eq!(v["correlation_id"], "c-1");
    }

    #[test]
    fn a_root_member_is_written_once_the_metric_winning() {
        let sink = MemorySink::default();
        MetricSet::new()
            .dimension("Kind", "email")
            .count(TASKS_CREATED, 2)
            .property("Kind", "a property")
            .property(TASKS_CREATED, "a property")
            .emit(&sink);
        let line = &sink.lines()[0];
        assert_eq!(line.matches("\"Kind\":").count(), 1, "{line}");
        assert_eq!(line.matches("\"TasksCreated\":").count(), 1, "{line}");
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["Kind"], "email");
        assert_eq!(v[TASKS_CREATED], json!(2.0));
        assert_eq!(parse_emf(line).unwrap()[TASKS_CREATED], json!(2.0));
    }

    #[test]
    fn many_observations_go_in_lines_of_at_most_a_hundred_values() {
        let sink = MemorySink::default();
        let durations: Vec<f64> = (0..250).map(f64::from).collect();
        MetricSet::new().dimension("Kind", "noop").emit_millis_each(
            EXECUTOR_DURATION_MS,
            &durations,
            &sink,
        );
        let lines = sink.lines();
        assert_eq!(lines.len(), 3);
        let mut seen = Vec::new();
        for line in &lines {
            let values = parse_emf(line).unwrap();
            let array = values[EXECUTOR_DURATION_MS].as_array().unwrap();
            assert!(array.len() <= MAX_VALUES_PER_METRIC);
            seen.extend(array.iter().map(|v| v.as_f64().unwrap()));
        }
        assert_eq!(seen, durations, "every observation, in order");
        MetricSet::new().emit_millis_each(EXECUTOR_DURATION_MS, &[], &sink);
        assert_eq!(sink.lines().len(), 3, "no line for no observations");
    }

    #[test]
    fn an_empty_set_writes_nothing() {
        let sink = MemorySink::default();
        MetricSet::new().emit(&sink);
        assert!(sink.lines().is_empty());
    }

    #[test]
    fn the_checker_rejects_malformed_lines() {
        let good = MetricSet::new().count(TASKS_DEAD, 1).to_json(1);
        assert!(parse_emf(&good.to_string()).is_ok());
        let mut no_ts = good.clone();
        no_ts["_aws"].as_object_mut().unwrap().remove("Timestamp");
        let mut no_value = good.clone();
        no_value.as_object_mut().unwrap().remove(TASKS_DEAD);
        let mut no_dim = good.clone();
        no_dim.as_object_mut().unwrap().remove("Service");
        let mut no_ns = good.clone();
        no_ns["_aws"]["CloudWatchMetrics"][0]
            .as_object_mut()
            .unwrap()
            .remove("Namespace");
        for bad in [no_ts, no_value, no_dim, no_ns, json!({"a": 1}), json!([1])] {
            assert!(parse_emf(&bad.to_string()).is_err(), "{bad}");
        }
        assert!(parse_emf("not json").is_err());
    }
}
