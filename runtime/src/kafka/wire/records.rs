//! The records of one ShareFetch partition: `Records` holds whole log batches (record batch v2),
//! of which this member acquired only the offsets in `AcquiredRecords`.
//!
//! [`acquired_records`] decodes the batches with kafka-protocol's `RecordBatchDecoder` and sorts
//! every acquired offset into exactly one of:
//! - a data record to deliver ([`AcquiredRecord`]);
//! - a gap: known to hold no data record (a control record such as a transaction marker, or an
//!   offset removed by compaction, inside or between the batches returned), to acknowledge as
//!   GAP;
//! - missing: past the last complete batch (the response may end with a partial batch), so
//!   nothing is known about it: release it, never GAP it.
//!
//! Offsets outside the acquired ranges are skipped. Batches without an acquired offset, and
//! control batches, are not decompressed.
//!
//! Before kafka-protocol builds records from a batch, each record's framing is checked here:
//! its decoder trusts the record count and header count for allocations and adds offset and
//! timestamp deltas without overflow checks, so a crafted batch (with a valid CRC) could
//! otherwise make it panic or allocate without bound. Decompression itself is kafka-protocol's
//! and does not cap the decompressed size.
//!
//! kafka-protocol keeps headers in a map, so of two headers with the same key only the last one
//! survives.

use bytes::{Buf, Bytes};
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, TimestampType};

use super::codec::WireError;
use super::share_fetch::AcquiredRecords;

/// Bytes before a batch's `batchLength` ends: `baseOffset` (int64) and `batchLength` (int32).
const LOG_OVERHEAD: usize = 12;
/// Offsets inside a record batch v2 header.
const MAGIC_AT: usize = 16;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const RECORD_COUNT_AT: usize = 57;
/// Length of the record batch v2 header, up to and including `recordCount`.
const BATCH_HEADER_LEN: usize = 61;
/// `isControlBatch` in the batch attributes.
const CONTROL_FLAG: i16 = 1 << 5;

/// An inclusive range of offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetRange {
    /// First offset.
    pub(crate) first: i64,
    /// Last offset, inclusive.
    pub(crate) last: i64,
}

/// A data record this member acquired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AcquiredRecord {
    /// The record's offset.
    pub(crate) offset: i64,
    /// `DeliveryCount` of the acquired range it is in: 1 on the first delivery.
    pub(crate) delivery_count: i16,
    /// Create time, or the batch's log-append time when the topic uses `LogAppendTime`.
    pub(crate) timestamp: i64,
    /// Key, if any.
    pub(crate) key: Option<Bytes>,
    /// Value, `None` for a tombstone.
    pub(crate) value: Option<Bytes>,
    /// Headers in order (duplicate keys collapsed by kafka-protocol, the last one kept).
    pub(crate) headers: Vec<(StrBytes, Option<Bytes>)>,
}

/// What [`acquired_records`] found for a partition, all in ascending offset order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PartitionRecords {
    /// The acquired data records.
    pub(crate) records: Vec<AcquiredRecord>,
    /// Acquired offsets holding no data record: acknowledge them as GAP.
    pub(crate) gaps: Vec<OffsetRange>,
    /// Acquired offsets past the data returned: release them.
    pub(crate) missing: Vec<OffsetRange>,
}

/// Decodes `records` (the `Records` of a ShareFetch partition) into the records in `acquired`.
///
/// Fails on a malformed batch (bad CRC, bad framing, unknown compression, batches out of order)
/// or on acquired ranges that are empty or overlap. A partial batch at the end is not an error:
/// its offsets are reported missing.
pub(crate) fn acquired_records(
    records: &Bytes,
    acquired: &[AcquiredRecords],
) -> Result<PartitionRecords, WireError> {
    let ranges = sorted_ranges(acquired)?;
    let mut cursor = Cursor::new(&ranges);
    let mut found = PartitionRecords::default();
    let mut rest = records.clone();
    // Last offset of the last complete batch, and the last data record seen.
    let mut covered_to: Option<i64> = None;
    let mut last_record: Option<i64> = None;

    while let Some((header, batch)) = next_batch(&mut rest)? {
        if covered_to.is_some_and(|end| header.base_offset <= end) {
            return Err(WireError::invalid("Records", "batches out of order"));
        }
        covered_to = Some(header.last_offset);
        if header.control || !cursor.any_in(header.base_offset, header.last_offset) {
            continue;
        }
        for record in decode_batch(batch, &header)? {
            if record.offset < header.base_offset || record.offset > header.last_offset {
                return Err(WireError::invalid(
                    "Records",
                    "record offset outside its batch",
                ));
            }
            if last_record.is_some_and(|last| record.offset <= last) {
                return Err(WireError::invalid("Records", "records out of order"));
            }
            last_record = Some(record.offset);
            let Some(delivery_count) = cursor.delivery_count(record.offset) else {
                continue;
            };
            cursor.take_through(i128::from(record.offset) - 1, Some(&mut found.gaps));
            cursor.take_through(i128::from(record.offset), None);
            found.records.push(AcquiredRecord {
                offset: record.offset,
                delivery_count,
                timestamp: match record.timestamp_type {
                    TimestampType::LogAppend => header.max_timestamp,
                    TimestampType::Creation => record.timestamp,
                },
                key: record.key,
                value: record.value,
                headers: record.headers.into_iter().collect(),
            });
        }
    }

    if let Some(end) = covered_to {
        cursor.take_through(i128::from(end), Some(&mut found.gaps));
    }
    cursor.take_through(i128::from(i64::MAX), Some(&mut found.missing));
    Ok(found)
}

/// The acquired ranges in offset order; each must be non-empty and not overlap another.
fn sorted_ranges(acquired: &[AcquiredRecords]) -> Result<Vec<AcquiredRecords>, WireError> {
    let mut ranges = acquired.to_vec();
    ranges.sort_by_key(|range| range.first_offset);
    for (i, range) in ranges.iter().enumerate() {
        if range.first_offset > range.last_offset {
            return Err(WireError::invalid(
                "AcquiredRecords",
                "first offset after last offset",
            ));
        }
        if i > 0 && range.first_offset <= ranges[i - 1].last_offset {
            return Err(WireError::invalid("AcquiredRecords", "ranges overlap"));
        }
    }
    Ok(ranges)
}

/// What is read from a batch header before (and besides) kafka-protocol's decoder.
struct BatchHeader {
    base_offset: i64,
    /// `baseOffset + lastOffsetDelta`: the batch covers every offset up to here, records or not.
    last_offset: i64,
    control: bool,
    base_timestamp: i64,
    /// The log-append time, for topics with `LogAppendTime`.
    max_timestamp: i64,
    record_count: i32,
}

/// Splits the next complete batch off `rest`; `None` at the end or at a partial batch.
fn next_batch(rest: &mut Bytes) -> Result<Option<(BatchHeader, Bytes)>, WireError> {
    if rest.len() < LOG_OVERHEAD {
        return Ok(None);
    }
    let base_offset = (&rest[0..8]).get_i64();
    let Ok(batch_length) = usize::try_from((&rest[8..12]).get_i32()) else {
        return Err(WireError::invalid("Records", "negative batch length"));
    };
    if rest.len() - LOG_OVERHEAD < batch_length {
        return Ok(None);
    }
    let batch = rest.split_to(LOG_OVERHEAD + batch_length);
    if batch.len() < BATCH_HEADER_LEN {
        return Err(WireError::invalid(
            "Records",
            "batch shorter than its header",
        ));
    }
    if batch[MAGIC_AT] != 2 {
        return Err(WireError::invalid(
            "Records",
            "record batch version (magic) is not 2",
        ));
    }
    let last_offset_delta = (&batch[LAST_OFFSET_DELTA_AT..]).get_i32();
    let last_offset = base_offset
        .checked_add(i64::from(last_offset_delta))
        .filter(|_| last_offset_delta >= 0)
        .ok_or(WireError::invalid("Records", "bad last offset delta"))?;
    let header = BatchHeader {
        base_offset,
        last_offset,
        control: (&batch[ATTRIBUTES_AT..]).get_i16() & CONTROL_FLAG != 0,
        base_timestamp: (&batch[BASE_TIMESTAMP_AT..]).get_i64(),
        max_timestamp: (&batch[MAX_TIMESTAMP_AT..]).get_i64(),
        record_count: (&batch[RECORD_COUNT_AT..]).get_i32(),
    };
    Ok(Some((header, batch)))
}

/// Decodes one batch with kafka-protocol, checking the records' framing once decompressed.
fn decode_batch(mut batch: Bytes, header: &BatchHeader) -> Result<Vec<Record>, WireError> {
    let checked = |raw: &mut Bytes, compression: Compression| -> anyhow::Result<Bytes> {
        let data = decompress(raw, compression)?;
        check_records(&data, header)?;
        Ok(data)
    };
    RecordBatchDecoder::decode_with_custom_compression(&mut batch, Some(checked))
        .map(|set| set.records)
        .map_err(|source| WireError::Records {
            source: source.into(),
        })
}

/// Walks sorted, disjoint acquired ranges, handing out each acquired offset once.
struct Cursor<'a> {
    ranges: &'a [AcquiredRecords],
    /// First range that may still hold offsets not handed out.
    index: usize,
    /// Lowest offset not handed out yet (i128: no overflow at `i64::MAX`).
    next: i128,
}

impl<'a> Cursor<'a> {
    fn new(ranges: &'a [AcquiredRecords]) -> Self {
        Self {
            ranges,
            index: 0,
            next: i128::from(i64::MIN),
        }
    }

    fn position(&self, offset: i64) -> usize {
        self.ranges
            .partition_point(|range| range.last_offset < offset)
    }

    /// The delivery count of `offset` if it is acquired.
    fn delivery_count(&self, offset: i64) -> Option<i16> {
        self.ranges
            .get(self.position(offset))
            .filter(|range| range.first_offset <= offset)
            .map(|range| range.delivery_count)
    }

    /// Whether any offset in `first..=last` is acquired.
    fn any_in(&self, first: i64, last: i64) -> bool {
        self.ranges
            .get(self.position(first))
            .is_some_and(|range| range.first_offset <= last)
    }

    /// Hands every acquired offset from `next` through `end` to `out` (if any), merging
    /// adjacent ranges.
    fn take_through(&mut self, end: i128, mut out: Option<&mut Vec<OffsetRange>>) {
        while let Some(range) = self.ranges.get(self.index) {
            let from = self.next.max(i128::from(range.first_offset));
            if from > end {
                break;
            }
            let last = i128::from(range.last_offset);
            if from <= last {
                let to = last.min(end);
                if let Some(out) = out.as_deref_mut() {
                    push_merged(out, from, to);
                }
                self.next = to + 1;
            }
            if self.next > last {
                self.index += 1;
            } else {
                break;
            }
        }
        self.next = self.next.max(end + 1);
    }
}

/// Appends `from..=to` (both within `i64`), extending the last range when adjacent.
fn push_merged(out: &mut Vec<OffsetRange>, from: i128, to: i128) {
    let (Ok(from), Ok(to)) = (i64::try_from(from), i64::try_from(to)) else {
        return; // unreachable: both come from acquired ranges
    };
    match out.last_mut() {
        Some(last) if i128::from(last.last) + 1 == i128::from(from) => last.last = to,
        _ => out.push(OffsetRange {
            first: from,
            last: to,
        }),
    }
}

fn decompress(raw: &mut Bytes, compression: Compression) -> anyhow::Result<Bytes> {
    fn all(buf: &mut Bytes) -> anyhow::Result<Bytes> {
        Ok(buf.split_to(buf.len()))
    }
    match compression {
        Compression::None => all(raw),
        Compression::Gzip => <Gzip as Decompressor<Bytes>>::decompress(raw, all),
        Compression::Snappy => <Snappy as Decompressor<Bytes>>::decompress(raw, all),
        Compression::Lz4 => <Lz4 as Decompressor<Bytes>>::decompress(raw, all),
        Compression::Zstd => <Zstd as Decompressor<Bytes>>::decompress(raw, all),
    }
}

/// Checks the framing of `record_count` records, the way kafka-protocol will read them, so that
/// it neither panics nor over-allocates: every length within its record, header count bounded
/// by the bytes left, offset and timestamp deltas without overflow.
fn check_records(data: &[u8], info: &BatchHeader) -> Result<(), WireError> {
    const FIELD: &str = "Records";
    let mut buf = data;
    for _ in 0..info.record_count {
        let size = usize::try_from(varint(&mut buf)?)
            .map_err(|_| WireError::invalid(FIELD, "negative record size"))?;
        let mut body = take(&mut buf, size)?;
        take(&mut body, 1)?; // attributes
        let timestamp_delta = varlong(&mut body)?;
        if info.base_timestamp.checked_add(timestamp_delta).is_none() {
            return Err(WireError::invalid(FIELD, "record timestamp overflows"));
        }
        let offset_delta = varint(&mut body)?;
        if info
            .base_offset
            .checked_add(i64::from(offset_delta))
            .is_none()
        {
            return Err(WireError::invalid(FIELD, "record offset overflows"));
        }
        take_nullable(&mut body)?; // key
        take_nullable(&mut body)?; // value
        let headers = usize::try_from(varint(&mut body)?)
            .map_err(|_| WireError::invalid(FIELD, "negative header count"))?;
        // A header takes at least two bytes (key length, value length).
        if headers > body.len() / 2 {
            return Err(WireError::invalid(FIELD, "more headers than bytes"));
        }
        for _ in 0..headers {
            let key_len = usize::try_from(varint(&mut body)?)
                .map_err(|_| WireError::invalid(FIELD, "negative header key length"))?;
            take(&mut body, key_len)?;
            take_nullable(&mut body)?;
        }
    }
    Ok(())
}

fn take<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8], WireError> {
    if buf.len() < len {
        return Err(WireError::Truncated { field: "Records" });
    }
    let (head, tail) = buf.split_at(len);
    *buf = tail;
    Ok(head)
}

/// A varint length prefix then that many bytes, -1 standing for null.
fn take_nullable(buf: &mut &[u8]) -> Result<(), WireError> {
    match varint(buf)? {
        -1 => Ok(()),
        len => {
            let len = usize::try_from(len)
                .map_err(|_| WireError::invalid("Records", "negative length"))?;
            take(buf, len).map(|_| ())
        }
    }
}

/// An unsigned varint of at most `max_bytes` bytes, decoded as kafka-protocol does (bits past the
/// width are dropped), but an error if it does not end within `max_bytes`.
fn unsigned_varint(buf: &mut &[u8], max_bytes: u32) -> Result<u64, WireError> {
    let mut value = 0u64;
    for i in 0..max_bytes {
        let byte = u64::from(take(buf, 1)?[0]);
        value |= (byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(WireError::invalid("Records", "varint too long"))
}

/// A zigzag varint (record framing), as kafka-protocol's `VarInt`.
fn varint(buf: &mut &[u8]) -> Result<i32, WireError> {
    let zigzag = unsigned_varint(buf, 5)? as u32;
    Ok(((zigzag >> 1) as i32) ^ -((zigzag & 1) as i32))
}

/// A zigzag varlong (record framing), as kafka-protocol's `VarLong`.
fn varlong(buf: &mut &[u8]) -> Result<i64, WireError> {
    let zigzag = unsigned_varint(buf, 10)?;
    Ok(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64))
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions};

    use super::*;

    fn record(offset: i64, value: &'static str) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: offset as i32,
            timestamp: 1_700_000_000_000 + offset,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(value.as_bytes())),
            headers: IndexMap::new(),
        }
    }

    /// One record batch per call.
    fn batch(records: &[Record], compression: Compression) -> Vec<u8> {
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        let result = RecordBatchEncoder::encode(&mut buf, records, &options);
        assert!(result.is_ok(), "{result:?}");
        buf.to_vec()
    }

    fn acquired(first_offset: i64, last_offset: i64, delivery_count: i16) -> AcquiredRecords {
        AcquiredRecords {
            first_offset,
            last_offset,
            delivery_count,
        }
    }

    fn range(first: i64, last: i64) -> OffsetRange {
        OffsetRange { first, last }
    }

    fn decode(bytes: &[u8], ranges: &[AcquiredRecords]) -> PartitionRecords {
        let result = acquired_records(&Bytes::copy_from_slice(bytes), ranges);
        let Ok(found) = result else {
            panic!("decode failed: {result:?}");
        };
        found
    }

    fn offsets(found: &PartitionRecords) -> Vec<i64> {
        found.records.iter().map(|record| record.offset).collect()
    }

    /// CRC-32C (Castagnoli), which record batches v2 carry over everything after the CRC field.
    fn crc32c(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82f6_3b78
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// Overwrites bytes of a single uncompressed batch and fixes its CRC.
    fn patch(batch: &mut [u8], at: usize, bytes: &[u8]) {
        batch[at..at + bytes.len()].copy_from_slice(bytes);
        let crc = crc32c(&batch[ATTRIBUTES_AT..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn only_acquired_offsets_are_delivered() {
        let records: Vec<Record> = (0..5).map(|offset| record(offset, "v")).collect();
        let found = decode(&batch(&records, Compression::None), &[acquired(1, 3, 1)]);
        assert_eq!(offsets(&found), [1, 2, 3]);
        assert!(found.gaps.is_empty() && found.missing.is_empty());
        let first = &found.records[0];
        assert_eq!(first.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(first.value.as_deref(), Some(&b"v"[..]));
        assert_eq!(first.timestamp, 1_700_000_000_001);
        assert_eq!(first.delivery_count, 1);
    }

    #[test]
    fn delivery_count_comes_from_each_range() {
        let records: Vec<Record> = (10..16).map(|offset| record(offset, "v")).collect();
        let found = decode(
            &batch(&records, Compression::None),
            // Out of order on purpose: ranges are sorted first.
            &[
                acquired(14, 15, 1),
                acquired(10, 10, 3),
                acquired(12, 12, 4),
            ],
        );
        let counts: Vec<(i64, i16)> = found
            .records
            .iter()
            .map(|r| (r.offset, r.delivery_count))
            .collect();
        assert_eq!(counts, [(10, 3), (12, 4), (14, 1), (15, 1)]);
    }

    #[test]
    fn compacted_offsets_and_holes_between_batches_are_gaps() {
        // Batch 1 covers 0..=4 with records at 0, 2, 4; batch 2 starts at 8.
        let first = batch(
            &[record(0, "a"), record(2, "b"), record(4, "c")],
            Compression::None,
        );
        let second = batch(&[record(8, "d"), record(9, "e")], Compression::None);
        let found = decode(&[first, second].concat(), &[acquired(0, 9, 1)]);
        assert_eq!(offsets(&found), [0, 2, 4, 8, 9]);
        assert_eq!(found.gaps, [range(1, 1), range(3, 3), range(5, 7)]);
        assert!(found.missing.is_empty());
    }

    #[test]
    fn control_batches_are_gaps_and_not_decoded() {
        let mut marker = record(3, "");
        marker.control = true;
        marker.transactional = true;
        let mut data: Vec<Record> = (0..3).map(|offset| record(offset, "v")).collect();
        for record in &mut data {
            record.transactional = true;
        }
        let mut control = batch(&[marker], Compression::None);
        // Corrupt the control batch's records: it must not be decoded.
        let len = control.len();
        control[len - 1] ^= 0xff;
        let bytes = [
            batch(&data, Compression::None),
            control,
            batch(&[record(4, "w")], Compression::None),
        ]
        .concat();
        let found = decode(&bytes, &[acquired(0, 4, 1)]);
        assert_eq!(offsets(&found), [0, 1, 2, 4]);
        assert_eq!(found.gaps, [range(3, 3)]);
    }

    #[test]
    fn offsets_before_the_first_batch_are_gaps() {
        let found = decode(
            &batch(&[record(5, "v")], Compression::None),
            &[acquired(2, 5, 1)],
        );
        assert_eq!(offsets(&found), [5]);
        assert_eq!(found.gaps, [range(2, 4)]);
    }

    #[test]
    fn offsets_after_the_data_are_missing() {
        let whole = batch(&[record(0, "a"), record(1, "b")], Compression::None);
        let partial = batch(&[record(2, "c"), record(3, "d")], Compression::None);
        // A partial batch at the end, as a size-limited fetch may return.
        let bytes = [whole.clone(), partial[..partial.len() - 5].to_vec()].concat();
        let found = decode(&bytes, &[acquired(0, 3, 1), acquired(7, 8, 2)]);
        assert_eq!(offsets(&found), [0, 1]);
        assert!(found.gaps.is_empty());
        assert_eq!(found.missing, [range(2, 3), range(7, 8)]);
        // Fewer than 12 bytes left over is also a partial batch.
        let found = decode(&[whole, vec![0; 7]].concat(), &[acquired(0, 2, 1)]);
        assert_eq!(found.missing, [range(2, 2)]);
        // No data at all.
        let found = decode(&[], &[acquired(0, 1, 1)]);
        assert!(found.records.is_empty() && found.gaps.is_empty());
        assert_eq!(found.missing, [range(0, 1)]);
    }

    #[test]
    fn batches_without_acquired_offsets_are_skipped() {
        let mut skipped = batch(&[record(0, "a")], Compression::None);
        let len = skipped.len();
        skipped[len - 1] ^= 0xff; // bad CRC: never looked at
        let bytes = [skipped, batch(&[record(1, "b")], Compression::None)].concat();
        assert_eq!(offsets(&decode(&bytes, &[acquired(1, 1, 1)])), [1]);
        // The same corruption in an acquired batch is an error.
        assert!(matches!(
            acquired_records(&Bytes::from(bytes), &[acquired(0, 1, 1)]),
            Err(WireError::Records { .. })
        ));
    }

    #[test]
    fn headers_and_null_key_value() {
        let mut value = record(0, "x");
        value.key = None;
        value.value = None;
        value.headers.insert(
            StrBytes::from_static_str("h1"),
            Some(Bytes::from_static(b"1")),
        );
        value.headers.insert(StrBytes::from_static_str("h2"), None);
        let found = decode(&batch(&[value], Compression::None), &[acquired(0, 0, 1)]);
        let record = &found.records[0];
        assert_eq!(record.key, None);
        assert_eq!(record.value, None);
        assert_eq!(
            record.headers,
            [
                (
                    StrBytes::from_static_str("h1"),
                    Some(Bytes::from_static(b"1"))
                ),
                (StrBytes::from_static_str("h2"), None),
            ]
        );
    }

    #[test]
    fn compressed_batches() {
        let records: Vec<Record> = (0..20)
            .map(|offset| record(offset, "compressible value"))
            .collect();
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let found = decode(&batch(&records, compression), &[acquired(5, 7, 1)]);
            assert_eq!(offsets(&found), [5, 6, 7], "{compression:?}");
        }
    }

    #[test]
    fn log_append_time_comes_from_the_batch() {
        let mut bytes = batch(&[record(0, "a"), record(1, "b")], Compression::None);
        patch(&mut bytes, ATTRIBUTES_AT, &(1i16 << 3).to_be_bytes());
        patch(&mut bytes, MAX_TIMESTAMP_AT, &42i64.to_be_bytes());
        let found = decode(&bytes, &[acquired(0, 1, 1)]);
        assert!(found.records.iter().all(|record| record.timestamp == 42));
    }

    #[test]
    fn invalid_acquired_ranges() {
        let bytes = Bytes::from(batch(&[record(0, "a")], Compression::None));
        assert!(acquired_records(&bytes, &[acquired(3, 2, 1)]).is_err());
        assert!(acquired_records(&bytes, &[acquired(0, 5, 1), acquired(5, 6, 1)]).is_err());
    }

    #[test]
    fn crafted_batches_fail_without_panic() {
        let clean = batch(&[record(0, "a"), record(1, "b")], Compression::None);
        let ranges = [acquired(0, 1, 1)];
        let fails =
            |bytes: &[u8]| acquired_records(&Bytes::copy_from_slice(bytes), &ranges).is_err();

        // A huge record count with a valid CRC.
        let mut bytes = clean.clone();
        patch(&mut bytes, RECORD_COUNT_AT, &i32::MAX.to_be_bytes());
        assert!(fails(&bytes));
        // A base timestamp whose deltas overflow.
        let mut bytes = clean.clone();
        patch(&mut bytes, BASE_TIMESTAMP_AT, &i64::MAX.to_be_bytes());
        assert!(fails(&bytes));
        // A base offset whose last offset delta overflows.
        let mut bytes = clean.clone();
        bytes[0..8].copy_from_slice(&i64::MAX.to_be_bytes());
        assert!(acquired_records(&Bytes::from(bytes), &[acquired(i64::MAX, i64::MAX, 1)]).is_err());
        // A record offset delta that overflows while the batch's does not.
        let mut bytes = clean.clone();
        bytes[0..8].copy_from_slice(&i64::MAX.to_be_bytes());
        patch(&mut bytes, LAST_OFFSET_DELTA_AT, &0i32.to_be_bytes());
        assert!(acquired_records(&Bytes::from(bytes), &[acquired(i64::MAX, i64::MAX, 1)]).is_err());
        // A huge header count in the first record: the byte after key and value.
        let mut bytes = clean.clone();
        // length, attributes, timestamp delta, offset delta, key (length + 1), value (length + 1)
        let headers_at = BATCH_HEADER_LEN + 1 + 1 + 1 + 1 + 2 + 2;
        assert_eq!(bytes[headers_at], 0x00);
        patch(&mut bytes, headers_at, &[0xfe]); // zigzag 127, more than the record holds
        assert!(fails(&bytes));
        // Negative and oversized batch lengths, and an old magic.
        let mut bytes = clean.clone();
        bytes[8..12].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(fails(&bytes));
        let mut bytes = clean.clone();
        bytes[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert!(fails(&bytes));
        let mut bytes = clean.clone();
        bytes[MAGIC_AT] = 1;
        assert!(fails(&bytes));
        // A negative last offset delta.
        let mut bytes = clean.clone();
        patch(&mut bytes, LAST_OFFSET_DELTA_AT, &(-1i32).to_be_bytes());
        assert!(fails(&bytes));
        // Batches going backwards.
        assert!(fails(&[clean.clone(), clean.clone()].concat()));
    }

    #[test]
    fn every_truncation_and_corruption_is_handled() {
        let mut value = record(1, "value");
        value.headers.insert(
            StrBytes::from_static_str("h"),
            Some(Bytes::from_static(b"x")),
        );
        let bytes = [
            batch(&[record(0, "a"), value], Compression::None),
            batch(&[record(2, "b")], Compression::Gzip),
        ]
        .concat();
        let ranges = [acquired(0, 2, 1)];
        for len in 0..bytes.len() {
            // A cut inside a batch is a partial batch: its offsets are missing.
            let result = acquired_records(&Bytes::copy_from_slice(&bytes[..len]), &ranges);
            let Ok(found) = result else {
                panic!("prefix of {len} bytes failed: {result:?}");
            };
            let delivered = found.records.len() as i64;
            let missing: i64 = found.missing.iter().map(|r| r.last - r.first + 1).sum();
            assert_eq!(delivered + missing, 3, "prefix of {len} bytes: {found:?}");
        }
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..3_000 {
            let mut corrupted = bytes.clone();
            let at = rng.usize(..corrupted.len());
            corrupted[at] = rng.u8(..);
            let _ = acquired_records(&Bytes::from(corrupted), &ranges);
        }
        // Corruption behind a valid CRC, in the records of an uncompressed batch.
        let clean = batch(&[record(0, "a"), record(1, "bb")], Compression::None);
        for _ in 0..3_000 {
            let mut corrupted = clean.clone();
            let at = rng.usize(BATCH_HEADER_LEN..corrupted.len());
            let byte = rng.u8(..);
            patch(&mut corrupted, at, &[byte]);
            let _ = acquired_records(&Bytes::from(corrupted), &ranges);
        }
    }
}
