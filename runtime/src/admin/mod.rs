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
//! | `POST /admin/dlq/discard` ([`DiscardRequest`]) | `[`[`DiscardReport`]`]` | yes, unless a dry run |
//! | `GET /admin/groups/G/config` | [`GroupConfigs`] | no |
//! | `POST /admin/groups/G/config` ([`GroupConfigs`]) | [`GroupConfigs`] (after) | yes |
//!
//! The routes that change things answer only with `http.admin = true` and a request carrying
//! `Authorization: Bearer <token>`, the token of `http.admin_token` (see
//! [`HttpConfig`](crate::config::HttpConfig)); without a configured token they stay off. With
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
//! with the [`headers::REPLAY_OF`] or [`headers::DISCARD_OF`] header.
//!
//! # Discarding dead letters
//! [`discard`] drops dead letters on purpose the same way: a *discard marker* per dead letter
//! ([`headers::DISCARD_OF`], and the operator's reason in [`headers::DISCARD_REASON`]), so the
//! dead letter is listed as discarded and a replay skips it unless forced. [`DiscardRequest`]
//! is its JSON, as [`ReplayRequest`] is the replay's.
//!
//! Dead letters that Kafka 4.4 writes itself for a group with a broker-side dead-letter queue
//! (KIP-1191) are understood too: their `__dlq.errors.topic`, `.partition`, `.offset` and
//! `.group` headers stand in for ours, and a replay drops them like ours.

mod dlq;
mod payload;
mod status;

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use crate::broker::{
    ASSIGNMENT_INTERVAL_MS, AUTO_OFFSET_RESET, DELIVERY_COUNT_LIMIT, GROUP_CONFIG_KEYS,
    LOCK_DURATION_MS, MAX_RECORD_LOCKS,
};
pub use dlq::{
    DeadLetterFilter, DeadLetterRecord, DiscardOptions, DiscardReport, ReplayOptions, ReplayReport,
    Replayed, Skipped, dead_letters, discard, headers, replay,
};
pub use payload::Payload;
pub use status::{GroupStatus, HandlerStatus, StatusReport, broker_status, group_status};

use crate::Error;
use crate::broker::{Broker, BrokerAdmin, OutgoingRecord, RecordId};

/// A job to enqueue: `POST /admin/enqueue`, and what `shareworker enqueue` sends.
///
/// The payload is JSON text kept as it was given ([`RawValue`]): the bytes written are the
/// bytes given, never parsed into numbers and written again (a 23-digit id stays 23 digits, keys
/// keep their order). Only the whitespace around the value is not part of it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EnqueueRequest {
    /// The topic.
    pub topic: String,
    /// The payload: one JSON value, written byte for byte.
    pub payload: Box<RawValue>,
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

impl PartialEq for EnqueueRequest {
    fn eq(&self, other: &Self) -> bool {
        self.topic == other.topic
            && self.payload.get() == other.payload.get()
            && self.key == other.key
            && self.headers == other.headers
            && self.partition == other.partition
    }
}

impl EnqueueRequest {
    /// A job with this payload for `topic`.
    pub fn new(topic: impl Into<String>, payload: Box<RawValue>) -> Self {
        Self {
            topic: topic.into(),
            payload,
            key: None,
            headers: Vec::new(),
            partition: None,
        }
    }

    /// A job for `topic` whose payload is the JSON text `json`, checked to be one JSON value
    /// and kept byte for byte (without the whitespace around it).
    ///
    /// ```
    /// use shareworker::admin::EnqueueRequest;
    ///
    /// let job = EnqueueRequest::json("orders", r#"{"order_id":12345678901234567890123, "b":1, "a":2}"#)?;
    /// assert_eq!(job.payload.get(), r#"{"order_id":12345678901234567890123, "b":1, "a":2}"#);
    /// assert!(EnqueueRequest::json("orders", "{\"to\": ").is_err_and(|e| e.is_invalid_input()));
    /// # Ok::<(), shareworker::Error>(())
    /// ```
    ///
    /// # Errors
    /// `is_invalid_input` when `json` is not one JSON value, with where it goes wrong.
    pub fn json(topic: impl Into<String>, json: impl Into<String>) -> Result<Self, Error> {
        let payload = RawValue::from_string(json.into())
            .map_err(|e| Error::invalid_input(format!("the payload is not valid JSON ({e})")))?;
        Ok(Self::new(topic, payload))
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

    fn record(&self) -> OutgoingRecord {
        let mut record = OutgoingRecord::new(Bytes::copy_from_slice(self.payload.get().as_bytes()));
        record.key = self.key.clone().map(Into::into);
        record.partition = self.partition;
        for (k, v) in &self.headers {
            record.headers.push(k.clone(), v.clone());
        }
        record
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

/// Enqueues one job on an existing topic, its payload byte for byte.
///
/// Unlike [`Queue`](crate::Queue), it never creates the topic: a misspelt name is an error.
///
/// ```
/// use shareworker::{broker::Broker, EmbeddedBroker};
/// use shareworker::admin::{EnqueueRequest, enqueue};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), shareworker::Error> {
/// let broker = EmbeddedBroker::new();
/// broker.create_topic("emails", 1).await?;
/// let job = EnqueueRequest::json("emails", r#"{"to": "ada@example.com"}"#)?;
/// assert_eq!(enqueue(&broker, &job).await?.offset, 0);
/// let typo = EnqueueRequest::json("emials", "{}")?;
/// assert!(enqueue(&broker, &typo).await.is_err_and(|e| e.is_unknown_topic()));
/// # Ok(()) }
/// ```
///
/// # Errors
/// `is_unknown_topic` when the topic does not exist; `is_invalid_input` for an empty topic
/// name or a partition it does not have; a broker error otherwise.
pub async fn enqueue(broker: &dyn Broker, job: &EnqueueRequest) -> Result<Enqueued, Error> {
    let written = enqueue_all(broker, std::slice::from_ref(job)).await?;
    written
        .into_iter()
        .next()
        .ok_or_else(|| Error::broker("the broker did not say where the record went"))
}

/// How many records one write of [`enqueue_all`] carries at most.
const ENQUEUE_CHUNK: usize = 500;

/// Enqueues jobs in bulk, in order, each payload byte for byte: every topic is checked first
/// (it must exist, and have the partition a job names), then the jobs are written in batches of
/// up to 500 records per topic.
///
/// ```
/// use shareworker::{broker::Broker, EmbeddedBroker};
/// use shareworker::admin::{EnqueueRequest, enqueue_all};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), shareworker::Error> {
/// let broker = EmbeddedBroker::new();
/// broker.create_topic("emails", 1).await?;
/// let jobs = ["{\"to\":\"ada\"}", "{\"to\":\"bob\"}"]
///     .into_iter()
///     .map(|j| EnqueueRequest::json("emails", j))
///     .collect::<Result<Vec<_>, _>>()?;
/// let written = enqueue_all(&broker, &jobs).await?;
/// assert_eq!(written.iter().map(|w| w.offset).collect::<Vec<_>>(), [0, 1]);
/// # Ok(()) }
/// ```
///
/// # Errors
/// As [`enqueue`], before anything is written. When a write fails midway, the jobs before it
/// stay written and the error says how many they are.
pub async fn enqueue_all(
    broker: &dyn Broker,
    jobs: &[EnqueueRequest],
) -> Result<Vec<Enqueued>, Error> {
    let mut partitions: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for job in jobs {
        if job.topic.is_empty() {
            return Err(Error::invalid_input("the topic name is empty"));
        }
        if !partitions.contains_key(job.topic.as_str()) {
            let offsets = broker.offsets(&job.topic).await?;
            partitions.insert(&job.topic, offsets.iter().map(|o| o.partition).collect());
        }
        if let (Some(p), Some(known)) = (job.partition, partitions.get(job.topic.as_str()))
            && !known.contains(&p)
        {
            return Err(Error::invalid_input(format!(
                "topic `{}` has {} partitions; partition {p} does not exist",
                job.topic,
                known.len()
            )));
        }
    }
    let mut out = Vec::with_capacity(jobs.len());
    let mut rest = jobs;
    while let Some(first) = rest.first() {
        let n = rest
            .iter()
            .take(ENQUEUE_CHUNK)
            .take_while(|j| j.topic == first.topic)
            .count();
        let (chunk, after) = rest.split_at(n);
        let records = chunk.iter().map(EnqueueRequest::record).collect();
        let done = out.len();
        let written = broker.produce(&first.topic, records).await.map_err(|e| {
            if done == 0 {
                e
            } else {
                let message = format!("{e} (after {done} of {} jobs were written)", jobs.len());
                e.with_message(message)
            }
        })?;
        if written.len() != chunk.len() {
            return Err(Error::broker(format!(
                "the broker said where {} of {} records went",
                written.len(),
                chunk.len()
            )));
        }
        out.extend(written.into_iter().map(|w| Enqueued {
            topic: first.topic.clone(),
            partition: w.partition,
            offset: w.offset,
        }));
        rest = after;
    }
    Ok(out)
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

/// What a dead-letter discard route takes (`POST /admin/dlq/discard`), like [`ReplayRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DiscardRequest {
    /// The dead-letter topic; `None`: every dead-letter topic of the worker's handlers.
    #[serde(default)]
    pub topic: Option<String>,
    /// Which dead letters.
    #[serde(default)]
    pub filter: DeadLetterFilter,
    /// Dry run and reason.
    #[serde(default)]
    pub options: DiscardOptions,
}

impl DiscardRequest {
    /// A discard in `topic` (or, `None`, in every dead-letter topic of the worker).
    pub fn new(topic: Option<String>, filter: DeadLetterFilter, options: DiscardOptions) -> Self {
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
pub async fn group_configs(broker: &dyn BrokerAdmin, group: &str) -> Result<GroupConfigs, Error> {
    if group.is_empty() {
        return Err(Error::invalid_input("the group id is empty"));
    }
    Ok(GroupConfigs::new(group, broker.group_configs(group).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddedBroker;

    #[tokio::test]
    async fn an_enqueued_payload_is_written_byte_for_byte() {
        let broker = EmbeddedBroker::new();
        broker.create_topic("orders", 1).await.expect("topic");
        let payload = r#"{"order_id":12345678901234567890123, "z": 1.50, "a": "\u00e9"}"#;
        // As the HTTP route gets it.
        let body = format!(r#"{{"topic": "orders", "payload": {payload}}}"#);
        let job: EnqueueRequest = serde_json::from_slice(body.as_bytes()).expect("request");
        assert_eq!(job.payload.get(), payload);
        // And as the CLI sends it to that route.
        let sent = serde_json::to_string(&job).expect("to JSON");
        assert!(sent.contains(payload), "{sent}");
        enqueue(&broker, &job).await.expect("enqueue");
        let cli = EnqueueRequest::json("orders", format!("  {payload}\n")).expect("json");
        enqueue(&broker, &cli).await.expect("enqueue");
        let written = broker.read_topic("orders").expect("read");
        for w in &written {
            assert_eq!(w.value.as_deref(), Some(payload.as_bytes()));
        }
        let err = EnqueueRequest::json("orders", r#"{"a": 1} {"b": 2}"#).expect_err("two values");
        assert!(err.is_invalid_input(), "{err}");
        assert!(err.to_string().contains("not valid JSON"), "{err}");
    }

    #[tokio::test]
    async fn enqueue_all_checks_every_topic_before_writing_and_keeps_the_order() {
        let broker = EmbeddedBroker::new();
        broker.create_topic("a", 2).await.expect("topic");
        broker.create_topic("b", 1).await.expect("topic");
        let job = |t: &str, n: usize| {
            EnqueueRequest::json(t, format!("{{\"n\":{n}}}"))
                .expect("json")
                .partition(0)
        };
        let mut jobs: Vec<EnqueueRequest> = (0..1200).map(|n| job("a", n)).collect();
        jobs.push(job("b", 1200));
        jobs.push(job("nope", 1201));
        let err = enqueue_all(&broker, &jobs)
            .await
            .expect_err("unknown topic");
        assert!(err.is_unknown_topic(), "{err}");
        assert!(
            broker.read_topic("a").expect("a").is_empty(),
            "nothing written"
        );
        jobs.pop();
        let written = enqueue_all(&broker, &jobs).await.expect("enqueue");
        assert_eq!(written.len(), 1201);
        assert_eq!(written[1199].offset, 1199);
        assert_eq!(
            (written[1200].topic.as_str(), written[1200].offset),
            ("b", 0)
        );
        let a = broker.read_topic("a").expect("a");
        assert_eq!(a[700].value.as_deref(), Some(&br#"{"n":700}"#[..]));
        let bad = vec![job("a", 0).partition(5)];
        let err = enqueue_all(&broker, &bad).await.expect_err("partition 5");
        assert!(err.is_invalid_input(), "{err}");
    }

    #[tokio::test]
    async fn discarded_dead_letters_are_listed_as_such_and_not_replayed_unless_forced() {
        let broker = EmbeddedBroker::new();
        broker.create_topic("emails", 1).await.expect("topic");
        let letter = |n: i32| {
            OutgoingRecord::new(format!("{{\"n\":{n}}}"))
                .with_header("shareworker.dlq.topic", "emails")
                .with_header("shareworker.dlq.error", format!("error {n}"))
        };
        broker
            .produce("emails.dlq", vec![letter(0), letter(1), letter(2)])
            .await
            .expect("dlq");
        let one = DeadLetterFilter {
            error_contains: Some("error 1".into()),
            ..DeadLetterFilter::default()
        };
        let dry = discard(
            &broker,
            "emails.dlq",
            &one,
            DiscardOptions::default().dry_run(true),
        )
        .await
        .expect("dry run");
        assert_eq!(dry.discarded, ["emails.dlq-0@1"]);
        assert_eq!(
            broker.read_topic("emails.dlq").expect("dlq").len(),
            3,
            "nothing written"
        );
        let options = DiscardOptions::default().reason("the customer left");
        let done = discard(&broker, "emails.dlq", &one, options.clone())
            .await
            .expect("discard");
        assert_eq!(done.discarded, ["emails.dlq-0@1"]);
        let marker = &broker.read_topic("emails.dlq").expect("dlq")[3];
        assert_eq!(marker.headers.get_str(headers::DISCARD_OF), Some("1"));
        assert_eq!(
            marker.headers.get_str(headers::DISCARD_REASON),
            Some("the customer left")
        );
        let all = DeadLetterFilter::default();
        let listed = dead_letters(&broker, "emails.dlq", &all)
            .await
            .expect("list");
        assert_eq!(listed.len(), 3, "markers are not dead letters: {listed:?}");
        assert_eq!(listed[1].discarded.as_deref(), Some("the customer left"));
        assert_eq!(listed[0].discarded, None);
        let again = discard(&broker, "emails.dlq", &one, options)
            .await
            .expect("again");
        assert!(again.discarded.is_empty());
        assert_eq!(
            again.skipped[0].reason,
            "already discarded (the customer left)"
        );

        let replayed = replay(&broker, "emails.dlq", &all, ReplayOptions::default())
            .await
            .expect("replay");
        let ids: Vec<&str> = replayed
            .replayed
            .iter()
            .map(|r| r.dead_letter.as_str())
            .collect();
        assert_eq!(ids, ["emails.dlq-0@0", "emails.dlq-0@2"]);
        assert!(
            replayed.skipped[0]
                .reason
                .starts_with("discarded on purpose (the customer left)"),
            "{replayed:?}"
        );
        let forced = replay(
            &broker,
            "emails.dlq",
            &one,
            ReplayOptions::default().force(true),
        )
        .await
        .expect("forced");
        assert_eq!(forced.replayed.len(), 1, "{forced:?}");
        // A replayed dead letter has nothing left to discard.
        let rest = discard(&broker, "emails.dlq", &all, DiscardOptions::default())
            .await
            .expect("discard the rest");
        assert!(rest.discarded.is_empty(), "{rest:?}");
        assert_eq!(rest.skipped.len(), 3, "{rest:?}");
    }
}
