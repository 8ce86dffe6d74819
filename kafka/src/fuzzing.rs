//! Entry points for the fuzz harness (the workspace's `fuzz/` crate), behind the `fuzzing`
//! feature. Not an API: it follows the internals it exposes, without notice.
//!
//! Each entry point runs exactly the code a Kafka connection runs on what a broker sends: frame
//! reading, response header and body decoding (with the layout scan in front of kafka-protocol),
//! and for ShareFetch the record batches of every partition.

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiVersionsRequest, CreatePartitionsRequest, CreateTopicsRequest, DescribeConfigsRequest,
    FetchRequest, FindCoordinatorRequest, IncrementalAlterConfigsRequest, ListGroupsRequest,
    ListOffsetsRequest, MetadataRequest, ProduceRequest, SaslAuthenticateRequest,
    SaslHandshakeRequest, ShareGroupDescribeRequest, ShareGroupHeartbeatRequest,
};
use kafka_protocol::protocol::{Decodable, Request};

use crate::conn::{self, Call, Versions};
use crate::wire::describe_share_group_offsets::DescribeShareGroupOffsetsRequest;
use crate::wire::records;
use crate::wire::share_acknowledge::ShareAcknowledgeRequest;
use crate::wire::share_fetch::{AcquiredRecords, ShareFetchRequest};
use crate::{admin, cluster, producer, reader, samples, share};

/// One API whose responses the client decodes, and the versions it sends.
#[derive(Debug, Clone)]
pub struct Api {
    /// The API's name.
    pub name: &'static str,
    /// The API key.
    pub key: i16,
    /// Lowest version sent.
    pub min: i16,
    /// Highest version sent.
    pub max: i16,
}

/// Every API whose responses the client decodes, with the version ranges it sends (the same
/// constants the client uses).
pub fn apis() -> Vec<Api> {
    let api = |name, key, v: Versions| Api {
        name,
        key,
        min: v.min,
        max: v.max,
    };
    vec![
        api("ApiVersions", 18, conn::API_VERSIONS),
        api("Metadata", 3, cluster::METADATA),
        api("FindCoordinator", 10, cluster::FIND_COORDINATOR),
        api("ShareGroupHeartbeat", 76, share::HEARTBEAT),
        api("Produce", 0, producer::PRODUCE),
        api("CreateTopics", 19, admin::CREATE_TOPICS),
        api("CreatePartitions", 37, admin::CREATE_PARTITIONS),
        api("DescribeConfigs", 32, admin::DESCRIBE_CONFIGS),
        api(
            "IncrementalAlterConfigs",
            44,
            admin::INCREMENTAL_ALTER_CONFIGS,
        ),
        api("ListOffsets", 2, admin::LIST_OFFSETS),
        api("Fetch", 1, reader::FETCH),
        api("ShareGroupDescribe", 77, admin::SHARE_GROUP_DESCRIBE),
        api("ListGroups", 16, admin::LIST_GROUPS),
        api("SaslHandshake", 17, conn::SASL_HANDSHAKE),
        api("SaslAuthenticate", 36, conn::SASL_AUTHENTICATE),
        api("ShareFetch", 78, share::SHARE_FETCH),
        api("ShareAcknowledge", 79, share::SHARE_ACKNOWLEDGE),
        api(
            "DescribeShareGroupOffsets",
            90,
            admin::DESCRIBE_SHARE_GROUP_OFFSETS,
        ),
    ]
}

/// Valid response frames (header and body, no size prefix) for every API and version of
/// [`apis`]: `(key, version, frame)`.
pub fn samples() -> Vec<(i16, i16, Vec<u8>)> {
    samples::responses()
        .into_iter()
        .map(|sample| (sample.key, sample.version, sample.frame))
        .collect()
}

/// Valid record batches at offsets 0..=5, the second batch compressed with codec `codec`
/// (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
pub fn sample_records(codec: u8) -> Vec<u8> {
    use kafka_protocol::records::Compression;
    samples::records(match codec {
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        _ => Compression::None,
    })
}

fn decode<C: Call>(frame: Bytes, version: i16) -> Result<C::Response, String> {
    conn::decode_frame::<C>(frame, version).map_err(|e| e.to_string())
}

/// Decodes a response frame of API `key` in `version` as the client does; for ShareFetch, also
/// the records of every partition (with `max_decompressed` as the decompression limit). Returns
/// a short description of what was decoded.
pub fn decode_response(
    key: i16,
    version: i16,
    frame: Bytes,
    max_decompressed: usize,
) -> Result<String, String> {
    let shape = |r: &dyn std::fmt::Debug| format!("{r:?}").len().to_string();
    match key {
        18 => decode::<ApiVersionsRequest>(frame, version).map(|r| shape(&r)),
        3 => decode::<MetadataRequest>(frame, version).map(|r| shape(&r)),
        10 => decode::<FindCoordinatorRequest>(frame, version).map(|r| shape(&r)),
        76 => decode::<ShareGroupHeartbeatRequest>(frame, version).map(|r| shape(&r)),
        0 => decode::<ProduceRequest>(frame, version).map(|r| shape(&r)),
        19 => decode::<CreateTopicsRequest>(frame, version).map(|r| shape(&r)),
        37 => decode::<CreatePartitionsRequest>(frame, version).map(|r| shape(&r)),
        32 => decode::<DescribeConfigsRequest>(frame, version).map(|r| shape(&r)),
        44 => decode::<IncrementalAlterConfigsRequest>(frame, version).map(|r| shape(&r)),
        2 => decode::<ListOffsetsRequest>(frame, version).map(|r| shape(&r)),
        1 => {
            // As the reader of the operator tools does: every record from offset 0 on.
            let response = decode::<FetchRequest>(frame, version)?;
            let wanted = [AcquiredRecords {
                first_offset: 0,
                last_offset: i64::MAX,
                delivery_count: 0,
            }];
            let mut outcome = String::new();
            for partition in response.responses.iter().flat_map(|t| &t.partitions) {
                let Some(bytes) = &partition.records else {
                    continue;
                };
                match records::acquired_records_within(bytes, &wanted, max_decompressed) {
                    Ok(found) => outcome.push_str(&format!("{} ", found.records.len())),
                    Err(e) => outcome.push_str(&format!("records: {e} ")),
                }
            }
            Ok(outcome)
        }
        77 => decode::<ShareGroupDescribeRequest>(frame, version).map(|r| shape(&r)),
        16 => decode::<ListGroupsRequest>(frame, version).map(|r| shape(&r)),
        17 => decode::<SaslHandshakeRequest>(frame, version).map(|r| shape(&r)),
        36 => decode::<SaslAuthenticateRequest>(frame, version).map(|r| shape(&r)),
        78 => {
            let response = decode::<ShareFetchRequest>(frame, version)?;
            let mut outcome = String::new();
            for partition in response.responses.iter().flat_map(|t| &t.partitions) {
                // As the session does: only partitions with acquired records.
                if partition.error_code != 0 || partition.acquired_records.is_empty() {
                    continue;
                }
                match records::acquired_records_within(
                    &partition.records,
                    &partition.acquired_records,
                    max_decompressed,
                ) {
                    Ok(found) => outcome.push_str(&format!(
                        "{}/{}/{} ",
                        found.records.len(),
                        found.gaps.len(),
                        found.missing.len()
                    )),
                    Err(e) => outcome.push_str(&format!("records: {e} ")),
                }
            }
            Ok(outcome)
        }
        79 => decode::<ShareAcknowledgeRequest>(frame, version).map(|r| shape(&r)),
        90 => decode::<DescribeShareGroupOffsetsRequest>(frame, version).map(|r| shape(&r)),
        _ => Err(format!("API {key} is not decoded by the client")),
    }
}

/// kafka-protocol's own decoder for the body of API `key` in `version`, without the layout scan:
/// to show what the scan prevents (`fuzz --unguarded`). Never called by the client.
pub fn decode_body_unguarded(key: i16, version: i16, mut body: Bytes) -> Result<(), String> {
    fn raw<R: Request>(body: &mut Bytes, version: i16) -> Result<(), String> {
        R::Response::decode(body, version)
            .map(drop)
            .map_err(|e| e.to_string())
    }
    let body = &mut body;
    match key {
        18 => raw::<ApiVersionsRequest>(body, version),
        3 => raw::<MetadataRequest>(body, version),
        10 => raw::<FindCoordinatorRequest>(body, version),
        76 => raw::<ShareGroupHeartbeatRequest>(body, version),
        0 => raw::<ProduceRequest>(body, version),
        19 => raw::<CreateTopicsRequest>(body, version),
        37 => raw::<CreatePartitionsRequest>(body, version),
        32 => raw::<DescribeConfigsRequest>(body, version),
        44 => raw::<IncrementalAlterConfigsRequest>(body, version),
        2 => raw::<ListOffsetsRequest>(body, version),
        1 => raw::<FetchRequest>(body, version),
        77 => raw::<ShareGroupDescribeRequest>(body, version),
        16 => raw::<ListGroupsRequest>(body, version),
        17 => raw::<SaslHandshakeRequest>(body, version),
        36 => raw::<SaslAuthenticateRequest>(body, version),
        _ => Err(format!("API {key} is not decoded by kafka-protocol")),
    }
}

/// The response header version of API `key` in `version`.
pub fn response_header_version(key: i16, version: i16) -> i16 {
    kafka_protocol::messages::ApiKey::try_from(key)
        .map(|k| k.response_header_version(version))
        .unwrap_or(1)
}

/// Sorts the acquired offsets of `acquired` (first, last, delivery count) in the record batches
/// `records`, as the session does for a ShareFetch partition. Returns (records, gaps, missing).
pub fn acquired_records(
    records: Bytes,
    acquired: &[(i64, i64, i16)],
    max_decompressed: usize,
) -> Result<(usize, usize, usize), String> {
    let acquired: Vec<AcquiredRecords> = acquired
        .iter()
        .map(
            |&(first_offset, last_offset, delivery_count)| AcquiredRecords {
                first_offset,
                last_offset,
                delivery_count,
            },
        )
        .collect();
    records::acquired_records_within(&records, &acquired, max_decompressed)
        .map(|found| (found.records.len(), found.gaps.len(), found.missing.len()))
        .map_err(|e| e.to_string())
}

/// kafka-protocol's own record batch decoder on `records`, without our checks: to show what they
/// prevent (`fuzz --unguarded`). Never called by the client.
pub fn decode_records_unguarded(mut records: Bytes) -> Result<usize, String> {
    kafka_protocol::records::RecordBatchDecoder::decode_all(&mut records)
        .map(|sets| sets.iter().map(|set| set.records.len()).sum())
        .map_err(|e| e.to_string())
}

/// Reads size-prefixed frames off `stream` as a connection does, until its end or an error.
/// Returns the number of whole frames.
pub fn read_frames(stream: &[u8]) -> Result<usize, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let mut rd = stream;
        let mut frames = 0;
        while conn::read_frame(&mut rd, "the fuzz input")
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {
            frames += 1;
        }
        Ok(frames)
    })
}

/// The decompression limit the client uses for a record batch.
pub const MAX_DECOMPRESSED: usize = records::MAX_DECOMPRESSED;
