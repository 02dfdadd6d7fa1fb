//! [`EventPublisher`] on the deployment's EventBridge bus: lifecycle events as `PutEvents`
//! entries (source `tms`), ten to a call, the calls concurrent.

use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::domain::notification::EVENT_SOURCE;
use crate::domain::Notification;
use crate::ports::{EventPublisher, PublishError};

/// The publisher of the bus `bus` (`TMS_EVENT_BUS`), when the deployment names one.
pub fn publisher(
    aws: &aws_config::SdkConfig,
    bus: Option<&str>,
) -> Option<std::sync::Arc<dyn EventPublisher>> {
    bus.map(|bus| {
        std::sync::Arc::new(EventBridgePublisher::new(Client::new(aws), bus))
            as std::sync::Arc<dyn EventPublisher>
    })
}

/// The most entries one `PutEvents` takes.
const ENTRIES_PER_CALL: usize = 10;

pub struct EventBridgePublisher {
    client: Client,
    bus: String,
}

impl EventBridgePublisher {
    /// Publishes to the bus named `bus`.
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }
}

#[async_trait]
impl EventPublisher for EventBridgePublisher {
    /// Each call is a task of its own, so the runtime polls a call only when its answer moves
    /// (`join_all` polled all ten each time any of them was woken, a third of a batch's CPU).
    #[tracing::instrument(skip_all, fields(count = events.len()))]
    async fn publish(&self, events: &[Notification]) -> Result<Vec<Uuid>, PublishError> {
        let mut calls = tokio::task::JoinSet::new();
        for chunk in events.chunks(ENTRIES_PER_CALL) {
            let entries = chunk
                .iter()
                .map(|e| {
                    PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus)
                        .source(EVENT_SOURCE)
                        .detail_type(&e.detail_type)
                        .detail(e.detail.to_string())
                        .time(aws_sdk_eventbridge::primitives::DateTime::from_millis(
                            e.created_at.timestamp_millis(),
                        ))
                        .build()
                })
                .collect::<Vec<_>>();
            let ids: Vec<Uuid> = chunk.iter().map(|e| e.id).collect();
            let call = self.client.put_events().set_entries(Some(entries));
            calls.spawn(
                async move {
                    let out = call.send().await.map_err(|e| {
                        PublishError(
                            aws_sdk_eventbridge::error::DisplayErrorContext(e)
                                .to_string()
                                .into(),
                        )
                    })?;
                    // The result entries are in the order of the request's; a failed one has
                    // an error code.
                    Ok::<_, PublishError>(
                        ids.into_iter()
                            .zip(out.entries())
                            .filter(|(_, r)| r.error_code().is_none())
                            .map(|(id, _)| id)
                            .collect::<Vec<_>>(),
                    )
                }
                .in_current_span(),
            );
        }
        let mut published = Vec::with_capacity(events.len());
        let mut failure = None;
        while let Some(result) = calls.join_next().await {
            match result {
                Ok(Ok(ids)) => published.extend(ids),
                Ok(Err(e)) => failure = Some(e),
                Err(e) => failure = Some(PublishError(e.to_string().into())),
            }
        }
        match failure {
            Some(e) if published.is_empty() => Err(e),
            Some(e) => {
                tracing::warn!(error = %e, "some lifecycle events were not published; the relay will");
                Ok(published)
            }
            None => Ok(published),
        }
    }
}
