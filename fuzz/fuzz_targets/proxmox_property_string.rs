//! Fuzzes the Proxmox property-string parsers (`features`, `rootfs`,
//! `mp[n]`, `net[n]`, disk sizes): never panic, and whatever parses prints
//! in a canonical form that parses and prints identically again.
#![no_main]

use std::fmt::Display;
use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use rmm_proxmox::{DiskSize, LxcFeatures, MountPoint, NetInterface, RootFs};

fn canonical<T>(text: &str)
where
    T: FromStr + Display,
    T::Err: std::fmt::Debug,
{
    if let Ok(value) = text.parse::<T>() {
        let printed = value.to_string();
        let again: T = printed.parse().expect("printed form parses");
        assert_eq!(again.to_string(), printed);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    canonical::<LxcFeatures>(text);
    canonical::<RootFs>(text);
    canonical::<MountPoint>(text);
    canonical::<NetInterface>(text);
    canonical::<DiskSize>(text);
});
