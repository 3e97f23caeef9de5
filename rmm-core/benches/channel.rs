//! Release-channel scanner benchmarks.
//!
//! - `channel/decide`: the update decision over a 10,000-release index
//!   (target < 10 ms), typical (12 targets) and worst case (one target
//!   where only the oldest build is stable, so a stable query walks all).
//! - `channel/build_index`: building the index from 10,000 entry names
//!   (builds plus sidecars with their contents), no IO.
//! - `channel/scan_dir`: the directory adapter over 10,000 real files.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rmm_core::channel::{
    Arch, Channel, IndexBuilder, Os, ReleaseIndex, UpdateQuery, Version, scan_dir,
};

const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const ARCHES: [&str; 4] = ["x86_64", "aarch64", "armv7", "i686"];

/// Directory entries (name, content) for builds spread over 12 (os, arch)
/// targets, each with a `.sha256`, a third of each target's builds with a
/// `.channel` saying `beta`; stops after `builds` builds or once there are
/// `names` entries.
fn entries(builds: usize, names: usize) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for i in 0..builds {
        if out.len() >= names {
            break;
        }
        let os = Os::ALL[i % 3];
        let arch = ARCHES[(i / 3) % 4];
        let n = i / 12;
        let version = if n % 5 == 4 {
            format!("{}.{}.{}-beta.{}", n / 400, (n / 20) % 20, n % 20, n % 7)
        } else {
            format!("{}.{}.{}", n / 400, (n / 20) % 20, n % 20)
        };
        let exe = if os == Os::Windows { ".exe" } else { "" };
        let name = format!("rmm-agent-{os}-{arch}-{version}{exe}");
        out.push((
            format!("{name}.sha256"),
            format!("{DIGEST}  {name}\n").into_bytes(),
        ));
        if n % 3 == 0 {
            out.push((format!("{name}.channel"), b"beta\n".to_vec()));
        }
        out.push((name, Vec::new()));
    }
    out
}

fn build(entries: &[(String, Vec<u8>)]) -> ReleaseIndex {
    let mut builder = IndexBuilder::new();
    for (name, content) in entries {
        builder.add(name, content);
    }
    builder.finish().index
}

/// 10,000 releases of one target, newest first all beta but the oldest.
fn worst_case() -> ReleaseIndex {
    let mut entries = Vec::new();
    for n in 0..10_000u32 {
        let name = format!(
            "rmm-agent-linux-x86_64-{}.{}.{}",
            n / 1000,
            (n / 10) % 100,
            n % 10
        );
        entries.push((format!("{name}.sha256"), DIGEST.as_bytes().to_vec()));
        if n > 0 {
            entries.push((format!("{name}.channel"), b"beta".to_vec()));
        }
        entries.push((name, Vec::new()));
    }
    build(&entries)
}

fn decide(c: &mut Criterion) {
    let index = build(&entries(10_000, usize::MAX));
    assert_eq!(index.len(), 10_000);
    let worst = worst_case();
    assert_eq!(worst.len(), 10_000);
    let x86 = Arch::new("x86_64").unwrap();
    let current = Version::new(1, 0, 0);

    let mut group = c.benchmark_group("channel/decide");
    group.bench_function("stable_10k", |b| {
        let query =
            UpdateQuery::new(Os::Linux, x86.clone(), Channel::Stable).current(current.clone());
        b.iter(|| black_box(index.decide(black_box(&query))));
    });
    group.bench_function("beta_10k", |b| {
        let query =
            UpdateQuery::new(Os::Windows, x86.clone(), Channel::Beta).current(current.clone());
        b.iter(|| black_box(index.decide(black_box(&query))));
    });
    group.bench_function("stable_10k_worst_case", |b| {
        let query =
            UpdateQuery::new(Os::Linux, x86.clone(), Channel::Stable).current(current.clone());
        b.iter(|| black_box(worst.decide(black_box(&query))));
    });
    group.finish();
}

fn build_index(c: &mut Criterion) {
    let entries = entries(usize::MAX, 10_000);
    let mut group = c.benchmark_group("channel/build_index");
    group.throughput(Throughput::Elements(entries.len() as u64));
    group.bench_function("10k_names", |b| {
        b.iter(|| black_box(build(black_box(&entries))))
    });
    group.finish();
}

fn scan(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let entries = entries(usize::MAX, 10_000);
    for (name, content) in &entries {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let mut group = c.benchmark_group("channel/scan_dir");
    group.sample_size(10);
    group.throughput(Throughput::Elements(entries.len() as u64));
    group.bench_function("10k_files", |b| {
        b.iter(|| {
            let report = scan_dir(dir.path()).unwrap();
            assert!(report.rejected.is_empty());
            black_box(report)
        })
    });
    group.finish();
}

criterion_group!(benches, decide, build_index, scan);
criterion_main!(benches);
