//! Administration: topics, share-group configs, share lag and partition offsets.
//!
//! | method | API | sent to |
//! |---|---|---|
//! | [`Admin::create_topic`] | CreateTopics v5-7, CreatePartitions v2-3 | any broker |
//! | [`Admin::lag`] | DescribeShareGroupOffsets v1 | the group coordinator |
//! | [`Admin::group_limits`] | DescribeConfigs v1-4 on GROUP, else BROKER | any broker / the coordinator |
//! | [`Admin::configure_group`] | IncrementalAlterConfigs v0-1 on GROUP | any broker |
//! | [`Admin::list_offsets`] | ListOffsets v7-10 | each partition leader |
//! | [`Admin::describe_group`] | ShareGroupDescribe v1, DescribeShareGroupOffsets v1 | the group coordinator |
//! | [`Admin::list_groups`] | ListGroups v5 (type `share`) | every broker |
//! | [`Admin::group_configs`] | DescribeConfigs v1-4 on GROUP | any broker |
//!
//! The methods live in child modules by subject: `topics`, `groups`, `configs`, `offsets`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DescribeConfigsRequest, GroupId,
    IncrementalAlterConfigsRequest, ListGroupsRequest, ListOffsetsRequest,
    ShareGroupDescribeRequest, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::time::Instant;

use super::cluster::Cluster;
use super::conn::Versions;
use super::producer::pause;
use super::stats::ErrorCounts;
use super::wire::describe_share_group_offsets::{
    DescribeShareGroupOffsetsRequest, DescribeShareGroupOffsetsRequestGroup,
    DescribeShareGroupOffsetsResponseTopic,
};
use crate::Error;
use shareworker_core::{
    GroupConfig, GroupDescription, GroupLimits, GroupMember, SharePartitionState, TopicLag,
};

mod configs;
mod groups;
mod offsets;
#[cfg(test)]
mod tests;
mod topics;

use configs::describe_configs;
#[cfg(test)]
use configs::limits_from;
#[cfg(test)]
use groups::sum_lag;
#[cfg(test)]
use shareworker_core::{StartFrom, settings_of as group_settings};

/// How long `configure_group` waits for a change to become visible.
const CONFIG_PROPAGATION: Duration = Duration::from_secs(10);
pub(crate) const CREATE_TOPICS: Versions = Versions { min: 5, max: 7 };
pub(crate) const CREATE_PARTITIONS: Versions = Versions { min: 2, max: 3 };
pub(crate) const DESCRIBE_CONFIGS: Versions = Versions { min: 1, max: 4 };
pub(crate) const INCREMENTAL_ALTER_CONFIGS: Versions = Versions { min: 0, max: 1 };
pub(crate) const LIST_OFFSETS: Versions = Versions { min: 7, max: 10 };
/// ShareGroupDescribe: v1 is the only stable version (Kafka 4.1+).
pub(crate) const SHARE_GROUP_DESCRIBE: Versions = Versions { min: 1, max: 1 };
/// ListGroups v5 filters by group type.
pub(crate) const LIST_GROUPS: Versions = Versions { min: 5, max: 5 };
/// v1 carries `Lag` (KIP-1226, Kafka 4.2).
pub(crate) const DESCRIBE_SHARE_GROUP_OFFSETS: Versions = Versions { min: 1, max: 1 };

/// How long the broker may take to create topics or partitions.
const ADMIN_TIMEOUT_MS: i32 = 30_000;
/// How long [`Admin::create_topic`] waits for metadata to show the topic with leaders.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts of a request to the group coordinator, or to partition leaders.
const MAX_ATTEMPTS: u32 = 6;

/// Config resource types.
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_GROUP: i8 = 32;
const RESOURCE_TOPIC: i8 = 2;
/// IncrementalAlterConfigs operation SET.
const OP_SET: i8 = 0;
/// ListOffsets timestamps asking for the log start and the high watermark.
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;

/// Share-group config keys (group level) and the broker-wide defaults behind them.
const DELIVERY_COUNT_LIMIT: &str = "share.delivery.count.limit";
const LOCK_DURATION_MS: &str = "share.record.lock.duration.ms";
const MAX_RECORD_LOCKS: &str = "share.partition.max.record.locks";
const AUTO_OFFSET_RESET: &str = "share.auto.offset.reset";
#[cfg(test)]
const ASSIGNMENT_INTERVAL_MS: &str = "share.assignment.interval.ms";
/// The group's broker-side dead-letter topic (KIP-1191, Kafka 4.4).
const DEAD_LETTER_TOPIC: &str = "errors.deadletterqueue.topic.name";
/// The topic config that lets the broker write share groups' dead letters there (KIP-1191).
const DEAD_LETTER_ENABLE: &str = "errors.deadletterqueue.group.enable";
const BROKER_DELIVERY_COUNT_LIMIT: &str = "group.share.delivery.count.limit";
const BROKER_LOCK_DURATION_MS: &str = "group.share.record.lock.duration.ms";
const BROKER_MAX_RECORD_LOCKS: &str = "group.share.partition.max.record.locks";

/// Kafka error codes handled here.
mod code {
    #[cfg_attr(not(test), allow(dead_code))] // used by tests and the coming CLI
    pub(super) const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    #[cfg_attr(not(test), allow(dead_code))] // used by tests and the coming CLI
    pub(super) const LEADER_NOT_AVAILABLE: i16 = 5;
    #[cfg_attr(not(test), allow(dead_code))] // used by tests and the coming CLI
    pub(super) const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub(super) const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub(super) const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub(super) const NOT_COORDINATOR: i16 = 16;
    pub(super) const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub(super) const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub(super) const INVALID_PARTITIONS: i16 = 37;
    pub(super) const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub(super) const INVALID_CONFIG: i16 = 40;
    pub(super) const INVALID_REQUEST: i16 = 42;
    pub(super) const GROUP_ID_NOT_FOUND: i16 = 69;
    pub(super) const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    pub(super) const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    pub(super) const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
}

/// Whether the coordinator moved or is not ready yet: find it again and retry.
fn coordinator_moved(code: Option<i16>) -> bool {
    matches!(
        code,
        Some(
            code::COORDINATOR_LOAD_IN_PROGRESS
                | code::COORDINATOR_NOT_AVAILABLE
                | code::NOT_COORDINATOR
        )
    )
}

/// Whether a partition's leader moved or is not known yet: refresh metadata and retry.
#[cfg_attr(not(test), allow(dead_code))] // used by tests and the coming CLI
fn leader_moved(code: i16) -> bool {
    matches!(
        code,
        code::UNKNOWN_TOPIC_OR_PARTITION
            | code::LEADER_NOT_AVAILABLE
            | code::NOT_LEADER_OR_FOLLOWER
    )
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Topic, group and config administration.
pub(crate) struct Admin {
    cluster: Arc<Cluster>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

impl Admin {
    /// Administration over `cluster`.
    pub(crate) fn new(cluster: Arc<Cluster>) -> Self {
        Self { cluster }
    }
}

/// Whether a CreateTopics error code means the caller's name or count was refused.
fn refused_input(code: i16) -> bool {
    matches!(
        code,
        code::INVALID_TOPIC_EXCEPTION
            | code::INVALID_PARTITIONS
            | code::INVALID_REPLICATION_FACTOR
            | code::INVALID_CONFIG
            | code::INVALID_REQUEST
    )
}

/// An `is_invalid_input` error with the broker's error name and message.
fn invalid_input(errors: &ErrorCounts, what: &str, code: i16, message: Option<&str>) -> Error {
    Error::invalid_input(errors.error(what, code, message).to_string())
}

/// The bootstrap address of the real broker for tests, from `KAFKA_BOOTSTRAP` (`host:port`).
///
/// Unset: prints "skipped: set KAFKA_BOOTSTRAP" and answers `None`, so the test returns early;
/// but when `CI` is set a missing broker is a failure, never a silent skip.
#[cfg(test)]
pub(crate) fn test_bootstrap() -> Option<String> {
    match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(b) if !b.trim().is_empty() => Some(b.trim().to_owned()),
        _ if std::env::var_os("CI").is_some() => {
            panic!("the Kafka broker is missing: CI is set but KAFKA_BOOTSTRAP is not")
        }
        _ => {
            eprintln!("skipped: set KAFKA_BOOTSTRAP");
            None
        }
    }
}

/// A cluster connected to [`test_bootstrap`], or `None` when the test is skipped.
#[cfg(test)]
pub(crate) async fn test_cluster() -> Option<Arc<Cluster>> {
    let bootstrap = test_bootstrap()?;
    let url = if bootstrap.starts_with("kafka://") {
        bootstrap
    } else {
        format!("kafka://{bootstrap}")
    };
    let mut config = super::client::ClientConfig::from_url(&url)
        .unwrap_or_else(|e| panic!("KAFKA_BOOTSTRAP `{url}`: {e}"));
    config.client_id = "shareworker-test".to_owned();
    match Cluster::connect(config).await {
        Ok(c) => Some(c),
        Err(e) => panic!("cannot reach the Kafka broker at {url}: {e:?}"),
    }
}

/// A name no other test run uses: `prefix-<pid>-<nanos>`.
#[cfg(test)]
pub(crate) fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{}-{nanos}", std::process::id())
}
