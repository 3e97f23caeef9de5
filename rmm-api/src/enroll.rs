//! Enrollment: the bundle request with its rules (agent name, server URL,
//! channel) and the bundle.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Channel, Invalid, chars, wire};

/// Longest enrollment `server_url`, in characters as sent.
pub const MAX_SERVER_URL_CHARS: usize = 2048;
/// Longest agent name, in bytes (a DNS label).
pub const MAX_AGENT_NAME_LEN: usize = 63;
/// An agent name: a DNS label ([`valid_agent_name`]).
pub const AGENT_NAME_PATTERN: &str = "^[a-z0-9][a-z0-9-]{0,62}$";

/// True for a DNS-label-safe agent name: [`AGENT_NAME_PATTERN`].
pub fn valid_agent_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_AGENT_NAME_LEN
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// [`valid_agent_name`], else 422 `invalid_agent_name`.
pub fn check_agent_name(name: &str) -> Result<(), Invalid> {
    if valid_agent_name(name) {
        Ok(())
    } else {
        Err(Invalid::unprocessable(
            "invalid_agent_name",
            format!("agent_name must match {AGENT_NAME_PATTERN}"),
        ))
    }
}

/// The host of `scheme://[userinfo@]host[:port][/...]`, lowercase: after
/// the last `@` of the authority; in brackets, or before the last `:`.
/// `None` when empty.
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// An enrollment's server URL as stored (trailing `/` removed), if it is
/// an absolute `http://` or `https://` URL with a host ([`url_host`]), no
/// whitespace or control character, within [`MAX_SERVER_URL_CHARS`] as
/// sent ([`crate::pattern::server_url`]); else 422 `invalid_server_url`.
///
/// Whether plain `http://` is allowed is the server's setting, not
/// checked here.
pub fn check_server_url(given: &str) -> Result<String, Invalid> {
    let url = given.trim_end_matches('/').to_owned();
    let ok = chars(given) <= MAX_SERVER_URL_CHARS
        && (url.starts_with("http://") || url.starts_with("https://"))
        && url_host(&url).is_some()
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(url)
    } else {
        Err(Invalid::unprocessable(
            "invalid_server_url",
            "server_url must be an absolute http:// or https:// URL",
        ))
    }
}

/// A release channel word (`stable` or `beta`), else 400 `invalid_body`
/// (what the server answers for an unknown word in a body).
pub fn parse_channel(word: &str) -> Result<Channel, Invalid> {
    word.parse().map_err(|e| {
        Invalid::new(
            Invalid::BAD_REQUEST,
            "invalid_body",
            format!("channel: {e}"),
        )
    })
}

/// `POST /api/v1/enroll-bundle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct EnrollRequest {
    /// A DNS label, unique among the agents that are not retired.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$"))]
    pub agent_name: String,
    /// The URL the agent connects to (default: this server's public URL).
    /// Plain `http://` only to a loopback host unless the server runs with
    /// `--insecure-http`; the served description's pattern says which.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::server_url_strict))]
    pub server_url: Option<String>,
    /// Release channel (default `stable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::schema::ChannelWord>))]
    pub channel: Option<Channel>,
}

/// The rules ([`EnrollRequest::validate`]): [`check_agent_name`],
/// [`check_server_url`].
impl EnrollRequest {
    /// A bundle for the agent `agent_name`, with the server's public URL
    /// and the stable channel.
    pub fn new(agent_name: impl Into<String>) -> Self {
        EnrollRequest {
            agent_name: agent_name.into(),
            server_url: None,
            channel: None,
        }
    }

    /// The URL the agent connects to (`None`: the server's public URL).
    #[must_use]
    pub fn server_url(mut self, url: Option<String>) -> Self {
        self.server_url = url;
        self
    }

    /// The release channel (`None`: stable).
    #[must_use]
    pub fn channel(mut self, channel: Option<Channel>) -> Self {
        self.channel = channel;
        self
    }

    /// Checks the rules: 422 `invalid_agent_name`, then
    /// `invalid_server_url` (a given URL; the server checks its default
    /// too, and whether plain `http://` is allowed).
    pub fn validate(&self) -> Result<(), Invalid> {
        check_agent_name(&self.agent_name)?;
        if let Some(url) = &self.server_url {
            check_server_url(url)?;
        }
        Ok(())
    }
}

/// An enrollment bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct EnrollResponse {
    /// One-time token (256 bits, base64url).
    pub token: String,
    /// `curl -fsSL <server>/api/v1/enroll-bundle/<token>.sh | sudo bash`.
    pub command: String,
    /// Token expiry (RFC 3339).
    #[serde(serialize_with = "wire::secs")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub expires_at: DateTime<Utc>,
    /// The agent's id.
    pub agent_id: Uuid,
}

impl EnrollResponse {
    /// The bundle of the agent `agent_id`.
    pub fn new(
        token: impl Into<String>,
        command: impl Into<String>,
        expires_at: DateTime<Utc>,
        agent_id: Uuid,
    ) -> Self {
        EnrollResponse {
            token: token.into(),
            command: command.into(),
            expires_at,
            agent_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names() {
        for ok in ["a", "0", "web-01", "a-", &"z".repeat(MAX_AGENT_NAME_LEN)] {
            assert_eq!(check_agent_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-a", "Web", "a_b", "a.b", "a b", "ü", &"z".repeat(64)] {
            let e = check_agent_name(bad).unwrap_err();
            assert_eq!(
                (e.status, e.code, e.message.as_str()),
                (
                    422,
                    "invalid_agent_name",
                    "agent_name must match ^[a-z0-9][a-z0-9-]{0,62}$"
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn server_urls() {
        for (given, stored) in [
            ("https://rmm.example.com/", "https://rmm.example.com"),
            ("http://127.0.0.1:3001", "http://127.0.0.1:3001"),
            ("https://user@[::1]:8443/x//", "https://user@[::1]:8443/x"),
            ("https://a", "https://a"),
        ] {
            assert_eq!(check_server_url(given), Ok(stored.to_owned()), "{given}");
        }
        let wide = |n: usize| format!("https://{}", "é".repeat(n - "https://".len()));
        assert!(check_server_url(&wide(MAX_SERVER_URL_CHARS)).is_ok());
        for bad in [
            "ftp://x",
            "rmm.example.com",
            "https://",
            "https:///path",
            "https://:443",
            "https://user@",
            "https://a b",
            "https://a\u{85}",
            &wide(MAX_SERVER_URL_CHARS + 1),
        ] {
            let e = check_server_url(bad).unwrap_err();
            assert_eq!((e.status, e.code), (422, "invalid_server_url"), "{bad:?}");
        }
        assert_eq!(
            url_host("http://U@Host.example:80/p"),
            Some("host.example".into())
        );
        assert_eq!(url_host("http://[::1]:80"), Some("::1".into()));
        assert_eq!(url_host("nope"), None);
    }

    #[test]
    fn enroll_request_rules_and_wire_format() {
        let req = EnrollRequest::new("web-01");
        assert_eq!(req.validate(), Ok(()));
        assert_eq!(
            serde_json::to_value(&req).expect("ser"),
            serde_json::json!({"agent_name": "web-01"})
        );
        let req = req
            .server_url(Some("https://rmm.example.com".into()))
            .channel(Some(Channel::Beta));
        assert_eq!(
            serde_json::to_value(&req).expect("ser"),
            serde_json::json!({"agent_name": "web-01", "server_url": "https://rmm.example.com", "channel": "beta"})
        );
        assert_eq!(
            EnrollRequest::new("Web").validate().map_err(|e| e.code),
            Err("invalid_agent_name")
        );
        assert_eq!(
            EnrollRequest::new("web")
                .server_url(Some("ftp://x".into()))
                .validate()
                .map_err(|e| e.code),
            Err("invalid_server_url")
        );
        let read: EnrollRequest =
            serde_json::from_value(serde_json::json!({"agent_name": "a", "channel": null}))
                .expect("null channel");
        assert_eq!(read.channel, None);
        assert!(
            serde_json::from_value::<EnrollRequest>(
                serde_json::json!({"agent_name": "a", "channel": "nightly"})
            )
            .is_err()
        );
    }

    #[test]
    fn channel_words() {
        for (channel, word) in [(Channel::Stable, "stable"), (Channel::Beta, "beta")] {
            assert_eq!(serde_json::to_value(channel).expect("ser"), word);
            assert_eq!(parse_channel(word), Ok(channel));
        }
        let e = parse_channel("nightly").unwrap_err();
        assert_eq!((e.status, e.code), (400, "invalid_body"));
        assert_eq!(
            e.message,
            "channel: unknown channel `nightly` (expected stable or beta)"
        );
    }

    #[test]
    fn bundle_expiry_in_whole_seconds() {
        let at = DateTime::from_timestamp_millis(1_795_456_800_999).expect("in range");
        let b = EnrollResponse::new("t", "curl", at, Uuid::from_u128(1));
        let json = serde_json::to_value(&b).expect("ser");
        assert_eq!(json["expires_at"], "2026-11-23T18:00:00Z");
    }
}
