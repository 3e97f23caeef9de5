//! Prometheus metrics, rendered by hand in the text exposition format
//! (`GET /metrics`): connected agents, commands by status (read from the
//! store), HTTP request counts and latency histograms per route, and a few
//! hub counters.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::CommandStatus;

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    connected: AtomicU64,
    /// Agent WebSocket connections accepted (authenticated).
    pub agent_connections: AtomicU64,
    /// Heartbeats received.
    pub heartbeats: AtomicU64,
    /// Command results stored.
    pub results: AtomicU64,
    /// `run_command` messages sent.
    pub deliveries: AtomicU64,
    /// Undecodable control messages received.
    pub bad_messages: AtomicU64,
    /// Agent handshakes refused (503) because too many were in progress.
    pub handshakes_refused: AtomicU64,
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

impl Metrics {
    /// Sets the connected-agents gauge.
    pub fn set_connected(&self, n: usize) {
        self.connected.store(n as u64, Ordering::Relaxed);
    }

    /// Records one HTTP request (`route` is the matched route template,
    /// so label cardinality stays bounded).
    pub fn observe_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        {
            let mut r = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            *r.entry((method.to_owned(), route.to_owned(), status))
                .or_insert(0) += 1;
        }
        let secs = took.as_secs_f64();
        let mut l = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let h = l.entry(route.to_owned()).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// Renders everything in the Prometheus text format.
    pub fn render(&self, commands: &[(CommandStatus, i64)]) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP rmm_agents_connected Agents connected to this server process."
        );
        let _ = writeln!(out, "# TYPE rmm_agents_connected gauge");
        let _ = writeln!(
            out,
            "rmm_agents_connected {}",
            self.connected.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP rmm_commands Commands in the store by status.");
        let _ = writeln!(out, "# TYPE rmm_commands gauge");
        for status in CommandStatus::ALL {
            let n = commands
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "rmm_commands{{status=\"{status}\"}} {n}");
        }
        for (name, help, v) in [
            (
                "rmm_agent_connections_total",
                "Agent WebSocket connections accepted.",
                &self.agent_connections,
            ),
            (
                "rmm_agent_heartbeats_total",
                "Heartbeats received.",
                &self.heartbeats,
            ),
            (
                "rmm_command_results_total",
                "Command results stored.",
                &self.results,
            ),
            (
                "rmm_command_deliveries_total",
                "run_command messages sent.",
                &self.deliveries,
            ),
            (
                "rmm_agent_bad_messages_total",
                "Undecodable control messages received.",
                &self.bad_messages,
            ),
            (
                "rmm_agent_handshakes_refused_total",
                "Agent handshakes refused with 503 (too many in progress).",
                &self.handshakes_refused,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP rmm_http_requests_total HTTP requests by method, route and status."
        );
        let _ = writeln!(out, "# TYPE rmm_http_requests_total counter");
        for ((method, route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "rmm_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        let _ = writeln!(
            out,
            "# HELP rmm_http_request_duration_seconds HTTP request latency by route."
        );
        let _ = writeln!(out, "# TYPE rmm_http_request_duration_seconds histogram");
        for (route, h) in self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let route = escape(route);
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "rmm_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "rmm_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "rmm_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "rmm_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe_request("GET", "/api/agents", 200, Duration::from_millis(3));
        m.observe_request("GET", "/api/agents", 200, Duration::from_millis(30));
        let text = m.render(&[(CommandStatus::Running, 2)]);
        assert!(
            text.contains("rmm_commands{status=\"running\"} 2"),
            "{text}"
        );
        assert!(text.contains("rmm_commands{status=\"failed\"} 0"));
        assert!(
            text.contains("route=\"/api/agents\",le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(text.contains("route=\"/api/agents\",le=\"0.05\"} 2"));
        assert!(text.contains("rmm_http_request_duration_seconds_count{route=\"/api/agents\"} 2"));
        assert!(text.contains(
            "rmm_http_requests_total{method=\"GET\",route=\"/api/agents\",status=\"200\"} 2"
        ));
    }
}
