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
use crate::Error;
use crate::broker::retry::Backoff;
use crate::broker::{OutgoingRecord, Produced};

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
                out.push((b, Outcome::Retry(Error::kafka(&api, p.error_code, msg))));
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
                return Err(Error::kafka(&api, p.error_code, Some(msg.trim())));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use kafka_protocol::messages::FetchRequest;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::records::RecordBatchDecoder;

    use super::*;
    use crate::broker::Header;
    use crate::kafka::admin::{Admin, test_cluster, unique_name};

    /// The Java client's `UtilsTest.testMurmur2` cases.
    #[test]
    fn murmur2_matches_the_java_client() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, hash) in cases {
            assert_eq!(murmur2(key), hash, "{}", String::from_utf8_lossy(key));
        }
        // toPositive masks the sign bit; it is not abs().
        assert_eq!(
            partition_for_key(b"foobar", 3),
            1_357_151_166 % 3 // 2^31 - 790_332_482
        );
        assert_eq!(partition_for_key(b"21", 1), 0);
    }

    fn rec(key: Option<&str>, partition: Option<i32>) -> OutgoingRecord {
        OutgoingRecord {
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::from_static(b"v")),
            partition,
            ..OutgoingRecord::default()
        }
    }

    #[test]
    fn partitioning_without_a_broker() {
        let records = [
            rec(None, Some(2)),
            rec(Some("foobar"), None),
            rec(None, None),
            rec(Some("foobar"), Some(0)),
            rec(None, None),
            rec(None, None),
            rec(Some("abc"), None),
        ];
        let got = assign_partitions("t", &records, 3, 7).expect("valid");
        assert_eq!(
            got,
            [
                2,
                partition_for_key(b"foobar", 3),
                7 % 3,
                0, // an explicit partition beats the key
                8 % 3,
                9 % 3,
                partition_for_key(b"abc", 3),
            ]
        );
        // Round-robin wraps at u32::MAX without panicking.
        let unkeyed = [rec(None, None), rec(None, None)];
        assert_eq!(
            assign_partitions("t", &unkeyed, 3, u32::MAX).expect("valid"),
            [(u32::MAX % 3) as i32, 0]
        );
        for bad in [-1, 3, 100] {
            let err = assign_partitions("t", &[rec(None, Some(bad))], 3, 0).expect_err("bad");
            assert!(err.is_invalid_input(), "{err}");
            assert!(
                err.to_string().contains(&format!("partition {bad}")),
                "{err}"
            );
            assert!(err.to_string().contains("0 to 2"), "{err}");
        }
        assert!(assign_partitions("t", &records, 0, 0).is_err());
    }

    #[test]
    fn big_partitions_are_cut_into_ordered_batches() {
        let big = |p| OutgoingRecord {
            value: Some(Bytes::from(vec![0u8; 400 * 1024])),
            partition: Some(p),
            ..OutgoingRecord::default()
        };
        let records = [big(0), big(0), rec(None, Some(1)), big(0), big(0), big(0)];
        let partitions = [0, 0, 1, 0, 0, 0];
        let rounds = plan_rounds(&records, &partitions);
        assert_eq!(
            rounds,
            vec![
                vec![(0, vec![0, 1]), (1, vec![2])],
                vec![(0, vec![3, 4])],
                vec![(0, vec![5])],
            ]
        );
        // Small calls: one round, one batch per partition.
        let small = [rec(None, Some(0)), rec(None, Some(1)), rec(None, Some(0))];
        assert_eq!(
            plan_rounds(&small, &[0, 1, 0]),
            vec![vec![(0, vec![0, 2]), (1, vec![1])]]
        );
    }

    #[test]
    fn compression_names() {
        for c in Compression::ALL {
            assert_eq!(c.name().parse::<Compression>().ok(), Some(c));
        }
        assert_eq!(" LZ4 ".parse::<Compression>().ok(), Some(Compression::Lz4));
        assert_eq!(Compression::default(), Compression::Lz4);
        let err = "brotli".parse::<Compression>().expect_err("unknown");
        assert!(
            err.is_config() && err.to_string().contains("brotli"),
            "{err}"
        );
    }

    #[test]
    fn one_batch_without_producer_id_or_sequence() {
        let mut dup = OutgoingRecord::new("x").with_key("k");
        dup.headers.push("h", "first");
        dup.headers.push_header(Header {
            key: "none".into(),
            value: None,
        });
        dup.headers.push("h", "last");
        let tombstone = OutgoingRecord {
            key: Some(Bytes::from_static(b"gone")),
            ..OutgoingRecord::default()
        };
        let plain = OutgoingRecord::new("y");
        for compression in Compression::ALL {
            let bytes = encode_batch(&[&dup, &tombstone, &plain], compression, 1_700_000_000_000)
                .expect("encodes");
            let mut buf = bytes.clone();
            let info = RecordBatchDecoder::decode_batch_info(&mut buf).expect("batch info");
            assert_eq!(info.len(), 1, "{compression}: one batch");
            assert_eq!(info[0].record_count, 3);
            assert_eq!(info[0].base_sequence, -1);
            assert_eq!(info[0].producer_id, -1);
            assert_eq!(info[0].compression, compression.wire());
            let mut buf = bytes;
            let set = RecordBatchDecoder::decode(&mut buf).expect("decodes");
            let r = &set.records;
            assert_eq!(r.iter().map(|r| r.offset).collect::<Vec<_>>(), [0, 1, 2]);
            assert_eq!(r[0].timestamp, 1_700_000_000_000);
            // Duplicate names collapse: the last value, at the first one's position.
            let headers: Vec<_> = r[0]
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                .collect();
            assert_eq!(
                headers,
                [
                    ("h".to_owned(), Some(Bytes::from_static(b"last"))),
                    ("none".to_owned(), None)
                ]
            );
            assert_eq!(r[1].value, None);
            assert_eq!(r[1].key.as_deref(), Some(&b"gone"[..]));
            assert_eq!(r[2].key, None);
        }
    }

    #[test]
    fn backoff_grows_to_a_second() {
        let pauses: Vec<u64> = (1..=6).map(|a| backoff(a).as_millis() as u64).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    /// Reads the records of `topic`/`partition` from `offset` with Fetch (v13+, by topic id).
    async fn fetch(cluster: &Cluster, topic: &str, partition: i32, offset: i64) -> Vec<Record> {
        let meta = cluster.topic(topic).await.expect("topic");
        let leader = meta
            .partitions
            .iter()
            .find(|p| p.index == partition)
            .expect("partition")
            .leader;
        let conn = cluster.node(leader).await.expect("leader");
        let req = FetchRequest::default()
            .with_max_wait_ms(100)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic_id(meta.id)
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ]);
        let (resp, _) = conn
            .call(&req, Versions { min: 13, max: 16 })
            .await
            .expect("fetch");
        assert_eq!(resp.error_code, 0);
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        let mut bytes = p.records.clone().unwrap_or_default();
        RecordBatchDecoder::decode_all(&mut bytes)
            .expect("decodes")
            .into_iter()
            .flat_map(|s| s.records)
            .collect()
    }

    #[tokio::test]
    async fn produce_keys_headers_and_offsets_on_the_real_broker() {
        let Some(cluster) = test_cluster().await else {
            return;
        };
        let admin = Admin::new(cluster.clone());
        let topic = unique_name("produce");
        admin.create_topic(&topic, 3).await.expect("create");
        let producer = Producer::new(cluster.clone(), Compression::default());

        let before = admin.list_offsets(&topic).await.expect("offsets");
        assert_eq!(before, [(0, 0, 0), (1, 0, 0), (2, 0, 0)]);

        let mut records = Vec::new();
        for i in 0..30 {
            let mut r =
                OutgoingRecord::new(format!("value-{i}")).with_key(format!("key-{}", i % 7));
            r.headers.push("i", i.to_string());
            r.headers.push_header(Header {
                key: "empty".into(),
                value: None,
            });
            records.push(r);
        }
        records.push(OutgoingRecord::new("unkeyed-a"));
        records.push(OutgoingRecord::new("unkeyed-b"));
        records.push(OutgoingRecord {
            partition: Some(2),
            key: Some(Bytes::from_static(b"tomb")),
            ..OutgoingRecord::default()
        });
        let written = producer
            .produce(&topic, records.clone())
            .await
            .expect("produce");
        assert_eq!(written.len(), records.len());

        // Keys land where the Java client puts them; explicit partitions are honoured.
        for (r, w) in records.iter().zip(&written).take(30) {
            let key = r.key.as_ref().expect("keyed");
            assert_eq!(w.partition, partition_for_key(key, 3));
        }
        assert_ne!(written[30].partition, written[31].partition, "round-robin");
        assert_eq!(written[32].partition, 2);

        // Offsets: 0, 1, 2... per partition in input order, and the log end moved exactly.
        let mut next: HashMap<i32, i64> = HashMap::new();
        for w in &written {
            let n = next.entry(w.partition).or_default();
            assert_eq!(w.offset, *n, "{w:?}");
            *n += 1;
        }
        let after = admin.list_offsets(&topic).await.expect("offsets");
        for (p, earliest, latest) in &after {
            assert_eq!(*earliest, 0);
            assert_eq!(*latest, next.get(p).copied().unwrap_or(0), "partition {p}");
        }

        // What the broker stored: key, value, headers, tombstone.
        for (i, (r, w)) in records.iter().zip(&written).enumerate() {
            let got = fetch(&cluster, &topic, w.partition, w.offset).await;
            let first = got.iter().find(|g| g.offset == w.offset).expect("stored");
            assert_eq!(first.key, r.key, "record {i}");
            assert_eq!(first.value, r.value, "record {i}");
            let headers: Vec<_> = first
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                .collect();
            let want: Vec<_> = r
                .headers
                .iter()
                .map(|h| (h.key.clone(), h.value.clone()))
                .collect();
            assert_eq!(headers, want, "record {i}");
        }

        // A second call appends after the first.
        let more = producer
            .produce(&topic, vec![OutgoingRecord::new("x").with_key("key-0")])
            .await
            .expect("produce");
        assert_eq!(more[0].partition, written[0].partition);
        assert_eq!(more[0].offset, next[&written[0].partition]);
    }

    #[tokio::test]
    async fn every_compression_is_accepted_by_the_real_broker() {
        let Some(cluster) = test_cluster().await else {
            return;
        };
        let topic = unique_name("compression");
        Admin::new(cluster.clone())
            .create_topic(&topic, 1)
            .await
            .expect("create");
        let mut offset = 0;
        for compression in Compression::ALL {
            let producer = Producer::new(cluster.clone(), compression);
            let records: Vec<_> = (0..50)
                .map(|i| {
                    OutgoingRecord::new(format!("{compression} record {i} {}", "x".repeat(100)))
                })
                .collect();
            let written = producer.produce(&topic, records).await.expect("produce");
            assert_eq!(
                written.first().map(|w| w.offset),
                Some(offset),
                "{compression}"
            );
            assert_eq!(
                written.last().map(|w| w.offset),
                Some(offset + 49),
                "{compression}"
            );
            let got = fetch(&cluster, &topic, 0, offset).await;
            assert_eq!(
                got.iter()
                    .find(|r| r.offset == offset + 49)
                    .and_then(|r| r.value.clone()),
                Some(Bytes::from(format!(
                    "{compression} record 49 {}",
                    "x".repeat(100)
                )))
            );
            offset += 50;
        }
    }

    #[tokio::test]
    async fn large_calls_are_split_in_order_on_the_real_broker() {
        let Some(cluster) = test_cluster().await else {
            return;
        };
        let topic = unique_name("large");
        let admin = Admin::new(cluster.clone());
        admin.create_topic(&topic, 1).await.expect("create");
        // 3 MiB for one partition: above the broker's 1 MiB max.message.bytes as one batch.
        let records: Vec<_> = (0..12)
            .map(|i| OutgoingRecord::new(vec![i as u8; 256 * 1024]))
            .collect();
        let producer = Producer::new(cluster.clone(), Compression::None);
        let written = producer.produce(&topic, records).await.expect("produce");
        let offsets: Vec<i64> = written.iter().map(|w| w.offset).collect();
        assert_eq!(offsets, (0..12).collect::<Vec<_>>());
        assert_eq!(
            admin.list_offsets(&topic).await.expect("offsets"),
            [(0, 0, 12)]
        );
    }

    #[tokio::test]
    async fn bad_produce_input_on_the_real_broker() {
        let Some(cluster) = test_cluster().await else {
            return;
        };
        let admin = Admin::new(cluster.clone());
        let producer = Producer::new(cluster.clone(), Compression::default());

        let missing = unique_name("missing");
        let err = producer
            .produce(&missing, vec![OutgoingRecord::new("x")])
            .await
            .expect_err("no such topic");
        assert!(err.is_unknown_topic(), "{err:?}");

        let err = producer
            .produce("", vec![OutgoingRecord::new("x")])
            .await
            .expect_err("empty name");
        assert!(err.is_invalid_input(), "{err:?}");

        let topic = unique_name("bad-partition");
        admin.create_topic(&topic, 2).await.expect("create");
        let records = vec![
            OutgoingRecord::new("fine"),
            OutgoingRecord {
                partition: Some(2),
                ..OutgoingRecord::new("no such partition")
            },
        ];
        let err = producer
            .produce(&topic, records)
            .await
            .expect_err("partition 2");
        assert!(err.is_invalid_input(), "{err:?}");
        assert!(err.to_string().contains("partition 2"), "{err}");
        // Nothing was sent, not even the valid record.
        assert_eq!(
            admin.list_offsets(&topic).await.expect("offsets"),
            [(0, 0, 0), (1, 0, 0)]
        );
        assert_eq!(
            producer.produce(&topic, Vec::new()).await.expect("empty"),
            []
        );
    }
}
