//! The transport rule shared by the server and the agent: plain HTTP is
//! for loopback only (anything else needs TLS or an explicit opt-in).

/// Whether `host` (a URL's host: an IP literal, `[IPv6]` or a name) is
/// loopback: 127.0.0.0/8, `::1` (also IPv4-mapped) or the name
/// `localhost` (any case, one trailing dot allowed). Names that only
/// start with `localhost` or resolve to loopback (`127.0.0.1.nip.io`) are
/// not: what a name resolves to can change.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ip.to_canonical().is_loopback();
    }
    host.strip_suffix('.')
        .unwrap_or(host)
        .eq_ignore_ascii_case("localhost")
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts() {
        for yes in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
            "localhost",
            "LOCALHOST",
            "localhost.",
        ] {
            assert!(is_loopback_host(yes), "{yes}");
        }
        for no in [
            "10.0.0.1",
            "192.0.2.1",
            "rmm.example.com",
            "localhost.evil.com",
            "127.0.0.1.nip.io",
            "0.0.0.0",
            "",
        ] {
            assert!(!is_loopback_host(no), "{no}");
        }
    }
}
