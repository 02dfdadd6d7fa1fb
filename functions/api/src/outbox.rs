//! The create path's outbox: the work messages of new tasks go to the queue after the response,
//! in shared rounds, and their outbox markers are written in batches.
//!
//! A request hands its messages over ([`Outbox::submit`]) and answers: the task is durable once
//! committed, and a message that is never sent is sent by the relay, so the client waits for one
//! database round trip, not for the queue too. Under Lambda the runtime settles the outbox
//! ([`Settle`]) after it has posted the response and before it asks for the next event, so an
//! environment never freezes with a message unsent; as a local server the rounds simply run
//! beside the requests.
//!
//! One task sends rounds: the messages that arrive while a round is in flight share the next one,
//! so under concurrent load one `SendMessageBatch` carries up to ten creates instead of one each
//! (a database's group commit, for the queue).
//!
//! The marker is advisory: a task whose marker is lost is sent again by the relay after 30 s, a
//! harmless duplicate. So a second task writes the markers of the rounds sent in the last
//! [`MARKER_LINGER`] in one asynchronously committed statement, or at once when the outbox is
//! settled. One statement per create cost the next create's insert a quarter of a millisecond
//! at one client (its commit waited behind the marker's WAL).

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use lambda_http::lambda_runtime::LambdaInvocation;
use lambda_http::tower::{Layer, Service};
use tms::ports::{Dispatch, TaskRepository, WorkQueue};
use tms::TaskId;
use tokio::sync::{mpsc, oneshot};

/// The most markers one statement sets.
const MARKERS_PER_STATEMENT: usize = 1000;

/// How long sent markers wait to share a statement (when nothing settles the outbox first).
const MARKER_LINGER: Duration = Duration::from_millis(100);

/// How long a message waits for others to share its `SendMessageBatch` (when nothing settles
/// the outbox first): one request per ten creates rather than one each. Long enough for ten
/// creates at 2,000 a second (with 2 ms, rounds carried four or five, and their requests, then
/// sent with the SDK's client, took 13% of the API's CPU at eight clients); nothing waits for it
/// but the work message, and under Lambda the settle after each response sends at once.
const SEND_LINGER: Duration = Duration::from_millis(5);

/// The most messages one `SendMessageBatch` takes.
const SQS_BATCH: usize = 10;

/// How long [`Settle`] waits for the outbox before it lets the runtime take the next event.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// What the round sender (`T`: messages to send) and the marker writer (`T`: ids sent) receive.
enum Item<T> {
    Add(Vec<T>),
    /// Answered once everything submitted before it was sent and marked (or failed).
    Settle(oneshot::Sender<()>),
}

/// Sends work messages after the response, in shared rounds; see the module documentation.
#[derive(Clone)]
pub struct Outbox {
    queue: Arc<dyn WorkQueue>,
    repo: Arc<dyn TaskRepository>,
    /// The round sender, started by the first submit (it needs the runtime).
    commands: Arc<OnceLock<mpsc::UnboundedSender<Item<Dispatch>>>>,
}

impl Outbox {
    pub fn new(queue: Arc<dyn WorkQueue>, repo: Arc<dyn TaskRepository>) -> Self {
        Self {
            queue,
            repo,
            commands: Arc::default(),
        }
    }

    /// Hands the messages to the next round and returns at once. A round that fails is logged
    /// and left to the relay.
    pub fn submit(&self, dispatches: Vec<Dispatch>) {
        if dispatches.is_empty() {
            return;
        }
        let count = dispatches.len();
        let commands = self.commands.get_or_init(|| self.start());
        if commands.send(Item::Add(dispatches)).is_err() {
            tracing::warn!(
                count,
                "the outbox's sender stopped; the relay will send these tasks"
            );
        }
    }

    /// Waits until every message submitted before this call was sent (or its round failed) and
    /// the markers of those sent are written.
    pub async fn settle(&self) {
        let Some(commands) = self.commands.get() else {
            return;
        };
        let (done, settled) = oneshot::channel();
        if commands.send(Item::Settle(done)).is_ok() {
            let _ = settled.await;
        }
    }

    fn start(&self) -> mpsc::UnboundedSender<Item<Dispatch>> {
        let (commands, received) = mpsc::unbounded_channel();
        let (marks, marked) = mpsc::unbounded_channel();
        tokio::spawn(send_rounds(received, self.queue.clone(), marks));
        tokio::spawn(write_markers(marked, self.repo.clone()));
        commands
    }
}

/// What a lingering task collected: the items to act on and the settles that came with them.
struct Batch<T> {
    items: Vec<T>,
    settles: Vec<oneshot::Sender<()>>,
}

impl<T> Batch<T> {
    fn take(&mut self, item: Item<T>) {
        match item {
            Item::Add(more) => self.items.extend(more),
            Item::Settle(done) => self.settles.push(done),
        }
    }
}

/// The next item and those that follow within `linger` of it, until a settle arrives or `full`
/// items are in; `None` when the channel is closed.
async fn gather<T>(
    receiver: &mut mpsc::UnboundedReceiver<Item<T>>,
    linger: Duration,
    full: usize,
) -> Option<Batch<T>> {
    let mut batch = Batch {
        items: Vec::new(),
        settles: Vec::new(),
    };
    batch.take(receiver.recv().await?);
    let deadline = tokio::time::sleep(linger);
    tokio::pin!(deadline);
    loop {
        while let Ok(item) = receiver.try_recv() {
            batch.take(item);
        }
        if !batch.settles.is_empty() || batch.items.len() >= full {
            break;
        }
        tokio::select! {
            () = &mut deadline => break,
            item = receiver.recv() => match item {
                Some(item) => batch.take(item),
                None => break,
            },
        }
    }
    Some(batch)
}

/// Sends the messages that arrive within [`SEND_LINGER`] of each other, and those that waited
/// for the previous round, as one round; hands the sent ids to the marker writer, then the
/// settles that came with them. Ends when the outbox is dropped.
async fn send_rounds(
    mut commands: mpsc::UnboundedReceiver<Item<Dispatch>>,
    queue: Arc<dyn WorkQueue>,
    marks: mpsc::UnboundedSender<Item<TaskId>>,
) {
    while let Some(round) = gather(&mut commands, SEND_LINGER, SQS_BATCH).await {
        if !round.items.is_empty() {
            match queue.send(&round.items).await {
                Ok(sent) => {
                    let _ = marks.send(Item::Add(sent));
                }
                Err(e) => tracing::warn!(error = %e, count = round.items.len(),
                    "work messages not sent; the relay will send them"),
            }
        }
        for done in round.settles {
            let _ = marks.send(Item::Settle(done));
        }
    }
}

/// Sets the markers of the rounds sent within [`MARKER_LINGER`] of the first, in one statement,
/// or at once when a settle arrives.
async fn write_markers(
    mut marks: mpsc::UnboundedReceiver<Item<TaskId>>,
    repo: Arc<dyn TaskRepository>,
) {
    while let Some(sent) = gather(&mut marks, MARKER_LINGER, MARKERS_PER_STATEMENT).await {
        for chunk in sent.items.chunks(MARKERS_PER_STATEMENT) {
            if let Err(e) = repo.mark_enqueued(chunk).await {
                tracing::warn!(error = %e, count = chunk.len(),
                    "outbox markers not set; the relay may send duplicates");
            }
        }
        for done in sent.settles {
            let _ = done.send(());
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
    use tms::{CorrelationId, Tenant, WorkMessage};
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
        }
    }

    fn ids(dispatches: &[&Dispatch]) -> Vec<TaskId> {
        dispatches.iter().map(|d| d.message.task_id).collect()
    }

    async fn settled(outbox: &Outbox) {
        tokio::time::timeout(Duration::from_secs(5), outbox.settle())
            .await
            .expect("the outbox settled");
    }

    #[tokio::test]
    async fn messages_waiting_for_a_round_in_flight_share_the_next_round() {
        let (queue, repo, outbox) = gated(false);
        outbox.submit(vec![created(&repo).await]);
        queue.until_batches(1).await;
        for _ in 0..3 {
            outbox.submit(vec![created(&repo).await]);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        queue.permits.add_permits(2);
        settled(&outbox).await;
        assert_eq!(
            queue.batches(),
            vec![1, 3],
            "the three that waited went in one batch"
        );
        assert!(repo.tasks().iter().all(|t| t.enqueued_at.is_some()));
    }

    #[tokio::test(start_paused = true)]
    async fn messages_submitted_within_the_send_linger_share_one_round() {
        let (queue, repo, outbox) = gated(false);
        queue.permits.add_permits(3);
        outbox.submit(vec![created(&repo).await]);
        tokio::time::sleep(SEND_LINGER / 2).await;
        outbox.submit(vec![created(&repo).await]);
        tokio::time::sleep(SEND_LINGER * 2).await;
        outbox.submit(vec![created(&repo).await]);
        settled(&outbox).await;
        assert_eq!(
            queue.batches(),
            vec![2, 1],
            "the second came within the linger of the first, the third after it"
        );
    }

    #[tokio::test]
    async fn settling_waits_for_the_send_and_the_marker() {
        let (queue, repo, outbox) = gated(false);
        outbox.submit(vec![created(&repo).await]);
        let settling = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.settle().await })
        };
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
    async fn rounds_sent_within_the_linger_share_one_marker_statement() {
        let (queue, repo, outbox) = gated(false);
        let (first, second) = (created(&repo).await, created(&repo).await);
        outbox.submit(vec![first.clone()]);
        queue.until_batches(1).await;
        outbox.submit(vec![second.clone()]);
        queue.permits.add_permits(2);
        queue.until_batches(2).await;
        assert!(
            repo.marker_statements().is_empty(),
            "no marker written as soon as a round is sent"
        );
        tokio::time::timeout(Duration::from_secs(5), async {
            while repo.marker_statements().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the markers are written after the linger");
        assert_eq!(repo.marker_statements(), vec![ids(&[&first, &second])]);
    }

    #[tokio::test]
    async fn a_failed_round_is_left_to_the_relay() {
        let (queue, repo, outbox) = gated(true);
        outbox.submit(vec![created(&repo).await]);
        queue.until_batches(1).await;
        outbox.submit(vec![created(&repo).await]);
        queue.permits.add_permits(2);
        settled(&outbox).await;
        assert_eq!(queue.batches(), vec![1, 1]);
        assert!(repo.tasks().iter().all(|t| t.enqueued_at.is_none()));
        assert!(repo.marker_statements().is_empty());
    }

    #[tokio::test]
    async fn under_lambda_the_outbox_settles_after_the_response_is_posted() {
        let (queue, repo, outbox) = gated(false);
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
