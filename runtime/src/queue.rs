//! Enqueueing jobs.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::Error;
use crate::broker::{Broker, OutgoingRecord, Produced};
use crate::codec::{self, Encode};

/// Enqueues jobs on a broker: each job is a record on the handler's topic.
///
/// ```
/// use shareworker::{EmbeddedBroker, queue::Message, Queue};
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
        let bytes = codec::json(payload).map_err(encode_error)?;
        Ok(Self(OutgoingRecord::new(bytes)))
    }

    /// A message whose payload is `payload` encoded by its [`Encode`] impl: the format a
    /// `Job<T>` handler decodes (JSON for serde types, raw for bytes and text).
    ///
    /// ```
    /// use shareworker::queue::Message;
    ///
    /// #[derive(serde::Serialize)]
    /// struct Email { to: String }
    ///
    /// let json = Message::encode(&Email { to: "ada@example.com".into() })?;
    /// assert_eq!(json.into_record().value.as_deref(), Some(&br#"{"to":"ada@example.com"}"#[..]));
    /// let text = Message::encode("hello")?;
    /// assert_eq!(text.into_record().value.as_deref(), Some(&b"hello"[..]));
    /// # Ok::<(), shareworker::Error>(())
    /// ```
    ///
    /// # Errors
    /// When the payload cannot be encoded.
    pub fn encode<T: Encode + ?Sized>(payload: &T) -> Result<Self, Error> {
        let bytes = payload.encode().map_err(encode_error)?;
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

    /// Enqueues `payload` on `topic`, encoded as a `Job<T>` handler decodes it (its [`Encode`]
    /// impl: JSON for serde types, raw for bytes and text); returns once the broker has it.
    ///
    /// # Errors
    /// When the payload cannot be encoded or the broker refuses the write.
    pub async fn enqueue<T: Encode + ?Sized>(
        &self,
        topic: &str,
        payload: &T,
    ) -> Result<Produced, Error> {
        self.send(topic, Message::encode(payload)?).await
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

fn encode_error(e: codec::EncodeError) -> Error {
    Error::codec("the payload cannot be encoded").with_source(e)
}
