//! The OpenAPI 3.1 document, generated from the handlers' annotations with utoipa, then
//! completed in one place with what every operation shares: the correlation header, the
//! bearer security of the `/v1` routes, and the problem responses each kind of route can give.

use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use crate::correlation;
use crate::routes::{
    imports, limits, schedules, stats, subscriptions, system, tasks, triggers, webhook_signing,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "TMS API",
        description = "Create, inspect, cancel and redrive asynchronous tasks. Errors are RFC 9457 problems (application/problem+json). Every response carries X-Correlation-Id.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        tasks::create_task, tasks::create_batch, tasks::list_tasks, tasks::get_task,
        tasks::task_events, tasks::cancel_task, tasks::redrive_task,
        tasks::bulk_cancel, tasks::bulk_redrive, stats::stats,
        limits::get_limits, limits::put_limits,
        triggers::create_trigger, triggers::list_triggers, triggers::get_trigger,
        triggers::delete_trigger,
        schedules::create_schedule, schedules::list_schedules, schedules::get_schedule,
        schedules::update_schedule, schedules::delete_schedule,
        subscriptions::create_subscription, subscriptions::list_subscriptions,
        subscriptions::get_subscription, subscriptions::update_subscription,
        subscriptions::delete_subscription, subscriptions::rotate_secret,
        subscriptions::test_subscription,
        webhook_signing::get_signing, webhook_signing::put_signing,
        webhook_signing::rotate_signing, webhook_signing::delete_signing,
        imports::create_import, imports::list_imports, imports::get_import,
        system::health, system::openapi, system::docs,
    ),
    components(schemas(
        crate::model::CreateTaskRequest, crate::model::BatchItem, crate::model::BatchRequest,
        crate::problem::Problem, crate::problem::FieldProblem,
        subscriptions::CreateSubscription, subscriptions::PatchSubscription,
        limits::LimitsBody, limits::TenantLimitsView,
    )),
    tags(
        (name = "tasks", description = "Tasks of the caller's tenant"),
        (name = "imports", description = "Bulk task files uploaded under the caller's imports/ prefix"),
        (name = "triggers", description = "Tasks created by the deployment's EventBridge events"),
        (name = "schedules", description = "Tasks created on a cron expression or a rate, in a time zone"),
        (name = "subscriptions", description = "Webhooks receiving the tenant's lifecycle events, signed per the Standard Webhooks specification"),
        (name = "webhook signing", description = "The secret that signs the tenant's webhook tasks (Standard Webhooks)"),
        (name = "limits", description = "Flow control: how many of the tenant's tasks run at once and how fast they start"),
        (name = "system", description = "Health and documentation"),
    )
)]
struct ApiDoc;

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

/// The completed document as JSON.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
    let schemas = &mut doc["components"]["schemas"];
    schemas["CreateTask"] = crate::model::submission_schema(false);
    schemas["BatchTask"] = crate::model::submission_schema(true);
    schemas["BatchCreate"] = crate::model::batch_schema();
    for (name, schema) in crate::model::payload_schemas() {
        schemas[name] = schema;
    }
    for (name, schema) in schedules::schemas() {
        schemas[name] = schema;
    }
    for (name, schema) in subscriptions::schemas() {
        schemas[name] = schema;
    }
    for (name, schema) in limits::schemas() {
        schemas[name] = schema;
    }
    // TMS's own lifecycle events (source tms) go to subscriptions, never to triggers.
    schemas["CreateTrigger"]["properties"]["source"]["not"] =
        json!({"const": tms::domain::notification::EVENT_SOURCE});
    doc["components"]["securitySchemes"] = json!({
        "bearer": {
            "type": "http", "scheme": "bearer",
            "description": "An API token, or a JWT when the API Gateway authorizer is configured."
        }
    });
    let correlation_param = json!({
        "name": "X-Correlation-Id", "in": "header", "required": false,
        "description": "Correlates logs, messages and events; generated when absent.",
        "schema": {"type": "string", "pattern": correlation::PATTERN}
    });
    let correlation_header = json!({
        "description": "The request's correlation id (the one sent, or a generated one).",
        "required": true,
        "schema": {"type": "string", "pattern": correlation::PATTERN}
    });
    let paths = doc["paths"].as_object_mut().expect("paths");
    for (path, item) in paths.iter_mut() {
        for (method, op) in item.as_object_mut().expect("path item").iter_mut() {
            let op = op.as_object_mut().expect("operation");
            let params = op.entry("parameters").or_insert_with(|| json!([]));
            params
                .as_array_mut()
                .expect("parameters")
                .push(correlation_param.clone());
            if path == "/v1/tasks" && method == "post" {
                params.as_array_mut().expect("parameters").push(json!({
                    "name": "Idempotency-Key", "in": "header", "required": false,
                    "description": "Makes the create idempotent: a replay with the same body returns the same task.",
                    "schema": {"type": "string", "pattern": tms::IDEMPOTENCY_KEY_PATTERN}
                }));
            }
            let has_body = op.contains_key("requestBody");
            if has_body {
                op["requestBody"]["required"] = json!(true);
            }
            let responses = op["responses"].as_object_mut().expect("responses");
            let mut add = |code: &str, description: &str| {
                responses
                    .entry(code)
                    .or_insert_with(|| problem_response(description));
            };
            add(
                "400",
                "Malformed request: invalid JSON, header, path or query parameter.",
            );
            add("500", "Unexpected error (logged with the correlation id).");
            if path.starts_with("/v1/") {
                add("401", "Missing, malformed or unknown credentials.");
                add(
                    "403",
                    "The caller's role may not do this (viewers only read), or a non-operator named another tenant.",
                );
                add(
                    "503",
                    "The database or the token store is unavailable; retry later.",
                );
            }
            if has_body {
                add("413", "The request body is larger than 1 MiB.");
                add("415", "The request body is not JSON.");
                add(
                    "422",
                    "Invalid fields; errors[] names each with a JSON Pointer.",
                );
            }
            for (code, response) in responses.iter_mut() {
                let headers = response
                    .as_object_mut()
                    .expect("response")
                    .entry("headers")
                    .or_insert_with(|| Value::Object(Map::new()));
                headers["X-Correlation-Id"] = correlation_header.clone();
                if path == "/v1/tasks" && method == "post" && code == "202" {
                    headers["Location"] = json!({"description": "The new task.", "required": true, "schema": {"type": "string"}});
                }
                if path == "/v1/tasks" && method == "post" && code == "200" {
                    headers["Idempotent-Replayed"] =
                        json!({"required": true, "schema": {"type": "string", "enum": ["true"]}});
                }
                if code == "401" {
                    headers["WWW-Authenticate"] =
                        json!({"required": true, "schema": {"type": "string"}});
                }
            }
            if path.starts_with("/v1/") {
                op.insert("security".into(), json!([{"bearer": []}]));
            }
        }
    }
    doc
}

/// Where the Swagger UI assets are served (`swagger-ui-dist`'s routes, from the binary).
pub const DOCS_ASSETS: &str = "/docs/assets";

/// The interactive reference: Swagger UI (its script and style shipped in the binary by the
/// `swagger-ui-dist` crate) rendering `/openapi.json`, with "Try it out" on every operation and
/// the bearer token kept for the browser tab.
pub fn docs_page() -> String {
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>TMS API reference</title>
<link rel="stylesheet" href="{DOCS_ASSETS}/swagger-ui.css">
</head>
<body>
<noscript><p>The reference needs JavaScript. The document itself: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p></noscript>
<div id="reference"></div>
<script src="{DOCS_ASSETS}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "/openapi.json",
  dom_id: "#reference",
  deepLinking: true,
  persistAuthorization: true,
  displayRequestDuration: true,
  tryItOutEnabled: true
}});
</script>
</body></html>
"##
    )
}
