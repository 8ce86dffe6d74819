use shareworker::{Job, JobError};

#[shareworker::job(topic = "emails", concurrency = 0)]
async fn send_email(_job: Job<String>) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
