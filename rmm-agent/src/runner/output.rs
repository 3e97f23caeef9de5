//! Turning a child's raw output bytes into capped, valid UTF-8 text.
//!
//! The wire carries output as text whose byte offsets are stable
//! (PROTOCOL.md §5): invalid sequences become U+FFFD and a multi-byte
//! character split across two reads is held back until it is complete, so
//! every chunk handed on is valid UTF-8 and chunk boundaries fall on
//! character boundaries.

/// Incremental lossy UTF-8 decoder.
#[derive(Debug, Default)]
pub struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    /// Decodes `input`, appending complete characters to `out`. An
    /// incomplete sequence at the end is kept for the next call.
    pub fn push(&mut self, input: &[u8], out: &mut String) {
        let joined;
        let mut buf: &[u8] = if self.pending.is_empty() {
            input
        } else {
            let mut v = std::mem::take(&mut self.pending);
            v.extend_from_slice(input);
            joined = v;
            &joined
        };
        loop {
            match std::str::from_utf8(buf) {
                Ok(s) => {
                    out.push_str(s);
                    return;
                }
                Err(e) => {
                    let (valid, rest) = buf.split_at(e.valid_up_to());
                    // `valid` is valid UTF-8 by construction.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            buf = &rest[n..];
                        }
                        None => {
                            self.pending = rest.to_vec();
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Flushes a trailing incomplete sequence as U+FFFD.
    pub fn finish(&mut self, out: &mut String) {
        if !self.pending.is_empty() {
            self.pending.clear();
            out.push('\u{FFFD}');
        }
    }
}

/// A per-stream byte cap on text.
#[derive(Debug, Clone, Copy)]
pub struct OutputCap {
    cap: u64,
    len: u64,
    truncated: bool,
}

impl OutputCap {
    /// A cap of `cap` bytes.
    pub fn new(cap: u64) -> Self {
        OutputCap {
            cap,
            len: 0,
            truncated: false,
        }
    }

    /// The prefix of `text` that still fits, cut on a character boundary;
    /// anything beyond sets the truncated flag.
    pub fn admit<'a>(&mut self, text: &'a str) -> &'a str {
        if self.truncated {
            // Once something was dropped, everything after it is too, so
            // what was kept stays a prefix of the stream.
            return "";
        }
        let room = self.cap.saturating_sub(self.len);
        let mut take = usize::try_from(room).unwrap_or(usize::MAX).min(text.len());
        while !text.is_char_boundary(take) {
            take -= 1;
        }
        if take < text.len() {
            self.truncated = true;
        }
        self.len += take as u64;
        &text[..take]
    }

    /// Bytes admitted so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was admitted.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether output was dropped.
    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(pieces: &[&[u8]]) -> String {
        let mut d = Utf8Decoder::default();
        let mut out = String::new();
        for p in pieces {
            d.push(p, &mut out);
        }
        d.finish(&mut out);
        out
    }

    #[test]
    fn decoder_cases() {
        let check = |pieces: &[&[u8]], expected: &str| {
            assert_eq!(decode_in_pieces(pieces), expected, "{pieces:?}");
        };
        check(&[b"hello"], "hello");
        // "é" = c3 a9 split across reads.
        check(&[b"caf\xc3", b"\xa9!"], "café!");
        // "€" = e2 82 ac split in three.
        check(&[b"\xe2", b"\x82", b"\xac"], "€");
        check(&[b"a\xffb"], "a\u{FFFD}b");
        check(&[b"a\xc3"], "a\u{FFFD}");
        check(&[b"\xc3", b"x"], "\u{FFFD}x");
        check(&[b"", b"ok", b""], "ok");
    }

    #[test]
    fn cap_cuts_on_char_boundary_and_flags() {
        let mut c = OutputCap::new(6);
        assert_eq!(c.admit("abc"), "abc");
        assert_eq!(c.admit("dé"), "dé");
        assert_eq!(c.len(), 6);
        assert!(!c.truncated());
        assert_eq!(c.admit("x"), "");
        assert!(c.truncated());
        let mut c = OutputCap::new(2);
        assert_eq!(c.admit("aé"), "a");
        assert!(c.truncated());
        assert_eq!(c.len(), 1);
        // A character that would still fit after a cut is not kept: the
        // kept text stays a prefix.
        assert_eq!(c.admit("b"), "");
        assert_eq!(c.len(), 1);
    }

    proptest::proptest! {
        /// Decoding in arbitrary pieces equals lossy decoding of the whole,
        /// and the capped text is a char-aligned prefix within the cap.
        #[test]
        fn pieces_decode_like_the_whole(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            cuts in proptest::collection::vec(proptest::prelude::any::<usize>(), 0..8),
            cap in 0u64..600,
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut at = 0;
            for c in cuts {
                pieces.push(&bytes[at..c]);
                at = c;
            }
            pieces.push(&bytes[at..]);
            let got = decode_in_pieces(&pieces);
            proptest::prop_assert_eq!(&got, &String::from_utf8_lossy(&bytes).into_owned());
            let mut c = OutputCap::new(cap);
            let mut kept = String::new();
            for piece in got.split_inclusive(['a', '\u{FFFD}']) {
                kept.push_str(c.admit(piece));
            }
            proptest::prop_assert!(got.starts_with(&kept));
            proptest::prop_assert!(kept.len() as u64 <= cap);
            proptest::prop_assert_eq!(c.len(), kept.len() as u64);
            proptest::prop_assert_eq!(c.truncated(), kept.len() < got.len());
        }
    }
}
