//! [`WorkerStatus`]: whether a running worker is ready, shared by the worker (which sets it)
//! and the HTTP server and metrics (which read it), below both.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::Error;
use shareworker_core::lock::LockExt;

/// Whether a running [`Worker`](crate::Worker) is ready: it has joined all its groups, the broker answered its
/// last request, and it is not shutting down. Cheap to clone. This is what `/readyz` reports.
#[derive(Clone, Debug)]
pub struct WorkerStatus {
    inner: Arc<StatusInner>,
}

#[derive(Debug)]
struct StatusInner {
    joined: std::sync::atomic::AtomicBool,
    stopping: std::sync::atomic::AtomicBool,
    broker_ok: std::sync::atomic::AtomicBool,
    /// What stopped the worker on its own, for [`Worker::run`](crate::Worker::run) to return.
    fatal: std::sync::Mutex<Option<Error>>,
}

impl Default for WorkerStatus {
    fn default() -> Self {
        Self {
            inner: Arc::new(StatusInner {
                joined: false.into(),
                stopping: false.into(),
                broker_ok: true.into(),
                fatal: std::sync::Mutex::new(None),
            }),
        }
    }
}

impl WorkerStatus {
    /// Joined every group, the broker answered the last request, and not shutting down.
    pub fn is_ready(&self) -> bool {
        self.not_ready_because().is_none()
    }

    /// Why the worker is not ready, or `None` when it is.
    pub fn not_ready_because(&self) -> Option<&'static str> {
        let i = &self.inner;
        if i.stopping.load(Ordering::Acquire) {
            Some("shutting down")
        } else if !i.joined.load(Ordering::Acquire) {
            Some("not joined to its share groups yet")
        } else if !i.broker_ok.load(Ordering::Acquire) {
            Some("the broker did not answer the last request")
        } else {
            None
        }
    }

    /// Whether the broker answered the last request.
    pub fn broker_answers(&self) -> bool {
        self.inner.broker_ok.load(Ordering::Acquire)
    }

    pub(crate) fn set_joined(&self) {
        self.inner.joined.store(true, Ordering::Release);
    }

    pub(crate) fn set_stopping(&self) {
        self.inner.stopping.store(true, Ordering::Release);
    }

    pub(crate) fn set_broker_ok(&self, ok: bool) {
        self.inner.broker_ok.store(ok, Ordering::Release);
    }

    /// Group `group` cannot go on (its principal may not read its topic): the worker stops and
    /// [`Worker::run`](crate::Worker::run) returns `error` (the first one, when several groups fail).
    pub(crate) fn stop_with(&self, group: &str, topics: &[&str], error: Error) {
        let mut fatal = self.inner.fatal.locked();
        if fatal.is_none() {
            let reads: Vec<String> = topics
                .iter()
                .map(|t| format!("Read on Topic:{t}"))
                .collect();
            let message = format!(
                "share group `{group}` may not read its records: the worker's principal needs Read on Group:{group} and {}; grant them with Kafka's ACL tool (kafka-acls.sh) ({error})",
                reads.join(", ")
            );
            tracing::error!(group, error = %error, "stopping: the worker's principal may not read the group's topics (Read ACL missing)");
            *fatal = Some(error.with_message(message));
        }
        self.set_stopping();
    }

    pub(crate) fn take_fatal(&self) -> Option<Error> {
        self.inner.fatal.locked().take()
    }
}
