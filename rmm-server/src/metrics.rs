//! Prometheus metrics (`GET /metrics`, OpenMetrics text), kept and encoded
//! by the `prometheus-client` crate: connected agents, commands by status
//! (read from the store at scrape time), HTTP request counts and latency
//! histograms per route, and the hub's counters.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

use crate::store::CommandStatus;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connected: Gauge,
    commands: Family<StatusLabels, Gauge>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Agent WebSocket connections accepted (authenticated).
    pub agent_connections: Counter,
    /// Heartbeats received.
    pub heartbeats: Counter,
    /// Command results stored.
    pub results: Counter,
    /// `run_command` messages sent.
    pub deliveries: Counter,
    /// Undecodable control messages received.
    pub bad_messages: Counter,
    /// Agent handshakes refused (503) because too many were in progress.
    pub handshakes_refused: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let connected = Gauge::default();
        registry.register(
            "rmm_agents_connected",
            "Agents connected to this server process",
            connected.clone(),
        );
        let commands = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "rmm_commands",
            "Commands in the store by status",
            commands.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "rmm_http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "rmm_http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        let mut counter = |name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let agent_connections = counter(
            "rmm_agent_connections",
            "Agent WebSocket connections accepted",
        );
        let heartbeats = counter("rmm_agent_heartbeats", "Heartbeats received");
        let results = counter("rmm_command_results", "Command results stored");
        let deliveries = counter("rmm_command_deliveries", "run_command messages sent");
        let bad_messages = counter(
            "rmm_agent_bad_messages",
            "Undecodable control messages received",
        );
        let handshakes_refused = counter(
            "rmm_agent_handshakes_refused",
            "Agent handshakes refused with 503 (too many in progress)",
        );
        Metrics {
            registry,
            connected,
            commands,
            requests,
            latency,
            agent_connections,
            heartbeats,
            results,
            deliveries,
            bad_messages,
            handshakes_refused,
        }
    }
}

impl Metrics {
    /// Sets the connected-agents gauge.
    pub fn set_connected(&self, n: usize) {
        self.connected.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Records one HTTP request (`route` is the matched route template,
    /// so label cardinality stays bounded).
    pub fn observe_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Renders everything in the OpenMetrics text format; `commands` are
    /// the store's counts by status at scrape time.
    pub fn render(&self, commands: &[(CommandStatus, i64)]) -> String {
        for status in CommandStatus::ALL {
            let n = commands
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |(_, n)| *n);
            self.commands
                .get_or_create(&StatusLabels {
                    status: status.to_string(),
                })
                .set(n);
        }
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe_request("GET", "/api/agents", 200, Duration::from_millis(3));
        m.observe_request("GET", "/api/agents", 200, Duration::from_millis(30));
        m.heartbeats.inc();
        let text = m.render(&[(CommandStatus::Running, 2)]);
        assert!(
            text.contains("rmm_commands{status=\"running\"} 2"),
            "{text}"
        );
        assert!(text.contains("rmm_commands{status=\"failed\"} 0"));
        assert!(
            text.contains("_bucket{le=\"0.005\",route=\"/api/agents\"} 1"),
            "{text}"
        );
        assert!(text.contains("_bucket{le=\"0.05\",route=\"/api/agents\"} 2"));
        assert!(text.contains("rmm_http_request_duration_seconds_count{route=\"/api/agents\"} 2"));
        assert!(text.contains(
            "rmm_http_requests_total{method=\"GET\",route=\"/api/agents\",status=\"200\"} 2"
        ));
        assert!(text.contains("rmm_agent_heartbeats_total 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn hostile_route_text_is_escaped() {
        let m = Metrics::default();
        m.observe_request("GET", "/a\"b\\c\nd", 404, Duration::from_millis(1));
        let text = m.render(&[]);
        assert!(!text.contains("/a\"b"), "{text}");
    }
}
