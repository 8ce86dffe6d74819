//! The job a handler receives and the error it returns.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::broker::{Delivery, Headers, RecordId};
use crate::codec::Decode;
#[cfg(doc)]
use crate::codec::DecodeError;

/// The boxed error type of tower services.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One delivery of a record to a handler, with its payload decoded as `T`.
///
/// `T` is decoded by its [`Decode`] impl: from JSON for serde types, except for [`Bytes`],
/// `Vec<u8>` and `String`, which receive the raw value (a `String` must be UTF-8); another format
/// is an impl of [`Decode`]. A payload that does not decode is a permanent failure: the record
/// goes to the dead-letter topic, with the decoder's message, without running the handler.
///
/// ```
/// use shareworker::{Job, JobError};
///
/// #[derive(serde::Deserialize)]
/// struct Email { to: String }
///
/// async fn send(job: Job<Email>) -> Result<(), JobError> {
///     if job.payload().to.is_empty() {
///         return Err(JobError::permanent("no recipient"));
///     }
///     println!("attempt {} of {}", job.attempt(), job.max_attempts());
///     Ok(())
/// }
/// ```
pub struct Job<T = Bytes> {
    payload: T,
    meta: Arc<JobMeta>,
}

#[derive(Clone)]
pub(crate) struct JobMeta {
    pub(crate) delivery: Delivery,
    pub(crate) max_attempts: u16,
    /// What every job of its handler shares: one `Arc` per job instead of one per field.
    pub(crate) handler: Arc<HandlerContext>,
}

/// What the jobs of one handler share.
pub(crate) struct HandlerContext {
    pub(crate) name: Arc<str>,
    pub(crate) group: Arc<str>,
    /// The worker's shutdown token (cloning a `CancellationToken` takes a lock in its tree;
    /// sharing it does not).
    pub(crate) cancel: CancellationToken,
}

impl Job<Bytes> {
    /// The job of a record whose metadata the dispatcher made when it acquired the record.
    pub(crate) fn from_meta(meta: Arc<JobMeta>) -> Self {
        Job {
            payload: meta.delivery.value.clone().unwrap_or_default(),
            meta,
        }
    }

    /// Decodes the raw payload as `T` (see [`Decode`]).
    ///
    /// # Errors
    /// A permanent [`JobError`], with the [`DecodeError`]'s message, when the payload is not valid
    /// for `T`.
    pub fn decode<T: Decode>(self) -> Result<Job<T>, JobError> {
        let payload = match &self.meta.delivery.value {
            Some(raw) => T::decode(raw),
            None => T::decode_tombstone(),
        }
        .map_err(JobError::permanent)?;
        Ok(Job {
            payload,
            meta: self.meta,
        })
    }
}

impl<T> Job<T> {
    /// The decoded payload.
    pub fn payload(&self) -> &T {
        &self.payload
    }

    /// The decoded payload, mutably.
    pub fn payload_mut(&mut self) -> &mut T {
        &mut self.payload
    }

    /// Takes the payload out of the job.
    pub fn into_payload(self) -> T {
        self.payload
    }

    /// The raw value as the broker delivered it (`None` for a tombstone).
    pub fn raw_value(&self) -> Option<&Bytes> {
        self.meta.delivery.value.as_ref()
    }

    /// The record's key.
    pub fn key(&self) -> Option<&[u8]> {
        self.meta.delivery.key.as_deref()
    }

    /// The record's key as UTF-8 text, if it is.
    pub fn key_str(&self) -> Option<&str> {
        self.key().and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The record's headers.
    pub fn headers(&self) -> &Headers {
        &self.meta.delivery.headers
    }

    /// Where the record lives.
    pub fn id(&self) -> &RecordId {
        &self.meta.delivery.id
    }

    /// The record's topic.
    pub fn topic(&self) -> &str {
        &self.meta.delivery.id.topic
    }

    /// The record's partition.
    pub fn partition(&self) -> i32 {
        self.meta.delivery.id.partition
    }

    /// The record's offset.
    pub fn offset(&self) -> i64 {
        self.meta.delivery.id.offset
    }

    /// The record's timestamp.
    pub fn timestamp(&self) -> SystemTime {
        self.meta.delivery.timestamp
    }

    /// Which attempt this is: the broker's delivery count, from 1. It counts deliveries to any
    /// worker, so it holds across restarts and replicas.
    pub fn attempt(&self) -> u16 {
        self.meta.delivery.delivery_count
    }

    /// The most attempts this job gets: the smaller of the handler's `max_attempts` and the
    /// group's delivery count limit, as they stood when this attempt started. The worker reads
    /// the limit again while it runs: lowered to this attempt or below before the handler
    /// fails, the failure dead-letters the record even though this said more.
    pub fn max_attempts(&self) -> u16 {
        self.meta.max_attempts
    }

    /// Whether a failure now sends the record to the dead-letter topic instead of retrying it.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt() >= self.max_attempts()
    }

    /// The name of the handler running the job.
    pub fn handler(&self) -> &str {
        &self.meta.handler.name
    }

    /// The share group the record was acquired for.
    pub fn group(&self) -> &str {
        &self.meta.handler.group
    }

    /// Whether the worker is shutting down. A long handler may check it and stop early; a handler
    /// still running when the shutdown grace period ends is dropped and its record released.
    pub fn is_cancelled(&self) -> bool {
        self.meta.handler.cancel.is_cancelled()
    }

    /// Completes when the worker starts shutting down.
    ///
    /// ```
    /// # async fn work() {}
    /// async fn long(job: shareworker::Job<shareworker::broker::Bytes>) -> Result<(), shareworker::JobError> {
    ///     tokio::select! {
    ///         _ = work() => Ok(()),
    ///         _ = job.cancelled() => Err(shareworker::JobError::retry("shutting down")),
    ///     }
    /// }
    /// ```
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.meta.handler.cancel.cancelled()
    }

    /// Replaces the payload, keeping everything else.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Job<U> {
        Job {
            payload: f(self.payload),
            meta: self.meta,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Job<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("id", self.id())
            .field("attempt", &self.attempt())
            .field("max_attempts", &self.max_attempts())
            .field("payload", &self.payload)
            .finish()
    }
}

/// Why a handler failed, and what should happen to the record.
///
/// Any error converts with `?` and is *retryable*: the record is released after a backoff delay
/// and delivered again, until the last attempt, after which it goes to the dead-letter topic.
/// [`JobError::permanent`] sends it to the dead-letter topic at once; [`JobError::retry_after`]
/// overrides the backoff delay.
///
/// ```
/// use std::time::Duration;
/// use shareworker::JobError;
///
/// fn parse(input: &str) -> Result<u32, JobError> {
///     let n: u32 = input.parse()?; // retryable
///     if n == 0 {
///         return Err(JobError::permanent("zero is never valid"));
///     }
///     if n > 100 {
///         return Err(JobError::retry_after(Duration::from_secs(60), "rate limited"));
///     }
///     Ok(n)
/// }
/// assert!(parse("0").unwrap_err().is_permanent());
/// assert_eq!(parse("500").unwrap_err().retry_delay(), Some(Duration::from_secs(60)));
/// ```
pub struct JobError {
    kind: JobErrorKind,
    error: BoxError,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobErrorKind {
    Retry(Option<Duration>),
    Permanent,
}

impl JobError {
    /// A failure worth retrying, after the handler's backoff delay.
    pub fn retry(error: impl Into<BoxError>) -> Self {
        Self {
            kind: JobErrorKind::Retry(None),
            error: error.into(),
        }
    }

    /// A failure worth retrying after `delay` instead of the backoff delay.
    pub fn retry_after(delay: Duration, error: impl Into<BoxError>) -> Self {
        Self {
            kind: JobErrorKind::Retry(Some(delay)),
            error: error.into(),
        }
    }

    /// A failure that no retry can fix: the record goes to the dead-letter topic at once.
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        Self {
            kind: JobErrorKind::Permanent,
            error: error.into(),
        }
    }

    /// Recovers a `JobError` that went through a tower layer as a [`BoxError`]; any other error is
    /// retryable.
    pub fn from_boxed(error: BoxError) -> Self {
        match error.downcast::<Carrier>() {
            Ok(carrier) => carrier.0,
            Err(error) => Self::retry(error),
        }
    }

    /// Whether the record goes to the dead-letter topic at once.
    pub fn is_permanent(&self) -> bool {
        self.kind == JobErrorKind::Permanent
    }

    /// The delay asked for with [`JobError::retry_after`].
    pub fn retry_delay(&self) -> Option<Duration> {
        match self.kind {
            JobErrorKind::Retry(delay) => delay,
            JobErrorKind::Permanent => None,
        }
    }

    /// The underlying error.
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.error
    }

    /// The underlying error, taken out.
    pub fn into_error(self) -> BoxError {
        self.error
    }
}

impl<E> From<E> for JobError
where
    E: Into<anyhow::Error>,
{
    fn from(error: E) -> Self {
        let error: anyhow::Error = error.into();
        Self::retry(error)
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)?;
        let mut source = self.error.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobError")
            .field("kind", &self.kind)
            .field("error", &self.error)
            .finish()
    }
}

/// Carries a [`JobError`] through tower layers, whose errors are [`BoxError`]s.
struct Carrier(JobError);

impl fmt::Debug for Carrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Carrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Carrier {}

impl From<JobError> for BoxError {
    fn from(error: JobError) -> Self {
        Box::new(Carrier(error))
    }
}

/// What a handler's result means for its record. Typed, so no error is ever downcast to decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Retry(Option<Duration>),
    Permanent,
}

impl JobError {
    pub(crate) fn verdict(&self) -> Verdict {
        match self.kind {
            JobErrorKind::Retry(d) => Verdict::Retry(d),
            JobErrorKind::Permanent => Verdict::Permanent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::DecodeError;

    fn job(value: Option<&'static str>) -> Job<Bytes> {
        let delivery = Delivery {
            id: RecordId {
                topic: "emails".into(),
                partition: 0,
                offset: 7,
            },
            key: None,
            value: value.map(|v| Bytes::from_static(v.as_bytes())),
            headers: Headers::default(),
            timestamp: SystemTime::UNIX_EPOCH,
            delivery_count: 1,
            lock_duration: Duration::from_secs(30),
        };
        Job::from_meta(Arc::new(JobMeta {
            delivery,
            max_attempts: 3,
            handler: Arc::new(HandlerContext {
                name: Arc::from("send"),
                group: Arc::from("send"),
                cancel: CancellationToken::new(),
            }),
        }))
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Email {
        to: String,
    }

    #[test]
    fn json_payload_decodes() {
        let e = job(Some(r#"{"to":"a@b"}"#))
            .decode::<Email>()
            .expect("valid JSON");
        assert_eq!(e.payload(), &Email { to: "a@b".into() });
        assert_eq!(e.offset(), 7);
    }

    #[test]
    fn bad_json_is_permanent_and_says_why() {
        let err = job(Some("{not json"))
            .decode::<Email>()
            .expect_err("bad JSON");
        assert!(err.is_permanent());
        assert!(err.to_string().contains("does not decode"), "{err}");
    }

    #[test]
    fn raw_types_get_the_bytes() {
        let b = job(Some("not json")).decode::<Bytes>().expect("bytes");
        assert_eq!(&b.payload()[..], b"not json");
        let s = job(Some("plain text")).decode::<String>().expect("text");
        assert_eq!(s.payload(), "plain text");
        let v = job(Some("xy")).decode::<Vec<u8>>().expect("vec");
        assert_eq!(v.payload(), b"xy");
        let raw = job(None)
            .decode::<Bytes>()
            .expect("a tombstone is empty bytes");
        assert!(raw.payload().is_empty());
    }

    #[test]
    fn tombstone_is_permanent_for_json() {
        let err = job(None).decode::<Email>().expect_err("tombstone");
        assert!(err.is_permanent());
        assert!(err.to_string().contains("tombstone"), "{err}");
    }

    /// A format of the user's own: its message is the job error's.
    #[derive(Debug)]
    struct Digits(u64);

    impl Decode for Digits {
        fn decode(raw: &Bytes) -> Result<Self, DecodeError> {
            std::str::from_utf8(raw)
                .ok()
                .and_then(|s| s.parse().ok())
                .map(Digits)
                .ok_or_else(|| DecodeError::new("not digits"))
        }
    }

    #[test]
    fn a_decoder_of_our_own_is_used_and_its_message_kept() {
        assert_eq!(
            job(Some("123"))
                .decode::<Digits>()
                .expect("digits")
                .payload()
                .0,
            123
        );
        let err = job(Some("12a")).decode::<Digits>().expect_err("not digits");
        assert!(err.is_permanent());
        assert_eq!(err.to_string(), "not digits");
    }

    #[test]
    fn question_mark_is_retryable() {
        fn f() -> Result<(), JobError> {
            let _n: u32 = "x".parse()?;
            Ok(())
        }
        let err = f().expect_err("parse fails");
        assert!(!err.is_permanent());
        assert_eq!(err.retry_delay(), None);
        assert_eq!(err.verdict(), Verdict::Retry(None));
    }

    #[test]
    fn job_error_survives_a_tower_box() {
        let boxed: BoxError = JobError::permanent("nope").into();
        let back = JobError::from_boxed(boxed);
        assert!(back.is_permanent());
        assert_eq!(back.to_string(), "nope");
        let other: BoxError = "elapsed".into();
        assert!(!JobError::from_boxed(other).is_permanent());
    }
}
