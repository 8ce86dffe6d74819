//! Valid responses to every request this client sends, in every version it sends, with every
//! field set (arrays with elements, tagged fields present, nulls where allowed): for the layout
//! tests and as seeds of the fuzz harness.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsResponse, BrokerId, CreatePartitionsResponse, CreateTopicsResponse,
    DescribeConfigsResponse, FetchResponse, FindCoordinatorResponse, GroupId,
    IncrementalAlterConfigsResponse, ListGroupsResponse, ListOffsetsResponse, MetadataResponse,
    ProduceResponse, ProducerId, ResponseHeader, SaslAuthenticateResponse, SaslHandshakeResponse,
    ShareGroupDescribeResponse, ShareGroupHeartbeatResponse, TopicName, api_versions_response,
    create_partitions_response, create_topics_response, describe_configs_response, fetch_response,
    find_coordinator_response, incremental_alter_configs_response, list_groups_response,
    list_offsets_response, metadata_response, produce_response, share_group_describe_response,
    share_group_heartbeat_response,
};
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::wire::codec::TopicId;
use super::wire::common::{LeaderIdAndEpoch, NodeEndpoint};
use super::wire::describe_share_group_offsets::{
    DescribeShareGroupOffsetsResponse, DescribeShareGroupOffsetsResponseGroup,
    DescribeShareGroupOffsetsResponsePartition, DescribeShareGroupOffsetsResponseTopic,
};
use super::wire::share_acknowledge::{
    ShareAcknowledgePartitionData, ShareAcknowledgeResponse, ShareAcknowledgeTopicResponse,
};
use super::wire::share_fetch::{
    AcquiredRecords, ShareFetchPartitionData, ShareFetchResponse, ShareFetchTopicResponse,
};

/// One valid response frame (size prefix removed: header, then body).
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// The API key.
    pub(crate) key: i16,
    /// The API version.
    pub(crate) version: i16,
    /// Where the body starts (after the response header).
    #[cfg_attr(not(test), allow(dead_code))] // read by the layout tests
    pub(crate) body_at: usize,
    /// Header and body.
    pub(crate) frame: Vec<u8>,
}

fn s(value: &'static str) -> StrBytes {
    StrBytes::from_static_str(value)
}

const ID: [u8; 16] = [
    0x6b, 0x1d, 0x3c, 0x2a, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc,
];

fn uuid() -> uuid::Uuid {
    uuid::Uuid::from_bytes(ID)
}

fn frame<M: Encodable + HeaderVersion>(key: i16, version: i16, message: &M) -> Sample {
    let mut buf = BytesMut::new();
    let header = ResponseHeader::default().with_correlation_id(7);
    let encoded = header
        .encode(&mut buf, M::header_version(version))
        .and_then(|()| {
            let body_at = buf.len();
            message.encode(&mut buf, version).map(|()| body_at)
        });
    match encoded {
        Ok(body_at) => Sample {
            key,
            version,
            body_at,
            frame: buf.to_vec(),
        },
        // The samples are built to fit their versions: a failure is a bug in this file.
        Err(e) => panic!("sample for API {key} v{version} does not encode: {e}"),
    }
}

/// Every API and version this client decodes, with valid sample responses.
pub(crate) fn responses() -> Vec<Sample> {
    let mut out = Vec::new();
    out.push(frame(18, 3, &api_versions()));
    for v in 12..=13 {
        out.push(frame(3, v, &metadata(v)));
    }
    for v in 4..=6 {
        out.push(frame(10, v, &find_coordinator()));
    }
    out.push(frame(76, 1, &heartbeat(true)));
    out.push(frame(76, 1, &heartbeat(false)));
    for v in 9..=12 {
        out.push(frame(0, v, &produce(v)));
    }
    for v in 5..=7 {
        out.push(frame(19, v, &create_topics(v)));
    }
    for v in 2..=3 {
        out.push(frame(37, v, &create_partitions()));
    }
    for v in 1..=4 {
        out.push(frame(32, v, &describe_configs(v)));
    }
    for v in 0..=1 {
        out.push(frame(44, v, &incremental_alter_configs()));
    }
    for v in 7..=10 {
        out.push(frame(2, v, &list_offsets()));
    }
    for v in 13..=17 {
        out.push(frame(1, v, &fetch(v)));
    }
    out.push(frame(77, 1, &share_group_describe()));
    out.push(frame(16, 5, &list_groups()));
    out.push(frame(17, 1, &sasl_handshake()));
    for v in 1..=2 {
        out.push(frame(36, v, &sasl_authenticate()));
    }
    for v in 1..=2 {
        out.push(frame(78, v, &share_fetch(v)));
    }
    for v in 1..=2 {
        out.push(frame(79, v, &share_acknowledge(v)));
    }
    out.push(frame(90, 1, &describe_share_group_offsets()));
    out
}

fn api_versions() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_api_keys(vec![
            api_versions_response::ApiVersion::default()
                .with_api_key(78)
                .with_min_version(1)
                .with_max_version(2),
            api_versions_response::ApiVersion::default()
                .with_api_key(3)
                .with_min_version(0)
                .with_max_version(13),
        ])
        .with_throttle_time_ms(1)
        .with_supported_features(vec![
            api_versions_response::SupportedFeatureKey::default()
                .with_name(s("share.version"))
                .with_min_version(0)
                .with_max_version(2),
        ])
        .with_finalized_features_epoch(5)
        .with_finalized_features(vec![
            api_versions_response::FinalizedFeatureKey::default()
                .with_name(s("share.version"))
                .with_max_version_level(1)
                .with_min_version_level(1),
        ])
        .with_zk_migration_ready(true)
}

fn metadata(version: i16) -> MetadataResponse {
    let partition = metadata_response::MetadataResponsePartition::default()
        .with_partition_index(2)
        .with_leader_id(BrokerId(1))
        .with_leader_epoch(4)
        .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
        .with_isr_nodes(vec![BrokerId(1)])
        .with_offline_replicas(vec![BrokerId(2)]);
    let response = MetadataResponse::default()
        .with_throttle_time_ms(1)
        .with_brokers(vec![
            metadata_response::MetadataResponseBroker::default()
                .with_node_id(BrokerId(1))
                .with_host(s("localhost"))
                .with_port(9092)
                .with_rack(Some(s("r1"))),
            metadata_response::MetadataResponseBroker::default()
                .with_node_id(BrokerId(2))
                .with_host(s("other"))
                .with_port(9093),
        ])
        .with_cluster_id(Some(s("cluster")))
        .with_controller_id(BrokerId(1))
        .with_topics(vec![
            metadata_response::MetadataResponseTopic::default()
                .with_name(Some(TopicName(s("jobs"))))
                .with_topic_id(uuid())
                .with_is_internal(false)
                .with_partitions(vec![partition.clone(), partition.with_error_code(6)])
                .with_topic_authorized_operations(8),
            metadata_response::MetadataResponseTopic::default().with_error_code(3),
        ]);
    if version >= 13 {
        response.with_error_code(0)
    } else {
        response
    }
}

fn find_coordinator() -> FindCoordinatorResponse {
    FindCoordinatorResponse::default()
        .with_throttle_time_ms(1)
        .with_coordinators(vec![
            find_coordinator_response::Coordinator::default()
                .with_key(s("group"))
                .with_node_id(BrokerId(1))
                .with_host(s("localhost"))
                .with_port(9092),
            find_coordinator_response::Coordinator::default()
                .with_key(s("other"))
                .with_node_id(BrokerId(-1))
                .with_error_code(15)
                .with_error_message(Some(s("not available"))),
        ])
}

fn heartbeat(assigned: bool) -> ShareGroupHeartbeatResponse {
    let response = ShareGroupHeartbeatResponse::default()
        .with_throttle_time_ms(1)
        .with_error_message(Some(s("fine")))
        .with_member_id(Some(s("member")))
        .with_member_epoch(3)
        .with_heartbeat_interval_ms(5000);
    if !assigned {
        return response;
    }
    response.with_assignment(Some(
        share_group_heartbeat_response::Assignment::default().with_topic_partitions(vec![
            share_group_heartbeat_response::TopicPartitions::default()
                .with_topic_id(uuid())
                .with_partitions(vec![0, 1, 2]),
        ]),
    ))
}

fn produce(version: i16) -> ProduceResponse {
    let mut partition = produce_response::PartitionProduceResponse::default()
        .with_index(0)
        .with_base_offset(42)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(0)
        .with_record_errors(vec![
            produce_response::BatchIndexAndErrorMessage::default()
                .with_batch_index(1)
                .with_batch_index_error_message(Some(s("bad record"))),
        ])
        .with_error_message(Some(s("error")));
    let mut response = ProduceResponse::default().with_throttle_time_ms(1);
    if version >= 10 {
        partition = partition.with_current_leader(
            produce_response::LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(2))
                .with_leader_epoch(7),
        );
        response = response.with_node_endpoints(vec![
            produce_response::NodeEndpoint::default()
                .with_node_id(BrokerId(2))
                .with_host(s("localhost"))
                .with_port(9093)
                .with_rack(Some(s("r2"))),
        ]);
    }
    response.with_responses(vec![
        produce_response::TopicProduceResponse::default()
            .with_name(TopicName(s("jobs")))
            .with_partition_responses(vec![partition.clone(), partition.with_index(1)]),
    ])
}

fn create_topics(version: i16) -> CreateTopicsResponse {
    let mut topic = create_topics_response::CreatableTopicResult::default()
        .with_name(TopicName(s("jobs")))
        .with_error_message(Some(s("exists")))
        .with_topic_config_error_code(5)
        .with_num_partitions(3)
        .with_replication_factor(1)
        .with_configs(Some(vec![
            create_topics_response::CreatableTopicConfigs::default()
                .with_name(s("cleanup.policy"))
                .with_value(Some(s("delete")))
                .with_config_source(5),
        ]));
    if version >= 7 {
        topic = topic.with_topic_id(uuid());
    }
    CreateTopicsResponse::default()
        .with_throttle_time_ms(1)
        .with_topics(vec![
            topic,
            create_topics_response::CreatableTopicResult::default()
                .with_name(TopicName(s("other")))
                .with_error_code(36)
                .with_configs(None),
        ])
}

fn create_partitions() -> CreatePartitionsResponse {
    CreatePartitionsResponse::default()
        .with_throttle_time_ms(1)
        .with_results(vec![
            create_partitions_response::CreatePartitionsTopicResult::default()
                .with_name(TopicName(s("jobs")))
                .with_error_code(37)
                .with_error_message(Some(s("invalid"))),
        ])
}

fn describe_configs(version: i16) -> DescribeConfigsResponse {
    let mut config = describe_configs_response::DescribeConfigsResourceResult::default()
        .with_name(s("share.delivery.count.limit"))
        .with_value(Some(s("5")))
        .with_config_source(5)
        .with_synonyms(vec![
            describe_configs_response::DescribeConfigsSynonym::default()
                .with_name(s("group.share.delivery.count.limit"))
                .with_value(Some(s("5")))
                .with_source(5),
        ]);
    if version >= 3 {
        config = config
            .with_config_type(3)
            .with_documentation(Some(s("docs")));
    }
    DescribeConfigsResponse::default()
        .with_throttle_time_ms(1)
        .with_results(vec![
            describe_configs_response::DescribeConfigsResult::default()
                .with_error_message(Some(s("ok")))
                .with_resource_type(32)
                .with_resource_name(s("group"))
                .with_configs(vec![config.clone(), config.with_value(None)]),
        ])
}

fn incremental_alter_configs() -> IncrementalAlterConfigsResponse {
    IncrementalAlterConfigsResponse::default()
        .with_throttle_time_ms(1)
        .with_responses(vec![
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_message(Some(s("ok")))
                .with_resource_type(32)
                .with_resource_name(s("group")),
        ])
}

fn list_offsets() -> ListOffsetsResponse {
    ListOffsetsResponse::default()
        .with_throttle_time_ms(1)
        .with_topics(vec![
            list_offsets_response::ListOffsetsTopicResponse::default()
                .with_name(TopicName(s("jobs")))
                .with_partitions(vec![
                    list_offsets_response::ListOffsetsPartitionResponse::default()
                        .with_partition_index(0)
                        .with_timestamp(-1)
                        .with_offset(10)
                        .with_leader_epoch(2),
                ]),
        ])
}

fn fetch(version: i16) -> FetchResponse {
    let partition = fetch_response::PartitionData::default()
        .with_partition_index(1)
        .with_high_watermark(10)
        .with_diverging_epoch(
            fetch_response::EpochEndOffset::default()
                .with_epoch(2)
                .with_end_offset(3),
        )
        .with_current_leader(
            fetch_response::LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(1))
                .with_leader_epoch(4),
        )
        .with_snapshot_id(
            fetch_response::SnapshotId::default()
                .with_end_offset(5)
                .with_epoch(6),
        )
        .with_aborted_transactions(Some(vec![
            fetch_response::AbortedTransaction::default()
                .with_producer_id(ProducerId(7))
                .with_first_offset(8),
        ]))
        .with_preferred_read_replica(BrokerId(2))
        .with_records(Some(Bytes::from(records(Compression::Zstd))));
    let response = FetchResponse::default()
        .with_throttle_time_ms(1)
        .with_session_id(9)
        .with_responses(vec![
            fetch_response::FetchableTopicResponse::default()
                .with_topic_id(uuid())
                .with_partitions(vec![
                    partition.clone(),
                    partition.with_aborted_transactions(None).with_records(None),
                ]),
        ]);
    if version < 16 {
        return response;
    }
    response.with_node_endpoints(vec![
        fetch_response::NodeEndpoint::default()
            .with_node_id(BrokerId(1))
            .with_host(s("localhost"))
            .with_port(9092)
            .with_rack(Some(s("r1"))),
    ])
}

fn share_group_describe() -> ShareGroupDescribeResponse {
    let member = share_group_describe_response::Member::default()
        .with_member_id(s("member"))
        .with_rack_id(Some(s("r1")))
        .with_member_epoch(3)
        .with_client_id(s("client"))
        .with_client_host(s("/127.0.0.1"))
        .with_subscribed_topic_names(vec![TopicName(s("jobs")), TopicName(s("more"))])
        .with_assignment(
            share_group_describe_response::Assignment::default().with_topic_partitions(vec![
                share_group_describe_response::TopicPartitions::default()
                    .with_topic_id(uuid())
                    .with_topic_name(TopicName(s("jobs")))
                    .with_partitions(vec![0, 1]),
            ]),
        );
    ShareGroupDescribeResponse::default()
        .with_throttle_time_ms(1)
        .with_groups(vec![
            share_group_describe_response::DescribedGroup::default()
                .with_error_message(Some(s("fine")))
                .with_group_id(GroupId(s("group")))
                .with_group_state(s("Stable"))
                .with_group_epoch(4)
                .with_assignment_epoch(4)
                .with_assignor_name(s("simple"))
                .with_members(vec![member.clone(), member.with_rack_id(None)])
                .with_authorized_operations(8),
        ])
}

fn list_groups() -> ListGroupsResponse {
    ListGroupsResponse::default()
        .with_throttle_time_ms(1)
        .with_groups(vec![
            list_groups_response::ListedGroup::default()
                .with_group_id(GroupId(s("group")))
                .with_protocol_type(s("share"))
                .with_group_state(s("Stable"))
                .with_group_type(s("share")),
        ])
}

fn sasl_handshake() -> SaslHandshakeResponse {
    SaslHandshakeResponse::default().with_mechanisms(vec![s("PLAIN"), s("SCRAM-SHA-512")])
}

fn sasl_authenticate() -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_message(Some(s("none")))
        .with_auth_bytes(Bytes::from_static(b"r=nonce,s=c2FsdA==,i=4096"))
        .with_session_lifetime_ms(3_600_000)
}

/// A record for [`batch`].
fn record(offset: i64, value: &'static [u8]) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: -1,
        timestamp: 1_700_000_000_000 + offset,
        key: Some(Bytes::from_static(b"key")),
        value: Some(Bytes::from_static(value)),
        headers: [(s("h"), Some(Bytes::from_static(b"1")))]
            .into_iter()
            .collect(),
    }
}

/// One record batch holding `records`.
pub(crate) fn batch(records: &[Record], compression: Compression) -> Vec<u8> {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    if let Err(e) = RecordBatchEncoder::encode(&mut buf, records, &options) {
        panic!("sample batch does not encode: {e}");
    }
    buf.to_vec()
}

/// Record batches at offsets 0..=5 (two batches, the second compressed with `compression`).
pub(crate) fn records(compression: Compression) -> Vec<u8> {
    let mut out = batch(&[record(0, b"a"), record(2, b"b")], Compression::None);
    out.put_slice(&batch(
        &[record(3, b"c"), record(4, b"dd"), record(5, b"")],
        compression,
    ));
    out
}

fn share_fetch(version: i16) -> ShareFetchResponse {
    let partition = |index: i32, compression: Compression| ShareFetchPartitionData {
        partition_index: index,
        error_code: 0,
        error_message: None,
        acknowledge_error_code: 0,
        acknowledge_error_message: Some(s("ack")),
        current_leader: LeaderIdAndEpoch {
            leader_id: 1,
            leader_epoch: 2,
        },
        records: Bytes::from(records(compression)),
        acquired_records: vec![
            AcquiredRecords {
                first_offset: 0,
                last_offset: 3,
                delivery_count: 1,
            },
            AcquiredRecords {
                first_offset: 5,
                last_offset: 9,
                delivery_count: 2,
            },
        ],
    };
    ShareFetchResponse {
        throttle_time_ms: 1,
        error_code: 0,
        error_message: Some(s("fine")),
        acquisition_lock_timeout_ms: if version >= 2 { 30_000 } else { 0 },
        responses: vec![ShareFetchTopicResponse {
            topic_id: TopicId(ID),
            partitions: vec![
                partition(0, Compression::Gzip),
                partition(1, Compression::Snappy),
                partition(2, Compression::Lz4),
                partition(3, Compression::Zstd),
            ],
        }],
        node_endpoints: vec![NodeEndpoint {
            node_id: 1,
            host: s("localhost"),
            port: 9092,
            rack: Some(s("r1")),
        }],
    }
}

fn share_acknowledge(version: i16) -> ShareAcknowledgeResponse {
    ShareAcknowledgeResponse {
        throttle_time_ms: 1,
        error_code: 0,
        error_message: None,
        acquisition_lock_timeout_ms: (version >= 2).then_some(30_000),
        responses: vec![ShareAcknowledgeTopicResponse {
            topic_id: TopicId(ID),
            partitions: vec![ShareAcknowledgePartitionData {
                partition_index: 0,
                error_code: 0,
                error_message: Some(s("ok")),
                current_leader: LeaderIdAndEpoch {
                    leader_id: 1,
                    leader_epoch: 2,
                },
            }],
        }],
        node_endpoints: vec![NodeEndpoint {
            node_id: 1,
            host: s("localhost"),
            port: 9092,
            rack: None,
        }],
    }
}

fn describe_share_group_offsets() -> DescribeShareGroupOffsetsResponse {
    DescribeShareGroupOffsetsResponse {
        throttle_time_ms: 1,
        groups: vec![DescribeShareGroupOffsetsResponseGroup {
            group_id: s("group"),
            topics: vec![DescribeShareGroupOffsetsResponseTopic {
                topic_name: s("jobs"),
                topic_id: TopicId(ID),
                partitions: vec![DescribeShareGroupOffsetsResponsePartition {
                    partition_index: 0,
                    start_offset: 4,
                    leader_epoch: 1,
                    lag: Some(3),
                    error_code: 0,
                    error_message: None,
                }],
            }],
            error_code: 0,
            error_message: None,
        }],
    }
}
