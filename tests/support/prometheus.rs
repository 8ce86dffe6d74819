//! The real Prometheus server and `promtool` (Debian package `prometheus`, installed by
//! `scripts/prometheus.sh ensure`, which `scripts/test.sh` runs).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::http::try_request;

fn find(var: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn missing(name: &str) -> Option<PathBuf> {
    if std::env::var_os("CI").is_some() {
        panic!(
            "{name} is not installed and CI is set: run scripts/prometheus.sh ensure (scripts/test.sh does)"
        );
    }
    eprintln!("SKIPPED: {name} not found (scripts/prometheus.sh ensure installs it)");
    None
}

/// `promtool`, or `None` (the test then skips) outside CI; under `CI` a missing one panics.
pub fn promtool() -> Option<PathBuf> {
    find("PROMTOOL_BIN", "promtool").or_else(|| missing("promtool"))
}

/// The `prometheus` server binary, likewise.
pub fn prometheus() -> Option<PathBuf> {
    find("PROMETHEUS_BIN", "prometheus").or_else(|| missing("prometheus"))
}

/// What `promtool check metrics` says about `text` (empty when it has nothing to say).
///
/// # Panics
/// When promtool cannot be run.
pub fn check_metrics(promtool: &Path, text: &str) -> String {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    let mut said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    if !err.trim().is_empty() {
        said.push_str(err.trim());
    }
    if !out.status.success() && said.is_empty() {
        said = format!("promtool exited with {}", out.status);
    }
    said
}

/// A Prometheus server on loopback, stopped (and its data removed) on drop.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    /// Where its HTTP API listens.
    pub addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Prometheus {
    /// Starts `binary` scraping `target` every `interval`, and waits until it is ready.
    ///
    /// # Panics
    /// When it does not start or get ready within 60 s (its log is in the message).
    pub async fn start(binary: &Path, target: SocketAddr, interval: Duration) -> Self {
        let dir = std::env::temp_dir().join(format!("shareworker-prometheus-{}", free_port()));
        std::fs::create_dir_all(&dir).expect("prometheus dir");
        let ms = interval.as_millis();
        let config = format!(
            "global:\n  scrape_interval: {ms}ms\n  evaluation_interval: {ms}ms\nscrape_configs:\n  - job_name: shareworker\n    scrape_interval: {ms}ms\n    scrape_timeout: {ms}ms\n    static_configs:\n      - targets: ['{target}']\n"
        );
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).expect("write prometheus.yml");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let p = Self { child, dir, addr };
        for _ in 0..600 {
            if let Ok((200, _)) = try_request(addr, "GET", "/-/ready").await {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(p.dir.join("prometheus.log")).unwrap_or_default();
        panic!("prometheus did not get ready on {addr} within 60 s; its log:\n{log}");
    }

    /// An instant query through the HTTP API; returns the `data.result` array.
    ///
    /// # Panics
    /// When the API answers with an error.
    pub async fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let path = format!("/api/v1/query?query={}", encode(promql));
        let (status, body) = crate::http::request(self.addr, "GET", &path).await;
        assert_eq!(status, 200, "query {promql}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON from the API");
        assert_eq!(v["status"], "success", "{body}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The targets' scrape health, as the API reports it (`up`, `down`, `unknown`).
    pub async fn target_health(&self) -> Vec<String> {
        let (_, body) = crate::http::request(self.addr, "GET", "/api/v1/targets").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["activeTargets"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|t| t["health"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
