//! Runs every example as a user would, and checks it did what it shows.
//!
//! Each example ends with its own checks and exits with status 1 when one failed; these tests run
//! the built example binaries (`cargo test` builds them into `target/<profile>/examples/`), each
//! with a time limit, and assert the exit status and the key lines of the output.
//!
//! The Kafka runs use the broker `KAFKA_BOOTSTRAP` names (`scripts/test.sh` starts one): without
//! it they are skipped with a message, and fail when `CI` is set, like every Kafka test of the
//! workspace (`tests/support/kafka.rs`).
//!
//! Examples run side by side, so each gets its HTTP endpoint on a free loopback port.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one example may run; each takes a few seconds.
const LIMIT: Duration = Duration::from_secs(120);

/// What an example printed and how it ended.
struct Ran {
    name: String,
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// Panics, with the whole output, unless the example exited with 0, printed no failed check
    /// and printed every one of `lines`.
    fn assert_shows(&self, lines: &[&str]) {
        let missing: Vec<&&str> = lines
            .iter()
            .filter(|l| !self.stdout.contains(**l))
            .collect();
        assert!(
            self.success && missing.is_empty() && !self.stdout.contains("FAILED"),
            "example `{}` ({}) did not show what it should; missing lines: {missing:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.name,
            self.status,
            self.stdout,
            self.stderr
        );
    }
}

/// The built example binary `name`, next to this test's binary.
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/run_examples-<hash> -> target/<profile>/examples/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    let path = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is not built: run these tests with `cargo test -p shareworker-examples` (which builds the examples), or `cargo build --examples` first",
        path.display()
    );
    path
}

/// Runs example `name` with `args` and extra environment, in a clean `SHAREWORKER_*` environment.
fn run(name: &str, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut cmd = Command::new(binary(name));
    cmd.args(args)
        // No shareworker.toml there: only the environment below configures the worker.
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SHAREWORKER_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("RUST_LOG")
        .env("SHAREWORKER_HTTP__ADDRESS", "127.0.0.1:0")
        .envs(env.iter().copied());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start example `{name}`: {e}"));
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Err(e) => panic!("waiting for example `{name}`: {e}"),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let ran = Ran {
        name: name.to_owned(),
        success: status.is_some_and(|s| s.success()),
        status: status.map_or_else(
            || format!("killed after {LIMIT:?}: it should end by itself"),
            |s| s.to_string(),
        ),
        stdout,
        stderr,
    };
    println!("--- {name} {args:?} ({})\n{}", ran.status, ran.stdout);
    ran
}

/// `KAFKA_BOOTSTRAP` as `kafka://...`; `None` (skip) when unset, a panic when `CI` is set: the
/// rule of every Kafka test in the workspace.
fn kafka() -> Option<String> {
    shareworker_tests::kafka::bootstrap()
}

#[test]
fn application() {
    run("application", &[], &[]).assert_shows(&[
        "running handlers: charge, receipt",
        "receipt sent for order 5",
        "ok      order 3 was declined",
        "ok      orders 1, 2, 4 and 5 are `receipt sent`",
        "ok      one dead letter (order 3)",
    ]);
}

/// The same binary running only `charge`: the receipts stay queued for another deployment.
#[test]
fn application_with_one_handler() {
    let ran = run("application", &["--handlers", "charge"], &[]);
    ran.assert_shows(&[
        "running handlers: charge",
        "ok      orders 1, 2, 4 and 5 are `paid`",
    ]);
    assert!(!ran.stdout.contains("receipt sent for"), "{}", ran.stdout);
}

#[test]
fn quickstart() {
    run("quickstart", &[], &[]).assert_shows(&[
        "enqueued 25 tasks on the embedded broker",
        "retry       task  4 (Broken) attempt 3 failed: this task always fails; next try in 1s",
        "renewed     task  0 (Slow)",
        "24 accepted, 7 retries, 1 dead-lettered",
        "from tasks offset 4 after 4 attempts: this task always fails",
        "ok      each slow task's 2s lock was renewed",
    ]);
}

/// The same worker on Kafka, by configuration only.
#[test]
fn quickstart_on_kafka() {
    let Some(url) = kafka() else { return };
    run("quickstart", &[], &[("SHAREWORKER_BROKER", &url)]).assert_shows(&[
        "enqueued 25 tasks on the kafka broker",
        "24 accepted, 7 retries, 1 dead-lettered",
        "ok      the broken task is in tasks.dlq after 4 attempts",
    ]);
}

#[test]
fn long_task() {
    run("long_task", &[], &[]).assert_shows(&[
        "renewed     lock on renders-0@0 for another 2s",
        "render      intro.mp4: 5/5 s done",
        "done        renders-0@0 accepted on attempt 1",
        "ok      the other member of the group never got the record (0 records)",
    ]);
}

#[test]
fn dead_letter() {
    run("dead_letter", &[], &[]).assert_shows(&[
        "next try in 200ms",
        "next try in 400ms",
        "next try in 800ms",
        "giving up   payments-0@0 after attempt 4",
        "payments.dlq holds 2 records",
        "shareworker.dlq.attempts = 4",
        "shareworker.dlq.error = payment gateway: 503 Service Unavailable",
        "shareworker.dlq.attempts = 1",
        "ok      the dead letter keeps the original key and headers",
    ]);
}

#[test]
fn enqueue() {
    run("enqueue", &[], &[]).assert_shows(&[
        "the producer is a task of this process",
        "producer (pid",
        "ok      the worker handled all 5 of them",
    ]);
}

/// On Kafka the producer is a second process: the pids in its lines and the worker's differ.
#[test]
fn enqueue_on_kafka() {
    let Some(url) = kafka() else { return };
    let ran = run("enqueue", &[], &[("SHAREWORKER_BROKER", &url)]);
    ran.assert_shows(&[
        "starting the producer as a separate process",
        "enqueued 5 orders on the kafka broker",
        "ok      the worker handled all 5 of them",
    ]);
    let pid = |prefix: &str| {
        ran.stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.split(')').next())
            .map(str::to_owned)
    };
    let (producer, worker) = (pid("producer (pid "), pid("worker   (pid "));
    assert!(
        producer.is_some() && worker.is_some() && producer != worker,
        "the producer and the worker should be two processes: {producer:?} and {worker:?}\n{}",
        ran.stdout
    );
}

/// The producer alone cannot use an embedded broker, and says what to do.
#[test]
fn enqueue_producer_without_kafka_says_what_to_set() {
    let ran = run("enqueue", &["produce"], &[]);
    assert!(
        !ran.success
            && ran
                .stderr
                .contains("set SHAREWORKER_BROKER=kafka://host:port"),
        "({}) {}",
        ran.status,
        ran.stderr
    );
}

#[test]
fn several_handlers() {
    run("several_handlers", &[], &[]).assert_shows(&[
        "make_thumbnail reads images in group media",
        "transcode      reads videos in group media",
        "ok      all 23 jobs done",
        "ok      send_email ran at most 2 at once, and that many",
        "ok      make_thumbnail ran at most 4 at once, and that many",
        "ok      transcode ran at most 1 at once, and that many",
    ]);
}

/// Per-handler concurrency comes from the configuration too, without recompiling.
#[test]
fn several_handlers_with_concurrency_from_the_environment() {
    run(
        "several_handlers",
        &[],
        &[("SHAREWORKER_HANDLERS__SEND_EMAIL__CONCURRENCY", "1")],
    )
    .assert_shows(&[
        "send_email     reads emails in group send_email concurrency 1",
        "ok      send_email ran at most 1 at once, and that many",
    ]);
}

#[test]
fn tower_layers() {
    run("tower_layers", &[], &[]).assert_shows(&[
        "retry       pages-0@0 attempt 1 failed: request timed out",
        "https://example.com/0 (attempt 2)",
        "ok      its first attempt was dropped at the timeout and the retry succeeded",
        "ok      the rate limit held",
    ]);
}

#[test]
fn protobuf() {
    run("protobuf", &[], &[]).assert_shows(&[
        "ship        order A-1 at orders-0@0: 2 x [\"tea\", \"cups\"]",
        "ship        order A-3 at orders-0@2: 5 x []",
        "dead letter orders-0@3: not a protobuf message: failed to decode Protobuf message",
        "ok      the 3 protobuf orders were decoded and handled (got 3)",
        "ok      its dead letter carries the decoder's message after 1 attempt",
    ]);
}
