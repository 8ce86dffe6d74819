//! Worker processes on a real Kafka broker: two processes share one group, and a process killed
//! with SIGKILL has its records redelivered to the other after the lock time, none lost.
//!
//! The workers are the `kafka-test-worker` binary of this package; each prints
//! `start <partition> <offset> <attempt>` for every job it started and
//! `done <partition> <offset> <attempt>` for every job it finished.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shareworker::broker::{Broker, GroupConfig, OutgoingRecord, StartFrom};
use shareworker_tests::kafka;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

type Done = Arc<Mutex<Vec<(i32, i64, u16)>>>;

struct WorkerProcess {
    child: Child,
    started: Done,
    done: Done,
}

fn unique(what: &str) -> String {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("proc-{what}-{}-{stamp}", std::process::id())
}

async fn spawn_worker(
    url: &str,
    topic: &str,
    group: &str,
    handle_ms: u64,
    concurrency: u32,
) -> WorkerProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kafka-test-worker"))
        .env("KAFKA_URL", url)
        .env("TOPIC", topic)
        .env("GROUP", group)
        .env("HANDLE_MS", handle_ms.to_string())
        .env("CONCURRENCY", concurrency.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the kafka-test-worker binary");
    let stdout = child.stdout.take().expect("piped stdout");
    let (started, done): (Done, Done) = Default::default();
    let (started_sink, done_sink) = (started.clone(), done.clone());
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let (sink, p, o, a) = match parts.as_slice() {
                ["start", p, o, a] => (&started_sink, p, o, a),
                ["done", p, o, a] => (&done_sink, p, o, a),
                _ => continue,
            };
            if let (Ok(p), Ok(o), Ok(a)) = (p.parse(), o.parse(), a.parse()) {
                sink.lock().expect("lock").push((p, o, a));
            }
        }
    });
    WorkerProcess {
        child,
        started,
        done,
    }
}

impl WorkerProcess {
    fn done(&self) -> Vec<(i32, i64, u16)> {
        self.done.lock().expect("lock").clone()
    }

    /// Waits until the process has started at least `n` jobs, for at most `limit`.
    async fn wait_started(&self, n: usize, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let got = self.started.lock().expect("lock").len();
            if got >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the worker started {got} jobs within {limit:?}, expected at least {n}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then wait for a graceful exit.
    async fn stop(mut self) -> Vec<(i32, i64, u16)> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("the worker stops within 60 s of SIGTERM")
            .expect("wait for the worker");
        assert!(
            status.success(),
            "the worker exits cleanly on SIGTERM: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.done()
    }
}

async fn setup(
    url: &str,
    topic: &str,
    group: &str,
    partitions: i32,
    records: usize,
) -> Arc<dyn Broker> {
    let broker = kafka::connect(url).await;
    broker
        .create_topic(topic, partitions)
        .await
        .expect("create the topic");
    broker
        .configure_group(
            group,
            &GroupConfig::default()
                .start_from(StartFrom::Earliest)
                .lock_duration(kafka::LOCK),
        )
        .await
        .expect("configure the group");
    let batch: Vec<OutgoingRecord> = (0..records)
        .map(|i| OutgoingRecord::new(format!("{i}")).with_key(format!("k{i}")))
        .collect();
    broker
        .produce(topic, batch)
        .await
        .expect("produce the records");
    broker
}

/// Waits until the group lists every partition of `topic` with no lag (a group that has not
/// joined yet lists nothing, which is not "done").
async fn wait_for_lag_zero(
    broker: &dyn Broker,
    group: &str,
    topic: &str,
    partitions: usize,
    limit: Duration,
) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let lags = broker.lag(group).await.expect("read the share lag");
        let t = lags.iter().find(|t| t.topic == topic);
        if t.is_some_and(|t| t.partitions.len() == partitions && t.lag == 0) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "group {group} still has lag {lags:?} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_split_the_work_and_accept_nothing_twice() {
    let Some(url) = kafka::bootstrap() else {
        return;
    };
    let (topic, group) = (unique("split-t"), unique("split-g"));
    let n = 400;
    let broker = setup(&url, &topic, &group, 4, n).await;
    let a = spawn_worker(&url, &topic, &group, 50, 4).await;
    let b = spawn_worker(&url, &topic, &group, 50, 4).await;
    wait_for_lag_zero(&*broker, &group, &topic, 4, Duration::from_secs(180)).await;
    let (da, db) = (a.stop().await, b.stop().await);
    let mut seen: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for (p, o, _) in da.iter().chain(db.iter()) {
        *seen.entry((*p, *o)).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        twice.is_empty(),
        "records handled by both processes (or twice): {twice:?}"
    );
    assert_eq!(
        seen.len(),
        n,
        "every one of the {n} records was handled (A {}, B {})",
        da.len(),
        db.len()
    );
    assert!(
        !da.is_empty() && !db.is_empty(),
        "both processes took part: A handled {}, B handled {}",
        da.len(),
        db.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_has_its_records_redelivered_to_the_other() {
    let Some(url) = kafka::bootstrap() else {
        return;
    };
    let (topic, group) = (unique("kill-t"), unique("kill-g"));
    let n = 40;
    let broker = setup(&url, &topic, &group, 2, n).await;
    // A takes records and sits on them (each job takes 10 minutes); then it is killed.
    let mut a = spawn_worker(&url, &topic, &group, 600_000, 8).await;
    // Joining and the first fetch take a few seconds (an assignment can come seconds after the
    // join); wait until A runs all 8 it can (lag cannot tell: in-flight records count as lag).
    a.wait_started(8, Duration::from_secs(90)).await;
    a.child.start_kill().expect("SIGKILL worker A");
    let _ = a.child.wait().await;
    let killed_at = tokio::time::Instant::now();
    let b = spawn_worker(&url, &topic, &group, 10, 8).await;
    wait_for_lag_zero(
        &*broker,
        &group,
        &topic,
        2,
        kafka::LOCK * 4 + Duration::from_secs(60),
    )
    .await;
    let db = b.stop().await;
    let handled: BTreeSet<(i32, i64)> = db.iter().map(|(p, o, _)| (*p, *o)).collect();
    assert_eq!(
        handled.len(),
        n,
        "B handled every record, none lost; B: {db:?}"
    );
    let redelivered: Vec<_> = db.iter().filter(|(_, _, attempt)| *attempt >= 2).collect();
    assert!(
        !redelivered.is_empty(),
        "records A held came back to B as a second delivery after A's locks expired"
    );
    assert!(
        killed_at.elapsed() >= Duration::from_secs(1),
        "sanity: B ran after A was killed"
    );
}
