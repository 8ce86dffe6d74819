//! The cluster as this client sees it: bootstrap, broker addresses, topic metadata with topic ids,
//! and one connection per broker, reconnected on demand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{FindCoordinatorRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::Mutex as AsyncMutex;
use uuid::Uuid;

use super::client::ClientConfig;
use super::conn::{Connection, Versions};
use super::stats::ErrorCounts;
use super::transport::{self, Stream};
use crate::Error;
use shareworker_core::lock::LockExt;

/// Metadata versions this client speaks (v10 added topic ids; v12 lookups by id).
pub(crate) const METADATA: Versions = Versions { min: 12, max: 13 };
/// FindCoordinator versions (v4 batches keys).
pub(crate) const FIND_COORDINATOR: Versions = Versions { min: 4, max: 6 };

/// One partition's leader as metadata says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PartitionMeta {
    pub(crate) index: i32,
    pub(crate) leader: i32,
    pub(crate) leader_epoch: i32,
}

/// A topic's id and partitions.
#[derive(Clone, Debug)]
pub(crate) struct TopicMeta {
    pub(crate) name: Arc<str>,
    pub(crate) id: Uuid,
    pub(crate) partitions: Vec<PartitionMeta>,
}

#[derive(Default)]
struct State {
    nodes: HashMap<i32, String>,
    topics: HashMap<Arc<str>, TopicMeta>,
    names: HashMap<Uuid, Arc<str>>,
    coordinators: HashMap<String, i32>,
}

/// What a connection to a broker carries. A broker handles one request per connection at a
/// time, so a request it takes long to answer (a Produce waiting for the in-sync replicas, a
/// DescribeShareGroupOffsets waiting for share state) holds up every request behind it on that
/// connection. Short requests that must not wait (heartbeats, metadata, coordinator lookups)
/// get connections of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Lane {
    /// Produce and the admin calls.
    Data,
    /// ShareGroupHeartbeat, Metadata and FindCoordinator: answered at once by a live broker.
    Control,
}

/// The cluster: shared by every part of the Kafka backend.
pub(crate) struct Cluster {
    config: ClientConfig,
    state: Mutex<State>,
    /// One connection per broker id and lane; `-1` is the bootstrap broker.
    conns: AsyncMutex<HashMap<(i32, Lane), Connection>>,
    /// The broker errors this client has seen (see [`ErrorCounts`]).
    errors: Arc<ErrorCounts>,
}

impl Cluster {
    /// Connects to one of the bootstrap brokers and reads the broker list.
    pub(crate) async fn connect(config: ClientConfig) -> Result<Arc<Self>, Error> {
        let cluster = Arc::new(Self {
            config,
            state: Mutex::new(State::default()),
            conns: AsyncMutex::new(HashMap::new()),
            errors: Arc::new(ErrorCounts::default()),
        });
        cluster.refresh(&[]).await?;
        Ok(cluster)
    }

    pub(crate) fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// A new connection of this client to `addr`, of its own (not shared with other callers).
    /// TCP and TLS first ([`transport::connect`]), then the Kafka handshake on the ready stream.
    pub(crate) async fn open(&self, addr: &str) -> Result<Connection, Error> {
        let errors = self.errors.clone();
        match transport::connect(addr, &self.config).await? {
            Stream::Plain(io) => Connection::handshake(io, addr, &self.config, errors).await,
            Stream::Tls(io) => Connection::handshake(*io, addr, &self.config, errors).await,
        }
    }

    /// The broker errors this client has seen: count an answer's error code here.
    pub(crate) fn errors(&self) -> &ErrorCounts {
        &self.errors
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.locked()
    }

    /// Any live connection for produce and admin calls: a known broker's, or a bootstrap one.
    pub(crate) async fn any(&self) -> Result<Connection, Error> {
        self.any_on(Lane::Data).await
    }

    /// Any live connection of `lane`: a known broker's, or a bootstrap one.
    async fn any_on(&self, lane: Lane) -> Result<Connection, Error> {
        {
            let conns = self.conns.lock().await;
            if let Some(c) = conns
                .iter()
                .find(|((_, l), c)| *l == lane && !c.is_closed())
                .map(|(_, c)| c)
            {
                return Ok(c.clone());
            }
        }
        let nodes: Vec<i32> = self.lock().nodes.keys().copied().collect();
        for id in nodes {
            if let Ok(c) = self.connection(id, lane).await {
                return Ok(c);
            }
        }
        let mut last = None;
        for addr in &self.config.bootstrap {
            match self.open(addr).await {
                Ok(c) => {
                    self.conns.lock().await.insert((-1, lane), c.clone());
                    return Ok(c);
                }
                // A refused password or certificate: another broker will say the same.
                Err(e) if e.is_auth() => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(Error::broker(format!(
            "no Kafka broker answered at {}",
            self.config.bootstrap.join(",")
        ))
        .with_source(last.unwrap_or_else(|| Error::broker("no bootstrap address"))))
    }

    /// The connection to broker `id` for produce and admin calls, opened or reopened as needed.
    pub(crate) async fn node(&self, id: i32) -> Result<Connection, Error> {
        self.connection(id, Lane::Data).await
    }

    /// The connection to broker `id` for heartbeats and other short requests (see [`Lane`]).
    pub(crate) async fn control(&self, id: i32) -> Result<Connection, Error> {
        self.connection(id, Lane::Control).await
    }

    /// The address of broker `id` as metadata gave it.
    pub(crate) fn address(&self, id: i32) -> Result<String, Error> {
        self.lock()
            .nodes
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::broker(format!("broker {id} is not in the cluster metadata")))
    }

    /// The connection of `lane` to broker `id`, opened or reopened as needed. Connecting happens
    /// outside the lock: a broker that does not answer holds up only its own callers.
    async fn connection(&self, id: i32, lane: Lane) -> Result<Connection, Error> {
        if let Some(c) = self.conns.lock().await.get(&(id, lane))
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        let addr = self.address(id)?;
        let c = self.open(&addr).await?;
        let mut conns = self.conns.lock().await;
        match conns.get(&(id, lane)) {
            // Another caller connected meanwhile: use theirs, drop this one.
            Some(theirs) if !theirs.is_closed() => Ok(theirs.clone()),
            _ => {
                conns.insert((id, lane), c.clone());
                Ok(c)
            }
        }
    }

    /// The ids of the brokers metadata named, sorted.
    pub(crate) fn node_ids(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = self.lock().nodes.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Records a broker address learnt from a response (NodeEndpoints, FindCoordinator).
    pub(crate) fn learn_node(&self, id: i32, host: &str, port: i32) {
        self.lock().nodes.insert(id, format!("{host}:{port}"));
    }

    /// Refreshes metadata for `topics` (none: only the broker list).
    pub(crate) async fn refresh(&self, topics: &[&str]) -> Result<(), Error> {
        let conn = self.any_on(Lane::Control).await?;
        let req = MetadataRequest::default()
            .with_topics(Some(
                topics
                    .iter()
                    .map(|t| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string((*t).to_owned()))))
                    })
                    .collect(),
            ))
            .with_allow_auto_topic_creation(false);
        let (resp, _) = conn.call(&req, METADATA).await?;
        let mut state = self.lock();
        for b in &resp.brokers {
            state
                .nodes
                .insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
        }
        for t in resp.topics {
            let Some(name) = t.name.as_ref().map(|n| n.0.as_str().to_owned()) else {
                continue;
            };
            if t.error_code != 0 {
                if t.error_code == 3 {
                    // UNKNOWN_TOPIC_OR_PARTITION: forget what we knew.
                    if let Some(old) = state.topics.remove(name.as_str()) {
                        state.names.remove(&old.id);
                    }
                    continue;
                }
                return Err(self.errors.error(
                    &format!("Metadata for topic `{name}`"),
                    t.error_code,
                    None,
                ));
            }
            let name: Arc<str> = Arc::from(name);
            let mut partitions: Vec<PartitionMeta> = t
                .partitions
                .iter()
                .map(|p| PartitionMeta {
                    index: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                })
                .collect();
            partitions.sort_by_key(|p| p.index);
            state.names.insert(t.topic_id, name.clone());
            state.topics.insert(
                name.clone(),
                TopicMeta {
                    name,
                    id: t.topic_id,
                    partitions,
                },
            );
        }
        Ok(())
    }

    /// What metadata says of `topic`, refreshing it when unknown.
    pub(crate) async fn topic(&self, topic: &str) -> Result<TopicMeta, Error> {
        if let Some(t) = self.lock().topics.get(topic) {
            return Ok(t.clone());
        }
        self.refresh(&[topic]).await?;
        self.lock()
            .topics
            .get(topic)
            .cloned()
            .ok_or_else(|| Error::unknown_topic(topic))
    }

    /// What metadata says of `topic` without asking the broker.
    pub(crate) fn cached_topic(&self, topic: &str) -> Option<TopicMeta> {
        self.lock().topics.get(topic).cloned()
    }

    /// The name of the topic with this id, if known.
    pub(crate) fn topic_name(&self, id: &Uuid) -> Option<Arc<str>> {
        self.lock().names.get(id).cloned()
    }

    /// The broker id of `group`'s coordinator (FindCoordinator, key type 0), cached.
    pub(crate) async fn coordinator(&self, group: &str) -> Result<i32, Error> {
        if let Some(id) = self.lock().coordinators.get(group) {
            return Ok(*id);
        }
        let conn = self.any_on(Lane::Control).await?;
        let req = FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![StrBytes::from_string(group.to_owned())]);
        let (resp, _) = conn.call(&req, FIND_COORDINATOR).await?;
        let c = resp.coordinators.into_iter().next().ok_or_else(|| {
            Error::broker(format!(
                "FindCoordinator for group `{group}` answered nothing"
            ))
        })?;
        if c.error_code != 0 {
            return Err(self.errors.error(
                &format!("FindCoordinator for group `{group}`"),
                c.error_code,
                c.error_message.as_ref().map(|m| m.as_str()),
            ));
        }
        let mut state = self.lock();
        state
            .nodes
            .insert(c.node_id.0, format!("{}:{}", c.host.as_str(), c.port));
        state.coordinators.insert(group.to_owned(), c.node_id.0);
        Ok(c.node_id.0)
    }

    /// Forgets `group`'s coordinator after NOT_COORDINATOR or a broken connection.
    pub(crate) fn forget_coordinator(&self, group: &str) {
        self.lock().coordinators.remove(group);
    }

    /// Updates a partition's leader from a CurrentLeader answer.
    pub(crate) fn set_leader(&self, topic: &str, partition: i32, leader: i32, epoch: i32) {
        let mut state = self.lock();
        if let Some(t) = state.topics.get_mut(topic)
            && let Some(p) = t.partitions.iter_mut().find(|p| p.index == partition)
            && epoch >= p.leader_epoch
        {
            {
                p.leader = leader;
                p.leader_epoch = epoch;
            }
        }
    }
}
