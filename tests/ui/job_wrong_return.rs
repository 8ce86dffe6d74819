use shareworker::{Job, JobError};

#[shareworker::job(topic = "emails")]
async fn no_return_type(_job: Job<String>) {}

#[shareworker::job(topic = "emails")]
async fn returns_a_number(_job: Job<String>) -> u32 {
    0
}

#[shareworker::job(topic = "emails")]
async fn returns_a_value(_job: Job<String>) -> Result<u32, JobError> {
    Ok(0)
}

fn main() {}
