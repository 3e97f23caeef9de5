//! protocol benchmarks.
fn main() {}
