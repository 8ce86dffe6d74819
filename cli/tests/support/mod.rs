//! Running the `shareworker` binary, a worker on the embedded broker with its HTTP endpoint, and
//! finding the Kafka test broker.

#![allow(dead_code, unreachable_pub)] // each test file uses part of it

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use shareworker::broker::BrokerAdmin;
use shareworker::{
    Config, EmbeddedBroker, Job, JobDefinition, JobError, Worker,
    broker::{Broker, StartFrom},
    worker::ShutdownHandle,
};

/// What one run of the CLI printed.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics unless the run succeeded; answers stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "the CLI failed: {self:#?}");
        &self.stdout
    }

    /// Panics unless the run failed with exit code `code`; answers stderr.
    pub fn failed(&self, code: i32) -> &str {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit code {code}: {self:#?}"
        );
        assert!(
            self.stdout.is_empty(),
            "nothing on stdout on failure: {self:#?}"
        );
        &self.stderr
    }

    /// stdout as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }
}

/// The admin token of every [`TestWorker`] started with the admin routes on.
pub const TOKEN: &str = "cli-test-admin-token-123456";

/// Runs the CLI with `args` (and `stdin`), without any configuration file or `SHAREWORKER_*`
/// variable from the environment but the admin token [`TOKEN`] in
/// `SHAREWORKER_HTTP__ADMIN_TOKEN`.
pub async fn cli(args: &[&str], stdin: Option<&str>) -> Run {
    cli_with_token(args, stdin, Some(TOKEN)).await
}

/// As [`cli`], with `token` (if any) in `SHAREWORKER_HTTP__ADMIN_TOKEN`.
pub async fn cli_with_token(args: &[&str], stdin: Option<&str>, token: Option<&str>) -> Run {
    let token = token.map(str::to_owned);
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let stdin = stdin.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shareworker"));
        cmd.args(&args)
            .current_dir(std::env::temp_dir())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SHAREWORKER_") {
                cmd.env_remove(k);
            }
        }
        if let Some(t) = &token {
            cmd.env("SHAREWORKER_HTTP__ADMIN_TOKEN", t);
        }
        let mut child = cmd.spawn().expect("the shareworker binary runs");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input.as_bytes()).expect("write stdin");
        }
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().expect("wait");
        Run {
            code: status.code(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    })
    .await
    .expect("the CLI task")
}

/// Fails a job whose payload has `"fail": true`, with an error naming its `to`.
async fn mail(job: Job<Value>) -> Result<(), JobError> {
    let p = job.payload();
    if p["fail"] == Value::Bool(true) {
        return Err(JobError::permanent(format!(
            "mailbox {} is full",
            p["to"].as_str().unwrap_or("?")
        )));
    }
    Ok(())
}

/// A worker with handler `mailer` (group `mailer`, topic `emails`, dead letters `emails.dlq`)
/// on an embedded broker, its HTTP endpoint (with the admin routes) on a free loopback port.
pub struct TestWorker {
    pub url: String,
    pub broker: EmbeddedBroker,
    shutdown: ShutdownHandle,
}

impl TestWorker {
    /// Starts the worker; `admin` is `http.admin`, with the admin token [`TOKEN`].
    pub async fn start(admin: bool) -> Self {
        let broker = EmbeddedBroker::builder()
            .start_from(StartFrom::Earliest)
            // The tests read the topics back after the worker settled them.
            .keep_settled_records(true)
            .build()
            .expect("broker");
        let mut config = Config::default();
        config.http.address = "127.0.0.1:0".into();
        config.http.admin = admin;
        if admin {
            config.http.admin_token = Some(shareworker::config::Secret::new(TOKEN));
        }
        let worker = Worker::builder()
            .broker(broker.clone())
            .config(config)
            .job(JobDefinition::new("mailer", "emails", mail))
            .code_config_only()
            .without_signal_handling()
            .build()
            .await
            .expect("worker");
        let address = worker.http_address().expect("the HTTP endpoint is on");
        let url = format!("http://{address}");
        let shutdown = worker.shutdown_handle();
        let status = worker.status();
        tokio::spawn(worker.run());
        for _ in 0..500 {
            if status.is_ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(status.is_ready(), "the worker joined its group");
        Self {
            url,
            broker,
            shutdown,
        }
    }

    /// Waits until the worker has settled every job of `emails`.
    pub async fn idle(&self) {
        for _ in 0..1000 {
            let lag: u64 = self
                .broker
                .lag("mailer")
                .await
                .expect("lag")
                .iter()
                .map(|t| t.lag)
                .sum();
            if lag == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the worker did not finish its jobs");
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        self.shutdown.shutdown();
    }
}

/// `KAFKA_BOOTSTRAP` as `kafka://...`, or `None` (with a message) when it is unset outside CI:
/// the rule of every Kafka test in the workspace.
///
/// # Panics
/// When `CI` is set and `KAFKA_BOOTSTRAP` is not: the CI run must start the broker.
pub fn kafka_bootstrap() -> Option<String> {
    shareworker_tests::kafka::bootstrap()
}

/// A name no other test run uses: `prefix-<pid>-<nanos>`.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// The records of `topic` partition `partition`, read without a group.
pub async fn read_all(
    broker: &dyn BrokerAdmin,
    topic: &str,
    partition: i32,
) -> Vec<shareworker::broker::Delivery> {
    broker
        .read(topic, partition, 0, 10_000)
        .await
        .expect("read")
}
