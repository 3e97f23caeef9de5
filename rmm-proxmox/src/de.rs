//! Lenient deserializers for Proxmox JSON quirks: booleans as `0`/`1` (or
//! `"0"`/`"1"`), numbers that arrive as strings, `null` for absent values.

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

/// `Option<u64>` from a number or a numeric string.
pub(crate) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    int_from(&v)
        .and_then(|i| u64::try_from(i).ok())
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("expected an unsigned integer, got {v}")))
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

/// `Option<f64>` from a number or a numeric string.
pub(crate) fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    num_from(&v)
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("expected a number, got {v}")))
}

/// `Vec<f64>` from an array of numbers or numeric strings (`loadavg`).
pub(crate) fn vec_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    let v = Value::deserialize(d)?;
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                num_from(i).ok_or_else(|| D::Error::custom(format!("expected a number, got {i}")))
            })
            .collect(),
        other => Err(D::Error::custom(format!("expected an array, got {other}"))),
    }
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
        #[serde(default, deserialize_with = "super::opt_u64")]
        n: Option<u64>,
        #[serde(default, deserialize_with = "super::opt_f64")]
        f: Option<f64>,
        #[serde(default, deserialize_with = "super::vec_f64")]
        l: Vec<f64>,
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
            r#"{"b":1,"n":"42","f":"0.25","l":["0.05","0.10",1],"s":100,"unknown":{"x":1}}"#,
            T {
                b: Some(true),
                n: Some(42),
                f: Some(0.25),
                l: vec![0.05, 0.10, 1.0],
                s: Some("100".into()),
            },
        );
        check(
            r#"{"b":"0","n":7,"f":3,"s":"x"}"#,
            T {
                b: Some(false),
                n: Some(7),
                f: Some(3.0),
                l: vec![],
                s: Some("x".into()),
            },
        );
        check(
            r#"{"b":null,"n":null}"#,
            T {
                b: None,
                n: None,
                f: None,
                l: vec![],
                s: None,
            },
        );
        check(
            r#"{"n":"1e3"}"#,
            T {
                b: None,
                n: Some(1000),
                f: None,
                l: vec![],
                s: None,
            },
        );
        assert!(serde_json::from_str::<T>(r#"{"b":"maybe"}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"n":-1}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"n":"abc"}"#).is_err());
    }
}
