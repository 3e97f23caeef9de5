//! The daemon (`rmm-agent run`): connect, hello, welcome, serve, and
//! reconnect with full-jitter backoff after any drop.
//!
//! Reconnects follow PROTOCOL.md §4: before the first attempt the agent
//! waits a random time in `[0, initial_delay]`; after a failed attempt or
//! a drop it waits [`Backoff::delay`] (uniform in `[0, min(cap, base·2ⁿ))`)
//! with `n` counting attempts since the last connection that stayed up for
//! `stable_after`. With the defaults (base 1 s, cap 5 min, stable 60 s) a
//! fleet whose server restarts spreads its reconnects instead of
//! stampeding.
//!
//! Plain `http://` to a non-loopback server is a startup error
//! ([`AgentError::InsecureHttp`]), not something to retry, unless the
//! identity's `insecure_http` or [`AgentOptions::insecure_http`] allows it.

pub mod conn;
pub mod exec;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rmm_core::io::{Backoff, Clock};

use crate::clock::SystemClock;
use rmm_core::protocol::{Codec, Hello, VersionRange};
use tokio::sync::Notify;

use self::conn::{ConnError, Parts};
use self::exec::Executor;
use crate::identity::{Identity, IdentityError, StateDir, warn_if_insecure};
use crate::plugins::{PluginOptions, Plugins};
use crate::runner::{ProcessRunner, RunnerConfig};
use crate::store::Store;

/// The reconnect schedule: full-jitter exponential backoff whose attempt
/// counter resets after a connection that stayed up `stable_after`.
#[derive(Debug, Clone)]
pub struct Reconnect {
    backoff: Backoff,
    stable_after: Duration,
    attempt: u32,
}

impl Reconnect {
    /// A fresh schedule.
    pub fn new(backoff: Backoff, stable_after: Duration) -> Self {
        Reconnect {
            backoff,
            stable_after,
            attempt: 0,
        }
    }

    /// Attempts since the last stable connection.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The wait before the next attempt, after a failed attempt
    /// (`connected_for: None`) or a dropped connection that had been up
    /// `connected_for`; `unit` is uniform in `[0, 1)`.
    pub fn after_drop(&mut self, connected_for: Option<Duration>, unit: f64) -> Duration {
        if connected_for.is_some_and(|d| d >= self.stable_after) {
            self.attempt = 0;
        }
        let delay = self.backoff.delay(self.attempt, unit);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// The wait after a 503 with `Retry-After`: at least the server's
    /// value, spread over `[retry_after, 2·retry_after)` by `unit` so a
    /// refused crowd does not come back at the same instant; `delay` when
    /// the server was not busy.
    pub fn after_busy(
        &self,
        delay: Duration,
        retry_after: Option<Duration>,
        unit: f64,
    ) -> Duration {
        match retry_after {
            Some(r) => delay.max(r.mul_f64(1.0 + unit.clamp(0.0, 1.0))),
            None => delay,
        }
    }
}

/// Everything `run` can be configured with.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The state directory.
    pub state_dir: PathBuf,
    /// Reconnect schedule.
    pub backoff: Backoff,
    /// A connection that stayed up this long resets the schedule.
    pub stable_after: Duration,
    /// Upper bound of the random delay before the first connection.
    pub initial_delay: Duration,
    /// Replaces `/etc/machine-id` as the input of the machine uid.
    pub machine_id: Option<String>,
    /// Command runner settings.
    pub runner: RunnerConfig,
    /// Plugin settings (`dir: None` means `<state-dir>/plugins`).
    pub plugins: PluginOptions,
    /// Largest control frame accepted from the server.
    pub max_control_bytes: usize,
    /// Finished command ids remembered.
    pub finished_capacity: usize,
    /// Timeout of connect + upgrade, and of the wait for welcome.
    pub connect_timeout: Duration,
    /// Allows plain `http://` to a non-loopback server even when the
    /// identity does not (`--insecure-http`).
    pub insecure_http: bool,
}

impl AgentOptions {
    /// Defaults for a state directory.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        AgentOptions {
            state_dir: state_dir.into(),
            backoff: Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(300),
            },
            stable_after: Duration::from_secs(60),
            initial_delay: Duration::from_secs(5),
            machine_id: None,
            runner: RunnerConfig::default(),
            plugins: PluginOptions::default(),
            max_control_bytes: rmm_core::delivery::AGENT_MAX_CONTROL,
            finished_capacity: crate::store::DEFAULT_CAPACITY,
            connect_timeout: Duration::from_secs(30),
            insecure_http: false,
        }
    }
}

/// Why the agent cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// State directory or identity problem.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Plain http to a non-loopback server, allowed neither by the
    /// identity nor by the options.
    #[error("{0}")]
    InsecureHttp(String),
    /// No machine id.
    #[error(transparent)]
    MachineId(#[from] crate::machine::NoMachineId),
    /// The command store cannot be opened.
    #[error("cannot open the command store in {}: {source}", .dir.display())]
    Store {
        /// Its directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A ready-to-run agent.
#[derive(Debug)]
pub struct Agent {
    opts: AgentOptions,
    identity: Identity,
    hello: Hello,
    store: Arc<Store>,
    exec: Arc<Executor>,
    plugins: Arc<Plugins>,
    outbox_changed: Arc<Notify>,
}

impl Agent {
    /// Opens the state directory (it must be writable), loads the identity
    /// (it must exist: the agent never mints one), checks its transport
    /// ([`Identity::transport`]), and recovers the store.
    pub fn open(opts: AgentOptions) -> Result<Agent, AgentError> {
        let state = StateDir::open(&opts.state_dir)?;
        let identity = state.load_identity()?;
        let transport = identity
            .transport(opts.insecure_http)
            .map_err(AgentError::InsecureHttp)?;
        warn_if_insecure(transport, &identity.server_url);
        let machine_uid = crate::machine::machine_uid(opts.machine_id.as_deref())?;
        let store_dir = state.subdir("commands")?;
        let (store, recovered) =
            Store::open(&store_dir, opts.finished_capacity, SystemClock.unix_ms()).map_err(
                |source| AgentError::Store {
                    dir: store_dir.clone(),
                    source,
                },
            )?;
        for id in &recovered {
            tracing::warn!(%id, "{}", crate::store::RESTARTED_ERROR);
        }
        let outbox_changed = store.changed();
        let mut runner_cfg = opts.runner.clone();
        if runner_cfg.scratch_dir.as_os_str().is_empty() {
            runner_cfg.scratch_dir = std::env::temp_dir();
        }
        let exec = Executor::new(ProcessRunner::new(runner_cfg), store.clone());
        let mut popts = opts.plugins.clone();
        if popts.dir.is_none() {
            popts.dir = Some(state.path().join("plugins"));
        }
        let plugins = Plugins::new(popts, outbox_changed.clone());
        let hello = Hello {
            protocol: VersionRange::current(),
            agent_id: identity.agent_id,
            agent_version: crate::AGENT_VERSION.into(),
            os: crate::machine::os().into(),
            arch: crate::machine::arch().into(),
            hostname: crate::machine::hostname(),
            machine_uid,
            channel: identity.channel.clone(),
        };
        Ok(Agent {
            opts,
            identity,
            hello,
            store,
            exec,
            plugins,
            outbox_changed,
        })
    }

    /// The identity in use.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The hello this agent sends.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// Runs until `shutdown` resolves: connects, serves, reconnects. On
    /// shutdown, running commands are stopped and their results stored.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let plugin_task = tokio::spawn(self.plugins.clone().run_forever());
        let codec = Codec::new(conn::limits(self.opts.max_control_bytes));
        let initial = self.opts.initial_delay.mul_f64(rand::rng().random::<f64>());
        tracing::info!(
            delay_ms = initial.as_millis() as u64,
            "starting; first connection after a random delay"
        );
        let mut stopped = tokio::select! {
            _ = tokio::time::sleep(initial) => false,
            _ = &mut shutdown => true,
        };
        let mut schedule = Reconnect::new(self.opts.backoff, self.opts.stable_after);
        while !stopped {
            let t0 = tokio::time::Instant::now();
            let mut connected_for = None;
            let mut busy = None;
            match self.connect_once(&codec, &mut shutdown).await {
                Ok(()) => stopped = true,
                Err((e, welcomed_at)) => {
                    connected_for = welcomed_at.map(|at| at.elapsed());
                    if let ConnError::Busy { retry_after } = &e {
                        busy = Some(*retry_after);
                    }
                    tracing::warn!(after_ms = t0.elapsed().as_millis() as u64, "{e}");
                }
            }
            if stopped {
                break;
            }
            let unit = rand::rng().random::<f64>();
            let delay = schedule.after_drop(connected_for, unit);
            let delay = schedule.after_busy(delay, busy, unit);
            tracing::info!(
                attempt = schedule.attempt(),
                delay_ms = delay.as_millis() as u64,
                "reconnecting"
            );
            stopped = tokio::select! {
                _ = tokio::time::sleep(delay) => false,
                _ = &mut shutdown => true,
            };
        }
        plugin_task.abort();
        let grace = self.opts.runner.kill_grace + Duration::from_secs(2);
        self.exec.shutdown(grace).await;
        tracing::info!("stopped");
    }

    async fn connect_once(
        &self,
        codec: &Codec,
        shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
    ) -> Result<(), (ConnError, Option<tokio::time::Instant>)> {
        let timeout = self.opts.connect_timeout;
        let connect = async {
            let (mut ws, _) = conn::connect(&self.identity, codec.limits, timeout).await?;
            let (welcome, machine) = conn::handshake(&mut ws, codec, &self.hello, timeout).await?;
            Ok::<_, ConnError>((ws, welcome, machine))
        };
        let (ws, welcome, machine) = tokio::select! {
            r = connect => r.map_err(|e| (e, None))?,
            _ = &mut *shutdown => return Ok(()),
        };
        let welcomed = tokio::time::Instant::now();
        tracing::info!(
            protocol = welcome.protocol,
            heartbeat_secs = welcome.heartbeat_interval_secs,
            max_concurrent = welcome.settings.max_concurrent_commands,
            "connected and welcomed"
        );
        self.exec.apply(&welcome.settings);
        let parts = Parts {
            store: &self.store,
            exec: &self.exec,
            plugins: &self.plugins,
            outbox_changed: &self.outbox_changed,
        };
        conn::serve(ws, *codec, machine, parts, shutdown)
            .await
            .map_err(|e| (e, Some(welcomed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn reconnect_backs_off_caps_and_resets_after_a_stable_connection() {
        let mut r = Reconnect::new(
            Backoff {
                base: secs(1),
                cap: secs(300),
            },
            secs(60),
        );
        // Ceilings (unit just below 1) double from the base up to the cap.
        let u = 0.999_999;
        let ceilings: Vec<u64> = (0..11)
            .map(|_| r.after_drop(None, u).as_secs_f64().round() as u64)
            .collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        // Full jitter: the delay is uniform below the ceiling.
        assert_eq!(r.after_drop(None, 0.0), Duration::ZERO);
        assert_eq!(r.after_drop(None, 0.5), secs(150));
        // A short-lived connection does not reset the schedule...
        assert_eq!(r.after_drop(Some(secs(59)), 0.5), secs(150));
        // ...one that stayed up a minute does.
        assert_eq!(
            r.after_drop(Some(secs(60)), 0.5),
            Duration::from_millis(500)
        );
        assert_eq!(r.attempt(), 1);
        assert_eq!(r.after_drop(None, 0.5), secs(1));
    }

    #[test]
    fn a_busy_server_is_honoured_with_spread() {
        let secs = Duration::from_secs;
        let r = Reconnect::new(
            Backoff {
                base: secs(1),
                cap: secs(300),
            },
            secs(60),
        );
        assert_eq!(r.after_busy(secs(1), None, 0.5), secs(1));
        assert_eq!(r.after_busy(secs(1), Some(secs(2)), 0.0), secs(2));
        assert_eq!(r.after_busy(secs(1), Some(secs(2)), 0.5), secs(3));
        assert_eq!(r.after_busy(secs(9), Some(secs(2)), 0.5), secs(9));
        assert_eq!(
            r.after_busy(secs(0), Some(secs(2)), 7.0),
            secs(4),
            "clamped"
        );
    }

    #[test]
    fn retry_after_is_read_and_capped() {
        use tokio_tungstenite::tungstenite::http::HeaderMap;
        let check = |v: Option<&str>, want: u64| {
            let mut h = HeaderMap::new();
            if let Some(v) = v {
                h.insert("retry-after", v.parse().unwrap());
            }
            assert_eq!(conn::retry_after(&h), Duration::from_secs(want), "{v:?}");
        };
        check(Some("3"), 3);
        check(Some(" 7 "), 7);
        check(Some("99999"), 300);
        check(Some("Wed, 21 Oct 2015 07:28:00 GMT"), 1);
        check(None, 1);
    }
}
