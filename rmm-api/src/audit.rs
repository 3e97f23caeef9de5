//! The audit log: a record as the API shows it, and paging.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::page::page_query;
use crate::wire;

/// An audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct AuditView {
    /// Sequence number (use as `before` to page).
    pub id: i64,
    /// When.
    #[serde(serialize_with = "wire::millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: Option<String>,
    /// From where.
    pub address: Option<String>,
    /// Details.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub detail: serde_json::Value,
}

impl AuditView {
    /// The record `id`: `actor` did `action` on `target` from `address`
    /// at `at`.
    pub fn new(
        id: i64,
        at: DateTime<Utc>,
        actor: impl Into<String>,
        action: impl Into<String>,
        target: Option<String>,
        address: Option<String>,
        detail: serde_json::Value,
    ) -> Self {
        AuditView {
            id,
            at,
            actor: actor.into(),
            action: action.into(),
            target,
            address,
            detail,
        }
    }
}

page_query! {
    /// Paging of the audit log.
    pub struct AuditPage {
        /// At most this many (default 100).
        limit: 1 ..= 1000, default 100,
        /// Only records with a smaller id.
        before: i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_page_limit() {
        assert_eq!(AuditPage::default().checked_limit(), Ok(100));
        assert_eq!(
            AuditPage::new(Some(1000), Some(5)).checked_limit(),
            Ok(1000)
        );
        let e = AuditPage::new(Some(1001), None)
            .checked_limit()
            .unwrap_err();
        assert_eq!(
            (e.status, e.code, e.message.as_str()),
            (400, "invalid_query", "limit must be between 1 and 1000")
        );
        assert!(AuditPage::new(Some(0), None).checked_limit().is_err());
    }

    #[test]
    fn audit_wire_format() {
        let at = DateTime::from_timestamp_millis(1_500).expect("in range");
        let detail = serde_json::json!({"role": "admin"});
        let v = AuditView::new(
            9,
            at,
            "admin@example.com",
            "user.create",
            None,
            None,
            detail,
        );
        let json = serde_json::to_value(&v).expect("ser");
        assert_eq!(json["at"], "1970-01-01T00:00:01.500Z");
        assert_eq!(json["target"], serde_json::Value::Null);
        assert_eq!(serde_json::from_value::<AuditView>(json).expect("de"), v);
    }
}
