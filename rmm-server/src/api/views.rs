//! What the API sends and accepts: the `rmm_api` types (the contract, with
//! its limits and rules), and their construction from store rows.

use chrono::{DateTime, Utc};
use rmm_core::channel::Release;

use crate::AppState;
use crate::store::{Agent, AuditEntry, Command, InventoryItem, User};

pub use rmm_api::schema::ChannelWord;
pub use rmm_api::{
    AgentStatus, AgentView, AuditPage, AuditView, Channel, CommandAccepted, CommandPage,
    CommandRequest, CommandStatus, CommandView, DetailText, EnrollRequest, EnrollResponse,
    ErrorBody, HealthView, Invalid, InventoryView, LoginRequest, MAX_EMAIL_CHARS,
    MAX_PASSWORD_CHARS, MAX_SERVER_URL_CHARS, MIN_PASSWORD_CHARS, Phase, ReleaseView, Role,
    TokenResponse, UserCreate, UserUpdate, UserView,
};

/// Longest `timeout_secs` of a command (7 days).
pub use rmm_api::MAX_TIMEOUT_SECS;
/// `limit` of `GET /api/agents/:id/commands`: `(min, max, default)` of
/// [`CommandPage::LIMIT`].
pub const COMMAND_PAGE_LIMIT: (u32, u32, u32) = page_limit(CommandPage::LIMIT);
/// `limit` of `GET /api/audit`: `(min, max, default)` of
/// [`AuditPage::LIMIT`].
pub const AUDIT_PAGE_LIMIT: (u32, u32, u32) = page_limit(AuditPage::LIMIT);

const fn page_limit(l: rmm_api::PageLimit) -> (u32, u32, u32) {
    (l.min, l.max, l.default)
}

/// A store time (unix ms) as the API's timestamp.
pub(crate) fn ts(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

fn ts_opt(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.map(ts)
}

/// An agent as the API shows it: online only when connected, not retired
/// and heard from within the configured window.
pub(super) fn agent_view(a: Agent, state: &AppState) -> AgentView {
    let online = crate::service::agents::is_online(state, &a, state.now_ms());
    let mut v = AgentView::new(a.id, a.name, ts(a.created_at));
    v.hostname = a.hostname;
    v.os = a.os;
    v.arch = a.arch;
    v.agent_version = a.agent_version;
    v.channel = a.channel.parse().unwrap_or_default();
    v.status = AgentStatus::from_online(online);
    v.last_seen = ts_opt(a.last_seen);
    v.machine_uid = a.machine_uid;
    v.address = a.address;
    v.enrolled = a.enrolled_at.is_some();
    v.retired_at = ts_opt(a.retired_at);
    v.replaced_by = a.replaced_by;
    v
}

/// A command as the API shows it; without script text and output unless
/// `full` (listings).
pub(super) fn command_view(c: Command, full: bool) -> CommandView {
    let text = |t: String| {
        if full {
            DetailText::from(t)
        } else {
            DetailText::omitted()
        }
    };
    let mut v = CommandView::new(c.id, c.agent_id, c.command_type, ts(c.created_at));
    v.command_text = text(c.command_text);
    v.context = Some(c.context);
    v.timeout_secs = c.timeout_secs;
    v.status = c.status;
    v.phase = Some(c.phase);
    v.exit_code = c.exit_code;
    v.signal = c.signal;
    v.error = c.error;
    v.stdout = text(c.stdout);
    v.stderr = text(c.stderr);
    v.stdout_bytes = c.stdout_len;
    v.stderr_bytes = c.stderr_len;
    v.stdout_truncated = c.stdout_truncated;
    v.stderr_truncated = c.stderr_truncated;
    v.created_by = c.created_by;
    v.delivered_at = ts_opt(c.delivered_at);
    v.started_at = ts_opt(c.started_at);
    v.completed_at = ts_opt(c.completed_at);
    v.cancel_requested_at = ts_opt(c.cancel_requested_at);
    v
}

/// A user as the API shows it (never the hash).
pub(super) fn user_view(u: User) -> UserView {
    UserView::new(
        u.id,
        u.email,
        u.role,
        ts(u.created_at),
        ts(u.updated_at),
        u.disabled_at.is_some(),
    )
}

/// An audit record as the API shows it.
pub(super) fn audit_view(r: AuditEntry) -> AuditView {
    let e = r.entry;
    AuditView::new(
        r.id,
        ts(e.at),
        e.actor,
        e.action,
        e.target,
        e.address,
        e.detail,
    )
}

/// A plugin result as the API shows it.
pub(super) fn inventory_view(i: InventoryItem) -> InventoryView {
    InventoryView::new(
        i.plugin,
        i.result,
        i.error,
        ts(i.collected_at),
        ts(i.received_at),
    )
}

/// A verified build as `GET /api/v1/downloads` lists it.
pub(super) fn release_view(r: &Release) -> ReleaseView {
    ReleaseView::new(
        r.file_name(),
        r.os().as_str(),
        r.arch().as_str(),
        r.version().to_string(),
        r.channel(),
        r.sha256().to_string(),
    )
}

/// A created bundle as `POST /api/v1/enroll-bundle` answers it.
pub fn enroll_response(b: crate::service::enrollment::Bundle) -> EnrollResponse {
    EnrollResponse::new(b.token, b.command, ts(b.expires_at), b.agent_id)
}
