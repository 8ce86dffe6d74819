//! Least privilege on a real broker with an authorizer: Kafka's StandardAuthorizer, SCRAM users,
//! ACLs made with Kafka's own ACL tool (`org.apache.kafka.tools.AclCommand`, `kafka-acls.sh`).
//!
//! - A least-privilege user (Read on its topic and its share group, Write on its dead-letter
//!   topic, nothing else) starts, processes and dead-letters; what it may not do (read the
//!   group's configuration) is skipped with one warning naming the missing ACL and the
//!   `shareworker_missing_acl` gauge, and the worker stays ready (the share lag still reads).
//! - A user without Write on its dead-letter topic holds the records that failed for good and
//!   retries their dead letters (nothing released, nothing archived), with an error log naming
//!   the ACL and `shareworker_dead_letter_failures_total` rising; once an operator grants
//!   the ACL the dead letters are written, all of them.
//! - A user with no rights at all, and one that may read its group but not its topic, fail at
//!   start with an error that names the Read ACLs, at once (no retry loop).
//! - A worker whose configuration sets its group's configs (`[groups.<group>]`) without the
//!   AlterConfigs ACL on the group fails at start naming the section and the ACL; the group's
//!   configs stay as they were.
//!
//! The test starts its own broker with `scripts/kafka.sh` (ports 25210-25212), so the shared
//! test broker is left alone:
//!
//! | port  | listener       | protocol       | who                                             |
//! |-------|----------------|----------------|-------------------------------------------------|
//! | 25210 | PLAINTEXT      | PLAINTEXT      | brokers, readiness probe, the test as admin     |
//! | 25211 | CONTROLLER     | PLAINTEXT      | KRaft                                           |
//! | 25212 | SASL_PLAINTEXT | SASL_PLAINTEXT | the workers, as SCRAM-SHA-256 users             |
//!
//! `super.users` is `User:ANONYMOUS` (the PLAINTEXT and controller listeners: the broker itself,
//! the readiness probe, the test's set-up) and `User:admin`. Needs Java and Maven (or the jars
//! cached in target/kafka): skipped with a message without them, a failure under `CI`.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shareworker::broker::BrokerAdmin;
use shareworker::{
    Error, Job, JobDefinition, JobError, KafkaBroker, Worker,
    broker::{Broker, Bytes, GroupConfig, OutgoingRecord, StartFrom},
};
use shareworker_tests::{brokers, http, kafka};

const PORT: u16 = 25210;
const SASL: u16 = 25212;

/// The users and their passwords (SCRAM-SHA-256, made at format time).
const LEAST: (&str, &str) = ("least", "least-pw-3c1f");
const NO_DLQ: (&str, &str) = ("nodlq", "nodlq-pw-9a2e");
const NOBODY: (&str, &str) = ("nobody", "nobody-pw-77d0");
const READER: (&str, &str) = ("reader", "reader-pw-1b4a");

fn dir() -> String {
    brokers::repo()
        .join(format!("target/kafka/acl-{PORT}"))
        .to_string_lossy()
        .into_owned()
}

/// Starts the broker once for every test of this binary; it dies with the test process.
/// `None` when this machine cannot start brokers (outside CI).
fn broker() -> Option<()> {
    static STARTED: Mutex<Option<bool>> = Mutex::new(None);
    let mut started = STARTED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(ok) = *started {
        return ok.then_some(());
    }
    if !brokers::available("kafka_acl") {
        *started = Some(false);
        return None;
    }
    let scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;";
    let mut args: Vec<String> = [
        "start",
        "--port",
        &PORT.to_string(),
        "--dir",
        &dir(),
        "--version",
        &brokers::version(),
        "--owner-pid",
        &std::process::id().to_string(),
        "--listener",
        &format!("SASL_PLAINTEXT:SASL_PLAINTEXT:{SASL}"),
        "--prop",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        // The brokers' own listeners (PLAINTEXT, CONTROLLER) authenticate nobody: ANONYMOUS.
        "--prop",
        "super.users=User:ANONYMOUS;User:admin",
        "--prop",
        "allow.everyone.if.no.acl.found=false",
        "--prop",
        "sasl.enabled.mechanisms=SCRAM-SHA-256",
        "--prop",
        &format!("listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config={scram}"),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for (user, password) in [LEAST, NO_DLQ, NOBODY, READER, ("admin", "admin-pw-5e6f")] {
        args.extend([
            "--scram".to_owned(),
            format!("SCRAM-SHA-256=[name={user},password={password}]"),
        ]);
    }
    brokers::kafka_sh(&args);
    *started = Some(true);
    Some(())
}

/// Runs Kafka's ACL tool against the broker (as ANONYMOUS, a super user): `args` after
/// `--bootstrap-server`.
async fn acls(args: &[&str]) -> String {
    let mut full: Vec<String> = vec![
        "run-tool".into(),
        "--version".into(),
        brokers::version(),
        "org.apache.kafka.tools.AclCommand".into(),
        "--bootstrap-server".into(),
        format!("127.0.0.1:{PORT}"),
    ];
    full.extend(args.iter().map(|s| (*s).to_owned()));
    brokers::kafka_sh_async(full).await
}

/// Grants `operation` on each of `resources` (`--topic T`, `--group G` pairs) to `user`.
async fn grant(user: &str, operation: &str, resources: &[(&str, &str)]) {
    let principal = format!("User:{user}");
    let mut args = vec![
        "--add",
        "--allow-principal",
        &principal,
        "--operation",
        operation,
    ];
    for (kind, name) in resources {
        args.extend([*kind, *name]);
    }
    acls(&args).await;
    // The tool returns once the controller has the ACLs; the broker applies them from the
    // metadata log a little later (on a loaded machine, seconds later). A worker started in
    // between is refused. The broker answers the listing from what it enforces: wait for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let listed = acls(&["--list", "--principal", &principal]).await;
        if resources
            .iter()
            .all(|(_, name)| allows(&listed, name, operation))
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broker does not enforce {operation} for {principal} on {resources:?} within 60 s: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Whether the output of `AclCommand --list` grants `operation` on the resource `name`: its block
/// (`Current ACLs for resource `ResourcePattern(..., name=NAME, ...)`:` and the lines below)
/// has `operation=OPERATION`.
fn allows(listed: &str, name: &str, operation: &str) -> bool {
    let want = format!("operation={}", operation.to_uppercase());
    listed
        .split("Current ACLs for resource")
        .filter(|block| block.contains(&format!("name={name},")))
        .any(|block| block.contains(&want))
}

// ------------------------------------------------------------------------------- log capture

/// Every log line of this test process.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info,shareworker=debug"))
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        // Shown too, for a failing run.
        let _ = std::io::stderr().write_all(b);
        self.0.lock().expect("log lock").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The captured log lines that mention `needle`.
fn lines_with(needle: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(&logs().lock().expect("log lock")).into_owned();
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

// ------------------------------------------------------------------------------------ helpers

fn unique(what: &str) -> String {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("acl-{what}-{}-{stamp}", std::process::id())
}

/// The test's own client: PLAINTEXT, so ANONYMOUS, a super user.
async fn admin() -> KafkaBroker {
    let url = format!("kafka://127.0.0.1:{PORT}");
    KafkaBroker::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the ACL test broker at {url}: {e}"))
}

/// A topic, its dead-letter topic (made by the admin: the users may not create topics) and a
/// share group that starts at the earliest offset with short locks.
async fn setup(
    admin: &KafkaBroker,
    what: &str,
    dead_letter_exists: bool,
) -> (String, String, String) {
    let topic = unique(what);
    let dlq = format!("{topic}.dlq");
    let group = format!("{topic}-g");
    admin.create_topic(&topic, 1).await.expect("create topic");
    if dead_letter_exists {
        admin.create_topic(&dlq, 1).await.expect("create dlq");
    }
    admin
        .configure_group(
            &group,
            &GroupConfig::default()
                .start_from(StartFrom::Earliest)
                .lock_duration(kafka::LOCK),
        )
        .await
        .expect("configure group");
    (topic, dlq, group)
}

/// The worker's configuration: the SASL listener as `user`; `/metrics` on a free port.
fn config(user: (&str, &str)) -> figment::Figment {
    use figment::providers::Format;
    let (name, password) = user;
    let text = format!(
        r#"
        broker = "kafka://127.0.0.1:{SASL}?security_protocol=SASL_PLAINTEXT"
        shutdown_grace = "2s"
        [http]
        address = "127.0.0.1:0"
        [autoscale]
        refresh = "1s"
        [kafka]
        sasl_mechanism = "SCRAM-SHA-256"
        sasl_username = "{name}"
        sasl_password = "{password}"
        "#
    );
    figment::Figment::from(figment::providers::Toml::string(&text))
}

/// A handler that accepts `ok-*` and fails `fail-*` for good; it records what it saw.
fn handler(topic: &str, group: &str, dlq: &str, seen: Arc<Mutex<Vec<String>>>) -> JobDefinition {
    JobDefinition::new("acl", topic, move |job: Job<Bytes>| {
        let seen = seen.clone();
        async move {
            let text = String::from_utf8_lossy(job.payload()).into_owned();
            seen.lock().expect("lock").push(text.clone());
            if text.starts_with("fail") {
                Err(JobError::permanent(format!("{text} fails for good")))
            } else {
                Ok(())
            }
        }
    })
    .group(group)
    .dead_letter(dlq)
}

async fn produce(admin: &KafkaBroker, topic: &str, values: &[String]) {
    admin
        .produce(
            topic,
            values
                .iter()
                .map(|v| OutgoingRecord::new(v.clone()))
                .collect(),
        )
        .await
        .expect("produce");
}

/// The values in `topic` (partition 0), read as the admin.
async fn values_in(admin: &KafkaBroker, topic: &str) -> BTreeSet<String> {
    admin
        .read(topic, 0, 0, 1000)
        .await
        .unwrap_or_else(|e| panic!("read {topic}: {e}"))
        .into_iter()
        .map(|d| String::from_utf8_lossy(d.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

/// The value of the sample of `name` whose labels contain every one of `labels`, or 0.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| {
            let rest = &l[name.len()..];
            rest.starts_with('{') || rest.starts_with(' ')
        })
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

// -------------------------------------------------------------------------------------- tests

/// Read on the topic and the group, Write on the dead-letter topic: it starts, processes and
/// dead-letters; the group configuration it may not read is one warning and a gauge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_least_privilege_user_processes_and_dead_letters() {
    logs();
    if broker().is_none() {
        return;
    }
    let admin = admin().await;
    let (topic, dlq, group) = setup(&admin, "least", true).await;
    grant(LEAST.0, "Read", &[("--topic", &topic), ("--group", &group)]).await;
    grant(LEAST.0, "Write", &[("--topic", &dlq)]).await;
    let ok = values("ok", 4);
    let fail = values("fail", 2);
    produce(&admin, &topic, &[ok.clone(), fail.clone()].concat()).await;

    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let worker = Worker::builder()
        .figment(config(LEAST))
        .without_signal_handling()
        .job(handler(&topic, &group, &dlq, seen.clone()))
        .build()
        .await
        .unwrap_or_else(|e| panic!("a least-privilege worker must start: {e} ({e:?})"));
    let status = worker.status();
    let stop = worker.shutdown_handle();
    let text = {
        let metrics = worker.metrics_text().expect("metrics");
        let run = tokio::spawn(worker.run());
        wait_for("the dead letters", Duration::from_secs(90), || {
            let seen = seen.lock().expect("lock").len();
            seen >= ok.len() + fail.len()
        })
        .await;
        let want: BTreeSet<String> = fail.iter().cloned().collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while values_in(&admin, &dlq).await != want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the dead-letter topic holds {:?}, not {want:?}",
                values_in(&admin, &dlq).await
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // A few refreshes of the share lag: they must not make the worker unready.
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(
            status.is_ready(),
            "a least-privilege worker is ready: {:?}",
            status.not_ready_because()
        );
        stop.shutdown();
        let summary = run
            .await
            .expect("join")
            .unwrap_or_else(|e| panic!("the least-privilege worker ran: {e}"));
        assert_eq!(summary.accepted, ok.len() as u64, "{summary:?}");
        assert_eq!(summary.dead_lettered, fail.len() as u64, "{summary:?}");
        metrics
    };
    // The one thing it may not do: read the group's configuration.
    let resource = format!("resource=\"Group:{group}\"");
    assert_eq!(
        metric(
            &text,
            "shareworker_missing_acl",
            &[
                "feature=\"group_configs\"",
                "operation=\"DescribeConfigs\"",
                &resource
            ],
        ),
        1.0,
        "{text}"
    );
    let dlq_resource = format!("resource=\"Topic:{dlq}\"");
    assert_eq!(
        metric(
            &text,
            "shareworker_missing_acl",
            &["feature=\"dead_letter_write\"", &dlq_resource]
        ),
        0.0,
        "{text}"
    );
    let warnings: Vec<String> = lines_with(&group)
        .into_iter()
        .filter(|l| l.contains("WARN") && l.contains("DescribeConfigs"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning names the missing ACL: {warnings:#?}"
    );
    assert!(
        warnings[0].contains(&format!("DescribeConfigs on Group:{group}")),
        "{}",
        warnings[0]
    );
    // The dead-letter topic exists: no Create needed, no warning about it.
    let create: Vec<String> = lines_with(&dlq)
        .into_iter()
        .filter(|l| l.contains("WARN") || (l.contains("ERROR") && !l.contains("job failed")))
        .collect();
    assert!(
        create.is_empty(),
        "no warning about the dead-letter topic: {create:#?}"
    );
}

/// No Write on the dead-letter topic: the records that fail for good are held and their dead
/// letters retried, an error metric rises and the log names the ACL; granted later, every dead
/// letter is written. Nothing released, nothing archived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_write_on_the_dead_letter_topic_records_are_held_and_retried() {
    logs();
    if broker().is_none() {
        return;
    }
    let admin = admin().await;
    let (topic, dlq, group) = setup(&admin, "nodlq", true).await;
    grant(
        NO_DLQ.0,
        "Read",
        &[("--topic", &topic), ("--group", &group)],
    )
    .await;
    let ok = values("ok", 2);
    let fail = values("fail", 3);
    produce(&admin, &topic, &[ok.clone(), fail.clone()].concat()).await;

    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let worker = Worker::builder()
        .figment(config(NO_DLQ))
        .without_signal_handling()
        .job(handler(&topic, &group, &dlq, seen.clone()))
        .build()
        .await
        .unwrap_or_else(|e| panic!("a worker without dead-letter Write must start: {e} ({e:?})"));
    let addr = worker.http_address().expect("the HTTP endpoint is on");
    let stop = worker.shutdown_handle();
    let run = tokio::spawn(worker.run());
    let dlq_resource = format!("resource=\"Topic:{dlq}\"");
    // Every failing record reached its dead letter, which fails again and again.
    let denied = http::wait_for_metrics(
        addr,
        "failed dead-letter writes",
        Duration::from_secs(90),
        Duration::from_millis(250),
        |text| {
            metric(
                text,
                "shareworker_dead_letter_failures_total",
                &["handler=\"acl\""],
            ) >= 6.0
        },
    )
    .await;
    assert_eq!(
        metric(
            &denied,
            "shareworker_missing_acl",
            &[
                "feature=\"dead_letter_write\"",
                "operation=\"Write\"",
                &dlq_resource
            ]
        ),
        1.0,
        "{denied}"
    );
    // Held, not released: no record went back to the broker (which would archive it at its
    // delivery limit), and the ok ones were accepted meanwhile.
    assert_eq!(
        metric(&denied, "shareworker_jobs_total", &["outcome=\"released\""]),
        0.0,
        "{denied}"
    );
    assert_eq!(
        metric(&denied, "shareworker_jobs_total", &["outcome=\"accepted\""]),
        ok.len() as f64,
        "{denied}"
    );
    assert_eq!(
        metric(
            &denied,
            "shareworker_jobs_total",
            &["outcome=\"dead_lettered\""]
        ),
        0.0,
        "{denied}"
    );
    let logged = lines_with(&format!("Write on Topic:{dlq}"));
    assert!(
        logged.iter().any(|l| l.contains("ERROR")),
        "an error log names the missing Write ACL: {logged:#?}"
    );
    assert!(values_in(&admin, &dlq).await.is_empty());
    // Past a whole lock duration, each failing record has still run once (a permanent
    // failure): held, its lock renewed, never delivered again.
    tokio::time::sleep(kafka::LOCK + Duration::from_secs(2)).await;
    let runs = seen.lock().expect("lock").clone();
    for f in &fail {
        let n = runs.iter().filter(|v| *v == f).count();
        assert_eq!(n, 1, "{f} ran {n} times: {runs:?}");
    }
    let still = http::request(addr, "GET", "/metrics").await.1;
    assert_eq!(
        metric(&still, "shareworker_jobs_total", &["outcome=\"released\""]),
        0.0,
        "{still}"
    );

    // The operator grants the ACL: the held dead letters are written, every one.
    grant(NO_DLQ.0, "Write", &[("--topic", &dlq)]).await;
    let want: BTreeSet<String> = fail.iter().cloned().collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while values_in(&admin, &dlq).await != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "after the grant, the dead-letter topic holds {:?}, not {want:?}",
            values_in(&admin, &dlq).await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let granted = http::wait_for_metrics(
        addr,
        "the dead letters counted",
        Duration::from_secs(30),
        Duration::from_millis(250),
        |text| {
            metric(
                text,
                "shareworker_jobs_total",
                &["outcome=\"dead_lettered\""],
            ) >= fail.len() as f64
        },
    )
    .await;
    assert_eq!(
        metric(
            &granted,
            "shareworker_missing_acl",
            &["feature=\"dead_letter_write\"", &dlq_resource]
        ),
        0.0,
        "{granted}"
    );
    stop.shutdown();
    let summary = run.await.expect("join").expect("the worker ran");
    assert_eq!(summary.accepted, ok.len() as u64, "{summary:?}");
    assert_eq!(summary.dead_lettered, fail.len() as u64, "{summary:?}");
}

/// Joins must fail at once (bounded by a generous guard) with `is_not_authorized` and a message
/// naming every Read ACL the worker needs.
async fn refused_at_start(
    case: &str,
    user: (&str, &str),
    topic: &str,
    dlq: &str,
    group: &str,
) -> Error {
    let worker = Worker::builder()
        .figment(config(user))
        .without_signal_handling()
        .job(handler(topic, group, dlq, Arc::default()))
        .build();
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        async move { worker.await?.run().await },
    )
    .await
    .unwrap_or_else(|_| {
        panic!("{case}: the worker neither started nor failed within 60 s: a retry loop?")
    });
    let e = match result {
        Ok(summary) => panic!("{case}: the worker ran ({summary:?}), but must fail at start"),
        Err(e) => e,
    };
    let text = e.to_string();
    assert!(e.is_not_authorized(), "{case}: {text} ({e:?})");
    for acl in [
        format!("Read on Group:{group}"),
        format!("Read on Topic:{topic}"),
    ] {
        assert!(
            text.contains(&acl),
            "{case}: the error names `{acl}`: {text}"
        );
    }
    eprintln!("{case}: refused at start: {text}");
    e
}

/// No ACL at all: a clear start-up error, not a retry loop; what build() could not read is
/// said once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_no_rights_fails_at_start_naming_the_acls() {
    logs();
    if broker().is_none() {
        return;
    }
    let admin = admin().await;
    let (topic, dlq, group) = setup(&admin, "nobody", false).await;
    produce(&admin, &topic, &values("ok", 1)).await;
    refused_at_start("no rights", NOBODY, &topic, &dlq, &group).await;
    let warnings: Vec<String> = lines_with(&group)
        .into_iter()
        .filter(|l| l.contains("WARN") && l.contains("DescribeConfigs on Group:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let dead_letter: Vec<String> = lines_with(&format!("Write on Topic:{dlq}"))
        .into_iter()
        .filter(|l| l.contains("WARN"))
        .collect();
    assert_eq!(dead_letter.len(), 1, "{dead_letter:#?}");
}

/// Read on the group but not on the topic: a clear start-up error naming Read on the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_read_on_its_topic_the_worker_fails_at_start() {
    logs();
    if broker().is_none() {
        return;
    }
    let admin = admin().await;
    let (topic, dlq, group) = setup(&admin, "reader", true).await;
    grant(READER.0, "Read", &[("--group", &group)]).await;
    grant(READER.0, "Write", &[("--topic", &dlq)]).await;
    produce(&admin, &topic, &values("ok", 1)).await;
    let e = refused_at_start("no Read on the topic", READER, &topic, &dlq, &group).await;
    assert_eq!(e.kafka_code(), Some(29), "TOPIC_AUTHORIZATION_FAILED: {e}");
}

/// Read on the group and Describe (not Read) on the topic: the member joins, but the broker
/// refuses every fetch; the worker stops with an error naming the ACL instead of fetching again
/// and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_describe_but_not_read_on_its_topic_the_worker_stops_with_the_error() {
    logs();
    if broker().is_none() {
        return;
    }
    let admin = admin().await;
    let (topic, dlq, group) = setup(&admin, "describe", true).await;
    grant(READER.0, "Read", &[("--group", &group)]).await;
    grant(READER.0, "Describe", &[("--topic", &topic)]).await;
    grant(READER.0, "Write", &[("--topic", &dlq)]).await;
    produce(&admin, &topic, &values("ok", 1)).await;
    let e = refused_at_start(
        "Describe but not Read on the topic",
        READER,
        &topic,
        &dlq,
        &group,
    )
    .await;
    assert_eq!(e.kafka_code(), Some(29), "TOPIC_AUTHORIZATION_FAILED: {e}");
    // Said once, not once per fetch.
    let refusals = lines_with(&group)
        .into_iter()
        .filter(|l| l.contains("ShareFetch") && (l.contains("WARN") || l.contains("ERROR")))
        .count();
    assert!(
        refusals <= 3,
        "the refused fetch is logged {refusals} times"
    );
}

/// `[groups.<group>]` in the configuration of a worker whose principal may not change the
/// group's configs (no AlterConfigs on it): a start-up error that names the section and the ACL
/// and keeps its kind (not authorized), before the worker joins or reads anything; the group's
/// configs are left as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_settings_without_alter_configs_fail_at_start_naming_the_acl() {
    use figment::providers::Format;
    logs();
    if broker().is_none() {
        return;
    }
    let admin = admin().await;
    let (topic, dlq, group) = setup(&admin, "gset", true).await;
    produce(&admin, &topic, &values("ok", 1)).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let section =
        format!("[groups.\"{group}\"]\nstart_from = \"latest\"\ndelivery_count_limit = 3\n");
    let worker = Worker::builder()
        .figment(config(NOBODY).merge(figment::providers::Toml::string(&section)))
        .without_signal_handling()
        .job(handler(&topic, &group, &dlq, seen.clone()))
        .build();
    let result = tokio::time::timeout(Duration::from_secs(60), worker)
        .await
        .unwrap_or_else(|_| panic!("the worker neither started nor failed within 60 s"));
    let e = match result {
        Ok(_) => panic!("the worker started with `groups.{group}` and no AlterConfigs on it"),
        Err(e) => e,
    };
    let text = e.to_string();
    assert!(e.is_not_authorized(), "{text} ({e:?})");
    for part in [
        format!("`groups.{group}`"),
        format!("no AlterConfigs ACL on Group:{group}"),
    ] {
        assert!(text.contains(&part), "the error names {part}: {text}");
    }
    assert!(seen.lock().expect("lock").is_empty(), "a handler ran");
    let limits = admin.group_limits(&group).await.expect("limits");
    assert_eq!(
        limits.delivery_count_limit, 5,
        "the refused change must leave the group's delivery count limit at Kafka's default"
    );
}
