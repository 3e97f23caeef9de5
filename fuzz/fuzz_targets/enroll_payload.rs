//! The enrollment payload (a .tgz fetched from the server) into the agent's
//! bounded bundle parser: any bytes give a bundle or an error, never a
//! panic, and never more than the parser's limits in memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rmm_agent::enroll::parse_bundle(data);
});
