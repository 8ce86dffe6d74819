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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

mod log;
mod member;
mod partition;

use log::{Log, Placement, StoredRecord, Topic, millis, place, to_delivery, validate_topic_name};
use member::EmbeddedMember;
use partition::SharePartition;

use crate::Error;
use crate::broker::lock::LockExt;
use crate::broker::{
    Broker, BrokerAdmin, Delivery, GroupConfig, GroupDescription, GroupLimits, GroupMember, Member,
    OutgoingRecord, PartitionOffsets, Produced, SharePartitionState, StartFrom, TopicLag,
    configs_of, group_config_from,
};

/// The smallest and largest delivery count limit Kafka accepts (`group.share.delivery.count.limit`).
const DELIVERY_LIMIT_RANGE: (u16, u16) = (2, 10);

/// Kafka's default largest record batch (`max.message.bytes`, `message.max.bytes`): 1 MiB.
pub(crate) const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

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
/// use shareworker::{broker::{Broker, GroupConfig, OutgoingRecord, StartFrom}, EmbeddedBroker};
/// use shareworker::broker::AckKind;
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

struct Group {
    settings: GroupSettings,
    members: HashMap<u64, Vec<Arc<str>>>,
    partitions: HashMap<(Arc<str>, i32), SharePartition>,
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
        let now = millis(SystemTime::now());
        let mut produced = Vec::with_capacity(records.len());
        {
            let mut state = self.lock();
            let t = state.topic_or_create(topic, &self.inner)?;
            let Placement {
                to,
                mut packers,
                next_partition,
            } = place(t, &records, self.inner.max_message_bytes)?;
            t.next_partition = next_partition;
            for (r, p) in records.into_iter().zip(to) {
                let mut pack = |b: bytes::Bytes| match &mut packers[p] {
                    Some(packer) => packer.pack(b),
                    None => b,
                };
                let offset = t.partitions[p].push(StoredRecord::new(
                    r.key.map(&mut pack),
                    r.value.map(&mut pack),
                    r.headers,
                    now,
                ));
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
        // `config.assignment_interval`: this broker assigns a group's partitions as soon as a
        // member joins, so there is no round to shorten.
        validate_limits(&settings.limits)?;
        g.settings = settings;
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "embedded"
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
}

#[async_trait]
impl BrokerAdmin for EmbeddedBroker {
    async fn set_group_configs(
        &self,
        group: &str,
        configs: &[(String, String)],
    ) -> Result<(), Error> {
        let config = group_config_from(configs)?;
        self.configure_group(group, &config).await
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

#[cfg(test)]
mod tests;
