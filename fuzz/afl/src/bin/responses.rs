//! AFL++ target: `response/`.
fn main() {
    shareworker_fuzz_afl::fuzz("response/");
}
