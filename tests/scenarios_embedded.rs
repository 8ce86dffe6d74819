//! The runtime scenarios of `support::scenarios` on the embedded broker, under paused tokio
//! time: every sleep, lock and backoff delay is virtual, instant and exact.

use std::sync::Arc;
use std::time::Duration;

use shareworker::EmbeddedBroker;
use shareworker_tests::scenarios::{self, Harness};

/// The embedded broker's lock duration (Kafka's default).
const LOCK: Duration = Duration::from_secs(30);

/// A fresh embedded broker with two partitions per topic, so records of one topic spread.
fn harness(prefix: &str) -> Harness {
    let broker = EmbeddedBroker::builder()
        .default_partitions(2)
        .lock_duration(LOCK)
        .build()
        .expect("valid embedded broker settings");
    Harness::new(Arc::new(broker), LOCK, prefix)
}

#[tokio::test(start_paused = true)]
async fn concurrency_never_exceeds_the_handler_limit() {
    scenarios::concurrency_per_handler(&harness("conc")).await;
}

#[tokio::test(start_paused = true)]
async fn concurrency_never_exceeds_the_global_limit() {
    scenarios::concurrency_global(&harness("glob")).await;
}

#[tokio::test(start_paused = true)]
async fn backoff_delays_grow_exponentially() {
    scenarios::backoff_exponential(&harness("backoff")).await;
}

#[tokio::test(start_paused = true)]
async fn backoff_jitter_shortens_delays_within_bounds() {
    scenarios::backoff_jitter(&harness("jitter")).await;
}

#[tokio::test(start_paused = true)]
async fn retry_after_overrides_the_backoff() {
    scenarios::backoff_retry_after(&harness("retry-after")).await;
}

#[tokio::test(start_paused = true)]
async fn dead_letter_carries_the_original_and_its_headers() {
    scenarios::dead_letter_default_topic(&harness("dl-default")).await;
}

#[tokio::test(start_paused = true)]
async fn dead_letter_goes_to_a_custom_topic() {
    scenarios::dead_letter_custom_topic(&harness("dl-custom")).await;
}

#[tokio::test(start_paused = true)]
async fn dead_letter_off_only_rejects() {
    scenarios::dead_letter_off(&harness("dl-off")).await;
}

#[tokio::test(start_paused = true)]
async fn quick_jobs_then_one_that_waits_does_not_hold_up_the_others() {
    scenarios::quick_jobs_then_one_that_waits(&harness("quick")).await;
}

#[tokio::test(start_paused = true)]
async fn a_task_five_times_the_lock_is_delivered_once() {
    scenarios::long_task_delivered_once(&harness("long")).await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_releases_without_waiting_for_lock_expiry() {
    scenarios::shutdown_releases_everything(&harness("shutdown")).await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_a_job_finish_within_the_grace_period() {
    scenarios::shutdown_lets_jobs_finish(&harness("graceful")).await;
}

#[tokio::test(start_paused = true)]
async fn panics_and_bad_json_do_not_stop_the_worker() {
    scenarios::bad_input_does_not_stop_the_worker(&harness("bad-input")).await;
}

#[tokio::test(start_paused = true)]
async fn a_timeout_is_a_retryable_failure() {
    scenarios::timeout_is_retryable(&harness("timeout")).await;
}

#[tokio::test(start_paused = true)]
async fn max_attempts_is_clamped_to_the_delivery_count_limit() {
    scenarios::max_attempts_clamped_to_delivery_limit(&harness("clamp")).await;
}

#[tokio::test(start_paused = true)]
async fn group_settings_in_the_configuration_are_set_at_start() {
    scenarios::group_settings_from_the_configuration(&harness("gset")).await;
}

#[tokio::test(start_paused = true)]
async fn the_maximum_lease_ends_a_runaway_handler() {
    scenarios::max_lease_ends_runaway_handlers(&harness("lease")).await;
}

#[tokio::test(start_paused = true)]
async fn the_maximum_lease_starts_with_the_handler() {
    scenarios::max_lease_starts_with_the_handler(&harness("lease-queued")).await;
}

#[tokio::test(start_paused = true)]
async fn held_records_are_bounded() {
    scenarios::held_records_are_bounded(&harness("held")).await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_handler_keeps_a_small_prefetch() {
    scenarios::slow_handler_keeps_a_small_prefetch(&harness("slow-prefetch")).await;
}

#[tokio::test(start_paused = true)]
async fn acquires_stay_within_the_record_locks() {
    scenarios::acquires_stay_within_the_record_locks(&harness("locks")).await;
}

#[tokio::test(start_paused = true)]
async fn ack_batches_fit_the_record_locks() {
    scenarios::ack_batches_fit_the_record_locks(&harness("ackfit")).await;
}

#[tokio::test(start_paused = true)]
async fn prefetched_records_keep_their_locks_while_they_wait() {
    scenarios::prefetched_records_keep_their_locks(&harness("prefetch")).await;
}

#[tokio::test(start_paused = true)]
async fn a_lowered_delivery_limit_dead_letters_the_job_in_flight() {
    scenarios::delivery_limit_lowered_in_flight(&harness("lowered")).await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_dead_letter_write_holds_the_record() {
    scenarios::dead_letter_write_failures_hold_the_record(&harness("dl-hold")).await;
}

#[tokio::test(start_paused = true)]
async fn a_dead_letter_write_cut_off_at_shutdown_is_counted() {
    scenarios::dead_letter_cut_off_at_shutdown(&harness("dl-cut")).await;
}

#[tokio::test(start_paused = true)]
async fn a_lock_lost_at_the_last_delivery_is_counted_as_archived() {
    scenarios::lock_lost_at_last_delivery_is_counted(&harness("lost-last")).await;
}

#[tokio::test(start_paused = true)]
async fn the_delivery_limit_is_read_again_on_a_lost_lock() {
    scenarios::delivery_limit_reread_on_lost_lock(&harness("reread")).await;
}

#[tokio::test(start_paused = true)]
async fn the_maximum_lease_on_the_last_attempt_dead_letters() {
    scenarios::max_lease_on_the_last_attempt_dead_letters(&harness("lease-last")).await;
}
