//! Testing handlers: run them on an embedded broker, ideally with paused tokio time, until there
//! is nothing left to do, then look at what happened to each job and at the dead letters.
//!
//! ```
//! use shareworker::testing::TestWorker;
//! use shareworker::{Job, JobDefinition, JobError, worker::Outcome};
//!
//! async fn charge(job: Job<u32>) -> Result<(), JobError> {
//!     if *job.payload() == 0 {
//!         return Err(JobError::permanent("nothing to charge"));
//!     }
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), shareworker::Error> {
//! // In a test: #[tokio::test(start_paused = true)], so backoff delays take no real time.
//! let mut t = TestWorker::new().job(JobDefinition::new("charge", "payments", charge));
//! let ok = t.enqueue("payments", &42).await?;
//! let bad = t.enqueue("payments", &0).await?;
//! let report = t.run_until_idle().await?;
//! assert_eq!(report.final_outcome("payments", ok.partition, ok.offset), Some(&Outcome::Accepted));
//! assert_eq!(report.final_outcome("payments", bad.partition, bad.offset), Some(&Outcome::DeadLettered));
//! assert_eq!(report.dead_letters("payments.dlq")?.len(), 1);
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::broker::lock::LockExt;
use crate::broker::{Broker, Delivery, Produced};
use crate::codec::Encode;
use crate::config::Config;
use crate::definition::JobDefinition;
use crate::embedded::EmbeddedBroker;
use crate::queue::{Message, Queue};
use crate::state::States;
use crate::worker::{JobEvent, Outcome, RunSummary, Worker};
use crate::{Error, broker::StartFrom};

/// How often [`TestWorker::run_until_idle`] looks whether the work is done.
const POLL: Duration = Duration::from_millis(10);

/// Runs handlers on an [`EmbeddedBroker`] for a test.
///
/// Groups start at the earliest offset, so jobs enqueued before the run are seen. The file and
/// the environment are ignored: only the code and [`TestWorker::config`] count.
pub struct TestWorker {
    broker: EmbeddedBroker,
    definitions: Vec<JobDefinition>,
    config: Config,
    limit: Duration,
    states: States,
}

impl Default for TestWorker {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for TestWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestWorker")
            .field("definitions", &self.definitions)
            .finish_non_exhaustive()
    }
}

impl TestWorker {
    /// A test worker on a new embedded broker with Kafka's defaults (30 s locks, 5 deliveries)
    /// that keeps settled records, so that the test can read its topics after the run.
    pub fn new() -> Self {
        let broker = EmbeddedBroker::builder()
            .start_from(StartFrom::Earliest)
            .keep_settled_records(true)
            .build()
            .expect("the default settings are valid");
        Self::with_broker(broker)
    }

    /// A test worker on this broker.
    pub fn with_broker(broker: EmbeddedBroker) -> Self {
        Self {
            broker,
            definitions: Vec::new(),
            config: {
                // A test serves no HTTP endpoint (tests run side by side); turn it on with
                // `.config(|c| c.http.enabled = true)`.
                let mut c = Config::default();
                c.http.enabled = false;
                c
            },
            limit: Duration::from_secs(24 * 3600),
            states: States::default(),
        }
    }

    /// Registers `value` as state for handlers that take [`State<T>`](crate::State) of its
    /// type, as [`WorkerBuilder::state`](crate::worker::WorkerBuilder::state) does: the place for a
    /// fake of a database or a mailer.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use shareworker::testing::TestWorker;
    /// use shareworker::{Job, JobDefinition, JobError, queue::Message, State};
    ///
    /// #[derive(Clone, Default)]
    /// struct FakeMailer(Arc<Mutex<Vec<String>>>);
    ///
    /// async fn send(job: Job<String>, State(m): State<FakeMailer>) -> Result<(), JobError> {
    ///     m.0.lock().map_err(|_| JobError::retry("poisoned"))?.push(job.into_payload());
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), shareworker::Error> {
    /// let mailer = FakeMailer::default();
    /// let mut t = TestWorker::new()
    ///     .state(mailer.clone())
    ///     .job(JobDefinition::handler("send", "emails", send));
    /// t.send("emails", Message::text("ada@example.com")).await?;
    /// t.run_until_idle().await?;
    /// assert_eq!(*mailer.0.lock().unwrap(), ["ada@example.com"]);
    /// # Ok(()) }
    /// ```
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.states.insert(value);
        self
    }

    /// Adds a handler (`my_handler::definition()` for a `#[job]`).
    pub fn job(mut self, definition: JobDefinition) -> Self {
        self.definitions.push(definition);
        self
    }

    /// Changes the configuration (per-handler settings go under `handlers`, filled in at run).
    pub fn config(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }

    /// Gives up on [`run_until_idle`](Self::run_until_idle) after this long (default 24 h of tokio
    /// time).
    ///
    /// The limit is the whole call, shutdown included: when it is reached, the worker is stopped
    /// without waiting out its `shutdown_grace` (handlers still running are cancelled and their
    /// records released), and `run_until_idle` returns a timeout error right away.
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }

    /// The broker, to produce, read topics or configure groups directly.
    pub fn broker(&self) -> &EmbeddedBroker {
        &self.broker
    }

    /// A queue on the broker.
    pub fn queue(&self) -> Queue {
        Queue::new(self.broker.clone())
    }

    /// Enqueues `payload` on `topic`, encoded as [`Queue::enqueue`] does.
    ///
    /// # Errors
    /// When the payload cannot be encoded or the topic name is invalid.
    pub async fn enqueue<T: Encode + ?Sized>(
        &self,
        topic: &str,
        payload: &T,
    ) -> Result<Produced, Error> {
        self.queue().enqueue(topic, payload).await
    }

    /// Enqueues a message built with [`Message`].
    ///
    /// # Errors
    /// When the topic name is invalid.
    pub async fn send(&self, topic: &str, message: Message) -> Result<Produced, Error> {
        self.queue().send(topic, message).await
    }

    /// Runs the handlers until every record of their topics is delivery-complete (accepted,
    /// dead-lettered or rejected) and nothing is in flight, then shuts the worker down.
    ///
    /// # Errors
    /// When the configuration is invalid, or the work is not done within the time limit (a
    /// handler that never returns, for example).
    pub async fn run_until_idle(&mut self) -> Result<TestReport, Error> {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let mut worker = Worker::builder().broker(self.broker.clone());
        worker.states = self.states.clone();
        let worker = worker
            .config(self.config.clone())
            .code_config_only()
            .without_signal_handling()
            .on_event(move |e| sink.locked().push(e.clone()));
        let worker = std::mem::take(&mut self.definitions)
            .into_iter()
            .fold(worker, |w, d| w.job(d))
            .build()
            .await?;
        let groups: Vec<String> = worker
            .config()
            .handlers
            .values()
            .map(|h| h.group.clone())
            .collect();
        let shutdown = worker.shutdown_handle();
        let stop_now = worker.stop_now_token();
        let status = worker.status();
        let run = tokio::spawn(worker.run());
        let deadline = tokio::time::Instant::now() + self.limit;
        let mut idle = false;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
            if run.is_finished() {
                break;
            }
            if !status.is_ready() {
                continue;
            }
            let mut lag = 0;
            for g in &groups {
                lag += self.broker.lag(g).await?.iter().map(|t| t.lag).sum::<u64>();
            }
            if lag == 0 {
                idle = true;
                break;
            }
        }
        shutdown.shutdown();
        if !idle {
            // The time limit includes the shutdown: no grace period on top of it.
            stop_now.cancel();
        }
        let summary = run
            .await
            .map_err(|e| Error::closed(format!("the worker task failed: {e}")))??;
        if !idle {
            return Err(Error::timeout(format!(
                "the handlers were not done within {}",
                crate::duration::format(self.limit)
            )));
        }
        let events = std::mem::take(&mut *events.locked());
        Ok(TestReport {
            broker: self.broker.clone(),
            events,
            summary,
        })
    }
}

/// What happened during [`TestWorker::run_until_idle`].
pub struct TestReport {
    broker: EmbeddedBroker,
    events: Vec<JobEvent>,
    summary: RunSummary,
}

impl std::fmt::Debug for TestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestReport")
            .field("summary", &self.summary)
            .field("events", &self.events)
            .finish()
    }
}

impl TestReport {
    /// Every event, in the order they happened.
    pub fn events(&self) -> &[JobEvent] {
        &self.events
    }

    /// The counts.
    pub fn summary(&self) -> RunSummary {
        self.summary
    }

    /// The events of one record, in order.
    pub fn events_of(&self, topic: &str, partition: i32, offset: i64) -> Vec<&JobEvent> {
        self.events
            .iter()
            .filter(|e| {
                &*e.id.topic == topic && e.id.partition == partition && e.id.offset == offset
            })
            .collect()
    }

    /// The last outcome of one record: `Accepted`, `DeadLettered` or `Rejected` once it is done.
    pub fn final_outcome(&self, topic: &str, partition: i32, offset: i64) -> Option<&Outcome> {
        self.events_of(topic, partition, offset)
            .last()
            .map(|e| &e.outcome)
    }

    /// How many times one record's handler ran.
    pub fn attempts(&self, topic: &str, partition: i32, offset: i64) -> usize {
        self.events_of(topic, partition, offset)
            .iter()
            .filter(|e| e.took.is_some() && !matches!(e.outcome, Outcome::LeaseExpired))
            .count()
    }

    /// The records on a dead-letter topic, with their headers.
    ///
    /// # Errors
    /// When the topic does not exist.
    pub fn dead_letters(&self, topic: &str) -> Result<Vec<Delivery>, Error> {
        self.broker.read_topic(topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Job, JobError};
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn max_lease_ends_a_handler_on_time_not_at_the_next_renewal() {
        // Locks of 30 s are renewed every 15 s; a lease of 3 s must not wait for that.
        let handler = |job: Job<u32>| async move {
            if job.attempt() == 1 {
                std::future::pending::<()>().await;
            }
            Ok::<(), JobError>(())
        };
        let mut t = TestWorker::new()
            .job(JobDefinition::new("stuck", "lease", handler))
            .config(|c| c.max_lease = Duration::from_secs(3));
        let p = t.enqueue("lease", &1).await.expect("enqueue");
        let report = t.run_until_idle().await.expect("run");
        let expired: Vec<_> = report
            .events_of("lease", p.partition, p.offset)
            .into_iter()
            .filter(|e| e.outcome == Outcome::LeaseExpired)
            .collect();
        assert_eq!(expired.len(), 1, "{:?}", report.events());
        let took = expired[0]
            .took
            .expect("a lease-expired event has a duration");
        assert!(
            took >= Duration::from_secs(3) && took < Duration::from_secs(4),
            "max_lease 3s ended the handler after {took:?}"
        );
        assert_eq!(
            report.final_outcome("lease", p.partition, p.offset),
            Some(&Outcome::Accepted)
        );
        assert_eq!(report.summary().lease_expired, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn time_limit_includes_the_shutdown_grace() {
        let stuck = |_: Job<u32>| async move {
            std::future::pending::<()>().await;
            Ok::<(), JobError>(())
        };
        let mut t = TestWorker::new()
            .job(JobDefinition::new("stuck", "stuck", stuck))
            .config(|c| c.shutdown_grace = Duration::from_secs(30))
            .time_limit(Duration::from_secs(2));
        t.enqueue("stuck", &1).await.expect("enqueue");
        let began = Instant::now();
        let err = t
            .run_until_idle()
            .await
            .expect_err("a stuck handler is not done");
        let took = began.elapsed();
        assert!(err.is_timeout(), "{err}");
        assert!(
            took < Duration::from_secs(3),
            "time_limit(2s) with a 30 s shutdown grace returned after {took:?}"
        );
        // The stuck handler was cancelled and its record released: the broker can hand it out.
        let member = t
            .broker()
            .join("stuck", &["stuck".to_string()])
            .await
            .expect("join");
        let again = member.acquire(1, Duration::ZERO).await.expect("acquire");
        assert_eq!(again.len(), 1, "the record should be released, not locked");
        assert_eq!(again[0].delivery_count, 2);
    }
}
