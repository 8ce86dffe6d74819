use shareworker::{Job, JobError};

#[shareworker::job(topic = "emails", timeout = "soon")]
async fn send_email(_job: Job<String>) -> Result<(), JobError> {
    Ok(())
}

#[shareworker::job(topic = "emails", timeout = "0s", backoff(initial = "10 parsecs"))]
async fn send_sms(_job: Job<String>) -> Result<(), JobError> {
    Ok(())
}

#[shareworker::job(topic = "emails", timeout = 30)]
async fn send_fax(_job: Job<String>) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
