//! The application-path scenarios of `support::app` on the embedded broker, in paused time.

use std::sync::Arc;
use std::time::Duration;

use shareworker::EmbeddedBroker;
use shareworker_tests::app::{self, AppHarness};

fn harness(prefix: &str) -> AppHarness {
    AppHarness {
        broker: Arc::new(EmbeddedBroker::new()),
        prefix: prefix.to_owned(),
        patience: Duration::from_secs(60),
    }
}

#[tokio::test(start_paused = true)]
async fn state_reaches_handlers() {
    app::state_reaches_handlers(&harness("state")).await;
}

#[tokio::test(start_paused = true)]
async fn only_selected_handlers_run() {
    app::only_selected_handlers_run(&harness("select")).await;
}

#[tokio::test(start_paused = true)]
async fn a_layer_from_the_app_wraps_one_handler() {
    app::a_layer_from_the_app_wraps_one_handler(&harness("layer")).await;
}
