//! What `#[shareworker::job]` generates: a definition per handler, registered by name.

use serde::Deserialize;
use shareworker::{Job, JobError, broker::Bytes};

/// A JSON payload.
#[derive(Debug, Deserialize)]
pub struct Email {
    /// The recipient.
    pub to: String,
}

/// A public handler with every attribute written.
#[shareworker::job(
    topic = "emails",
    group = "mailers",
    concurrency = 8,
    prefetch = 0,
    max_attempts = 5,
    backoff(initial = "500ms", max = "1m", multiplier = 1.5, jitter = 0),
    timeout = "30s",
    dead_letter = "emails.failed"
)]
pub async fn send_email(job: Job<Email>) -> Result<(), JobError> {
    if job.payload().to.is_empty() {
        return Err(JobError::permanent("no recipient"));
    }
    Ok(())
}

// A private handler on text, with an error type that converts into `JobError`.
#[shareworker::job(topic = "audit", dead_letter = false)]
async fn audit_log(job: Job<String>) -> Result<(), std::io::Error> {
    let _line: &str = job.payload();
    Ok(())
}

// Raw bytes, a pattern for the argument, an `anyhow::Result<()>` alias, `pub(crate)`.
#[shareworker::job(topic = "thumbnails", backoff(max = "5m"))]
pub(crate) async fn make_thumbnail(mut job: Job<shareworker::broker::Bytes>) -> anyhow::Result<()> {
    let raw: &mut Bytes = job.payload_mut();
    anyhow::ensure!(raw.len() < 1 << 20, "image too large");
    Ok(())
}

mod nested {
    use shareworker::{Job, JobError};

    // A raw identifier: the handler's name drops the `r#`.
    #[shareworker::job(topic = "types", dead_letter = "off")]
    pub(super) async fn r#type(_: Job<Vec<u8>>) -> Result<(), JobError> {
        Ok(())
    }
}

#[test]
fn each_handler_has_a_definition() {
    let def = send_email::definition();
    assert_eq!(def.name(), "send_email");
    assert_eq!(def.topic(), "emails");

    let def = audit_log::definition();
    assert_eq!(def.name(), "audit_log");
    assert_eq!(def.topic(), "audit");

    let def = make_thumbnail::definition();
    assert_eq!(def.name(), "make_thumbnail");
    assert_eq!(def.topic(), "thumbnails");

    let def = nested::r#type::definition();
    assert_eq!(def.name(), "type");
    assert_eq!(def.topic(), "types");
}

#[test]
fn the_function_is_left_as_written() {
    // The struct lives in the type namespace only, so the name still means the function where a
    // value is expected, and it can be given to the builder by hand.
    let by_hand = shareworker::JobDefinition::new("audit_by_hand", "audit", audit_log);
    assert_eq!(by_hand.name(), "audit_by_hand");
    let _: fn(Job<Email>) -> _ = send_email;
}

#[test]
fn every_handler_is_registered_sorted_by_name() {
    let registered: Vec<(String, String)> = shareworker::__private::registered()
        .iter()
        .map(|def| (def.name().to_owned(), def.topic().to_owned()))
        .collect();
    let expected = [
        ("audit_log", "audit"),
        ("make_thumbnail", "thumbnails"),
        ("send_email", "emails"),
        ("type", "types"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(name, topic)| ((*name).to_owned(), (*topic).to_owned()))
        .collect();
    assert_eq!(registered, expected);
}
