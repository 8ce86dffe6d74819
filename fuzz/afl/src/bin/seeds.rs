//! Writes the seeds of every AFL++ target: `seeds <dir>` makes `<dir>/<target>/`.
fn main() -> std::io::Result<()> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "seeds".into()));
    for (name, prefix) in [
        ("records", "records"),
        ("responses", "response/"),
        ("frames", "frames"),
    ] {
        let n = shareworker_fuzz_afl::write_seeds(prefix, &dir.join(name))?;
        println!("{name}: {n} seeds");
    }
    Ok(())
}
