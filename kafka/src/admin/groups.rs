//! Share groups: lag, description, listing (DescribeShareGroupOffsets, ShareGroupDescribe,
//! ListGroups), and finding a group's coordinator.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Admin {
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
        sum_lag(self.cluster.errors(), &api, topics, &resolved)
    }

    /// The share-partition start offsets and lag of `group` (DescribeShareGroupOffsets v1), as
    /// the coordinator answers them; an unknown group has none.
    pub(super) async fn share_offsets(
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
                                c if coordinator_moved(Some(c)) => {
                                    self.cluster.errors().error(&api, c, message)
                                }
                                c => return Err(self.cluster.errors().error(&api, c, message)),
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
                            c if coordinator_moved(Some(c)) => {
                                self.cluster.errors().error(&api, c, message)
                            }
                            c => return Err(self.cluster.errors().error(&api, c, message)),
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
                    return Err(self.cluster.errors().error(
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
                return Err(self.cluster.errors().error(
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

    /// Lag of partitions whose share start offset is not initialised yet (Kafka answers -1 until
    /// the group's first acknowledgement there): the whole partition when the group starts at
    /// the earliest offset (every record is still to be delivered, in-flight ones included),
    /// nothing when it starts at the latest.
    pub(super) async fn uninitialised_lag(
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
    pub(super) async fn coordinator_id(&self, group: &str) -> Result<i32, Error> {
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
}

/// Sums per-partition lag into per-topic lag, sorted; lag -1 (not initialised) counts as 0.
pub(super) fn sum_lag(
    errors: &ErrorCounts,
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
                return Err(errors.error(
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
