//! Release channels: which agent build should an agent get? (SPEC §5)
//!
//! The server's downloads directory holds agent builds named
//! `rmm-agent-{os}-{arch}-{version}[.exe]`, each with sidecars
//! `<file>.sha256` (its digest) and `<file>.channel` (`stable` or `beta`),
//! and possibly `latest` links for humans.
//!
//! # Design
//!
//! - [`EntryName::parse`] / [`Artifact::parse`] classify names with a strict
//!   grammar (one spelling per build); [`Channel::parse_sidecar`] and
//!   [`Sha256Digest::parse_sidecar`] parse sidecar contents. All pure, no
//!   panics on any input.
//! - [`IndexBuilder`] joins names and sidecar contents into a
//!   [`ScanReport`]: a [`ReleaseIndex`] of offerable [`Release`]s plus every
//!   entry left out, with a typed [`RejectReason`].
//! - [`ReleaseIndex::latest_for`] / [`ReleaseIndex::decide`] are the
//!   decision: a pure function over the index.
//! - [`scan_dir`], [`latest_for_dir`], [`set_channel`] ([`promote`],
//!   [`demote`]) are the thin `std::fs` adapter; [`scan_source`] feeds the
//!   builder from any [`ReleaseSource`](crate::io::ReleaseSource).
//!
//! # Rules
//!
//! - A **beta** agent gets the absolute newest build for its os/arch,
//!   whatever its tag; a **stable** agent the newest build tagged `stable`.
//!   A build without a `.channel` sidecar is stable.
//! - Versions compare as semantic versions (`0.6.10 > 0.6.9`, `0.7.0-beta.1
//!   < 0.7.0`). An agent is offered nothing when no eligible build is newer
//!   than what it runs: never the same version, never a downgrade unless the
//!   query says [`UpdateQuery::allow_downgrade`].
//! - A build without a valid `.sha256` sidecar is never offered: an agent
//!   verifies the digest before replacing itself, so it could not install
//!   it. A build whose `.channel` sidecar is unreadable or holds an unknown
//!   word is left out too (fail closed: it might have said `beta`).
//!
//! # Naming decisions
//!
//! - os is `linux`, `windows` or `darwin` in names; `macos` is accepted as
//!   an alias only where an agent reports its os ([`Os`]'s `FromStr` and
//!   serde), as Rust's `std::env::consts::OS` says `macos`.
//! - arch is an open, validated word (`x86_64`, `aarch64`, `armv7`, ...),
//!   no aliases.
//! - Windows builds end in `.exe`, and only they do. Names ending in
//!   `.sha256` / `.channel` are always sidecars. Build metadata (`+...`) in
//!   versions is refused.
//! - `rmm-agent-{os}-{arch}-latest[.exe]` (and its sidecars) are `latest`
//!   links: listed in [`ScanReport::latest_links`], never used to decide.
//! - Names with `/`, `\`, NUL or `..`, names not starting with `rmm-agent-`,
//!   and symlinks resolving anywhere but to a file directly in the directory
//!   are rejected and never followed. A symlink to a file directly in the
//!   directory is accepted as an alias of that file.
//! - Sidecars are read with a [`SIDECAR_LIMIT`] and only if the file opened
//!   is the one inspected (same device and inode on Unix); build files are
//!   never opened.
//!
//! Not here yet (SPEC §5 "beyond"): signature sidecars, staged rollout and
//! held-back builds; the public enums are `#[non_exhaustive]` to make room.
//!
//! ```
//! use rmm_core::channel::{Arch, Channel, IndexBuilder, Os};
//! let digest = "ab".repeat(32);
//! let mut builder = IndexBuilder::new();
//! for (version, channel) in [("0.6.9", None), ("0.6.10", None), ("0.7.0-beta.1", Some("beta"))] {
//!     let name = format!("rmm-agent-linux-x86_64-{version}");
//!     builder.add(&name, b"");
//!     builder.add(&format!("{name}.sha256"), digest.as_bytes());
//!     if let Some(channel) = channel {
//!         builder.add(&format!("{name}.channel"), channel.as_bytes());
//!     }
//! }
//! let index = builder.finish().index;
//! let x86_64 = Arch::new("x86_64")?;
//! let current = rmm_core::channel::Version::new(0, 6, 9);
//! let stable = index.latest_for(Os::Linux, &x86_64, Channel::Stable, Some(&current));
//! assert_eq!(stable.map(|r| r.file_name()), Some("rmm-agent-linux-x86_64-0.6.10"));
//! let beta = index.latest_for(Os::Linux, &x86_64, Channel::Beta, Some(&current));
//! assert_eq!(beta.map(|r| r.version().to_string()), Some("0.7.0-beta.1".to_owned()));
//! # Ok::<(), rmm_core::channel::NameError>(())
//! ```

mod fs;
mod index;
mod name;
mod sidecar;
mod source;

pub use fs::{PromoteError, ScanError, demote, latest_for_dir, promote, scan_dir, set_channel};
pub use index::{
    IndexBuilder, LatestLink, RejectReason, Rejection, Release, ReleaseIndex, ScanReport,
    UpdateQuery,
};
pub use name::{
    Arch, Artifact, CHANNEL_SUFFIX, EXE_SUFFIX, EntryName, LATEST, MAX_ARCH_LEN, MAX_NAME_LEN,
    NameError, Os, PREFIX, SHA256_SUFFIX, SidecarKind,
};
/// Semantic version of a build (re-exported from `semver`).
pub use semver::Version;
pub use sidecar::{Channel, SIDECAR_LIMIT, Sha256Digest, SidecarError};
pub use source::scan_source;
