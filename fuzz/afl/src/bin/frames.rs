//! AFL++ target: `frames`.
fn main() {
    shareworker_fuzz_afl::fuzz("frames");
}
