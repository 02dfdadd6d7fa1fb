//! The local runner delivers events as `template.yaml` configures AWS to: same batch sizes,
//! batching windows, concurrency, timeouts, queues and schedules.

use serde_yaml::Value;
use tms_local::mappings::{MAPPINGS, SCHEDULER_TIMEOUT, SCHEDULES};

fn template() -> Value {
    let path = tms_testkit::repo_root().join("template.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).expect("template.yaml parses")
}

fn untag(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => &t.value,
        other => other,
    }
}

#[test]
fn the_runner_mirrors_the_event_source_mappings() {
    let t = template();
    for m in MAPPINGS {
        let function = &t["Resources"][m.function]["Properties"];
        assert_eq!(
            function["Timeout"].as_u64(),
            Some(m.timeout.as_secs()),
            "{} timeout",
            m.function
        );
        let event = &function["Events"][m.event];
        assert_eq!(event["Type"].as_str(), Some("SQS"), "{}", m.event);
        let p = &event["Properties"];
        let queue = untag(&p["Queue"]).as_str().unwrap_or_default();
        assert_eq!(
            queue,
            format!("{}.Arn", m.queue),
            "{} reads {}",
            m.function,
            m.queue
        );
        assert_eq!(
            p["BatchSize"].as_u64(),
            Some(m.batch_size as u64),
            "{} batch size",
            m.function
        );
        assert_eq!(
            p["MaximumBatchingWindowInSeconds"].as_u64(),
            Some(m.batching_window.as_secs()),
            "{} window",
            m.function
        );
        assert_eq!(
            p["ScalingConfig"]["MaximumConcurrency"].as_u64(),
            Some(m.maximum_concurrency as u64),
            "{} concurrency",
            m.function
        );
        let types: Vec<&str> = p["FunctionResponseTypes"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(types, ["ReportBatchItemFailures"]);
    }
}

#[test]
fn the_runner_mirrors_the_schedules() {
    let t = template();
    let function = &t["Resources"]["SchedulerFunction"]["Properties"];
    assert_eq!(
        function["Timeout"].as_u64(),
        Some(SCHEDULER_TIMEOUT.as_secs())
    );
    let events = function["Events"].as_mapping().unwrap();
    assert_eq!(
        events.len(),
        SCHEDULES.len(),
        "no schedule the runner does not fire"
    );
    for s in SCHEDULES {
        let p = &function["Events"][s.event]["Properties"];
        assert_eq!(p["Schedule"].as_str(), Some(s.expression), "{}", s.event);
        assert_eq!(p["Input"].as_str(), Some(s.input), "{}", s.event);
        let n: u64 = s
            .expression
            .trim_start_matches("rate(")
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let unit = if s.expression.contains("minute") {
            60
        } else if s.expression.contains("day") {
            86_400
        } else {
            3600
        };
        assert_eq!(s.every.as_secs(), n * unit, "{} fires on its rate", s.event);
    }
}

/// `[package.metadata.lambda.deploy]` of each function, as `cargo metadata` reads it.
fn deploy_metadata() -> Vec<(String, serde_json::Value)> {
    let out = std::process::Command::new(env!("CARGO"))
        .current_dir(tms_testkit::repo_root())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["manifest_path"]
                .as_str()
                .is_some_and(|m| m.contains("/functions/"))
        })
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["metadata"]["lambda"]["deploy"].clone(),
            )
        })
        .collect()
}

#[test]
fn cargo_lambda_deploys_each_function_as_the_template_does() {
    let t = template();
    let globals = &t["Globals"]["Function"];
    let functions = deploy_metadata();
    assert_eq!(functions.len(), 5, "{functions:?}");
    for (package, deploy) in functions {
        let resource = match package.trim_start_matches("tms-") {
            "api" => "ApiFunction",
            "worker" => "WorkerFunction",
            "importer" => "ImporterFunction",
            "scheduler" => "SchedulerFunction",
            "bootstrap" => "BootstrapFunction",
            other => panic!("a function the template does not know: {other}"),
        };
        let properties = &t["Resources"][resource]["Properties"];
        assert_eq!(
            deploy["memory"].as_u64(),
            properties["MemorySize"].as_u64(),
            "{package} memory"
        );
        assert_eq!(
            deploy["timeout"].as_u64(),
            properties["Timeout"].as_u64(),
            "{package} timeout"
        );
        assert_eq!(
            deploy["tracing"].as_str().map(str::to_lowercase),
            globals["Tracing"].as_str().map(str::to_lowercase),
            "{package} tracing"
        );
        assert_eq!(
            deploy["runtime"].as_str(),
            globals["Runtime"].as_str(),
            "{package} runtime"
        );
    }
}

#[test]
fn api_gateway_routes_every_operation_of_the_api_and_the_console() {
    let t = template();
    let mut routes: Vec<(String, bool)> = t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::ApiGatewayV2::Route"))
        .map(|r| {
            let p = &r["Properties"];
            let public = p["AuthorizationType"].as_str() == Some("NONE");
            (p["RouteKey"].as_str().unwrap().to_owned(), public)
        })
        .collect();
    routes.sort();
    let doc = tms_api::openapi::document();
    let mut expected: Vec<(String, bool)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object().unwrap().keys().map(move |method| {
                (
                    format!("{} {path}", method.to_uppercase()),
                    !path.starts_with("/v1/"),
                )
            })
        })
        .collect();
    // Served by the function beside its documented operations: the reference's assets and the
    // console, which signs its users in itself.
    for extra in [
        "GET /docs/assets/{proxy+}",
        "ANY /console",
        "ANY /console/{proxy+}",
    ] {
        expected.push((extra.to_owned(), true));
    }
    expected.sort();
    assert_eq!(routes, expected, "(route, without the JWT authorizer)");
}
