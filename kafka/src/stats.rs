//! Counts of errors from Kafka brokers, by API and code, for `shareworker_broker_errors_total`.
//!
//! One [`ErrorCounts`] per client: a [`KafkaBroker`](crate::KafkaBroker) and everything it made
//! (its cluster, connections, members, producer, admin calls) share it, and
//! [`Broker::error_counts`](crate::Broker::error_counts) reports it. Two brokers in one process
//! count apart.
//!
//! Errors are counted where a broker's answer is read (retried ones too), and nowhere else:
//! building an [`Error`] has no side effect, so an error kept and handed out again (a member's
//! fatal error, returned by every later acquire) counts once, when the broker said it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::{Error, KafkaError as _};
use shareworker_core::ErrorCount;
use shareworker_core::lock::LockExt;

/// The broker errors one client has seen, by API and code.
#[derive(Debug, Default)]
pub(crate) struct ErrorCounts {
    counts: Mutex<BTreeMap<(String, String), u64>>,
}

impl ErrorCounts {
    /// Counts one error of `api` (a request name such as `ShareFetch`, or a longer description
    /// starting with it) with `code` (a Kafka error name, or `network`, `timeout`, `codec`).
    pub(crate) fn record(&self, api: &str, code: &str) {
        let api = api_label(api);
        let mut counts = self.counts.locked();
        *counts.entry((api.to_owned(), code.to_owned())).or_insert(0) += 1;
    }

    /// Counts the Kafka error `code` a broker answered to `api`; 0 (no error) is not counted.
    pub(crate) fn answered(&self, api: &str, code: i16) {
        if code != 0 {
            self.record(api, &code_label(code));
        }
    }

    /// Counts the Kafka error `code` a broker answered to `api`, and returns it as an [`Error`]
    /// ([`Error::kafka`]): for the places that read an answer and fail with it.
    pub(crate) fn error(&self, api: &str, code: i16, message: Option<&str>) -> Error {
        self.answered(api, code);
        Error::kafka(api, code, message)
    }

    /// Everything counted so far.
    pub(crate) fn snapshot(&self) -> Vec<ErrorCount> {
        let counts = self.counts.locked();
        counts
            .iter()
            .map(|((api, code), n)| ErrorCount::new(api.clone(), code.clone(), *n))
            .collect()
    }
}

/// The Kafka name of an error code, such as `NOT_LEADER_OR_FOLLOWER`.
pub(crate) fn code_label(code: i16) -> String {
    use kafka_protocol::error::ParseResponseErrorCode;
    let Some(e) = code.err() else {
        return format!("ERROR_{code}");
    };
    let camel = format!("{e:?}");
    if !camel.chars().all(|c| c.is_ascii_alphanumeric()) {
        return format!("ERROR_{code}");
    }
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The request name at the start of a description (`DescribeShareGroupOffsets for group x`
/// becomes `DescribeShareGroupOffsets`), so the label set stays bounded.
fn api_label(api: &str) -> &str {
    let end = api
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(api.len());
    if end == 0 { "other" } else { &api[..end] }
}

#[cfg(test)]
mod tests;
