use shareworker::{Job, JobError};

#[shareworker::job]
async fn no_arguments(_job: Job<String>) -> Result<(), JobError> {
    Ok(())
}

#[shareworker::job(concurrency = 4, group = "mailers")]
async fn other_arguments(_job: Job<String>) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
