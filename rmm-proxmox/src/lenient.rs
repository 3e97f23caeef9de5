//! [`Lenient`]: a non-essential reading kept as Proxmox sent it, parsed when
//! it has the expected shape.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::de;

/// A non-essential value from a Proxmox response: the JSON value exactly as
/// Proxmox sent it, and the value parsed from it when it has the expected
/// shape.
///
/// The API schema leaves room for values a plain typed field cannot hold:
/// load averages are free-form strings, most byte counts and durations are
/// integers without a lower bound, and a few fields Proxmox sends are not in
/// the schema at all (`cpuinfo.mhz`, `swap`, the node's `uptime`). Such a
/// value never fails a read: [`Lenient::get`] is `None` and [`Lenient::raw`]
/// still holds what was sent. An absent or `null` field is `None` with a
/// `null` raw value; [`Lenient::is_unparsed`] tells the two cases apart.
///
/// Serializes as the parsed value when there is one, else as the raw value,
/// so a serialized response decodes to the same thing.
#[derive(Debug, Clone, PartialEq)]
pub struct Lenient<T> {
    raw: Value,
    parsed: Option<T>,
}

impl<T> Lenient<T> {
    /// Parses `raw` with `parse`; `null` is absent and never parsed.
    pub(crate) fn parse(raw: Value, parse: impl FnOnce(&Value) -> Option<T>) -> Lenient<T> {
        let parsed = if raw.is_null() { None } else { parse(&raw) };
        Lenient { raw, parsed }
    }

    /// The parsed value; `None` when absent or not of the expected shape.
    pub fn parsed(&self) -> Option<&T> {
        self.parsed.as_ref()
    }

    /// The parsed value, consuming `self`.
    pub fn into_parsed(self) -> Option<T> {
        self.parsed
    }

    /// The value as Proxmox sent it (`null` when absent).
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// True when Proxmox sent a value that could not be parsed.
    pub fn is_unparsed(&self) -> bool {
        self.parsed.is_none() && !self.raw.is_null()
    }
}

impl<T: Copy> Lenient<T> {
    /// The parsed value; `None` when absent or not of the expected shape.
    pub fn get(&self) -> Option<T> {
        self.parsed
    }
}

impl<T> Default for Lenient<T> {
    /// Absent: `null`, nothing parsed.
    fn default() -> Self {
        Lenient {
            raw: Value::Null,
            parsed: None,
        }
    }
}

impl<T: Serialize> Serialize for Lenient<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.parsed {
            Some(v) => v.serialize(s),
            None => self.raw.serialize(s),
        }
    }
}

/// `Deserialize` for the `Lenient` types the responses use; any JSON value
/// is accepted.
macro_rules! lenient_deserialize {
    ($($t:ty => $parse:path),* $(,)?) => {$(
        impl<'de> Deserialize<'de> for Lenient<$t> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok(Lenient::parse(Value::deserialize(d)?, $parse))
            }
        }
    )*};
}

lenient_deserialize!(
    f64 => de::f64_from,
    u64 => de::u64_from,
    u32 => de::u32_from,
    Vec<f64> => de::f64_list_from,
);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Decodes `raw` as a `Lenient<T>` and checks the parsed value, that the
    /// raw value is kept, and that serializing round-trips.
    fn check<T>(raw: Value, expected: Option<T>)
    where
        T: std::fmt::Debug + PartialEq + Serialize,
        Lenient<T>: for<'de> Deserialize<'de>,
    {
        let got: Lenient<T> =
            serde_json::from_value(raw.clone()).unwrap_or_else(|e| panic!("{raw}: {e}"));
        assert_eq!(got.parsed(), expected.as_ref(), "{raw}");
        assert_eq!(got.raw(), &raw);
        assert_eq!(got.is_unparsed(), expected.is_none() && !raw.is_null());
        let again: Lenient<T> =
            serde_json::from_value(serde_json::to_value(&got).expect("serializes"))
                .expect("decodes");
        assert_eq!(again.parsed(), expected.as_ref(), "{raw} round trip");
    }

    #[test]
    fn numbers_parse_or_are_kept_raw() {
        check::<f64>(json!("0.25"), Some(0.25));
        check::<f64>(json!(3), Some(3.0));
        check::<f64>(json!(" 3400.000 "), Some(3400.0));
        check::<f64>(json!("abc"), None);
        check::<f64>(json!("NaN"), None);
        check::<f64>(json!("inf"), None);
        check::<f64>(json!({"x": 1}), None);
        check::<f64>(Value::Null, None);

        check::<u64>(json!("42"), Some(42));
        check::<u64>(json!(1e3), Some(1000));
        check::<u64>(json!(-1), None);
        check::<u64>(json!(1.5), None);
        check::<u64>(json!("many"), None);
        check::<u64>(json!([1]), None);

        check::<u32>(json!(16), Some(16));
        check::<u32>(json!(4_294_967_296u64), None);
        check::<u32>(json!(-16), None);
    }

    #[test]
    fn lists_parse_only_when_every_item_does() {
        check::<Vec<f64>>(json!(["0.5", "0.25", 1]), Some(vec![0.5, 0.25, 1.0]));
        check::<Vec<f64>>(json!([]), Some(vec![]));
        check::<Vec<f64>>(json!(["0.5", "abc", "1"]), None);
        check::<Vec<f64>>(json!("0.5 0.25 1"), None);
        check::<Vec<f64>>(Value::Null, None);
    }

    #[test]
    fn absent_is_default() {
        let absent = Lenient::<u64>::default();
        assert_eq!(absent.get(), None);
        assert!(absent.raw().is_null());
        assert!(!absent.is_unparsed());
        assert_eq!(serde_json::to_value(&absent).ok(), Some(Value::Null));
    }
}
