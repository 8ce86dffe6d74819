//! What is fuzzed, and how inputs for it are made.
//!
//! - `response/<Api>/v<N>`: a response frame (header and body) of every API and version the
//!   client sends, decoded as a connection decodes it (the layout scan, kafka-protocol or our own
//!   codec; for ShareFetch also every partition's record batches). Seeds: valid responses with
//!   every field set; inputs: byte mutations of the corpus.
//! - `records`: the record batches of a ShareFetch partition and its acquired ranges, sorted as
//!   the session sorts them. Inputs are made two ways: structure-aware (a batch is kept as its
//!   header fields and its *uncompressed* records; those are mutated, then compressed with the
//!   batch's codec and given a valid CRC, so the mutations reach the record parser behind every
//!   codec), and byte mutations of the corpus with the CRCs fixed afterwards. Seeds include
//!   decompression bombs of every codec and a raw snappy block claiming 4 GiB.
//! - `frames`: a byte stream read as size-prefixed frames, as a connection reads its socket.
//! - `unguarded/...` (only with `--unguarded`, never in CI): kafka-protocol's own decoders
//!   without our checks, to show what the checks prevent. They abort the process.

use bytes::{BufMut, Bytes, BytesMut};
use fastrand::Rng;
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
use shareworker_kafka::__fuzz;

use crate::mutate;

/// The decompression limit the targets run with: small, so that bombs are cheap to refuse (the
/// client's own limit, [`__fuzz::MAX_DECOMPRESSED`], is checked by a regression test).
pub const MAX_DECOMPRESSED: usize = 1024 * 1024;

/// A fuzz target.
pub trait Target {
    /// Its name, as in `regressions/` and on the command line.
    fn name(&self) -> &str;
    /// Valid inputs to start from.
    fn seeds(&self) -> Vec<Vec<u8>>;
    /// A new input, made from the corpus (or the target's own structured corpus).
    fn generate(&mut self, rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8>;
    /// Runs the code under test on `input`: a short description of what came out, or the error.
    fn run(&self, input: &[u8]) -> Result<String, String>;
    /// The last generated input was kept in the corpus (it gave a new outcome).
    fn kept(&mut self) {}
}

/// Every target: guarded ones, plus with `unguarded` kafka-protocol's raw decoders.
pub fn all(unguarded: bool) -> Vec<Box<dyn Target>> {
    let samples = __fuzz::samples();
    let mut targets: Vec<Box<dyn Target>> = Vec::new();
    for api in __fuzz::apis() {
        for version in api.min..=api.max {
            let seeds: Vec<Vec<u8>> = samples
                .iter()
                .filter(|(key, v, _)| *key == api.key && *v == version)
                .map(|(_, _, frame)| frame.clone())
                .collect();
            targets.push(Box::new(Response {
                name: format!("response/{}/v{version}", api.name),
                key: api.key,
                version,
                seeds: seeds.clone(),
                unguarded: false,
            }));
            if unguarded && ![78, 79, 90].contains(&api.key) {
                targets.push(Box::new(Response {
                    name: format!("unguarded/{}/v{version}", api.name),
                    key: api.key,
                    version,
                    seeds,
                    unguarded: true,
                }));
            }
        }
    }
    targets.push(Box::new(Records::new(false)));
    if unguarded {
        targets.push(Box::new(Records::new(true)));
    }
    targets.push(Box::new(Frames {
        seeds: frame_seeds(&samples),
    }));
    targets
}

/// A response of one API and version.
struct Response {
    name: String,
    key: i16,
    version: i16,
    seeds: Vec<Vec<u8>>,
    unguarded: bool,
}

impl Target for Response {
    fn name(&self) -> &str {
        &self.name
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        self.seeds.clone()
    }

    fn generate(&mut self, rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
        let mut input = corpus[rng.usize(..corpus.len())].clone();
        mutate::bytes(rng, &mut input, corpus);
        input
    }

    fn run(&self, input: &[u8]) -> Result<String, String> {
        let frame = Bytes::copy_from_slice(input);
        if !self.unguarded {
            return __fuzz::decode_response(self.key, self.version, frame, MAX_DECOMPRESSED);
        }
        // Header as the client reads it, then kafka-protocol's decoder on the body.
        let header_len = match __fuzz::response_header_version(self.key, self.version) {
            0 => 4,
            _ => 5,
        };
        if frame.len() < header_len {
            return Err("short".into());
        }
        __fuzz::decode_body_unguarded(self.key, self.version, frame.slice(header_len..))
            .map(|()| String::new())
    }
}

/// Size-prefixed frames.
struct Frames {
    seeds: Vec<Vec<u8>>,
}

fn frame_seeds(samples: &[(i16, i16, Vec<u8>)]) -> Vec<Vec<u8>> {
    let mut stream = Vec::new();
    for (_, _, frame) in samples.iter().take(3) {
        stream.put_i32(frame.len() as i32);
        stream.put_slice(frame);
    }
    vec![
        stream,
        vec![0, 0, 0, 4, 0, 0, 0, 1],
        vec![0x10, 0, 0, 0, 0, 0, 0, 1],
        vec![0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1],
    ]
}

impl Target for Frames {
    fn name(&self) -> &str {
        "frames"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        self.seeds.clone()
    }

    fn generate(&mut self, rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
        let mut input = corpus[rng.usize(..corpus.len())].clone();
        mutate::bytes(rng, &mut input, corpus);
        input
    }

    fn run(&self, input: &[u8]) -> Result<String, String> {
        __fuzz::read_frames(input).map(|n| n.to_string())
    }
}

/// Offsets inside a record batch v2.
const BATCH_HEADER_LEN: usize = 61;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;

/// A record batch as the structure-aware mutator sees it: header fields and uncompressed records.
#[derive(Debug, Clone)]
struct BatchSpec {
    base_offset: i64,
    leader_epoch: i32,
    magic: u8,
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    record_count: i32,
    /// The records section, uncompressed.
    plaintext: Vec<u8>,
    /// A byte of the compressed records to flip after compression: (position, xor).
    corrupt: Option<(usize, u8)>,
    bad_crc: bool,
}

impl BatchSpec {
    /// Reads an uncompressed batch v2 (as kafka-protocol's encoder writes it).
    fn parse(batch: &[u8]) -> Option<Self> {
        if batch.len() < BATCH_HEADER_LEN {
            return None;
        }
        let int = |at: usize, width: usize| {
            let mut value = 0i64;
            for byte in &batch[at..at + width] {
                value = (value << 8) | i64::from(*byte);
            }
            value
        };
        Some(Self {
            base_offset: int(0, 8),
            leader_epoch: int(12, 4) as i32,
            magic: batch[16],
            attributes: int(21, 2) as i16,
            last_offset_delta: int(23, 4) as i32,
            base_timestamp: int(27, 8),
            max_timestamp: int(35, 8),
            producer_id: int(43, 8),
            producer_epoch: int(51, 2) as i16,
            base_sequence: int(53, 4) as i32,
            record_count: int(57, 4) as i32,
            plaintext: batch[BATCH_HEADER_LEN..].to_vec(),
            corrupt: None,
            bad_crc: false,
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        let payload = compress(self.attributes & 0x7, &self.plaintext);
        let mut payload = payload.unwrap_or_else(|| self.plaintext.clone());
        if let Some((at, xor)) = self.corrupt
            && !payload.is_empty()
        {
            let at = at % payload.len();
            payload[at] ^= xor.max(1);
        }
        let start = out.len();
        out.put_i64(self.base_offset);
        out.put_i32((BATCH_HEADER_LEN - 12 + payload.len()) as i32);
        out.put_i32(self.leader_epoch);
        out.put_u8(self.magic);
        out.put_u32(0); // CRC, below
        out.put_i16(self.attributes);
        out.put_i32(self.last_offset_delta);
        out.put_i64(self.base_timestamp);
        out.put_i64(self.max_timestamp);
        out.put_i64(self.producer_id);
        out.put_i16(self.producer_epoch);
        out.put_i32(self.base_sequence);
        out.put_i32(self.record_count);
        out.put_slice(&payload);
        let mut crc = crc32c::crc32c(&out[start + ATTRIBUTES_AT..]);
        if self.bad_crc {
            crc ^= 1;
        }
        out[start + CRC_AT..start + CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Compresses with Kafka codec `codec` (kafka-protocol's compressors); `None` for none or an
/// unknown codec.
fn compress(codec: i16, plain: &[u8]) -> Option<Vec<u8>> {
    fn with<C: Compressor<BytesMut, BufMut = BytesMut>>(plain: &[u8]) -> Option<Vec<u8>> {
        let mut out = BytesMut::new();
        C::compress(&mut out, |tmp| {
            tmp.put_slice(plain);
            Ok(())
        })
        .ok()?;
        Some(out.to_vec())
    }
    match codec {
        1 => with::<Gzip>(plain),
        2 => with::<Snappy>(plain),
        3 => with::<Lz4>(plain),
        4 => with::<Zstd>(plain),
        _ => None,
    }
}

/// The records of a partition and its acquired ranges, structured.
#[derive(Debug, Clone)]
struct RecordsSpec {
    ranges: Vec<(i64, i64, i16)>,
    batches: Vec<BatchSpec>,
    /// Bytes cut off the end (a partial last batch, as a size-limited fetch returns).
    cut: usize,
}

impl RecordsSpec {
    fn encode(&self) -> Vec<u8> {
        let mut records = Vec::new();
        for batch in &self.batches {
            batch.write(&mut records);
        }
        records.truncate(records.len().saturating_sub(self.cut));
        encode_input(&self.ranges, &records)
    }

    fn mutate(&mut self, rng: &mut Rng) {
        for _ in 0..rng.usize(1..=3) {
            let n = self.batches.len();
            match rng.u8(..12) {
                0 | 1 if n > 0 => {
                    let batch = &mut self.batches[rng.usize(..n)];
                    mutate::bytes(rng, &mut batch.plaintext, &[]);
                }
                2 if n > 0 => {
                    let batch = &mut self.batches[rng.usize(..n)];
                    match rng.u8(..9) {
                        0 => batch.base_offset = mutate::int(rng, batch.base_offset),
                        1 => {
                            batch.last_offset_delta =
                                mutate::int(rng, batch.last_offset_delta.into()) as i32;
                        }
                        2 => {
                            batch.record_count = mutate::int(rng, batch.record_count.into()) as i32;
                        }
                        3 => batch.base_timestamp = mutate::int(rng, batch.base_timestamp),
                        4 => batch.max_timestamp = mutate::int(rng, batch.max_timestamp),
                        5 => batch.magic = rng.u8(..4),
                        6 => batch.attributes ^= 1 << rng.u8(..7),
                        7 => batch.producer_id = mutate::int(rng, batch.producer_id),
                        _ => {
                            batch.leader_epoch = mutate::int(rng, batch.leader_epoch.into()) as i32
                        }
                    }
                }
                3 if n > 0 => {
                    // Another codec (5..7 do not exist).
                    let batch = &mut self.batches[rng.usize(..n)];
                    batch.attributes = (batch.attributes & !0x7) | i16::from(rng.u8(..8));
                }
                4 if n > 0 => {
                    let batch = &mut self.batches[rng.usize(..n)];
                    batch.corrupt = Some((rng.usize(..1 << 16), rng.u8(..)));
                }
                5 if n > 0 => {
                    let i = rng.usize(..n);
                    self.batches[i].bad_crc = !self.batches[i].bad_crc;
                }
                6 if n > 0 => {
                    let copy = self.batches[rng.usize(..n)].clone();
                    self.batches.insert(rng.usize(..=n), copy);
                }
                7 if n > 1 => {
                    self.batches.remove(rng.usize(..n));
                }
                8 if n > 1 => {
                    self.batches.swap(rng.usize(..n), rng.usize(..n));
                }
                9 => self.cut = if rng.bool() { 0 } else { rng.usize(..80) },
                10 if !self.ranges.is_empty() => {
                    let i = rng.usize(..self.ranges.len());
                    let range = &mut self.ranges[i];
                    match rng.u8(..3) {
                        0 => range.0 = mutate::int(rng, range.0),
                        1 => range.1 = mutate::int(rng, range.1),
                        _ => range.2 = mutate::int(rng, range.2.into()) as i16,
                    }
                }
                _ => {
                    if rng.bool() || self.ranges.is_empty() {
                        let first = rng.i64(-2..40);
                        self.ranges
                            .push((first, first + rng.i64(0..20), rng.i16(1..6)));
                    } else {
                        self.ranges.remove(rng.usize(..self.ranges.len()));
                    }
                }
            }
        }
    }
}

/// The input format of the records target: a count, that many ranges (first and last offset,
/// delivery count; big-endian), then the records bytes.
fn encode_input(ranges: &[(i64, i64, i16)], records: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + ranges.len() * 18 + records.len());
    out.put_u8(ranges.len().min(255) as u8);
    for &(first, last, count) in ranges.iter().take(255) {
        out.put_i64(first);
        out.put_i64(last);
        out.put_i16(count);
    }
    out.put_slice(records);
    out
}

/// The inverse of [`encode_input`], lenient: ranges that do not fit are dropped.
fn decode_input(input: &[u8]) -> (Vec<(i64, i64, i16)>, &[u8]) {
    let Some((&count, mut rest)) = input.split_first() else {
        return (Vec::new(), input);
    };
    let mut ranges = Vec::new();
    for _ in 0..count {
        if rest.len() < 18 {
            break;
        }
        let (range, tail) = rest.split_at(18);
        let int = |bytes: &[u8]| bytes.iter().fold(0i64, |v, b| (v << 8) | i64::from(*b));
        ranges.push((
            int(&range[..8]),
            int(&range[8..16]),
            int(&range[16..]) as i16,
        ));
        rest = tail;
    }
    (ranges, rest)
}

/// Recomputes the CRC of every complete batch v2 in `records`.
fn fix_crcs(records: &mut [u8]) {
    let mut at = 0;
    while records.len() - at >= BATCH_HEADER_LEN {
        let len = i32::from_be_bytes([
            records[at + 8],
            records[at + 9],
            records[at + 10],
            records[at + 11],
        ]);
        let Ok(len) = usize::try_from(len) else {
            return;
        };
        let end = at + 12 + len;
        if len < BATCH_HEADER_LEN - 12 || end > records.len() {
            return;
        }
        let crc = crc32c::crc32c(&records[at + ATTRIBUTES_AT..end]);
        records[at + CRC_AT..at + CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        at = end;
    }
}

/// The records of a ShareFetch partition.
struct Records {
    unguarded: bool,
    /// Structured inputs: the seeds, and those that gave new outcomes.
    specs: Vec<RecordsSpec>,
    /// The last structured input generated, until it is kept or replaced.
    last: Option<RecordsSpec>,
}

impl Records {
    fn new(unguarded: bool) -> Self {
        let mut specs = Vec::new();
        for codec in 0..=4u8 {
            let bytes = __fuzz::sample_records(0);
            let mut batches = Vec::new();
            let mut at = 0;
            while at + 12 <= bytes.len() {
                let len = i32::from_be_bytes([
                    bytes[at + 8],
                    bytes[at + 9],
                    bytes[at + 10],
                    bytes[at + 11],
                ]) as usize;
                if let Some(mut batch) = BatchSpec::parse(&bytes[at..at + 12 + len]) {
                    batch.attributes = (batch.attributes & !0x7) | i16::from(codec);
                    batches.push(batch);
                }
                at += 12 + len;
            }
            specs.push(RecordsSpec {
                ranges: vec![(0, 3, 1), (5, 9, 2)],
                batches,
                cut: 0,
            });
        }
        // A control batch (a transaction marker) between data.
        if let Some(mut spec) = specs.first().cloned() {
            if let Some(batch) = spec.batches.first_mut() {
                batch.attributes |= 1 << 5 | 1 << 4;
            }
            specs.push(spec);
        }
        Self {
            unguarded,
            specs,
            last: None,
        }
    }
}

/// Batches whose records decompress to `size` zero bytes: one per codec.
fn bombs(size: usize) -> Vec<Vec<u8>> {
    let zeros = vec![0u8; size];
    let mut out = Vec::new();
    for codec in 1..=4i16 {
        let Some(payload) = compress(codec, &zeros) else {
            continue;
        };
        let batch = BatchSpec {
            base_offset: 0,
            leader_epoch: 0,
            magic: 2,
            attributes: codec,
            last_offset_delta: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: 1,
            plaintext: Vec::new(),
            corrupt: None,
            bad_crc: false,
        };
        // Written uncompressed, then the payload swapped for the compressed zeros.
        let mut records = Vec::new();
        batch.write(&mut records);
        records.truncate(BATCH_HEADER_LEN);
        records.extend_from_slice(&payload);
        let len = (records.len() - 12) as i32;
        records[8..12].copy_from_slice(&len.to_be_bytes());
        fix_crcs(&mut records);
        out.push(encode_input(&[(0, 0, 1)], &records));
    }
    out
}

/// A raw snappy block whose header claims 4 GiB - 2 of output.
fn snappy_claims_4_gib() -> Vec<u8> {
    let mut records = Vec::new();
    let batch = BatchSpec {
        base_offset: 0,
        leader_epoch: 0,
        magic: 2,
        attributes: 2,
        last_offset_delta: 0,
        base_timestamp: 0,
        max_timestamp: 0,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: 1,
        plaintext: Vec::new(),
        corrupt: None,
        bad_crc: false,
    };
    batch.write(&mut records);
    records.truncate(BATCH_HEADER_LEN);
    records.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x61]);
    let len = (records.len() - 12) as i32;
    records[8..12].copy_from_slice(&len.to_be_bytes());
    fix_crcs(&mut records);
    encode_input(&[(0, 0, 1)], &records)
}

impl Target for Records {
    fn name(&self) -> &str {
        if self.unguarded {
            "unguarded/records"
        } else {
            "records"
        }
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let mut seeds: Vec<Vec<u8>> = self.specs.iter().map(RecordsSpec::encode).collect();
        seeds.extend(bombs(4 * MAX_DECOMPRESSED));
        seeds.push(snappy_claims_4_gib());
        seeds
    }

    fn generate(&mut self, rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
        if rng.u8(..10) < 7 {
            let mut spec = self.specs[rng.usize(..self.specs.len())].clone();
            spec.mutate(rng);
            let input = spec.encode();
            self.last = Some(spec);
            return input;
        }
        self.last = None;
        let parent = &corpus[rng.usize(..corpus.len())];
        let (mut ranges, records) = decode_input(parent);
        let mut records = records.to_vec();
        if rng.u8(..5) == 0 {
            let mut encoded = encode_input(&ranges, &[]);
            mutate::bytes(rng, &mut encoded, &[]);
            ranges = decode_input(&encoded).0;
        } else {
            mutate::bytes(rng, &mut records, &[]);
        }
        if rng.u8(..5) != 0 {
            fix_crcs(&mut records);
        }
        encode_input(&ranges, &records)
    }

    fn run(&self, input: &[u8]) -> Result<String, String> {
        let (ranges, records) = decode_input(input);
        let records = Bytes::copy_from_slice(records);
        if self.unguarded {
            return __fuzz::decode_records_unguarded(records).map(|n| n.to_string());
        }
        // Counts as none, one or many: distinct shapes of result join the corpus (the runner
        // blanks digits).
        let bucket = |n: usize| match n {
            0 => "none",
            1 => "one",
            _ => "many",
        };
        __fuzz::acquired_records(records, &ranges, MAX_DECOMPRESSED).map(
            |(records, gaps, missing)| {
                format!(
                    "records {} gaps {} missing {}",
                    bucket(records),
                    bucket(gaps),
                    bucket(missing)
                )
            },
        )
    }

    fn kept(&mut self) {
        if let Some(spec) = self.last.take()
            && self.specs.len() < 512
        {
            self.specs.push(spec);
        }
    }
}
