use shareworker::{Job, JobError};

#[shareworker::job(topic = "emails")]
fn send_email(_job: Job<String>) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
