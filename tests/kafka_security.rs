//! TLS and SASL against a real broker: SASL_SSL (SCRAM-SHA-512, PLAIN), SASL_PLAINTEXT
//! (SCRAM-SHA-256), SSL with a client certificate (mutual TLS), re-authentication within the
//! session lifetime (KIP-368), and the failures that must end start-up at once: a wrong password,
//! an untrusted CA, a certificate for another host, a missing client certificate, a mechanism the
//! listener does not enable. Throughout, the password never shows in `Debug` output, errors or
//! logs (every log line of the run is captured and searched).
//!
//! The test makes its own CA and certificates (rcgen), and starts its own broker with
//! `scripts/kafka.sh` on ports 22092-22098, so the shared test broker is left alone:
//!
//! | port  | listener       | protocol        | what                                         |
//! |-------|----------------|-----------------|----------------------------------------------|
//! | 22092 | PLAINTEXT      | PLAINTEXT       | between brokers, readiness probe             |
//! | 22093 | CONTROLLER     | PLAINTEXT       | KRaft                                        |
//! | 22094 | SASL_SSL       | SASL_SSL        | PLAIN, SCRAM-SHA-256, SCRAM-SHA-512          |
//! | 22095 | SASL_PLAINTEXT | SASL_PLAINTEXT  | SCRAM-SHA-256 only                           |
//! | 22096 | MTLS           | SSL             | client certificate required                  |
//! | 22097 | WRONGHOST      | SSL             | a certificate for kafka.invalid only         |
//! | 22098 | REAUTH         | SASL_PLAINTEXT  | SCRAM-SHA-256, sessions of 5 s               |
//!
//! The SCRAM users are added at format time (`--add-scram`), the PLAIN user in the listener's
//! JAAS configuration. Runs where the Kafka tests run (scripts/test.sh); required under `CI`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use shareworker::broker::AckKind;
use shareworker::{
    Error, Job, JobDefinition, JobError, KafkaBroker, Worker,
    broker::{Broker, Bytes, GroupConfig, OutgoingRecord, StartFrom},
    config::Secret,
    kafka::{KafkaConfig, SaslMechanism, SecurityProtocol},
};
use shareworker_tests::kafka;
use tokio::io::{AsyncBufReadExt, BufReader};

const PORT: u16 = 22092;
const SASL_SSL: u16 = 22094;
const SASL_PLAINTEXT: u16 = 22095;
const MTLS: u16 = 22096;
const WRONG_HOST: u16 = 22097;
const REAUTH: u16 = 22098;
/// How long the REAUTH listener's sessions last.
const REAUTH_MS: u64 = 5000;

const USER: &str = "alice";
/// Distinctive, so a leak anywhere is found by searching for it.
const PASSWORD: &str = "Pa55-must-NEVER-leak-7f3c";
const WRONG_PASSWORD: &str = "Wr0ng-must-NEVER-leak-91ab";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .expect("the tests crate lives in the repository")
}

fn dir() -> String {
    format!("target/kafka/secure-{PORT}")
}

fn kafka_sh(args: &[String]) {
    let mut full: Vec<String> = args.to_vec();
    full.extend(["--port".into(), PORT.to_string(), "--dir".into(), dir()]);
    let status = std::process::Command::new(repo().join("scripts/kafka.sh"))
        .args(&full)
        .current_dir(repo())
        .status()
        .expect("run scripts/kafka.sh");
    assert!(
        status.success(),
        "scripts/kafka.sh {full:?} failed: {status:?} (see {}/broker.log)",
        dir()
    );
}

struct StopOnDrop;

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new(repo().join("scripts/kafka.sh"))
            .args(["stop", "--port", &PORT.to_string(), "--dir", &dir()])
            .current_dir(repo())
            .status();
    }
}

// ------------------------------------------------------------------------------ certificates

/// The files the broker and the clients use.
struct Pki {
    /// The CA that signs the broker's and the client's certificates.
    ca: PathBuf,
    /// Another CA, which signed nothing the broker shows.
    other_ca: PathBuf,
    /// Key, certificate and CA of the broker (for 127.0.0.1 and localhost).
    server: PathBuf,
    /// Key and certificate of a broker for kafka.invalid only.
    wrong_host: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("CA key");
    CertifiedIssuer::self_signed(params, key).expect("self-signed CA")
}

/// A certificate for `names` signed by `issuer`: (certificate PEM, key PEM).
fn leaf(issuer: &CertifiedIssuer<'static, KeyPair>, cn: &str, names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("signed leaf");
    (cert.pem(), key.serialize_pem())
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn make_pki(dir: &Path) -> Pki {
    std::fs::create_dir_all(dir).expect("pki dir");
    let ca = new_ca("shareworker test CA");
    let other = new_ca("an unrelated CA");
    let (server_cert, server_key) = leaf(&ca, "kafka test broker", &["127.0.0.1", "localhost"]);
    let (wrong_cert, wrong_key) = leaf(&ca, "someone else", &["kafka.invalid"]);
    let (client_cert, client_key) = leaf(&ca, "shareworker test client", &["client"]);
    let pki = Pki {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        server: dir.join("server.pem"),
        wrong_host: dir.join("wrong-host.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    };
    write(&pki.ca, &ca.pem());
    write(&pki.other_ca, &other.pem());
    // Kafka's PEM key store: the private key (PKCS#8), then the certificate chain.
    write(
        &pki.server,
        &format!("{server_key}{server_cert}{}", ca.pem()),
    );
    write(
        &pki.wrong_host,
        &format!("{wrong_key}{wrong_cert}{}", ca.pem()),
    );
    write(&pki.client_cert, &client_cert);
    write(&pki.client_key, &client_key);
    pki
}

// ---------------------------------------------------------------------------------- the broker

fn broker_args(pki: &Pki) -> Vec<String> {
    let scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;";
    let plain = format!(
        "org.apache.kafka.common.security.plain.PlainLoginModule required user_{USER}=\"{PASSWORD}\";"
    );
    let keystore = |listener: &str, file: &Path| {
        vec![
            format!("listener.name.{listener}.ssl.keystore.type=PEM"),
            format!(
                "listener.name.{listener}.ssl.keystore.location={}",
                file.display()
            ),
        ]
    };
    let mut props = vec![
        "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512".to_owned(),
        format!("listener.name.sasl_ssl.plain.sasl.jaas.config={plain}"),
        format!("listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={scram}"),
        format!("listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram}"),
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms=SCRAM-SHA-256".to_owned(),
        format!("listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config={scram}"),
        "listener.name.reauth.sasl.enabled.mechanisms=SCRAM-SHA-256".to_owned(),
        format!("listener.name.reauth.scram-sha-256.sasl.jaas.config={scram}"),
        format!("listener.name.reauth.scram-sha-256.connections.max.reauth.ms={REAUTH_MS}"),
        "listener.name.mtls.ssl.client.auth=required".to_owned(),
        "listener.name.mtls.ssl.truststore.type=PEM".to_owned(),
        format!(
            "listener.name.mtls.ssl.truststore.location={}",
            pki.ca.display()
        ),
    ];
    props.extend(keystore("sasl_ssl", &pki.server));
    props.extend(keystore("mtls", &pki.server));
    props.extend(keystore("wronghost", &pki.wrong_host));
    let mut args = vec!["start".to_owned()];
    for (name, protocol, port) in [
        ("SASL_SSL", "SASL_SSL", SASL_SSL),
        ("SASL_PLAINTEXT", "SASL_PLAINTEXT", SASL_PLAINTEXT),
        ("MTLS", "SSL", MTLS),
        ("WRONGHOST", "SSL", WRONG_HOST),
        ("REAUTH", "SASL_PLAINTEXT", REAUTH),
    ] {
        args.extend(["--listener".into(), format!("{name}:{protocol}:{port}")]);
    }
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        args.extend([
            "--scram".into(),
            format!("{mechanism}=[name={USER},password={PASSWORD}]"),
        ]);
    }
    for p in props {
        args.extend(["--prop".into(), p]);
    }
    args
}

// ------------------------------------------------------------------------------- log capture

/// Every log line of this test process, at TRACE for shareworker.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,shareworker=trace",
            ))
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
        self.0.lock().expect("log lock").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured() -> String {
    String::from_utf8_lossy(&logs().lock().expect("log lock")).into_owned()
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [PASSWORD, WRONG_PASSWORD] {
        assert!(!text.contains(secret), "{what} shows a password: {text}");
    }
}

// ------------------------------------------------------------------------------------ helpers

fn unique(what: &str) -> String {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let what: String = what
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("sec-{what}-{}-{stamp}", std::process::id())
}

fn security(protocol: SecurityProtocol) -> KafkaConfig {
    let mut c = KafkaConfig::default();
    c.security_protocol = protocol;
    c
}

fn sasl(protocol: SecurityProtocol, mechanism: SaslMechanism, password: &str) -> KafkaConfig {
    let mut c = security(protocol);
    c.sasl_mechanism = Some(mechanism);
    c.sasl_username = Some(USER.into());
    c.sasl_password = Some(Secret::new(password));
    c
}

fn url(port: u16) -> String {
    format!("kafka://127.0.0.1:{port}")
}

async fn connect(case: &str, port: u16, security: &KafkaConfig) -> KafkaBroker {
    assert_no_secret("the Debug output of KafkaConfig", &format!("{security:?}"));
    match KafkaBroker::connect_with(&url(port), security).await {
        Ok(b) => b,
        Err(e) => panic!("{case}: cannot connect: {e} ({e:?})"),
    }
}

/// Connecting must fail at once with an `is_auth` error (no retry loop: bounded by a generous
/// guard) whose message says `hint`; the error shows no password.
async fn refused(case: &str, port: u16, security: &KafkaConfig, hint: &str) -> Error {
    let url = url(port);
    let attempt = KafkaBroker::connect_with(&url, security);
    let result = tokio::time::timeout(Duration::from_secs(60), attempt)
        .await
        .unwrap_or_else(|_| {
            panic!("{case}: connecting neither failed nor succeeded within 60 s: a retry loop?")
        });
    let e = match result {
        Ok(_) => panic!("{case}: connected, but must be refused"),
        Err(e) => e,
    };
    let text = format!("{e} {e:?}");
    assert!(e.is_auth(), "{case}: not an auth error: {text}");
    assert!(
        text.contains(hint),
        "{case}: the error should say `{hint}`: {text}"
    );
    assert_no_secret(case, &text);
    eprintln!("{case}: refused as it should be: {e}");
    e
}

/// Connecting with a protocol the listener does not speak fails within a generous guard, and
/// the error (with its causes) points at `kafka.security_protocol`.
async fn mismatched(case: &str, port: u16, security: &KafkaConfig) {
    let url = url(port);
    let attempt = KafkaBroker::connect_with(&url, security);
    let result = tokio::time::timeout(Duration::from_secs(90), attempt)
        .await
        .unwrap_or_else(|_| panic!("{case}: connecting neither failed nor succeeded within 90 s"));
    let e = match result {
        Ok(_) => panic!("{case}: connected, but the protocol does not match the listener"),
        Err(e) => e,
    };
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    assert!(
        text.contains("security_protocol"),
        "{case}: the error should point at kafka.security_protocol: {text}"
    );
    assert_no_secret(case, &format!("{text} {e:?}"));
    eprintln!("{case}: {text}");
}

/// Produces records to a new topic and consumes them all through a share-group member, on
/// `broker`: every request of both travels over the secured connections.
async fn roundtrip(case: &str, broker: &KafkaBroker) {
    let topic = unique(case);
    let group = format!("{topic}-g");
    broker
        .create_topic(&topic, 2)
        .await
        .unwrap_or_else(|e| panic!("{case}: create topic: {e}"));
    broker
        .configure_group(
            &group,
            &GroupConfig::default()
                .start_from(StartFrom::Earliest)
                .lock_duration(kafka::LOCK),
        )
        .await
        .unwrap_or_else(|e| panic!("{case}: configure group: {e}"));
    let want: BTreeSet<String> = (0..20).map(|i| format!("{case}-{i}")).collect();
    broker
        .produce(
            &topic,
            want.iter()
                .map(|v| OutgoingRecord::new(v.clone()))
                .collect(),
        )
        .await
        .unwrap_or_else(|e| panic!("{case}: produce: {e}"));
    let got = consume(case, broker, &group, &topic, want.len(), Duration::ZERO).await;
    assert_eq!(got, want, "{case}: consumed what was produced");
    eprintln!("{case}: produced and consumed {} records", want.len());
}

/// Acquires and accepts until `n` distinct values were seen; pauses `pause` between fetches.
async fn consume(
    case: &str,
    broker: &KafkaBroker,
    group: &str,
    topic: &str,
    n: usize,
    pause: Duration,
) -> BTreeSet<String> {
    let member = broker
        .join(group, &[topic.to_owned()])
        .await
        .unwrap_or_else(|e| panic!("{case}: join: {e}"));
    let mut got = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while got.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{case}: only {} of {n} records consumed after 120 s",
            got.len()
        );
        let deliveries = match member.acquire(10, Duration::from_millis(500)).await {
            Ok(d) => d,
            Err(e) => panic!("{case}: acquire failed: {e} ({e:?})"),
        };
        let acks: Vec<_> = deliveries
            .iter()
            .map(|d| (d.id.clone(), AckKind::Accept))
            .collect();
        for d in deliveries {
            let v = d.value.as_deref().unwrap_or_default();
            got.insert(String::from_utf8_lossy(v).into_owned());
        }
        if !acks.is_empty() {
            member
                .settle(&acks)
                .await
                .unwrap_or_else(|e| panic!("{case}: settle: {e}"));
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    let _ = member.leave().await;
    got
}

// -------------------------------------------------------------------------------------- cases

/// A worker built from configuration (TOML, as `shareworker.toml` would say it) runs a job over
/// SASL_SSL; the same configuration with a wrong password ends `build()` with `is_auth`.
async fn worker_from_config(pki: &Pki) {
    let case = "worker from [kafka] configuration";
    let admin = connect(
        case,
        SASL_SSL,
        &with_ca(
            sasl(
                SecurityProtocol::SaslSsl,
                SaslMechanism::ScramSha512,
                PASSWORD,
            ),
            pki,
        ),
    )
    .await;
    let topic = unique("worker");
    let group = format!("{topic}-g");
    admin.create_topic(&topic, 1).await.expect("create topic");
    admin
        .configure_group(
            &group,
            &GroupConfig::default()
                .start_from(StartFrom::Earliest)
                .lock_duration(kafka::LOCK),
        )
        .await
        .expect("configure group");
    admin
        .produce(&topic, vec![OutgoingRecord::new("hello over SASL_SSL")])
        .await
        .expect("produce");

    let toml = |password: &str| {
        format!(
            r#"
            broker = "kafka://127.0.0.1:{SASL_SSL}?security_protocol=SASL_SSL"
            [http]
            enabled = false
            [kafka]
            sasl_mechanism = "SCRAM-SHA-512"
            sasl_username = "{USER}"
            sasl_password = "{password}"
            ssl_ca_location = "{}"
            "#,
            pki.ca.display()
        )
    };
    let handled: Arc<Mutex<Vec<String>>> = Arc::default();
    let definition = |handled: Arc<Mutex<Vec<String>>>| {
        JobDefinition::new("secure", &topic, move |job: Job<Bytes>| {
            let handled = handled.clone();
            async move {
                let text = String::from_utf8_lossy(job.payload()).into_owned();
                handled.lock().expect("lock").push(text);
                Ok::<(), JobError>(())
            }
        })
        .group(&group)
        .no_dead_letter()
    };
    let worker = Worker::builder()
        .figment(toml_figment(&toml(PASSWORD)))
        .without_signal_handling()
        .job(definition(handled.clone()))
        .build()
        .await
        .unwrap_or_else(|e| panic!("{case}: build: {e} ({e:?})"));
    assert_no_secret(
        "the worker's Config (Debug)",
        &format!("{:?}", worker.config()),
    );
    let stop = worker.shutdown_handle();
    let run = tokio::spawn(worker.run());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while handled.lock().expect("lock").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{case}: the worker handled nothing in 90 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.shutdown();
    let summary = run.await.expect("join").expect("the worker ran");
    assert_eq!(summary.accepted, 1, "{summary:?}");
    eprintln!("{case}: the job ran");

    let case = "worker start-up with a wrong password";
    let built = tokio::time::timeout(
        Duration::from_secs(60),
        Worker::builder()
            .figment(toml_figment(&toml(WRONG_PASSWORD)))
            .without_signal_handling()
            .job(definition(Arc::default()))
            .build(),
    )
    .await
    .unwrap_or_else(|_| panic!("{case}: build() neither failed nor succeeded in 60 s"));
    let e = match built {
        Ok(_) => panic!("{case}: a worker started with a wrong password"),
        Err(e) => e,
    };
    let text = format!("{e} {e:?}");
    assert!(e.is_auth(), "{case}: {text}");
    assert!(text.contains("sasl_password"), "{case}: {text}");
    assert_no_secret(case, &text);
    eprintln!("{case}: refused: {e}");
}

fn toml_figment(text: &str) -> figment::Figment {
    use figment::providers::Format;
    figment::Figment::from(figment::providers::Toml::string(text))
}

/// The worker process (`kafka-test-worker`) configured only through `SHAREWORKER_*` variables,
/// the password in `SHAREWORKER_KAFKA__SASL_PASSWORD`: it handles a job, and its log (at debug)
/// never shows the password.
async fn worker_process_from_env(pki: &Pki) {
    let case = "worker process configured from the environment";
    let admin = connect(
        case,
        SASL_SSL,
        &with_ca(
            sasl(
                SecurityProtocol::SaslSsl,
                SaslMechanism::ScramSha512,
                PASSWORD,
            ),
            pki,
        ),
    )
    .await;
    let topic = unique("env");
    let group = format!("{topic}-g");
    admin.create_topic(&topic, 1).await.expect("create topic");
    admin
        .configure_group(
            &group,
            &GroupConfig::default()
                .start_from(StartFrom::Earliest)
                .lock_duration(kafka::LOCK),
        )
        .await
        .expect("configure group");
    admin
        .produce(&topic, vec![OutgoingRecord::new("from env")])
        .await
        .expect("produce");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kafka-test-worker"))
        .env("KAFKA_URL", "config")
        .env("TOPIC", &topic)
        .env("GROUP", &group)
        .env("HANDLE_MS", "0")
        .env("CONCURRENCY", "1")
        .env("RUST_LOG", "debug")
        // No configuration file (one named explicitly must exist): the environment only.
        .env_remove("SHAREWORKER_CONFIG")
        .current_dir(std::env::temp_dir())
        .env("SHAREWORKER_BROKER", url(SASL_SSL))
        .env("SHAREWORKER_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
        .env("SHAREWORKER_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
        .env("SHAREWORKER_KAFKA__SASL_USERNAME", USER)
        .env("SHAREWORKER_KAFKA__SASL_PASSWORD", PASSWORD)
        .env("SHAREWORKER_KAFKA__SSL_CA_LOCATION", &pki.ca)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start kafka-test-worker");
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let text: Arc<Mutex<String>> = Arc::default();
    for stream in [
        Box::new(out) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
        Box::new(err),
    ] {
        let text = text.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut t = text.lock().expect("lock");
                t.push_str(&line);
                t.push('\n');
            }
        });
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while !text.lock().expect("lock").contains("done ") {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{case}: the worker exited ({status}) before handling the job:\n{}",
                text.lock().expect("lock")
            );
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{case}: no job handled in 90 s:\n{}",
            text.lock().expect("lock")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the worker stops after SIGTERM")
        .expect("wait");
    assert!(status.success(), "{case}: {status:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = text.lock().expect("lock").clone();
    assert!(
        text.contains("SASL authenticated"),
        "{case}: the debug log should show the authentication (is the log captured?):\n{text}"
    );
    assert_no_secret("the worker process's log", &text);
    eprintln!("{case}: handled a job; its log has no password");
}

/// On a listener whose sessions last 5 s, a member keeps fetching for four session lifetimes:
/// the client authenticates again on its connections before they expire, and nothing fails.
async fn reauthentication() {
    let case = "re-authentication (KIP-368)";
    let broker = connect(
        case,
        REAUTH,
        &sasl(
            SecurityProtocol::SaslPlaintext,
            SaslMechanism::ScramSha256,
            PASSWORD,
        ),
    )
    .await;
    let topic = unique("reauth");
    let group = format!("{topic}-g");
    broker.create_topic(&topic, 1).await.expect("create topic");
    broker
        .configure_group(
            &group,
            &GroupConfig::default()
                .start_from(StartFrom::Earliest)
                .lock_duration(kafka::LOCK),
        )
        .await
        .expect("configure group");
    let before = captured().matches("SASL re-authenticated").count();
    let producer = broker.clone();
    let t = topic.clone();
    let n = 20;
    let produce = tokio::spawn(async move {
        for i in 0..n {
            producer
                .produce(&t, vec![OutgoingRecord::new(format!("r{i}"))])
                .await
                .unwrap_or_else(|e| panic!("produce r{i} across re-authentications: {e}"));
            tokio::time::sleep(Duration::from_millis(REAUTH_MS / 5)).await;
        }
    });
    let got = consume(case, &broker, &group, &topic, n, Duration::ZERO).await;
    produce.await.expect("the producer");
    assert_eq!(got.len(), n, "{case}");
    let reauths = captured().matches("SASL re-authenticated").count() - before;
    assert!(
        reauths >= 2,
        "{case}: over {} s of {REAUTH_MS} ms sessions the connections should have re-authenticated; saw {reauths}",
        n as u64 * REAUTH_MS / 5 / 1000
    );
    eprintln!("{case}: {reauths} re-authentications, {n} records through");
}

fn with_ca(mut c: KafkaConfig, pki: &Pki) -> KafkaConfig {
    c.ssl_ca_location = Some(pki.ca.clone());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secured_listeners_work_and_bad_credentials_fail_fast() {
    // Only where the Kafka tests run at all (scripts/test.sh; required under CI).
    if kafka::bootstrap().is_none() {
        return;
    }
    let _ = logs();
    let pki = make_pki(&repo().join(dir()).join("pki"));
    // A broker left over from an interrupted run would have other certificates.
    kafka_sh(&["stop".to_owned()]);
    kafka_sh(&broker_args(&pki));
    let _stop = StopOnDrop;

    // Works: each protocol and mechanism, produce and consume.
    let scram512 = with_ca(
        sasl(
            SecurityProtocol::SaslSsl,
            SaslMechanism::ScramSha512,
            PASSWORD,
        ),
        &pki,
    );
    roundtrip(
        "SASL_SSL SCRAM-SHA-512",
        &connect("SASL_SSL SCRAM-SHA-512", SASL_SSL, &scram512).await,
    )
    .await;
    let plain = with_ca(
        sasl(SecurityProtocol::SaslSsl, SaslMechanism::Plain, PASSWORD),
        &pki,
    );
    roundtrip(
        "SASL_SSL PLAIN",
        &connect("SASL_SSL PLAIN", SASL_SSL, &plain).await,
    )
    .await;
    let scram256 = sasl(
        SecurityProtocol::SaslPlaintext,
        SaslMechanism::ScramSha256,
        PASSWORD,
    );
    roundtrip(
        "SASL_PLAINTEXT SCRAM-SHA-256",
        &connect("SASL_PLAINTEXT SCRAM-SHA-256", SASL_PLAINTEXT, &scram256).await,
    )
    .await;
    let mut mtls = with_ca(security(SecurityProtocol::Ssl), &pki);
    mtls.ssl_certificate_location = Some(pki.client_cert.clone());
    mtls.ssl_key_location = Some(pki.client_key.clone());
    roundtrip(
        "SSL with a client certificate",
        &connect("mTLS", MTLS, &mtls).await,
    )
    .await;

    // Refused at once, with an error that says what to fix.
    refused(
        "SASL_SSL SCRAM-SHA-512, wrong password",
        SASL_SSL,
        &with_ca(
            sasl(
                SecurityProtocol::SaslSsl,
                SaslMechanism::ScramSha512,
                WRONG_PASSWORD,
            ),
            &pki,
        ),
        "kafka.sasl_password",
    )
    .await;
    refused(
        "SASL_SSL PLAIN, wrong password",
        SASL_SSL,
        &with_ca(
            sasl(
                SecurityProtocol::SaslSsl,
                SaslMechanism::Plain,
                WRONG_PASSWORD,
            ),
            &pki,
        ),
        "kafka.sasl_password",
    )
    .await;
    refused(
        "SASL_PLAINTEXT SCRAM-SHA-256, wrong password",
        SASL_PLAINTEXT,
        &sasl(
            SecurityProtocol::SaslPlaintext,
            SaslMechanism::ScramSha256,
            WRONG_PASSWORD,
        ),
        "kafka.sasl_password",
    )
    .await;
    refused(
        "SASL_PLAINTEXT with a mechanism the listener does not enable",
        SASL_PLAINTEXT,
        &sasl(
            SecurityProtocol::SaslPlaintext,
            SaslMechanism::ScramSha512,
            PASSWORD,
        ),
        "it offers SCRAM-SHA-256",
    )
    .await;
    let mut untrusted = scram512.clone();
    untrusted.ssl_ca_location = Some(pki.other_ca.clone());
    refused(
        "SASL_SSL, the broker's CA not trusted",
        SASL_SSL,
        &untrusted,
        "kafka.ssl_ca_location",
    )
    .await;
    refused(
        "SSL, a certificate for another host",
        WRONG_HOST,
        &with_ca(security(SecurityProtocol::Ssl), &pki),
        "not trusted",
    )
    .await;
    // With TLS 1.3 the broker refuses a missing client certificate after the client's handshake
    // is done, with an alert that can end the connection before the first request is sent (1 in
    // 10 attempts here) or while it is written. Either way the client reports the alert (an auth
    // error naming the setting; it used to say only "connection closed") and start-up ends.
    let case = "SSL without the client certificate the listener requires";
    let (mtls_url, no_cert) = (url(MTLS), with_ca(security(SecurityProtocol::Ssl), &pki));
    for attempt in 0..20 {
        let connecting = KafkaBroker::connect_with(&mtls_url, &no_cert);
        match tokio::time::timeout(Duration::from_secs(60), connecting).await {
            Err(_) => panic!(
                "{case} (attempt {attempt}): connecting neither failed nor succeeded within 60 s: a retry loop?"
            ),
            Ok(Ok(_)) => panic!("{case} (attempt {attempt}): connected, but must be refused"),
            Ok(Err(e)) => {
                let text = format!("{e} {e:?}");
                assert!(
                    e.is_auth() && text.contains("ssl_certificate_location"),
                    "{case} (attempt {attempt}): not the certificate alert: {text}"
                );
                assert_no_secret(case, &text);
            }
        }
    }

    // A protocol that does not match the listener: a clear error, whatever its kind.
    for (case, port, security) in [
        (
            "PLAINTEXT client on a SASL_SSL listener",
            SASL_SSL,
            security(SecurityProtocol::Plaintext),
        ),
        (
            "SSL client on a PLAINTEXT listener",
            PORT,
            with_ca(security(SecurityProtocol::Ssl), &pki),
        ),
        (
            "SASL_PLAINTEXT client on a PLAINTEXT listener",
            PORT,
            scram256.clone(),
        ),
        (
            "SASL_PLAINTEXT client on a SASL_SSL listener",
            SASL_SSL,
            sasl(
                SecurityProtocol::SaslPlaintext,
                SaslMechanism::Plain,
                PASSWORD,
            ),
        ),
    ] {
        mismatched(case, port, &security).await;
    }

    worker_from_config(&pki).await;
    worker_process_from_env(&pki).await;
    reauthentication().await;

    // Every log line of the run: the authentications are there, the passwords are not.
    let all = captured();
    assert!(
        all.contains("SASL authenticated") && all.contains("TLS handshake done"),
        "the captured log misses the connection events: is it captured at all?"
    );
    assert_no_secret("the log of the whole run", &all);
}
