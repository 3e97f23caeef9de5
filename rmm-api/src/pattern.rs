//! The rules on text as regular expressions, for the OpenAPI description
//! (ECMA-262, Python and Rust regex agree on them): each mirrors a Rust
//! check of this crate, built from one table of the characters Rust calls
//! whitespace and control. The tests check each against its Rust rule.

/// Rust's `char::is_whitespace` (Unicode `White_Space`), as the body of a
/// regex character class.
pub const WHITESPACE: &str =
    r"\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";
/// Rust's `char::is_control` (`Cc`), as the body of a character class.
pub const CONTROL: &str = r"\u0000-\u001F\u007F-\u009F";

/// A text with at least one character that is not whitespace (a command's
/// script: [`crate::CommandRequest::validate`]).
pub fn not_blank() -> String {
    format!("[^{WHITESPACE}]")
}

/// A login e-mail: no control character once surrounding whitespace is
/// trimmed ([`crate::LoginRequest::login_name`]).
pub fn login_email() -> String {
    format!("^[{WHITESPACE}]*[^{CONTROL}]*[{WHITESPACE}]*$")
}

/// A new user's e-mail: once trimmed, `local@domain` with a non-empty
/// local part (no `@`) and domain, no whitespace or control character
/// ([`crate::user_email`]).
pub fn user_email() -> String {
    let plain = format!("{WHITESPACE}{CONTROL}");
    format!("^[{WHITESPACE}]*[^{plain}@]+@[^{plain}]+[{WHITESPACE}]*$")
}

/// An enrollment's `server_url` ([`crate::check_server_url`]): `http://`
/// or `https://`, a non-empty host as [`crate::url_host`] reads it (after
/// the last `@` of the authority; in brackets, or before the last `:`), no
/// whitespace or control character. Unless `insecure_http`, plain
/// `http://` needs a loopback host (`localhost`, `127.0.0.0/8` or
/// `[::1]`; the server also takes other spellings of `::1`).
pub fn server_url(insecure_http: bool) -> String {
    let plain = format!("{WHITESPACE}{CONTROL}");
    let userinfo = format!("(?:[^{plain}/?#]*@)?");
    let c = format!("[^{plain}/?#@]"); // a character of the host and port
    let rest = format!("(?:[/?#][^{plain}]*)?");
    let any_host = format!(r"(?:\[[^{plain}/?#@\]]{c}*|[^{plain}/?#@\[:]{c}*|:{c}*:{c}*)");
    let octet = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
    let loopback = format!(
        r"(?:(?:[Ll][Oo][Cc][Aa][Ll][Hh][Oo][Ss][Tt]|127\.{octet}\.{octet}\.{octet})(?::[^{plain}/?#@:]*)?|\[::1(?:\]{c}*)?)"
    );
    if insecure_http {
        format!("^https?://{userinfo}{any_host}{rest}$")
    } else {
        format!("^(?:https://{userinfo}{any_host}|http://{userinfo}{loopback}){rest}$")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(pattern: &str) -> regex::Regex {
        regex::Regex::new(pattern).expect("a valid pattern")
    }

    /// The classes are Rust's predicates, character for character.
    #[test]
    fn the_classes_are_rusts_whitespace_and_control() {
        let ws = re(&format!("^[{WHITESPACE}]$"));
        let ctrl = re(&format!("^[{CONTROL}]$"));
        let mut buf = [0u8; 4];
        for c in (0..=0x10_FFFF).filter_map(char::from_u32) {
            let s = c.encode_utf8(&mut buf);
            assert_eq!(ws.is_match(s), c.is_whitespace(), "{c:?}");
            assert_eq!(ctrl.is_match(s), c.is_control(), "{c:?}");
        }
    }

    #[test]
    fn server_urls_follow_the_insecure_http_setting() {
        let strict = re(&server_url(false));
        let open = re(&server_url(true));
        for (url, strict_ok, open_ok) in [
            ("https://rmm.example.com", true, true),
            ("http://rmm.example.com", false, true),
            ("http://localhost:3001/", true, true),
            ("http://127.10.0.1", true, true),
            ("http://user@127.0.0.1:1", true, true),
            ("http://localhost:1:2", false, true),
            ("http://[::1]", true, true),
            ("http://[::2]", false, true),
            ("https://", false, false),
            ("http://a\u{85}b", false, false),
        ] {
            assert_eq!(strict.is_match(url), strict_ok, "{url:?} strict");
            assert_eq!(open.is_match(url), open_ok, "{url:?} open");
        }
    }

    /// Each pattern accepts what its Rust rule accepts (on samples; the
    /// patterns do not count characters, `maxLength` does).
    #[test]
    fn the_patterns_agree_with_the_rules() {
        let samples = [
            "",
            " ",
            "a",
            "a@b",
            " A@B.com\n",
            "a b@c",
            "@b",
            "a@",
            "a@@b",
            "a\u{0}@b",
            "\u{3000}a@b",
            "a@b\u{7f}",
            "é@ü",
            "\tx\t",
            "http://a",
            "https://a/b c",
            "https://a",
            "https://",
            "https:///x",
            "https://u@",
            "https://[::1]:1/x",
            "http://:1:2",
            "https://a\u{2028}",
        ];
        let (user, login, blank, url) = (
            re(&user_email()),
            re(&login_email()),
            re(&not_blank()),
            re(&server_url(true)),
        );
        for s in samples {
            assert_eq!(user.is_match(s), crate::user_email(s).is_ok(), "user {s:?}");
            assert_eq!(
                login.is_match(s),
                crate::LoginRequest::new(s, "").login_name().is_ok(),
                "login {s:?}"
            );
            let command = crate::CommandRequest::builder(crate::CommandType::Sh, s).build();
            assert_eq!(blank.is_match(s), command.is_ok(), "command {s:?}");
            assert_eq!(
                url.is_match(s),
                crate::check_server_url(s).is_ok(),
                "url {s:?}"
            );
        }
    }
}
