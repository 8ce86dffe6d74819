//! ShareAcknowledge (key 79), versions 1-2: acknowledge deliveries without fetching. Version 2
//! (Kafka 4.2, KIP-1222) adds `IsRenewAck` to the request and `AcquisitionLockTimeoutMs` to the
//! response.

use bytes::Buf;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;

use super::codec::{Reader, Sink, TopicId, WireError, check_version};
use super::common::{AcknowledgeTopic, LeaderIdAndEpoch, NodeEndpoint, read_topics, write_topics};
use super::{WireMessage, impl_kafka_traits};

const NAME: &str = "ShareAcknowledge";
const MIN_VERSION: i16 = 1;
const MAX_VERSION: i16 = 2;

/// ShareAcknowledgeRequest.
///
/// `GroupId` and `MemberId` are nullable in the spec; a client always sends both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShareAcknowledgeRequest {
    /// `GroupId`.
    pub(crate) group_id: StrBytes,
    /// `MemberId`.
    pub(crate) member_id: StrBytes,
    /// `ShareSessionEpoch`: never 0 (no acknowledgements when opening a session).
    pub(crate) share_session_epoch: i32,
    /// `IsRenewAck`, v2 only: true when the batches carry RENEW. Set in v1 it is an error.
    pub(crate) is_renew_ack: bool,
    /// `Topics`.
    pub(crate) topics: Vec<AcknowledgeTopic>,
}

impl WireMessage for ShareAcknowledgeRequest {
    const NAME: &'static str = "ShareAcknowledgeRequest";
    const MIN_VERSION: i16 = MIN_VERSION;
    const MAX_VERSION: i16 = MAX_VERSION;

    fn write<S: Sink>(&self, out: &mut S, version: i16) -> Result<(), WireError> {
        check_version(NAME, version, MIN_VERSION, MAX_VERSION)?;
        if version < 2 && self.is_renew_ack {
            return Err(WireError::FieldNotInVersion {
                field: "IsRenewAck",
                version,
            });
        }
        out.compact_string("GroupId", &self.group_id)?;
        out.compact_string("MemberId", &self.member_id)?;
        out.int32(self.share_session_epoch);
        if version >= 2 {
            out.boolean(self.is_renew_ack);
        }
        write_topics(out, &self.topics, version, self.is_renew_ack)?;
        out.no_tagged_fields();
        Ok(())
    }

    /// A null `GroupId` or `MemberId` is refused (no client sends one).
    fn read<B: Buf>(r: &mut Reader<'_, B>, version: i16) -> Result<Self, WireError> {
        check_version(NAME, version, MIN_VERSION, MAX_VERSION)?;
        let group_id = r.compact_string("GroupId")?;
        let member_id = r.compact_string("MemberId")?;
        let share_session_epoch = r.int32("ShareSessionEpoch")?;
        let is_renew_ack = if version >= 2 {
            r.boolean("IsRenewAck")?
        } else {
            false
        };
        let topics = read_topics(r)?;
        r.tagged_fields("ShareAcknowledgeRequest")?;
        Ok(Self {
            group_id,
            member_id,
            share_session_epoch,
            is_renew_ack,
            topics,
        })
    }
}

/// `PartitionData` of a ShareAcknowledge response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShareAcknowledgePartitionData {
    /// `PartitionIndex`.
    pub(crate) partition_index: i32,
    /// `ErrorCode`.
    pub(crate) error_code: i16,
    /// `ErrorMessage`.
    pub(crate) error_message: Option<StrBytes>,
    /// `CurrentLeader`.
    pub(crate) current_leader: LeaderIdAndEpoch,
}

/// `ShareAcknowledgeTopicResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShareAcknowledgeTopicResponse {
    /// `TopicId`.
    pub(crate) topic_id: TopicId,
    /// `Partitions`.
    pub(crate) partitions: Vec<ShareAcknowledgePartitionData>,
}

/// ShareAcknowledgeResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShareAcknowledgeResponse {
    /// `ThrottleTimeMs`.
    pub(crate) throttle_time_ms: i32,
    /// `ErrorCode`: top level.
    pub(crate) error_code: i16,
    /// `ErrorMessage`: top level.
    pub(crate) error_message: Option<StrBytes>,
    /// `AcquisitionLockTimeoutMs`: v2 only (`None` in v1).
    pub(crate) acquisition_lock_timeout_ms: Option<i32>,
    /// `Responses`.
    pub(crate) responses: Vec<ShareAcknowledgeTopicResponse>,
    /// `NodeEndpoints`: new leaders for partitions failing with NOT_LEADER_OR_FOLLOWER.
    pub(crate) node_endpoints: Vec<NodeEndpoint>,
}

fn read_partition<B: Buf>(
    r: &mut Reader<'_, B>,
) -> Result<ShareAcknowledgePartitionData, WireError> {
    let partition_index = r.int32("PartitionIndex")?;
    let error_code = r.int16("ErrorCode")?;
    let error_message = r.compact_nullable_string("ErrorMessage")?;
    let current_leader = LeaderIdAndEpoch::read(r)?;
    r.tagged_fields("PartitionData")?;
    Ok(ShareAcknowledgePartitionData {
        partition_index,
        error_code,
        error_message,
        current_leader,
    })
}

fn read_topic<B: Buf>(r: &mut Reader<'_, B>) -> Result<ShareAcknowledgeTopicResponse, WireError> {
    let topic_id = r.uuid("TopicId")?;
    let partitions = r.compact_array("Partitions", read_partition)?;
    r.tagged_fields("ShareAcknowledgeTopicResponse")?;
    Ok(ShareAcknowledgeTopicResponse {
        topic_id,
        partitions,
    })
}

impl WireMessage for ShareAcknowledgeResponse {
    const NAME: &'static str = "ShareAcknowledgeResponse";
    const MIN_VERSION: i16 = MIN_VERSION;
    const MAX_VERSION: i16 = MAX_VERSION;

    /// A v1 response leaves out `AcquisitionLockTimeoutMs` (ignorable); a v2 one without it
    /// writes the spec's default, 0.
    fn write<S: Sink>(&self, out: &mut S, version: i16) -> Result<(), WireError> {
        check_version(NAME, version, MIN_VERSION, MAX_VERSION)?;
        out.int32(self.throttle_time_ms);
        out.int16(self.error_code);
        out.compact_nullable_string("ErrorMessage", self.error_message.as_deref())?;
        if version >= 2 {
            out.int32(self.acquisition_lock_timeout_ms.unwrap_or(0));
        }
        out.compact_array_len("Responses", self.responses.len())?;
        for topic in &self.responses {
            out.uuid(&topic.topic_id);
            out.compact_array_len("Partitions", topic.partitions.len())?;
            for partition in &topic.partitions {
                out.int32(partition.partition_index);
                out.int16(partition.error_code);
                out.compact_nullable_string("ErrorMessage", partition.error_message.as_deref())?;
                partition.current_leader.write(out);
                out.no_tagged_fields();
            }
            out.no_tagged_fields();
        }
        out.compact_array_len("NodeEndpoints", self.node_endpoints.len())?;
        for endpoint in &self.node_endpoints {
            endpoint.write(out)?;
        }
        out.no_tagged_fields();
        Ok(())
    }

    fn read<B: Buf>(r: &mut Reader<'_, B>, version: i16) -> Result<Self, WireError> {
        check_version(NAME, version, MIN_VERSION, MAX_VERSION)?;
        let throttle_time_ms = r.int32("ThrottleTimeMs")?;
        let error_code = r.int16("ErrorCode")?;
        let error_message = r.compact_nullable_string("ErrorMessage")?;
        let acquisition_lock_timeout_ms = if version >= 2 {
            Some(r.int32("AcquisitionLockTimeoutMs")?)
        } else {
            None
        };
        let responses = r.compact_array("Responses", read_topic)?;
        let node_endpoints = r.compact_array("NodeEndpoints", NodeEndpoint::read)?;
        r.tagged_fields("ShareAcknowledgeResponse")?;
        Ok(Self {
            throttle_time_ms,
            error_code,
            error_message,
            acquisition_lock_timeout_ms,
            responses,
            node_endpoints,
        })
    }
}

impl_kafka_traits!(ShareAcknowledgeRequest => ShareAcknowledgeResponse, ApiKey::ShareAcknowledge);

#[cfg(test)]
mod tests {
    use kafka_protocol::protocol::{Decodable, Encodable};

    use super::super::common::testing::{
        assert_corruption_never_panics, assert_every_truncation_fails, decode_all, encode_with,
        topic,
    };
    use super::super::common::{AcknowledgePartition, AcknowledgeType, AcknowledgementBatch};
    use super::*;

    fn request() -> ShareAcknowledgeRequest {
        ShareAcknowledgeRequest {
            group_id: StrBytes::from_static_str("g"),
            member_id: StrBytes::from_static_str("mm"),
            share_session_epoch: -1,
            is_renew_ack: false,
            topics: vec![AcknowledgeTopic {
                topic_id: topic(0xab),
                partitions: vec![
                    AcknowledgePartition {
                        partition_index: 0,
                        acknowledgement_batches: vec![
                            AcknowledgementBatch {
                                first_offset: 0,
                                last_offset: 4,
                                acknowledge_types: vec![AcknowledgeType::Accept],
                            },
                            AcknowledgementBatch {
                                first_offset: 6,
                                last_offset: 6,
                                acknowledge_types: vec![AcknowledgeType::Reject],
                            },
                        ],
                    },
                    AcknowledgePartition {
                        partition_index: 3,
                        acknowledgement_batches: vec![],
                    },
                ],
            }],
        }
    }

    fn expected_topics() -> Vec<u8> {
        [
            &[0x02][..],               // Topics: 1 element
            &[0xab; 16],               //   TopicId
            &[0x03],                   //   Partitions: 2 elements
            &[0, 0, 0, 0],             //     PartitionIndex: int32 0
            &[0x03],                   //     AcknowledgementBatches: 2 elements
            &[0, 0, 0, 0, 0, 0, 0, 0], //       FirstOffset: int64 0
            &[0, 0, 0, 0, 0, 0, 0, 4], //       LastOffset: int64 4
            &[0x02, 0x01],             //       AcknowledgeTypes: [ACCEPT]
            &[0x00],                   //       AcknowledgementBatch tagged fields
            &[0, 0, 0, 0, 0, 0, 0, 6], //       FirstOffset: int64 6
            &[0, 0, 0, 0, 0, 0, 0, 6], //       LastOffset: int64 6
            &[0x02, 0x03],             //       AcknowledgeTypes: [REJECT]
            &[0x00],                   //       AcknowledgementBatch tagged fields
            &[0x00],                   //     AcknowledgePartition tagged fields
            &[0, 0, 0, 3],             //     PartitionIndex: int32 3
            &[0x01],                   //     AcknowledgementBatches: empty
            &[0x00],                   //     AcknowledgePartition tagged fields
            &[0x00],                   //   AcknowledgeTopic tagged fields
            &[0x00],                   // request tagged fields
        ]
        .concat()
    }

    fn expected_head() -> Vec<u8> {
        [
            &b"\x02g"[..],             // GroupId: compact string
            b"\x03mm",                 // MemberId: compact string
            &[0xff, 0xff, 0xff, 0xff], // ShareSessionEpoch: int32 -1
        ]
        .concat()
    }

    #[test]
    fn request_v1_layout() {
        let expected = [expected_head(), expected_topics()].concat();
        let mut buf = Vec::new();
        assert!(request().encode(&mut buf, 1).is_ok());
        assert_eq!(buf, expected);
        assert_eq!(request().compute_size(1).ok(), Some(expected.len()));
    }

    #[test]
    fn request_v2_layout() {
        let expected = [expected_head(), vec![0x00], expected_topics()].concat(); // IsRenewAck: false
        assert_eq!(encode_with(|out| request().write(out, 2)), expected);
        assert_eq!(request().compute_size(2).ok(), Some(expected.len()));

        let mut renew = request();
        renew.is_renew_ack = true;
        renew.topics[0].partitions[0].acknowledgement_batches[1].acknowledge_types =
            vec![AcknowledgeType::Renew];
        let bytes = encode_with(|out| renew.write(out, 2));
        let head = expected_head().len();
        assert_eq!(bytes[head], 0x01); // IsRenewAck: true
        let mut expected = [expected_head(), vec![0x01], expected_topics()].concat();
        // The second batch's AcknowledgeTypes: [RENEW] instead of [REJECT].
        let at = head + 1 + 1 + 16 + 1 + 4 + 1 + 8 + 8 + 2 + 1 + 8 + 8;
        assert_eq!(expected[at..at + 2], [0x02, 0x03]);
        expected[at + 1] = 0x04;
        assert_eq!(bytes, expected);
    }

    #[test]
    fn request_v1_has_no_v2_fields() {
        let v1 = encode_with(|out| request().write(out, 1));
        let v2 = encode_with(|out| request().write(out, 2));
        assert_eq!(v1.len() + 1, v2.len());
        let mut renew = request();
        renew.is_renew_ack = true;
        assert!(renew.encode(&mut Vec::new(), 1).is_err());
        assert!(renew.encode(&mut Vec::new(), 2).is_ok());
        renew.topics[0].partitions[0].acknowledgement_batches[0].acknowledge_types =
            vec![AcknowledgeType::Renew];
        renew.is_renew_ack = false;
        assert!(renew.encode(&mut Vec::new(), 2).is_err());
    }

    #[test]
    fn request_unsupported_versions() {
        for version in [-1, 0, 3] {
            assert!(request().encode(&mut Vec::new(), version).is_err());
            assert!(request().compute_size(version).is_err());
        }
    }

    #[test]
    fn request_round_trip_truncation_and_corruption() {
        let mut v2 = request();
        v2.is_renew_ack = true;
        v2.topics[0].partitions[0].acknowledgement_batches[0].acknowledge_types = vec![
            AcknowledgeType::Renew,
            AcknowledgeType::Accept,
            AcknowledgeType::Gap,
            AcknowledgeType::Release,
            AcknowledgeType::Reject,
        ];
        for (version, value) in [(1, request()), (2, v2)] {
            let bytes = encode_with(|out| value.write(out, version));
            let decoded = decode_all(&bytes, |r| ShareAcknowledgeRequest::read(r, version));
            assert_eq!(decoded.ok(), Some(value));
            assert_every_truncation_fails(&bytes, |r| ShareAcknowledgeRequest::read(r, version));
            assert_corruption_never_panics(&bytes, |r| ShareAcknowledgeRequest::read(r, version));
        }
    }

    fn response(version: i16) -> ShareAcknowledgeResponse {
        ShareAcknowledgeResponse {
            throttle_time_ms: 1,
            error_code: 0,
            error_message: None,
            acquisition_lock_timeout_ms: (version >= 2).then_some(15_000),
            responses: vec![ShareAcknowledgeTopicResponse {
                topic_id: topic(0x01),
                partitions: vec![ShareAcknowledgePartitionData {
                    partition_index: 4,
                    error_code: 6, // NOT_LEADER_OR_FOLLOWER
                    error_message: Some(StrBytes::from_static_str("moved")),
                    current_leader: LeaderIdAndEpoch {
                        leader_id: 2,
                        leader_epoch: 9,
                    },
                }],
            }],
            node_endpoints: vec![NodeEndpoint {
                node_id: 2,
                host: StrBytes::from_static_str("b2"),
                port: 9093,
                rack: Some(StrBytes::from_static_str("r")),
            }],
        }
    }

    fn response_bytes(version: i16) -> Vec<u8> {
        let lock_timeout: &[u8] = if version >= 2 {
            &[0, 0, 0x3a, 0x98]
        } else {
            &[]
        };
        [
            &[0, 0, 0, 1][..],   // ThrottleTimeMs: int32 1
            &[0, 0],             // ErrorCode: int16 0
            &[0x00],             // ErrorMessage: null
            lock_timeout,        // AcquisitionLockTimeoutMs: int32 15000, v2 only
            &[0x02],             // Responses: 1 element
            &[0x01; 16],         //   TopicId
            &[0x02],             //   Partitions: 1 element
            &[0, 0, 0, 4],       //     PartitionIndex: int32 4
            &[0, 6],             //     ErrorCode: int16 6
            b"\x06moved",        //     ErrorMessage: "moved"
            &[0, 0, 0, 2],       //     CurrentLeader.LeaderId: int32 2
            &[0, 0, 0, 9],       //     CurrentLeader.LeaderEpoch: int32 9
            &[0x00],             //     CurrentLeader tagged fields
            &[0x00],             //     PartitionData tagged fields
            &[0x00],             //   ShareAcknowledgeTopicResponse tagged fields
            &[0x02],             // NodeEndpoints: 1 element
            &[0, 0, 0, 2],       //   NodeId: int32 2
            b"\x03b2",           //   Host: "b2"
            &[0, 0, 0x23, 0x85], //   Port: int32 9093
            b"\x02r",            //   Rack: "r"
            &[0x00],             //   NodeEndpoint tagged fields
            &[0x00],             // response tagged fields
        ]
        .concat()
    }

    #[test]
    fn response_layout() {
        for version in [1, 2] {
            let bytes = response_bytes(version);
            assert_eq!(
                decode_all(&bytes, |r| ShareAcknowledgeResponse::read(r, version)).ok(),
                Some(response(version))
            );
            assert_eq!(
                encode_with(|out| response(version).write(out, version)),
                bytes
            );
            let mut buf = bytes::Bytes::from(bytes);
            assert!(ShareAcknowledgeResponse::decode(&mut buf, version).is_ok());
        }
        // A v2 body read as v1 misreads the lock timeout as the Responses array.
        assert!(decode_all(&response_bytes(2), |r| ShareAcknowledgeResponse::read(r, 1)).is_err());
        for version in [0, 3] {
            let mut buf = bytes::Bytes::from(response_bytes(2));
            assert!(ShareAcknowledgeResponse::decode(&mut buf, version).is_err());
        }
    }

    #[test]
    fn response_round_trip() {
        let mut value = response(2);
        value.error_code = 123;
        value.error_message = Some(StrBytes::from_static_str("INVALID_SHARE_SESSION_EPOCH"));
        value.node_endpoints.clear();
        value.responses.push(ShareAcknowledgeTopicResponse {
            topic_id: topic(0x02),
            partitions: vec![],
        });
        let bytes = encode_with(|out| value.write(out, 2));
        assert_eq!(
            decode_all(&bytes, |r| ShareAcknowledgeResponse::read(r, 2)).ok(),
            Some(value)
        );
    }

    #[test]
    fn response_truncated_or_corrupt_never_panics() {
        for version in [1, 2] {
            assert_every_truncation_fails(&response_bytes(version), |r| {
                ShareAcknowledgeResponse::read(r, version)
            });
            assert_corruption_never_panics(&response_bytes(version), |r| {
                ShareAcknowledgeResponse::read(r, version)
            });
        }
    }
}
