use shareworker::{Job, JobError, State};

#[derive(Clone)]
struct Db;

// Arguments after the job must be `State<T>`: anything else is reported at that argument.
#[shareworker::job(topic = "emails")]
async fn send(_job: Job<String>, _db: State<Db>, _retries: u32) -> Result<(), JobError> {
    Ok(())
}

// A state must be `Clone + Send + Sync`.
#[shareworker::job(topic = "emails")]
async fn not_sync(_job: Job<String>, _cell: State<std::cell::Cell<u8>>) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
