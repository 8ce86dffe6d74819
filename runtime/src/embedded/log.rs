//! The embedded broker's topics: one in-memory log per partition, from its log start offset on.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::Error;
use crate::broker::{Delivery, Headers, OutgoingRecord, RecordId};

/// Kafka's error code `MESSAGE_TOO_LARGE` (the Java client's `RecordTooLargeException`).
pub(super) const MESSAGE_TOO_LARGE: i16 = 10;

pub(super) struct Topic {
    pub(super) name: Arc<str>,
    pub(super) partitions: Vec<Log>,
    pub(super) next_partition: usize,
}

/// The records of one partition from its log start offset on.
#[derive(Default)]
pub(super) struct Log {
    /// The log start offset: the offset of `records[0]`.
    pub(super) base: i64,
    pub(super) records: VecDeque<StoredRecord>,
}

impl Log {
    /// The offset the next record gets.
    pub(super) fn end(&self) -> i64 {
        self.base + self.records.len() as i64
    }

    pub(super) fn get(&self, offset: i64) -> Option<&StoredRecord> {
        usize::try_from(offset - self.base)
            .ok()
            .and_then(|i| self.records.get(i))
    }

    pub(super) fn push(&mut self, record: StoredRecord) -> i64 {
        let offset = self.end();
        self.records.push_back(record);
        offset
    }

    /// Drops the records below `offset`; gives memory back once most of the buffer is empty.
    pub(super) fn trim_to(&mut self, offset: i64) {
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
pub(super) struct StoredRecord {
    pub(super) key: Option<Bytes>,
    pub(super) value: Option<Bytes>,
    pub(super) headers: Headers,
    pub(super) timestamp: SystemTime,
}

pub(super) fn to_delivery(
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

pub(super) fn validate_topic_name(name: &str) -> Result<(), Error> {
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
pub(super) fn record_size(r: &OutgoingRecord) -> usize {
    let headers: usize = r
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len()))
        .sum();
    r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len()) + headers
}

pub(super) fn record_too_large(topic: &str, size: usize, max: usize) -> Error {
    Error::invalid_input(format!(
        "topic `{topic}`: a record of {size} bytes is larger than the embedded broker's max_message_bytes ({max} bytes; Kafka's default max.message.bytes is 1 MiB); set `embedded.max_message_bytes` to allow it, or send a reference to the data instead"
    ))
    .with_kafka_code(MESSAGE_TOO_LARGE)
}

pub(super) fn partition_for_key(key: &[u8], partitions: usize) -> usize {
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % partitions as u64) as usize
}
