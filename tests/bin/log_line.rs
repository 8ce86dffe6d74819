//! Writes one log line inside a job span through `shareworker::init_tracing`, for the log-format
//! test (`tests/log_format.rs`). With `PANIC=1` it panics inside the span instead (and catches
//! the panic, as the worker does with a handler's), so the panic hook's line is what is written.

fn main() {
    shareworker::init_tracing();
    let span = tracing::info_span!("job", handler = "send_email", offset = 42);
    if std::env::var_os("PANIC").is_some() {
        let caught = span.in_scope(|| {
            std::panic::catch_unwind(|| {
                panic!("the handler fell over\non two lines");
            })
        });
        assert!(caught.is_err());
        return;
    }
    span.in_scope(|| tracing::warn!(attempt = 2, "job failed; retrying after backoff"));
}
