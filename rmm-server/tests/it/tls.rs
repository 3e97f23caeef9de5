//! Native TLS against the real `rmm-server` binary: self-signed on first
//! start and pinned by enrollment, certificate files reloaded on SIGHUP,
//! and plain HTTP to the network refused unless asked for.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{ADMIN, spawn_server, untar};

struct TlsProc {
    child: Child,
    addr: SocketAddr,
    sha256: String,
}

impl Drop for TlsProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data_dir: &std::path::Path, args: &[&str]) -> TlsProc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rmm-server"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RMM_ADMIN_EMAIL", ADMIN.0)
        .env("RMM_ADMIN_PASSWORD", ADMIN.1)
        .env_remove("RMM_DATABASE_URL")
        .env("RMM_LOG", "warn")
        .stderr(Stdio::inherit());
    let (child, lines) = spawn_server(cmd, 2);
    let addr = lines[0]
        .strip_prefix("rmm-server listening on https://")
        .unwrap_or_else(|| panic!("unexpected first line {:?}", lines[0]))
        .parse()
        .unwrap();
    let sha256 = lines[1]
        .strip_prefix("rmm-server certificate sha256 ")
        .unwrap_or_else(|| panic!("unexpected second line {:?}", lines[1]))
        .to_owned();
    TlsProc {
        child,
        addr,
        sha256,
    }
}

/// An HTTPS client that trusts exactly the certificate with `sha256`.
fn pinned_client(sha256: &str) -> reqwest::Client {
    let config = rmm_pin::client_config(Some(sha256.parse().unwrap()), &[b"http/1.1"]).unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .unwrap()
}

async fn login(http: &reqwest::Client, base: &str) -> String {
    let resp = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": ADMIN.0, "password": ADMIN.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_https_is_pinned_by_enrollment() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), &["--tls-self-signed"]);
    let base = format!("https://{}", srv.addr);
    let http = pinned_client(&srv.sha256);
    let token = login(&http, &base).await;
    // an unpinned client refuses the self-signed certificate
    let plain = crate::common::http_client();
    assert!(plain.get(format!("{base}/healthz")).send().await.is_err());
    // plain HTTP on the TLS port gets nowhere
    let over_http = plain
        .get(format!("http://{}/healthz", srv.addr))
        .send()
        .await;
    assert!(!over_http.is_ok_and(|r| r.status().is_success()));
    // enrollment pins the served certificate, for curl and for the agent
    let resp = http
        .post(format!("{base}/api/v1/enroll-bundle"))
        .bearer_auth(&token)
        .json(&json!({"agent_name": "tls-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let bundle: Value = resp.json().await.unwrap();
    let command = bundle["command"].as_str().unwrap();
    assert!(
        command.starts_with("curl -fsSL -k --pinnedpubkey 'sha256//") && command.contains(&base),
        "{command}"
    );
    // the real curl: the printed pin opens the connection, another does not
    let pin = command.split('\'').nth(1).unwrap().to_owned();
    let curl = |pin: &str| {
        Command::new("curl")
            .args(["-sS", "-k", "--pinnedpubkey", pin])
            .arg(format!("{base}/healthz"))
            .output()
    };
    match curl(&pin) {
        Ok(out) => {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let wrong = curl("sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
            assert!(!wrong.status.success());
        }
        Err(e) => eprintln!("skipping the curl check: cannot run curl: {e}"),
    }
    let t = bundle["token"].as_str().unwrap();
    let script = http
        .get(format!("{base}/api/v1/enroll-bundle/{t}.sh"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        script.contains(&format!("--server-cert-sha256 '{}'", srv.sha256)),
        "{script}"
    );
    assert!(script.contains("--pinnedpubkey"), "{script}");
    assert!(!script.contains("--insecure-http"));
    let tgz = http
        .get(format!("{base}/api/v1/enroll-bundle/{t}.tgz"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let files = untar(&tgz);
    let config: Value =
        serde_json::from_slice(&files.iter().find(|f| f.0 == "config.json").unwrap().2).unwrap();
    assert_eq!(config["server_cert_sha256"], srv.sha256.as_str());
    assert_eq!(config["server_url"], base.as_str());
    // the agent socket over WSS with that pin
    let id = config["agent_id"].as_str().unwrap();
    let secret = config["agent_secret"].as_str().unwrap();
    let tls_config =
        rmm_pin::client_config(Some(srv.sha256.parse().unwrap()), &[b"http/1.1"]).unwrap();
    let tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls_config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("wss://{}/api/v1/agent/ws", srv.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Agent {id}:{secret}").parse().unwrap(),
    );
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    assert_eq!(resp.status(), 101);
    let _ = ws.close(None).await;
    // the certificate survives a restart (generated once)
    drop(srv);
    let again = start(dir.path(), &["--tls-self-signed"]);
    assert_eq!(again.sha256.len(), 64);
    let first_sha = config["server_cert_sha256"].as_str().unwrap();
    assert_eq!(again.sha256, first_sha);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_files_are_reloaded_on_sighup() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let write = |names: &[&str]| {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(ck.cert.der()))
    };
    let first = write(&["localhost"]);
    let data = dir.path().join("data");
    let srv = start(
        &data,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(srv.sha256, first);
    let base = format!("https://{}", srv.addr);
    login(&pinned_client(&first), &base).await;
    // renewal: new files, SIGHUP, new handshakes get the new certificate
    let second = write(&["localhost", "renewed.example"]);
    let status = Command::new("kill")
        .args(["-HUP", &srv.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let renewed = pinned_client(&second);
    let mut ok = false;
    for _ in 0..100 {
        if renewed.get(format!("{base}/healthz")).send().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "the renewed certificate was never served");
    assert!(
        pinned_client(&first)
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err(),
        "the old certificate is no longer served"
    );
    // a broken renewal keeps the current certificate
    std::fs::write(&key, "garbage").unwrap();
    Command::new("kill")
        .args(["-HUP", &srv.child.id().to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(renewed.get(format!("{base}/healthz")).send().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_network_is_refused_unless_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rmm-server"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--public-url", "http://192.0.2.10:3001"])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("RMM_DATABASE_URL")
        .env_remove("RMM_INSECURE_HTTP")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--insecure-http") && err.contains("clear text"),
        "{err}"
    );
    // an enrollment for a plain-http server URL elsewhere is refused too
    let srv = crate::common::TestServer::start().await;
    let admin = srv.admin().await;
    let r = srv
        .call(
            "POST",
            "/api/v1/enroll-bundle",
            Some(&admin),
            Some(json!({"agent_name": "x", "server_url": "http://192.0.2.10:3001"})),
        )
        .await;
    crate::common::assert_error(&r, 422, "insecure_server_url");
    // allowed explicitly: the install script tells the agent so
    let srv = crate::common::TestServer::start_with(|c| c.insecure_http = true).await;
    let admin = srv.admin().await;
    let (status, b) = srv
        .call(
            "POST",
            "/api/v1/enroll-bundle",
            Some(&admin),
            Some(json!({"agent_name": "x", "server_url": "http://192.0.2.10:3001"})),
        )
        .await;
    assert_eq!(status, 201, "{b}");
    let t = b["token"].as_str().unwrap();
    let (_, script) = srv
        .call("GET", &format!("/api/v1/enroll-bundle/{t}.sh"), None, None)
        .await;
    let script = script.as_str().unwrap();
    assert!(script.contains("--insecure-http"), "{script}");
    assert!(script.contains("WARNING: plain HTTP"), "{script}");
    let check = Command::new("bash")
        .args(["-n", "-c", script])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}
