//! The pure frame codec.
//!
//! ```text
//! frame   = kind:u8  length:u32be  body[length]
//! kind    = 0x01 control  -> body is one UTF-8 JSON `Message`
//!         | 0x02 data     -> body is channel_id:u32be  payload[length - 4]
//! ```
//!
//! The length is checked against [`Limits`] before any buffer is allocated
//! or reserved, so a hostile header cannot make the receiver allocate.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::Message;

/// Bytes before the body of every frame: kind (1) + length (4).
pub const FRAME_HEADER_LEN: usize = 5;

/// Bytes before the payload of a data frame: frame header + channel id (4).
pub const DATA_HEADER_LEN: usize = FRAME_HEADER_LEN + 4;

const KIND_CONTROL: u8 = 0x01;
const KIND_DATA: u8 = 0x02;

/// Size limits enforced by the codec, in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest JSON body of a control frame (default 1 MiB).
    pub max_control: usize,
    /// Largest payload of a data frame (default 32 KiB).
    pub max_data: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_control: 1024 * 1024,
            max_data: 32 * 1024,
        }
    }
}

impl Limits {
    /// The largest whole frame (header included) these limits allow; useful
    /// as the WebSocket max-message size.
    pub fn max_frame(&self) -> usize {
        FRAME_HEADER_LEN + self.max_control.max(self.max_data + 4)
    }
}

/// One unit on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A control message.
    Control(Message),
    /// Channel bytes.
    Data {
        /// The channel the bytes belong to.
        channel_id: u32,
        /// The bytes (at most [`Limits::max_data`]).
        payload: Bytes,
    },
}

/// The kind byte of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// `0x01`.
    Control,
    /// `0x02`.
    Data,
}

/// Why bytes could not be decoded into a frame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The kind byte is not one this build knows.
    #[error("unknown frame kind 0x{0:02x}")]
    UnknownKind(u8),
    /// A control frame announced a body over the limit.
    #[error("control message of {len} bytes exceeds the {max}-byte limit")]
    ControlTooLarge {
        /// Announced body length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A data frame announced a payload over the limit.
    #[error("data payload of {len} bytes exceeds the {max}-byte limit")]
    DataTooLarge {
        /// Announced payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A data frame's body is too short to hold a channel id.
    #[error("data frame body of {len} bytes is shorter than its 4-byte channel id")]
    DataTooShort {
        /// The body length.
        len: usize,
    },
    /// A whole message ended before the frame it announced.
    #[error("frame truncated: {needed} more bytes expected")]
    Truncated {
        /// Missing bytes.
        needed: usize,
    },
    /// A whole message held bytes after its frame.
    #[error("{extra} unexpected bytes after the frame")]
    TrailingBytes {
        /// Extra bytes.
        extra: usize,
    },
    /// The control body is not a valid message (bad JSON, missing field,
    /// wrong type, bad enum word).
    #[error("invalid control message: {0}")]
    Json(#[from] serde_json::Error),
}

/// Why a frame could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The control message's JSON is over the limit.
    #[error("control message of {len} bytes exceeds the {max}-byte limit")]
    ControlTooLarge {
        /// Encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is over the limit; split it first.
    #[error("data payload of {len} bytes exceeds the {max}-byte limit")]
    DataTooLarge {
        /// Payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The message could not be serialized.
    #[error("cannot serialize control message: {0}")]
    Json(#[from] serde_json::Error),
}

/// A frame encoder/decoder with fixed [`Limits`]. Stateless and cheap to copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Codec {
    /// The limits enforced.
    pub limits: Limits,
}

impl Codec {
    /// A codec with the given limits.
    pub fn new(limits: Limits) -> Self {
        Codec { limits }
    }

    /// Reads a frame header and validates its length against the limits.
    fn header(&self, bytes: &[u8]) -> Result<Option<(FrameKind, usize)>, DecodeError> {
        let Some(header) = bytes.get(..FRAME_HEADER_LEN) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let kind = match header[0] {
            KIND_CONTROL => {
                if len > self.limits.max_control {
                    return Err(DecodeError::ControlTooLarge {
                        len,
                        max: self.limits.max_control,
                    });
                }
                FrameKind::Control
            }
            KIND_DATA => {
                if len < 4 {
                    return Err(DecodeError::DataTooShort { len });
                }
                if len - 4 > self.limits.max_data {
                    return Err(DecodeError::DataTooLarge {
                        len: len - 4,
                        max: self.limits.max_data,
                    });
                }
                FrameKind::Data
            }
            other => return Err(DecodeError::UnknownKind(other)),
        };
        Ok(Some((kind, len)))
    }

    /// Decodes exactly one frame from a whole message (one WebSocket binary
    /// message). Missing or extra bytes are errors.
    pub fn decode_message(&self, bytes: &[u8]) -> Result<Frame, DecodeError> {
        let Some((kind, len)) = self.header(bytes)? else {
            return Err(DecodeError::Truncated {
                needed: FRAME_HEADER_LEN - bytes.len(),
            });
        };
        let body = &bytes[FRAME_HEADER_LEN..];
        if body.len() < len {
            return Err(DecodeError::Truncated {
                needed: len - body.len(),
            });
        }
        if body.len() > len {
            return Err(DecodeError::TrailingBytes {
                extra: body.len() - len,
            });
        }
        match kind {
            FrameKind::Control => Ok(Frame::Control(serde_json::from_slice(body)?)),
            FrameKind::Data => {
                let channel_id = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                Ok(Frame::Data {
                    channel_id,
                    payload: Bytes::copy_from_slice(&body[4..]),
                })
            }
        }
    }

    /// Decodes the next frame from a byte stream buffer (tokio-util style):
    /// `Ok(None)` when more bytes are needed, consuming the frame's bytes
    /// when one is complete. Data payloads are split off without copying.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        let Some((kind, len)) = self.header(buf)? else {
            return Ok(None);
        };
        if buf.len() < FRAME_HEADER_LEN + len {
            return Ok(None);
        }
        buf.advance(FRAME_HEADER_LEN);
        let mut body = buf.split_to(len);
        match kind {
            FrameKind::Control => Ok(Some(Frame::Control(serde_json::from_slice(&body)?))),
            FrameKind::Data => {
                let channel_id = body.get_u32();
                Ok(Some(Frame::Data {
                    channel_id,
                    payload: body.freeze(),
                }))
            }
        }
    }

    /// Appends the encoding of `frame` to `dst`. Nothing is written when an
    /// error is returned.
    pub fn encode(&self, frame: &Frame, dst: &mut BytesMut) -> Result<(), EncodeError> {
        match frame {
            Frame::Control(msg) => self.encode_control(msg, dst),
            Frame::Data {
                channel_id,
                payload,
            } => self.encode_data(*channel_id, payload, dst),
        }
    }

    /// Appends a control frame holding `msg` to `dst`.
    pub fn encode_control(&self, msg: &Message, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let start = dst.len();
        dst.put_u8(KIND_CONTROL);
        dst.put_u32(0);
        let mut writer = dst.writer();
        let res = serde_json::to_writer(&mut writer, msg);
        let dst = writer.into_inner();
        if let Err(e) = res {
            dst.truncate(start);
            return Err(e.into());
        }
        let len = dst.len() - start - FRAME_HEADER_LEN;
        if len > self.limits.max_control {
            dst.truncate(start);
            return Err(EncodeError::ControlTooLarge {
                len,
                max: self.limits.max_control,
            });
        }
        // `len` <= max_control, which callers keep far below u32::MAX.
        let len32 = u32::try_from(len).map_err(|_| EncodeError::ControlTooLarge {
            len,
            max: self.limits.max_control,
        })?;
        dst[start + 1..start + FRAME_HEADER_LEN].copy_from_slice(&len32.to_be_bytes());
        Ok(())
    }

    /// Appends a data frame to `dst`.
    pub fn encode_data(
        &self,
        channel_id: u32,
        payload: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        if payload.len() > self.limits.max_data {
            return Err(EncodeError::DataTooLarge {
                len: payload.len(),
                max: self.limits.max_data,
            });
        }
        let body_len = u32::try_from(payload.len() + 4).map_err(|_| EncodeError::DataTooLarge {
            len: payload.len(),
            max: self.limits.max_data,
        })?;
        dst.reserve(DATA_HEADER_LEN + payload.len());
        dst.put_u8(KIND_DATA);
        dst.put_u32(body_len);
        dst.put_u32(channel_id);
        dst.put_slice(payload);
        Ok(())
    }

    /// Encodes one frame into a fresh buffer (one WebSocket message).
    pub fn encode_to_vec(&self, frame: &Frame) -> Result<Vec<u8>, EncodeError> {
        let mut buf = BytesMut::new();
        self.encode(frame, &mut buf)?;
        Ok(buf.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Heartbeat, Message};

    fn heartbeat() -> Frame {
        Frame::Control(Message::Heartbeat(Heartbeat { seq: 1, running: 0 }))
    }

    #[test]
    fn stream_decode_waits_for_whole_frame() {
        let codec = Codec::default();
        let bytes = codec.encode_to_vec(&heartbeat()).unwrap();
        let mut buf = BytesMut::new();
        for (i, b) in bytes.iter().enumerate() {
            assert!(codec.decode(&mut buf).unwrap().is_none(), "at byte {i}");
            buf.put_u8(*b);
        }
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(heartbeat()));
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_header_rejected_before_allocation() {
        let codec = Codec::default();
        let mut buf = BytesMut::from(&[KIND_CONTROL, 0xff, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(DecodeError::ControlTooLarge { .. })
        ));
        assert!(buf.capacity() < 64);
        let mut buf = BytesMut::from(&[KIND_DATA, 0x00, 0x01, 0x00, 0x05][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(DecodeError::DataTooLarge { .. })
        ));
    }

    #[test]
    fn failed_encode_writes_nothing() {
        let codec = Codec::new(Limits {
            max_control: 10,
            max_data: 4,
        });
        let mut dst = BytesMut::from(&b"keep"[..]);
        assert!(codec.encode(&heartbeat(), &mut dst).is_err());
        assert!(codec.encode_data(1, b"12345", &mut dst).is_err());
        assert_eq!(&dst[..], b"keep");
    }
}
