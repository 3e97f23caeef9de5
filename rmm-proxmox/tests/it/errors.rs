//! Error mapping from realistic Proxmox responses, and the retry policy.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rmm_proxmox::mock::MockResponse;
use rmm_proxmox::{
    ApiRequest, ApiResponse, BoxFuture, Client, Error, HttpTransport, Method, RetryPolicy,
    Transport, TransportError, TransportErrorKind,
};

use crate::common;

#[tokio::test]
async fn forbidden_with_reason_phrase_only() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    mock.push_response(
        Method::Post,
        "/nodes/pve1/lxc/101/snapshot",
        MockResponse::reason_only(403, "Permission check failed (/vms/101, VM.Snapshot)"),
    );
    let err = c.snapshot_lxc("pve1", 101, "s1", None).await.unwrap_err();
    match &err {
        Error::PermissionDenied {
            path, privilege, ..
        } => {
            assert_eq!(path.as_deref(), Some("/vms/101"));
            assert_eq!(privilege.as_deref(), Some("VM.Snapshot"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "permission denied: the token lacks VM.Snapshot on /vms/101; grant it with an acl for the user and, for a privilege-separated token, for the token too"
    );
}

#[tokio::test]
async fn forbidden_with_body_message() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    mock.push_response(
        Method::Get,
        "/nodes/pve1/status",
        MockResponse::raw(
            403,
            Some("Forbidden"),
            r#"{"data":null,"message":"Permission check failed (/nodes/pve1, Sys.Audit)\n"}"#,
        ),
    );
    let err = c.node_status("pve1").await.unwrap_err();
    assert!(
        matches!(&err, Error::PermissionDenied { path: Some(p), privilege: Some(v), .. } if p == "/nodes/pve1" && v == "Sys.Audit"),
        "{err:?}"
    );
    // a 403 is not retried
    assert_eq!(common::count(&mock, "GET", "/nodes/pve1/status"), 1);
}

#[tokio::test]
async fn permission_denied_by_the_acls_and_preflight_agree() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    mock.set_permissions("/vms/101", &["VM.Audit"]);
    let missing = c
        .check_privileges(&[
            ("/vms/101", "VM.Audit"),
            ("/vms/101", "VM.Snapshot"),
            ("/vms/100", "VM.Snapshot"),
        ])
        .await
        .unwrap();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].to_string(), "VM.Snapshot on /vms/101");
    // one permissions call per distinct path
    assert_eq!(common::count(&mock, "GET", "/access/permissions"), 2);
    let err = c
        .require_privileges(&[("/vms/101", "VM.Snapshot")])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }));

    let err = c.snapshot_lxc("pve1", 101, "s1", None).await.unwrap_err();
    assert!(
        matches!(&err, Error::PermissionDenied { privilege: Some(p), .. } if p == "VM.Snapshot"),
        "{err:?}"
    );
    assert!(mock.snapshot_names(101).is_empty());
}

#[tokio::test]
async fn bad_request_with_errors() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    mock.push_response(
        Method::Post,
        "/nodes/pve1/lxc/101/snapshot",
        MockResponse::param_errors(&[("snapname", "snapshot name 'x1' already used")]),
    );
    let err = c.snapshot_lxc("pve1", 101, "x1", None).await.unwrap_err();
    match &err {
        Error::Api {
            status,
            message,
            errors,
        } => {
            assert_eq!(*status, 400);
            assert_eq!(message, "Parameter verification failed.");
            assert_eq!(errors["snapname"], "snapshot name 'x1' already used");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .contains("snapname: snapshot name 'x1' already used"),
        "{err}"
    );
}

#[tokio::test]
async fn server_error_does_not_exist_is_not_found() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    let err = c.lxc_config("pve1", 999).await.unwrap_err();
    match &err {
        Error::NotFound { message } => {
            assert_eq!(
                message,
                "Configuration file 'nodes/pve1/lxc/999.conf' does not exist"
            )
        }
        other => panic!("{other:?}"),
    }
    // reason-only variant
    mock.push_response(
        Method::Get,
        "/nodes/pve1/lxc/101/config",
        MockResponse::reason_only(
            500,
            "Configuration file 'nodes/pve1/lxc/101.conf' does not exist",
        ),
    );
    assert!(c.lxc_config("pve1", 101).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn proxy_to_an_unreachable_node_is_node_unreachable() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    let err = c.node_status("pve2").await.unwrap_err();
    match &err {
        Error::NodeUnreachable {
            node,
            status,
            message,
        } => {
            assert_eq!(node.as_deref(), Some("pve2"));
            assert_eq!(*status, 596);
            assert_eq!(message, "Connection timed out");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unauthorized_is_never_retried() {
    let mock = common::mock().await;
    let mut config = mock.config();
    config.token = rmm_proxmox::ApiToken::new(mock.token_id(), "wrong-secret").unwrap();
    let c = Client::new(&config).unwrap();
    let err = c.version().await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert_eq!(mock.requests().len(), 1);
    assert!(!mock.requests()[0].authorized);
    assert!(!err.to_string().contains("wrong-secret"));
}

#[tokio::test]
async fn gets_are_retried_on_503_but_posts_are_not() {
    let mock = common::mock().await;
    let (c, clock) = common::client(&mock);
    for _ in 0..2 {
        mock.push_response(
            Method::Get,
            "/version",
            MockResponse::reason_only(503, "Service Unavailable"),
        );
    }
    c.version().await.unwrap();
    assert_eq!(common::count(&mock, "GET", "/version"), 3);
    assert_eq!(clock.sleeps().len(), 2, "backoff between attempts");
    assert!(clock.sleeps()[1] > clock.sleeps()[0]);

    mock.push_response(
        Method::Post,
        "/nodes/pve1/lxc/101/snapshot",
        MockResponse::reason_only(503, "Service Unavailable"),
    );
    let err = c.snapshot_lxc("pve1", 101, "s1", None).await.unwrap_err();
    assert!(matches!(err, Error::Api { status: 503, .. }), "{err:?}");
    assert_eq!(
        common::count(&mock, "POST", "/nodes/pve1/lxc/101/snapshot"),
        1
    );
}

/// Fails the first `fail` sends with `kind`, then delegates.
struct Flaky {
    inner: HttpTransport,
    kind: TransportErrorKind,
    fail: usize,
    calls: Arc<AtomicUsize>,
}

impl Transport for Flaky {
    fn send(&self, request: ApiRequest) -> BoxFuture<'static, Result<ApiResponse, TransportError>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n < self.fail {
            let kind = self.kind;
            return Box::pin(async move { Err(TransportError::new(kind, "injected")) });
        }
        self.inner.send(request)
    }
}

fn flaky(
    mock: &rmm_proxmox::mock::MockPve,
    kind: TransportErrorKind,
    fail: usize,
) -> (Client, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let t = Flaky {
        inner: HttpTransport::new(&mock.config()).unwrap(),
        kind,
        fail,
        calls: calls.clone(),
    };
    let c = Client::with_transport(Arc::new(t))
        .with_clock(Arc::new(common::VirtualClock::new()))
        .with_retry_policy(RetryPolicy {
            max_retries: 3,
            ..RetryPolicy::default()
        });
    (c, calls)
}

#[tokio::test]
async fn connect_failures_are_retried_even_for_posts() {
    let mock = common::mock().await;
    let (c, calls) = flaky(&mock, TransportErrorKind::Connect, 2);
    c.snapshot_lxc("pve1", 101, "s1", None).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(mock.snapshot_names(101), vec!["s1"], "exactly one snapshot");
}

#[tokio::test]
async fn timeouts_are_retried_for_gets_only() {
    let mock = common::mock().await;
    let (c, calls) = flaky(&mock, TransportErrorKind::Timeout, 1);
    c.version().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let (c, calls) = flaky(&mock, TransportErrorKind::Timeout, 1);
    let err = c.snapshot_lxc("pve1", 101, "s2", None).await.unwrap_err();
    assert!(
        matches!(&err, Error::Transport(t) if t.kind() == TransportErrorKind::Timeout),
        "{err:?}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a POST that may have been sent is never retried"
    );

    let (c, calls) = flaky(&mock, TransportErrorKind::Connect, 10);
    assert!(c.version().await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 4, "1 + max_retries");
}

#[tokio::test]
async fn garbage_bodies_are_decode_errors() {
    let mock = common::mock().await;
    let (c, _) = common::client(&mock);
    mock.push_response(
        Method::Get,
        "/version",
        MockResponse::raw(200, None, "<html>proxy</html>"),
    );
    assert!(matches!(c.version().await, Err(Error::Decode { .. })));
    mock.push_response(
        Method::Get,
        "/version",
        MockResponse::data(serde_json::json!({"unexpected": true})),
    );
    assert!(matches!(c.version().await, Err(Error::Decode { .. })));
}
