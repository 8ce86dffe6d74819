use shareworker::{Job, JobError};

#[shareworker::job(
    topic = "",
    group = "",
    prefetch = -1,
    max_attempts = 70000,
    backoff(initial = "1m", max = "1s", multiplier = 0.5, jitter = 1.5),
    dead_letter = true,
)]
async fn send_email(_job: Job<String>) -> Result<(), JobError> {
    Ok(())
}

#[shareworker::job(topic = "emails", dead_letter = "emails", concurrency = "8")]
async fn send_sms(_job: Job<String>) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
