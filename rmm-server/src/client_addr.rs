//! The client address of a request: the TCP peer, or — only when the peer
//! is a configured trusted reverse proxy — the address that proxy put in
//! the configured header (`X-Forwarded-For` by default). A header from any
//! other peer is ignored, so a client cannot choose its own address for
//! the login throttle, the audit log or an agent's recorded address.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

use crate::AppState;
use crate::error::ApiError;

/// Parses one hop of a forwarding header: `ip`, `ip:port` or `[ip6]:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = hop.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse().ok())
}

/// The client address: `peer` unless `peer` is trusted, then the right-most
/// hop of `header` that is not itself a trusted proxy. A malformed hop ends
/// the walk at the last trusted address seen.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet], header: &str) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut current = peer;
    let values: Vec<&str> = headers
        .get_all(header)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for hop in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        match parse_hop(hop) {
            Some(ip) if is_trusted(&ip) => current = ip,
            Some(ip) => return ip,
            None => return current,
        }
    }
    current
}

/// Extractor: the request's client address (see [`client_ip`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .ok_or_else(|| ApiError::internal("no peer address on the request"))?;
        Ok(ClientIp(client_ip(
            peer,
            &parts.headers,
            &state.config.trusted_proxies,
            &state.config.client_ip_header,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(peer: &str, header: &[&str], trusted: &[&str], want: &str) {
        let mut headers = HeaderMap::new();
        for h in header {
            headers.append("x-forwarded-for", h.parse().unwrap());
        }
        let trusted: Vec<IpNet> = trusted
            .iter()
            .map(|t| {
                t.parse()
                    .unwrap_or_else(|_| IpNet::from(t.parse::<IpAddr>().unwrap()))
            })
            .collect();
        let got = client_ip(peer.parse().unwrap(), &headers, &trusted, "x-forwarded-for");
        assert_eq!(
            got,
            want.parse::<IpAddr>().unwrap(),
            "{peer} {header:?} {trusted:?}"
        );
    }

    #[test]
    fn only_trusted_proxies_are_believed() {
        // no trusted proxy: the header is ignored
        check("192.0.2.1", &["198.51.100.7"], &[], "192.0.2.1");
        // an untrusted peer cannot spoof
        check("192.0.2.1", &["198.51.100.7"], &["10.0.0.0/8"], "192.0.2.1");
        // a trusted proxy: the right-most untrusted hop
        check(
            "10.0.0.2",
            &["198.51.100.7"],
            &["10.0.0.0/8"],
            "198.51.100.7",
        );
        check(
            "10.0.0.2",
            &["203.0.113.9, 198.51.100.7, 10.0.0.5"],
            &["10.0.0.0/8"],
            "198.51.100.7",
        );
        // a client-supplied left part cannot win
        check(
            "10.0.0.2",
            &["1.2.3.4", "198.51.100.7"],
            &["10.0.0.0/8"],
            "198.51.100.7",
        );
        // ports and brackets
        check(
            "10.0.0.2",
            &["198.51.100.7:5555"],
            &["10.0.0.2"],
            "198.51.100.7",
        );
        check(
            "10.0.0.2",
            &["[2001:db8::1]:443"],
            &["10.0.0.2"],
            "2001:db8::1",
        );
        check("10.0.0.2", &["2001:db8::1"], &["10.0.0.2"], "2001:db8::1");
        // missing or malformed: the proxy itself
        check("10.0.0.2", &[], &["10.0.0.2"], "10.0.0.2");
        check("10.0.0.2", &["garbage"], &["10.0.0.2"], "10.0.0.2");
        check(
            "10.0.0.2",
            &["198.51.100.7, 10.0.0.3, junk"],
            &["10.0.0.0/8"],
            "10.0.0.2",
        );
        // all hops trusted: the left-most
        check("10.0.0.2", &["10.0.0.9"], &["10.0.0.0/8"], "10.0.0.9");
    }
}
