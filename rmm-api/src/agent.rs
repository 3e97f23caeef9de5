//! Agents: an agent as the API shows it, whether it is connected, and its
//! inventory.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Channel;
use crate::wire::{self, null_default};
use crate::words::wire_words;

/// Whether an agent is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AgentStatus {
    /// Connected and heard from within the heartbeat window.
    Online,
    /// Not connected, silent, not enrolled yet, or retired.
    Offline,
}

wire_words!(AgentStatus { Online => "online", Offline => "offline" });

impl AgentStatus {
    /// `Online` when `online`, else `Offline`.
    pub fn from_online(online: bool) -> Self {
        if online {
            AgentStatus::Online
        } else {
            AgentStatus::Offline
        }
    }
}

/// An agent as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Agent))]
#[non_exhaustive]
pub struct AgentView {
    /// Id.
    pub id: Uuid,
    /// Enrollment name.
    #[serde(default, deserialize_with = "null_default")]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub name: String,
    /// Host name (empty until the agent first connects).
    #[serde(default, deserialize_with = "null_default")]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub hostname: String,
    /// OS.
    #[serde(default, deserialize_with = "null_default")]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub os: String,
    /// CPU architecture.
    #[serde(default, deserialize_with = "null_default")]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub arch: String,
    /// Agent build version.
    #[serde(default, deserialize_with = "null_default")]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub agent_version: String,
    /// Release channel.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::ChannelWord))]
    pub channel: Channel,
    /// Connected now or not.
    pub status: AgentStatus,
    /// Last time heard from (RFC 3339), or null.
    #[serde(serialize_with = "wire::millis_opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub last_seen: Option<DateTime<Utc>>,
    /// Machine identity hash.
    pub machine_uid: Option<String>,
    /// Address it enrolled or last connected from.
    pub address: Option<String>,
    /// Whether the enrollment payload was taken.
    pub enrolled: bool,
    /// Creation time.
    #[serde(serialize_with = "wire::millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub created_at: DateTime<Utc>,
    /// Set when the agent was deleted or replaced.
    #[serde(
        default,
        serialize_with = "wire::millis_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub retired_at: Option<DateTime<Utc>>,
    /// The agent that replaced this one (identity dedup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<Uuid>,
}

/// The descriptive fields (host name, OS, ...) are empty until the agent
/// first connects.
impl AgentView {
    /// An offline, not yet enrolled agent on the stable channel that never
    /// connected; the other fields empty, for the server to fill in.
    pub fn new(id: Uuid, name: impl Into<String>, created_at: DateTime<Utc>) -> Self {
        AgentView {
            id,
            name: name.into(),
            hostname: String::new(),
            os: String::new(),
            arch: String::new(),
            agent_version: String::new(),
            channel: Channel::Stable,
            status: AgentStatus::Offline,
            last_seen: None,
            machine_uid: None,
            address: None,
            enrolled: false,
            created_at,
            retired_at: None,
            replaced_by: None,
        }
    }

    /// Whether the agent is connected now.
    pub fn is_online(&self) -> bool {
        self.status == AgentStatus::Online
    }
}

/// One plugin's latest result on an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct InventoryView {
    /// Plugin name.
    pub plugin: String,
    /// What it printed (JSON; `"unknown"` when it failed).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub result: serde_json::Value,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// When the agent collected it.
    #[serde(serialize_with = "wire::millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub collected_at: DateTime<Utc>,
    /// When the server received it.
    #[serde(serialize_with = "wire::millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub received_at: DateTime<Utc>,
}

impl InventoryView {
    /// A plugin's result.
    pub fn new(
        plugin: impl Into<String>,
        result: serde_json::Value,
        error: Option<String>,
        collected_at: DateTime<Utc>,
        received_at: DateTime<Utc>,
    ) -> Self {
        InventoryView {
            plugin: plugin.into(),
            result,
            error,
            collected_at,
            received_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words() {
        let cases = [
            (AgentStatus::Online, "online"),
            (AgentStatus::Offline, "offline"),
        ];
        crate::words::check_words(&cases, AgentStatus::WORDS, AgentStatus::parse);
        assert_eq!(AgentStatus::from_online(true), AgentStatus::Online);
        assert_eq!(AgentStatus::from_online(false), AgentStatus::Offline);
    }

    #[test]
    fn agent_wire_format() {
        let at = DateTime::from_timestamp_millis(1_795_456_800_123).expect("in range");
        let mut a = AgentView::new(Uuid::from_u128(7), "web-01", at);
        a.channel = Channel::Beta;
        let json = serde_json::to_value(&a).expect("ser");
        assert_eq!(json["created_at"], "2026-11-23T18:00:00.123Z");
        assert_eq!(
            (&json["channel"], &json["status"], &json["last_seen"]),
            (&"beta".into(), &"offline".into(), &serde_json::Value::Null)
        );
        assert!(json.get("retired_at").is_none() && json.get("replaced_by").is_none());
        let back: AgentView = serde_json::from_value(json).expect("round trip");
        assert_eq!(back, a);
        assert!(!back.is_online());

        a.status = AgentStatus::Online;
        a.retired_at = Some(at);
        a.replaced_by = Some(Uuid::from_u128(8));
        let json = serde_json::to_value(&a).expect("ser");
        assert_eq!(json["retired_at"], "2026-11-23T18:00:00.123Z");
        let back: AgentView = serde_json::from_value(json).expect("round trip");
        assert!(back.is_online());
        assert_eq!(back, a);

        let lenient = r#"{"id":"0a0a0a0a-0000-4000-8000-000000000001","name":null,"channel":"stable",
            "status":"online","enrolled":true,"created_at":"2026-11-23T18:00:00Z"}"#;
        let a: AgentView = serde_json::from_str(lenient).expect("lenient");
        assert_eq!((a.name.as_str(), a.hostname.as_str()), ("", ""));
        assert!(serde_json::from_str::<AgentView>(&lenient.replace("stable", "nightly")).is_err());
    }
}
