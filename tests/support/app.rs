//! Scenarios of the application path on any [`Broker`]: handler state, handlers chosen per
//! process, and tower layers added from the [`App`] before it runs. Written once, run on the
//! embedded broker (`tests/app_embedded.rs`, paused time) and on Kafka (`tests/app_kafka.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shareworker::{
    App, Config, Job, JobDefinition, JobError, State, Worker,
    broker::{Broker, GroupConfig, OutgoingRecord, StartFrom},
    worker::WorkerBuilder,
};
use tokio::time::{Instant, sleep};

/// Where the scenarios run: a broker, names unique to the run, and how long to wait for jobs.
#[derive(Clone)]
pub struct AppHarness {
    /// The broker under test.
    pub broker: Arc<dyn Broker>,
    /// Prepended to every topic and group.
    pub prefix: String,
    /// How long jobs may take to be handled before a scenario gives up.
    pub patience: Duration,
}

impl AppHarness {
    fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.prefix)
    }

    /// `topic` with `payloads` as raw text, read by `group` from the start.
    async fn jobs(&self, group: &str, topic: &str, payloads: &[&str]) {
        self.broker
            .create_topic(topic, 1)
            .await
            .unwrap_or_else(|e| panic!("creating `{topic}` failed: {e}"));
        self.broker
            .configure_group(
                group,
                &GroupConfig::default().start_from(StartFrom::Earliest),
            )
            .await
            .unwrap_or_else(|e| panic!("configuring group `{group}` failed: {e}"));
        let records = payloads
            .iter()
            .map(|p| OutgoingRecord::new(p.as_bytes().to_vec()))
            .collect();
        self.broker
            .produce(topic, records)
            .await
            .unwrap_or_else(|e| panic!("producing to `{topic}` failed: {e}"));
    }

    /// A builder on the harness's broker: code configuration only, no signals, no HTTP.
    fn builder(&self) -> WorkerBuilder {
        let mut config = Config::default();
        config.http.enabled = false;
        Worker::builder()
            .broker_arc(self.broker.clone())
            .config(config)
            .code_config_only()
            .without_signal_handling()
    }

    /// Runs `worker` until `done` holds (or [`AppHarness::patience`] is over), then stops it.
    async fn run_until(&self, worker: Worker, what: &str, done: impl Fn() -> bool) {
        let stop = worker.shutdown_handle();
        let running = tokio::spawn(worker.run());
        let deadline = Instant::now() + self.patience;
        while !done() && Instant::now() < deadline {
            sleep(Duration::from_millis(50)).await;
        }
        stop.shutdown();
        let summary = running
            .await
            .expect("the worker task")
            .expect("the worker ran");
        assert!(
            done(),
            "{what}: not done within {:?}: {summary:?}",
            self.patience
        );
    }
}

/// A fake database: what handlers stored.
#[derive(Clone, Default)]
struct Store(Arc<Mutex<Vec<String>>>);

impl Store {
    fn rows(&self) -> Vec<String> {
        let mut rows = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        rows.sort();
        rows
    }
}

/// A second state of another type.
#[derive(Clone)]
struct Prefix(&'static str);

async fn store(
    job: Job<String>,
    State(store): State<Store>,
    State(prefix): State<Prefix>,
) -> Result<(), JobError> {
    store
        .0
        .lock()
        .map_err(|_| JobError::retry("poisoned"))?
        .push(format!("{}{}", prefix.0, job.payload()));
    Ok(())
}

/// Two states of different types reach the handler for every job; a handler asking for a
/// state nobody registered stops the worker at start, naming the handler and the type.
pub async fn state_reaches_handlers(h: &AppHarness) {
    let (topic, group) = (h.name("state"), h.name("state-g"));
    h.jobs(&group, &topic, &["a", "b", "c"]).await;
    let def = || JobDefinition::handler("store", &topic, store).group(&group);

    // Tried: the Prefix state left out.
    let e = h
        .builder()
        .state(Store::default())
        .job(def())
        .build()
        .await
        .err()
        .unwrap_or_else(|| panic!("a missing state is refused at start"));
    let text = e.to_string();
    assert!(text.contains("handler `store`"), "{text}");
    assert!(text.contains("Prefix"), "the missing type is named: {text}");

    let rows = Store::default();
    let worker = h
        .builder()
        .state(rows.clone())
        .state(Prefix("row:"))
        .job(def())
        .build()
        .await
        .expect("worker");
    h.run_until(worker, "three jobs stored", || rows.rows().len() >= 3)
        .await;
    assert_eq!(rows.rows(), ["row:a", "row:b", "row:c"]);
}

fn counting(name: &str, topic: &str, group: &str, count: Arc<AtomicUsize>) -> JobDefinition {
    JobDefinition::new(name, topic, move |_job: Job<String>| {
        let count = count.clone();
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            Ok::<(), JobError>(())
        }
    })
    .group(group)
}

/// `only_handlers` runs the named handlers and no other; a name the binary lacks is refused
/// with the names it has; settings of a handler not run are still accepted.
pub async fn only_selected_handlers_run(h: &AppHarness) {
    let (ta, tb) = (h.name("sel-a"), h.name("sel-b"));
    let (ga, gb) = (h.name("sel-a-g"), h.name("sel-b-g"));
    h.jobs(&ga, &ta, &["1", "2"]).await;
    h.jobs(&gb, &tb, &["1", "2"]).await;
    let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let both = || {
        h.builder()
            .job(counting("a", &ta, &ga, a.clone()))
            .job(counting("b", &tb, &gb, b.clone()))
    };

    // Tried: a name that is no handler.
    let e = both()
        .only_handlers(["a", "nope"])
        .build()
        .await
        .err()
        .unwrap_or_else(|| panic!("an unknown handler is refused"));
    assert!(e.to_string().contains("`nope`"), "{e}");
    assert!(e.to_string().contains("a, b"), "the known names: {e}");

    // Settings for `b`, which this process does not run, are fine.
    let mut config = Config::default();
    config.http.enabled = false;
    let figment = figment::Figment::from(figment::providers::Serialized::defaults(&config))
        .merge(figment::providers::Serialized::default(
            "handlers.b.concurrency",
            3,
        ))
        .merge(figment::providers::Serialized::default(
            "handlers_enabled",
            "a",
        ));
    let worker = both().figment(figment).build().await.expect("worker");
    h.run_until(worker, "handler a ran", || a.load(Ordering::SeqCst) >= 2)
        .await;
    assert_eq!(
        b.load(Ordering::SeqCst),
        0,
        "handler b is not selected and must not run"
    );
}

/// A layer added to one handler through the [`App`] wraps that handler only; a layer for a
/// name no handler has is refused with the names.
pub async fn a_layer_from_the_app_wraps_one_handler(h: &AppHarness) {
    let (ta, tb) = (h.name("layer-a"), h.name("layer-b"));
    let (ga, gb) = (h.name("layer-a-g"), h.name("layer-b-g"));
    h.jobs(&ga, &ta, &["1", "2", "3"]).await;
    h.jobs(&gb, &tb, &["1", "2"]).await;
    let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let builder = h
        .builder()
        .job(counting("a", &ta, &ga, a.clone()))
        .job(counting("b", &tb, &gb, b.clone()));
    let mut app = App::new(builder).await.expect("app");
    assert_eq!(app.handlers(), ["a", "b"]);

    let e = app
        .layer("nope", tower::layer::util::Identity::new())
        .err()
        .unwrap_or_else(|| panic!("refused"));
    assert!(e.to_string().contains("no handler is named `nope`"), "{e}");
    assert!(e.to_string().contains("a, b"), "{e}");

    let wrapped = Arc::new(AtomicUsize::new(0));
    let w = wrapped.clone();
    app.layer(
        "a",
        tower::util::MapRequestLayer::new(move |job: Job<shareworker::broker::Bytes>| {
            w.fetch_add(1, Ordering::SeqCst);
            job
        }),
    )
    .expect("layer on a");
    // The app's queue is on the worker's broker.
    app.queue()
        .send(&ta, shareworker::queue::Message::text("4"))
        .await
        .expect("enqueue from the app");
    let worker = app.build().await.expect("worker");
    h.run_until(worker, "both handlers ran", || {
        a.load(Ordering::SeqCst) >= 4 && b.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert_eq!(
        wrapped.load(Ordering::SeqCst),
        a.load(Ordering::SeqCst),
        "the layer saw every job of `a` and none of `b`"
    );
}
