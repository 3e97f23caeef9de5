//! Lenient deserializers for Proxmox JSON quirks: booleans as `0`/`1` (or
//! `"0"`/`"1"`), numbers that arrive as strings, `null` for absent values;
//! the parsers behind [`crate::Lenient`]; and strict deserializers for the
//! identifiers a response cannot do without, whose errors name the field.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

fn num_from(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

fn int_from(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.fract() == 0.0)
                    .map(|f| f as i64)
            })
        }
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

/// A finite number from a number or a numeric string.
pub(crate) fn f64_from(v: &Value) -> Option<f64> {
    num_from(v).filter(|f| f.is_finite())
}

/// An unsigned integer from a number or a numeric string.
pub(crate) fn u64_from(v: &Value) -> Option<u64> {
    int_from(v).and_then(|i| u64::try_from(i).ok())
}

/// A `u32` from a number or a numeric string.
pub(crate) fn u32_from(v: &Value) -> Option<u32> {
    int_from(v).and_then(|i| u32::try_from(i).ok())
}

/// Finite numbers from an array whose every item is a number or a numeric
/// string (`loadavg`).
pub(crate) fn f64_list_from(v: &Value) -> Option<Vec<f64>> {
    v.as_array()?.iter().map(f64_from).collect()
}

pub(crate) fn bool_from(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|f| f != 0.0),
        // some list endpoints send `"template": ""` for false
        Value::String(s) if s.trim().is_empty() => Some(false),
        Value::String(s) => crate::propstring::parse_bool(s.trim()),
        _ => None,
    }
}

pub(crate) fn string_from(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_owned()),
        _ => None,
    }
}

/// `Option<bool>` from `true`, `1`, `"1"`, `"yes"`, ...; `null` is `None`.
pub(crate) fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    bool_from(&v)
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("expected a boolean, got {v}")))
}

/// `bool` like [`opt_bool`], absent or `null` meaning `false`.
pub(crate) fn bool_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(opt_bool(d)?.unwrap_or(false))
}

/// `Option<u32>` from a number or a numeric string.
pub(crate) fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    int_from(&v)
        .and_then(|i| u32::try_from(i).ok())
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("expected an unsigned integer, got {v}")))
}

/// `u32` from a number or a numeric string (required).
pub(crate) fn u32_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    opt_u32(d)?.ok_or_else(|| D::Error::custom("expected an unsigned integer, got null"))
}

/// `Option<i64>` from a number or a numeric string.
pub(crate) fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    int_from(&v)
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("expected an integer, got {v}")))
}

/// A required identifier: a non-empty string (numbers, which Proxmox
/// sometimes sends for numeric-looking strings, are taken as their text).
fn identifier<'de, D: Deserializer<'de>>(
    d: D,
    field: &str,
    what: &str,
) -> Result<String, D::Error> {
    let v = Value::deserialize(d)?;
    match v {
        Value::String(s) if !s.is_empty() => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(D::Error::custom(format!(
            "`{field}`: expected {what}, got {other}"
        ))),
    }
}

/// The node name of a `/nodes` entry (required).
pub(crate) fn node_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    identifier(d, "node", "the node name as a non-empty string")
}

/// The storage id of a storage entry (required).
pub(crate) fn storage_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    identifier(d, "storage", "the storage id as a non-empty string")
}

/// A container id (required): an integer, or a numeric string, in
/// [`crate::VMID_RANGE`].
pub(crate) fn vmid<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = Value::deserialize(d)?;
    u32_from(&v)
        .filter(|id| crate::VMID_RANGE.contains(id))
        .ok_or_else(|| {
            D::Error::custom(format!(
                "`vmid`: expected a container id (an integer from 100 to 999999999), got {v}"
            ))
        })
}

/// `Option<String>` from a string or a number (ids that flip between the two).
pub(crate) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    string_from(&v)
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("expected a string, got {v}")))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct T {
        #[serde(default, deserialize_with = "super::opt_bool")]
        b: Option<bool>,
        #[serde(default, deserialize_with = "super::opt_i64")]
        n: Option<i64>,
        #[serde(default, deserialize_with = "super::opt_string")]
        s: Option<String>,
    }

    fn check(json: &str, expected: T) {
        let got: T = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(got, expected, "{json}");
    }

    #[test]
    fn proxmox_quirks_decode() {
        check(
            r#"{"b":1,"n":"42","s":100,"unknown":{"x":1}}"#,
            T {
                b: Some(true),
                n: Some(42),
                s: Some("100".into()),
            },
        );
        check(
            r#"{"b":"0","n":-7,"s":"x"}"#,
            T {
                b: Some(false),
                n: Some(-7),
                s: Some("x".into()),
            },
        );
        check(
            r#"{"b":null,"n":null}"#,
            T {
                b: None,
                n: None,
                s: None,
            },
        );
        check(
            r#"{"n":"1e3"}"#,
            T {
                b: None,
                n: Some(1000),
                s: None,
            },
        );
        assert!(serde_json::from_str::<T>(r#"{"b":"maybe"}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"n":"abc"}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"n":1.5}"#).is_err());
    }

    #[derive(Deserialize, Debug)]
    struct Ids {
        #[serde(deserialize_with = "super::vmid")]
        _vmid: u32,
        #[serde(deserialize_with = "super::node_name")]
        _node: String,
    }

    /// Decodes `{"_vmid": vmid, "_node": node}`; `Err` holds the message.
    fn ids(vmid: serde_json::Value, node: serde_json::Value) -> Result<(u32, String), String> {
        serde_json::from_value::<Ids>(serde_json::json!({"_vmid": vmid, "_node": node}))
            .map(|i| (i._vmid, i._node))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn identifiers_are_strict_and_errors_name_the_field() {
        use serde_json::json;
        assert_eq!(ids(json!(100), json!("pve1")), Ok((100, "pve1".into())));
        assert_eq!(ids(json!("101"), json!("pve1")), Ok((101, "pve1".into())));
        for bad in [
            json!("abc"),
            json!(99),
            json!(-100),
            json!(1e10),
            json!(null),
        ] {
            let err = ids(bad.clone(), json!("pve1")).expect_err("bad vmid");
            assert!(
                err.contains("`vmid`") && err.contains("container id"),
                "{bad}: {err}"
            );
        }
        for bad in [json!(""), json!(null), json!(["pve1"])] {
            let err = ids(json!(100), bad.clone()).expect_err("bad node");
            assert!(err.contains("`node`"), "{bad}: {err}");
        }
    }
}
