//! The broker conformance suite against a real Kafka broker (`KAFKA_BOOTSTRAP`), in real time.
//! `scripts/test.sh` starts the broker; under `CI=true` a missing broker fails every case.

shareworker_tests::conformance_suite!(
    harness = match shareworker_tests::kafka::KafkaHarness::from_env() {
        Some(h) => h,
        None => return,
    },
    test = [#[tokio::test(flavor = "multi_thread", worker_threads = 2)]],
);
