use shareworker::JobError;

#[shareworker::job(topic = "emails")]
async fn takes_a_string(text: String) -> Result<(), JobError> {
    let _ = text;
    Ok(())
}

#[shareworker::job(topic = "emails")]
async fn job_without_payload(_job: shareworker::Job) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
