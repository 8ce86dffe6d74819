//! Structures shared by ShareFetch and ShareAcknowledge: acknowledgement batches (requests),
//! `CurrentLeader` and `NodeEndpoints` (responses).

use bytes::Buf;
use kafka_protocol::protocol::StrBytes;

use super::codec::{Reader, Sink, TopicId, WireError};

/// How a range of delivered records is settled (`AcknowledgeTypes` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i8)]
pub(crate) enum AcknowledgeType {
    /// The offset holds no data record (control record, compacted away). Wire only.
    Gap = 0,
    /// Processed: the record is done.
    Accept = 1,
    /// Give the record back for redelivery (counts a delivery attempt).
    Release = 2,
    /// Unprocessable: archive the record, never redeliver it.
    Reject = 3,
    /// Keep the record acquired and restart its lock timer. Version 2 only, and only in a
    /// request with `IsRenewAck` set.
    Renew = 4,
}

impl AcknowledgeType {
    /// The type for a wire value; unknown values are an error.
    pub(crate) fn from_wire(value: i8) -> Result<Self, WireError> {
        Ok(match value {
            0 => Self::Gap,
            1 => Self::Accept,
            2 => Self::Release,
            3 => Self::Reject,
            4 => Self::Renew,
            _ => {
                return Err(WireError::invalid(
                    "AcknowledgeTypes",
                    "unknown acknowledge type",
                ));
            }
        })
    }
}

/// `AcknowledgementBatch`: one inclusive offset range and its acknowledge type(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AcknowledgementBatch {
    /// `FirstOffset`.
    pub(crate) first_offset: i64,
    /// `LastOffset`, inclusive.
    pub(crate) last_offset: i64,
    /// `AcknowledgeTypes`: one type for the whole range, or exactly one per offset.
    pub(crate) acknowledge_types: Vec<AcknowledgeType>,
}

/// `AcknowledgePartition` (ShareAcknowledge) or `FetchPartition` (ShareFetch v1+): the same
/// layout. In ShareFetch a partition listed with no batches is only fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AcknowledgePartition {
    /// `PartitionIndex`.
    pub(crate) partition_index: i32,
    /// `AcknowledgementBatches`.
    pub(crate) acknowledgement_batches: Vec<AcknowledgementBatch>,
}

/// `AcknowledgeTopic` (ShareAcknowledge) or `FetchTopic` (ShareFetch): the same layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AcknowledgeTopic {
    /// `TopicId`.
    pub(crate) topic_id: TopicId,
    /// `Partitions`.
    pub(crate) partitions: Vec<AcknowledgePartition>,
}

/// Checks the acknowledge types against the version and the request's `IsRenewAck`.
fn check_acknowledge_types(
    topics: &[AcknowledgeTopic],
    version: i16,
    is_renew_ack: bool,
) -> Result<(), WireError> {
    let renew = topics
        .iter()
        .flat_map(|topic| &topic.partitions)
        .flat_map(|partition| &partition.acknowledgement_batches)
        .any(|batch| batch.acknowledge_types.contains(&AcknowledgeType::Renew));
    if renew && version < 2 {
        return Err(WireError::invalid(
            "AcknowledgeTypes",
            "RENEW needs version 2",
        ));
    }
    if renew && !is_renew_ack {
        return Err(WireError::invalid(
            "AcknowledgeTypes",
            "RENEW needs IsRenewAck",
        ));
    }
    Ok(())
}

/// Writes `Topics` of ShareFetch or ShareAcknowledge, after checking the acknowledge types.
pub(crate) fn write_topics<S: Sink>(
    out: &mut S,
    topics: &[AcknowledgeTopic],
    version: i16,
    is_renew_ack: bool,
) -> Result<(), WireError> {
    check_acknowledge_types(topics, version, is_renew_ack)?;
    out.compact_array_len("Topics", topics.len())?;
    for topic in topics {
        out.uuid(&topic.topic_id);
        out.compact_array_len("Partitions", topic.partitions.len())?;
        for partition in &topic.partitions {
            out.int32(partition.partition_index);
            out.compact_array_len(
                "AcknowledgementBatches",
                partition.acknowledgement_batches.len(),
            )?;
            for batch in &partition.acknowledgement_batches {
                out.int64(batch.first_offset);
                out.int64(batch.last_offset);
                out.compact_array_len("AcknowledgeTypes", batch.acknowledge_types.len())?;
                for kind in &batch.acknowledge_types {
                    out.int8(*kind as i8);
                }
                out.no_tagged_fields();
            }
            out.no_tagged_fields();
        }
        out.no_tagged_fields();
    }
    Ok(())
}

/// Reads `Topics` of ShareFetch or ShareAcknowledge.
pub(crate) fn read_topics<B: Buf>(
    r: &mut Reader<'_, B>,
) -> Result<Vec<AcknowledgeTopic>, WireError> {
    r.compact_array("Topics", |r| {
        let topic_id = r.uuid("TopicId")?;
        let partitions = r.compact_array("Partitions", |r| {
            let partition_index = r.int32("PartitionIndex")?;
            let acknowledgement_batches = r.compact_array("AcknowledgementBatches", |r| {
                let first_offset = r.int64("FirstOffset")?;
                let last_offset = r.int64("LastOffset")?;
                let acknowledge_types = r.compact_array("AcknowledgeTypes", |r| {
                    AcknowledgeType::from_wire(r.int8("AcknowledgeTypes")?)
                })?;
                r.tagged_fields("AcknowledgementBatch")?;
                Ok(AcknowledgementBatch {
                    first_offset,
                    last_offset,
                    acknowledge_types,
                })
            })?;
            r.tagged_fields("AcknowledgePartition")?;
            Ok(AcknowledgePartition {
                partition_index,
                acknowledgement_batches,
            })
        })?;
        r.tagged_fields("AcknowledgeTopic")?;
        Ok(AcknowledgeTopic {
            topic_id,
            partitions,
        })
    })
}

/// `LeaderIdAndEpoch` (`CurrentLeader`): where the partition's leadership moved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeaderIdAndEpoch {
    /// `LeaderId`, -1 when unknown.
    pub(crate) leader_id: i32,
    /// `LeaderEpoch`.
    pub(crate) leader_epoch: i32,
}

impl LeaderIdAndEpoch {
    pub(crate) fn read<B: Buf>(r: &mut Reader<'_, B>) -> Result<Self, WireError> {
        let leader_id = r.int32("LeaderId")?;
        let leader_epoch = r.int32("LeaderEpoch")?;
        r.tagged_fields("CurrentLeader")?;
        Ok(Self {
            leader_id,
            leader_epoch,
        })
    }

    pub(crate) fn write<S: Sink>(&self, out: &mut S) {
        out.int32(self.leader_id);
        out.int32(self.leader_epoch);
        out.no_tagged_fields();
    }
}

/// `NodeEndpoint`: a broker named as the new leader of a partition that failed with
/// NOT_LEADER_OR_FOLLOWER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeEndpoint {
    /// `NodeId`.
    pub(crate) node_id: i32,
    /// `Host`.
    pub(crate) host: StrBytes,
    /// `Port`.
    pub(crate) port: i32,
    /// `Rack`, nullable.
    pub(crate) rack: Option<StrBytes>,
}

impl NodeEndpoint {
    pub(crate) fn read<B: Buf>(r: &mut Reader<'_, B>) -> Result<Self, WireError> {
        let node_id = r.int32("NodeId")?;
        let host = r.compact_string("Host")?;
        let port = r.int32("Port")?;
        let rack = r.compact_nullable_string("Rack")?;
        r.tagged_fields("NodeEndpoint")?;
        Ok(Self {
            node_id,
            host,
            port,
            rack,
        })
    }

    pub(crate) fn write<S: Sink>(&self, out: &mut S) -> Result<(), WireError> {
        out.int32(self.node_id);
        out.compact_string("Host", &self.host)?;
        out.int32(self.port);
        out.compact_nullable_string("Rack", self.rack.as_deref())?;
        out.no_tagged_fields();
        Ok(())
    }
}

/// Test helpers shared by the message tests.
#[cfg(test)]
pub(crate) mod testing {
    use bytes::Bytes;

    use super::super::codec::{BufSink, Reader, WireError};

    /// Encodes with `write` into a fresh buffer.
    pub(crate) fn encode_with(
        write: impl FnOnce(&mut BufSink<'_, Vec<u8>>) -> Result<(), WireError>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let result = write(&mut BufSink(&mut out));
        assert!(result.is_ok(), "encode failed: {result:?}");
        out
    }

    /// Decodes all of `bytes` with `read`, failing if anything is left over.
    pub(crate) fn decode_all<T>(
        bytes: &[u8],
        read: impl Fn(&mut Reader<'_, Bytes>) -> Result<T, WireError>,
    ) -> Result<T, WireError> {
        let mut buf = Bytes::copy_from_slice(bytes);
        let value = read(&mut Reader::new(&mut buf))?;
        assert!(buf.is_empty(), "{} bytes left over", buf.len());
        Ok(value)
    }

    /// Every strict prefix of a valid message must fail to decode (never panic).
    pub(crate) fn assert_every_truncation_fails<T: std::fmt::Debug>(
        bytes: &[u8],
        read: impl Fn(&mut Reader<'_, Bytes>) -> Result<T, WireError>,
    ) {
        for len in 0..bytes.len() {
            let mut buf = Bytes::copy_from_slice(&bytes[..len]);
            let result = read(&mut Reader::new(&mut buf));
            assert!(result.is_err(), "prefix of {len} bytes decoded: {result:?}");
        }
    }

    /// Random corruption of a valid message never panics; the result may be Ok or Err.
    pub(crate) fn assert_corruption_never_panics<T>(
        bytes: &[u8],
        read: impl Fn(&mut Reader<'_, Bytes>) -> Result<T, WireError>,
    ) {
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        for _ in 0..2_000 {
            let mut corrupted = bytes.to_vec();
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(..corrupted.len());
                corrupted[at] = rng.u8(..);
            }
            let mut buf = Bytes::from(corrupted);
            let _ = read(&mut Reader::new(&mut buf));
        }
        for _ in 0..500 {
            let mut buf = Bytes::from(
                (0..rng.usize(..64))
                    .map(|_| rng.u8(..))
                    .collect::<Vec<u8>>(),
            );
            let _ = read(&mut Reader::new(&mut buf));
        }
    }

    /// A topic id with every byte set to `byte`.
    pub(crate) fn topic(byte: u8) -> super::TopicId {
        super::TopicId([byte; 16])
    }
}
