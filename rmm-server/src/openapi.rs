//! The OpenAPI description served at `GET /api/openapi.json` (SPEC §2:
//! "every status code with its error body and every constraint the
//! server enforces").
//!
//! Most of it is derived: each handler's `#[utoipa::path]` lists the
//! statuses it returns (its extractors' included: `ApiJson` 400/413,
//! `ApiPath` and `ApiQuery` 400, `AuthUser` 401), the request types carry
//! their limits as `#[schema]`/`#[param]` attributes, and the responses
//! carry the `links` schemathesis's stateful phase follows (enrollment ->
//! agent -> command -> cancel). This module adds what the derive cannot
//! say:
//!
//! - the patterns that mirror the server's own checks of text, built from
//!   one table of the characters Rust calls whitespace and control
//!   ([`login_email`], [`user_email`], [`not_blank`], server URLs);
//! - the 500 every route can return (a store fault), as one shared
//!   response;
//! - the security schemes (`bearer` for users, `agent` for the agent
//!   WebSocket);
//! - the shape "at least one field, not null" of `PATCH /api/users/:id`;
//! - [`document`]: the `server_url` pattern of the running configuration
//!   (plain `http://` to a host that is not loopback is refused unless
//!   `--insecure-http`).
//!
//! The login -> token step is not a link: a link carries parameters, and
//! the token is a credential of the `bearer` scheme, not a parameter of the
//! routes that need it. Clients (and `scripts/api-fuzz`) log in and send
//! the token as the scheme says.

use utoipa::openapi::schema::{AnyOf, Object, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::api;
use crate::error::ErrorBody;

/// Rust's `char::is_whitespace` (Unicode `White_Space`), as the body of a
/// regex character class (ECMA-262, Python and Rust regex agree on it).
pub const WHITESPACE: &str =
    r"\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";
/// Rust's `char::is_control` (`Cc`), as the body of a character class.
pub const CONTROL: &str = r"\u0000-\u001F\u007F-\u009F";

/// The pattern of a login e-mail: no control character once surrounding
/// whitespace is trimmed (what `POST /api/auth/login` refuses with 422).
pub fn login_email_pattern() -> String {
    format!("^[{WHITESPACE}]*[^{CONTROL}]*[{WHITESPACE}]*$")
}

/// The pattern of a new user's e-mail: once trimmed, `local@domain` with
/// a non-empty local part (no `@`) and domain, no whitespace or control
/// character.
pub fn user_email_pattern() -> String {
    let plain = format!("{WHITESPACE}{CONTROL}");
    format!("^[{WHITESPACE}]*[^{plain}@]+@[^{plain}]+[{WHITESPACE}]*$")
}

/// The pattern of an enrollment's `server_url`, as [`crate::service::enrollment::create_bundle`]
/// checks it: `http://` or `https://`, a non-empty host as
/// [`crate::url_host`] reads it (after the last `@` of the authority; in
/// brackets, or before the last `:`), no whitespace or control character.
/// Unless `insecure_http`, plain `http://` needs a loopback host
/// (`localhost`, `127.0.0.0/8` or `[::1]`; the server also takes other
/// spellings of `::1`).
pub fn server_url_pattern(insecure_http: bool) -> String {
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
        rmm_core::protocol::CommandType::WORDS,
    )
}

/// `context`: the security context words of the protocol.
pub fn command_context() -> Object {
    words(
        "Security context.",
        rmm_core::protocol::CommandContext::WORDS,
    )
}

/// A string with at least one character that is not whitespace.
pub fn not_blank() -> Object {
    string("Not empty or whitespace only.")
        .pattern(Some(format!("[^{WHITESPACE}]")))
        .build()
}

/// `email` of `POST /api/auth/login`.
pub fn login_email() -> Object {
    string("E-mail (case-insensitive; surrounding whitespace ignored).")
        .max_length(Some(api::MAX_EMAIL_CHARS))
        .pattern(Some(login_email_pattern()))
        .build()
}

/// `email` of `POST /api/users`.
pub fn user_email() -> Object {
    string("E-mail: `name@domain`, stored lowercase, surrounding whitespace ignored.")
        .max_length(Some(api::MAX_EMAIL_CHARS))
        .pattern(Some(user_email_pattern()))
        .build()
}

fn server_url(insecure_http: bool) -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .description(Some(
            "The URL the agent connects to (default: this server's public URL). Plain \
             `http://` only to a loopback host unless the server runs with `--insecure-http`.",
        ))
        .max_length(Some(api::MAX_SERVER_URL_CHARS))
        .pattern(Some(server_url_pattern(insecure_http)))
        .build()
}

/// `server_url` of `POST /api/v1/enroll-bundle` under the default policy
/// (plain HTTP to loopback only); [`document`] swaps in the running one.
pub fn server_url_strict() -> Object {
    server_url(false)
}

/// The OpenAPI description of the API.
#[derive(OpenApi)]
#[openapi(
    info(title = "rmm-server", description = "rmm reference server HTTP API (SPEC §2)"),
    paths(
        api::login, api::list_agents, api::get_agent, api::delete_agent, api::submit_command,
        api::get_command, api::cancel_command, api::list_commands, api::agent_inventory,
        api::list_users, api::create_user, api::update_user, api::delete_user, api::list_audit,
        api::create_enrollment, api::enrollment_file, api::agent_ws, api::list_downloads,
        api::download, api::metrics, api::healthz
    ),
    components(schemas(
        ErrorBody, api::AgentView, api::AgentStatus, api::CommandView, api::UserView,
        api::AuditView, api::LoginRequest, api::TokenResponse, api::CommandRequest,
        api::CommandAccepted, api::EnrollRequest, api::EnrollResponse, api::ChannelWord,
        api::UserCreate, api::UserUpdate, api::ReleaseView, crate::store::Role,
        crate::store::CommandStatus, crate::store::Phase, api::InventoryView
    )),
    modifiers(&Completions)
)]
pub struct ApiDoc;

/// The name of the shared 500 response.
pub const SERVER_FAULT: &str = "ServerFault";

struct Completions;

impl Modify for Completions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("`POST /api/auth/login` returns the token"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "agent",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Agent <agent id>:<agent secret>` (from the enrollment payload)",
            ))),
        );
        components.responses.insert(
            SERVER_FAULT.to_owned(),
            RefOr::T(
                ResponseBuilder::new()
                    .description("`internal`: a server fault (the store is unreachable); the detail is logged, not sent")
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            ),
        );
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                op.responses.responses.insert(
                    "500".to_owned(),
                    RefOr::Ref(Ref::from_response_name(SERVER_FAULT)),
                );
            }
        }
        if let Some(RefOr::T(Schema::Object(update))) = components.schemas.get_mut("UserUpdate") {
            let shape = at_least_one_property(update);
            components
                .schemas
                .insert("UserUpdate".to_owned(), RefOr::T(shape));
        }
    }
}

/// `object` as "at least one of its properties, not null": one `anyOf`
/// branch per property that makes it required and drops its `null`
/// alternative.
fn at_least_one_property(object: &Object) -> Schema {
    let mut any = AnyOf::new();
    any.description = object.description.clone();
    for (name, property) in &object.properties {
        let mut branch = object.clone();
        branch.description = None;
        branch.required = vec![name.clone()];
        branch
            .properties
            .insert(name.clone(), without_null(property.clone()));
        any.items.push(RefOr::T(Schema::Object(branch)));
    }
    Schema::AnyOf(any)
}

/// A property schema without its `null` alternative (`Option<T>` is
/// `[T, null]` for scalars and `oneOf: [null, $ref]` for components).
fn without_null(schema: RefOr<Schema>) -> RefOr<Schema> {
    let is_null = |s: &RefOr<Schema>| matches!(s, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null));
    match schema {
        RefOr::T(Schema::OneOf(one)) => {
            let mut rest: Vec<RefOr<Schema>> =
                one.items.into_iter().filter(|s| !is_null(s)).collect();
            if rest.len() == 1 {
                rest.remove(0)
            } else {
                let mut one = utoipa::openapi::schema::OneOf::new();
                one.items = rest;
                RefOr::T(Schema::OneOf(one))
            }
        }
        RefOr::T(Schema::Object(mut o)) => {
            if let SchemaType::Array(types) = &o.schema_type {
                let kept: Vec<Type> = types
                    .iter()
                    .filter(|t| **t != Type::Null)
                    .cloned()
                    .collect();
                o.schema_type = match kept.as_slice() {
                    [one] => SchemaType::Type(one.clone()),
                    _ => SchemaType::from_iter(kept),
                };
            }
            RefOr::T(Schema::Object(o))
        }
        other => other,
    }
}

/// The description of a server running with this `--insecure-http`
/// setting, as `GET /api/openapi.json` serves it.
///
/// utoipa 5.5 serializes a response link's fields in snake case
/// (`operation_id`, `operation_ref`, `request_body`), which no OpenAPI
/// tool reads; they are renamed to the specification's camel case here.
pub fn document(insecure_http: bool) -> serde_json::Value {
    let mut doc = ApiDoc::openapi();
    if let Some(RefOr::T(Schema::Object(enroll))) = doc
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("EnrollRequest"))
    {
        enroll.properties.insert(
            "server_url".to_owned(),
            RefOr::T(Schema::Object(server_url(insecure_http))),
        );
    }
    let mut json = serde_json::to_value(&doc).unwrap_or_default();
    let links = json
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses")?.as_object_mut())
        .flat_map(|responses| responses.values_mut())
        .filter_map(|response| response.get_mut("links")?.as_object_mut())
        .flat_map(|links| links.values_mut())
        .filter_map(serde_json::Value::as_object_mut);
    for link in links {
        for (snake, camel) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(v) = link.remove(snake) {
                link.insert(camel.to_owned(), v);
            }
        }
    }
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The classes are Rust's predicates, character for character.
    #[test]
    fn the_classes_are_rusts_whitespace_and_control() {
        let ws = regex::Regex::new(&format!("^[{WHITESPACE}]$")).unwrap();
        let ctrl = regex::Regex::new(&format!("^[{CONTROL}]$")).unwrap();
        let mut buf = [0u8; 4];
        for c in (0..=0x10_FFFF).filter_map(char::from_u32) {
            let s = c.encode_utf8(&mut buf);
            assert_eq!(ws.is_match(s), c.is_whitespace(), "{c:?}");
            assert_eq!(ctrl.is_match(s), c.is_control(), "{c:?}");
        }
    }

    fn check(pattern: &str, input: &str, want: bool) {
        let re = regex::Regex::new(pattern).unwrap();
        assert_eq!(re.is_match(input), want, "{input:?} against {pattern}");
    }

    #[test]
    fn server_urls_follow_the_insecure_http_setting() {
        let strict = server_url_pattern(false);
        let open = server_url_pattern(true);
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
            check(&strict, url, strict_ok);
            check(&open, url, open_ok);
        }
    }

    #[test]
    fn the_served_document_carries_the_running_policy_and_camel_case_links() {
        for insecure in [false, true] {
            let doc = document(insecure);
            let served = &doc["components"]["schemas"]["EnrollRequest"]["properties"]["server_url"]
                ["pattern"];
            assert_eq!(served, &serde_json::json!(server_url_pattern(insecure)));
            let link = &doc["paths"]["/api/v1/enroll-bundle"]["post"]["responses"]["201"]["links"]
                ["agent"];
            assert_eq!(link["operationId"], "get_agent", "{link}");
            assert!(link.get("operation_id").is_none(), "{link}");
        }
    }
}
