//! `log.format = "json"` (here `SHAREWORKER_LOG__FORMAT=json`) makes `init_tracing` write one JSON
//! object per line, with the job span's fields; the default stays human-readable text.

use std::process::Command;

fn log_line(format: Option<&str>) -> String {
    log_lines(format, &[], None, &[])
}

/// Runs `log-line` with `args`, `RUST_LOG=rust_log` and `env`; its stderr.
fn log_lines(
    format: Option<&str>,
    args: &[&str],
    rust_log: Option<&str>,
    env: &[(&str, &str)],
) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_log-line"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env_remove("SHAREWORKER_LOG__FORMAT")
        .env("SHAREWORKER_HTTP__ENABLED", "false");
    if let Some(f) = format {
        cmd.env("SHAREWORKER_LOG__FORMAT", f);
    }
    if let Some(filter) = rust_log {
        cmd.env("RUST_LOG", filter);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run log-line");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stderr).expect("utf-8")
}

#[test]
fn json_lines_carry_the_event_and_the_job_span() {
    let text = log_line(Some("json"));
    let line = text.lines().next().expect("one line");
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(v["level"], "WARN", "{v}");
    assert_eq!(v["message"], "job failed; retrying after backoff", "{v}");
    assert_eq!(v["attempt"], 2, "{v}");
    assert_eq!(v["span"]["handler"], "send_email", "{v}");
    assert_eq!(v["span"]["offset"], 42, "{v}");
}

#[test]
fn text_is_the_default() {
    let text = log_line(None);
    assert!(
        serde_json::from_str::<serde_json::Value>(text.trim()).is_err(),
        "{text}"
    );
    assert!(
        text.contains("WARN") && text.contains("handler=\"send_email\""),
        "{text}"
    );
    let explicit = log_line(Some("text"));
    assert!(
        explicit.contains("WARN") && !explicit.trim_start().starts_with('{'),
        "{explicit}"
    );
}

#[test]
fn a_panic_is_one_json_line_with_its_span_and_a_backtrace_only_when_asked() {
    let text = log_lines(Some("json"), &[], None, &[("PANIC", "1")]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "one line, nothing from the standard hook: {text}"
    );
    let v: serde_json::Value =
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(v["level"], "ERROR", "{v}");
    assert_eq!(v["target"], "panic", "{v}");
    assert_eq!(
        v["message"], "panicked: the handler fell over\non two lines",
        "{v}"
    );
    assert!(
        v["location"]
            .as_str()
            .is_some_and(|l| l.contains("log_line.rs")),
        "{v}"
    );
    assert_eq!(v["span"]["handler"], "send_email", "{v}");
    assert!(
        v.get("backtrace").is_none(),
        "no backtrace unless asked: {v}"
    );

    let text = log_lines(
        Some("json"),
        &[],
        None,
        &[("PANIC", "1"), ("RUST_BACKTRACE", "1")],
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "the backtrace inside the one line: {text}");
    let v: serde_json::Value =
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert!(
        v["backtrace"]
            .as_str()
            .is_some_and(|b| b.contains("log_line")),
        "{v}"
    );
}

/// The JSON line whose message is `message`.
fn json_line(text: &str, message: &str) -> serde_json::Value {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == message)
        .unwrap_or_else(|| panic!("no JSON line `{message}` in:\n{text}"))
}

#[test]
fn lists_and_summaries_are_json_values() {
    let text = log_lines(Some("json"), &["worker"], Some("info"), &[]);
    let joined = json_line(&text, "joined share group");
    assert_eq!(joined["topics"], serde_json::json!(["emails"]), "{joined}");
    let stopped = json_line(&text, "worker stopped");
    assert_eq!(stopped["summary"]["accepted"], 1, "{stopped}");
    assert_eq!(stopped["summary"]["retried"], 1, "{stopped}");
    assert_eq!(stopped["summary"]["dead_lettered"], 0, "{stopped}");
}

#[test]
fn a_finished_job_logs_one_debug_line_and_durations_are_short() {
    let text = log_lines(Some("json"), &["worker"], Some("shareworker=debug"), &[]);
    let finished: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "job finished")
        .collect();
    assert_eq!(finished.len(), 2, "one line per attempt:\n{text}");
    for (line, (attempt, outcome)) in finished.iter().zip([(1, "failed"), (2, "succeeded")]) {
        assert_eq!(line["level"], "DEBUG", "{line}");
        assert_eq!(line["handler"], "send_email", "{line}");
        assert_eq!(line["record"], "emails-0@0", "{line}");
        assert_eq!(line["attempt"], attempt, "{line}");
        assert_eq!(line["outcome"], outcome, "{line}");
        let took = line["took"].as_str().unwrap_or_default();
        assert!(
            !took.is_empty() && !took.contains(' '),
            "a short duration such as `1.2ms`: {line}"
        );
    }
    let retry = json_line(&text, "job failed; retrying after backoff");
    assert_eq!(retry["delay"], "123ms", "{retry}");
    let quiet = log_lines(Some("json"), &["worker"], Some("info"), &[]);
    assert!(!quiet.contains("job finished"), "debug only:\n{quiet}");
}
