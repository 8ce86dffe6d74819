//! `shareworker exporter`: share lag and the replica hint of a group whose workers are all
//! stopped, from a real Kafka broker (`KAFKA_BOOTSTRAP`; skipped without it, failing under CI),
//! so an autoscaler can wake workers scaled to zero. Bad input is refused with what to write.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use shareworker::{
    KafkaBroker,
    broker::{Broker, GroupConfig, OutgoingRecord, StartFrom},
};
use support::{cli, kafka_bootstrap, unique};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn metrics(port: u16) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}

fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Kills the exporter when the test ends, whatever happens.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exporter_asks_for_a_replica_when_work_waits_and_none_runs() {
    let Some(url) = kafka_bootstrap() else { return };
    let kafka = KafkaBroker::connect(&url).await.expect("connect");
    let topic = unique("exp-jobs");
    let group = unique("exp-group");
    kafka.create_topic(&topic, 1).await.expect("topic");
    kafka
        .configure_group(
            &group,
            &GroupConfig::default().start_from(StartFrom::Earliest),
        )
        .await
        .expect("earliest");
    // The group's workers ran once and are gone (scaled to zero): join and leave.
    let member = kafka
        .join(&group, std::slice::from_ref(&topic))
        .await
        .expect("join");
    let _ = member.acquire(1, Duration::from_millis(500)).await;
    member.leave().await.expect("leave");
    let records = (0..40)
        .map(|i| OutgoingRecord::new(i.to_string()))
        .collect();
    kafka.produce(&topic, records).await.expect("produce");

    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shareworker"));
    cmd.args([
        "--broker",
        &url,
        "exporter",
        "--group",
        &format!("{group}={topic}"),
        "--handler-time",
        "500ms",
        "--concurrency",
        "4",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ])
    .env("SHAREWORKER_AUTOSCALE__REFRESH", "500ms")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let _child = Child(cmd.spawn().expect("start the exporter"));

    let lag_line = format!("shareworker_share_lag_records{{group=\"{group}\",topic=\"{topic}\"}}");
    let hint_line = format!("shareworker_desired_replicas{{group=\"{group}\"}}");
    let mut last = String::new();
    for _ in 0..120 {
        if let Some(text) = metrics(port).await {
            if value(&text, &lag_line) == Some(40.0)
                && value(&text, &hint_line).is_some_and(|h| h >= 1.0)
            {
                // 40 waiting, 0.5 s each, to drain in 60 s with 4 slots at 80 %: 1 replica.
                assert_eq!(value(&text, &hint_line), Some(1.0), "{text}");
                return;
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("no lag of 40 and no replica asked for within 30 s; /metrics said:\n{last}");
}

#[tokio::test]
async fn the_exporter_refuses_bad_input_with_what_to_write() {
    let out = cli(
        &[
            "--broker",
            "kafka://127.0.0.1:1",
            "exporter",
            "--group",
            "no-topics",
        ],
        None,
    )
    .await;
    let err = out.failed(1);
    assert!(err.contains("GROUP=TOPIC"), "{err}");
    let out = cli(
        &[
            "--broker",
            "kafka://127.0.0.1:1",
            "exporter",
            "--group",
            "g=t",
            "--handler-time",
            "soon",
        ],
        None,
    )
    .await;
    let err = out.failed(1);
    assert!(err.contains("200ms"), "{err}");
    let out = cli(
        &[
            "--worker",
            "http://127.0.0.1:1",
            "exporter",
            "--group",
            "g=t",
        ],
        None,
    )
    .await;
    assert!(out.failed(1).contains("--broker"));
}
