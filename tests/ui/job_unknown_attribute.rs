use shareworker::{Job, JobError};

#[shareworker::job(topic = "emails", retries = 3)]
async fn send_email(_job: Job<String>) -> Result<(), JobError> {
    Ok(())
}

#[shareworker::job(topic = "emails", backoff(initial = "1s", factor = 3.0))]
async fn send_sms(_job: Job<String>) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
