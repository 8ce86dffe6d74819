//! A worker binary as an application writes it: `#[shareworker::main]` with the app, a state, a
//! layer on one handler, a job enqueued from setup, and handlers from a library crate. Prints
//! what it does on stdout for `tests/app_process.rs`.

// Links the library's handlers; without it they are silently missing from the binary.
use shareworker_test_jobs as _;

use shareworker::{App, Error, Job, JobError, State, broker::Bytes, queue::Message};

/// How the greeting starts.
#[derive(Clone)]
struct Greeting(&'static str);

#[shareworker::job(topic = "app-greetings")]
async fn greet(job: Job<String>, State(greeting): State<Greeting>) -> Result<(), JobError> {
    println!("{} {}", greeting.0, job.payload());
    Ok(())
}

#[shareworker::main]
async fn main(app: &mut App) -> Result<(), Error> {
    println!("handlers: {}", app.handlers().join(","));
    app.state(Greeting("hello"));
    app.layer(
        "greet",
        tower::util::MapRequestLayer::new(|job: Job<Bytes>| {
            println!("layer saw offset {}", job.offset());
            job
        }),
    )?;
    app.queue()
        .send("app-greetings", Message::text("ada"))
        .await?;
    app.queue()
        .send("app-library", Message::text("bob"))
        .await?;
    Ok(())
}
