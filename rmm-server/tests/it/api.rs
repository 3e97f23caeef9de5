//! HTTP API tests against an in-process server on a real socket: every
//! route's happy path and its 400/401/403/404/409/413/422/429 JSON errors.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{ADMIN, JWT_SECRET, TestServer, assert_error};

fn jwt(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn login_and_generic_errors() {
    let srv = TestServer::start().await;
    let token = srv.admin().await;
    assert_eq!(token.split('.').count(), 3);
    // e-mail is case-insensitive
    srv.login(&ADMIN.0.to_uppercase(), ADMIN.1).await;
    let wrong = srv
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"email": ADMIN.0, "password": "nope"})),
        )
        .await;
    assert_error(&wrong, 401, "invalid_credentials");
    let unknown = srv
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"email": "ghost@example.com", "password": "nope"})),
        )
        .await;
    assert_error(&unknown, 401, "invalid_credentials");
    assert_eq!(
        wrong.1, unknown.1,
        "the same error for unknown user and wrong password"
    );
    assert_error(
        &srv.raw("POST", "/api/auth/login", None, "{not json").await,
        400,
        "invalid_json",
    );
    assert_error(
        &srv.raw("POST", "/api/auth/login", None, "").await,
        400,
        "invalid_json",
    );
    assert_error(
        &srv.call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"email": ADMIN.0})),
        )
        .await,
        400,
        "invalid_body",
    );
    assert_error(
        &srv.call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"email": 5, "password": "x"})),
        )
        .await,
        400,
        "invalid_body",
    );
    assert_error(
        &srv.call("POST", "/api/auth/login", None, Some(json!([1, 2])))
            .await,
        400,
        "invalid_body",
    );
    // the token's claims: HS256, exp = iat + 24 h
    let payload = token.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        86_400
    );
    assert_eq!(claims["role"], "admin");
}

/// An HTTP client whose connections come from `ip` (a loopback address).
fn client_from(ip: &str) -> reqwest::Client {
    let _ = crate::common::http_client();
    reqwest::Client::builder()
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn login_from(
    srv: &TestServer,
    client: &reqwest::Client,
    email: &str,
    password: &str,
    headers: &[(&str, &str)],
) -> (u16, Value, Option<u64>) {
    let mut req = client
        .post(srv.url("/api/auth/login"))
        .json(&json!({"email": email, "password": password}));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let (status, body) = crate::common::decode(resp).await;
    (status, body, retry)
}

/// The throttle keys on (account, client): an attacker cannot lock anybody
/// out, and a client that has not been failing always gets to try.
#[tokio::test]
async fn login_throttle_cannot_lock_out_others() {
    let srv = TestServer::start_with(|c| {
        c.login_throttle = rmm_server::auth::ThrottlePolicy {
            pair_free_failures: 2,
            pair_base_delay: Duration::from_secs(60),
            pair_max_delay: Duration::from_secs(600),
            pair_forget_after: Duration::from_secs(3600),
            account_max_failures: 5,
            account_window: Duration::from_secs(300),
            client_max_failures: 6,
            client_window: Duration::from_secs(900),
        };
        c.unauth_audit_window = Duration::from_millis(500);
    })
    .await;
    let attacker = client_from("127.0.0.2");
    let admin_laptop = client_from("127.0.0.1");
    // two free failures, then the pair waits (60 s, growing)
    for _ in 0..3 {
        let r = login_from(&srv, &attacker, ADMIN.0, "bad", &[]).await;
        assert_eq!(
            (r.0, r.1["error"].as_str()),
            (401, Some("invalid_credentials"))
        );
    }
    let r = login_from(&srv, &attacker, ADMIN.0, ADMIN.1, &[]).await;
    assert_eq!(
        (r.0, r.1["error"].as_str()),
        (429, Some("rate_limited")),
        "{}",
        r.1
    );
    assert!(matches!(r.2, Some(50..=60)), "{:?}", r.2);
    // the admin, from a client that has not been failing, logs in
    let r = login_from(&srv, &admin_laptop, ADMIN.0, ADMIN.1, &[]).await;
    assert_eq!(r.0, 200, "{}", r.1);
    // many clients fail once each: the account-wide limit refuses the
    // failing ones only
    for i in 3..6 {
        let c = client_from(&format!("127.0.0.{i}"));
        assert_eq!(login_from(&srv, &c, ADMIN.0, "bad", &[]).await.0, 401);
    }
    let failing = client_from("127.0.0.3");
    assert_eq!(
        login_from(&srv, &failing, ADMIN.0, ADMIN.1, &[]).await.0,
        429
    );
    assert_eq!(
        login_from(&srv, &admin_laptop, ADMIN.0, ADMIN.1, &[])
            .await
            .0,
        200
    );
    // credential stuffing from one client across accounts
    let stuffer = client_from("127.0.0.9");
    for i in 0..6 {
        let r = login_from(&srv, &stuffer, &format!("user{i}@e.com"), "bad", &[]).await;
        assert_eq!(r.0, 401);
    }
    assert_eq!(
        login_from(&srv, &stuffer, "fresh@e.com", "bad", &[])
            .await
            .0,
        429
    );
    // throttled attempts do not write a row each: 50 more from the attacker
    for _ in 0..50 {
        assert_eq!(
            login_from(&srv, &attacker, ADMIN.0, "bad", &[]).await.0,
            429
        );
    }
    let throttled_rows = || async {
        srv.store()
            .list_audit(None, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.entry.action == "login.throttled")
            .collect::<Vec<_>>()
    };
    // the aggregated rows are written once their window is over
    let mut rows = Vec::new();
    for _ in 0..100 {
        rows = throttled_rows().await;
        let counted: u64 = rows
            .iter()
            .filter(|r| r.entry.address.as_deref() == Some("127.0.0.2"))
            .map(|r| r.entry.detail["count"].as_u64().unwrap())
            .sum();
        if counted == 51 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let attacker_rows = rows
        .iter()
        .filter(|r| r.entry.address.as_deref() == Some("127.0.0.2"))
        .count();
    assert!((1..=3).contains(&attacker_rows), "{rows:?}");
    // failures name no attacker-chosen account
    let audit = srv.store().list_audit(None, 1000).await.unwrap();
    let unknown = audit
        .iter()
        .find(|a| a.entry.action == "login.failure" && a.entry.detail["email"] == "user0@e.com")
        .expect("failure audited");
    assert_eq!(unknown.entry.actor, "unknown-account");
    assert_eq!(unknown.entry.address.as_deref(), Some("127.0.0.9"));
}

/// Unauthenticated callers cannot grow the audit log at their pace.
#[tokio::test]
async fn unauthenticated_audit_rows_are_capped() {
    let srv = TestServer::start_with(|c| {
        c.unauth_audit_per_window = 5;
        c.unauth_audit_window = Duration::from_secs(3600);
    })
    .await;
    for i in 0..30 {
        let c = client_from(&format!("127.0.1.{}", i + 1));
        let email = format!("{}\u{0}x@e.com", "a".repeat(200));
        let r = login_from(&srv, &c, &email, "bad", &[]).await;
        assert_eq!(r.0, 422, "control characters are refused: {}", r.1);
        let r = login_from(&srv, &c, &format!("{}@e.com", "b".repeat(240)), "bad", &[]).await;
        assert_eq!(r.0, 401);
    }
    let audit = srv.store().list_audit(None, 1000).await.unwrap();
    let failures: Vec<_> = audit
        .iter()
        .filter(|a| a.entry.action == "login.failure")
        .collect();
    assert_eq!(failures.len(), 5, "the rest is counted, not stored");
    for f in &failures {
        assert!(f.entry.detail["email"].as_str().unwrap().chars().count() <= 64);
    }
    // e-mails with control characters are refused for new users too
    let admin = srv.admin().await;
    let r = srv
        .call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({"email": "a\u{0}b@example.com", "password": "password-123", "role": "readonly"})),
        )
        .await;
    assert_error(&r, 422, "invalid_email");
}

/// The client address comes from a forwarding header only when the peer
/// is a configured trusted proxy.
#[tokio::test]
async fn client_address_from_trusted_proxies_only() {
    let srv = TestServer::start_with(|c| {
        c.trusted_proxies = vec!["127.0.0.5/32".parse().unwrap()];
    })
    .await;
    let proxy = client_from("127.0.0.5");
    let direct = client_from("127.0.0.6");
    let xff = [("x-forwarded-for", "203.0.113.1, 198.51.100.7")];
    assert_eq!(login_from(&srv, &proxy, ADMIN.0, "bad", &xff).await.0, 401);
    assert_eq!(login_from(&srv, &direct, ADMIN.0, "bad", &xff).await.0, 401);
    let addrs: Vec<String> = srv
        .store()
        .list_audit(None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.entry.action == "login.failure")
        .filter_map(|a| a.entry.address)
        .collect();
    assert_eq!(addrs, ["127.0.0.6", "198.51.100.7"]);
}

#[tokio::test]
async fn bad_credentials_are_401() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let claims: Value = {
        let payload = admin.split('.').nth(1).unwrap();
        use base64::Engine;
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    let now = i64::try_from(crate::common::wall_ms() / 1000).unwrap();
    let expired = jwt(
        json!({"sub": claims["sub"], "email": ADMIN.0, "role": "admin", "iat": now - 90_000, "exp": now - 3600}),
        JWT_SECRET,
    );
    let no_exp = jwt(
        json!({"sub": claims["sub"], "email": ADMIN.0, "role": "admin", "iat": now}),
        JWT_SECRET,
    );
    let other_key = jwt(
        json!({"sub": claims["sub"], "email": ADMIN.0, "role": "admin", "iat": now, "exp": now + 60}),
        "another-secret-another-secret-another",
    );
    use base64::Engine;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(
            json!({"sub": claims["sub"], "email": ADMIN.0, "role": "admin", "iat": now, "exp": now + 60})
        )
    );
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &json!({"sub": claims["sub"], "email": ADMIN.0, "role": "admin", "iat": now, "exp": now + 60}),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    for (name, header) in [
        ("garbage", "Bearer garbage".to_owned()),
        ("expired", format!("Bearer {expired}")),
        ("no exp", format!("Bearer {no_exp}")),
        ("wrong key", format!("Bearer {other_key}")),
        ("alg none", format!("Bearer {alg_none}")),
        ("alg HS512", format!("Bearer {hs512}")),
        ("agent scheme", format!("Agent {}:secret", Uuid::new_v4())),
        ("basic", "Basic YTpi".to_owned()),
        ("empty bearer", "Bearer ".to_owned()),
    ] {
        let resp = srv
            .http
            .get(srv.url("/api/agents"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        let got = crate::common::decode(resp).await;
        assert_error(&got, 401, "unauthorized");
        eprintln!("{name}: {}", got.1["message"]);
    }
    assert_error(
        &srv.call("GET", "/api/agents", None, None).await,
        401,
        "unauthorized",
    );
    // a deleted user's token stops working
    let tech = srv.user("technician").await;
    let users = srv.call("GET", "/api/users", Some(&admin), None).await.1;
    let tech_id = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["role"] == "technician")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        srv.call(
            "DELETE",
            &format!("/api/users/{tech_id}"),
            Some(&admin),
            None
        )
        .await
        .0,
        204
    );
    assert_error(
        &srv.call("GET", "/api/agents", Some(&tech), None).await,
        401,
        "unauthorized",
    );
}

#[tokio::test]
async fn roles_are_checked_on_every_route() {
    let srv = TestServer::start().await;
    let ro = srv.user("readonly").await;
    let tech = srv.user("technician").await;
    let admin = srv.admin().await;
    let (agent, _) = srv.enroll("web").await;
    let cmd = srv
        .submit(
            &tech,
            agent,
            json!({"command_type": "sh", "command": "true"}),
        )
        .await;
    let forbidden: Vec<(&str, String, &str, Option<Value>)> = vec![
        (
            "readonly",
            format!("/api/agents/{agent}/command"),
            "POST",
            Some(json!({"command_type": "sh", "command": "true"})),
        ),
        (
            "readonly",
            format!("/api/commands/{cmd}/cancel"),
            "POST",
            None,
        ),
        (
            "readonly",
            "/api/v1/enroll-bundle".into(),
            "POST",
            Some(json!({"agent_name": "x"})),
        ),
        (
            "technician",
            "/api/v1/enroll-bundle".into(),
            "POST",
            Some(json!({"agent_name": "x"})),
        ),
        ("technician", "/api/users".into(), "GET", None),
        (
            "technician",
            "/api/users".into(),
            "POST",
            Some(json!({"email": "a@b.c", "password": "password-1", "role": "admin"})),
        ),
        ("technician", "/api/audit".into(), "GET", None),
        ("technician", format!("/api/agents/{agent}"), "DELETE", None),
        (
            "readonly",
            format!("/api/users/{}", Uuid::new_v4()),
            "DELETE",
            None,
        ),
    ];
    for (who, path, method, body) in forbidden {
        let token = if who == "readonly" { &ro } else { &tech };
        let got = srv.call(method, &path, Some(token), body).await;
        assert_error(&got, 403, "forbidden");
    }
    // reads are fine for readonly
    for path in [
        "/api/agents".to_owned(),
        format!("/api/agents/{agent}"),
        format!("/api/commands/{cmd}"),
        format!("/api/agents/{agent}/commands"),
    ] {
        assert_eq!(
            srv.call("GET", &path, Some(&ro), None).await.0,
            200,
            "{path}"
        );
    }
    assert_eq!(
        srv.call("GET", "/api/audit", Some(&admin), None).await.0,
        200
    );
}

#[tokio::test]
async fn agents_routes() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    assert_eq!(
        srv.call("GET", "/api/agents", Some(&admin), None).await.1,
        json!([])
    );
    let (agent, _w) = srv.agent("web-1", "m-1").await;
    let (status, list) = srv.call("GET", "/api/agents", Some(&admin), None).await;
    assert_eq!(status, 200);
    let a = &list[0];
    for field in [
        "id",
        "hostname",
        "os",
        "arch",
        "agent_version",
        "channel",
        "status",
        "last_seen",
        "machine_uid",
        "address",
    ] {
        assert!(a.get(field).is_some(), "missing {field}: {a}");
    }
    assert_eq!(a["id"], agent.id.to_string());
    assert_eq!(
        (
            a["status"].as_str(),
            a["hostname"].as_str(),
            a["channel"].as_str()
        ),
        (Some("online"), Some("test-host"), Some("stable"))
    );
    assert_eq!(a["machine_uid"], "m-1");
    assert_eq!(a["address"], "127.0.0.1");
    assert!(chrono::DateTime::parse_from_rfc3339(a["last_seen"].as_str().unwrap()).is_ok());
    let one = srv
        .call(
            "GET",
            &format!("/api/agents/{}", agent.id),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(one.1["name"], "web-1");
    assert_error(
        &srv.call("GET", "/api/agents/not-a-uuid", Some(&admin), None)
            .await,
        400,
        "invalid_id",
    );
    assert_error(
        &srv.call(
            "GET",
            &format!("/api/agents/{}", Uuid::new_v4()),
            Some(&admin),
            None,
        )
        .await,
        404,
        "not_found",
    );
    // delete: credential revoked, connection closed, hidden from the list
    assert_eq!(
        srv.call(
            "DELETE",
            &format!("/api/agents/{}", agent.id),
            Some(&admin),
            None
        )
        .await
        .0,
        204
    );
    assert_error(
        &srv.call(
            "DELETE",
            &format!("/api/agents/{}", agent.id),
            Some(&admin),
            None,
        )
        .await,
        404,
        "not_found",
    );
    assert_eq!(
        srv.call("GET", "/api/agents", Some(&admin), None).await.1,
        json!([])
    );
    let mut agent = agent;
    assert!(
        agent
            .recv_within(Duration::from_secs(5))
            .await
            .unwrap()
            .is_none(),
        "connection closed"
    );
}

#[tokio::test]
async fn command_submission_validation() {
    let srv = TestServer::start_with(|c| c.body_limit = 256 * 1024).await;
    let tech = srv.user("technician").await;
    let (agent, _) = srv.enroll("web").await;
    let path = format!("/api/agents/{agent}/command");
    let id = srv
        .submit(
            &tech,
            agent,
            json!({"command_type": "bash", "command": "echo hi", "timeout_secs": 30}),
        )
        .await;
    let c = srv.command(&tech, id).await;
    assert_eq!(
        (
            c["status"].as_str(),
            c["phase"].as_str(),
            c["context"].as_str()
        ),
        (Some("running"), Some("queued"), Some("system"))
    );
    assert_eq!(
        (
            c["exit_code"].clone(),
            c["started_at"].clone(),
            c["completed_at"].clone()
        ),
        (Value::Null, Value::Null, Value::Null)
    );
    for field in [
        "id",
        "agent_id",
        "command_type",
        "command_text",
        "status",
        "exit_code",
        "stdout",
        "stderr",
        "created_at",
        "started_at",
        "completed_at",
    ] {
        assert!(c.get(field).is_some(), "missing {field}");
    }
    // every command type and context is accepted
    for ty in ["shell", "bash", "sh", "powershell", "python"] {
        srv.submit(
            &tech,
            agent,
            json!({"command_type": ty, "command": "x", "context": "user_session"}),
        )
        .await;
    }
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"command_type": "zsh", "command": "x"}),
            400,
            "invalid_body",
        ),
        (json!({"command_type": "sh"}), 400, "invalid_body"),
        (
            json!({"command_type": "sh", "command": 5}),
            400,
            "invalid_body",
        ),
        (
            json!({"command_type": "sh", "command": "x", "context": "root"}),
            400,
            "invalid_body",
        ),
        (
            json!({"command_type": "sh", "command": "x", "timeout_secs": -1}),
            400,
            "invalid_body",
        ),
        (
            json!({"command_type": "sh", "command": "x", "timeout_secs": "10"}),
            400,
            "invalid_body",
        ),
        (
            json!({"command_type": "sh", "command": "   "}),
            422,
            "invalid_command",
        ),
        (
            json!({"command_type": "sh", "command": "x", "timeout_secs": 0}),
            422,
            "invalid_timeout",
        ),
        (
            json!({"command_type": "sh", "command": "x", "timeout_secs": 604_801}),
            422,
            "invalid_timeout",
        ),
    ];
    for (body, status, code) in cases {
        let got = srv
            .call("POST", &path, Some(&tech), Some(body.clone()))
            .await;
        assert_error(&got, status, code);
    }
    assert_error(
        &srv.raw("POST", &path, Some(&tech), "{\"command_type\":")
            .await,
        400,
        "invalid_json",
    );
    assert_error(
        &srv.call(
            "POST",
            "/api/agents/xyz/command",
            Some(&tech),
            Some(json!({"command_type": "sh", "command": "x"})),
        )
        .await,
        400,
        "invalid_id",
    );
    assert_error(
        &srv.call(
            "POST",
            &format!("/api/agents/{}/command", Uuid::new_v4()),
            Some(&tech),
            Some(json!({"command_type": "sh", "command": "x"})),
        )
        .await,
        404,
        "not_found",
    );
    // size: under the limit works, over is 413 (with and without Content-Length)
    let big = "x".repeat(200 * 1024);
    srv.submit(&tech, agent, json!({"command_type": "sh", "command": big}))
        .await;
    let huge = "x".repeat(300 * 1024);
    assert_error(
        &srv.call(
            "POST",
            &path,
            Some(&tech),
            Some(json!({"command_type": "sh", "command": huge})),
        )
        .await,
        413,
        "payload_too_large",
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..40).map(|_| Ok(vec![b' '; 10 * 1024])).collect();
    let stream = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    assert_error(
        &srv.raw("POST", &path, Some(&tech), stream).await,
        413,
        "payload_too_large",
    );
}

#[tokio::test]
async fn multi_mib_scripts_are_accepted_and_delivered() {
    let srv = TestServer::start().await; // default 8 MiB limit
    let tech = srv.user("technician").await;
    let (mut agent, _) = srv.agent("big", "m-big").await;
    let script = format!("echo start\n# {}\necho end\n", "y".repeat(3 * 1024 * 1024));
    let id = srv
        .submit(
            &tech,
            agent.id,
            json!({"command_type": "bash", "command": script}),
        )
        .await;
    match agent.recv().await {
        Some(rmm_core::protocol::Message::RunCommand(r)) => {
            assert_eq!(r.command_id, id);
            assert_eq!(r.command, script);
        }
        other => panic!("expected run_command, got {other:?}"),
    }
}

#[tokio::test]
async fn command_reads_cancel_and_paging() {
    let srv = TestServer::start().await;
    let tech = srv.user("technician").await;
    let (agent, _) = srv.enroll("web").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            srv.submit(
                &tech,
                agent,
                json!({"command_type": "sh", "command": format!("echo {i}")}),
            )
            .await,
        );
    }
    assert_error(
        &srv.call("GET", "/api/commands/123", Some(&tech), None)
            .await,
        400,
        "invalid_id",
    );
    assert_error(
        &srv.call(
            "GET",
            &format!("/api/commands/{}", Uuid::new_v4()),
            Some(&tech),
            None,
        )
        .await,
        404,
        "not_found",
    );
    // paging newest first
    let page1 = srv
        .call(
            "GET",
            &format!("/api/agents/{agent}/commands?limit=2"),
            Some(&tech),
            None,
        )
        .await
        .1;
    let page1: Vec<&str> = page1
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(page1.len(), 2);
    let before = page1[1];
    let page2 = srv
        .call(
            "GET",
            &format!("/api/agents/{agent}/commands?limit=10&before={before}"),
            Some(&tech),
            None,
        )
        .await
        .1;
    assert_eq!(page2.as_array().unwrap().len(), 3);
    assert!(page2[0].get("stdout").is_none(), "listings carry no output");
    assert_error(
        &srv.call(
            "GET",
            &format!("/api/agents/{agent}/commands?limit=0"),
            Some(&tech),
            None,
        )
        .await,
        400,
        "invalid_query",
    );
    assert_error(
        &srv.call(
            "GET",
            &format!("/api/agents/{agent}/commands?limit=abc"),
            Some(&tech),
            None,
        )
        .await,
        400,
        "invalid_query",
    );
    assert_error(
        &srv.call(
            "GET",
            &format!("/api/agents/{agent}/commands?before=nope"),
            Some(&tech),
            None,
        )
        .await,
        400,
        "invalid_query",
    );
    assert_error(
        &srv.call(
            "GET",
            &format!("/api/agents/{}/commands", Uuid::new_v4()),
            Some(&tech),
            None,
        )
        .await,
        404,
        "not_found",
    );
    // cancel a queued command: final at once; a second cancel conflicts
    let (status, c) = srv
        .call(
            "POST",
            &format!("/api/commands/{}/cancel", ids[0]),
            Some(&tech),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 202, "{c}");
    assert_eq!(
        (c["status"].as_str(), c["phase"].as_str()),
        (Some("cancelled"), Some("done"))
    );
    assert!(c["completed_at"].is_string());
    assert_error(
        &srv.call(
            "POST",
            &format!("/api/commands/{}/cancel", ids[0]),
            Some(&tech),
            None,
        )
        .await,
        409,
        "conflict",
    );
    assert_error(
        &srv.call(
            "POST",
            &format!("/api/commands/{}/cancel", Uuid::new_v4()),
            Some(&tech),
            None,
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        &srv.call("POST", "/api/commands/zz/cancel", Some(&tech), None)
            .await,
        400,
        "invalid_id",
    );
    let audit = srv.store().list_audit(None, 100).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.entry.action == "command.submit")
            .count(),
        5
    );
    assert!(audit.iter().any(|a| a.entry.action == "command.cancel"
        && a.entry.target.as_deref() == Some(&ids[0].to_string())));
}

#[tokio::test]
async fn users_routes() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let (status, u) = srv
        .call("POST", "/api/users", Some(&admin), Some(json!({"email": "Tech@Example.com", "password": "password-1", "role": "technician"})))
        .await;
    assert_eq!(status, 201, "{u}");
    assert_eq!(
        (u["email"].as_str(), u["role"].as_str()),
        (Some("tech@example.com"), Some("technician"))
    );
    assert!(u.get("password_hash").is_none());
    let id = u["id"].as_str().unwrap().to_owned();
    assert_error(
        &srv.call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(
                json!({"email": "tech@example.com", "password": "password-1", "role": "readonly"}),
            ),
        )
        .await,
        409,
        "conflict",
    );
    assert_error(
        &srv.call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({"email": "x@y.z", "password": "short", "role": "readonly"})),
        )
        .await,
        422,
        "weak_password",
    );
    assert_error(
        &srv.call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({"email": "nope", "password": "password-1", "role": "readonly"})),
        )
        .await,
        422,
        "invalid_email",
    );
    assert_error(
        &srv.call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({"email": "x@y.z", "password": "password-1", "role": "root"})),
        )
        .await,
        400,
        "invalid_body",
    );
    let (status, changed) = srv
        .call(
            "PATCH",
            &format!("/api/users/{id}"),
            Some(&admin),
            Some(json!({"role": "readonly", "password": "password-2"})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["role"], "readonly");
    srv.login("tech@example.com", "password-2").await;
    assert_error(
        &srv.call(
            "PATCH",
            &format!("/api/users/{id}"),
            Some(&admin),
            Some(json!({})),
        )
        .await,
        422,
        "nothing_to_change",
    );
    assert_error(
        &srv.call(
            "PATCH",
            &format!("/api/users/{}", Uuid::new_v4()),
            Some(&admin),
            Some(json!({"role": "admin"})),
        )
        .await,
        404,
        "not_found",
    );
    let me = srv.call("GET", "/api/users", Some(&admin), None).await.1;
    let my_id = me
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == ADMIN.0)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_error(
        &srv.call("DELETE", &format!("/api/users/{my_id}"), Some(&admin), None)
            .await,
        409,
        "conflict",
    );
    assert_eq!(
        srv.call("DELETE", &format!("/api/users/{id}"), Some(&admin), None)
            .await
            .0,
        204
    );
    assert_error(
        &srv.call("DELETE", &format!("/api/users/{id}"), Some(&admin), None)
            .await,
        404,
        "not_found",
    );
    let audit = srv
        .call("GET", "/api/audit?limit=50", Some(&admin), None)
        .await
        .1;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    for want in ["user.create", "user.update", "user.delete", "login.success"] {
        assert!(actions.contains(&want), "{want} in {actions:?}");
    }
    assert_error(
        &srv.call("GET", "/api/audit?limit=5000", Some(&admin), None)
            .await,
        400,
        "invalid_query",
    );
}

#[tokio::test]
async fn service_routes_and_fallbacks() {
    let srv = TestServer::start().await;
    let (status, doc) = srv.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/auth/login",
        "/api/agents",
        "/api/agents/{id}/command",
        "/api/commands/{id}",
        "/api/commands/{id}/cancel",
        "/api/v1/enroll-bundle",
    ] {
        assert!(doc["paths"].get(path).is_some(), "openapi lacks {path}");
    }
    let (status, health) = srv.call("GET", "/healthz", None, None).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let admin = srv.admin().await;
    let (agent, _) = srv.enroll("m").await;
    srv.submit(
        &admin,
        agent,
        json!({"command_type": "sh", "command": "true"}),
    )
    .await;
    let (status, text) = srv.call("GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    let text = text.as_str().unwrap();
    assert!(text.contains("rmm_agents_connected 0"), "{text}");
    assert!(
        text.contains("rmm_commands{status=\"running\"} 1"),
        "{text}"
    );
    assert!(
        text.lines().any(
            |l| l.starts_with("rmm_http_request_duration_seconds_bucket{")
                && l.contains("route=\"/api/auth/login\"")
        ),
        "{text}"
    );
    assert_error(
        &srv.call("GET", "/api/nope", None, None).await,
        404,
        "not_found",
    );
    assert_error(
        &srv.call("PUT", "/api/agents", Some(&admin), None).await,
        405,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = TestServer::start_with(|c| c.header_read_timeout = Duration::from_millis(500)).await;
    // slowloris: half a request, then nothing
    let mut tcp = tokio::net::TcpStream::connect(srv.addr()).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection still open after 5 s");
    assert!(started.elapsed() < Duration::from_secs(4));
    // the server still serves
    assert_eq!(srv.call("GET", "/healthz", None, None).await.0, 200);
}

/// Sessions end when what they were issued for changes: a password change,
/// a role change, disabling the user. A disabled user cannot log in.
#[tokio::test]
async fn sessions_end_on_password_role_and_disable() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let (status, u) = srv
        .call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({"email": "tech@example.com", "password": "password-123", "role": "technician"})),
        )
        .await;
    assert_eq!(status, 201, "{u}");
    assert_eq!(u["disabled"], false);
    let path = format!("/api/users/{}", u["id"].as_str().unwrap());
    let works = |token: String| {
        let srv = &srv;
        async move { srv.call("GET", "/api/agents", Some(&token), None).await }
    };
    // password change: the old token is refused, a new login works
    let old = srv.login("tech@example.com", "password-123").await;
    assert_eq!(works(old.clone()).await.0, 200);
    let (status, _) = srv
        .call(
            "PATCH",
            &path,
            Some(&admin),
            Some(json!({"password": "password-456"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_error(&works(old).await, 401, "unauthorized");
    let t = srv.login("tech@example.com", "password-456").await;
    assert_eq!(works(t.clone()).await.0, 200);
    // role change
    let (status, _) = srv
        .call(
            "PATCH",
            &path,
            Some(&admin),
            Some(json!({"role": "readonly"})),
        )
        .await;
    assert_eq!(status, 200);
    let got = works(t).await;
    assert_error(&got, 401, "unauthorized");
    assert!(
        got.1["message"].as_str().unwrap().contains("log in again"),
        "{}",
        got.1
    );
    // disable: sessions end and login is refused (only after the right password)
    let t = srv.login("tech@example.com", "password-456").await;
    let (status, v) = srv
        .call(
            "PATCH",
            &path,
            Some(&admin),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!((status, &v["disabled"]), (200, &json!(true)), "{v}");
    assert_error(&works(t).await, 401, "unauthorized");
    let login = |pw: &str| {
        srv.call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"email": "tech@example.com", "password": pw})),
        )
    };
    assert_error(&login("password-456").await, 403, "account_disabled");
    assert_error(&login("wrong-password").await, 401, "invalid_credentials");
    // enable again
    let (status, _) = srv
        .call(
            "PATCH",
            &path,
            Some(&admin),
            Some(json!({"disabled": false})),
        )
        .await;
    assert_eq!(status, 200);
    let t = srv.login("tech@example.com", "password-456").await;
    assert_eq!(works(t).await.0, 200);
    // an admin cannot disable themself
    let me = srv
        .call("GET", "/api/users", Some(&admin), None)
        .await
        .1
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == ADMIN.0)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_error(
        &srv.call(
            "PATCH",
            &format!("/api/users/{me}"),
            Some(&admin),
            Some(json!({"disabled": true})),
        )
        .await,
        409,
        "conflict",
    );
}

/// A token the key signed with a lifetime beyond the server's limit is
/// refused (the key may once have signed such a token, or leak).
#[tokio::test]
async fn overlong_tokens_are_refused() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let user = srv.call("GET", "/api/users", Some(&admin), None).await.1[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = i64::try_from(crate::common::wall_ms() / 1000).unwrap();
    let forge = |iat: i64, exp: i64| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({"sub": user, "email": ADMIN.0, "role": "admin", "iat": iat, "exp": exp}),
            &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .unwrap()
    };
    let ok = forge(now, now + 3600);
    assert_eq!(srv.call("GET", "/api/agents", Some(&ok), None).await.0, 200);
    let long = forge(now, now + 30 * 86_400);
    assert_error(
        &srv.call("GET", "/api/agents", Some(&long), None).await,
        401,
        "unauthorized",
    );
}

/// Error bodies never name Rust types.
#[tokio::test]
async fn error_messages_name_no_rust_types() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let agent = Uuid::new_v4();
    let cases = [
        srv.raw("POST", "/api/auth/login", None, "5").await,
        srv.raw(
            "POST",
            "/api/auth/login",
            None,
            r#"{"email": 5, "password": "x"}"#,
        )
        .await,
        srv.call(
            "POST",
            &format!("/api/agents/{agent}/command"),
            Some(&admin),
            Some(json!({"command_type": "sh", "command": "true", "timeout_secs": "x"})),
        )
        .await,
        srv.call("GET", "/api/audit?limit=abc", Some(&admin), None)
            .await,
        srv.call("GET", "/api/agents/not-a-uuid", Some(&admin), None)
            .await,
    ];
    for (status, body) in cases {
        assert_eq!(status, 400, "{body}");
        let msg = body["message"].as_str().unwrap();
        for word in [
            "struct",
            "LoginRequest",
            "u32",
            "i64",
            "enum ",
            "Option<",
            "Uuid",
        ] {
            assert!(!msg.contains(word), "{word:?} in {msg:?}");
        }
    }
}

/// Lengths count characters, as OpenAPI's `maxLength` does: a password of
/// 1024 three-byte characters is accepted, one of 1025 is not.
#[tokio::test]
async fn lengths_count_characters() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    for (n, (chars, status)) in [
        (rmm_server::api::MAX_PASSWORD_CHARS, 201),
        (rmm_server::api::MAX_PASSWORD_CHARS + 1, 422),
    ]
    .into_iter()
    .enumerate()
    {
        let body = json!({
            "email": format!("wide{n}@example.com"),
            "password": "€".repeat(chars),
            "role": "readonly",
        });
        let (got, b) = srv
            .call("POST", "/api/users", Some(&admin), Some(body))
            .await;
        assert_eq!(got, status, "{chars} characters: {b}");
    }
    let email = format!(
        "{}@example.com",
        "é".repeat(rmm_server::api::MAX_EMAIL_CHARS - 12)
    );
    assert_eq!(email.chars().count(), rmm_server::api::MAX_EMAIL_CHARS);
    let body = json!({"email": email, "password": "password-1", "role": "readonly"});
    let (got, b) = srv
        .call("POST", "/api/users", Some(&admin), Some(body))
        .await;
    assert_eq!(got, 201, "{b}");
}

/// `timeout_secs` is an integer in JSON Schema's sense: `30.0` is 30.
#[tokio::test]
async fn an_integral_float_is_an_integer() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let (agent, _) = srv.enroll("floaty").await;
    let path = format!("/api/agents/{agent}/command");
    for (timeout, status) in [
        (json!(30.0), 200),
        (json!(1e2), 200),
        (json!(30.5), 400),
        (json!(-1.0), 400),
        (json!(0.0), 422),
        (json!(604_801.0), 422),
    ] {
        let body = json!({"command_type": "sh", "command": "true", "timeout_secs": timeout});
        let (got, b) = srv.call("POST", &path, Some(&admin), Some(body)).await;
        assert_eq!(got, status, "timeout_secs {timeout}: {b}");
    }
    let id = srv
        .submit(
            &admin,
            agent,
            json!({"command_type": "sh", "command": "true", "timeout_secs": 45.0}),
        )
        .await;
    assert_eq!(srv.command(&admin, id).await["timeout_secs"], 45);
}
