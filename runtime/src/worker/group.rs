//! One share group's dispatcher: a single task that owns every record the member holds.
//!
//! It acquires only for free slots (plus a small prefetch), starts each job (as its own task, or
//! polled here first when its handler's jobs are quick: see `run`),
//! settles each record as its job finishes while acquiring goes on, renews every held lock from
//! one timer, holds failed records through their backoff delay, dead-letters after the last
//! attempt, and on shutdown releases what it cannot finish.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use prometheus::local::LocalHistogram;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info_span, warn};

use super::decide::{self, Ending};
use super::events::{EventSink, JobEvent, Outcome};
use super::prefetch::{self, Sizer};
use super::run::{JobRun, Pace, Started};
use crate::Error;
use crate::broker::{AckKind, Broker, Delivery, Member, RecordId};
use crate::config::{HandlerConfig, Prefetch};
use crate::definition::HandlerService;
use crate::job::{HandlerContext, Job, JobError, JobMeta};
use crate::limits::DeliveryLimit;
use crate::metrics::{GroupMetrics, HandlerMetrics};
use crate::worker::WorkerStatus;

/// How long one acquire waits for records before asking again.
const FETCH_WAIT: Duration = Duration::from_secs(5);
/// The pause after a failed acquire.
const FETCH_RETRY: Duration = Duration::from_secs(1);
/// Acknowledgements are sent once this many are waiting...
const ACK_BATCH: usize = 64;
/// ...or once the oldest has waited this long, so one settle call carries many records.
const ACK_LINGER: Duration = Duration::from_millis(1);

/// Hashes the dispatcher's sequence numbers (Fibonacci hashing: cheap, and spreads consecutive
/// numbers over the whole table).
#[derive(Default, Clone, Copy)]
struct SeqHasher(u64);

impl std::hash::Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

mod fate;
mod settle;
mod shutdown;

use fate::count;
use settle::{Ack, settle_loop};

type Entries = HashMap<u64, Entry, std::hash::BuildHasherDefault<SeqHasher>>;

/// The handler (its index) reading `topic`. A group has a few handlers: comparing names is
/// quicker than hashing each record's topic.
fn handler_of(handlers: &[HandlerRt], topic: &str) -> Option<usize> {
    handlers.iter().position(|h| *h.topic == *topic)
}

/// A handler as its group runs it.
pub(crate) struct HandlerRt {
    pub(crate) name: Arc<str>,
    pub(crate) topic: Arc<str>,
    pub(crate) service: HandlerService,
    pub(crate) config: HandlerConfig,
    pub(crate) metrics: HandlerMetrics,
    /// The group's broker-side dead-letter topic (KIP-1191), which replaces the handler's own.
    pub(crate) broker_dead_letter: Option<Arc<str>>,
}

/// Everything a group runner needs.
pub(crate) struct GroupRunner {
    pub(crate) group: Arc<str>,
    pub(crate) handlers: Vec<HandlerRt>,
    pub(crate) member: Arc<dyn Member>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) global: Arc<Semaphore>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) grace: Duration,
    /// Ends the grace period at once.
    pub(crate) stop_now: CancellationToken,
    pub(crate) max_lease: Duration,
    pub(crate) events: EventSink,
    pub(crate) metrics: GroupMetrics,
    pub(crate) status: WorkerStatus,
    /// The group's delivery count limit, re-read at every refresh and on a lost lock.
    pub(crate) limit: DeliveryLimit,
}

enum State {
    /// Acquired ahead of a free slot.
    Queued,
    /// Its handler runs.
    Running(AbortHandle),
    /// Failed; waiting out its backoff delay before the release.
    Held,
    /// Being written to the dead-letter topic.
    DeadLettering(AbortHandle),
}

struct Entry {
    handler: usize,
    /// When the maximum lease started: when the handler started, not when the record was
    /// acquired, so a record that waited in the prefetch queue gets its whole lease.
    lease_from: Instant,
    lock_started: Instant,
    state: State,
    /// The record and what its job carries, made once when the record is acquired: queued, it
    /// waits here (the queue holds only its number); running, its job shares it; failed, it is
    /// what its dead letter is made of.
    meta: Arc<JobMeta>,
    /// The last error of a held record, for its dead letter should the delivery count limit
    /// drop to its attempt while it waits out its backoff.
    error: Option<String>,
    /// A renewal failed: the broker gave the record to someone else, so it is never settled
    /// or renewed from here again.
    lost: bool,
}

/// A handler's histograms as its dispatcher fills them: observed here without atomics, added
/// to the shared ones (`shareworker_job_duration_seconds`, `shareworker_job_attempts`) once per
/// pass of the dispatcher's loop, and when the dispatcher ends.
pub(super) struct Observed {
    pub(super) duration: LocalHistogram,
    pub(super) attempts: LocalHistogram,
}

impl Observed {
    fn new(m: &HandlerMetrics) -> Self {
        Self {
            duration: m.duration.local(),
            attempts: m.attempts.local(),
        }
    }

    fn flush(&self) {
        self.duration.flush();
        self.attempts.flush();
    }
}

/// What job and dead-letter tasks report back.
pub(crate) enum Completion {
    Finished {
        seq: u64,
        result: Result<(), JobError>,
        took: Duration,
    },
    DeadLettered {
        seq: u64,
    },
    /// One try of a dead-letter write failed; the write goes on after `pause`.
    DeadLetterTryFailed {
        seq: u64,
        error: Error,
        tries: u32,
        pause: Duration,
    },
    /// The handler ran for `max_lease`: its task dropped it (which cancels it).
    LeaseExpired {
        seq: u64,
    },
    SettleFailed {
        id: RecordId,
        kind: AckKind,
        attempt: u16,
        error: Error,
    },
    /// A settle call was answered (or failed): the locks of its `records` (RENEW aside) are no
    /// longer this member's.
    Settled {
        records: usize,
    },
}

/// An acquire's records, and how long it took.
type FetchFuture = Pin<Box<dyn Future<Output = (Result<Vec<Delivery>, Error>, Duration)> + Send>>;
type PermitFuture = Pin<Box<dyn Future<Output = Option<OwnedSemaphorePermit>> + Send>>;

struct Dispatcher {
    r: GroupRunner,
    entries: Entries,
    /// Each handler's records acquired ahead of a free slot, in order (their entries hold them).
    queues: Vec<VecDeque<u64>>,
    running: Vec<u32>,
    held_count: Vec<u32>,
    held: BinaryHeap<Reverse<(Instant, u64)>>,
    next_seq: u64,
    /// What each handler's jobs share (its name, the group, the shutdown token).
    contexts: Vec<Arc<HandlerContext>>,
    /// How quick each handler's jobs have been (where its next job runs).
    pace: Vec<Arc<Pace>>,
    /// Each handler's histograms, flushed once per pass.
    observed: Vec<Observed>,
    acks: Vec<Ack>,
    /// The RENEW acknowledgements among `acks`.
    acks_renew: usize,
    /// Final acknowledgements handed to the settle task and not answered yet: their records
    /// still hold locks on the broker.
    settling: usize,
    /// When the waiting acknowledgements must go at the latest.
    acks_due: Option<Instant>,
    settle_tx: mpsc::UnboundedSender<Vec<Ack>>,
    done_tx: mpsc::UnboundedSender<Completion>,
    fetch: Option<FetchFuture>,
    /// How many records the pending acquire asked for.
    fetch_want: usize,
    /// The automatic prefetch's measurements.
    sizer: Sizer,
    fetch_paused_until: Option<Instant>,
    permit_wait: Option<PermitFuture>,
    /// When the job that just finished in the dispatcher's poll ended: the next job started in
    /// the same pass starts from this reading instead of reading the clock again (the two
    /// instants are a few hundred nanoseconds of bookkeeping apart). Cleared after each pass.
    last_end: Option<Instant>,
    next_renew: Option<Instant>,
    shutting_down: Option<Instant>,
}

impl GroupRunner {
    /// Runs until shutdown; then releases what is left and leaves the group.
    pub(crate) async fn run(self) {
        let (settle_tx, settle_rx) = mpsc::unbounded_channel();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let settler = tokio::spawn(settle_loop(
            self.member.clone(),
            settle_rx,
            done_tx.clone(),
            self.group.clone(),
        ));
        let n = self.handlers.len();
        let contexts = self
            .handlers
            .iter()
            .map(|h| {
                Arc::new(HandlerContext {
                    name: h.name.clone(),
                    group: self.group.clone(),
                    cancel: self.shutdown.clone(),
                })
            })
            .collect();
        let observed = self
            .handlers
            .iter()
            .map(|h| Observed::new(&h.metrics))
            .collect();
        let mut d = Dispatcher {
            contexts,
            r: self,
            entries: Entries::default(),
            queues: (0..n).map(|_| VecDeque::new()).collect(),
            running: vec![0; n],
            held_count: vec![0; n],
            held: BinaryHeap::new(),
            next_seq: 0,
            pace: (0..n).map(|_| Arc::default()).collect(),
            observed,
            acks: Vec::new(),
            acks_renew: 0,
            settling: 0,
            acks_due: None,
            settle_tx,
            done_tx,
            fetch: None,
            fetch_want: 0,
            sizer: Sizer::new(n),
            fetch_paused_until: None,
            permit_wait: None,
            last_end: None,
            next_renew: None,
            shutting_down: None,
        };
        d.main_loop(&mut done_rx).await;
        let member = d.r.member.clone();
        let group = d.r.group.clone();
        drop(d);
        // Every ack was handed to the settler; wait until it has sent them all.
        if let Err(e) = settler.await {
            error!(group = %group, error = %e, "the settle task failed");
        }
        if let Err(e) = member.leave().await {
            warn!(group = %group, error = %e, "could not leave the group; held records come back when their locks expire");
        }
    }
}

impl Entry {
    fn id(&self) -> &RecordId {
        &self.meta.delivery.id
    }

    /// The delivery count of this delivery.
    fn attempt(&self) -> u16 {
        self.meta.delivery.delivery_count
    }

    /// How long the record's lock lasts from its acquisition or last renewal.
    fn lock(&self) -> Duration {
        self.meta.delivery.lock_duration
    }

    /// The record's id, for its acknowledgement (a clone: moving it out of the shared record
    /// would copy the whole record).
    fn into_id(self) -> RecordId {
        self.meta.delivery.id.clone()
    }
}

impl Dispatcher {
    async fn main_loop(&mut self, done_rx: &mut mpsc::UnboundedReceiver<Completion>) {
        let shutdown = self.r.shutdown.clone();
        let stop_now = self.r.stop_now.clone();
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        loop {
            self.start_jobs();
            self.maybe_fetch();
            self.maybe_flush_acks();
            self.publish_gauges();
            if let Some(deadline) = self.shutting_down {
                if self.entries.is_empty() {
                    return;
                }
                if Instant::now() >= deadline {
                    self.abandon_all();
                    self.flush_acks();
                    self.clear_gauges();
                    return;
                }
            }
            let next_held = self.held.peek().map(|Reverse((t, _))| *t);
            let timer = [
                next_held,
                self.next_renew,
                self.fetch_paused_until,
                self.shutting_down,
                self.acks_due,
            ]
            .into_iter()
            .flatten()
            .min();
            // One timer for everything, re-armed only when its deadline changes.
            if timer != armed {
                if let Some(t) = timer {
                    sleep.as_mut().reset(t);
                }
                armed = timer;
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled(), if self.shutting_down.is_none() => self.begin_shutdown(),
                _ = stop_now.cancelled() => {
                    if self.shutting_down.is_none() {
                        self.begin_shutdown();
                    }
                    self.shutting_down = Some(Instant::now());
                }
                Some(c) = done_rx.recv() => {
                    self.on_completion(c);
                    // Take whatever else is ready before deciding what to acquire.
                    while let Ok(c) = done_rx.try_recv() {
                        self.on_completion(c);
                    }
                }
                (res, took) = poll_opt(&mut self.fetch) => {
                    self.fetch = None;
                    if let Ok(records) = &res {
                        let handlers = &self.r.handlers;
                        self.sizer.fetched(took, records, |d| handler_of(handlers, &d.id.topic));
                    }
                    self.on_fetched(res);
                }
                permit = poll_opt(&mut self.permit_wait) => {
                    self.permit_wait = None;
                    if let Some(p) = permit {
                        self.start_one(p);
                    }
                }
                _ = &mut sleep, if armed.is_some() => {
                    armed = None;
                    self.on_timer();
                }
            }
        }
    }

    /// Running, prefetched and held records per handler, for the gauges (a few atomic stores),
    /// and the histograms observed since the last pass.
    fn publish_gauges(&self) {
        for o in &self.observed {
            o.flush();
        }
        for (h, hr) in self.r.handlers.iter().enumerate() {
            hr.metrics.in_flight.set(i64::from(self.running[h]));
            hr.metrics.held.set(i64::from(self.held_count[h]));
            hr.metrics.prefetched.set(self.queues[h].len() as i64);
        }
    }

    fn clear_gauges(&self) {
        for hr in &self.r.handlers {
            hr.metrics.in_flight.set(0);
            hr.metrics.held.set(0);
            hr.metrics.prefetched.set(0);
        }
    }

    /// How many attempts handler `h` gets under the group's current delivery count limit.
    fn max_attempts(&self, h: usize) -> u16 {
        decide::max_attempts(self.r.handlers[h].config.max_attempts, self.r.limit.get())
    }

    fn on_fetched(&mut self, res: Result<Vec<Delivery>, Error>) {
        let records = match res {
            Ok(r) => {
                self.r.status.set_broker_ok(true);
                r
            }
            // A missing Read ACL does not pass by itself: stop, with the error (Worker::run).
            Err(e) if e.is_not_authorized() => {
                let topics: Vec<&str> = self.r.handlers.iter().map(|h| &*h.topic).collect();
                self.r.status.stop_with(&self.r.group, &topics, e);
                self.r.shutdown.cancel();
                return;
            }
            Err(e) => {
                warn!(group = %self.r.group, error = %e, "acquire failed; retrying in {FETCH_RETRY:?}");
                self.r.status.set_broker_ok(false);
                self.fetch_paused_until = Some(Instant::now() + FETCH_RETRY);
                return;
            }
        };
        self.r.metrics.fetched.inc_by(records.len() as u64);
        let now = Instant::now();
        for d in records {
            let Some(h) = handler_of(&self.r.handlers, &d.id.topic) else {
                warn!(group = %self.r.group, record = %d.id, "acquired a record of a topic no handler reads; releasing it");
                self.acks.push((d.id, AckKind::Release, d.delivery_count));
                continue;
            };
            if self.shutting_down.is_some() {
                if decide::archived_on_release(d.delivery_count, self.r.limit.get(), false) {
                    self.archived(
                        h,
                        &d.id,
                        d.delivery_count,
                        "released at its last delivery: acquired during shutdown".into(),
                    );
                }
                self.acks.push((d.id, AckKind::Release, d.delivery_count));
                continue;
            }
            if d.delivery_count > 1 {
                self.r.handlers[h].metrics.redeliveries.inc();
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            let renew_at = now + d.lock_duration / 2;
            self.next_renew = Some(self.next_renew.map_or(renew_at, |t| t.min(renew_at)));
            let meta = Arc::new(JobMeta {
                delivery: d,
                max_attempts: self.max_attempts(h),
                handler: self.contexts[h].clone(),
            });
            self.entries.insert(
                seq,
                Entry {
                    handler: h,
                    lease_from: now,
                    lock_started: now,
                    state: State::Queued,
                    meta,
                    error: None,
                    lost: false,
                },
            );
            self.queues[h].push_back(seq);
        }
    }

    fn maybe_fetch(&mut self) {
        if self.shutting_down.is_some() {
            return;
        }
        if let Some(t) = self.fetch_paused_until {
            if Instant::now() < t {
                return;
            }
            self.fetch_paused_until = None;
        }
        // The automatic prefetch counts completions in the duration histogram.
        for o in &self.observed {
            o.duration.flush();
        }
        self.size_prefetch();
        let mut free = 0usize;
        let mut prefetch = 0usize;
        let mut queued = 0usize;
        for (i, h) in self.r.handlers.iter().enumerate() {
            free += (h.config.concurrency as usize).saturating_sub(self.running[i] as usize);
            prefetch += self.prefetch_target(i);
            queued += self.queues[i].len();
        }
        let free = free.min(self.r.global.available_permits());
        let target = free + prefetch;
        let want = target.saturating_sub(queued);
        // Refill when half the target is missing (or nothing is queued), so one acquire brings
        // many records instead of one per finished job.
        if want == 0 || (queued > 0 && want < target.div_ceil(2)) {
            return;
        }
        // Never ask for more than the locks this member leaves free: a fetch the broker can
        // only answer empty (every partition at its lock limit) waits out its whole
        // `MaxWaitMs`, and the acknowledgements that would free the locks wait behind it.
        let want = want.min(self.free_locks());
        if want == 0 {
            return;
        }
        // An acquire is pending. It asked for what was free then; when at least twice as much is
        // free now, ask again: the member may not fetch more than an acquire asks for, so a
        // small one waiting on a quiet leader would hold the others back (dropping an acquire
        // loses nothing).
        if self.fetch.is_some() && want < self.fetch_want.saturating_mul(2) {
            return;
        }
        self.fetch_want = want;
        let member = self.r.member.clone();
        let latency = self.r.metrics.fetch_duration.clone();
        self.fetch = Some(Box::pin(async move {
            let started = Instant::now();
            let r = member.acquire(want, FETCH_WAIT).await;
            let took = started.elapsed();
            latency.observe(took.as_secs_f64());
            (r, took)
        }));
    }

    /// Record locks of the group (`share.partition.max.record.locks` per partition the
    /// records came from) that this member does not hold: every record it has not settled
    /// holds one (queued, running, backing off, dead-lettering, its acknowledgement waiting or
    /// on its way). Other members' locks are not known here: the bound is this member's own.
    fn free_locks(&self) -> usize {
        let acks = self.acks.len() - self.acks_renew;
        let held = self.entries.len() + acks + self.settling;
        self.lock_limit().saturating_sub(held)
    }

    /// The record locks this member may hold: `share.partition.max.record.locks` per
    /// partition its records came from.
    fn lock_limit(&self) -> usize {
        let limit = u64::from(self.r.limit.record_locks())
            .saturating_mul(self.sizer.partitions().max(1) as u64);
        usize::try_from(limit).unwrap_or(usize::MAX)
    }

    /// Handler `h`'s prefetch: the fixed one, or the automatic one's target.
    fn prefetch_target(&self, h: usize) -> usize {
        match self.r.handlers[h].config.prefetch {
            Prefetch::Fixed(n) => n as usize,
            Prefetch::Auto => self.sizer.target(h),
        }
    }

    /// Recomputes the automatic prefetch targets when a measuring window is over, and exports
    /// every handler's target (`shareworker_prefetch_target`).
    fn size_prefetch(&mut self) {
        let handlers = &self.r.handlers;
        let record_locks = self.r.limit.record_locks();
        let ticked = self.sizer.tick(
            Instant::now(),
            |h| handlers[h].metrics.duration.get_sample_count(),
            |h| {
                let c = &handlers[h].config;
                prefetch::Bounds {
                    lock: Duration::ZERO,
                    record_locks,
                    partitions: 1,
                    concurrency: c.concurrency,
                    max_records: c.prefetch_max_records,
                    max_bytes: c.prefetch_max_bytes,
                    record_bytes: None,
                }
            },
        );
        if ticked {
            for (h, hr) in self.r.handlers.iter().enumerate() {
                hr.metrics
                    .prefetch_target
                    .set(self.prefetch_target(h) as i64);
            }
        }
    }

    fn start_jobs(&mut self) {
        if self.permit_wait.is_some() {
            return;
        }
        for h in 0..self.queues.len() {
            while !self.queues[h].is_empty()
                && self.running[h] < self.r.handlers[h].config.concurrency
            {
                match self.r.global.clone().try_acquire_owned() {
                    Ok(p) => self.start_next(h, p),
                    Err(_) => {
                        let sem = self.r.global.clone();
                        self.permit_wait =
                            Some(Box::pin(async move { sem.acquire_owned().await.ok() }));
                        break;
                    }
                }
            }
            if self.permit_wait.is_some() {
                break;
            }
        }
        self.last_end = None;
    }

    /// A global slot came free: give it to the first handler with a queued record and room.
    fn start_one(&mut self, permit: OwnedSemaphorePermit) {
        for h in 0..self.queues.len() {
            if !self.queues[h].is_empty() && self.running[h] < self.r.handlers[h].config.concurrency
            {
                self.start_next(h, permit);
                self.last_end = None;
                return;
            }
        }
    }

    /// Starts handler `h`'s next queued job (see `run`: a quick one may finish right here).
    fn start_next(&mut self, h: usize, permit: OwnedSemaphorePermit) {
        let Some(seq) = self.queues[h].pop_front() else {
            return;
        };
        let max_attempts = self.max_attempts(h);
        let Some(entry) = self.entries.get_mut(&seq) else {
            return;
        };
        // The group's delivery count limit may have changed while the record was queued.
        if entry.meta.max_attempts != max_attempts {
            Arc::make_mut(&mut entry.meta).max_attempts = max_attempts;
        }
        let hr = &mut self.r.handlers[h];
        let d = &entry.meta.delivery;
        let span = info_span!(
            "job",
            handler = %hr.name,
            topic = %d.id.topic,
            partition = d.id.partition,
            offset = d.id.offset,
            attempt = d.delivery_count,
        );
        let job = Job::from_meta(entry.meta.clone());
        let started = self.last_end.take().unwrap_or_else(Instant::now);
        entry.lease_from = started;
        let run = JobRun::new(
            seq,
            &mut hr.service,
            job,
            (started, hr.config.timeout, self.r.max_lease),
            span,
            permit,
        );
        self.running[h] += 1;
        match run.start(&self.pace[h], &self.done_tx) {
            Started::Task(task) => entry.state = State::Running(task),
            Started::Done(c, ended) => {
                self.last_end = Some(ended);
                self.on_completion(c);
            }
        }
    }

    fn on_completion(&mut self, c: Completion) {
        match c {
            Completion::Finished { seq, result, took } => self.on_finished(seq, result, took),
            Completion::DeadLettered { seq } => self.on_dead_lettered(seq),
            Completion::LeaseExpired { seq } => self.lease_expired(seq, Instant::now()),
            Completion::DeadLetterTryFailed {
                seq,
                error,
                tries,
                pause,
            } => self.on_dead_letter_try_failed(seq, &error, tries, pause),
            Completion::SettleFailed {
                id,
                kind,
                attempt,
                error,
            } => self.on_settle_failed(id, kind, attempt, &error),
            Completion::Settled { records } => {
                self.settling = self.settling.saturating_sub(records);
            }
        }
    }

    fn handler_for(&self, id: &RecordId) -> Arc<str> {
        handler_of(&self.r.handlers, &id.topic)
            .map_or_else(|| Arc::from(""), |h| self.r.handlers[h].name.clone())
    }

    fn event(
        &self,
        handler: usize,
        id: &RecordId,
        attempt: u16,
        outcome: Outcome,
        took: Option<Duration>,
    ) {
        count(
            &self.r.handlers[handler].metrics,
            &self.observed[handler],
            attempt,
            &outcome,
            took,
        );
        self.r.events.emit(outcome, |outcome| JobEvent {
            handler: self.r.handlers[handler].name.clone(),
            group: self.r.group.clone(),
            id: id.clone(),
            attempt,
            outcome,
            took,
        });
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((t, seq))) = self.held.peek().copied() {
            if t > now {
                break;
            }
            self.held.pop();
            let Some(e) = self.entries.get(&seq) else {
                continue;
            };
            self.held_count[e.handler] -= 1;
            // The delivery count limit dropped to its attempt while it waited: released, the
            // broker would archive it; it is dead-lettered instead.
            let err = e.error.clone().unwrap_or_default();
            self.decide_and_act(seq, Ending::BackoffOver, err, None);
        }
        if self.next_renew.is_some_and(|t| t <= now) {
            self.renew(now);
        }
    }

    /// The one renewal timer: renew every lock past half its time; end runaway handlers.
    fn renew(&mut self, now: Instant) {
        let mut next: Option<Instant> = None;
        let mut expired_leases = Vec::new();
        let mut renewed = Vec::new();
        for (&seq, e) in &mut self.entries {
            if e.lost {
                continue;
            }
            let due = e.lock_started + e.lock() / 2;
            if due > now {
                next = Some(next.map_or(due, |n: Instant| n.min(due)));
                continue;
            }
            if matches!(e.state, State::Running(_))
                && now.duration_since(e.lease_from) >= self.r.max_lease
            {
                expired_leases.push(seq);
                continue;
            }
            debug!(group = %self.r.group, record = %e.id(), "renewing lock");
            self.acks
                .push((e.id().clone(), AckKind::Renew, e.attempt()));
            self.acks_renew += 1;
            e.lock_started = now;
            renewed.push((e.handler, e.id().clone(), e.attempt()));
            let due = now + e.lock() / 2;
            next = Some(next.map_or(due, |n: Instant| n.min(due)));
        }
        self.r.metrics.renewals.inc_by(renewed.len() as u64);
        for (h, id, attempt) in renewed {
            self.event(h, &id, attempt, Outcome::LockRenewed, None);
        }
        for seq in expired_leases {
            self.lease_expired(seq, now);
        }
        self.next_renew = next;
    }
}

async fn poll_opt<F: Future + Unpin>(f: &mut Option<F>) -> F::Output {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}
