//! `tests/bin/app_worker.rs` run as a process: `#[shareworker::main]` with the app (state, a
//! layer, a queue on the worker's embedded broker), `--handlers`, and handlers from a library
//! crate linked with `use my_jobs as _;`.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn worker(args: &[&str]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_app-worker"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SHAREWORKER_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args)
        .current_dir(std::env::temp_dir())
        .env("SHAREWORKER_HTTP__ENABLED", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the app-worker binary runs")
}

/// Reads stdout until every line in `want` was seen (60 s at most); every line read.
async fn until_seen(child: &mut Child, want: &[&str]) -> Vec<String> {
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let read = async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line);
            if want.iter().all(|w| seen.iter().any(|l| l == w)) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(60), read).await;
    for w in want {
        assert!(
            seen.iter().any(|l| l == w),
            "`{w}` never printed; stdout: {seen:?}"
        );
    }
    seen
}

async fn sigterm_exits_cleanly(mut child: Child) {
    let pid = child.id().expect("pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(40), child.wait())
        .await
        .expect("exits within the grace period")
        .expect("wait");
    assert!(status.success(), "exit {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_handler_runs_the_library_ones_too() {
    let mut child = worker(&[]);
    until_seen(
        &mut child,
        &[
            "handlers: greet,lib_greet",
            "layer saw offset 0",
            "hello ada",
            "library greeted bob",
        ],
    )
    .await;
    sigterm_exits_cleanly(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_flag_selects_and_unknown_names_are_listed() {
    let mut child = worker(&["--handlers", "greet"]);
    let seen = until_seen(&mut child, &["handlers: greet", "hello ada"]).await;
    sigterm_exits_cleanly(child).await;
    assert!(
        !seen.iter().any(|l| l.starts_with("library greeted")),
        "lib_greet was not selected: {seen:?}"
    );

    let out = worker(&["--handlers=greet,nope"])
        .wait_with_output()
        .await
        .expect("output");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`--handlers` names `nope`") && err.contains("greet, lib_greet"),
        "{err}"
    );
}
