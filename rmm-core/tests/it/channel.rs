//! Release-channel scanner: names, sidecars, ordering, decisions, the
//! directory adapter (real files and symlinks) and atomic promote/demote.

use std::fs;
use std::path::Path;

use proptest::prelude::*;
use rmm_core::channel::{
    Arch, Artifact, Channel, EntryName, IndexBuilder, NameError, Os, PromoteError, RejectReason,
    Rejection, Release, ReleaseIndex, ScanReport, Sha256Digest, SidecarError, SidecarKind,
    UpdateQuery, Version, demote, latest_for_dir, promote, scan_dir, scan_source, set_channel,
};

const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn arch(word: &str) -> Arch {
    Arch::new(word).unwrap()
}

fn version(text: &str) -> Version {
    Version::parse(text).unwrap()
}

fn artifact(os: Os, arch_word: &str, v: &str) -> Artifact {
    Artifact {
        os,
        arch: arch(arch_word),
        version: version(v),
    }
}

// ---------------------------------------------------------------- names

/// What a name should parse to.
#[derive(Debug)]
enum Name {
    Build(Os, &'static str, &'static str),
    Sidecar(Os, &'static str, &'static str, SidecarKind),
    Latest(Os, &'static str),
    Err(NameError),
    /// A `BadVersion` error for this version text (reason not compared).
    BadVersion(&'static str),
}

fn check_name(input: &str, expected: Name) {
    let got = EntryName::parse(input);
    let ok = match (&got, &expected) {
        (Ok(EntryName::Build(a)), Name::Build(os, ar, v)) => *a == artifact(*os, ar, v),
        (Ok(EntryName::Sidecar { artifact: a, kind }), Name::Sidecar(os, ar, v, k)) => {
            *a == artifact(*os, ar, v) && kind == k
        }
        (Ok(EntryName::Latest { os, arch: a }), Name::Latest(eos, ear)) => {
            os == eos && a.as_str() == *ear
        }
        (Err(e), Name::Err(expected)) => e == expected,
        (Err(NameError::BadVersion { version, .. }), Name::BadVersion(v)) => version == v,
        _ => false,
    };
    assert!(ok, "name {input:?}: got {got:?}, expected {expected:?}");
    // A build name always prints back to itself.
    if let Ok(EntryName::Build(a)) = &got {
        assert_eq!(a.file_name(), input);
        assert_eq!(Artifact::parse(input).as_ref(), Ok(a));
    }
}

#[test]
fn names() {
    use Name::*;
    use Os::*;
    use SidecarKind::{Channel as Ch, Sha256 as Sha};
    let long = format!("rmm-agent-linux-x86_64-1.0.0-{}", "a".repeat(240));
    #[rustfmt::skip]
    let cases: Vec<(&str, Name)> = vec![
        // good builds
        ("rmm-agent-linux-x86_64-0.7.0", Build(Linux, "x86_64", "0.7.0")),
        ("rmm-agent-linux-aarch64-0.6.10", Build(Linux, "aarch64", "0.6.10")),
        ("rmm-agent-linux-armv7-1.2.3-beta.1", Build(Linux, "armv7", "1.2.3-beta.1")),
        ("rmm-agent-linux-x86_64-0.7.0-rc-1.x-y", Build(Linux, "x86_64", "0.7.0-rc-1.x-y")),
        ("rmm-agent-windows-x86_64-0.7.0.exe", Build(Windows, "x86_64", "0.7.0")),
        ("rmm-agent-windows-i686-0.7.0-beta.2.exe", Build(Windows, "i686", "0.7.0-beta.2")),
        ("rmm-agent-darwin-aarch64-10.20.30", Build(Darwin, "aarch64", "10.20.30")),
        // sidecars
        ("rmm-agent-linux-x86_64-0.7.0.sha256", Sidecar(Linux, "x86_64", "0.7.0", Sha)),
        ("rmm-agent-linux-x86_64-0.7.0.channel", Sidecar(Linux, "x86_64", "0.7.0", Ch)),
        ("rmm-agent-windows-x86_64-0.7.0.exe.sha256", Sidecar(Windows, "x86_64", "0.7.0", Sha)),
        ("rmm-agent-windows-x86_64-0.7.0.exe.channel", Sidecar(Windows, "x86_64", "0.7.0", Ch)),
        // a reserved suffix always means sidecar, even after a pre-release
        ("rmm-agent-linux-x86_64-0.7.0-rc.sha256", Sidecar(Linux, "x86_64", "0.7.0-rc", Sha)),
        // latest links
        ("rmm-agent-linux-x86_64-latest", Latest(Linux, "x86_64")),
        ("rmm-agent-windows-x86_64-latest.exe", Latest(Windows, "x86_64")),
        ("rmm-agent-darwin-aarch64-latest.sha256", Latest(Darwin, "aarch64")),
        // not ours
        ("README.md", Err(NameError::NotOurs)),
        ("latest", Err(NameError::NotOurs)),
        ("rmm-server-linux-x86_64-0.7.0", Err(NameError::NotOurs)),
        ("RMM-AGENT-linux-x86_64-0.7.0", Err(NameError::NotOurs)),
        (".rmm-channel-tmp-1-0", Err(NameError::NotOurs)),
        ("", Err(NameError::Empty)),
        // path traversal
        ("..", Err(NameError::PathTraversal)),
        (".", Err(NameError::PathTraversal)),
        ("../rmm-agent-linux-x86_64-0.7.0", Err(NameError::PathTraversal)),
        ("rmm-agent-linux-x86_64-0.7.0/..", Err(NameError::PathTraversal)),
        ("rmm-agent-linux-x86_64-0.7.0/x", Err(NameError::PathTraversal)),
        ("/etc/passwd", Err(NameError::PathTraversal)),
        ("..\\rmm-agent-windows-x86_64-0.7.0.exe", Err(NameError::PathTraversal)),
        ("rmm-agent-linux-x86_64-0.7.0\\x", Err(NameError::PathTraversal)),
        ("rmm-agent-linux-x86_64-0.7.0\0", Err(NameError::PathTraversal)),
        ("rmm-agent-linux-x86_64-0.7..0", Err(NameError::PathTraversal)),
        (&long, Err(NameError::TooLong { len: long.len() })),
        // missing parts
        ("rmm-agent-", Err(NameError::MissingPart)),
        ("rmm-agent-linux", Err(NameError::MissingPart)),
        ("rmm-agent-linux-x86_64", Err(NameError::MissingPart)),
        ("rmm-agent-linux-x86_64-", Err(NameError::MissingPart)),
        ("rmm-agent--x86_64-1.0.0", Err(NameError::MissingPart)),
        ("rmm-agent-linux--1.0.0", Err(NameError::MissingPart)),
        // os: canonical words only in names
        ("rmm-agent-macos-aarch64-1.0.0", Err(NameError::UnknownOs { os: "macos".into() })),
        ("rmm-agent-Linux-x86_64-1.0.0", Err(NameError::UnknownOs { os: "Linux".into() })),
        ("rmm-agent-freebsd-x86_64-1.0.0", Err(NameError::UnknownOs { os: "freebsd".into() })),
        // arch
        ("rmm-agent-linux-X86_64-1.0.0", Err(NameError::BadArch { arch: "X86_64".into() })),
        ("rmm-agent-linux-64bit-1.0.0", Err(NameError::BadArch { arch: "64bit".into() })),
        ("rmm-agent-linux-x86.64-1.0.0", Err(NameError::BadArch { arch: "x86.64".into() })),
        ("rmm-agent-linux-x86-64-1.0.0", BadVersion("64-1.0.0")),
        // versions
        ("rmm-agent-linux-x86_64-1.0", BadVersion("1.0")),
        ("rmm-agent-linux-x86_64-v1.0.0", BadVersion("v1.0.0")),
        ("rmm-agent-linux-x86_64-01.0.0", BadVersion("01.0.0")),
        ("rmm-agent-linux-x86_64-1.0.0-", BadVersion("1.0.0-")),
        ("rmm-agent-linux-x86_64-1.0.0-beta.01", BadVersion("1.0.0-beta.01")),
        ("rmm-agent-linux-x86_64-1.0.0 ", BadVersion("1.0.0 ")),
        ("rmm-agent-linux-x86_64-1.0.0+abc", Err(NameError::BuildMetadata { version: "1.0.0+abc".into() })),
        // .exe: required for windows, refused elsewhere
        ("rmm-agent-windows-x86_64-0.7.0", Err(NameError::MissingExe)),
        ("rmm-agent-windows-x86_64-0.7.0.sha256", Err(NameError::MissingExe)),
        ("rmm-agent-linux-x86_64-0.7.0.exe", Err(NameError::UnexpectedExe { os: Linux })),
        ("rmm-agent-darwin-aarch64-0.7.0-beta.exe", Err(NameError::UnexpectedExe { os: Darwin })),
        ("rmm-agent-windows-x86_64-0.7.0.EXE", Err(NameError::MissingExe)),
    ];
    for (input, expected) in cases {
        check_name(input, expected);
    }
}

#[test]
fn artifact_parse_wants_a_build() {
    assert_eq!(
        Artifact::parse("rmm-agent-linux-x86_64-0.7.0.sha256"),
        Err(NameError::NotABuild)
    );
    assert_eq!(
        Artifact::parse("rmm-agent-linux-x86_64-latest"),
        Err(NameError::NotABuild)
    );
    assert_eq!(
        Artifact::new(Os::Windows, arch("x86_64"), version("1.0.0")).map(|a| a.file_name()),
        Ok("rmm-agent-windows-x86_64-1.0.0.exe".to_owned())
    );
}

#[test]
fn os_and_channel_words() {
    for (word, expected) in [
        ("linux", Some(Os::Linux)),
        ("windows", Some(Os::Windows)),
        ("darwin", Some(Os::Darwin)),
        ("macos", Some(Os::Darwin)),
        ("Linux", None),
        ("", None),
    ] {
        assert_eq!(word.parse::<Os>().ok(), expected, "os {word:?}");
    }
    for (word, expected) in [
        ("stable", Some(Channel::Stable)),
        ("beta", Some(Channel::Beta)),
        ("Beta", None),
        (" beta", None),
        ("nightly", None),
    ] {
        assert_eq!(word.parse::<Channel>().ok(), expected, "channel {word:?}");
    }
    assert_eq!(serde_json::to_string(&Channel::Beta).unwrap(), "\"beta\"");
    assert_eq!(
        serde_json::from_str::<Channel>("\"stable\"").unwrap(),
        Channel::Stable
    );
    assert!(serde_json::from_str::<Channel>("\"gamma\"").is_err());
}

// ------------------------------------------------------------- sidecars

fn check_channel_sidecar(content: &[u8], expected: Result<Channel, SidecarError>) {
    assert_eq!(
        Channel::parse_sidecar(content),
        expected,
        "channel sidecar {content:?}"
    );
}

#[test]
fn channel_sidecars() {
    let unknown = |w: &str| Err(SidecarError::UnknownChannel { word: w.into() });
    check_channel_sidecar(b"stable", Ok(Channel::Stable));
    check_channel_sidecar(b"beta", Ok(Channel::Beta));
    check_channel_sidecar(b"beta\n", Ok(Channel::Beta));
    check_channel_sidecar(b"  \tbeta \r\n\n", Ok(Channel::Beta));
    check_channel_sidecar("\u{feff}stable\r\n".as_bytes(), Ok(Channel::Stable));
    check_channel_sidecar(b"", unknown(""));
    check_channel_sidecar(b"  \n", unknown(""));
    check_channel_sidecar(b"BETA", unknown("BETA"));
    check_channel_sidecar(b"betta", unknown("betta"));
    check_channel_sidecar(b"beta\nstable", unknown("beta\nstable"));
    check_channel_sidecar(b"\xff\xfe", Err(SidecarError::NotUtf8));
    check_channel_sidecar(&[b' '; 5000], Err(SidecarError::TooLarge { limit: 4096 }));
}

fn check_sha256_sidecar(content: &str, expected: Result<&str, SidecarError>) {
    let name = "rmm-agent-linux-x86_64-0.7.0";
    let got = Sha256Digest::parse_sidecar(content.as_bytes(), name).map(|d| d.to_string());
    assert_eq!(
        got,
        expected.map(str::to_owned),
        "sha256 sidecar {content:?}"
    );
}

#[test]
fn sha256_sidecars() {
    let upper = DIGEST.to_ascii_uppercase();
    let mismatch = SidecarError::NameMismatch {
        found: "rmm-agent-linux-x86_64-0.6.9".into(),
    };
    #[rustfmt::skip]
    let cases: Vec<(String, Result<&str, SidecarError>)> = vec![
        (DIGEST.into(), Ok(DIGEST)),
        (format!("{DIGEST}\n"), Ok(DIGEST)),
        (format!("  {DIGEST}  \r\n\n"), Ok(DIGEST)),
        (upper.clone(), Ok(DIGEST)),
        // as sha256sum prints it, text and binary mode
        (format!("{DIGEST}  rmm-agent-linux-x86_64-0.7.0\n"), Ok(DIGEST)),
        (format!("{DIGEST} *rmm-agent-linux-x86_64-0.7.0\n"), Ok(DIGEST)),
        (format!("{DIGEST}\trmm-agent-linux-x86_64-0.7.0"), Ok(DIGEST)),
        (format!("{DIGEST}  rmm-agent-linux-x86_64-0.6.9\n"), Err(mismatch)),
        (format!("{DIGEST}\n{DIGEST}\n"), Err(SidecarError::ExtraLines)),
        (String::new(), Err(SidecarError::Empty)),
        (" \n\n".into(), Err(SidecarError::Empty)),
        (DIGEST[..63].into(), Err(SidecarError::BadDigest)),
        (format!("{DIGEST}0"), Err(SidecarError::BadDigest)),
        (format!("{}g", &DIGEST[..63]), Err(SidecarError::BadDigest)),
        ("é".repeat(32), Err(SidecarError::BadDigest)),
        ("x".repeat(5000), Err(SidecarError::TooLarge { limit: 4096 })),
    ];
    for (content, expected) in cases {
        check_sha256_sidecar(&content, expected);
    }
    assert_eq!(
        Sha256Digest::parse_sidecar(b"\xff", "x"),
        Err(SidecarError::NotUtf8)
    );
}

// ---------------------------------------------------------------- index

/// A build for the in-memory fixtures: name, channel sidecar content
/// (`None`: no sidecar), whether it has a sha256 sidecar.
type Entry<'a> = (&'a str, Option<&'a str>, bool);

fn build_report(entries: &[Entry<'_>]) -> ScanReport {
    let mut builder = IndexBuilder::new();
    for (name, channel, sha) in entries {
        builder.add(name, b"");
        if *sha {
            builder.add(&format!("{name}.sha256"), DIGEST.as_bytes());
        }
        if let Some(channel) = channel {
            builder.add(&format!("{name}.channel"), channel.as_bytes());
        }
    }
    builder.finish()
}

fn check_order(versions: &[&str], expected_newest_first: &[&str]) {
    let names: Vec<String> = versions
        .iter()
        .map(|v| format!("rmm-agent-linux-x86_64-{v}"))
        .collect();
    let entries: Vec<Entry<'_>> = names.iter().map(|n| (n.as_str(), None, true)).collect();
    let index = build_report(&entries).index;
    let got: Vec<String> = index
        .releases_for(Os::Linux, &arch("x86_64"))
        .iter()
        .map(|r| r.version().to_string())
        .collect();
    assert_eq!(got, expected_newest_first, "order of {versions:?}");
}

#[test]
fn semver_ordering() {
    check_order(&["0.6.9", "0.6.10"], &["0.6.10", "0.6.9"]);
    check_order(&["0.6.10", "0.6.9", "0.6.1"], &["0.6.10", "0.6.9", "0.6.1"]);
    check_order(
        &["0.99.99", "1.0.0", "0.100.0"],
        &["1.0.0", "0.100.0", "0.99.99"],
    );
    check_order(&["0.7.0", "0.7.0-beta.1"], &["0.7.0", "0.7.0-beta.1"]);
    check_order(
        &[
            "0.7.0-rc.1",
            "0.7.0-beta.10",
            "0.7.0-beta.2",
            "0.7.0-alpha",
            "0.6.99",
        ],
        &[
            "0.7.0-rc.1",
            "0.7.0-beta.10",
            "0.7.0-beta.2",
            "0.7.0-alpha",
            "0.6.99",
        ],
    );
    check_order(
        &["1.0.0-alpha.1", "1.0.0-alpha", "1.0.0-alpha.beta"],
        &["1.0.0-alpha.beta", "1.0.0-alpha.1", "1.0.0-alpha"],
    );
}

/// The decision fixture:
/// - linux/x86_64: 0.6.9 (no sidecar = stable), 0.6.10 (stable),
///   0.7.0-beta.1 and 0.7.0-beta.2 (beta), 0.8.0 (no sha256: never offered),
///   0.6.11 (channel word `gamma`: never offered);
/// - linux/aarch64: 0.9.0-rc.1 (beta), 1.0.0 (stable);
/// - windows/x86_64: 0.9.0.exe (stable), 0.9.1-beta.1.exe (beta).
fn fixture() -> ReleaseIndex {
    let report = build_report(&[
        ("rmm-agent-linux-x86_64-0.6.9", None, true),
        ("rmm-agent-linux-x86_64-0.6.10", Some("stable\n"), true),
        ("rmm-agent-linux-x86_64-0.7.0-beta.1", Some("beta"), true),
        ("rmm-agent-linux-x86_64-0.7.0-beta.2", Some("beta\n"), true),
        ("rmm-agent-linux-x86_64-0.8.0", None, false),
        ("rmm-agent-linux-x86_64-0.6.11", Some("gamma"), true),
        ("rmm-agent-linux-aarch64-0.9.0-rc.1", Some("beta"), true),
        ("rmm-agent-linux-aarch64-1.0.0", Some("stable"), true),
        ("rmm-agent-windows-x86_64-0.9.0.exe", None, true),
        (
            "rmm-agent-windows-x86_64-0.9.1-beta.1.exe",
            Some("beta"),
            true,
        ),
    ]);
    assert_eq!(report.index.len(), 8);
    report.index
}

/// `(os, arch, channel, current, allow_downgrade)`.
type DecisionInput<'a> = (Os, &'a str, Channel, Option<&'a str>, bool);

/// `input` -> the offered file name, if any.
fn check_decision(index: &ReleaseIndex, input: DecisionInput<'_>, expected: Option<&str>) {
    let (os, arch_word, channel, current, allow_downgrade) = input;
    let mut query = UpdateQuery::new(os, arch(arch_word), channel).allow_downgrade(allow_downgrade);
    if let Some(current) = current {
        query = query.current(version(current));
    }
    let got = index.decide(&query).map(Release::file_name);
    assert_eq!(got, expected, "decision for {input:?}");
    if !allow_downgrade {
        let current = query.current.as_ref();
        let plain = index.latest_for(os, &query.arch, channel, current);
        assert_eq!(
            plain.map(Release::file_name),
            expected,
            "latest_for {input:?}"
        );
    }
}

#[test]
fn decisions() {
    use Channel::{Beta, Stable};
    use Os::*;
    let index = fixture();
    let lx = |v: &'static str| Some(v);
    #[rustfmt::skip]
    let cases: &[(DecisionInput<'_>, Option<&str>)] = &[
        // stable agents: newest stable-tagged (or untagged) build
        ((Linux, "x86_64", Stable, None, false), lx("rmm-agent-linux-x86_64-0.6.10")),
        ((Linux, "x86_64", Stable, Some("0.6.9"), false), lx("rmm-agent-linux-x86_64-0.6.10")),
        ((Linux, "x86_64", Stable, Some("0.6.1"), false), lx("rmm-agent-linux-x86_64-0.6.10")),
        // same version: stay
        ((Linux, "x86_64", Stable, Some("0.6.10"), false), None),
        ((Linux, "x86_64", Stable, Some("0.6.10"), true), None),
        // build metadata does not make a version different
        ((Linux, "x86_64", Stable, Some("0.6.10+local.7"), false), None),
        // newer than anything stable (e.g. came from beta): no downgrade...
        ((Linux, "x86_64", Stable, Some("0.7.0-beta.1"), false), None),
        ((Linux, "x86_64", Stable, Some("0.6.11"), false), None),
        // ...unless explicitly requested
        ((Linux, "x86_64", Stable, Some("0.7.0-beta.1"), true), lx("rmm-agent-linux-x86_64-0.6.10")),
        // a release is above its pre-releases
        ((Linux, "x86_64", Stable, Some("0.6.10-rc.1"), false), lx("rmm-agent-linux-x86_64-0.6.10")),
        // beta agents: the absolute newest, whatever its tag
        ((Linux, "x86_64", Beta, None, false), lx("rmm-agent-linux-x86_64-0.7.0-beta.2")),
        ((Linux, "x86_64", Beta, Some("0.6.10"), false), lx("rmm-agent-linux-x86_64-0.7.0-beta.2")),
        ((Linux, "x86_64", Beta, Some("0.7.0-beta.1"), false), lx("rmm-agent-linux-x86_64-0.7.0-beta.2")),
        ((Linux, "x86_64", Beta, Some("0.7.0-beta.2"), false), None),
        // 0.8.0 has no sha256: never offered, so nothing newer for 0.7.0
        ((Linux, "x86_64", Beta, Some("0.7.0"), false), None),
        ((Linux, "x86_64", Beta, Some("0.8.0"), false), None),
        ((Linux, "x86_64", Beta, Some("0.8.0"), true), lx("rmm-agent-linux-x86_64-0.7.0-beta.2")),
        // beta agents also get a stable build when it is the newest
        ((Linux, "aarch64", Beta, Some("0.9.0-rc.1"), false), lx("rmm-agent-linux-aarch64-1.0.0")),
        ((Linux, "aarch64", Stable, Some("0.8.0"), false), lx("rmm-agent-linux-aarch64-1.0.0")),
        // os and arch must match exactly
        ((Windows, "x86_64", Stable, Some("0.8.0"), false), lx("rmm-agent-windows-x86_64-0.9.0.exe")),
        ((Windows, "x86_64", Beta, Some("0.8.0"), false), lx("rmm-agent-windows-x86_64-0.9.1-beta.1.exe")),
        ((Windows, "aarch64", Beta, None, false), None),
        ((Darwin, "x86_64", Beta, None, false), None),
        ((Linux, "riscv64", Stable, None, false), None),
    ];
    for (input, expected) in cases {
        check_decision(&index, *input, *expected);
    }
}

#[test]
fn newest_and_lookup() {
    let index = fixture();
    let x86 = arch("x86_64");
    assert_eq!(
        index
            .newest(Os::Linux, &x86, Channel::Stable)
            .map(|r| r.version().to_string()),
        Some("0.6.10".into())
    );
    let release = index.get("rmm-agent-linux-x86_64-0.7.0-beta.1").unwrap();
    assert_eq!(release.channel(), Channel::Beta);
    assert_eq!(release.sha256().to_string(), DIGEST);
    assert_eq!(release.os(), Os::Linux);
    assert!(index.get("rmm-agent-linux-x86_64-0.8.0").is_none());
    assert!(index.get("../etc/passwd").is_none());
    assert_eq!(index.releases().count(), index.len());

    // insert keeps the order and replaces the same version
    let mut index = index;
    let digest = Sha256Digest::from_bytes([7; 32]);
    let newer = Release::new(
        artifact(Os::Linux, "x86_64", "0.6.12"),
        Channel::Stable,
        digest,
    );
    assert_eq!(index.insert(newer.clone()), None);
    assert_eq!(index.len(), 9);
    assert_eq!(index.newest(Os::Linux, &x86, Channel::Stable), Some(&newer));
    let retagged = Release::new(
        artifact(Os::Linux, "x86_64", "0.6.12"),
        Channel::Beta,
        digest,
    );
    assert_eq!(index.insert(retagged), Some(newer));
    assert_eq!(index.len(), 9);
    assert_eq!(
        index
            .newest(Os::Linux, &x86, Channel::Stable)
            .map(Release::file_name),
        Some("rmm-agent-linux-x86_64-0.6.10")
    );
}

/// `entries` (name, sidecar content) -> the expected rejections and the
/// file names that make it into the index.
fn check_report(
    entries: &[(&str, &str)],
    expected_rejected: &[(&str, RejectReason)],
    expected_index: &[&str],
) {
    let mut builder = IndexBuilder::new();
    for (name, content) in entries {
        builder.add(name, content.as_bytes());
    }
    let report = builder.finish();
    let expected: Vec<Rejection> = expected_rejected
        .iter()
        .map(|(name, reason)| Rejection::new(*name, reason.clone()))
        .collect();
    assert_eq!(report.rejected, expected, "rejections for {entries:?}");
    let mut got: Vec<&str> = report.index.releases().map(Release::file_name).collect();
    got.sort_unstable();
    assert_eq!(got, expected_index, "index for {entries:?}");
}

#[test]
fn report_rules() {
    let b = "rmm-agent-linux-x86_64-0.7.0";
    let sha = format!("{b}.sha256");
    let ch = format!("{b}.channel");
    let bad_channel = RejectReason::BadSidecar {
        kind: SidecarKind::Channel,
    };
    let bad_sha = RejectReason::BadSidecar {
        kind: SidecarKind::Sha256,
    };
    // complete build
    check_report(&[(b, ""), (&sha, DIGEST)], &[], &[b]);
    // missing sha256: not offered
    check_report(
        &[(b, ""), (&ch, "stable")],
        &[(b, RejectReason::MissingSha256)],
        &[],
    );
    // bad channel word: the sidecar and its build are left out (fail closed)
    check_report(
        &[(b, ""), (&sha, DIGEST), (&ch, "gamma")],
        &[
            (b, bad_channel.clone()),
            (
                &ch,
                SidecarError::UnknownChannel {
                    word: "gamma".into(),
                }
                .into(),
            ),
        ],
        &[],
    );
    // bad digest
    check_report(
        &[(b, ""), (&sha, "nope")],
        &[(b, bad_sha.clone()), (&sha, SidecarError::BadDigest.into())],
        &[],
    );
    // digest of another file
    let other = format!("{DIGEST}  rmm-agent-linux-x86_64-0.6.0");
    check_report(
        &[(b, ""), (&sha, &other)],
        &[
            (b, bad_sha),
            (
                &sha,
                SidecarError::NameMismatch {
                    found: "rmm-agent-linux-x86_64-0.6.0".into(),
                }
                .into(),
            ),
        ],
        &[],
    );
    // oversized sidecar
    let huge = "beta ".repeat(1000);
    check_report(
        &[(b, ""), (&sha, DIGEST), (&ch, &huge)],
        &[
            (b, bad_channel),
            (&ch, SidecarError::TooLarge { limit: 4096 }.into()),
        ],
        &[],
    );
    // orphan sidecars
    check_report(
        &[(&sha, DIGEST), (&ch, "beta")],
        &[
            (&ch, RejectReason::OrphanSidecar),
            (&sha, RejectReason::OrphanSidecar),
        ],
        &[],
    );
    // duplicates
    check_report(
        &[(b, ""), (b, ""), (&sha, DIGEST), (&sha, DIGEST)],
        &[
            (b, RejectReason::Duplicate),
            (&sha, RejectReason::Duplicate),
        ],
        &[b],
    );
    // names that are not ours, traversal, latest links (not rejected)
    check_report(
        &[
            ("index.html", ""),
            ("../rmm-agent-linux-x86_64-0.7.0", ""),
            ("rmm-agent-linux-x86_64-latest", ""),
            (b, ""),
            (&sha, DIGEST),
        ],
        &[
            (
                "../rmm-agent-linux-x86_64-0.7.0",
                NameError::PathTraversal.into(),
            ),
            ("index.html", NameError::NotOurs.into()),
        ],
        &[b],
    );
}

#[test]
fn release_serde() {
    let index = fixture();
    let release = index
        .get("rmm-agent-windows-x86_64-0.9.1-beta.1.exe")
        .unwrap();
    let json = serde_json::to_value(release).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "file_name": "rmm-agent-windows-x86_64-0.9.1-beta.1.exe",
            "os": "windows",
            "arch": "x86_64",
            "version": "0.9.1-beta.1",
            "channel": "beta",
            "sha256": DIGEST,
        })
    );
    assert_eq!(
        &serde_json::from_value::<Release>(json.clone()).unwrap(),
        release
    );
    // a release whose file name disagrees with its fields, or is unsafe, is refused
    for (field, value) in [
        ("file_name", "rmm-agent-windows-x86_64-0.9.2.exe"),
        ("file_name", "../../etc/passwd"),
        ("version", "0.9.2"),
        ("arch", "aarch64"),
        ("sha256", "xyz"),
    ] {
        let mut bad = json.clone();
        bad[field] = value.into();
        assert!(
            serde_json::from_value::<Release>(bad).is_err(),
            "{field} = {value}"
        );
    }
}

// ------------------------------------------------- directory adapter

fn write(dir: &Path, name: &str, content: &str) {
    fs::write(dir.join(name), content).unwrap();
}

/// Writes a complete build (file + sha256, optionally a channel sidecar).
fn put_build(dir: &Path, name: &str, channel: Option<&str>) {
    write(dir, name, "binary");
    write(
        dir,
        &format!("{name}.sha256"),
        &format!("{DIGEST}  {name}\n"),
    );
    if let Some(channel) = channel {
        write(dir, &format!("{name}.channel"), channel);
    }
}

#[cfg(unix)]
#[test]
fn scan_real_directory() {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::symlink;

    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret", "beta");
    let secret = outside.path().join("secret");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    put_build(dir, "rmm-agent-linux-x86_64-0.6.9", None);
    put_build(dir, "rmm-agent-linux-x86_64-0.6.10", Some("stable\n"));
    put_build(dir, "rmm-agent-linux-x86_64-0.7.0-beta.1", Some("beta\n"));
    // no sha256
    write(dir, "rmm-agent-linux-x86_64-0.8.0", "binary");
    // unknown channel word
    put_build(dir, "rmm-agent-linux-x86_64-0.6.11", Some("gamma\n"));
    // oversized sidecar
    put_build(dir, "rmm-agent-linux-x86_64-0.6.12", None);
    write(
        dir,
        "rmm-agent-linux-x86_64-0.6.12.channel",
        &" ".repeat(5000),
    );
    // a build that is a symlink pointing outside: refused, never followed
    symlink(&secret, dir.join("rmm-agent-linux-x86_64-9.9.9")).unwrap();
    write(dir, "rmm-agent-linux-x86_64-9.9.9.sha256", DIGEST);
    // a channel sidecar that is a symlink pointing outside
    put_build(dir, "rmm-agent-linux-x86_64-0.6.13", None);
    symlink(&secret, dir.join("rmm-agent-linux-x86_64-0.6.13.channel")).unwrap();
    // a relative symlink climbing out
    symlink(
        "../../../../../etc/hostname",
        dir.join("rmm-agent-linux-x86_64-9.9.8"),
    )
    .unwrap();
    // dangling symlink
    symlink("nowhere", dir.join("rmm-agent-linux-x86_64-9.9.7")).unwrap();
    // a symlink inside the directory: an alias, accepted
    symlink(
        "rmm-agent-linux-x86_64-0.6.10",
        dir.join("rmm-agent-linux-x86_64-0.6.14"),
    )
    .unwrap();
    write(dir, "rmm-agent-linux-x86_64-0.6.14.sha256", DIGEST);
    // latest link (inside): recognised, not a release
    symlink(
        "rmm-agent-linux-x86_64-0.6.10",
        dir.join("rmm-agent-linux-x86_64-latest"),
    )
    .unwrap();
    // latest link pointing outside: refused
    symlink(&secret, dir.join("rmm-agent-darwin-aarch64-latest")).unwrap();
    // a directory with a build's name
    fs::create_dir(dir.join("rmm-agent-linux-x86_64-7.0.0")).unwrap();
    // names that are not ours or unsafe
    write(dir, "README.md", "hello");
    write(dir, "..\\rmm-agent-windows-x86_64-1.0.0.exe", "x");
    let not_utf8 = std::ffi::OsStr::from_bytes(b"rmm-agent-linux-x86_64-1.0.\xff");
    fs::write(dir.join(not_utf8), "x").unwrap();
    // windows build
    put_build(dir, "rmm-agent-windows-x86_64-0.7.0.exe", Some("beta"));

    let report = scan_dir(dir).unwrap();
    let secret_canon = fs::canonicalize(&secret)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let hostname = fs::canonicalize("/etc/hostname")
        .map(|p| p.to_string_lossy().into_owned())
        .ok();
    let mut expected: Vec<(String, RejectReason)> = vec![
        (
            "..\\rmm-agent-windows-x86_64-1.0.0.exe".into(),
            NameError::PathTraversal.into(),
        ),
        ("README.md".into(), NameError::NotOurs.into()),
        (
            "rmm-agent-darwin-aarch64-latest".into(),
            RejectReason::SymlinkOutside {
                target: secret_canon.clone(),
            },
        ),
        (
            "rmm-agent-linux-x86_64-0.6.11".into(),
            RejectReason::BadSidecar {
                kind: SidecarKind::Channel,
            },
        ),
        (
            "rmm-agent-linux-x86_64-0.6.11.channel".into(),
            SidecarError::UnknownChannel {
                word: "gamma".into(),
            }
            .into(),
        ),
        (
            "rmm-agent-linux-x86_64-0.6.12".into(),
            RejectReason::BadSidecar {
                kind: SidecarKind::Channel,
            },
        ),
        (
            "rmm-agent-linux-x86_64-0.6.12.channel".into(),
            SidecarError::TooLarge { limit: 4096 }.into(),
        ),
        (
            "rmm-agent-linux-x86_64-0.6.13".into(),
            RejectReason::BadSidecar {
                kind: SidecarKind::Channel,
            },
        ),
        (
            "rmm-agent-linux-x86_64-0.6.13.channel".into(),
            RejectReason::SymlinkOutside {
                target: secret_canon.clone(),
            },
        ),
        (
            "rmm-agent-linux-x86_64-0.8.0".into(),
            RejectReason::MissingSha256,
        ),
        (
            "rmm-agent-linux-x86_64-1.0.\u{fffd}".into(),
            RejectReason::NotUtf8Name,
        ),
        (
            "rmm-agent-linux-x86_64-7.0.0".into(),
            RejectReason::NotAFile,
        ),
        (
            "rmm-agent-linux-x86_64-9.9.7".into(),
            RejectReason::DanglingSymlink {
                target: "nowhere".into(),
            },
        ),
        (
            "rmm-agent-linux-x86_64-9.9.9".into(),
            RejectReason::SymlinkOutside {
                target: secret_canon,
            },
        ),
        (
            "rmm-agent-linux-x86_64-9.9.9.sha256".into(),
            RejectReason::OrphanSidecar,
        ),
    ];
    match hostname {
        Some(target) => expected.push((
            "rmm-agent-linux-x86_64-9.9.8".into(),
            RejectReason::SymlinkOutside { target },
        )),
        None => expected.push((
            "rmm-agent-linux-x86_64-9.9.8".into(),
            RejectReason::DanglingSymlink {
                target: "../../../../../etc/hostname".into(),
            },
        )),
    }
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    let got: Vec<(String, RejectReason)> = report
        .rejected
        .iter()
        .map(|r| (r.name.clone(), r.reason.clone()))
        .collect();
    assert_eq!(got, expected);

    let mut offered: Vec<(&str, Channel)> = report
        .index
        .releases()
        .map(|r| (r.file_name(), r.channel()))
        .collect();
    offered.sort_unstable();
    assert_eq!(
        offered,
        [
            ("rmm-agent-linux-x86_64-0.6.10", Channel::Stable),
            ("rmm-agent-linux-x86_64-0.6.14", Channel::Stable),
            ("rmm-agent-linux-x86_64-0.6.9", Channel::Stable),
            ("rmm-agent-linux-x86_64-0.7.0-beta.1", Channel::Beta),
            ("rmm-agent-windows-x86_64-0.7.0.exe", Channel::Beta),
        ]
    );
    let latest: Vec<&str> = report
        .latest_links
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(latest, ["rmm-agent-linux-x86_64-latest"]);
    // the outside file was never written to
    assert_eq!(fs::read_to_string(&secret).unwrap(), "beta");

    // the convenience used by the bindings
    let x86 = arch("x86_64");
    let current = version("0.6.9");
    let offer = latest_for_dir(dir, Os::Linux, &x86, Channel::Stable, Some(&current)).unwrap();
    assert_eq!(
        offer.map(|r| r.file_name().to_owned()).as_deref(),
        Some("rmm-agent-linux-x86_64-0.6.14")
    );
    let offer = latest_for_dir(dir, Os::Linux, &x86, Channel::Beta, Some(&current)).unwrap();
    assert_eq!(
        offer.map(|r| r.file_name().to_owned()).as_deref(),
        Some("rmm-agent-linux-x86_64-0.7.0-beta.1")
    );
    assert!(scan_dir(dir.join("missing")).is_err());
}

#[test]
fn promote_and_demote_rewrite_the_sidecar() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let name = "rmm-agent-linux-x86_64-0.7.0";
    let sidecar = dir.join(format!("{name}.channel"));
    put_build(dir, name, None);
    let channel_of = || {
        let report = scan_dir(dir).unwrap();
        assert!(report.rejected.is_empty(), "{:?}", report.rejected);
        report.index.get(name).map(Release::channel)
    };
    assert_eq!(channel_of(), Some(Channel::Stable));

    demote(dir, name).unwrap();
    assert_eq!(fs::read_to_string(&sidecar).unwrap(), "beta\n");
    assert_eq!(channel_of(), Some(Channel::Beta));

    promote(dir, name).unwrap();
    assert_eq!(fs::read_to_string(&sidecar).unwrap(), "stable\n");
    assert_eq!(channel_of(), Some(Channel::Stable));

    set_channel(dir, name, Channel::Beta).unwrap();
    assert_eq!(channel_of(), Some(Channel::Beta));

    // only the build and its two sidecars remain: no temporary files
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            name.to_owned(),
            format!("{name}.channel"),
            format!("{name}.sha256")
        ]
    );
}

/// What `set_channel(dir, name, Stable)` should fail with.
#[derive(Debug)]
enum PromoteFails {
    Name(NameError),
    MissingBuild,
    BadBuild,
}

fn check_promote_error(dir: &Path, name: &str, expected: PromoteFails) {
    let got = set_channel(dir, name, Channel::Stable);
    let ok = match (&got, &expected) {
        (Err(PromoteError::Name { source, .. }), PromoteFails::Name(e)) => source == e,
        (Err(PromoteError::MissingBuild { .. }), PromoteFails::MissingBuild) => true,
        (Err(PromoteError::BadBuild { .. }), PromoteFails::BadBuild) => true,
        _ => false,
    };
    assert!(
        ok,
        "set_channel({name:?}): got {got:?}, expected {expected:?}"
    );
}

#[test]
fn promote_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    put_build(dir, "rmm-agent-linux-x86_64-0.7.0", None);
    fs::create_dir(dir.join("rmm-agent-linux-x86_64-0.7.1")).unwrap();
    check_promote_error(
        dir,
        "../rmm-agent-linux-x86_64-0.7.0",
        PromoteFails::Name(NameError::PathTraversal),
    );
    check_promote_error(
        dir,
        "rmm-agent-linux-x86_64-0.7.0/..",
        PromoteFails::Name(NameError::PathTraversal),
    );
    check_promote_error(dir, "README", PromoteFails::Name(NameError::NotOurs));
    check_promote_error(
        dir,
        "rmm-agent-linux-x86_64-0.7.0.sha256",
        PromoteFails::Name(NameError::NotABuild),
    );
    check_promote_error(
        dir,
        "rmm-agent-linux-x86_64-latest",
        PromoteFails::Name(NameError::NotABuild),
    );
    check_promote_error(
        dir,
        "rmm-agent-linux-x86_64-0.6.0",
        PromoteFails::MissingBuild,
    );
    check_promote_error(dir, "rmm-agent-linux-x86_64-0.7.1", PromoteFails::BadBuild);
    assert!(!dir.join("rmm-agent-linux-x86_64-0.6.0.channel").exists());
    assert!(!dir.join("rmm-agent-linux-x86_64-0.7.1.channel").exists());
}

#[cfg(unix)]
#[test]
fn promote_never_writes_through_symlinks() {
    use std::os::unix::fs::symlink;
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    fs::write(&secret, "beta").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // the build itself pointing outside: refused
    symlink(&secret, dir.join("rmm-agent-linux-x86_64-0.7.0")).unwrap();
    check_promote_error(dir, "rmm-agent-linux-x86_64-0.7.0", PromoteFails::BadBuild);
    // the sidecar pointing outside: the link is replaced, the target untouched
    put_build(dir, "rmm-agent-linux-x86_64-0.7.1", None);
    let sidecar = dir.join("rmm-agent-linux-x86_64-0.7.1.channel");
    symlink(&secret, &sidecar).unwrap();
    promote(dir, "rmm-agent-linux-x86_64-0.7.1").unwrap();
    assert!(
        !fs::symlink_metadata(&sidecar)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read_to_string(&sidecar).unwrap(), "stable\n");
    assert_eq!(fs::read_to_string(&secret).unwrap(), "beta");
}

/// Readers racing a writer that flips the channel see the old or the new
/// sidecar, never a missing, empty or partial one.
#[test]
fn promote_is_atomic_for_concurrent_readers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let name = "rmm-agent-linux-x86_64-0.7.0";
    put_build(&dir, name, Some("stable\n"));
    let sidecar = dir.join(format!("{name}.channel"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let dir = dir.clone();
        std::thread::spawn(move || {
            let mut reads = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads < 10 {
                let content = fs::read(&sidecar).unwrap();
                assert!(Channel::parse_sidecar(&content).is_ok(), "saw {content:?}");
                let report = scan_dir(&dir).unwrap();
                assert!(report.index.get(name).is_some(), "{:?}", report.rejected);
                reads += 1;
            }
            reads
        })
    };
    for i in 0..200 {
        let channel = if i % 2 == 0 {
            Channel::Beta
        } else {
            Channel::Stable
        };
        set_channel(&dir, name, channel).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() >= 10);
}

/// A [`ReleaseSource`](rmm_core::io::ReleaseSource) in memory; `None`
/// content: the entry vanished after listing; `"ERR"`: a read error.
struct Source(Vec<(&'static str, Option<&'static str>)>);

impl rmm_core::io::ReleaseSource for Source {
    fn names(&self) -> std::io::Result<Vec<String>> {
        Ok(self.0.iter().map(|(n, _)| (*n).to_owned()).collect())
    }

    fn read_small(&self, name: &str, max: usize) -> std::io::Result<Option<String>> {
        match self
            .0
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, c)| *c)
        {
            Some("ERR") => Err(std::io::ErrorKind::PermissionDenied.into()),
            Some(c) if c.len() > max => Err(std::io::ErrorKind::InvalidData.into()),
            other => Ok(other.map(str::to_owned)),
        }
    }
}

#[test]
fn scan_a_release_source() {
    let source = Source(vec![
        ("rmm-agent-linux-x86_64-0.7.0", Some("")),
        ("rmm-agent-linux-x86_64-0.7.0.sha256", Some(DIGEST)),
        ("rmm-agent-linux-x86_64-0.7.0.channel", Some("beta\n")),
        ("rmm-agent-linux-x86_64-0.7.1", Some("")),
        ("rmm-agent-linux-x86_64-0.7.1.sha256", Some(DIGEST)),
        ("rmm-agent-linux-x86_64-0.7.1.channel", None),
        ("rmm-agent-linux-x86_64-0.7.2", Some("")),
        ("rmm-agent-linux-x86_64-0.7.2.sha256", Some("ERR")),
        ("notes.txt", Some("")),
    ]);
    let report = scan_source(&source).unwrap();
    let names: Vec<&str> = report.index.releases().map(Release::file_name).collect();
    assert_eq!(names, ["rmm-agent-linux-x86_64-0.7.0"]);
    let unreadable = |kind| RejectReason::Unreadable { kind };
    let expected = vec![
        Rejection::new("notes.txt", NameError::NotOurs.into()),
        Rejection::new(
            "rmm-agent-linux-x86_64-0.7.1",
            RejectReason::BadSidecar {
                kind: SidecarKind::Channel,
            },
        ),
        Rejection::new(
            "rmm-agent-linux-x86_64-0.7.1.channel",
            unreadable(std::io::ErrorKind::NotFound),
        ),
        Rejection::new(
            "rmm-agent-linux-x86_64-0.7.2",
            RejectReason::BadSidecar {
                kind: SidecarKind::Sha256,
            },
        ),
        Rejection::new(
            "rmm-agent-linux-x86_64-0.7.2.sha256",
            unreadable(std::io::ErrorKind::PermissionDenied),
        ),
    ];
    assert_eq!(report.rejected, expected);
}

// ----------------------------------------------------------- properties

fn version_strategy() -> impl Strategy<Value = Version> {
    let pre = prop_oneof![
        Just(String::new()),
        (prop::sample::select(vec!["alpha", "beta", "rc"]), 0u8..12)
            .prop_map(|(w, n)| format!("-{w}.{n}")),
        prop::sample::select(vec!["-alpha", "-beta", "-rc", "-1", "-x-y"]).prop_map(str::to_owned),
    ];
    (0u64..3, 0u64..12, 0u64..12, pre)
        .prop_map(|(ma, mi, pa, pre)| version(&format!("{ma}.{mi}.{pa}{pre}")))
}

/// (version, channel, has sha256)
fn build_strategy() -> impl Strategy<Value = (Version, Channel, bool)> {
    (
        version_strategy(),
        prop::sample::select(vec![Channel::Stable, Channel::Beta]),
        prop::bool::weighted(0.9),
    )
}

proptest! {
    #[test]
    fn ordering_matches_semver(versions in prop::collection::vec(version_strategy(), 0..40)) {
        let index: ReleaseIndex = versions
            .iter()
            .map(|v| Release::new(
                Artifact::new(Os::Linux, arch("x86_64"), v.clone()).unwrap(),
                Channel::Beta,
                Sha256Digest::from_bytes([0; 32]),
            ))
            .collect();
        let mut expected = versions.clone();
        expected.sort_by(|a, b| b.cmp(a));
        expected.dedup();
        let got: Vec<Version> = index
            .releases_for(Os::Linux, &arch("x86_64"))
            .iter()
            .map(|r| r.version().clone())
            .collect();
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(index.len(), expected.len());
    }

    /// `decide` against a naive reference model.
    #[test]
    fn decision_matches_model(
        builds in prop::collection::vec(build_strategy(), 0..30),
        current in prop::option::of(version_strategy()),
        channel in prop::sample::select(vec![Channel::Stable, Channel::Beta]),
        allow_downgrade in any::<bool>(),
    ) {
        // one entry per version (duplicates are covered by `report_rules`)
        let mut seen = std::collections::HashSet::new();
        let builds: Vec<_> = builds.into_iter().filter(|(v, _, _)| seen.insert(v.clone())).collect();
        let mut builder = IndexBuilder::new();
        for (v, ch, sha) in &builds {
            let name = format!("rmm-agent-linux-x86_64-{v}");
            builder.add(&name, b"");
            if *sha {
                builder.add(&format!("{name}.sha256"), DIGEST.as_bytes());
            }
            if *ch == Channel::Beta {
                builder.add(&format!("{name}.channel"), b"beta");
            }
        }
        let index = builder.finish().index;

        let eligible = builds
            .iter()
            .filter(|(_, ch, sha)| *sha && (channel == Channel::Beta || *ch == Channel::Stable))
            .map(|(v, _, _)| v.clone())
            .max();
        let expected = match (eligible, &current) {
            (None, _) => None,
            (Some(best), None) => Some(best),
            (Some(best), Some(cur)) if best > *cur => Some(best),
            (Some(best), Some(cur)) if best < *cur && allow_downgrade => Some(best),
            _ => None,
        };
        let mut query = UpdateQuery::new(Os::Linux, arch("x86_64"), channel).allow_downgrade(allow_downgrade);
        query.current = current;
        let got = index.decide(&query).map(|r| r.version().clone());
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn parse_never_panics(name in "\\PC{0,80}") {
        let _ = EntryName::parse(&name);
        let _ = Channel::parse_sidecar(name.as_bytes());
        let _ = Sha256Digest::parse_sidecar(name.as_bytes(), &name);
        let mut builder = IndexBuilder::new();
        builder.add(&name, name.as_bytes());
        let _ = builder.finish();
    }

    /// Names close to valid ones: parsing never panics, and any build name
    /// that parses prints back to itself.
    #[test]
    fn near_names_round_trip(
        os in prop::sample::select(vec!["linux", "windows", "darwin", "macos", "", "Linux"]),
        arch_word in "[a-z0-9_.-]{0,8}",
        version_text in "[0-9a-z.+-]{0,14}",
        suffix in prop::sample::select(vec!["", ".exe", ".sha256", ".channel", ".exe.sha256", "/..", "\\"]),
    ) {
        let name = format!("rmm-agent-{os}-{arch_word}-{version_text}{suffix}");
        if let Ok(EntryName::Build(artifact)) = EntryName::parse(&name) {
            prop_assert_eq!(artifact.file_name(), name);
        }
    }

    #[test]
    fn artifacts_round_trip(
        os in prop::sample::select(Os::ALL.to_vec()),
        arch_word in "[a-z][a-z0-9_]{0,10}",
        v in version_strategy(),
    ) {
        let artifact = Artifact::new(os, arch(&arch_word), v).unwrap();
        prop_assert_eq!(Artifact::parse(&artifact.file_name()), Ok(artifact.clone()));
        let sidecar = artifact.sidecar_name(SidecarKind::Channel);
        let parsed = EntryName::parse(&sidecar);
        prop_assert_eq!(parsed, Ok(EntryName::Sidecar { artifact, kind: SidecarKind::Channel }));
    }
}
