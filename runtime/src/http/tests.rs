//! The endpoint over real TCP: the admin token, a separate admin listener, and the limits that
//! keep a client from holding the server. Each test runs on one thread, so the log capture set
//! for it sees every task of the server.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::broker::{Broker, BrokerAdmin};
use crate::config::Config;
use crate::{EmbeddedBroker, config::Secret};
use shareworker_core::lock::LockExt;

const TOKEN: &str = "a-long-admin-token-for-tests-4242";

/// Every log line written while the guard lives, at every level.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.locked().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.locked()).into_owned()
    }
}

/// An endpoint on 127.0.0.1 with these settings, on an embedded broker that has `emails`.
async fn endpoint(http: HttpConfig) -> (Endpoint, EmbeddedBroker) {
    let broker = EmbeddedBroker::new();
    broker.create_topic("emails", 1).await.expect("topic");
    let http = HttpConfig {
        address: "127.0.0.1:0".into(),
        admin_address: http.admin_address.as_ref().map(|_| "127.0.0.1:0".into()),
        ..http
    };
    let config = Config {
        http: http.clone(),
        ..Config::default()
    };
    let (access, _) = AdminAccess::from_config(&http).expect("access");
    let state = HttpState {
        metrics: Arc::new(Metrics::new(Arc::new(broker.clone())).expect("metrics")),
        status: WorkerStatus::default(),
        admin: Arc::new(AdminContext::new(
            Arc::new(broker.clone()),
            Some(Arc::new(broker.clone())),
            &config,
            access,
        )),
    };
    (Endpoint::start(&http, state).await.expect("start"), broker)
}

/// Sends `request` as it is and reads until the server closes: the status code and the whole
/// answer (0 and what came when the server closed without an answer).
async fn raw(address: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(address).await.expect("connect");
    s.write_all(request).await.expect("send");
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await;
    let _ = read.expect("the server answers and closes within 30 s");
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

fn request(method: &str, path: &str, auth: Option<&str>, body: &str) -> Vec<u8> {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn enqueue_body() -> String {
    serde_json::json!({"topic": "emails", "payload": {"to": "ada@example.com"}}).to_string()
}

#[tokio::test]
async fn the_admin_token_guards_the_routes_that_change_things_and_is_never_logged() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let (server, broker) = endpoint(HttpConfig {
        admin: true,
        admin_token: Some(Secret::new(TOKEN)),
        ..HttpConfig::default()
    })
    .await;
    let at = server.address();
    let body = enqueue_body();

    // No token, a wrong one, another scheme: 401, asking for a bearer token; nothing written.
    let bearer = format!("Bearer {TOKEN}");
    let basic = format!("Basic {TOKEN}");
    for auth in [None, Some("Bearer not-the-token"), Some(basic.as_str())] {
        let (code, text) = raw(at, &request("POST", "/admin/enqueue", auth, &body)).await;
        assert_eq!(code, 401, "{auth:?}: {text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{text}"
        );
    }
    let (code, text) = raw(
        at,
        &request(
            "POST",
            "/admin/groups/mailer/config",
            None,
            r#"{"configs": [["share.delivery.count.limit", "3"]]}"#,
        ),
    )
    .await;
    assert_eq!(code, 401, "{text}");
    assert!(
        broker
            .read("emails", 0, 0, 10)
            .await
            .expect("read")
            .is_empty()
    );

    // The right token: written.
    let (code, text) = raw(at, &request("POST", "/admin/enqueue", Some(&bearer), &body)).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(
        broker.read("emails", 0, 0, 10).await.expect("read").len(),
        1
    );

    // Read-only routes stay open without the token.
    let (code, text) = raw(at, &request("GET", "/status", None, "")).await;
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("\"admin\": true"), "{text}");

    server.stop().await;
    let logged = logs.text();
    assert!(logged.contains("refused an admin request"), "{logged}");
    assert!(!logged.contains(TOKEN), "the token was logged: {logged}");
}

#[tokio::test]
async fn admin_without_a_token_stays_off_and_reads_can_be_protected() {
    // `http.admin = true` and no token: the routes that change things answer 403 saying why,
    // even to a request that brings a token.
    let (server, broker) = endpoint(HttpConfig {
        admin: true,
        ..HttpConfig::default()
    })
    .await;
    let (code, text) = raw(
        server.address(),
        &request(
            "POST",
            "/admin/enqueue",
            Some(&format!("Bearer {TOKEN}")),
            &enqueue_body(),
        ),
    )
    .await;
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("needs an admin token"), "{text}");
    assert!(
        broker
            .read("emails", 0, 0, 10)
            .await
            .expect("read")
            .is_empty()
    );
    let (code, text) = raw(server.address(), &request("GET", "/status", None, "")).await;
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("\"admin\": false"), "{text}");
    server.stop().await;

    // Reads protected: /status and the dead-letter listing need the token; /metrics does not.
    let (server, _broker) = endpoint(HttpConfig {
        admin_token: Some(Secret::new(TOKEN)),
        admin_protect_reads: true,
        ..HttpConfig::default()
    })
    .await;
    let at = server.address();
    for path in [
        "/status",
        "/admin/dlq?topic=emails.dlq",
        "/admin/groups/g/config",
    ] {
        let (code, text) = raw(at, &request("GET", path, None, "")).await;
        assert_eq!(code, 401, "{path}: {text}");
    }
    let (code, text) = raw(
        at,
        &request("GET", "/status", Some(&format!("Bearer {TOKEN}")), ""),
    )
    .await;
    assert_eq!(code, 200, "{text}");
    let (code, text) = raw(at, &request("GET", "/metrics", None, "")).await;
    assert_eq!(code, 200, "{text}");
    server.stop().await;
}

#[tokio::test]
async fn the_admin_routes_can_listen_apart_from_metrics() {
    let (server, _broker) = endpoint(HttpConfig {
        admin_address: Some("127.0.0.1:0".into()),
        ..HttpConfig::default()
    })
    .await;
    assert_ne!(server.address(), server.admin_address());
    let (code, text) = raw(server.address(), &request("GET", "/status", None, "")).await;
    assert_eq!(code, 404, "{text}");
    assert!(
        text.contains(&server.admin_address().to_string()),
        "the 404 says where the admin routes are: {text}"
    );
    let (code, text) = raw(server.address(), &request("GET", "/metrics", None, "")).await;
    assert_eq!(code, 200, "{text}");
    let (code, text) = raw(server.admin_address(), &request("GET", "/status", None, "")).await;
    assert_eq!(code, 200, "{text}");
    let (code, text) = raw(
        server.admin_address(),
        &request("GET", "/metrics", None, ""),
    )
    .await;
    assert_eq!(code, 404, "{text}");
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_get_4xx_and_no_log_line_above_debug() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let (server, broker) = endpoint(HttpConfig {
        admin: true,
        admin_token: Some(Secret::new(TOKEN)),
        max_body_bytes: 4096,
        ..HttpConfig::default()
    })
    .await;
    let at = server.address();

    // Not HTTP at all.
    let (code, text) = raw(at, b"GARBAGE\r\n\r\n").await;
    assert_eq!(code, 400, "{text}");
    let (code, text) = raw(
        at,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    )
    .await;
    assert_eq!(code, 400, "{text}");

    // Headers past 16 KiB, and too many header fields: 431.
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let (code, text) = raw(at, big.as_bytes()).await;
    assert_eq!(code, 431, "{text}");
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let (code, text) = raw(at, many.as_bytes()).await;
    assert_eq!(code, 431, "{text}");

    // A body past `max_body_bytes`: 413, nothing written.
    let payload = "x".repeat(8000);
    let body = serde_json::json!({"topic": "emails", "payload": payload}).to_string();
    let (code, text) = raw(
        at,
        &request(
            "POST",
            "/admin/enqueue",
            Some(&format!("Bearer {TOKEN}")),
            &body,
        ),
    )
    .await;
    assert_eq!(code, 413, "{text}");
    assert!(
        broker
            .read("emails", 0, 0, 10)
            .await
            .expect("read")
            .is_empty()
    );

    server.stop().await;
    let logged = logs.text();
    for level in [" ERROR ", " WARN "] {
        assert!(
            !logged.lines().any(|l| l.contains(level)),
            "a bad request was logged at{level}: {logged}"
        );
    }
}

#[tokio::test]
async fn a_slow_or_idle_client_is_disconnected_after_the_read_timeout() {
    let (server, _broker) = endpoint(HttpConfig {
        admin: true,
        admin_token: Some(Secret::new(TOKEN)),
        read_timeout: Duration::from_secs(1),
        ..HttpConfig::default()
    })
    .await;
    let at = server.address();

    // Idle: connects and sends nothing.
    let started = Instant::now();
    let (code, _) = raw(at, b"").await;
    assert!(code == 0 || code == 408, "{code}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "an idle connection was held {:?}",
        started.elapsed()
    );

    // Half a request line, then silence: the headers never complete.
    let started = Instant::now();
    let (code, _) = raw(at, b"GET /metr").await;
    assert!(code == 0 || code == 408, "{code}");
    assert!(started.elapsed() < Duration::from_secs(15));

    // Headers, then a body that never comes: 408 from the admin route.
    let mut s = TcpStream::connect(at).await.expect("connect");
    s.write_all(
        format!(
            "POST /admin/enqueue HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100\r\n\r\n{{\"topic\""
        )
        .as_bytes(),
    )
    .await
    .expect("send");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out))
        .await
        .expect("answered within the timeout")
        .expect("read");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn connections_past_the_limit_are_closed_and_the_rest_still_served() {
    let (server, _broker) = endpoint(HttpConfig {
        max_connections: 2,
        read_timeout: Duration::from_secs(20),
        ..HttpConfig::default()
    })
    .await;
    let at = server.address();
    // Two idle connections hold both places.
    let a = TcpStream::connect(at).await.expect("connect");
    let b = TcpStream::connect(at).await.expect("connect");
    // Let the server accept them before the third comes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (code, text) = raw(at, &request("GET", "/healthz", None, "")).await;
    assert_eq!(code, 0, "a third connection is closed unanswered: {text}");
    drop(a);
    drop(b);
    // Places free again once the server has seen them go.
    let mut served = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if raw(at, &request("GET", "/healthz", None, "")).await.0 == 200 {
            served = true;
            break;
        }
    }
    assert!(
        served,
        "no connection was served after the idle ones closed"
    );
    server.stop().await;
}
