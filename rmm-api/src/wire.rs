//! How values are written and read beyond serde's defaults.
//!
//! Timestamps: RFC 3339 in UTC with a `Z`, milliseconds
//! (`2026-11-23T18:00:00.123Z`) or, for the enrollment expiry, whole
//! seconds. Reading takes any RFC 3339 time (chrono's `Deserialize`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

/// `2026-11-23T18:00:00.123Z`.
pub(crate) fn millis<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// [`millis`], or null.
pub(crate) fn millis_opt<S: Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => millis(t, s),
        None => s.serialize_none(),
    }
}

/// `2026-11-23T18:00:00Z`.
pub(crate) fn secs<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// A JSON null read as the type's default (an empty text, `false`, 0):
/// what the client always accepted for texts and flags.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    Ok(<Option<T> as serde::Deserialize>::deserialize(d)?.unwrap_or_default())
}
