//! What a test worker handled, for fault tests: every handling of every record, so a test can
//! check that nothing was lost and say which records came twice and when they first started.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shareworker::{
    Job, JobDefinition, JobError,
    broker::{Broker, Bytes, OutgoingRecord},
};
use tokio::time::Instant;

/// One handling of a record.
#[derive(Clone, Copy, Debug)]
pub struct Handling {
    /// When the handler started.
    pub started: Instant,
    /// The delivery attempt (the broker's delivery count).
    pub attempt: u16,
}

/// A record in the log: partition and offset.
pub type Position = (i32, i64);

#[derive(Default)]
struct Inner {
    /// Every finished handling by log position.
    by_position: BTreeMap<Position, Vec<Handling>>,
    /// The values handled (a value written twice by a producer retry has two positions).
    values: BTreeSet<String>,
}

/// The records a worker handled; cheap to clone.
#[derive(Clone, Default)]
pub struct Tally {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tally")
            .field("values", &self.values_handled())
            .finish_non_exhaustive()
    }
}

impl Tally {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A handler `name` on `topic` that takes `work` per record and then records it here.
    pub fn handler(&self, name: &str, topic: &str, work: Duration) -> JobDefinition {
        let tally = self.clone();
        JobDefinition::new(name, topic, move |job: Job<Bytes>| {
            let tally = tally.clone();
            async move {
                let started = Instant::now();
                tokio::time::sleep(work).await;
                let value = String::from_utf8_lossy(job.payload()).into_owned();
                let mut inner = tally.lock();
                inner
                    .by_position
                    .entry((job.partition(), job.offset()))
                    .or_default()
                    .push(Handling {
                        started,
                        attempt: job.attempt(),
                    });
                inner.values.insert(value);
                Ok::<(), JobError>(())
            }
        })
    }

    /// How many distinct values were handled.
    pub fn values_handled(&self) -> usize {
        self.lock().values.len()
    }

    /// The values of `want` not handled yet.
    pub fn missing(&self, want: &BTreeSet<String>) -> Vec<String> {
        let inner = self.lock();
        want.difference(&inner.values).cloned().collect()
    }

    /// Records handled more than once, with every handling.
    pub fn duplicates(&self) -> BTreeMap<Position, Vec<Handling>> {
        self.lock()
            .by_position
            .iter()
            .filter(|(_, h)| h.len() > 1)
            .map(|(p, h)| (*p, h.clone()))
            .collect()
    }

    /// The partitions of every record handled since `since`.
    pub fn partitions_handled_since(&self, since: Instant) -> BTreeSet<i32> {
        self.lock()
            .by_position
            .iter()
            .filter(|(_, h)| h.iter().any(|h| h.started >= since))
            .map(|((p, _), _)| *p)
            .collect()
    }

    /// Waits until at least `n` distinct values were handled.
    ///
    /// # Panics
    /// When that takes longer than `limit`.
    pub async fn wait_for(&self, n: usize, limit: Duration, what: &str) {
        let deadline = Instant::now() + limit;
        while self.values_handled() < n {
            assert!(
                Instant::now() < deadline,
                "{what}: only {} of {n} records handled after {limit:?}",
                self.values_handled()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every value of `want` was handled.
    ///
    /// # Panics
    /// When that takes longer than `limit`, naming what is missing.
    pub async fn wait_for_all(&self, want: &BTreeSet<String>, limit: Duration, what: &str) {
        let deadline = Instant::now() + limit;
        loop {
            let missing = self.missing(want);
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {} of {} records never handled within {limit:?} (lost?): {:?}",
                missing.len(),
                want.len(),
                missing.iter().take(20).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The values `from..to` as strings, the records the fault tests write.
pub fn values(from: usize, to: usize) -> BTreeSet<String> {
    (from..to).map(|i| i.to_string()).collect()
}

/// Writes the values `from..to` to `topic` (to `partition` when given), retrying the whole write
/// for up to `limit` while the cluster recovers from a fault. A retry may write a value twice:
/// [`Tally`] counts duplicates by log position, so that is not mistaken for a redelivery.
///
/// # Panics
/// When the write keeps failing for `limit`.
pub async fn produce(
    broker: &dyn Broker,
    topic: &str,
    from: usize,
    to: usize,
    partition: Option<i32>,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    let records: Vec<OutgoingRecord> = (from..to)
        .map(|i| {
            let mut r = OutgoingRecord::new(i.to_string());
            r.partition = partition;
            r
        })
        .collect();
    loop {
        match broker.produce(topic, records.clone()).await {
            Ok(_) => return,
            Err(e) if Instant::now() < deadline => {
                eprintln!("producing {from}..{to} to {topic} failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("cannot produce {from}..{to} to {topic} within {limit:?}: {e}"),
        }
    }
}

/// A worker running in the background of a test.
pub struct Running {
    stop: shareworker::worker::ShutdownHandle,
    run: tokio::task::JoinHandle<Result<shareworker::worker::RunSummary, shareworker::Error>>,
    /// The address of its HTTP endpoint (`/readyz`), when enabled.
    pub http: Option<std::net::SocketAddr>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Builds and starts a worker on `broker` with the one handler `def` (HTTP on a free
    /// loopback port when `http`, the autoscale refresh every second).
    ///
    /// # Panics
    /// When the worker cannot be built.
    pub async fn start(broker: Arc<dyn Broker>, def: JobDefinition, http: bool) -> Self {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let mut config = shareworker::Config::default();
        config.shutdown_grace = Duration::from_secs(5);
        config.http.enabled = http;
        config.http.address = "127.0.0.1:0".into();
        config.autoscale.refresh = Duration::from_secs(1);
        let worker = shareworker::Worker::builder()
            .broker_arc(broker)
            .code_config_only()
            .without_signal_handling()
            .config(config)
            .job(def)
            .build()
            .await
            .unwrap_or_else(|e| panic!("cannot build the worker: {e}"));
        let stop = worker.shutdown_handle();
        let http = worker.http_address();
        let run = tokio::spawn(worker.run());
        Self { stop, run, http }
    }

    /// Shuts the worker down and returns how its run ended.
    ///
    /// # Panics
    /// When the worker's task panicked or the run failed.
    pub async fn stop(self) -> shareworker::worker::RunSummary {
        self.stop.shutdown();
        match self.run.await {
            Ok(Ok(summary)) => summary,
            Ok(Err(e)) => panic!("the worker's run failed: {e}"),
            Err(e) => panic!("the worker's task failed: {e}"),
        }
    }
}
