//! One partition as one share group sees it: the share-partition state machine of KIP-932.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::time::Instant;

use super::log::{Log, to_delivery};
use crate::broker::{AckKind, Delivery, GroupLimits};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RecState {
    Available {
        count: u16,
    },
    Acquired {
        count: u16,
        member: u64,
        deadline: Instant,
    },
    Acknowledged,
    Archived,
}

impl RecState {
    pub(super) fn is_complete(self) -> bool {
        matches!(self, RecState::Acknowledged | RecState::Archived)
    }
}

/// One partition as one share group sees it.
pub(super) struct SharePartition {
    /// Share start offset: every record below it is delivery-complete.
    pub(super) start: i64,
    /// States of offsets `start..start + states.len()`; offsets past that were never acquired.
    pub(super) states: VecDeque<RecState>,
    pub(super) acquired: u32,
    pub(super) available: u32,
    /// No lock in this partition expires before this instant.
    pub(super) next_expiry: Option<Instant>,
}

impl SharePartition {
    pub(super) fn new(start: i64) -> Self {
        Self {
            start,
            states: VecDeque::new(),
            acquired: 0,
            available: 0,
            next_expiry: None,
        }
    }

    pub(super) fn end(&self) -> i64 {
        self.start + self.states.len() as i64
    }

    /// The record's lock ended without an acknowledgement: available again, or archived at the
    /// delivery count limit.
    pub(super) fn give_back(&mut self, index: usize, count: u16, limit: u16) {
        self.acquired -= 1;
        if count >= limit {
            self.states[index] = RecState::Archived;
        } else {
            self.states[index] = RecState::Available { count };
            self.available += 1;
        }
    }

    pub(super) fn expire(&mut self, now: Instant, limit: u16) -> bool {
        match self.next_expiry {
            Some(t) if t <= now => {}
            _ => return false,
        }
        let mut next: Option<Instant> = None;
        let mut expired = false;
        for i in 0..self.states.len() {
            if let RecState::Acquired {
                count, deadline, ..
            } = self.states[i]
            {
                if deadline <= now {
                    self.give_back(i, count, limit);
                    expired = true;
                } else {
                    next = Some(next.map_or(deadline, |n: Instant| n.min(deadline)));
                }
            }
        }
        self.next_expiry = next;
        self.advance();
        expired
    }

    pub(super) fn advance(&mut self) {
        while let Some(front) = self.states.front() {
            if !front.is_complete() {
                break;
            }
            self.states.pop_front();
            self.start += 1;
        }
    }

    /// Acquires up to `max` records of `log` for `member`, under the group's record lock limit:
    /// released or expired records inside the window first, then records never delivered, from
    /// the end of the window. Returns how many it added to `out`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn acquire(
        &mut self,
        log: &Log,
        topic: &Arc<str>,
        partition: i32,
        member: u64,
        now: Instant,
        limits: &GroupLimits,
        max: usize,
        out: &mut Vec<Delivery>,
    ) -> usize {
        let deadline = now + limits.lock_duration;
        let mut budget = max.min(limits.max_record_locks.saturating_sub(self.acquired) as usize);
        let before = out.len();
        let new = usize::try_from(log.end() - self.end()).unwrap_or(0);
        out.reserve(budget.min(new.saturating_add(self.available as usize)));
        // Redeliveries first: released or expired records inside the window.
        if self.available > 0 && budget > 0 {
            for i in 0..self.states.len() {
                if budget == 0 || self.available == 0 {
                    break;
                }
                let offset = self.start + i as i64;
                if let RecState::Available { count } = self.states[i]
                    && let Some(record) = log.get(offset)
                {
                    let count = count.saturating_add(1);
                    self.states[i] = RecState::Acquired {
                        count,
                        member,
                        deadline,
                    };
                    self.available -= 1;
                    self.acquired += 1;
                    budget -= 1;
                    out.push(to_delivery(
                        topic,
                        partition,
                        offset,
                        record,
                        count,
                        limits.lock_duration,
                    ));
                }
            }
        }
        // Then records never delivered, from the end of the window.
        while budget > 0 && self.end() < log.end() {
            let offset = self.end();
            let Some(record) = log.get(offset) else {
                break;
            };
            self.states.push_back(RecState::Acquired {
                count: 1,
                member,
                deadline,
            });
            self.acquired += 1;
            budget -= 1;
            out.push(to_delivery(
                topic,
                partition,
                offset,
                record,
                1,
                limits.lock_duration,
            ));
        }
        if self.acquired > 0 {
            self.next_expiry = Some(self.next_expiry.map_or(deadline, |n| n.min(deadline)));
        }
        out.len() - before
    }

    /// Settles the record at `offset` for `member` (who must hold its lock), after expiring the
    /// locks past their deadline.
    pub(super) fn settle(
        &mut self,
        offset: i64,
        kind: AckKind,
        member: u64,
        now: Instant,
        limits: &GroupLimits,
    ) -> Settled {
        self.expire(now, limits.delivery_count_limit);
        if offset < self.start || offset >= self.end() {
            return Settled::NotInWindow;
        }
        let i = (offset - self.start) as usize;
        let RecState::Acquired {
            count,
            member: owner,
            ..
        } = self.states[i]
        else {
            return Settled::NotHeld;
        };
        if owner != member {
            return Settled::NotHeld;
        }
        let mut freed = false;
        match kind {
            AckKind::Accept => {
                self.states[i] = RecState::Acknowledged;
                self.acquired -= 1;
            }
            AckKind::Reject => {
                self.states[i] = RecState::Archived;
                self.acquired -= 1;
            }
            AckKind::Release => {
                self.give_back(i, count, limits.delivery_count_limit);
                freed = true;
            }
            AckKind::Renew => {
                self.states[i] = RecState::Acquired {
                    count,
                    member,
                    deadline: now + limits.lock_duration,
                };
            }
        }
        if kind != AckKind::Renew {
            freed |= self.acquired + 1 == limits.max_record_locks;
            self.advance();
        }
        Settled::Done { freed }
    }

    /// Gives back every record `member` holds (it left the group).
    pub(super) fn release_member(&mut self, member: u64, limit: u16) {
        for i in 0..self.states.len() {
            if let RecState::Acquired {
                count, member: m, ..
            } = self.states[i]
                && m == member
            {
                self.give_back(i, count, limit);
            }
        }
        self.advance();
    }

    pub(super) fn lag(&self, log_end: i64) -> u64 {
        let complete = self.states.iter().filter(|s| s.is_complete()).count() as i64;
        (log_end - self.start - complete).max(0) as u64
    }
}

/// What settling one record did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Settled {
    /// Applied; `freed` when it may let a waiting acquire go on (a record came back, or the
    /// partition dropped below its lock limit).
    Done { freed: bool },
    /// The offset is outside the window: settled already, or never delivered.
    NotInWindow,
    /// Not acquired by this member: its lock expired, it was settled, or another member has it.
    NotHeld,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::broker::Headers;
    use crate::embedded::log::StoredRecord;

    const A: u64 = 1;
    const B: u64 = 2;

    fn log(n: usize) -> Log {
        let mut log = Log::default();
        for i in 0..n {
            log.push(StoredRecord::new(
                None,
                Some(bytes::Bytes::from(vec![i as u8])),
                Headers::default(),
                0,
            ));
        }
        log
    }

    fn limits() -> GroupLimits {
        GroupLimits {
            delivery_count_limit: 3,
            lock_duration: Duration::from_secs(30),
            max_record_locks: 4,
        }
    }

    fn take(
        sp: &mut SharePartition,
        log: &Log,
        member: u64,
        now: Instant,
        max: usize,
    ) -> Vec<(i64, u16)> {
        let topic: Arc<str> = Arc::from("t");
        let mut out = Vec::new();
        sp.acquire(log, &topic, 0, member, now, &limits(), max, &mut out);
        out.iter()
            .map(|d| (d.id.offset, d.delivery_count))
            .collect()
    }

    #[test]
    fn acquires_in_order_up_to_the_lock_limit_and_accepts_move_the_start() {
        let (log, now) = (log(6), Instant::now());
        let mut sp = SharePartition::new(0);
        assert_eq!(
            take(&mut sp, &log, A, now, 10),
            [(0, 1), (1, 1), (2, 1), (3, 1)]
        );
        assert_eq!(
            take(&mut sp, &log, A, now, 10),
            [],
            "4 locks held: the limit"
        );
        // Accepting a record that is not first keeps the start; accepting the first moves it
        // past every completed record.
        assert_eq!(
            sp.settle(1, AckKind::Accept, A, now, &limits()),
            Settled::Done { freed: true }
        );
        assert_eq!(sp.start, 0);
        assert_eq!(
            sp.settle(0, AckKind::Accept, A, now, &limits()),
            Settled::Done { freed: false }
        );
        assert_eq!(sp.start, 2);
        assert_eq!(sp.lag(log.end()), 4);
        assert_eq!(take(&mut sp, &log, A, now, 10), [(4, 1), (5, 1)]);
    }

    #[test]
    fn only_the_owner_settles_and_only_once() {
        let (log, now) = (log(2), Instant::now());
        let mut sp = SharePartition::new(0);
        take(&mut sp, &log, A, now, 1);
        assert_eq!(
            sp.settle(0, AckKind::Accept, B, now, &limits()),
            Settled::NotHeld
        );
        assert_eq!(
            sp.settle(1, AckKind::Accept, A, now, &limits()),
            Settled::NotInWindow
        );
        assert!(matches!(
            sp.settle(0, AckKind::Accept, A, now, &limits()),
            Settled::Done { .. }
        ));
        assert_eq!(
            sp.settle(0, AckKind::Accept, A, now, &limits()),
            Settled::NotInWindow
        );
    }

    #[test]
    fn released_records_come_back_first_and_are_archived_at_the_delivery_limit() {
        let (log, now) = (log(3), Instant::now());
        let mut sp = SharePartition::new(0);
        assert_eq!(take(&mut sp, &log, A, now, 1), [(0, 1)]);
        for (member, next) in [(A, B), (B, A)] {
            let freed = sp.settle(0, AckKind::Release, member, now, &limits());
            assert_eq!(freed, Settled::Done { freed: true });
            // The released record comes back before the records never delivered.
            let count = if next == B { 2 } else { 3 };
            assert_eq!(take(&mut sp, &log, next, now, 1), [(0, count)]);
        }
        let last = sp.settle(0, AckKind::Release, A, now, &limits());
        assert_eq!(last, Settled::Done { freed: true });
        // Released at delivery 3 (the limit): archived, so the start moves past it.
        assert_eq!(sp.states.front(), None);
        assert_eq!(sp.start, 1);
        assert_eq!(take(&mut sp, &log, A, now, 5), [(1, 1), (2, 1)]);
    }

    #[test]
    fn locks_expire_at_their_deadline_and_renewals_push_it_back() {
        let (log, now) = (log(2), Instant::now());
        let mut sp = SharePartition::new(0);
        take(&mut sp, &log, A, now, 2);
        let half = now + Duration::from_secs(15);
        assert_eq!(
            sp.settle(1, AckKind::Renew, A, half, &limits()),
            Settled::Done { freed: false }
        );
        let later = now + Duration::from_secs(30);
        assert!(sp.expire(later, limits().delivery_count_limit));
        assert_eq!(sp.states[0], RecState::Available { count: 1 });
        assert!(matches!(sp.states[1], RecState::Acquired { member: A, .. }));
        assert_eq!(
            sp.settle(0, AckKind::Accept, A, later, &limits()),
            Settled::NotHeld
        );
        assert_eq!(take(&mut sp, &log, B, later, 5), [(0, 2)]);
    }

    #[test]
    fn a_member_leaving_gives_back_only_its_own_records() {
        let (log, now) = (log(3), Instant::now());
        let mut sp = SharePartition::new(0);
        take(&mut sp, &log, A, now, 2);
        take(&mut sp, &log, B, now, 1);
        sp.release_member(A, limits().delivery_count_limit);
        assert_eq!(sp.available, 2);
        assert_eq!(sp.acquired, 1);
        assert!(matches!(sp.states[2], RecState::Acquired { member: B, .. }));
    }
}
