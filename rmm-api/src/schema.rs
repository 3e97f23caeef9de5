//! The OpenAPI schemas the derives cannot say by themselves (feature
//! `openapi`): the rmm-core words as enums, the text rules as patterns
//! ([`crate::pattern`]) and limits, and the channel word.

use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};

use crate::{MAX_EMAIL_CHARS, MAX_SERVER_URL_CHARS, pattern};

// The schema of `crate::Channel` (whose serde words these are; a test
// checks): its doc comment is the description.
/// Release channel word.
#[derive(Debug, Clone, Copy, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ChannelWord)]
pub enum ChannelWord {
    /// Stable builds only.
    Stable,
    /// Newest builds.
    Beta,
}

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

fn words(description: &str, words: &[&str]) -> Object {
    string(description)
        .enum_values(Some(words.iter().copied()))
        .build()
}

/// `command_type`: the interpreter words of the protocol.
pub fn command_type() -> Object {
    words(
        "Interpreter (`shell` is an alias of `sh`).",
        crate::CommandType::WORDS,
    )
}

/// `context`: the security context words of the protocol.
pub fn command_context() -> Object {
    words("Security context.", crate::CommandContext::WORDS)
}

/// A string with at least one character that is not whitespace.
pub fn not_blank() -> Object {
    string("Not empty or whitespace only.")
        .pattern(Some(pattern::not_blank()))
        .build()
}

/// `email` of `POST /api/auth/login`.
pub fn login_email() -> Object {
    string("E-mail (case-insensitive; surrounding whitespace ignored).")
        .max_length(Some(MAX_EMAIL_CHARS))
        .pattern(Some(pattern::login_email()))
        .build()
}

/// `email` of `POST /api/users`.
pub fn user_email() -> Object {
    string("E-mail: `name@domain`, stored lowercase, surrounding whitespace ignored.")
        .max_length(Some(MAX_EMAIL_CHARS))
        .pattern(Some(pattern::user_email()))
        .build()
}

/// `server_url` of `POST /api/v1/enroll-bundle` on a server running with
/// this `--insecure-http` setting ([`pattern::server_url`]).
pub fn server_url(insecure_http: bool) -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .description(Some(
            "The URL the agent connects to (default: this server's public URL). Plain \
             `http://` only to a loopback host unless the server runs with `--insecure-http`.",
        ))
        .max_length(Some(MAX_SERVER_URL_CHARS))
        .pattern(Some(pattern::server_url(insecure_http)))
        .build()
}

/// [`server_url`] under the default policy (plain HTTP to loopback only);
/// the server swaps in its running one.
pub fn server_url_strict() -> Object {
    server_url(false)
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    use super::*;

    #[test]
    fn the_channel_word_schema_has_the_channel_words() {
        let json = serde_json::to_value(ChannelWord::schema()).expect("ser");
        let words: Vec<String> = [crate::Channel::Stable, crate::Channel::Beta]
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(json["enum"], serde_json::json!(words));
    }
}
