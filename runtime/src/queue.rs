//! Enqueueing jobs.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::Error;
use crate::broker::{Broker, OutgoingRecord, Produced};

/// Enqueues jobs on a broker: each job is a record on the handler's topic.
///
/// ```
/// use shareworker::{EmbeddedBroker, Message, Queue};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), shareworker::Error> {
/// let queue = Queue::new(EmbeddedBroker::new());
/// queue.enqueue("emails", &serde_json::json!({ "to": "ada@example.com" })).await?;
/// queue
///     .send("emails", Message::json(&serde_json::json!({ "to": "bob@example.com" }))?
///         .key("bob")
///         .header("trace-id", "42"))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Queue {
    broker: Arc<dyn Broker>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("broker", &self.broker.kind())
            .finish()
    }
}

/// One job to enqueue: a payload with an optional key, headers and partition.
#[derive(Clone, Debug)]
pub struct Message(OutgoingRecord);

impl Message {
    /// A message whose payload is `payload` as JSON.
    ///
    /// # Errors
    /// When `payload` cannot be serialized (a map with non-string keys, for example).
    pub fn json<T: Serialize + ?Sized>(payload: &T) -> Result<Self, Error> {
        let buf = serde_json::to_vec(payload)
            .map_err(|e| Error::codec("the payload cannot be serialized as JSON").with_source(e))?;
        // serde_json reserves 128 bytes up front, and shrinking in place leaves the rest of that
        // block fragmented; a queue may hold millions of small payloads, so copy them out at
        // their exact size and let the big buffer be reused.
        let bytes = Bytes::copy_from_slice(&buf);
        Ok(Self(OutgoingRecord::new(bytes)))
    }

    /// A message with these raw bytes as its payload (for `Job<Bytes>` handlers).
    pub fn bytes(payload: impl Into<Bytes>) -> Self {
        Self(OutgoingRecord::new(payload))
    }

    /// A message with this text as its payload (for `Job<String>` handlers).
    pub fn text(payload: impl Into<String>) -> Self {
        Self(OutgoingRecord::new(Bytes::from(payload.into())))
    }

    /// Sets the key: messages with one key go to one partition.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.0.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.0.headers.push(key, value);
        self
    }

    /// Sends to this partition instead of one chosen from the key.
    pub fn partition(mut self, partition: i32) -> Self {
        self.0.partition = Some(partition);
        self
    }

    /// The record this message becomes.
    pub fn into_record(self) -> OutgoingRecord {
        self.0
    }
}

impl Queue {
    /// A queue on this broker.
    pub fn new(broker: impl Broker) -> Self {
        Self {
            broker: Arc::new(broker),
        }
    }

    /// A queue on a shared broker, such as [`Worker::broker`](crate::Worker::broker).
    pub fn from_arc(broker: Arc<dyn Broker>) -> Self {
        Self { broker }
    }

    /// Enqueues `payload`, as JSON, on `topic`; returns once the broker has it.
    ///
    /// # Errors
    /// When the payload cannot be serialized or the broker refuses the write.
    pub async fn enqueue<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        payload: &T,
    ) -> Result<Produced, Error> {
        self.send(topic, Message::json(payload)?).await
    }

    /// Enqueues one message.
    ///
    /// # Errors
    /// When the broker refuses the write.
    pub async fn send(&self, topic: &str, message: Message) -> Result<Produced, Error> {
        let mut out = self.broker.produce(topic, vec![message.0]).await?;
        out.pop()
            .ok_or_else(|| Error::broker("the broker acknowledged no record"))
    }

    /// Enqueues many messages in one write; returns where each went, in order.
    ///
    /// # Errors
    /// When the broker refuses the write; then none may be assumed written.
    pub async fn send_batch(
        &self,
        topic: &str,
        messages: impl IntoIterator<Item = Message>,
    ) -> Result<Vec<Produced>, Error> {
        let records: Vec<OutgoingRecord> = messages.into_iter().map(|m| m.0).collect();
        self.broker.produce(topic, records).await
    }

    /// The broker this queue writes to.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }
}
