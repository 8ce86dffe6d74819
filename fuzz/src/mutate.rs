//! Byte-level mutations aimed at binary protocols: bit flips, boundary integers written over
//! length fields (int16, int32, int64 and unsigned varints), inserted, deleted, duplicated and
//! spliced ranges, truncation.

use fastrand::Rng;

/// Integers at the edges of what length and count fields hold.
const INTERESTING: &[i64] = &[
    0,
    1,
    -1,
    2,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x10000,
    0x7fff_ffff,
    -0x8000_0000,
    0x4000_0000,
    0xffff_ffff,
    i64::MAX,
    i64::MIN,
];

/// A boundary value, or a small random one.
fn interesting(rng: &mut Rng) -> i64 {
    if rng.bool() {
        INTERESTING[rng.usize(..INTERESTING.len())]
    } else {
        rng.i64(-300..300)
    }
}

/// An unsigned varint as the protocol writes it.
fn varint(mut value: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(5);
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
    out
}

/// Applies 1 to 4 random mutations to `data`; `others` are material for splicing.
pub fn bytes(rng: &mut Rng, data: &mut Vec<u8>, others: &[Vec<u8>]) {
    for _ in 0..rng.usize(1..=4) {
        one(rng, data, others);
    }
}

fn one(rng: &mut Rng, data: &mut Vec<u8>, others: &[Vec<u8>]) {
    let len = data.len();
    let at = |rng: &mut Rng| if len == 0 { 0 } else { rng.usize(..len) };
    match rng.u8(..13) {
        0 if len > 0 => {
            let i = at(rng);
            data[i] ^= 1 << rng.u8(..8);
        }
        1 if len > 0 => {
            let i = at(rng);
            data[i] = rng.u8(..);
        }
        2 if len > 0 => {
            let i = at(rng);
            data[i] = [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff][rng.usize(..6)];
        }
        3 if len > 0 => {
            let i = at(rng);
            data[i] = data[i]
                .wrapping_add(rng.u8(1..=4))
                .wrapping_sub(if rng.bool() { 0 } else { 8 });
        }
        4..=6 => {
            // Big-endian int16 / int32 / int64 over whatever is there.
            let width = [2usize, 4, 8][usize::from(rng.u8(..3))];
            if len >= width {
                let i = rng.usize(..=len - width);
                let value = interesting(rng).to_be_bytes();
                data[i..i + width].copy_from_slice(&value[8 - width..]);
            }
        }
        7 => {
            // An unsigned varint, replacing one byte or inserted.
            let value = if rng.bool() {
                interesting(rng) as u32
            } else {
                rng.u32(..)
            };
            let i = at(rng);
            let encoded = varint(value);
            if len > 0 && rng.bool() {
                data.splice(i..i + 1, encoded);
            } else {
                data.splice(i..i, encoded);
            }
        }
        8 if len > 0 => {
            let i = at(rng);
            let n = rng.usize(1..=(len - i).min(32));
            data.drain(i..i + n);
        }
        9 if len > 0 => {
            let i = at(rng);
            let n = rng.usize(1..=(len - i).min(64));
            let copy = data[i..i + n].to_vec();
            let j = rng.usize(..=len);
            data.splice(j..j, copy);
        }
        10 if len > 0 => {
            data.truncate(at(rng));
        }
        11 if !others.is_empty() => {
            let other = &others[rng.usize(..others.len())];
            let cut = rng.usize(..=len);
            let from = rng.usize(..=other.len());
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        _ => {
            let i = rng.usize(..=len);
            let n = rng.usize(1..=8);
            let random: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            data.splice(i..i, random);
        }
    }
}

/// Changes an integer a little or to a boundary value.
pub fn int(rng: &mut Rng, value: i64) -> i64 {
    match rng.u8(..4) {
        0 => value.wrapping_add(rng.i64(-3..=3)),
        1 => value.wrapping_neg(),
        _ => interesting(rng),
    }
}
