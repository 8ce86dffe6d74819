//! The handler on shareworker's embedded broker, with paused tokio time: no Kafka needed.

use std::sync::{Arc, Mutex};

use shareworker::testing::TestWorker;
use shareworker::{EmbeddedBroker, Worker, worker::Outcome};
use {{crate_name}}::{Store, Task, TaskStore, process};

/// A fake database: what the handler saved.
#[derive(Default)]
struct FakeStore(Mutex<Vec<Task>>);

impl TaskStore for FakeStore {
    fn save(&self, task: &Task) -> Result<(), String> {
        self.0
            .lock()
            .map_err(|_| "poisoned".to_owned())?
            .push(task.clone());
        Ok(())
    }
}

const TOPIC: &str = "{{topic}}";
const GROUP: &str = "{{group}}";

#[tokio::test(start_paused = true)]
async fn tasks_are_processed_and_nameless_ones_dead_lettered() {
    let fake = Arc::new(FakeStore::default());
    let mut worker = TestWorker::new()
        .state(Store(fake.clone()))
        .job(process::definition());
    let task = |id, name: &str| Task {
        id,
        name: name.to_owned(),
    };
    let good = worker
        .enqueue(TOPIC, &task(1, "resize"))
        .await
        .expect("enqueue");
    let bad = worker.enqueue(TOPIC, &task(2, "")).await.expect("enqueue");

    let report = worker.run_until_idle().await.expect("the worker runs");

    let (outcome, attempts) = (
        report.final_outcome(TOPIC, good.partition, good.offset),
        report.attempts(TOPIC, good.partition, good.offset),
    );
    assert_eq!((outcome, attempts), (Some(&Outcome::Accepted), 1));
    // A permanent error goes to the dead-letter topic on the first attempt.
    let (outcome, attempts) = (
        report.final_outcome(TOPIC, bad.partition, bad.offset),
        report.attempts(TOPIC, bad.partition, bad.offset),
    );
    assert_eq!((outcome, attempts), (Some(&Outcome::DeadLettered), 1));
    let dead = report
        .dead_letters(&format!("{TOPIC}.dlq"))
        .expect("the dead-letter topic");
    assert_eq!(dead.len(), 1);
    // The fake saw the good task only.
    let saved = fake.0.lock().expect("lock").clone();
    assert_eq!(saved, [task(1, "resize")]);
}

/// The shipped `shareworker.toml` is valid and, with the code, gives the handler its topic,
/// group and concurrency.
#[tokio::test]
async fn shareworker_toml_configures_the_handler() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/shareworker.toml");
    let worker = Worker::builder()
        .broker(EmbeddedBroker::new())
        .state(Store(Arc::new(FakeStore::default())))
        .job(process::definition())
        .config_file(file)
        .build()
        .await
        .expect("shareworker.toml is a valid configuration");
    let handler = &worker.config().handlers["process"];
    assert_eq!(handler.topic, TOPIC);
    assert_eq!(handler.group, GROUP);
    assert_eq!(handler.concurrency, {{concurrency}});
}
