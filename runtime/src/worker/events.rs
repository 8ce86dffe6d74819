//! What happened to each job, for the testing harness and for metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::RunSummary;
use crate::broker::{AckKind, RecordId};

/// One thing that happened to one delivery of a record.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct JobEvent {
    /// The handler that ran it.
    pub handler: Arc<str>,
    /// Its share group.
    pub group: Arc<str>,
    /// The record.
    pub id: RecordId,
    /// The delivery count of this delivery (0 where not known).
    pub attempt: u16,
    /// What happened.
    pub outcome: Outcome,
    /// How long the handler ran, where it ran.
    pub took: Option<Duration>,
}

/// What happened to a delivery.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler succeeded; the record was accepted.
    Accepted,
    /// The handler failed; the record is held for `delay`, then released for another attempt.
    Retrying {
        /// The backoff delay.
        delay: Duration,
        /// The handler's error.
        error: String,
    },
    /// The last attempt failed or the failure was permanent; the dead letter is being written.
    DeadLettering {
        /// The handler's error.
        error: String,
    },
    /// The dead letter was written and the original rejected.
    DeadLettered,
    /// One try to write the dead letter failed. The record stays acquired (its lock renewed)
    /// and the write is tried again after a pause (200 ms, doubling up to 30 s, with jitter),
    /// until it succeeds ([`Outcome::DeadLettered`]) or the shutdown grace period ends
    /// ([`Outcome::DeadLetterAbandoned`]).
    DeadLetterFailed {
        /// Why the write failed.
        error: String,
    },
    /// The shutdown grace period ended while the dead letter was still being written: the
    /// write was cut off and the record released. Below the delivery count limit it is
    /// delivered again (and may be dead-lettered twice, if the cut-off write had in fact
    /// landed); at the limit the broker archives it ([`Outcome::Archived`] follows).
    DeadLetterAbandoned,
    /// The broker archived the record at its delivery count limit with no dead letter: this
    /// replica released it at its last delivery (at shutdown), or lost its lock at its last
    /// delivery. Counted in `shareworker_records_archived_total`.
    Archived {
        /// How it came to that.
        reason: String,
    },
    /// The last attempt failed and the group has the broker's dead-letter queue (Kafka 4.4,
    /// KIP-1191): the record was rejected, and the broker writes it to `topic`.
    DeadLetteredByBroker {
        /// The broker's dead-letter topic.
        topic: String,
        /// The handler's error.
        error: String,
    },
    /// The last attempt failed and dead-lettering is off: the record was rejected.
    Rejected {
        /// The handler's error.
        error: String,
    },
    /// The handler succeeded, but after the record's lock was lost (a renewal was refused):
    /// the broker had taken the record back, so the success is not acknowledged and not
    /// counted as accepted. The broker delivers the record again or, at its delivery count
    /// limit, archives it ([`Outcome::Archived`] says so).
    SucceededAfterLockLost,
    /// The record's lock was renewed (its handler runs long, or it waits out a backoff).
    LockRenewed,
    /// The handler ran past the maximum lease; it was cancelled and the record released, or,
    /// on its last attempt, sent to its dead letter ([`Outcome::DeadLettering`] follows).
    LeaseExpired,
    /// An acknowledgement was refused (typically the lock had expired).
    SettleFailed {
        /// The acknowledgement that failed.
        kind: AckKind,
    },
}

/// Where events go: the run's counts (always) and the observers given to
/// [`WorkerBuilder::on_event`](super::WorkerBuilder::on_event); cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct EventSink {
    observers: Vec<Observer>,
    counters: Arc<Counters>,
}

/// A function called with every event.
pub(crate) type Observer = Arc<dyn Fn(&JobEvent) + Send + Sync>;

impl EventSink {
    pub(crate) fn add(&mut self, f: Observer) {
        self.observers.push(f);
    }

    /// Counts `outcome` for the run's summary and, when anyone observes events, builds the
    /// event (`make`) and gives it to each observer. With no observer (a worker's usual case)
    /// no event is built: its handler, group and record names are not cloned per job.
    pub(crate) fn emit(&self, outcome: Outcome, make: impl FnOnce(Outcome) -> JobEvent) {
        self.counters.count(&outcome);
        if self.observers.is_empty() {
            return;
        }
        let event = make(outcome);
        for o in &self.observers {
            o(&event);
        }
    }

    /// What the run did so far.
    pub(crate) fn summary(&self) -> RunSummary {
        self.counters.summary()
    }
}

/// The run's counts, for [`RunSummary`].
#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    rejected: AtomicU64,
    lease_expired: AtomicU64,
    settle_failures: AtomicU64,
}

impl Counters {
    fn count(&self, outcome: &Outcome) {
        let c = match outcome {
            Outcome::Accepted => &self.accepted,
            Outcome::Retrying { .. } => &self.retried,
            Outcome::DeadLettered | Outcome::DeadLetteredByBroker { .. } => &self.dead_lettered,
            Outcome::Rejected { .. } => &self.rejected,
            Outcome::LeaseExpired => &self.lease_expired,
            Outcome::SettleFailed { .. } => &self.settle_failures,
            _ => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn summary(&self) -> RunSummary {
        RunSummary {
            accepted: self.accepted.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            lease_expired: self.lease_expired.load(Ordering::Relaxed),
            settle_failures: self.settle_failures.load(Ordering::Relaxed),
        }
    }
}
