//! Every attribute, each form of argument and return type the macro accepts; the generated code
//! passes strict lints.
#![deny(warnings, missing_docs)]
#![forbid(unsafe_code)]

use shareworker::{broker::Bytes, Job, JobError};

/// A JSON payload.
#[derive(serde::Deserialize)]
pub struct Email {
    /// The recipient.
    pub to: String,
}

/// Sends an email.
#[shareworker::job(
    topic = "emails",
    group = "mailers",
    concurrency = 8,
    prefetch = 16,
    max_attempts = 5,
    backoff(initial = "250ms", max = "1m", multiplier = 2, jitter = 0.1),
    timeout = "1h 30m",
    dead_letter = "emails.dlq"
)]
pub async fn send_email(job: Job<Email>) -> Result<(), JobError> {
    let _to = &job.payload().to;
    Ok(())
}

#[shareworker::job(topic = "audit", dead_letter = false)]
async fn audit(shareworker::Job { .. }: Job<String>) -> Result<(), std::io::Error> {
    Ok(())
}

#[shareworker::job(topic = "raw", dead_letter = "off")]
pub(crate) async fn raw(_job: shareworker::Job<Bytes>) -> anyhow::Result<()> {
    Ok(())
}

// `#[cfg]` before or after the attribute hides the handler and all that goes with it.
#[cfg(any())]
#[shareworker::job(topic = "hidden")]
async fn hidden(_job: Job<Bytes>) -> Result<(), JobError> {
    Ok(())
}

#[shareworker::job(topic = "hidden")]
#[cfg(any())]
async fn hidden_after(_job: Job<Bytes>) -> Result<(), JobError> {
    Ok(())
}

fn main() {
    assert_eq!(send_email::definition().topic(), "emails");
    assert_eq!(audit::definition().topic(), "audit");
    assert_eq!(raw::definition().topic(), "raw");
    let names: Vec<String> = shareworker::__private::registered()
        .iter()
        .map(|def| def.name().to_owned())
        .collect();
    assert_eq!(names, ["audit", "raw", "send_email"]);
}
