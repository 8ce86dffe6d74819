//! The application-path scenarios of `support::app` on a real Kafka broker (`KAFKA_BOOTSTRAP`),
//! in real time. Under `CI=true` a missing broker fails every scenario.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shareworker_tests::app::{self, AppHarness};
use shareworker_tests::kafka;

async fn harness(name: &str) -> Option<AppHarness> {
    let url = kafka::bootstrap()?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Some(AppHarness {
        broker: kafka::connect(&url).await,
        prefix: format!("app-{name}-{}-{stamp}", std::process::id()),
        patience: Duration::from_secs(60),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_reaches_handlers() {
    let Some(h) = harness("state").await else {
        return;
    };
    app::state_reaches_handlers(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_selected_handlers_run() {
    let Some(h) = harness("select").await else {
        return;
    };
    app::only_selected_handlers_run(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_from_the_app_wraps_one_handler() {
    let Some(h) = harness("layer").await else {
        return;
    };
    app::a_layer_from_the_app_wraps_one_handler(&h).await;
}
