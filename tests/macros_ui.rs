//! Compile-time diagnostics of `#[shareworker::job]` and `#[shareworker::main]`, pinned by
//! trybuild. The toolchain is pinned in `rust-toolchain.toml` so the `.stderr` files stay stable;
//! after a deliberate change, regenerate them with `TRYBUILD=overwrite` and read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass_*.rs");
    t.compile_fail("ui/job_*.rs");
    t.compile_fail("ui/main_*.rs");
}
