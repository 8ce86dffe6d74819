//! A member of a share group on the embedded broker: it acquires and settles through the
//! broker's state, one share partition ([`SharePartition`]) at a time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::log::Topic;
use super::partition::{Settled, SharePartition};
use super::{EmbeddedBroker, Group, State};
use crate::Error;
use crate::broker::{AckKind, Delivery, Member, RecordId, SettleResult, StartFrom};

/// A member of a share group on an [`EmbeddedBroker`].
pub(super) struct EmbeddedMember {
    pub(super) broker: EmbeddedBroker,
    pub(super) group: String,
    pub(super) id: u64,
    pub(super) member_id: String,
    pub(super) topics: Vec<Arc<str>>,
    pub(super) rotation: AtomicU64,
}

impl EmbeddedMember {
    /// This member's group, or a closed error when the member has left it.
    fn my_group<'g>(&self, groups: &'g mut HashMap<String, Group>) -> Result<&'g mut Group, Error> {
        let g = groups
            .get_mut(&self.group)
            .ok_or_else(|| Error::closed(format!("group `{}` no longer exists", self.group)))?;
        if !g.members.contains_key(&self.id) {
            return Err(Error::closed(format!(
                "member {} has left group `{}`",
                self.member_id, self.group
            )));
        }
        Ok(g)
    }

    /// Acquires what is available now; returns the records and, when there are none, the next
    /// instant at which a lock expires.
    fn try_acquire(&self, max: usize) -> Result<(Vec<Delivery>, Option<Instant>), Error> {
        let now = Instant::now();
        let mut out = Vec::new();
        let mut next_expiry: Option<Instant> = None;
        let mut advanced: Vec<(Arc<str>, i32)> = Vec::new();
        let mut guard = self.broker.lock();
        let State { topics, groups } = &mut *guard;
        let g = self.my_group(groups)?;
        let limits = g.settings.limits;
        let start_from = g.settings.start_from;
        // Every (topic, partition) this member reads, starting at a rotating point for fairness.
        let mut slots: Vec<(&Topic, usize)> = Vec::new();
        for name in &self.topics {
            if let Some(t) = topics.get(name) {
                for p in 0..t.partitions.len() {
                    slots.push((t, p));
                }
            }
        }
        if slots.is_empty() {
            return Ok((out, None));
        }
        let first = self.rotation.fetch_add(1, Ordering::Relaxed) as usize % slots.len();
        for k in 0..slots.len() {
            if out.len() >= max {
                break;
            }
            let (t, p) = slots[(first + k) % slots.len()];
            let log = &t.partitions[p];
            let sp = g
                .partitions
                .entry((t.name.clone(), p as i32))
                .or_insert_with(|| {
                    SharePartition::new(match start_from {
                        StartFrom::Latest => log.end(),
                        StartFrom::Earliest => log.base,
                    })
                });
            if sp.expire(now, limits.delivery_count_limit) {
                advanced.push((t.name.clone(), p as i32));
            }
            let room = max - out.len();
            sp.acquire(
                log, &t.name, p as i32, self.id, now, &limits, room, &mut out,
            );
            if let Some(t) = sp.next_expiry {
                next_expiry = Some(next_expiry.map_or(t, |n: Instant| n.min(t)));
            }
        }
        for (topic, p) in &advanced {
            guard.trim(topic, *p, &self.broker.inner);
        }
        Ok((out, next_expiry))
    }
}

#[async_trait]
impl Member for EmbeddedMember {
    async fn acquire(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, Error> {
        if max == 0 {
            return Ok(Vec::new());
        }
        // What is there now needs no wake-up registration.
        let (records, _) = self.try_acquire(max)?;
        if !records.is_empty() {
            return Ok(records);
        }
        let give_up = Instant::now() + wait;
        loop {
            // Registered before looking, so a record produced in between wakes this wait.
            let notified = self.broker.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (records, next_expiry) = self.try_acquire(max)?;
            if !records.is_empty() {
                return Ok(records);
            }
            let now = Instant::now();
            if now >= give_up {
                return Ok(records);
            }
            let wake = next_expiry.map_or(give_up, |t| t.min(give_up));
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn settle(&self, acks: &[(RecordId, AckKind)]) -> Result<Vec<SettleResult>, Error> {
        let now = Instant::now();
        let mut results = Vec::with_capacity(acks.len());
        let mut freed = false;
        {
            let mut guard = self.broker.lock();
            let g = self.my_group(&mut guard.groups)?;
            let limits = g.settings.limits;
            // The partitions whose share start offset may have moved, to trim their logs.
            let mut touched: Vec<(Arc<str>, i32)> = Vec::new();
            // The partition of the previous ack: runs of acks on one partition look it up once.
            let mut current: Option<(usize, &mut SharePartition)> = None;
            for (id, kind) in acks.iter().map(|(i, k)| (i, *k)) {
                // Topics compare by pointer first: a record's id shares its topic's name.
                let is = |(t, p): &(Arc<str>, i32)| {
                    *p == id.partition && (Arc::ptr_eq(t, &id.topic) || **t == *id.topic)
                };
                let same = current.as_ref().is_some_and(|(k, _)| is(&touched[*k]));
                if !same {
                    current = None;
                    let key = (id.topic.clone(), id.partition);
                    if let Some(sp) = g.partitions.get_mut(&key) {
                        let k = match touched.iter().position(is) {
                            Some(k) => k,
                            None => {
                                touched.push(key);
                                touched.len() - 1
                            }
                        };
                        current = Some((k, sp));
                    }
                }
                let Some((_, sp)) = current.as_mut() else {
                    results.push(Err(Error::lock_lost(format!(
                        "{id}: this group has never acquired from that partition"
                    ))));
                    continue;
                };
                results.push(match sp.settle(id.offset, kind, self.id, now, &limits) {
                    Settled::Done { freed: f } => {
                        freed |= f;
                        Ok(())
                    }
                    Settled::NotInWindow => Err(Error::lock_lost(format!(
                        "{id}: not acquired (already settled, expired or never delivered)"
                    ))),
                    Settled::NotHeld => Err(Error::lock_lost(format!(
                        "{id}: not acquired by member {} (expired, settled or owned by another member)",
                        self.member_id
                    ))),
                });
            }
            for (topic, p) in &touched {
                guard.trim(topic, *p, &self.broker.inner);
            }
        }
        if freed {
            self.broker.inner.notify.notify_waiters();
        }
        Ok(results)
    }

    async fn leave(&self) -> Result<(), Error> {
        {
            let mut guard = self.broker.lock();
            if let Some(g) = guard.groups.get_mut(&self.group) {
                g.members.remove(&self.id);
                let limit = g.settings.limits.delivery_count_limit;
                let keys: Vec<(Arc<str>, i32)> = g.partitions.keys().cloned().collect();
                for sp in g.partitions.values_mut() {
                    sp.release_member(self.id, limit);
                }
                for (topic, p) in &keys {
                    guard.trim(topic, *p, &self.broker.inner);
                }
            }
        }
        self.broker.inner.notify.notify_waiters();
        Ok(())
    }

    fn member_id(&self) -> &str {
        &self.member_id
    }
}
