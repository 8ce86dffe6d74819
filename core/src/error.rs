use std::borrow::Cow;
use std::fmt;

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error of every fallible function of shareworker and its broker crates.
///
/// Ask what went wrong with the predicates (`is_config`, `is_lock_lost`, ...). `Display` prints this
/// level only; the cause, if any, comes from [`source`](std::error::Error::source).
pub struct Error {
    kind: Kind,
    message: Cow<'static, str>,
    source: Option<Source>,
    code: Option<i16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A configuration value is missing or out of range.
    Config,
    /// The broker answered with an error or could not be reached.
    Broker,
    /// The record is not (or no longer) acquired by this member.
    LockLost,
    /// The topic does not exist.
    UnknownTopic,
    /// The share group does not exist.
    UnknownGroup,
    /// The member, broker or worker was already closed.
    Closed,
    /// Something did not finish in time.
    Timeout,
    /// A payload could not be encoded or decoded.
    Codec,
    /// Bad input from the caller.
    InvalidInput,
    /// Authentication failed, or a TLS certificate was refused: fatal, not retried.
    Auth,
    /// The broker's authorizer refused: the principal lacks an ACL.
    NotAuthorized,
}

impl Error {
    pub(crate) fn new(kind: Kind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
            code: None,
        }
    }

    /// A Kafka error code answered by a broker, named `name` (the Kafka client crate names it);
    /// lock-related codes map to `is_lock_lost`. Not an API: for backend crates.
    #[doc(hidden)]
    pub fn kafka_named(api: &str, code: i16, name: &str, message: Option<&str>) -> Self {
        let kind = match code {
            // INVALID_RECORD_STATE, and the session/lock codes of a record this member lost.
            121 => Kind::LockLost,
            3 => Kind::UnknownTopic,
            // SASL_AUTHENTICATION_FAILED
            58 => Kind::Auth,
            69 => Kind::UnknownGroup,
            // TOPIC_, GROUP_, CLUSTER_ and TRANSACTIONAL_ID_AUTHORIZATION_FAILED
            29 | 30 | 31 | 53 => Kind::NotAuthorized,
            _ => Kind::Broker,
        };
        let mut text = match message {
            Some(m) if !m.is_empty() => format!("{api}: {name}: {m}"),
            _ => format!("{api}: {name}"),
        };
        if kind == Kind::NotAuthorized {
            text.push_str(
                " (the broker's authorizer refused: this principal lacks an ACL; see the README's ACL table)",
            );
        }
        let mut e = Self::new(kind, text);
        e.code = Some(code);
        e
    }

    /// The Kafka error code behind this error, if a broker answered with one.
    pub fn kafka_code(&self) -> Option<i16> {
        self.code
    }

    /// The same kind, message and code, without the source (errors are not `Clone`).
    #[doc(hidden)]
    pub fn duplicate(&self) -> Self {
        Self {
            kind: self.kind,
            message: self.message.clone(),
            source: None,
            code: self.code,
        }
    }

    /// The same error, carrying the Kafka error code that a broker would answer for it.
    #[doc(hidden)]
    pub fn with_kafka_code(mut self, code: i16) -> Self {
        self.code = Some(code);
        self
    }

    #[doc(hidden)]
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    #[doc(hidden)]
    pub fn config(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Kind::Config, message)
    }

    #[doc(hidden)]
    pub fn broker(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Kind::Broker, message)
    }

    #[doc(hidden)]
    pub fn lock_lost(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Kind::LockLost, message)
    }

    #[doc(hidden)]
    pub fn closed(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Kind::Closed, message)
    }

    #[doc(hidden)]
    pub fn invalid_input(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Kind::InvalidInput, message)
    }

    #[doc(hidden)]
    pub fn codec(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Kind::Codec, message)
    }

    #[doc(hidden)]
    pub fn unknown_topic(topic: &str) -> Self {
        Self::new(
            Kind::UnknownTopic,
            format!("topic `{topic}` does not exist"),
        )
    }

    #[doc(hidden)]
    pub fn unknown_group(group: &str) -> Self {
        Self::new(
            Kind::UnknownGroup,
            format!("share group `{group}` does not exist"),
        )
    }

    #[doc(hidden)]
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.message = message.into();
        self
    }

    #[doc(hidden)]
    pub fn timeout(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Kind::Timeout, message)
    }

    #[doc(hidden)]
    pub fn auth(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Kind::Auth, message)
    }

    /// A configuration value is missing or out of range; the message names the key.
    pub fn is_config(&self) -> bool {
        self.kind == Kind::Config
    }

    /// The broker answered with an error or could not be reached.
    pub fn is_broker(&self) -> bool {
        self.kind == Kind::Broker
    }

    /// The record is not acquired by this member (its lock expired, or it was settled already).
    pub fn is_lock_lost(&self) -> bool {
        self.kind == Kind::LockLost
    }

    /// The topic does not exist.
    pub fn is_unknown_topic(&self) -> bool {
        self.kind == Kind::UnknownTopic
    }

    /// The share group does not exist (it has no members and no offsets on the broker).
    pub fn is_unknown_group(&self) -> bool {
        self.kind == Kind::UnknownGroup
    }

    /// The member, broker or worker was closed already.
    pub fn is_closed(&self) -> bool {
        self.kind == Kind::Closed
    }

    /// Something did not finish in time.
    pub fn is_timeout(&self) -> bool {
        self.kind == Kind::Timeout
    }

    /// A payload could not be encoded or decoded.
    pub fn is_codec(&self) -> bool {
        self.kind == Kind::Codec
    }

    /// The caller passed bad input (an empty topic name, a zero partition count, ...).
    pub fn is_invalid_input(&self) -> bool {
        self.kind == Kind::InvalidInput
    }

    /// The record is larger than the broker accepts: Kafka's `MESSAGE_TOO_LARGE` (10) or
    /// `RECORD_LIST_TOO_LARGE` (18), the Java client's `RecordTooLargeException`, or a record
    /// over the embedded broker's `embedded.max_message_bytes` (1 MiB by default).
    ///
    /// Retrying cannot help: send less (a reference to the data instead of the data), or raise
    /// the limit (`max.message.bytes` on the topic, `embedded.max_message_bytes`).
    ///
    /// (shareworker's embedded broker answers `MESSAGE_TOO_LARGE` for such a record too).
    pub fn is_record_too_large(&self) -> bool {
        matches!(self.code, Some(10 | 18))
    }

    /// The broker refused this client's credentials (a wrong SASL password, an unknown user, a
    /// client certificate it does not accept), or the client refused the broker's TLS
    /// certificate (not signed by a trusted CA, or not for the host connected to).
    ///
    /// Retrying cannot help: the configuration must change. Start-up ends with this error.
    pub fn is_auth(&self) -> bool {
        self.kind == Kind::Auth
    }

    /// The broker's authorizer refused the request: the client authenticated, but its principal
    /// lacks an ACL for it (Kafka's TOPIC_, GROUP_ or CLUSTER_AUTHORIZATION_FAILED).
    ///
    /// Retrying does not help until an operator grants the ACL; the README lists the ACLs each
    /// feature needs.
    pub fn is_not_authorized(&self) -> bool {
        self.kind == Kind::NotAuthorized
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_prints_only_its_own_level() {
        let io = std::io::Error::other("connection reset");
        let err = Error::broker("fetch failed").with_source(io);
        assert_eq!(err.to_string(), "fetch failed");
        let source = std::error::Error::source(&err).map(|s| s.to_string());
        assert_eq!(source.as_deref(), Some("connection reset"));
        assert!(err.is_broker());
        assert!(!err.is_config());
    }
}
