//! The broker conformance suite against the embedded broker, under paused tokio time.

shareworker_tests::conformance_suite!(
    harness = shareworker_tests::conformance::EmbeddedHarness::new(),
    test = [#[tokio::test(start_paused = true)]],
);
