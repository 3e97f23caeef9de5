//! Validation of API requests against the real Proxmox VE API schema
//! (`pve-api-schema.json`, the data behind the official API viewer).
//!
//! The schema is vendored gzipped in `rmm-proxmox/schema/` (provenance and
//! licence in the README there) and compiled into the crate, so the mock
//! reads no file at run time; `RMM_PVE_SCHEMA` may name a plain JSON file to
//! use instead (e.g. a newer Proxmox release).
//!
//! Checked for every request: the path and method exist; only known
//! parameters are sent (indexed ones such as `net0` match `net[n]`);
//! required parameters are present; `requires` dependencies hold; values
//! respect `type` (booleans strictly `0`/`1`), `enum`, `minimum`/`maximum`,
//! `minLength`/`maxLength` and `pattern`; inline `format` objects (property
//! strings like `net[n]`) are parsed and every sub-key checked the same way;
//! common named formats (`pve-node`, `pve-vmid`, `pve-storage-id`,
//! `pve-configid`, `dns-name`, `disk-size`, ...) are checked loosely.
//!
//! Explicitly skipped (documented so nobody mistakes it for coverage):
//! named formats not listed in [`check_named_format`], `array` parameters,
//! and Perl patterns that do not translate to the `regex` crate (lookaround,
//! backreferences); [`Schema::skipped_patterns`] lists the latter.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

/// Why the schema could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The file is missing or unreadable.
    #[error(
        "cannot read the proxmox api schema at {}: {source} (unset RMM_PVE_SCHEMA to use the embedded copy)",
        path.display()
    )]
    Read {
        /// The path tried.
        path: PathBuf,
        /// The io error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the expected JSON.
    #[error("invalid proxmox api schema at {}: {reason}", path.display())]
    Invalid {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The copy compiled into the crate does not decode (a broken build).
    #[error(
        "the embedded proxmox api schema is corrupt: {reason}; restore rmm-proxmox/schema/pve-api-schema.json.gz and rebuild"
    )]
    Embedded {
        /// What is wrong.
        reason: String,
    },
}

/// The vendored schema, gzipped (see `rmm-proxmox/schema/README.md`).
const EMBEDDED_GZ: &[u8] = include_bytes!("../../schema/pve-api-schema.json.gz");

/// One method of one path.
#[derive(Debug, Clone)]
pub struct MethodInfo {
    /// Path template, e.g. `/nodes/{node}/lxc`.
    pub path: String,
    /// `GET`, `POST`, ...
    pub method: String,
    /// Whether API tokens may call it.
    pub allowtoken: bool,
    /// The raw `info` object (parameters, permissions, returns).
    pub info: Value,
}

impl MethodInfo {
    fn properties(&self) -> Option<&serde_json::Map<String, Value>> {
        self.info
            .get("parameters")
            .and_then(|p| p.get("properties"))
            .and_then(Value::as_object)
    }

    fn additional_properties(&self) -> bool {
        self.info
            .get("parameters")
            .and_then(|p| p.get("additionalProperties"))
            .is_some_and(truthy)
    }
}

/// A schema violation found in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The parameter, if the problem is about one.
    pub param: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.param {
            Some(p) => write!(f, "{p}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The outcome of matching a request path.
#[derive(Debug, Clone)]
pub struct PathMatch<'a> {
    /// The matched method.
    pub method: &'a MethodInfo,
    /// Values of the `{name}` segments.
    pub path_params: BTreeMap<String, String>,
}

/// The loaded API schema.
#[derive(Debug)]
pub struct Schema {
    /// path template -> method -> info
    paths: BTreeMap<String, BTreeMap<String, MethodInfo>>,
    regexes: Mutex<HashMap<String, Option<regex::Regex>>>,
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => s == "1" || s == "true",
        _ => false,
    }
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

impl Schema {
    /// `$RMM_PVE_SCHEMA`, when set: a plain JSON schema file that replaces
    /// the embedded copy.
    pub fn override_path() -> Option<PathBuf> {
        std::env::var_os("RMM_PVE_SCHEMA").map(PathBuf::from)
    }

    /// Loads [`Schema::override_path`] if set, else the embedded schema;
    /// once per process.
    pub fn load_default() -> Result<Arc<Schema>, SchemaError> {
        static CACHE: OnceLock<Arc<Schema>> = OnceLock::new();
        if let Some(s) = CACHE.get() {
            return Ok(s.clone());
        }
        let schema = match Schema::override_path() {
            Some(path) => Schema::load(&path)?,
            None => Schema::embedded()?,
        };
        Ok(CACHE.get_or_init(|| Arc::new(schema)).clone())
    }

    /// Decodes the schema compiled into the crate (pve-docs 9.1.3).
    pub fn embedded() -> Result<Schema, SchemaError> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(EMBEDDED_GZ)
            .read_to_string(&mut text)
            .map_err(|e| SchemaError::Embedded {
                reason: e.to_string(),
            })?;
        Schema::parse(&text).map_err(|reason| SchemaError::Embedded { reason })
    }

    /// Loads a schema file (plain JSON).
    pub fn load(path: &Path) -> Result<Schema, SchemaError> {
        let text = std::fs::read_to_string(path).map_err(|source| SchemaError::Read {
            path: path.to_owned(),
            source,
        })?;
        Schema::parse(&text).map_err(|reason| SchemaError::Invalid {
            path: path.to_owned(),
            reason,
        })
    }

    /// Builds the path index from the schema's JSON text.
    fn parse(text: &str) -> Result<Schema, String> {
        let root: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let nodes = root.as_array().ok_or("expected a top-level array")?;
        let mut paths = BTreeMap::new();
        let mut stack: Vec<&Value> = nodes.iter().collect();
        while let Some(node) = stack.pop() {
            let Some(p) = node.get("path").and_then(Value::as_str) else {
                return Err("a node has no path".into());
            };
            let mut methods = BTreeMap::new();
            if let Some(info) = node.get("info").and_then(Value::as_object) {
                for (m, i) in info {
                    methods.insert(
                        m.clone(),
                        MethodInfo {
                            path: p.to_owned(),
                            method: m.clone(),
                            allowtoken: i.get("allowtoken").is_some_and(truthy),
                            info: i.clone(),
                        },
                    );
                }
            }
            paths.insert(p.to_owned(), methods);
            if let Some(children) = node.get("children").and_then(Value::as_array) {
                stack.extend(children.iter());
            }
        }
        if paths.is_empty() {
            return Err("no paths".into());
        }
        Ok(Schema {
            paths,
            regexes: Mutex::new(HashMap::new()),
        })
    }

    /// Number of path templates.
    pub fn path_count(&self) -> usize {
        self.paths.len()
    }

    /// The method at an exact path template.
    pub fn find(&self, method: &str, template: &str) -> Option<&MethodInfo> {
        self.paths.get(template)?.get(method)
    }

    /// Matches a concrete path (already split into decoded segments) to a
    /// template; literal segments win over `{param}` segments.
    pub fn match_path<'a>(
        &'a self,
        method: &str,
        segments: &[String],
    ) -> Result<PathMatch<'a>, Violation> {
        type Candidate<'m> = (
            usize,
            &'m BTreeMap<String, MethodInfo>,
            BTreeMap<String, String>,
        );
        let mut best: Option<Candidate<'_>> = None;
        for (template, methods) in &self.paths {
            let tsegs: Vec<&str> = template.split('/').skip(1).collect();
            if tsegs.len() != segments.len() {
                continue;
            }
            let mut literal = 0;
            let mut params = BTreeMap::new();
            let mut ok = true;
            for (t, s) in tsegs.iter().zip(segments) {
                if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                    if s.is_empty() {
                        ok = false;
                        break;
                    }
                    params.insert(name.to_owned(), s.clone());
                } else if t == s {
                    literal += 1;
                } else {
                    ok = false;
                    break;
                }
            }
            if ok && best.as_ref().is_none_or(|(l, _, _)| literal > *l) {
                best = Some((literal, methods, params));
            }
        }
        let path = format!("/{}", segments.join("/"));
        let Some((_, methods, path_params)) = best else {
            return Err(Violation {
                param: None,
                message: format!("no such path {path} in the api schema"),
            });
        };
        match methods.get(method) {
            Some(m) => Ok(PathMatch {
                method: m,
                path_params,
            }),
            None => Err(Violation {
                param: None,
                message: format!(
                    "method {method} not allowed on {path} (schema has {})",
                    methods.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            }),
        }
    }

    /// Validates a request. Returns the matched method, or every violation
    /// found.
    pub fn validate<'a>(
        &'a self,
        method: &str,
        segments: &[String],
        params: &[(String, String)],
    ) -> Result<PathMatch<'a>, Vec<Violation>> {
        let m = self.match_path(method, segments).map_err(|v| vec![v])?;
        let mut violations = Vec::new();
        let props = m.method.properties().cloned().unwrap_or_default();
        let mut seen: BTreeMap<String, String> = m.path_params.clone();
        for (name, value) in params {
            if m.path_params.contains_key(name) {
                violations.push(Violation {
                    param: Some(name.clone()),
                    message: "path parameter repeated in the query/body".into(),
                });
                continue;
            }
            if seen.insert(name.clone(), value.clone()).is_some() {
                violations.push(Violation {
                    param: Some(name.clone()),
                    message: "sent more than once".into(),
                });
            }
        }
        for (name, value) in &seen {
            let Some(schema) = lookup_property(&props, name) else {
                if !m.method.additional_properties() {
                    violations.push(Violation {
                        param: Some(name.clone()),
                        message: "unknown parameter".into(),
                    });
                }
                continue;
            };
            if let Err(msg) = self.check_value(schema, value) {
                violations.push(Violation {
                    param: Some(name.clone()),
                    message: msg,
                });
            }
            if let Some(req) = schema.get("requires").and_then(Value::as_str)
                && !seen.contains_key(req)
            {
                violations.push(Violation {
                    param: Some(name.clone()),
                    message: format!("requires parameter `{req}`"),
                });
            }
        }
        for (name, schema) in &props {
            if name.contains("[n]") || schema.get("optional").is_some_and(truthy) {
                continue;
            }
            if !seen.contains_key(name) {
                violations.push(Violation {
                    param: Some(name.clone()),
                    message: "required parameter missing".into(),
                });
            }
        }
        if violations.is_empty() {
            Ok(m)
        } else {
            Err(violations)
        }
    }

    /// Compiles every `pattern` in the schema (parameters and property
    /// string keys) and returns how many distinct patterns there are and
    /// those that cannot be translated to the `regex` crate (and are
    /// therefore skipped).
    pub fn pattern_report(&self) -> (usize, Vec<String>) {
        fn collect(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(o) => {
                    if let Some(Value::String(p)) = o.get("pattern") {
                        out.push(p.clone());
                    }
                    o.values().for_each(|x| collect(x, out));
                }
                Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
                _ => {}
            }
        }
        let mut patterns = Vec::new();
        for methods in self.paths.values() {
            for m in methods.values() {
                if let Some(p) = m.info.get("parameters") {
                    collect(p, &mut patterns);
                }
            }
        }
        patterns.sort();
        patterns.dedup();
        let total = patterns.len();
        let skipped = patterns
            .into_iter()
            .filter(|p| self.pattern_matches(p, "").is_none())
            .collect();
        (total, skipped)
    }

    /// Perl patterns that could not be translated (and are therefore not
    /// checked).
    pub fn skipped_patterns(&self) -> Vec<String> {
        let cache = self.regexes.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .iter()
            .filter(|(_, r)| r.is_none())
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn pattern_matches(&self, pattern: &str, value: &str) -> Option<bool> {
        let mut cache = self.regexes.lock().unwrap_or_else(|e| e.into_inner());
        let re = cache.entry(pattern.to_owned()).or_insert_with(|| {
            regex::Regex::new(&format!("^(?:{})$", translate_perl(pattern))).ok()
        });
        re.as_ref().map(|r| r.is_match(value))
    }

    /// Checks one value against its property schema.
    pub fn check_value(&self, schema: &Value, value: &str) -> Result<(), String> {
        let ty = schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("string");
        match ty {
            "boolean" => {
                if value != "0" && value != "1" {
                    return Err(format!("boolean must be sent as 0 or 1, got `{value}`"));
                }
            }
            "integer" => {
                let digits = value.strip_prefix('-').unwrap_or(value);
                if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(format!("expected an integer, got `{value}`"));
                }
                let v: f64 = value
                    .parse()
                    .map_err(|_| format!("bad integer `{value}`"))?;
                check_range(schema, v)?;
            }
            "number" => {
                let v: f64 = value
                    .parse()
                    .map_err(|_| format!("expected a number, got `{value}`"))?;
                if !v.is_finite() {
                    return Err(format!("expected a finite number, got `{value}`"));
                }
                check_range(schema, v)?;
            }
            // Arrays travel as repeated parameters; not used by this client.
            "array" => return Ok(()),
            _ => {
                let len = value.chars().count() as f64;
                if let Some(max) = schema.get("maxLength").and_then(num)
                    && len > max
                {
                    return Err(format!("longer than maxLength {max}"));
                }
                if let Some(min) = schema.get("minLength").and_then(num)
                    && len < min
                {
                    return Err(format!("shorter than minLength {min}"));
                }
            }
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array)
            && !options
                .iter()
                .any(|o| o.as_str() == Some(value) || *o == value)
        {
            return Err(format!("`{value}` is not one of {options:?}"));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
            && self.pattern_matches(pattern, value) == Some(false)
        {
            return Err(format!("`{value}` does not match pattern {pattern}"));
        }
        match schema.get("format") {
            Some(Value::Object(format)) => self.check_property_string(format, value)?,
            Some(Value::String(name)) => check_named_format(name, value)?,
            _ => {}
        }
        Ok(())
    }

    /// Checks a property string against an inline format object.
    fn check_property_string(
        &self,
        format: &serde_json::Map<String, Value>,
        value: &str,
    ) -> Result<(), String> {
        let default_key = format
            .iter()
            .find(|(_, s)| s.get("default_key").is_some_and(truthy))
            .map(|(k, _)| k.clone());
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for part in value.split(',') {
            if part.trim().is_empty() {
                continue;
            }
            let (k, v) = match part.split_once('=') {
                Some((k, v)) if !k.is_empty() && !v.is_empty() => (k.to_owned(), v.to_owned()),
                _ => match &default_key {
                    Some(dk) if !seen.contains_key(dk) => (dk.clone(), part.to_owned()),
                    _ => return Err(format!("unexpected bare value `{part}` in property string")),
                },
            };
            if seen.insert(k.clone(), v).is_some() {
                return Err(format!("duplicate key `{k}` in property string"));
            }
        }
        for (k, v) in &seen {
            let Some(sub) = format.get(k) else {
                return Err(format!("unknown key `{k}` in property string"));
            };
            // aliases name another key of the same format
            let sub = match sub.get("alias").and_then(Value::as_str) {
                Some(target) => format.get(target).unwrap_or(sub),
                None => sub,
            };
            self.check_value(sub, v)
                .map_err(|e| format!("property string key `{k}`: {e}"))?;
        }
        for (k, sub) in format {
            if !sub.get("optional").is_some_and(truthy)
                && sub.get("alias").is_none()
                && !seen.contains_key(k)
            {
                return Err(format!("property string lacks required key `{k}`"));
            }
        }
        Ok(())
    }
}

/// Finds the schema of `name`, matching `net0` to `net[n]`.
fn lookup_property<'a>(props: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(p) = props.get(name) {
        return Some(p);
    }
    let digits = name.bytes().rev().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits == name.len() {
        return None;
    }
    let idx = &name[name.len() - digits..];
    if idx.len() > 1 && idx.starts_with('0') {
        return None;
    }
    props.get(&format!("{}[n]", &name[..name.len() - digits]))
}

fn check_range(schema: &Value, v: f64) -> Result<(), String> {
    if let Some(min) = schema.get("minimum").and_then(num)
        && v < min
    {
        return Err(format!("{v} is below the minimum {min}"));
    }
    if let Some(max) = schema.get("maximum").and_then(num)
        && v > max
    {
        return Err(format!("{v} is above the maximum {max}"));
    }
    Ok(())
}

/// Translates the Perl regex constructs Proxmox uses into `regex` syntax:
/// `(?^:...)` / `(?^i:...)` (Perl's "default flags" groups) and `\0` (NUL).
/// Anything untranslatable makes compilation fail and the pattern is
/// skipped (see [`Schema::skipped_patterns`]).
pub fn translate_perl(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('0') if !chars.peek().is_some_and(char::is_ascii_digit) => {
                    out.push_str("\\x00")
                }
                Some('Z') => out.push_str("\\z"),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            },
            '(' if chars.peek() == Some(&'?') => {
                out.push('(');
                out.push('?');
                chars.next();
                if chars.peek() == Some(&'^') {
                    chars.next();
                    // `(?^:` -> `(?:`, `(?^i:` -> `(?i:`
                }
            }
            other => out.push(other),
        }
    }
    out
}

fn is_node(s: &str) -> bool {
    crate::config::valid_node_name(s)
}

fn is_storage_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_configid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_'))
}

fn is_vmid(s: &str) -> bool {
    s.parse::<u32>()
        .is_ok_and(|v| (100..=999_999_999).contains(&v))
        && !s.starts_with('0')
}

fn is_dns_name(s: &str) -> bool {
    s.len() <= 255
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

fn is_cidr<T: std::str::FromStr>(s: &str, max: u8) -> bool {
    match s.split_once('/') {
        Some((ip, len)) => ip.parse::<T>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= max),
        None => false,
    }
}

/// Loose checks of named formats. Unlisted formats are accepted (skipped
/// explicitly: they are rarely used by this client and defined in Perl code
/// the schema does not contain).
pub fn check_named_format(name: &str, value: &str) -> Result<(), String> {
    let list = |v: &str| -> Vec<String> {
        v.split([',', ';', ' ', '\0'])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let ok = match name {
        "pve-node" => is_node(value),
        "pve-node-list" => list(value).iter().all(|n| is_node(n)),
        "pve-vmid" => is_vmid(value),
        "pve-vmid-list" => {
            let l = list(value);
            !l.is_empty() && l.iter().all(|v| is_vmid(v))
        }
        "pve-storage-id" => is_storage_id(value),
        "pve-storage-id-list" => list(value).iter().all(|s| is_storage_id(s)),
        "pve-configid" => is_configid(value),
        "pve-configid-list" => {
            let l = list(value);
            !l.is_empty() && l.iter().all(|v| is_configid(v))
        }
        "pve-volume-id" => value
            .split_once(':')
            .is_some_and(|(s, v)| is_storage_id(s) && !v.is_empty()),
        "pve-poolid" => {
            !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'))
        }
        "dns-name" => is_dns_name(value),
        "disk-size" => value.parse::<crate::DiskSize>().is_ok(),
        "ipv4" => value.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => value.parse::<std::net::Ipv6Addr>().is_ok(),
        "ip" => value.parse::<std::net::IpAddr>().is_ok(),
        "mac-addr" => {
            let parts: Vec<&str> = value.split(':').collect();
            parts.len() == 6
                && parts
                    .iter()
                    .all(|p| p.len() == 2 && p.bytes().all(|c| c.is_ascii_hexdigit()))
        }
        "pve-ipv4-config" => {
            value == "dhcp" || value == "manual" || is_cidr::<std::net::Ipv4Addr>(value, 32)
        }
        "pve-ipv6-config" => {
            matches!(value, "auto" | "dhcp" | "manual") || is_cidr::<std::net::Ipv6Addr>(value, 128)
        }
        "pve-lxc-mp-string" => !value.is_empty() && !value.contains(','),
        "pve-userid" => value
            .rsplit_once('@')
            .is_some_and(|(u, r)| !u.is_empty() && !r.is_empty()),
        "pve-storage-content-list" => list(value)
            .iter()
            .all(|c| c.chars().all(|ch| ch.is_ascii_lowercase())),
        // explicitly not checked: everything else (firewall specs, sdn ids,
        // calendar events, ...)
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("`{value}` is not a valid {name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perl_constructs_translate() {
        assert_eq!(translate_perl("(?^:[a-z]+)"), "(?:[a-z]+)");
        assert_eq!(translate_perl("(?^i:[a-z]+)"), "(?i:[a-z]+)");
        assert_eq!(translate_perl(r"(?:\w+)(?:\0\w+)*"), r"(?:\w+)(?:\x00\w+)*");
        assert_eq!(translate_perl(r"a\Z"), r"a\z");
        assert_eq!(translate_perl(r"\d{1,9}"), r"\d{1,9}");
    }

    #[test]
    fn named_formats() {
        assert!(check_named_format("pve-vmid-list", "100,101").is_ok());
        assert!(check_named_format("pve-vmid-list", "100,99").is_err());
        assert!(check_named_format("pve-configid-list", "mp0,unused0").is_ok());
        assert!(check_named_format("pve-ipv4-config", "10.0.0.2/24").is_ok());
        assert!(check_named_format("pve-ipv4-config", "10.0.0.2").is_err());
        assert!(check_named_format("mac-addr", "BC:24:11:00:00:01").is_ok());
        assert!(check_named_format("some-future-format", "anything").is_ok());
    }

    #[test]
    fn embedded_schema_decodes() {
        let schema = Schema::embedded().unwrap_or_else(|e| panic!("{e}"));
        assert!(schema.path_count() > 400, "{}", schema.path_count());
        let m = schema
            .find("GET", "/nodes/{node}/status")
            .expect("node status");
        assert!(m.allowtoken);
    }

    #[test]
    fn indexed_property_lookup() {
        let mut props = serde_json::Map::new();
        props.insert("net[n]".into(), Value::Null);
        assert!(lookup_property(&props, "net0").is_some());
        assert!(lookup_property(&props, "net31").is_some());
        assert!(lookup_property(&props, "net01").is_none());
        assert!(lookup_property(&props, "net").is_none());
        assert!(lookup_property(&props, "mp0").is_none());
    }
}
