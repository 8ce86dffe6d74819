//! The runtime scenarios of `support::scenarios` on a real Kafka broker (`KAFKA_BOOTSTRAP`), in
//! real time with generous margins. `scripts/test.sh` starts the broker; under `CI=true` a
//! missing broker fails every scenario.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shareworker_tests::kafka;
use shareworker_tests::scenarios::{self, Harness};

/// A harness on the test broker, or `None` (skip) outside CI when there is none.
async fn harness(name: &str) -> Option<Harness> {
    let url = kafka::bootstrap()?;
    let broker = kafka::connect(&url).await;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let prefix = format!("sc-{name}-{}-{stamp}", std::process::id());
    Some(
        Harness::new(broker, kafka::LOCK, prefix)
            .with_slack(Duration::from_secs(3))
            .with_quiet(Duration::from_secs(3)),
    )
}

macro_rules! on_kafka {
    ($($test:ident => $scenario:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let Some(h) = harness(stringify!($test)).await else { return };
                scenarios::$scenario(&h).await;
            }
        )*
    };
}

on_kafka! {
    concurrency_never_exceeds_the_handler_limit => concurrency_per_handler,
    concurrency_never_exceeds_the_global_limit => concurrency_global,
    backoff_delays_grow_exponentially => backoff_exponential,
    backoff_jitter_shortens_delays_within_bounds => backoff_jitter,
    retry_after_overrides_the_backoff => backoff_retry_after,
    dead_letter_carries_the_original_and_its_headers => dead_letter_default_topic,
    dead_letter_goes_to_a_custom_topic => dead_letter_custom_topic,
    dead_letter_off_only_rejects => dead_letter_off,
    quick_jobs_then_one_that_waits_does_not_hold_up_the_others => quick_jobs_then_one_that_waits,
    a_task_five_times_the_lock_is_delivered_once => long_task_delivered_once,
    prefetched_records_keep_their_locks_while_they_wait => prefetched_records_keep_their_locks,
    a_slow_handler_keeps_a_small_prefetch => slow_handler_keeps_a_small_prefetch,
    acquires_stay_within_the_record_locks => acquires_stay_within_the_record_locks,
    shutdown_releases_without_waiting_for_lock_expiry => shutdown_releases_everything,
    shutdown_lets_a_job_finish_within_the_grace_period => shutdown_lets_jobs_finish,
    panics_and_bad_json_do_not_stop_the_worker => bad_input_does_not_stop_the_worker,
    a_timeout_is_a_retryable_failure => timeout_is_retryable,
    max_attempts_is_clamped_to_the_delivery_count_limit => max_attempts_clamped_to_delivery_limit,
    group_settings_in_the_configuration_are_set_at_start => group_settings_from_the_configuration,
    the_maximum_lease_ends_a_runaway_handler => max_lease_ends_runaway_handlers,
    the_maximum_lease_starts_with_the_handler => max_lease_starts_with_the_handler,
    held_records_are_bounded => held_records_are_bounded,
    a_lowered_delivery_limit_dead_letters_the_job_in_flight => delivery_limit_lowered_in_flight,
    a_failing_dead_letter_write_holds_the_record => dead_letter_write_failures_hold_the_record,
    a_dead_letter_write_cut_off_at_shutdown_is_counted => dead_letter_cut_off_at_shutdown,
    a_lock_lost_at_the_last_delivery_is_counted_as_archived => lock_lost_at_last_delivery_is_counted,
    the_delivery_limit_is_read_again_on_a_lost_lock => delivery_limit_reread_on_lost_lock,
    the_maximum_lease_on_the_last_attempt_dead_letters => max_lease_on_the_last_attempt_dead_letters,
}
