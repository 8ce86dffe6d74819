//! Topics: create, grow, wait for leaders (CreateTopics, CreatePartitions, Metadata).

#[allow(clippy::wildcard_imports)]
use super::*;

impl Admin {
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
                    self.cluster.errors(),
                    &format!("creating topic `{topic}`"),
                    c,
                    message,
                ));
            }
            c => {
                return Err(self.cluster.errors().error(
                    &format!("CreateTopics `{topic}`"),
                    c,
                    message,
                ));
            }
        }
        self.wait_for_leaders(topic, partitions).await
    }

    /// Adds partitions to an existing `topic` so that it has at least `partitions`.
    pub(super) async fn grow_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
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
            c => Err(self.cluster.errors().error(
                &format!("CreatePartitions `{topic}` to {partitions}"),
                c,
                message,
            )),
        }
    }

    /// Waits until metadata shows at least `partitions` partitions of `topic`, each with a leader.
    pub(super) async fn wait_for_leaders(&self, topic: &str, partitions: i32) -> Result<(), Error> {
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
}
