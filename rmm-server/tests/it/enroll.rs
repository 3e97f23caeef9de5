//! Enrollment: bundle creation, the bootstrap script, the one-shot payload.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{TestServer, assert_error, untar};

async fn bundle(srv: &TestServer, token: &str, body: Value) -> (u16, Value) {
    srv.call("POST", "/api/v1/enroll-bundle", Some(token), Some(body))
        .await
}

#[tokio::test]
async fn bundle_script_and_payload_once() {
    let downloads = tempfile::tempdir().unwrap();
    let build = b"#!/bin/sh\necho fake agent\n";
    let name = "rmm-agent-linux-x86_64-0.1.0";
    std::fs::write(downloads.path().join(name), build).unwrap();
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(build))
    };
    std::fs::write(
        downloads.path().join(format!("{name}.sha256")),
        format!("{digest}  {name}\n"),
    )
    .unwrap();
    let dl = downloads.path().to_owned();
    let srv = TestServer::start_with(move |c| {
        c.downloads_dir = Some(dl);
        c.server_cert_sha256 = Some("ab".repeat(32));
    })
    .await;
    let admin = srv.admin().await;
    let (status, b) = bundle(&srv, &admin, json!({"agent_name": "web-01"})).await;
    assert_eq!(status, 201, "{b}");
    let token = b["token"].as_str().unwrap();
    assert!(
        token.len() >= 32
            && token
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
    assert_eq!(
        b["command"].as_str().unwrap(),
        format!(
            "curl -fsSL {}/api/v1/enroll-bundle/{token}.sh | sudo bash",
            srv.handle.url()
        )
    );
    let expires = chrono::DateTime::parse_from_rfc3339(b["expires_at"].as_str().unwrap()).unwrap();
    let ttl = expires.timestamp() - i64::try_from(crate::common::wall_ms() / 1000).unwrap();
    assert!((290..=301).contains(&ttl), "{ttl}");
    let agent_id = b["agent_id"].as_str().unwrap().to_owned();
    // the token is stored hashed only
    let db = std::fs::read(srv._dir.path().join("rmm.db")).unwrap();
    assert!(
        !db.windows(token.len()).any(|w| w == token.as_bytes()),
        "plaintext token in the database"
    );
    // the name is taken now
    assert_error(
        &bundle(&srv, &admin, json!({"agent_name": "web-01"})).await,
        409,
        "conflict",
    );
    // the script: repeatable, names the build and its digest, token via env only
    for _ in 0..2 {
        let (status, script) = srv
            .call(
                "GET",
                &format!("/api/v1/enroll-bundle/{token}.sh"),
                None,
                None,
            )
            .await;
        assert_eq!(status, 200);
        let script = script.as_str().unwrap();
        assert!(script.starts_with("#!/usr/bin/env bash"));
        assert!(script.contains(&format!("FILE='{name}'")), "{script}");
        assert!(script.contains(&digest));
        assert!(script.contains(&format!(
            "RMM_ENROLL_TOKEN='{token}' /usr/local/bin/rmm-agent enroll"
        )));
        assert!(script.contains("--state-dir /var/lib/rmm-agent"));
        assert!(script.contains("systemctl enable --now rmm-agent"));
        assert!(script.contains(&format!("--server-cert-sha256 '{}'", "ab".repeat(32))));
        assert!(
            !script.contains(&format!("--token {token}")),
            "token never on argv"
        );
        // it is valid bash
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), script).unwrap();
        let check = std::process::Command::new("bash")
            .arg("-n")
            .arg(file.path())
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    // the build the script downloads is served with its digest
    let resp = srv
        .http
        .get(srv.url(&format!("/api/v1/downloads/{name}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-checksum-sha256"].to_str().unwrap(),
        digest
    );
    assert_eq!(&resp.bytes().await.unwrap()[..], build);
    assert_error(
        &srv.call(
            "GET",
            "/api/v1/downloads/rmm-agent-linux-x86_64-9.9.9",
            None,
            None,
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        &srv.call("GET", "/api/v1/downloads/..%2Fetc%2Fpasswd", None, None)
            .await,
        404,
        "not_found",
    );
    let list = srv.call("GET", "/api/v1/downloads", None, None).await.1;
    assert_eq!(list[0]["file"], name);
    assert_eq!(list[0]["channel"], "stable");
    // the payload, once
    let resp = srv
        .http
        .get(srv.url(&format!("/api/v1/enroll-bundle/{token}.tgz")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/gzip");
    let files = untar(&resp.bytes().await.unwrap());
    let names: Vec<(&str, u32)> = files.iter().map(|f| (f.0.as_str(), f.1)).collect();
    assert_eq!(
        names,
        [("config.json", 0o600), ("rmm-agent.service", 0o644)]
    );
    let config: Value = serde_json::from_slice(&files[0].2).unwrap();
    assert_eq!(config["server_url"], srv.handle.url());
    assert_eq!(config["agent_id"], agent_id);
    assert_eq!(config["agent_name"], "web-01");
    assert_eq!(config["channel"], "stable");
    assert_eq!(config["server_cert_sha256"], "ab".repeat(32));
    let secret = config["agent_secret"].as_str().unwrap();
    assert!(secret.len() >= 32);
    let unit = String::from_utf8(files[1].2.clone()).unwrap();
    for line in [
        "StateDirectory=rmm-agent",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ExecStart=/usr/local/bin/rmm-agent run",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.contains(line), "unit lacks {line}");
    }
    assert_error(
        &srv.call(
            "GET",
            &format!("/api/v1/enroll-bundle/{token}.tgz"),
            None,
            None,
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        &srv.call(
            "GET",
            &format!("/api/v1/enroll-bundle/{token}.sh"),
            None,
            None,
        )
        .await,
        404,
        "not_found",
    );
    // the agent row: address recorded, secret stored hashed, credential works
    let agent = srv
        .call(
            "GET",
            &format!("/api/agents/{agent_id}"),
            Some(&admin),
            None,
        )
        .await
        .1;
    assert_eq!(
        (agent["address"].as_str(), agent["enrolled"].as_bool()),
        (Some("127.0.0.1"), Some(true))
    );
    let db = std::fs::read(srv._dir.path().join("rmm.db")).unwrap();
    let wal = std::fs::read(srv._dir.path().join("rmm.db-wal")).unwrap_or_default();
    assert!(
        !db.windows(secret.len())
            .chain(wal.windows(secret.len()))
            .any(|w| w == secret.as_bytes()),
        "plaintext secret stored"
    );
    let mut a = crate::common::FakeAgent::connect(srv.addr(), agent_id.parse().unwrap(), secret)
        .await
        .unwrap();
    a.hello("m").await;
    let audit = srv.store().list_audit(None, 50).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.entry.action == "enrollment.create"
                && e.entry.actor == crate::common::ADMIN.0)
    );
    assert!(audit.iter().any(|e| e.entry.action == "enrollment.redeem"
        && e.entry.address.as_deref() == Some("127.0.0.1")));
}

#[tokio::test]
async fn bundle_validation() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    for bad in ["", "Web", "-web", "web_1", "web.1", &"a".repeat(64)] {
        assert_error(
            &bundle(&srv, &admin, json!({"agent_name": bad})).await,
            422,
            "invalid_agent_name",
        );
    }
    assert_error(
        &bundle(
            &srv,
            &admin,
            json!({"agent_name": "a", "server_url": "ftp://x"}),
        )
        .await,
        422,
        "invalid_server_url",
    );
    assert_error(
        &bundle(
            &srv,
            &admin,
            json!({"agent_name": "a", "channel": "nightly"}),
        )
        .await,
        400,
        "invalid_body",
    );
    assert_error(
        &bundle(&srv, &admin, json!({"name": "a"})).await,
        400,
        "invalid_body",
    );
    assert_error(
        &bundle(&srv, &admin, json!({"agent_name": 7})).await,
        400,
        "invalid_body",
    );
    let (status, b) = bundle(
        &srv,
        &admin,
        json!({"agent_name": "b", "server_url": "https://rmm.example.com/", "channel": "beta"}),
    )
    .await;
    assert_eq!(status, 201, "{b}");
    let tgz = srv
        .http
        .get(srv.url(&format!(
            "/api/v1/enroll-bundle/{}.tgz",
            b["token"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    let files = untar(&tgz.bytes().await.unwrap());
    let config: Value = serde_json::from_slice(&files[0].2).unwrap();
    assert_eq!(
        (config["server_url"].as_str(), config["channel"].as_str()),
        (Some("https://rmm.example.com"), Some("beta"))
    );
    for bad in [
        "nope.sh",
        "nope.tgz",
        "x",
        &format!("{}.zip", "a".repeat(43)),
        &format!("{}.tgz", "a".repeat(43)),
    ] {
        assert_error(
            &srv.call("GET", &format!("/api/v1/enroll-bundle/{bad}"), None, None)
                .await,
            404,
            "not_found",
        );
    }
}

/// A server URL needs a host, and its length counts characters as sent
/// (the unit of the OpenAPI description's `maxLength`).
#[tokio::test]
async fn server_url_needs_a_host_and_counts_characters() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let max = rmm_server::api::MAX_SERVER_URL_CHARS;
    let wide = |chars: usize| format!("https://{}", "é".repeat(chars - "https://".len()));
    for (n, (url, status)) in [
        ("https:///path".to_owned(), 422),
        ("https://:443".to_owned(), 422),
        ("https://user@".to_owned(), 422),
        ("https://a".to_owned(), 201),
        (wide(max), 201),
        (wide(max + 1), 422),
    ]
    .into_iter()
    .enumerate()
    {
        let body = json!({"agent_name": format!("host-{n}"), "server_url": url});
        let got = bundle(&srv, &admin, body).await;
        if status == 201 {
            assert_eq!(got.0, 201, "{url}: {}", got.1);
        } else {
            assert_error(&got, 422, "invalid_server_url");
        }
    }
}

#[tokio::test]
async fn expired_tokens_are_404_and_swept() {
    let (srv, clock) =
        TestServer::start_driven(|c| c.enroll_ttl = Duration::from_millis(400)).await;
    let admin = srv.admin().await;
    let (_, b) = bundle(&srv, &admin, json!({"agent_name": "late"})).await;
    let token = b["token"].as_str().unwrap().to_owned();
    // Still valid on the server's clock just before the expiry ...
    clock.advance(Duration::from_millis(399));
    let (status, _) = srv
        .call(
            "GET",
            &format!("/api/v1/enroll-bundle/{token}.sh"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    // ... and gone once it passes.
    clock.advance(Duration::from_millis(201));
    assert_error(
        &srv.call(
            "GET",
            &format!("/api/v1/enroll-bundle/{token}.sh"),
            None,
            None,
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        &srv.call(
            "GET",
            &format!("/api/v1/enroll-bundle/{token}.tgz"),
            None,
            None,
        )
        .await,
        404,
        "not_found",
    );
    // the sweeper (every tenth sweep looks at enrollments) retires the
    // never-enrolled agent, freeing the name: drive its ticks
    let every = srv.handle.state().config.sweep_interval;
    let mut freed = false;
    for _ in 0..200 {
        if srv.call("GET", "/api/agents", Some(&admin), None).await.1 == json!([]) {
            freed = true;
            break;
        }
        clock.advance(every);
        tokio::task::yield_now().await;
    }
    assert!(freed, "expired bundle not swept");
    assert_eq!(
        bundle(&srv, &admin, json!({"agent_name": "late"})).await.0,
        201
    );
}

#[tokio::test]
async fn twenty_parallel_redemptions_yield_one_payload() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let (_, b) = bundle(&srv, &admin, json!({"agent_name": "race"})).await;
    let url = srv.url(&format!(
        "/api/v1/enroll-bundle/{}.tgz",
        b["token"].as_str().unwrap()
    ));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let resp = crate::common::http_client().get(url).send().await.unwrap();
                (resp.status().as_u16(), resp.bytes().await.unwrap().len())
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| s.0 == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| s.0 == 404).count(),
        19,
        "{statuses:?}"
    );
}

/// A build whose bytes do not match its `.sha256` is neither listed nor
/// offered nor served (it used to be listed and then answer 500).
#[tokio::test]
async fn a_tampered_build_is_left_out() {
    use sha2::Digest;
    let downloads = tempfile::tempdir().unwrap();
    let put = |version: &str, body: &[u8], digest: String| {
        let name = format!("rmm-agent-linux-x86_64-{version}");
        std::fs::write(downloads.path().join(&name), body).unwrap();
        std::fs::write(downloads.path().join(format!("{name}.sha256")), digest).unwrap();
        name
    };
    let good = put("1.0.0", b"good", hex::encode(sha2::Sha256::digest(b"good")));
    let bad = put(
        "1.1.0",
        b"tampered",
        hex::encode(sha2::Sha256::digest(b"original")),
    );
    let dl = downloads.path().to_owned();
    let srv = crate::common::TestServer::start_with(move |c| c.downloads_dir = Some(dl)).await;
    let list = srv.call("GET", "/api/v1/downloads", None, None).await.1;
    let files: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, [good.as_str()]);
    assert_error(
        &srv.call("GET", &format!("/api/v1/downloads/{bad}"), None, None)
            .await,
        404,
        "not_found",
    );
    // a build tampered with after it was verified is not served either
    std::fs::write(downloads.path().join(&good), b"evil!").unwrap();
    assert_error(
        &srv.call("GET", &format!("/api/v1/downloads/{good}"), None, None)
            .await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn sessions_expire_on_the_servers_clock() {
    let (srv, clock) = TestServer::start_driven(|c| c.token_ttl = Duration::from_secs(3600)).await;
    let admin = srv.admin().await;
    clock.advance(Duration::from_secs(3599));
    assert_eq!(
        srv.call("GET", "/api/agents", Some(&admin), None).await.0,
        200
    );
    clock.advance(Duration::from_secs(2));
    let got = srv.call("GET", "/api/agents", Some(&admin), None).await;
    assert_error(&got, 401, "unauthorized");
    assert!(
        got.1["message"].as_str().unwrap().contains("expired"),
        "{}",
        got.1
    );
}
