//! Per-channel state: handshake phase, send credit and buffer, receive
//! window and buffer, EOF / close flags.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use super::ChannelEnd;
use crate::protocol::ChannelKind;

/// Payloads shorter than this are copied into one tail buffer instead of
/// being queued one by one, so a peer sending tiny frames cannot make the
/// bookkeeping (or pinned decode buffers) outgrow the window.
const COALESCE_BELOW: usize = 1024;

/// Where a channel stands in its life, as seen by the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelState {
    /// The peer asked to open it; the driver has not answered yet.
    Requested,
    /// This side asked to open it; the peer has not answered yet.
    Opening,
    /// Open: data flows (subject to EOF and the peer's close).
    Open,
}

/// A snapshot of one channel, for drivers, tests and diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelInfo {
    /// The channel.
    pub channel_id: u32,
    /// What it carries.
    pub kind: ChannelKind,
    /// Its state.
    pub state: ChannelState,
    /// Bytes [`Tunnel::write`](super::Tunnel::write) would accept now.
    pub send_credit: u64,
    /// Bytes accepted by `write` and not yet handed to `poll_transmit`.
    pub send_pending: usize,
    /// Bytes received and not yet read.
    pub readable: usize,
    /// The window this side granted the peer.
    pub recv_window: u32,
    /// Bytes the peer may still send before this side grants more credit.
    pub recv_credit: u64,
    /// This side sent (or queued) EOF.
    pub local_eof: bool,
    /// The peer sent EOF.
    pub peer_eof: bool,
    /// The peer closed the channel (only buffered bytes remain to read).
    pub peer_closed: bool,
}

/// The handshake phase of a protocol entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The peer opened it; awaiting the driver's answer until the deadline.
    Requested { deadline: Option<Instant> },
    /// We opened it; awaiting the peer's answer until the deadline.
    Opening { deadline: Option<Instant> },
    /// Accepted.
    Open,
}

/// One protocol entry. An entry stays after the application saw the
/// channel closed (`visible == false`) until both closes were exchanged, so
/// late frames of it are recognised and it keeps counting toward the cap.
#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) kind: ChannelKind,
    pub(crate) phase: Phase,
    /// Known to the application (it gets `ChannelClosed` when this ends).
    pub(crate) visible: bool,

    // Sending.
    /// Bytes we may still send (granted by the peer minus accepted writes).
    pub(crate) send_credit: u64,
    /// The peer's largest accepted payload.
    pub(crate) peer_max_packet: u32,
    /// Accepted by `write`, not yet framed. Never exceeds the peer's window.
    pub(crate) send_buf: BytesMut,
    /// Listed in the round-robin queue of channels with pending data.
    pub(crate) in_send_queue: bool,
    /// A `write` accepted less than offered: report `Writable` on credit.
    pub(crate) blocked: bool,
    /// The application called `send_eof`.
    pub(crate) local_eof: bool,
    /// EOF to queue once `send_buf` is drained.
    pub(crate) eof_pending: bool,
    /// A graceful close to queue once `send_buf` is drained.
    pub(crate) close_pending: bool,
    /// Our `ChannelClose` is queued (or sent).
    pub(crate) local_close_sent: bool,

    // Receiving.
    /// The window we granted.
    pub(crate) recv_window: u32,
    /// Bytes the peer may still send (`recv_credit + buffered + consumed ==
    /// recv_window` once open).
    pub(crate) recv_credit: u64,
    /// Received, unread, in order: every chunk of `recv_buf`, then
    /// `recv_tail` (small payloads, coalesced).
    pub(crate) recv_buf: VecDeque<Bytes>,
    pub(crate) recv_tail: BytesMut,
    /// Total length of `recv_buf` and `recv_tail`.
    pub(crate) buffered: usize,
    /// Read since the last window adjust.
    pub(crate) consumed: u64,
    /// The peer sent EOF.
    pub(crate) peer_eof: bool,
    /// The peer closed gracefully while bytes were unread: how it ends once
    /// they are read.
    pub(crate) peer_closed: Option<ChannelEnd>,
}

impl Channel {
    /// An entry for a channel we open.
    pub(crate) fn outgoing(kind: ChannelKind, window: u32, deadline: Option<Instant>) -> Self {
        Self::new(kind, Phase::Opening { deadline }, 0, 0, window)
    }

    /// An entry for a channel the peer opens.
    pub(crate) fn incoming(
        kind: ChannelKind,
        peer_window: u32,
        peer_max_packet: u32,
        deadline: Option<Instant>,
    ) -> Self {
        Self::new(
            kind,
            Phase::Requested { deadline },
            peer_window,
            peer_max_packet,
            0,
        )
    }

    fn new(
        kind: ChannelKind,
        phase: Phase,
        send_credit: u32,
        peer_max_packet: u32,
        recv_window: u32,
    ) -> Self {
        Channel {
            kind,
            phase,
            visible: true,
            send_credit: u64::from(send_credit),
            peer_max_packet,
            send_buf: BytesMut::new(),
            in_send_queue: false,
            blocked: false,
            local_eof: false,
            eof_pending: false,
            close_pending: false,
            local_close_sent: false,
            recv_window,
            recv_credit: u64::from(recv_window),
            recv_buf: VecDeque::new(),
            recv_tail: BytesMut::new(),
            buffered: 0,
            consumed: 0,
            peer_eof: false,
            peer_closed: None,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// The open deadline, while the handshake is pending.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Requested { deadline } | Phase::Opening { deadline } => deadline,
            Phase::Open => None,
        }
    }

    /// Sets the receive window once the channel is accepted.
    pub(crate) fn grant(&mut self, window: u32) {
        self.recv_window = window;
        self.recv_credit = u64::from(window);
    }

    /// Drops everything buffered in both directions.
    pub(crate) fn discard(&mut self) {
        self.send_buf.clear();
        self.eof_pending = false;
        self.close_pending = false;
        self.clear_recv();
    }

    /// Drops the unread bytes.
    pub(crate) fn clear_recv(&mut self) {
        self.recv_buf.clear();
        self.recv_tail = BytesMut::new();
        self.buffered = 0;
    }

    /// Buffers a received payload (the caller checked the window).
    pub(crate) fn push(&mut self, payload: Bytes) {
        self.buffered += payload.len();
        if payload.len() < COALESCE_BELOW {
            self.recv_tail.extend_from_slice(&payload);
        } else {
            if !self.recv_tail.is_empty() {
                let tail = self.recv_tail.split().freeze();
                self.recv_buf.push_back(tail);
            }
            self.recv_buf.push_back(payload);
        }
    }

    /// Copies up to `buf.len()` buffered bytes out.
    pub(crate) fn copy_out(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            let Some(front) = self.recv_buf.front_mut() else {
                break;
            };
            let k = front.len().min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&front[..k]);
            front.advance(k);
            if front.is_empty() {
                self.recv_buf.pop_front();
            }
            n += k;
        }
        if self.recv_buf.is_empty() {
            let k = self.recv_tail.len().min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&self.recv_tail[..k]);
            self.recv_tail.advance(k);
            n += k;
        }
        self.buffered = self.buffered.saturating_sub(n);
        n
    }

    /// Takes the next buffered chunk, at most `max` bytes of it.
    pub(crate) fn take_chunk(&mut self, max: usize) -> Option<Bytes> {
        let chunk = match self.recv_buf.front_mut() {
            Some(front) if front.len() <= max => self.recv_buf.pop_front()?,
            Some(front) => front.split_to(max),
            None if self.recv_tail.is_empty() => return None,
            None => {
                let n = self.recv_tail.len().min(max);
                self.recv_tail.split_to(n).freeze()
            }
        };
        self.buffered = self.buffered.saturating_sub(chunk.len());
        Some(chunk)
    }

    pub(crate) fn info(&self, channel_id: u32) -> ChannelInfo {
        ChannelInfo {
            channel_id,
            kind: self.kind,
            state: match self.phase {
                Phase::Requested { .. } => ChannelState::Requested,
                Phase::Opening { .. } => ChannelState::Opening,
                Phase::Open => ChannelState::Open,
            },
            send_credit: self.send_credit,
            send_pending: self.send_buf.len(),
            readable: self.buffered,
            recv_window: self.recv_window,
            recv_credit: self.recv_credit,
            local_eof: self.local_eof,
            peer_eof: self.peer_eof,
            peer_closed: self.peer_closed.is_some(),
        }
    }
}
