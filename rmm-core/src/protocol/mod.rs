//! The agent <-> server wire protocol.
//!
//! One persistent WebSocket per agent carries two kinds of [`Frame`]:
//!
//! - **control** frames: one JSON-encoded [`Message`] (internally tagged by a
//!   `"type"` field with stable snake_case names), and
//! - **data** frames: raw channel bytes behind a small fixed binary header,
//!   so bulk tunnel traffic is never base64-inflated or JSON-parsed.
//!
//! Every WebSocket binary message holds exactly one frame
//! ([`Codec::decode_message`]); the same framing also works over a plain
//! byte stream ([`Codec::decode`] in the tokio-util style). The full byte
//! layout, the message catalogue and the version-negotiation rules are a
//! public contract documented in `docs/PROTOCOL.md`.
//!
//! Decoding is bounded: the length in a frame header is checked against
//! [`Limits`] before anything is allocated, and malformed input is a
//! [`DecodeError`], never a panic. Message kinds added by a newer peer decode
//! to [`Message::Unknown`], which a receiver ignores.

mod codec;
mod messages;

pub use codec::{
    Codec, DATA_HEADER_LEN, DecodeError, EncodeError, FRAME_HEADER_LEN, Frame, FrameKind, Limits,
};
pub use messages::*;

/// The longest command timeout, in seconds (7 days): the server refuses a
/// larger `timeout_secs` (and 0) with `invalid_timeout`, and clients check
/// against it before submitting. The one definition of the rule.
pub const MAX_COMMAND_TIMEOUT_SECS: u32 = 7 * 86_400;

/// The newest protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The oldest protocol version this build still speaks.
pub const MIN_PROTOCOL_VERSION: u32 = 1;

/// Picks the protocol version two peers will speak: the highest version
/// inside both ranges, or `None` when the ranges do not overlap (the server
/// then answers with an [`Message::Error`] of code `unsupported_protocol`
/// and closes the connection).
pub fn negotiate(ours: VersionRange, theirs: VersionRange) -> Option<u32> {
    let low = ours.min.max(theirs.min);
    let high = ours.max.min(theirs.max);
    (low <= high && ours.min <= ours.max && theirs.min <= theirs.max).then_some(high)
}

impl VersionRange {
    /// The range this build supports: [`MIN_PROTOCOL_VERSION`]..=[`PROTOCOL_VERSION`].
    pub const fn current() -> Self {
        VersionRange {
            min: MIN_PROTOCOL_VERSION,
            max: PROTOCOL_VERSION,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(min: u32, max: u32) -> VersionRange {
        VersionRange { min, max }
    }

    #[test]
    fn negotiation_picks_highest_common_version() {
        let cases = [
            (r(1, 1), r(1, 1), Some(1)),
            (r(1, 3), r(2, 5), Some(3)),
            (r(2, 5), r(1, 3), Some(3)),
            (r(1, 1), r(2, 2), None),
            (r(3, 1), r(1, 3), None),
            (r(1, 4), r(4, 9), Some(4)),
        ];
        for (ours, theirs, expected) in cases {
            assert_eq!(negotiate(ours, theirs), expected, "{ours:?} vs {theirs:?}");
        }
    }
}
