use serde_json::{Value, json};

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use bytes::Bytes;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::admin::{AdminHandler, BodyLimits};
use super::*;
use crate::admin::{DeadLetterRecord, ReplayReport, headers};
use crate::broker::{Broker, BrokerAdmin, OutgoingRecord};
use crate::config::HttpConfig;
use crate::dead_letter::headers as dlq;
use crate::testing::TestWorker;
use crate::{EmbeddedBroker, Job, JobDefinition, JobError};

async fn always_fails(job: Job<Value>) -> Result<(), JobError> {
    Err(JobError::permanent(format!(
        "cannot send to {}",
        job.payload()["to"].as_str().unwrap_or("?")
    )))
}

fn mailer() -> JobDefinition {
    JobDefinition::new("mailer", "emails", always_fails)
}

/// The admin token of the contexts here; [`call`] sends it.
const TOKEN: &str = "test-admin-token-0123456789";

fn context(broker: &EmbeddedBroker, admin: bool) -> AdminContext {
    AdminContext {
        broker: Arc::new(broker.clone()),
        admin: Some(Arc::new(broker.clone())),
        access: AdminAccess::with_token(TOKEN, admin, false),
        limits: BodyLimits::of(&HttpConfig::default()),
        handlers: vec![AdminHandler {
            name: "mailer".into(),
            group: "mailer".into(),
            topic: "emails".into(),
            dead_letter: Some("emails.dlq".into()),
            concurrency: 32,
        }],
        in_flight: Some(Arc::new(|name: &str| (name == "mailer").then_some(0))),
    }
}

/// What the admin routes answer, as the server would: status, content type and body.
async fn route(
    ctx: &AdminContext,
    method: &str,
    path: &str,
    query: Option<&str>,
    body: Bytes,
) -> (u16, String, Bytes) {
    let uri = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::from(body))
        .expect("request");
    let r = admin_router(Arc::new(ctx.clone()))
        .oneshot(req)
        .await
        .unwrap_or_else(|e| match e {});
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let status = r.status().as_u16();
    let body = r.into_body().collect().await.expect("body").to_bytes();
    (status, content_type, body)
}

async fn call(
    ctx: &AdminContext,
    method: &str,
    path: &str,
    query: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let body = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    let (status, content_type, body) = route(ctx, method, path, query, body).await;
    assert_eq!(content_type, "application/json", "{method} {path}");
    let v: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&body)));
    (status, v)
}

fn error_of(v: &Value) -> &str {
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {v}"))
}

#[tokio::test(start_paused = true)]
async fn status_shows_the_workers_groups_and_refuses_unknown_ones() {
    let broker = EmbeddedBroker::new();
    let ctx = context(&broker, false);
    // Not joined yet: still listed, with the limits.
    let (code, v) = call(&ctx, "GET", "/status", None, Value::Null).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["broker"], "embedded");
    assert_eq!(v["admin"], false);
    assert_eq!(v["groups"][0]["group"], "mailer");
    assert_eq!(v["groups"][0]["state"], "NotJoined");
    assert_eq!(v["groups"][0]["delivery_count_limit"], 5);
    assert_eq!(v["groups"][0]["lock_duration_ms"], 30_000);

    broker
        .produce(
            "emails",
            vec![OutgoingRecord::new("{}"), OutgoingRecord::new("{}")],
        )
        .await
        .expect("produce");
    let member = broker
        .join("mailer", &["emails".into()])
        .await
        .expect("join");
    broker
        .produce(
            "emails",
            vec![OutgoingRecord::new("{}"), OutgoingRecord::new("{}")],
        )
        .await
        .expect("produce");
    let got = member
        .acquire(1, std::time::Duration::ZERO)
        .await
        .expect("acquire");
    assert_eq!(got.len(), 1);
    let (code, v) = call(&ctx, "GET", "/status", Some("group=mailer"), Value::Null).await;
    assert_eq!(code, 200, "{v}");
    let g = &v["groups"][0];
    assert_eq!(g["state"], "Stable");
    assert_eq!(g["members"].as_array().map(Vec::len), Some(1), "{g}");
    assert_eq!(g["members"][0]["assignment"], json!([["emails", 0]]));
    // The group started at the latest offset (2): 2 records to go, 1 of them in flight.
    assert_eq!(
        g["partitions"],
        json!([{"topic": "emails", "partition": 0, "start_offset": 2, "lag": 2, "in_flight": 1}])
    );
    assert_eq!(
        g["handlers"],
        json!([{"name": "mailer", "topic": "emails", "dead_letter": "emails.dlq", "concurrency": 32, "in_flight": 0}])
    );

    let (code, v) = call(&ctx, "GET", "/status", Some("group=nope"), Value::Null).await;
    assert_eq!(code, 404);
    assert_eq!(
        error_of(&v),
        "unknown group `nope`: this worker's groups are mailer"
    );
    let (code, _) = call(&ctx, "POST", "/status", None, Value::Null).await;
    assert_eq!(code, 405);
}

#[tokio::test(start_paused = true)]
async fn enqueue_needs_admin_a_json_body_and_an_existing_topic() {
    let broker = EmbeddedBroker::new();
    broker.create_topic("emails", 2).await.expect("topic");
    let job = json!({"topic": "emails", "payload": {"to": "ada@example.com"}, "key": "ada", "headers": [["trace", "1"]]});

    let (code, v) = call(
        &context(&broker, false),
        "POST",
        "/admin/enqueue",
        None,
        job.clone(),
    )
    .await;
    assert_eq!(code, 403);
    assert!(error_of(&v).contains("http.admin = true"), "{v}");

    let ctx = context(&broker, true);
    let (code, v) = call(&ctx, "POST", "/admin/enqueue", None, job).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["topic"], "emails");
    let p = v["partition"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .expect("partition");
    let written = broker.read("emails", p, 0, 10).await.expect("read");
    assert_eq!(written.len(), 1);
    assert_eq!(
        written[0].value.as_deref(),
        Some(&b"{\"to\":\"ada@example.com\"}"[..])
    );
    assert_eq!(written[0].key.as_deref(), Some(&b"ada"[..]));
    assert_eq!(written[0].headers.get_str("trace"), Some("1"));

    let (status, _, body) = route(
        &ctx,
        "POST",
        "/admin/enqueue",
        None,
        Bytes::from_static(b"{\"topic\": \"emails\", \"payload\": {"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("malformed request body"));

    let (code, v) = call(
        &ctx,
        "POST",
        "/admin/enqueue",
        None,
        json!({"topic": "emials", "payload": 1}),
    )
    .await;
    assert_eq!(code, 404, "{v}");
    assert_eq!(error_of(&v), "topic `emials` does not exist");
    assert!(
        broker.partitions("emials").is_none(),
        "not created by the attempt"
    );
}

#[tokio::test(start_paused = true)]
async fn dead_letters_list_replay_once_and_carry_the_replay_header() {
    let mut t = TestWorker::new().job(mailer());
    for to in ["ada@example.com", "bob@example.com", "eve@example.com"] {
        t.enqueue("emails", &json!({ "to": to }))
            .await
            .expect("enqueue");
    }
    t.run_until_idle().await.expect("run");
    let broker = t.broker().clone();
    let ctx = context(&broker, true);

    let (code, v) = call(&ctx, "GET", "/admin/dlq", None, Value::Null).await;
    assert_eq!(code, 200, "{v}");
    let letters: Vec<DeadLetterRecord> = serde_json::from_value(v).expect("records");
    assert_eq!(letters.len(), 3);
    assert_eq!(letters[0].original_topic.as_deref(), Some("emails"));
    assert_eq!(letters[0].original_offset, Some(0));
    assert_eq!(letters[0].handler.as_deref(), Some("mailer"));
    assert_eq!(letters[0].group.as_deref(), Some("mailer"));
    assert_eq!(letters[0].attempts, Some(1));
    assert_eq!(
        letters[0].error.as_deref(),
        Some("cannot send to ada@example.com")
    );
    assert!(
        letters
            .iter()
            .all(|l| l.replayed_to.is_none() && l.replay_of.is_none())
    );

    // Filters: error text, offset range, handler, limit.
    let (_, v) = call(
        &ctx,
        "GET",
        "/admin/dlq",
        Some("topic=emails.dlq&error=bob%40example"),
        Value::Null,
    )
    .await;
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["offset"], 1);
    let (_, v) = call(
        &ctx,
        "GET",
        "/admin/dlq",
        Some("from=1&to=2&limit=1"),
        Value::Null,
    )
    .await;
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["offset"], 1);
    let (_, v) = call(
        &ctx,
        "GET",
        "/admin/dlq",
        Some("handler=other"),
        Value::Null,
    )
    .await;
    assert_eq!(v, json!([]));
    let (code, v) = call(&ctx, "GET", "/admin/dlq", Some("partition=x"), Value::Null).await;
    assert_eq!((code, error_of(&v)), (400, "`partition=x` is not a number"));
    let (code, v) = call(
        &ctx,
        "GET",
        "/admin/dlq",
        Some("topic=nope.dlq"),
        Value::Null,
    )
    .await;
    assert_eq!(
        (code, error_of(&v)),
        (404, "dead-letter topic `nope.dlq` does not exist")
    );

    // A dry run is allowed without admin and writes nothing.
    let dry = json!({"topic": "emails.dlq", "options": {"dry_run": true}});
    let (code, v) = call(
        &context(&broker, false),
        "POST",
        "/admin/dlq/replay",
        None,
        dry,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let reports: Vec<ReplayReport> = serde_json::from_value(v).expect("reports");
    assert_eq!(reports[0].replayed.len(), 3);
    assert!(reports[0].replayed.iter().all(|r| r.to.is_none()));
    assert_eq!(broker.read_topic("emails").expect("emails").len(), 3);
    assert_eq!(broker.read_topic("emails.dlq").expect("dlq").len(), 3);
    let (code, _) = call(
        &context(&broker, false),
        "POST",
        "/admin/dlq/replay",
        None,
        json!({}),
    )
    .await;
    assert_eq!(code, 403);

    // Replay two of them (filter: offsets 0 to 1).
    let req = json!({"filter": {"to_offset": 1}});
    let (code, v) = call(&ctx, "POST", "/admin/dlq/replay", None, req).await;
    assert_eq!(code, 200, "{v}");
    let reports: Vec<ReplayReport> = serde_json::from_value(v).expect("reports");
    let to: Vec<_> = reports[0]
        .replayed
        .iter()
        .map(|r| (r.dead_letter.as_str(), r.to.as_deref()))
        .collect();
    assert_eq!(
        to,
        [
            ("emails.dlq-0@0", Some("emails-0@3")),
            ("emails.dlq-0@1", Some("emails-0@4"))
        ]
    );
    let emails = broker.read_topic("emails").expect("emails");
    assert_eq!(emails.len(), 5);
    let replayed = &emails[3];
    assert_eq!(
        replayed.value.as_deref(),
        Some(&b"{\"to\":\"ada@example.com\"}"[..])
    );
    assert_eq!(
        replayed.headers.get_str(headers::REPLAYED),
        Some("emails.dlq-0@0")
    );
    assert!(
        replayed
            .headers
            .iter()
            .all(|h| !h.key.starts_with("shareworker.dlq.")),
        "{:?}",
        replayed.headers
    );

    // Listed as replayed; a second replay skips them.
    let (_, v) = call(&ctx, "GET", "/admin/dlq", None, Value::Null).await;
    assert_eq!(
        v.as_array().map(Vec::len),
        Some(3),
        "markers are not dead letters: {v}"
    );
    assert_eq!(v[0]["replayed_to"], "emails-0@3");
    assert_eq!(v[2]["replayed_to"], Value::Null);
    let (_, v) = call(
        &ctx,
        "POST",
        "/admin/dlq/replay",
        None,
        json!({"filter": {"to_offset": 1}}),
    )
    .await;
    let reports: Vec<ReplayReport> = serde_json::from_value(v).expect("reports");
    assert!(reports[0].replayed.is_empty());
    assert_eq!(reports[0].skipped.len(), 2);
    assert!(
        reports[0].skipped[0]
            .reason
            .starts_with("already replayed (to emails-0@3)"),
        "{:?}",
        reports[0].skipped
    );

    // The replayed jobs fail again: their new dead letters carry the replay header over.
    t = t.job(mailer());
    t.run_until_idle().await.expect("run again");
    let (_, v) = call(&ctx, "GET", "/admin/dlq", Some("from=3"), Value::Null).await;
    let again: Vec<DeadLetterRecord> = serde_json::from_value(v).expect("records");
    assert_eq!(again.len(), 2, "{again:?}");
    assert_eq!(again[0].replay_of.as_deref(), Some("emails.dlq-0@0"));
    assert_eq!(again[0].original_offset, Some(3));
    assert_eq!(
        again[0]
            .headers
            .iter()
            .filter(|(k, _)| k == dlq::TOPIC)
            .count(),
        1,
        "one set of dlq headers"
    );

    // Those are not replayed again by accident; forced, they are.
    let (_, v) = call(
        &ctx,
        "POST",
        "/admin/dlq/replay",
        None,
        json!({"filter": {"from_offset": 3}}),
    )
    .await;
    let reports: Vec<ReplayReport> = serde_json::from_value(v).expect("reports");
    assert!(reports[0].replayed.is_empty(), "{reports:?}");
    assert!(
        reports[0]
            .skipped
            .iter()
            .all(|s| s.reason.contains("dead letter of a replay")),
        "{reports:?}"
    );
    let (_, v) = call(
        &ctx,
        "POST",
        "/admin/dlq/replay",
        None,
        json!({"filter": {"from_offset": 3, "limit": 1}, "options": {"force": true}}),
    )
    .await;
    let reports: Vec<ReplayReport> = serde_json::from_value(v).expect("reports");
    assert_eq!(reports[0].replayed.len(), 1, "{reports:?}");
    let emails = broker.read_topic("emails").expect("emails");
    assert_eq!(
        emails
            .last()
            .and_then(|d| d.headers.get_str(headers::REPLAYED)),
        Some(reports[0].replayed[0].dead_letter.as_str())
    );
    // The one left (offset 2) is still replayable.
    let (_, v) = call(
        &ctx,
        "POST",
        "/admin/dlq/replay",
        None,
        json!({"options": {"dry_run": true}}),
    )
    .await;
    let reports: Vec<ReplayReport> = serde_json::from_value(v).expect("reports");
    let ids: Vec<_> = reports[0]
        .replayed
        .iter()
        .map(|r| r.dead_letter.as_str())
        .collect();
    assert_eq!(ids, ["emails.dlq-0@2"]);
}

#[tokio::test(start_paused = true)]
async fn group_configs_show_and_set_with_clear_errors() {
    let broker = EmbeddedBroker::new();
    let ctx = context(&broker, true);
    let (code, v) = call(
        &ctx,
        "GET",
        "/admin/groups/mailer/config",
        None,
        Value::Null,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["group"], "mailer");
    assert_eq!(
        v["configs"],
        json!([
            ["share.auto.offset.reset", "latest"],
            ["share.delivery.count.limit", "5"],
            ["share.partition.max.record.locks", "2000"],
            ["share.record.lock.duration.ms", "30000"],
        ])
    );
    let set = json!({"configs": [["share.delivery.count.limit", "3"], ["share.auto.offset.reset", "earliest"]]});
    let (code, _) = call(
        &context(&broker, false),
        "POST",
        "/admin/groups/mailer/config",
        None,
        set.clone(),
    )
    .await;
    assert_eq!(code, 403);
    let (code, v) = call(&ctx, "POST", "/admin/groups/mailer/config", None, set).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["configs"][0],
        json!(["share.auto.offset.reset", "earliest"])
    );
    assert_eq!(v["configs"][1], json!(["share.delivery.count.limit", "3"]));
    assert_eq!(
        broker
            .group_limits("mailer")
            .await
            .expect("limits")
            .delivery_count_limit,
        3
    );

    for (body, says) in [
        (
            json!({"configs": [["share.delivery.count.limit", "11"]]}),
            "share.delivery.count.limit must be between 2 and 10, got 11",
        ),
        (
            json!({"configs": [["share.isolation.level", "x"]]}),
            "`share.isolation.level` is not a share-group config this broker knows",
        ),
        (
            json!({"configs": [["share.record.lock.duration.ms", "soon"]]}),
            "`share.record.lock.duration.ms`: `soon` is not a number of milliseconds",
        ),
    ] {
        let (code, v) = call(&ctx, "POST", "/admin/groups/mailer/config", None, body).await;
        assert_eq!(code, 400, "{v}");
        assert!(error_of(&v).contains(says), "{v}");
    }
    let (code, v) = call(&ctx, "GET", "/admin/groups/a%2Fb/config", None, Value::Null).await;
    assert_eq!(code, 400, "{v}");
}

#[tokio::test]
async fn other_paths_are_left_to_the_server() {
    let broker = EmbeddedBroker::new();
    let ctx = context(&broker, true);
    for path in ["/metrics", "/healthz", "/", "/statusx"] {
        // Not an admin route: the server's own plain 404.
        let (status, content_type, _) = route(&ctx, "GET", path, None, Bytes::new()).await;
        assert_eq!((status, content_type.as_str()), (404, PLAIN), "{path}");
    }
    let (code, v) = call(&ctx, "GET", "/admin/nope", None, Value::Null).await;
    assert_eq!(code, 404);
    assert!(error_of(&v).contains("GET /status"), "{v}");
    let (code, _) = call(&ctx, "GET", "/admin/enqueue", None, Value::Null).await;
    assert_eq!(code, 405);
    let (code, v) = call(&ctx, "GET", "/status", Some("group=%zz"), Value::Null).await;
    assert_eq!(code, 400, "{v}");
}
