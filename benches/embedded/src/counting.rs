//! A `Broker` wrapper that counts what the worker asks of its share-group member: acquire calls
//! (and the records they bring, and how long they take), settle calls (and their
//! acknowledgements). It adds one boxed future per call, nothing per record.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use shareworker::broker::{
    AckKind, BrokerAdmin, Delivery, ErrorCount, GroupDescription, GroupLimits, Member,
    PartitionOffsets, Produced, RecordId, SettleResult, TopicLag,
};
use shareworker::{
    Error,
    broker::{Broker, GroupConfig, OutgoingRecord},
};

#[derive(Default)]
pub(crate) struct Stats {
    acquires: AtomicU64,
    /// Acquire calls that returned nothing (the wait ran out).
    empty_acquires: AtomicU64,
    acquired: AtomicU64,
    /// The `max` asked for, summed.
    asked: AtomicU64,
    acquire_ns: AtomicU64,
    settles: AtomicU64,
    acks: AtomicU64,
    settle_ns: AtomicU64,
    /// Settle calls carrying at least one RENEW, and the RENEWs.
    renew_settles: AtomicU64,
    renews: AtomicU64,
    slow_acquires: AtomicU64,
    slow_acquire_ns: AtomicU64,
    slow_settles: AtomicU64,
    max_settle_ns: AtomicU64,
}

/// An acquire or settle call taking at least this long is counted as slow.
const SLOW: Duration = Duration::from_millis(100);

impl Stats {
    pub(crate) fn summary(&self) -> String {
        let a = self.acquires.load(Ordering::Relaxed);
        let got = self.acquired.load(Ordering::Relaxed);
        let s = self.settles.load(Ordering::Relaxed);
        let acks = self.acks.load(Ordering::Relaxed);
        let per = |n: u64, d: u64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
        format!(
            "acquire calls {a} ({} empty), {got} records ({:.1}/call, asked {:.1}/call), \
             {:.2} ms/call; settle calls {s}, {acks} acks ({:.1}/call), {:.2} ms/call; \
             settle calls with RENEW {}, {} RENEWs; acquire calls taking {SLOW:?} or more: {} \
             ({:.2} s in all); settle calls taking {SLOW:?} or more: {} (longest {:.1} ms)",
            self.empty_acquires.load(Ordering::Relaxed),
            per(got, a),
            per(self.asked.load(Ordering::Relaxed), a),
            per(self.acquire_ns.load(Ordering::Relaxed), a) / 1e6,
            per(acks, s),
            per(self.settle_ns.load(Ordering::Relaxed), s) / 1e6,
            self.renew_settles.load(Ordering::Relaxed),
            self.renews.load(Ordering::Relaxed),
            self.slow_acquires.load(Ordering::Relaxed),
            self.slow_acquire_ns.load(Ordering::Relaxed) as f64 / 1e9,
            self.slow_settles.load(Ordering::Relaxed),
            self.max_settle_ns.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }

    /// `(acquire calls, records per acquire, settle calls, acks per settle)`.
    pub(crate) fn numbers(&self) -> (u64, f64, u64, f64) {
        let a = self.acquires.load(Ordering::Relaxed);
        let s = self.settles.load(Ordering::Relaxed);
        let per = |n: u64, d: u64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
        (
            a,
            per(self.acquired.load(Ordering::Relaxed), a),
            s,
            per(self.acks.load(Ordering::Relaxed), s),
        )
    }
}

#[derive(Clone)]
pub(crate) struct Counting<B> {
    inner: B,
    pub(crate) stats: Arc<Stats>,
}

impl<B> Counting<B> {
    pub(crate) fn new(inner: B) -> Self {
        Self {
            inner,
            stats: Arc::new(Stats::default()),
        }
    }
}

struct CountingMember {
    inner: Box<dyn Member>,
    stats: Arc<Stats>,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[async_trait]
impl Member for CountingMember {
    async fn acquire(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, Error> {
        let t = Instant::now();
        let r = self.inner.acquire(max, wait).await;
        let s = &self.stats;
        s.acquires.fetch_add(1, Ordering::Relaxed);
        s.asked.fetch_add(max as u64, Ordering::Relaxed);
        let took = t.elapsed();
        s.acquire_ns.fetch_add(ns(took), Ordering::Relaxed);
        if took >= SLOW {
            s.slow_acquires.fetch_add(1, Ordering::Relaxed);
            s.slow_acquire_ns.fetch_add(ns(took), Ordering::Relaxed);
        }
        if let Ok(v) = &r {
            s.acquired.fetch_add(v.len() as u64, Ordering::Relaxed);
            if v.is_empty() {
                s.empty_acquires.fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }

    async fn settle(&self, acks: &[(RecordId, AckKind)]) -> Result<Vec<SettleResult>, Error> {
        let t = Instant::now();
        let r = self.inner.settle(acks).await;
        let s = &self.stats;
        s.settles.fetch_add(1, Ordering::Relaxed);
        s.acks.fetch_add(acks.len() as u64, Ordering::Relaxed);
        let renews = acks.iter().filter(|(_, k)| *k == AckKind::Renew).count() as u64;
        if renews > 0 {
            s.renew_settles.fetch_add(1, Ordering::Relaxed);
            s.renews.fetch_add(renews, Ordering::Relaxed);
        }
        let took = t.elapsed();
        s.settle_ns.fetch_add(ns(took), Ordering::Relaxed);
        if took >= SLOW {
            s.slow_settles.fetch_add(1, Ordering::Relaxed);
        }
        s.max_settle_ns.fetch_max(ns(took), Ordering::Relaxed);
        r
    }

    async fn leave(&self) -> Result<(), Error> {
        self.inner.leave().await
    }

    fn member_id(&self) -> &str {
        self.inner.member_id()
    }
}

#[async_trait]
impl<B: Broker + Clone> Broker for Counting<B> {
    async fn join(&self, group: &str, topics: &[String]) -> Result<Box<dyn Member>, Error> {
        let inner = self.inner.join(group, topics).await?;
        Ok(Box::new(CountingMember {
            inner,
            stats: self.stats.clone(),
        }))
    }

    async fn produce(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<Produced>, Error> {
        self.inner.produce(topic, records).await
    }

    async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        self.inner.create_topic(topic, partitions).await
    }

    async fn lag(&self, group: &str) -> Result<Vec<TopicLag>, Error> {
        self.inner.lag(group).await
    }

    async fn group_limits(&self, group: &str) -> Result<GroupLimits, Error> {
        self.inner.group_limits(group).await
    }

    async fn configure_group(&self, group: &str, config: &GroupConfig) -> Result<(), Error> {
        self.inner.configure_group(group, config).await
    }

    async fn end_offsets(&self, topics: &[String]) -> Result<Vec<(String, u64)>, Error> {
        self.inner.end_offsets(topics).await
    }

    async fn broker_dead_letter(&self, group: &str) -> Result<Option<String>, Error> {
        self.inner.broker_dead_letter(group).await
    }

    async fn prepare_broker_dead_letter(&self, topic: &str) -> Result<(), Error> {
        self.inner.prepare_broker_dead_letter(topic).await
    }

    fn error_counts(&self) -> Vec<ErrorCount> {
        self.inner.error_counts()
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn offsets(&self, topic: &str) -> Result<Vec<PartitionOffsets>, Error> {
        self.inner.offsets(topic).await
    }
}

/// The operator views pass straight through (the worker reads group configs at start).
#[async_trait]
impl<B: BrokerAdmin + Clone> BrokerAdmin for Counting<B> {
    async fn describe_group(&self, group: &str) -> Result<GroupDescription, Error> {
        self.inner.describe_group(group).await
    }

    async fn list_groups(&self) -> Result<Vec<String>, Error> {
        self.inner.list_groups().await
    }

    async fn group_configs(&self, group: &str) -> Result<Vec<(String, String)>, Error> {
        self.inner.group_configs(group).await
    }

    async fn set_group_configs(
        &self,
        group: &str,
        configs: &[(String, String)],
    ) -> Result<(), Error> {
        self.inner.set_group_configs(group, configs).await
    }

    async fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max: usize,
    ) -> Result<Vec<Delivery>, Error> {
        self.inner.read(topic, partition, offset, max).await
    }
}
