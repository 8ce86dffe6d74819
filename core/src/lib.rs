//! The seam between the shareworker runtime and a broker, in KIP-932 words.
//!
//! ```text
//!   shareworker (runtime: #[job], Worker, App, HTTP, metrics, embedded broker)
//!        |                         |
//!        |                 shareworker-kafka (share-group client, KafkaBroker) [feature `kafka`]
//!        |                         |
//!        +------> shareworker-core (this crate: Broker, Member, Delivery, Error) <------+
//! ```
//!
//! Like `tower-service` or `axum-core`: a small crate that a backend depends on without the
//! runtime. Everything above this seam (the dispatcher, lease renewal, backoff, dead letters,
//! metrics) is written once; a broker implements [`Broker`] and [`Member`] (what a worker
//! needs) and [`BrokerAdmin`] (the operator views: the admin tools, HTTP admin routes and CLI). Two implementations
//! ship with shareworker: the embedded broker (in-process, in the `shareworker` crate) and
//! `KafkaBroker` (in `shareworker-kafka`).
//!
//! Public types of other crates in its signatures: [`bytes::Bytes`] (payloads and keys) and
//! [`async_trait`](mod@async_trait) (the traits' methods).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

mod describe;
mod error;
mod headers;
mod secret;

pub use error::Error;
pub use secret::Secret;
// Helpers for backend crates (the Kafka client) and the runtime: not the seam itself.
#[doc(hidden)]
pub mod lock;
#[doc(hidden)]
pub mod retry;

pub use describe::{
    ASSIGNMENT_INTERVAL_MS, AUTO_OFFSET_RESET, DELIVERY_COUNT_LIMIT, GROUP_CONFIG_KEYS,
    GroupDescription, GroupMember, LOCK_DURATION_MS, MAX_RECORD_LOCKS, PartitionOffsets,
    SharePartitionState,
};
#[doc(hidden)]
pub use describe::{configs_of, group_config_from, settings_of};
pub use headers::{Header, Headers};

/// Where a record lives: topic, partition and offset.
///
/// Cloning is cheap (the topic name is shared).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId {
    /// The topic's name.
    pub topic: Arc<str>,
    /// The partition's index within the topic.
    pub partition: i32,
    /// The record's offset within the partition.
    pub offset: i64,
}

impl RecordId {
    /// A record id from its parts.
    ///
    /// ```
    /// let id = shareworker_core::RecordId::new("emails", 0, 42);
    /// assert_eq!(id.to_string(), "emails-0@42");
    /// ```
    pub fn new(topic: impl Into<Arc<str>>, partition: i32, offset: i64) -> Self {
        Self {
            topic: topic.into(),
            partition,
            offset,
        }
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}@{}", self.topic, self.partition, self.offset)
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A record acquired by a [`Member`]: its data, its delivery count and how long its lock lasts.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Where the record lives.
    pub id: RecordId,
    /// The record's key, if it has one.
    pub key: Option<Bytes>,
    /// The record's value (`None` for a tombstone).
    pub value: Option<Bytes>,
    /// The record's headers.
    pub headers: Headers,
    /// The record's timestamp.
    pub timestamp: SystemTime,
    /// How many times the record has been delivered, this delivery included (from 1).
    pub delivery_count: u16,
    /// How long the acquisition lock lasts from the moment of acquisition; a RENEW restarts it.
    pub lock_duration: Duration,
}

/// How a member settles an acquired record (KIP-932 acknowledgement types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AckKind {
    /// Processed: the record is done for the group.
    Accept,
    /// Give the record back: it becomes available again and its next delivery counts one more.
    Release,
    /// Done with the record without processing it: it is archived and never delivered again.
    Reject,
    /// Keep the record acquired and restart its lock timer; the delivery count is unchanged.
    Renew,
}

impl AckKind {
    /// The acknowledgement type's number on the Kafka wire (1 ACCEPT, 2 RELEASE, 3 REJECT, 4 RENEW).
    pub const fn wire_code(self) -> i8 {
        match self {
            AckKind::Accept => 1,
            AckKind::Release => 2,
            AckKind::Reject => 3,
            AckKind::Renew => 4,
        }
    }
}

impl fmt::Display for AckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AckKind::Accept => "accept",
            AckKind::Release => "release",
            AckKind::Reject => "reject",
            AckKind::Renew => "renew",
        })
    }
}

/// The answer to one acknowledgement in [`Member::settle`].
pub type SettleResult = Result<(), Error>;

/// A record to write with [`Broker::produce`].
#[derive(Clone, Debug, Default)]
pub struct OutgoingRecord {
    /// The key; records with equal keys go to the same partition.
    pub key: Option<Bytes>,
    /// The value (`None` writes a tombstone).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Headers,
    /// A fixed partition, or `None` to pick one from the key (or spread records without a key).
    pub partition: Option<i32>,
}

impl OutgoingRecord {
    /// A record with this value and nothing else set.
    pub fn new(value: impl Into<Bytes>) -> Self {
        Self {
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(key, value);
        self
    }
}

/// Where a produced record was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Produced {
    /// The partition it went to.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
}

/// Share lag of one topic for one group: records not yet delivery-complete (KIP-1226), in-flight
/// records included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicLag {
    /// The topic.
    pub topic: String,
    /// The lag summed over the topic's partitions.
    pub lag: u64,
    /// The lag per partition, as `(partition, lag)`.
    pub partitions: Vec<(i32, u64)>,
}

/// How often a broker API failed with one error, for metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorCount {
    /// The API, such as `ShareFetch`.
    pub api: String,
    /// The Kafka error name and code, such as `NOT_LEADER_OR_FOLLOWER (6)`, or `network`,
    /// `timeout` or `codec` when no answer came.
    pub code: String,
    /// How many times.
    pub count: u64,
}

impl ErrorCount {
    /// An error count from its parts.
    pub fn new(api: impl Into<String>, code: impl Into<String>, count: u64) -> Self {
        Self {
            api: api.into(),
            code: code.into(),
            count,
        }
    }
}

/// Limits the broker applies to a share group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupLimits {
    /// Deliveries after which the broker archives a record (`share.delivery.count.limit`).
    pub delivery_count_limit: u16,
    /// How long an acquisition lock lasts (`share.record.lock.duration.ms`).
    pub lock_duration: Duration,
    /// How many records of one partition may be acquired at once (`share.partition.max.record.locks`).
    pub max_record_locks: u32,
}

impl Default for GroupLimits {
    /// Kafka's defaults: 5 deliveries, 30 s locks, 2000 locks per partition.
    fn default() -> Self {
        Self {
            delivery_count_limit: 5,
            lock_duration: Duration::from_secs(30),
            max_record_locks: 2000,
        }
    }
}

/// Where a new share group starts reading (`share.auto.offset.reset`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartFrom {
    /// From the end of each partition at the moment the group first reads it (Kafka's default).
    #[default]
    Latest,
    /// From the start of each partition.
    Earliest,
}

/// Share-group settings that [`Broker::configure_group`] changes; `None` leaves a setting as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupConfig {
    /// `share.auto.offset.reset`.
    pub start_from: Option<StartFrom>,
    /// `share.delivery.count.limit`.
    pub delivery_count_limit: Option<u16>,
    /// `share.record.lock.duration.ms`.
    pub lock_duration: Option<Duration>,
    /// `share.partition.max.record.locks`.
    pub max_record_locks: Option<u32>,
    /// `share.assignment.interval.ms` (Kafka 4.3, KIP-1263): the least time between two
    /// assignment rounds of the group's coordinator, 1 s by default. A new group reads nothing
    /// until its first round; a shorter interval brings its first record sooner. The embedded
    /// broker assigns at once and accepts it with nothing to change.
    pub assignment_interval: Option<Duration>,
    /// `errors.deadletterqueue.topic.name` (Kafka 4.4, KIP-1191): the broker writes rejected and
    /// archived records there itself. The topic must exist and, by the broker's default, start
    /// with `dlq.`. An empty name turns it off.
    pub broker_dead_letter: Option<String>,
}

impl GroupConfig {
    /// Sets where a new group starts reading.
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.start_from = Some(start);
        self
    }

    /// Sets the delivery count limit.
    pub fn delivery_count_limit(mut self, limit: u16) -> Self {
        self.delivery_count_limit = Some(limit);
        self
    }

    /// Sets the acquisition lock duration.
    pub fn lock_duration(mut self, lock: Duration) -> Self {
        self.lock_duration = Some(lock);
        self
    }

    /// Sets the per-partition limit of acquired records.
    pub fn max_record_locks(mut self, locks: u32) -> Self {
        self.max_record_locks = Some(locks);
        self
    }

    /// Sets the least time between two assignment rounds of the group (Kafka 4.3 or newer).
    pub fn assignment_interval(mut self, interval: Duration) -> Self {
        self.assignment_interval = Some(interval);
        self
    }

    /// Sets the broker's own dead-letter topic for the group (Kafka 4.4; `""` turns it off).
    pub fn broker_dead_letter(mut self, topic: impl Into<String>) -> Self {
        self.broker_dead_letter = Some(topic.into());
        self
    }
}

/// A broker that holds topics and share groups: what a worker needs of it.
///
/// Implemented by shareworker's `EmbeddedBroker` and by `shareworker_kafka::KafkaBroker`. A
/// worker uses nothing else, so a new backend plugs in here (and in [`BrokerAdmin`] for the
/// operator views) and passes the conformance suite in `tests/`.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Joins `group` as a new member subscribed to `topics`.
    ///
    /// # Errors
    /// When the broker cannot be reached or refuses the member (for example the group is full).
    async fn join(&self, group: &str, topics: &[String]) -> Result<Box<dyn Member>, Error>;

    /// Writes records to `topic` and waits until the broker has them (acks=all on Kafka).
    ///
    /// Returns where each record was written, in order.
    ///
    /// # Errors
    /// When the topic does not exist and cannot be created, or the write fails; then none of the
    /// records may be assumed written.
    async fn produce(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<Produced>, Error>;

    /// Creates `topic` with `partitions` partitions if it does not exist yet.
    ///
    /// # Errors
    /// When the broker refuses to create it.
    async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), Error>;

    /// Share lag of `group` for each topic it has read.
    ///
    /// # Errors
    /// When the broker cannot answer.
    async fn lag(&self, group: &str) -> Result<Vec<TopicLag>, Error>;

    /// The limits the broker applies to `group`.
    ///
    /// # Errors
    /// When the broker cannot answer.
    async fn group_limits(&self, group: &str) -> Result<GroupLimits, Error>;

    /// Changes share-group settings of `group`.
    ///
    /// # Errors
    /// When a value is out of the broker's range or the broker refuses.
    async fn configure_group(&self, group: &str, config: &GroupConfig) -> Result<(), Error>;

    /// How many records were ever written to each of `topics`: the sum of its partitions' end
    /// offsets, as `(topic, records)`. Two readings give the arrival rate the autoscaling hint
    /// uses. Topics that do not exist are left out.
    ///
    /// A broker that cannot tell returns nothing (the default); arrival rates are then 0.
    ///
    /// # Errors
    /// When the broker cannot answer.
    async fn end_offsets(&self, topics: &[String]) -> Result<Vec<(String, u64)>, Error> {
        let _ = topics;
        Ok(Vec::new())
    }

    /// The group's broker-side dead-letter topic, when the broker writes dead letters itself
    /// (Kafka 4.4, KIP-1191: group config `errors.deadletterqueue.topic.name`). Then the runtime
    /// rejects a record after its last attempt and lets the broker write it, instead of
    /// producing its own dead letter: never both. The default answers `None`.
    ///
    /// # Errors
    /// When the broker cannot answer.
    async fn broker_dead_letter(&self, group: &str) -> Result<Option<String>, Error> {
        let _ = group;
        Ok(None)
    }

    /// Gets `topic` ready to receive the broker's dead letters: on Kafka 4.4, creates it when
    /// missing and sets its `errors.deadletterqueue.group.enable=true`, without which the broker
    /// archives a rejected record instead of writing it there. The default does nothing.
    ///
    /// # Errors
    /// When the broker refuses.
    async fn prepare_broker_dead_letter(&self, topic: &str) -> Result<(), Error> {
        let _ = topic;
        Ok(())
    }

    /// Errors the broker answered with (or network failures talking to it) so far, by API
    /// and code, for `shareworker_broker_errors_total`: this client's own, each counted once,
    /// when the broker answered (two clients in one process count apart). The default reports
    /// none.
    fn error_counts(&self) -> Vec<ErrorCount> {
        Vec::new()
    }

    /// A short name for logs and metrics, such as `embedded` or `kafka`.
    fn kind(&self) -> &'static str;

    /// The earliest and latest offset of every partition of `topic`, sorted by partition.
    ///
    /// # Errors
    /// `is_unknown_topic` when the topic does not exist; a broker error otherwise.
    async fn offsets(&self, topic: &str) -> Result<Vec<PartitionOffsets>, Error>;
}

/// The operator views of a broker: describe and list share groups, read and set their
/// configs, read records without a share group. The admin tools (`shareworker::admin`), the
/// HTTP admin routes and the CLI use it; a worker needs only [`Broker`].
///
/// Implemented by shareworker's `EmbeddedBroker` and by `shareworker_kafka::KafkaBroker`.
#[async_trait]
pub trait BrokerAdmin: Broker {
    /// Describes `group` for operators: its state, its members and, for every partition it has
    /// read, the share start offset, the lag and (where the broker knows) the records in flight.
    ///
    /// # Errors
    /// `is_unknown_group` when the broker knows no such group; a broker error otherwise.
    async fn describe_group(&self, group: &str) -> Result<GroupDescription, Error>;

    /// The ids of the share groups the broker knows, sorted.
    ///
    /// # Errors
    /// When the broker cannot answer.
    async fn list_groups(&self) -> Result<Vec<String>, Error>;

    /// The share-group configs of `group` as `(name, value)` with Kafka's names
    /// (`share.delivery.count.limit`, ...), sorted by name.
    ///
    /// # Errors
    /// When the broker cannot answer.
    async fn group_configs(&self, group: &str) -> Result<Vec<(String, String)>, Error>;

    /// Sets share-group configs of `group` by their Kafka names, all or none.
    ///
    /// The names of [`GROUP_CONFIG_KEYS`] at least; [`group_config_from`] reads them into the
    /// [`GroupConfig`] of [`Broker::configure_group`].
    ///
    /// # Errors
    /// `is_config` for a name the broker does not know or a value out of its range, naming the
    /// config; a broker error otherwise.
    async fn set_group_configs(
        &self,
        group: &str,
        configs: &[(String, String)],
    ) -> Result<(), Error>;

    /// Reads up to `max` records of `partition` of `topic` from `offset` on, in offset order,
    /// without a share group: nothing is acquired or consumed. May answer fewer than `max` (or
    /// none at the end of the partition); the caller reads on from the last offset plus one.
    /// The deliveries have delivery count 0 and no lock.
    ///
    /// # Errors
    /// `is_unknown_topic` when the topic does not exist; `is_invalid_input` for a partition it
    /// does not have; a broker error otherwise.
    async fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max: usize,
    ) -> Result<Vec<Delivery>, Error>;
}

/// One member of a share group, as returned by [`Broker::join`].
///
/// A process has one member per group whatever its concurrency: it acquires records while others
/// are in flight and settles each one when its handler is done.
#[async_trait]
pub trait Member: Send + Sync {
    /// Acquires up to `max` records, waiting at most `wait` for the first one.
    ///
    /// Returns an empty list when nothing arrived in time. Never returns more than `max`.
    ///
    /// # Cancel safety
    /// Dropping the future must not lose records: either it acquires nothing, or records it
    /// acquired are released when the member leaves.
    ///
    /// # Errors
    /// When the broker fails; the caller retries after a pause.
    async fn acquire(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, Error>;

    /// Settles many records at once; one result per acknowledgement, in the same order.
    ///
    /// A record whose lock was lost (it expired, or the member no longer owns it) answers with an
    /// error for which [`Error::is_lock_lost`] is true.
    ///
    /// # Errors
    /// When the whole request failed; then no acknowledgement may be assumed applied.
    async fn settle(&self, acks: &[(RecordId, AckKind)]) -> Result<Vec<SettleResult>, Error>;

    /// Leaves the group: records still acquired by this member are released, and later calls
    /// on this member fail with an error for which [`Error::is_closed`] is true.
    ///
    /// # Errors
    /// When the broker cannot be told; the records then come back when their locks expire.
    async fn leave(&self) -> Result<(), Error>;

    /// The member's id within its group.
    fn member_id(&self) -> &str;
}
