//! Shared helpers for podswitch's criterion benchmarks (frame builders used by several benches).
//! The benchmarks themselves live in `benches/benches/*.rs`; run them with
//! `cargo bench -p podswitch-benches` (or `scripts/bench-smoke` for the quick CI mode).
