//! A broker restart in the middle of a run loses nothing, and the worker resumes by itself.
//!
//! The test starts its own single-node broker with `scripts/kafka.sh` (on port 19292, so the
//! shared test broker is left alone), stops it while a worker is busy, starts it again on the
//! same data, and checks that every record produced before and after ends up handled.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shareworker::{
    Config, Job, JobDefinition, JobError, KafkaBroker, Worker,
    broker::{Broker, Bytes, GroupConfig, OutgoingRecord, StartFrom},
};
use shareworker_tests::kafka;

const PORT: u16 = 19292;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .expect("the tests crate lives in the repository")
}

fn kafka_sh(args: &[&str]) {
    let dir = format!("target/kafka/restart-{PORT}");
    let mut full: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    full.extend(["--port".into(), PORT.to_string(), "--dir".into(), dir]);
    let status = std::process::Command::new(repo().join("scripts/kafka.sh"))
        .args(&full)
        .current_dir(repo())
        .status()
        .expect("run scripts/kafka.sh");
    assert!(
        status.success(),
        "scripts/kafka.sh {full:?} failed: {status:?}"
    );
}

struct StopOnDrop;

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let dir = format!("target/kafka/restart-{PORT}");
        let _ = std::process::Command::new(repo().join("scripts/kafka.sh"))
            .args(["stop", "--port", &PORT.to_string(), "--dir", &dir])
            .current_dir(repo())
            .status();
    }
}

async fn produce(url: &str, topic: &str, from: usize, n: usize) {
    // A new client each time: the old one may still be reconnecting.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = async {
            let b = KafkaBroker::connect(url).await?;
            let records = (from..from + n)
                .map(|i| OutgoingRecord::new(i.to_string()))
                .collect();
            b.produce(topic, records).await
        };
        match attempt.await {
            Ok(_) => return,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("produce after restart failed, retrying: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => panic!("cannot produce to the restarted broker: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_nothing_and_the_worker_resumes() {
    // Only where the Kafka tests run at all (scripts/test.sh; required under CI).
    if kafka::bootstrap().is_none() {
        return;
    }
    kafka_sh(&["start"]);
    let _stop = StopOnDrop;
    let url = format!("kafka://127.0.0.1:{PORT}");
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let (topic, group) = (format!("restart-t-{stamp}"), format!("restart-g-{stamp}"));
    let admin = kafka::connect(&url).await;
    admin
        .create_topic(&topic, 2)
        .await
        .expect("create the topic");
    admin
        .configure_group(
            &group,
            &GroupConfig::default()
                .start_from(StartFrom::Earliest)
                .lock_duration(kafka::LOCK),
        )
        .await
        .expect("configure the group");
    produce(&url, &topic, 0, 100).await;

    let handled: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = handled.clone();
    let def = JobDefinition::new("restart", &topic, move |job: Job<Bytes>| {
        let sink = sink.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let text = String::from_utf8_lossy(job.payload()).into_owned();
            sink.lock().expect("lock").push(text);
            Ok::<(), JobError>(())
        }
    })
    .group(&group)
    .concurrency(4)
    .no_dead_letter();
    let mut config = Config::default();
    config.shutdown_grace = Duration::from_secs(5);
    config.http.enabled = false;
    let worker = Worker::builder()
        .broker_arc(kafka::connect(&url).await)
        .code_config_only()
        .without_signal_handling()
        .config(config)
        .job(def)
        .build()
        .await
        .expect("build the worker");
    let stop = worker.shutdown_handle();
    let run = tokio::spawn(worker.run());

    // Let it work a little, then take the broker away mid-run.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while handled.lock().expect("lock").len() < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never got going"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kafka_sh(&["stop"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    kafka_sh(&["start", "--keep-data"]);
    produce(&url, &topic, 100, 100).await;

    // Everything produced before and after the restart gets handled, by the same worker.
    let want: BTreeSet<String> = (0..200).map(|i| i.to_string()).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let got: BTreeSet<String> = handled.lock().expect("lock").iter().cloned().collect();
        if got == want {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after the restart the worker did not handle everything: missing {:?}",
            want.difference(&got).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.shutdown();
    let summary = run.await.expect("join").expect("the worker ran");
    assert!(summary.accepted >= 200, "{summary:?}");
}
