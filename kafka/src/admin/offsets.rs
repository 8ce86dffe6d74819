//! Partition offsets: the log start and the high watermark of each partition (ListOffsets).

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::KafkaError as _;

impl Admin {
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
    pub(super) async fn offsets_at(
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
                c if leader_moved(c) => {
                    answers.push((p, Err(self.cluster.errors().error(&api, c, None))))
                }
                c => return Err(self.cluster.errors().error(&api, c, None)),
            }
        }
        Ok((timestamp, answers))
    }
}
