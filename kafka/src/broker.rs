//! [`KafkaBroker`]: the `Broker` seam on a real Kafka cluster.

use std::sync::Arc;

use async_trait::async_trait;

use super::admin::Admin;
use super::client::ClientConfig;
use super::cluster::Cluster;
use super::config::KafkaConfig;
use super::producer::{Compression, Producer};
use crate::Error;
use shareworker_core::{
    Broker, BrokerAdmin, Delivery, ErrorCount, GroupConfig, GroupDescription, GroupLimits, Member,
    OutgoingRecord, PartitionOffsets, Produced, TopicLag,
};

/// A Kafka 4.2+ cluster with share groups, behind the same seam as the embedded broker.
///
/// One `KafkaBroker` holds one connection per broker of the cluster; members, the producer and
/// the admin calls share them. Cloning is cheap.
///
/// ```no_run
/// use shareworker_kafka::{Broker, KafkaBroker, OutgoingRecord};
///
/// # #[tokio::main] async fn main() -> Result<(), shareworker_kafka::Error> {
/// let kafka = KafkaBroker::connect("kafka://127.0.0.1:9092").await?;
/// kafka.create_topic("emails", 3).await?;
/// kafka.produce("emails", vec![OutgoingRecord::new(r#"{"to":"ada@example.com"}"#)]).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct KafkaBroker {
    cluster: Arc<Cluster>,
    producer: Arc<Producer>,
    admin: Arc<Admin>,
}

impl std::fmt::Debug for KafkaBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBroker")
            .field("bootstrap", &self.cluster.config().bootstrap)
            .finish_non_exhaustive()
    }
}

impl KafkaBroker {
    /// Connects to the Kafka cluster `broker` names (`kafka://host:port[,host:port...]`, the
    /// configuration's `broker` key), with the security settings of `kafka` (its `[kafka]`
    /// section: TLS, SASL): what a worker with this configuration connects to.
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), shareworker_kafka::Error> {
    /// use shareworker_kafka::{KafkaBroker, KafkaConfig};
    ///
    /// let kafka = KafkaBroker::from_config("kafka://127.0.0.1:9092", &KafkaConfig::default()).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `is_config` when `broker` is not a `kafka://` address; otherwise as
    /// [`KafkaBroker::connect_with`].
    pub async fn from_config(broker: &str, kafka: &KafkaConfig) -> Result<Self, Error> {
        if !broker.starts_with("kafka://") {
            return Err(Error::config(format!(
                "`broker` is `{broker}`, not a Kafka cluster (kafka://host:port)"
            )));
        }
        Self::connect_with(broker, kafka).await
    }

    /// Connects to the cluster at `url` (`kafka://host:port[,host:port...]`) and checks that it
    /// has share groups.
    ///
    /// The URL may carry security settings as a query (see [`KafkaConfig`]); for a password use
    /// [`connect_with`](Self::connect_with).
    ///
    /// # Errors
    /// When the address is malformed, no broker answers, or the cluster has no share groups
    /// (Kafka older than 4.2, or `share.version` not enabled); [`Error::is_auth`] when the broker
    /// refuses the credentials or its certificate is not trusted.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(url, &KafkaConfig::default()).await
    }

    /// Connects to the cluster at `url` with TLS and SASL as `security` says (the `[kafka]`
    /// section of the configuration), and checks that it has share groups.
    ///
    /// ```no_run
    /// use shareworker_kafka::{KafkaBroker, KafkaConfig, SaslMechanism, Secret, SecurityProtocol};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), shareworker_kafka::Error> {
    /// let mut security = KafkaConfig::default();
    /// security.security_protocol = SecurityProtocol::SaslSsl;
    /// security.sasl_mechanism = Some(SaslMechanism::ScramSha512);
    /// security.sasl_username = Some("billing-worker".into());
    /// security.sasl_password = std::env::var("KAFKA_PASSWORD").ok().map(Secret::new);
    /// security.ssl_ca_location = Some("/etc/kafka/ca.pem".into());
    /// let kafka = KafkaBroker::connect_with("kafka://kafka-1.example.com:9094", &security).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`connect`](Self::connect); [`Error::is_config`] when the settings do not fit together
    /// or a certificate file cannot be read. A refused password or certificate is not retried:
    /// the error ([`Error::is_auth`]) comes back at once.
    pub async fn connect_with(url: &str, security: &KafkaConfig) -> Result<Self, Error> {
        let config = ClientConfig::new(url, security)?;
        let bootstrap = config.bootstrap.join(",");
        let cluster = Cluster::connect(config).await?;
        let conn = cluster.any().await?;
        for (key, name) in [
            (78, "ShareFetch"),
            (79, "ShareAcknowledge"),
            (76, "ShareGroupHeartbeat"),
        ] {
            if conn.versions(key).is_none() {
                return Err(Error::broker(format!(
                    "the Kafka cluster at {bootstrap} has no share groups ({name} is not supported): use Kafka 4.2 or newer with share.version=1 or higher"
                )));
            }
        }
        if conn.versions(78).is_some_and(|v| v.max < 2) {
            tracing::warn!(
                "the Kafka cluster at {bootstrap} has no RENEW acknowledgement (ShareFetch v2, Kafka 4.2+): long handlers will lose their locks"
            );
        }
        Ok(Self {
            producer: Arc::new(Producer::new(cluster.clone(), Compression::default())),
            admin: Arc::new(Admin::new(cluster.clone())),
            cluster,
        })
    }
}

#[async_trait]
impl Broker for KafkaBroker {
    async fn join(&self, group: &str, topics: &[String]) -> Result<Box<dyn Member>, Error> {
        if group.is_empty() {
            return Err(Error::invalid_input("group id must not be empty"));
        }
        if topics.is_empty() {
            return Err(Error::invalid_input(format!(
                "group `{group}`: a member must subscribe to at least one topic"
            )));
        }
        super::share::join(self.cluster.clone(), group, topics).await
    }

    async fn produce(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<Produced>, Error> {
        if topic.is_empty() {
            return Err(Error::invalid_input("topic name must not be empty"));
        }
        self.producer.produce(topic, records).await
    }

    async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        if topic.is_empty() {
            return Err(Error::invalid_input("topic name must not be empty"));
        }
        if partitions < 1 {
            return Err(Error::invalid_input(format!(
                "topic `{topic}`: partitions must be at least 1, got {partitions}"
            )));
        }
        self.admin.create_topic(topic, partitions).await
    }

    async fn lag(&self, group: &str) -> Result<Vec<TopicLag>, Error> {
        self.admin.lag(group).await
    }

    async fn group_limits(&self, group: &str) -> Result<GroupLimits, Error> {
        self.admin.group_limits(group).await
    }

    async fn end_offsets(&self, topics: &[String]) -> Result<Vec<(String, u64)>, Error> {
        let mut out = Vec::with_capacity(topics.len());
        for topic in topics {
            match self.admin.list_offsets(topic).await {
                Ok(parts) => {
                    let sum = parts.iter().map(|&(_, _, end)| end.max(0) as u64).sum();
                    out.push((topic.clone(), sum));
                }
                Err(e) if e.is_unknown_topic() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn broker_dead_letter(&self, group: &str) -> Result<Option<String>, Error> {
        self.admin.broker_dead_letter(group).await
    }

    async fn prepare_broker_dead_letter(&self, topic: &str) -> Result<(), Error> {
        self.admin.enable_dead_letter_topic(topic).await
    }

    fn error_counts(&self) -> Vec<ErrorCount> {
        self.cluster.errors().snapshot()
    }

    async fn configure_group(&self, group: &str, config: &GroupConfig) -> Result<(), Error> {
        if group.is_empty() {
            return Err(Error::invalid_input("group id must not be empty"));
        }
        self.admin.configure_group(group, config).await
    }

    fn kind(&self) -> &'static str {
        "kafka"
    }

    async fn offsets(&self, topic: &str) -> Result<Vec<PartitionOffsets>, Error> {
        Ok(self
            .admin
            .list_offsets(topic)
            .await?
            .into_iter()
            .map(|(p, earliest, latest)| PartitionOffsets::new(p, earliest, latest))
            .collect())
    }
}

#[async_trait]
impl BrokerAdmin for KafkaBroker {
    async fn describe_group(&self, group: &str) -> Result<GroupDescription, Error> {
        self.admin.describe_group(group).await
    }

    async fn list_groups(&self) -> Result<Vec<String>, Error> {
        self.admin.list_groups().await
    }

    async fn group_configs(&self, group: &str) -> Result<Vec<(String, String)>, Error> {
        self.admin.group_configs(group).await
    }

    async fn set_group_configs(
        &self,
        group: &str,
        configs: &[(String, String)],
    ) -> Result<(), Error> {
        self.admin.set_group_configs(group, configs).await
    }

    async fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max: usize,
    ) -> Result<Vec<Delivery>, Error> {
        super::reader::read(&self.cluster, topic, partition, offset, max).await
    }
}
