//! Writing a record to its dead-letter topic, with headers that say where it came from and why.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Error;
use crate::broker::retry::Backoff;
use crate::broker::{Broker, Delivery, OutgoingRecord, RecordId};
use crate::metrics::HandlerMetrics;

/// Headers the runtime adds to a dead letter.
pub mod headers {
    /// The original topic.
    pub const TOPIC: &str = "shareworker.dlq.topic";
    /// The original partition.
    pub const PARTITION: &str = "shareworker.dlq.partition";
    /// The original offset.
    pub const OFFSET: &str = "shareworker.dlq.offset";
    /// The share group that gave up on it.
    pub const GROUP: &str = "shareworker.dlq.group";
    /// How many attempts were made (the delivery count of the last one).
    pub const ATTEMPTS: &str = "shareworker.dlq.attempts";
    /// The handler that failed.
    pub const HANDLER: &str = "shareworker.dlq.handler";
    /// The last error, as text.
    pub const ERROR: &str = "shareworker.dlq.error";
    /// When it was dead-lettered, in milliseconds since the Unix epoch.
    pub const TIME: &str = "shareworker.dlq.time";
}

/// The pauses between two tries of a dead-letter write: from 200 ms, doubling, at most 30 s,
/// less up to 20 % at random.
const RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));

pub(crate) struct DeadLetterJob {
    pub(crate) topic: String,
    pub(crate) group: Arc<str>,
    pub(crate) handler: Arc<str>,
    pub(crate) id: RecordId,
    pub(crate) attempt: u16,
    pub(crate) error: String,
    pub(crate) at: SystemTime,
    pub(crate) original: Delivery,
    /// The handler's metrics: failed tries are counted, a missing Write ACL is shown.
    pub(crate) metrics: HandlerMetrics,
}

impl DeadLetterJob {
    /// Writes the dead letter (the original key, value and headers plus ours) and waits for the
    /// broker's acknowledgement. Every original header is kept, `shareworker.replayed` of a
    /// replayed record included: that is how a replay knows a dead letter came from a replay
    /// (see [`crate::admin`]).
    ///
    /// Never gives up: every failed try, whatever the error, is reported to `failed` (with the
    /// number of tries so far and the pause before the next) and tried again after a pause that
    /// doubles from 200 ms up to 30 s, less up to 20 % at random. Meanwhile the dispatcher
    /// keeps the record acquired and renews its lock: releasing it instead would let the broker
    /// archive it at its delivery count limit, with no dead letter. Only shutdown (at the end of its grace period) stops
    /// this, by aborting the task.
    pub(crate) async fn write(self, broker: &dyn Broker, failed: impl Fn(Error, u32, Duration)) {
        let original = &self.original;
        let mut record = OutgoingRecord {
            key: original.key.clone(),
            value: original.value.clone(),
            headers: original.headers.clone(),
            partition: None,
        };
        let millis = self
            .at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        record
            .headers
            .push(headers::TOPIC, self.id.topic.to_string());
        record
            .headers
            .push(headers::PARTITION, self.id.partition.to_string());
        record
            .headers
            .push(headers::OFFSET, self.id.offset.to_string());
        record.headers.push(headers::GROUP, self.group.to_string());
        record
            .headers
            .push(headers::ATTEMPTS, self.attempt.to_string());
        record
            .headers
            .push(headers::HANDLER, self.handler.to_string());
        record.headers.push(headers::ERROR, self.error.clone());
        record.headers.push(headers::TIME, millis.to_string());
        let mut retries = RETRY.retries();
        let acl = self.metrics.dead_letter_acl.as_ref();
        loop {
            match broker.produce(&self.topic, vec![record.clone()]).await {
                Ok(_) => {
                    if let Some(g) = acl {
                        g.set(0);
                    }
                    return;
                }
                Err(e) => {
                    let pause = retries.next_pause();
                    if e.is_not_authorized()
                        && let Some(g) = acl
                    {
                        // Not a blip: it lasts until an operator grants the ACL. The record
                        // stays locked meanwhile, so nothing is lost.
                        g.set(1);
                    }
                    failed(e, retries.count(), pause);
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}
