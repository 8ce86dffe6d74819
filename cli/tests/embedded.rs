//! The CLI against a running worker on the embedded broker, through the worker's own HTTP
//! endpoint (`/status`, `/admin/...`).

mod support;

use serde_json::json;
use shareworker::admin::{DeadLetterRecord, ReplayReport, StatusReport, headers};
use shareworker::broker::Broker;
use support::{TOKEN, TestWorker, cli, cli_with_token, read_all};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_and_status_through_a_worker_with_bad_input_answered() {
    let w = TestWorker::start(true).await;
    let url = w.url.as_str();

    let out = cli(
        &[
            "--worker",
            url,
            "enqueue",
            "--topic",
            "emails",
            r#"{"to": "ada@example.com"}"#,
        ],
        None,
    )
    .await;
    assert_eq!(out.ok(), "enqueued emails-0@0\n");
    let out = cli(
        &[
            "--worker", url, "enqueue", "-t", "emails", "-k", "bob", "-H", "trace=7", "--json",
        ],
        Some(r#"{"to": "bob@example.com"}"#),
    )
    .await;
    assert_eq!(
        out.json(),
        json!({"topic": "emails", "partition": 0, "offset": 1})
    );
    w.idle().await;
    let written = read_all(&w.broker, "emails", 0).await;
    assert_eq!(
        written[1].value.as_deref(),
        Some(&br#"{"to": "bob@example.com"}"#[..]),
        "the bytes given, not written again"
    );
    assert_eq!(written[1].key.as_deref(), Some(&b"bob"[..]));
    assert_eq!(written[1].headers.get_str("trace"), Some("7"));

    // Bad input: malformed JSON, no topic, an unknown topic, a bad header.
    let err = cli(
        &[
            "--worker",
            url,
            "enqueue",
            "--topic",
            "emails",
            r#"{"to": "#,
        ],
        None,
    )
    .await;
    assert!(
        err.failed(1)
            .starts_with("error: the job is not valid JSON (EOF while parsing"),
        "{err:?}"
    );
    assert!(err.stderr.contains("pass one JSON value"), "{err:?}");
    let err = cli(&["--worker", url, "enqueue", "--topic", "emails"], Some("")).await;
    assert!(err.failed(1).contains("no job given"), "{err:?}");
    let err = cli(&["--worker", url, "enqueue", r#"{"to": "x"}"#], None).await;
    assert!(err.failed(2).contains("--topic <TOPIC>"), "{err:?}");
    let err = cli(
        &["--worker", url, "enqueue", "--topic", "emials", "{}"],
        None,
    )
    .await;
    let text = err.failed(1);
    assert!(text.contains("topic `emials` does not exist"), "{text}");
    assert!(text.contains("shareworker status"), "{text}");
    let err = cli(
        &[
            "--worker", url, "enqueue", "--topic", "emails", "-H", "trace", "{}",
        ],
        None,
    )
    .await;
    assert!(
        err.failed(1).contains("--header `trace` is not NAME=VALUE"),
        "{err:?}"
    );

    // Status: the group, its member, its partition and the handler.
    let out = cli(&["--worker", url, "status"], None).await;
    let text = out.ok();
    assert!(
        text.contains("group mailer  (Stable, embedded broker)"),
        "{text}"
    );
    assert!(
        text.contains("delivery count limit 5, lock duration 30s, max record locks 2000"),
        "{text}"
    );
    assert!(text.contains("members: 1"), "{text}");
    assert!(text.contains("assigned emails-0"), "{text}");
    assert!(text.contains("HANDLER"), "{text}");
    let report: StatusReport = serde_json::from_value(
        cli(&["--worker", url, "status", "mailer", "--json"], None)
            .await
            .json(),
    )
    .expect("status");
    let g = &report.groups[0];
    assert_eq!(g.group, "mailer");
    assert_eq!(g.members.len(), 1);
    assert_eq!(
        (
            g.partitions[0].start_offset,
            g.partitions[0].lag,
            g.partitions[0].in_flight
        ),
        (Some(2), 0, Some(0))
    );
    assert_eq!(g.handlers[0].dead_letter.as_deref(), Some("emails.dlq"));
    assert_eq!(
        g.handlers[0].in_flight,
        Some(0),
        "from the worker's in-flight gauge"
    );
    assert_eq!(report.admin, Some(true));

    let err = cli(&["--worker", url, "status", "nope"], None).await;
    assert_eq!(
        err.failed(1),
        "error: unknown group `nope`: this worker's groups are mailer\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_listed_and_replayed_once_through_a_worker() {
    let w = TestWorker::start(true).await;
    let url = w.url.as_str();
    for to in ["ada", "bob"] {
        let job = json!({"to": to, "fail": true}).to_string();
        cli(
            &["--worker", url, "enqueue", "--topic", "emails", &job],
            None,
        )
        .await
        .ok();
    }
    w.idle().await;

    let text = cli(&["--worker", url, "dlq", "list"], None)
        .await
        .ok()
        .to_owned();
    assert!(text.contains("emails.dlq-0@0  from emails-0@0"), "{text}");
    assert!(
        text.contains("handler mailer  group mailer  attempts 1"),
        "{text}"
    );
    assert!(text.contains("error: mailbox ada is full"), "{text}");
    assert!(text.ends_with("2 dead letters, 0 replayed\n"), "{text}");
    let only_bob: Vec<DeadLetterRecord> = serde_json::from_value(
        cli(
            &[
                "--worker",
                url,
                "dlq",
                "list",
                "emails.dlq",
                "--error",
                "bob",
                "--json",
            ],
            None,
        )
        .await
        .json(),
    )
    .expect("records");
    assert_eq!(only_bob.len(), 1);
    assert_eq!(only_bob[0].error.as_deref(), Some("mailbox bob is full"));
    let err = cli(&["--worker", url, "dlq", "list", "nope.dlq"], None).await;
    assert_eq!(
        err.failed(1),
        "error: dead-letter topic `nope.dlq` does not exist\n"
    );

    // Dry run, then the replay of one, then again: skipped.
    let out = cli(&["--worker", url, "dlq", "replay", "--dry-run"], None).await;
    assert!(
        out.ok().contains("would replay emails.dlq-0@0 -> emails"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("dry run: 2 would be replayed, 0 skipped; nothing was written"),
        "{out:?}"
    );
    assert_eq!(read_all(&w.broker, "emails", 0).await.len(), 2);
    let out = cli(
        &["--worker", url, "dlq", "replay", "emails.dlq", "--to", "0"],
        None,
    )
    .await;
    assert!(
        out.ok().contains("replayed emails.dlq-0@0 -> emails-0@2"),
        "{out:?}"
    );
    w.idle().await;
    let emails = read_all(&w.broker, "emails", 0).await;
    assert_eq!(
        emails[2].headers.get_str(headers::REPLAYED),
        Some("emails.dlq-0@0")
    );
    let out = cli(
        &["--worker", url, "dlq", "replay", "--all", "--to", "0"],
        None,
    )
    .await;
    assert!(
        out.ok()
            .contains("skipped emails.dlq-0@0: already replayed (to emails-0@2)"),
        "{out:?}"
    );
    assert!(out.stdout.contains("0 replayed, 1 skipped"), "{out:?}");

    // The replayed job failed again: its dead letter says so and is not replayed by accident.
    let text = cli(&["--worker", url, "dlq", "list", "--from", "2"], None)
        .await
        .ok()
        .to_owned();
    assert!(
        text.contains("a replay of emails.dlq-0@0 that failed again"),
        "{text}"
    );
    let reports: Vec<ReplayReport> = serde_json::from_value(
        cli(&["--worker", url, "dlq", "replay", "--all", "--json"], None)
            .await
            .json(),
    )
    .expect("reports");
    let replayed: Vec<&str> = reports[0]
        .replayed
        .iter()
        .map(|r| r.dead_letter.as_str())
        .collect();
    assert_eq!(replayed, ["emails.dlq-0@1"], "{reports:?}");
    assert_eq!(reports[0].skipped.len(), 2, "{reports:?}");
    let out = cli(
        &[
            "--worker", url, "dlq", "replay", "--all", "--force", "--from", "0", "--to", "0",
        ],
        None,
    )
    .await;
    assert!(
        out.ok().contains("replayed emails.dlq-0@0 -> emails-0@"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_are_written_as_given_lines_in_bulk_and_every_topic_only_on_purpose() {
    let w = TestWorker::start(true).await;
    let url = w.url.as_str();
    // A number no f64 holds, keys out of order, spaces: the bytes given are the bytes written.
    let payload = r#"{"order_id":12345678901234567890123,  "z": 1.50, "a": [1, 2]}"#;
    cli(
        &["--worker", url, "enqueue", "--topic", "emails", payload],
        None,
    )
    .await
    .ok();
    let written = read_all(&w.broker, "emails", 0).await;
    assert_eq!(written[0].value.as_deref(), Some(payload.as_bytes()));

    // NDJSON: every line checked first; a bad one stops everything, named by its number.
    let err = cli(
        &["--worker", url, "enqueue", "--topic", "emails", "--lines"],
        Some("{\"to\": \"ada\"}\n{\"to\": \n"),
    )
    .await;
    assert!(
        err.failed(1)
            .starts_with("error: line 2 is not valid JSON (EOF while parsing"),
        "{err:?}"
    );
    assert!(err.stderr.contains("nothing was enqueued"), "{err:?}");
    assert_eq!(read_all(&w.broker, "emails", 0).await.len(), 1);
    let lines = "{\"to\": \"ada\"}\r\n\n  \n{\"n\":12345678901234567890123}\n[3]";
    let out = cli(
        &[
            "--worker", url, "enqueue", "--topic", "emails", "--lines", "-k", "k",
        ],
        Some(lines),
    )
    .await;
    assert_eq!(out.ok(), "enqueued 3 jobs: emails-0@1 .. emails-0@3\n");
    w.idle().await;
    let values: Vec<Vec<u8>> = read_all(&w.broker, "emails", 0)
        .await
        .iter()
        .skip(1)
        .map(|d| d.value.as_deref().unwrap_or_default().to_vec())
        .collect();
    assert_eq!(
        values,
        [
            br#"{"to": "ada"}"#.to_vec(),
            br#"{"n":12345678901234567890123}"#.to_vec(),
            b"[3]".to_vec()
        ]
    );

    // Changing every dead-letter topic at once is asked for with --all; a dry run may go without.
    for verb in ["replay", "discard"] {
        let err = cli(&["--worker", url, "dlq", verb], None).await;
        let text = err.failed(1);
        assert!(
            text.contains(&format!("name the dead-letter topic to {verb}"))
                && text.contains("--all"),
            "{text}"
        );
        let err = cli(&["--worker", url, "dlq", verb, "--all", "emails.dlq"], None).await;
        assert!(err.failed(2).contains("cannot be used with"), "{err:?}");
    }
    cli(&["--worker", url, "dlq", "replay", "--dry-run"], None)
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_config_through_a_worker() {
    let w = TestWorker::start(true).await;
    let url = w.url.as_str();
    let text = cli(&["--worker", url, "group", "config", "mailer"], None)
        .await
        .ok()
        .to_owned();
    assert!(
        text.contains("share.delivery.count.limit        5"),
        "{text}"
    );
    assert!(
        text.contains("share.auto.offset.reset           earliest"),
        "{text}"
    );
    let out = cli(
        &[
            "--worker",
            url,
            "group",
            "config",
            "mailer",
            "--set",
            "share.delivery.count.limit=3",
            "--set",
            "share.record.lock.duration.ms=20000",
            "--json",
        ],
        None,
    )
    .await;
    let configs = out.json();
    assert_eq!(
        configs["configs"][1],
        json!(["share.delivery.count.limit", "3"])
    );
    assert_eq!(
        configs["configs"][3],
        json!(["share.record.lock.duration.ms", "20000"])
    );
    assert_eq!(
        w.broker
            .group_limits("mailer")
            .await
            .expect("limits")
            .delivery_count_limit,
        3
    );
    let text = cli(&["--worker", url, "status", "mailer"], None)
        .await
        .ok()
        .to_owned();
    assert!(
        text.contains("delivery count limit 3, lock duration 20s"),
        "{text}"
    );

    let err = cli(
        &[
            "--worker",
            url,
            "group",
            "config",
            "mailer",
            "--set",
            "share.delivery.count.limit=11",
        ],
        None,
    )
    .await;
    assert!(
        err.failed(1)
            .contains("share.delivery.count.limit must be between 2 and 10, got 11"),
        "{err:?}"
    );
    let err = cli(
        &[
            "--worker",
            url,
            "group",
            "config",
            "mailer",
            "--set",
            "share.isolation.level=read_committed",
        ],
        None,
    )
    .await;
    assert!(
        err.failed(1)
            .contains("`share.isolation.level` is not a share-group config this broker knows"),
        "{err:?}"
    );
    let err = cli(
        &[
            "--worker", url, "group", "config", "mailer", "--set", "nonsense",
        ],
        None,
    )
    .await;
    assert!(
        err.failed(1).contains("--set `nonsense` is not NAME=VALUE"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_through_a_worker_need_its_admin_token() {
    let w = TestWorker::start(true).await;
    let url = w.url.as_str();
    let enqueue = ["--worker", url, "enqueue", "--topic", "emails", "{}"];
    // No token: the worker says how to send one; nothing is written.
    let err = cli_with_token(&enqueue, None, None).await;
    assert!(
        err.failed(1).contains("this route needs the admin token"),
        "{err:?}"
    );
    assert!(err.failed(1).contains("--token"), "{err:?}");
    // A wrong one, by flag.
    let mut wrong = enqueue.to_vec();
    wrong.extend(["--token", "not-the-admin-token-at-all"]);
    let err = cli_with_token(&wrong, None, None).await;
    assert!(
        err.failed(1).contains("the admin token does not match"),
        "{err:?}"
    );
    assert!(read_all(&w.broker, "emails", 0).await.is_empty());
    // The right one, by flag, then from the environment.
    let mut right = enqueue.to_vec();
    right.extend(["--token", TOKEN]);
    assert_eq!(
        cli_with_token(&right, None, None).await.ok(),
        "enqueued emails-0@0\n"
    );
    assert_eq!(cli(&enqueue, None).await.ok(), "enqueued emails-0@1\n");
    // Reading needs none; the token never shows in what the CLI prints.
    let out = cli_with_token(&["--worker", url, "status"], None, None).await;
    assert!(!out.ok().contains(TOKEN));
    assert!(!err.failed(1).contains("not-the-admin-token-at-all"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_admin_refuses_changes_with_what_to_do() {
    let w = TestWorker::start(false).await;
    let url = w.url.as_str();
    let err = cli(
        &["--worker", url, "enqueue", "--topic", "emails", "{}"],
        None,
    )
    .await;
    let text = err.failed(1);
    assert!(text.contains("admin routes are off: set `http.admin = true` in shareworker.toml (or SHAREWORKER_HTTP__ADMIN=true)"), "{text}");
    let err = cli(
        &[
            "--worker",
            url,
            "group",
            "config",
            "mailer",
            "--set",
            "share.delivery.count.limit=3",
        ],
        None,
    )
    .await;
    assert!(err.failed(1).contains("http.admin = true"), "{err:?}");
    let err = cli(&["--worker", url, "dlq", "replay", "--all"], None).await;
    assert!(err.failed(1).contains("http.admin = true"), "{err:?}");
    // Reading is allowed, and so is a dry run.
    cli(&["--worker", url, "status"], None).await.ok();
    cli(&["--worker", url, "dlq", "replay", "--dry-run"], None)
        .await
        .ok();
    cli(&["--worker", url, "group", "config", "mailer"], None)
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_or_missing_targets_say_what_to_do() {
    // A closed port in the range reserved for these tests.
    let err = cli(&["--worker", "http://127.0.0.1:21097", "status"], None).await;
    let text = err.failed(1);
    assert!(
        text.starts_with("error: cannot reach the worker at http://127.0.0.1:21097: "),
        "{text}"
    );
    assert!(
        text.contains("is it running, with its HTTP endpoint"),
        "{text}"
    );
    let err = cli(&["--broker", "kafka://127.0.0.1:21097", "status"], None).await;
    let text = err.failed(1);
    assert!(text.starts_with("error: cannot reach the Kafka cluster at kafka://127.0.0.1:21097: no Kafka broker answered"), "{text}");
    assert!(
        text.contains(
            "check the address (--broker, or `broker` in shareworker.toml / SHAREWORKER_BROKER)"
        ),
        "{text}"
    );
    let err = cli(&["status"], None).await;
    assert!(err.failed(1).contains("the configured broker is `embedded`, which lives inside the worker process; reach that worker with --worker"), "{err:?}");
    let err = cli(&["--broker", "http://127.0.0.1:9464", "status"], None).await;
    assert!(err.failed(1).contains("is not a Kafka address"), "{err:?}");
    let err = cli(
        &[
            "--broker",
            "kafka://a:1",
            "--worker",
            "http://b:2",
            "status",
        ],
        None,
    )
    .await;
    assert!(
        err.failed(1)
            .contains("both --broker and --worker are given"),
        "{err:?}"
    );
    let err = cli(&["--worker", "https://b:2", "status"], None).await;
    assert!(err.failed(1).contains("https is not supported"), "{err:?}");
    // A worker that is not a shareworker worker (or too old): its 404 is explained.
    let w = TestWorker::start(true).await;
    let url = format!("{}/elsewhere", w.url);
    let err = cli(&["--worker", &url, "status"], None).await;
    assert!(
        err.failed(1)
            .contains("has no /elsewhere/status (HTTP 404)"),
        "{err:?}"
    );
}
