//! Writes one log line inside a job span through `shareworker::init_tracing`, for the log-format
//! test (`tests/log_format.rs`).

fn main() {
    shareworker::init_tracing();
    let span = tracing::info_span!("job", handler = "send_email", offset = 42);
    span.in_scope(|| tracing::warn!(attempt = 2, "job failed; retrying after backoff"));
}
