//! ShareFetch (key 78), versions 1-2: fetch from a partition leader, acknowledging earlier
//! deliveries in the same round trip. Version 2 (Kafka 4.2, KIP-1206 / KIP-1222) adds
//! `ShareAcquireMode` and `IsRenewAck` to the request; the response is the same in both.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;

use super::codec::{Reader, Sink, TopicId, WireError, check_version};
use super::common::{AcknowledgeTopic, LeaderIdAndEpoch, NodeEndpoint, read_topics, write_topics};
use super::{WireMessage, impl_kafka_traits};

const NAME: &str = "ShareFetch";
const MIN_VERSION: i16 = 1;
const MAX_VERSION: i16 = 2;

/// `ShareAcquireMode` (v2): how the broker applies `MaxRecords`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(i8)]
pub(crate) enum ShareAcquireMode {
    /// May exceed `MaxRecords` to keep whole batches (the default, and v1's behaviour).
    #[default]
    BatchOptimized = 0,
    /// Never acquires more than `MaxRecords`.
    RecordLimit = 1,
}

impl ShareAcquireMode {
    fn from_wire(value: i8) -> Result<Self, WireError> {
        match value {
            0 => Ok(Self::BatchOptimized),
            1 => Ok(Self::RecordLimit),
            _ => Err(WireError::invalid(
                "ShareAcquireMode",
                "unknown acquire mode",
            )),
        }
    }
}

/// `FetchTopic`: a topic to fetch from and/or acknowledge in (same layout as ShareAcknowledge's).
pub(crate) type FetchTopic = AcknowledgeTopic;

/// `ForgottenTopic`: partitions to remove from the share session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ForgottenTopic {
    /// `TopicId`.
    pub(crate) topic_id: TopicId,
    /// `Partitions`.
    pub(crate) partitions: Vec<i32>,
}

/// ShareFetchRequest.
///
/// `GroupId` and `MemberId` are nullable in the spec; a client always sends both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShareFetchRequest {
    /// `GroupId`.
    pub(crate) group_id: StrBytes,
    /// `MemberId`.
    pub(crate) member_id: StrBytes,
    /// `ShareSessionEpoch`: 0 opens a session, -1 closes it, else the next epoch.
    pub(crate) share_session_epoch: i32,
    /// `MaxWaitMs`.
    pub(crate) max_wait_ms: i32,
    /// `MinBytes`.
    pub(crate) min_bytes: i32,
    /// `MaxBytes` (spec default `i32::MAX`).
    pub(crate) max_bytes: i32,
    /// `MaxRecords`.
    pub(crate) max_records: i32,
    /// `BatchSize`: preferred size of acquired-record batches.
    pub(crate) batch_size: i32,
    /// `ShareAcquireMode`, v2 only. It is "ignorable": in v1 it is left out, as the Java client
    /// does, and the broker behaves as `BatchOptimized`.
    pub(crate) share_acquire_mode: ShareAcquireMode,
    /// `IsRenewAck`, v2 only: true when the batches carry RENEW. Set in v1 it is an error.
    pub(crate) is_renew_ack: bool,
    /// `Topics`.
    pub(crate) topics: Vec<FetchTopic>,
    /// `ForgottenTopicsData`.
    pub(crate) forgotten_topics_data: Vec<ForgottenTopic>,
}

impl Default for ShareFetchRequest {
    fn default() -> Self {
        Self {
            group_id: StrBytes::new(),
            member_id: StrBytes::new(),
            share_session_epoch: 0,
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: i32::MAX,
            max_records: 0,
            batch_size: 0,
            share_acquire_mode: ShareAcquireMode::BatchOptimized,
            is_renew_ack: false,
            topics: Vec::new(),
            forgotten_topics_data: Vec::new(),
        }
    }
}

impl WireMessage for ShareFetchRequest {
    const NAME: &'static str = "ShareFetchRequest";
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
        out.int32(self.max_wait_ms);
        out.int32(self.min_bytes);
        out.int32(self.max_bytes);
        out.int32(self.max_records);
        out.int32(self.batch_size);
        if version >= 2 {
            out.int8(self.share_acquire_mode as i8);
            out.boolean(self.is_renew_ack);
        }
        write_topics(out, &self.topics, version, self.is_renew_ack)?;
        out.compact_array_len("ForgottenTopicsData", self.forgotten_topics_data.len())?;
        for topic in &self.forgotten_topics_data {
            out.uuid(&topic.topic_id);
            out.compact_array_len("Partitions", topic.partitions.len())?;
            for partition in &topic.partitions {
                out.int32(*partition);
            }
            out.no_tagged_fields();
        }
        out.no_tagged_fields();
        Ok(())
    }

    /// A null `GroupId` or `MemberId` is refused (no client sends one).
    fn read<B: Buf>(r: &mut Reader<'_, B>, version: i16) -> Result<Self, WireError> {
        check_version(NAME, version, MIN_VERSION, MAX_VERSION)?;
        let group_id = r.compact_string("GroupId")?;
        let member_id = r.compact_string("MemberId")?;
        let share_session_epoch = r.int32("ShareSessionEpoch")?;
        let max_wait_ms = r.int32("MaxWaitMs")?;
        let min_bytes = r.int32("MinBytes")?;
        let max_bytes = r.int32("MaxBytes")?;
        let max_records = r.int32("MaxRecords")?;
        let batch_size = r.int32("BatchSize")?;
        let (share_acquire_mode, is_renew_ack) = if version >= 2 {
            let mode = ShareAcquireMode::from_wire(r.int8("ShareAcquireMode")?)?;
            (mode, r.boolean("IsRenewAck")?)
        } else {
            (ShareAcquireMode::BatchOptimized, false)
        };
        let topics = read_topics(r)?;
        let forgotten_topics_data = r.compact_array("ForgottenTopicsData", |r| {
            let topic_id = r.uuid("TopicId")?;
            let partitions = r.compact_array("Partitions", |r| r.int32("Partitions"))?;
            r.tagged_fields("ForgottenTopic")?;
            Ok(ForgottenTopic {
                topic_id,
                partitions,
            })
        })?;
        r.tagged_fields("ShareFetchRequest")?;
        Ok(Self {
            group_id,
            member_id,
            share_session_epoch,
            max_wait_ms,
            min_bytes,
            max_bytes,
            max_records,
            batch_size,
            share_acquire_mode,
            is_renew_ack,
            topics,
            forgotten_topics_data,
        })
    }
}

/// `AcquiredRecords`: an inclusive offset range acquired by this member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AcquiredRecords {
    /// `FirstOffset`.
    pub(crate) first_offset: i64,
    /// `LastOffset`, inclusive.
    pub(crate) last_offset: i64,
    /// `DeliveryCount`: 1 on the first delivery.
    pub(crate) delivery_count: i16,
}

/// `PartitionData` of a ShareFetch response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShareFetchPartitionData {
    /// `PartitionIndex`.
    pub(crate) partition_index: i32,
    /// `ErrorCode` of the fetch.
    pub(crate) error_code: i16,
    /// `ErrorMessage` of the fetch.
    pub(crate) error_message: Option<StrBytes>,
    /// `AcknowledgeErrorCode`: of the acknowledgements sent in the request.
    pub(crate) acknowledge_error_code: i16,
    /// `AcknowledgeErrorMessage`.
    pub(crate) acknowledge_error_message: Option<StrBytes>,
    /// `CurrentLeader`.
    pub(crate) current_leader: LeaderIdAndEpoch,
    /// `Records`: whole record batches, raw (see [`super::records`]). Not nullable from v1.
    pub(crate) records: Bytes,
    /// `AcquiredRecords`.
    pub(crate) acquired_records: Vec<AcquiredRecords>,
}

/// `ShareFetchableTopicResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShareFetchTopicResponse {
    /// `TopicId`.
    pub(crate) topic_id: TopicId,
    /// `Partitions`.
    pub(crate) partitions: Vec<ShareFetchPartitionData>,
}

/// ShareFetchResponse (same layout in v1 and v2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShareFetchResponse {
    /// `ThrottleTimeMs`.
    pub(crate) throttle_time_ms: i32,
    /// `ErrorCode`: top level.
    pub(crate) error_code: i16,
    /// `ErrorMessage`: top level.
    pub(crate) error_message: Option<StrBytes>,
    /// `AcquisitionLockTimeoutMs`: how long acquired records stay locked.
    pub(crate) acquisition_lock_timeout_ms: i32,
    /// `Responses`.
    pub(crate) responses: Vec<ShareFetchTopicResponse>,
    /// `NodeEndpoints`: new leaders for partitions failing with NOT_LEADER_OR_FOLLOWER.
    pub(crate) node_endpoints: Vec<NodeEndpoint>,
}

fn read_acquired<B: Buf>(r: &mut Reader<'_, B>) -> Result<AcquiredRecords, WireError> {
    let first_offset = r.int64("FirstOffset")?;
    let last_offset = r.int64("LastOffset")?;
    let delivery_count = r.int16("DeliveryCount")?;
    r.tagged_fields("AcquiredRecords")?;
    Ok(AcquiredRecords {
        first_offset,
        last_offset,
        delivery_count,
    })
}

fn read_partition<B: Buf>(r: &mut Reader<'_, B>) -> Result<ShareFetchPartitionData, WireError> {
    let partition_index = r.int32("PartitionIndex")?;
    let error_code = r.int16("ErrorCode")?;
    let error_message = r.compact_nullable_string("ErrorMessage")?;
    let acknowledge_error_code = r.int16("AcknowledgeErrorCode")?;
    let acknowledge_error_message = r.compact_nullable_string("AcknowledgeErrorMessage")?;
    let current_leader = LeaderIdAndEpoch::read(r)?;
    let records = r.compact_bytes("Records")?;
    let acquired_records = r.compact_array("AcquiredRecords", read_acquired)?;
    r.tagged_fields("PartitionData")?;
    Ok(ShareFetchPartitionData {
        partition_index,
        error_code,
        error_message,
        acknowledge_error_code,
        acknowledge_error_message,
        current_leader,
        records,
        acquired_records,
    })
}

fn read_topic<B: Buf>(r: &mut Reader<'_, B>) -> Result<ShareFetchTopicResponse, WireError> {
    let topic_id = r.uuid("TopicId")?;
    let partitions = r.compact_array("Partitions", read_partition)?;
    r.tagged_fields("ShareFetchableTopicResponse")?;
    Ok(ShareFetchTopicResponse {
        topic_id,
        partitions,
    })
}

impl WireMessage for ShareFetchResponse {
    const NAME: &'static str = "ShareFetchResponse";
    const MIN_VERSION: i16 = MIN_VERSION;
    const MAX_VERSION: i16 = MAX_VERSION;

    fn write<S: Sink>(&self, out: &mut S, version: i16) -> Result<(), WireError> {
        check_version(NAME, version, MIN_VERSION, MAX_VERSION)?;
        out.int32(self.throttle_time_ms);
        out.int16(self.error_code);
        out.compact_nullable_string("ErrorMessage", self.error_message.as_deref())?;
        out.int32(self.acquisition_lock_timeout_ms);
        out.compact_array_len("Responses", self.responses.len())?;
        for topic in &self.responses {
            out.uuid(&topic.topic_id);
            out.compact_array_len("Partitions", topic.partitions.len())?;
            for partition in &topic.partitions {
                out.int32(partition.partition_index);
                out.int16(partition.error_code);
                out.compact_nullable_string("ErrorMessage", partition.error_message.as_deref())?;
                out.int16(partition.acknowledge_error_code);
                out.compact_nullable_string(
                    "AcknowledgeErrorMessage",
                    partition.acknowledge_error_message.as_deref(),
                )?;
                partition.current_leader.write(out);
                out.compact_bytes("Records", &partition.records)?;
                out.compact_array_len("AcquiredRecords", partition.acquired_records.len())?;
                for acquired in &partition.acquired_records {
                    out.int64(acquired.first_offset);
                    out.int64(acquired.last_offset);
                    out.int16(acquired.delivery_count);
                    out.no_tagged_fields();
                }
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
        let acquisition_lock_timeout_ms = r.int32("AcquisitionLockTimeoutMs")?;
        let responses = r.compact_array("Responses", read_topic)?;
        let node_endpoints = r.compact_array("NodeEndpoints", NodeEndpoint::read)?;
        r.tagged_fields("ShareFetchResponse")?;
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

impl_kafka_traits!(ShareFetchRequest => ShareFetchResponse, ApiKey::ShareFetch);

#[cfg(test)]
mod tests {
    use kafka_protocol::protocol::{Decodable, Encodable};

    use super::super::codec::SizeCounter;
    use super::super::common::testing::{
        assert_corruption_never_panics, assert_every_truncation_fails, decode_all, encode_with,
        topic,
    };
    use super::super::common::{AcknowledgePartition, AcknowledgeType, AcknowledgementBatch};
    use super::*;

    /// One topic with one acknowledging partition, one forgotten topic.
    fn request() -> ShareFetchRequest {
        ShareFetchRequest {
            group_id: StrBytes::from_static_str("grp"),
            member_id: StrBytes::from_static_str("m1"),
            share_session_epoch: 3,
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 1_048_576,
            max_records: 100,
            batch_size: 50,
            share_acquire_mode: ShareAcquireMode::BatchOptimized,
            is_renew_ack: false,
            topics: vec![FetchTopic {
                topic_id: topic(0x11),
                partitions: vec![AcknowledgePartition {
                    partition_index: 2,
                    acknowledgement_batches: vec![AcknowledgementBatch {
                        first_offset: 10,
                        last_offset: 12,
                        acknowledge_types: vec![
                            AcknowledgeType::Accept,
                            AcknowledgeType::Release,
                            AcknowledgeType::Gap,
                        ],
                    }],
                }],
            }],
            forgotten_topics_data: vec![ForgottenTopic {
                topic_id: topic(0x22),
                partitions: vec![0, 1],
            }],
        }
    }

    /// The request fields after `BatchSize`, the same in v1 and v2.
    fn expected_topics_and_forgotten() -> Vec<u8> {
        [
            &[0x02][..],                     // Topics: compact array, 1 element
            &[0x11; 16],                     //   TopicId: uuid
            &[0x02],                         //   Partitions: 1 element
            &[0, 0, 0, 2],                   //     PartitionIndex: int32 2
            &[0x02],                         //     AcknowledgementBatches: 1 element
            &[0, 0, 0, 0, 0, 0, 0, 10],      //       FirstOffset: int64 10
            &[0, 0, 0, 0, 0, 0, 0, 12],      //       LastOffset: int64 12
            &[0x04, 1, 2, 0], //     AcknowledgeTypes: 3 x int8 (ACCEPT, RELEASE, GAP)
            &[0x00],          //       AcknowledgementBatch tagged fields
            &[0x00],          //     FetchPartition tagged fields
            &[0x00],          //   FetchTopic tagged fields
            &[0x02],          // ForgottenTopicsData: 1 element
            &[0x22; 16],      //   TopicId
            &[0x03, 0, 0, 0, 0, 0, 0, 0, 1], //   Partitions: [int32], 2 elements: 0, 1
            &[0x00],          //   ForgottenTopic tagged fields
            &[0x00],          // request tagged fields
        ]
        .concat()
    }

    fn expected_head() -> Vec<u8> {
        [
            &b"\x04grp"[..],     // GroupId: compact string (length 3 + 1, then "grp")
            b"\x03m1",           // MemberId: compact string
            &[0, 0, 0, 3],       // ShareSessionEpoch: int32 3
            &[0, 0, 0x01, 0xf4], // MaxWaitMs: int32 500
            &[0, 0, 0, 1],       // MinBytes: int32 1
            &[0, 0x10, 0, 0],    // MaxBytes: int32 1048576
            &[0, 0, 0, 100],     // MaxRecords: int32 100
            &[0, 0, 0, 50],      // BatchSize: int32 50
        ]
        .concat()
    }

    #[test]
    fn request_v1_layout() {
        let expected = [expected_head(), expected_topics_and_forgotten()].concat();
        let mut buf = Vec::new();
        assert!(request().encode(&mut buf, 1).is_ok());
        assert_eq!(buf, expected);
        assert_eq!(request().compute_size(1).ok(), Some(expected.len()));
    }

    #[test]
    fn request_v2_layout() {
        let mut value = request();
        value.share_acquire_mode = ShareAcquireMode::RecordLimit;
        let expected = [
            expected_head(),
            vec![0x01], // ShareAcquireMode: int8 1 (record-limit)
            vec![0x00], // IsRenewAck: bool false
            expected_topics_and_forgotten(),
        ]
        .concat();
        let mut buf = Vec::new();
        assert!(value.encode(&mut buf, 2).is_ok());
        assert_eq!(buf, expected);
        assert_eq!(value.compute_size(2).ok(), Some(expected.len()));
    }

    #[test]
    fn request_v2_renew() {
        let mut value = request();
        value.is_renew_ack = true;
        value.max_wait_ms = 0;
        value.min_bytes = 0;
        value.max_bytes = 0;
        value.max_records = 0;
        value.topics[0].partitions[0].acknowledgement_batches[0].acknowledge_types =
            vec![AcknowledgeType::Renew];
        let bytes = encode_with(|out| value.write(out, 2));
        let at = expected_head().len();
        assert_eq!(&bytes[at..at + 2], &[0x00, 0x01]); // ShareAcquireMode 0, IsRenewAck true
        // AcknowledgeTypes: 1 x int8 4 (RENEW)
        let types_at = at + 2 + 1 + 16 + 1 + 4 + 1 + 16;
        assert_eq!(&bytes[types_at..types_at + 2], &[0x02, 0x04]);
    }

    #[test]
    fn request_v1_has_no_v2_fields() {
        let mut value = request();
        // Ignorable: silently left out of v1, as the Java client does.
        value.share_acquire_mode = ShareAcquireMode::RecordLimit;
        let v1 = encode_with(|out| value.write(out, 1));
        let v2 = encode_with(|out| value.write(out, 2));
        assert_eq!(v1.len() + 2, v2.len());
        assert_eq!(
            v1,
            [expected_head(), expected_topics_and_forgotten()].concat()
        );
        // Not ignorable: an error in v1.
        value.is_renew_ack = true;
        assert!(matches!(
            value.write(&mut SizeCounter::default(), 1),
            Err(WireError::FieldNotInVersion {
                field: "IsRenewAck",
                version: 1
            })
        ));
        // RENEW does not exist in v1, and needs IsRenewAck in v2.
        let mut renew = request();
        renew.topics[0].partitions[0].acknowledgement_batches[0].acknowledge_types =
            vec![AcknowledgeType::Renew];
        assert!(renew.encode(&mut Vec::new(), 1).is_err());
        assert!(renew.encode(&mut Vec::new(), 2).is_err());
    }

    #[test]
    fn request_unsupported_versions() {
        for version in [-1, 0, 3, i16::MAX] {
            assert!(request().encode(&mut Vec::new(), version).is_err());
            assert!(request().compute_size(version).is_err());
        }
    }

    #[test]
    fn request_round_trip_truncation_and_corruption() {
        let mut v2 = request();
        v2.share_acquire_mode = ShareAcquireMode::RecordLimit;
        v2.is_renew_ack = true;
        v2.topics[0].partitions[0].acknowledgement_batches[0].acknowledge_types =
            vec![AcknowledgeType::Renew];
        for (version, value) in [(1, request()), (2, v2)] {
            let bytes = encode_with(|out| value.write(out, version));
            let decoded = decode_all(&bytes, |r| ShareFetchRequest::read(r, version));
            assert_eq!(decoded.ok(), Some(value));
            assert_every_truncation_fails(&bytes, |r| ShareFetchRequest::read(r, version));
            assert_corruption_never_panics(&bytes, |r| ShareFetchRequest::read(r, version));
        }
        // Unknown enum values are errors.
        let mut bytes = encode_with(|out| request().write(out, 2));
        let mode_at = expected_head().len();
        bytes[mode_at] = 2; // ShareAcquireMode 2 does not exist
        assert!(decode_all(&bytes, |r| ShareFetchRequest::read(r, 2)).is_err());
        let mut bytes = encode_with(|out| request().write(out, 1));
        let types_at = expected_head().len() + 1 + 16 + 1 + 4 + 1 + 8 + 8;
        assert_eq!(bytes[types_at..types_at + 2], [0x04, 1]);
        bytes[types_at + 1] = 9; // acknowledge type 9 does not exist
        assert!(decode_all(&bytes, |r| ShareFetchRequest::read(r, 1)).is_err());
    }

    fn response() -> ShareFetchResponse {
        ShareFetchResponse {
            throttle_time_ms: 0,
            error_code: 0,
            error_message: None,
            acquisition_lock_timeout_ms: 30_000,
            responses: vec![ShareFetchTopicResponse {
                topic_id: topic(0x33),
                partitions: vec![ShareFetchPartitionData {
                    partition_index: 1,
                    error_code: 0,
                    error_message: None,
                    acknowledge_error_code: 124, // INVALID_RECORD_STATE
                    acknowledge_error_message: Some(StrBytes::from_static_str("bad")),
                    current_leader: LeaderIdAndEpoch {
                        leader_id: 5,
                        leader_epoch: 7,
                    },
                    records: Bytes::from_static(&[0xde, 0xad, 0xbe]),
                    acquired_records: vec![AcquiredRecords {
                        first_offset: 100,
                        last_offset: 101,
                        delivery_count: 2,
                    }],
                }],
            }],
            node_endpoints: vec![NodeEndpoint {
                node_id: 5,
                host: StrBytes::from_static_str("h"),
                port: 9092,
                rack: None,
            }],
        }
    }

    fn response_bytes() -> Vec<u8> {
        [
            &[0, 0, 0, 0][..],           // ThrottleTimeMs: int32 0
            &[0, 0],                     // ErrorCode: int16 0
            &[0x00],                     // ErrorMessage: null
            &[0, 0, 0x75, 0x30],         // AcquisitionLockTimeoutMs: int32 30000
            &[0x02],                     // Responses: 1 element
            &[0x33; 16],                 //   TopicId
            &[0x02],                     //   Partitions: 1 element
            &[0, 0, 0, 1],               //     PartitionIndex: int32 1
            &[0, 0],                     //     ErrorCode: int16 0
            &[0x00],                     //     ErrorMessage: null
            &[0, 124],                   //     AcknowledgeErrorCode: int16 124
            b"\x04bad",                  //     AcknowledgeErrorMessage: "bad"
            &[0, 0, 0, 5],               //     CurrentLeader.LeaderId: int32 5
            &[0, 0, 0, 7],               //     CurrentLeader.LeaderEpoch: int32 7
            &[0x00],                     //     CurrentLeader tagged fields
            &[0x04, 0xde, 0xad, 0xbe],   //     Records: compact bytes, 3 bytes
            &[0x02],                     //     AcquiredRecords: 1 element
            &[0, 0, 0, 0, 0, 0, 0, 100], //       FirstOffset: int64 100
            &[0, 0, 0, 0, 0, 0, 0, 101], //       LastOffset: int64 101
            &[0, 2],                     //       DeliveryCount: int16 2
            &[0x00],                     //       AcquiredRecords tagged fields
            &[0x00],                     //     PartitionData tagged fields
            &[0x00],                     //   ShareFetchableTopicResponse tagged fields
            &[0x02],                     // NodeEndpoints: 1 element
            &[0, 0, 0, 5],               //   NodeId: int32 5
            b"\x02h",                    //   Host: "h"
            &[0, 0, 0x23, 0x84],         //   Port: int32 9092
            &[0x00],                     //   Rack: null
            &[0x00],                     //   NodeEndpoint tagged fields
            &[0x00],                     // response tagged fields
        ]
        .concat()
    }

    #[test]
    fn response_layout_both_versions() {
        for version in [1, 2] {
            let decoded = decode_all(&response_bytes(), |r| ShareFetchResponse::read(r, version));
            assert_eq!(decoded.ok(), Some(response()));
            assert_eq!(
                encode_with(|out| response().write(out, version)),
                response_bytes()
            );
            let mut buf = Bytes::from(response_bytes());
            assert!(ShareFetchResponse::decode(&mut buf, version).is_ok());
        }
        let mut buf = Bytes::from(response_bytes());
        assert!(ShareFetchResponse::decode(&mut buf, 0).is_err());
        assert!(ShareFetchResponse::decode(&mut buf, 3).is_err());
    }

    #[test]
    fn response_round_trip() {
        let mut value = response();
        value.error_code = 122;
        value.error_message = Some(StrBytes::from_static_str("SHARE_SESSION_NOT_FOUND"));
        value.responses[0].partitions.push(ShareFetchPartitionData {
            partition_index: 9,
            error_code: 6,
            error_message: None,
            acknowledge_error_code: 0,
            acknowledge_error_message: None,
            current_leader: LeaderIdAndEpoch {
                leader_id: -1,
                leader_epoch: -1,
            },
            records: Bytes::new(),
            acquired_records: vec![],
        });
        value.node_endpoints[0].rack = Some(StrBytes::from_static_str("rack-a"));
        let bytes = encode_with(|out| value.write(out, 2));
        assert_eq!(
            decode_all(&bytes, |r| ShareFetchResponse::read(r, 2)).ok(),
            Some(value)
        );
    }

    #[test]
    fn response_skips_unknown_tagged_fields() {
        let mut bytes = response_bytes();
        // Replace the final (top-level) tagged-field count with one unknown field, tag 7, 2 bytes.
        bytes.pop();
        bytes.extend([0x01, 0x07, 0x02, 0xab, 0xcd]);
        assert_eq!(
            decode_all(&bytes, |r| ShareFetchResponse::read(r, 1)).ok(),
            Some(response())
        );
    }

    #[test]
    fn response_null_records_is_an_error() {
        // `Records` is nullable only in version 0.
        let mut bytes = response_bytes();
        let at = bytes
            .windows(4)
            .position(|window| window == [0x04, 0xde, 0xad, 0xbe])
            .unwrap_or_default();
        bytes.splice(at..at + 4, [0x00]);
        assert!(matches!(
            decode_all(&bytes, |r| ShareFetchResponse::read(r, 1)),
            Err(WireError::Invalid {
                field: "Records",
                ..
            })
        ));
    }

    #[test]
    fn response_truncated_or_corrupt_never_panics() {
        assert_every_truncation_fails(&response_bytes(), |r| ShareFetchResponse::read(r, 2));
        assert_corruption_never_panics(&response_bytes(), |r| ShareFetchResponse::read(r, 2));
        // A huge Records length with nothing behind it.
        let mut bytes = response_bytes();
        let at = bytes
            .windows(4)
            .position(|window| window == [0x04, 0xde, 0xad, 0xbe])
            .unwrap_or_default();
        bytes.truncate(at);
        bytes.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(matches!(
            decode_all(&bytes, |r| ShareFetchResponse::read(r, 2)),
            Err(WireError::Truncated { field: "Records" })
        ));
    }
}
