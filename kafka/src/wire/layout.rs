//! The wire layouts of the kafka-protocol responses this client decodes, and a scan that walks a
//! response along its layout before kafka-protocol decodes it.
//!
//! kafka-protocol's generated decoders trust the sender: an array reserves room for as many
//! elements as its length prefix claims (up to 2^32, each element up to a few hundred bytes)
//! before reading one, and a `String` reserves its claimed length before checking that the bytes
//! are there. A corrupt or hostile response of a few bytes would make the process abort on an
//! allocation of gigabytes. [`Layout::scan`] reads the same fields in the same order as
//! kafka-protocol will (the layouts follow the Kafka JSON message specs, for the versions this
//! client sends; the tests check each one against kafka-protocol's own encoding of every field)
//! and accepts a response only if every array, string and byte field it claims is really there.
//! kafka-protocol then reserves no more elements than the response holds.
//!
//! The scan follows kafka-protocol where it is lenient, so that it never refuses what
//! kafka-protocol would decode: nullability is not checked (kafka-protocol refuses a null where
//! none is allowed), an unsigned varint ends after five bytes whatever the fifth, and a known
//! tagged field is read in place, whatever size it claims. Our own codecs ([`super::share_fetch`]
//! and the others) check lengths as they read and need no scan.
//!
//! # When this module can go
//!
//! It exists only because kafka-protocol (0.18, `protocol/types.rs`: `Array` and
//! `CompactArray` decode with `Vec::with_capacity(n)` for the `n` read off the wire) reserves
//! what a length prefix claims. Remove it, with the scan in `conn.rs`'s `Call` impl and the
//! [`Checked`] impls, once the kafka-protocol version in `Cargo.lock` bounds what it reserves by
//! the bytes left in the buffer (or decodes with `try_reserve` and fails cleanly), for arrays and
//! for strings decoded to `String`. The test `upstream::kafka_protocol_still_reserves_what_a_length_prefix_claims`
//! watches for that: it decodes frames of a few bytes claiming millions of elements and fails,
//! saying this module can go, when the largest allocation no longer follows the claim. Keep the
//! fuzz target `frames` (its 64 MiB allocation limit) running when removing it.

use bytes::Buf;
use kafka_protocol::messages::{
    ApiVersionsResponse, CreatePartitionsResponse, CreateTopicsResponse, DescribeConfigsResponse,
    FetchResponse, FindCoordinatorResponse, IncrementalAlterConfigsResponse, ListGroupsResponse,
    ListOffsetsResponse, MetadataResponse, ProduceResponse, SaslAuthenticateResponse,
    SaslHandshakeResponse, ShareGroupDescribeResponse, ShareGroupHeartbeatResponse,
};

use super::codec::WireError;
use super::describe_share_group_offsets::DescribeShareGroupOffsetsResponse;
use super::share_acknowledge::ShareAcknowledgeResponse;
use super::share_fetch::ShareFetchResponse;

/// The type of a field on the wire. Strings and bytes cover their nullable forms too.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ty {
    Int8,
    Int16,
    Int32,
    Int64,
    Bool,
    Uuid,
    /// `string` or `nullable_string`: int16 length (-1 null), or compact in flexible versions.
    String,
    /// `bytes`, `nullable_bytes` or `records`: int32 length (-1 null), or compact.
    Bytes,
    /// An array (nullable or not): int32 length (-1 null), or compact; then the elements.
    Array(&'static Ty),
    /// A structure: its fields, then (in flexible versions) its tagged fields.
    Struct(&'static [Field]),
    /// A nullable structure: an int8 marker, 1 when the structure follows.
    NullableStruct(&'static [Field]),
}

/// A field: its type, and the versions it is in; a tagged field also has its tag.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    name: &'static str,
    ty: Ty,
    min: i16,
    max: i16,
    tag: Option<u32>,
}

/// A field in every version.
const fn f(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        min: 0,
        max: i16::MAX,
        tag: None,
    }
}

/// A field from version `min` on.
const fn since(min: i16, name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        min,
        max: i16::MAX,
        tag: None,
    }
}

/// A field up to version `max`.
const fn until(max: i16, name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        min: 0,
        max,
        tag: None,
    }
}

/// A field in versions `min..=max`.
const fn between(min: i16, max: i16, name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        min,
        max,
        tag: None,
    }
}

/// A tagged field, from version `min` on.
const fn tagged(tag: u32, min: i16, name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        min,
        max: i16::MAX,
        tag: Some(tag),
    }
}

/// The layout of one response: its fields, the versions this client decodes, and the first
/// flexible version (compact lengths and tagged fields).
#[derive(Debug)]
pub(crate) struct Layout {
    name: &'static str,
    min: i16,
    max: i16,
    flexible: i16,
    fields: &'static [Field],
}

/// A response's layout, for the scan, or none for our own codecs (which check as they read).
pub(crate) trait Checked {
    /// The layout to scan the response along before decoding it.
    const LAYOUT: Option<&'static Layout>;
}

impl Layout {
    /// Walks `body` (the response after its header) along the layout in `version` without
    /// consuming it; an error if a field claims more bytes or elements than there are.
    pub(crate) fn scan<B: Buf>(&self, body: &B, version: i16) -> Result<(), WireError> {
        if !(self.min..=self.max).contains(&version) {
            return Err(WireError::UnsupportedVersion {
                api: self.name,
                version,
            });
        }
        let mut scan = Scan {
            rest: body.chunk(),
            version,
            flexible: version >= self.flexible,
        };
        if scan.rest.len() != body.remaining() {
            return Err(WireError::invalid(self.name, "response not contiguous"));
        }
        scan.fields(self.fields)
    }

    /// How many bytes of `body` the scan reads, for the tests.
    #[cfg(test)]
    fn scanned_len(&self, body: &[u8], version: i16) -> Result<usize, WireError> {
        let mut scan = Scan {
            rest: body,
            version,
            flexible: version >= self.flexible,
        };
        scan.fields(self.fields)?;
        Ok(body.len() - scan.rest.len())
    }
}

struct Scan<'a> {
    rest: &'a [u8],
    version: i16,
    flexible: bool,
}

impl Scan<'_> {
    fn skip(&mut self, len: usize, field: &'static str) -> Result<(), WireError> {
        if self.rest.len() < len {
            return Err(WireError::Truncated { field });
        }
        self.rest = &self.rest[len..];
        Ok(())
    }

    fn int(&mut self, len: usize, field: &'static str) -> Result<i64, WireError> {
        if self.rest.len() < len {
            return Err(WireError::Truncated { field });
        }
        let value = self.rest.get_int(len);
        Ok(value)
    }

    /// An unsigned varint as kafka-protocol reads it: at most five bytes, high bits dropped.
    fn varint(&mut self, field: &'static str) -> Result<u32, WireError> {
        let mut value = 0u32;
        for i in 0..5 {
            let byte = self.int(1, field)? as u8;
            value |= u32::from(byte & 0x7f).wrapping_shl(7 * i);
            if byte < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    /// The length of a string, bytes or array: `None` for null.
    fn len(
        &mut self,
        classic_width: usize,
        field: &'static str,
    ) -> Result<Option<usize>, WireError> {
        if self.flexible {
            return Ok(match self.varint(field)? {
                0 => None,
                n => Some(n as usize - 1),
            });
        }
        match self.int(classic_width, field)? {
            -1 => Ok(None),
            n => usize::try_from(n)
                .map(Some)
                .map_err(|_| WireError::invalid(field, "negative length")),
        }
    }

    fn ty(&mut self, ty: Ty, field: &'static str) -> Result<(), WireError> {
        match ty {
            Ty::Int8 | Ty::Bool => self.skip(1, field),
            Ty::Int16 => self.skip(2, field),
            Ty::Int32 => self.skip(4, field),
            Ty::Int64 => self.skip(8, field),
            Ty::Uuid => self.skip(16, field),
            Ty::String => match self.len(2, field)? {
                None => Ok(()),
                Some(len) => self.skip(len, field),
            },
            Ty::Bytes => match self.len(4, field)? {
                None => Ok(()),
                Some(len) => self.skip(len, field),
            },
            Ty::Array(element) => {
                let Some(len) = self.len(4, field)? else {
                    return Ok(());
                };
                // Every element takes at least one byte (the tests check each layout).
                if len > self.rest.len() {
                    return Err(WireError::invalid(field, "more elements than bytes"));
                }
                for _ in 0..len {
                    self.ty(*element, field)?;
                }
                Ok(())
            }
            Ty::Struct(fields) => self.fields(fields),
            Ty::NullableStruct(fields) => {
                if self.int(1, field)? == 1 {
                    self.fields(fields)
                } else {
                    Ok(())
                }
            }
        }
    }

    fn fields(&mut self, fields: &'static [Field]) -> Result<(), WireError> {
        let version = self.version;
        let present = |field: &&Field| (field.min..=field.max).contains(&version);
        for field in fields.iter().filter(|f| f.tag.is_none()).filter(present) {
            self.ty(field.ty, field.name)?;
        }
        if !self.flexible {
            return Ok(());
        }
        let count = self.varint("tagged fields")?;
        for _ in 0..count {
            let tag = self.varint("tagged fields")?;
            let size = self.varint("tagged fields")? as usize;
            match fields.iter().find(|f| f.tag == Some(tag)) {
                // Read in place, whatever size it claims, as kafka-protocol does.
                Some(field) if present(&field) => self.ty(field.ty, field.name)?,
                Some(field) => {
                    return Err(WireError::FieldNotInVersion {
                        field: field.name,
                        version,
                    });
                }
                None => self.skip(size, "tagged fields")?,
            }
        }
        Ok(())
    }
}

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

#[cfg(test)]
mod upstream;

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::samples;

    fn layout(key: i16) -> Option<&'static Layout> {
        Some(match key {
            18 => &API_VERSIONS,
            3 => &METADATA,
            10 => &FIND_COORDINATOR,
            76 => &SHARE_GROUP_HEARTBEAT,
            0 => &PRODUCE,
            19 => &CREATE_TOPICS,
            37 => &CREATE_PARTITIONS,
            32 => &DESCRIBE_CONFIGS,
            44 => &INCREMENTAL_ALTER_CONFIGS,
            2 => &LIST_OFFSETS,
            1 => &FETCH,
            77 => &SHARE_GROUP_DESCRIBE,
            16 => &LIST_GROUPS,
            17 => &SASL_HANDSHAKE,
            36 => &SASL_AUTHENTICATE,
            _ => return None,
        })
    }

    /// The fewest bytes `ty` takes on the wire, in classic and in flexible versions.
    fn min_size(ty: Ty) -> usize {
        match ty {
            Ty::Int8 | Ty::Bool | Ty::NullableStruct(_) => 1,
            Ty::Int16 => 2,
            Ty::Int32 => 4,
            Ty::Int64 => 8,
            Ty::Uuid => 16,
            // A compact null is one byte.
            Ty::String | Ty::Bytes | Ty::Array(_) => 1,
            // Flexible structures end with a tagged-field count; classic ones have a field.
            Ty::Struct(fields) => fields
                .iter()
                .filter(|f| f.tag.is_none())
                .map(|f| min_size(f.ty))
                .sum::<usize>()
                .max(1),
        }
    }

    fn each_array(fields: &[Field], check: &mut impl FnMut(&'static str, Ty)) {
        for field in fields {
            let mut ty = field.ty;
            if let Ty::Array(element) = ty {
                check(field.name, *element);
                ty = *element;
            }
            if let Ty::Struct(inner) | Ty::NullableStruct(inner) = ty {
                each_array(inner, check);
            }
        }
    }

    /// The scan refuses an array longer than the bytes left: sound only if no element can be
    /// empty. (A classic structure whose fields all start in later versions could be; there is
    /// none.)
    #[test]
    fn every_array_element_takes_a_byte() {
        for layout in [
            &API_VERSIONS,
            &METADATA,
            &FIND_COORDINATOR,
            &SHARE_GROUP_HEARTBEAT,
            &PRODUCE,
            &CREATE_TOPICS,
            &CREATE_PARTITIONS,
            &DESCRIBE_CONFIGS,
            &INCREMENTAL_ALTER_CONFIGS,
            &LIST_OFFSETS,
            &SHARE_GROUP_DESCRIBE,
            &LIST_GROUPS,
            &SASL_HANDSHAKE,
            &SASL_AUTHENTICATE,
            &FETCH,
        ] {
            each_array(layout.fields, &mut |name, element| {
                assert!(min_size(element) >= 1, "{}.{name}", layout.name);
                if let Ty::Struct(fields) = element {
                    for version in layout.min..layout.flexible.min(layout.max + 1) {
                        let present = fields
                            .iter()
                            .any(|f| f.tag.is_none() && (f.min..=f.max).contains(&version));
                        assert!(present, "{}.{name} is empty in v{version}", layout.name);
                    }
                }
            });
        }
    }

    /// Each layout reads exactly the bytes kafka-protocol wrote for a response with every field
    /// set, in every version the client sends; a field missing, extra or in the wrong versions
    /// would make the count differ.
    #[test]
    fn layouts_match_kafka_protocol_encoding() {
        let mut checked = 0;
        for sample in samples::responses() {
            let Some(layout) = layout(sample.key) else {
                continue;
            };
            let body = &sample.frame[sample.body_at..];
            let scanned = layout.scanned_len(body, sample.version);
            assert_eq!(
                scanned.ok(),
                Some(body.len()),
                "{} v{}",
                layout.name,
                sample.version
            );
            checked += 1;
        }
        assert!(checked >= 30, "only {checked} samples");
    }

    /// The samples decode as the client decodes them, our own codecs and the records included.
    #[test]
    fn samples_decode() {
        use crate::conn::decode_frame;
        use crate::wire::records::acquired_records;
        for sample in samples::responses() {
            let frame = Bytes::from(sample.frame.clone());
            let v = sample.version;
            let ok = match sample.key {
                18 => {
                    decode_frame::<kafka_protocol::messages::ApiVersionsRequest>(frame, v).is_ok()
                }
                3 => decode_frame::<kafka_protocol::messages::MetadataRequest>(frame, v).is_ok(),
                78 => {
                    let decoded =
                        decode_frame::<crate::wire::share_fetch::ShareFetchRequest>(frame, v);
                    let Ok(response) = decoded else {
                        panic!("ShareFetch v{v}: {decoded:?}");
                    };
                    for p in response.responses.iter().flat_map(|t| &t.partitions) {
                        let found = acquired_records(&p.records, &p.acquired_records);
                        let Ok(found) = found else {
                            panic!("records of ShareFetch v{v}: {found:?}");
                        };
                        assert_eq!(found.records.len(), 4); // 0, 2, 3 and 5
                        assert_eq!(found.gaps.len(), 1);
                        assert_eq!(found.missing.len(), 1);
                    }
                    true
                }
                _ => continue,
            };
            assert!(ok, "API {} v{v}", sample.key);
        }
    }

    /// Every version the client sends has a layout (else every response fails the scan): a
    /// version range widened without its layout fails here, not on a broker.
    #[test]
    fn layouts_cover_the_versions_sent() {
        use crate::conn::{
            API_VERSIONS as API_VERSIONS_SENT, SASL_AUTHENTICATE as SASL_AUTHENTICATE_SENT,
            SASL_HANDSHAKE as SASL_HANDSHAKE_SENT, Versions,
        };
        use crate::{admin, cluster, producer};
        let sent: [(&Layout, Versions); 14] = [
            (&API_VERSIONS, API_VERSIONS_SENT),
            (&METADATA, cluster::METADATA),
            (&FIND_COORDINATOR, cluster::FIND_COORDINATOR),
            (&PRODUCE, producer::PRODUCE),
            (&CREATE_TOPICS, admin::CREATE_TOPICS),
            (&CREATE_PARTITIONS, admin::CREATE_PARTITIONS),
            (&DESCRIBE_CONFIGS, admin::DESCRIBE_CONFIGS),
            (&INCREMENTAL_ALTER_CONFIGS, admin::INCREMENTAL_ALTER_CONFIGS),
            (&LIST_OFFSETS, admin::LIST_OFFSETS),
            (&SHARE_GROUP_DESCRIBE, admin::SHARE_GROUP_DESCRIBE),
            (&LIST_GROUPS, admin::LIST_GROUPS),
            (&SASL_HANDSHAKE, SASL_HANDSHAKE_SENT),
            (&SASL_AUTHENTICATE, SASL_AUTHENTICATE_SENT),
            (&FETCH, crate::reader::FETCH),
        ];
        let samples = samples::responses();
        for (checked, versions) in sent {
            assert!(
                checked.min <= versions.min && versions.max <= checked.max,
                "{}: sent v{}-v{}, layout v{}-v{}",
                checked.name,
                versions.min,
                versions.max,
                checked.min,
                checked.max
            );
            // And the samples cover every version sent.
            for version in versions.min..=versions.max {
                let covered = samples.iter().any(|s| {
                    s.version == version && layout(s.key).is_some_and(|l| l.name == checked.name)
                });
                assert!(covered, "{} v{version}", checked.name);
            }
        }
        // ShareGroupHeartbeat's range lives in a private module: v1 only.
        assert_eq!(
            (SHARE_GROUP_HEARTBEAT.min, SHARE_GROUP_HEARTBEAT.max),
            (1, 1)
        );
    }

    #[test]
    fn huge_array_prefix_is_refused_before_kafka_protocol() {
        // Metadata v12: ThrottleTimeMs, then Brokers with compact length 2^32 - 2.
        let body = [0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0];
        let result = METADATA.scan(&&body[..], 12);
        assert!(
            matches!(
                result,
                Err(WireError::Invalid {
                    field: "Brokers",
                    ..
                })
            ),
            "{result:?}"
        );
        // The same in a classic version: DescribeConfigs v1, Results with int32 length 2^31 - 1.
        let body = [0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0];
        assert!(DESCRIBE_CONFIGS.scan(&&body[..], 1).is_err());
        // A string claiming more than there is.
        let body = [0, 0, 0, 0, 0x02, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(METADATA.scan(&&body[..], 12).is_err());
    }

    #[test]
    fn versions_outside_the_layout_are_refused() {
        assert!(matches!(
            METADATA.scan(&&[0u8; 64][..], 8),
            Err(WireError::UnsupportedVersion { .. })
        ));
    }
}
