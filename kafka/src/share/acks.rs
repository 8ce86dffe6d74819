//! Acknowledgement batches on the wire: the broker's validation rules turned into a plan.
//!
//! A partition's `AcknowledgementBatches` must be ascending and non-overlapping, each with
//! `FirstOffset <= LastOffset` and one acknowledge type for the whole range (or one per offset;
//! this client always sends one per range). [`plan`] sorts the acknowledgements of one
//! partition, merges neighbours with the same type into one range, keeps exact duplicates
//! (they share the answer of the range they are in) and sets apart acknowledgements that
//! overlap an earlier one differently: those cannot be sent in the same request.

use super::super::wire::common::{AcknowledgeType, AcknowledgementBatch};

/// One acknowledgement of an inclusive offset range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct AckRange {
    pub(super) first: i64,
    pub(super) last: i64,
    pub(super) kind: AcknowledgeType,
}

/// What [`plan`] makes of the acknowledgements of one partition.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Plan {
    /// The batches to send, ascending and non-overlapping.
    pub(super) batches: Vec<AcknowledgementBatch>,
    /// Indices (into the input) of the acknowledgements the batches carry.
    pub(super) included: Vec<usize>,
    /// Indices of acknowledgements that overlap an earlier one with another range or type, or
    /// have `first > last`: they are not sent.
    pub(super) conflicts: Vec<usize>,
}

/// Plans the acknowledgement batches of one partition.
pub(super) fn plan(acks: &[AckRange]) -> Plan {
    let mut order: Vec<usize> = (0..acks.len()).collect();
    order.sort_by_key(|&i| (acks[i].first, acks[i].last, i));
    let mut out = Plan::default();
    // The range taken last, to recognise exact duplicates, and how far the batches cover.
    let mut previous: Option<AckRange> = None;
    for i in order {
        let a = acks[i];
        if a.first > a.last {
            out.conflicts.push(i);
            continue;
        }
        if let Some(p) = previous
            && a.first <= covered(&out)
        {
            if p == a {
                out.included.push(i);
            } else {
                out.conflicts.push(i);
            }
            continue;
        }
        previous = Some(a);
        out.included.push(i);
        match out.batches.last_mut() {
            Some(b)
                if b.last_offset.checked_add(1) == Some(a.first)
                    && b.acknowledge_types == [a.kind] =>
            {
                b.last_offset = a.last;
            }
            _ => out.batches.push(AcknowledgementBatch {
                first_offset: a.first,
                last_offset: a.last,
                acknowledge_types: vec![a.kind],
            }),
        }
    }
    out.included.sort_unstable();
    out.conflicts.sort_unstable();
    out
}

fn covered(plan: &Plan) -> i64 {
    plan.batches.last().map_or(i64::MIN, |b| b.last_offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(offset: i64, kind: AcknowledgeType) -> AckRange {
        AckRange {
            first: offset,
            last: offset,
            kind,
        }
    }

    fn batch(first: i64, last: i64, kind: AcknowledgeType) -> AcknowledgementBatch {
        AcknowledgementBatch {
            first_offset: first,
            last_offset: last,
            acknowledge_types: vec![kind],
        }
    }

    use AcknowledgeType::{Accept, Gap, Release, Renew};

    #[test]
    fn consecutive_offsets_with_one_type_merge() {
        let acks = [
            one(5, Accept),
            one(3, Accept),
            one(4, Accept),
            one(6, Release),
            one(7, Release),
            one(9, Release),
        ];
        let p = plan(&acks);
        assert_eq!(
            p.batches,
            vec![
                batch(3, 5, Accept),
                batch(6, 7, Release),
                batch(9, 9, Release)
            ]
        );
        assert_eq!(p.included, vec![0, 1, 2, 3, 4, 5]);
        assert!(p.conflicts.is_empty());
    }

    #[test]
    fn ranges_merge_with_single_offsets() {
        let acks = [
            AckRange {
                first: 10,
                last: 12,
                kind: Gap,
            },
            one(13, Gap),
            one(14, Accept),
        ];
        let p = plan(&acks);
        assert_eq!(p.batches, vec![batch(10, 13, Gap), batch(14, 14, Accept)]);
    }

    #[test]
    fn duplicates_share_a_range_and_conflicts_are_set_apart() {
        let acks = [
            one(1, Renew),
            one(1, Renew),
            one(2, Accept),
            one(2, Release),
            AckRange {
                first: 0,
                last: 3,
                kind: Accept,
            },
            AckRange {
                first: 9,
                last: 8,
                kind: Accept,
            },
        ];
        let p = plan(&acks);
        // Sorted by (first, last): [0..3 accept] comes first and covers the rest.
        assert_eq!(p.batches, vec![batch(0, 3, Accept)]);
        assert_eq!(p.included, vec![4]);
        assert_eq!(p.conflicts, vec![0, 1, 2, 3, 5]);

        let p = plan(&acks[..4]);
        assert_eq!(p.batches, vec![batch(1, 1, Renew), batch(2, 2, Accept)]);
        assert_eq!(p.included, vec![0, 1, 2]);
        assert_eq!(p.conflicts, vec![3]);
    }

    #[test]
    fn batches_are_ascending_and_disjoint() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..500 {
            let acks: Vec<AckRange> = (0..rng.usize(0..20))
                .map(|_| {
                    let first = rng.i64(0..30);
                    AckRange {
                        first,
                        last: first + rng.i64(0..3),
                        kind: [Accept, Release, Gap][rng.usize(0..3)],
                    }
                })
                .collect();
            let p = plan(&acks);
            let mut all: Vec<usize> = p.included.iter().chain(&p.conflicts).copied().collect();
            all.sort_unstable();
            assert_eq!(all, (0..acks.len()).collect::<Vec<_>>());
            for w in p.batches.windows(2) {
                assert!(w[0].last_offset < w[1].first_offset, "{:?}", p.batches);
            }
            for &i in &p.included {
                let a = acks[i];
                assert!(
                    p.batches.iter().any(|b| b.first_offset <= a.first
                        && a.last <= b.last_offset
                        && b.acknowledge_types == [a.kind]),
                    "{a:?} not in {:?}",
                    p.batches
                );
            }
        }
    }
}
