use shareworker::Job;

// Not an `std::error::Error`, so it does not convert into `JobError`.
#[derive(Debug)]
struct MyError;

#[shareworker::job(topic = "emails")]
async fn send_email(_job: Job<String>) -> Result<(), MyError> {
    Err(MyError)
}

fn main() {}
