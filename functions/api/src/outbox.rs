//! The outbox: the work messages of new tasks go to the queue after the response, and the
//! lifecycle events of tasks the request ended (cancelled) to the event bus.
//!
//! A request hands its messages over ([`Outbox::submit`]) and answers: the task is durable once
//! committed, and a message that is never sent is sent by the relay, so the client waits for one
//! database round trip, not for the queue too. After the send the outbox sets the tasks'
//! markers, so the relay leaves them alone; a marker that is lost costs a harmless duplicate
//! message after 30 s.
//!
//! Under Lambda ([`Outbox::collecting`]) the request's messages are collected and sent by
//! [`Settle`], after the runtime has posted the response and before it asks for the next event,
//! so an environment never freezes with a message unsent. As a local server each request's
//! messages are sent by a task of their own, right after the handler returns.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use lambda_http::lambda_runtime::LambdaInvocation;
use lambda_http::tower::{Layer, Service};
use tms::ports::{Dispatch, EventPublisher, NotificationStore, TaskRepository, WorkQueue};
use uuid::Uuid;

/// How long [`Settle`] waits for the outbox before it lets the runtime take the next event.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// Sends work messages (and lifecycle events) after the response; see the module documentation.
#[derive(Clone)]
pub struct Outbox {
    queue: Arc<dyn WorkQueue>,
    repo: Arc<dyn TaskRepository>,
    /// The bus and the store of recorded events, when the deployment has a bus.
    events: Option<(Arc<dyn EventPublisher>, Arc<dyn NotificationStore>)>,
    /// `Some` under Lambda: the messages and the subjects of events waiting for
    /// [`Outbox::settle`].
    collected: Option<Arc<Mutex<Collected>>>,
}

/// What a Lambda invocation's requests handed over.
#[derive(Default)]
struct Collected {
    dispatches: Vec<Dispatch>,
    /// The tasks whose lifecycle events to publish.
    subjects: Vec<Uuid>,
}

impl Outbox {
    /// An outbox that sends each request's messages at once, beside the response.
    pub fn new(queue: Arc<dyn WorkQueue>, repo: Arc<dyn TaskRepository>) -> Self {
        Self {
            queue,
            repo,
            events: None,
            collected: None,
        }
    }

    /// The same outbox, publishing lifecycle events to `publisher` (events recorded in
    /// `notifications`).
    #[must_use]
    pub fn with_events(
        self,
        publisher: Arc<dyn EventPublisher>,
        notifications: Arc<dyn NotificationStore>,
    ) -> Self {
        Self {
            events: Some((publisher, notifications)),
            ..self
        }
    }

    /// The same outbox, collecting messages until [`Outbox::settle`] sends them (under Lambda,
    /// through [`Settle`]).
    #[must_use]
    pub fn collecting(self) -> Self {
        Self {
            collected: Some(Arc::default()),
            ..self
        }
    }

    /// Hands a request's messages over and returns at once.
    pub fn submit(&self, dispatches: Vec<Dispatch>) {
        self.hand_over(dispatches, Vec::new());
    }

    /// Hands over the tasks whose lifecycle events the request recorded (it ended them), to be
    /// published after the response.
    pub fn publish_events_of(&self, subjects: Vec<Uuid>) {
        self.hand_over(Vec::new(), subjects);
    }

    fn hand_over(&self, dispatches: Vec<Dispatch>, subjects: Vec<Uuid>) {
        if dispatches.is_empty() && subjects.is_empty() {
            return;
        }
        match &self.collected {
            Some(collected) => {
                let mut collected = collected
                    .lock()
                    .expect("the outbox's list is never poisoned");
                collected.dispatches.extend(dispatches);
                collected.subjects.extend(subjects);
            }
            None => {
                let outbox = self.clone();
                tokio::spawn(async move { outbox.flush(dispatches, subjects).await });
            }
        }
    }

    /// Sends the collected messages and sets the markers of those sent, and publishes the
    /// collected events.
    pub async fn settle(&self) {
        let Some(collected) = &self.collected else {
            return;
        };
        let Collected {
            dispatches,
            subjects,
        } = std::mem::take(
            &mut *collected
                .lock()
                .expect("the outbox's list is never poisoned"),
        );
        self.flush(dispatches, subjects).await;
    }

    async fn flush(&self, dispatches: Vec<Dispatch>, subjects: Vec<Uuid>) {
        if !dispatches.is_empty() {
            self.send(dispatches).await;
        }
        let Some((publisher, notifications)) =
            self.events.as_ref().filter(|_| !subjects.is_empty())
        else {
            return;
        };
        match notifications.unpublished_of(&subjects).await {
            Ok(events) => {
                tms::notify::publish(Some(publisher.as_ref()), notifications.as_ref(), &events)
                    .await;
            }
            Err(e) => tracing::warn!(error = %e,
                "lifecycle events not read back; the relay will publish them"),
        }
    }

    /// Sends `dispatches` and sets the markers of those sent; what fails is logged and left to
    /// the relay.
    async fn send(&self, dispatches: Vec<Dispatch>) {
        let sent = match self.queue.send(&dispatches).await {
            Ok(sent) => sent,
            Err(e) => {
                tracing::warn!(error = %e, count = dispatches.len(),
                    "work messages not sent; the relay will send them");
                return;
            }
        };
        if let Err(e) = self.repo.mark_enqueued(&sent).await {
            tracing::warn!(error = %e, count = sent.len(),
                "outbox markers not set; the relay may send duplicates");
        }
    }
}

/// The Lambda runtime layer that settles the outbox after each response is posted and before the
/// runtime asks for the next event: the client has its answer, and the environment is not frozen
/// with a message unsent. Waits at most 10 s; what is left then is the relay's.
#[derive(Clone)]
pub struct Settle {
    outbox: Outbox,
}

impl Settle {
    pub fn new(outbox: Outbox) -> Self {
        Self { outbox }
    }
}

impl<S> Layer<S> for Settle {
    type Service = Settled<S>;

    fn layer(&self, inner: S) -> Settled<S> {
        Settled {
            inner,
            outbox: self.outbox.clone(),
        }
    }
}

/// See [`Settle`].
#[derive(Clone)]
pub struct Settled<S> {
    inner: S,
    outbox: Outbox,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S> Service<LambdaInvocation> for Settled<S>
where
    S: Service<LambdaInvocation, Response = (), Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<(), BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    /// The posted response, then the settled outbox.
    fn call(&mut self, invocation: LambdaInvocation) -> Self::Future {
        let posted = self.inner.call(invocation);
        let outbox = self.outbox.clone();
        Box::pin(async move {
            let result = posted.await;
            if tokio::time::timeout(SETTLE_LIMIT, outbox.settle())
                .await
                .is_err()
            {
                tracing::warn!(
                    "the outbox did not settle within 10 s; the relay will send what is left"
                );
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;
    use tms::ports::{QueueError, TaskRepository};
    use tms::{CorrelationId, TaskId, Tenant, WorkMessage};
    use tms_testkit::fakes::MemoryRepository;
    use tokio::sync::Semaphore;

    use super::*;

    /// A queue whose sends wait for a permit each; records the size of every batch it took.
    struct GatedQueue {
        permits: Semaphore,
        batches: Mutex<Vec<usize>>,
        down: bool,
    }

    impl GatedQueue {
        fn new(down: bool) -> Arc<Self> {
            Arc::new(Self {
                permits: Semaphore::new(0),
                batches: Mutex::default(),
                down,
            })
        }

        fn batches(&self) -> Vec<usize> {
            self.batches.lock().unwrap().clone()
        }

        async fn until_batches(&self, count: usize) {
            tokio::time::timeout(Duration::from_secs(5), async {
                while self.batches().len() < count {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .expect("the queue got the batch");
        }
    }

    #[async_trait]
    impl WorkQueue for GatedQueue {
        async fn send(&self, dispatches: &[Dispatch]) -> Result<Vec<TaskId>, QueueError> {
            self.batches.lock().unwrap().push(dispatches.len());
            self.permits.acquire().await.expect("open").forget();
            if self.down {
                return Err(QueueError::Unavailable("the gated queue is down".into()));
            }
            Ok(dispatches.iter().map(|d| d.message.task_id).collect())
        }

        async fn dead_letter(&self, _: &str, _: &str) -> Result<(), QueueError> {
            unreachable!("the outbox never dead-letters")
        }
    }

    /// An outbox over a [`GatedQueue`] (down: every send fails) and an in-memory repository.
    fn gated(down: bool) -> (Arc<GatedQueue>, Arc<MemoryRepository>, Outbox) {
        let (queue, repo) = (GatedQueue::new(down), Arc::new(MemoryRepository::default()));
        let outbox = Outbox::new(queue.clone(), repo.clone());
        (queue, repo, outbox)
    }

    async fn created(repo: &MemoryRepository) -> Dispatch {
        let task = repo
            .create(&tms_testkit::tasks::noop("demo"))
            .await
            .unwrap()
            .task;
        Dispatch {
            message: WorkMessage {
                task_id: task.id,
                tenant: Tenant::parse("demo").unwrap(),
                correlation_id: CorrelationId::generate(),
            },
            delay: Duration::ZERO,
            priority: tms::Priority::Normal,
        }
    }

    async fn settled(outbox: &Outbox) {
        tokio::time::timeout(Duration::from_secs(5), outbox.settle())
            .await
            .expect("the outbox settled");
    }

    async fn until_marked(repo: &MemoryRepository) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while repo.tasks().iter().any(|t| t.enqueued_at.is_none()) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("every task was marked");
    }

    #[tokio::test]
    async fn as_a_local_server_each_requests_messages_are_sent_and_marked_at_once() {
        let (queue, repo, outbox) = gated(false);
        queue.permits.add_permits(2);
        outbox.submit(vec![created(&repo).await, created(&repo).await]);
        outbox.submit(vec![created(&repo).await]);
        queue.until_batches(2).await;
        until_marked(&repo).await;
        let mut batches = queue.batches();
        batches.sort_unstable();
        assert_eq!(
            batches,
            vec![1, 2],
            "one send a request, nothing waited to share one"
        );
    }

    #[tokio::test]
    async fn collected_messages_wait_for_the_settle() {
        let (queue, repo, outbox) = gated(false);
        let outbox = outbox.collecting();
        queue.permits.add_permits(1);
        outbox.submit(vec![created(&repo).await]);
        outbox.submit(vec![created(&repo).await]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(queue.batches().is_empty(), "nothing sent before the settle");
        settled(&outbox).await;
        assert_eq!(queue.batches(), vec![2]);
        assert!(repo.tasks().iter().all(|t| t.enqueued_at.is_some()));
        settled(&outbox).await;
        assert_eq!(
            queue.batches(),
            vec![2],
            "a settle with nothing collected sends nothing"
        );
    }

    #[tokio::test]
    async fn settling_waits_for_the_send_and_the_marker() {
        let (queue, repo, outbox) = gated(false);
        let outbox = outbox.collecting();
        outbox.submit(vec![created(&repo).await]);
        let settling = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.settle().await })
        };
        queue.until_batches(1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!settling.is_finished(), "the queue has not answered yet");
        assert_eq!(repo.tasks()[0].enqueued_at, None);
        queue.permits.add_permits(1);
        tokio::time::timeout(Duration::from_secs(5), settling)
            .await
            .expect("settled once the queue answered")
            .unwrap();
        assert!(
            repo.tasks()[0].enqueued_at.is_some(),
            "marked before settle returned"
        );
    }

    #[tokio::test]
    async fn a_failed_send_is_left_to_the_relay() {
        let (queue, repo, outbox) = gated(true);
        let outbox = outbox.collecting();
        outbox.submit(vec![created(&repo).await]);
        queue.permits.add_permits(1);
        settled(&outbox).await;
        assert_eq!(queue.batches(), vec![1]);
        assert!(repo.tasks().iter().all(|t| t.enqueued_at.is_none()));
        assert!(repo.marker_statements().is_empty());
    }

    #[tokio::test]
    async fn under_lambda_the_outbox_settles_after_the_response_is_posted() {
        let (queue, repo, outbox) = gated(false);
        let outbox = outbox.collecting();
        let posted = Arc::new(Mutex::new(false));
        let runtime_api = {
            let (outbox, repo, posted) = (outbox.clone(), repo.clone(), posted.clone());
            lambda_http::tower::service_fn(move |_: LambdaInvocation| {
                let (outbox, repo, posted) = (outbox.clone(), repo.clone(), posted.clone());
                async move {
                    // The handler submits its message; the runtime posts the response.
                    outbox.submit(vec![created(&repo).await]);
                    *posted.lock().unwrap() = true;
                    Ok::<(), BoxError>(())
                }
            })
        };
        let mut service = Settle::new(outbox).layer(runtime_api);
        let invocation = LambdaInvocation {
            parts: http::Response::new(()).into_parts().0,
            body: Default::default(),
            context: Default::default(),
        };
        let invoked = tokio::spawn(service.call(invocation));
        queue.until_batches(1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(*posted.lock().unwrap(), "the response went first");
        assert!(!invoked.is_finished(), "the next event waits for the send");
        queue.permits.add_permits(1);
        tokio::time::timeout(Duration::from_secs(5), invoked)
            .await
            .expect("the invocation ended once the queue answered")
            .unwrap()
            .unwrap();
        assert!(
            repo.tasks()[0].enqueued_at.is_some(),
            "marked before the next event"
        );
    }
}
