//! Arbitrary bytes into both frame decoders: never a panic, and whatever
//! decodes must re-encode and decode to the same frame.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rmm_core::protocol::{Codec, Limits};

fuzz_target!(|data: &[u8]| {
    let codec = Codec::new(Limits { max_control: 64 * 1024, max_data: 4096 });
    if let Ok(frame) = codec.decode_message(data) {
        let bytes = codec.encode_to_vec(&frame).expect("a decoded frame re-encodes");
        let again = codec.decode_message(&bytes).expect("a re-encoded frame decodes");
        assert_eq!(again, frame);
    }
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = codec.decode(&mut buf) {}
});
