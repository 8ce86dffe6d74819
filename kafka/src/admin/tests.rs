use kafka_protocol::messages::{GroupId, ShareGroupHeartbeatRequest};

use super::*;
use crate::producer::{Compression, Producer};
use crate::wire::codec::TopicId;
use crate::wire::describe_share_group_offsets::{
    DescribeShareGroupOffsetsResponsePartition, DescribeShareGroupOffsetsResponseTopic,
};
use shareworker_core::OutgoingRecord;

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
        .max_record_locks(100)
        .assignment_interval(Duration::from_millis(100));
    assert_eq!(
        group_settings(&config),
        [
            (AUTO_OFFSET_RESET, "earliest".to_owned()),
            (DELIVERY_COUNT_LIMIT, "3".to_owned()),
            (LOCK_DURATION_MS, "15500".to_owned()),
            (MAX_RECORD_LOCKS, "100".to_owned()),
            (ASSIGNMENT_INTERVAL_MS, "100".to_owned()),
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
        sum_lag(&ErrorCounts::default(), "api", topics, &HashMap::new()).ok(),
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
        &ErrorCounts::default(),
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
    // Kafka 4.3 on: the group's own assignment interval (KIP-1263).
    let config = GroupConfig::default().assignment_interval(Duration::from_millis(100));
    admin.configure_group(&group, &config).await.expect("4.4");
    let configs = admin.group_configs(&group).await.expect("describe");
    assert!(
        configs.contains(&(ASSIGNMENT_INTERVAL_MS.to_owned(), "100".to_owned())),
        "{configs:?}"
    );

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
