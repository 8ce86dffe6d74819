use std::rc::Rc;

use shareworker::{Job, JobError};

async fn deliver() {}

#[shareworker::job(topic = "emails")]
async fn send_email(_job: Job<String>) -> Result<(), JobError> {
    let counter = Rc::new(0);
    deliver().await;
    let _ = counter;
    Ok(())
}

fn main() {}
