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
    let fails = |bytes: &[u8]| acquired_records(&Bytes::copy_from_slice(bytes), &ranges).is_err();

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
