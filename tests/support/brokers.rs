//! Kafka brokers a test starts for itself with `scripts/kafka.sh`: a cluster of three nodes, or
//! one broker with extra listeners for a proxy in front. They run on ports the test names (each
//! test binary has its own), are killed when the test process exits however it exits
//! (`--owner-pid`), and are stopped on drop.
//!
//! [`available`] decides whether such tests run: they need Java, and Maven or the jars cached
//! under `target/kafka/`. Without them a test is skipped with a message, and fails when `CI` is
//! set, so CI can never pass by skipping. `TEST_KAFKA=off` skips them the same way.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Kafka release the tests start (`KAFKA_TEST_VERSION`, default 4.4.0).
pub fn version() -> String {
    std::env::var("KAFKA_TEST_VERSION")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "4.4.0".to_owned())
}

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".."))
}

fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether this machine can start brokers; `false` (with a message) means skip.
///
/// # Panics
/// When `CI` is set and it cannot: the CI machine must have Java and Maven.
pub fn available(test: &str) -> bool {
    let why = if std::env::var("TEST_KAFKA").is_ok_and(|v| v == "off") {
        Some("TEST_KAFKA=off".to_owned())
    } else if !runs("java", "-version") {
        Some("java is not installed".to_owned())
    } else if !repo()
        .join(format!("target/kafka/{}/.fetched", version()))
        .exists()
        && !runs("mvn", "-v")
    {
        Some(format!(
            "Maven is not installed and the Kafka {} jars are not in target/kafka",
            version()
        ))
    } else {
        None
    };
    let Some(why) = why else { return true };
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but {test} cannot start its Kafka brokers: {why}"
    );
    eprintln!("skipped {test}: {why} (it starts its own Kafka brokers with scripts/kafka.sh)");
    false
}

/// Runs `scripts/kafka.sh args...` and returns its standard output.
///
/// # Panics
/// When the script fails.
pub fn kafka_sh(args: &[String]) -> String {
    let out = Command::new(repo().join("scripts/kafka.sh"))
        .args(args)
        .current_dir(repo())
        .env(
            "KAFKA_HEAP_OPTS",
            std::env::var("KAFKA_HEAP_OPTS").unwrap_or_else(|_| "-Xmx512m -Xms128m".to_owned()),
        )
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/kafka.sh: {e}"));
    assert!(
        out.status.success(),
        "scripts/kafka.sh {} failed: {:?}",
        args.join(" "),
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`kafka_sh`] on a blocking thread, so the test's runtime goes on meanwhile.
pub async fn kafka_sh_async(args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || kafka_sh(&args))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

fn dir_arg(dir: &Path) -> String {
    dir.to_string_lossy().into_owned()
}

/// A cluster of combined broker+controller nodes (`scripts/kafka.sh cluster`): replication
/// factor 3, min ISR 2. Node `i` (from 1) listens on `base + 2(i-1)`.
#[derive(Debug)]
pub struct Cluster {
    base: u16,
    nodes: u16,
    dir: PathBuf,
}

impl Cluster {
    /// Starts `nodes` nodes from `base` with the broker settings `props` (`key=value`).
    ///
    /// # Panics
    /// When the cluster does not start.
    pub async fn start(base: u16, nodes: u16, props: &[&str]) -> Self {
        let dir = repo().join(format!("target/kafka/cluster-{base}"));
        let mut args = strings(&["cluster", "start"]);
        args.extend([
            "--nodes".into(),
            nodes.to_string(),
            "--port".into(),
            base.to_string(),
            "--dir".into(),
            dir_arg(&dir),
            "--version".into(),
            version(),
            "--owner-pid".into(),
            std::process::id().to_string(),
        ]);
        for p in props {
            args.extend(["--prop".into(), (*p).to_owned()]);
        }
        kafka_sh_async(args).await;
        Self { base, nodes, dir }
    }

    /// `kafka://` with every node.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = (1..=i32::from(self.nodes)).map(|i| self.addr(i)).collect();
        format!("kafka://{}", hosts.join(","))
    }

    /// The node ids, from 1.
    pub fn ids(&self) -> Vec<i32> {
        (1..=i32::from(self.nodes)).collect()
    }

    /// `host:port` of node `id`.
    pub fn addr(&self, id: i32) -> String {
        format!("127.0.0.1:{}", self.port(id))
    }

    fn port(&self, id: i32) -> u16 {
        let offset = u16::try_from(id - 1).unwrap_or(0) * 2;
        self.base + offset
    }

    fn node_args(&self, id: i32) -> Vec<String> {
        vec![
            "--port".into(),
            self.port(id).to_string(),
            "--dir".into(),
            dir_arg(&self.dir.join(format!("node-{id}"))),
        ]
    }

    /// Kills node `id` (SIGKILL: no controlled shutdown, sockets reset).
    pub async fn kill(&self, id: i32) {
        let mut args = strings(&["stop", "--kill"]);
        args.extend(self.node_args(id));
        kafka_sh_async(args).await;
    }

    /// Stops node `id` cleanly (SIGTERM: controlled shutdown moves its leaderships first).
    pub async fn stop(&self, id: i32) {
        let mut args = strings(&["stop"]);
        args.extend(self.node_args(id));
        kafka_sh_async(args).await;
    }

    /// Starts node `id` again on its data and waits until it answers.
    pub async fn restart(&self, id: i32) {
        kafka_sh_async(vec![
            "restart".into(),
            "--dir".into(),
            dir_arg(&self.dir.join(format!("node-{id}"))),
        ])
        .await;
    }

    /// Whether node `id` runs.
    pub fn is_running(&self, id: i32) -> bool {
        let mut args = strings(&["status"]);
        args.extend(self.node_args(id));
        Command::new(repo().join("scripts/kafka.sh"))
            .args(&args)
            .current_dir(repo())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Restarts every node that is not running (a test before may have failed half-way).
    pub async fn heal(&self) {
        for id in self.ids() {
            if !self.is_running(id) {
                self.restart(id).await;
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/kafka.sh"))
            .args([
                "cluster",
                "stop",
                "--kill",
                "--nodes",
                &self.nodes.to_string(),
                "--port",
                &self.base.to_string(),
                "--dir",
                &dir_arg(&self.dir),
            ])
            .current_dir(repo())
            .stdout(Stdio::null())
            .status();
    }
}

/// One broker with extra listeners, each advertised on another port (where a proxy listens).
#[derive(Debug)]
pub struct Single {
    port: u16,
    dir: PathBuf,
}

impl Single {
    /// Starts a broker on `port` (controller `port + 1`) with `listeners` as
    /// `(NAME, port, advertised port)` and the broker settings `props`.
    ///
    /// # Panics
    /// When the broker does not start.
    pub async fn start(port: u16, listeners: &[(&str, u16, u16)], props: &[&str]) -> Self {
        let dir = repo().join(format!("target/kafka/single-{port}"));
        let mut args = strings(&["start"]);
        args.extend([
            "--port".into(),
            port.to_string(),
            "--dir".into(),
            dir_arg(&dir),
            "--version".into(),
            version(),
            "--owner-pid".into(),
            std::process::id().to_string(),
        ]);
        for (name, p, advertised) in listeners {
            args.extend([
                "--listener".into(),
                format!("{name}:PLAINTEXT:{p}:{advertised}"),
            ]);
        }
        for p in props {
            args.extend(["--prop".into(), (*p).to_owned()]);
        }
        kafka_sh_async(args).await;
        Self { port, dir }
    }

    /// `kafka://` of the broker's own listener (not proxied).
    pub fn url(&self) -> String {
        format!("kafka://127.0.0.1:{}", self.port)
    }
}

impl Drop for Single {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/kafka.sh"))
            .args([
                "stop",
                "--kill",
                "--port",
                &self.port.to_string(),
                "--dir",
                &dir_arg(&self.dir),
            ])
            .current_dir(repo())
            .stdout(Stdio::null())
            .status();
    }
}
