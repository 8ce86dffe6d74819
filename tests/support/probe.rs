//! A few Kafka requests the tests send on their own, to see the cluster the way the broker does:
//! partition leaders (Metadata), a group's coordinator (FindCoordinator) and a share group's
//! members (ShareGroupDescribe). One connection per call; no retries.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, MetadataRequest, RequestHeader, ResponseHeader,
    ShareGroupDescribeRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `req` at `version` to the broker at `addr` (`host:port`) and reads its answer.
///
/// # Errors
/// When the broker cannot be reached, does not answer within 10 s, or the answer does not decode.
pub async fn call<R>(addr: &str, req: &R, version: i16) -> anyhow::Result<R::Response>
where
    R: Request,
{
    let io = async {
        let mut stream = TcpStream::connect(addr).await?;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(1)
            .with_client_id(Some(StrBytes::from_static_str("shareworker-tests")));
        let mut buf = BytesMut::new();
        header.encode(&mut buf, R::header_version(version))?;
        req.encode(&mut buf, version)?;
        stream.write_i32(i32::try_from(buf.len())?).await?;
        stream.write_all(&buf).await?;
        let len = usize::try_from(stream.read_i32().await?)?;
        let mut frame = vec![0; len];
        stream.read_exact(&mut frame).await?;
        let mut frame = Bytes::from(frame);
        ResponseHeader::decode(&mut frame, R::Response::header_version(version))?;
        R::Response::decode(&mut frame, version)
    };
    tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .with_context(|| format!("API {} to {addr}: no answer within 10 s", R::KEY))?
        .with_context(|| format!("API {} to {addr}", R::KEY))
}

/// The leader of each partition of `topic` (`-1`: none), by partition index.
///
/// # Errors
/// As [`call`]; when the topic is not in the answer or has an error.
pub async fn leaders(addr: &str, topic: &str) -> anyhow::Result<BTreeMap<i32, i32>> {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(topic.to_owned())),
        ))]))
        .with_allow_auto_topic_creation(false);
    let resp = call(addr, &req, 12).await?;
    let t = resp
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .with_context(|| format!("Metadata from {addr} does not list `{topic}`"))?;
    if t.error_code != 0 {
        bail!(
            "Metadata from {addr}: topic `{topic}` has error {}",
            t.error_code
        );
    }
    Ok(t.partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect())
}

/// The broker id of `group`'s coordinator.
///
/// # Errors
/// As [`call`]; when the broker answers with an error (such as COORDINATOR_NOT_AVAILABLE).
pub async fn coordinator(addr: &str, group: &str) -> anyhow::Result<i32> {
    let req = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![StrBytes::from_string(group.to_owned())]);
    let resp = call(addr, &req, 4).await?;
    let c = resp
        .coordinators
        .first()
        .with_context(|| format!("FindCoordinator from {addr} answered nothing"))?;
    if c.error_code != 0 {
        bail!(
            "FindCoordinator for `{group}` from {addr}: error {}",
            c.error_code
        );
    }
    Ok(c.node_id.0)
}

/// A share-group member as its coordinator describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// The member id.
    pub member_id: String,
    /// The member epoch.
    pub member_epoch: i32,
    /// How many partitions it is assigned.
    pub partitions: usize,
}

/// The members of share group `group`, asked of its coordinator at `addr`.
///
/// # Errors
/// As [`call`]; when the coordinator answers with an error (such as NOT_COORDINATOR).
pub async fn share_group_members(addr: &str, group: &str) -> anyhow::Result<Vec<MemberInfo>> {
    let req = ShareGroupDescribeRequest::default()
        .with_group_ids(vec![GroupId(StrBytes::from_string(group.to_owned()))]);
    let resp = call(addr, &req, 1).await?;
    let g = resp
        .groups
        .first()
        .with_context(|| format!("ShareGroupDescribe from {addr} answered nothing"))?;
    if g.error_code != 0 {
        bail!(
            "ShareGroupDescribe of `{group}` from {addr}: error {}",
            g.error_code
        );
    }
    Ok(g.members
        .iter()
        .map(|m| MemberInfo {
            member_id: m.member_id.to_string(),
            member_epoch: m.member_epoch,
            partitions: m
                .assignment
                .topic_partitions
                .iter()
                .map(|t| t.partitions.len())
                .sum(),
        })
        .collect())
}
