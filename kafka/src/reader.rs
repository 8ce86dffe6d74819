//! Reading a partition without a group, for tools (listing and replaying dead letters): Fetch
//! v13-v17 (by topic id) from the partition's leader, sessionless. Nothing is acquired or
//! committed.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use kafka_protocol::messages::FetchRequest;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};

use super::cluster::Cluster;
use super::conn::Versions;
use super::producer::pause;
use super::wire::records::acquired_records;
use super::wire::share_fetch::AcquiredRecords;
use crate::{Error, KafkaError as _};
use shareworker_core::{Delivery, Header, Headers, RecordId};

/// Fetch versions: v13 fetches by topic id; v18 adds nothing a reader needs.
pub(crate) const FETCH: Versions = Versions { min: 13, max: 17 };
/// Bytes asked for per partition; the broker returns at least one whole batch anyway (KIP-74).
const PARTITION_MAX_BYTES: i32 = 4 << 20;
/// Tries while a partition's leader moves.
const MAX_ATTEMPTS: u32 = 6;

mod code {
    pub(super) const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub(super) const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub(super) const LEADER_NOT_AVAILABLE: i16 = 5;
    pub(super) const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub(super) const FENCED_LEADER_EPOCH: i16 = 74;
    pub(super) const UNKNOWN_LEADER_EPOCH: i16 = 75;
    pub(super) const UNKNOWN_TOPIC_ID: i16 = 100;
}

/// Up to `max` records of `partition` of `topic` from `offset` on (see `BrokerAdmin::read`).
pub(crate) async fn read(
    cluster: &Cluster,
    topic: &str,
    partition: i32,
    mut offset: i64,
    max: usize,
) -> Result<Vec<Delivery>, Error> {
    if topic.is_empty() {
        return Err(Error::invalid_input("the topic name is empty"));
    }
    if max == 0 {
        return Ok(Vec::new());
    }
    let name: Arc<str> = Arc::from(topic);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let meta = cluster.topic(topic).await?;
        let Some(p) = meta.partitions.iter().find(|p| p.index == partition) else {
            return Err(Error::invalid_input(format!(
                "topic `{topic}` has {} partitions; partition {partition} does not exist",
                meta.partitions.len()
            )));
        };
        let api = format!("Fetch `{topic}` partition {partition} at offset {offset}");
        let retry = if p.leader < 0 {
            Error::kafka(&api, code::LEADER_NOT_AVAILABLE, None)
        } else {
            let conn = cluster.node(p.leader).await?;
            let req = FetchRequest::default()
                .with_max_wait_ms(0)
                .with_min_bytes(0)
                .with_isolation_level(0)
                .with_topics(vec![
                    FetchTopic::default()
                        .with_topic_id(meta.id)
                        .with_partitions(vec![
                            FetchPartition::default()
                                .with_partition(partition)
                                .with_current_leader_epoch(p.leader_epoch)
                                .with_fetch_offset(offset)
                                .with_partition_max_bytes(PARTITION_MAX_BYTES),
                        ]),
                ]);
            let (resp, _) = conn.call(&req, FETCH).await?;
            if resp.error_code != 0 {
                return Err(conn.errors().error(&api, resp.error_code, None));
            }
            let data = resp
                .responses
                .iter()
                .filter(|t| t.topic_id == meta.id)
                .flat_map(|t| t.partitions.iter())
                .find(|d| d.partition_index == partition)
                .ok_or_else(|| {
                    Error::broker(format!("{api}: the partition is not in the answer"))
                })?;
            match data.error_code {
                0 => {
                    let bytes = data.records.clone().unwrap_or_default();
                    let wanted = [AcquiredRecords {
                        first_offset: offset,
                        last_offset: i64::MAX,
                        delivery_count: 0,
                    }];
                    let found = acquired_records(&bytes, &wanted).map_err(|e| {
                        Error::broker(format!("{api}: malformed records")).with_source(e)
                    })?;
                    if found.records.is_empty() {
                        // Only control records or compacted-away offsets: read on past them.
                        match found.gaps.last() {
                            Some(gap) if gap.last < data.high_watermark => {
                                offset = gap.last + 1;
                                attempt = 0;
                                continue;
                            }
                            _ => return Ok(Vec::new()),
                        }
                    }
                    return Ok(found
                        .records
                        .into_iter()
                        .take(max)
                        .map(|r| {
                            let mut headers = Headers::new();
                            for (key, value) in r.headers {
                                headers.push_header(Header {
                                    key: key.to_string(),
                                    value,
                                });
                            }
                            Delivery {
                                id: RecordId {
                                    topic: name.clone(),
                                    partition,
                                    offset: r.offset,
                                },
                                key: r.key,
                                value: r.value,
                                headers,
                                timestamp: u64::try_from(r.timestamp).map_or(UNIX_EPOCH, |ms| {
                                    UNIX_EPOCH + Duration::from_millis(ms)
                                }),
                                delivery_count: 0,
                                lock_duration: Duration::ZERO,
                            }
                        })
                        .collect());
                }
                code::OFFSET_OUT_OF_RANGE => {
                    return Err(Error::invalid_input(format!(
                        "offset {offset} is out of range for partition {partition} of `{topic}` \
                         (the log runs from {} to {})",
                        data.log_start_offset, data.high_watermark
                    )));
                }
                c @ (code::UNKNOWN_TOPIC_OR_PARTITION
                | code::LEADER_NOT_AVAILABLE
                | code::NOT_LEADER_OR_FOLLOWER
                | code::FENCED_LEADER_EPOCH
                | code::UNKNOWN_LEADER_EPOCH
                | code::UNKNOWN_TOPIC_ID) => conn.errors().error(&api, c, None),
                c => return Err(conn.errors().error(&api, c, None)),
            }
        };
        if attempt >= MAX_ATTEMPTS {
            return Err(retry);
        }
        tokio::time::sleep(pause(attempt)).await;
        cluster.refresh(&[topic]).await?;
        if cluster.cached_topic(topic).is_none() {
            return Err(Error::unknown_topic(topic));
        }
    }
}
