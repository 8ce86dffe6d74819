//! AFL++ target: `records`.
fn main() {
    shareworker_fuzz_afl::fuzz("records");
}
