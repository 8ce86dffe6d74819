use shareworker::{Job, JobError};

#[shareworker::job(topic = "emails")]
async fn no_argument() -> Result<(), JobError> {
    Ok(())
}

#[shareworker::job(topic = "emails")]
async fn two_arguments(_job: Job<String>, _retries: u32, _extra: bool) -> Result<(), JobError> {
    Ok(())
}

struct Mailer;

impl Mailer {
    #[shareworker::job(topic = "emails")]
    async fn method(&self, _job: Job<String>) -> Result<(), JobError> {
        Ok(())
    }
}

#[shareworker::job(topic = "emails")]
async fn generic<T: serde::de::DeserializeOwned>(_job: Job<T>) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
