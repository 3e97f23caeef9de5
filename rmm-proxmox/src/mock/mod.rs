//! A mock Proxmox VE API server over real HTTPS on 127.0.0.1, for tests
//! (here and in the language bindings) and `examples/mock_pve.rs`.
//!
//! - TLS like a real node: a generated "cluster CA" signs the node
//!   certificate (SANs `localhost`, `127.0.0.1`), the chain is served, so
//!   fingerprint pinning and CA-file trust are exercised for real.
//! - Every request is checked against the real API schema
//!   ([`schema::Schema`]); a violation is answered like Proxmox does (400
//!   `Parameter verification failed.` / 501 for unknown paths) **and**
//!   recorded. Dropping a [`MockPve`] with unexpected violations panics, so
//!   an invalid request fails the test that sent it.
//! - Token authentication (`Authorization: PVEAPIToken=ID=SECRET`),
//!   permission checks evaluated from the schema's `permissions.check`
//!   against configurable ACLs, and Proxmox's root@pam-only refusals.
//! - Stateful containers, snapshots, storage and tasks with scriptable
//!   outcomes ([`TaskScript`]); one-shot canned responses
//!   ([`MockPve::push_response`]) for error mapping tests.

pub mod schema;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::tls::Fingerprint;
use crate::transport::Method;
use schema::Schema;

pub use schema::{SchemaError, Violation};

/// Errors starting the mock.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MockError {
    /// The schema could not be loaded.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// Certificate generation failed.
    #[error("cannot generate the mock certificate: {0}")]
    Cert(String),
    /// TLS setup failed.
    #[error("tls setup failed: {0}")]
    Tls(String),
    /// Binding the socket failed.
    #[error("cannot bind the mock server: {0}")]
    Io(#[from] std::io::Error),
}

/// A canned response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockResponse {
    /// HTTP status.
    pub status: u16,
    /// Reason phrase (Proxmox puts its message here).
    pub reason: Option<String>,
    /// Body text.
    pub body: String,
}

impl MockResponse {
    /// `200` with `{"data": data}`.
    pub fn data(data: Value) -> MockResponse {
        MockResponse {
            status: 200,
            reason: None,
            body: json!({ "data": data }).to_string(),
        }
    }

    /// An error the way Proxmox sends most: the message in the reason
    /// phrase and in the body's `message`.
    pub fn error(status: u16, message: &str) -> MockResponse {
        MockResponse {
            status,
            reason: Some(message.to_owned()),
            body: json!({ "data": null, "message": format!("{message}\n") }).to_string(),
        }
    }

    /// An error with the message only in the reason phrase (body
    /// `{"data":null}`).
    pub fn reason_only(status: u16, reason: &str) -> MockResponse {
        MockResponse {
            status,
            reason: Some(reason.to_owned()),
            body: json!({ "data": null }).to_string(),
        }
    }

    /// A parameter error: 400 `Parameter verification failed.` with
    /// `errors`.
    pub fn param_errors(errors: &[(&str, &str)]) -> MockResponse {
        let map: serde_json::Map<String, Value> = errors
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String(format!("{v}\n"))))
            .collect();
        MockResponse {
            status: 400,
            reason: Some("Parameter verification failed.".into()),
            body: json!({ "data": null, "errors": map, "message": "Parameter verification failed.\n" })
                .to_string(),
        }
    }

    /// A raw response.
    pub fn raw(status: u16, reason: Option<&str>, body: &str) -> MockResponse {
        MockResponse {
            status,
            reason: reason.map(str::to_owned),
            body: body.to_owned(),
        }
    }
}

/// How the next created task behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskScript {
    /// Status polls answered with "no such task" first.
    pub invisible_polls: u32,
    /// Then polls answered `running`.
    pub running_polls: u32,
    /// Then `stopped` with this exit status.
    pub exitstatus: String,
    /// The task log.
    pub log: Vec<String>,
}

impl Default for TaskScript {
    fn default() -> Self {
        TaskScript {
            invisible_polls: 0,
            running_polls: 1,
            exitstatus: "OK".into(),
            log: vec!["starting task".into(), "TASK OK".into()],
        }
    }
}

impl TaskScript {
    /// A task that fails with `exitstatus`, its log ending in `TASK ERROR`.
    pub fn failing(exitstatus: &str, log_lines: usize) -> TaskScript {
        let mut log: Vec<String> = (1..=log_lines).map(|i| format!("log line {i}")).collect();
        log.push(format!("TASK ERROR: {exitstatus}"));
        TaskScript {
            exitstatus: exitstatus.to_owned(),
            log,
            ..TaskScript::default()
        }
    }

    /// A task that finishes with `WARNINGS: n`.
    pub fn warnings(n: u32) -> TaskScript {
        let mut log: Vec<String> = (0..n).map(|i| format!("WARN: warning {i}")).collect();
        log.push(format!("TASK WARNINGS: {n}"));
        TaskScript {
            exitstatus: format!("WARNINGS: {n}"),
            log,
            ..TaskScript::default()
        }
    }
}

/// One request as the mock saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Method.
    pub method: String,
    /// Decoded path below `/api2/json`.
    pub path: String,
    /// Matched schema template, if any.
    pub template: Option<String>,
    /// Query and body parameters.
    pub params: Vec<(String, String)>,
    /// Whether the token was accepted.
    pub authorized: bool,
    /// Response status.
    pub status: u16,
}

#[derive(Debug, Clone)]
struct Snapshot {
    name: String,
    description: String,
    snaptime: u64,
    parent: Option<String>,
    config: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
struct Container {
    node: String,
    running: bool,
    config: BTreeMap<String, String>,
    snapshots: Vec<Snapshot>,
}

#[derive(Debug, Clone)]
struct Task {
    script: TaskScript,
    polls: u32,
}

#[derive(Debug)]
struct State {
    nodes: BTreeMap<String, bool>,
    containers: BTreeMap<u32, Container>,
    backups: Vec<String>,
    tasks: HashMap<String, Task>,
    next_scripts: VecDeque<TaskScript>,
    acls: BTreeMap<String, BTreeSet<String>>,
    overrides: VecDeque<(String, String, MockResponse)>,
    requests: Vec<RecordedRequest>,
    violations: Vec<String>,
    next_pid: u32,
}

/// All privileges a full-access token holds (PVEAdmin-like).
pub const ALL_PRIVILEGES: &[&str] = &[
    "Datastore.Allocate",
    "Datastore.AllocateSpace",
    "Datastore.Audit",
    "Pool.Audit",
    "Sys.Audit",
    "Sys.Modify",
    "VM.Allocate",
    "VM.Audit",
    "VM.Backup",
    "VM.Config.CPU",
    "VM.Config.Disk",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.PowerMgmt",
    "VM.Snapshot",
    "VM.Snapshot.Rollback",
];

struct Inner {
    schema: Arc<Schema>,
    token_id: String,
    token_secret: String,
    state: Mutex<State>,
    violations_expected: Mutex<bool>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Builder for [`MockPve`].
#[derive(Debug, Clone)]
pub struct MockPveBuilder {
    token_id: String,
    token_secret: String,
    schema: Option<std::path::PathBuf>,
    port: u16,
}

impl Default for MockPveBuilder {
    fn default() -> Self {
        MockPveBuilder {
            token_id: "rmm@pve!test".into(),
            token_secret: "5f2a6c1e-8a43-4d6b-9a51-0c7e2b9d4f10".into(),
            schema: None,
            port: 0,
        }
    }
}

impl MockPveBuilder {
    /// The accepted token.
    pub fn token(mut self, id: &str, secret: &str) -> Self {
        self.token_id = id.to_owned();
        self.token_secret = secret.to_owned();
        self
    }

    /// Load the schema from this JSON file instead of the embedded copy (or
    /// `RMM_PVE_SCHEMA`).
    pub fn schema_path(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.schema = Some(path.into());
        self
    }

    /// Listen on this port (default: any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Starts the server on the current tokio runtime.
    pub async fn start(self) -> Result<MockPve, MockError> {
        let schema = match &self.schema {
            Some(p) => Arc::new(Schema::load(p)?),
            None => Schema::load_default()?,
        };
        let (server_config, fingerprint, ca_pem) = tls_setup()?;
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            schema,
            token_id: self.token_id,
            token_secret: self.token_secret,
            state: Mutex::new(initial_state()),
            violations_expected: Mutex::new(false),
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
        let server_inner = inner.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let inner = server_inner.clone();
                tokio::spawn(async move {
                    // a failed handshake (e.g. a client rejecting the pin) just ends here
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let inner = inner.clone();
                        async move { Ok::<_, Infallible>(handle(&inner, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(MockPve {
            inner,
            addr,
            fingerprint,
            ca_pem,
            task,
        })
    }
}

/// A running mock Proxmox VE server. Stops when dropped.
pub struct MockPve {
    inner: Arc<Inner>,
    addr: SocketAddr,
    fingerprint: Fingerprint,
    ca_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for MockPve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockPve")
            .field("url", &self.url())
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Drop for MockPve {
    fn drop(&mut self) {
        self.task.abort();
        let expected = *self
            .inner
            .violations_expected
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let violations = self.violations();
        if !expected && !violations.is_empty() && !std::thread::panicking() {
            panic!(
                "the mock proxmox server received requests that violate the api schema:\n{}",
                violations.join("\n")
            );
        }
    }
}

impl MockPve {
    /// A builder with defaults.
    pub fn builder() -> MockPveBuilder {
        MockPveBuilder::default()
    }

    /// Starts a server with defaults.
    pub async fn start() -> Result<MockPve, MockError> {
        MockPve::builder().start().await
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// SHA-256 fingerprint of the leaf certificate.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The CA certificate (PEM) that signed the leaf.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The accepted token id.
    pub fn token_id(&self) -> &str {
        &self.inner.token_id
    }

    /// The accepted token secret.
    pub fn token_secret(&self) -> &str {
        &self.inner.token_secret
    }

    /// A client configuration pinned to this server.
    pub fn config(&self) -> crate::Config {
        let mut c = crate::Config::new(&self.url(), self.token_id(), self.token_secret())
            .unwrap_or_else(|e| panic!("mock config is valid: {e}"));
        c.tls = crate::TlsMode::Pinned(self.fingerprint);
        c.node = Some("pve1".into());
        c
    }

    /// The same as a JSON config file (for examples and bindings).
    pub fn config_json(&self) -> String {
        json!({
            "url": self.url(),
            "token_id": self.token_id(),
            "token_secret": self.token_secret(),
            "fingerprint": self.fingerprint.to_string(),
            "node": "pve1",
        })
        .to_string()
    }

    /// Every request seen so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.state().requests.clone()
    }

    /// Schema violations seen so far.
    pub fn violations(&self) -> Vec<String> {
        self.inner.state().violations.clone()
    }

    /// Returns and clears the violations (for tests that send bad requests
    /// on purpose).
    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut self.inner.state().violations)
    }

    /// Do not panic on drop because of violations.
    pub fn expect_violations(&self) {
        *self
            .inner
            .violations_expected
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = true;
    }

    /// Answers the next `method` request to exactly `path` (below
    /// `/api2/json`, decoded) with `response`, after authentication and
    /// schema validation.
    pub fn push_response(&self, method: Method, path: &str, response: MockResponse) {
        self.inner.state().overrides.push_back((
            method.as_str().to_owned(),
            path.to_owned(),
            response,
        ));
    }

    /// The next task created behaves like `script`.
    pub fn next_task(&self, script: TaskScript) {
        self.inner.state().next_scripts.push_back(script);
    }

    /// Replaces the privileges granted on the ACL path `path` (inherited
    /// by paths below it unless they have their own entry).
    pub fn set_permissions(&self, path: &str, privileges: &[&str]) {
        self.inner.state().acls.insert(
            path.to_owned(),
            privileges.iter().map(|p| (*p).to_owned()).collect(),
        );
    }

    /// Adds a container on `node`.
    pub fn add_container(&self, node: &str, vmid: u32, hostname: &str, running: bool) {
        let mut config = golden_config(vmid);
        config.insert("hostname".into(), hostname.to_owned());
        self.inner.state().containers.insert(
            vmid,
            Container {
                node: node.to_owned(),
                running,
                config,
                snapshots: Vec::new(),
            },
        );
    }

    /// Snapshot names of a container.
    pub fn snapshot_names(&self, vmid: u32) -> Vec<String> {
        self.inner
            .state()
            .containers
            .get(&vmid)
            .map(|c| c.snapshots.iter().map(|s| s.name.clone()).collect())
            .unwrap_or_default()
    }

    /// A raw config value of a container.
    pub fn config_value(&self, vmid: u32, key: &str) -> Option<String> {
        self.inner
            .state()
            .containers
            .get(&vmid)
            .and_then(|c| c.config.get(key).cloned())
    }

    /// Whether a container exists and runs.
    pub fn is_running(&self, vmid: u32) -> Option<bool> {
        self.inner.state().containers.get(&vmid).map(|c| c.running)
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn golden_config(vmid: u32) -> BTreeMap<String, String> {
    let mut c = BTreeMap::new();
    for (k, v) in [
        ("arch", "amd64".to_owned()),
        ("cores", "2".to_owned()),
        ("features", "keyctl=1,nesting=1".to_owned()),
        ("hostname", "golden".to_owned()),
        ("memory", "2048".to_owned()),
        (
            "net0",
            format!(
                "name=eth0,bridge=vmbr0,firewall=1,hwaddr=BC:24:11:00:{:02X}:01,ip=dhcp,type=veth",
                vmid % 256
            ),
        ),
        ("ostype", "debian".to_owned()),
        ("rootfs", format!("local-lvm:vm-{vmid}-disk-0,size=8G")),
        ("swap", "512".to_owned()),
        ("unprivileged", "1".to_owned()),
        ("onboot", "1".to_owned()),
    ] {
        c.insert(k.to_owned(), v);
    }
    c
}

fn initial_state() -> State {
    let mut nodes = BTreeMap::new();
    nodes.insert("pve1".to_owned(), true);
    nodes.insert("pve2".to_owned(), false);
    let mut containers = BTreeMap::new();
    let mut golden = golden_config(100);
    golden.insert("template".into(), "1".into());
    containers.insert(
        100,
        Container {
            node: "pve1".into(),
            running: false,
            config: golden,
            snapshots: Vec::new(),
        },
    );
    let mut web = golden_config(101);
    web.insert("hostname".into(), "cust-a-web".into());
    web.insert(
        "mp0".into(),
        "local-lvm:vm-101-disk-1,mp=/srv/data,backup=1,size=32G".into(),
    );
    web.insert("description".into(), "customer A web".into());
    web.insert("tags".into(), "cust-a;web".into());
    containers.insert(
        101,
        Container {
            node: "pve1".into(),
            running: true,
            config: web,
            snapshots: Vec::new(),
        },
    );
    let mut acls = BTreeMap::new();
    acls.insert(
        "/".to_owned(),
        ALL_PRIVILEGES.iter().map(|p| (*p).to_owned()).collect(),
    );
    State {
        nodes,
        containers,
        backups: vec!["local:backup/vzdump-lxc-100-2025_01_01-00_00_00.tar.zst".into()],
        tasks: HashMap::new(),
        next_scripts: VecDeque::new(),
        acls,
        overrides: VecDeque::new(),
        requests: Vec::new(),
        violations: Vec::new(),
        next_pid: 0x1000,
    }
}

fn tls_setup() -> Result<(rustls::ServerConfig, Fingerprint, String), MockError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let cert_err = |e: rcgen::Error| MockError::Cert(e.to_string());
    let ca_key = KeyPair::generate().map_err(cert_err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Proxmox Virtual Environment (mock)");
    ca_params
        .distinguished_name
        .push(DnType::OrganizationName, "PVE Cluster Manager CA");
    let ca_cert = ca_params.self_signed(&ca_key).map_err(cert_err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().map_err(cert_err)?;
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .map_err(cert_err)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "pve1.mock");
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .map_err(cert_err)?;

    let fingerprint = Fingerprint::of_der(leaf.der());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MockError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone(), ca_cert.der().clone()], key)
        .map_err(|e| MockError::Tls(e.to_string()))?;
    Ok((config, fingerprint, ca_cert.pem()))
}

fn percent_decode_form(s: &str) -> String {
    crate::client::percent_decode(&s.replace('+', " "))
}

fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode_form(k), percent_decode_form(v)),
            None => (percent_decode_form(p), String::new()),
        })
        .collect()
}

fn respond(r: MockResponse) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(r.body)));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(r.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    if let Some(reason) = r.reason
        && let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(reason.into_bytes())
    {
        resp.extensions_mut().insert(phrase);
    }
    resp
}

async fn handle(inner: &Inner, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().as_str().to_owned();
    let uri = req.uri().clone();
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_form = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mut params = uri.query().map(parse_form).unwrap_or_default();
    let mut violations = Vec::new();
    if !body.is_empty() {
        if is_form {
            params.extend(parse_form(&String::from_utf8_lossy(&body)));
        } else {
            violations.push("request body is not application/x-www-form-urlencoded".to_owned());
        }
    }
    if matches!(method.as_str(), "GET" | "DELETE") && !body.is_empty() {
        violations.push(format!("{method} with a request body"));
    }

    let raw_path = uri.path();
    let Some(rel) = raw_path.strip_prefix("/api2/json") else {
        return respond(MockResponse::raw(404, Some("Not Found"), ""));
    };
    let segments: Vec<String> = rel
        .split('/')
        .skip(1)
        .filter(|s| !s.is_empty())
        .map(crate::client::percent_decode)
        .collect();
    let path = format!("/{}", segments.join("/"));

    let expected_auth = format!("PVEAPIToken={}={}", inner.token_id, inner.token_secret);
    let authorized = auth.as_deref() == Some(expected_auth.as_str());

    let validation = inner.schema.validate(&method, &segments, &params);
    let template = validation.as_ref().ok().map(|m| m.method.path.clone());

    let response = if !authorized {
        MockResponse::reason_only(401, "authentication failure")
    } else {
        match &validation {
            Err(v) => {
                violations.extend(v.iter().map(|v| v.to_string()));
                if v.iter().all(|v| v.param.is_none()) {
                    MockResponse::error(501, &format!("Method '{method} {path}' not implemented"))
                } else {
                    let errs: Vec<(String, String)> = v
                        .iter()
                        .map(|v| (v.param.clone().unwrap_or_default(), v.message.clone()))
                        .collect();
                    let refs: Vec<(&str, &str)> =
                        errs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                    MockResponse::param_errors(&refs)
                }
            }
            Ok(_) if !violations.is_empty() => MockResponse::error(400, "bad request"),
            Ok(m) => {
                let mut state = inner.state();
                let over = state
                    .overrides
                    .iter()
                    .position(|(om, op, _)| *om == method && *op == path);
                match over {
                    Some(i) => state
                        .overrides
                        .remove(i)
                        .map(|(_, _, r)| r)
                        .unwrap_or_else(|| MockResponse::error(500, "override vanished")),
                    None => {
                        let args: BTreeMap<String, String> = m
                            .path_params
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .chain(params.iter().cloned())
                            .collect();
                        match check_permission(&state, &m.method.info, &args) {
                            Some(denied) => denied,
                            None => route(inner, &mut state, &method, &m.method.path, &args),
                        }
                    }
                }
            }
        }
    };

    let mut state = inner.state();
    if authorized {
        for v in &violations {
            state
                .violations
                .push(format!("{method} {path} {params:?}: {v}"));
        }
    }
    state.requests.push(RecordedRequest {
        method,
        path,
        template,
        params,
        authorized,
        status: response.status,
    });
    drop(state);
    respond(response)
}

/// Privileges effective on `path`: the longest ACL path that is a prefix
/// (by path components) of it.
fn effective_privileges<'a>(state: &'a State, path: &str) -> Option<&'a BTreeSet<String>> {
    let mut best: Option<(&str, &BTreeSet<String>)> = None;
    for (acl, privs) in &state.acls {
        let covers = acl == "/"
            || path == acl
            || path
                .strip_prefix(acl.as_str())
                .is_some_and(|rest| rest.starts_with('/'));
        if covers && best.is_none_or(|(b, _)| acl.len() > b.len()) {
            best = Some((acl, privs));
        }
    }
    best.map(|(_, p)| p)
}

/// Evaluates `permissions.check = ["perm", PATH, [PRIVS], "any", 1]`.
fn check_permission(
    state: &State,
    info: &Value,
    args: &BTreeMap<String, String>,
) -> Option<MockResponse> {
    let check = info.get("permissions")?.get("check")?.as_array()?;
    if check.first()?.as_str()? != "perm" {
        return None;
    }
    let mut path = check.get(1)?.as_str()?.to_owned();
    for (k, v) in args {
        path = path.replace(&format!("{{{k}}}"), v);
    }
    let privs: Vec<&str> = check
        .get(2)?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let any = check.get(3).and_then(Value::as_str) == Some("any");
    let held = effective_privileges(state, &path);
    let has = |p: &str| held.is_some_and(|h| h.contains(p));
    let ok = if any {
        privs.iter().any(|p| has(p))
    } else {
        privs.iter().all(|p| has(p))
    };
    if ok {
        None
    } else {
        let missing: Vec<&str> = if any {
            privs.clone()
        } else {
            privs.iter().copied().filter(|p| !has(p)).collect()
        };
        Some(MockResponse::error(
            403,
            &format!("Permission check failed ({path}, {})", missing.join("|")),
        ))
    }
}

fn digest(config: &BTreeMap<String, String>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (k, v) in config {
        h.update(k.as_bytes());
        h.update(b":");
        h.update(v.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())[..40].to_owned()
}

fn config_json(config: &BTreeMap<String, String>) -> Value {
    let mut map = serde_json::Map::new();
    for (k, v) in config {
        // Proxmox sends integers as numbers and everything else as strings
        let value = match k.as_str() {
            "cores" | "memory" | "swap" | "onboot" | "unprivileged" | "template" | "tty" => v
                .parse::<u64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(v.clone())),
            _ => Value::String(v.clone()),
        };
        map.insert(k.clone(), value);
    }
    map.insert("digest".into(), Value::String(digest(config)));
    Value::Object(map)
}

fn new_task(state: &mut State, node: &str, kind: &str, id: &str, user: &str) -> String {
    state.next_pid += 1;
    let upid = format!(
        "UPID:{node}:{:08X}:{:08X}:{:08X}:{kind}:{id}:{user}:",
        state.next_pid,
        0x1A2B3C4D5u64 + u64::from(state.next_pid),
        now()
    );
    let script = state.next_scripts.pop_front().unwrap_or_default();
    state.tasks.insert(upid.clone(), Task { script, polls: 0 });
    upid
}

fn route(
    inner: &Inner,
    state: &mut State,
    method: &str,
    template: &str,
    args: &BTreeMap<String, String>,
) -> MockResponse {
    let arg = |k: &str| args.get(k).map(String::as_str).unwrap_or_default();
    let flag = |k: &str| args.get(k).is_some_and(|v| v == "1");
    let node = arg("node").to_owned();
    if !node.is_empty() {
        match state.nodes.get(&node) {
            None => return MockResponse::error(500, &format!("no such cluster node '{node}'")),
            Some(false) => return MockResponse::reason_only(596, "Connection timed out"),
            Some(true) => {}
        }
    }
    let vmid: u32 = arg("vmid").parse().unwrap_or_default();
    let user = inner.token_id.clone();
    let not_found = |vmid: u32| {
        MockResponse::error(
            500,
            &format!("Configuration file 'nodes/{node}/lxc/{vmid}.conf' does not exist"),
        )
    };
    let ct_template = template.starts_with("/nodes/{node}/lxc/{vmid}");
    if ct_template && state.containers.get(&vmid).is_none_or(|c| c.node != node) {
        return not_found(vmid);
    }

    match (method, template) {
        ("GET", "/version") => MockResponse::data(json!({
            "version": "9.1.1", "release": "9.1", "repoid": "42d6a8d3a1b0c9e2"
        })),
        ("GET", "/nodes") => {
            let list: Vec<Value> = state
                .nodes
                .iter()
                .map(|(n, online)| {
                    if *online {
                        json!({"node": n, "status": "online", "cpu": 0.031, "maxcpu": 16,
                               "mem": 8_589_934_592u64, "maxmem": 68_719_476_736u64, "uptime": 864_000,
                               "level": "", "id": format!("node/{n}"), "type": "node",
                               "ssl_fingerprint": "AA:BB"})
                    } else {
                        json!({"node": n, "status": "offline", "id": format!("node/{n}"), "type": "node"})
                    }
                })
                .collect();
            MockResponse::data(Value::Array(list))
        }
        ("GET", "/nodes/{node}/status") => MockResponse::data(json!({
            "cpu": 0.0345, "loadavg": ["0.12", "0.30", "0.25"], "uptime": 864_000, "wait": 0.001,
            "memory": {"total": 68_719_476_736u64, "used": 8_589_934_592u64, "free": 60_129_542_144u64, "available": 60_129_542_144u64},
            "swap": {"total": 8_589_934_592u64, "used": 0, "free": 8_589_934_592u64},
            "rootfs": {"total": 100_000_000_000u64, "used": 20_000_000_000u64, "avail": 80_000_000_000u64, "free": 80_000_000_000u64},
            "cpuinfo": {"model": "AMD EPYC 7302P 16-Core Processor", "cpus": 32, "sockets": 1, "cores": 16, "mhz": "3000.000", "hvm": "1"},
            "pveversion": "pve-manager/9.1.1/42d6a8d3a1b0c9e2", "kversion": "Linux 6.14.8-2-pve",
            "boot-info": {"mode": "efi", "secureboot": 0},
            "current-kernel": {"sysname": "Linux", "release": "6.14.8-2-pve", "machine": "x86_64", "version": "#1 SMP"}
        })),
        ("GET", "/nodes/{node}/lxc") => {
            let list: Vec<Value> = state
                .containers
                .iter()
                .filter(|(_, c)| c.node == node)
                .map(|(id, c)| summary(*id, c))
                .collect();
            MockResponse::data(Value::Array(list))
        }
        ("GET", "/nodes/{node}/lxc/{vmid}/status/current") => {
            MockResponse::data(summary(vmid, &state.containers[&vmid]))
        }
        ("POST", "/nodes/{node}/lxc") => {
            if !flag("restore") {
                return MockResponse::error(500, "the mock only supports restore=1");
            }
            let archive = arg("ostemplate");
            if !state.backups.iter().any(|b| b == archive) {
                return MockResponse::error(500, &format!("volume '{archive}' does not exist"));
            }
            if let Some(existing) = state.containers.get(&vmid) {
                if !flag("force") {
                    return MockResponse::error(
                        500,
                        &format!("CT {vmid} already exists on node '{}'", existing.node),
                    );
                }
                if existing.running {
                    return MockResponse::error(
                        500,
                        &format!("CT {vmid} is running - unable to restore"),
                    );
                }
            }
            let mut config = golden_config(vmid);
            if let Some(h) = args.get("hostname") {
                config.insert("hostname".into(), h.clone());
            }
            if let Some(s) = args.get("storage") {
                config.insert("rootfs".into(), format!("{s}:vm-{vmid}-disk-0,size=8G"));
            }
            let start = flag("start");
            state.containers.insert(
                vmid,
                Container {
                    node: node.clone(),
                    running: start,
                    config,
                    snapshots: Vec::new(),
                },
            );
            let upid = new_task(state, &node, "vzrestore", &vmid.to_string(), &user);
            MockResponse::data(Value::String(upid))
        }
        ("GET", "/nodes/{node}/lxc/{vmid}/config") => {
            MockResponse::data(config_json(&state.containers[&vmid].config))
        }
        ("PUT", "/nodes/{node}/lxc/{vmid}/config") => {
            let ct = state.containers.get_mut(&vmid);
            let Some(ct) = ct else { return not_found(vmid) };
            if let Some(d) = args.get("digest")
                && *d != digest(&ct.config)
            {
                return MockResponse::error(
                    500,
                    "detected modified configuration - file changed by other user? Try again.",
                );
            }
            if let Some(f) = args.get("features") {
                let only_nesting = f
                    .split(',')
                    .all(|kv| kv.starts_with("nesting=") || kv.trim().is_empty());
                if !only_nesting {
                    return MockResponse::error(
                        403,
                        "Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)",
                    );
                }
            }
            for (k, v) in args {
                if k.starts_with("mp") && v.starts_with('/') {
                    return MockResponse::error(
                        403,
                        "Permission check failed (mount point type bind is only allowed for root@pam)",
                    );
                }
                if k.starts_with("dev") {
                    return MockResponse::error(
                        403,
                        "Permission check failed (configuring device passthrough is only allowed for root@pam)",
                    );
                }
            }
            for k in args
                .get("delete")
                .map(|d| d.split(',').collect::<Vec<_>>())
                .unwrap_or_default()
            {
                ct.config.remove(k);
            }
            for (k, v) in args {
                if !matches!(k.as_str(), "node" | "vmid" | "digest" | "delete") {
                    ct.config.insert(k.clone(), v.clone());
                }
            }
            MockResponse::data(Value::Null)
        }
        ("POST", "/nodes/{node}/lxc/{vmid}/status/start") => {
            let ct = state.containers.get_mut(&vmid);
            let Some(ct) = ct else { return not_found(vmid) };
            if ct.running {
                return MockResponse::error(500, &format!("CT {vmid} already running"));
            }
            ct.running = true;
            let upid = new_task(state, &node, "vzstart", &vmid.to_string(), &user);
            MockResponse::data(Value::String(upid))
        }
        ("POST", "/nodes/{node}/lxc/{vmid}/status/stop") => {
            let ct = state.containers.get_mut(&vmid);
            let Some(ct) = ct else { return not_found(vmid) };
            if !ct.running {
                return MockResponse::error(500, &format!("CT {vmid} not running"));
            }
            ct.running = false;
            let upid = new_task(state, &node, "vzstop", &vmid.to_string(), &user);
            MockResponse::data(Value::String(upid))
        }
        ("GET", "/nodes/{node}/lxc/{vmid}/snapshot") => {
            let ct = &state.containers[&vmid];
            let mut list: Vec<Value> = ct
                .snapshots
                .iter()
                .map(|s| {
                    let mut v = json!({"name": s.name, "description": s.description, "snaptime": s.snaptime});
                    if let Some(p) = &s.parent {
                        v["parent"] = json!(p);
                    }
                    v
                })
                .collect();
            let mut current = json!({"name": "current", "description": "You are here!", "running": i32::from(ct.running)});
            if let Some(last) = ct.snapshots.last() {
                current["parent"] = json!(last.name);
            }
            list.push(current);
            MockResponse::data(Value::Array(list))
        }
        ("POST", "/nodes/{node}/lxc/{vmid}/snapshot") => {
            let name = arg("snapname").to_owned();
            let ct = state.containers.get_mut(&vmid);
            let Some(ct) = ct else { return not_found(vmid) };
            if ct.snapshots.iter().any(|s| s.name == name) {
                return MockResponse::error(500, &format!("snapshot name '{name}' already used"));
            }
            let parent = ct.snapshots.last().map(|s| s.name.clone());
            ct.snapshots.push(Snapshot {
                name,
                description: arg("description").to_owned(),
                snaptime: now(),
                parent,
                config: ct.config.clone(),
            });
            let upid = new_task(state, &node, "vzsnapshot", &vmid.to_string(), &user);
            MockResponse::data(Value::String(upid))
        }
        ("POST", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback") => {
            let name = arg("snapname");
            let ct = state.containers.get_mut(&vmid);
            let Some(ct) = ct else { return not_found(vmid) };
            let Some(snap) = ct.snapshots.iter().find(|s| s.name == name) else {
                return MockResponse::error(500, &format!("snapshot '{name}' does not exist"));
            };
            ct.config = snap.config.clone();
            ct.running = flag("start");
            let upid = new_task(state, &node, "vzrollback", &vmid.to_string(), &user);
            MockResponse::data(Value::String(upid))
        }
        ("DELETE", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}") => {
            let name = arg("snapname");
            let ct = state.containers.get_mut(&vmid);
            let Some(ct) = ct else { return not_found(vmid) };
            let before = ct.snapshots.len();
            ct.snapshots.retain(|s| s.name != name);
            if ct.snapshots.len() == before {
                return MockResponse::error(500, &format!("snapshot '{name}' does not exist"));
            }
            let upid = new_task(state, &node, "vzdelsnapshot", &vmid.to_string(), &user);
            MockResponse::data(Value::String(upid))
        }
        ("POST", "/nodes/{node}/vzdump") => {
            let ids: Vec<u32> = arg("vmid")
                .split([',', ';', ' '])
                .filter_map(|s| s.parse().ok())
                .collect();
            for id in &ids {
                if !state.containers.contains_key(id) {
                    return MockResponse::error(500, &format!("guest {id} does not exist"));
                }
            }
            let storage = args
                .get("storage")
                .cloned()
                .unwrap_or_else(|| "local".into());
            for id in &ids {
                state.backups.push(format!(
                    "{storage}:backup/vzdump-lxc-{id}-{}.tar.zst",
                    now()
                ));
            }
            let id = if ids.len() == 1 {
                ids[0].to_string()
            } else {
                String::new()
            };
            let upid = new_task(state, &node, "vzdump", &id, &user);
            MockResponse::data(Value::String(upid))
        }
        ("GET", "/nodes/{node}/storage") => MockResponse::data(json!([
            {"storage": "local", "type": "dir", "content": "iso,vztmpl,backup", "active": 1, "enabled": 1,
             "shared": 0, "total": 100_000_000_000u64, "used": 40_000_000_000u64, "avail": 60_000_000_000u64,
             "used_fraction": 0.4},
            {"storage": "local-lvm", "type": "lvmthin", "content": "rootdir,images", "active": 1, "enabled": 1,
             "shared": 0, "total": "500000000000", "used": "125000000000", "avail": "375000000000",
             "used_fraction": 0.25},
            {"storage": "pbs", "type": "pbs", "content": "backup", "active": 0, "enabled": 1, "shared": 1}
        ])),
        ("GET", "/nodes/{node}/disks/smart") => match arg("disk") {
            "/dev/sda" => MockResponse::data(json!({
                "health": "PASSED", "type": "ata",
                "attributes": [
                    {"id": "  5", "name": "Reallocated_Sector_Ct", "value": 100, "worst": 100, "threshold": 10,
                     "raw": "0", "fail": "-", "flags": "PO--CK", "normalized": 100},
                    {"id": "194", "name": "Temperature_Celsius", "value": 64, "worst": 50, "threshold": 0,
                     "raw": "36 (Min/Max 20/50)", "fail": "-", "flags": "-O---K", "normalized": 64}
                ]
            })),
            "/dev/nvme0n1" => MockResponse::data(json!({
                "health": "PASSED", "type": "text",
                "text": "SMART/Health Information (NVMe Log 0x02)\nCritical Warning: 0x00\nTemperature: 38 Celsius\n"
            })),
            other => MockResponse::error(500, &format!("no such disk '{other}'")),
        },
        ("GET", "/nodes/{node}/tasks/{upid}/status") => {
            let upid = arg("upid").to_owned();
            let Some(task) = state.tasks.get_mut(&upid) else {
                return MockResponse::param_errors(&[("upid", "no such task")]);
            };
            task.polls += 1;
            if task.polls <= task.script.invisible_polls {
                return MockResponse::param_errors(&[("upid", "no such task")]);
            }
            let parsed: Option<crate::Upid> = upid.parse().ok();
            let mut status = json!({
                "upid": upid,
                "node": node,
                "pid": parsed.as_ref().map(crate::Upid::pid),
                "pstart": parsed.as_ref().map(crate::Upid::pstart),
                "starttime": parsed.as_ref().map(crate::Upid::starttime),
                "type": parsed.as_ref().map(|u| u.task_type().to_owned()),
                "id": parsed.as_ref().map(|u| u.id().to_owned()),
                "user": parsed.as_ref().map(|u| u.user().to_owned()),
                "status": "running",
            });
            if task.polls > task.script.invisible_polls + task.script.running_polls {
                status["status"] = json!("stopped");
                status["exitstatus"] = json!(task.script.exitstatus);
            }
            MockResponse::data(status)
        }
        ("GET", "/nodes/{node}/tasks/{upid}/log") => {
            let upid = arg("upid");
            let Some(task) = state.tasks.get(upid) else {
                return MockResponse::param_errors(&[("upid", "no such task")]);
            };
            let start: usize = arg("start").parse().unwrap_or(0);
            let limit: usize = args.get("limit").and_then(|l| l.parse().ok()).unwrap_or(50);
            let lines: Vec<Value> = task
                .script
                .log
                .iter()
                .enumerate()
                .skip(start)
                .take(limit)
                .map(|(i, t)| json!({"n": i + 1, "t": t}))
                .collect();
            MockResponse::raw(
                200,
                None,
                &json!({"data": lines, "total": task.script.log.len()}).to_string(),
            )
        }
        ("GET", "/access/permissions") => {
            let mut out = serde_json::Map::new();
            match args.get("path") {
                Some(p) => {
                    let privs: serde_json::Map<String, Value> = effective_privileges(state, p)
                        .map(|s| s.iter().map(|x| (x.clone(), json!(1))).collect())
                        .unwrap_or_default();
                    out.insert(p.clone(), Value::Object(privs));
                }
                None => {
                    for (acl, privs) in &state.acls {
                        out.insert(
                            acl.clone(),
                            Value::Object(privs.iter().map(|x| (x.clone(), json!(1))).collect()),
                        );
                    }
                }
            }
            MockResponse::data(Value::Object(out))
        }
        _ => MockResponse::error(
            501,
            &format!("Method '{method} {template}' not implemented in the mock"),
        ),
    }
}

fn summary(vmid: u32, c: &Container) -> Value {
    let mem: u64 = c
        .config
        .get("memory")
        .and_then(|m| m.parse().ok())
        .unwrap_or(512);
    json!({
        "vmid": vmid,
        "name": c.config.get("hostname"),
        "status": if c.running { "running" } else { "stopped" },
        "type": "lxc",
        "cpus": c.config.get("cores").and_then(|x| x.parse::<u32>().ok()).unwrap_or(1),
        "maxmem": mem * 1024 * 1024,
        "mem": if c.running { 104_857_600u64 } else { 0 },
        "maxdisk": 8_589_934_592u64,
        "disk": 1_073_741_824u64,
        "uptime": if c.running { 3600 } else { 0 },
        "template": c.config.get("template").map(|t| t == "1").unwrap_or(false),
        "tags": c.config.get("tags"),
        "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
    })
}
