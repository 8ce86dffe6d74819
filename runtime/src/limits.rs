//! The group's delivery count limit as the broker has it now, shared by the group's dispatcher
//! (which decides retry or dead letter with it) and the refresh task (which re-reads it).
//!
//! An operator may change `share.delivery.count.limit` while the worker runs; the broker then
//! archives a record released at the new limit. Reading it once at start let a failing job be
//! released at its last delivery and archived with no dead letter, so it is re-read at every
//! refresh and whenever the broker says a record is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};

use prometheus::IntGauge;
use tracing::{debug, warn};

use crate::broker::Broker;

/// One group's delivery count limit; cheap to clone.
#[derive(Clone)]
pub(crate) struct DeliveryLimit {
    inner: Arc<Inner>,
}

struct Inner {
    group: Arc<str>,
    value: AtomicU16,
    /// `share.partition.max.record.locks`, for the automatic prefetch.
    record_locks: AtomicU32,
    gauge: IntGauge,
    /// A re-read is under way (so a burst of lost locks asks the broker once).
    reading: AtomicBool,
}

impl DeliveryLimit {
    /// The limit read at start, exported in `gauge`.
    pub(crate) fn new(group: &str, limit: u16, gauge: IntGauge) -> Self {
        gauge.set(i64::from(limit));
        Self {
            inner: Arc::new(Inner {
                group: Arc::from(group),
                value: AtomicU16::new(limit),
                record_locks: AtomicU32::new(
                    crate::broker::GroupLimits::default().max_record_locks,
                ),
                gauge,
                reading: AtomicBool::new(false),
            }),
        }
    }

    /// The limit as last read.
    pub(crate) fn get(&self) -> u16 {
        self.inner.value.load(Ordering::Relaxed)
    }

    /// The group's lock limit per partition as last read (Kafka's default 2000 until read).
    pub(crate) fn record_locks(&self) -> u32 {
        self.inner.record_locks.load(Ordering::Relaxed)
    }

    /// A new reading of the group's lock limit per partition.
    pub(crate) fn set_record_locks(&self, locks: u32) {
        self.inner.record_locks.store(locks, Ordering::Relaxed);
    }

    /// A new reading from the broker; says so when it changed.
    pub(crate) fn set(&self, limit: u16) {
        let before = self.inner.value.swap(limit, Ordering::Relaxed);
        self.inner.gauge.set(i64::from(limit));
        if before != limit {
            warn!(group = %self.inner.group, before, delivery_count_limit = limit,
                "the group's delivery count limit changed on the broker; from now on a job makes at most {limit} attempts, and one that fails at its {limit}th or later is dead-lettered instead of released");
        }
    }

    /// Reads the limit from the broker now.
    pub(crate) async fn reread(&self, broker: &dyn Broker) {
        match broker.group_limits(&self.inner.group).await {
            Ok(l) => {
                self.set(l.delivery_count_limit);
                self.set_record_locks(l.max_record_locks);
            }
            Err(e) => {
                debug!(group = %self.inner.group, error = %e, "cannot read the group's limits; keeping the last ones");
            }
        }
    }

    /// Re-reads the limit in the background, unless a re-read is already under way.
    pub(crate) fn reread_soon(&self, broker: Arc<dyn Broker>) {
        if self.inner.reading.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            this.reread(&*broker).await;
            this.inner.reading.store(false, Ordering::Release);
        });
    }
}

/// How many attempts a handler gets under the group's current delivery count limit: its own
/// `max_attempts` when set and lower, the limit otherwise.
pub(crate) fn max_attempts(configured: Option<u16>, limit: u16) -> u16 {
    configured.map_or(limit, |n| n.min(limit)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddedBroker;
    use crate::broker::GroupConfig;

    #[test]
    fn max_attempts_follows_the_lower_of_both() {
        assert_eq!(max_attempts(None, 5), 5);
        assert_eq!(max_attempts(Some(3), 5), 3);
        assert_eq!(max_attempts(Some(8), 3), 3);
        assert_eq!(max_attempts(Some(4), 2), 2);
    }

    #[tokio::test]
    async fn a_reread_takes_the_brokers_new_limit() {
        let broker = EmbeddedBroker::builder()
            .build()
            .expect("valid embedded broker settings");
        let gauge = IntGauge::new("limit", "test").expect("a valid gauge");
        let limit = DeliveryLimit::new("g", 5, gauge.clone());
        broker
            .configure_group("g", &GroupConfig::default().delivery_count_limit(3))
            .await
            .expect("limit 3 is in range");
        limit.reread(&broker).await;
        assert_eq!(limit.get(), 3);
        assert_eq!(gauge.get(), 3);
    }
}
