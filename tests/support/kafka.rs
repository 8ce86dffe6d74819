//! The real Kafka broker for tests: where it is, and harnesses that run the conformance suite and
//! the runtime scenarios on it.
//!
//! `scripts/test.sh` starts a broker with `scripts/kafka.sh` and exports `KAFKA_BOOTSTRAP`. A test
//! that needs the broker calls [`bootstrap`]: without it, the test is skipped with a message when
//! run by hand, and fails when `CI` is set, so a missing broker can never pass unnoticed in CI.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use shareworker::KafkaBroker;
use shareworker::broker::BrokerAdmin;

use crate::conformance::BrokerUnderTest;

/// The lock duration the Kafka tests configure on their groups: Kafka's minimum.
pub const LOCK: Duration = Duration::from_secs(15);

/// `KAFKA_BOOTSTRAP` as `kafka://...`, or `None` (with a message) when it is unset outside CI.
///
/// # Panics
/// When `CI` is set and `KAFKA_BOOTSTRAP` is not: the CI run must start the broker.
pub fn bootstrap() -> Option<String> {
    bootstrap_from("KAFKA_BOOTSTRAP")
}

/// Like [`bootstrap`], from another variable (`KAFKA42_BOOTSTRAP` names the Kafka 4.2 broker).
///
/// # Panics
/// When `CI` is set and the variable is not.
pub fn bootstrap_from(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(b) if !b.trim().is_empty() => {
            let b = b.trim();
            Some(if b.starts_with("kafka://") {
                b.to_owned()
            } else {
                format!("kafka://{b}")
            })
        }
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but {var} is not: this test needs the real Kafka broker; run it through scripts/test.sh, which starts one"
            );
            eprintln!(
                "skipped: set KAFKA_BOOTSTRAP=127.0.0.1:9092 (scripts/kafka.sh start) to run the Kafka tests"
            );
            None
        }
    }
}

/// Connects a new client to the test broker.
///
/// # Panics
/// When the broker does not answer: the test cannot go on.
pub async fn connect(url: &str) -> Arc<dyn BrokerAdmin> {
    match KafkaBroker::connect(url).await {
        Ok(b) => Arc::new(b),
        Err(e) => panic!("cannot connect to the Kafka test broker at {url}: {e} ({e:?})"),
    }
}

/// The conformance harness on the real broker, in real time.
#[derive(Clone, Debug)]
pub struct KafkaHarness {
    url: String,
}

impl KafkaHarness {
    /// A harness on the broker `KAFKA_BOOTSTRAP` names, or `None` when it is unset outside CI.
    pub fn from_env() -> Option<Self> {
        bootstrap().map(|url| Self { url })
    }

    /// A harness on the Kafka 4.2 broker `KAFKA42_BOOTSTRAP` names.
    pub fn from_env_42() -> Option<Self> {
        bootstrap_from("KAFKA42_BOOTSTRAP").map(|url| Self { url })
    }
}

#[async_trait]
impl BrokerUnderTest for KafkaHarness {
    fn name(&self) -> &str {
        "kafka"
    }

    async fn broker(&self) -> anyhow::Result<Arc<dyn BrokerAdmin>> {
        Ok(Arc::new(KafkaBroker::connect(&self.url).await?))
    }

    fn lock_duration(&self) -> Duration {
        LOCK
    }

    fn slack(&self) -> Duration {
        Duration::from_secs(3)
    }

    fn record_lock_limit(&self) -> u32 {
        100
    }

    fn lag_known_before_first_ack(&self) -> bool {
        false
    }
}
