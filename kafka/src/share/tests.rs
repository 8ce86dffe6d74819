//! Tests against the real broker at `KAFKA_BOOTSTRAP` (skipped when it is unset, failing when
//! `CI` is set without it). Each test uses its own topic and group.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::IncrementalAlterConfigsRequest;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::protocol::StrBytes;
use tokio::time::{Instant, sleep, timeout};

use super::join;
use crate::admin::{Admin, test_cluster, unique_name};
use crate::cluster::Cluster;
use crate::conn::Versions;
use crate::producer::{Compression, Producer};
use shareworker_core::{
    AckKind, Delivery, GroupConfig, Member, OutgoingRecord, RecordId, StartFrom,
};

const LOCK: Duration = Duration::from_secs(15);
const PATIENCE: Duration = Duration::from_secs(30);

struct Env {
    cluster: Arc<Cluster>,
    admin: Admin,
    topic: String,
    group: String,
}

impl Env {
    /// A topic with `partitions` partitions holding `records` records (values `v<i>`, spread
    /// round robin), and a group reading it from the earliest offset with 15 s locks.
    async fn new(case: &str, partitions: i32, records: usize) -> Option<Self> {
        let cluster = test_cluster().await?;
        let admin = Admin::new(cluster.clone());
        let topic = unique_name(&format!("share-{case}"));
        let group = unique_name(&format!("share-{case}-g"));
        admin
            .create_topic(&topic, partitions)
            .await
            .unwrap_or_else(|e| panic!("create topic {topic}: {e:?}"));
        admin
            .configure_group(
                &group,
                &GroupConfig::default()
                    .start_from(StartFrom::Earliest)
                    .lock_duration(LOCK),
            )
            .await
            .unwrap_or_else(|e| panic!("configure group {group}: {e:?}"));
        let env = Self {
            cluster,
            admin,
            topic,
            group,
        };
        env.produce(records, 0, partitions).await;
        Some(env)
    }

    async fn produce(&self, n: usize, first: usize, partitions: i32) {
        if n == 0 {
            return;
        }
        let producer = Producer::new(self.cluster.clone(), Compression::default());
        let records = (first..first + n)
            .map(|i| OutgoingRecord {
                partition: Some(i32::try_from(i).unwrap_or(0) % partitions),
                ..OutgoingRecord::new(format!("v{i}")).with_header("n", i.to_string())
            })
            .collect();
        producer
            .produce(&self.topic, records)
            .await
            .unwrap_or_else(|e| panic!("produce to {}: {e:?}", self.topic));
    }

    async fn join(&self) -> Box<dyn Member> {
        join(
            self.cluster.clone(),
            &self.group,
            std::slice::from_ref(&self.topic),
        )
        .await
        .unwrap_or_else(|e| panic!("join {}: {e:?}", self.group))
    }

    /// Joins through a cluster handle of its own, like another process.
    async fn join_elsewhere(&self) -> Box<dyn Member> {
        let cluster = test_cluster().await.expect("the broker is configured");
        join(cluster, &self.group, std::slice::from_ref(&self.topic))
            .await
            .unwrap_or_else(|e| panic!("join {}: {e:?}", self.group))
    }

    async fn expect_lag(&self, expected: u64) {
        let give_up = Instant::now() + PATIENCE;
        loop {
            let lag = self.admin.lag(&self.group).await.expect("lag");
            let total = lag.iter().find(|l| l.topic == self.topic).map(|l| l.lag);
            if total == Some(expected) {
                return;
            }
            assert!(
                Instant::now() < give_up,
                "lag of {} is {total:?}, expected {expected}",
                self.group
            );
            sleep(Duration::from_millis(300)).await;
        }
    }

    /// Sets a group config the admin API has no field for.
    async fn set_group_config(&self, key: &str, value: &str) {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(32)
                .with_resource_name(StrBytes::from_string(self.group.clone()))
                .with_configs(vec![
                    AlterableConfig::default()
                        .with_name(StrBytes::from_string(key.to_owned()))
                        .with_config_operation(0)
                        .with_value(Some(StrBytes::from_string(value.to_owned()))),
                ]),
        ]);
        let conn = self.cluster.any().await.expect("a connection");
        let (resp, _) = conn
            .call(&req, Versions { min: 0, max: 1 })
            .await
            .expect("IncrementalAlterConfigs");
        for r in resp.responses {
            assert_eq!(r.error_code, 0, "set {key}={value}: {:?}", r.error_message);
        }
    }
}

async fn acquire_n(member: &dyn Member, n: usize, per_call: usize) -> Vec<Delivery> {
    let give_up = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < give_up {
        let max = (n - got.len()).min(per_call);
        let batch = member
            .acquire(max, Duration::from_secs(2))
            .await
            .expect("acquire");
        assert!(batch.len() <= max, "acquire({max}) gave {}", batch.len());
        got.extend(batch);
    }
    assert_eq!(got.len(), n, "acquired {:?}", ids(&got));
    got
}

fn ids(ds: &[Delivery]) -> Vec<RecordId> {
    ds.iter().map(|d| d.id.clone()).collect()
}

fn outcome(r: &Result<(), crate::Error>) -> Result<(), String> {
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.is_lock_lost() => Err("lock-lost".to_owned()),
        Err(e) => Err(format!("{e:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_release_reject_and_unknown_records() {
    let Some(env) = Env::new("basic", 1, 4).await else {
        return;
    };
    let m = env.join().await;
    assert!(!m.member_id().is_empty());
    let mut got = acquire_n(&*m, 4, 10).await;
    got.sort_by_key(|d| d.id.offset);
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.id.offset, i as i64);
        assert_eq!(&*d.id.topic, env.topic.as_str());
        assert_eq!(d.delivery_count, 1, "{:?}", d.id);
        assert_eq!(d.value.as_deref(), Some(format!("v{i}").as_bytes()));
        assert_eq!(d.headers.get_str("n"), Some(i.to_string().as_str()));
        assert!(
            d.lock_duration <= LOCK && d.lock_duration > LOCK - Duration::from_secs(5),
            "{:?}",
            d.lock_duration
        );
    }
    let id = |o: usize| got[o].id.clone();
    let unknown = RecordId::new(env.topic.as_str(), 0, 99);
    let results = m
        .settle(&[
            (id(0), AckKind::Accept),
            (id(1), AckKind::Release),
            (id(2), AckKind::Reject),
            (unknown, AckKind::Accept),
        ])
        .await
        .expect("settle");
    assert_eq!(
        results.iter().map(outcome).collect::<Vec<_>>(),
        vec![Ok(()), Ok(()), Ok(()), Err("lock-lost".to_owned())]
    );
    let twice = m.settle(&[(id(0), AckKind::Accept)]).await.expect("settle");
    assert_eq!(outcome(&twice[0]), Err("lock-lost".to_owned()));

    let again = acquire_n(&*m, 1, 10).await;
    assert_eq!((again[0].id.clone(), again[0].delivery_count), (id(1), 2));
    let results = m
        .settle(&[(id(1), AckKind::Accept), (id(3), AckKind::Accept)])
        .await
        .expect("settle");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    env.expect_lag(0).await;
    let none = m
        .acquire(10, Duration::from_secs(1))
        .await
        .expect("acquire");
    assert!(none.is_empty(), "{:?}", ids(&none));

    m.leave().await.expect("leave");
    let e = m
        .acquire(1, Duration::from_secs(1))
        .await
        .expect_err("closed");
    assert!(e.is_closed(), "{e:?}");
    let e = m
        .settle(&[(id(3), AckKind::Accept)])
        .await
        .expect_err("closed");
    assert!(e.is_closed(), "{e:?}");
    assert!(m.leave().await.expect_err("left twice").is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_never_returns_more_than_max() {
    const N: usize = 30;
    let Some(env) = Env::new("max", 3, N).await else {
        return;
    };
    let m = env.join().await;
    assert!(
        m.acquire(0, Duration::from_secs(1))
            .await
            .expect("acquire(0)")
            .is_empty()
    );
    let mut seen = BTreeSet::new();
    let give_up = Instant::now() + PATIENCE;
    for max in [1usize, 3, 7, 2].into_iter().cycle() {
        if seen.len() >= N || Instant::now() >= give_up {
            break;
        }
        let got = m
            .acquire(max, Duration::from_secs(2))
            .await
            .expect("acquire");
        assert!(got.len() <= max, "acquire({max}) returned {}", got.len());
        for d in &got {
            assert!(seen.insert(d.id.clone()), "{:?} delivered twice", d.id);
        }
        let acks: Vec<_> = got
            .iter()
            .map(|d| (d.id.clone(), AckKind::Accept))
            .collect();
        let results = m.settle(&acks).await.expect("settle");
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }
    assert_eq!(seen.len(), N);
    env.expect_lag(0).await;
    m.leave().await.expect("leave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_records_without_overlap() {
    const N: usize = 60;
    let Some(env) = Env::new("split", 2, N).await else {
        return;
    };
    let members = [env.join().await, env.join_elsewhere().await];
    let accepted = Arc::new(std::sync::Mutex::new(BTreeMap::<RecordId, usize>::new()));
    let held = Arc::new(std::sync::Mutex::new(BTreeMap::<RecordId, usize>::new()));
    let mut tasks = Vec::new();
    for (me, m) in members.into_iter().enumerate() {
        let accepted = accepted.clone();
        let held = held.clone();
        tasks.push(tokio::spawn(async move {
            let give_up = Instant::now() + PATIENCE * 2;
            let mut deliveries = 0;
            while accepted.lock().expect("lock").len() < N && Instant::now() < give_up {
                let got = m.acquire(5, Duration::from_secs(1)).await.expect("acquire");
                deliveries += got.len();
                for d in &got {
                    let other = held.lock().expect("lock").insert(d.id.clone(), me);
                    assert!(other.is_none(), "{:?} held by {other:?} and {me}", d.id);
                }
                sleep(Duration::from_millis(50)).await;
                let acks: Vec<_> = got
                    .iter()
                    .map(|d| (d.id.clone(), AckKind::Accept))
                    .collect();
                let results = m.settle(&acks).await.expect("settle");
                for ((id, _), r) in acks.iter().zip(results) {
                    r.unwrap_or_else(|e| panic!("member {me}: accept {id:?}: {e:?}"));
                    held.lock().expect("lock").remove(id);
                    *accepted
                        .lock()
                        .expect("lock")
                        .entry(id.clone())
                        .or_default() += 1;
                }
            }
            m.leave().await.expect("leave");
            deliveries
        }));
    }
    let mut per_member = Vec::new();
    for t in tasks {
        per_member.push(t.await.expect("member task"));
    }
    let accepted = accepted.lock().expect("lock").clone();
    assert_eq!(accepted.len(), N, "accepted {accepted:?}");
    assert!(accepted.values().all(|n| *n == 1), "{accepted:?}");
    eprintln!("observed: deliveries per member {per_member:?}");
    env.expect_lag(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_releases_to_another_member_at_once() {
    let Some(env) = Env::new("leave", 1, 2).await else {
        return;
    };
    let a = env.join().await;
    let got = acquire_n(&*a, 2, 10).await;
    let b = env.join_elsewhere().await;
    let none = b
        .acquire(10, Duration::from_secs(2))
        .await
        .expect("acquire");
    assert!(none.is_empty(), "B got {:?} while A holds them", ids(&none));
    let left_at = Instant::now();
    a.leave().await.expect("leave");
    let again = acquire_n(&*b, 2, 10).await;
    let took = left_at.elapsed();
    assert!(took < LOCK / 2, "B got the records {took:?} after A left");
    let mut before = ids(&got);
    before.sort();
    let mut after = ids(&again);
    after.sort();
    assert_eq!(before, after);
    eprintln!(
        "observed: after leave, redelivered in {took:?} with counts {:?}",
        again.iter().map(|d| d.delivery_count).collect::<Vec<_>>()
    );
    for d in &again {
        assert_eq!(d.delivery_count, 2, "{:?}", d.id);
    }
    let acks: Vec<_> = again
        .iter()
        .map(|d| (d.id.clone(), AckKind::Accept))
        .collect();
    assert!(
        b.settle(&acks)
            .await
            .expect("settle")
            .iter()
            .all(Result::is_ok)
    );
    env.expect_lag(0).await;
    b.leave().await.expect("leave B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_keeps_the_lock_past_the_lock_time() {
    let Some(env) = Env::new("renew", 1, 1).await else {
        return;
    };
    let a = env.join().await;
    let b = env.join_elsewhere().await;
    let got = acquire_n(&*a, 1, 10).await;
    let end = Instant::now() + LOCK + LOCK / 3;
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        while Instant::now() < end {
            let got = b
                .acquire(10, Duration::from_secs(2))
                .await
                .expect("acquire");
            seen.extend(got.into_iter().map(|d| d.id));
        }
        (b, seen)
    });
    while Instant::now() < end {
        sleep(LOCK / 3).await;
        let r = a
            .settle(&[(got[0].id.clone(), AckKind::Renew)])
            .await
            .expect("settle");
        r[0].as_ref().unwrap_or_else(|e| panic!("renew: {e:?}"));
    }
    let (b, seen) = watcher.await.expect("watcher");
    assert!(seen.is_empty(), "B got {seen:?} while A renewed");
    let r = a
        .settle(&[(got[0].id.clone(), AckKind::Accept)])
        .await
        .expect("settle");
    assert!(r[0].is_ok(), "{r:?}");
    env.expect_lag(0).await;
    a.leave().await.expect("leave A");
    b.leave().await.expect("leave B");
}

/// A partition's acknowledgements fail together on the broker; a stale one (its lock expired)
/// must not take the others down with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_record_does_not_fail_the_others_of_its_partition() {
    let Some(env) = Env::new("stale", 1, 2).await else {
        return;
    };
    let m = env.join().await;
    // One at a time: the broker keeps a lock timer per acquired range.
    let mut got = acquire_n(&*m, 2, 1).await;
    // Both locks started before now.
    let acquired = Instant::now();
    got.sort_by_key(|d| d.id.offset);
    sleep(LOCK / 2).await;
    let r = m
        .settle(&[(got[1].id.clone(), AckKind::Renew)])
        .await
        .expect("renew");
    assert!(r[0].is_ok(), "{r:?}");
    // Past the first record's lock, well within the renewed one's.
    let expired = acquired + LOCK + Duration::from_secs(3);
    tokio::time::sleep_until(expired).await;
    let results = m
        .settle(&[
            (got[0].id.clone(), AckKind::Accept),
            (got[1].id.clone(), AckKind::Accept),
        ])
        .await
        .expect("settle");
    eprintln!("observed: accept [expired, renewed] answered {results:?}");
    assert_eq!(
        results.iter().map(outcome).collect::<Vec<_>>(),
        vec![Err("lock-lost".to_owned()), Ok(())]
    );
    let again = acquire_n(&*m, 1, 10).await;
    assert_eq!(
        (again[0].id.clone(), again[0].delivery_count),
        (got[0].id.clone(), 2)
    );
    assert!(
        m.settle(&[(again[0].id.clone(), AckKind::Accept)])
            .await
            .expect("settle")[0]
            .is_ok()
    );
    env.expect_lag(0).await;
    m.leave().await.expect("leave");
}

/// An acquire dropped while its fetch is in flight loses nothing: the next acquire returns the
/// records long before their locks would expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_acquire_loses_no_records() {
    let Some(env) = Env::new("dropped", 1, 3).await else {
        return;
    };
    let m = env.join().await;
    for _ in 0..5 {
        let _ = timeout(
            Duration::from_millis(3),
            m.acquire(3, Duration::from_secs(10)),
        )
        .await;
    }
    let started = Instant::now();
    let got = acquire_n(&*m, 3, 10).await;
    assert!(started.elapsed() < LOCK / 2, "{:?}", started.elapsed());
    for d in &got {
        assert_eq!(d.delivery_count, 1, "{:?}", d.id);
    }
    let acks: Vec<_> = got
        .iter()
        .map(|d| (d.id.clone(), AckKind::Accept))
        .collect();
    assert!(
        m.settle(&acks)
            .await
            .expect("settle")
            .iter()
            .all(Result::is_ok)
    );
    env.expect_lag(0).await;
    m.leave().await.expect("leave");
}

/// A settle does not wait behind a long-poll fetch of the same member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_is_not_held_up_by_a_waiting_acquire() {
    let Some(env) = Env::new("riding", 1, 1).await else {
        return;
    };
    let m: Arc<dyn Member> = Arc::from(env.join().await);
    let got = acquire_n(&*m, 1, 10).await;
    let poller = {
        let m = m.clone();
        tokio::spawn(async move { m.acquire(10, Duration::from_secs(6)).await })
    };
    sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let r = m
        .settle(&[(got[0].id.clone(), AckKind::Accept)])
        .await
        .expect("settle");
    let took = started.elapsed();
    assert!(r[0].is_ok(), "{r:?}");
    assert!(took < Duration::from_secs(2), "settle took {took:?}");
    eprintln!("observed: settle during a waiting acquire took {took:?}");
    let late = poller.await.expect("poller").expect("acquire");
    assert!(late.is_empty(), "{:?}", ids(&late));
    env.expect_lag(0).await;
    m.leave().await.expect("leave");
}

/// With `share.renew.acknowledge.enable=false` the broker refuses RENEW; the error says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_renewal_names_the_group_config() {
    let Some(env) = Env::new("norenew", 1, 1).await else {
        return;
    };
    env.set_group_config("share.renew.acknowledge.enable", "false")
        .await;
    let m = env.join().await;
    let got = acquire_n(&*m, 1, 10).await;
    let r = m
        .settle(&[(got[0].id.clone(), AckKind::Renew)])
        .await
        .expect("settle");
    eprintln!("observed: renew with renewal disabled answered {r:?}");
    let e = r[0].as_ref().expect_err("renew refused");
    assert!(
        e.to_string()
            .contains("share.renew.acknowledge.enable may be false for this group"),
        "{e}"
    );
    let accept = m
        .settle(&[(got[0].id.clone(), AckKind::Accept)])
        .await
        .expect("settle");
    eprintln!("observed: accept after the refused renew answered {accept:?}");
    m.leave().await.expect("leave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_refuses_bad_input() {
    let Some(cluster) = test_cluster().await else {
        return;
    };
    let topics = vec!["t".to_owned()];
    assert!(
        join(cluster.clone(), "", &topics)
            .await
            .err()
            .is_some_and(|e| e.is_invalid_input())
    );
    assert!(
        join(cluster.clone(), "g", &[])
            .await
            .err()
            .is_some_and(|e| e.is_invalid_input())
    );
}

/// The broker ends the member's share session behind its back (here: another connection closes
/// it with epoch -1, which also releases its records): the next request meets
/// SHARE_SESSION_NOT_FOUND, the member answers lock-lost for what it held, opens a new session
/// and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_session_means_lock_lost_and_a_new_session() {
    use crate::wire::share_acknowledge::ShareAcknowledgeRequest;

    let Some(env) = Env::new("session", 1, 2).await else {
        return;
    };
    let m = env.join().await;
    let got = acquire_n(&*m, 2, 10).await;
    let close = ShareAcknowledgeRequest {
        group_id: StrBytes::from_string(env.group.clone()),
        member_id: StrBytes::from_string(m.member_id().to_owned()),
        share_session_epoch: -1,
        is_renew_ack: false,
        topics: Vec::new(),
    };
    let conn = env.cluster.any().await.expect("a connection");
    let (resp, _) = conn
        .call(&close, Versions { min: 1, max: 2 })
        .await
        .expect("ShareAcknowledge epoch -1");
    eprintln!(
        "observed: closing the member's session from another connection answered {}",
        resp.error_code
    );
    let r = m
        .settle(&[(got[0].id.clone(), AckKind::Accept)])
        .await
        .expect("settle");
    eprintln!("observed: accept in the closed session answered {r:?}");
    assert_eq!(outcome(&r[0]), Err("lock-lost".to_owned()));
    // The old session's other record is lost to this member too, without asking the broker.
    let r = m
        .settle(&[(got[1].id.clone(), AckKind::Accept)])
        .await
        .expect("settle");
    assert_eq!(outcome(&r[0]), Err("lock-lost".to_owned()));
    let mut again = acquire_n(&*m, 2, 10).await;
    again.sort_by_key(|d| d.id.offset);
    eprintln!(
        "observed: redelivered after the session was closed: {:?}",
        again
            .iter()
            .map(|d| (d.id.offset, d.delivery_count))
            .collect::<Vec<_>>()
    );
    let acks: Vec<_> = again
        .iter()
        .map(|d| (d.id.clone(), AckKind::Accept))
        .collect();
    assert!(
        m.settle(&acks)
            .await
            .expect("settle")
            .iter()
            .all(Result::is_ok)
    );
    env.expect_lag(0).await;
    m.leave().await.expect("leave");
}
