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

use utoipa::openapi::schema::{AnyOf, Object, Schema, SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::api;
use crate::error::ErrorBody;

/// The character classes and patterns of the text rules: `rmm_api`'s.
pub use rmm_api::pattern::{
    CONTROL, WHITESPACE, login_email as login_email_pattern, server_url as server_url_pattern,
    user_email as user_email_pattern,
};
/// The schemas of the rmm-core words and the text rules: `rmm_api`'s.
pub use rmm_api::schema::{
    command_context, command_type, login_email, not_blank, server_url_strict, user_email,
};

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
        api::UserCreate, api::UserUpdate, api::ReleaseView, api::Role,
        api::CommandStatus, api::Phase, api::InventoryView
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
            RefOr::T(Schema::Object(rmm_api::schema::server_url(insecure_http))),
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
