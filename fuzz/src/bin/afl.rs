//! `hadr-fuzz-afl TARGET`: one fuzz target under AFL++.
//!
//! Built and run with `cargo afl` (stable Rust), e.g.
//! `cargo afl build -p hadr-fuzz --features afl --release` then
//! `cargo afl fuzz -i fuzz/corpus/sql -o OUT target/release/hadr-fuzz-afl sql`
//! (docs/security.md §Fuzzing).

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(target) = hadr_fuzz::target(&name) else {
        let names: Vec<&str> = hadr_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("usage: hadr-fuzz-afl TARGET, one of: {}", names.join(", "));
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| {
        target(data);
    });
}
