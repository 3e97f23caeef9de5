//! Adapter from the [`ReleaseSource`] seam (see [`crate::io`]) to the
//! scanner, so drivers and tests can feed a non-filesystem source.

use std::io;

use super::index::{IndexBuilder, RejectReason, ScanReport};
use super::name::EntryName;
use super::sidecar::SIDECAR_LIMIT;
use crate::io::ReleaseSource;

/// Scans a [`ReleaseSource`] into a [`ScanReport`]: like
/// [`scan_dir`](super::scan_dir), minus the symlink checks, which are the
/// source's business. Sidecars are read with [`SIDECAR_LIMIT`]; one that
/// vanished or cannot be read is rejected (and its build with it).
pub fn scan_source<S: ReleaseSource + ?Sized>(source: &S) -> io::Result<ScanReport> {
    let mut builder = IndexBuilder::new();
    for name in source.names()? {
        let entry = match EntryName::parse(&name) {
            Ok(entry) => entry,
            Err(error) => {
                builder.reject(name, error.into());
                continue;
            }
        };
        if !entry.is_sidecar() {
            builder.add_entry(&name, entry, b"");
            continue;
        }
        let limit = usize::try_from(SIDECAR_LIMIT).unwrap_or(usize::MAX);
        match source.read_small(&name, limit) {
            Ok(Some(content)) => builder.add_entry(&name, entry, content.as_bytes()),
            Ok(None) => builder.reject_entry(
                &name,
                &entry,
                RejectReason::Unreadable {
                    kind: io::ErrorKind::NotFound,
                },
            ),
            Err(error) => builder.reject_entry(
                &name,
                &entry,
                RejectReason::Unreadable { kind: error.kind() },
            ),
        }
    }
    Ok(builder.finish())
}
