//! Publishing lifecycle events after commit, shared by every function that records them: what
//! the bus accepted is forgotten, the rest stays for the relay job.

use uuid::Uuid;

use crate::domain::Notification;
use crate::ports::{EventPublisher, NotificationStore};

/// Publishes `events` (when the deployment has a bus) and forgets those the bus accepted; what
/// fails is logged and left to the relay. Returns how many were published.
pub async fn publish(
    publisher: Option<&dyn EventPublisher>,
    store: &dyn NotificationStore,
    events: &[Notification],
) -> usize {
    let Some(publisher) = publisher.filter(|_| !events.is_empty()) else {
        return 0;
    };
    let published: Vec<Uuid> = match publisher.publish(events).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, count = events.len(),
                "lifecycle events not published; the relay will publish them");
            return 0;
        }
    };
    if let Err(e) = store.published(&published).await {
        tracing::warn!(error = %e, count = published.len(),
            "published events not forgotten; the relay may publish them again");
    }
    published.len()
}
