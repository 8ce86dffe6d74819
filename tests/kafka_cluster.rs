//! The worker on a three-broker cluster (KRaft, three combined broker+controller nodes,
//! replication factor 3, min ISR 2) whose leadership moves while it runs: a partition leader is
//! killed, the group coordinator's broker is stopped, partitions are added.
//!
//! The cluster is started by this test binary with `scripts/kafka.sh cluster` on ports
//! 25100-25105, shared by its tests one at a time, and killed when the binary exits. Each test
//! first restarts whatever node an earlier one left stopped.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shareworker::broker::{Broker, GroupConfig, StartFrom};
use shareworker_tests::brokers::{self, Cluster};
use shareworker_tests::kafka;
use shareworker_tests::probe;
use shareworker_tests::tally::{Running, Tally, produce, values};
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

const BASE_PORT: u16 = 25100;

/// Small internal topics (fewer partitions to elect and load on two cores), brokers fenced 6 s
/// after they stop heartbeating (a killed leader is replaced sooner), and share-group sessions of
/// 10 s with 2 s heartbeats (a member that stopped heartbeating is gone within the test).
const PROPS: &[&str] = &[
    "offsets.topic.num.partitions=3",
    "share.coordinator.state.topic.num.partitions=3",
    "broker.session.timeout.ms=6000",
    "broker.heartbeat.interval.ms=1000",
    "group.share.min.session.timeout.ms=6000",
    "group.share.session.timeout.ms=10000",
    "group.share.min.heartbeat.interval.ms=1000",
    "group.share.heartbeat.interval.ms=2000",
];

/// How long a share-group member lives without heartbeats (`group.share.session.timeout.ms`).
const MEMBER_SESSION: Duration = Duration::from_secs(10);

static CLUSTER: Mutex<Option<Arc<Cluster>>> = Mutex::const_new(None);

/// The shared cluster, started on first use, every node running; the guard keeps other tests
/// of this binary off it meanwhile. `None`: skip (no Java or Maven, outside CI).
async fn cluster(test: &str) -> Option<(MutexGuard<'static, Option<Arc<Cluster>>>, Arc<Cluster>)> {
    if !brokers::available(test) {
        return None;
    }
    let mut guard = CLUSTER.lock().await;
    let cluster = match &*guard {
        Some(c) => c.clone(),
        None => {
            let c = Arc::new(Cluster::start(BASE_PORT, 3, PROPS).await);
            *guard = Some(c.clone());
            c
        }
    };
    cluster.heal().await;
    Some((guard, cluster))
}

fn names(prefix: &str) -> (String, String) {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    (format!("{prefix}-t-{stamp}"), format!("{prefix}-g-{stamp}"))
}

async fn setup(
    cluster: &Cluster,
    prefix: &str,
    partitions: i32,
) -> (Arc<dyn Broker>, String, String) {
    let (topic, group) = names(prefix);
    let broker = kafka::connect(&cluster.url()).await;
    broker
        .create_topic(&topic, partitions)
        .await
        .expect("create the topic");
    broker
        .configure_group(
            &group,
            &GroupConfig::default()
                .start_from(StartFrom::Earliest)
                .lock_duration(kafka::LOCK),
        )
        .await
        .expect("configure the group");
    (broker, topic, group)
}

/// Asks the nodes in `alive` in turn until one answers without an error (the internal topics
/// are created on first use, and a coordinator may be loading), for up to 30 s.
async fn ask<T, F, Fut>(cluster: &Cluster, alive: &[i32], f: F) -> anyhow::Result<T>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = anyhow::anyhow!("no node to ask");
    while Instant::now() < deadline {
        for id in alive {
            match f(cluster.addr(*id)).await {
                Ok(t) => return Ok(t),
                Err(e) => last = e,
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(last)
}

/// Checks that every record handled twice was in flight when `fault` happened: its first
/// handling started before then. (With `prefetch(0)` a record starts as soon as it is acquired,
/// so "started before" is "acquired before".) Not only the partitions the stopped broker led: a
/// surviving leader's share operations wait for the share coordinator of their state, which
/// may have been on the stopped broker too, and a record held meanwhile can outlive its lock.
fn only_in_flight_records_came_twice(tally: &Tally, fault: Instant, what: &str) {
    let duplicates = tally.duplicates();
    for ((partition, offset), handlings) in &duplicates {
        let first = handlings.iter().map(|h| h.started).min();
        assert!(
            first.is_some_and(|t| t < fault),
            "{what}: record {partition}@{offset} was handled {} times though it was not in \
             flight at the fault: its first handling started {:?} after it; attempts {:?}",
            handlings.len(),
            first.map(|t| t.saturating_duration_since(fault)),
            handlings.iter().map(|h| h.attempt).collect::<Vec<_>>()
        );
    }
    eprintln!(
        "{what}: {} records handled twice, all in flight at the fault",
        duplicates.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_partition_leader_is_replaced_and_nothing_is_lost() {
    let test = "a_killed_partition_leader_is_replaced_and_nothing_is_lost";
    let Some((_guard, cluster)) = cluster(test).await else {
        return;
    };
    let (broker, topic, group) = setup(&cluster, "leader", 3).await;
    let all = cluster.ids();
    let coordinator = ask(&cluster, &all, |a| {
        let g = group.clone();
        async move { probe::coordinator(&a, &g).await }
    })
    .await
    .expect("the group's coordinator");
    let leaders = ask(&cluster, &all, |a| {
        let t = topic.clone();
        async move { probe::leaders(&a, &t).await }
    })
    .await
    .expect("the topic's leaders");
    // A leader that is not the coordinator: this test is about the partition, not the group.
    let victim = leaders
        .values()
        .copied()
        .find(|l| *l != coordinator)
        .unwrap_or_else(|| panic!("every partition is led by the coordinator: {leaders:?}"));
    let moved: BTreeSet<i32> = leaders
        .iter()
        .filter(|(_, l)| **l == victim)
        .map(|(p, _)| *p)
        .collect();
    eprintln!("{test}: leaders {leaders:?}, coordinator {coordinator}, killing {victim}");

    produce(&*broker, &topic, 0, 300, None, Duration::from_secs(30)).await;
    let tally = Tally::default();
    let def = tally
        .handler("leader", &topic, Duration::from_millis(20))
        .group(&group)
        .concurrency(4)
        .prefetch(0)
        .no_dead_letter();
    let worker = Running::start(kafka::connect(&cluster.url()).await, def, false).await;
    tally
        .wait_for(60, Duration::from_secs(60), "before the kill")
        .await;

    cluster.kill(victim).await;
    let killed = Instant::now();
    let alive: Vec<i32> = all.iter().copied().filter(|i| *i != victim).collect();
    produce(&*broker, &topic, 300, 600, None, Duration::from_secs(60)).await;
    tally
        .wait_for_all(
            &values(0, 600),
            Duration::from_secs(120),
            "after the partition leader was killed",
        )
        .await;

    let now = ask(&cluster, &alive, |a| {
        let t = topic.clone();
        async move { probe::leaders(&a, &t).await }
    })
    .await
    .expect("the topic's leaders after the kill");
    for p in &moved {
        let l = now.get(p).copied().unwrap_or(-1);
        assert!(
            l >= 0 && l != victim,
            "partition {p} has no new leader: {now:?}"
        );
    }
    let fetched_after = tally.partitions_handled_since(killed);
    assert!(
        moved.is_subset(&fetched_after),
        "records of the partitions that changed leader ({moved:?}) were not handled after the \
         kill: the worker did not fetch them from the new leader (handled since: {fetched_after:?})"
    );
    only_in_flight_records_came_twice(&tally, killed, "leader killed");
    let summary = worker.stop().await;
    assert!(summary.accepted >= 600, "{summary:?}");
    cluster.restart(victim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_rejoins_through_the_new_coordinator_when_its_broker_stops() {
    let test = "the_member_rejoins_through_the_new_coordinator_when_its_broker_stops";
    let Some((_guard, cluster)) = cluster(test).await else {
        return;
    };
    let (broker, topic, group) = setup(&cluster, "coord", 3).await;
    let all = cluster.ids();
    produce(&*broker, &topic, 0, 200, None, Duration::from_secs(30)).await;
    let tally = Tally::default();
    let def = tally
        .handler("coord", &topic, Duration::from_millis(20))
        .group(&group)
        .concurrency(4)
        .prefetch(0)
        .no_dead_letter();
    let worker = Running::start(kafka::connect(&cluster.url()).await, def, false).await;
    tally
        .wait_for(40, Duration::from_secs(60), "before the stop")
        .await;
    let old = ask(&cluster, &all, |a| {
        let g = group.clone();
        async move { probe::coordinator(&a, &g).await }
    })
    .await
    .expect("the group's coordinator");
    let members = probe::share_group_members(&cluster.addr(old), &group)
        .await
        .expect("describe the group at its coordinator");
    assert_eq!(members.len(), 1, "{members:?}");
    let member = members[0].member_id.clone();
    let leaders = ask(&cluster, &all, |a| {
        let t = topic.clone();
        async move { probe::leaders(&a, &t).await }
    })
    .await
    .expect("the topic's leaders");
    let led: BTreeSet<i32> = leaders
        .iter()
        .filter(|(_, l)| **l == old)
        .map(|(p, _)| *p)
        .collect();
    eprintln!("{test}: coordinator {old} (leads {led:?}), member {member}; stopping it");

    cluster.stop(old).await;
    let stopped = Instant::now();
    let alive: Vec<i32> = all.iter().copied().filter(|i| *i != old).collect();
    produce(&*broker, &topic, 200, 400, None, Duration::from_secs(60)).await;

    // Another broker coordinates the group now, and knows the member.
    let deadline = Instant::now() + Duration::from_secs(60);
    let new = loop {
        let found = ask(&cluster, &alive, |a| {
            let g = group.clone();
            async move { probe::coordinator(&a, &g).await }
        })
        .await;
        if let Ok(n) = found
            && n != old
            && probe::share_group_members(&cluster.addr(n), &group)
                .await
                .is_ok_and(|m| m.iter().any(|m| m.member_id == member))
        {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "no new coordinator with the member within 60 s (last answer: {found:?})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // A member the new coordinator only loaded from the log would expire after the session
    // timeout; one that heartbeats to it stays, with its partitions.
    tokio::time::sleep(MEMBER_SESSION + Duration::from_secs(2)).await;
    let members = probe::share_group_members(&cluster.addr(new), &group)
        .await
        .expect("describe the group at the new coordinator");
    assert!(
        members.len() == 1 && members[0].member_id == member && members[0].partitions == 3,
        "the member does not heartbeat to the new coordinator {new} (the old one, {old}, is \
         stopped): {members:?}"
    );
    tally
        .wait_for_all(
            &values(0, 400),
            Duration::from_secs(120),
            "after the coordinator's broker stopped",
        )
        .await;
    only_in_flight_records_came_twice(&tally, stopped, "coordinator stopped");
    let summary = worker.stop().await;
    assert!(summary.accepted >= 400, "{summary:?}");
    cluster.restart(old).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_added_while_running_are_fetched() {
    let test = "partitions_added_while_running_are_fetched";
    let Some((_guard, cluster)) = cluster(test).await else {
        return;
    };
    let (broker, topic, group) = setup(&cluster, "grow", 2).await;
    let tally = Tally::default();
    let def = tally
        .handler("grow", &topic, Duration::from_millis(5))
        .group(&group)
        .concurrency(8)
        .no_dead_letter();
    let worker = Running::start(kafka::connect(&cluster.url()).await, def, false).await;
    produce(&*broker, &topic, 0, 100, None, Duration::from_secs(30)).await;
    tally
        .wait_for_all(&values(0, 100), Duration::from_secs(60), "before growing")
        .await;

    // CreatePartitions through our own admin call: create_topic grows an existing topic.
    broker
        .create_topic(&topic, 5)
        .await
        .expect("grow the topic to 5 partitions");
    for (i, p) in (2..5).enumerate() {
        let from = 100 + i * 30;
        produce(
            &*broker,
            &topic,
            from,
            from + 30,
            Some(p),
            Duration::from_secs(30),
        )
        .await;
    }
    tally
        .wait_for_all(
            &values(0, 190),
            Duration::from_secs(60),
            "records in the partitions added while running",
        )
        .await;
    let summary = worker.stop().await;
    assert!(summary.accepted >= 190, "{summary:?}");
    assert!(
        tally.duplicates().is_empty(),
        "nothing failed, yet: {:?}",
        tally.duplicates()
    );
}
