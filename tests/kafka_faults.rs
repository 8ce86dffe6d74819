//! Network faults between the worker and its broker: a TCP proxy written in the test code
//! (`support::proxy`) drops every connection, stalls traffic, or refuses connections.
//!
//! This binary starts one broker with `scripts/kafka.sh` on port 25120 (controller 25121) with
//! three extra listeners, 25124-25126, advertised on the proxies' ports 25130-25132: a client
//! that bootstraps through a proxy is sent back to it by metadata, so every connection of the
//! worker goes through its proxy. Each test has its own proxy (the tests run at once); the test
//! itself writes records on the broker's own listener, past the proxy. The broker is killed when
//! the binary exits.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shareworker::broker::{Broker, GroupConfig, StartFrom};
use shareworker_tests::brokers::{self, Single};
use shareworker_tests::http::try_request;
use shareworker_tests::kafka;
use shareworker_tests::proxy::{Mode, Proxy};
use shareworker_tests::tally::{Running, Tally, produce, values};
use tokio::sync::Mutex;
use tokio::time::Instant;

const PORT: u16 = 25120;
/// Listener `i` on `LISTENER + i`, advertised on `PROXY + i`.
const LISTENER: u16 = 25124;
const PROXY: u16 = 25130;

static BROKER: Mutex<Option<Arc<Single>>> = Mutex::const_new(None);

/// The shared broker, started on first use; `None`: skip (no Java or Maven, outside CI).
async fn broker(test: &str) -> Option<Arc<Single>> {
    if !brokers::available(test) {
        return None;
    }
    let mut guard = BROKER.lock().await;
    if let Some(b) = &*guard {
        return Some(b.clone());
    }
    let listeners: Vec<(String, u16, u16)> = (0..3)
        .map(|i| (format!("PROXIED{i}"), LISTENER + i, PROXY + i))
        .collect();
    let listeners: Vec<(&str, u16, u16)> = listeners
        .iter()
        .map(|(n, l, a)| (n.as_str(), *l, *a))
        .collect();
    let b = Arc::new(Single::start(PORT, &listeners, &[]).await);
    *guard = Some(b.clone());
    Some(b)
}

/// The proxy in front of listener `i`.
async fn proxy(i: u16) -> Proxy {
    let listen: SocketAddr = ([127, 0, 0, 1], PROXY + i).into();
    let upstream: SocketAddr = ([127, 0, 0, 1], LISTENER + i).into();
    Proxy::start(listen, upstream).await
}

/// A topic with `partitions` partitions and a group reading it from the start, on the broker's
/// own listener; returns a client on that listener too.
async fn setup(
    single: &Single,
    prefix: &str,
    partitions: i32,
) -> (Arc<dyn Broker>, String, String) {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let (topic, group) = (format!("{prefix}-t-{stamp}"), format!("{prefix}-g-{stamp}"));
    let direct = kafka::connect(&single.url()).await;
    direct
        .create_topic(&topic, partitions)
        .await
        .expect("create the topic");
    direct
        .configure_group(
            &group,
            &GroupConfig::default()
                .start_from(StartFrom::Earliest)
                .lock_duration(kafka::LOCK),
        )
        .await
        .expect("configure the group");
    (direct, topic, group)
}

/// A worker whose every connection goes through `proxy`, with `/readyz` on a free port.
async fn worker_through(proxy: &Proxy, tally: &Tally, topic: &str, group: &str) -> Running {
    let url = format!("kafka://{}", proxy.addr());
    let def = tally
        .handler("faults", topic, Duration::from_millis(20))
        .group(group)
        .concurrency(4)
        .prefetch(0)
        .no_dead_letter();
    Running::start(kafka::connect(&url).await, def, true).await
}

/// Polls `/readyz` until it answers `want`; returns the body.
///
/// # Panics
/// When it does not within `limit`.
async fn readyz_becomes(addr: SocketAddr, want: u16, limit: Duration, what: &str) -> String {
    let deadline = Instant::now() + limit;
    let mut last = None;
    loop {
        let answer = try_request(addr, "GET", "/readyz").await;
        if let Ok((status, body)) = &answer
            && *status == want
        {
            return body.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: /readyz did not answer {want} within {limit:?}; last: {last:?}"
        );
        last = Some(answer);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn http(worker: &Running) -> SocketAddr {
    worker.http.expect("the worker serves HTTP")
}

/// How long after a fault the broker may still be ending the sessions of the connections it
/// cut: it ends them when it notices the close, keyed by group and member, and a session the
/// worker opened meanwhile ends with them (see "Seen on Kafka 4.4.0" in the share module). When
/// a stall ends, the broker notices the connections the worker gave up during the stall only
/// then, while the worker's new session is being opened.
const SETTLING: Duration = Duration::from_secs(2);

/// Checks that each record handled twice was in flight at one of `faults`: its first handling
/// started before the fault (or while the broker was still ending the cut sessions, within
/// [`SETTLING`]) and its last one after it. With `prefetch(0)` a record starts as soon as it is
/// acquired.
fn only_in_flight_records_came_twice(tally: &Tally, faults: &[Instant], what: &str) {
    let duplicates = tally.duplicates();
    for ((partition, offset), handlings) in &duplicates {
        let first = handlings.iter().map(|h| h.started).min();
        let last = handlings.iter().map(|h| h.started).max();
        let in_flight = match (first, last) {
            (Some(first), Some(last)) => faults.iter().any(|f| first < *f + SETTLING && *f <= last),
            _ => false,
        };
        assert!(
            in_flight,
            "{what}: record {partition}@{offset} was handled {} times but was not in flight at \
             any fault; attempts {:?}",
            handlings.len(),
            handlings.iter().map(|h| h.attempt).collect::<Vec<_>>()
        );
    }
    eprintln!(
        "{what}: {} records handled twice, all in flight at a fault",
        duplicates.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_are_reopened_and_nothing_is_lost() {
    let test = "dropped_connections_are_reopened_and_nothing_is_lost";
    let Some(single) = broker(test).await else {
        return;
    };
    let (direct, topic, group) = setup(&single, "drop", 2).await;
    produce(&*direct, &topic, 0, 300, None, Duration::from_secs(30)).await;
    let proxy = proxy(0).await;
    let tally = Tally::default();
    let worker = worker_through(&proxy, &tally, &topic, &group).await;
    tally
        .wait_for(50, Duration::from_secs(60), "before the first drop")
        .await;

    let mut drops = Vec::new();
    for round in 0..3 {
        let accepted = proxy.accepted();
        let handled = tally.values_handled();
        proxy.drop_connections();
        drops.push(Instant::now());
        let from = 300 + round * 100;
        produce(
            &*direct,
            &topic,
            from,
            from + 100,
            None,
            Duration::from_secs(30),
        )
        .await;
        tally
            .wait_for(
                handled + 30,
                Duration::from_secs(60),
                &format!("after dropping every connection (drop {})", round + 1),
            )
            .await;
        assert!(
            proxy.accepted() > accepted,
            "drop {}: the worker went on without opening a new connection?",
            round + 1
        );
    }
    tally
        .wait_for_all(
            &values(0, 600),
            Duration::from_secs(120),
            "after the connection drops",
        )
        .await;
    only_in_flight_records_came_twice(&tally, &drops, "connections dropped");
    readyz_becomes(
        http(&worker),
        200,
        Duration::from_secs(30),
        "after the drops",
    )
    .await;
    let summary = worker.stop().await;
    assert!(summary.accepted >= 600, "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_broker_times_out_and_the_worker_recovers() {
    let test = "a_stalled_broker_times_out_and_the_worker_recovers";
    let Some(single) = broker(test).await else {
        return;
    };
    let (direct, topic, group) = setup(&single, "stall", 2).await;
    produce(&*direct, &topic, 0, 200, None, Duration::from_secs(30)).await;
    let proxy = proxy(1).await;
    let tally = Tally::default();
    let worker = worker_through(&proxy, &tally, &topic, &group).await;
    tally
        .wait_for(50, Duration::from_secs(60), "before the stall")
        .await;
    readyz_becomes(
        http(&worker),
        200,
        Duration::from_secs(30),
        "before the stall",
    )
    .await;

    // Nothing flows, nothing closes: longer than the request timeout (30 s), so requests time
    // out and the worker gives its connections up and opens new ones (stalled too).
    proxy.set_mode(Mode::Stalled);
    let stalled = Instant::now();
    produce(&*direct, &topic, 200, 300, None, Duration::from_secs(30)).await;
    let body = readyz_becomes(
        http(&worker),
        503,
        Duration::from_secs(40),
        "while the broker is stalled",
    )
    .await;
    assert!(body.contains("broker"), "{body}");
    let handled = tally.values_handled();
    tokio::time::sleep(
        (stalled + Duration::from_secs(35)).saturating_duration_since(Instant::now()),
    )
    .await;
    assert!(
        tally.values_handled() <= handled + 4,
        "records were handled through a stalled proxy?"
    );

    proxy.set_mode(Mode::Open);
    let resumed = Instant::now();
    tally
        .wait_for_all(
            &values(0, 300),
            Duration::from_secs(90),
            "after the stall ended",
        )
        .await;
    readyz_becomes(
        http(&worker),
        200,
        Duration::from_secs(30),
        "after the stall",
    )
    .await;
    only_in_flight_records_came_twice(&tally, &[resumed], "stalled");
    let summary = worker.stop().await;
    assert!(summary.accepted >= 300, "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_not_ready_while_the_broker_is_unreachable() {
    let test = "readyz_says_not_ready_while_the_broker_is_unreachable";
    let Some(single) = broker(test).await else {
        return;
    };
    let (direct, topic, group) = setup(&single, "down", 2).await;
    produce(&*direct, &topic, 0, 100, None, Duration::from_secs(30)).await;
    let proxy = proxy(2).await;
    let tally = Tally::default();
    let worker = worker_through(&proxy, &tally, &topic, &group).await;
    tally
        .wait_for_all(
            &values(0, 100),
            Duration::from_secs(60),
            "before the outage",
        )
        .await;
    readyz_becomes(
        http(&worker),
        200,
        Duration::from_secs(30),
        "before the outage",
    )
    .await;

    // Every connection closed, every new one closed at once: the broker is unreachable.
    proxy.set_mode(Mode::Down);
    let down = Instant::now();
    produce(&*direct, &topic, 100, 200, None, Duration::from_secs(30)).await;
    let body = readyz_becomes(
        http(&worker),
        503,
        Duration::from_secs(30),
        "while the broker is unreachable",
    )
    .await;
    assert!(body.contains("broker"), "{body}");
    // And it stays so while the outage lasts.
    let mut answers = BTreeSet::new();
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok((status, _)) = try_request(http(&worker), "GET", "/readyz").await {
            answers.insert(status);
        }
    }
    assert_eq!(answers, BTreeSet::from([503]), "/readyz during the outage");
    assert_eq!(
        tally.missing(&values(0, 200)).len(),
        100,
        "records handled while the broker was unreachable?"
    );

    proxy.set_mode(Mode::Open);
    readyz_becomes(
        http(&worker),
        200,
        Duration::from_secs(60),
        "after the outage",
    )
    .await;
    tally
        .wait_for_all(&values(0, 200), Duration::from_secs(60), "after the outage")
        .await;
    only_in_flight_records_came_twice(&tally, &[down], "unreachable");
    let summary = worker.stop().await;
    assert!(summary.accepted >= 200, "{summary:?}");
}
