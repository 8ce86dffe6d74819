//! Errors a Kafka broker answers, as the seam's [`Error`], and log fields as JSON text.

use std::fmt;

use serde::Serialize;

use crate::Error;

/// Builds an [`Error`] from a Kafka error code (the seam crate cannot name Kafka's codes).
pub(crate) trait KafkaError {
    /// A Kafka error code answered by a broker; lock-related codes map to `is_lock_lost`.
    ///
    /// Only builds the error: the client counts the code, per client, where it reads the
    /// broker's answer ([`ErrorCounts`](crate::stats::ErrorCounts)), so an error kept and
    /// returned again is not counted again.
    fn kafka(api: &str, code: i16, message: Option<&str>) -> Self;
}

impl KafkaError for Error {
    fn kafka(api: &str, code: i16, message: Option<&str>) -> Self {
        use kafka_protocol::error::ParseResponseErrorCode;
        let name = code
            .err()
            .map_or_else(|| format!("error {code}"), |e| format!("{e:?} ({code})"));
        Error::kafka_named(api, code, &name, message)
    }
}

/// Displays a value as JSON text (for a log field the runtime writes as JSON: `assignment`).
pub(crate) struct Json<T>(pub(crate) T);

impl<T: Serialize> fmt::Display for Json<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_string(&self.0) {
            Ok(text) => f.write_str(&text),
            Err(e) => write!(f, "(cannot be written as JSON: {e})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_failures_are_their_own_kind_and_say_an_acl_is_missing() {
        for code in [29, 30, 31] {
            let err = Error::kafka("Produce to `t`", code, None);
            assert!(err.is_not_authorized(), "{code}: {err:?}");
            assert!(!err.is_broker() && !err.is_auth(), "{code}: {err:?}");
            assert!(err.to_string().contains("lacks an ACL"), "{err}");
        }
        assert!(!Error::kafka("Produce", 6, None).is_not_authorized());
    }
}
