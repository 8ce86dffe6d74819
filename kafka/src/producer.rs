//! Writing records: partitioning (Kafka's murmur2 for keys), record batches v2 and Produce
//! requests, one per partition leader, with acks=all.
//!
//! Records with an explicit partition go there; keyed records go to
//! `toPositive(murmur2(key)) % partitions`, exactly like the Java client's default partitioner,
//! so keys land where Java producers put them; the rest are spread round-robin. Each partition
//! gets one record batch per Produce request; a partition's records are split into several
//! batches (sent one after another, in order) only when they exceed [`MAX_BATCH_BYTES`].
//!
//! kafka-protocol keeps a record's headers in a map: of two headers with the same name only the
//! last value is written (at the first one's position).
//!
//! The producer is not idempotent: a retry happens only after an error that says the partition
//! did not take the batch (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE,
//! UNKNOWN_TOPIC_OR_PARTITION); a lost connection or a timeout is returned as an error, and the
//! records may or may not have been written.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_util::future::join_all;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as WireCompression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::cluster::{Cluster, TopicMeta};
use super::conn::Versions;
use crate::{Error, KafkaError as _};
use shareworker_core::retry::Backoff;
use shareworker_core::{OutgoingRecord, Produced};

/// Produce versions this client speaks: the flexible ones that still name topics (v13 uses ids).
pub(crate) const PRODUCE: Versions = Versions { min: 9, max: 12 };
/// acks=all: the leader answers once every in-sync replica has the batch.
const ACKS_ALL: i16 = -1;
/// How long the leader may wait for the in-sync replicas.
const PRODUCE_TIMEOUT_MS: i32 = 30_000;
/// Attempts per batch when the partition's leader moved or is not known yet.
const MAX_ATTEMPTS: u32 = 5;
/// First pause before a retry; doubled each time up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause before a retry.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// A partition's records are cut into batches of about this many bytes (before compression), under
/// the broker's default `max.message.bytes` (1 MiB). A single larger record goes alone.
pub(crate) const MAX_BATCH_BYTES: usize = 900 * 1024;

/// Kafka error codes the producer treats specially.
mod code {
    pub(super) const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub(super) const LEADER_NOT_AVAILABLE: i16 = 5;
    pub(super) const NOT_LEADER_OR_FOLLOWER: i16 = 6;
}

/// Whether a produce error code means the batch was not written and may be sent again after a
/// metadata refresh.
fn retriable(code: i16) -> bool {
    matches!(
        code,
        code::UNKNOWN_TOPIC_OR_PARTITION
            | code::LEADER_NOT_AVAILABLE
            | code::NOT_LEADER_OR_FOLLOWER
    )
}

/// How record batches are compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Compression {
    /// Not compressed.
    None,
    /// gzip.
    Gzip,
    /// Snappy (xerial framing, as the Java client writes it).
    Snappy,
    /// LZ4 (the default).
    #[default]
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// Every variant, for tests and messages.
    pub(crate) const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The name Kafka uses (`compression.type`).
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    fn wire(self) -> WireCompression {
        match self {
            Compression::None => WireCompression::None,
            Compression::Gzip => WireCompression::Gzip,
            Compression::Snappy => WireCompression::Snappy,
            Compression::Lz4 => WireCompression::Lz4,
            Compression::Zstd => WireCompression::Zstd,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compression {
    type Err = Error;

    /// Parses Kafka's names: `none`, `gzip`, `snappy`, `lz4`, `zstd`.
    fn from_str(s: &str) -> Result<Self, Error> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                Error::config(format!(
                    "`compression`: `{s}` is not one of none, gzip, snappy, lz4, zstd"
                ))
            })
    }
}

/// Kafka's murmur2 hash (32-bit MurmurHash2, seed `0x9747b28c`), as the Java client computes it
/// for keys (`Utils.murmur2`).
pub(crate) fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // The length is mixed in as a Java int: truncation of keys over 4 GiB matches Java's wrap.
    let mut h = SEED ^ (data.len() as u32);
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate().rev() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client's default partitioner picks for `key`:
/// `toPositive(murmur2(key)) % partitions`.
pub(crate) fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Picks a partition for each record: the explicit one, the key's, or the next in turn (starting
/// at `round_robin`). Fails on an explicit partition outside `0..partitions`.
fn assign_partitions(
    topic: &str,
    records: &[OutgoingRecord],
    partitions: i32,
    mut round_robin: u32,
) -> Result<Vec<i32>, Error> {
    if partitions <= 0 {
        return Err(Error::broker(format!(
            "metadata shows no partitions for topic `{topic}`"
        )));
    }
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let p = match (r.partition, &r.key) {
            (Some(p), _) if (0..partitions).contains(&p) => p,
            (Some(p), _) => {
                return Err(Error::invalid_input(format!(
                    "partition {p} does not exist: topic `{topic}` has partitions 0 to {}",
                    partitions - 1
                )));
            }
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => {
                let p = (round_robin % partitions as u32) as i32;
                round_robin = round_robin.wrapping_add(1);
                p
            }
        };
        out.push(p);
    }
    Ok(out)
}

/// Roughly what a record takes in a batch before compression.
fn estimated_size(r: &OutgoingRecord) -> usize {
    let headers: usize = r
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.as_ref().map_or(0, Bytes::len) + 10)
        .sum();
    r.key.as_ref().map_or(0, Bytes::len) + r.value.as_ref().map_or(0, Bytes::len) + headers + 24
}

/// Cuts each partition's records (indices into the input) into chunks of at most
/// [`MAX_BATCH_BYTES`]; round `k` holds the `k`-th chunk of every partition that has one.
fn plan_rounds(records: &[OutgoingRecord], partitions: &[i32]) -> Vec<Vec<(i32, Vec<usize>)>> {
    let mut by_partition: BTreeMap<i32, Vec<Vec<usize>>> = BTreeMap::new();
    let mut sizes: BTreeMap<i32, usize> = BTreeMap::new();
    for (i, (r, p)) in records.iter().zip(partitions).enumerate() {
        let size = estimated_size(r);
        let chunks = by_partition.entry(*p).or_default();
        let used = sizes.entry(*p).or_default();
        match chunks.last_mut() {
            Some(chunk) if *used + size <= MAX_BATCH_BYTES => chunk.push(i),
            _ => {
                chunks.push(vec![i]);
                *used = 0;
            }
        }
        *used += size;
    }
    let mut rounds: Vec<Vec<(i32, Vec<usize>)>> = Vec::new();
    for (p, chunks) in by_partition {
        for (k, chunk) in chunks.into_iter().enumerate() {
            if rounds.len() <= k {
                rounds.push(Vec::new());
            }
            rounds[k].push((p, chunk));
        }
    }
    rounds
}

/// Encodes `records` as one record batch v2 (no producer id, no sequence, create time `now_ms`).
fn encode_batch(
    records: &[&OutgoingRecord],
    compression: Compression,
    now_ms: i64,
) -> Result<Bytes, Error> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut headers = kafka_protocol::indexmap::IndexMap::default();
            for h in &r.headers {
                headers.insert(StrBytes::from_string(h.key.clone()), h.value.clone());
            }
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // kafka-protocol keeps records in one batch while `offset - sequence` is constant,
                // and writes `sequence of the first - its offset` as the base sequence: this gives
                // one batch with base sequence -1 (none), as a non-idempotent producer writes.
                sequence: (i as i32).wrapping_sub(1),
                timestamp: now_ms,
                key: r.key.clone(),
                value: r.value.clone(),
                headers,
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: compression.wire(),
        },
    )
    .map_err(|e| Error::codec(format!("cannot encode a {compression} record batch: {e}")))?;
    Ok(buf.freeze())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The retry schedule of the Kafka producer, admin and reader paths.
const RETRY: Backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);

/// The pause before retry `attempt` (from 1), without jitter: 100 ms, doubling, at most 1 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    RETRY.base(attempt)
}

/// The pause to sleep before retry `attempt` (from 1): [`backoff`] less up to 20 % at random.
pub(crate) fn pause(attempt: u32) -> Duration {
    RETRY.jitter(backoff(attempt))
}

/// One partition's batch within a round.
struct Batch {
    partition: i32,
    /// Indices of its records in the caller's list, in batch order.
    indices: Vec<usize>,
    bytes: Bytes,
}

/// What one partition of a Produce answer said.
enum Outcome {
    Written(i64),
    Retry(Error),
}

/// Writes records to Kafka topics.
pub(crate) struct Producer {
    cluster: Arc<Cluster>,
    compression: Compression,
    /// Where the next call starts spreading unkeyed records.
    round_robin: AtomicU32,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// A producer that compresses batches with `compression`.
    pub(crate) fn new(cluster: Arc<Cluster>, compression: Compression) -> Self {
        Self {
            cluster,
            compression,
            round_robin: AtomicU32::new(fastrand::u32(..)),
        }
    }

    /// Writes `records` to `topic` with acks=all and returns where each went, in input order.
    ///
    /// # Errors
    /// `is_unknown_topic` when the topic does not exist; `is_invalid_input` for an explicit
    /// partition the topic does not have (nothing is sent then); a broker error otherwise. After
    /// an error some of the records may have been written.
    pub(crate) async fn produce(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<Produced>, Error> {
        if topic.is_empty() {
            return Err(Error::invalid_input("the topic name is empty"));
        }
        let mut meta = self.cluster.topic(topic).await?;
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let partition_count = |m: &TopicMeta| i32::try_from(m.partitions.len()).unwrap_or(i32::MAX);
        let explicit_max = records.iter().filter_map(|r| r.partition).max();
        if explicit_max.is_some_and(|p| p >= partition_count(&meta)) {
            // Partitions may have been added since metadata was cached.
            self.cluster.refresh(&[topic]).await?;
            meta = self
                .cluster
                .cached_topic(topic)
                .ok_or_else(|| Error::unknown_topic(topic))?;
        }
        let unkeyed = records
            .iter()
            .filter(|r| r.partition.is_none() && r.key.is_none())
            .count();
        let start = self.round_robin.fetch_add(
            u32::try_from(unkeyed).unwrap_or(u32::MAX),
            Ordering::Relaxed,
        );
        let partitions = assign_partitions(topic, &records, partition_count(&meta), start)?;

        let now = now_ms();
        let mut out = vec![None; records.len()];
        for round in plan_rounds(&records, &partitions) {
            let mut batches = Vec::with_capacity(round.len());
            for (partition, indices) in round {
                let rs: Vec<&OutgoingRecord> = indices.iter().map(|&i| &records[i]).collect();
                let bytes = encode_batch(&rs, self.compression, now)?;
                batches.push(Batch {
                    partition,
                    indices,
                    bytes,
                });
            }
            let written = self.send_round(topic, &batches).await?;
            for (batch, base) in batches.iter().zip(written) {
                for (k, &i) in batch.indices.iter().enumerate() {
                    out[i] = Some(Produced {
                        partition: batch.partition,
                        offset: base.saturating_add(k as i64),
                    });
                }
            }
        }
        out.into_iter()
            .map(|p| p.ok_or_else(|| Error::broker("a produced record got no offset")))
            .collect()
    }

    /// Sends one batch per partition, retrying the ones whose leader moved; returns each batch's
    /// base offset, in `batches` order.
    async fn send_round(&self, topic: &str, batches: &[Batch]) -> Result<Vec<i64>, Error> {
        let mut base: Vec<Option<i64>> = vec![None; batches.len()];
        let mut attempt = 0;
        loop {
            attempt += 1;
            let meta = match self.cluster.cached_topic(topic) {
                Some(m) => m,
                None => self.cluster.topic(topic).await?,
            };
            let mut by_leader: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
            let mut last_error = None;
            for (b, batch) in batches.iter().enumerate() {
                if base[b].is_some() {
                    continue;
                }
                match meta.partitions.iter().find(|p| p.index == batch.partition) {
                    Some(p) if p.leader >= 0 => by_leader.entry(p.leader).or_default().push(b),
                    Some(_) => {
                        last_error = Some(Error::kafka(
                            &format!("Produce to `{topic}` partition {}", batch.partition),
                            code::LEADER_NOT_AVAILABLE,
                            None,
                        ));
                    }
                    None => {
                        last_error = Some(Error::kafka(
                            &format!("Produce to `{topic}` partition {}", batch.partition),
                            code::UNKNOWN_TOPIC_OR_PARTITION,
                            None,
                        ));
                    }
                }
            }
            let calls = by_leader
                .into_iter()
                .map(|(leader, bs)| self.send_to(leader, topic, batches, bs));
            for result in join_all(calls).await {
                for (b, outcome) in result? {
                    match outcome {
                        Outcome::Written(offset) => base[b] = Some(offset),
                        Outcome::Retry(e) => last_error = Some(e),
                    }
                }
            }
            if base.iter().all(Option::is_some) {
                return Ok(base.into_iter().flatten().collect());
            }
            if attempt >= MAX_ATTEMPTS {
                return Err(last_error.unwrap_or_else(|| {
                    Error::broker(format!("producing to `{topic}` did not finish"))
                }));
            }
            tokio::time::sleep(pause(attempt)).await;
            self.cluster.refresh(&[topic]).await?;
            if self.cluster.cached_topic(topic).is_none() {
                return Err(Error::unknown_topic(topic));
            }
        }
    }

    /// Sends the batches `which` to broker `leader` in one Produce request.
    async fn send_to(
        &self,
        leader: i32,
        topic: &str,
        batches: &[Batch],
        which: Vec<usize>,
    ) -> Result<Vec<(usize, Outcome)>, Error> {
        let conn = match self.cluster.node(leader).await {
            Ok(c) => c,
            // Nothing was sent: the leader may have gone; retry after a refresh.
            Err(e) => {
                let why = format!("cannot reach broker {leader}, the leader: {e}");
                return Ok(which
                    .into_iter()
                    .map(|b| (b, Outcome::Retry(Error::broker(why.clone()))))
                    .collect());
            }
        };
        let partition_data = which
            .iter()
            .map(|&b| {
                PartitionProduceData::default()
                    .with_index(batches[b].partition)
                    .with_records(Some(batches[b].bytes.clone()))
            })
            .collect();
        let req = ProduceRequest::default()
            .with_acks(ACKS_ALL)
            .with_timeout_ms(PRODUCE_TIMEOUT_MS)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partition_data(partition_data),
            ]);
        let (resp, _): (ProduceResponse, _) = conn.call(&req, PRODUCE).await?;
        for n in &resp.node_endpoints {
            self.cluster
                .learn_node(n.node_id.0, n.host.as_str(), n.port);
        }
        let mut out = Vec::with_capacity(which.len());
        for b in which {
            let partition = batches[b].partition;
            let answer = resp
                .responses
                .iter()
                .filter(|t| t.name.0.as_str() == topic)
                .flat_map(|t| t.partition_responses.iter())
                .find(|p| p.index == partition);
            let Some(p) = answer else {
                return Err(Error::broker(format!(
                    "Produce to `{topic}`: broker {leader} did not answer for partition {partition}"
                )));
            };
            let api = format!("Produce to `{topic}` partition {partition}");
            if p.error_code == 0 {
                out.push((b, Outcome::Written(p.base_offset)));
            } else if retriable(p.error_code) {
                if p.current_leader.leader_id.0 >= 0 {
                    self.cluster.set_leader(
                        topic,
                        partition,
                        p.current_leader.leader_id.0,
                        p.current_leader.leader_epoch,
                    );
                }
                let msg = p.error_message.as_ref().map(|m| m.as_str());
                out.push((
                    b,
                    Outcome::Retry(conn.errors().error(&api, p.error_code, msg)),
                ));
            } else {
                let mut msg = p
                    .error_message
                    .as_ref()
                    .map(|m| m.as_str().to_owned())
                    .unwrap_or_default();
                for e in &p.record_errors {
                    let detail = e
                        .batch_index_error_message
                        .as_ref()
                        .map_or("", |m| m.as_str());
                    msg.push_str(&format!(" (record {}: {detail})", e.batch_index));
                }
                return Err(conn.errors().error(&api, p.error_code, Some(msg.trim())));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
