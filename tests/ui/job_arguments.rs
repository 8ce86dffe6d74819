use shareworker::{Job, JobError, State};

#[shareworker::job(topic = "emails")]
async fn no_argument() -> Result<(), JobError> {
    Ok(())
}

#[shareworker::job(topic = "emails")]
async fn nine_states(
    _job: Job<String>,
    _a: State<u8>,
    _b: State<u16>,
    _c: State<u32>,
    _d: State<u64>,
    _e: State<i8>,
    _f: State<i16>,
    _g: State<i32>,
    _h: State<i64>,
    _i: State<bool>,
) -> Result<(), JobError> {
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
