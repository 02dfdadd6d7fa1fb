//! `notification`: one delivery of a lifecycle event to a tenant's subscription, POSTed as
//! JSON to the subscription's URL with the Standard Webhooks headers (`webhook-id`: the event's
//! stable id, the same on every attempt; `webhook-timestamp`: the attempt's; one
//! `webhook-signature` per active secret), through the webhook kind's calls: the same SSRF
//! rules, timeout, retry classification and per-tenant-and-host breaker.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tms::ports::Signing;
use tms::{Delivery, Task, TaskError};

use super::webhook::{Call, WebhookExecutor};
use super::{invalid_payload, Executor};

pub struct NotificationExecutor {
    webhook: Arc<WebhookExecutor>,
}

impl NotificationExecutor {
    pub fn new(webhook: Arc<WebhookExecutor>) -> Self {
        Self { webhook }
    }
}

#[async_trait]
impl Executor for NotificationExecutor {
    /// A delivery needs its subscription, which the batch looks up: see
    /// [`Executor::execute_signed`].
    async fn execute(&self, _task: &Task) -> Result<Value, TaskError> {
        Err(TaskError::retryable(
            "no_subscription_lookup",
            "a delivery runs only with its subscription looked up by the batch",
        ))
    }

    async fn execute_signed(&self, task: &Task, signing: &Signing) -> Result<Value, TaskError> {
        let delivery: Delivery =
            serde_json::from_value(task.payload.clone()).map_err(invalid_payload)?;
        // NOTE: a deleted subscription's deliveries end dead at their next attempt, without a
        // call: the tenant removed where they would go.
        let Some(subscription) = signing
            .subscriptions
            .get(&delivery.subscription_id)
            .filter(|s| s.tenant == task.tenant)
        else {
            return Err(TaskError::permanent(
                "subscription_deleted",
                format!(
                    "subscription {} was deleted; the event is not delivered",
                    delivery.subscription_id
                ),
            ));
        };
        let body = serde_json::to_vec(&delivery.event).map_err(invalid_payload)?;
        self.webhook
            .call(Call {
                tenant: &task.tenant,
                url: &subscription.url,
                method: None,
                headers: &BTreeMap::new(),
                body: Some(body),
                idempotency_key: task.id.to_string(),
                correlation_id: task.correlation_id.as_str(),
                signed: Some((&subscription.keys, &delivery.event_id)),
            })
            .await
    }
}
