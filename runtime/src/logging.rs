//! Log output that can never stop the worker: a writer over stderr that drops a write that
//! fails (and counts it), and a panic hook that reports panics through `tracing`.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::fmt::MakeWriter;

/// Log writes to stderr that failed and were dropped: `shareworker_log_write_errors_total`.
///
/// Process-wide on purpose: stderr is one file descriptor per process, shared by every worker
/// and every subscriber in it, so its failures belong to the process, not to a worker. Every
/// worker's `/metrics` reads this one count.
static WRITE_ERRORS: AtomicU64 = AtomicU64::new(0);

/// How many log writes to stderr failed (and were dropped) in this process.
pub(crate) fn write_errors() -> u64 {
    WRITE_ERRORS.load(Ordering::Relaxed)
}

/// Makes the writers of [`init_tracing`](crate::init_tracing)'s subscriber: stderr, where a
/// write that fails (its reader gone: a log shipper restarted, `| head`) is dropped and
/// counted, never returned. `tracing-subscriber` reports a failed write with `eprintln!`, which
/// panics when stderr itself is what failed; a writer that never fails keeps that panic away.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = StderrWriter;

    fn make_writer(&'a self) -> Self::Writer {
        StderrWriter
    }
}

/// One event's writer; see [`Stderr`].
#[derive(Debug)]
pub(crate) struct StderrWriter;

impl Write for StderrWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The subscriber writes one whole event per call: it goes out whole, or is dropped.
        if io::stderr().lock().write_all(buf).is_err() {
            WRITE_ERRORS.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Stderr is not buffered; a failure here would only repeat the write's.
        let _ = io::stderr().lock().flush();
        Ok(())
    }
}

/// Replaces the panic hook with one that logs the panic as an `ERROR` event (target `panic`),
/// inside the span it happened in (a handler's panic carries its `job` span), so JSON logs stay
/// one JSON object per line. The backtrace is a field of the event when `RUST_BACKTRACE` (or
/// `RUST_LIB_BACKTRACE`) asks for one, as with the standard hook.
pub(crate) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("a panic without a message");
        let location = info
            .location()
            .map_or_else(String::new, ToString::to_string);
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("<unnamed>");
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            tracing::error!(target: "panic", thread, location, backtrace = %backtrace, "panicked: {message}");
        } else {
            tracing::error!(target: "panic", thread, location, "panicked: {message}");
        }
    }));
}
