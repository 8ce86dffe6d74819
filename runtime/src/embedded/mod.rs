//! The embedded, in-process broker.
//!
//! Topics are in-memory logs; each share group keeps, per partition, a share start offset and the
//! state of every record from there to the end of what it has handed out, as Kafka's share
//! partitions do (KIP-932): Available, Acquired (with a lock deadline and an owner), Acknowledged or
//! Archived, with a delivery count. Time is tokio's, so tests can pause it.
//!
//! The log of a partition keeps only what some group may still need: records below the share
//! start offset of every group reading that partition are dropped, and the log start offset moves
//! up (offsets never change). A partition no group reads yet keeps everything.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::Error;
use crate::broker::lock::LockExt;
use crate::broker::{
    AckKind, Broker, Delivery, GroupConfig, GroupDescription, GroupLimits, GroupMember, Headers,
    Member, OutgoingRecord, PartitionOffsets, Produced, RecordId, SettleResult,
    SharePartitionState, StartFrom, TopicLag, configs_of,
};

/// The smallest and largest delivery count limit Kafka accepts (`group.share.delivery.count.limit`).
const DELIVERY_LIMIT_RANGE: (u16, u16) = (2, 10);

/// Kafka's default largest record batch (`max.message.bytes`, `message.max.bytes`): 1 MiB.
pub(crate) const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Kafka's error code `MESSAGE_TOO_LARGE` (the Java client's `RecordTooLargeException`).
const MESSAGE_TOO_LARGE: i16 = 10;

/// An in-process share-group broker with Kafka's semantics and defaults.
///
/// Cloning gives another handle to the same broker. Nothing is persisted: the broker lives as long
/// as one handle does, and a restart of the process loses every record and every group.
///
/// Memory stays bounded by what is not yet done: a record that every group reading its partition
/// has settled (accepted, rejected or archived) is dropped, and the partition's log start offset
/// ([`PartitionOffsets::earliest`]) moves past it. A group that starts reading a partition later,
/// from `earliest`, starts at that log start offset, as on Kafka once retention has deleted old
/// segments. Records on a topic no group reads (a dead-letter topic, or jobs enqueued before the
/// first worker joins) are kept. A record larger than [`EmbeddedBrokerBuilder::max_message_bytes`]
/// (1 MiB by default, as Kafka) is refused.
///
/// ```
/// use std::time::Duration;
/// use shareworker::{AckKind, Broker, EmbeddedBroker, GroupConfig, OutgoingRecord, StartFrom};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), shareworker::Error> {
/// let broker = EmbeddedBroker::new();
/// broker.configure_group("g", &GroupConfig::default().start_from(StartFrom::Earliest)).await?;
/// broker.produce("jobs", vec![OutgoingRecord::new("hello")]).await?;
/// let member = broker.join("g", &["jobs".to_string()]).await?;
/// let records = member.acquire(10, Duration::from_millis(10)).await?;
/// assert_eq!(records.len(), 1);
/// assert_eq!(records[0].delivery_count, 1);
/// member.settle(&[(records[0].id.clone(), AckKind::Accept)]).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EmbeddedBroker {
    inner: Arc<Inner>,
}

/// Settings of an [`EmbeddedBroker`], from [`EmbeddedBroker::builder`].
#[derive(Clone, Debug)]
pub struct EmbeddedBrokerBuilder {
    defaults: GroupSettings,
    default_partitions: i32,
    auto_create_topics: bool,
    max_message_bytes: usize,
    keep_settled: bool,
}

struct Inner {
    state: Mutex<State>,
    notify: Notify,
    next_member: AtomicU64,
    default_partitions: i32,
    auto_create_topics: bool,
    max_message_bytes: usize,
    keep_settled: bool,
    defaults: GroupSettings,
}

#[derive(Clone, Copy, Debug)]
struct GroupSettings {
    start_from: StartFrom,
    limits: GroupLimits,
}

#[derive(Default)]
struct State {
    topics: HashMap<Arc<str>, Topic>,
    groups: HashMap<String, Group>,
}

struct Topic {
    name: Arc<str>,
    partitions: Vec<Log>,
    next_partition: usize,
}

/// The records of one partition from its log start offset on.
#[derive(Default)]
struct Log {
    /// The log start offset: the offset of `records[0]`.
    base: i64,
    records: VecDeque<StoredRecord>,
}

impl Log {
    /// The offset the next record gets.
    fn end(&self) -> i64 {
        self.base + self.records.len() as i64
    }

    fn get(&self, offset: i64) -> Option<&StoredRecord> {
        usize::try_from(offset - self.base)
            .ok()
            .and_then(|i| self.records.get(i))
    }

    fn push(&mut self, record: StoredRecord) -> i64 {
        let offset = self.end();
        self.records.push_back(record);
        offset
    }

    /// Drops the records below `offset`; gives memory back once most of the buffer is empty.
    fn trim_to(&mut self, offset: i64) {
        let drop = usize::try_from(offset - self.base)
            .unwrap_or(0)
            .min(self.records.len());
        if drop == 0 {
            return;
        }
        self.records.drain(..drop);
        self.base += drop as i64;
        let cap = self.records.capacity();
        if cap > 1024 && self.records.len() < cap / 4 {
            self.records.shrink_to(self.records.len() * 2);
        }
    }
}

#[derive(Clone)]
struct StoredRecord {
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Headers,
    timestamp: SystemTime,
}

struct Group {
    settings: GroupSettings,
    members: HashMap<u64, Vec<Arc<str>>>,
    partitions: HashMap<(Arc<str>, i32), SharePartition>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecState {
    Available {
        count: u16,
    },
    Acquired {
        count: u16,
        member: u64,
        deadline: Instant,
    },
    Acknowledged,
    Archived,
}

impl RecState {
    fn is_complete(self) -> bool {
        matches!(self, RecState::Acknowledged | RecState::Archived)
    }
}

/// One partition as one share group sees it.
struct SharePartition {
    /// Share start offset: every record below it is delivery-complete.
    start: i64,
    /// States of offsets `start..start + states.len()`; offsets past that were never acquired.
    states: VecDeque<RecState>,
    acquired: u32,
    available: u32,
    /// No lock in this partition expires before this instant.
    next_expiry: Option<Instant>,
}

impl SharePartition {
    fn new(start: i64) -> Self {
        Self {
            start,
            states: VecDeque::new(),
            acquired: 0,
            available: 0,
            next_expiry: None,
        }
    }

    fn end(&self) -> i64 {
        self.start + self.states.len() as i64
    }

    /// The record's lock ended without an acknowledgement: available again, or archived at the
    /// delivery count limit.
    fn give_back(&mut self, index: usize, count: u16, limit: u16) {
        self.acquired -= 1;
        if count >= limit {
            self.states[index] = RecState::Archived;
        } else {
            self.states[index] = RecState::Available { count };
            self.available += 1;
        }
    }

    fn expire(&mut self, now: Instant, limit: u16) -> bool {
        match self.next_expiry {
            Some(t) if t <= now => {}
            _ => return false,
        }
        let mut next: Option<Instant> = None;
        let mut expired = false;
        for i in 0..self.states.len() {
            if let RecState::Acquired {
                count, deadline, ..
            } = self.states[i]
            {
                if deadline <= now {
                    self.give_back(i, count, limit);
                    expired = true;
                } else {
                    next = Some(next.map_or(deadline, |n: Instant| n.min(deadline)));
                }
            }
        }
        self.next_expiry = next;
        self.advance();
        expired
    }

    fn advance(&mut self) {
        while let Some(front) = self.states.front() {
            if !front.is_complete() {
                break;
            }
            self.states.pop_front();
            self.start += 1;
        }
    }

    fn lag(&self, log_end: i64) -> u64 {
        let complete = self.states.iter().filter(|s| s.is_complete()).count() as i64;
        (log_end - self.start - complete).max(0) as u64
    }
}

impl Default for EmbeddedBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl Default for EmbeddedBrokerBuilder {
    fn default() -> Self {
        Self {
            defaults: GroupSettings {
                start_from: StartFrom::Latest,
                limits: GroupLimits::default(),
            },
            default_partitions: 1,
            auto_create_topics: true,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            keep_settled: false,
        }
    }
}

impl EmbeddedBrokerBuilder {
    /// Where new groups start reading (default: latest, as Kafka).
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.defaults.start_from = start;
        self
    }

    /// The default delivery count limit of new groups (default 5, range 2 to 10).
    pub fn delivery_count_limit(mut self, limit: u16) -> Self {
        self.defaults.limits.delivery_count_limit = limit;
        self
    }

    /// The default lock duration of new groups (default 30 s).
    pub fn lock_duration(mut self, lock: Duration) -> Self {
        self.defaults.limits.lock_duration = lock;
        self
    }

    /// The default per-partition limit of acquired records of new groups (default 2000).
    pub fn max_record_locks(mut self, locks: u32) -> Self {
        self.defaults.limits.max_record_locks = locks;
        self
    }

    /// Partitions of topics created on first use (default 1).
    pub fn default_partitions(mut self, partitions: i32) -> Self {
        self.default_partitions = partitions;
        self
    }

    /// Whether producing to or joining on an unknown topic creates it (default true).
    pub fn auto_create_topics(mut self, on: bool) -> Self {
        self.auto_create_topics = on;
        self
    }

    /// The largest record accepted, counting its key, value and header keys and values (default
    /// 1 MiB, Kafka's `max.message.bytes`). A larger one fails the produce with an error for which
    /// [`Error::is_record_too_large`] and [`Error::is_invalid_input`] are true.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Whether records every group has settled stay in the log (default false: they are dropped,
    /// so memory follows what is not done yet). [`TestWorker`](crate::testing::TestWorker) keeps
    /// them, so that a test can read its topics after the run.
    pub fn keep_settled_records(mut self, keep: bool) -> Self {
        self.keep_settled = keep;
        self
    }

    /// Builds the broker.
    ///
    /// # Errors
    /// When a setting is out of range.
    pub fn build(self) -> Result<EmbeddedBroker, Error> {
        validate_limits(&self.defaults.limits)?;
        if self.default_partitions < 1 {
            return Err(Error::config(format!(
                "embedded broker: default_partitions must be at least 1, got {}",
                self.default_partitions
            )));
        }
        if self.max_message_bytes == 0 {
            return Err(Error::config(
                "embedded broker: max_message_bytes must be at least 1",
            ));
        }
        Ok(EmbeddedBroker {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                notify: Notify::new(),
                next_member: AtomicU64::new(1),
                default_partitions: self.default_partitions,
                auto_create_topics: self.auto_create_topics,
                max_message_bytes: self.max_message_bytes,
                keep_settled: self.keep_settled,
                defaults: self.defaults,
            }),
        })
    }
}

fn validate_limits(limits: &GroupLimits) -> Result<(), Error> {
    let (lo, hi) = DELIVERY_LIMIT_RANGE;
    if !(lo..=hi).contains(&limits.delivery_count_limit) {
        return Err(Error::config(format!(
            "share.delivery.count.limit must be between {lo} and {hi}, got {}",
            limits.delivery_count_limit
        )));
    }
    if limits.lock_duration.is_zero() {
        return Err(Error::config(
            "share.record.lock.duration.ms must be more than 0",
        ));
    }
    if limits.max_record_locks == 0 {
        return Err(Error::config(
            "share.partition.max.record.locks must be at least 1",
        ));
    }
    Ok(())
}

impl EmbeddedBroker {
    /// A broker with Kafka's defaults: groups start at the latest offset, 5 deliveries, 30 s
    /// locks, 2000 locks per partition; topics are created on first use with one partition.
    pub fn new() -> Self {
        Self::builder()
            .build()
            .expect("the default settings are valid")
    }

    /// Settings for a new broker.
    pub fn builder() -> EmbeddedBrokerBuilder {
        EmbeddedBrokerBuilder::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent state: every mutation is complete
        // before anything that can panic. So a poisoned lock is taken as it is.
        self.inner.state.locked()
    }

    /// Every record of `topic` still in its log, in partition then offset order, for tests and
    /// tools.
    ///
    /// # Errors
    /// When the topic does not exist.
    pub fn read_topic(&self, topic: &str) -> Result<Vec<Delivery>, Error> {
        let state = self.lock();
        let t = state
            .topics
            .get(topic)
            .ok_or_else(|| Error::unknown_topic(topic))?;
        let mut out = Vec::new();
        for (p, log) in t.partitions.iter().enumerate() {
            for (i, r) in log.records.iter().enumerate() {
                out.push(to_delivery(
                    &t.name,
                    p as i32,
                    log.base + i as i64,
                    r,
                    0,
                    Duration::ZERO,
                ));
            }
        }
        Ok(out)
    }

    /// The topic's partition count, if it exists.
    pub fn partitions(&self, topic: &str) -> Option<i32> {
        self.lock()
            .topics
            .get(topic)
            .map(|t| t.partitions.len() as i32)
    }

    fn group_settings(&self) -> GroupSettings {
        self.inner.defaults
    }
}

fn to_delivery(
    topic: &Arc<str>,
    partition: i32,
    offset: i64,
    r: &StoredRecord,
    count: u16,
    lock: Duration,
) -> Delivery {
    Delivery {
        id: RecordId {
            topic: topic.clone(),
            partition,
            offset,
        },
        key: r.key.clone(),
        value: r.value.clone(),
        headers: r.headers.clone(),
        timestamp: r.timestamp,
        delivery_count: count,
        lock_duration: lock,
    }
}

impl State {
    fn topic_or_create(&mut self, name: &str, inner: &Inner) -> Result<&mut Topic, Error> {
        if !self.topics.contains_key(name) {
            if !inner.auto_create_topics {
                return Err(Error::unknown_topic(name));
            }
            self.create_topic(name, inner.default_partitions)?;
        }
        self.topics
            .get_mut(name)
            .ok_or_else(|| Error::unknown_topic(name))
    }

    fn create_topic(&mut self, name: &str, partitions: i32) -> Result<(), Error> {
        validate_topic_name(name)?;
        if partitions < 1 {
            return Err(Error::invalid_input(format!(
                "topic `{name}`: partitions must be at least 1, got {partitions}"
            )));
        }
        match self.topics.get_mut(name) {
            Some(t) => {
                // Like Kafka, partitions can be added but never removed.
                while (t.partitions.len() as i32) < partitions {
                    t.partitions.push(Log::default());
                }
            }
            None => {
                let name: Arc<str> = Arc::from(name);
                self.topics.insert(
                    name.clone(),
                    Topic {
                        name,
                        partitions: (0..partitions).map(|_| Log::default()).collect(),
                        next_partition: 0,
                    },
                );
            }
        }
        Ok(())
    }

    /// Drops the records of a partition that every group reading it has settled: those below the
    /// smallest share start offset. A partition no group reads keeps everything.
    fn trim(&mut self, topic: &Arc<str>, partition: i32, inner: &Inner) {
        if inner.keep_settled {
            return;
        }
        let key = (topic.clone(), partition);
        let Some(floor) = self
            .groups
            .values()
            .filter_map(|g| g.partitions.get(&key).map(|sp| sp.start))
            .min()
        else {
            return;
        };
        if let Some(log) = self.topics.get_mut(topic).and_then(|t| {
            usize::try_from(partition)
                .ok()
                .and_then(|p| t.partitions.get_mut(p))
        }) {
            log.trim_to(floor);
        }
    }

    fn group(&mut self, group: &str, defaults: GroupSettings) -> &mut Group {
        self.groups
            .entry(group.to_owned())
            .or_insert_with(|| Group {
                settings: defaults,
                members: HashMap::new(),
                partitions: HashMap::new(),
            })
    }
}

fn validate_topic_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "`{name}` is not a valid topic name: use 1 to 249 of ASCII letters, digits, '.', '_' and '-'"
        )))
    }
}

/// A record's size as the limit counts it: key, value, header keys and header values.
fn record_size(r: &OutgoingRecord) -> usize {
    let headers: usize = r
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len()))
        .sum();
    r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len()) + headers
}

fn record_too_large(topic: &str, size: usize, max: usize) -> Error {
    Error::invalid_input(format!(
        "topic `{topic}`: a record of {size} bytes is larger than the embedded broker's max_message_bytes ({max} bytes; Kafka's default max.message.bytes is 1 MiB); set `embedded.max_message_bytes` to allow it, or send a reference to the data instead"
    ))
    .with_kafka_code(MESSAGE_TOO_LARGE)
}

fn partition_for_key(key: &[u8], partitions: usize) -> usize {
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % partitions as u64) as usize
}

#[async_trait]
impl Broker for EmbeddedBroker {
    async fn join(&self, group: &str, topics: &[String]) -> Result<Box<dyn Member>, Error> {
        if group.is_empty() {
            return Err(Error::invalid_input("group id must not be empty"));
        }
        if topics.is_empty() {
            return Err(Error::invalid_input(format!(
                "group `{group}`: a member must subscribe to at least one topic"
            )));
        }
        let defaults = self.group_settings();
        let mut state = self.lock();
        let mut names = Vec::with_capacity(topics.len());
        for topic in topics {
            let t = state.topic_or_create(topic, &self.inner)?;
            names.push(t.name.clone());
        }
        let id = self.inner.next_member.fetch_add(1, Ordering::Relaxed);
        let starts: Vec<(Arc<str>, i32, i64, i64)> = names
            .iter()
            .flat_map(|n| {
                let t = &state.topics[n];
                t.partitions
                    .iter()
                    .enumerate()
                    .map(|(p, log)| (n.clone(), p as i32, log.base, log.end()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let g = state.group(group, defaults);
        for (topic, p, log_start, log_end) in starts {
            let start = match g.settings.start_from {
                StartFrom::Latest => log_end,
                StartFrom::Earliest => log_start,
            };
            g.partitions
                .entry((topic, p))
                .or_insert_with(|| SharePartition::new(start));
        }
        g.members.insert(id, names.clone());
        Ok(Box::new(EmbeddedMember {
            broker: self.clone(),
            group: group.to_owned(),
            id,
            member_id: format!("embedded-{id}"),
            topics: names,
            rotation: AtomicU64::new(0),
        }))
    }

    async fn produce(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<Produced>, Error> {
        let now = SystemTime::now();
        let mut produced = Vec::with_capacity(records.len());
        {
            let mut state = self.lock();
            let t = state.topic_or_create(topic, &self.inner)?;
            let n = t.partitions.len();
            for r in &records {
                let size = record_size(r);
                if size > self.inner.max_message_bytes {
                    return Err(record_too_large(topic, size, self.inner.max_message_bytes));
                }
                if let Some(p) = r.partition
                    && (p < 0 || p as usize >= n)
                {
                    return Err(Error::invalid_input(format!(
                        "topic `{topic}` has {n} partitions; partition {p} does not exist"
                    )));
                }
            }
            for r in records {
                let p = match (r.partition, &r.key) {
                    (Some(p), _) => p as usize,
                    (None, Some(key)) => partition_for_key(key, n),
                    (None, None) => {
                        t.next_partition = (t.next_partition + 1) % n;
                        t.next_partition
                    }
                };
                let offset = t.partitions[p].push(StoredRecord {
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                    timestamp: now,
                });
                produced.push(Produced {
                    partition: p as i32,
                    offset,
                });
            }
        }
        self.inner.notify.notify_waiters();
        Ok(produced)
    }

    async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        self.lock().create_topic(topic, partitions)
    }

    async fn lag(&self, group: &str) -> Result<Vec<TopicLag>, Error> {
        let now = Instant::now();
        let mut state = self.lock();
        let State { topics, groups } = &mut *state;
        let Some(g) = groups.get_mut(group) else {
            return Ok(Vec::new());
        };
        let limit = g.settings.limits.delivery_count_limit;
        let mut by_topic: HashMap<Arc<str>, TopicLag> = HashMap::new();
        for ((topic, p), sp) in g.partitions.iter_mut() {
            sp.expire(now, limit);
            let log_end = topics
                .get(topic)
                .and_then(|t| t.partitions.get(*p as usize))
                .map_or(0, Log::end);
            let lag = sp.lag(log_end);
            let entry = by_topic.entry(topic.clone()).or_insert_with(|| TopicLag {
                topic: topic.to_string(),
                lag: 0,
                partitions: Vec::new(),
            });
            entry.lag += lag;
            entry.partitions.push((*p, lag));
        }
        let mut out: Vec<TopicLag> = by_topic.into_values().collect();
        for t in &mut out {
            t.partitions.sort_unstable();
        }
        out.sort_by(|a, b| a.topic.cmp(&b.topic));
        Ok(out)
    }

    async fn end_offsets(&self, topics: &[String]) -> Result<Vec<(String, u64)>, Error> {
        let state = self.lock();
        Ok(topics
            .iter()
            .filter_map(|t| {
                let topic = state.topics.get(t.as_str())?;
                let sum = topic
                    .partitions
                    .iter()
                    .map(|p| u64::try_from(p.end()).unwrap_or(0))
                    .sum();
                Some((t.clone(), sum))
            })
            .collect())
    }

    async fn group_limits(&self, group: &str) -> Result<GroupLimits, Error> {
        let state = self.lock();
        Ok(state
            .groups
            .get(group)
            .map_or(self.inner.defaults.limits, |g| g.settings.limits))
    }

    async fn configure_group(&self, group: &str, config: &GroupConfig) -> Result<(), Error> {
        if group.is_empty() {
            return Err(Error::invalid_input("group id must not be empty"));
        }
        if config
            .broker_dead_letter
            .as_deref()
            .is_some_and(|t| !t.is_empty())
        {
            return Err(Error::invalid_input(
                "the embedded broker has no broker-side dead-letter queue (errors.deadletterqueue.topic.name is Kafka 4.4's); use the handler's `dead_letter` setting, which works on every broker",
            ));
        }
        let defaults = self.group_settings();
        let mut state = self.lock();
        let g = state.group(group, defaults);
        let mut settings = g.settings;
        if let Some(s) = config.start_from {
            settings.start_from = s;
        }
        if let Some(l) = config.delivery_count_limit {
            settings.limits.delivery_count_limit = l;
        }
        if let Some(l) = config.lock_duration {
            settings.limits.lock_duration = l;
        }
        if let Some(l) = config.max_record_locks {
            settings.limits.max_record_locks = l;
        }
        validate_limits(&settings.limits)?;
        g.settings = settings;
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn describe_group(&self, group: &str) -> Result<GroupDescription, Error> {
        let now = Instant::now();
        let mut state = self.lock();
        let State { topics, groups } = &mut *state;
        let g = groups
            .get_mut(group)
            .ok_or_else(|| Error::unknown_group(group))?;
        let limit = g.settings.limits.delivery_count_limit;
        let mut members: Vec<GroupMember> = g
            .members
            .iter()
            .map(|(id, subscribed)| {
                let mut topics_of: Vec<String> = subscribed.iter().map(|t| t.to_string()).collect();
                topics_of.sort();
                // Every member reads every partition of its topics.
                let assignment = topics_of
                    .iter()
                    .flat_map(|t| {
                        let n = topics.get(t.as_str()).map_or(0, |t| t.partitions.len());
                        (0..n).map(move |p| (t.clone(), p as i32))
                    })
                    .collect();
                GroupMember {
                    member_id: format!("embedded-{id}"),
                    client_id: "shareworker".to_owned(),
                    host: "in-process".to_owned(),
                    topics: topics_of,
                    assignment,
                }
            })
            .collect();
        members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        let mut partitions: Vec<SharePartitionState> = g
            .partitions
            .iter_mut()
            .map(|((topic, p), sp)| {
                sp.expire(now, limit);
                let log_end = topics
                    .get(topic)
                    .and_then(|t| t.partitions.get(*p as usize))
                    .map_or(0, Log::end);
                let mut state = SharePartitionState::new(
                    topic.to_string(),
                    *p,
                    Some(sp.start),
                    sp.lag(log_end),
                );
                state.in_flight = Some(u64::from(sp.acquired));
                state
            })
            .collect();
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(GroupDescription {
            group: group.to_owned(),
            state: if members.is_empty() {
                "Empty"
            } else {
                "Stable"
            }
            .to_owned(),
            members,
            partitions,
        })
    }

    async fn list_groups(&self) -> Result<Vec<String>, Error> {
        let mut groups: Vec<String> = self.lock().groups.keys().cloned().collect();
        groups.sort();
        Ok(groups)
    }

    async fn group_configs(&self, group: &str) -> Result<Vec<(String, String)>, Error> {
        let settings = self
            .lock()
            .groups
            .get(group)
            .map_or(self.inner.defaults, |g| g.settings);
        let mut out = configs_of(&settings.limits, Some(settings.start_from));
        out.sort();
        Ok(out)
    }

    async fn offsets(&self, topic: &str) -> Result<Vec<PartitionOffsets>, Error> {
        let state = self.lock();
        let t = state
            .topics
            .get(topic)
            .ok_or_else(|| Error::unknown_topic(topic))?;
        Ok(t.partitions
            .iter()
            .enumerate()
            .map(|(p, log)| PartitionOffsets::new(p as i32, log.base, log.end()))
            .collect())
    }

    async fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max: usize,
    ) -> Result<Vec<Delivery>, Error> {
        let state = self.lock();
        let t = state
            .topics
            .get(topic)
            .ok_or_else(|| Error::unknown_topic(topic))?;
        let log = usize::try_from(partition)
            .ok()
            .and_then(|p| t.partitions.get(p))
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "topic `{topic}` has {} partitions; partition {partition} does not exist",
                    t.partitions.len()
                ))
            })?;
        // Below the log start offset, reading starts at it (the records there were dropped).
        let from = usize::try_from(offset.max(log.base) - log.base)
            .unwrap_or(usize::MAX)
            .min(log.records.len());
        let to = from.saturating_add(max).min(log.records.len());
        Ok(log
            .records
            .range(from..to)
            .enumerate()
            .map(|(i, r)| {
                let offset = log.base + (from + i) as i64;
                to_delivery(&t.name, partition, offset, r, 0, Duration::ZERO)
            })
            .collect())
    }
}

/// A member of a share group on an [`EmbeddedBroker`].
struct EmbeddedMember {
    broker: EmbeddedBroker,
    group: String,
    id: u64,
    member_id: String,
    topics: Vec<Arc<str>>,
    rotation: AtomicU64,
}

impl EmbeddedMember {
    /// This member's group, or a closed error when the member has left it.
    fn my_group<'g>(&self, groups: &'g mut HashMap<String, Group>) -> Result<&'g mut Group, Error> {
        let g = groups
            .get_mut(&self.group)
            .ok_or_else(|| Error::closed(format!("group `{}` no longer exists", self.group)))?;
        if !g.members.contains_key(&self.id) {
            return Err(Error::closed(format!(
                "member {} has left group `{}`",
                self.member_id, self.group
            )));
        }
        Ok(g)
    }

    /// Acquires what is available now; returns the records and, when there are none, the next
    /// instant at which a lock expires.
    fn try_acquire(&self, max: usize) -> Result<(Vec<Delivery>, Option<Instant>), Error> {
        let now = Instant::now();
        let mut out = Vec::new();
        let mut next_expiry: Option<Instant> = None;
        let mut advanced: Vec<(Arc<str>, i32)> = Vec::new();
        let mut guard = self.broker.lock();
        let State { topics, groups } = &mut *guard;
        let g = self.my_group(groups)?;
        let limits = g.settings.limits;
        let start_from = g.settings.start_from;
        // Every (topic, partition) this member reads, starting at a rotating point for fairness.
        let mut slots: Vec<(&Topic, usize)> = Vec::new();
        for name in &self.topics {
            if let Some(t) = topics.get(name) {
                for p in 0..t.partitions.len() {
                    slots.push((t, p));
                }
            }
        }
        if slots.is_empty() {
            return Ok((out, None));
        }
        let first = self.rotation.fetch_add(1, Ordering::Relaxed) as usize % slots.len();
        for k in 0..slots.len() {
            if out.len() >= max {
                break;
            }
            let (t, p) = slots[(first + k) % slots.len()];
            let log = &t.partitions[p];
            let sp = g
                .partitions
                .entry((t.name.clone(), p as i32))
                .or_insert_with(|| {
                    SharePartition::new(match start_from {
                        StartFrom::Latest => log.end(),
                        StartFrom::Earliest => log.base,
                    })
                });
            if sp.expire(now, limits.delivery_count_limit) {
                advanced.push((t.name.clone(), p as i32));
            }
            let deadline = now + limits.lock_duration;
            let mut budget =
                (max - out.len()).min(limits.max_record_locks.saturating_sub(sp.acquired) as usize);
            // Redeliveries first: released or expired records inside the window.
            if sp.available > 0 && budget > 0 {
                for i in 0..sp.states.len() {
                    if budget == 0 || sp.available == 0 {
                        break;
                    }
                    let offset = sp.start + i as i64;
                    if let RecState::Available { count } = sp.states[i]
                        && let Some(record) = log.get(offset)
                    {
                        let count = count.saturating_add(1);
                        sp.states[i] = RecState::Acquired {
                            count,
                            member: self.id,
                            deadline,
                        };
                        sp.available -= 1;
                        sp.acquired += 1;
                        budget -= 1;
                        out.push(to_delivery(
                            &t.name,
                            p as i32,
                            offset,
                            record,
                            count,
                            limits.lock_duration,
                        ));
                    }
                }
            }
            // Then records never delivered, from the end of the window.
            while budget > 0 && sp.end() < log.end() {
                let offset = sp.end();
                let Some(record) = log.get(offset) else {
                    break;
                };
                sp.states.push_back(RecState::Acquired {
                    count: 1,
                    member: self.id,
                    deadline,
                });
                sp.acquired += 1;
                budget -= 1;
                out.push(to_delivery(
                    &t.name,
                    p as i32,
                    offset,
                    record,
                    1,
                    limits.lock_duration,
                ));
            }
            if sp.acquired > 0 {
                sp.next_expiry = Some(sp.next_expiry.map_or(deadline, |n| n.min(deadline)));
            }
            if let Some(t) = sp.next_expiry {
                next_expiry = Some(next_expiry.map_or(t, |n: Instant| n.min(t)));
            }
        }
        for (topic, p) in &advanced {
            guard.trim(topic, *p, &self.broker.inner);
        }
        Ok((out, next_expiry))
    }
}

#[async_trait]
impl Member for EmbeddedMember {
    async fn acquire(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, Error> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let give_up = Instant::now() + wait;
        loop {
            let notified = self.broker.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (records, next_expiry) = self.try_acquire(max)?;
            if !records.is_empty() {
                return Ok(records);
            }
            let now = Instant::now();
            if now >= give_up {
                return Ok(records);
            }
            let wake = next_expiry.map_or(give_up, |t| t.min(give_up));
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn settle(&self, acks: &[(RecordId, AckKind)]) -> Result<Vec<SettleResult>, Error> {
        let now = Instant::now();
        let mut results = Vec::with_capacity(acks.len());
        let mut freed = false;
        {
            let mut guard = self.broker.lock();
            let g = self.my_group(&mut guard.groups)?;
            let limits = g.settings.limits;
            let mut key: Option<(Arc<str>, i32)> = None;
            // The partitions whose share start offset may have moved, to trim their logs.
            let mut touched: Vec<(Arc<str>, i32)> = Vec::new();
            for (id, kind) in acks.iter().map(|(i, k)| (i, *k)) {
                if key
                    .as_ref()
                    .is_none_or(|(t, p)| *p != id.partition || **t != *id.topic)
                {
                    key = Some((id.topic.clone(), id.partition));
                    if !touched
                        .iter()
                        .any(|(t, p)| *p == id.partition && **t == *id.topic)
                    {
                        touched.push((id.topic.clone(), id.partition));
                    }
                }
                let Some(sp) = key.as_ref().and_then(|k| g.partitions.get_mut(k)) else {
                    results.push(Err(Error::lock_lost(format!(
                        "{id}: this group has never acquired from that partition"
                    ))));
                    continue;
                };
                sp.expire(now, limits.delivery_count_limit);
                if id.offset < sp.start || id.offset >= sp.end() {
                    results.push(Err(Error::lock_lost(format!(
                        "{id}: not acquired (already settled, expired or never delivered)"
                    ))));
                    continue;
                }
                let i = (id.offset - sp.start) as usize;
                match sp.states[i] {
                    RecState::Acquired {
                        count, member, ..
                    } if member == self.id => {
                        match kind {
                            AckKind::Accept => {
                                sp.states[i] = RecState::Acknowledged;
                                sp.acquired -= 1;
                            }
                            AckKind::Reject => {
                                sp.states[i] = RecState::Archived;
                                sp.acquired -= 1;
                            }
                            AckKind::Release => {
                                sp.give_back(i, count, limits.delivery_count_limit);
                                freed = true;
                            }
                            AckKind::Renew => {
                                sp.states[i] = RecState::Acquired {
                                    count,
                                    member,
                                    deadline: now + limits.lock_duration,
                                };
                            }
                        }
                        if kind != AckKind::Renew {
                            freed |= sp.acquired + 1 == limits.max_record_locks;
                            sp.advance();
                        }
                        results.push(Ok(()));
                    }
                    _ => results.push(Err(Error::lock_lost(format!(
                        "{id}: not acquired by member {} (expired, settled or owned by another member)",
                        self.member_id
                    )))),
                }
            }
            for (topic, p) in &touched {
                guard.trim(topic, *p, &self.broker.inner);
            }
        }
        if freed {
            self.broker.inner.notify.notify_waiters();
        }
        Ok(results)
    }

    async fn leave(&self) -> Result<(), Error> {
        {
            let mut guard = self.broker.lock();
            if let Some(g) = guard.groups.get_mut(&self.group) {
                g.members.remove(&self.id);
                let limit = g.settings.limits.delivery_count_limit;
                let keys: Vec<(Arc<str>, i32)> = g.partitions.keys().cloned().collect();
                for sp in g.partitions.values_mut() {
                    for i in 0..sp.states.len() {
                        if let RecState::Acquired { count, member, .. } = sp.states[i]
                            && member == self.id
                        {
                            sp.give_back(i, count, limit);
                        }
                    }
                    sp.advance();
                }
                for (topic, p) in &keys {
                    guard.trim(topic, *p, &self.broker.inner);
                }
            }
        }
        self.broker.inner.notify.notify_waiters();
        Ok(())
    }

    fn member_id(&self) -> &str {
        &self.member_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_are_checked() {
        assert!(validate_topic_name("emails.dlq").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("has space").is_err());
        assert!(validate_topic_name("..").is_err());
    }

    async fn accept_all(member: &dyn Member, n: usize) -> Vec<RecordId> {
        let records = member
            .acquire(n, Duration::ZERO)
            .await
            .expect("acquire on the embedded broker");
        assert_eq!(records.len(), n);
        let acks: Vec<_> = records
            .iter()
            .map(|r| (r.id.clone(), AckKind::Accept))
            .collect();
        for r in member.settle(&acks).await.expect("settle") {
            r.expect("each accept succeeds");
        }
        records.into_iter().map(|r| r.id).collect()
    }

    async fn log_start(broker: &EmbeddedBroker, topic: &str) -> (i64, i64, usize) {
        let o = broker.offsets(topic).await.expect("offsets");
        let kept = broker.read_topic(topic).expect("read_topic").len();
        (o[0].earliest, o[0].latest, kept)
    }

    #[tokio::test(start_paused = true)]
    async fn records_every_group_has_settled_are_dropped_and_offsets_stay() {
        let broker = EmbeddedBroker::builder()
            .start_from(StartFrom::Earliest)
            .build()
            .expect("valid settings");
        let topics = ["jobs".to_string()];
        let records: Vec<_> = (0..100)
            .map(|i| OutgoingRecord::new(format!("job {i}")))
            .collect();
        broker.produce("jobs", records).await.expect("produce");
        // Before any group reads the partition, everything is kept.
        assert_eq!(log_start(&broker, "jobs").await, (0, 100, 100));

        let a = broker.join("a", &topics).await.expect("join a");
        let b = broker.join("b", &topics).await.expect("join b");
        accept_all(&*a, 60).await;
        // Group b has settled nothing: its share start offset 0 holds every record.
        assert_eq!(log_start(&broker, "jobs").await, (0, 100, 100));

        accept_all(&*b, 30).await;
        assert_eq!(log_start(&broker, "jobs").await, (30, 100, 70));

        // A record released back stays, and is delivered again from the trimmed log.
        let r = b.acquire(1, Duration::ZERO).await.expect("acquire");
        assert_eq!(r[0].id.offset, 30);
        b.settle(&[(r[0].id.clone(), AckKind::Release)])
            .await
            .expect("release");
        let again = b.acquire(1, Duration::ZERO).await.expect("acquire again");
        assert_eq!((again[0].id.offset, again[0].delivery_count), (30, 2));
        assert_eq!(again[0].value.as_deref(), Some(&b"job 30"[..]));
        b.settle(&[(again[0].id.clone(), AckKind::Accept)])
            .await
            .expect("accept");

        accept_all(&*b, 69).await;
        assert_eq!(log_start(&broker, "jobs").await, (60, 100, 40));
        accept_all(&*a, 40).await;
        // Both groups are done: nothing is kept, and the next record gets the next offset.
        assert_eq!(log_start(&broker, "jobs").await, (100, 100, 0));
        let produced = broker
            .produce("jobs", vec![OutgoingRecord::new("late")])
            .await
            .expect("produce");
        assert_eq!(produced[0].offset, 100);
        let late = a.acquire(1, Duration::ZERO).await.expect("acquire");
        assert_eq!(late[0].id.offset, 100);

        // A group that starts later from `earliest` starts at the log start offset.
        let c = broker.join("c", &topics).await.expect("join c");
        let first = c.acquire(10, Duration::ZERO).await.expect("acquire c");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].id.offset, 100);
        // Reading below the log start offset starts at it.
        let read = broker.read("jobs", 0, 0, 10).await.expect("read");
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].id.offset, 100);
    }

    #[tokio::test(start_paused = true)]
    async fn keep_settled_records_keeps_them() {
        let broker = EmbeddedBroker::builder()
            .start_from(StartFrom::Earliest)
            .keep_settled_records(true)
            .build()
            .expect("valid settings");
        let records: Vec<_> = (0..5)
            .map(|i| OutgoingRecord::new(format!("{i}")))
            .collect();
        broker.produce("jobs", records).await.expect("produce");
        let m = broker.join("g", &["jobs".to_string()]).await.expect("join");
        accept_all(&*m, 5).await;
        assert_eq!(log_start(&broker, "jobs").await, (0, 5, 5));
    }

    #[tokio::test(start_paused = true)]
    async fn records_archived_at_the_delivery_limit_are_dropped_too() {
        let broker = EmbeddedBroker::builder()
            .start_from(StartFrom::Earliest)
            .delivery_count_limit(2)
            .lock_duration(Duration::from_secs(1))
            .build()
            .expect("valid settings");
        broker
            .produce("jobs", vec![OutgoingRecord::new("x")])
            .await
            .expect("produce");
        let m = broker.join("g", &["jobs".to_string()]).await.expect("join");
        for _ in 0..2 {
            let r = m.acquire(1, Duration::ZERO).await.expect("acquire");
            assert_eq!(r.len(), 1);
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        // The second lock expired at the limit: archived, and dropped on the next acquire.
        assert!(
            m.acquire(1, Duration::ZERO)
                .await
                .expect("acquire")
                .is_empty()
        );
        assert_eq!(log_start(&broker, "jobs").await, (1, 1, 0));
    }

    #[tokio::test]
    async fn a_record_over_max_message_bytes_is_refused_and_nothing_is_written() {
        let broker = EmbeddedBroker::new();
        let limit = DEFAULT_MAX_MESSAGE_BYTES;
        broker
            .produce("big", vec![OutgoingRecord::new(vec![b'x'; limit])])
            .await
            .expect("exactly the limit is accepted");
        let mut over = OutgoingRecord::new(vec![b'x'; limit - 2]);
        over.headers.push("h", "xy");
        let err = broker
            .produce("big", vec![OutgoingRecord::new("small"), over])
            .await
            .expect_err("a record over 1 MiB is refused");
        assert!(err.is_record_too_large(), "{err}");
        assert!(err.is_invalid_input(), "{err}");
        assert_eq!(err.kafka_code(), Some(10));
        assert!(
            err.to_string().contains("embedded.max_message_bytes"),
            "{err}"
        );
        // The batch is refused whole.
        assert_eq!(broker.read_topic("big").expect("topic").len(), 1);

        let small = EmbeddedBroker::builder()
            .max_message_bytes(10)
            .build()
            .expect("valid settings");
        let err = small
            .produce("t", vec![OutgoingRecord::new("eleven byte")])
            .await
            .expect_err("over 10 bytes");
        assert!(err.is_record_too_large(), "{err}");
        assert!(
            EmbeddedBroker::builder()
                .max_message_bytes(0)
                .build()
                .is_err()
        );
    }

    #[test]
    fn limits_out_of_range_are_refused_with_the_key_name() {
        let err = EmbeddedBroker::builder()
            .delivery_count_limit(11)
            .build()
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("share.delivery.count.limit")),
            "{err:?}"
        );
    }
}
