//! Arbitrary bytes into the release-channel scanner's parsers: the name
//! classifier, both sidecar parsers and the index builder. Never a panic;
//! a build name that parses prints back to itself; whatever the builder
//! accepts can be decided on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rmm_core::channel::{
    Arch, Artifact, Channel, EntryName, IndexBuilder, Os, Sha256Digest, UpdateQuery,
};

fuzz_target!(|data: &[u8]| {
    // The sidecar parsers take raw bytes.
    let _ = Channel::parse_sidecar(data);
    let _ = Sha256Digest::parse_sidecar(data, "rmm-agent-linux-x86_64-0.7.0");

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = text.parse::<Os>();
    let _ = text.parse::<Channel>();
    let _ = Arch::new(text);
    if let Ok(EntryName::Build(artifact)) = EntryName::parse(text) {
        assert_eq!(
            artifact.file_name(),
            text,
            "a build name prints back to itself"
        );
        assert_eq!(Artifact::parse(text).as_ref(), Ok(&artifact));
    }

    // Lines `name` or `name<TAB>content` into the builder, then decide.
    let mut builder = IndexBuilder::new();
    for line in text.lines() {
        let (name, content) = line.split_once('\t').unwrap_or((line, ""));
        builder.add(name, content.as_bytes());
    }
    let report = builder.finish();
    for release in report.index.releases() {
        assert!(Artifact::parse(release.file_name()).is_ok());
        for channel in [Channel::Stable, Channel::Beta] {
            let query = UpdateQuery::new(release.os(), release.arch().clone(), channel);
            let offered = report.index.decide(&query);
            if channel == Channel::Beta {
                // a fresh beta agent gets the newest build of its target
                assert!(offered.is_some_and(|o| o.version() >= release.version()));
            }
        }
    }
});
