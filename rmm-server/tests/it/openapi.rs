//! The served OpenAPI description (`GET /api/openapi.json`) against the
//! server itself: every operation lists the statuses its extractors and
//! roles produce with the JSON error body, the limits the handlers enforce
//! are stated, the links lead to real operations, and each pattern accepts
//! exactly what the server accepts (both asked, data-driven).
//! `scripts/api-fuzz` does the same at scale with schemathesis.

use rmm_core::protocol::{CommandContext, CommandType};
use rmm_server::api;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::TestServer;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn document(srv: &TestServer) -> Value {
    let (status, doc) = srv.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, 200);
    doc
}

/// Every operation as (method, path, operation).
fn operations(doc: &Value) -> Vec<(&str, &str, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((method, path.as_str(), op));
            }
        }
    }
    out
}

/// Follows a `$ref` within the document.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap(),
        None => v,
    }
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    &doc["components"]["schemas"][name]
}

#[tokio::test]
async fn every_operation_lists_its_errors_with_the_error_body() {
    let srv = TestServer::start().await;
    let doc = document(&srv).await;
    let ops = operations(&doc);
    assert_eq!(ops.len(), 21);
    for (method, path, op) in ops {
        let label = format!("{method} {path}");
        let responses = op["responses"].as_object().unwrap();
        let has = |status: &str| responses.contains_key(status);
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                let body = &resolve(&doc, response)["content"]["application/json"]["schema"];
                assert_eq!(
                    body["$ref"], "#/components/schemas/ErrorBody",
                    "{label} {status}"
                );
            }
        }
        assert!(has("500"), "{label}: 500");
        let security: Vec<&str> = op["security"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s.as_object().unwrap().keys().map(String::as_str))
            .collect();
        if !security.is_empty() {
            assert!(has("401"), "{label} needs {security:?} but lists no 401");
        }
        if op.get("requestBody").is_some() {
            assert!(
                has("400") && has("413"),
                "{label}: a JSON body can be 400 or 413"
            );
        }
        let params: Vec<&Value> = op["parameters"].as_array().into_iter().flatten().collect();
        if params
            .iter()
            .any(|p| p["in"] == "path" || p["in"] == "query")
        {
            assert!(has("400"), "{label}: a bad parameter is 400");
        }
        for response in responses.values() {
            for (name, link) in resolve(&doc, response)["links"]
                .as_object()
                .into_iter()
                .flatten()
            {
                let target = link["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{label} link {name} has no operationId: {link}"));
                let (_, _, target_op) = operations(&doc)
                    .into_iter()
                    .find(|(_, _, o)| o["operationId"] == target)
                    .unwrap_or_else(|| panic!("{label} link {name}: no operation {target}"));
                for param in link["parameters"].as_object().unwrap().keys() {
                    assert!(
                        target_op["parameters"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|p| p["name"] == param.as_str()),
                        "{label} link {name}: {target} has no parameter {param}"
                    );
                }
            }
        }
    }
}

/// A route, a body that passes its extractors, and the least role it needs.
const ROLES: &[(&str, &str, Option<&str>, &str)] = &[
    ("GET", "/api/agents", None, "readonly"),
    ("GET", "/api/agents/{id}", None, "readonly"),
    ("DELETE", "/api/agents/{id}", None, "admin"),
    (
        "POST",
        "/api/agents/{id}/command",
        Some(r#"{"command_type": "sh", "command": "true"}"#),
        "technician",
    ),
    ("GET", "/api/agents/{id}/commands", None, "readonly"),
    ("GET", "/api/agents/{id}/inventory", None, "readonly"),
    ("GET", "/api/commands/{id}", None, "readonly"),
    ("POST", "/api/commands/{id}/cancel", None, "technician"),
    ("GET", "/api/users", None, "admin"),
    (
        "POST",
        "/api/users",
        Some(r#"{"email": "x@example.com", "password": "password-1", "role": "readonly"}"#),
        "admin",
    ),
    (
        "PATCH",
        "/api/users/{id}",
        Some(r#"{"disabled": true}"#),
        "admin",
    ),
    ("DELETE", "/api/users/{id}", None, "admin"),
    ("GET", "/api/audit", None, "admin"),
    (
        "POST",
        "/api/v1/enroll-bundle",
        Some(r#"{"agent_name": "web-01"}"#),
        "admin",
    ),
];

/// A route that needs more than the readonly role answers a readonly user
/// 403, and lists 403; one that does not, does not.
#[tokio::test]
async fn a_role_requirement_is_a_documented_403() {
    let srv = TestServer::start().await;
    let doc = document(&srv).await;
    let readonly = srv.user("readonly").await;
    let secured = operations(&doc)
        .into_iter()
        .filter(|(_, _, op)| op["security"][0].get("bearer").is_some())
        .count();
    assert_eq!(secured, ROLES.len(), "every bearer route is in ROLES");
    for (method, path, body, role) in ROLES {
        let op = &doc["paths"][path][method.to_lowercase()];
        let listed = op["responses"].get("403").is_some();
        let url = path.replace("{id}", &Uuid::new_v4().to_string());
        let (status, got) = srv
            .raw(method, &url, Some(&readonly), body.unwrap_or_default())
            .await;
        if *role == "readonly" {
            assert_ne!(status, 403, "{method} {path}: {got}");
            assert!(!listed, "{method} {path} lists a 403 it cannot return");
        } else {
            assert_eq!(status, 403, "{method} {path} as readonly: {got}");
            assert!(listed, "{method} {path} returns 403 but does not list it");
        }
    }
}

/// (schema, property, keyword, value): the limits the handlers enforce.
fn limits() -> Vec<(&'static str, &'static str, &'static str, Value)> {
    vec![
        (
            "LoginRequest",
            "email",
            "maxLength",
            json!(api::MAX_EMAIL_CHARS),
        ),
        (
            "LoginRequest",
            "password",
            "maxLength",
            json!(api::MAX_PASSWORD_CHARS),
        ),
        (
            "UserCreate",
            "email",
            "maxLength",
            json!(api::MAX_EMAIL_CHARS),
        ),
        (
            "UserCreate",
            "password",
            "minLength",
            json!(api::MIN_PASSWORD_CHARS),
        ),
        (
            "UserCreate",
            "password",
            "maxLength",
            json!(api::MAX_PASSWORD_CHARS),
        ),
        ("CommandRequest", "timeout_secs", "minimum", json!(1)),
        (
            "CommandRequest",
            "timeout_secs",
            "maximum",
            json!(api::MAX_TIMEOUT_SECS),
        ),
        (
            "CommandRequest",
            "command_type",
            "enum",
            json!(CommandType::WORDS),
        ),
        (
            "CommandRequest",
            "context",
            "enum",
            json!(CommandContext::WORDS),
        ),
        (
            "EnrollRequest",
            "agent_name",
            "pattern",
            json!("^[a-z0-9][a-z0-9-]{0,62}$"),
        ),
        (
            "EnrollRequest",
            "server_url",
            "maxLength",
            json!(api::MAX_SERVER_URL_CHARS),
        ),
    ]
}

#[tokio::test]
async fn the_enforced_limits_are_stated() {
    let srv = TestServer::start().await;
    let doc = document(&srv).await;
    for (name, property, keyword, want) in limits() {
        let got = &schema(&doc, name)["properties"][property][keyword];
        assert_eq!(got, &want, "{name}.{property} {keyword}");
    }
    for (path, bounds) in [
        ("/api/agents/{id}/commands", api::COMMAND_PAGE_LIMIT),
        ("/api/audit", api::AUDIT_PAGE_LIMIT),
    ] {
        let limit = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap();
        assert_eq!(limit["required"], false, "{path}");
        assert_eq!(
            (&limit["schema"]["minimum"], &limit["schema"]["maximum"]),
            (&json!(bounds.0), &json!(bounds.1)),
            "{path}"
        );
    }
    // ids are UUIDs wherever they appear in a path
    for (_, path, op) in operations(&doc) {
        for p in op["parameters"].as_array().into_iter().flatten() {
            if p["name"] == "id" {
                assert_eq!(p["schema"]["format"], "uuid", "{path}");
            }
        }
    }
    // "at least one field, not null"
    let update = schema(&doc, "UserUpdate")["anyOf"].as_array().unwrap();
    let required: Vec<&Value> = update.iter().map(|b| &b["required"][0]).collect();
    assert_eq!(
        required,
        [&json!("disabled"), &json!("password"), &json!("role")]
    );
    // enums are enums
    assert_eq!(
        schema(&doc, "AgentStatus")["enum"],
        json!(["online", "offline"])
    );
    assert_eq!(
        schema(&doc, "CommandStatus")["enum"],
        json!(["running", "completed", "failed", "timeout", "cancelled"])
    );
}

fn pattern(doc: &Value, name: &str, property: &str) -> regex::Regex {
    let p = schema(doc, name)["properties"][property]["pattern"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}.{property} has no pattern"));
    regex::Regex::new(p).unwrap()
}

/// Each pattern's verdict on a value is the server's: `accepted` says what
/// both must answer, and the server is asked.
#[tokio::test]
async fn each_pattern_accepts_what_the_server_accepts() {
    let srv = TestServer::start().await;
    let doc = document(&srv).await;
    let admin = srv.admin().await;
    let (agent, _) = srv.enroll("target").await;

    let agent_name = pattern(&doc, "EnrollRequest", "agent_name");
    let long = "a".repeat(63);
    let too_long = "a".repeat(64);
    for (n, (name, accepted)) in [
        ("web-01", true),
        ("0", true),
        (long.as_str(), true),
        (too_long.as_str(), false),
        ("-web", false),
        ("Web", false),
        ("web_01", false),
        ("", false),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(agent_name.is_match(name), accepted, "agent_name {name:?}");
        // unique names for the accepted ones
        let name = if accepted && name.len() < 60 {
            format!("{name}-{n}")
        } else {
            name.to_owned()
        };
        let body = json!({ "agent_name": name });
        let (status, got) = srv
            .call("POST", "/api/v1/enroll-bundle", Some(&admin), Some(body))
            .await;
        assert_eq!(status == 201, accepted, "agent_name {name:?}: {got}");
    }

    let server_url = pattern(&doc, "EnrollRequest", "server_url");
    for (n, (url, accepted)) in [
        ("https://rmm.example.com", true),
        ("https://rmm.example.com:8443/base/", true),
        ("https://a", true),
        ("https://user@host", true),
        ("https://[::1]:3001", true),
        ("http://127.0.0.1:3001", true),
        ("http://LOCALHOST", true),
        ("http://[::1]/x", true),
        ("http://rmm.example.com", false),
        ("http://127.0.0.256", false),
        ("https://", false),
        ("https:///path", false),
        ("https://:443", false),
        ("https://host@", false),
        ("https://[]", false),
        ("https://a b", false),
        ("ftp://host", false),
        ("HTTPS://host", false),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(server_url.is_match(url), accepted, "server_url {url:?}");
        let body = json!({ "agent_name": format!("url-{n}"), "server_url": url });
        let (status, got) = srv
            .call("POST", "/api/v1/enroll-bundle", Some(&admin), Some(body))
            .await;
        assert_eq!(status == 201, accepted, "server_url {url:?}: {got}");
    }

    let user_email = pattern(&doc, "UserCreate", "email");
    for (n, (email, accepted)) in [
        ("ops@example.com", true),
        ("  Ops@Example.com\n", true),
        ("a@b@c", true),
        ("ops@", false),
        ("@example.com", false),
        ("o ps@example.com", false),
        ("ops@exa\u{7}mple.com", false),
        ("ops@exa\u{3000}mple.com", false),
        ("ops.example.com", false),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(user_email.is_match(email), accepted, "email {email:?}");
        let email = email.replacen("ops", &format!("ops{n}"), 1);
        let body = json!({"email": email, "password": "password-1", "role": "readonly"});
        let (status, got) = srv
            .call("POST", "/api/users", Some(&admin), Some(body))
            .await;
        assert_eq!(status == 201, accepted, "email {email:?}: {got}");
    }

    let login_email = pattern(&doc, "LoginRequest", "email");
    for (email, accepted) in [
        ("nobody@example.com", true),
        ("\t nobody \n", true),
        ("", true),
        ("no\u{1}body", false),
        ("no\nbody", false),
    ] {
        assert_eq!(login_email.is_match(email), accepted, "login {email:?}");
        let body = json!({"email": email, "password": "x"});
        let (status, got) = srv.call("POST", "/api/auth/login", None, Some(body)).await;
        // accepted: a well-formed attempt at an unknown account
        assert_eq!(status == 401, accepted, "login {email:?}: {got}");
    }

    let command = pattern(&doc, "CommandRequest", "command");
    for (text, accepted) in [
        ("true", true),
        (" x ", true),
        ("", false),
        (" \n\t\u{3000}", false),
    ] {
        assert_eq!(command.is_match(text), accepted, "command {text:?}");
        let body = json!({"command_type": "sh", "command": text});
        let (status, got) = srv
            .call(
                "POST",
                &format!("/api/agents/{agent}/command"),
                Some(&admin),
                Some(body),
            )
            .await;
        assert_eq!(status == 200, accepted, "command {text:?}: {got}");
    }
}
