//! Operator tools on any [`Broker`]: the status of share groups, enqueueing, dead letters and
//! their replay, and share-group configs.
//!
//! The `shareworker` CLI calls these directly on Kafka; a running worker serves them over its
//! HTTP endpoint (`GET /status` and the `/admin/...` routes), which is how the CLI reaches a
//! worker's embedded broker. The types here are also the JSON of those routes.
//!
//! | route | answers | needs `http.admin` and the admin token |
//! |---|---|---|
//! | `GET /status[?group=G]` | [`StatusReport`] of the worker's groups | no |
//! | `POST /admin/enqueue` ([`EnqueueRequest`]) | [`Enqueued`] | yes |
//! | `GET /admin/dlq?topic=T&partition=&from=&to=&error=&handler=&limit=` | `[`[`DeadLetterRecord`]`]` | no |
//! | `POST /admin/dlq/replay` ([`ReplayRequest`]) | `[`[`ReplayReport`]`]` | yes, unless a dry run |
//! | `GET /admin/groups/G/config` | [`GroupConfigs`] | no |
//! | `POST /admin/groups/G/config` ([`GroupConfigs`]) | [`GroupConfigs`] (after) | yes |
//!
//! The routes that change things answer only with `http.admin = true` and a request carrying
//! `Authorization: Bearer <token>`, the token of `http.admin_token` (see
//! [`HttpConfig`](crate::HttpConfig)); without a configured token they stay off. With
//! `http.admin_protect_reads = true` the others need the token too.
//!
//! Errors answer `{"error": "..."}` with 400 (bad input), 401 (no or a wrong admin token),
//! 403 (admin routes off), 404 (unknown group or topic), 408 (a body that did not arrive in
//! time), 413 (a body too large) or 502 (the broker failed).
//!
//! # How "already replayed" is tracked
//! The dead-letter topic itself keeps the record: each replay appends a small *replay marker*
//! to the dead letter's own partition, with the headers [`headers::REPLAY_OF`] (the dead
//! letter's offset) and [`headers::REPLAY_TO`] (where the replayed record went), and a JSON
//! value saying the same. Markers are not dead letters: listing skips them and instead shows
//! the dead letter as replayed. A later replay skips a dead letter that has a marker, unless
//! forced. Nothing else is needed: no group, no state outside the broker, the same on every
//! broker, and the markers live as long as the dead letters they speak of (they come after
//! them in the log).
//!
//! The replayed record itself carries [`headers::REPLAYED`] naming the dead letter it came
//! from (`<dead-letter topic>-<partition>@<offset>`). When it fails again, the worker's
//! dead-letter writer keeps every header of the record, so the new dead letter carries it too:
//! a replay skips such a dead letter as well unless forced, so a job is never replayed twice
//! by accident.
//!
//! The replayed record goes out before its marker: a replay interrupted between the two may
//! replay that dead letter again next time (at least once, like everything else here). Two
//! replays of one topic at the same moment may both replay a dead letter; run one at a time.
//! A handler that reads a dead-letter topic gets the markers as records too: skip records
//! with the [`headers::REPLAY_OF`] header.
//!
//! Dead letters that Kafka 4.4 writes itself for a group with a broker-side dead-letter queue
//! (KIP-1191) are understood too: their `__dlq.errors.topic`, `.partition`, `.offset` and
//! `.group` headers stand in for ours, and a replay drops them like ours.

mod dlq;
mod payload;
mod status;

use serde::{Deserialize, Serialize};

pub use crate::broker::{
    AUTO_OFFSET_RESET, DELIVERY_COUNT_LIMIT, GROUP_CONFIG_KEYS, LOCK_DURATION_MS, MAX_RECORD_LOCKS,
};
pub use dlq::{
    DeadLetterFilter, DeadLetterRecord, ReplayOptions, ReplayReport, Replayed, Skipped,
    dead_letters, headers, replay,
};
pub use payload::Payload;
pub use status::{GroupStatus, HandlerStatus, StatusReport, broker_status, group_status};

use crate::Error;
use crate::broker::{Broker, OutgoingRecord, RecordId};

/// A job to enqueue: `POST /admin/enqueue`, and what `shareworker enqueue` sends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EnqueueRequest {
    /// The topic.
    pub topic: String,
    /// The payload, written as JSON.
    pub payload: serde_json::Value,
    /// The key, if any.
    #[serde(default)]
    pub key: Option<String>,
    /// Headers, in order.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// A fixed partition instead of one chosen from the key.
    #[serde(default)]
    pub partition: Option<i32>,
}

impl EnqueueRequest {
    /// A job with this payload for `topic`.
    pub fn new(topic: impl Into<String>, payload: serde_json::Value) -> Self {
        Self {
            topic: topic.into(),
            payload,
            ..Self::default()
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }

    /// Sets the partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
}

/// Where an enqueued job was written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Enqueued {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
}

/// Enqueues one job on an existing topic.
///
/// Unlike [`Queue`](crate::Queue), it never creates the topic: a misspelt name is an error.
///
/// ```
/// use shareworker::{Broker, EmbeddedBroker};
/// use shareworker::admin::{EnqueueRequest, enqueue};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), shareworker::Error> {
/// let broker = EmbeddedBroker::new();
/// broker.create_topic("emails", 1).await?;
/// let job = EnqueueRequest::new("emails", serde_json::json!({"to": "ada@example.com"}));
/// assert_eq!(enqueue(&broker, &job).await?.offset, 0);
/// let typo = EnqueueRequest::new("emials", serde_json::json!({}));
/// assert!(enqueue(&broker, &typo).await.is_err_and(|e| e.is_unknown_topic()));
/// # Ok(()) }
/// ```
///
/// # Errors
/// `is_unknown_topic` when the topic does not exist; `is_invalid_input` for an empty topic
/// name or a partition it does not have; a broker error otherwise.
pub async fn enqueue(broker: &dyn Broker, job: &EnqueueRequest) -> Result<Enqueued, Error> {
    if job.topic.is_empty() {
        return Err(Error::invalid_input("the topic name is empty"));
    }
    let partitions = broker.offsets(&job.topic).await?;
    if let Some(p) = job.partition
        && !partitions.iter().any(|o| o.partition == p)
    {
        return Err(Error::invalid_input(format!(
            "topic `{}` has {} partitions; partition {p} does not exist",
            job.topic,
            partitions.len()
        )));
    }
    let value = serde_json::to_vec(&job.payload)
        .map_err(|e| Error::codec("the payload cannot be written as JSON").with_source(e))?;
    let mut record = OutgoingRecord::new(value);
    record.key = job.key.clone().map(Into::into);
    record.partition = job.partition;
    for (k, v) in &job.headers {
        record.headers.push(k.clone(), v.clone());
    }
    let written = broker.produce(&job.topic, vec![record]).await?;
    let w = written
        .first()
        .ok_or_else(|| Error::broker("the broker did not say where the record went"))?;
    Ok(Enqueued {
        topic: job.topic.clone(),
        partition: w.partition,
        offset: w.offset,
    })
}

impl std::fmt::Display for Enqueued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        RecordId::new(self.topic.as_str(), self.partition, self.offset).fmt(f)
    }
}

/// What `POST /admin/dlq/replay` takes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReplayRequest {
    /// The dead-letter topic; `None`: every dead-letter topic of the worker's handlers.
    #[serde(default)]
    pub topic: Option<String>,
    /// Which dead letters.
    #[serde(default)]
    pub filter: DeadLetterFilter,
    /// Dry run and force.
    #[serde(default)]
    pub options: ReplayOptions,
}

impl ReplayRequest {
    /// A replay of `topic` (or, `None`, of every dead-letter topic of the worker).
    pub fn new(topic: Option<String>, filter: DeadLetterFilter, options: ReplayOptions) -> Self {
        Self {
            topic,
            filter,
            options,
        }
    }
}

/// A share group's configs by their Kafka names: what `GET /admin/groups/G/config` answers
/// and what `POST` to it sets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GroupConfigs {
    /// The group.
    #[serde(default)]
    pub group: String,
    /// `(name, value)`, sorted by name.
    pub configs: Vec<(String, String)>,
}

impl GroupConfigs {
    /// The configs of `group`.
    pub fn new(group: impl Into<String>, configs: Vec<(String, String)>) -> Self {
        Self {
            group: group.into(),
            configs,
        }
    }
}

/// The share-group configs of `group`, sorted by name.
///
/// # Errors
/// A broker error.
pub async fn group_configs(broker: &dyn Broker, group: &str) -> Result<GroupConfigs, Error> {
    if group.is_empty() {
        return Err(Error::invalid_input("the group id is empty"));
    }
    Ok(GroupConfigs::new(group, broker.group_configs(group).await?))
}
