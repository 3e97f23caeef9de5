//! The agent WebSocket hub (PROTOCOL.md §1, §4, §5).
//!
//! One task per connection drives the socket: it reads frames, answers
//! them, and sends what is due. Nothing authoritative lives here: commands,
//! results and agent state are in the [`Store`]; the hub keeps only the
//! map of live connections and, per connection, the last time the agent
//! was heard (written to the store in coalesced batches).
//!
//! Delivery is pull-based: submitting a command writes it to the store and
//! then *kicks* the agent's connection (a [`Notify`], which coalesces), and
//! the connection task fetches its deliverable commands from the store.
//! So the per-connection outbound state is bounded no matter how many
//! commands are queued, a kick can come from anywhere (the API, a sweeper,
//! a PostgreSQL `NOTIFY` from another replica, a periodic poll), and a
//! reconnect naturally re-sends every non-final command.
//!
//! A slow agent only slows its own task: every send has a timeout, after
//! which that connection is dropped (the agent reconnects and nothing is
//! lost, because nothing is acknowledged before it is durable).
//!
//! Memory per idle agent is mostly that task: a task is allocated at the
//! size of its largest state, so the handshake and the handling of
//! anything but a heartbeat run in boxed futures, and the idle task is
//! about the size of its `select!` loop.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use rmm_core::protocol::{
    AgentSettings, Codec, CommandRef, DecodeError, Frame, Limits, Message, ProtocolError,
    RunCommand, VersionRange, Welcome, negotiate,
};
use tokio::sync::{Notify, mpsc, watch};
use uuid::Uuid;

use crate::audit::AuditGate;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::now_ms;
use crate::service::releases::ReleaseCatalog;
use crate::store::{
    AgentHello, FinishOutcome, HelloOutcome, InventoryItem, NewAudit, Store, WakeBus,
};

/// WebSocket close codes used by the hub.
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Server going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error (bad frame, unsupported protocol version).
    pub const PROTOCOL: u16 = 1002;
    /// Unsupported data (a text message).
    pub const UNSUPPORTED: u16 = 1003;
    /// Policy violation (identity mismatch, replaced, revoked).
    pub const POLICY: u16 = 1008;
    /// A message larger than the limits.
    pub const TOO_BIG: u16 = 1009;
    /// Try again later (a re-enrollment whose old agent is still online).
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// One live agent connection, as the rest of the server sees it.
#[derive(Debug)]
pub struct Conn {
    id: u64,
    agent_id: Uuid,
    last_seen_ms: AtomicI64,
    flushed_ms: AtomicI64,
    kick: Notify,
    close: Notify,
    out: mpsc::Sender<Box<Message>>,
}

/// The hub: live connections and the background loops around them.
pub struct Hub {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    conns: Mutex<HashMap<Uuid, Arc<Conn>>>,
    next_id: AtomicU64,
    live_tasks: AtomicUsize,
    all_closed: Notify,
    shutdown: watch::Receiver<bool>,
    agents_generation: AtomicU64,
    public_url: String,
    releases: Arc<ReleaseCatalog>,
    /// Aggregated unauthenticated audit rows, written by the sweeper.
    audit_gate: Arc<AuditGate>,
    /// When the audit retention last ran (unix ms).
    last_prune_ms: AtomicI64,
    /// Agent connections between upgrade and `welcome`.
    pending_handshakes: AtomicUsize,
    /// "Agent X has work" announcements between replicas.
    bus: Arc<dyn WakeBus>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connected", &self.connected())
            .finish_non_exhaustive()
    }
}

enum Flow {
    Continue,
    Close(u16, &'static str),
}

struct LiveGuard(Arc<Hub>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self.0.live_tasks.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.all_closed.notify_waiters();
        }
    }
}

/// A slot of the bounded handshake phase (see
/// [`Hub::try_begin_handshake`]); freed when dropped.
#[derive(Debug)]
pub struct HandshakeSlot(Arc<Hub>);

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.0.pending_handshakes.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Per-connection state that only the connection task touches.
struct Session {
    agent_id: Uuid,
    session_id: Uuid,
    conn: Arc<Conn>,
    codec_in: Codec,
    codec_out: Codec,
    last_heard: Instant,
    sent_cancels: HashSet<Uuid>,
    resyncs: HashMap<Uuid, u8>,
}

/// Most in-band re-sync attempts (a re-sent `run_command` after an
/// incomplete result) per command and connection before the connection is
/// dropped so the agent re-sends everything after reconnecting.
const MAX_RESYNCS: u8 = 3;

/// What a [`Hub`] is built from (the parts it shares with the HTTP API).
#[allow(missing_debug_implementations)]
pub struct HubParts {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The wake-up bus between replicas.
    pub bus: Arc<dyn WakeBus>,
    /// Configuration.
    pub config: Arc<Config>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Becomes `true` at shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// The URL agents reach this server at.
    pub public_url: String,
    /// Aggregated unauthenticated audit rows, written by the sweeper.
    pub audit_gate: Arc<AuditGate>,
    /// The verified release catalog.
    pub releases: Arc<ReleaseCatalog>,
}

impl Hub {
    /// A hub over its parts.
    pub fn new(parts: HubParts) -> Arc<Hub> {
        let HubParts {
            store,
            bus,
            config,
            metrics,
            shutdown,
            public_url,
            audit_gate,
            releases,
        } = parts;
        Arc::new(Hub {
            store,
            bus,
            config,
            metrics,
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            live_tasks: AtomicUsize::new(0),
            all_closed: Notify::new(),
            shutdown,
            agents_generation: AtomicU64::new(0),
            public_url: public_url.trim_end_matches('/').to_owned(),
            releases,
            audit_gate,
            last_prune_ms: AtomicI64::new(i64::MIN),
            pending_handshakes: AtomicUsize::new(0),
        })
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A counter bumped whenever this process changes an agent's
    /// membership or online state (hello, disconnect, enrollment, retire);
    /// the agent-list snapshot is rebuilt when it moved.
    pub fn agents_generation(&self) -> u64 {
        self.agents_generation.load(Ordering::Acquire)
    }

    /// Records an agent membership/online change (see [`Hub::agents_generation`]).
    pub fn agents_changed(&self) {
        self.agents_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Takes a slot of the handshake phase, or `None` when
    /// `max_pending_handshakes` are in progress (the caller answers 503).
    pub fn try_begin_handshake(self: &Arc<Self>) -> Option<HandshakeSlot> {
        let max = self.config.max_pending_handshakes.max(1);
        let mut cur = self.pending_handshakes.load(Ordering::Acquire);
        loop {
            if cur >= max {
                self.metrics.handshakes_refused.inc();
                return None;
            }
            match self.pending_handshakes.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(HandshakeSlot(self.clone())),
                Err(now) => cur = now,
            }
        }
    }

    /// Number of agents connected to this process.
    pub fn connected(&self) -> usize {
        self.conns().len()
    }

    /// Whether `agent_id` is connected to this process.
    pub fn is_connected(&self, agent_id: Uuid) -> bool {
        self.conns().contains_key(&agent_id)
    }

    fn conn(&self, agent_id: Uuid) -> Option<Arc<Conn>> {
        self.conns().get(&agent_id).cloned()
    }

    /// Wakes the agent's connection (if here) to fetch due work from the
    /// store, and announces the work to other replicas.
    pub async fn kick(&self, agent_id: Uuid) {
        if let Some(c) = self.conn(agent_id) {
            c.kick.notify_one();
        } else if let Err(e) = self.bus.announce(agent_id).await {
            tracing::warn!(error = %e, "cannot announce agent work");
        }
    }

    /// Wakes the local connection only.
    pub fn kick_local(&self, agent_id: Uuid) {
        if let Some(c) = self.conn(agent_id) {
            c.kick.notify_one();
        }
    }

    /// Sends a message to a connected agent without waiting; false when
    /// the agent is not here or its queue is full (the message is then
    /// dropped: everything sent this way is also recoverable from the
    /// store on the next kick or reconnect).
    pub fn try_send(&self, agent_id: Uuid, msg: Message) -> bool {
        match self.conn(agent_id) {
            Some(c) => match c.out.try_send(Box::new(msg)) {
                Ok(()) => true,
                Err(_) => {
                    c.kick.notify_one();
                    false
                }
            },
            None => false,
        }
    }

    /// Closes the agent's connection (credential revoked or replaced).
    pub fn disconnect(&self, agent_id: Uuid) {
        if let Some(c) = self.conn(agent_id) {
            c.close.notify_one();
        }
    }

    /// Waits until every connection task has ended, at most `limit`.
    pub async fn wait_closed(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.all_closed.notified();
            if self.live_tasks.load(Ordering::Acquire) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    /// Writes the coalesced `last_seen` values of every connection heard
    /// from since the previous flush, in one statement.
    pub async fn flush_last_seen(&self) {
        let batch: Vec<(Uuid, i64)> = {
            let conns = self.conns();
            conns
                .values()
                .filter_map(|c| {
                    let seen = c.last_seen_ms.load(Ordering::Relaxed);
                    let flushed = c.flushed_ms.swap(seen, Ordering::Relaxed);
                    (seen > flushed).then_some((c.agent_id, seen))
                })
                .collect()
        };
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.store.touch_agents(&batch).await {
            tracing::warn!(error = %e, agents = batch.len(), "cannot write last_seen");
        }
    }

    /// The background loops: `last_seen` flushing, the command/enrollment
    /// sweeper, the work poll and (PostgreSQL) the `LISTEN` of other
    /// replicas' announcements. Runs until shutdown.
    pub async fn run_background(self: Arc<Self>) {
        let mut shutdown = self.shutdown.clone();
        let mut flush = tokio::time::interval(self.config.last_seen_flush);
        let mut sweep = tokio::time::interval(self.config.sweep_interval);
        let poll_every = self.config.sweep_interval.max(Duration::from_secs(2));
        let mut poll = tokio::time::interval(poll_every);
        for t in [&mut flush, &mut sweep, &mut poll] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        let mut notes = self.bus.subscribe();
        let mut sweeps: u64 = 0;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = flush.tick() => self.flush_last_seen().await,
                _ = sweep.tick() => {
                    sweeps += 1;
                    self.sweep(sweeps % 10 == 1).await;
                }
                _ = poll.tick() => {
                    match self.store.agents_with_work().await {
                        Ok(ids) => ids.into_iter().for_each(|id| self.kick_local(id)),
                        Err(e) => tracing::warn!(error = %e, "cannot poll for agent work"),
                    }
                }
                Some(id) = async {
                    match notes.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => self.kick_local(id),
            }
        }
        self.flush_last_seen().await;
        self.write_audit_rows(self.audit_gate.drain(i64::MAX)).await;
    }

    async fn write_audit_rows(&self, rows: Vec<NewAudit>) {
        for row in rows {
            if let Err(e) = self.store.append_audit(&row).await {
                tracing::warn!(error = %e, action = %row.action, "cannot write audit record");
            }
        }
    }

    /// Deletes audit rows older than the retention, at most once an hour.
    async fn prune_audit(&self, now: i64) {
        const EVERY_MS: i64 = 3_600_000;
        let Some(keep) = self.config.audit_retention else {
            return;
        };
        let last = self.last_prune_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < EVERY_MS {
            return;
        }
        self.last_prune_ms.store(now, Ordering::Relaxed);
        let before = now.saturating_sub(ms(keep));
        match self.store.prune_audit(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, before, "audit retention"),
            Err(e) => tracing::warn!(error = %e, "audit retention failed"),
        }
    }

    async fn sweep(&self, enrollments: bool) {
        let now = now_ms();
        match self
            .store
            .expire_commands(now, ms(self.config.cancel_grace))
            .await
        {
            Ok(expired) => {
                for e in expired {
                    tracing::info!(command = %e.id, agent = %e.agent_id, status = %e.status, "command made final by the server");
                    // Tell the agent to stop it, if it is here.
                    self.try_send(
                        e.agent_id,
                        Message::CancelCommand(CommandRef { command_id: e.id }),
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "command sweep failed"),
        }
        self.write_audit_rows(self.audit_gate.drain(now)).await;
        self.prune_audit(now).await;
        if enrollments {
            match self.store.sweep_enrollments(now).await {
                Ok(0) => {}
                Ok(n) => {
                    self.agents_changed();
                    tracing::info!(removed = n, "swept enrollment tokens");
                }
                Err(e) => tracing::warn!(error = %e, "enrollment sweep failed"),
            }
        }
    }

    /// Runs one authenticated agent connection to its end.
    pub async fn run_connection(
        self: Arc<Self>,
        agent_id: Uuid,
        addr: std::net::IpAddr,
        mut ws: WebSocket,
        slot: HandshakeSlot,
    ) {
        self.live_tasks.fetch_add(1, Ordering::AcqRel);
        let _live = LiveGuard(self.clone());
        self.metrics.agent_connections.inc();
        let (out_tx, mut out_rx) = mpsc::channel(self.config.outbound_queue.max(1));
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            agent_id,
            last_seen_ms: AtomicI64::new(now_ms()),
            flushed_ms: AtomicI64::new(now_ms()),
            kick: Notify::new(),
            close: Notify::new(),
            out: out_tx,
        });
        let out_limit = self.config.body_limit.max(Limits::default().max_control) + 64 * 1024;
        let mut s = Session {
            agent_id,
            session_id: Uuid::new_v4(),
            conn: conn.clone(),
            codec_in: Codec::new(Limits::default()),
            codec_out: Codec::new(Limits {
                max_control: out_limit,
                ..Limits::default()
            }),
            last_heard: Instant::now(),
            sent_cancels: HashSet::new(),
            resyncs: HashMap::new(),
        };

        // 1. hello ... welcome. Boxed: its futures and the hello's strings
        // are needed once, and the task keeps the size of its largest
        // state for the connection's whole life (memory per idle agent).
        let Some(mut flow) = Box::pin(self.handshake(&mut s, &mut ws, addr, slot)).await else {
            return;
        };

        // 2. the connection loop.
        let interval = Duration::from_secs(u64::from(self.heartbeat_secs()));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = self.shutdown.clone();
        while let Flow::Continue = flow {
            flow = tokio::select! {
                _ = shutdown.changed() => Flow::Close(close_code::GOING_AWAY, "server shutting down"),
                _ = conn.close.notified() => Flow::Close(close_code::POLICY, "connection replaced or credential revoked"),
                msg = ws.recv() => match msg {
                    Some(Ok(m)) => {
                        s.last_heard = Instant::now();
                        self.on_ws_message(&mut s, &mut ws, m).await
                    }
                    Some(Err(e)) if too_big(&e) => {
                        tracing::info!(agent = %agent_id, "agent message over the size limit, closing");
                        Flow::Close(close_code::TOO_BIG, "message too big")
                    }
                    Some(Err(e)) => {
                        tracing::debug!(agent = %agent_id, error = %e, "agent socket error");
                        Flow::Close(close_code::NORMAL, "")
                    }
                    None => Flow::Close(close_code::NORMAL, ""),
                },
                Some(m) = out_rx.recv() => {
                    if let Message::CancelCommand(c) = &*m {
                        s.sent_cancels.insert(c.command_id);
                    }
                    if self.send(&mut s, &mut ws, &m).await { Flow::Continue } else { Flow::Close(close_code::NORMAL, "") }
                }
                _ = conn.kick.notified() => Box::pin(self.deliver(&mut s, &mut ws, false)).await,
                _ = tick.tick() => {
                    if s.last_heard.elapsed() >= interval * 3 {
                        tracing::info!(agent = %agent_id, "agent silent for 3 heartbeat intervals, dropping");
                        Flow::Close(close_code::POLICY, "silent for 3 heartbeat intervals")
                    } else {
                        // Half-open detection: a ping the peer must answer.
                        match tokio::time::timeout(self.config.send_timeout, ws.send(WsMessage::Ping(bytes::Bytes::new()))).await {
                            Ok(Ok(())) => Flow::Continue,
                            _ => Flow::Close(close_code::NORMAL, ""),
                        }
                    }
                }
            };
        }
        if let Flow::Close(code, reason) = flow {
            close(&mut ws, code, reason).await;
        }

        // 3. cleanup.
        {
            let mut conns = self.conns();
            if conns.get(&agent_id).is_some_and(|c| c.id == conn.id) {
                conns.remove(&agent_id);
            }
        }
        self.metrics.set_connected(self.connected());
        if let Err(e) = self
            .store
            .agent_disconnected(agent_id, s.session_id, now_ms())
            .await
        {
            tracing::warn!(error = %e, agent = %agent_id, "cannot record disconnect");
        }
        self.agents_changed();
    }

    /// From `hello` to `welcome`, the first delivery and an update offer;
    /// `None` when the connection was refused (and closed) before it was
    /// registered.
    async fn handshake(
        &self,
        s: &mut Session,
        ws: &mut WebSocket,
        addr: std::net::IpAddr,
        slot: HandshakeSlot,
    ) -> Option<Flow> {
        let agent_id = s.agent_id;
        let hello =
            match tokio::time::timeout(self.config.hello_timeout, self.read_hello(s, ws)).await {
                Ok(Ok(h)) => h,
                Ok(Err((code, reason))) => {
                    close(ws, code, reason).await;
                    return None;
                }
                Err(_) => {
                    close(ws, close_code::POLICY, "no hello within the time limit").await;
                    return None;
                }
            };
        if hello.agent_id != agent_id {
            self.send_error(
                s,
                ws,
                "unauthorized",
                "hello agent_id differs from the authenticated agent",
            )
            .await;
            close(ws, close_code::POLICY, "agent id mismatch").await;
            return None;
        }
        let Some(version) = negotiate(VersionRange::current(), hello.protocol) else {
            let msg = format!(
                "server speaks protocol {}..={}, agent {}..={}",
                VersionRange::current().min,
                VersionRange::current().max,
                hello.protocol.min,
                hello.protocol.max
            );
            self.send_error(s, ws, "unsupported_protocol", &msg).await;
            close(ws, close_code::PROTOCOL, "unsupported protocol version").await;
            return None;
        };
        let record = AgentHello {
            agent_id,
            session_id: s.session_id,
            hostname: clip(&hello.hostname, 255),
            os: clip(&hello.os, 64),
            arch: clip(&hello.arch, 64),
            agent_version: clip(&hello.agent_version, 64),
            channel: if hello.channel == "beta" {
                "beta"
            } else {
                "stable"
            }
            .to_owned(),
            machine_uid: clip(&hello.machine_uid, 255),
            address: addr.to_string(),
            now: now_ms(),
            live_after: now_ms() - self.config.online_window_ms(),
        };
        let replaced = match self.store.agent_connected(&record).await {
            Ok(HelloOutcome::Accepted { replaced }) => replaced,
            Ok(HelloOutcome::MachineMismatch { recorded }) => {
                tracing::warn!(agent = %agent_id, "hello refused: machine identity differs from the credential's");
                self.audit_hello_refused(
                    &record,
                    "machine_mismatch",
                    serde_json::json!({
                        "recorded_machine_uid": recorded,
                    }),
                )
                .await;
                self.send_error(
                    s,
                    ws,
                    "machine_mismatch",
                    "this credential belongs to another machine; re-enroll this machine",
                )
                .await;
                close(ws, close_code::POLICY, "machine identity mismatch").await;
                return None;
            }
            Ok(HelloOutcome::MachineInUse { by }) => {
                tracing::warn!(agent = %agent_id, online = %by, "hello refused: its machine is online as another agent");
                self.audit_hello_refused(
                    &record,
                    "machine_in_use",
                    serde_json::json!({
                        "online_agent": by.to_string(),
                    }),
                )
                .await;
                self.send_error(
                    s,
                    ws,
                    "machine_in_use",
                    "another agent of this machine is online; retry once it has stopped",
                )
                .await;
                close(
                    ws,
                    close_code::TRY_AGAIN_LATER,
                    "machine online as another agent",
                )
                .await;
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, agent = %agent_id, "cannot record hello");
                close(ws, 1011, "server error").await;
                return None;
            }
        };
        self.agents_changed();
        for old in replaced {
            tracing::info!(old = %old, new = %agent_id, "agent replaced by the first hello of a re-enrollment of its machine");
            self.disconnect(old);
            let audit = NewAudit {
                at: record.now,
                actor: format!("agent:{agent_id}"),
                action: "agent.replace".into(),
                target: Some(old.to_string()),
                address: Some(record.address.clone()),
                detail: serde_json::json!({
                    "replaced": old.to_string(),
                    "by": agent_id.to_string(),
                    "machine_uid": record.machine_uid,
                    "hostname": record.hostname,
                }),
            };
            if let Err(e) = self.store.append_audit(&audit).await {
                tracing::warn!(error = %e, "cannot write audit record");
            }
        }
        // Register; a previous connection of the same agent is closed.
        if let Some(prev) = self.conns().insert(agent_id, s.conn.clone()) {
            prev.close.notify_one();
        }
        self.metrics.set_connected(self.connected());
        let welcome = Message::Welcome(Welcome {
            protocol: version,
            agent_id,
            heartbeat_interval_secs: self.heartbeat_secs(),
            settings: AgentSettings {
                max_output_bytes: self.config.max_output_bytes,
                max_concurrent_commands: self.config.max_concurrent_commands,
            },
        });
        let welcomed = self.send(s, ws, &welcome).await;
        drop(slot);
        let mut flow = match welcomed {
            true => self.deliver(s, ws, true).await,
            false => Flow::Close(close_code::NORMAL, "send failed"),
        };
        if let Flow::Continue = flow
            && let Some(offer) = self.update_offer(&hello).await
            && !self.send(s, ws, &offer).await
        {
            flow = Flow::Close(close_code::NORMAL, "");
        }
        Some(flow)
    }

    /// An `update_available` for an agent that runs an older build than
    /// the newest one its channel may have (SPEC §5), if any.
    async fn update_offer(&self, hello: &rmm_core::protocol::Hello) -> Option<Message> {
        use rmm_core::channel::{Arch, Channel, Os, Version};
        let index = self.releases.index().await;
        let os: Os = hello.os.parse().ok()?;
        let arch = Arch::new(&hello.arch).ok()?;
        let channel = if hello.channel == "beta" {
            Channel::Beta
        } else {
            Channel::Stable
        };
        let current = Version::parse(&hello.agent_version).ok()?;
        let release = index.latest_for(os, &arch, channel, Some(&current))?;
        Some(Message::UpdateAvailable(
            rmm_core::protocol::UpdateAvailable {
                version: release.version().to_string(),
                url: format!(
                    "{}/api/v1/downloads/{}",
                    self.public_url,
                    release.file_name()
                ),
                sha256: release.sha256().to_string(),
                channel: release.channel().as_str().to_owned(),
            },
        ))
    }

    fn heartbeat_secs(&self) -> u32 {
        u32::try_from(self.config.heartbeat_interval.as_secs().max(1)).unwrap_or(30)
    }

    async fn read_hello(
        &self,
        s: &mut Session,
        ws: &mut WebSocket,
    ) -> Result<rmm_core::protocol::Hello, (u16, &'static str)> {
        loop {
            let m = match ws.recv().await {
                Some(Ok(m)) => m,
                Some(Err(e)) if too_big(&e) => {
                    return Err((close_code::TOO_BIG, "message too big"));
                }
                _ => return Err((close_code::NORMAL, "closed before hello")),
            };
            match m {
                WsMessage::Binary(b) => match s.codec_in.decode_message(&b) {
                    Ok(Frame::Control(Message::Hello(h))) => return Ok(h),
                    Ok(_) => {
                        self.send_error(s, ws, "bad_message", "the first message must be hello")
                            .await;
                        return Err((close_code::POLICY, "expected hello"));
                    }
                    Err(DecodeError::Json(e)) => {
                        self.send_error(s, ws, "bad_message", &format!("invalid hello: {e}"))
                            .await;
                        return Err((close_code::POLICY, "invalid hello"));
                    }
                    Err(e) => return Err(frame_error_close(&e)),
                },
                WsMessage::Text(_) => {
                    return Err((close_code::UNSUPPORTED, "text messages are not allowed"));
                }
                WsMessage::Close(_) => return Err((close_code::NORMAL, "closed before hello")),
                WsMessage::Ping(_) | WsMessage::Pong(_) => {}
            }
        }
    }

    async fn on_ws_message(&self, s: &mut Session, ws: &mut WebSocket, m: WsMessage) -> Flow {
        match m {
            WsMessage::Binary(b) => match s.codec_in.decode_message(&b) {
                // The bulk of agent traffic, answered in place.
                Ok(Frame::Control(Message::Heartbeat(_))) => {
                    self.on_heartbeat(s);
                    Flow::Continue
                }
                // Boxed, like the handshake: the store calls and replies
                // would otherwise size every idle connection's task.
                Ok(Frame::Control(msg)) => Box::pin(self.on_message(s, ws, msg)).await,
                // Tunnel data is not served by this hub yet; ignored.
                Ok(Frame::Data { .. }) => Flow::Continue,
                Err(DecodeError::Json(e)) => {
                    self.metrics.bad_messages.inc();
                    let text = format!("invalid control message: {e}");
                    Box::pin(self.send_error(s, ws, "bad_message", &text)).await;
                    Flow::Continue
                }
                Err(e) => {
                    tracing::info!(agent = %s.agent_id, error = %e, "frame error, closing");
                    let (code, reason) = frame_error_close(&e);
                    Flow::Close(code, reason)
                }
            },
            WsMessage::Text(_) => {
                Flow::Close(close_code::UNSUPPORTED, "text messages are not allowed")
            }
            WsMessage::Close(_) => Flow::Close(close_code::NORMAL, ""),
            WsMessage::Ping(_) | WsMessage::Pong(_) => Flow::Continue,
        }
    }

    fn on_heartbeat(&self, s: &Session) {
        s.conn.last_seen_ms.store(now_ms(), Ordering::Relaxed);
        self.metrics.heartbeats.inc();
    }

    async fn on_message(&self, s: &mut Session, ws: &mut WebSocket, msg: Message) -> Flow {
        let agent = s.agent_id;
        let result = match msg {
            Message::Heartbeat(_) => {
                self.on_heartbeat(s);
                return Flow::Continue;
            }
            Message::CommandStarted(c) => {
                let at = i64::try_from(c.started_at_ms)
                    .unwrap_or(i64::MAX)
                    .min(now_ms());
                self.store
                    .command_started(agent, c.command_id, at)
                    .await
                    .map(|_| ())
            }
            Message::CommandOutput(o) => self
                .store
                .append_output(
                    agent,
                    o.command_id,
                    o.stream,
                    o.offset,
                    &o.data,
                    self.config.max_output_bytes,
                )
                .await
                .map(|_| ()),
            Message::CommandResult(r) => {
                return match self.store.finish_command(agent, &r, now_ms()).await {
                    Ok(FinishOutcome::Stored) => {
                        self.metrics.results.inc();
                        s.resyncs.remove(&r.command_id);
                        self.ack(s, ws, r.command_id).await
                    }
                    Ok(FinishOutcome::AlreadyFinal | FinishOutcome::Unknown) => {
                        self.ack(s, ws, r.command_id).await
                    }
                    Ok(FinishOutcome::Incomplete {
                        stdout_len,
                        stderr_len,
                    }) => {
                        tracing::info!(
                            agent = %agent, command = %r.command_id, stdout_len, stderr_len,
                            want_stdout = r.stdout_bytes, want_stderr = r.stderr_bytes,
                            "result before complete output; asking for a re-send"
                        );
                        self.resync(s, ws, r.command_id).await
                    }
                    Err(e) => {
                        // Not acknowledged: the agent re-sends after reconnecting.
                        tracing::error!(error = %e, agent = %agent, "cannot store result");
                        Flow::Close(1011, "server error")
                    }
                };
            }
            Message::Hello(_) => {
                self.send_error(s, ws, "bad_message", "hello was already received")
                    .await;
                return Flow::Continue;
            }
            Message::Inventory(inv) => {
                if !valid_plugin_name(&inv.plugin) {
                    self.send_error(
                        s,
                        ws,
                        "bad_message",
                        "inventory plugin name must be 1-128 characters of [A-Za-z0-9._-]",
                    )
                    .await;
                    return Flow::Continue;
                }
                let item = InventoryItem {
                    agent_id: agent,
                    plugin: inv.plugin,
                    result: inv.result,
                    error: inv.error.map(|e| clip(&e, 4096)),
                    collected_at: i64::try_from(inv.collected_at_ms).unwrap_or(i64::MAX),
                    received_at: now_ms(),
                };
                self.store.put_inventory(&item).await.map(|_| ())
            }
            Message::Unknown | Message::Error(_) => return Flow::Continue,
            other => {
                let text = format!("{} is not a message an agent sends", other.kind());
                self.send_error(s, ws, "bad_message", &text).await;
                return Flow::Continue;
            }
        };
        match result {
            Ok(()) => Flow::Continue,
            Err(e) => {
                tracing::error!(error = %e, agent = %agent, "store failure on agent message");
                Flow::Close(1011, "server error")
            }
        }
    }

    async fn ack(&self, s: &mut Session, ws: &mut WebSocket, command_id: Uuid) -> Flow {
        s.sent_cancels.remove(&command_id);
        if self
            .send(s, ws, &Message::CommandAck(CommandRef { command_id }))
            .await
        {
            Flow::Continue
        } else {
            Flow::Close(close_code::NORMAL, "")
        }
    }

    async fn resync(&self, s: &mut Session, ws: &mut WebSocket, command_id: Uuid) -> Flow {
        let n = s.resyncs.entry(command_id).or_insert(0);
        *n += 1;
        if *n > MAX_RESYNCS {
            return Flow::Close(
                close_code::POLICY,
                "output never completed; reconnect and re-send",
            );
        }
        match self.store.get_command(command_id).await {
            Ok(Some(c)) if c.agent_id == s.agent_id => {
                let msg = Message::RunCommand(RunCommand {
                    command_id: c.id,
                    command_type: c.command_type,
                    command: c.command_text,
                    context: c.context,
                    timeout_secs: c.timeout_secs,
                });
                if self.send(s, ws, &msg).await {
                    Flow::Continue
                } else {
                    Flow::Close(close_code::NORMAL, "")
                }
            }
            Ok(_) => Flow::Continue,
            Err(e) => {
                tracing::error!(error = %e, "cannot load command for re-sync");
                Flow::Close(1011, "server error")
            }
        }
    }

    /// Sends due work: queued commands (and after a (re)connect every
    /// non-final one), then pending cancellations.
    async fn deliver(&self, s: &mut Session, ws: &mut WebSocket, include_inflight: bool) -> Flow {
        let grace = ms(self.config.command_grace);
        let cmds = match self
            .store
            .deliverable_commands(s.agent_id, now_ms(), grace, include_inflight)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot fetch deliverable commands");
                return Flow::Continue;
            }
        };
        let full_batch = cmds.len() >= 64;
        for c in cmds {
            let msg = Message::RunCommand(RunCommand {
                command_id: c.id,
                command_type: c.command_type,
                command: c.command_text,
                context: c.context,
                timeout_secs: c.timeout_secs,
            });
            if !self.send(s, ws, &msg).await {
                return Flow::Close(close_code::NORMAL, "");
            }
            self.metrics.deliveries.inc();
        }
        if full_batch {
            s.conn.kick.notify_one();
        }
        let cancels = match self.store.cancel_requests(s.agent_id).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot fetch cancel requests");
                return Flow::Continue;
            }
        };
        for id in cancels {
            if include_inflight || !s.sent_cancels.contains(&id) {
                s.sent_cancels.insert(id);
                if !self
                    .send(
                        s,
                        ws,
                        &Message::CancelCommand(CommandRef { command_id: id }),
                    )
                    .await
                {
                    return Flow::Close(close_code::NORMAL, "");
                }
            }
        }
        Flow::Continue
    }

    /// Audits a refused `hello` (authenticated agent, claimed identity).
    async fn audit_hello_refused(&self, h: &AgentHello, why: &str, extra: serde_json::Value) {
        let mut detail = serde_json::json!({
            "reason": why,
            "claimed_machine_uid": h.machine_uid,
            "hostname": h.hostname,
        });
        if let (Some(d), serde_json::Value::Object(extra)) = (detail.as_object_mut(), extra) {
            d.extend(extra);
        }
        let audit = NewAudit {
            at: h.now,
            actor: format!("agent:{}", h.agent_id),
            action: "agent.hello_refused".into(),
            target: Some(h.agent_id.to_string()),
            address: Some(h.address.clone()),
            detail,
        };
        if let Err(e) = self.store.append_audit(&audit).await {
            tracing::warn!(error = %e, "cannot write audit record");
        }
    }

    async fn send_error(&self, s: &mut Session, ws: &mut WebSocket, code: &str, message: &str) {
        let msg = Message::Error(ProtocolError {
            code: code.to_owned(),
            message: message.to_owned(),
        });
        self.send(s, ws, &msg).await;
    }

    /// Encodes and sends one control message; false when the socket failed
    /// or did not accept the message within the send timeout.
    async fn send(&self, s: &mut Session, ws: &mut WebSocket, msg: &Message) -> bool {
        let mut buf = bytes::BytesMut::new();
        let bytes = match s.codec_out.encode_control(msg, &mut buf) {
            Ok(()) => buf.freeze(),
            Err(e) => {
                tracing::error!(error = %e, kind = msg.kind(), "cannot encode message");
                return true;
            }
        };
        matches!(
            tokio::time::timeout(self.config.send_timeout, ws.send(WsMessage::Binary(bytes))).await,
            Ok(Ok(()))
        )
    }
}

async fn close(ws: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        ws.send(WsMessage::Close(Some(frame))),
    )
    .await;
}

fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn valid_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether a socket error is a message over the WebSocket size limit.
fn too_big(e: &axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(WsError::Capacity(_)) = err.downcast_ref::<WsError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// The close code and reason for a frame the codec refused.
fn frame_error_close(e: &DecodeError) -> (u16, &'static str) {
    match e {
        DecodeError::ControlTooLarge { .. } | DecodeError::DataTooLarge { .. } => {
            (close_code::TOO_BIG, "message too big")
        }
        _ => (close_code::PROTOCOL, "invalid frame"),
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
