//! Logging never stops the worker: a worker process whose stderr reader goes away (a log
//! shipper restarted, `| head`) keeps settling jobs, counts the lines it could not write in
//! `shareworker_log_write_errors_total`, and stops cleanly on one SIGTERM within its grace.
//!
//! The worker is the `pipe-worker` binary of this package (embedded broker); it is watched
//! through its `/metrics`.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use shareworker_tests::http::{sample, wait_for_metrics};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

const GRACE: Duration = Duration::from_secs(10);

fn accepted(text: &str) -> f64 {
    sample(
        text,
        "shareworker_jobs_total",
        &[("handler", "flaky"), ("outcome", "accepted")],
    )
    .unwrap_or(0.0)
}

fn released(text: &str) -> f64 {
    sample(
        text,
        "shareworker_jobs_total",
        &[("handler", "flaky"), ("outcome", "released")],
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_stderr_is_closed_keeps_working_and_stops_on_one_sigterm() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipe-worker"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SHAREWORKER_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .env("RUST_LOG", "info")
        .env("GRACE_MS", GRACE.as_millis().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the pipe-worker binary");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
        .await
        .expect("the worker starts within 30 s")
        .expect("read stdout")
        .expect("a first line");
    let addr: SocketAddr = first
        .strip_prefix("http ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("`http <address>` first, got {first:?}"));

    // Logging works, failures included: read stderr until a retry has been logged.
    let mut stderr = child.stderr.take().expect("stderr");
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("retrying") {
        let n = tokio::time::timeout(Duration::from_secs(30), stderr.read(&mut chunk))
            .await
            .expect("a retry is logged within 30 s")
            .expect("read stderr");
        assert!(
            n > 0,
            "stderr closed early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(
        text.contains("configuration loaded")
            && text.contains("broker=embedded (given in the code)"),
        "the worker says at start which configuration and broker it uses: {text}"
    );
    // The reader goes away.
    drop(stderr);

    let before = wait_for_metrics(
        addr,
        "a log line dropped",
        Duration::from_secs(30),
        Duration::from_millis(50),
        |t| sample(t, "shareworker_log_write_errors_total", &[]).is_some_and(|n| n >= 1.0),
    )
    .await;
    let after = wait_for_metrics(
        addr,
        "50 more jobs accepted and 20 more released after the reader went away",
        Duration::from_secs(60),
        Duration::from_millis(100),
        |t| accepted(t) >= accepted(&before) + 50.0 && released(t) >= released(&before) + 20.0,
    )
    .await;
    assert!(
        sample(&after, "shareworker_log_write_errors_total", &[]).is_some_and(|n| n >= 20.0),
        "every retry's warning was dropped and counted:\n{after}"
    );

    // One SIGTERM stops it, cleanly, within the grace period.
    let pid = child.id().expect("pid");
    let sent = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(GRACE, child.wait())
        .await
        .unwrap_or_else(|_| panic!("the worker did not stop within {GRACE:?} of one SIGTERM"))
        .expect("wait");
    assert!(
        status.success(),
        "the worker exits 0 after {:?}: {status:?}",
        sent.elapsed()
    );
    let mut rest = Vec::new();
    while let Ok(Some(line)) = stdout.next_line().await {
        rest.push(line);
    }
    assert!(
        rest.iter().any(|l| l.starts_with("stopped ")),
        "the worker ran to its end: {rest:?}"
    );
}
