//! Whether the pinned kafka-protocol still needs [`Layout::scan`](super::Layout::scan): its
//! decoders reserve what an array's length prefix claims before reading an element.
//!
//! The test decodes frames of a few bytes that claim half a gigabyte of elements, each in a
//! fresh process (the test binary run again for one case), and reads how far the process's
//! peak virtual memory (`VmPeak`, Linux) rose: reserved memory counts there even though it is
//! never touched. When upstream bounds the reservation by the bytes there are, the peak stays
//! put and the test fails, saying that `layout.rs` can go.

use std::process::Command;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiVersionsResponse, SaslHandshakeResponse, api_versions_response};
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::Checked;

/// What a frame claims: room for this many bytes of elements.
const CLAIMED_BYTES: usize = 512 * 1024 * 1024;
/// The environment variable that makes [`one_case`] run a case (in the child process).
const CASE: &str = "SHAREWORKER_LAYOUT_UPSTREAM_CASE";

/// ApiVersions v3 (flexible): error_code, then api_keys as a compact array whose unsigned varint
/// length (n + 1) claims [`CLAIMED_BYTES`] of elements, and no element.
fn compact_frame() -> Bytes {
    let claimed = CLAIMED_BYTES / size_of::<api_versions_response::ApiVersion>();
    let mut frame = BytesMut::new();
    frame.put_i16(0);
    let mut n = claimed + 1;
    while n >= 0x80 {
        frame.put_u8(u8::try_from(n & 0x7f).unwrap_or(0) | 0x80);
        n >>= 7;
    }
    frame.put_u8(u8::try_from(n).unwrap_or(0));
    frame.freeze()
}

/// SaslHandshake v1 (not flexible): error_code, then mechanisms as an int32-length array
/// claiming [`CLAIMED_BYTES`] of elements, and no element.
fn classic_frame() -> Bytes {
    let claimed = CLAIMED_BYTES / size_of::<StrBytes>();
    let mut frame = BytesMut::new();
    frame.put_i16(0);
    frame.put_i32(i32::try_from(claimed).unwrap_or(i32::MAX));
    frame.freeze()
}

/// The process's peak virtual memory in bytes.
fn vm_peak() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmPeak:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Decodes `frame` as `M` in `version` (it must fail: its elements are missing) and says how
/// far the peak virtual memory rose meanwhile.
fn decode<M: Decodable + Checked>(frame: &Bytes, version: i16) -> usize {
    let scanned = M::LAYOUT.is_none_or(|l| l.scan(frame, version).is_ok());
    assert!(!scanned, "the layout scan let the frame through");
    let before = vm_peak();
    let decoded = M::decode(&mut frame.clone(), version).is_ok();
    let after = vm_peak();
    assert!(!decoded, "a frame without its elements decoded");
    after.saturating_sub(before)
}

/// One case, in the child process the test below starts: prints how far the peak rose.
#[test]
fn one_case() {
    let rose = match std::env::var(CASE).as_deref() {
        Ok("compact") => decode::<ApiVersionsResponse>(&compact_frame(), 3),
        Ok("classic") => decode::<SaslHandshakeResponse>(&classic_frame(), 1),
        // Not in a child: nothing to do.
        _ => return,
    };
    println!("peak rose by {rose} bytes");
}

/// The removal condition of `layout.rs`, checked: this fails once kafka-protocol reserves no
/// more than the bytes there are.
#[cfg(target_os = "linux")]
#[test]
fn kafka_protocol_still_reserves_what_a_length_prefix_claims() {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("the test binary: {e}"));
    // This module's path in the test binary, without the crate's name.
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, rest)| rest);
    let one = format!("{module}::one_case");
    for (case, what, len) in [
        (
            "compact",
            "ApiVersionsResponse v3, compact array",
            compact_frame().len(),
        ),
        (
            "classic",
            "SaslHandshakeResponse v1, int32 array",
            classic_frame().len(),
        ),
    ] {
        let out = Command::new(&exe)
            .args(["--exact", one.as_str(), "--nocapture", "--test-threads=1"])
            .env(CASE, case)
            .output()
            .unwrap_or_else(|e| panic!("{what}: cannot run the test binary again: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{what}: the child failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let rose = stdout
            .lines()
            .find_map(|l| l.split_once("peak rose by ").map(|(_, rest)| rest))
            .and_then(|l| l.split(' ').next()?.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("{what}: the child said nothing: {stdout}"));
        assert!(
            rose >= CLAIMED_BYTES / 2,
            "{what}: decoding a {len}-byte frame that claims {CLAIMED_BYTES} bytes of elements \
             raised the peak virtual memory by {rose} bytes only: the pinned kafka-protocol no \
             longer reserves what a length prefix claims. kafka/wire/layout.rs (and the scan \
             before decoding in conn.rs) can go: see the removal condition in layout.rs's \
             module docs"
        );
    }
}
