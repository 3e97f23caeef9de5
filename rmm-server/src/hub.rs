//! The agent WebSocket hub (PROTOCOL.md §1, §4, §5).
//!
//! One task per connection drives the socket over the conversation's
//! sans-IO machine ([`rmm_core::delivery::ServerDelivery`], which holds the
//! rules: the handshake, what is delivered and acknowledged, re-sync,
//! cancels, liveness). The task is a thin driver: it feeds the machine what
//! the socket brings, fulfils its requests from the [`Store`], and sends
//! what it asks to. Nothing authoritative lives here: commands, results and
//! agent state are in the store; the hub keeps only the map of live
//! connections and, per connection, the last time the agent was heard
//! (written to the store in coalesced batches).
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
//! Time comes from the injected [`ServerClock`] ([`Config::clock`]).
//!
//! Memory per idle agent is mostly that task: a task is allocated at the
//! size of its largest state, so the handling of anything but a heartbeat
//! (the handshake included) runs in boxed futures, and the idle task is
//! about the size of its `select!` loop.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use rmm_core::delivery::{self, Close, Fetch, ServerConfig, ServerDelivery, ServerEvent, Transmit};
use rmm_core::protocol::{
    AgentSettings, Codec, CommandRef, DecodeError, Frame, Hello, Limits, Message, RunCommand,
};
use tokio::sync::{Notify, mpsc, watch};
use uuid::Uuid;

use crate::audit::AuditGate;
use crate::clock::{ServerClock, Sleep, duration_ms};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::service::releases::ReleaseCatalog;
use crate::store::{
    AgentHello, FinishOutcome, HelloOutcome, InventoryItem, NewAudit, PendingCommand, Store,
    WakeBus,
};

/// WebSocket close codes used by the hub.
pub use rmm_core::delivery::close_code;

/// One live agent connection, as the rest of the server sees it.
#[derive(Debug)]
pub struct Conn {
    id: u64,
    agent_id: Uuid,
    last_seen_ms: AtomicI64,
    flushed_ms: AtomicI64,
    kick: Notify,
    close: Notify,
    /// The connection's outbound queue. It carries frames: control
    /// messages (passed through the delivery machine) and, once a tunnel
    /// is hosted on the connection, its data frames.
    out: mpsc::Sender<Box<Frame>>,
}

/// The hub: live connections and the background loops around them.
pub struct Hub {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    clock: Arc<dyn ServerClock>,
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

struct LiveGuard(Arc<Hub>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self.0.live_tasks.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.all_closed.notify_waiters();
        }
    }
}

/// A slot of the bounded handshake phase (see
/// [`Hub::try_begin_handshake`]); freed when dropped. The agent's `hello`
/// deadline counts from the moment the slot was taken.
#[derive(Debug)]
pub struct HandshakeSlot {
    hub: Arc<Hub>,
    since: Instant,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.hub.pending_handshakes.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Per-connection state that only the connection task touches.
struct Session {
    agent_id: Uuid,
    session_id: Uuid,
    addr: std::net::IpAddr,
    conn: Arc<Conn>,
    codec_in: Codec,
    codec_out: Codec,
    /// The conversation: its state and rules.
    machine: ServerDelivery,
    /// The handshake bound, held until the `welcome` is sent.
    slot: Option<HandshakeSlot>,
}

/// How long a close frame may take to send.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

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
            clock: config.clock.clone(),
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
                Ok(_) => {
                    return Some(HandshakeSlot {
                        hub: self.clone(),
                        since: self.clock.now(),
                    });
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Connection tasks running on this process (handshakes included);
    /// a task ends after its disconnect is recorded.
    pub fn connection_tasks(&self) -> usize {
        self.live_tasks.load(Ordering::Acquire)
    }

    /// The hub clock's wall time, unix milliseconds.
    fn now_ms(&self) -> i64 {
        crate::clock::unix_ms(&*self.clock)
    }

    /// Completes at `deadline` of the hub's clock; never without one.
    fn sleep_until(&self, deadline: Option<Instant>) -> Sleep {
        match deadline {
            Some(at) => self.clock.sleep_until(at),
            None => Box::pin(std::future::pending()),
        }
    }

    /// `fut`'s output, or `None` when it takes longer than `limit` of the
    /// hub's clock.
    async fn within<F: Future>(&self, limit: Duration, fut: F) -> Option<F::Output> {
        let deadline = self.sleep_until(self.clock.now().checked_add(limit));
        tokio::select! {
            biased;
            out = fut => Some(out),
            () = deadline => None,
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
            Some(c) => match c.out.try_send(Box::new(Frame::Control(msg))) {
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
    /// replicas' announcements, timed by the hub's clock. Runs until
    /// shutdown.
    pub async fn run_background(self: Arc<Self>) {
        let mut shutdown = self.shutdown.clone();
        let now = self.clock.now();
        let mut flush = Ticker::new(now, self.config.last_seen_flush);
        let mut sweep = Ticker::new(now, self.config.sweep_interval);
        let poll_every = self.config.sweep_interval.max(Duration::from_secs(2));
        let mut poll = Ticker::new(now, poll_every);
        let mut notes = self.bus.subscribe();
        let mut sweeps: u64 = 0;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                () = flush.tick(&*self.clock) => self.flush_last_seen().await,
                () = sweep.tick(&*self.clock) => {
                    sweeps += 1;
                    self.sweep(sweeps % 10 == 1).await;
                }
                () = poll.tick(&*self.clock) => {
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
        let before = now.saturating_sub(duration_ms(keep));
        match self.store.prune_audit(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, before, "audit retention"),
            Err(e) => tracing::warn!(error = %e, "audit retention failed"),
        }
    }

    async fn sweep(&self, enrollments: bool) {
        let now = self.now_ms();
        match self
            .store
            .expire_commands(now, duration_ms(self.config.cancel_grace))
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

    /// Runs one authenticated agent connection to its end: the driver loop
    /// of its [`ServerDelivery`].
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
        let now_ms = self.now_ms();
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            agent_id,
            last_seen_ms: AtomicI64::new(now_ms),
            flushed_ms: AtomicI64::new(now_ms),
            kick: Notify::new(),
            close: Notify::new(),
            out: out_tx,
        });
        let mut config = ServerConfig::new(agent_id);
        config.hello_timeout = self.config.hello_timeout;
        config.heartbeat_secs = delivery::heartbeat_secs(self.config.heartbeat_interval);
        let mut s = Session {
            agent_id,
            session_id: Uuid::new_v4(),
            addr,
            conn: conn.clone(),
            codec_in: Codec::new(Limits::default()),
            codec_out: Codec::new(Limits {
                max_control: delivery::server_control_limit(self.config.body_limit),
                ..Limits::default()
            }),
            machine: ServerDelivery::new(config, slot.since),
            slot: Some(slot),
        };
        let mut shutdown = self.shutdown.clone();
        let close = loop {
            if !self.perform(&mut s, &mut ws).await {
                s.machine.close(Close::new(close_code::NORMAL, ""));
            }
            if let Some(close) = s.machine.close_reason() {
                break close;
            }
            // Until the welcome only the socket and the hello deadline
            // matter (the connection is not registered yet).
            let welcomed = s.machine.is_welcomed();
            // The one timer. A tunnel hosted on this connection joins here:
            // the earlier of its `poll_timeout()` and the machine's, and
            // both get `handle_timeout` when it fires.
            let timer = self.sleep_until(s.machine.poll_timeout());
            let fed = tokio::select! {
                _ = shutdown.changed(), if welcomed => {
                    s.machine.close(Close::new(close_code::GOING_AWAY, "server shutting down"));
                    Ok(())
                }
                _ = conn.close.notified(), if welcomed => {
                    s.machine.close(Close::new(close_code::POLICY, "connection replaced or credential revoked"));
                    Ok(())
                }
                msg = ws.recv() => self.receive(&mut s, msg),
                Some(frame) = out_rx.recv(), if welcomed => self.outbound(&mut s, &mut ws, *frame).await,
                _ = conn.kick.notified(), if welcomed => s.machine.wake(),
                () = timer => {
                    s.machine.handle_timeout(self.clock.now());
                    Ok(())
                }
            };
            if let Err(e) = fed {
                machine_error(&mut s, &e);
            }
        };
        match close.code {
            close_code::NORMAL | close_code::GOING_AWAY => {
                tracing::debug!(agent = %agent_id, code = close.code, reason = close.reason, "closing");
            }
            _ => {
                tracing::info!(agent = %agent_id, code = close.code, reason = close.reason, "closing");
            }
        }
        let frame = CloseFrame {
            code: close.code,
            reason: close.reason.into(),
        };
        self.within(CLOSE_TIMEOUT, ws.send(WsMessage::Close(Some(frame))))
            .await;
        if !s.machine.was_welcomed() {
            // Refused (or gone) before it was registered.
            return;
        }

        // Cleanup.
        {
            let mut conns = self.conns();
            if conns.get(&agent_id).is_some_and(|c| c.id == conn.id) {
                conns.remove(&agent_id);
            }
        }
        self.metrics.set_connected(self.connected());
        if let Err(e) = self
            .store
            .agent_disconnected(agent_id, s.session_id, self.now_ms())
            .await
        {
            tracing::warn!(error = %e, agent = %agent_id, "cannot record disconnect");
        }
        self.agents_changed();
    }

    /// Does what the machine asks until it asks for nothing more: sends
    /// what it queued, in order, and fulfils its requests. False when the
    /// socket failed.
    async fn perform(&self, s: &mut Session, ws: &mut WebSocket) -> bool {
        loop {
            while let Some(t) = s.machine.poll_transmit() {
                let sent = match t {
                    Transmit::Control(msg) => self.send_frame(s, ws, &Frame::Control(msg)).await,
                    // Half-open detection: a ping the peer must answer.
                    Transmit::Ping => self
                        .within(
                            self.config.send_timeout,
                            ws.send(WsMessage::Ping(bytes::Bytes::new())),
                        )
                        .await
                        .is_some_and(|r| r.is_ok()),
                };
                if !sent {
                    return false;
                }
            }
            if s.machine.is_welcomed() {
                s.slot = None;
            }
            let Some(event) = s.machine.poll_event() else {
                return true;
            };
            let done = match event {
                // The bulk of agent traffic, answered in place.
                ServerEvent::Heartbeat(_) => {
                    self.on_heartbeat(s);
                    Ok(())
                }
                // Boxed: the store calls would otherwise size every idle
                // connection's task.
                event => Box::pin(self.on_event(s, event)).await,
            };
            if let Err(e) = done {
                machine_error(s, &e);
            }
        }
    }

    /// Feeds what the socket brought to the machine.
    fn receive(
        &self,
        s: &mut Session,
        msg: Option<Result<WsMessage, axum::Error>>,
    ) -> Result<(), delivery::Error> {
        let now = self.clock.now();
        let machine = &mut s.machine;
        match msg {
            Some(Ok(WsMessage::Binary(b))) => match s.codec_in.decode_message(&b) {
                Ok(frame) => machine.handle_frame(now, frame),
                Err(e) => {
                    if !matches!(e, DecodeError::Json(_)) {
                        tracing::info!(agent = %s.agent_id, error = %e, "frame error, closing");
                    }
                    machine.handle_undecodable(now, &e)
                }
            },
            Some(Ok(WsMessage::Text(_))) => machine.handle_text(now),
            Some(Ok(WsMessage::Close(_))) => machine.handle_peer_closed(now),
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => machine.handle_keepalive(now),
            Some(Err(e)) if too_big(&e) => {
                tracing::info!(agent = %s.agent_id, "agent message over the size limit, closing");
                machine.handle_oversized(now)
            }
            Some(Err(e)) => {
                tracing::debug!(agent = %s.agent_id, error = %e, "agent socket error");
                machine.handle_peer_closed(now)
            }
            None => machine.handle_peer_closed(now),
        }
    }

    /// A frame from the outbound queue: control messages go through the
    /// machine (it records the cancels it sends); data frames (a hosted
    /// tunnel's) go out as they are.
    async fn outbound(
        &self,
        s: &mut Session,
        ws: &mut WebSocket,
        frame: Frame,
    ) -> Result<(), delivery::Error> {
        match frame {
            Frame::Control(msg) => s.machine.queue(msg),
            data => {
                if !self.send_frame(s, ws, &data).await {
                    s.machine.close(Close::new(close_code::NORMAL, ""));
                }
                Ok(())
            }
        }
    }

    fn on_heartbeat(&self, s: &Session) {
        s.conn.last_seen_ms.store(self.now_ms(), Ordering::Relaxed);
        self.metrics.heartbeats.inc();
    }

    /// Fulfils a request of the machine (everything but heartbeats).
    async fn on_event(&self, s: &mut Session, event: ServerEvent) -> Result<(), delivery::Error> {
        let agent = s.agent_id;
        let stored = match event {
            ServerEvent::Hello { hello, .. } => return self.decide_hello(s, hello).await,
            ServerEvent::Fetch(fetch) => return self.fetch(s, fetch).await,
            ServerEvent::Result(r) => return self.on_result(s, r).await,
            ServerEvent::Resend { command_id } => return self.resend(s, command_id).await,
            ServerEvent::Heartbeat(_) => {
                self.on_heartbeat(s);
                return Ok(());
            }
            ServerEvent::BadMessage => {
                self.metrics.bad_messages.inc();
                return Ok(());
            }
            ServerEvent::Started(c) => {
                let at = i64::try_from(c.started_at_ms)
                    .unwrap_or(i64::MAX)
                    .min(self.now_ms());
                self.store
                    .command_started(agent, c.command_id, at)
                    .await
                    .map(drop)
            }
            ServerEvent::Output(o) => self
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
                .map(drop),
            ServerEvent::Inventory(inv) => {
                let item = InventoryItem {
                    agent_id: agent,
                    plugin: inv.plugin,
                    result: inv.result,
                    error: inv.error.map(|e| clip(&e, 4096)),
                    collected_at: i64::try_from(inv.collected_at_ms).unwrap_or(i64::MAX),
                    received_at: self.now_ms(),
                };
                self.store.put_inventory(&item).await.map(drop)
            }
        };
        if let Err(e) = stored {
            tracing::error!(error = %e, agent = %agent, "store failure on agent message");
            s.machine.close(server_error());
        }
        Ok(())
    }

    /// Decides a `hello` with the store (machine identity, re-enrollment),
    /// then registers and welcomes the agent, or refuses it.
    async fn decide_hello(&self, s: &mut Session, hello: Hello) -> Result<(), delivery::Error> {
        let agent_id = s.agent_id;
        let now = self.now_ms();
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
            address: s.addr.to_string(),
            now,
            live_after: now - self.config.online_window_ms(),
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
                return s.machine.refuse(
                    "machine_mismatch",
                    "this credential belongs to another machine; re-enroll this machine",
                    Close::new(close_code::POLICY, "machine identity mismatch"),
                );
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
                return s.machine.refuse(
                    "machine_in_use",
                    "another agent of this machine is online; retry once it has stopped",
                    Close::new(
                        close_code::TRY_AGAIN_LATER,
                        "machine online as another agent",
                    ),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, agent = %agent_id, "cannot record hello");
                s.machine.close(server_error());
                return Ok(());
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
        let offer = self.update_offer(&hello).await;
        let settings = AgentSettings {
            max_output_bytes: self.config.max_output_bytes,
            max_concurrent_commands: self.config.max_concurrent_commands,
        };
        s.machine.welcome(self.clock.now(), settings, offer)
    }

    /// Fetches due work from the store for the machine: queued commands
    /// (and after a (re)connect every non-final one), then cancel requests.
    async fn fetch(&self, s: &mut Session, fetch: Fetch) -> Result<(), delivery::Error> {
        let grace = duration_ms(self.config.command_grace);
        let due = self
            .store
            .deliverable_commands(s.agent_id, self.now_ms(), grace, fetch.include_inflight)
            .await;
        let (commands, cancels) = match due {
            Ok(cmds) => {
                let commands: Vec<RunCommand> = cmds.into_iter().map(run_command).collect();
                let cancels = self
                    .store
                    .cancel_requests(s.agent_id)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::error!(error = %e, "cannot fetch cancel requests");
                        Vec::new()
                    });
                (commands, cancels)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot fetch deliverable commands");
                (Vec::new(), Vec::new())
            }
        };
        self.metrics.deliveries.inc_by(commands.len() as u64);
        if s.machine.deliver(fetch, commands, cancels)? {
            // A full batch: the rest after serving other input.
            s.conn.kick.notify_one();
        }
        Ok(())
    }

    /// Stores a result; the machine acknowledges it or asks for a re-send.
    async fn on_result(
        &self,
        s: &mut Session,
        r: rmm_core::protocol::CommandResult,
    ) -> Result<(), delivery::Error> {
        let agent = s.agent_id;
        match self.store.finish_command(agent, &r, self.now_ms()).await {
            Ok(FinishOutcome::Stored) => {
                self.metrics.results.inc();
                s.machine.acknowledge(r.command_id)
            }
            Ok(FinishOutcome::AlreadyFinal | FinishOutcome::Unknown) => {
                s.machine.acknowledge(r.command_id)
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
                s.machine.incomplete(r.command_id)
            }
            Err(e) => {
                // Not acknowledged: the agent re-sends after reconnecting.
                tracing::error!(error = %e, agent = %agent, "cannot store result");
                s.machine.close(server_error());
                Ok(())
            }
        }
    }

    /// Loads a command of this agent for a re-send.
    async fn resend(&self, s: &mut Session, command_id: Uuid) -> Result<(), delivery::Error> {
        match self.store.get_command(command_id).await {
            Ok(Some(c)) if c.agent_id == s.agent_id => {
                s.machine.resend(run_command(PendingCommand {
                    id: c.id,
                    command_type: c.command_type,
                    command_text: c.command_text,
                    context: c.context,
                    timeout_secs: c.timeout_secs,
                }))
            }
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "cannot load command for re-sync");
                s.machine.close(server_error());
                Ok(())
            }
        }
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

    /// Encodes and sends one frame; false when the socket failed or did not
    /// accept the frame within the send timeout.
    async fn send_frame(&self, s: &Session, ws: &mut WebSocket, frame: &Frame) -> bool {
        let mut buf = bytes::BytesMut::new();
        let bytes = match s.codec_out.encode(frame, &mut buf) {
            Ok(()) => buf.freeze(),
            Err(e) => {
                let kind = match frame {
                    Frame::Control(msg) => msg.kind(),
                    Frame::Data { .. } => "data",
                };
                tracing::error!(error = %e, kind, "cannot encode message");
                return true;
            }
        };
        self.within(self.config.send_timeout, ws.send(WsMessage::Binary(bytes)))
            .await
            .is_some_and(|r| r.is_ok())
    }
}

/// A driver bug the machine refused (see [`delivery::Error`]): logged, and
/// the connection closed so the agent reconnects into a fresh one.
fn machine_error(s: &mut Session, e: &delivery::Error) {
    tracing::error!(agent = %s.agent_id, error = %e, "delivery machine refused an operation");
    s.machine.close(server_error());
}

fn server_error() -> Close {
    Close::new(close_code::SERVER_ERROR, "server error")
}

fn run_command(c: PendingCommand) -> RunCommand {
    RunCommand {
        command_id: c.id,
        command_type: c.command_type,
        command: c.command_text,
        context: c.context,
        timeout_secs: c.timeout_secs,
    }
}

/// A periodic timer on the hub's clock, like tokio's interval with
/// `MissedTickBehavior::Delay`: the first tick at once, each next one a
/// period after the previous one fired. Cancel-safe.
struct Ticker {
    next: Instant,
    period: Duration,
}

impl Ticker {
    fn new(now: Instant, period: Duration) -> Self {
        Ticker { next: now, period }
    }

    async fn tick(&mut self, clock: &dyn ServerClock) {
        clock.sleep_until(self.next).await;
        let now = clock.now();
        self.next = now.checked_add(self.period).unwrap_or(now);
    }
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
