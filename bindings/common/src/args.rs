//! Arguments as the languages hand them over (text, optional numbers of
//! seconds) -> typed values, with the error messages both bindings show.

use std::time::Duration;

use uuid::Uuid;

use crate::error::ErrorInfo;

/// Whose callers read the messages: argument names in them are spelled the
/// way those callers write them (`wait_timeout` / `waitTimeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lang {
    /// snake_case keyword arguments.
    Python,
    /// camelCase option properties.
    JavaScript,
}

impl Lang {
    /// The argument `snake_name` as this language spells it.
    pub fn arg(self, snake_name: &str) -> String {
        match self {
            Lang::Python => snake_name.to_owned(),
            Lang::JavaScript => {
                let mut out = String::with_capacity(snake_name.len());
                let mut upper = false;
                for c in snake_name.chars() {
                    if c == '_' {
                        upper = true;
                    } else if upper {
                        out.extend(c.to_uppercase());
                        upper = false;
                    } else {
                        out.push(c);
                    }
                }
                out
            }
        }
    }
}

/// An id (a UUID, surrounding white space ignored). `what` names the
/// argument in the message (`agent id "x" is not a valid id ...`) when the
/// binding knows it.
pub fn parse_id(text: &str, what: Option<&str>) -> Result<Uuid, ErrorInfo> {
    Uuid::parse_str(text.trim()).map_err(|_| {
        let what = what.map(|w| format!("{w} ")).unwrap_or_default();
        ErrorInfo::invalid(format!(
            "{what}{text:?} is not a valid id (expected a UUID)"
        ))
    })
}

/// A Proxmox task id.
pub fn parse_upid(text: &str) -> Result<rmm_proxmox::Upid, ErrorInfo> {
    text.parse()
        .map_err(|e| ErrorInfo::invalid(format!("invalid upid {text:?}: {e}")))
}

/// A duration given as a number of seconds named `name`: above 0 when
/// `positive`, else at least 0.
pub(crate) fn seconds(name: &str, secs: f64, positive: bool) -> Result<Duration, ErrorInfo> {
    let (in_range, rule) = if positive {
        (secs > 0.0, "a positive")
    } else {
        (secs >= 0.0, "a non-negative")
    };
    if !(secs.is_finite() && in_range) {
        return Err(ErrorInfo::invalid(format!(
            "{name} must be {rule} number of seconds, got {secs}"
        )));
    }
    Duration::try_from_secs_f64(secs)
        .map_err(|_| ErrorInfo::invalid(format!("{name} is too large, got {secs}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arg_spelling() {
        let check = |lang: Lang, name: &str, expected: &str| assert_eq!(lang.arg(name), expected);
        check(Lang::Python, "wait_timeout", "wait_timeout");
        check(Lang::JavaScript, "wait_timeout", "waitTimeout");
        check(Lang::JavaScript, "poll_interval", "pollInterval");
        check(Lang::JavaScript, "timeout", "timeout");
    }

    #[test]
    fn ids() {
        let id = "0a0a0a0a-0000-4000-8000-000000000001";
        let check = |text: &str, what: Option<&str>, expected: Result<&str, &str>| {
            let got = parse_id(text, what)
                .map(|u| u.to_string())
                .map_err(|e| (e.code, e.message));
            let expected = expected
                .map(str::to_owned)
                .map_err(|m| ("invalid_argument".to_owned(), m.to_owned()));
            assert_eq!(got, expected, "{text:?}");
        };
        check(id, None, Ok(id));
        check(&format!(" {id}\n"), Some("agent id"), Ok(id));
        check(
            "nope",
            None,
            Err(r#""nope" is not a valid id (expected a UUID)"#),
        );
        check(
            "",
            Some("command id"),
            Err(r#"command id "" is not a valid id (expected a UUID)"#),
        );
    }

    #[test]
    fn upids() {
        let good = "UPID:pve1:00001234:00ABCDEF:65A1B2C3:vzsnapshot:100:root@pam!rmm:";
        assert_eq!(parse_upid(good).map(|u| u.to_string()), Ok(good.to_owned()));
        let e = parse_upid("not a upid").unwrap_err();
        assert_eq!(e.code, "invalid_argument");
        assert!(
            e.message.starts_with("invalid upid \"not a upid\": "),
            "{e}"
        );
    }

    #[test]
    fn seconds_ranges() {
        let check = |secs: f64, positive: bool, expected: Result<Duration, &str>| {
            let got = seconds("wait", secs, positive).map_err(|e| e.message);
            assert_eq!(got, expected.map_err(str::to_owned), "{secs} {positive}");
        };
        check(0.0, false, Ok(Duration::ZERO));
        check(1.5, true, Ok(Duration::from_millis(1500)));
        check(
            0.0,
            true,
            Err("wait must be a positive number of seconds, got 0"),
        );
        check(
            -1.0,
            false,
            Err("wait must be a non-negative number of seconds, got -1"),
        );
        check(
            f64::NAN,
            false,
            Err("wait must be a non-negative number of seconds, got NaN"),
        );
        check(
            f64::INFINITY,
            true,
            Err("wait must be a positive number of seconds, got inf"),
        );
        check(
            1e20,
            false,
            Err("wait is too large, got 100000000000000000000"),
        );
    }
}
