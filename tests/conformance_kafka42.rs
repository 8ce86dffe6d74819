//! The broker conformance suite against the newest Kafka 4.2 release (`KAFKA42_BOOTSTRAP`),
//! which `scripts/test.sh` starts beside the 4.4 broker.
//!
//! Left out, because Kafka 4.2 refuses the group configs they set (they arrived in 4.3,
//! KIP-1240; 4.2 answers "Unknown group config name"): `delivery_count_limit_archives`
//! (`share.delivery.count.limit`) and `max_record_locks` (`share.partition.max.record.locks`).
//! `bad_input_is_refused` runs, and the admin tests check 4.2's refusal.

shareworker_tests::conformance_suite!(
    harness = match shareworker_tests::kafka::KafkaHarness::from_env_42() {
        Some(h) => h,
        None => return,
    },
    test = [#[tokio::test(flavor = "multi_thread", worker_threads = 2)]],
    cases = [
        one_member_at_a_time_per_record,
        accept_is_final,
        release_redelivers_with_count_plus_one,
        reject_is_final,
        lock_expiry_redelivers,
        renew_keeps_the_lock,
        lag_counts_in_flight_per_partition,
        members_share_partitions,
        start_position,
        leave_releases,
        acquire_respects_max_and_wait,
        settle_answers_in_order,
        produce_routes_records,
        bad_input_is_refused,
        operator_views,
    ],
);
