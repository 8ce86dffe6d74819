//! DescribeShareGroupOffsets (key 90), versions 0-1: the share-partition start offsets of
//! groups, sent to the group coordinator. Version 1 (Kafka 4.2, KIP-1226) adds `Lag` to each
//! partition of the response; the request is the same in both.

use bytes::Buf;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;

use super::codec::{Reader, Sink, TopicId, WireError, check_version};
use super::{WireMessage, impl_kafka_traits};

const NAME: &str = "DescribeShareGroupOffsets";
const MIN_VERSION: i16 = 0;
const MAX_VERSION: i16 = 1;

/// `DescribeShareGroupOffsetsRequestTopic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DescribeShareGroupOffsetsRequestTopic {
    /// `TopicName`.
    pub(crate) topic_name: StrBytes,
    /// `Partitions`.
    pub(crate) partitions: Vec<i32>,
}

/// `DescribeShareGroupOffsetsRequestGroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DescribeShareGroupOffsetsRequestGroup {
    /// `GroupId`.
    pub(crate) group_id: StrBytes,
    /// `Topics`: `None` (null) for every topic-partition of the group.
    pub(crate) topics: Option<Vec<DescribeShareGroupOffsetsRequestTopic>>,
}

/// DescribeShareGroupOffsetsRequest (same layout in v0 and v1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DescribeShareGroupOffsetsRequest {
    /// `Groups`.
    pub(crate) groups: Vec<DescribeShareGroupOffsetsRequestGroup>,
}

impl WireMessage for DescribeShareGroupOffsetsRequest {
    const NAME: &'static str = "DescribeShareGroupOffsetsRequest";
    const MIN_VERSION: i16 = MIN_VERSION;
    const MAX_VERSION: i16 = MAX_VERSION;

    fn write<S: Sink>(&self, out: &mut S, version: i16) -> Result<(), WireError> {
        check_version(NAME, version, MIN_VERSION, MAX_VERSION)?;
        out.compact_array_len("Groups", self.groups.len())?;
        for group in &self.groups {
            out.compact_string("GroupId", &group.group_id)?;
            out.compact_nullable_array_len("Topics", group.topics.as_ref().map(Vec::len))?;
            for topic in group.topics.iter().flatten() {
                out.compact_string("TopicName", &topic.topic_name)?;
                out.compact_array_len("Partitions", topic.partitions.len())?;
                for partition in &topic.partitions {
                    out.int32(*partition);
                }
                out.no_tagged_fields();
            }
            out.no_tagged_fields();
        }
        out.no_tagged_fields();
        Ok(())
    }

    fn read<B: Buf>(r: &mut Reader<'_, B>, version: i16) -> Result<Self, WireError> {
        check_version(NAME, version, MIN_VERSION, MAX_VERSION)?;
        let groups = r.compact_array("Groups", |r| {
            let group_id = r.compact_string("GroupId")?;
            let topics = r.compact_nullable_array("Topics", |r| {
                let topic_name = r.compact_string("TopicName")?;
                let partitions = r.compact_array("Partitions", |r| r.int32("Partitions"))?;
                r.tagged_fields("DescribeShareGroupOffsetsRequestTopic")?;
                Ok(DescribeShareGroupOffsetsRequestTopic {
                    topic_name,
                    partitions,
                })
            })?;
            r.tagged_fields("DescribeShareGroupOffsetsRequestGroup")?;
            Ok(DescribeShareGroupOffsetsRequestGroup { group_id, topics })
        })?;
        r.tagged_fields("DescribeShareGroupOffsetsRequest")?;
        Ok(Self { groups })
    }
}

/// `DescribeShareGroupOffsetsResponsePartition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DescribeShareGroupOffsetsResponsePartition {
    /// `PartitionIndex`.
    pub(crate) partition_index: i32,
    /// `StartOffset`: the share-partition start offset, -1 when not initialised.
    pub(crate) start_offset: i64,
    /// `LeaderEpoch`.
    pub(crate) leader_epoch: i32,
    /// `Lag`, v1 only (`None` in v0). -1 when unknown.
    pub(crate) lag: Option<i64>,
    /// `ErrorCode`.
    pub(crate) error_code: i16,
    /// `ErrorMessage`.
    pub(crate) error_message: Option<StrBytes>,
}

/// `DescribeShareGroupOffsetsResponseTopic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DescribeShareGroupOffsetsResponseTopic {
    /// `TopicName`.
    pub(crate) topic_name: StrBytes,
    /// `TopicId`.
    pub(crate) topic_id: TopicId,
    /// `Partitions`.
    pub(crate) partitions: Vec<DescribeShareGroupOffsetsResponsePartition>,
}

/// `DescribeShareGroupOffsetsResponseGroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DescribeShareGroupOffsetsResponseGroup {
    /// `GroupId`.
    pub(crate) group_id: StrBytes,
    /// `Topics`.
    pub(crate) topics: Vec<DescribeShareGroupOffsetsResponseTopic>,
    /// `ErrorCode`: group level.
    pub(crate) error_code: i16,
    /// `ErrorMessage`: group level.
    pub(crate) error_message: Option<StrBytes>,
}

/// DescribeShareGroupOffsetsResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DescribeShareGroupOffsetsResponse {
    /// `ThrottleTimeMs`.
    pub(crate) throttle_time_ms: i32,
    /// `Groups`.
    pub(crate) groups: Vec<DescribeShareGroupOffsetsResponseGroup>,
}

fn read_partition<B: Buf>(
    r: &mut Reader<'_, B>,
    version: i16,
) -> Result<DescribeShareGroupOffsetsResponsePartition, WireError> {
    let partition_index = r.int32("PartitionIndex")?;
    let start_offset = r.int64("StartOffset")?;
    let leader_epoch = r.int32("LeaderEpoch")?;
    let lag = if version >= 1 {
        Some(r.int64("Lag")?)
    } else {
        None
    };
    let error_code = r.int16("ErrorCode")?;
    let error_message = r.compact_nullable_string("ErrorMessage")?;
    r.tagged_fields("DescribeShareGroupOffsetsResponsePartition")?;
    Ok(DescribeShareGroupOffsetsResponsePartition {
        partition_index,
        start_offset,
        leader_epoch,
        lag,
        error_code,
        error_message,
    })
}

fn read_topic<B: Buf>(
    r: &mut Reader<'_, B>,
    version: i16,
) -> Result<DescribeShareGroupOffsetsResponseTopic, WireError> {
    let topic_name = r.compact_string("TopicName")?;
    let topic_id = r.uuid("TopicId")?;
    let partitions = r.compact_array("Partitions", |r| read_partition(r, version))?;
    r.tagged_fields("DescribeShareGroupOffsetsResponseTopic")?;
    Ok(DescribeShareGroupOffsetsResponseTopic {
        topic_name,
        topic_id,
        partitions,
    })
}

fn read_group<B: Buf>(
    r: &mut Reader<'_, B>,
    version: i16,
) -> Result<DescribeShareGroupOffsetsResponseGroup, WireError> {
    let group_id = r.compact_string("GroupId")?;
    let topics = r.compact_array("Topics", |r| read_topic(r, version))?;
    let error_code = r.int16("ErrorCode")?;
    let error_message = r.compact_nullable_string("ErrorMessage")?;
    r.tagged_fields("DescribeShareGroupOffsetsResponseGroup")?;
    Ok(DescribeShareGroupOffsetsResponseGroup {
        group_id,
        topics,
        error_code,
        error_message,
    })
}

impl WireMessage for DescribeShareGroupOffsetsResponse {
    const NAME: &'static str = "DescribeShareGroupOffsetsResponse";
    const MIN_VERSION: i16 = MIN_VERSION;
    const MAX_VERSION: i16 = MAX_VERSION;

    /// A v0 response leaves out `Lag` (ignorable); a v1 one without it writes the spec's
    /// default, -1.
    fn write<S: Sink>(&self, out: &mut S, version: i16) -> Result<(), WireError> {
        check_version(NAME, version, MIN_VERSION, MAX_VERSION)?;
        out.int32(self.throttle_time_ms);
        out.compact_array_len("Groups", self.groups.len())?;
        for group in &self.groups {
            out.compact_string("GroupId", &group.group_id)?;
            out.compact_array_len("Topics", group.topics.len())?;
            for topic in &group.topics {
                out.compact_string("TopicName", &topic.topic_name)?;
                out.uuid(&topic.topic_id);
                out.compact_array_len("Partitions", topic.partitions.len())?;
                for partition in &topic.partitions {
                    out.int32(partition.partition_index);
                    out.int64(partition.start_offset);
                    out.int32(partition.leader_epoch);
                    if version >= 1 {
                        out.int64(partition.lag.unwrap_or(-1));
                    }
                    out.int16(partition.error_code);
                    out.compact_nullable_string(
                        "ErrorMessage",
                        partition.error_message.as_deref(),
                    )?;
                    out.no_tagged_fields();
                }
                out.no_tagged_fields();
            }
            out.int16(group.error_code);
            out.compact_nullable_string("ErrorMessage", group.error_message.as_deref())?;
            out.no_tagged_fields();
        }
        out.no_tagged_fields();
        Ok(())
    }

    fn read<B: Buf>(r: &mut Reader<'_, B>, version: i16) -> Result<Self, WireError> {
        check_version(NAME, version, MIN_VERSION, MAX_VERSION)?;
        let throttle_time_ms = r.int32("ThrottleTimeMs")?;
        let groups = r.compact_array("Groups", |r| read_group(r, version))?;
        r.tagged_fields("DescribeShareGroupOffsetsResponse")?;
        Ok(Self {
            throttle_time_ms,
            groups,
        })
    }
}

impl_kafka_traits!(
    DescribeShareGroupOffsetsRequest => DescribeShareGroupOffsetsResponse,
    ApiKey::DescribeShareGroupOffsets
);

#[cfg(test)]
mod tests {
    use kafka_protocol::protocol::{Decodable, Encodable};

    use super::super::common::testing::{
        assert_corruption_never_panics, assert_every_truncation_fails, decode_all, encode_with,
        topic,
    };
    use super::*;

    fn request() -> DescribeShareGroupOffsetsRequest {
        DescribeShareGroupOffsetsRequest {
            groups: vec![
                DescribeShareGroupOffsetsRequestGroup {
                    group_id: StrBytes::from_static_str("g1"),
                    topics: Some(vec![DescribeShareGroupOffsetsRequestTopic {
                        topic_name: StrBytes::from_static_str("jobs"),
                        partitions: vec![0, 7],
                    }]),
                },
                DescribeShareGroupOffsetsRequestGroup {
                    group_id: StrBytes::from_static_str("g2"),
                    topics: None,
                },
            ],
        }
    }

    fn request_bytes() -> Vec<u8> {
        [
            &[0x03][..],   // Groups: 2 elements
            b"\x03g1",     //   GroupId: "g1"
            &[0x02],       //   Topics: nullable array, 1 element
            b"\x05jobs",   //     TopicName: "jobs"
            &[0x03],       //     Partitions: [int32], 2 elements
            &[0, 0, 0, 0], //       0
            &[0, 0, 0, 7], //       7
            &[0x00],       //     DescribeShareGroupOffsetsRequestTopic tagged fields
            &[0x00],       //   DescribeShareGroupOffsetsRequestGroup tagged fields
            b"\x03g2",     //   GroupId: "g2"
            &[0x00],       //   Topics: null (all topic-partitions)
            &[0x00],       //   DescribeShareGroupOffsetsRequestGroup tagged fields
            &[0x00],       // request tagged fields
        ]
        .concat()
    }

    #[test]
    fn request_layout_is_the_same_in_v0_and_v1() {
        for version in [0, 1] {
            let mut buf = Vec::new();
            assert!(request().encode(&mut buf, version).is_ok());
            assert_eq!(buf, request_bytes());
            assert_eq!(
                request().compute_size(version).ok(),
                Some(request_bytes().len())
            );
        }
        for version in [-1, 2] {
            assert!(request().encode(&mut Vec::new(), version).is_err());
            assert!(request().compute_size(version).is_err());
        }
    }

    #[test]
    fn request_round_trip_truncation_and_corruption() {
        for version in [0, 1] {
            let bytes = request_bytes();
            let decoded = decode_all(&bytes, |r| {
                DescribeShareGroupOffsetsRequest::read(r, version)
            });
            assert_eq!(decoded.ok(), Some(request()));
            assert_every_truncation_fails(&bytes, |r| {
                DescribeShareGroupOffsetsRequest::read(r, version)
            });
            assert_corruption_never_panics(&bytes, |r| {
                DescribeShareGroupOffsetsRequest::read(r, version)
            });
        }
    }

    fn response(version: i16) -> DescribeShareGroupOffsetsResponse {
        DescribeShareGroupOffsetsResponse {
            throttle_time_ms: 0,
            groups: vec![DescribeShareGroupOffsetsResponseGroup {
                group_id: StrBytes::from_static_str("g1"),
                topics: vec![DescribeShareGroupOffsetsResponseTopic {
                    topic_name: StrBytes::from_static_str("jobs"),
                    topic_id: topic(0x5a),
                    partitions: vec![DescribeShareGroupOffsetsResponsePartition {
                        partition_index: 7,
                        start_offset: 1_000,
                        leader_epoch: 3,
                        lag: (version >= 1).then_some(42),
                        error_code: 0,
                        error_message: None,
                    }],
                }],
                error_code: 0,
                error_message: None,
            }],
        }
    }

    fn response_bytes(version: i16) -> Vec<u8> {
        let lag: &[u8] = if version >= 1 {
            &[0, 0, 0, 0, 0, 0, 0, 42]
        } else {
            &[]
        };
        [
            &[0, 0, 0, 0][..],               // ThrottleTimeMs: int32 0
            &[0x02],                         // Groups: 1 element
            b"\x03g1",                       //   GroupId: "g1"
            &[0x02],                         //   Topics: 1 element
            b"\x05jobs",                     //     TopicName: "jobs"
            &[0x5a; 16],                     //     TopicId
            &[0x02],                         //     Partitions: 1 element
            &[0, 0, 0, 7],                   //       PartitionIndex: int32 7
            &[0, 0, 0, 0, 0, 0, 0x03, 0xe8], //       StartOffset: int64 1000
            &[0, 0, 0, 3],                   //       LeaderEpoch: int32 3
            lag,                             //       Lag: int64 42, v1 only
            &[0, 0],                         //       ErrorCode: int16 0
            &[0x00],                         //       ErrorMessage: null
            &[0x00],                         //       partition tagged fields
            &[0x00],                         //     topic tagged fields
            &[0, 0],                         //   ErrorCode: int16 0 (group level)
            &[0x00],                         //   ErrorMessage: null
            &[0x00],                         //   group tagged fields
            &[0x00],                         // response tagged fields
        ]
        .concat()
    }

    #[test]
    fn response_layout() {
        for version in [0, 1] {
            let bytes = response_bytes(version);
            assert_eq!(
                decode_all(&bytes, |r| DescribeShareGroupOffsetsResponse::read(
                    r, version
                ))
                .ok(),
                Some(response(version))
            );
            assert_eq!(
                encode_with(|out| response(version).write(out, version)),
                bytes
            );
            let mut buf = bytes::Bytes::from(bytes);
            assert!(DescribeShareGroupOffsetsResponse::decode(&mut buf, version).is_ok());
        }
        assert_eq!(response_bytes(0).len() + 8, response_bytes(1).len());
        for version in [-1, 2] {
            let mut buf = bytes::Bytes::from(response_bytes(1));
            assert!(DescribeShareGroupOffsetsResponse::decode(&mut buf, version).is_err());
        }
    }

    #[test]
    fn response_round_trip() {
        let mut value = response(1);
        value.groups[0].topics[0]
            .partitions
            .push(DescribeShareGroupOffsetsResponsePartition {
                partition_index: 8,
                start_offset: -1,
                leader_epoch: -1,
                lag: Some(-1),
                error_code: 3,
                error_message: Some(StrBytes::from_static_str("UNKNOWN_TOPIC_OR_PARTITION")),
            });
        value.groups.push(DescribeShareGroupOffsetsResponseGroup {
            group_id: StrBytes::from_static_str("g2"),
            topics: vec![],
            error_code: 69,
            error_message: Some(StrBytes::from_static_str("GROUP_ID_NOT_FOUND")),
        });
        let bytes = encode_with(|out| value.write(out, 1));
        assert_eq!(
            decode_all(&bytes, |r| DescribeShareGroupOffsetsResponse::read(r, 1)).ok(),
            Some(value)
        );
    }

    #[test]
    fn response_truncated_or_corrupt_never_panics() {
        for version in [0, 1] {
            let bytes = response_bytes(version);
            assert_every_truncation_fails(&bytes, |r| {
                DescribeShareGroupOffsetsResponse::read(r, version)
            });
            assert_corruption_never_panics(&bytes, |r| {
                DescribeShareGroupOffsetsResponse::read(r, version)
            });
        }
    }
}
