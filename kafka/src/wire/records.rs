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
mod tests;
