//! The CLI against a real Kafka broker (`KAFKA_BOOTSTRAP`; skipped without it, failing under CI).

mod support;

use std::time::Duration;

use serde_json::json;
use shareworker::admin::{GroupStatus, StatusReport, headers};
use shareworker::broker::AckKind;
use shareworker::{
    KafkaBroker,
    broker::{Broker, GroupConfig, OutgoingRecord, StartFrom},
};
use support::{cli, kafka_bootstrap, read_all, unique};

async fn connect(url: &str) -> KafkaBroker {
    KafkaBroker::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the Kafka test broker at {url}: {e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_and_status_on_kafka_with_bad_input_answered() {
    let Some(url) = kafka_bootstrap() else { return };
    let kafka = connect(&url).await;
    let topic = unique("cli-jobs");
    let group = unique("cli-group");
    kafka.create_topic(&topic, 2).await.expect("topic");

    let out = cli(
        &[
            "--broker",
            &url,
            "enqueue",
            "--topic",
            &topic,
            "-k",
            "ada",
            "-H",
            "trace=1",
            "--partition",
            "0",
            r#"{"to": "ada"}"#,
        ],
        None,
    )
    .await;
    assert_eq!(out.ok(), format!("enqueued {topic}-0@0\n"));
    let out = cli(
        &[
            "--broker",
            &url,
            "enqueue",
            "--topic",
            &topic,
            "--partition",
            "1",
            "--json",
        ],
        Some("[1, 2]"),
    )
    .await;
    assert_eq!(
        out.json(),
        json!({"topic": topic, "partition": 1, "offset": 0})
    );
    let p1 = read_all(&kafka, &topic, 1).await;
    assert_eq!(p1.len(), 1, "{p1:?}");
    assert_eq!(
        p1[0].value.as_deref(),
        Some(&b"[1, 2]"[..]),
        "the bytes given, not written again"
    );
    let p0 = read_all(&kafka, &topic, 0).await;
    assert_eq!(p0.len(), 1, "{p0:?}");
    assert_eq!(p0[0].key.as_deref(), Some(&b"ada"[..]));
    assert_eq!(p0[0].headers.get_str("trace"), Some("1"));

    let missing = unique("cli-missing");
    let err = cli(
        &["--broker", &url, "enqueue", "--topic", &missing, "{}"],
        None,
    )
    .await;
    let text = err.failed(1);
    assert!(
        text.contains(&format!(
            "topic `{missing}` does not exist on {url}: check the name, or create the topic first"
        )),
        "{text}"
    );
    let err = cli(
        &["--broker", &url, "enqueue", "--topic", &topic, "{'to': 1}"],
        None,
    )
    .await;
    assert!(
        err.failed(1).contains("the job is not valid JSON"),
        "{err:?}"
    );
    let err = cli(
        &[
            "--broker",
            &url,
            "enqueue",
            "--topic",
            &topic,
            "--partition",
            "5",
            "{}",
        ],
        None,
    )
    .await;
    assert!(
        err.failed(1).contains(&format!(
            "topic `{topic}` has 2 partitions; partition 5 does not exist"
        )),
        "{err:?}"
    );

    // An unknown group.
    let nobody = unique("cli-nobody");
    let err = cli(&["--broker", &url, "status", &nobody], None).await;
    let text = err.failed(1);
    assert!(
        text.contains(&format!("share group `{nobody}` does not exist")),
        "{text}"
    );
    assert!(text.contains("check the group id"), "{text}");

    // A group with a member that settled one record.
    kafka
        .configure_group(
            &group,
            &GroupConfig::default().start_from(StartFrom::Earliest),
        )
        .await
        .expect("earliest");
    let member = kafka
        .join(&group, std::slice::from_ref(&topic))
        .await
        .expect("join");
    let mut got = Vec::new();
    for _ in 0..30 {
        got = member
            .acquire(1, Duration::from_secs(1))
            .await
            .expect("acquire");
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(got.len(), 1, "a record within 30 s");
    member
        .settle(&[(got[0].id.clone(), AckKind::Accept)])
        .await
        .expect("settle");

    let report: StatusReport = serde_json::from_value(
        cli(&["--broker", &url, "status", &group, "--json"], None)
            .await
            .json(),
    )
    .expect("status");
    assert_eq!(report.broker, "kafka");
    let g: &GroupStatus = &report.groups[0];
    assert_eq!(g.group, group);
    assert_eq!(g.state, "Stable");
    assert_eq!(g.members.len(), 1, "{g:?}");
    assert_eq!(g.members[0].member_id, member.member_id());
    assert_eq!(g.members[0].topics, std::slice::from_ref(&topic));
    assert_eq!(
        g.members[0].assignment,
        [(topic.clone(), 0), (topic.clone(), 1)]
    );
    assert_eq!(g.delivery_count_limit, 5);
    assert_eq!(g.lock_duration_ms, 30_000);
    let settled = &got[0].id;
    let part = g
        .partitions
        .iter()
        .find(|p| p.partition == settled.partition)
        .expect("the settled partition is listed");
    assert_eq!(part.topic, topic);
    // The start offset trails on Kafka (it moves on the next fetch round, see
    // scripts/KAFKA-FINDINGS.md); it is initialised, and the lag is exact.
    assert!(part.start_offset.is_some(), "{g:?}");
    assert_eq!(part.lag, 0, "{g:?}");
    let other = g
        .partitions
        .iter()
        .find(|p| p.partition != settled.partition)
        .expect("both listed");
    assert_eq!(other.lag, 1, "its record still to do: {g:?}");
    assert_eq!(part.in_flight, None, "Kafka does not say");

    let text = cli(&["--broker", &url, "status", &group], None)
        .await
        .ok()
        .to_owned();
    assert!(
        text.contains(&format!("group {group}  (Stable, kafka broker)")),
        "{text}"
    );
    assert!(text.contains("members: 1"), "{text}");
    let all: StatusReport = serde_json::from_value(
        cli(&["--broker", &url, "status", "--json"], None)
            .await
            .json(),
    )
    .expect("status");
    assert!(
        all.groups.iter().any(|g| g.group == group),
        "listed among every share group"
    );
    member.leave().await.expect("leave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_listed_and_replayed_once_on_kafka() {
    let Some(url) = kafka_bootstrap() else { return };
    let kafka = connect(&url).await;
    let topic = unique("cli-orders");
    let dlq = format!("{topic}.dlq");
    kafka.create_topic(&topic, 1).await.expect("topic");
    kafka.create_topic(&dlq, 1).await.expect("dlq");
    let letters = ["timeout talking to the bank", "card declined"]
        .iter()
        .enumerate()
        .map(|(i, error)| {
            OutgoingRecord::new(json!({ "order": i }).to_string())
                .with_key(format!("order-{i}"))
                .with_header("trace", "abc")
                .with_header("shareworker.dlq.topic", topic.clone())
                .with_header("shareworker.dlq.partition", "0")
                .with_header("shareworker.dlq.offset", (40 + i).to_string())
                .with_header("shareworker.dlq.group", "orders")
                .with_header("shareworker.dlq.attempts", "5")
                .with_header("shareworker.dlq.handler", "charge")
                .with_header("shareworker.dlq.error", *error)
                .with_header("shareworker.dlq.time", "1700000000000")
        })
        .collect();
    kafka.produce(&dlq, letters).await.expect("dead letters");

    let text = cli(&["--broker", &url, "dlq", "list", &dlq], None)
        .await
        .ok()
        .to_owned();
    assert!(
        text.contains(&format!("{dlq}-0@0  from {topic}-0@40")),
        "{text}"
    );
    assert!(
        text.contains("handler charge  group orders  attempts 5  at 2023-11-14T22:13:20.000Z"),
        "{text}"
    );
    assert!(
        text.contains("error: timeout talking to the bank"),
        "{text}"
    );
    assert!(text.contains("key: order-0"), "{text}");
    assert!(text.ends_with("2 dead letters, 0 replayed\n"), "{text}");
    let err = cli(&["--broker", &url, "dlq", "list"], None).await;
    assert!(
        err.failed(1).contains("name the dead-letter topic"),
        "{err:?}"
    );
    let missing = unique("cli-missing.dlq");
    let err = cli(&["--broker", &url, "dlq", "list", &missing], None).await;
    assert!(
        err.failed(1)
            .contains(&format!("dead-letter topic `{missing}` does not exist")),
        "{err:?}"
    );

    let out = cli(
        &[
            "--broker",
            &url,
            "dlq",
            "replay",
            &dlq,
            "--error",
            "timeout",
            "--dry-run",
        ],
        None,
    )
    .await;
    assert!(
        out.ok()
            .contains(&format!("would replay {dlq}-0@0 -> {topic}")),
        "{out:?}"
    );
    assert!(
        read_all(&kafka, &topic, 0).await.is_empty(),
        "a dry run writes nothing"
    );
    let out = cli(
        &[
            "--broker", &url, "dlq", "replay", &dlq, "--error", "timeout",
        ],
        None,
    )
    .await;
    assert!(
        out.ok()
            .contains(&format!("replayed {dlq}-0@0 -> {topic}-0@0")),
        "{out:?}"
    );
    let replayed = read_all(&kafka, &topic, 0).await;
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].key.as_deref(), Some(&b"order-0"[..]));
    assert_eq!(replayed[0].value.as_deref(), Some(&br#"{"order":0}"#[..]));
    assert_eq!(replayed[0].headers.get_str("trace"), Some("abc"));
    assert_eq!(
        replayed[0].headers.get_str(headers::REPLAYED),
        Some(format!("{dlq}-0@0").as_str())
    );
    assert!(
        replayed[0]
            .headers
            .iter()
            .all(|h| !h.key.starts_with("shareworker.dlq."))
    );

    // Once replayed, skipped; the other one goes.
    let out = cli(&["--broker", &url, "dlq", "replay", &dlq], None).await;
    let text = out.ok();
    assert!(
        text.contains(&format!(
            "skipped {dlq}-0@0: already replayed (to {topic}-0@0)"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("replayed {dlq}-0@1 -> {topic}-0@1")),
        "{text}"
    );
    let text = cli(&["--broker", &url, "dlq", "list", &dlq], None)
        .await
        .ok()
        .to_owned();
    assert!(text.ends_with("2 dead letters, 2 replayed\n"), "{text}");
    let out = cli(&["--broker", &url, "dlq", "replay", &dlq, "--json"], None).await;
    assert_eq!(out.json()[0]["replayed"], json!([]));
    let out = cli(
        &[
            "--broker",
            &url,
            "dlq",
            "replay",
            &dlq,
            "--force",
            "--partition",
            "0",
            "--from",
            "1",
            "--to",
            "1",
        ],
        None,
    )
    .await;
    assert!(
        out.ok()
            .contains(&format!("replayed {dlq}-0@1 -> {topic}-0@2")),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_as_given_lines_in_bulk_and_dead_letters_discarded_on_kafka() {
    let Some(url) = kafka_bootstrap() else { return };
    let kafka = connect(&url).await;
    let topic = unique("cli-bytes");
    let dlq = format!("{topic}.dlq");
    kafka.create_topic(&topic, 1).await.expect("topic");
    kafka.create_topic(&dlq, 1).await.expect("dlq");

    let payload = r#"{"order_id":12345678901234567890123, "b": 1, "a": 2.50}"#;
    cli(
        &["--broker", &url, "enqueue", "--topic", &topic, payload],
        None,
    )
    .await
    .ok();
    // 1,200 lines in bulk (more than one write), the NDJSON's bytes kept too.
    let lines: String = (0..1200)
        .map(|n| format!("{{\"n\": {n}, \"id\": 1{n:022}}}\n"))
        .collect();
    let out = cli(
        &[
            "--broker", &url, "enqueue", "--topic", &topic, "--lines", "--json",
        ],
        Some(&lines),
    )
    .await;
    let written = out.json();
    assert_eq!(written.as_array().map(Vec::len), Some(1200));
    assert_eq!(written[1199]["offset"], 1200);
    let records = read_all(&kafka, &topic, 0).await;
    assert_eq!(records.len(), 1201);
    assert_eq!(records[0].value.as_deref(), Some(payload.as_bytes()));
    assert_eq!(
        records[1200].value.as_deref(),
        Some(&br#"{"n": 1199, "id": 10000000000000000001199}"#[..])
    );
    let missing = unique("cli-nope");
    let err = cli(
        &["--broker", &url, "enqueue", "--topic", &missing, "--lines"],
        Some("{}\n{}\n"),
    )
    .await;
    assert!(err.failed(1).contains("nothing was enqueued"), "{err:?}");

    // Discard one dead letter on purpose: recorded, listed, never replayed unless forced.
    let letters = (0..2)
        .map(|i| {
            OutgoingRecord::new(json!({ "order": i }).to_string())
                .with_header("shareworker.dlq.topic", topic.clone())
                .with_header("shareworker.dlq.error", format!("error {i}"))
        })
        .collect();
    kafka.produce(&dlq, letters).await.expect("dead letters");
    let out = cli(
        &[
            "--broker",
            &url,
            "dlq",
            "discard",
            &dlq,
            "--to",
            "0",
            "--dry-run",
        ],
        None,
    )
    .await;
    assert!(
        out.ok().contains(&format!("would discard {dlq}-0@0")),
        "{out:?}"
    );
    assert_eq!(
        read_all(&kafka, &dlq, 0).await.len(),
        2,
        "a dry run writes nothing"
    );
    let out = cli(
        &[
            "--broker",
            &url,
            "dlq",
            "discard",
            &dlq,
            "--to",
            "0",
            "--reason",
            "customer left",
        ],
        None,
    )
    .await;
    assert!(
        out.ok().contains(&format!("discarded {dlq}-0@0")),
        "{out:?}"
    );
    let marker = &read_all(&kafka, &dlq, 0).await[2];
    assert_eq!(marker.headers.get_str(headers::DISCARD_OF), Some("0"));
    assert_eq!(
        marker.headers.get_str(headers::DISCARD_REASON),
        Some("customer left")
    );
    let text = cli(&["--broker", &url, "dlq", "list", &dlq], None)
        .await
        .ok()
        .to_owned();
    assert!(text.contains("  discarded: customer left"), "{text}");
    assert!(
        text.ends_with("2 dead letters, 0 replayed, 1 discarded\n"),
        "{text}"
    );
    let out = cli(&["--broker", &url, "dlq", "replay", &dlq], None).await;
    let text = out.ok();
    assert!(
        text.contains(&format!(
            "skipped {dlq}-0@0: discarded on purpose (customer left)"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("replayed {dlq}-0@1 -> {topic}-0@1201")),
        "{text}"
    );
    let err = cli(&["--broker", &url, "dlq", "discard", "--all"], None).await;
    assert!(
        err.failed(1).contains("name the dead-letter topic"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_config_shown_and_set_on_kafka() {
    let Some(url) = kafka_bootstrap() else { return };
    let group = unique("cli-config");
    let text = cli(&["--broker", &url, "group", "config", &group], None)
        .await
        .ok()
        .to_owned();
    assert!(text.contains("share.auto.offset.reset"), "{text}");
    assert!(text.contains("share.record.lock.duration.ms"), "{text}");
    let out = cli(
        &[
            "--broker",
            &url,
            "group",
            "config",
            &group,
            "--set",
            "share.auto.offset.reset=earliest",
            "--set",
            "share.record.lock.duration.ms=20000",
            "--json",
        ],
        None,
    )
    .await;
    let configs = out.json();
    let value = |key: &str| {
        configs["configs"]
            .as_array()
            .and_then(|c| c.iter().find(|kv| kv[0] == key))
            .map(|kv| kv[1].clone())
    };
    assert_eq!(
        value("share.auto.offset.reset"),
        Some(json!("earliest")),
        "{configs}"
    );
    assert_eq!(
        value("share.record.lock.duration.ms"),
        Some(json!("20000")),
        "{configs}"
    );

    let err = cli(
        &[
            "--broker",
            &url,
            "group",
            "config",
            &group,
            "--set",
            "share.record.lock.duration.ms=1000",
        ],
        None,
    )
    .await;
    let text = err.failed(1);
    assert!(
        text.contains("share.record.lock.duration.ms") && text.contains(&group),
        "{text}"
    );
    let err = cli(
        &[
            "--broker",
            &url,
            "group",
            "config",
            &group,
            "--set",
            "share.no.such.config=1",
        ],
        None,
    )
    .await;
    assert!(err.failed(1).contains("share.no.such.config"), "{err:?}");
}
