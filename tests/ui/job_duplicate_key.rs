use shareworker::{Job, JobError};

#[shareworker::job(topic = "emails", concurrency = 4, topic = "sms")]
async fn send_email(_job: Job<String>) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
