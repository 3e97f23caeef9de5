//! Fuzzes `rmm_proxmox::Upid` parsing: never panics, and whatever parses
//! prints back byte for byte and can be rebuilt from its parts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rmm_proxmox::Upid;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(upid) = text.parse::<Upid>() {
        assert_eq!(upid.to_string(), text);
        let rebuilt = Upid::new(
            upid.node(),
            upid.pid(),
            upid.pstart(),
            upid.starttime(),
            upid.task_type(),
            upid.id(),
            upid.user(),
        )
        .expect("the parts of a parsed upid are valid");
        assert_eq!(rebuilt.node(), upid.node());
        assert_eq!(rebuilt.user(), upid.user());
    }
});
