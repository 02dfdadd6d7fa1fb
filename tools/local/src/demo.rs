//! The demo: one task of every kind, an import with good and bad rows, a webhook whose
//! receiver fails until told otherwise, so its task ends `dead` and is redriven once the
//! receiver recovers, a schedule's first fire and an event on the bus that a trigger turns into
//! a task. Prints what happened as a table.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{json, Value};

/// A webhook receiver on loopback that answers 503 until healed.
pub struct Receiver {
    pub addr: SocketAddr,
    healthy: Arc<AtomicBool>,
    pub calls: Arc<AtomicUsize>,
}

impl Receiver {
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start() -> anyhow::Result<Self> {
        let healthy = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicUsize::new(0));
        let (h, c) = (healthy.clone(), calls.clone());
        let app = axum::Router::new().route(
            "/hook",
            post(move || {
                let (h, c) = (h.clone(), c.clone());
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    if h.load(Ordering::SeqCst) {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            healthy,
            calls,
        })
    }

    pub fn heal(&self) {
        self.healthy.store(true, Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }
}

/// One task of the demo and how it ended.
#[derive(Debug, Clone)]
pub struct TaskRow {
    pub label: String,
    pub id: String,
    pub kind: String,
    pub status: String,
    pub attempts: u64,
    pub location: String,
}

#[derive(Debug, Clone)]
pub struct ImportRow {
    pub key: String,
    pub status: String,
    pub total: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub report: String,
}

#[derive(Debug, Clone)]
pub struct DemoReport {
    pub tasks: Vec<TaskRow>,
    /// The webhook task's status and attempts before its redrive.
    pub webhook_before_redrive: String,
    pub webhook_attempts_before_redrive: u64,
    pub import: ImportRow,
}

pub struct Demo {
    pub api: String,
    pub token: String,
    pub http: reqwest::Client,
    pub timeout: Duration,
    /// The deployment's event bus, which the demo puts one event on.
    pub events: aws_sdk_eventbridge::Client,
    pub event_bus: String,
}

/// What the schedule and the trigger of the demo are, while their tasks are awaited.
struct Timed {
    schedule: String,
    trigger: String,
    event: String,
}

const POLL: Duration = Duration::from_millis(300);

impl Demo {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the API at {}", self.api))?;
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    async fn create(&self, body: Value) -> anyhow::Result<String> {
        let (status, task) = self
            .call(reqwest::Method::POST, "/v1/tasks", Some(body))
            .await?;
        if status != 202 {
            bail!("creating a task answered {status}: {task}");
        }
        Ok(task["id"].as_str().context("a task id")?.to_owned())
    }

    async fn task(&self, id: &str) -> anyhow::Result<Value> {
        Ok(self
            .call(reqwest::Method::GET, &format!("/v1/tasks/{id}"), None)
            .await?
            .1)
    }

    /// Polls until `done` holds for the task, or the demo's timeout.
    async fn wait_task(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&str) -> bool,
    ) -> anyhow::Result<Value> {
        let started = Instant::now();
        loop {
            let task = self.task(id).await?;
            if done(task["status"].as_str().unwrap_or("")) {
                return Ok(task);
            }
            if started.elapsed() > self.timeout {
                bail!(
                    "task {id} did not become {what} within {:?} (it is {})",
                    self.timeout,
                    task["status"]
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs the walk-through against the API.
    ///
    /// # Errors
    /// When the API misbehaves or an outcome does not arrive in time.
    pub async fn run(&self) -> anyhow::Result<DemoReport> {
        let receiver = Receiver::start().await?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f");
        let labels = ["email", "webhook", "archive", "noop"];
        let bodies = [
            json!({"kind": "email", "payload": {"sender": "demo@example.com", "recipient": "ops@example.com",
                "subject": "TMS demo", "body": "Hello from the demo."}}),
            json!({"kind": "webhook", "max_attempts": 2, "payload": {"url": receiver.url(), "body": {"event": "demo"}}}),
            json!({"kind": "archive", "payload": {"name": "demo-archive", "rows": [1, 2, 3]}}),
            json!({"kind": "noop", "payload": {}}),
        ];
        let mut ids = Vec::new();
        for body in bodies {
            ids.push(self.create(body).await?);
        }
        let timed = self.schedule_and_event(&stamp.to_string()).await?;
        eprintln!("==> created one task of each kind; uploading an import with good and bad rows");
        let filename = format!("demo-{stamp}.csv");
        let csv = "kind,sender,recipient,subject,body,name\n\
                   noop,,,,,\n\
                   archive,,,,,imported-archive\n\
                   email,bulk@example.com,ops@example.com,Imported,From a CSV row,\n\
                   email,not-an-address,ops@example.com,Broken,x,\n\
                   fax,,,,,\n";
        let (status, upload) = self
            .call(
                reqwest::Method::POST,
                "/v1/imports",
                Some(json!({"filename": filename, "size_bytes": csv.len()})),
            )
            .await?;
        if status != 201 {
            bail!("asking for an upload URL answered {status}: {upload}");
        }
        let put = self
            .http
            .put(upload["upload_url"].as_str().context("an upload URL")?)
            .body(csv)
            .send()
            .await?;
        if !put.status().is_success() {
            bail!("the upload answered {}", put.status());
        }
        let key = upload["key"].as_str().unwrap_or_default().to_owned();
        eprintln!(
            "==> waiting for the tasks to run (the webhook's receiver is failing on purpose)"
        );
        for (label, id) in labels.iter().zip(&ids) {
            if *label == "webhook" {
                self.wait_task(id, "dead", |s| s == "dead").await?;
            } else {
                self.wait_task(id, "succeeded", |s| s == "succeeded")
                    .await?;
            }
        }
        let before = self.task(&ids[1]).await?;
        let webhook_before_redrive = before["status"].as_str().unwrap_or("").to_owned();
        let webhook_attempts_before_redrive = before["attempts"].as_u64().unwrap_or(0);
        eprintln!("==> the webhook task is dead; fixing its receiver and redriving it");
        receiver.heal();
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/tasks/{}/redrive", ids[1]),
                None,
            )
            .await?;
        if status != 200 {
            bail!("redrive answered {status}: {body}");
        }
        self.wait_task(&ids[1], "succeeded", |s| s == "succeeded")
            .await?;
        let import = self.wait_import(&key).await?;
        self.delivered_email().await?;
        let mut tasks = Vec::new();
        for (label, id) in labels.iter().zip(&ids) {
            let t = self.task(id).await?;
            let location = match (t["result"]["bucket"].as_str(), t["result"]["key"].as_str()) {
                (Some(b), Some(k)) => format!("s3://{b}/{k}"),
                _ if *label == "webhook" => receiver.url(),
                _ => "-".into(),
            };
            tasks.push(TaskRow {
                label: (*label).into(),
                id: id.clone(),
                kind: t["kind"].as_str().unwrap_or("").into(),
                status: t["status"].as_str().unwrap_or("").into(),
                attempts: t["attempts"].as_u64().unwrap_or(0),
                location,
            });
        }
        tasks.extend(self.timed_tasks(&timed).await?);
        tasks.push(self.signed_delivery().await?);
        Ok(DemoReport {
            tasks,
            webhook_before_redrive,
            webhook_attempts_before_redrive,
            import,
        })
    }

    /// Creates a schedule that fires in a second (the scheduler's `schedules` job creates its
    /// task within a minute) and a trigger, and puts an event it matches on the bus.
    async fn schedule_and_event(&self, stamp: &str) -> anyhow::Result<Timed> {
        let starts_at = chrono::Utc::now() + chrono::TimeDelta::seconds(1);
        let (status, schedule) = self
            .call(
                reqwest::Method::POST,
                "/v1/schedules",
                Some(
                    json!({"name": format!("demo-{stamp}"), "expression": "rate(1 hour)",
                    "timezone": "UTC", "starts_at": starts_at.to_rfc3339(),
                    "task": {"kind": "archive", "payload": {"name": "scheduled-report"}}}),
                ),
            )
            .await?;
        if status != 201 {
            bail!("creating a schedule answered {status}: {schedule}");
        }
        let (status, trigger) = self
            .call(
                reqwest::Method::POST,
                "/v1/triggers",
                Some(json!({"name": format!("demo-{stamp}"), "source": "demo.shop",
                    "detail_type": "Order Placed",
                    "task": {"kind": "archive", "payload": {"name": {"$event": "/detail/orderId"}}}})),
            )
            .await?;
        if status != 201 {
            bail!("registering a trigger answered {status}: {trigger}");
        }
        let put = self
            .events
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .event_bus_name(&self.event_bus)
                    .source("demo.shop")
                    .detail_type("Order Placed")
                    .detail(json!({"orderId": format!("order-{stamp}")}).to_string())
                    .build(),
            )
            .send()
            .await
            .with_context(|| format!("cannot put an event on the bus {}", self.event_bus))?;
        let event = match put.entries().first().and_then(|e| e.event_id()) {
            Some(id) if put.failed_entry_count() == 0 => id.to_owned(),
            _ => bail!("the bus refused the demo's event: {put:?}"),
        };
        eprintln!(
            "==> created a schedule firing in a second and a trigger, and put an order event on the bus"
        );
        Ok(Timed {
            schedule: schedule["id"].as_str().context("a schedule id")?.to_owned(),
            trigger: trigger["id"].as_str().context("a trigger id")?.to_owned(),
            event,
        })
    }

    /// The tasks of the schedule's first fire and of the event, once they succeeded; then
    /// removes the schedule and the trigger (their tasks stay).
    async fn timed_tasks(&self, timed: &Timed) -> anyhow::Result<Vec<TaskRow>> {
        eprintln!("==> waiting for the event's task and the schedule's first fire (the schedules job runs every minute)");
        let mut rows = Vec::new();
        for (label, source, field, id) in [
            ("event", "event", "event_id", &timed.event),
            ("schedule", "schedule", "schedule_id", &timed.schedule),
        ] {
            let started = Instant::now();
            let task = loop {
                let (_, page) = self
                    .call(
                        reqwest::Method::GET,
                        &format!("/v1/tasks?source={source}&limit=100"),
                        None,
                    )
                    .await?;
                let found = page["items"]
                    .as_array()
                    .and_then(|items| items.iter().find(|t| t["source"][field] == id.as_str()));
                if let Some(t) = found.filter(|t| t["status"] == "succeeded") {
                    break t.clone();
                }
                if started.elapsed() > self.timeout + Duration::from_secs(60) {
                    bail!("the {label}'s task did not succeed in time: {found:?}");
                }
                tokio::time::sleep(POLL).await;
            };
            rows.push(TaskRow {
                label: label.into(),
                id: task["id"].as_str().unwrap_or("").into(),
                kind: task["kind"].as_str().unwrap_or("").into(),
                status: task["status"].as_str().unwrap_or("").into(),
                attempts: task["attempts"].as_u64().unwrap_or(0),
                location: format!(
                    "s3://{}/{}",
                    task["result"]["bucket"].as_str().unwrap_or(""),
                    task["result"]["key"].as_str().unwrap_or("")
                ),
            });
        }
        for path in [
            format!("/v1/schedules/{}", timed.schedule),
            format!("/v1/triggers/{}", timed.trigger),
        ] {
            let (status, body) = self.call(reqwest::Method::DELETE, &path, None).await?;
            if status != 204 {
                bail!("DELETE {path} answered {status}: {body}");
            }
        }
        Ok(rows)
    }

    /// Subscribes a local receiver to `Task Succeeded` events of `noop` tasks, runs one, and
    /// checks the delivery's Standard Webhooks signature with the secret the subscription
    /// showed once; then removes the subscription.
    async fn signed_delivery(&self) -> anyhow::Result<TaskRow> {
        let (tx, mut rx) =
            tokio::sync::mpsc::unbounded_channel::<(axum::http::HeaderMap, axum::body::Bytes)>();
        let app = axum::Router::new().route(
            "/events",
            post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let tx = tx.clone();
                    async move {
                        let _ = tx.send((headers, body));
                        StatusCode::NO_CONTENT
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/events", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let (status, created) = self
            .call(
                reqwest::Method::POST,
                "/v1/subscriptions",
                Some(json!({"url": url, "event_types": ["Task Succeeded"], "kinds": ["noop"]})),
            )
            .await?;
        if status != 201 {
            bail!("subscribing answered {status}: {created}");
        }
        let secret = tms::SigningSecret::parse(created["secret"].as_str().unwrap_or(""))
            .map_err(|e| anyhow::anyhow!("the subscription's secret: {e}"))?;
        let subscription = created["subscription"]["id"]
            .as_str()
            .context("a subscription id")?
            .to_owned();
        eprintln!("==> subscribed a receiver to Task Succeeded; running a noop task");
        let task = self.create(json!({"kind": "noop", "payload": {}})).await?;
        let (headers, body) = loop {
            let (headers, body) = tokio::time::timeout(self.timeout, rx.recv())
                .await
                .context("no delivery reached the subscription's receiver in time")?
                .context("the receiver stopped")?;
            let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if event["data"]["task_id"] == task.as_str() {
                break (headers, body);
            }
        };
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
        let expected = secret.sign(id, timestamp.parse().unwrap_or_default(), &body);
        if !header("webhook-signature")
            .split(' ')
            .any(|s| s == expected)
        {
            bail!("the delivery's signature does not verify with the subscription's secret");
        }
        eprintln!(
            "==> the receiver got Task Succeeded of {task} (webhook-id {id}), signature verified"
        );
        let (_, page) = self
            .call(
                reqwest::Method::GET,
                "/v1/tasks?kind=notification&limit=100",
                None,
            )
            .await?;
        let delivery = page["items"]
            .as_array()
            .and_then(|items| {
                items
                    .iter()
                    .find(|t| t["payload"]["event_id"] == id)
                    .cloned()
            })
            .context("the delivery's task")?;
        let delivery = self
            .wait_task(delivery["id"].as_str().unwrap_or(""), "succeeded", |s| {
                s == "succeeded"
            })
            .await?;
        self.call(
            reqwest::Method::DELETE,
            &format!("/v1/subscriptions/{subscription}"),
            None,
        )
        .await?;
        server.abort();
        Ok(TaskRow {
            label: "delivery".into(),
            id: delivery["id"].as_str().unwrap_or("").into(),
            kind: delivery["kind"].as_str().unwrap_or("").into(),
            status: delivery["status"].as_str().unwrap_or("").into(),
            attempts: delivery["attempts"].as_u64().unwrap_or(0),
            location: format!("{url} (signature verified)"),
        })
    }

    /// Sends one email through SES (`deliver: true`, from the stack's identity) and shows the
    /// message id SES gave it.
    async fn delivered_email(&self) -> anyhow::Result<()> {
        let id = self
            .create(
                json!({"kind": "email", "payload": {"sender": "demo@example.com",
                "recipient": "ops@example.com", "subject": "TMS demo, delivered",
                "body": "Sent through SES by the demo.", "deliver": true}}),
            )
            .await?;
        let task = self
            .wait_task(&id, "succeeded", |s| s == "succeeded" || s == "dead")
            .await?;
        let message_id = task["result"]["message_id"].as_str().with_context(|| {
            format!(
                "the email task {id} was not delivered ({}): {}",
                task["status"], task["last_error"]
            )
        })?;
        eprintln!("==> delivered one email through SES: task {id}, SES message id {message_id}");
        Ok(())
    }

    async fn wait_import(&self, key: &str) -> anyhow::Result<ImportRow> {
        let started = Instant::now();
        loop {
            let (_, page) = self
                .call(reqwest::Method::GET, "/v1/imports?limit=100", None)
                .await?;
            let found = page["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|i| i["key"] == key && i["status"] != "running")
                .cloned();
            if let Some(i) = found {
                return Ok(ImportRow {
                    key: key.into(),
                    status: i["status"].as_str().unwrap_or("").into(),
                    total: i["rows_total"].as_u64().unwrap_or(0),
                    accepted: i["rows_accepted"].as_u64().unwrap_or(0),
                    rejected: i["rows_rejected"].as_u64().unwrap_or(0),
                    report: format!(
                        "s3://{}/{}",
                        i["bucket"].as_str().unwrap_or(""),
                        i["report_key"].as_str().unwrap_or("")
                    ),
                });
            }
            if started.elapsed() > self.timeout {
                bail!(
                    "the import of {key} did not finish within {:?}",
                    self.timeout
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The report as a table.
pub fn render(report: &DemoReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<9} {:<36} {:<10} {:>8}  {}\n",
        "TASK", "ID", "STATUS", "ATTEMPTS", "WHERE IT LANDED"
    ));
    for t in &report.tasks {
        out.push_str(&format!(
            "{:<9} {:<36} {:<10} {:>8}  {}\n",
            t.label, t.id, t.status, t.attempts, t.location
        ));
    }
    out.push_str(&format!(
        "\nThe webhook task was {} after {} attempts against a failing receiver; once the receiver\n\
         recovered it was redriven (attempts reset) and succeeded.\n",
        report.webhook_before_redrive, report.webhook_attempts_before_redrive
    ));
    if report.tasks.iter().any(|t| t.label == "event") {
        out.push_str(
            "The event task was created by a trigger from an order event put on the bus, the schedule\n\
             task by a schedule's first fire; the demo removed both afterwards.\n",
        );
    }
    let i = &report.import;
    out.push_str(&format!(
        "\nIMPORT {}\n  status {}: {} rows, {} accepted, {} rejected\n  report {}\n",
        i.key, i.status, i.total, i.accepted, i.rejected, i.report
    ));
    out
}
