//! The embedded broker's topics: one in-memory log per partition, from its log start offset on.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};

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

/// A record as a partition's log keeps it: 48 bytes, since a log may hold millions (each byte
/// less is memory that need not be touched, and faulted in, as the log grows). The key and
/// headers, which most job records lack, sit behind a pointer; the timestamp is kept in
/// milliseconds, Kafka's precision.
#[derive(Clone)]
pub(super) struct StoredRecord {
    value: Option<Bytes>,
    extra: Option<Box<Extra>>,
    timestamp_ms: i64,
}

#[derive(Clone)]
struct Extra {
    key: Option<Bytes>,
    headers: Headers,
}

impl StoredRecord {
    pub(super) fn new(
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: Headers,
        timestamp_ms: i64,
    ) -> Self {
        let extra =
            (key.is_some() || !headers.is_empty()).then(|| Box::new(Extra { key, headers }));
        Self {
            value,
            extra,
            timestamp_ms,
        }
    }
}

/// `t` in milliseconds since the Unix epoch, as a record's timestamp is kept (0 before it).
pub(super) fn millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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
        key: r.extra.as_ref().and_then(|e| e.key.clone()),
        value: r.value.clone(),
        headers: r
            .extra
            .as_ref()
            .map(|e| e.headers.clone())
            .unwrap_or_default(),
        timestamp: SystemTime::UNIX_EPOCH
            + Duration::from_millis(u64::try_from(r.timestamp_ms).unwrap_or(0)),
        delivery_count: count,
        lock_duration: lock,
    }
}

/// Keys and values up to this size are packed (see [`Packer`]); larger ones are stored as
/// they came, since copying them costs more than the allocation packing saves.
const PACK_MAX: usize = 1024;
/// The most bytes one shared buffer holds: while one of its records lives (in the log, or as
/// a running job's payload), its whole buffer does.
const CHUNK_MAX: usize = 64 * 1024;

/// Copies the small keys and values that one `produce` call stores in one partition into
/// shared buffers. A record's stored bytes are then a slice of a buffer whose clones (one per
/// delivery, one per job) only count references: a `Bytes` made from a `Vec`, as a message's
/// payload usually is, allocates on its first clone. It also makes one allocation per buffer
/// instead of one per record for the log to hold and to free when it trims. The records of one
/// buffer are neighbours in one partition, so it is freed once the log is trimmed past them
/// and their jobs are done.
pub(super) struct Packer {
    chunk: BytesMut,
    /// The bytes still to be packed by this call in this partition: the next buffer's size.
    left: usize,
}

impl Packer {
    /// A packer for `records` small keys and values of `bytes` bytes in all, or `None` when
    /// packing would not save anything (fewer than two).
    pub(super) fn new(records: usize, bytes: usize) -> Option<Self> {
        (records >= 2).then(|| Self {
            chunk: BytesMut::new(),
            left: bytes,
        })
    }

    /// Whether `b` is packed (when its partition has a packer).
    pub(super) fn packs(b: &Bytes) -> bool {
        !b.is_empty() && b.len() <= PACK_MAX
    }

    /// `b`'s bytes in a shared buffer when it is small, else `b` itself.
    pub(super) fn pack(&mut self, b: Bytes) -> Bytes {
        if !Self::packs(&b) {
            return b;
        }
        if self.chunk.capacity() < b.len() {
            self.chunk = BytesMut::with_capacity(self.left.clamp(b.len(), CHUNK_MAX));
        }
        self.left = self.left.saturating_sub(b.len());
        self.chunk.extend_from_slice(&b);
        self.chunk.split().freeze()
    }
}

/// Where the records of one `produce` call go, and a packer per partition (`None` where
/// packing saves nothing).
pub(super) struct Placement {
    /// The partition of each record, in order.
    pub(super) to: Vec<usize>,
    pub(super) packers: Vec<Option<Packer>>,
    /// The topic's round-robin position once the call's keyless records are placed.
    pub(super) next_partition: usize,
}

/// Places the records of one `produce` call in `t`'s partitions: by the partition given, else
/// by key, else round-robin. Every record is checked first, so that a call with a bad record
/// stores none of them.
pub(super) fn place(
    t: &Topic,
    records: &[OutgoingRecord],
    max_message_bytes: usize,
) -> Result<Placement, Error> {
    let n = t.partitions.len();
    let mut next_partition = t.next_partition;
    let mut to = Vec::with_capacity(records.len());
    let mut small = vec![(0usize, 0usize); n];
    for r in records {
        let size = record_size(r);
        if size > max_message_bytes {
            return Err(record_too_large(&t.name, size, max_message_bytes));
        }
        let p = match (r.partition, &r.key) {
            (Some(p), _) => usize::try_from(p).ok().filter(|&p| p < n).ok_or_else(|| {
                Error::invalid_input(format!(
                    "topic `{}` has {n} partitions; partition {p} does not exist",
                    t.name
                ))
            })?,
            (None, Some(key)) => partition_for_key(key, n),
            (None, None) => {
                next_partition = (next_partition + 1) % n;
                next_partition
            }
        };
        to.push(p);
        for b in [&r.key, &r.value].into_iter().flatten() {
            if Packer::packs(b) {
                small[p].0 += 1;
                small[p].1 += b.len();
            }
        }
    }
    Ok(Placement {
        to,
        packers: small
            .into_iter()
            .map(|(records, bytes)| Packer::new(records, bytes))
            .collect(),
        next_partition,
    })
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
