//! Group and broker configs: read (DescribeConfigs), set (IncrementalAlterConfigs), and the
//! group limits and settings made of them.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Admin {
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
        let settings = shareworker_core::settings_of(config);
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
    pub(super) async fn alter_configs(
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
        // Counted under the request's name (a bounded label); the error says what was tried.
        self.cluster
            .errors()
            .answered("IncrementalAlterConfigs", result.error_code);
        let cause = <Error as crate::KafkaError>::kafka(
            &format!("cannot set {what} on {what_resource} `{name}`"),
            result.error_code,
            result.error_message.as_ref().map(|m| m.as_str()),
        );
        Err(match result.error_code {
            code::INVALID_CONFIG | code::INVALID_REQUEST => Error::config(cause.to_string()),
            _ => cause,
        })
    }
}

/// Reads `keys` (`None`: all) of one config resource. Keys the broker does not know are left out; so is
/// everything when the broker refuses the resource (an older broker and GROUP resources).
pub(super) async fn describe_configs(
    conn: &super::super::conn::Connection,
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
                return Err(conn.errors().error(
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
pub(super) fn resource_kind(resource_type: i8) -> &'static str {
    match resource_type {
        RESOURCE_GROUP => "share group",
        RESOURCE_BROKER => "broker",
        RESOURCE_TOPIC => "topic",
        _ => "resource",
    }
}

/// Parses a numeric config value the broker answered.
pub(super) fn parse_config<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, Error> {
    value.trim().parse().map_err(|_| {
        Error::broker(format!(
            "the broker answered `{value}` for `{key}`, which is not a number in range"
        ))
    })
}

/// Builds [`GroupLimits`] from group-level values, else broker-level ones, else the defaults.
pub(super) fn limits_from(
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
