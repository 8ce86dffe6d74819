//! Runtime scenarios that run on any [`Broker`]: a [`Worker`] with real handlers, observed from
//! the outside (handler counters, [`JobEvent`]s, the broker's lag and dead-letter topics).
//!
//! Each scenario takes a [`Harness`]: the broker, the lock duration its groups use, a prefix
//! that makes topic and group names unique, and the tolerances of time measurements. On the
//! embedded broker the scenarios run under paused tokio time (every sleep is instant and exact);
//! on a real Kafka broker they run in real time, so the harness's `slack` must allow for network
//! round trips. No scenario asserts on speed: time is only measured where the behaviour *is* a
//! time (backoff delays, "before any lock could expire").
//!
//! Every scenario panics with a message that says what was tried when the runtime misbehaves.
//!
//! To run them on another broker, build a [`Harness`] on it (with a prefix unique to the run,
//! the lock duration its groups use, and a `slack` of a few hundred milliseconds for real time)
//! and call each `pub async fn` of this module from a `#[tokio::test]`, as
//! `tests/scenarios_embedded.rs` does for the embedded broker. A scenario needs a delivery count
//! limit of at least 5 on its groups and sets the limit itself where it needs another
//! ([`max_attempts_clamped_to_delivery_limit`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use shareworker::broker::{
    AckKind, Delivery, GroupLimits, Member, PartitionOffsets, Produced, RecordId, SettleResult,
    TopicLag,
};
use shareworker::{
    Config, Error, Job, JobDefinition, JobError, Worker,
    broker::{Broker, GroupConfig, OutgoingRecord, StartFrom},
    dead_letter::headers as dlq,
    worker::{JobEvent, Outcome, RunSummary, ShutdownHandle, WorkerStatus},
};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};

/// How often the harness asks the broker for lag while waiting for a worker to drain.
const POLL: Duration = Duration::from_millis(20);

/// Where the scenarios run: a broker, the lock duration its share groups use, and names.
#[derive(Clone)]
pub struct Harness {
    /// The broker under test.
    pub broker: Arc<dyn Broker>,
    /// The acquisition lock duration of new share groups on this broker
    /// (`share.record.lock.duration.ms`; 30 s on the embedded broker and on Kafka by default).
    pub lock: Duration,
    /// Prepended to every topic and group a scenario uses, so runs never share state.
    pub prefix: String,
    /// How much later than its due time a timed event may happen (a backoff release, say):
    /// 100 ms by default, which paused time never needs; raise it for a real broker.
    pub slack: Duration,
    /// How long an acquire waits before a reader decides a topic has nothing more (1 s).
    pub quiet: Duration,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("broker", &self.broker.kind())
            .field("lock", &self.lock)
            .field("prefix", &self.prefix)
            .field("slack", &self.slack)
            .field("quiet", &self.quiet)
            .finish()
    }
}

impl Harness {
    /// A harness on `broker`, whose groups lock records for `lock`, naming everything
    /// `<prefix>-...`.
    pub fn new(broker: Arc<dyn Broker>, lock: Duration, prefix: impl Into<String>) -> Self {
        Self {
            broker,
            lock,
            prefix: prefix.into(),
            slack: Duration::from_millis(100),
            quiet: Duration::from_secs(1),
        }
    }

    /// Sets how late a timed event may be (see [`Harness::slack`]).
    pub fn with_slack(mut self, slack: Duration) -> Self {
        self.slack = slack;
        self
    }

    /// Sets how long a reader waits for more records (see [`Harness::quiet`]).
    pub fn with_quiet(mut self, quiet: Duration) -> Self {
        self.quiet = quiet;
        self
    }

    fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.prefix)
    }

    /// Makes `group` start at the earliest offset (and applies `extra`), before anything joins it.
    async fn group(&self, group: &str, extra: GroupConfig) {
        let mut config = extra.start_from(StartFrom::Earliest);
        if config.lock_duration.is_none() {
            config = config.lock_duration(self.lock);
        }
        self.broker
            .configure_group(group, &config)
            .await
            .unwrap_or_else(|e| {
                panic!("configuring share group `{group}` with {config:?} failed: {e}")
            });
    }

    async fn produce(&self, topic: &str, records: Vec<OutgoingRecord>) -> Vec<Produced> {
        let n = records.len();
        // Kafka does not create topics on produce (the test broker runs with
        // auto.create.topics.enable=false); creating an existing topic is a no-op.
        self.broker
            .create_topic(topic, 2)
            .await
            .unwrap_or_else(|e| panic!("creating topic `{topic}` failed: {e}"));
        self.broker
            .produce(topic, records)
            .await
            .unwrap_or_else(|e| panic!("producing {n} records to `{topic}` failed: {e}"))
    }

    async fn enqueue<T: Serialize>(&self, topic: &str, payloads: &[T]) -> Vec<Produced> {
        let records = payloads
            .iter()
            .map(|p| OutgoingRecord::new(serde_json::to_vec(p).expect("test payloads serialize")))
            .collect();
        self.produce(topic, records).await
    }

    /// Every record of `topic`, read by a new member of a new group (`reader`) from the earliest
    /// offset; stops when an acquire waits [`Harness::quiet`] in vain. Works on any broker.
    async fn read_topic(&self, topic: &str, reader: &str) -> Vec<Delivery> {
        let group = self.name(reader);
        self.group(&group, GroupConfig::default()).await;
        let member = self
            .broker
            .join(&group, &[topic.to_owned()])
            .await
            .unwrap_or_else(|e| panic!("joining reader group `{group}` on `{topic}` failed: {e}"));
        let mut out = Vec::new();
        loop {
            let got = member
                .acquire(100, self.quiet)
                .await
                .unwrap_or_else(|e| panic!("reading `{topic}` with group `{group}` failed: {e}"));
            if got.is_empty() {
                break;
            }
            let acks: Vec<_> = got
                .iter()
                .map(|d| (d.id.clone(), AckKind::Accept))
                .collect();
            member
                .settle(&acks)
                .await
                .unwrap_or_else(|e| panic!("accepting what reader `{group}` read failed: {e}"));
            out.extend(got);
        }
        let _ = member.leave().await;
        out
    }

    /// Asserts that a new member of `group` gets nothing from `topic`: every record is done.
    async fn assert_nothing_redelivered(&self, group: &str, topic: &str, what: &str) {
        let member = self
            .broker
            .join(group, &[topic.to_owned()])
            .await
            .unwrap_or_else(|e| panic!("joining `{group}` again failed: {e}"));
        let got = member
            .acquire(100, self.quiet)
            .await
            .unwrap_or_else(|e| panic!("acquiring from `{group}` again failed: {e}"));
        if !got.is_empty() {
            let acks: Vec<_> = got
                .iter()
                .map(|d| (d.id.clone(), AckKind::Release))
                .collect();
            let _ = member.settle(&acks).await;
        }
        let _ = member.leave().await;
        let ids: Vec<_> = got
            .iter()
            .map(|d| (d.id.clone(), d.delivery_count))
            .collect();
        assert!(
            ids.is_empty(),
            "{what}: a new member of group `{group}` was delivered records of `{topic}` again: {ids:?}"
        );
    }

    /// The total lag of each `(group, topic)`, or `None` for a topic the broker does not list.
    async fn lags(&self, watch: &[(String, String)]) -> Vec<Option<u64>> {
        let mut out = Vec::new();
        for (group, topic) in watch {
            let lag = self
                .broker
                .lag(group)
                .await
                .unwrap_or_else(|e| panic!("asking the lag of group `{group}` failed: {e}"));
            out.push(lag.iter().find(|t| t.topic == *topic).map(|t| t.lag));
        }
        out
    }
}

/// A worker running in its own task, with every event it emitted.
struct Running {
    shutdown: ShutdownHandle,
    status: WorkerStatus,
    task: JoinHandle<Result<RunSummary, Error>>,
    events: Events,
}

/// What a stopped worker did.
struct Finished {
    summary: RunSummary,
    events: Vec<JobEvent>,
    /// When each of `events` happened.
    times: Vec<Instant>,
}

#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(Instant, JobEvent)>>>);

impl Events {
    fn lock(&self) -> MutexGuard<'_, Vec<(Instant, JobEvent)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Builds a worker on the harness's broker from `config` (code only: no file, no environment)
/// and these handlers, and runs it.
async fn start(h: &Harness, config: Config, defs: Vec<JobDefinition>) -> Running {
    start_on(h.broker.clone(), config, defs).await
}

/// [`start`] on another broker (a wrapper of the harness's).
async fn start_on(broker: Arc<dyn Broker>, config: Config, defs: Vec<JobDefinition>) -> Running {
    let events = Events::default();
    let sink = events.clone();
    let names: Vec<String> = defs.iter().map(|d| d.name().to_owned()).collect();
    // Scenario workers run side by side: no HTTP endpoint.
    let mut config = config;
    config.http.enabled = false;
    let builder = Worker::builder()
        .broker_arc(broker)
        .code_config_only()
        .without_signal_handling()
        .config(config)
        .on_event(move |e| sink.lock().push((Instant::now(), e.clone())));
    let worker = defs
        .into_iter()
        .fold(builder, |b, d| b.job(d))
        .build()
        .await
        .unwrap_or_else(|e| panic!("building a worker with handlers {names:?} failed: {e}"));
    Running {
        shutdown: worker.shutdown_handle(),
        status: worker.status(),
        task: tokio::spawn(worker.run()),
        events,
    }
}

impl Running {
    /// Waits until the worker has joined and every `(group, topic)` has no lag (everything
    /// delivery-complete); panics after `limit`.
    async fn wait_idle(&self, h: &Harness, watch: &[(String, String)], limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            assert!(
                !self.task.is_finished(),
                "the worker stopped by itself while {watch:?} still had work"
            );
            let lags = h.lags(watch).await;
            if self.status.is_ready() && lags.iter().all(|l| *l == Some(0)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{watch:?} still had lag {lags:?} after {limit:?}; events so far: {:#?}",
                self.events.lock()
            );
            sleep(POLL).await;
        }
    }

    /// Shuts the worker down and waits for `run()` to return.
    async fn stop(self) -> Finished {
        self.shutdown.shutdown();
        let summary = self
            .task
            .await
            .expect("the worker task panicked")
            .unwrap_or_else(|e| panic!("Worker::run failed: {e}"));
        let (times, events) = std::mem::take(&mut *self.events.lock()).into_iter().unzip();
        Finished {
            summary,
            events,
            times,
        }
    }
}

/// Starts a worker, waits until `watch` is drained, stops it.
async fn run_until_idle(
    h: &Harness,
    config: Config,
    defs: Vec<JobDefinition>,
    watch: &[(String, String)],
    limit: Duration,
) -> Finished {
    let running = start(h, config, defs).await;
    running.wait_idle(h, watch, limit).await;
    running.stop().await
}

impl Finished {
    fn of(&self, topic: &str, p: &Produced) -> Vec<&JobEvent> {
        self.events
            .iter()
            .filter(|e| {
                &*e.id.topic == topic && e.id.partition == p.partition && e.id.offset == p.offset
            })
            .collect()
    }

    fn final_outcome(&self, topic: &str, p: &Produced) -> Option<&Outcome> {
        self.of(topic, p).last().map(|e| &e.outcome)
    }

    fn settle_failures(&self) -> Vec<&JobEvent> {
        self.events
            .iter()
            .filter(|e| matches!(e.outcome, Outcome::SettleFailed { .. }))
            .collect()
    }
}

/// One handler invocation, as the handler saw it.
#[derive(Clone, Debug)]
struct Attempt {
    partition: i32,
    offset: i64,
    attempt: u16,
    max_attempts: u16,
    at: Instant,
}

/// Records every handler invocation.
#[derive(Clone, Default)]
struct Attempts(Arc<Mutex<Vec<Attempt>>>);

impl Attempts {
    fn record<T>(&self, job: &Job<T>) {
        self.lock().push(Attempt {
            partition: job.partition(),
            offset: job.offset(),
            attempt: job.attempt(),
            max_attempts: job.max_attempts(),
            at: Instant::now(),
        });
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Attempt>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn of(&self, p: &Produced) -> Vec<Attempt> {
        self.lock()
            .iter()
            .filter(|a| a.partition == p.partition && a.offset == p.offset)
            .cloned()
            .collect()
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Counts jobs running at once and remembers the most.
#[derive(Clone, Default)]
struct Gauge {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
}

struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Gauge {
    fn enter(&self) -> InFlight {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        InFlight(self.now.clone())
    }

    fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

/// A call a worker made to its broker, as [`Recording`] saw it.
#[derive(Clone, Debug, PartialEq)]
enum Call {
    /// An acquire asked for this many records.
    Asked(usize),
    Acquired(RecordId),
    /// An acknowledgement the broker applied.
    Settled(RecordId, AckKind),
    Left,
}

/// A broker that passes everything through and logs what members acquire, settle and leave.
#[derive(Clone)]
struct Recording {
    inner: Arc<dyn Broker>,
    log: Arc<Mutex<Vec<Call>>>,
}

impl Recording {
    fn new(inner: Arc<dyn Broker>) -> Self {
        Self {
            inner,
            log: Arc::default(),
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

struct RecordingMember {
    inner: Box<dyn Member>,
    log: Arc<Mutex<Vec<Call>>>,
}

impl RecordingMember {
    fn push(&self, calls: impl IntoIterator<Item = Call>) {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(calls);
    }
}

#[async_trait]
impl Broker for Recording {
    async fn join(&self, group: &str, topics: &[String]) -> Result<Box<dyn Member>, Error> {
        let inner = self.inner.join(group, topics).await?;
        Ok(Box::new(RecordingMember {
            inner,
            log: self.log.clone(),
        }))
    }

    async fn produce(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<Produced>, Error> {
        self.inner.produce(topic, records).await
    }

    async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        self.inner.create_topic(topic, partitions).await
    }

    async fn lag(&self, group: &str) -> Result<Vec<TopicLag>, Error> {
        self.inner.lag(group).await
    }

    async fn group_limits(&self, group: &str) -> Result<GroupLimits, Error> {
        self.inner.group_limits(group).await
    }

    async fn configure_group(&self, group: &str, config: &GroupConfig) -> Result<(), Error> {
        self.inner.configure_group(group, config).await
    }

    async fn offsets(&self, topic: &str) -> Result<Vec<PartitionOffsets>, Error> {
        self.inner.offsets(topic).await
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}

#[async_trait]
impl Member for RecordingMember {
    async fn acquire(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, Error> {
        self.push([Call::Asked(max)]);
        let got = self.inner.acquire(max, wait).await?;
        self.push(got.iter().map(|d| Call::Acquired(d.id.clone())));
        Ok(got)
    }

    async fn settle(&self, acks: &[(RecordId, AckKind)]) -> Result<Vec<SettleResult>, Error> {
        let results = self.inner.settle(acks).await?;
        self.push(
            acks.iter()
                .zip(&results)
                .filter(|(_, r)| r.is_ok())
                .map(|((id, kind), _)| Call::Settled(id.clone(), *kind)),
        );
        Ok(results)
    }

    async fn leave(&self) -> Result<(), Error> {
        self.push([Call::Left]);
        self.inner.leave().await
    }

    fn member_id(&self) -> &str {
        self.inner.member_id()
    }
}

/// Polls `done` until it holds; panics after `limit`.
async fn wait_for(limit: Duration, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "waited {limit:?} in vain for {what}"
        );
        sleep(POLL).await;
    }
}

fn watch(group: &str, topic: &str) -> (String, String) {
    (group.to_owned(), topic.to_owned())
}

fn header<'a>(d: &'a Delivery, key: &str) -> &'a str {
    d.headers.get_str(key).unwrap_or_else(|| {
        panic!(
            "dead letter {} has no header `{key}`: {:?}",
            d.id, d.headers
        )
    })
}

fn find_dead_letter<'a>(letters: &'a [Delivery], original: &Produced) -> &'a Delivery {
    let offset = original.offset.to_string();
    let partition = original.partition.to_string();
    letters
        .iter()
        .find(|d| {
            d.headers.get_str(dlq::OFFSET) == Some(offset.as_str())
                && d.headers.get_str(dlq::PARTITION) == Some(partition.as_str())
        })
        .unwrap_or_else(|| {
            panic!("no dead letter for partition {partition} offset {offset} among {letters:#?}")
        })
}

fn gaps(attempts: &[Attempt]) -> Vec<Duration> {
    attempts.windows(2).map(|w| w[1].at - w[0].at).collect()
}

fn millis_since_epoch(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

// ---------------------------------------------------------------------------------------------
// 1. Concurrency
// ---------------------------------------------------------------------------------------------

/// A handler's jobs never run more than its `concurrency` at once, and do reach it: 300 jobs of
/// 10 to 100 ms at concurrency 8 give a measured maximum of exactly 8.
pub async fn concurrency_per_handler(h: &Harness) {
    let topic = h.name("conc");
    let group = h.name("conc-g");
    h.group(&group, GroupConfig::default()).await;
    let payloads: Vec<u64> = (0..300).collect();
    h.enqueue(&topic, &payloads).await;
    let gauge = Gauge::default();
    let done = Arc::new(AtomicUsize::new(0));
    let (g, d) = (gauge.clone(), done.clone());
    let handler = move |job: Job<u64>| {
        let (g, d) = (g.clone(), d.clone());
        async move {
            let _in = g.enter();
            sleep(Duration::from_millis(10 + (*job.payload() * 37) % 91)).await;
            d.fetch_add(1, Ordering::SeqCst);
            Ok::<(), JobError>(())
        }
    };
    let def = JobDefinition::new("conc", &topic, handler)
        .group(&group)
        .concurrency(8);
    let f = run_until_idle(
        h,
        Config::default(),
        vec![def],
        &[watch(&group, &topic)],
        Duration::from_secs(600),
    )
    .await;
    assert_eq!(
        done.load(Ordering::SeqCst),
        300,
        "300 jobs enqueued at concurrency 8: every one should finish once"
    );
    assert_eq!(
        f.summary.accepted, 300,
        "300 jobs at concurrency 8: all accepted; summary {:?}",
        f.summary
    );
    assert_eq!(
        gauge.max(),
        8,
        "300 jobs of 10-100 ms with handler concurrency 8: the most running at once must be exactly 8"
    );
}

/// The process-wide `Config.concurrency` caps all handlers together: two handlers of 10 each
/// under a global 12 run at most (and at some point exactly) 12 jobs at once.
pub async fn concurrency_global(h: &Harness) {
    let gauge = Gauge::default();
    let mut defs = Vec::new();
    let mut watched = Vec::new();
    for name in ["glob-a", "glob-b"] {
        let topic = h.name(name);
        let group = h.name(&format!("{name}-g"));
        h.group(&group, GroupConfig::default()).await;
        let payloads: Vec<u64> = (0..150).collect();
        h.enqueue(&topic, &payloads).await;
        let g = gauge.clone();
        let handler = move |job: Job<u64>| {
            let g = g.clone();
            async move {
                let _in = g.enter();
                sleep(Duration::from_millis(10 + (*job.payload() * 53) % 91)).await;
                Ok::<(), JobError>(())
            }
        };
        defs.push(
            JobDefinition::new(name, &topic, handler)
                .group(&group)
                .concurrency(10),
        );
        watched.push(watch(&group, &topic));
    }
    let mut config = Config::default();
    config.concurrency = 12;
    let f = run_until_idle(h, config, defs, &watched, Duration::from_secs(600)).await;
    assert_eq!(
        f.summary.accepted, 300,
        "two handlers with 150 jobs each: all accepted; summary {:?}",
        f.summary
    );
    assert_eq!(
        gauge.max(),
        12,
        "two handlers of concurrency 10 each under Config.concurrency = 12: the most running at once over both must be exactly 12"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Backoff
// ---------------------------------------------------------------------------------------------

/// Runs `records` always-failing records with max_attempts 5 and backoff 1 s .. 5 s ×2 with this
/// jitter; returns each record's attempts, checking each ends dead-lettered after 5 attempts.
async fn always_failing(h: &Harness, name: &str, records: usize, jitter: f64) -> Vec<Vec<Attempt>> {
    let topic = h.name(name);
    let group = h.name(&format!("{name}-g"));
    h.group(&group, GroupConfig::default()).await;
    let limits = h
        .broker
        .group_limits(&group)
        .await
        .unwrap_or_else(|e| panic!("reading the limits of `{group}` failed: {e}"));
    assert!(
        limits.delivery_count_limit >= 5,
        "the backoff scenario needs a delivery count limit of at least 5; group `{group}` has {}",
        limits.delivery_count_limit
    );
    let payloads: Vec<usize> = (0..records).collect();
    let produced = h.enqueue(&topic, &payloads).await;
    let attempts = Attempts::default();
    let a = attempts.clone();
    let handler = move |job: Job<usize>| {
        let a = a.clone();
        async move {
            a.record(&job);
            Err::<(), _>(JobError::retry("always fails"))
        }
    };
    let def = JobDefinition::new(name, &topic, handler)
        .group(&group)
        .max_attempts(5)
        .backoff(Duration::from_secs(1), Duration::from_secs(5), 2.0, jitter);
    let f = run_until_idle(
        h,
        Config::default(),
        vec![def],
        &[watch(&group, &topic)],
        Duration::from_secs(600),
    )
    .await;
    let letters = h
        .read_topic(&format!("{topic}.dlq"), &format!("{name}-dlq-reader"))
        .await;
    assert_eq!(
        letters.len(),
        records,
        "{records} always-failing records with max_attempts 5: each should be dead-lettered once"
    );
    let mut out = Vec::new();
    for p in &produced {
        let mine = attempts.of(p);
        let numbers: Vec<u16> = mine.iter().map(|a| a.attempt).collect();
        assert_eq!(
            numbers,
            vec![1, 2, 3, 4, 5],
            "an always-failing record with max_attempts 5 should run attempts 1..=5 and no more"
        );
        assert_eq!(
            f.final_outcome(&topic, p),
            Some(&Outcome::DeadLettered),
            "an always-failing record should end dead-lettered after its 5th attempt"
        );
        assert_eq!(
            header(find_dead_letter(&letters, p), dlq::ATTEMPTS),
            "5",
            "the dead letter of a record that failed 5 times should say 5 attempts"
        );
        out.push(mine);
    }
    out
}

/// Backoff follows `min(max, initial * multiplier^(n-1))` from the delivery count: gaps between
/// attempts of 1 s, 2 s, 4 s, 5 s (no jitter), then the record is dead-lettered after 5 attempts.
pub async fn backoff_exponential(h: &Harness) {
    let runs = always_failing(h, "backoff", 1, 0.0).await;
    let expected = [1u64, 2, 4, 5].map(Duration::from_secs);
    for attempts in &runs {
        let gaps = gaps(attempts);
        for (gap, d) in gaps.iter().zip(expected) {
            assert!(
                *gap >= d && *gap <= d + h.slack,
                "backoff 1s..5s x2 without jitter: expected gaps {expected:?} (+{:?}) between attempts, got {gaps:?}",
                h.slack
            );
        }
    }
}

/// With jitter 0.5 each gap lies in `[d/2, d]` (plus slack), and jitter is really applied:
/// over 5 records (20 gaps) at least one is clearly shorter than the base delay.
pub async fn backoff_jitter(h: &Harness) {
    let runs = always_failing(h, "jitter", 5, 0.5).await;
    let expected = [1u64, 2, 4, 5].map(Duration::from_secs);
    let mut shortened = 0;
    for attempts in &runs {
        let gaps = gaps(attempts);
        for (gap, d) in gaps.iter().zip(expected) {
            assert!(
                *gap >= d / 2 && *gap <= d + h.slack,
                "backoff 1s..5s x2 with jitter 0.5: each gap should lie in [d/2, d + {:?}] for d in {expected:?}; got {gaps:?}",
                h.slack
            );
            if *gap < d.mul_f64(0.95) {
                shortened += 1;
            }
        }
    }
    assert!(
        shortened > 0,
        "backoff with jitter 0.5 over 20 gaps: at least one gap should be shorter than 95% of its base delay (is jitter applied?)"
    );
}

/// `JobError::retry_after(7s)` overrides the backoff (1 s here, at most 5 s): the next attempt
/// comes 7 s later.
pub async fn backoff_retry_after(h: &Harness) {
    let topic = h.name("retry-after");
    let group = h.name("retry-after-g");
    h.group(&group, GroupConfig::default()).await;
    let produced = h.enqueue(&topic, &[1]).await;
    let attempts = Attempts::default();
    let a = attempts.clone();
    let handler = move |job: Job<u32>| {
        let a = a.clone();
        async move {
            a.record(&job);
            if job.attempt() == 1 {
                return Err(JobError::retry_after(
                    Duration::from_secs(7),
                    "rate limited",
                ));
            }
            Ok(())
        }
    };
    let def = JobDefinition::new("retry_after", &topic, handler)
        .group(&group)
        .max_attempts(5)
        .backoff(Duration::from_secs(1), Duration::from_secs(5), 2.0, 0.0);
    let f = run_until_idle(
        h,
        Config::default(),
        vec![def],
        &[watch(&group, &topic)],
        Duration::from_secs(600),
    )
    .await;
    let mine = attempts.of(&produced[0]);
    assert_eq!(
        mine.len(),
        2,
        "retry_after on attempt 1, success on attempt 2: expected 2 attempts, got {mine:?}"
    );
    let gap = mine[1].at - mine[0].at;
    let want = Duration::from_secs(7);
    assert!(
        gap >= want && gap <= want + h.slack,
        "JobError::retry_after(7s) with a 1s..5s backoff: the next attempt should come after 7s, came after {gap:?}"
    );
    let delays: Vec<Duration> = f
        .of(&topic, &produced[0])
        .iter()
        .filter_map(|e| match &e.outcome {
            Outcome::Retrying { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    assert_eq!(
        delays,
        vec![want],
        "the Retrying event should carry the retry_after delay"
    );
    assert_eq!(
        f.final_outcome(&topic, &produced[0]),
        Some(&Outcome::Accepted),
        "the record should be accepted on attempt 2"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Dead letters
// ---------------------------------------------------------------------------------------------

enum DlqMode {
    Default,
    Custom(String),
    Off,
}

/// Runs a handler that fails permanently on one record with a key and a header; returns the
/// topic, the group, the record and what happened.
async fn permanent_failure(
    h: &Harness,
    name: &str,
    mode: &DlqMode,
) -> (String, String, Produced, Finished) {
    let topic = h.name(name);
    let group = h.name(&format!("{name}-g"));
    h.group(&group, GroupConfig::default()).await;
    let record = OutgoingRecord::new(r#"{"to":"nowhere"}"#)
        .with_key("customer-42")
        .with_header("trace-id", "abc-123");
    let produced = h.produce(&topic, vec![record]).await.remove(0);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let handler = move |_job: Job<serde_json::Value>| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(JobError::permanent("bad address"))
        }
    };
    let mut def = JobDefinition::new(name, &topic, handler).group(&group);
    def = match mode {
        DlqMode::Default => def,
        DlqMode::Custom(t) => def.dead_letter(t),
        DlqMode::Off => def.no_dead_letter(),
    };
    let f = run_until_idle(
        h,
        Config::default(),
        vec![def],
        &[watch(&group, &topic)],
        Duration::from_secs(600),
    )
    .await;
    let calls = calls.load(Ordering::SeqCst);
    assert_eq!(
        calls, 1,
        "a handler failing permanently should run exactly once; it ran {calls} times"
    );
    h.assert_nothing_redelivered(&group, &topic, "after a permanent failure")
        .await;
    assert_eq!(
        f.summary.settle_failures, 0,
        "no acknowledgement should fail; events {:#?}",
        f.events
    );
    (topic, group, produced, f)
}

/// Checks the one dead letter of [`permanent_failure`].
fn check_dead_letter(
    letters: &[Delivery],
    topic: &str,
    group: &str,
    handler: &str,
    p: &Produced,
    window: (u128, u128),
) {
    assert_eq!(
        letters.len(),
        1,
        "one permanently failing record should give exactly one dead letter; got {letters:#?}"
    );
    let d = &letters[0];
    assert_eq!(
        d.key.as_deref(),
        Some(&b"customer-42"[..]),
        "the dead letter should keep the original key"
    );
    assert_eq!(
        d.value.as_deref(),
        Some(&br#"{"to":"nowhere"}"#[..]),
        "the dead letter should keep the original value"
    );
    assert_eq!(
        header(d, "trace-id"),
        "abc-123",
        "the dead letter should keep the original headers"
    );
    assert_eq!(
        header(d, dlq::TOPIC),
        topic,
        "header {} should name the original topic",
        dlq::TOPIC
    );
    assert_eq!(
        header(d, dlq::PARTITION),
        p.partition.to_string(),
        "header {} should be the original partition",
        dlq::PARTITION
    );
    assert_eq!(
        header(d, dlq::OFFSET),
        p.offset.to_string(),
        "header {} should be the original offset",
        dlq::OFFSET
    );
    assert_eq!(
        header(d, dlq::GROUP),
        group,
        "header {} should name the share group",
        dlq::GROUP
    );
    assert_eq!(
        header(d, dlq::ATTEMPTS),
        "1",
        "a permanent failure on attempt 1: header {} should be 1",
        dlq::ATTEMPTS
    );
    assert_eq!(
        header(d, dlq::HANDLER),
        handler,
        "header {} should name the handler",
        dlq::HANDLER
    );
    assert!(
        header(d, dlq::ERROR).contains("bad address"),
        "header {} should carry the handler's error `bad address`; got `{}`",
        dlq::ERROR,
        header(d, dlq::ERROR)
    );
    let time: u128 = header(d, dlq::TIME).parse().unwrap_or_else(|e| {
        panic!(
            "header {} should be milliseconds since the epoch: {e}",
            dlq::TIME
        )
    });
    assert!(
        time >= window.0 && time <= window.1,
        "header {} should be the time of dead-lettering, within the run [{}, {}]; got {time}",
        dlq::TIME,
        window.0,
        window.1
    );
}

/// A permanent failure goes to `<topic>.dlq` with the original key, value and headers plus the
/// `shareworker.dlq.*` headers, after one attempt, and is never delivered again.
pub async fn dead_letter_default_topic(h: &Harness) {
    let before = millis_since_epoch(SystemTime::now());
    let (topic, group, p, f) = permanent_failure(h, "dl_default", &DlqMode::Default).await;
    let after = millis_since_epoch(SystemTime::now());
    assert_eq!(
        f.final_outcome(&topic, &p),
        Some(&Outcome::DeadLettered),
        "the record should end dead-lettered"
    );
    assert_eq!(
        f.summary.dead_lettered, 1,
        "summary should count one dead letter: {:?}",
        f.summary
    );
    let letters = h
        .read_topic(&format!("{topic}.dlq"), "dl_default-reader")
        .await;
    check_dead_letter(&letters, &topic, &group, "dl_default", &p, (before, after));
}

/// With a custom `dead_letter` topic the dead letter goes there, and not to `<topic>.dlq`.
pub async fn dead_letter_custom_topic(h: &Harness) {
    let custom = h.name("custom-dead-letters");
    let before = millis_since_epoch(SystemTime::now());
    let (topic, group, p, f) =
        permanent_failure(h, "dl_custom", &DlqMode::Custom(custom.clone())).await;
    let after = millis_since_epoch(SystemTime::now());
    assert_eq!(
        f.final_outcome(&topic, &p),
        Some(&Outcome::DeadLettered),
        "the record should end dead-lettered"
    );
    let letters = h.read_topic(&custom, "dl_custom-reader").await;
    check_dead_letter(&letters, &topic, &group, "dl_custom", &p, (before, after));
    let default = h
        .read_topic(&format!("{topic}.dlq"), "dl_custom-default-reader")
        .await;
    assert!(
        default.is_empty(),
        "with dead_letter = `{custom}`, nothing should go to `{topic}.dlq`; found {default:#?}"
    );
}

/// With `no_dead_letter()` a permanent failure is only rejected: no dead letter anywhere, and
/// the record is never delivered again.
pub async fn dead_letter_off(h: &Harness) {
    let (topic, _group, p, f) = permanent_failure(h, "dl_off", &DlqMode::Off).await;
    assert!(
        matches!(f.final_outcome(&topic, &p), Some(Outcome::Rejected { error }) if error.contains("bad address")),
        "with no_dead_letter() a permanent failure should end Rejected with its error; events {:#?}",
        f.events
    );
    assert_eq!(
        f.summary.rejected, 1,
        "summary should count one rejection: {:?}",
        f.summary
    );
    assert_eq!(
        f.summary.dead_lettered, 0,
        "summary should count no dead letter: {:?}",
        f.summary
    );
    let letters = h.read_topic(&format!("{topic}.dlq"), "dl_off-reader").await;
    assert!(
        letters.is_empty(),
        "with no_dead_letter() nothing should reach `{topic}.dlq`; found {letters:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Long tasks
// ---------------------------------------------------------------------------------------------

/// A task running 5 times the lock duration is delivered exactly once: its lock is renewed, a
/// second worker on the same group never gets it, and its acceptance succeeds.
pub async fn long_task_delivered_once(h: &Harness) {
    let topic = h.name("long");
    let group = h.name("long-g");
    h.group(&group, GroupConfig::default()).await;
    let limits = h
        .broker
        .group_limits(&group)
        .await
        .unwrap_or_else(|e| panic!("reading the limits of `{group}` failed: {e}"));
    assert_eq!(
        limits.lock_duration, h.lock,
        "the harness's lock duration should be the group's"
    );
    let produced = h.enqueue(&topic, &[1]).await;
    let attempts = Attempts::default();
    let work = h.lock * 5;
    let make = || {
        let a = attempts.clone();
        let handler = move |job: Job<u32>| {
            let a = a.clone();
            async move {
                a.record(&job);
                sleep(work).await;
                Ok::<(), JobError>(())
            }
        };
        JobDefinition::new("long", &topic, handler).group(&group)
    };
    let first = start(h, Config::default(), vec![make()]).await;
    let second = start(h, Config::default(), vec![make()]).await;
    let watched = [watch(&group, &topic)];
    first.wait_idle(h, &watched, work * 3).await;
    let a = first.stop().await;
    let b = second.stop().await;
    let runs = attempts.of(&produced[0]);
    assert_eq!(
        runs.len(),
        1,
        "a job running 5x the lock ({work:?}) with two workers on one group should run exactly once; runs {runs:?}"
    );
    // Each renewal extends the lock by one lock duration: covering 5 needs at least 4.
    let renewals = a
        .events
        .iter()
        .chain(&b.events)
        .filter(|e| e.outcome == Outcome::LockRenewed)
        .count();
    assert!(
        renewals >= 4,
        "a job running 5x the lock should have its lock renewed at least 4 times; saw {renewals} LockRenewed events"
    );
    let failures: Vec<_> = a
        .settle_failures()
        .into_iter()
        .chain(b.settle_failures())
        .collect();
    assert!(
        failures.is_empty(),
        "renewing a long job should never lose its lock; failed acks {failures:#?}"
    );
    assert_eq!(
        a.summary.settle_failures + b.summary.settle_failures,
        0,
        "RunSummary.settle_failures should be 0 for both workers: {:?} {:?}",
        a.summary,
        b.summary
    );
    assert_eq!(
        a.summary.accepted + b.summary.accepted,
        1,
        "the long job should be accepted exactly once: {:?} {:?}",
        a.summary,
        b.summary
    );
}

/// Records acquired ahead of a free slot keep their locks while they wait: at concurrency 1
/// with prefetch 2, three jobs of 2 locks each run once each, on their first delivery.
pub async fn prefetched_records_keep_their_locks(h: &Harness) {
    let topic = h.name("prefetch");
    let group = h.name("prefetch-g");
    h.group(&group, GroupConfig::default()).await;
    let produced = h.enqueue(&topic, &[1, 2, 3]).await;
    let attempts = Attempts::default();
    let work = h.lock * 2;
    let a = attempts.clone();
    let handler = move |job: Job<u32>| {
        let a = a.clone();
        async move {
            a.record(&job);
            sleep(work).await;
            Ok::<(), JobError>(())
        }
    };
    let def = JobDefinition::new("prefetch", &topic, handler)
        .group(&group)
        .concurrency(1)
        .prefetch(2);
    let f = run_until_idle(
        h,
        Config::default(),
        vec![def],
        &[watch(&group, &topic)],
        work * 10,
    )
    .await;
    for p in &produced {
        let runs: Vec<u16> = attempts.of(p).iter().map(|a| a.attempt).collect();
        assert_eq!(
            runs,
            vec![1],
            "concurrency 1, prefetch 2, three jobs of {work:?}: each should run once, on delivery 1, while the others wait with renewed locks"
        );
    }
    assert!(
        f.settle_failures().is_empty(),
        "no lock of a waiting record should be lost; failed acks {:#?}",
        f.settle_failures()
    );
    assert_eq!(f.summary.accepted, 3, "all three accepted: {:?}", f.summary);
}

/// The automatic prefetch (the default) keeps a slow handler's prefetch small: 40 jobs of 500 ms
/// at concurrency 4 never have more than 4 records waiting in the worker's queue when a job
/// starts (the old fixed prefetch of 16 had 16), so records wait in the topic, for any member,
/// not behind this one. Counted at each start from the records handed to the worker and the
/// jobs started; records acquired and not yet acknowledged stay under 24 (on Kafka an
/// acknowledgement waits for the session's fetch in flight).
pub async fn slow_handler_keeps_a_small_prefetch(h: &Harness) {
    let topic = h.name("slow-prefetch");
    let group = h.name("slow-prefetch-g");
    h.group(&group, GroupConfig::default()).await;
    let payloads: Vec<u32> = (0..40).collect();
    h.enqueue(&topic, &payloads).await;
    let recording = Recording::new(h.broker.clone());
    // At each start: records handed to the worker so far minus jobs started so far (this one
    // included) = records waiting in the worker's prefetch queue. The most seen is kept.
    let started = Arc::new(AtomicUsize::new(0));
    let most_waiting = Arc::new(AtomicUsize::new(0));
    let (rec, st, most) = (recording.clone(), started.clone(), most_waiting.clone());
    let handler = move |_job: Job<u32>| {
        let acquired = rec
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::Acquired(_)))
            .count();
        let started = st.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(acquired.saturating_sub(started), Ordering::SeqCst);
        async move {
            sleep(Duration::from_millis(500)).await;
            Ok::<(), JobError>(())
        }
    };
    let def = JobDefinition::new("slow-prefetch", &topic, handler)
        .group(&group)
        .concurrency(4);
    let running = start_on(Arc::new(recording.clone()), Config::default(), vec![def]).await;
    running
        .wait_idle(h, &[watch(&group, &topic)], Duration::from_secs(120))
        .await;
    let f = running.stop().await;
    assert_eq!(f.summary.accepted, 40, "all 40 accepted: {:?}", f.summary);
    let waiting = most_waiting.load(Ordering::SeqCst);
    assert!(
        waiting <= 4,
        "a handler of 500 ms at concurrency 4 (8 jobs/s) needs almost nothing ahead; {waiting} records waited in the prefetch queue at once (at most 4 allowed)"
    );
    // Records acquired and not yet acknowledged also count those whose acknowledgement waits
    // for the session's fetch in flight (one request at a time per share session): a loose
    // bound, far below a large prefetch.
    let mut held = std::collections::HashSet::new();
    let mut most = 0;
    for call in recording.calls() {
        match call {
            Call::Acquired(id) => {
                held.insert(id);
                most = most.max(held.len());
            }
            Call::Settled(id, _) => {
                held.remove(&id);
            }
            Call::Asked(_) | Call::Left => {}
        }
    }
    assert!(
        most <= 24,
        "{most} records were acquired and unsettled at once (4 running, a few queued, the rest acknowledged and waiting for the session's fetch in flight: at most 24 allowed)"
    );
}

/// A worker never asks for more records than the group's record-lock limit leaves it: a fetch
/// the broker can only answer empty waits out its whole wait, and the acknowledgements that
/// would free the locks queue behind it. A quick handler (concurrency 4) with a fixed prefetch
/// of 1,000 in a group limited to 100 locks per partition (Kafka's least): at each acquire, the
/// records asked for plus those acquired and not settled yet stay within 100 per partition of
/// the topic. All 1,000 jobs still run.
pub async fn acquires_stay_within_the_record_locks(h: &Harness) {
    let topic = h.name("locks");
    let group = h.name("locks-g");
    const LIMIT: usize = 100;
    h.group(
        &group,
        GroupConfig::default().max_record_locks(LIMIT as u32),
    )
    .await;
    let payloads: Vec<u32> = (0..1000).collect();
    h.enqueue(&topic, &payloads).await;
    let partitions = h
        .broker
        .offsets(&topic)
        .await
        .expect("the topic's partitions")
        .len();
    let limit = LIMIT * partitions;
    let recording = Recording::new(h.broker.clone());
    let handler = |_job: Job<u32>| async move {
        sleep(Duration::from_millis(2)).await;
        Ok::<(), JobError>(())
    };
    let def = JobDefinition::new("locks", &topic, handler)
        .group(&group)
        .concurrency(4)
        .prefetch(1000);
    let running = start_on(Arc::new(recording.clone()), Config::default(), vec![def]).await;
    running
        .wait_idle(h, &[watch(&group, &topic)], Duration::from_secs(120))
        .await;
    let f = running.stop().await;
    assert_eq!(
        f.summary.accepted, 1000,
        "all 1,000 accepted: {:?}",
        f.summary
    );
    let mut held = std::collections::HashSet::new();
    let mut asks = 0;
    for call in recording.calls() {
        match call {
            Call::Asked(n) => {
                asks += 1;
                assert!(
                    n + held.len() <= limit,
                    "an acquire asked for {n} records while {} were held (limit {LIMIT} x {partitions} partitions)",
                    held.len()
                );
            }
            Call::Acquired(id) => {
                held.insert(id);
            }
            Call::Settled(id, kind) => {
                if kind != AckKind::Renew {
                    held.remove(&id);
                }
            }
            Call::Left => {}
        }
    }
    assert!(asks > 0, "the worker acquired nothing");
}

/// A fixed prefetch far above the group's record locks (1,000 against 100 per partition) with a
/// quick handler: the acknowledgements of quick handlers are batched (up to half the prefetch,
/// lingering up to 20 ms), but a batch must never wait for more records than the locks let the
/// member hold, else every round of records waits out the linger. For the embedded broker on
/// paused time: the run's (virtual) time is the time spent waiting.
pub async fn ack_batches_fit_the_record_locks(h: &Harness) {
    let topic = h.name("ackfit");
    let group = h.name("ackfit-g");
    const LIMIT: u32 = 100;
    const JOBS: u32 = 4000;
    h.group(&group, GroupConfig::default().max_record_locks(LIMIT))
        .await;
    let payloads: Vec<u32> = (0..JOBS).collect();
    h.enqueue(&topic, &payloads).await;
    let handler = |_job: Job<u32>| async move { Ok::<(), JobError>(()) };
    let def = JobDefinition::new("ackfit", &topic, handler)
        .group(&group)
        .concurrency(4)
        .prefetch(1000);
    let started = Instant::now();
    let running = start(h, Config::default(), vec![def]).await;
    running
        .wait_idle(h, &[watch(&group, &topic)], Duration::from_secs(120))
        .await;
    let took = started.elapsed();
    let f = running.stop().await;
    assert_eq!(f.summary.accepted, u64::from(JOBS), "{:?}", f.summary);
    // Rounds of at most LIMIT x partitions records: 20 rounds or more. Each waiting out the
    // 20 ms linger would take 400 ms; one linger at the end is all there should be.
    assert!(
        took < Duration::from_millis(150),
        "{JOBS} quick jobs took {took:?}: acknowledgements waited for batches the record locks cannot fill"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Shutdown
// ---------------------------------------------------------------------------------------------

/// A shutdown releases what it cannot finish: with handlers that ignore cancellation and sleep
/// 10 minutes, after `run()` returns a new member gets all 10 records, before any lock could
/// have expired.
pub async fn shutdown_releases_everything(h: &Harness) {
    let topic = h.name("shutdown");
    let group = h.name("shutdown-g");
    h.group(&group, GroupConfig::default()).await;
    let payloads: Vec<u32> = (0..10).collect();
    h.enqueue(&topic, &payloads).await;
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let handler = move |_job: Job<u32>| {
        let s = s.clone();
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            // Ignores cancellation: only the end of the grace period stops it.
            sleep(Duration::from_secs(600)).await;
            Ok::<(), JobError>(())
        }
    };
    let def = JobDefinition::new("shutdown", &topic, handler)
        .group(&group)
        .concurrency(2)
        .prefetch(4);
    let mut config = Config::default();
    config.shutdown_grace = Duration::from_secs(2);
    let t0 = Instant::now();
    let recording = Recording::new(h.broker.clone());
    let running = start_on(Arc::new(recording.clone()), config, vec![def]).await;
    wait_for(h.lock / 4, "both handler slots to start a job", || {
        started.load(Ordering::SeqCst) >= 2
    })
    .await;
    // Let the worker acquire its prefetch too.
    sleep(Duration::from_secs(1)).await;
    let f = running.stop().await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        2,
        "with concurrency 2 exactly 2 handlers should have started before the shutdown"
    );
    // Every record must be available again now, not after its lock expires.
    let member = h
        .broker
        .join(&group, std::slice::from_ref(&topic))
        .await
        .unwrap_or_else(|e| panic!("joining `{group}` after the shutdown failed: {e}"));
    let mut got = Vec::new();
    while got.len() < 10 {
        let more = member
            .acquire(100, h.quiet)
            .await
            .unwrap_or_else(|e| panic!("acquiring after the shutdown failed: {e}"));
        if more.is_empty() {
            break;
        }
        got.extend(more);
    }
    let elapsed = t0.elapsed();
    let acks: Vec<_> = got
        .iter()
        .map(|d| (d.id.clone(), AckKind::Release))
        .collect();
    let _ = member.settle(&acks).await;
    let _ = member.leave().await;
    assert!(
        elapsed < h.lock / 2,
        "the check must run before any lock could expire: {elapsed:?} passed, lock is {:?}",
        h.lock
    );
    assert_eq!(
        got.len(),
        10,
        "after a shutdown (grace 2s, handlers ignoring cancellation) a new member should acquire all 10 records at once; got {:?}; events {:#?}",
        got.iter()
            .map(|d| (&d.id, d.delivery_count))
            .collect::<Vec<_>>(),
        f.events
    );
    assert_eq!(
        f.summary.settle_failures, 0,
        "the releases should all succeed: {:?}",
        f.summary
    );
    // Leaving the group would release them too, but a leave can fail: the worker itself must
    // release every record it held before it leaves.
    let calls = recording.calls();
    let left = calls.iter().position(|c| *c == Call::Left);
    assert!(
        left.is_some(),
        "the worker should leave the group on shutdown; calls {calls:?}"
    );
    let before_leave = &calls[..left.unwrap_or(calls.len())];
    let unreleased: Vec<&RecordId> = before_leave
        .iter()
        .filter_map(|c| match c {
            Call::Acquired(id) => Some(id),
            _ => None,
        })
        .filter(|id| !before_leave.contains(&Call::Settled((*id).clone(), AckKind::Release)))
        .collect();
    assert!(
        unreleased.is_empty(),
        "on shutdown the worker should release every record it held before leaving the group; not released: {unreleased:?}"
    );
}

/// A handler that finishes within the grace period is accepted, not released: shutdown 1 s
/// into a 3 s job with grace 30 s leaves no lag once `run()` returns.
pub async fn shutdown_lets_jobs_finish(h: &Harness) {
    let topic = h.name("graceful");
    let group = h.name("graceful-g");
    h.group(&group, GroupConfig::default()).await;
    let produced = h.enqueue(&topic, &[1]).await;
    let finished = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let (fin, st) = (finished.clone(), started.clone());
    let handler = move |_job: Job<u32>| {
        let (fin, st) = (fin.clone(), st.clone());
        async move {
            st.fetch_add(1, Ordering::SeqCst);
            sleep(Duration::from_secs(3)).await;
            fin.fetch_add(1, Ordering::SeqCst);
            Ok::<(), JobError>(())
        }
    };
    let def = JobDefinition::new("graceful", &topic, handler).group(&group);
    let mut config = Config::default();
    config.shutdown_grace = Duration::from_secs(30);
    let running = start(h, config, vec![def]).await;
    wait_for(Duration::from_secs(60), "the 3s job to start", || {
        started.load(Ordering::SeqCst) >= 1
    })
    .await;
    sleep(Duration::from_secs(1)).await;
    let f = running.stop().await;
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "a 3s job should finish within a 30s grace period"
    );
    assert_eq!(
        f.final_outcome(&topic, &produced[0]),
        Some(&Outcome::Accepted),
        "a job finishing within the grace period should be accepted; events {:#?}",
        f.events
    );
    let lags = h.lags(&[watch(&group, &topic)]).await;
    assert_eq!(
        lags,
        vec![Some(0)],
        "after run() returns, the job finished in the grace period leaves no lag"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Bad input
// ---------------------------------------------------------------------------------------------

/// The payload of scenario 6.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Order {
    n: u64,
}

/// The order number whose handler panics.
const PANICS: u64 = 1_000_000;

/// Panics and undecodable payloads do not stop the worker: 50 good records are accepted, the
/// invalid JSON is dead-lettered after one attempt with a decode error, and the panicking one is
/// retried, then dead-lettered with "panicked" in its error header.
pub async fn bad_input_does_not_stop_the_worker(h: &Harness) {
    let topic = h.name("bad-input");
    let group = h.name("bad-input-g");
    h.group(&group, GroupConfig::default()).await;
    let json = |n: u64| OutgoingRecord::new(serde_json::to_vec(&Order { n }).expect("serializes"));
    let mut records: Vec<OutgoingRecord> = (0..10).map(json).collect();
    records.push(OutgoingRecord::new("{not json"));
    records.extend((10..20).map(json));
    records.push(json(PANICS));
    records.extend((20..50).map(json));
    let produced = h.produce(&topic, records).await;
    let (bad_json, panicking) = (produced[10], produced[21]);
    let seen = Arc::new(Mutex::new(BTreeMap::<u64, usize>::new()));
    let attempts = Attempts::default();
    let (s, a) = (seen.clone(), attempts.clone());
    let handler = move |job: Job<Order>| {
        let (s, a) = (s.clone(), a.clone());
        async move {
            a.record(&job);
            let n = job.payload().n;
            if n == PANICS {
                panic!("order {n} makes the handler panic");
            }
            *s.lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(n)
                .or_default() += 1;
            Ok::<(), JobError>(())
        }
    };
    let def = JobDefinition::new("bad_input", &topic, handler)
        .group(&group)
        .concurrency(4)
        .max_attempts(3)
        .backoff(Duration::from_secs(1), Duration::from_secs(5), 2.0, 0.0);
    let running = start(h, Config::default(), vec![def]).await;
    running
        .wait_idle(h, &[watch(&group, &topic)], Duration::from_secs(600))
        .await;
    assert!(
        running.status.is_ready(),
        "the worker should still be running after a panic and bad JSON"
    );
    let f = running.stop().await;
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let expected: BTreeMap<u64, usize> = (0..50).map(|n| (n, 1)).collect();
    assert_eq!(
        seen, expected,
        "each of the 50 good orders should be handled exactly once despite the bad ones"
    );
    assert_eq!(
        f.summary.accepted, 50,
        "the 50 good records should be accepted: {:?}",
        f.summary
    );
    assert_eq!(
        f.summary.dead_lettered, 2,
        "the bad JSON and the panicking record should be dead-lettered: {:?}",
        f.summary
    );

    let letters = h
        .read_topic(&format!("{topic}.dlq"), "bad-input-reader")
        .await;
    assert_eq!(
        letters.len(),
        2,
        "exactly two dead letters expected; got {letters:#?}"
    );
    let dl = find_dead_letter(&letters, &bad_json);
    assert_eq!(
        header(dl, dlq::ATTEMPTS),
        "1",
        "an undecodable payload should be dead-lettered after one attempt"
    );
    assert!(
        header(dl, dlq::ERROR).contains("does not decode"),
        "the dead letter of `{{not json` should say the payload does not decode; got `{}`",
        header(dl, dlq::ERROR)
    );
    assert_eq!(
        dl.value.as_deref(),
        Some(&b"{not json"[..]),
        "the dead letter should keep the undecodable bytes"
    );
    assert!(
        attempts.of(&bad_json).is_empty(),
        "the handler should never run for a payload that does not decode"
    );

    let dl = find_dead_letter(&letters, &panicking);
    let runs = attempts.of(&panicking);
    assert!(
        runs.len() > 1,
        "a panic is retryable: the panicking record should run more than once; ran {}",
        runs.len()
    );
    assert_eq!(
        runs.len(),
        3,
        "the panicking record should run max_attempts (3) times"
    );
    assert_eq!(
        header(dl, dlq::ATTEMPTS),
        "3",
        "the panicking record should be dead-lettered after 3 attempts"
    );
    assert!(
        header(dl, dlq::ERROR).contains("panicked"),
        "the dead letter of the panicking record should say it panicked; got `{}`",
        header(dl, dlq::ERROR)
    );
    assert_eq!(
        f.summary.settle_failures, 0,
        "no acknowledgement should fail: {:?}",
        f.summary
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Timeout
// ---------------------------------------------------------------------------------------------

/// A handler over its `timeout` fails each attempt as retryable ("timed out") and ends
/// dead-lettered after max_attempts; its work never completes.
pub async fn timeout_is_retryable(h: &Harness) {
    let topic = h.name("timeout");
    let group = h.name("timeout-g");
    h.group(&group, GroupConfig::default()).await;
    let produced = h.enqueue(&topic, &[1]).await;
    let attempts = Attempts::default();
    let completed = Arc::new(AtomicUsize::new(0));
    let (a, c) = (attempts.clone(), completed.clone());
    let handler = move |job: Job<u32>| {
        let (a, c) = (a.clone(), c.clone());
        async move {
            a.record(&job);
            sleep(Duration::from_secs(5)).await;
            c.fetch_add(1, Ordering::SeqCst);
            Ok::<(), JobError>(())
        }
    };
    let def = JobDefinition::new("timeout", &topic, handler)
        .group(&group)
        .timeout(Duration::from_secs(1))
        .max_attempts(3)
        .backoff(Duration::from_millis(100), Duration::from_secs(1), 2.0, 0.0);
    let f = run_until_idle(
        h,
        Config::default(),
        vec![def],
        &[watch(&group, &topic)],
        Duration::from_secs(600),
    )
    .await;
    assert_eq!(
        attempts.of(&produced[0]).len(),
        3,
        "a 5s job with timeout 1s and max_attempts 3 should run 3 times"
    );
    assert_eq!(
        completed.load(Ordering::SeqCst),
        0,
        "a job over its timeout should be cut off, never complete"
    );
    let events = f.of(&topic, &produced[0]);
    let retries: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.outcome {
            Outcome::Retrying { error, .. } => Some((e.attempt, error.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        retries.len(),
        2,
        "attempts 1 and 2 should fail as retryable; events {events:#?}"
    );
    assert!(
        retries.iter().all(|(_, e)| e.contains("timed out")),
        "each retry should say it timed out: {retries:?}"
    );
    assert_eq!(
        f.final_outcome(&topic, &produced[0]),
        Some(&Outcome::DeadLettered),
        "ends dead-lettered"
    );
    let letters = h
        .read_topic(&format!("{topic}.dlq"), "timeout-reader")
        .await;
    assert_eq!(
        letters.len(),
        1,
        "one dead letter expected; got {letters:#?}"
    );
    assert!(
        header(&letters[0], dlq::ERROR).contains("timed out"),
        "the dead letter should say the job timed out; got `{}`",
        header(&letters[0], dlq::ERROR)
    );
    assert_eq!(
        header(&letters[0], dlq::ATTEMPTS),
        "3",
        "dead-lettered after 3 attempts"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. max_attempts clamped
// ---------------------------------------------------------------------------------------------

/// `max_attempts(8)` on a group whose delivery count limit is 3 becomes 3: the handler sees
/// `max_attempts() == 3`, and the record is dead-lettered (not archived by the broker) after 3.
pub async fn max_attempts_clamped_to_delivery_limit(h: &Harness) {
    let topic = h.name("clamp");
    let group = h.name("clamp-g");
    h.group(&group, GroupConfig::default().delivery_count_limit(3))
        .await;
    let produced = h.enqueue(&topic, &[1]).await;
    let attempts = Attempts::default();
    let a = attempts.clone();
    let handler = move |job: Job<u32>| {
        let a = a.clone();
        async move {
            a.record(&job);
            Err::<(), _>(JobError::retry("always fails"))
        }
    };
    let def = JobDefinition::new("clamp", &topic, handler)
        .group(&group)
        .max_attempts(8)
        .backoff(Duration::from_millis(100), Duration::from_secs(1), 2.0, 0.0);
    let f = run_until_idle(
        h,
        Config::default(),
        vec![def],
        &[watch(&group, &topic)],
        Duration::from_secs(600),
    )
    .await;
    let runs = attempts.of(&produced[0]);
    assert_eq!(
        runs.len(),
        3,
        "max_attempts 8 under a delivery count limit of 3: the job should run 3 times; {runs:?}"
    );
    assert!(
        runs.iter().all(|r| r.max_attempts == 3),
        "max_attempts 8 under a delivery count limit of 3: Job::max_attempts() should be 3; saw {:?}",
        runs.iter().map(|r| r.max_attempts).collect::<Vec<_>>()
    );
    assert_eq!(
        f.final_outcome(&topic, &produced[0]),
        Some(&Outcome::DeadLettered),
        "the third failure should dead-letter the record rather than let the broker archive it; events {:#?}",
        f.events
    );
    let letters = h.read_topic(&format!("{topic}.dlq"), "clamp-reader").await;
    assert_eq!(
        letters.len(),
        1,
        "one dead letter expected; got {letters:#?}"
    );
    assert_eq!(
        header(&letters[0], dlq::ATTEMPTS),
        "3",
        "dead-lettered after 3 attempts"
    );
}

/// `groups.<group>` in the configuration sets the group's configs before the worker joins it,
/// with no code calling `configure_group`: a group the harness never configured (so it would
/// start at the end of its topic) reads the records produced before the worker started, and a
/// delivery count limit of 3 set there is the one the worker follows (max_attempts 8 runs 3
/// times, then dead-letters). A group name no handler reads in, and a value the broker refuses,
/// stop the worker at start with an error naming `groups.<group>`, before it reads anything.
pub async fn group_settings_from_the_configuration(h: &Harness) {
    let topic = h.name("gset");
    let group = h.name("gset-g");
    let produced = h.enqueue(&topic, &[1, 2]).await;
    let attempts = Attempts::default();
    let a = attempts.clone();
    let handler = move |job: Job<u32>| {
        let a = a.clone();
        async move {
            a.record(&job);
            match *job.payload() {
                1 => Ok(()),
                _ => Err(JobError::retry("always fails")),
            }
        }
    };
    let def = || {
        JobDefinition::new("gset", &topic, handler.clone())
            .group(&group)
            .max_attempts(8)
            .backoff(Duration::from_millis(100), Duration::from_secs(1), 2.0, 0.0)
    };
    let settings = |limit: u16| -> shareworker::config::GroupSettings {
        GroupConfig::default()
            .start_from(StartFrom::Earliest)
            .delivery_count_limit(limit)
            .lock_duration(h.lock)
            .assignment_interval(Duration::from_millis(100))
            .into()
    };

    // A typo in the group's name: refused before anything is set or read.
    let mut typo = Config::default();
    typo.groups.insert(format!("{group}x"), settings(3));
    let err = build_err(h, typo, def()).await;
    assert!(
        err.is_config()
            && err.to_string().contains(&format!("`groups.{group}x`"))
            && err.to_string().contains(&group),
        "a `groups` section for a group no handler reads in should be refused, naming it and the handlers' groups; got {err}"
    );
    // A delivery count limit out of Kafka's range (2 to 10), on either broker.
    let mut refused = Config::default();
    refused.groups.insert(group.clone(), settings(1));
    let err = build_err(h, refused, def()).await;
    assert!(
        err.is_config()
            && err.to_string().contains(&format!("`groups.{group}`"))
            && err.to_string().contains("share.delivery.count.limit"),
        "a delivery count limit of 1 should stop the worker, naming the section and the key; got {err}"
    );
    assert_eq!(
        attempts.len(),
        0,
        "a worker that failed to start ran handlers"
    );

    let mut config = Config::default();
    config.groups.insert(group.clone(), settings(3));
    let f = run_until_idle(
        h,
        config,
        vec![def()],
        &[watch(&group, &topic)],
        Duration::from_secs(600),
    )
    .await;
    assert_eq!(
        f.final_outcome(&topic, &produced[0]),
        Some(&Outcome::Accepted),
        "start_from = earliest from `groups.{group}`: the record produced before the worker started should be read; events {:#?}",
        f.events
    );
    let runs = attempts.of(&produced[1]);
    assert_eq!(
        runs.len(),
        3,
        "delivery_count_limit = 3 from `groups.{group}`, max_attempts 8: the job should run 3 times; {runs:?}"
    );
    assert_eq!(
        f.final_outcome(&topic, &produced[1]),
        Some(&Outcome::DeadLettered),
        "the third failure should dead-letter the record; events {:#?}",
        f.events
    );
    let limits = h
        .broker
        .group_limits(&group)
        .await
        .unwrap_or_else(|e| panic!("reading the limits of `{group}` failed: {e}"));
    assert_eq!(
        (limits.delivery_count_limit, limits.lock_duration),
        (3, h.lock),
        "the broker should have the group's configs the worker set"
    );
}

/// Builds a worker that must not start; its error.
async fn build_err(h: &Harness, mut config: Config, def: JobDefinition) -> Error {
    config.http.enabled = false;
    match Worker::builder()
        .broker_arc(h.broker.clone())
        .code_config_only()
        .without_signal_handling()
        .config(config)
        .job(def)
        .build()
        .await
    {
        Ok(_) => panic!("the worker started; it should have been refused"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Maximum lease
// ---------------------------------------------------------------------------------------------

/// `Config.max_lease = 2 min` ends a handler that never returns: a `LeaseExpired` event, the
/// record released and delivered again (attempt 2), which succeeds.
pub async fn max_lease_ends_runaway_handlers(h: &Harness) {
    let topic = h.name("lease");
    let group = h.name("lease-g");
    h.group(&group, GroupConfig::default()).await;
    let produced = h.enqueue(&topic, &[1]).await;
    let attempts = Attempts::default();
    let a = attempts.clone();
    let handler = move |job: Job<u32>| {
        let a = a.clone();
        async move {
            a.record(&job);
            if job.attempt() == 1 {
                std::future::pending::<()>().await;
            }
            Ok::<(), JobError>(())
        }
    };
    let def = JobDefinition::new("lease", &topic, handler).group(&group);
    let max_lease = Duration::from_secs(120);
    let mut config = Config::default();
    config.max_lease = max_lease;
    let limit = max_lease + h.lock * 4 + Duration::from_secs(60);
    let f = run_until_idle(h, config, vec![def], &[watch(&group, &topic)], limit).await;
    let events = f.of(&topic, &produced[0]);
    let outcomes: Vec<(u16, &Outcome)> = events.iter().map(|e| (e.attempt, &e.outcome)).collect();
    let expired = outcomes
        .iter()
        .position(|(n, o)| *n == 1 && **o == Outcome::LeaseExpired);
    let accepted = outcomes
        .iter()
        .position(|(n, o)| *n == 2 && **o == Outcome::Accepted);
    assert!(
        matches!((expired, accepted), (Some(e), Some(a)) if e < a),
        "a handler that never returns under max_lease 2min: expected LeaseExpired on attempt 1, then Accepted on attempt 2; got {outcomes:?}"
    );
    let runs = attempts.of(&produced[0]);
    assert_eq!(
        runs.iter().map(|r| r.attempt).collect::<Vec<_>>(),
        vec![1, 2],
        "exactly two attempts expected"
    );
    let expired_at = f
        .events
        .iter()
        .zip(&f.times)
        .find(|(e, _)| e.outcome == Outcome::LeaseExpired)
        .map(|(_, t)| *t)
        .expect("a LeaseExpired event was found above");
    let lease = expired_at - runs[0].at;
    // The lease is checked by the renewal timer, which ticks every half lock.
    assert!(
        lease + h.slack >= max_lease && lease <= max_lease + h.lock / 2 + h.slack,
        "max_lease 2min should end attempt 1 between 2min and 2min + lock/2 after it began; it ended after {lease:?}"
    );
    let redelivered = runs[1].at - expired_at;
    assert!(
        redelivered <= h.slack,
        "the record should be released when its lease ends, not left to its lock's expiry: attempt 2 began {redelivered:?} after the LeaseExpired event"
    );
    assert_eq!(
        f.summary.lease_expired, 1,
        "summary should count one expired lease: {:?}",
        f.summary
    );
    assert_eq!(
        f.summary.settle_failures, 0,
        "no acknowledgement should fail: {:?}",
        f.summary
    );
}

/// The maximum lease is the handler's, from when it starts: at concurrency 1 with prefetch 1,
/// two 100 s jobs under `max_lease = 2 min` both finish on their first delivery, though the
/// second waited 100 s for its slot while holding its (renewed) lock.
pub async fn max_lease_starts_with_the_handler(h: &Harness) {
    let topic = h.name("lease-queued");
    let group = h.name("lease-queued-g");
    h.group(&group, GroupConfig::default()).await;
    let produced = h.enqueue(&topic, &[1, 2]).await;
    let attempts = Attempts::default();
    let a = attempts.clone();
    let handler = move |job: Job<u32>| {
        let a = a.clone();
        async move {
            a.record(&job);
            sleep(Duration::from_secs(100)).await;
            Ok::<(), JobError>(())
        }
    };
    let def = JobDefinition::new("lease_queued", &topic, handler)
        .group(&group)
        .concurrency(1)
        .prefetch(1);
    let mut config = Config::default();
    config.max_lease = Duration::from_secs(120);
    let limit = Duration::from_secs(600) + h.lock * 4;
    let f = run_until_idle(h, config, vec![def], &[watch(&group, &topic)], limit).await;
    for p in &produced {
        let runs: Vec<u16> = attempts.of(p).iter().map(|a| a.attempt).collect();
        assert_eq!(
            runs,
            vec![1],
            "max_lease 2min, concurrency 1, prefetch 1, two 100s jobs: each should run once; a job that waited for its slot must not lose its lease 20s into its run; events {:#?}",
            f.events
        );
    }
    assert_eq!(
        f.summary.lease_expired, 0,
        "no 100s job should exceed a 2min lease: {:?}",
        f.summary
    );
    assert_eq!(f.summary.accepted, 2, "both jobs accepted: {:?}", f.summary);
}

// ---------------------------------------------------------------------------------------------
// 10. Held records are bounded
// ---------------------------------------------------------------------------------------------

/// With `max_held(2)` and a 1 min backoff, 6 records failing at once: exactly 2 are held through
/// the backoff, the other 4 are released at once and their attempt 2 begins well before 1 min.
pub async fn held_records_are_bounded(h: &Harness) {
    let topic = h.name("held");
    let group = h.name("held-g");
    h.group(&group, GroupConfig::default()).await;
    let payloads: Vec<u32> = (0..6).collect();
    let produced = h.enqueue(&topic, &payloads).await;
    let attempts = Attempts::default();
    let a = attempts.clone();
    let handler = move |job: Job<u32>| {
        let a = a.clone();
        async move {
            a.record(&job);
            if job.attempt() == 1 {
                return Err(JobError::retry("fails once"));
            }
            Ok(())
        }
    };
    let backoff = Duration::from_secs(60);
    let def = JobDefinition::new("held", &topic, handler)
        .group(&group)
        .max_held(2)
        .backoff(backoff, backoff, 1.0, 0.0);
    let f = run_until_idle(
        h,
        Config::default(),
        vec![def],
        &[watch(&group, &topic)],
        Duration::from_secs(600),
    )
    .await;
    let mut held = 0;
    let mut released = 0;
    let mut all = Vec::new();
    for p in &produced {
        let runs = attempts.of(p);
        assert_eq!(
            runs.iter().map(|r| r.attempt).collect::<Vec<_>>(),
            vec![1, 2],
            "each record fails once, then succeeds: two attempts expected"
        );
        let gap = runs[1].at - runs[0].at;
        if gap >= backoff {
            held += 1;
        } else if gap < backoff / 2 {
            released += 1;
        }
        all.push(gap);
    }
    assert_eq!(
        (held, released),
        (2, 4),
        "max_held 2, backoff 1min, 6 records failing together: 2 should wait out the backoff and 4 be released at once; gaps {all:?}"
    );
    assert_eq!(
        f.summary.accepted, 6,
        "all 6 should be accepted on attempt 2: {:?}",
        f.summary
    );
    assert_eq!(attempts.len(), 12, "6 records x 2 attempts");
}

// ---------------------------------------------------------------------------------------------
// 11. Limits that change on the broker, dead-letter writes that fail
// ---------------------------------------------------------------------------------------------

/// `share.delivery.count.limit` lowered from 5 to 3 while the worker runs: a job failing at its
/// 3rd attempt is dead-lettered, not released (which the broker would archive at the new limit,
/// with no dead letter anywhere). Two records show both ways: one whose 3rd attempt is running
/// when the limit drops, one that waits out its backoff after failing its 3rd attempt.
pub async fn delivery_limit_lowered_in_flight(h: &Harness) {
    let topic = h.name("lowered");
    let group = h.name("lowered-g");
    h.group(&group, GroupConfig::default()).await;
    let produced = h.enqueue(&topic, &[1u32, 2]).await;
    let attempts = Attempts::default();
    let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (a, g) = (attempts.clone(), gate.clone());
    // Long enough to outlast the limit change and three refreshes below.
    let hold = Duration::from_secs(20) + h.slack * 4;
    let handler = move |job: Job<u32>| {
        let (a, g) = (a.clone(), g.clone());
        async move {
            a.record(&job);
            if job.attempt() >= 3 {
                if *job.payload() == 1 {
                    // Its 3rd attempt runs while the limit drops.
                    while !g.load(Ordering::SeqCst) {
                        sleep(Duration::from_millis(10)).await;
                    }
                } else {
                    // Its 3rd attempt fails before the limit drops; it waits out a long delay.
                    return Err(JobError::retry_after(hold, "still failing"));
                }
            }
            Err::<(), _>(JobError::retry("always fails"))
        }
    };
    let def = JobDefinition::new("lowered", &topic, handler)
        .group(&group)
        .backoff(Duration::from_millis(100), Duration::from_secs(1), 2.0, 0.0);
    let refresh = Duration::from_secs(1);
    let mut config = Config::default();
    config.autoscale.refresh = refresh;
    let running = start(h, config, vec![def]).await;
    let (first, second) = (produced[0], produced[1]);
    wait_for(
        Duration::from_secs(120),
        "both records to reach their 3rd attempt",
        || attempts.of(&first).len() >= 3 && attempts.of(&second).len() >= 3,
    )
    .await;
    // The second record's failure is taken in (it is held) before the limit drops.
    sleep(h.slack).await;
    h.broker
        .configure_group(&group, &GroupConfig::default().delivery_count_limit(3))
        .await
        .unwrap_or_else(|e| panic!("lowering the delivery count limit of `{group}` failed: {e}"));
    // The worker reads the limit again at every refresh.
    sleep(refresh * 3 + h.slack).await;
    gate.store(true, Ordering::SeqCst);
    running
        .wait_idle(h, &[watch(&group, &topic)], Duration::from_secs(600))
        .await;
    let f = running.stop().await;
    for p in [&first, &second] {
        let runs = attempts.of(p);
        assert_eq!(
            runs.iter().map(|r| r.attempt).collect::<Vec<_>>(),
            vec![1, 2, 3],
            "record {p:?} should run 3 times (the limit dropped to 3); {runs:?}"
        );
        assert_eq!(
            f.final_outcome(&topic, p),
            Some(&Outcome::DeadLettered),
            "record {p:?} failed at its 3rd attempt under a delivery count limit lowered to 3: it should end dead-lettered, not released for the broker to archive; events {:#?}",
            f.of(&topic, p)
        );
    }
    let letters = h
        .read_topic(&format!("{topic}.dlq"), "lowered-reader")
        .await;
    assert_eq!(
        letters.len(),
        2,
        "two dead letters expected, one per record; got {letters:#?}"
    );
    for p in [&first, &second] {
        assert_eq!(
            header(find_dead_letter(&letters, p), dlq::ATTEMPTS),
            "3",
            "dead-lettered at its 3rd attempt"
        );
    }
    h.assert_nothing_redelivered(&group, &topic, "after both dead letters")
        .await;
}

/// A broker whose writes to one topic fail, `left` times, with an error that no retry cures on
/// its own (a partition the topic does not have: `is_invalid_input` on every broker, nothing
/// written); everything else passes through.
#[derive(Clone)]
struct FailingWrites {
    inner: Arc<dyn Broker>,
    topic: String,
    left: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
}

impl FailingWrites {
    fn new(inner: Arc<dyn Broker>, topic: &str, failures: usize) -> Self {
        Self {
            inner,
            topic: topic.to_owned(),
            left: Arc::new(AtomicUsize::new(failures)),
            failed: Arc::default(),
        }
    }

    fn failed(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Broker for FailingWrites {
    async fn join(&self, group: &str, topics: &[String]) -> Result<Box<dyn Member>, Error> {
        self.inner.join(group, topics).await
    }

    async fn produce(
        &self,
        topic: &str,
        mut records: Vec<OutgoingRecord>,
    ) -> Result<Vec<Produced>, Error> {
        let fail = topic == self.topic
            && self
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if fail {
            for r in &mut records {
                r.partition = Some(9999);
            }
            let result = self.inner.produce(topic, records).await;
            assert!(
                matches!(&result, Err(e) if e.is_invalid_input()),
                "writing to partition 9999 of `{topic}` should fail with an invalid-input error; got {result:?}"
            );
            self.failed.fetch_add(1, Ordering::SeqCst);
            return result;
        }
        self.inner.produce(topic, records).await
    }

    async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        self.inner.create_topic(topic, partitions).await
    }

    async fn lag(&self, group: &str) -> Result<Vec<TopicLag>, Error> {
        self.inner.lag(group).await
    }

    async fn group_limits(&self, group: &str) -> Result<GroupLimits, Error> {
        self.inner.group_limits(group).await
    }

    async fn configure_group(&self, group: &str, config: &GroupConfig) -> Result<(), Error> {
        self.inner.configure_group(group, config).await
    }

    async fn offsets(&self, topic: &str) -> Result<Vec<PartitionOffsets>, Error> {
        self.inner.offsets(topic).await
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}

/// A dead-letter write that fails with an error no retry cures by itself (here a partition the
/// topic lacks; in life a missing Write ACL, a record too large) holds the record, lock
/// renewed, and tries again with backoff: the handler runs once, each failed try is an event,
/// and the one dead letter lands once the write succeeds. Released instead, the record would
/// run again, and at its delivery limit be archived with no dead letter.
pub async fn dead_letter_write_failures_hold_the_record(h: &Harness) {
    let topic = h.name("dl-hold");
    let group = h.name("dl-hold-g");
    let dlq_topic = format!("{topic}.dlq");
    h.group(&group, GroupConfig::default()).await;
    h.broker
        .create_topic(&dlq_topic, 1)
        .await
        .unwrap_or_else(|e| panic!("creating `{dlq_topic}` failed: {e}"));
    let produced = h.enqueue(&topic, &[1u32]).await.remove(0);
    let broker = FailingWrites::new(h.broker.clone(), &dlq_topic, 3);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let handler = move |_job: Job<u32>| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(JobError::permanent("bad address"))
        }
    };
    let def = JobDefinition::new("dl_hold", &topic, handler).group(&group);
    let running = start_on(Arc::new(broker.clone()), Config::default(), vec![def]).await;
    running
        .wait_idle(h, &[watch(&group, &topic)], Duration::from_secs(600))
        .await;
    let f = running.stop().await;
    assert_eq!(
        broker.failed(),
        3,
        "the first three dead-letter writes should have failed"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the record should stay held while its dead letter is retried, not be released and run again; events {:#?}",
        f.of(&topic, &produced)
    );
    let outcomes: Vec<&Outcome> = f.of(&topic, &produced).iter().map(|e| &e.outcome).collect();
    let tries = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::DeadLetterFailed { error } if error.contains("9999")))
        .count();
    assert_eq!(
        tries, 3,
        "each failed dead-letter write should be an event carrying its error; {outcomes:#?}"
    );
    assert_eq!(
        outcomes.last(),
        Some(&&Outcome::DeadLettered),
        "the record should end dead-lettered; {outcomes:#?}"
    );
    let letters = h.read_topic(&dlq_topic, "dl-hold-reader").await;
    assert_eq!(
        letters.len(),
        1,
        "exactly one dead letter expected; got {letters:#?}"
    );
    find_dead_letter(&letters, &produced);
    h.assert_nothing_redelivered(&group, &topic, "after the dead letter")
        .await;
}

/// A dead-letter write still failing when the shutdown grace period ends is cut off, and says
/// so: a `DeadLetterAbandoned` event (metric `shareworker_dead_letters_abandoned_total`, an error
/// log line) and the record released. Below the delivery count limit it is delivered again
/// (attempt 2); at the limit (2 here) the broker archives it, which is an `Archived` event too
/// (`shareworker_records_archived_total`).
pub async fn dead_letter_cut_off_at_shutdown(h: &Harness) {
    let topic = h.name("dl-cut");
    let group = h.name("dl-cut-g");
    let dlq_topic = format!("{topic}.dlq");
    h.group(&group, GroupConfig::default().delivery_count_limit(2))
        .await;
    h.broker
        .create_topic(&dlq_topic, 1)
        .await
        .unwrap_or_else(|e| panic!("creating `{dlq_topic}` failed: {e}"));
    // Record 1 fails for good at attempt 1; record 2 fails until its last attempt (2).
    let produced = h.enqueue(&topic, &[1u32, 2]).await;
    let (first, last) = (produced[0], produced[1]);
    let broker = FailingWrites::new(h.broker.clone(), &dlq_topic, usize::MAX);
    let handler = move |job: Job<u32>| async move {
        if *job.payload() == 1 {
            Err::<(), _>(JobError::permanent("bad address"))
        } else {
            Err(JobError::retry("still failing"))
        }
    };
    let def = JobDefinition::new("dl_cut", &topic, handler)
        .group(&group)
        .backoff(Duration::from_millis(100), Duration::from_secs(1), 2.0, 0.0);
    let mut config = Config::default();
    config.shutdown_grace = Duration::from_secs(2);
    let running = start_on(Arc::new(broker.clone()), config, vec![def]).await;
    let events = running.events.clone();
    let failing = |p: Produced, attempt: u16| {
        let events = events.clone();
        move || {
            events.lock().iter().any(|(_, e)| {
                e.id.partition == p.partition
                    && e.id.offset == p.offset
                    && e.attempt == attempt
                    && matches!(e.outcome, Outcome::DeadLetterFailed { .. })
            })
        }
    };
    wait_for(
        Duration::from_secs(120),
        "both dead-letter writes to fail",
        || failing(first, 1)() && failing(last, 2)(),
    )
    .await;
    let f = running.stop().await;
    let ends = |p: &Produced| -> Vec<Outcome> {
        f.of(&topic, p)
            .iter()
            .map(|e| e.outcome.clone())
            .filter(|o| matches!(o, Outcome::DeadLetterAbandoned | Outcome::Archived { .. }))
            .collect()
    };
    assert_eq!(
        ends(&first),
        vec![Outcome::DeadLetterAbandoned],
        "record 1's dead letter was cut off at attempt 1: abandoned and released, not archived; events {:#?}",
        f.of(&topic, &first)
    );
    let last_ends = ends(&last);
    assert!(
        matches!(last_ends.as_slice(), [Outcome::DeadLetterAbandoned, Outcome::Archived { reason }] if reason.contains("last delivery")),
        "record 2's dead letter was cut off at its last delivery: abandoned, then archived by the broker; got {last_ends:?}; events {:#?}",
        f.of(&topic, &last)
    );
    // A new member gets record 1 again (its 2nd delivery), never record 2.
    let member = h
        .broker
        .join(&group, std::slice::from_ref(&topic))
        .await
        .unwrap_or_else(|e| panic!("joining `{group}` again failed: {e}"));
    let mut got = Vec::new();
    loop {
        let batch = member
            .acquire(100, h.quiet)
            .await
            .unwrap_or_else(|e| panic!("acquiring from `{group}` again failed: {e}"));
        if batch.is_empty() {
            break;
        }
        let acks: Vec<_> = batch
            .iter()
            .map(|d| (d.id.clone(), AckKind::Accept))
            .collect();
        let _ = member.settle(&acks).await;
        got.extend(batch.into_iter().map(|d| (d.id, d.delivery_count)));
    }
    let _ = member.leave().await;
    assert_eq!(
        got,
        vec![(
            RecordId::new(topic.as_str(), first.partition, first.offset),
            2
        )],
        "after the cut-off, record 1 should come back (delivery 2) and record 2 be archived"
    );
}

/// A real lock-lost error (`Error::is_lock_lost`), from settling a record an embedded broker's
/// member never acquired: what any broker answers for a lock it no longer has.
async fn lock_lost_error() -> Error {
    let broker = shareworker::EmbeddedBroker::builder()
        .build()
        .expect("valid embedded broker settings");
    let member = broker
        .join("lock-lost", &["lock-lost".to_owned()])
        .await
        .expect("joining an embedded group");
    let mut answers = member
        .settle(&[(RecordId::new("lock-lost", 0, 0), AckKind::Renew)])
        .await
        .expect("the embedded broker answers a settle");
    match answers.pop() {
        Some(Err(e)) if e.is_lock_lost() => e,
        other => {
            panic!("renewing a record never acquired should be refused as lock lost; got {other:?}")
        }
    }
}

/// A broker whose members never pass on a renewal of the record in `cut`: they answer it as
/// lock lost themselves, so its lock runs out on the broker as if the renewal had failed.
#[derive(Clone)]
struct CutRenewals {
    inner: Arc<dyn Broker>,
    cut: Arc<Mutex<Option<RecordId>>>,
}

impl CutRenewals {
    fn new(inner: Arc<dyn Broker>) -> Self {
        Self {
            inner,
            cut: Arc::default(),
        }
    }

    fn cut(&self, topic: &str, p: &Produced) {
        *self.cut.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(RecordId::new(topic, p.partition, p.offset));
    }
}

struct CutRenewalsMember {
    inner: Box<dyn Member>,
    cut: Arc<Mutex<Option<RecordId>>>,
}

#[async_trait]
impl Broker for CutRenewals {
    async fn join(&self, group: &str, topics: &[String]) -> Result<Box<dyn Member>, Error> {
        Ok(Box::new(CutRenewalsMember {
            inner: self.inner.join(group, topics).await?,
            cut: self.cut.clone(),
        }))
    }

    async fn produce(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<Produced>, Error> {
        self.inner.produce(topic, records).await
    }

    async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        self.inner.create_topic(topic, partitions).await
    }

    async fn lag(&self, group: &str) -> Result<Vec<TopicLag>, Error> {
        self.inner.lag(group).await
    }

    async fn group_limits(&self, group: &str) -> Result<GroupLimits, Error> {
        self.inner.group_limits(group).await
    }

    async fn configure_group(&self, group: &str, config: &GroupConfig) -> Result<(), Error> {
        self.inner.configure_group(group, config).await
    }

    async fn offsets(&self, topic: &str) -> Result<Vec<PartitionOffsets>, Error> {
        self.inner.offsets(topic).await
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}

#[async_trait]
impl Member for CutRenewalsMember {
    async fn acquire(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, Error> {
        self.inner.acquire(max, wait).await
    }

    async fn settle(&self, acks: &[(RecordId, AckKind)]) -> Result<Vec<SettleResult>, Error> {
        let cut = self.cut.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let is_cut =
            |id: &RecordId, kind: AckKind| kind == AckKind::Renew && cut.as_ref() == Some(id);
        let passed: Vec<_> = acks
            .iter()
            .filter(|(id, k)| !is_cut(id, *k))
            .cloned()
            .collect();
        let mut answers = self.inner.settle(&passed).await?.into_iter();
        let mut out = Vec::with_capacity(acks.len());
        for (id, kind) in acks {
            if is_cut(id, *kind) {
                out.push(Err(lock_lost_error().await));
            } else {
                out.push(answers.next().unwrap_or(Ok(())));
            }
        }
        Ok(out)
    }

    async fn leave(&self) -> Result<(), Error> {
        self.inner.leave().await
    }

    fn member_id(&self) -> &str {
        self.inner.member_id()
    }
}

/// A lock lost at the record's last delivery (delivery count limit 2, its 2nd attempt running
/// past the lock because its renewal is refused) means the broker archives it when the lock
/// runs out, with no dead letter: that is an `Archived` event (and
/// `shareworker_records_archived_total`, and an error line), never silence.
pub async fn lock_lost_at_last_delivery_is_counted(h: &Harness) {
    let topic = h.name("lost-last");
    let group = h.name("lost-last-g");
    h.group(&group, GroupConfig::default().delivery_count_limit(2))
        .await;
    let produced = h.enqueue(&topic, &[1u32]).await.remove(0);
    let broker = CutRenewals::new(h.broker.clone());
    let attempts = Attempts::default();
    let a = attempts.clone();
    let lock = h.lock;
    let handler = move |job: Job<u32>| {
        let a = a.clone();
        async move {
            a.record(&job);
            if job.attempt() == 1 {
                return Err(JobError::retry("fails once"));
            }
            // Past the lock, so a renewal is due (and refused).
            sleep(lock + lock / 5).await;
            Ok(())
        }
    };
    let def = JobDefinition::new("lost_last", &topic, handler)
        .group(&group)
        .backoff(Duration::from_millis(100), Duration::from_secs(1), 2.0, 0.0);
    let running = start_on(Arc::new(broker.clone()), Config::default(), vec![def]).await;
    wait_for(Duration::from_secs(120), "the 2nd attempt to start", || {
        attempts.len() >= 2
    })
    .await;
    broker.cut(&topic, &produced);
    let events = running.events.clone();
    wait_for(
        lock * 3 + h.slack,
        "the refused renewal to be reported",
        || {
            events.lock().iter().any(|(_, e)| {
                matches!(
                    e.outcome,
                    Outcome::SettleFailed {
                        kind: AckKind::Renew
                    }
                )
            })
        },
    )
    .await;
    running
        .wait_idle(h, &[watch(&group, &topic)], Duration::from_secs(600))
        .await;
    let f = running.stop().await;
    let archived: Vec<&JobEvent> = f
        .of(&topic, &produced)
        .into_iter()
        .filter(|e| matches!(&e.outcome, Outcome::Archived { reason } if reason.contains("lock was lost")))
        .collect();
    assert_eq!(
        archived.len(),
        1,
        "a lock lost at the last delivery should be reported once as archived by the broker; events {:#?}",
        f.of(&topic, &produced)
    );
    assert_eq!(archived[0].attempt, 2, "archived at its 2nd delivery");
    // Its handler then succeeded, too late: that is said, and not counted as accepted.
    let events = f.of(&topic, &produced);
    assert!(
        events
            .iter()
            .any(|e| e.attempt == 2 && e.outcome == Outcome::SucceededAfterLockLost),
        "the success after the lost lock should be reported as such; events {events:#?}"
    );
    assert!(
        !events.iter().any(|e| e.outcome == Outcome::Accepted),
        "a record the broker archived was reported accepted; events {events:#?}"
    );
    assert_eq!(f.summary.accepted, 0, "{:?}", f.summary);
    assert_eq!(
        attempts.len(),
        2,
        "archived at its limit, the record should not run again"
    );
    h.assert_nothing_redelivered(&group, &topic, "after the archive")
        .await;
}

/// The delivery count limit is read again when the broker says a record is gone, not only at
/// the refresh: with `autoscale.refresh` at an hour, the limit lowered to 2 becomes known when
/// another record's lock is lost, and a job failing at its 2nd attempt is dead-lettered instead
/// of released (which the broker would archive).
pub async fn delivery_limit_reread_on_lost_lock(h: &Harness) {
    let topic = h.name("reread");
    let group = h.name("reread-g");
    h.group(&group, GroupConfig::default()).await;
    let produced = h.enqueue(&topic, &[1u32, 2]).await;
    let (failing, long) = (produced[0], produced[1]);
    let broker = CutRenewals::new(h.broker.clone());
    let attempts = Attempts::default();
    let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (a, g) = (attempts.clone(), gate.clone());
    let lock = h.lock;
    let handler = move |job: Job<u32>| {
        let (a, g) = (a.clone(), g.clone());
        async move {
            a.record(&job);
            if *job.payload() == 2 {
                if job.attempt() == 1 {
                    // Past the lock, so a renewal is due (and refused).
                    sleep(lock + lock / 5).await;
                }
                return Ok(());
            }
            if job.attempt() >= 2 {
                while !g.load(Ordering::SeqCst) {
                    sleep(Duration::from_millis(10)).await;
                }
            }
            Err::<(), _>(JobError::retry("always fails"))
        }
    };
    let def = JobDefinition::new("reread", &topic, handler)
        .group(&group)
        .concurrency(4)
        .backoff(Duration::from_millis(100), Duration::from_secs(1), 2.0, 0.0);
    let mut config = Config::default();
    config.autoscale.refresh = Duration::from_secs(3600);
    let running = start_on(Arc::new(broker.clone()), config, vec![def]).await;
    wait_for(
        Duration::from_secs(120),
        "record 1's 2nd attempt and record 2's 1st to run",
        || attempts.of(&failing).len() >= 2 && !attempts.of(&long).is_empty(),
    )
    .await;
    h.broker
        .configure_group(&group, &GroupConfig::default().delivery_count_limit(2))
        .await
        .unwrap_or_else(|e| panic!("lowering the delivery count limit of `{group}` failed: {e}"));
    broker.cut(&topic, &long);
    let events = running.events.clone();
    wait_for(lock * 3 + h.slack, "record 2's refused renewal", || {
        events.lock().iter().any(|(_, e)| {
            e.id.offset == long.offset
                && e.id.partition == long.partition
                && matches!(
                    e.outcome,
                    Outcome::SettleFailed {
                        kind: AckKind::Renew
                    }
                )
        })
    })
    .await;
    // The re-read runs in the background.
    sleep(h.slack).await;
    gate.store(true, Ordering::SeqCst);
    running
        .wait_idle(h, &[watch(&group, &topic)], Duration::from_secs(600))
        .await;
    let f = running.stop().await;
    assert_eq!(
        attempts.of(&failing).len(),
        2,
        "record 1 should run twice under the limit lowered to 2"
    );
    assert_eq!(
        f.final_outcome(&topic, &failing),
        Some(&Outcome::DeadLettered),
        "record 1 failed at its 2nd attempt after the limit dropped to 2 (learnt from record 2's lost lock): it should end dead-lettered; events {:#?}",
        f.of(&topic, &failing)
    );
    let letters = h.read_topic(&format!("{topic}.dlq"), "reread-reader").await;
    assert_eq!(
        letters.len(),
        1,
        "one dead letter expected; got {letters:#?}"
    );
    find_dead_letter(&letters, &failing);
}

/// A handler cut off by the maximum lease on its last attempt (`max_attempts(1)`) is
/// dead-lettered, not released: released, it would be delivered past its last attempt, or at
/// the delivery count limit archived by the broker with no dead letter.
pub async fn max_lease_on_the_last_attempt_dead_letters(h: &Harness) {
    let topic = h.name("lease-last");
    let group = h.name("lease-last-g");
    h.group(&group, GroupConfig::default()).await;
    let produced = h.enqueue(&topic, &[1u32]).await.remove(0);
    let attempts = Attempts::default();
    let a = attempts.clone();
    let handler = move |job: Job<u32>| {
        let a = a.clone();
        async move {
            a.record(&job);
            std::future::pending::<()>().await;
            Ok::<(), JobError>(())
        }
    };
    let def = JobDefinition::new("lease_last", &topic, handler)
        .group(&group)
        .max_attempts(1);
    let max_lease = Duration::from_secs(20);
    let mut config = Config::default();
    config.max_lease = max_lease;
    let limit = max_lease + h.lock * 4 + Duration::from_secs(60);
    let f = run_until_idle(h, config, vec![def], &[watch(&group, &topic)], limit).await;
    let outcomes: Vec<&Outcome> = f
        .of(&topic, &produced)
        .iter()
        .map(|e| &e.outcome)
        .filter(|o| **o != Outcome::LockRenewed)
        .collect();
    assert!(
        matches!(outcomes.first(), Some(Outcome::LeaseExpired))
            && matches!(outcomes.last(), Some(Outcome::DeadLettered)),
        "the last attempt cut off by max_lease should be dead-lettered; got {outcomes:?}"
    );
    assert_eq!(attempts.len(), 1, "it should run once");
    let letters = h
        .read_topic(&format!("{topic}.dlq"), "lease-last-reader")
        .await;
    assert_eq!(
        letters.len(),
        1,
        "one dead letter expected; got {letters:#?}"
    );
    assert!(
        header(&letters[0], dlq::ERROR).contains("maximum lease"),
        "the dead letter's error should say the maximum lease ended it; got `{}`",
        header(&letters[0], dlq::ERROR)
    );
    assert_eq!(
        f.summary.lease_expired, 1,
        "summary should count one expired lease: {:?}",
        f.summary
    );
}

/// Quick jobs run in the dispatcher's own poll once a handler has been quick for a while; a job
/// that then waits on something must go on by itself without holding up the next ones, and a
/// panic must still be caught and retried. 40 jobs at concurrency 4: job 30 waits until a job
/// started after it has run, job 25 panics at its first delivery; all 40 are accepted.
pub async fn quick_jobs_then_one_that_waits(h: &Harness) {
    let topic = h.name("quick");
    let group = h.name("quick-g");
    h.group(&group, GroupConfig::default()).await;
    let payloads: Vec<u64> = (0..40).collect();
    h.enqueue(&topic, &payloads).await;
    let signal = Arc::new(tokio::sync::Notify::new());
    // The job that woke job 30 (0 until then), and whether job 30 waits.
    let woken_by = Arc::new(AtomicUsize::new(0));
    let waiting = Arc::new(AtomicUsize::new(0));
    let (s, w, wb) = (signal.clone(), waiting.clone(), woken_by.clone());
    let handler = move |job: Job<u64>| {
        let (s, w, wb) = (s.clone(), w.clone(), wb.clone());
        async move {
            let n = *job.payload();
            if n == 25 && job.attempt() == 1 {
                panic!("job 25 panics at its first delivery");
            }
            if n == 30 {
                w.store(1, Ordering::SeqCst);
                s.notified().await;
            } else if w.load(Ordering::SeqCst) == 1 && wb.load(Ordering::SeqCst) == 0 {
                wb.store(n as usize, Ordering::SeqCst);
                s.notify_one();
            }
            Ok::<(), JobError>(())
        }
    };
    let def = JobDefinition::new("quick", &topic, handler)
        .group(&group)
        .concurrency(4);
    let f = run_until_idle(
        h,
        Config::default(),
        vec![def],
        &[watch(&group, &topic)],
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        f.summary.accepted, 40,
        "40 jobs, one of them waiting on a later one: all accepted; summary {:?}",
        f.summary
    );
    assert_ne!(
        woken_by.load(Ordering::SeqCst),
        0,
        "job 30 waits until a job started after it runs: some job must have run meanwhile"
    );
    let panics: Vec<_> = f
        .events
        .iter()
        .filter(|e| {
            matches!(&e.outcome, Outcome::Retrying { error, .. } if error.contains("handler panicked"))
        })
        .collect();
    assert_eq!(
        panics.len(),
        1,
        "job 25's panic is caught and retried once: {panics:?}"
    );
}
