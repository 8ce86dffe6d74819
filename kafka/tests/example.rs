//! Runs `examples/share_group.rs` against the real broker `KAFKA_BOOTSTRAP` names: the client by
//! itself joins a share group, acquires, renews and acknowledges.
//!
//! Without `KAFKA_BOOTSTRAP` it is skipped with a message, and fails when `CI` is set, like every
//! Kafka test of the workspace (`tests/support/kafka.rs`).

use std::path::PathBuf;
use std::process::Command;

/// The built example binary, next to this test's binary (`cargo test` builds the examples).
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    dir.join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

#[test]
fn share_group_example_joins_acquires_renews_and_acknowledges_on_kafka() {
    let bootstrap = match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(b) if !b.trim().is_empty() => b,
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but KAFKA_BOOTSTRAP is not: this test needs the real Kafka broker; run it through scripts/test.sh, which starts one"
            );
            eprintln!("skipped: set KAFKA_BOOTSTRAP=127.0.0.1:9092 to run the example on Kafka");
            return;
        }
    };
    let path = binary("share_group");
    assert!(
        path.is_file(),
        "{} is missing: run through `cargo test -p shareworker-kafka`, which builds the examples",
        path.display()
    );
    let out = Command::new(&path)
        .env("KAFKA_BOOTSTRAP", bootstrap.trim())
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && !stdout.contains("FAILED")
            && stdout.contains("ok: joined share group")
            && stdout.matches("ok: acquired, renewed and accepted").count() == 3
            && stdout.contains("ok: left the group; 3 records done"),
        "the example did not do what it shows ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}
