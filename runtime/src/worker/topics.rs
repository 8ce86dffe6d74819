//! Topics the handlers read that do not exist on the broker.
//!
//! A share group subscribed to a missing topic is given no partitions of it, and Kafka does not
//! create a topic for a share group's subscription: the worker would idle as if its queue were
//! empty. A typo in a topic name looks exactly like that. So once the groups have joined, each
//! topic is looked up; a missing one gets a warning naming its handlers and
//! `shareworker_topic_missing{topic} 1`, and is looked up again every `autoscale.refresh`
//! until it exists (then an info line and `0`). The embedded broker creates a topic when a
//! group joins it, so there this only ever finds topics present.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::broker::Broker;
use crate::metrics::Metrics;

/// Watches `topics` (each with the handlers that read it) until each exists or `stop`.
pub(crate) async fn watch(
    broker: Arc<dyn Broker>,
    metrics: Arc<Metrics>,
    topics: BTreeMap<String, Vec<String>>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut missing = topics;
    let mut warned: BTreeSet<String> = BTreeSet::new();
    loop {
        let mut found = Vec::new();
        for (topic, handlers) in &missing {
            let gauge = metrics.topic_missing(topic);
            match broker.offsets(topic).await {
                Ok(_) => {
                    gauge.set(0);
                    if warned.remove(topic) {
                        info!(topic = %topic, handlers = %crate::logs::Json(handlers),
                            "the topic exists now; its records are fetched");
                    }
                    found.push(topic.clone());
                }
                Err(e) if e.is_unknown_topic() => {
                    gauge.set(1);
                    if warned.insert(topic.clone()) {
                        warn!(topic = %topic, handlers = %crate::logs::Json(handlers), broker = broker.kind(),
                            "a handler reads a topic that does not exist: its group gets no records from it until the topic is created (check the name; Kafka does not create a topic for a share group); shareworker_topic_missing is 1 until it exists");
                    }
                }
                // Not authorized, or the broker does not answer: other paths say so (the
                // fetch, the refresh task); ask again next time.
                Err(e) => debug!(topic = %topic, error = %e, "could not look the topic up"),
            }
        }
        for t in found {
            missing.remove(&t);
        }
        if missing.is_empty() {
            return;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
