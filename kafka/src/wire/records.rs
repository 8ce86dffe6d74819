//! The records of one ShareFetch partition: `Records` holds whole log batches (record batch v2),
//! of which this member acquired only the offsets in `AcquiredRecords`.
//!
//! [`acquired_records`] decodes the batches and sorts every acquired offset into exactly one of:
//! - a data record to deliver ([`AcquiredRecord`]);
//! - a gap: known to hold no data record (a control record such as a transaction marker, or an
//!   offset removed by compaction, inside or between the batches returned), to acknowledge as
//!   GAP;
//! - missing: past the last complete batch (the response may end with a partial batch), so
//!   nothing is known about it: release it, never GAP it.
//!
//! Offsets outside the acquired ranges are skipped. Batches without an acquired offset, and
//! control batches, are neither checked nor decompressed.
//!
//! The batches are decoded here rather than with kafka-protocol's `RecordBatchDecoder`, because
//! that decoder trusts what a broker sends: it reserves the record count and the header count
//! before reading a record, adds offset and timestamp deltas without overflow checks, and
//! decompresses without a size limit (a raw snappy block reserves whatever length its header
//! claims). Here every length is checked against the bytes that are there, no decompressed batch
//! grows past [`MAX_DECOMPRESSED`], and records are built only for acquired offsets. Headers are
//! kept in order, duplicate keys included, as Kafka sends them.

use std::io::Read;

use bytes::{Buf, Bytes};
use kafka_protocol::protocol::StrBytes;

use super::codec::WireError;
use super::share_fetch::AcquiredRecords;

/// Bytes before a batch's `batchLength` ends: `baseOffset` (int64) and `batchLength` (int32).
const LOG_OVERHEAD: usize = 12;
/// Offsets inside a record batch v2 header.
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const RECORD_COUNT_AT: usize = 57;
/// Length of the record batch v2 header, up to and including `recordCount`.
const BATCH_HEADER_LEN: usize = 61;
/// `isControlBatch` in the batch attributes.
const CONTROL_FLAG: i16 = 1 << 5;
/// `timestampType` in the batch attributes: set for `LogAppendTime`.
const LOG_APPEND_TIME_FLAG: i16 = 1 << 3;
/// The compression codec in the batch attributes.
const COMPRESSION_MASK: i16 = 0x7;

/// The largest a batch may grow when decompressed: as large as the largest frame a connection
/// accepts. A batch claiming more is an error (a decompression bomb, or corrupt).
pub(crate) const MAX_DECOMPRESSED: usize = 256 * 1024 * 1024;

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
    /// Headers in order, duplicate keys included.
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
    acquired_records_within(records, acquired, MAX_DECOMPRESSED)
}

/// [`acquired_records`] with no batch decompressed past `max_decompressed` bytes.
pub(crate) fn acquired_records_within(
    records: &Bytes,
    acquired: &[AcquiredRecords],
    max_decompressed: usize,
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
        let data = batch_records(batch, &header, max_decompressed)?;
        let mut rest = &data[..];
        for _ in 0..header.record_count {
            let record = next_record(&mut rest, &header)?;
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
            found
                .records
                .push(record.build(&data, delivery_count, &header)?);
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
    log_append_time: bool,
    /// The codec, from the attributes (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    compression: i16,
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
    let attributes = (&batch[ATTRIBUTES_AT..]).get_i16();
    let header = BatchHeader {
        base_offset,
        last_offset,
        control: attributes & CONTROL_FLAG != 0,
        log_append_time: attributes & LOG_APPEND_TIME_FLAG != 0,
        compression: attributes & COMPRESSION_MASK,
        base_timestamp: (&batch[BASE_TIMESTAMP_AT..]).get_i64(),
        max_timestamp: (&batch[MAX_TIMESTAMP_AT..]).get_i64(),
        record_count: (&batch[RECORD_COUNT_AT..]).get_i32(),
    };
    Ok(Some((header, batch)))
}

/// Checks a whole batch's CRC and returns its records section, decompressed (at most
/// `max_decompressed` bytes).
fn batch_records(
    batch: Bytes,
    header: &BatchHeader,
    max_decompressed: usize,
) -> Result<Bytes, WireError> {
    let crc = (&batch[CRC_AT..]).get_u32();
    if crc32c::crc32c(&batch[ATTRIBUTES_AT..]) != crc {
        return Err(WireError::invalid("Records", "record batch CRC mismatch"));
    }
    if header.record_count < 0 {
        return Err(WireError::invalid("Records", "negative record count"));
    }
    let raw = batch.slice(BATCH_HEADER_LEN..);
    decompress(raw, header.compression, max_decompressed)
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

/// Decompresses a batch's records with `codec`, failing as soon as the output would pass `max`.
fn decompress(raw: Bytes, codec: i16, max: usize) -> Result<Bytes, WireError> {
    let failed = |_| WireError::invalid("Records", "the records do not decompress");
    let data = match codec {
        0 => return Ok(raw),
        1 => read_capped(flate2::read::MultiGzDecoder::new(&raw[..]), max)?,
        2 => snappy(&raw, max)?,
        3 => read_capped(lz4::Decoder::new(&raw[..]).map_err(failed)?, max)?,
        4 => read_capped(
            zstd::stream::read::Decoder::new(&raw[..]).map_err(failed)?,
            max,
        )?,
        _ => return Err(WireError::invalid("Records", "unknown compression codec")),
    };
    Ok(Bytes::from(data))
}

fn too_large() -> WireError {
    WireError::invalid(
        "Records",
        "a record batch decompresses to more than the limit (256 MiB)",
    )
}

/// Reads `reader` to its end, failing once more than `max` bytes come out; the buffer never
/// grows past `max`.
///
/// The zstd and lz4 decoders are C libraries whose own buffers this does not see: zstd's window
/// is bounded by its default `window_log_max` (128 MiB), an lz4 frame's blocks by 4 MiB.
fn read_capped(mut reader: impl Read, max: usize) -> Result<Vec<u8>, WireError> {
    const CHUNK: usize = 64 * 1024;
    let mut out = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                return Err(WireError::invalid(
                    "Records",
                    "the records do not decompress",
                ));
            }
        };
        grow(&mut out, n, max)?;
        out.extend_from_slice(&chunk[..n]);
    }
}

/// Makes room for `more` bytes in `out`, doubling its capacity but never past `max`; an error if
/// `out` would pass `max`.
fn grow(out: &mut Vec<u8>, more: usize, max: usize) -> Result<(), WireError> {
    let needed = out.len() + more;
    if needed > max {
        return Err(too_large());
    }
    if out.capacity() < needed {
        let target = (out.capacity() * 2).clamp(needed, max);
        out.reserve_exact(target - out.len());
    }
    Ok(())
}

/// Snappy as Kafka writes it: xerial framing (a magic header, then size-prefixed raw blocks), or
/// one raw block. A raw block's header claims its decompressed length: checked against `max`
/// before anything is reserved.
fn snappy(raw: &[u8], max: usize) -> Result<Vec<u8>, WireError> {
    const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
    /// Magic, then two int32 versions.
    const XERIAL_HEADER_LEN: usize = 16;
    let failed = |_| WireError::invalid("Records", "the records do not decompress");
    let mut out = Vec::new();
    let block = |block: &[u8], out: &mut Vec<u8>| -> Result<(), WireError> {
        let len = snap::raw::decompress_len(block).map_err(failed)?;
        grow(out, len, max)?;
        let start = out.len();
        out.resize(start + len, 0);
        let written = snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(failed)?;
        out.truncate(start + written);
        Ok(())
    };
    if raw.len() < XERIAL_HEADER_LEN || !raw.starts_with(XERIAL_MAGIC) {
        block(raw, &mut out)?;
        return Ok(out);
    }
    let mut rest = &raw[XERIAL_HEADER_LEN..];
    while !rest.is_empty() {
        let len = usize::try_from(take(&mut rest, 4)?.get_u32())
            .map_err(|_| WireError::invalid("Records", "snappy block too long"))?;
        block(take(&mut rest, len)?, &mut out)?;
    }
    Ok(out)
}

/// A record as framed in a batch, its key, value and headers not yet copied out.
struct RawRecord<'a> {
    offset: i64,
    timestamp: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
}

impl RawRecord<'_> {
    /// The delivered record; `data` is the records section it was read from (key, value and
    /// header values become slices of it, not copies).
    fn build(
        self,
        data: &Bytes,
        delivery_count: i16,
        header: &BatchHeader,
    ) -> Result<AcquiredRecord, WireError> {
        let mut headers = Vec::with_capacity(self.headers.len());
        for (key, value) in self.headers {
            let key = std::str::from_utf8(key)
                .map_err(|_| WireError::invalid("Records", "record header key is not UTF-8"))?;
            headers.push((
                StrBytes::from_string(key.to_owned()),
                value.map(|value| data.slice_ref(value)),
            ));
        }
        Ok(AcquiredRecord {
            offset: self.offset,
            delivery_count,
            timestamp: if header.log_append_time {
                header.max_timestamp
            } else {
                self.timestamp
            },
            key: self.key.map(|key| data.slice_ref(key)),
            value: self.value.map(|value| data.slice_ref(value)),
            headers,
        })
    }
}

/// Reads the next record of a batch: every length within the record, the header count bounded by
/// the bytes left, offset and timestamp deltas without overflow.
fn next_record<'a>(buf: &mut &'a [u8], info: &BatchHeader) -> Result<RawRecord<'a>, WireError> {
    const FIELD: &str = "Records";
    let size = usize::try_from(varint(buf)?)
        .map_err(|_| WireError::invalid(FIELD, "negative record size"))?;
    let mut body = take(buf, size)?;
    take(&mut body, 1)?; // attributes
    let timestamp = info
        .base_timestamp
        .checked_add(varlong(&mut body)?)
        .ok_or(WireError::invalid(FIELD, "record timestamp overflows"))?;
    let offset = info
        .base_offset
        .checked_add(i64::from(varint(&mut body)?))
        .ok_or(WireError::invalid(FIELD, "record offset overflows"))?;
    let key = take_nullable(&mut body)?;
    let value = take_nullable(&mut body)?;
    let count = usize::try_from(varint(&mut body)?)
        .map_err(|_| WireError::invalid(FIELD, "negative header count"))?;
    // A header takes at least two bytes (key length, value length).
    if count > body.len() / 2 {
        return Err(WireError::invalid(FIELD, "more headers than bytes"));
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let key_len = usize::try_from(varint(&mut body)?)
            .map_err(|_| WireError::invalid(FIELD, "negative header key length"))?;
        let key = take(&mut body, key_len)?;
        headers.push((key, take_nullable(&mut body)?));
    }
    Ok(RawRecord {
        offset,
        timestamp,
        key,
        value,
        headers,
    })
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
fn take_nullable<'a>(buf: &mut &'a [u8]) -> Result<Option<&'a [u8]>, WireError> {
    match varint(buf)? {
        -1 => Ok(None),
        len => {
            let len = usize::try_from(len)
                .map_err(|_| WireError::invalid("Records", "negative length"))?;
            take(buf, len).map(Some)
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
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

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
            Err(WireError::Invalid { .. })
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

    /// A batch whose records section is `payload` (already compressed with `codec`), with a
    /// valid CRC.
    fn raw_batch(codec: i16, record_count: i32, payload: &[u8]) -> Vec<u8> {
        let mut bytes = batch(&[record(0, "a")], Compression::None);
        bytes.truncate(BATCH_HEADER_LEN);
        bytes.extend_from_slice(payload);
        let len = (bytes.len() - LOG_OVERHEAD) as i32;
        bytes[8..12].copy_from_slice(&len.to_be_bytes());
        patch(&mut bytes, ATTRIBUTES_AT, &codec.to_be_bytes());
        patch(&mut bytes, RECORD_COUNT_AT, &record_count.to_be_bytes());
        bytes
    }

    /// kafka-protocol's snappy decoder reserves whatever a raw block's header claims (here
    /// 4 GiB - 2, from 5 bytes): found by the fuzz harness (`fuzz/regressions/records`).
    #[test]
    fn snappy_length_claim_is_checked_before_reserving() {
        let claim = raw_batch(2, 1, &[0xfe, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x61]);
        let result = acquired_records(&Bytes::from(claim), &[acquired(0, 0, 1)]);
        assert!(
            matches!(result, Err(WireError::Invalid { reason, .. }) if reason.contains("limit")),
            "{result:?}"
        );
        // The same in xerial framing: a block claiming more than the limit.
        let mut xerial = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        xerial.extend_from_slice(&7u32.to_be_bytes());
        xerial.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x61]);
        let claim = raw_batch(2, 1, &xerial);
        assert!(acquired_records(&Bytes::from(claim), &[acquired(0, 0, 1)]).is_err());
    }

    /// Decompression bombs of every codec stop at the limit, with a clear error.
    #[test]
    fn decompression_stops_at_the_limit() {
        use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
        fn compress<C: Compressor<BytesMut, BufMut = BytesMut>>(plain: &[u8]) -> Vec<u8> {
            let mut out = BytesMut::new();
            let result = C::compress(&mut out, |tmp| {
                tmp.extend_from_slice(plain);
                Ok(())
            });
            assert!(result.is_ok());
            out.to_vec()
        }
        let zeros = vec![0u8; 300 * 1024];
        let limit = 256 * 1024;
        for (codec, payload) in [
            (1, compress::<Gzip>(&zeros)),
            (2, compress::<Snappy>(&zeros)),
            (3, compress::<Lz4>(&zeros)),
            (4, compress::<Zstd>(&zeros)),
        ] {
            assert!(
                payload.len() < 20 * 1024,
                "codec {codec}: {}",
                payload.len()
            );
            let bytes = Bytes::from(raw_batch(codec, 1, &payload));
            let result = acquired_records_within(&bytes, &[acquired(0, 0, 1)], limit);
            assert!(
                matches!(&result, Err(WireError::Invalid { reason, .. }) if reason.contains("limit")),
                "codec {codec}: {result:?}"
            );
            // Within the limit the same batch decompresses (and then fails on its records,
            // which are zeros: a record of size 0).
            let result = acquired_records_within(&bytes, &[acquired(0, 0, 1)], 2 * limit);
            assert!(
                matches!(&result, Err(WireError::Truncated { .. })),
                "codec {codec}: {result:?}"
            );
        }
        // Growth never passes the limit: reading 300 KiB capped at 256 KiB fails.
        assert!(read_capped(&zeros[..], limit).is_err());
        assert_eq!(
            read_capped(&zeros[..], zeros.len()).map(|v| v.len()).ok(),
            Some(zeros.len())
        );
    }

    /// An unknown codec, and records that do not decompress, are errors.
    #[test]
    fn unknown_codec_and_garbage_payloads() {
        for codec in 1..=7 {
            let bytes = Bytes::from(raw_batch(codec, 1, b"not compressed at all"));
            assert!(
                acquired_records(&bytes, &[acquired(0, 0, 1)]).is_err(),
                "codec {codec}"
            );
        }
    }

    /// Two headers with the same key are both kept, in order.
    #[test]
    fn duplicate_header_keys_are_kept() {
        let mut value = record(0, "x");
        value.headers.insert(StrBytes::from_static_str("h"), None);
        let mut bytes = batch(&[value], Compression::None);
        // Rename the only header "h" and append a second "h" by hand: kafka-protocol's map
        // cannot hold two.
        let found = decode(&bytes, &[acquired(0, 0, 1)]);
        assert_eq!(found.records[0].headers.len(), 1);
        // The record: length, attributes, timestamp delta, offset delta, key (length, "k"),
        // value (length, "x"), header count, then the header: key (length, "h"), value -1.
        let at = BATCH_HEADER_LEN;
        assert_eq!(bytes[at + 8], 2, "one header (zigzag)");
        bytes[at + 8] = 4; // two headers
        bytes.extend_from_slice(&[0x02, b'h', 0x02, b'v']);
        bytes[at] += 8; // record length, zigzag: 4 more bytes
        let len = (bytes.len() - LOG_OVERHEAD) as i32;
        bytes[8..12].copy_from_slice(&len.to_be_bytes());
        patch(&mut bytes, ATTRIBUTES_AT, &[0, 0]);
        let found = decode(&bytes, &[acquired(0, 0, 1)]);
        let keys: Vec<&str> = found.records[0].headers.iter().map(|(k, _)| &**k).collect();
        assert_eq!(keys, ["h", "h"]);
        assert_eq!(found.records[0].headers[1].1.as_deref(), Some(&b"v"[..]));
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
