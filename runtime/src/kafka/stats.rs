//! Counts of errors from Kafka brokers, by API and code, for `shareworker_broker_errors_total`.
//!
//! Counted where they happen (retried ones too), once per process: every [`KafkaBroker`]
//! (crate::KafkaBroker) of the process reports the same counts.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::broker::ErrorCount;
use crate::broker::lock::LockExt;

static COUNTS: Mutex<BTreeMap<(String, String), u64>> = Mutex::new(BTreeMap::new());

/// Counts one error of `api` (a request name such as `ShareFetch`, or a longer description
/// starting with it) with `code` (a Kafka error name, or `network`, `timeout`, `codec`).
pub(crate) fn record(api: &str, code: &str) {
    let api = api_label(api);
    let mut counts = COUNTS.locked();
    *counts.entry((api.to_owned(), code.to_owned())).or_insert(0) += 1;
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

/// Everything counted so far.
pub(crate) fn snapshot() -> Vec<ErrorCount> {
    let counts = COUNTS.locked();
    counts
        .iter()
        .map(|((api, code), n)| ErrorCount::new(api.clone(), code.clone(), *n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_names() {
        assert_eq!(
            api_label("DescribeShareGroupOffsets for group `g`"),
            "DescribeShareGroupOffsets"
        );
        assert_eq!(api_label("ShareFetch"), "ShareFetch");
        assert_eq!(api_label("`odd`"), "other");
        assert_eq!(code_label(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(code_label(121), "INVALID_RECORD_STATE");
        assert_eq!(code_label(-999), "ERROR_-999");
    }

    #[test]
    fn counts_accumulate() {
        record("TestApiForCounts with details", "TIMEOUT_TEST");
        record("TestApiForCounts", "TIMEOUT_TEST");
        let n = snapshot()
            .into_iter()
            .find(|e| e.api == "TestApiForCounts" && e.code == "TIMEOUT_TEST")
            .map(|e| e.count);
        assert_eq!(n, Some(2));
    }
}
