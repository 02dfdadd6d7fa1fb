//! The create path's outbox: the work messages of new tasks go to the queue in shared rounds,
//! and their outbox markers are written after the requests are answered.
//!
//! One task sends rounds: the creates that arrive while a round is in flight wait for the next
//! one and share it, so under concurrent load one `SendMessageBatch` carries up to ten creates
//! instead of one each (a database's group commit, for the queue). With one request at a time,
//! as under Lambda, a round is that request's messages alone.
//!
//! The marker is advisory: a task whose marker is lost is sent again by the relay, a harmless
//! duplicate. So no request waits for it: a second task writes the markers of every round sent
//! since its last write in one asynchronously committed statement.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use tms::ports::{Dispatch, QueueError, TaskRepository, WorkQueue};
use tms::TaskId;
use tokio::sync::{mpsc, oneshot};

/// The most markers one statement sets.
const MARKERS_PER_STATEMENT: usize = 1000;

type Reply = oneshot::Sender<Result<Vec<TaskId>, QueueError>>;

struct Request {
    dispatches: Vec<Dispatch>,
    reply: Reply,
}

/// Sends work messages in shared rounds; see the module documentation.
#[derive(Clone)]
pub struct Outbox {
    queue: Arc<dyn WorkQueue>,
    repo: Arc<dyn TaskRepository>,
    /// The round sender, started by the first send (it needs the runtime).
    rounds: Arc<OnceLock<mpsc::UnboundedSender<Request>>>,
}

impl Outbox {
    pub fn new(queue: Arc<dyn WorkQueue>, repo: Arc<dyn TaskRepository>) -> Self {
        Self {
            queue,
            repo,
            rounds: Arc::default(),
        }
    }

    /// Sends the messages with the next round and returns the ids of the tasks whose message
    /// the queue accepted; their markers are written soon after, not before this returns.
    ///
    /// # Errors
    /// [`QueueError`] when the queue took none of them.
    pub async fn send(&self, dispatches: Vec<Dispatch>) -> Result<Vec<TaskId>, QueueError> {
        if dispatches.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        let rounds = self.rounds.get_or_init(|| self.start());
        rounds
            .send(Request { dispatches, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    fn start(&self) -> mpsc::UnboundedSender<Request> {
        let (requests, received) = mpsc::unbounded_channel();
        let (markers, marked) = mpsc::unbounded_channel();
        tokio::spawn(send_rounds(received, self.queue.clone(), markers));
        tokio::spawn(write_markers(marked, self.repo.clone()));
        requests
    }
}

fn stopped() -> QueueError {
    QueueError::Unavailable("the outbox's sender stopped".into())
}

/// Sends every request waiting when the previous round ended as one round, answers each with
/// its own tasks, and hands the sent ids to the marker writer. Ends when the outbox is dropped.
async fn send_rounds(
    mut requests: mpsc::UnboundedReceiver<Request>,
    queue: Arc<dyn WorkQueue>,
    markers: mpsc::UnboundedSender<Vec<TaskId>>,
) {
    while let Some(first) = requests.recv().await {
        let mut round = vec![first];
        while let Ok(next) = requests.try_recv() {
            round.push(next);
        }
        let dispatches: Vec<Dispatch> = round
            .iter()
            .flat_map(|r| r.dispatches.iter().cloned())
            .collect();
        match queue.send(&dispatches).await {
            Ok(sent) => {
                let accepted: HashSet<TaskId> = sent.iter().copied().collect();
                for request in round {
                    let mine = request
                        .dispatches
                        .iter()
                        .map(|d| d.message.task_id)
                        .filter(|id| accepted.contains(id))
                        .collect();
                    let _ = request.reply.send(Ok(mine));
                }
                let _ = markers.send(sent);
            }
            Err(e) => {
                let QueueError::Unavailable(source) = &e;
                let reason = source.to_string();
                for request in round {
                    let _ = request
                        .reply
                        .send(Err(QueueError::Unavailable(reason.clone().into())));
                }
            }
        }
    }
}

/// Sets the markers of every round sent since the last write, in one statement.
async fn write_markers(
    mut rounds: mpsc::UnboundedReceiver<Vec<TaskId>>,
    repo: Arc<dyn TaskRepository>,
) {
    while let Some(mut ids) = rounds.recv().await {
        while ids.len() < MARKERS_PER_STATEMENT {
            match rounds.try_recv() {
                Ok(more) => ids.extend(more),
                Err(_) => break,
            }
        }
        for chunk in ids.chunks(MARKERS_PER_STATEMENT) {
            if let Err(e) = repo.mark_enqueued(chunk).await {
                tracing::warn!(error = %e, count = chunk.len(),
                    "outbox markers not set; the relay may send duplicates");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;
    use tms::ports::TaskRepository;
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

    #[tokio::test]
    async fn sends_waiting_for_a_round_in_flight_share_the_next_round() {
        let (queue, repo) = (
            GatedQueue::new(false),
            Arc::new(MemoryRepository::default()),
        );
        let outbox = Outbox::new(queue.clone(), repo.clone());
        let first = created(&repo).await;
        let sending = {
            let (outbox, first) = (outbox.clone(), first.clone());
            tokio::spawn(async move { outbox.send(vec![first]).await })
        };
        queue.until_batches(1).await;
        let mut waiting = Vec::new();
        for _ in 0..3 {
            let (outbox, next) = (outbox.clone(), created(&repo).await);
            let id = next.message.task_id;
            waiting.push((
                id,
                tokio::spawn(async move { outbox.send(vec![next]).await }),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        queue.permits.add_permits(2);

        assert_eq!(sending.await.unwrap().unwrap(), vec![first.message.task_id]);
        for (id, send) in waiting {
            assert_eq!(
                send.await.unwrap().unwrap(),
                vec![id],
                "each gets its own task back"
            );
        }
        assert_eq!(
            queue.batches(),
            vec![1, 3],
            "the three that waited went in one batch"
        );
    }

    #[tokio::test]
    async fn markers_are_set_after_the_send_answers() {
        let (queue, repo) = (
            GatedQueue::new(false),
            Arc::new(MemoryRepository::default()),
        );
        let outbox = Outbox::new(queue.clone(), repo.clone());
        let dispatch = created(&repo).await;
        queue.permits.add_permits(1);
        outbox.send(vec![dispatch]).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while repo.tasks()[0].enqueued_at.is_none() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the marker is set");
    }

    #[tokio::test]
    async fn a_failed_round_fails_every_send_in_it_and_sets_no_marker() {
        let (queue, repo) = (GatedQueue::new(true), Arc::new(MemoryRepository::default()));
        let outbox = Outbox::new(queue.clone(), repo.clone());
        let first = created(&repo).await;
        let sending = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.send(vec![first]).await })
        };
        queue.until_batches(1).await;
        let second = {
            let (outbox, next) = (outbox.clone(), created(&repo).await);
            tokio::spawn(async move { outbox.send(vec![next]).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        queue.permits.add_permits(2);

        for send in [sending, second] {
            let error = send.await.unwrap().unwrap_err().to_string();
            assert_eq!(error, "queue unavailable: the gated queue is down");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(repo.tasks().iter().all(|t| t.enqueued_at.is_none()));
    }
}
