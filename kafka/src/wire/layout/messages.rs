//! The layouts of the responses this client decodes with kafka-protocol, one per API, each
//! following the Kafka JSON message spec of the versions this client sends.

use kafka_protocol::messages::{
    ApiVersionsResponse, CreatePartitionsResponse, CreateTopicsResponse, DescribeConfigsResponse,
    FetchResponse, FindCoordinatorResponse, IncrementalAlterConfigsResponse, ListGroupsResponse,
    ListOffsetsResponse, MetadataResponse, ProduceResponse, SaslAuthenticateResponse,
    SaslHandshakeResponse, ShareGroupDescribeResponse, ShareGroupHeartbeatResponse,
};

use crate::wire::describe_share_group_offsets::DescribeShareGroupOffsetsResponse;
use crate::wire::share_acknowledge::ShareAcknowledgeResponse;
use crate::wire::share_fetch::ShareFetchResponse;

use super::{Checked, Layout, Ty, between, f, since, tagged, until};
use Ty::{Array, Bool, Bytes, Int8, Int16, Int32, Int64, NullableStruct, String, Struct, Uuid};

/// ApiVersions v3-4 (its response header is v0 in every version).
pub(crate) const API_VERSIONS: Layout = Layout {
    name: "ApiVersionsResponse",
    min: 3,
    max: 4,
    flexible: 3,
    fields: &[
        f("ErrorCode", Int16),
        f(
            "ApiKeys",
            Array(&Struct(&[
                f("ApiKey", Int16),
                f("MinVersion", Int16),
                f("MaxVersion", Int16),
            ])),
        ),
        since(1, "ThrottleTimeMs", Int32),
        tagged(
            0,
            3,
            "SupportedFeatures",
            Array(&Struct(&[
                f("Name", String),
                f("MinVersion", Int16),
                f("MaxVersion", Int16),
            ])),
        ),
        tagged(1, 3, "FinalizedFeaturesEpoch", Int64),
        tagged(
            2,
            3,
            "FinalizedFeatures",
            Array(&Struct(&[
                f("Name", String),
                f("MaxVersionLevel", Int16),
                f("MinVersionLevel", Int16),
            ])),
        ),
        tagged(3, 3, "ZkMigrationReady", Bool),
    ],
};

/// Metadata v9-13.
pub(crate) const METADATA: Layout = Layout {
    name: "MetadataResponse",
    min: 9,
    max: 13,
    flexible: 9,
    fields: &[
        since(3, "ThrottleTimeMs", Int32),
        f(
            "Brokers",
            Array(&Struct(&[
                f("NodeId", Int32),
                f("Host", String),
                f("Port", Int32),
                since(1, "Rack", String),
            ])),
        ),
        since(2, "ClusterId", String),
        since(1, "ControllerId", Int32),
        f(
            "Topics",
            Array(&Struct(&[
                f("ErrorCode", Int16),
                f("Name", String),
                since(10, "TopicId", Uuid),
                since(1, "IsInternal", Bool),
                f(
                    "Partitions",
                    Array(&Struct(&[
                        f("ErrorCode", Int16),
                        f("PartitionIndex", Int32),
                        f("LeaderId", Int32),
                        since(7, "LeaderEpoch", Int32),
                        f("ReplicaNodes", Array(&Int32)),
                        f("IsrNodes", Array(&Int32)),
                        since(5, "OfflineReplicas", Array(&Int32)),
                    ])),
                ),
                since(8, "TopicAuthorizedOperations", Int32),
            ])),
        ),
        between(8, 10, "ClusterAuthorizedOperations", Int32),
        since(13, "ErrorCode", Int16),
    ],
};

/// FindCoordinator v3-6.
pub(crate) const FIND_COORDINATOR: Layout = Layout {
    name: "FindCoordinatorResponse",
    min: 3,
    max: 6,
    flexible: 3,
    fields: &[
        since(1, "ThrottleTimeMs", Int32),
        until(3, "ErrorCode", Int16),
        between(1, 3, "ErrorMessage", String),
        until(3, "NodeId", Int32),
        until(3, "Host", String),
        until(3, "Port", Int32),
        since(
            4,
            "Coordinators",
            Array(&Struct(&[
                f("Key", String),
                f("NodeId", Int32),
                f("Host", String),
                f("Port", Int32),
                f("ErrorCode", Int16),
                f("ErrorMessage", String),
            ])),
        ),
    ],
};

/// ShareGroupHeartbeat v1.
pub(crate) const SHARE_GROUP_HEARTBEAT: Layout = Layout {
    name: "ShareGroupHeartbeatResponse",
    min: 1,
    max: 1,
    flexible: 0,
    fields: &[
        f("ThrottleTimeMs", Int32),
        f("ErrorCode", Int16),
        f("ErrorMessage", String),
        f("MemberId", String),
        f("MemberEpoch", Int32),
        f("HeartbeatIntervalMs", Int32),
        f(
            "Assignment",
            NullableStruct(&[f(
                "TopicPartitions",
                Array(&Struct(&[
                    f("TopicId", Uuid),
                    f("Partitions", Array(&Int32)),
                ])),
            )]),
        ),
    ],
};

/// Produce v9-12.
pub(crate) const PRODUCE: Layout = Layout {
    name: "ProduceResponse",
    min: 9,
    max: 12,
    flexible: 9,
    fields: &[
        f(
            "Responses",
            Array(&Struct(&[
                until(12, "Name", String),
                since(13, "TopicId", Uuid),
                f(
                    "PartitionResponses",
                    Array(&Struct(&[
                        f("Index", Int32),
                        f("ErrorCode", Int16),
                        f("BaseOffset", Int64),
                        f("LogAppendTimeMs", Int64),
                        since(5, "LogStartOffset", Int64),
                        since(
                            8,
                            "RecordErrors",
                            Array(&Struct(&[
                                f("BatchIndex", Int32),
                                f("BatchIndexErrorMessage", String),
                            ])),
                        ),
                        since(8, "ErrorMessage", String),
                        tagged(
                            0,
                            10,
                            "CurrentLeader",
                            Struct(&[f("LeaderId", Int32), f("LeaderEpoch", Int32)]),
                        ),
                    ])),
                ),
            ])),
        ),
        f("ThrottleTimeMs", Int32),
        tagged(
            0,
            10,
            "NodeEndpoints",
            Array(&Struct(&[
                f("NodeId", Int32),
                f("Host", String),
                f("Port", Int32),
                f("Rack", String),
            ])),
        ),
    ],
};

/// CreateTopics v5-7.
pub(crate) const CREATE_TOPICS: Layout = Layout {
    name: "CreateTopicsResponse",
    min: 5,
    max: 7,
    flexible: 5,
    fields: &[
        f("ThrottleTimeMs", Int32),
        f(
            "Topics",
            Array(&Struct(&[
                f("Name", String),
                since(7, "TopicId", Uuid),
                f("ErrorCode", Int16),
                f("ErrorMessage", String),
                tagged(0, 5, "TopicConfigErrorCode", Int16),
                since(5, "NumPartitions", Int32),
                since(5, "ReplicationFactor", Int16),
                since(
                    5,
                    "Configs",
                    Array(&Struct(&[
                        f("Name", String),
                        f("Value", String),
                        f("ReadOnly", Bool),
                        f("ConfigSource", Int8),
                        f("IsSensitive", Bool),
                    ])),
                ),
            ])),
        ),
    ],
};

/// CreatePartitions v0-3.
pub(crate) const CREATE_PARTITIONS: Layout = Layout {
    name: "CreatePartitionsResponse",
    min: 0,
    max: 3,
    flexible: 2,
    fields: &[
        f("ThrottleTimeMs", Int32),
        f(
            "Results",
            Array(&Struct(&[
                f("Name", String),
                f("ErrorCode", Int16),
                f("ErrorMessage", String),
            ])),
        ),
    ],
};

/// DescribeConfigs v1-4.
pub(crate) const DESCRIBE_CONFIGS: Layout = Layout {
    name: "DescribeConfigsResponse",
    min: 1,
    max: 4,
    flexible: 4,
    fields: &[
        f("ThrottleTimeMs", Int32),
        f(
            "Results",
            Array(&Struct(&[
                f("ErrorCode", Int16),
                f("ErrorMessage", String),
                f("ResourceType", Int8),
                f("ResourceName", String),
                f(
                    "Configs",
                    Array(&Struct(&[
                        f("Name", String),
                        f("Value", String),
                        f("ReadOnly", Bool),
                        f("ConfigSource", Int8),
                        f("IsSensitive", Bool),
                        f(
                            "Synonyms",
                            Array(&Struct(&[
                                f("Name", String),
                                f("Value", String),
                                f("Source", Int8),
                            ])),
                        ),
                        since(3, "ConfigType", Int8),
                        since(3, "Documentation", String),
                    ])),
                ),
            ])),
        ),
    ],
};

/// IncrementalAlterConfigs v0-1.
pub(crate) const INCREMENTAL_ALTER_CONFIGS: Layout = Layout {
    name: "IncrementalAlterConfigsResponse",
    min: 0,
    max: 1,
    flexible: 1,
    fields: &[
        f("ThrottleTimeMs", Int32),
        f(
            "Responses",
            Array(&Struct(&[
                f("ErrorCode", Int16),
                f("ErrorMessage", String),
                f("ResourceType", Int8),
                f("ResourceName", String),
            ])),
        ),
    ],
};

/// ListOffsets v6-10.
pub(crate) const LIST_OFFSETS: Layout = Layout {
    name: "ListOffsetsResponse",
    min: 6,
    max: 10,
    flexible: 6,
    fields: &[
        since(2, "ThrottleTimeMs", Int32),
        f(
            "Topics",
            Array(&Struct(&[
                f("Name", String),
                f(
                    "Partitions",
                    Array(&Struct(&[
                        f("PartitionIndex", Int32),
                        f("ErrorCode", Int16),
                        f("Timestamp", Int64),
                        f("Offset", Int64),
                        since(4, "LeaderEpoch", Int32),
                    ])),
                ),
            ])),
        ),
    ],
};

/// ShareGroupDescribe v1.
pub(crate) const SHARE_GROUP_DESCRIBE: Layout = Layout {
    name: "ShareGroupDescribeResponse",
    min: 1,
    max: 1,
    flexible: 0,
    fields: &[
        f("ThrottleTimeMs", Int32),
        f(
            "Groups",
            Array(&Struct(&[
                f("ErrorCode", Int16),
                f("ErrorMessage", String),
                f("GroupId", String),
                f("GroupState", String),
                f("GroupEpoch", Int32),
                f("AssignmentEpoch", Int32),
                f("AssignorName", String),
                f(
                    "Members",
                    Array(&Struct(&[
                        f("MemberId", String),
                        f("RackId", String),
                        f("MemberEpoch", Int32),
                        f("ClientId", String),
                        f("ClientHost", String),
                        f("SubscribedTopicNames", Array(&String)),
                        f(
                            "Assignment",
                            Struct(&[f(
                                "TopicPartitions",
                                Array(&Struct(&[
                                    f("TopicId", Uuid),
                                    f("TopicName", String),
                                    f("Partitions", Array(&Int32)),
                                ])),
                            )]),
                        ),
                    ])),
                ),
                f("AuthorizedOperations", Int32),
            ])),
        ),
    ],
};

/// ListGroups v3-5.
pub(crate) const LIST_GROUPS: Layout = Layout {
    name: "ListGroupsResponse",
    min: 3,
    max: 5,
    flexible: 3,
    fields: &[
        since(1, "ThrottleTimeMs", Int32),
        f("ErrorCode", Int16),
        f(
            "Groups",
            Array(&Struct(&[
                f("GroupId", String),
                f("ProtocolType", String),
                since(4, "GroupState", String),
                since(5, "GroupType", String),
            ])),
        ),
    ],
};

/// SaslHandshake v0-1 (never flexible).
pub(crate) const SASL_HANDSHAKE: Layout = Layout {
    name: "SaslHandshakeResponse",
    min: 0,
    max: 1,
    flexible: i16::MAX,
    fields: &[f("ErrorCode", Int16), f("Mechanisms", Array(&String))],
};

/// SaslAuthenticate v0-2.
pub(crate) const SASL_AUTHENTICATE: Layout = Layout {
    name: "SaslAuthenticateResponse",
    min: 0,
    max: 2,
    flexible: 2,
    fields: &[
        f("ErrorCode", Int16),
        f("ErrorMessage", String),
        f("AuthBytes", Bytes),
        since(1, "SessionLifetimeMs", Int64),
    ],
};

/// Fetch v12-18: the reader of the operator tools (dead letters) sends it, and the tests.
pub(crate) const FETCH: Layout = Layout {
    name: "FetchResponse",
    min: 12,
    max: 18,
    flexible: 12,
    fields: &[
        f("ThrottleTimeMs", Int32),
        f("ErrorCode", Int16),
        f("SessionId", Int32),
        f(
            "Responses",
            Array(&Struct(&[
                until(12, "Topic", String),
                since(13, "TopicId", Uuid),
                f(
                    "Partitions",
                    Array(&Struct(&[
                        f("PartitionIndex", Int32),
                        f("ErrorCode", Int16),
                        f("HighWatermark", Int64),
                        f("LastStableOffset", Int64),
                        f("LogStartOffset", Int64),
                        tagged(
                            0,
                            12,
                            "DivergingEpoch",
                            Struct(&[f("Epoch", Int32), f("EndOffset", Int64)]),
                        ),
                        tagged(
                            1,
                            12,
                            "CurrentLeader",
                            Struct(&[f("LeaderId", Int32), f("LeaderEpoch", Int32)]),
                        ),
                        tagged(
                            2,
                            12,
                            "SnapshotId",
                            Struct(&[f("EndOffset", Int64), f("Epoch", Int32)]),
                        ),
                        f(
                            "AbortedTransactions",
                            Array(&Struct(&[f("ProducerId", Int64), f("FirstOffset", Int64)])),
                        ),
                        f("PreferredReadReplica", Int32),
                        f("Records", Bytes),
                    ])),
                ),
            ])),
        ),
        tagged(
            0,
            16,
            "NodeEndpoints",
            Array(&Struct(&[
                f("NodeId", Int32),
                f("Host", String),
                f("Port", Int32),
                f("Rack", String),
            ])),
        ),
    ],
};

macro_rules! checked {
    ($($response:ty => $layout:expr),* $(,)?) => {
        $(impl Checked for $response {
            const LAYOUT: Option<&'static Layout> = $layout;
        })*
    };
}

checked! {
    ApiVersionsResponse => Some(&API_VERSIONS),
    MetadataResponse => Some(&METADATA),
    FindCoordinatorResponse => Some(&FIND_COORDINATOR),
    ShareGroupHeartbeatResponse => Some(&SHARE_GROUP_HEARTBEAT),
    ProduceResponse => Some(&PRODUCE),
    CreateTopicsResponse => Some(&CREATE_TOPICS),
    CreatePartitionsResponse => Some(&CREATE_PARTITIONS),
    DescribeConfigsResponse => Some(&DESCRIBE_CONFIGS),
    IncrementalAlterConfigsResponse => Some(&INCREMENTAL_ALTER_CONFIGS),
    ListOffsetsResponse => Some(&LIST_OFFSETS),
    ShareGroupDescribeResponse => Some(&SHARE_GROUP_DESCRIBE),
    ListGroupsResponse => Some(&LIST_GROUPS),
    SaslHandshakeResponse => Some(&SASL_HANDSHAKE),
    SaslAuthenticateResponse => Some(&SASL_AUTHENTICATE),
    FetchResponse => Some(&FETCH),
    // Our own codecs check every length as they read.
    ShareFetchResponse => None,
    ShareAcknowledgeResponse => None,
    DescribeShareGroupOffsetsResponse => None,
}
