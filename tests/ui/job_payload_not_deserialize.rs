use shareworker::{Job, JobError};

struct Email {
    to: String,
}

#[shareworker::job(topic = "emails")]
async fn send_email(job: Job<Email>) -> Result<(), JobError> {
    let _to = &job.payload().to;
    Ok(())
}

fn main() {}
