//! Enrollment: creating a bundle (an agent that exists but has not
//! enrolled, and its one-time token), the bootstrap script, and redeeming
//! the token for the agent's credential.

use rmm_core::channel::Channel;
use uuid::Uuid;

use crate::App;
use crate::auth::{random_token, sha256_hex};
use crate::enroll;
use crate::store::{NewEnrollment, StoreError};

use super::{Actor, ServiceError, audit};

/// A created enrollment bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The one-time token (256 bits, base64url).
    pub token: String,
    /// The install command an operator pastes on the machine.
    pub command: String,
    /// When the token expires (unix ms).
    pub expires_at: i64,
    /// The agent's id.
    pub agent_id: Uuid,
}

/// The URL an agent of this bundle connects to: `given` or this server's
/// public URL, checked by the contract's rule
/// ([`rmm_api::check_server_url`]), and plain http only to loopback unless
/// the server runs with `--insecure-http`.
fn server_url(app: &App, given: Option<&str>) -> Result<String, ServiceError> {
    let url = rmm_api::check_server_url(given.unwrap_or(&app.public_url))?;
    if App::needs_insecure_http(&url) && !app.config.insecure_http {
        return Err(ServiceError::invalid(
            "insecure_server_url",
            "server_url is plain http:// to a host that is not loopback: the agent's secret would \
             cross the network in clear text; use https:// (or start the server with --insecure-http)",
        ));
    }
    Ok(url)
}

/// Creates a bundle: the agent `agent_name` (a DNS label, unique among
/// agents that are not retired) on `channel`, connecting to `server_url`
/// (default: this server's public URL).
pub async fn create_bundle(
    app: &App,
    actor: &Actor,
    agent_name: &str,
    server_url_given: Option<&str>,
    channel: Channel,
) -> Result<Bundle, ServiceError> {
    rmm_api::check_agent_name(agent_name)?;
    let server_url = server_url(app, server_url_given)?;
    let token = random_token(enroll::TOKEN_BYTES);
    let now = app.now_ms();
    let e = NewEnrollment {
        agent_id: Uuid::new_v4(),
        agent_name: agent_name.to_owned(),
        token_hash: sha256_hex(&token),
        server_url,
        channel: channel.as_str().to_owned(),
        created_by: actor.name.clone(),
        created_at: now,
        expires_at: now.saturating_add(crate::clock::duration_ms(app.config.enroll_ttl)),
    };
    app.store
        .create_enrollment(&e)
        .await
        .map_err(|err| match err {
            StoreError::Conflict(_) => {
                ServiceError::conflict(format!("an agent named {agent_name} already exists"))
            }
            other => other.into(),
        })?;
    app.hub.agents_changed();
    audit::record(
        app,
        actor,
        "enrollment.create",
        Some(e.agent_id.to_string()),
        serde_json::json!({"agent_name": agent_name, "channel": channel.as_str(), "expires_at": e.expires_at}),
    )
    .await;
    Ok(Bundle {
        command: format!(
            "curl -fsSL {}{}/api/v1/enroll-bundle/{token}.sh | sudo bash",
            app.curl_pin_args(),
            app.public_url
        ),
        token,
        expires_at: e.expires_at,
        agent_id: e.agent_id,
    })
}

fn gone() -> ServiceError {
    ServiceError::not_found("unknown, expired or already used enrollment token")
}

/// The bootstrap script of a pending token (repeatable until the token is
/// redeemed or expires).
pub async fn bootstrap_script(app: &App, token: &str) -> Result<String, ServiceError> {
    if !enroll::token_shape_ok(token) {
        return Err(gone());
    }
    let e = app
        .store
        .pending_enrollment(&sha256_hex(token), app.now_ms())
        .await?
        .ok_or_else(gone)?;
    let channel = e.channel.parse().unwrap_or(Channel::Stable);
    let builds = enroll::linux_builds(&*app.releases.index().await, channel);
    Ok(enroll::bootstrap_script(&enroll::Bootstrap {
        public_url: &app.public_url,
        server_url: &e.server_url,
        token,
        agent_name: &e.agent_name,
        builds: &builds,
        server_cert_sha256: app.enrollment_pin().as_deref(),
        curl_pin_args: &app.curl_pin_args(),
        insecure_http: App::needs_insecure_http(&e.server_url),
    }))
}

/// Redeems a token (exactly once): the agent's credential is made and the
/// payload archive (agent config with its secret, systemd unit) returned.
/// `address` is the redeeming client, recorded with the agent.
pub async fn redeem(app: &App, token: &str, address: &str) -> Result<Vec<u8>, ServiceError> {
    if !enroll::token_shape_ok(token) {
        return Err(gone());
    }
    let secret = random_token(32);
    let e = app
        .store
        .redeem_enrollment(
            &sha256_hex(token),
            app.now_ms(),
            address,
            &sha256_hex(&secret),
        )
        .await?
        .ok_or_else(gone)?;
    let config = enroll::AgentConfig {
        server_url: e.server_url.clone(),
        agent_id: e.agent_id,
        agent_secret: secret,
        server_cert_sha256: app.enrollment_pin(),
        agent_name: e.agent_name.clone(),
        channel: e.channel.clone(),
    };
    app.hub.agents_changed();
    let tgz = enroll::payload_tgz(&config, app.now_ms()).map_err(ServiceError::internal)?;
    audit::record(
        app,
        &Actor::new(format!("agent:{}", e.agent_id), Some(address.to_owned())),
        "enrollment.redeem",
        Some(e.agent_id.to_string()),
        serde_json::json!({"agent_name": e.agent_name}),
    )
    .await;
    Ok(tgz)
}
