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
use super::wire::describe_share_group_offsets::{
    DescribeShareGroupOffsetsRequest, DescribeShareGroupOffsetsRequestGroup,
    DescribeShareGroupOffsetsResponseTopic,
};
use crate::Error;
use crate::broker::{
    GroupConfig, GroupDescription, GroupLimits, GroupMember, SharePartitionState, StartFrom,
    TopicLag,
};

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

    /// Creates `topic` with `partitions` partitions (replication factor: the broker's default),
    /// or, when it exists with fewer partitions, adds partitions up to `partitions`; a topic with
    /// as many or more is left alone. Returns once metadata shows every partition with a leader.
    ///
    /// # Errors
    /// `is_invalid_input` for an empty name, a partition count below 1, or a name or count the
    /// broker refuses (with its message); `is_timeout` when the partitions get no leader within
    /// 10 s; a broker error otherwise.
    pub(crate) async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        if topic.is_empty() {
            return Err(Error::invalid_input("the topic name is empty"));
        }
        if partitions < 1 {
            return Err(Error::invalid_input(format!(
                "topic `{topic}`: the partition count must be at least 1, not {partitions}"
            )));
        }
        // A topic that is there already needs no CreateTopics, so no Create ACL either: a
        // principal allowed only to write to its dead-letter topic can still start.
        if self.cluster.refresh(&[topic]).await.is_ok()
            && let Some(meta) = self.cluster.cached_topic(topic)
            && i32::try_from(meta.partitions.len()).unwrap_or(i32::MAX) >= partitions
            && meta.partitions.iter().all(|p| p.leader >= 0)
        {
            return Ok(());
        }
        let req = CreateTopicsRequest::default()
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(TopicName(str_bytes(topic)))
                    .with_num_partitions(partitions)
                    .with_replication_factor(-1),
            ])
            .with_timeout_ms(ADMIN_TIMEOUT_MS)
            .with_validate_only(false);
        let (resp, _) = self.cluster.any().await?.call(&req, CREATE_TOPICS).await?;
        let result = resp
            .topics
            .iter()
            .find(|t| t.name.0.as_str() == topic)
            .ok_or_else(|| Error::broker(format!("CreateTopics did not answer for `{topic}`")))?;
        let message = result.error_message.as_ref().map(|m| m.as_str());
        match result.error_code {
            0 => {}
            code::TOPIC_ALREADY_EXISTS => self.grow_topic(topic, partitions).await?,
            c if refused_input(c) => {
                return Err(invalid_input(
                    &format!("creating topic `{topic}`"),
                    c,
                    message,
                ));
            }
            c => return Err(Error::kafka(&format!("CreateTopics `{topic}`"), c, message)),
        }
        self.wait_for_leaders(topic, partitions).await
    }

    /// Adds partitions to an existing `topic` so that it has at least `partitions`.
    async fn grow_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        self.cluster.refresh(&[topic]).await?;
        let Some(meta) = self.cluster.cached_topic(topic) else {
            // Being deleted, or not visible yet: wait_for_leaders decides.
            return Ok(());
        };
        if i32::try_from(meta.partitions.len()).unwrap_or(i32::MAX) >= partitions {
            return Ok(());
        }
        let req = CreatePartitionsRequest::default()
            .with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(TopicName(str_bytes(topic)))
                    .with_count(partitions)
                    // Null: the broker places the new partitions (an empty list means none given).
                    .with_assignments(None),
            ])
            .with_timeout_ms(ADMIN_TIMEOUT_MS)
            .with_validate_only(false);
        let (resp, _) = self
            .cluster
            .any()
            .await?
            .call(&req, CREATE_PARTITIONS)
            .await?;
        let result = resp
            .results
            .iter()
            .find(|t| t.name.0.as_str() == topic)
            .ok_or_else(|| {
                Error::broker(format!("CreatePartitions did not answer for `{topic}`"))
            })?;
        let message = result.error_message.as_ref().map(|m| m.as_str());
        match result.error_code {
            0 => Ok(()),
            // Someone else grew it meanwhile; wait_for_leaders checks the count.
            code::INVALID_PARTITIONS => Ok(()),
            c => Err(Error::kafka(
                &format!("CreatePartitions `{topic}` to {partitions}"),
                c,
                message,
            )),
        }
    }

    /// Waits until metadata shows at least `partitions` partitions of `topic`, each with a leader.
    async fn wait_for_leaders(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        let deadline = Instant::now() + TOPIC_READY_TIMEOUT;
        loop {
            let seen = match self.cluster.refresh(&[topic]).await {
                Ok(()) => match self.cluster.cached_topic(topic) {
                    Some(meta) => {
                        let count = i32::try_from(meta.partitions.len()).unwrap_or(i32::MAX);
                        let led = meta.partitions.iter().filter(|p| p.leader >= 0).count();
                        if count >= partitions && led == meta.partitions.len() {
                            return Ok(());
                        }
                        format!("{count} partitions, {led} with a leader")
                    }
                    None => "not in metadata".to_owned(),
                },
                // LEADER_NOT_AVAILABLE and the like while the topic is being created.
                Err(e) if e.kafka_code().is_some() => e.to_string(),
                Err(e) => return Err(e),
            };
            if Instant::now() >= deadline {
                return Err(Error::timeout(format!(
                    "topic `{topic}` did not get {partitions} partitions with leaders within \
                     {TOPIC_READY_TIMEOUT:?} (last seen: {seen})"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Share lag of `group` per topic (KIP-1226): records not yet delivery-complete, in-flight
    /// ones included, summed over partitions.
    ///
    /// A partition whose share start offset is not initialised yet (the broker answers lag -1: the
    /// group has not fetched from it) is listed with lag 0. An unknown group has no lag: the list
    /// is empty. Topics are sorted by name, partitions by index.
    ///
    /// # Errors
    /// A broker error, or `is_timeout` when the coordinator stays unavailable.
    pub(crate) async fn lag(&self, group: &str) -> Result<Vec<TopicLag>, Error> {
        let api = format!("DescribeShareGroupOffsets for group `{group}`");
        let topics = self.share_offsets(group).await?;
        let resolved = self.uninitialised_lag(group, &topics).await?;
        sum_lag(&api, topics, &resolved)
    }

    /// The share-partition start offsets and lag of `group` (DescribeShareGroupOffsets v1), as
    /// the coordinator answers them; an unknown group has none.
    async fn share_offsets(
        &self,
        group: &str,
    ) -> Result<Vec<DescribeShareGroupOffsetsResponseTopic>, Error> {
        if group.is_empty() {
            return Err(Error::invalid_input("the group id is empty"));
        }
        let req = DescribeShareGroupOffsetsRequest {
            groups: vec![DescribeShareGroupOffsetsRequestGroup {
                group_id: str_bytes(group),
                topics: None,
            }],
        };
        let api = format!("DescribeShareGroupOffsets for group `{group}`");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let id = self.coordinator_id(group).await?;
            let retry = match self.cluster.node(id).await {
                // The coordinator is unreachable: look it up again.
                Err(e) => e,
                Ok(conn) => {
                    // A broker without v1 (Kafka 4.1 and older) is an error, not a retry.
                    conn.pick(
                        DescribeShareGroupOffsetsRequest::KEY,
                        DESCRIBE_SHARE_GROUP_OFFSETS,
                    )?;
                    match conn.call(&req, DESCRIBE_SHARE_GROUP_OFFSETS).await {
                        Ok((resp, _)) => {
                            let answer = resp
                                .groups
                                .into_iter()
                                .find(|g| g.group_id.as_str() == group)
                                .ok_or_else(|| {
                                    Error::broker(format!("{api}: the group is not in the answer"))
                                })?;
                            let message = answer.error_message.as_ref().map(|m| m.as_str());
                            match answer.error_code {
                                0 => return Ok(answer.topics),
                                code::GROUP_ID_NOT_FOUND => return Ok(Vec::new()),
                                c if coordinator_moved(Some(c)) => Error::kafka(&api, c, message),
                                c => return Err(Error::kafka(&api, c, message)),
                            }
                        }
                        Err(e) if e.is_timeout() => return Err(e),
                        // The connection broke: maybe the coordinator went away.
                        Err(e) => e,
                    }
                }
            };
            self.cluster.forget_coordinator(group);
            if attempt >= MAX_ATTEMPTS {
                return Err(retry);
            }
            tokio::time::sleep(pause(attempt)).await;
        }
    }

    /// `group` for operators: ShareGroupDescribe v1 (state, members, assignments) from the
    /// coordinator, then the start offsets and lag of every partition it has read.
    ///
    /// # Errors
    /// `is_unknown_group` when the coordinator knows no share group of that id (never joined,
    /// or a consumer group of that name); a broker error otherwise.
    pub(crate) async fn describe_group(&self, group: &str) -> Result<GroupDescription, Error> {
        if group.is_empty() {
            return Err(Error::invalid_input("the group id is empty"));
        }
        let req = ShareGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(str_bytes(group))])
            .with_include_authorized_operations(false);
        let api = format!("ShareGroupDescribe for group `{group}`");
        let mut attempt = 0;
        let described = loop {
            attempt += 1;
            let id = self.coordinator_id(group).await?;
            let retry = match self.cluster.node(id).await {
                Err(e) => e,
                Ok(conn) => match conn.call(&req, SHARE_GROUP_DESCRIBE).await {
                    Ok((resp, _)) => {
                        let answer = resp
                            .groups
                            .into_iter()
                            .find(|g| g.group_id.0.as_str() == group)
                            .ok_or_else(|| {
                                Error::broker(format!("{api}: the group is not in the answer"))
                            })?;
                        let message = answer.error_message.as_ref().map(|m| m.as_str());
                        match answer.error_code {
                            0 if answer.group_state.as_str() == "Dead" => {
                                return Err(Error::unknown_group(group));
                            }
                            0 => break answer,
                            code::GROUP_ID_NOT_FOUND => {
                                let why = message.filter(|m| !m.is_empty()).map_or_else(
                                    || format!("share group `{group}` does not exist"),
                                    |m| format!("share group `{group}` does not exist: {m}"),
                                );
                                return Err(Error::unknown_group(group).with_message(why));
                            }
                            c if coordinator_moved(Some(c)) => Error::kafka(&api, c, message),
                            c => return Err(Error::kafka(&api, c, message)),
                        }
                    }
                    Err(e) if e.is_timeout() => return Err(e),
                    Err(e) => e,
                },
            };
            self.cluster.forget_coordinator(group);
            if attempt >= MAX_ATTEMPTS {
                return Err(retry);
            }
            tokio::time::sleep(pause(attempt)).await;
        };
        let mut members: Vec<GroupMember> = described
            .members
            .into_iter()
            .map(|m| {
                let mut topics: Vec<String> = m
                    .subscribed_topic_names
                    .iter()
                    .map(|t| t.0.as_str().to_owned())
                    .collect();
                topics.sort();
                let mut assignment: Vec<(String, i32)> = m
                    .assignment
                    .topic_partitions
                    .iter()
                    .flat_map(|tp| {
                        let name = tp.topic_name.0.as_str().to_owned();
                        tp.partitions.iter().map(move |p| (name.clone(), *p))
                    })
                    .collect();
                assignment.sort();
                GroupMember {
                    member_id: m.member_id.as_str().to_owned(),
                    client_id: m.client_id.as_str().to_owned(),
                    host: m.client_host.as_str().to_owned(),
                    topics,
                    assignment,
                }
            })
            .collect();
        members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        let topics = self.share_offsets(group).await?;
        let resolved = self.uninitialised_lag(group, &topics).await?;
        let mut partitions = Vec::new();
        for t in topics {
            let name = t.topic_name.as_str().to_owned();
            for p in t.partitions {
                if p.error_code != 0 {
                    return Err(Error::kafka(
                        &format!(
                            "DescribeShareGroupOffsets for group `{group}`, topic `{name}` partition {}",
                            p.partition_index
                        ),
                        p.error_code,
                        p.error_message.as_ref().map(|m| m.as_str()),
                    ));
                }
                let lag = u64::try_from(p.lag.unwrap_or(-1)).unwrap_or_else(|_| {
                    resolved
                        .get(&(name.clone(), p.partition_index))
                        .copied()
                        .unwrap_or(0)
                });
                let start = (p.start_offset >= 0).then_some(p.start_offset);
                partitions.push(SharePartitionState::new(
                    name.clone(),
                    p.partition_index,
                    start,
                    lag,
                ));
            }
        }
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(GroupDescription {
            group: group.to_owned(),
            state: described.group_state.as_str().to_owned(),
            members,
            partitions,
        })
    }

    /// The share groups of the cluster: ListGroups v5 (type `share`) to every broker.
    ///
    /// # Errors
    /// When a broker cannot be reached or refuses.
    pub(crate) async fn list_groups(&self) -> Result<Vec<String>, Error> {
        self.cluster.refresh(&[]).await?;
        let req = ListGroupsRequest::default()
            .with_states_filter(Vec::new())
            .with_types_filter(vec![StrBytes::from_static_str("share")]);
        let mut groups = Vec::new();
        for id in self.cluster.node_ids() {
            let conn = self.cluster.node(id).await?;
            let (resp, _) = conn.call(&req, LIST_GROUPS).await?;
            if resp.error_code != 0 {
                return Err(Error::kafka(
                    &format!("ListGroups on broker {id}"),
                    resp.error_code,
                    None,
                ));
            }
            groups.extend(
                resp.groups
                    .into_iter()
                    .map(|g| g.group_id.0.as_str().to_owned()),
            );
        }
        groups.sort();
        groups.dedup();
        Ok(groups)
    }

    /// Every `share.*` config of `group` (DescribeConfigs on the GROUP resource), sorted by name.
    ///
    /// # Errors
    /// A broker error.
    pub(crate) async fn group_configs(&self, group: &str) -> Result<Vec<(String, String)>, Error> {
        if group.is_empty() {
            return Err(Error::invalid_input("the group id is empty"));
        }
        let conn = self.cluster.any().await?;
        let mut out: Vec<(String, String)> = describe_configs(&conn, RESOURCE_GROUP, group, None)
            .await?
            .into_iter()
            .filter(|(k, _)| k.starts_with("share."))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Lag of partitions whose share start offset is not initialised yet (Kafka answers -1 until
    /// the group's first acknowledgement there): the whole partition when the group starts at
    /// the earliest offset (every record is still to be delivered, in-flight ones included),
    /// nothing when it starts at the latest.
    async fn uninitialised_lag(
        &self,
        group: &str,
        topics: &[DescribeShareGroupOffsetsResponseTopic],
    ) -> Result<HashMap<(String, i32), u64>, Error> {
        let mut out = HashMap::new();
        let unknown: Vec<(&str, i32)> = topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .filter(|p| p.error_code == 0 && p.lag.unwrap_or(-1) < 0)
                    .map(move |p| (t.topic_name.as_str(), p.partition_index))
            })
            .collect();
        if unknown.is_empty() {
            return Ok(out);
        }
        let conn = self.cluster.any().await?;
        let configs = match describe_configs(
            &conn,
            RESOURCE_GROUP,
            group,
            Some(&[AUTO_OFFSET_RESET]),
        )
        .await
        {
            Ok(c) => c,
            // Without DescribeConfigs on the group, where it starts is unknown: count these
            // partitions as the default (`latest`) does until the group's first
            // acknowledgement there.
            Err(e) if e.is_not_authorized() => {
                tracing::debug!(group, error = %e, "cannot read share.auto.offset.reset; counting uninitialised partitions as lag 0");
                HashMap::new()
            }
            Err(e) => return Err(e),
        };
        let reset = configs
            .get(AUTO_OFFSET_RESET)
            .map_or("latest", String::as_str);
        if reset == "latest" {
            return Ok(out);
        }
        // `earliest`, or `by_duration:` (bounded above by the whole partition).
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in unknown {
            by_topic.entry(t).or_default().push(p);
        }
        for (topic, partitions) in by_topic {
            for (p, earliest, latest) in self.list_offsets(topic).await? {
                if partitions.contains(&p) {
                    let lag = u64::try_from(latest - earliest).unwrap_or(0);
                    out.insert((topic.to_owned(), p), lag);
                }
            }
        }
        Ok(out)
    }

    /// `group`'s coordinator, retried while it is loading or not available yet (a fresh cluster
    /// creates `__consumer_offsets` on the first lookup).
    async fn coordinator_id(&self, group: &str) -> Result<i32, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.cluster.coordinator(group).await {
                Ok(id) => return Ok(id),
                Err(e) if coordinator_moved(e.kafka_code()) && attempt < MAX_ATTEMPTS => {
                    tokio::time::sleep(pause(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The limits the broker applies to `group`: the group's own configs, else the broker-wide
    /// `group.share.*` ones (Kafka 4.2 has no group-level delivery count or lock limits), else
    /// Kafka's defaults.
    ///
    /// # Errors
    /// A broker error, or a value the broker answered that is not a number in range.
    pub(crate) async fn group_limits(&self, group: &str) -> Result<GroupLimits, Error> {
        if group.is_empty() {
            return Err(Error::invalid_input("the group id is empty"));
        }
        let keys = [DELIVERY_COUNT_LIMIT, LOCK_DURATION_MS, MAX_RECORD_LOCKS];
        let conn = self.cluster.any().await?;
        // Every group config, not just `keys`: a broker may refuse names it does not know.
        let group_values = describe_configs(&conn, RESOURCE_GROUP, group, None).await?;
        let broker_values = if keys.iter().all(|k| group_values.contains_key(*k)) {
            HashMap::new()
        } else {
            let broker_keys = [
                BROKER_DELIVERY_COUNT_LIMIT,
                BROKER_LOCK_DURATION_MS,
                BROKER_MAX_RECORD_LOCKS,
            ];
            // A broker's configs are described by that broker: ask the group's coordinator, the
            // broker whose settings apply to the group.
            let id = self.coordinator_id(group).await?;
            let conn = self.cluster.node(id).await?;
            describe_configs(&conn, RESOURCE_BROKER, &id.to_string(), Some(&broker_keys)).await?
        };
        limits_from(&group_values, &broker_values)
    }

    /// The group's broker-side dead-letter topic (`errors.deadletterqueue.topic.name`, Kafka
    /// 4.4), or `None` when it is empty or the broker does not know the config.
    pub(crate) async fn broker_dead_letter(&self, group: &str) -> Result<Option<String>, Error> {
        if group.is_empty() {
            return Err(Error::invalid_input("the group id is empty"));
        }
        let conn = self.cluster.any().await?;
        // Every group config: a broker before 4.4 may refuse a name it does not know.
        let values = describe_configs(&conn, RESOURCE_GROUP, group, None).await?;
        Ok(values
            .get(DEAD_LETTER_TOPIC)
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty()))
    }

    /// Sets the share-group configs of `group` that `config` has (`None` fields are left alone).
    ///
    /// # Errors
    /// `is_invalid_input` for an empty group id; `is_config` when the broker refuses a value (out
    /// of its range, or a key it does not know, such as `share.delivery.count.limit` on Kafka
    /// 4.2), naming the keys and quoting the broker; a broker error otherwise.
    pub(crate) async fn configure_group(
        &self,
        group: &str,
        config: &GroupConfig,
    ) -> Result<(), Error> {
        if group.is_empty() {
            return Err(Error::invalid_input("the group id is empty"));
        }
        let settings = group_settings(config);
        self.alter_configs(RESOURCE_GROUP, "share group", group, &settings)
            .await
    }

    /// Sets share-group configs of `group` by their Kafka names (IncrementalAlterConfigs SET),
    /// all or none, and waits until the broker describes the new values.
    ///
    /// # Errors
    /// `is_invalid_input` for an empty group id; `is_config` when the broker refuses a name or
    /// a value, naming the configs and quoting the broker; a broker error otherwise.
    pub(crate) async fn set_group_configs(
        &self,
        group: &str,
        settings: &[(String, String)],
    ) -> Result<(), Error> {
        if group.is_empty() {
            return Err(Error::invalid_input("the group id is empty"));
        }
        self.alter_configs(RESOURCE_GROUP, "share group", group, settings)
            .await
    }

    /// Makes `topic` a dead-letter topic the broker may write to for share groups (KIP-1191):
    /// creates it when missing, and sets its `errors.deadletterqueue.group.enable=true`, without
    /// which the broker refuses to write there and archives the record instead.
    pub(crate) async fn enable_dead_letter_topic(&self, topic: &str) -> Result<(), Error> {
        self.create_topic(topic, 1).await?;
        let settings = [(DEAD_LETTER_ENABLE, "true".to_owned())];
        self.alter_configs(RESOURCE_TOPIC, "topic", topic, &settings)
            .await
    }

    /// Sets `settings` on a config resource with IncrementalAlterConfigs and waits until the
    /// broker describes them.
    async fn alter_configs(
        &self,
        resource_type: i8,
        what_resource: &str,
        name: &str,
        settings: &[(impl AsRef<str>, String)],
    ) -> Result<(), Error> {
        if settings.is_empty() {
            return Ok(());
        }
        let req = IncrementalAlterConfigsRequest::default()
            .with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(str_bytes(name))
                    .with_configs(
                        settings
                            .iter()
                            .map(|(k, v)| {
                                AlterableConfig::default()
                                    .with_name(str_bytes(k.as_ref()))
                                    .with_config_operation(OP_SET)
                                    .with_value(Some(str_bytes(v)))
                            })
                            .collect(),
                    ),
            ])
            .with_validate_only(false);
        let conn = self.cluster.any().await?;
        let (resp, _) = conn.call(&req, INCREMENTAL_ALTER_CONFIGS).await?;
        let result = resp
            .responses
            .iter()
            .find(|r| r.resource_type == resource_type && r.resource_name.as_str() == name)
            .ok_or_else(|| {
                Error::broker(format!(
                    "IncrementalAlterConfigs did not answer for {what_resource} `{name}`"
                ))
            })?;
        if result.error_code == 0 {
            // The controller has the change; brokers apply it from the metadata log a little
            // later. Wait until this broker describes it, so a caller that configures a group
            // and then reads its limits (or joins it) sees the new values.
            let deadline = tokio::time::Instant::now() + CONFIG_PROPAGATION;
            loop {
                let now = describe_configs(&conn, resource_type, name, None).await?;
                if settings
                    .iter()
                    .all(|(k, v)| now.get(k.as_ref()).map(String::as_str) == Some(v.as_str()))
                {
                    return Ok(());
                }
                if tokio::time::Instant::now() >= deadline {
                    tracing::warn!(
                        name,
                        "the new {what_resource} configs are not visible yet after {CONFIG_PROPAGATION:?}"
                    );
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let what = settings
            .iter()
            .map(|(k, v)| format!("{}={v}", k.as_ref()))
            .collect::<Vec<_>>()
            .join(", ");
        let cause = Error::kafka(
            &format!("cannot set {what} on {what_resource} `{name}`"),
            result.error_code,
            result.error_message.as_ref().map(|m| m.as_str()),
        );
        Err(match result.error_code {
            code::INVALID_CONFIG | code::INVALID_REQUEST => Error::config(cause.to_string()),
            _ => cause,
        })
    }

    /// The earliest and latest offsets (log start, high watermark) of every partition of
    /// `topic`, as `(partition, earliest, latest)` sorted by partition.
    ///
    /// # Errors
    /// `is_unknown_topic` when the topic does not exist; a broker error otherwise.
    pub(crate) async fn list_offsets(&self, topic: &str) -> Result<Vec<(i32, i64, i64)>, Error> {
        if topic.is_empty() {
            return Err(Error::invalid_input("the topic name is empty"));
        }
        let meta = self.cluster.topic(topic).await?;
        let mut found: BTreeMap<i32, (Option<i64>, Option<i64>)> = meta
            .partitions
            .iter()
            .map(|p| (p.index, (None, None)))
            .collect();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let meta = self
                .cluster
                .cached_topic(topic)
                .ok_or_else(|| Error::unknown_topic(topic))?;
            let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
            let mut last_error = None;
            for (&p, (earliest, latest)) in &found {
                if earliest.is_some() && latest.is_some() {
                    continue;
                }
                match meta.partitions.iter().find(|m| m.index == p) {
                    Some(m) if m.leader >= 0 => by_leader.entry(m.leader).or_default().push(p),
                    _ => {
                        last_error = Some(Error::kafka(
                            &format!("ListOffsets `{topic}` partition {p}"),
                            code::LEADER_NOT_AVAILABLE,
                            None,
                        ));
                    }
                }
            }
            let calls = by_leader.into_iter().flat_map(|(leader, ps)| {
                [EARLIEST, LATEST].map(|ts| self.offsets_at(leader, topic, ps.clone(), ts))
            });
            for result in join_all(calls).await {
                let (ts, answers) = result?;
                for (p, answer) in answers {
                    match answer {
                        Ok(offset) => {
                            if let Some(slot) = found.get_mut(&p) {
                                if ts == EARLIEST {
                                    slot.0 = Some(offset);
                                } else {
                                    slot.1 = Some(offset);
                                }
                            }
                        }
                        Err(e) => last_error = Some(e),
                    }
                }
            }
            if found.values().all(|(e, l)| e.is_some() && l.is_some()) {
                return Ok(found
                    .into_iter()
                    .filter_map(|(p, (e, l))| Some((p, e?, l?)))
                    .collect());
            }
            if attempt >= MAX_ATTEMPTS {
                return Err(last_error.unwrap_or_else(|| {
                    Error::broker(format!("ListOffsets `{topic}` did not finish"))
                }));
            }
            tokio::time::sleep(pause(attempt)).await;
            self.cluster.refresh(&[topic]).await?;
        }
    }

    /// Asks broker `leader` for the offset at `timestamp` (-2 earliest, -1 latest) of
    /// `partitions`. A partition whose leader moved answers `Err` (to retry); other errors fail.
    async fn offsets_at(
        &self,
        leader: i32,
        topic: &str,
        partitions: Vec<i32>,
        timestamp: i64,
    ) -> Result<(i64, Vec<(i32, Result<i64, Error>)>), Error> {
        let conn = match self.cluster.node(leader).await {
            Ok(c) => c,
            Err(e) => {
                let why = format!("cannot reach broker {leader}, the leader: {e}");
                let answers = partitions
                    .into_iter()
                    .map(|p| (p, Err(Error::broker(why.clone()))))
                    .collect();
                return Ok((timestamp, answers));
            }
        };
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(0)
            .with_timeout_ms(ADMIN_TIMEOUT_MS)
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(TopicName(str_bytes(topic)))
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|&p| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(p)
                                    .with_timestamp(timestamp)
                            })
                            .collect(),
                    ),
            ]);
        let (resp, _) = conn.call(&req, LIST_OFFSETS).await?;
        let mut answers = Vec::with_capacity(partitions.len());
        for p in partitions {
            let api = format!("ListOffsets `{topic}` partition {p}");
            let answer = resp
                .topics
                .iter()
                .filter(|t| t.name.0.as_str() == topic)
                .flat_map(|t| t.partitions.iter())
                .find(|a| a.partition_index == p)
                .ok_or_else(|| Error::broker(format!("{api}: broker {leader} did not answer")))?;
            match answer.error_code {
                0 => answers.push((p, Ok(answer.offset))),
                c if leader_moved(c) => answers.push((p, Err(Error::kafka(&api, c, None)))),
                c => return Err(Error::kafka(&api, c, None)),
            }
        }
        Ok((timestamp, answers))
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
fn invalid_input(what: &str, code: i16, message: Option<&str>) -> Error {
    Error::invalid_input(Error::kafka(what, code, message).to_string())
}

/// Sums per-partition lag into per-topic lag, sorted; lag -1 (not initialised) counts as 0.
fn sum_lag(
    api: &str,
    topics: Vec<DescribeShareGroupOffsetsResponseTopic>,
    uninitialised: &HashMap<(String, i32), u64>,
) -> Result<Vec<TopicLag>, Error> {
    let mut out: BTreeMap<String, Vec<(i32, u64)>> = BTreeMap::new();
    for t in topics {
        let name = t.topic_name.as_str().to_owned();
        let partitions = out.entry(name.clone()).or_default();
        for p in t.partitions {
            if p.error_code != 0 {
                return Err(Error::kafka(
                    &format!("{api}, topic `{name}` partition {}", p.partition_index),
                    p.error_code,
                    p.error_message.as_ref().map(|m| m.as_str()),
                ));
            }
            let lag = match u64::try_from(p.lag.unwrap_or(-1)) {
                Ok(lag) => lag,
                Err(_) => uninitialised
                    .get(&(name.clone(), p.partition_index))
                    .copied()
                    .unwrap_or(0),
            };
            partitions.push((p.partition_index, lag));
        }
    }
    Ok(out
        .into_iter()
        .map(|(topic, mut partitions)| {
            partitions.sort_unstable();
            TopicLag {
                topic,
                lag: partitions.iter().map(|(_, l)| *l).sum(),
                partitions,
            }
        })
        .collect())
}

/// Reads `keys` (`None`: all) of one config resource. Keys the broker does not know are left out; so is
/// everything when the broker refuses the resource (an older broker and GROUP resources).
async fn describe_configs(
    conn: &super::conn::Connection,
    resource_type: i8,
    name: &str,
    keys: Option<&[&str]>,
) -> Result<HashMap<String, String>, Error> {
    let req = DescribeConfigsRequest::default()
        .with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(str_bytes(name))
                .with_configuration_keys(
                    keys.map(|keys| keys.iter().map(|k| str_bytes(k)).collect()),
                ),
        ])
        .with_include_synonyms(false)
        .with_include_documentation(false);
    let (resp, _) = conn.call(&req, DESCRIBE_CONFIGS).await?;
    let mut out = HashMap::new();
    for r in resp.results {
        if r.error_code != 0 {
            // A missing ACL is said, not papered over with defaults that may be wrong.
            if matches!(
                r.error_code,
                code::TOPIC_AUTHORIZATION_FAILED
                    | code::GROUP_AUTHORIZATION_FAILED
                    | code::CLUSTER_AUTHORIZATION_FAILED
            ) {
                return Err(Error::kafka(
                    &format!(
                        "DescribeConfigs of {} `{name}`",
                        resource_kind(resource_type)
                    ),
                    r.error_code,
                    r.error_message.as_ref().map(|m| m.as_str()),
                ));
            }
            tracing::debug!(
                resource_type,
                name,
                code = r.error_code,
                message = r.error_message.as_ref().map(|m| m.as_str()),
                "DescribeConfigs refused a resource; falling back"
            );
            continue;
        }
        for c in r.configs {
            if let Some(v) = c.value {
                out.insert(c.name.as_str().to_owned(), v.as_str().to_owned());
            }
        }
    }
    Ok(out)
}

/// The name of a config resource type, for messages.
fn resource_kind(resource_type: i8) -> &'static str {
    match resource_type {
        RESOURCE_GROUP => "share group",
        RESOURCE_BROKER => "broker",
        RESOURCE_TOPIC => "topic",
        _ => "resource",
    }
}

/// Parses a numeric config value the broker answered.
fn parse_config<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, Error> {
    value.trim().parse().map_err(|_| {
        Error::broker(format!(
            "the broker answered `{value}` for `{key}`, which is not a number in range"
        ))
    })
}

/// Builds [`GroupLimits`] from group-level values, else broker-level ones, else the defaults.
fn limits_from(
    group: &HashMap<String, String>,
    broker: &HashMap<String, String>,
) -> Result<GroupLimits, Error> {
    let pick = |group_key: &str, broker_key: &str| {
        group
            .get(group_key)
            .map(|v| (group_key.to_owned(), v.clone()))
            .or_else(|| {
                broker
                    .get(broker_key)
                    .map(|v| (broker_key.to_owned(), v.clone()))
            })
    };
    let mut limits = GroupLimits::default();
    if let Some((k, v)) = pick(DELIVERY_COUNT_LIMIT, BROKER_DELIVERY_COUNT_LIMIT) {
        limits.delivery_count_limit = parse_config(&k, &v)?;
    }
    if let Some((k, v)) = pick(LOCK_DURATION_MS, BROKER_LOCK_DURATION_MS) {
        limits.lock_duration = Duration::from_millis(parse_config(&k, &v)?);
    }
    if let Some((k, v)) = pick(MAX_RECORD_LOCKS, BROKER_MAX_RECORD_LOCKS) {
        limits.max_record_locks = parse_config(&k, &v)?;
    }
    Ok(limits)
}

/// The group configs to SET for `config`, as (key, value).
fn group_settings(config: &GroupConfig) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(start) = config.start_from {
        let v = match start {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        };
        out.push((AUTO_OFFSET_RESET, v.to_owned()));
    }
    if let Some(limit) = config.delivery_count_limit {
        out.push((DELIVERY_COUNT_LIMIT, limit.to_string()));
    }
    if let Some(lock) = config.lock_duration {
        out.push((LOCK_DURATION_MS, lock.as_millis().to_string()));
    }
    if let Some(locks) = config.max_record_locks {
        out.push((MAX_RECORD_LOCKS, locks.to_string()));
    }
    if let Some(topic) = &config.broker_dead_letter {
        out.push((DEAD_LETTER_TOPIC, topic.clone()));
    }
    out
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
    let mut config = super::cluster::ClientConfig::from_url(&url)
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

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{GroupId, ShareGroupHeartbeatRequest};

    use super::*;
    use crate::broker::OutgoingRecord;
    use crate::kafka::producer::{Compression, Producer};
    use crate::kafka::wire::codec::TopicId;
    use crate::kafka::wire::describe_share_group_offsets::{
        DescribeShareGroupOffsetsResponsePartition, DescribeShareGroupOffsetsResponseTopic,
    };

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn limits_come_from_the_group_then_the_broker_then_the_defaults() {
        assert_eq!(
            limits_from(&HashMap::new(), &HashMap::new()).ok(),
            Some(GroupLimits::default())
        );
        // Kafka 4.2: the group has only the lock duration; the broker has the rest.
        let group = map(&[(LOCK_DURATION_MS, "20000"), ("share.isolation.level", "x")]);
        let broker = map(&[
            (BROKER_DELIVERY_COUNT_LIMIT, "7"),
            (BROKER_LOCK_DURATION_MS, "45000"),
        ]);
        assert_eq!(
            limits_from(&group, &broker).ok(),
            Some(GroupLimits {
                delivery_count_limit: 7,
                lock_duration: Duration::from_millis(20_000),
                max_record_locks: 2000,
            })
        );
        let err = limits_from(&map(&[(DELIVERY_COUNT_LIMIT, "lots")]), &HashMap::new())
            .expect_err("not a number");
        assert!(err.is_broker(), "{err:?}");
        assert!(err.to_string().contains(DELIVERY_COUNT_LIMIT), "{err}");
        assert!(limits_from(&map(&[(DELIVERY_COUNT_LIMIT, "70000")]), &HashMap::new()).is_err());
    }

    #[test]
    fn group_settings_name_kafka_keys() {
        assert!(group_settings(&GroupConfig::default()).is_empty());
        let config = GroupConfig::default()
            .start_from(StartFrom::Earliest)
            .delivery_count_limit(3)
            .lock_duration(Duration::from_millis(15_500))
            .max_record_locks(100);
        assert_eq!(
            group_settings(&config),
            [
                (AUTO_OFFSET_RESET, "earliest".to_owned()),
                (DELIVERY_COUNT_LIMIT, "3".to_owned()),
                (LOCK_DURATION_MS, "15500".to_owned()),
                (MAX_RECORD_LOCKS, "100".to_owned()),
            ]
        );
        let latest = GroupConfig::default().start_from(StartFrom::Latest);
        assert_eq!(group_settings(&latest)[0].1, "latest");
    }

    fn lag_partition(
        index: i32,
        lag: i64,
        error_code: i16,
    ) -> DescribeShareGroupOffsetsResponsePartition {
        DescribeShareGroupOffsetsResponsePartition {
            partition_index: index,
            start_offset: if lag < 0 { -1 } else { 0 },
            leader_epoch: 0,
            lag: Some(lag),
            error_code,
            error_message: None,
        }
    }

    fn lag_topic(
        name: &'static str,
        partitions: Vec<DescribeShareGroupOffsetsResponsePartition>,
    ) -> DescribeShareGroupOffsetsResponseTopic {
        DescribeShareGroupOffsetsResponseTopic {
            topic_name: StrBytes::from_static_str(name),
            topic_id: TopicId([1; 16]),
            partitions,
        }
    }

    #[test]
    fn lag_is_summed_sorted_and_uninitialised_counts_as_zero() {
        let topics = vec![
            lag_topic(
                "b",
                vec![
                    lag_partition(2, 5, 0),
                    lag_partition(0, -1, 0),
                    lag_partition(1, 3, 0),
                ],
            ),
            lag_topic("a", vec![lag_partition(0, -1, 0)]),
        ];
        assert_eq!(
            sum_lag("api", topics, &HashMap::new()).ok(),
            Some(vec![
                TopicLag {
                    topic: "a".into(),
                    lag: 0,
                    partitions: vec![(0, 0)],
                },
                TopicLag {
                    topic: "b".into(),
                    lag: 8,
                    partitions: vec![(0, 0), (1, 3), (2, 5)],
                },
            ])
        );
        let err = sum_lag(
            "api",
            vec![lag_topic("c", vec![lag_partition(4, 0, 3)])],
            &HashMap::new(),
        )
        .expect_err("partition error");
        assert!(err.to_string().contains("partition 4"), "{err}");
    }

    #[tokio::test]
    async fn create_topic_is_idempotent_and_grows_on_the_real_broker() {
        let Some(cluster) = test_cluster().await else {
            return;
        };
        let admin = Admin::new(cluster.clone());
        let topic = unique_name("create");
        admin.create_topic(&topic, 2).await.expect("create");
        admin.create_topic(&topic, 2).await.expect("again");
        let offsets = admin.list_offsets(&topic).await.expect("offsets");
        assert_eq!(offsets, [(0, 0, 0), (1, 0, 0)]);
        // More partitions: added; fewer: left alone.
        admin.create_topic(&topic, 4).await.expect("grow");
        let meta = cluster.cached_topic(&topic).expect("known");
        assert_eq!(meta.partitions.len(), 4);
        assert!(meta.partitions.iter().all(|p| p.leader >= 0));
        admin
            .create_topic(&topic, 1)
            .await
            .expect("shrink is a no-op");
        assert_eq!(admin.list_offsets(&topic).await.expect("offsets").len(), 4);
    }

    #[tokio::test]
    async fn bad_admin_input_on_the_real_broker() {
        let Some(cluster) = test_cluster().await else {
            return;
        };
        let admin = Admin::new(cluster.clone());
        let long = "x".repeat(250);
        for (name, partitions, says) in [
            ("", 1, "empty"),
            ("fine-name", 0, "at least 1"),
            ("fine-name", -1, "at least 1"),
            (
                "bad/name",
                1,
                "contains one or more characters other than ASCII alphanumerics",
            ),
            (".", 1, "'.' is not allowed"),
            (long.as_str(), 1, "longer than the max allowed length 249"),
        ] {
            let err = admin.create_topic(name, partitions).await.expect_err(name);
            assert!(err.is_invalid_input(), "{name}: {err:?}");
            assert!(err.to_string().contains(says), "{name}: {err}");
        }
        assert!(cluster.cached_topic("fine-name").is_none());

        let missing = unique_name("missing");
        let err = admin
            .list_offsets(&missing)
            .await
            .expect_err("no such topic");
        assert!(err.is_unknown_topic(), "{err:?}");
        assert!(
            admin
                .list_offsets("")
                .await
                .expect_err("empty")
                .is_invalid_input()
        );
        assert!(admin.lag("").await.expect_err("empty").is_invalid_input());
        assert!(
            admin
                .group_limits("")
                .await
                .expect_err("empty")
                .is_invalid_input()
        );
        let config = GroupConfig::default().delivery_count_limit(3);
        let err = admin.configure_group("", &config).await.expect_err("empty");
        assert!(err.is_invalid_input(), "{err:?}");
    }

    #[tokio::test]
    async fn configure_group_then_group_limits_on_the_real_broker() {
        let Some(cluster) = test_cluster().await else {
            return;
        };
        let admin = Admin::new(cluster.clone());
        let group = unique_name("limits");
        // A group nobody configured has the broker defaults (4.4 answers them for any group id).
        assert_eq!(
            admin.group_limits(&group).await.expect("limits"),
            GroupLimits::default()
        );
        admin
            .configure_group(&group, &GroupConfig::default())
            .await
            .expect("nothing to set");
        let config = GroupConfig::default()
            .start_from(StartFrom::Earliest)
            .delivery_count_limit(3)
            .lock_duration(Duration::from_secs(20))
            .max_record_locks(500);
        match admin.configure_group(&group, &config).await {
            Ok(()) => {}
            Err(e) if e.to_string().contains("Unknown group config name") => {
                // Kafka 4.2: no group-level delivery count or record locks; the lock duration
                // comes from the group, the rest from the broker.
                assert!(e.is_config(), "{e:?}");
                assert!(e.to_string().contains(DELIVERY_COUNT_LIMIT), "{e}");
                let config = GroupConfig::default()
                    .start_from(StartFrom::Earliest)
                    .lock_duration(Duration::from_secs(20));
                admin.configure_group(&group, &config).await.expect("4.2");
                let want = GroupLimits {
                    lock_duration: Duration::from_secs(20),
                    ..GroupLimits::default()
                };
                assert_eq!(admin.group_limits(&group).await.expect("limits"), want);
                let config = GroupConfig::default().lock_duration(Duration::from_millis(14_999));
                let err = admin
                    .configure_group(&group, &config)
                    .await
                    .expect_err("range");
                assert!(
                    err.is_config() && err.to_string().contains(LOCK_DURATION_MS),
                    "{err}"
                );
                return;
            }
            Err(e) => panic!("configure: {e:?}"),
        }
        let want = GroupLimits {
            delivery_count_limit: 3,
            lock_duration: Duration::from_secs(20),
            max_record_locks: 500,
        };
        assert_eq!(admin.group_limits(&group).await.expect("limits"), want);

        // Kafka 4.4's ranges, each refused with a message naming the key.
        for (config, key, says) in [
            (
                GroupConfig::default().delivery_count_limit(11),
                DELIVERY_COUNT_LIMIT,
                "must be in the range 2 to 10 inclusive",
            ),
            (
                GroupConfig::default().delivery_count_limit(1),
                DELIVERY_COUNT_LIMIT,
                "Invalid value 1 for configuration share.delivery.count.limit: Value must be at least 2",
            ),
            (
                GroupConfig::default().lock_duration(Duration::from_millis(14_999)),
                LOCK_DURATION_MS,
                "must be in the range 15000 to 60000 inclusive",
            ),
            (
                GroupConfig::default().lock_duration(Duration::from_millis(60_001)),
                LOCK_DURATION_MS,
                "must be in the range 15000 to 60000 inclusive",
            ),
            (
                GroupConfig::default().max_record_locks(99),
                MAX_RECORD_LOCKS,
                "Value must be at least 100",
            ),
            // One bad value fails the whole request: the good one is not applied either.
            (
                GroupConfig::default()
                    .delivery_count_limit(4)
                    .lock_duration(Duration::from_secs(100)),
                LOCK_DURATION_MS,
                "must be in the range 15000 to 60000 inclusive",
            ),
        ] {
            let err = admin.configure_group(&group, &config).await.expect_err(key);
            assert!(err.is_config(), "{err:?}");
            let text = err.to_string();
            assert!(text.contains(key) && text.contains(says), "{text}");
            assert!(text.contains(&group), "{text}");
        }
        assert_eq!(admin.group_limits(&group).await.expect("limits"), want);
        admin
            .configure_group(&group, &GroupConfig::default().delivery_count_limit(10))
            .await
            .expect("upper bound");
        assert_eq!(
            admin
                .group_limits(&group)
                .await
                .expect("limits")
                .delivery_count_limit,
            10
        );
    }

    #[tokio::test]
    async fn broker_share_configs_for_the_fallback_on_the_real_broker() {
        let Some(cluster) = test_cluster().await else {
            return;
        };
        let admin = Admin::new(cluster.clone());
        let group = unique_name("fallback");
        let id = admin.coordinator_id(&group).await.expect("coordinator");
        let conn = cluster.node(id).await.expect("connect");
        let keys = [
            BROKER_DELIVERY_COUNT_LIMIT,
            BROKER_LOCK_DURATION_MS,
            BROKER_MAX_RECORD_LOCKS,
        ];
        let values = describe_configs(&conn, RESOURCE_BROKER, &id.to_string(), Some(&keys))
            .await
            .expect("describe");
        assert_eq!(
            limits_from(&HashMap::new(), &values).ok(),
            Some(GroupLimits::default())
        );
        assert_eq!(values.len(), 3, "{values:?}");
    }

    /// Joins `group` as a share-group member subscribed to `topic` without ever fetching, until
    /// the broker lists the topic in the group's offsets; then leaves.
    #[tokio::test]
    async fn lag_of_unknown_and_idle_groups_on_the_real_broker() {
        let Some(cluster) = test_cluster().await else {
            return;
        };
        let admin = Admin::new(cluster.clone());
        let group = unique_name("lag");
        let topic = unique_name("lag-topic");
        assert_eq!(admin.lag(&group).await.expect("unknown group"), []);
        // Kafka 4.4 answers an unknown group with no error (not GROUP_ID_NOT_FOUND) and no topics.
        let id = admin.coordinator_id(&group).await.expect("coordinator");
        let conn = cluster.node(id).await.expect("connect");
        let req = DescribeShareGroupOffsetsRequest {
            groups: vec![DescribeShareGroupOffsetsRequestGroup {
                group_id: str_bytes(&group),
                topics: None,
            }],
        };
        let (raw, _) = conn
            .call(&req, DESCRIBE_SHARE_GROUP_OFFSETS)
            .await
            .expect("describe");
        assert_eq!(raw.groups.len(), 1);
        assert_eq!(raw.groups[0].error_code, 0);
        assert!(raw.groups[0].topics.is_empty());

        admin.create_topic(&topic, 2).await.expect("create");
        let config = GroupConfig::default().start_from(StartFrom::Earliest);
        admin
            .configure_group(&group, &config)
            .await
            .expect("earliest");
        let records = (0..5)
            .map(|i| OutgoingRecord::new(format!("r{i}")))
            .collect();
        Producer::new(cluster.clone(), Compression::None)
            .produce(&topic, records)
            .await
            .expect("produce");
        // Configs and records alone do not make a share group: still nothing.
        assert_eq!(admin.lag(&group).await.expect("no member yet"), []);

        let member = uuid::Uuid::new_v4().to_string();
        let heartbeat = |epoch: i32, topics: Option<Vec<TopicName>>| {
            ShareGroupHeartbeatRequest::default()
                .with_group_id(GroupId(str_bytes(&group)))
                .with_member_id(str_bytes(&member))
                .with_member_epoch(epoch)
                .with_subscribed_topic_names(topics)
        };
        let versions = Versions { min: 1, max: 1 };
        let (joined, _) = conn
            .call(
                &heartbeat(0, Some(vec![TopicName(str_bytes(&topic))])),
                versions,
            )
            .await
            .expect("join");
        assert_eq!(joined.error_code, 0, "{joined:?}");
        let mut epoch = joined.member_epoch;

        // Once the assignment is made (share.assignment.interval.ms, 1 s) the group lists the
        // partitions, with lag -1 (start offset not initialised) until a member fetches. The
        // group starts at the earliest offset, so the lag reported is every record waiting.
        let deadline = Instant::now() + Duration::from_secs(20);
        let lag = loop {
            let lag = admin.lag(&group).await.expect("lag");
            if !lag.is_empty() || Instant::now() >= deadline {
                break lag;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (beat, _) = conn
                .call(&heartbeat(epoch, None), versions)
                .await
                .expect("heartbeat");
            epoch = beat.member_epoch;
        };
        let _ = conn.call(&heartbeat(-1, None), versions).await;
        assert_eq!(lag.len(), 1, "{lag:?}");
        assert_eq!(lag[0].topic, topic);
        assert_eq!(lag[0].lag, 5, "the 5 waiting records: {lag:?}");
        assert_eq!(
            lag[0]
                .partitions
                .iter()
                .map(|(p, _)| *p)
                .collect::<Vec<_>>(),
            [0, 1],
            "both partitions listed: {lag:?}"
        );
        assert_eq!(lag[0].partitions.iter().map(|(_, l)| l).sum::<u64>(), 5);
    }
}
