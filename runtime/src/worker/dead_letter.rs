//! Writing a record to its dead-letter topic, with headers that say where it came from and why.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::broker::{Broker, Delivery, OutgoingRecord, RecordId};
use crate::Error;

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

/// Tries to write a dead letter this many times, with growing pauses, while the record's lock is
/// kept alive by the dispatcher.
const WRITE_ATTEMPTS: u32 = 5;

pub(crate) struct DeadLetterJob {
    pub(crate) topic: String,
    pub(crate) group: Arc<str>,
    pub(crate) handler: Arc<str>,
    pub(crate) id: RecordId,
    pub(crate) attempt: u16,
    pub(crate) error: String,
    pub(crate) at: SystemTime,
    pub(crate) original: Delivery,
}

impl DeadLetterJob {
    /// Writes the dead letter (the original key, value and headers plus ours) and waits for the
    /// broker's acknowledgement.
    pub(crate) async fn write(self, broker: &dyn Broker) -> Result<(), Error> {
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
        record.headers.push(headers::TOPIC, self.id.topic.to_string());
        record.headers.push(headers::PARTITION, self.id.partition.to_string());
        record.headers.push(headers::OFFSET, self.id.offset.to_string());
        record.headers.push(headers::GROUP, self.group.to_string());
        record.headers.push(headers::ATTEMPTS, self.attempt.to_string());
        record.headers.push(headers::HANDLER, self.handler.to_string());
        record.headers.push(headers::ERROR, self.error.clone());
        record.headers.push(headers::TIME, millis.to_string());
        let mut pause = Duration::from_millis(200);
        let mut last = None;
        for _ in 0..WRITE_ATTEMPTS {
            match broker.produce(&self.topic, vec![record.clone()]).await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    tracing::warn!(dead_letter = %self.topic, record = %self.id, error = %e, "writing the dead letter failed; trying again");
                    last = Some(e);
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::broker("dead letter not written")))
    }
}
