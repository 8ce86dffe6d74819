//! `log.format = "json"` (here `SHAREWORKER_LOG__FORMAT=json`) makes `init_tracing` write one JSON
//! object per line, with the job span's fields; the default stays human-readable text.

use std::process::Command;

fn log_line(format: Option<&str>) -> String {
    log_line_with(format, &[])
}

fn log_line_with(format: Option<&str>, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_log-line"));
    cmd.env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env_remove("SHAREWORKER_LOG__FORMAT");
    if let Some(f) = format {
        cmd.env("SHAREWORKER_LOG__FORMAT", f);
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
    let text = log_line_with(Some("json"), &[("PANIC", "1")]);
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

    let text = log_line_with(Some("json"), &[("PANIC", "1"), ("RUST_BACKTRACE", "1")]);
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
