//! Bounds on what an unauthenticated caller can make the server store in
//! the audit log.
//!
//! Authenticated actions are audited one row each. Unauthenticated events
//! (failed logins, throttled logins) are not allowed to grow the table at
//! the caller's pace:
//! - throttled attempts are aggregated into one `login.throttled` row per
//!   client and minute, with a count (written when the minute is over);
//! - other unauthenticated rows pass a server-wide budget per minute; what
//!   exceeds it is counted into one `audit.suppressed` row per minute;
//! - what the caller typed is clipped and stripped of control characters
//!   before it is stored ([`clip_untrusted`]).
//!
//! The aggregated rows are produced by [`AuditGate::drain`], which the
//! hub's sweeper calls; time is passed in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use crate::store::NewAudit;

/// Default length of an aggregation window (ms).
pub const WINDOW_MS: i64 = 60_000;
/// Most clients aggregated separately per window; the rest share one row.
const MAX_CLIENTS: usize = 10_000;
/// Most distinct account names listed in one aggregated row.
const MAX_ACCOUNTS_LISTED: usize = 8;
/// Longest text taken from an unauthenticated caller into a row.
pub const MAX_UNTRUSTED_CHARS: usize = 64;
/// The client key of clients beyond [`MAX_CLIENTS`].
const OVERFLOW_CLIENT: &str = "*";

/// `s` without control characters, at most [`MAX_UNTRUSTED_CHARS`] chars.
pub fn clip_untrusted(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_UNTRUSTED_CHARS)
        .collect()
}

#[derive(Debug, Default)]
struct Throttled {
    count: u64,
    first_at: i64,
    last_at: i64,
    accounts: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Start of the budget window (ms): its first admitted row.
    budget_window: i64,
    /// Rows admitted in the budget window.
    admitted: u32,
    /// Suppressed rows per (window, action).
    suppressed: BTreeMap<(i64, String), u64>,
    /// Throttled attempts per (window, client).
    throttled: HashMap<(i64, String), Throttled>,
}

/// The gate unauthenticated audit rows pass through.
#[derive(Debug)]
pub struct AuditGate {
    per_window: u32,
    window_ms: i64,
    inner: Mutex<Inner>,
}

impl AuditGate {
    /// A gate admitting `per_window` unauthenticated rows per window of
    /// `window_ms` (normally [`WINDOW_MS`]).
    pub fn new(per_window: u32, window_ms: i64) -> Self {
        AuditGate {
            per_window,
            window_ms: window_ms.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn window_of(&self, now: i64) -> i64 {
        now.div_euclid(self.window_ms) * self.window_ms
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an unauthenticated `action` may be written as a row now;
    /// when not, it is counted into the window's `audit.suppressed` row.
    pub fn admit(&self, action: &str, now: i64) -> bool {
        let mut g = self.lock();
        // The budget's window starts with its first row (not on a clock
        // boundary), so a burst is never split across two budgets.
        if g.admitted == 0 || now.saturating_sub(g.budget_window) >= self.window_ms {
            g.budget_window = now;
            g.admitted = 0;
        }
        let w = g.budget_window;
        if g.admitted < self.per_window {
            g.admitted += 1;
            return true;
        }
        *g.suppressed.entry((w, action.to_owned())).or_default() += 1;
        false
    }

    /// Counts a throttled login attempt of `client` on `account`.
    pub fn throttled(&self, client: &str, account: &str, now: i64) {
        let w = self.window_of(now);
        let mut g = self.lock();
        let key = if g.throttled.len() < MAX_CLIENTS
            || g.throttled.contains_key(&(w, client.to_owned()))
        {
            (w, client.to_owned())
        } else {
            (w, OVERFLOW_CLIENT.to_owned())
        };
        let t = g.throttled.entry(key).or_insert_with(|| Throttled {
            first_at: now,
            ..Throttled::default()
        });
        t.count += 1;
        t.last_at = now;
        if t.accounts.len() < MAX_ACCOUNTS_LISTED {
            t.accounts.insert(clip_untrusted(account));
        }
    }

    /// The aggregated rows of every window that ended at or before `now`
    /// (all of them when `now` is `i64::MAX`, at shutdown).
    pub fn drain(&self, now: i64) -> Vec<NewAudit> {
        let current = if now == i64::MAX {
            i64::MAX
        } else {
            self.window_of(now)
        };
        let mut g = self.lock();
        let mut rows = Vec::new();
        let done: Vec<(i64, String)> = g
            .throttled
            .keys()
            .filter(|(w, _)| *w < current)
            .cloned()
            .collect();
        for key in done {
            if let Some(t) = g.throttled.remove(&key) {
                let client = key.1;
                rows.push(NewAudit {
                    at: t.last_at,
                    actor: "anonymous".into(),
                    action: "login.throttled".into(),
                    target: None,
                    address: (client != OVERFLOW_CLIENT).then(|| client.clone()),
                    detail: serde_json::json!({
                        "count": t.count,
                        "first_at": t.first_at,
                        "last_at": t.last_at,
                        "window_ms": self.window_ms,
                        "accounts": t.accounts,
                        "accounts_listed_max": MAX_ACCOUNTS_LISTED,
                        "clients_aggregated": client == OVERFLOW_CLIENT,
                    }),
                });
            }
        }
        // A budget window is over `window_ms` after its start.
        let cut = if now == i64::MAX {
            i64::MAX
        } else {
            now.saturating_sub(self.window_ms).saturating_add(1)
        };
        let keep = g.suppressed.split_off(&(cut, String::new()));
        let done = std::mem::replace(&mut g.suppressed, keep);
        for ((w, action), count) in done {
            rows.push(NewAudit {
                at: w.saturating_add(self.window_ms - 1),
                actor: "anonymous".into(),
                action: "audit.suppressed".into(),
                target: None,
                address: None,
                detail: serde_json::json!({
                    "suppressed_action": action,
                    "count": count,
                    "window_start": w,
                    "window_ms": self.window_ms,
                    "budget_per_window": self.per_window,
                }),
            });
        }
        rows.sort_by_key(|r| r.at);
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_attempts_become_one_row_per_client_and_window() {
        let g = AuditGate::new(10, WINDOW_MS);
        let t0 = 10 * WINDOW_MS;
        for i in 0..2_000 {
            g.throttled("192.0.2.1", &format!("user{}@x", i % 20), t0 + i);
        }
        g.throttled("192.0.2.2", "a@x", t0 + 5);
        assert!(g.drain(t0 + 30_000).is_empty(), "the window is still open");
        let rows = g.drain(t0 + WINDOW_MS);
        assert_eq!(rows.len(), 2);
        let r = rows
            .iter()
            .find(|r| r.address.as_deref() == Some("192.0.2.1"))
            .unwrap();
        assert_eq!(r.action, "login.throttled");
        assert_eq!(r.detail["count"], 2_000);
        assert_eq!(
            r.detail["accounts"].as_array().unwrap().len(),
            MAX_ACCOUNTS_LISTED
        );
        assert!(g.drain(t0 + 2 * WINDOW_MS).is_empty(), "drained once");
    }

    #[test]
    fn the_budget_suppresses_and_counts_the_rest() {
        let g = AuditGate::new(3, WINDOW_MS);
        let t0 = 7 * WINDOW_MS;
        let admitted = (0..10).filter(|_| g.admit("login.failure", t0)).count();
        assert_eq!(admitted, 3);
        // a new window has a new budget
        assert!(g.admit("login.failure", t0 + WINDOW_MS));
        let rows = g.drain(t0 + WINDOW_MS);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].action, "audit.suppressed");
        assert_eq!(rows[0].detail["count"], 7);
        assert_eq!(rows[0].detail["suppressed_action"], "login.failure");
    }

    #[test]
    fn a_burst_across_a_clock_boundary_has_one_budget() {
        let g = AuditGate::new(2, WINDOW_MS);
        let t0 = 8 * WINDOW_MS - 10;
        assert!(g.admit("login.failure", t0));
        assert!(g.admit("login.failure", t0 + 5));
        // the wall clock crosses a minute boundary: same budget
        assert!(!g.admit("login.failure", t0 + 20));
        assert!(
            g.drain(t0 + 20).is_empty(),
            "the budget window is still open"
        );
        let rows = g.drain(t0 + WINDOW_MS);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].detail["count"], 1);
        assert!(g.admit("login.failure", t0 + WINDOW_MS));
    }

    #[test]
    fn clients_beyond_the_cap_share_a_row() {
        let g = AuditGate::new(1, WINDOW_MS);
        for i in 0..(MAX_CLIENTS + 50) {
            g.throttled(&format!("c{i}"), "a", 0);
        }
        let rows = g.drain(i64::MAX);
        assert_eq!(rows.len(), MAX_CLIENTS + 1);
        let shared = rows.iter().find(|r| r.address.is_none()).unwrap();
        assert_eq!(shared.detail["count"], 50);
    }

    #[test]
    fn untrusted_text_is_clipped_and_cleaned() {
        assert_eq!(clip_untrusted("a\0b\nc\u{7f}d"), "abcd");
        assert_eq!(clip_untrusted(&"é".repeat(200)).chars().count(), 64);
    }
}
