//! Dead letters: listing them with their error headers, replaying them to their original
//! topic, and discarding them on purpose.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::Payload;
use crate::Error;
use crate::broker::{BrokerAdmin, Delivery, Header, Headers, OutgoingRecord, RecordId};
use crate::dead_letter::headers as dlq;

/// Headers of replays.
pub mod headers {
    /// On a replayed record: the dead letter it was replayed from,
    /// `<dead-letter topic>-<partition>@<offset>`. Kept on the next dead letter if it fails
    /// again.
    pub const REPLAYED: &str = "shareworker.replayed";
    /// On a replay marker in a dead-letter topic: the offset, in the marker's partition, of
    /// the dead letter that was replayed.
    pub const REPLAY_OF: &str = "shareworker.replay.of";
    /// On a replay marker: where the replayed record went, `<topic>-<partition>@<offset>`.
    pub const REPLAY_TO: &str = "shareworker.replay.to";
    /// On a discard marker in a dead-letter topic: the offset, in the marker's partition, of
    /// the dead letter that was discarded on purpose.
    pub const DISCARD_OF: &str = "shareworker.discard.of";
    /// On a discard marker: why, as the operator said (absent when they said nothing).
    pub const DISCARD_REASON: &str = "shareworker.discard.reason";
}

/// Headers of the dead letters Kafka writes itself (KIP-1191, Kafka 4.4).
const BROKER_PREFIX: &str = "__dlq.";
const BROKER_TOPIC: &str = "__dlq.errors.topic";
const BROKER_PARTITION: &str = "__dlq.errors.partition";
const BROKER_OFFSET: &str = "__dlq.errors.offset";
const BROKER_GROUP: &str = "__dlq.errors.group";

/// How many records one read asks for.
const READ_CHUNK: usize = 500;

/// Which dead letters to list or replay; every condition set must hold. Positions are those of
/// the dead letters in the dead-letter topic (what `dlq list` shows first).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct DeadLetterFilter {
    /// Only this partition of the dead-letter topic.
    pub partition: Option<i32>,
    /// Only from this offset on.
    pub from_offset: Option<i64>,
    /// Only up to this offset, inclusive.
    pub to_offset: Option<i64>,
    /// Only dead letters whose error (`shareworker.dlq.error`) contains this text.
    pub error_contains: Option<String>,
    /// Only dead letters of this handler (`shareworker.dlq.handler`).
    pub handler: Option<String>,
    /// At most this many: the first ones in partition, then offset order. For a replay, at
    /// most this many replayed.
    pub limit: Option<usize>,
}

impl DeadLetterFilter {
    /// Whether `r` passes every condition but the limit.
    pub fn matches(&self, r: &DeadLetterRecord) -> bool {
        self.partition.is_none_or(|p| p == r.partition)
            && self.from_offset.is_none_or(|o| r.offset >= o)
            && self.to_offset.is_none_or(|o| r.offset <= o)
            && self
                .error_contains
                .as_deref()
                .is_none_or(|needle| r.error.as_deref().is_some_and(|e| e.contains(needle)))
            && self
                .handler
                .as_deref()
                .is_none_or(|h| r.handler.as_deref() == Some(h))
    }
}

/// One dead letter with what its headers say.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeadLetterRecord {
    /// The dead-letter topic.
    pub topic: String,
    /// Its partition there.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// The dead letter's timestamp, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The key, as the original record had it.
    pub key: Option<Payload>,
    /// The value, as the original record had it.
    pub value: Option<Payload>,
    /// Every header, in order: the original record's and the `shareworker.dlq.*` ones.
    pub headers: Vec<(String, Option<Payload>)>,
    /// The original topic (`shareworker.dlq.topic`, or `__dlq.errors.topic` when Kafka wrote
    /// the dead letter itself, KIP-1191); `None` for a record neither wrote, which cannot be
    /// replayed.
    pub original_topic: Option<String>,
    /// The original partition.
    pub original_partition: Option<i32>,
    /// The original offset.
    pub original_offset: Option<i64>,
    /// The share group that gave up on it.
    pub group: Option<String>,
    /// The handler that failed.
    pub handler: Option<String>,
    /// How many attempts were made.
    pub attempts: Option<u16>,
    /// The last error.
    pub error: Option<String>,
    /// When it was dead-lettered, in milliseconds since the Unix epoch.
    pub dead_lettered_at_ms: Option<i64>,
    /// When the failed record was itself a replay: the dead letter it was replayed from
    /// ([`headers::REPLAYED`]).
    pub replay_of: Option<String>,
    /// When this dead letter was replayed: where to (from its replay marker).
    pub replayed_to: Option<String>,
    /// When this dead letter was discarded on purpose ([`discard`]): the reason given, empty
    /// when none was.
    #[serde(default)]
    pub discarded: Option<String>,
}

impl DeadLetterRecord {
    /// Where the dead letter is, `<topic>-<partition>@<offset>`.
    pub fn id(&self) -> String {
        RecordId::new(self.topic.as_str(), self.partition, self.offset).to_string()
    }

    fn from_delivery(d: Delivery) -> Self {
        let h = &d.headers;
        // Ours, else the ones Kafka 4.4 writes for a group's broker-side dead-letter queue
        // (KIP-1191).
        let broker_key = |k: &str| match k {
            dlq::TOPIC => Some(BROKER_TOPIC),
            dlq::PARTITION => Some(BROKER_PARTITION),
            dlq::OFFSET => Some(BROKER_OFFSET),
            dlq::GROUP => Some(BROKER_GROUP),
            _ => None,
        };
        let text = |k: &str| {
            h.get_str(k)
                .or_else(|| broker_key(k).and_then(|b| h.get_str(b)))
                .map(str::to_owned)
        };
        let num = |k: &str| text(k).and_then(|v| v.trim().parse::<i64>().ok());
        let timestamp_ms = d
            .timestamp
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX));
        Self {
            topic: d.id.topic.to_string(),
            partition: d.id.partition,
            offset: d.id.offset,
            timestamp_ms,
            original_topic: text(dlq::TOPIC),
            original_partition: num(dlq::PARTITION).and_then(|p| i32::try_from(p).ok()),
            original_offset: num(dlq::OFFSET),
            group: text(dlq::GROUP),
            handler: text(dlq::HANDLER),
            attempts: num(dlq::ATTEMPTS).and_then(|a| u16::try_from(a).ok()),
            error: text(dlq::ERROR),
            dead_lettered_at_ms: num(dlq::TIME),
            replay_of: text(headers::REPLAYED),
            replayed_to: None,
            discarded: None,
            headers: d
                .headers
                .iter()
                .map(|h| (h.key.clone(), h.value.clone().map(Payload)))
                .collect(),
            key: d.key.map(Payload),
            value: d.value.map(Payload),
        }
    }

    /// The record to write back to the original topic: key, value and the original headers,
    /// without the `shareworker.dlq.*` ones and any older [`headers::REPLAYED`], plus
    /// [`headers::REPLAYED`] naming this dead letter.
    fn replay_record(&self) -> OutgoingRecord {
        let mut out = Headers::new();
        for (key, value) in &self.headers {
            if key.starts_with("shareworker.dlq.")
                || key.starts_with(BROKER_PREFIX)
                || key == headers::REPLAYED
            {
                continue;
            }
            out.push_header(Header {
                key: key.clone(),
                value: value.as_ref().map(|v| v.0.clone()),
            });
        }
        out.push(headers::REPLAYED, self.id());
        OutgoingRecord {
            key: self.key.as_ref().map(|k| k.0.clone()),
            value: self.value.as_ref().map(|v| v.0.clone()),
            headers: out,
            partition: None,
        }
    }
}

/// The dead letters in `topic` that `filter` lets through, in partition then offset order,
/// each marked with where it was replayed to, if it was.
///
/// Reads the whole topic (replay markers come after their dead letters) without a share group:
/// nothing is consumed.
///
/// ```
/// use shareworker::{broker::{Broker, OutgoingRecord}, EmbeddedBroker};
/// use shareworker::admin::{DeadLetterFilter, dead_letters};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), shareworker::Error> {
/// let broker = EmbeddedBroker::new();
/// broker
///     .produce("emails.dlq", vec![OutgoingRecord::new("{}")
///         .with_header("shareworker.dlq.topic", "emails")
///         .with_header("shareworker.dlq.error", "smtp: 550 no such user")])
///     .await?;
/// let letters = dead_letters(&broker, "emails.dlq", &DeadLetterFilter::default()).await?;
/// assert_eq!(letters[0].original_topic.as_deref(), Some("emails"));
/// assert_eq!(letters[0].error.as_deref(), Some("smtp: 550 no such user"));
/// # Ok(()) }
/// ```
///
/// # Errors
/// `is_unknown_topic` when `topic` does not exist; `is_invalid_input` for a partition it does
/// not have; a broker error otherwise.
pub async fn dead_letters(
    broker: &dyn BrokerAdmin,
    topic: &str,
    filter: &DeadLetterFilter,
) -> Result<Vec<DeadLetterRecord>, Error> {
    let offsets = broker.offsets(topic).await.map_err(|e| {
        if e.is_unknown_topic() {
            let message = format!("dead-letter topic `{topic}` does not exist");
            e.with_message(message)
        } else {
            e
        }
    })?;
    if let Some(p) = filter.partition
        && !offsets.iter().any(|o| o.partition == p)
    {
        return Err(Error::invalid_input(format!(
            "dead-letter topic `{topic}` has {} partitions; partition {p} does not exist",
            offsets.len()
        )));
    }
    let mut out = Vec::new();
    for o in offsets {
        if filter.partition.is_some_and(|p| p != o.partition) {
            continue;
        }
        let mut letters: Vec<DeadLetterRecord> = Vec::new();
        let mut markers: HashMap<i64, String> = HashMap::new();
        let mut discards: HashMap<i64, String> = HashMap::new();
        let mut next = o.earliest.max(filter.from_offset.unwrap_or(0));
        while next < o.latest {
            let chunk = broker.read(topic, o.partition, next, READ_CHUNK).await?;
            let Some(last) = chunk.last() else { break };
            next = last.id.offset + 1;
            for d in chunk {
                if let Some(of) = d.headers.get_str(headers::REPLAY_OF) {
                    if let Ok(of) = of.trim().parse::<i64>() {
                        let to = d.headers.get_str(headers::REPLAY_TO).unwrap_or("?");
                        markers.insert(of, to.to_owned());
                    }
                    continue;
                }
                if let Some(of) = d.headers.get_str(headers::DISCARD_OF) {
                    if let Ok(of) = of.trim().parse::<i64>() {
                        let why = d.headers.get_str(headers::DISCARD_REASON).unwrap_or("");
                        discards.insert(of, why.to_owned());
                    }
                    continue;
                }
                let record = DeadLetterRecord::from_delivery(d);
                if filter.matches(&record) {
                    letters.push(record);
                }
            }
        }
        for mut letter in letters {
            letter.replayed_to = markers.remove(&letter.offset);
            letter.discarded = discards.remove(&letter.offset);
            out.push(letter);
        }
    }
    if let Some(limit) = filter.limit {
        out.truncate(limit);
    }
    Ok(out)
}

/// How [`replay`] goes about it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ReplayOptions {
    /// Say what would be replayed, and write nothing.
    pub dry_run: bool,
    /// Replay dead letters that were replayed before, or that are themselves the dead letters
    /// of a replay, too.
    pub force: bool,
}

impl ReplayOptions {
    /// Writes nothing when `dry_run` is true.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Replays what was replayed before too when `force` is true.
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }
}

/// What [`replay`] did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReplayReport {
    /// The dead-letter topic.
    pub topic: String,
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// The dead letters replayed (or to replay).
    pub replayed: Vec<Replayed>,
    /// The dead letters the filter let through but that were not replayed, with why.
    pub skipped: Vec<Skipped>,
}

/// One replayed dead letter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Replayed {
    /// The dead letter, `<topic>-<partition>@<offset>`.
    pub dead_letter: String,
    /// The topic it went back to.
    pub topic: String,
    /// Where the replayed record was written, `<topic>-<partition>@<offset>` (`None` in a dry
    /// run).
    pub to: Option<String>,
}

/// One dead letter not replayed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Skipped {
    /// The dead letter, `<topic>-<partition>@<offset>`.
    pub dead_letter: String,
    /// Why it was not replayed, and what to do about it.
    pub reason: String,
}

/// Replays the dead letters of `topic` that `filter` lets through to their original topics
/// (from `shareworker.dlq.topic`), with their key, value and original headers plus
/// [`headers::REPLAYED`], and appends a replay marker for each (see the
/// [`admin`](crate::admin#how-already-replayed-is-tracked)). Dead letters replayed before, and
/// dead letters of replayed records, are skipped unless `options.force`.
///
/// ```
/// use shareworker::{broker::{Broker, OutgoingRecord}, EmbeddedBroker};
/// use shareworker::admin::{DeadLetterFilter, ReplayOptions, replay};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), shareworker::Error> {
/// let broker = EmbeddedBroker::new();
/// broker.create_topic("emails", 1).await?;
/// broker
///     .produce("emails.dlq", vec![OutgoingRecord::new("{}")
///         .with_header("shareworker.dlq.topic", "emails")])
///     .await?;
/// let all = DeadLetterFilter::default();
/// let first = replay(&broker, "emails.dlq", &all, ReplayOptions::default()).await?;
/// assert_eq!(first.replayed.len(), 1);
/// let again = replay(&broker, "emails.dlq", &all, ReplayOptions::default()).await?;
/// assert!(again.replayed.is_empty(), "already replayed");
/// # Ok(()) }
/// ```
///
/// # Errors
/// As [`dead_letters`]; a broker error when a write fails (records written before it stay
/// written, and their dead letters marked).
pub async fn replay(
    broker: &dyn BrokerAdmin,
    topic: &str,
    filter: &DeadLetterFilter,
    options: ReplayOptions,
) -> Result<ReplayReport, Error> {
    let mut all = filter.clone();
    all.limit = None;
    let letters = dead_letters(broker, topic, &all).await?;
    let mut report = ReplayReport {
        topic: topic.to_owned(),
        dry_run: options.dry_run,
        ..ReplayReport::default()
    };
    let mut chosen: Vec<DeadLetterRecord> = Vec::new();
    let mut existing: HashMap<String, bool> = HashMap::new();
    for letter in letters {
        let skip = |reason: String| Skipped {
            dead_letter: letter.id(),
            reason,
        };
        let Some(original) = letter.original_topic.clone() else {
            report.skipped.push(skip(format!(
                "it has no `{}` header: shareworker did not write it, so its original topic is unknown",
                dlq::TOPIC
            )));
            continue;
        };
        if !options.force {
            if let Some(to) = &letter.replayed_to {
                report.skipped.push(skip(format!(
                    "already replayed (to {to}); force to replay it again"
                )));
                continue;
            }
            if let Some(why) = &letter.discarded {
                report.skipped.push(skip(format!(
                    "discarded on purpose{}; force to replay it anyway",
                    reason_suffix(why)
                )));
                continue;
            }
            if let Some(of) = &letter.replay_of {
                report.skipped.push(skip(format!(
                    "it is the dead letter of a replay (of {of}) that failed again; force to replay it again"
                )));
                continue;
            }
        }
        if filter.limit.is_some_and(|n| chosen.len() >= n) {
            break;
        }
        let exists = match existing.get(&original) {
            Some(e) => *e,
            None => {
                let e = match broker.offsets(&original).await {
                    Ok(_) => true,
                    Err(e) if e.is_unknown_topic() => false,
                    Err(e) => return Err(e),
                };
                existing.insert(original.clone(), e);
                e
            }
        };
        if !exists {
            report.skipped.push(skip(format!(
                "its original topic `{original}` does not exist; create it first"
            )));
            continue;
        }
        chosen.push(letter);
    }
    if options.dry_run {
        report.replayed = chosen
            .iter()
            .map(|l| Replayed {
                dead_letter: l.id(),
                topic: l.original_topic.clone().unwrap_or_default(),
                to: None,
            })
            .collect();
        return Ok(report);
    }
    // One write per original topic, in dead-letter order, then the markers.
    let mut by_topic: BTreeMap<String, Vec<&DeadLetterRecord>> = BTreeMap::new();
    for l in &chosen {
        if let Some(t) = &l.original_topic {
            by_topic.entry(t.clone()).or_default().push(l);
        }
    }
    for (original, letters) in by_topic {
        let records = letters.iter().map(|l| l.replay_record()).collect();
        let written = broker.produce(&original, records).await?;
        let mut markers: BTreeMap<i32, Vec<OutgoingRecord>> = BTreeMap::new();
        for (l, w) in letters.iter().zip(written) {
            let to = RecordId::new(original.as_str(), w.partition, w.offset).to_string();
            let value = serde_json::json!({ "replay_of": l.id(), "replayed_to": to }).to_string();
            let mut marker = OutgoingRecord::new(Bytes::from(value))
                .with_header(headers::REPLAY_OF, l.offset.to_string())
                .with_header(headers::REPLAY_TO, to.clone());
            marker.partition = Some(l.partition);
            markers.entry(l.partition).or_default().push(marker);
            report.replayed.push(Replayed {
                dead_letter: l.id(),
                topic: original.clone(),
                to: Some(to),
            });
        }
        for (_, m) in markers {
            broker.produce(topic, m).await?;
        }
    }
    let order: HashMap<String, usize> = chosen
        .iter()
        .enumerate()
        .map(|(i, l)| (l.id(), i))
        .collect();
    report
        .replayed
        .sort_by_key(|r| order.get(&r.dead_letter).copied().unwrap_or(usize::MAX));
    Ok(report)
}

fn reason_suffix(why: &str) -> String {
    if why.is_empty() {
        String::new()
    } else {
        format!(" ({why})")
    }
}

/// How [`discard`] goes about it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct DiscardOptions {
    /// Say what would be discarded, and write nothing.
    pub dry_run: bool,
    /// Why, recorded on each discard marker ([`headers::DISCARD_REASON`]).
    pub reason: Option<String>,
}

impl DiscardOptions {
    /// Writes nothing when `dry_run` is true.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Records why.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// What [`discard`] did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DiscardReport {
    /// The dead-letter topic.
    pub topic: String,
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// The dead letters discarded (or to discard), `<topic>-<partition>@<offset>`.
    pub discarded: Vec<String>,
    /// The dead letters the filter let through but that were not discarded, with why.
    pub skipped: Vec<Skipped>,
}

/// Discards the dead letters of `topic` that `filter` lets through, on purpose: a dead-letter
/// topic is a log and keeps them, so each gets a *discard marker* appended to its partition
/// ([`headers::DISCARD_OF`], and [`headers::DISCARD_REASON`] with `options.reason`), recorded
/// the way replays are. A discarded dead letter is listed as such and never replayed, unless a
/// replay is forced. Dead letters already discarded or already replayed are skipped.
///
/// ```
/// use shareworker::{broker::{Broker, OutgoingRecord}, EmbeddedBroker};
/// use shareworker::admin::{DeadLetterFilter, DiscardOptions, ReplayOptions, discard, replay};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), shareworker::Error> {
/// let broker = EmbeddedBroker::new();
/// broker.create_topic("emails", 1).await?;
/// broker
///     .produce("emails.dlq", vec![OutgoingRecord::new("{}")
///         .with_header("shareworker.dlq.topic", "emails")])
///     .await?;
/// let all = DeadLetterFilter::default();
/// let options = DiscardOptions::default().reason("the customer left");
/// assert_eq!(discard(&broker, "emails.dlq", &all, options).await?.discarded, ["emails.dlq-0@0"]);
/// let again = replay(&broker, "emails.dlq", &all, ReplayOptions::default()).await?;
/// assert!(again.replayed.is_empty(), "discarded, so not replayed");
/// # Ok(()) }
/// ```
///
/// # Errors
/// As [`dead_letters`]; a broker error when writing a marker fails (markers written before it
/// stay written).
pub async fn discard(
    broker: &dyn BrokerAdmin,
    topic: &str,
    filter: &DeadLetterFilter,
    options: DiscardOptions,
) -> Result<DiscardReport, Error> {
    let mut all = filter.clone();
    all.limit = None;
    let letters = dead_letters(broker, topic, &all).await?;
    let mut report = DiscardReport {
        topic: topic.to_owned(),
        dry_run: options.dry_run,
        ..DiscardReport::default()
    };
    let mut chosen: Vec<&DeadLetterRecord> = Vec::new();
    for letter in &letters {
        let skip = |reason: String| Skipped {
            dead_letter: letter.id(),
            reason,
        };
        if let Some(why) = &letter.discarded {
            report
                .skipped
                .push(skip(format!("already discarded{}", reason_suffix(why))));
            continue;
        }
        if let Some(to) = &letter.replayed_to {
            report.skipped.push(skip(format!(
                "already replayed (to {to}); nothing to discard"
            )));
            continue;
        }
        if filter.limit.is_some_and(|n| chosen.len() >= n) {
            break;
        }
        chosen.push(letter);
    }
    report.discarded = chosen.iter().map(|l| l.id()).collect();
    if options.dry_run {
        return Ok(report);
    }
    let reason = options.reason.as_deref().unwrap_or("");
    let mut markers: BTreeMap<i32, Vec<OutgoingRecord>> = BTreeMap::new();
    for l in &chosen {
        let value = serde_json::json!({ "discard_of": l.id(), "reason": reason }).to_string();
        let mut marker = OutgoingRecord::new(Bytes::from(value))
            .with_header(headers::DISCARD_OF, l.offset.to_string());
        if !reason.is_empty() {
            marker = marker.with_header(headers::DISCARD_REASON, reason.to_owned());
        }
        marker.partition = Some(l.partition);
        markers.entry(l.partition).or_default().push(marker);
    }
    for (_, m) in markers {
        broker.produce(topic, m).await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddedBroker;
    use crate::broker::Broker;

    #[tokio::test]
    async fn dead_letters_written_by_kafka_itself_are_listed_and_replayed() {
        let broker = EmbeddedBroker::new();
        broker.create_topic("orders", 1).await.expect("topic");
        let letter = OutgoingRecord::new("{}")
            .with_header("trace", "1")
            .with_header(BROKER_TOPIC, "orders")
            .with_header(BROKER_PARTITION, "0")
            .with_header(BROKER_OFFSET, "7")
            .with_header(BROKER_GROUP, "billing");
        broker
            .produce("orders.dlq", vec![letter])
            .await
            .expect("dlq");
        let all = DeadLetterFilter::default();
        let letters = dead_letters(&broker, "orders.dlq", &all)
            .await
            .expect("list");
        let l = &letters[0];
        assert_eq!(
            (
                l.original_topic.as_deref(),
                l.original_partition,
                l.original_offset,
                l.group.as_deref()
            ),
            (Some("orders"), Some(0), Some(7), Some("billing"))
        );
        let report = replay(&broker, "orders.dlq", &all, ReplayOptions::default())
            .await
            .expect("replay");
        assert_eq!(report.replayed.len(), 1, "{report:?}");
        let back = broker.read_topic("orders").expect("orders");
        assert_eq!(back[0].headers.get_str("trace"), Some("1"));
        assert_eq!(
            back[0].headers.get_str(headers::REPLAYED),
            Some("orders.dlq-0@0")
        );
        assert!(
            back[0].headers.iter().all(|h| !h.key.starts_with("__dlq.")),
            "{:?}",
            back[0].headers
        );
    }
}
