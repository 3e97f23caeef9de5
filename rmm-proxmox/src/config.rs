//! Client configuration: a JSON file with environment overrides.
//!
//! ```json
//! {
//!   "url": "https://pve1.example.net:8006",
//!   "token_id": "rmm@pve!automation",
//!   "token_secret": "3f1c...-....",
//!   "fingerprint": "AB:CD:...:EF",
//!   "node": "pve1"
//! }
//! ```
//!
//! Every field can be overridden by an environment variable (an empty value
//! counts as unset):
//!
//! | field                 | variable                        |
//! |-----------------------|---------------------------------|
//! | `url`                 | `RMM_PVE_URL`                   |
//! | `token_id`            | `RMM_PVE_TOKEN_ID`              |
//! | `token_secret`        | `RMM_PVE_TOKEN_SECRET`          |
//! | `token_secret_file`   | `RMM_PVE_TOKEN_SECRET_FILE`     |
//! | `fingerprint`         | `RMM_PVE_FINGERPRINT`           |
//! | `ca_file`             | `RMM_PVE_CA_FILE`               |
//! | `insecure`            | `RMM_PVE_INSECURE`              |
//! | `node`                | `RMM_PVE_NODE`                  |
//! | `timeout_secs`        | `RMM_PVE_TIMEOUT_SECS`          |
//! | `connect_timeout_secs`| `RMM_PVE_CONNECT_TIMEOUT_SECS`  |
//! | `retries`             | `RMM_PVE_RETRIES`               |
//! | `privileged`          | `RMM_PVE_PRIVILEGED`            |
//!
//! TLS: `fingerprint` pins the leaf certificate, `ca_file` trusts a CA,
//! `insecure: true` disables verification (logged), and with none of them
//! the system trust store is used. At most one may be given.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::tls::{Fingerprint, TlsMode};

/// A configuration problem; the message names the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The io error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid JSON of the expected shape.
    #[error("invalid config json{}: {source}", path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Parse {
        /// The file, if read from one.
        path: Option<PathBuf>,
        /// The parse error (names unknown fields).
        #[source]
        source: serde_json::Error,
    },
    /// A required field is missing.
    #[error("config field `{field}` is missing; set it in the config file or via {env}")]
    Missing {
        /// The field.
        field: &'static str,
        /// The environment variable that can provide it.
        env: &'static str,
    },
    /// A field has an invalid value.
    #[error("config field `{field}` is invalid: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// An API token id, `USER@REALM!TOKENID`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenId(String);

fn realm_like(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && s.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

impl TokenId {
    /// Validates `USER@REALM!TOKENID` like Proxmox's `pve-tokenid` format.
    pub fn new(id: &str) -> Result<TokenId, ConfigError> {
        let bad = || {
            invalid(
                "token_id",
                format!("`{id}` is not of the form USER@REALM!TOKENID (e.g. rmm@pve!automation)"),
            )
        };
        let (userid, token) = id.rsplit_once('!').ok_or_else(bad)?;
        let (user, realm) = userid.rsplit_once('@').ok_or_else(bad)?;
        let user_ok = !user.is_empty()
            && user.len() <= 60
            && !user
                .chars()
                .any(|c| c.is_whitespace() || c == ':' || c == '/');
        if !user_ok || !realm_like(realm) || !realm_like(token) {
            return Err(bad());
        }
        Ok(TokenId(id.to_owned()))
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `USER@REALM` part.
    pub fn user(&self) -> &str {
        self.0.rsplit_once('!').map(|(u, _)| u).unwrap_or(&self.0)
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({:?})", self.0)
    }
}

/// An API token secret. `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret(String);

impl TokenSecret {
    /// Wraps a secret, rejecting empty ones and characters that cannot go
    /// into an HTTP header.
    pub fn new(secret: impl Into<String>) -> Result<TokenSecret, ConfigError> {
        let secret = secret.into();
        let secret = secret.trim().to_owned();
        if secret.is_empty() {
            return Err(invalid("token_secret", "must not be empty"));
        }
        if secret
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || !c.is_ascii())
        {
            return Err(invalid(
                "token_secret",
                "must be printable ascii without spaces (it is usually a uuid)",
            ));
        }
        Ok(TokenSecret(secret))
    }

    /// The secret itself. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(<redacted>)")
    }
}

impl fmt::Display for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An API token: id and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// `USER@REALM!TOKENID`.
    pub id: TokenId,
    /// The secret.
    pub secret: TokenSecret,
}

impl ApiToken {
    /// Parses and validates both parts.
    pub fn new(id: &str, secret: &str) -> Result<ApiToken, ConfigError> {
        Ok(ApiToken {
            id: TokenId::new(id)?,
            secret: TokenSecret::new(secret)?,
        })
    }

    /// The `Authorization` header value. Contains the secret.
    pub fn authorization_header(&self) -> String {
        format!("PVEAPIToken={}={}", self.id, self.secret.expose())
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiToken({}=<redacted>)", self.id)
    }
}

impl fmt::Display for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=<redacted>", self.id)
    }
}

/// How the privileged backend runs host commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PrivilegedMode {
    /// No privileged backend.
    #[default]
    Disabled,
    /// Run commands directly (the process is root).
    Direct,
    /// Run commands through `sudo -n`.
    Sudo,
}

/// A validated client configuration.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// Base URL, e.g. `https://pve1.example.net:8006` (no trailing slash, no
    /// `/api2/json`).
    pub url: String,
    /// The API token.
    pub token: ApiToken,
    /// Certificate trust.
    pub tls: TlsMode,
    /// Node used when a tool needs one and none is given.
    pub node: Option<String>,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
    /// Timeout for establishing a connection.
    pub connect_timeout: Duration,
    /// Retries of idempotent requests and connect failures.
    pub retries: u32,
    /// Privileged backend mode.
    pub privileged: PrivilegedMode,
}

/// The file format; every field optional so the environment can fill in.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    url: Option<String>,
    token_id: Option<String>,
    token_secret: Option<String>,
    token_secret_file: Option<PathBuf>,
    fingerprint: Option<String>,
    ca_file: Option<PathBuf>,
    insecure: Option<bool>,
    node: Option<String>,
    timeout_secs: Option<u64>,
    connect_timeout_secs: Option<u64>,
    retries: Option<u32>,
    privileged: Option<String>,
}

/// Validates a base URL and normalizes it.
pub(crate) fn normalize_url(url: &str) -> Result<String, ConfigError> {
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|e| invalid("url", format!("`{url}` is not a url: {e}")))?;
    if parsed.scheme() != "https" {
        return Err(invalid(
            "url",
            format!("`{url}` must use https (the proxmox api is https-only)"),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("url", format!("`{url}` has no host")));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid(
            "url",
            format!("`{url}` must not have a query or fragment"),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            "url",
            "must not contain credentials; use token_id/token_secret",
        ));
    }
    let path = parsed.path().trim_end_matches('/');
    let path = path.strip_suffix("/api2/json").unwrap_or(path);
    if !path.is_empty() {
        return Err(invalid(
            "url",
            format!("`{url}` must be just scheme, host and port (e.g. https://pve1:8006)"),
        ));
    }
    let mut base = format!("https://{}", parsed.host_str().unwrap_or_default());
    if let Some(port) = parsed.port() {
        base.push_str(&format!(":{port}"));
    }
    Ok(base)
}

/// Validates a node name (`pve-node` format).
pub(crate) fn valid_node_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

impl Config {
    /// A configuration with defaults: system roots, 30 s timeout, 10 s
    /// connect timeout, 2 retries, no privileged backend.
    pub fn new(url: &str, token_id: &str, token_secret: &str) -> Result<Config, ConfigError> {
        Ok(Config {
            url: normalize_url(url)?,
            token: ApiToken::new(token_id, token_secret)?,
            tls: TlsMode::SystemRoots,
            node: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retries: 2,
            privileged: PrivilegedMode::Disabled,
        })
    }

    /// Loads `path` (if given) and applies the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with_env(path, |k| std::env::var(k).ok())
    }

    /// Loads `path` (if given) and applies overrides from `env`, a lookup
    /// function (for tests and embedding).
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?;
                serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: Some(p.to_owned()),
                    source,
                })?
            }
            None => RawConfig::default(),
        };
        Config::from_raw(raw, &env)
    }

    /// Parses JSON text and applies overrides from `env`.
    pub fn from_json_with_env(
        json: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw = serde_json::from_str(json)
            .map_err(|source| ConfigError::Parse { path: None, source })?;
        Config::from_raw(raw, &env)
    }

    fn from_raw(
        mut raw: RawConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let parse_bool = |field: &'static str, v: String| {
            crate::propstring::parse_bool(v.trim())
                .ok_or_else(|| invalid(field, format!("`{v}` is not a boolean (true/false/1/0)")))
        };
        let parse_num = |field: &'static str, v: String| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| invalid(field, format!("`{v}` is not a non-negative integer")))
        };
        if let Some(v) = get("RMM_PVE_URL") {
            raw.url = Some(v);
        }
        if let Some(v) = get("RMM_PVE_TOKEN_ID") {
            raw.token_id = Some(v);
        }
        if let Some(v) = get("RMM_PVE_TOKEN_SECRET") {
            raw.token_secret = Some(v);
        }
        if let Some(v) = get("RMM_PVE_TOKEN_SECRET_FILE") {
            raw.token_secret_file = Some(v.into());
        }
        if let Some(v) = get("RMM_PVE_FINGERPRINT") {
            raw.fingerprint = Some(v);
        }
        if let Some(v) = get("RMM_PVE_CA_FILE") {
            raw.ca_file = Some(v.into());
        }
        if let Some(v) = get("RMM_PVE_INSECURE") {
            raw.insecure = Some(parse_bool("insecure", v)?);
        }
        if let Some(v) = get("RMM_PVE_NODE") {
            raw.node = Some(v);
        }
        if let Some(v) = get("RMM_PVE_TIMEOUT_SECS") {
            raw.timeout_secs = Some(parse_num("timeout_secs", v)?);
        }
        if let Some(v) = get("RMM_PVE_CONNECT_TIMEOUT_SECS") {
            raw.connect_timeout_secs = Some(parse_num("connect_timeout_secs", v)?);
        }
        if let Some(v) = get("RMM_PVE_RETRIES") {
            let n = parse_num("retries", v)?;
            raw.retries = Some(u32::try_from(n).map_err(|_| invalid("retries", "too large"))?);
        }
        if let Some(v) = get("RMM_PVE_PRIVILEGED") {
            raw.privileged = Some(v);
        }

        let url = raw.url.ok_or(ConfigError::Missing {
            field: "url",
            env: "RMM_PVE_URL",
        })?;
        let token_id = raw.token_id.ok_or(ConfigError::Missing {
            field: "token_id",
            env: "RMM_PVE_TOKEN_ID",
        })?;
        let secret = match (raw.token_secret, raw.token_secret_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "token_secret_file",
                    "give either token_secret or token_secret_file, not both",
                ));
            }
            (Some(s), None) => s,
            (None, Some(file)) => std::fs::read_to_string(&file).map_err(|e| {
                invalid(
                    "token_secret_file",
                    format!("cannot read {}: {e}", file.display()),
                )
            })?,
            (None, None) => {
                return Err(ConfigError::Missing {
                    field: "token_secret",
                    env: "RMM_PVE_TOKEN_SECRET",
                });
            }
        };
        let mut config = Config::new(&url, &token_id, &secret)?;

        let insecure = raw.insecure.unwrap_or(false);
        config.tls = match (raw.fingerprint, raw.ca_file, insecure) {
            (Some(_), Some(_), _) => {
                return Err(invalid(
                    "fingerprint",
                    "give either fingerprint or ca_file, not both",
                ));
            }
            (Some(_), None, true) | (None, Some(_), true) => {
                return Err(invalid(
                    "insecure",
                    "insecure cannot be combined with fingerprint or ca_file",
                ));
            }
            (Some(fp), None, false) => TlsMode::Pinned(
                fp.parse::<Fingerprint>()
                    .map_err(|e| invalid("fingerprint", e.to_string()))?,
            ),
            (None, Some(ca), false) => {
                if !ca.is_file() {
                    return Err(invalid(
                        "ca_file",
                        format!("{} is not a readable file", ca.display()),
                    ));
                }
                TlsMode::CaFile(ca)
            }
            (None, None, true) => TlsMode::Insecure,
            (None, None, false) => TlsMode::SystemRoots,
        };
        if let Some(node) = raw.node {
            if !valid_node_name(&node) {
                return Err(invalid(
                    "node",
                    format!("`{node}` is not a valid node name"),
                ));
            }
            config.node = Some(node);
        }
        if let Some(t) = raw.timeout_secs {
            if t == 0 {
                return Err(invalid("timeout_secs", "must be at least 1"));
            }
            config.timeout = Duration::from_secs(t);
        }
        if let Some(t) = raw.connect_timeout_secs {
            if t == 0 {
                return Err(invalid("connect_timeout_secs", "must be at least 1"));
            }
            config.connect_timeout = Duration::from_secs(t);
        }
        if let Some(r) = raw.retries {
            if r > 10 {
                return Err(invalid("retries", "must be at most 10"));
            }
            config.retries = r;
        }
        if let Some(p) = raw.privileged {
            config.privileged = match p.trim() {
                "none" | "disabled" | "off" => PrivilegedMode::Disabled,
                "direct" => PrivilegedMode::Direct,
                "sudo" => PrivilegedMode::Sudo,
                other => {
                    return Err(invalid(
                        "privileged",
                        format!("`{other}` is not one of none, direct, sudo"),
                    ));
                }
            };
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const FP: &str = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn field_of(err: ConfigError) -> &'static str {
        match err {
            ConfigError::Missing { field, .. } | ConfigError::Invalid { field, .. } => field,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn file_with_env_overrides() {
        let json = format!(
            r#"{{"url":"https://pve1:8006/api2/json/","token_id":"rmm@pve!auto","token_secret":"s3cret","fingerprint":"{FP}","node":"pve1"}}"#
        );
        let c = Config::from_json_with_env(&json, env(&[])).unwrap();
        assert_eq!(c.url, "https://pve1:8006");
        assert!(matches!(c.tls, TlsMode::Pinned(_)));
        assert_eq!(c.node.as_deref(), Some("pve1"));

        let c = Config::from_json_with_env(
            &json,
            env(&[
                ("RMM_PVE_URL", "https://pve2.example:8006"),
                ("RMM_PVE_TOKEN_SECRET", "other"),
                ("RMM_PVE_RETRIES", "5"),
                ("RMM_PVE_PRIVILEGED", "sudo"),
                ("RMM_PVE_NODE", ""),
            ]),
        )
        .unwrap();
        assert_eq!(c.url, "https://pve2.example:8006");
        assert_eq!(c.token.secret.expose(), "other");
        assert_eq!(c.retries, 5);
        assert_eq!(c.privileged, PrivilegedMode::Sudo);
        assert_eq!(c.node.as_deref(), Some("pve1"), "empty env value is unset");
    }

    #[test]
    fn env_only_configuration() {
        let c = Config::load_with_env(
            None,
            env(&[
                ("RMM_PVE_URL", "https://10.0.0.2:8006"),
                ("RMM_PVE_TOKEN_ID", "root@pam!ci"),
                ("RMM_PVE_TOKEN_SECRET", "abc"),
                ("RMM_PVE_INSECURE", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(c.tls, TlsMode::Insecure);
    }

    #[test]
    fn validation_errors_name_the_field() {
        let base = |extra: &str| {
            format!(
                r#"{{"url":"https://pve:8006","token_id":"a@pve!tk","token_secret":"x"{extra}}}"#
            )
        };
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case<'_>] = &[
            (r#"{"token_id":"a@pve!tk","token_secret":"x"}"#, &[], "url"),
            (
                r#"{"url":"https://pve:8006","token_secret":"x"}"#,
                &[],
                "token_id",
            ),
            (
                r#"{"url":"https://pve:8006","token_id":"a@pve!tk"}"#,
                &[],
                "token_secret",
            ),
            (
                r#"{"url":"http://pve:8006","token_id":"a@pve!tk","token_secret":"x"}"#,
                &[],
                "url",
            ),
            (
                r#"{"url":"https://pve:8006","token_id":"a@pve","token_secret":"x"}"#,
                &[],
                "token_id",
            ),
            (
                r#"{"url":"https://pve:8006","token_id":"a@pve!tk","token_secret":"x y"}"#,
                &[],
                "token_secret",
            ),
        ];
        for (json, e, field) in cases {
            let err = Config::from_json_with_env(json, env(e)).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
            assert_eq!(field_of(err), *field, "{json}");
        }
        let more: &[Case<'_>] = &[
            (r#","fingerprint":"nope""#, &[], "fingerprint"),
            (
                r#","insecure":true"#,
                &[("RMM_PVE_FINGERPRINT", FP)],
                "insecure",
            ),
            (r#","ca_file":"/nonexistent.pem""#, &[], "ca_file"),
            (r#","node":"-bad-""#, &[], "node"),
            (r#","timeout_secs":0"#, &[], "timeout_secs"),
            (r#","privileged":"root""#, &[], "privileged"),
            ("", &[("RMM_PVE_INSECURE", "perhaps")], "insecure"),
            ("", &[("RMM_PVE_RETRIES", "-1")], "retries"),
        ];
        for (extra, e, field) in more {
            let err = Config::from_json_with_env(&base(extra), env(e)).unwrap_err();
            assert_eq!(field_of(err), *field, "{extra}");
        }
        let err = Config::from_json_with_env(&base(r#","tokn":"x""#), env(&[])).unwrap_err();
        assert!(err.to_string().contains("tokn"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let c = Config::new("https://pve:8006", "a@pve!tk", "super-secret-value").unwrap();
        for text in [
            format!("{c:?}"),
            format!("{}", c.token),
            format!("{:?}", c.token),
            format!("{}", c.token.secret),
        ] {
            assert!(!text.contains("super-secret-value"), "{text}");
        }
        assert_eq!(
            c.token.authorization_header(),
            "PVEAPIToken=a@pve!tk=super-secret-value"
        );
    }

    #[test]
    fn secret_from_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "from-file\n").unwrap();
        let json = format!(
            r#"{{"url":"https://pve:8006","token_id":"a@pve!tk","token_secret_file":"{}"}}"#,
            f.display()
        );
        let c = Config::from_json_with_env(&json, env(&[])).unwrap();
        assert_eq!(c.token.secret.expose(), "from-file");
    }
}
