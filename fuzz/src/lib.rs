//! Fuzzing of what shareworker reads from a Kafka broker: response frames of every API and
//! version the client sends, the record batches of a ShareFetch partition, and the frame reader.
//!
//! Runs on stable Rust, inside `cargo test` (a short, seeded, reproducible run and the saved
//! regressions: `tests/fuzz.rs`) and from `scripts/fuzz.sh [seconds]` for longer runs. It is a
//! mutational fuzzer without coverage instrumentation, made up for by knowing the formats: it
//! starts from valid responses with every field set, writes boundary integers over length
//! fields, and for record batches mutates the *uncompressed* records and recompresses them with
//! a valid CRC, so that mutations reach the record parser behind every codec. Inputs that give an
//! outcome not seen before join the corpus.
//!
//! Why not libFuzzer (`cargo fuzz`): it needs nightly. AFL++ (through cargo-afl) works on stable
//! and gives coverage feedback; `fuzz/afl` and `scripts/fuzz-afl.sh` run the same targets under
//! it for long runs. CI uses this harness instead because it is deterministic (a fixed seed
//! replays the same inputs), needs nothing installed, and runs as an ordinary test.
//!
//! Every input runs under three guards ([`guard`]): a panic is caught and reported; a single
//! allocation above a bound (64 MiB by default) and an input running past a timeout abort the
//! process after printing the target and the input in hex, ready to be saved under
//! `regressions/<target>/` as a regression.

pub mod guard;
pub mod mutate;
pub mod runner;
pub mod targets;
