//! The WebSocket: connecting with the agent credential, the hello/welcome
//! exchange, and one connection's message loop, both thin drivers of the
//! conversation's sans-IO machine ([`AgentDelivery`]).
//!
//! Monotonic time is tokio's (`tokio::time::pause` drives it); wall time
//! comes from [`SystemClock`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rmm_core::delivery::{AgentDelivery, AgentEnd, AgentEvent};
use rmm_core::io::Clock;

use crate::clock::SystemClock;
use rmm_core::protocol::{
    Codec, CommandOutcome, CommandResult, DecodeError, Frame, Hello, Limits, Message, Welcome,
};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::exec::Executor;
use crate::identity::Identity;
use crate::plugins::Plugins;
use crate::store::{Lookup, Outbox, Store};

/// The agent's WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a connection could not be made or ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// Connecting or the upgrade failed (including HTTP 401).
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The WebSocket URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server is overloaded (503 to the upgrade, a reconnect storm);
    /// the next attempt waits at least `retry_after`.
    #[error("the server is busy, retry after {retry_after:?}")]
    Busy {
        /// The server's `Retry-After` (capped).
        retry_after: Duration,
    },
    /// The server refused the hello.
    #[error("the server refused the connection: {code}: {message}")]
    Refused {
        /// The server's error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// No welcome in time.
    #[error("no welcome from the server within {0:?}")]
    NoWelcome(Duration),
    /// The connection closed.
    #[error("connection closed: {0}")]
    Closed(String),
    /// The server broke the protocol at frame level.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Local state could not be written.
    #[error("local state error: {0}")]
    Local(String),
}

/// The WebSocket URL of a server base URL.
pub fn ws_url(server_url: &str) -> String {
    let base = server_url.trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    format!("{base}/api/v1/agent/ws")
}

/// The codec limits the agent applies: control frames up to `max_control`
/// (run_command carries scripts of several MiB), data frames as the
/// protocol default.
pub fn limits(max_control: usize) -> Limits {
    Limits {
        max_control,
        ..Limits::default()
    }
}

/// Opens the WebSocket with the agent credential. Returns the socket and
/// the upgrade response's `Date` header, when present.
pub async fn connect(
    identity: &Identity,
    limits: Limits,
    timeout: Duration,
) -> Result<(Ws, Option<String>), ConnError> {
    let url = ws_url(&identity.server_url);
    let err = |reason: String| ConnError::Connect {
        url: url.clone(),
        reason,
    };
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| err(e.to_string()))?;
    let auth = format!("Agent {}:{}", identity.agent_id, identity.agent_secret);
    req.headers_mut().insert(
        "authorization",
        auth.parse()
            .map_err(|_| err("the agent secret is not a valid header value".into()))?,
    );
    let config = WebSocketConfig::default()
        .max_message_size(Some(limits.max_frame()))
        .max_frame_size(Some(limits.max_frame()));
    let connector = if url.starts_with("wss://") {
        let tls = crate::tls::client_config(identity.pin(), &[]).map_err(|e| err(e.to_string()))?;
        Connector::Rustls(tls)
    } else {
        Connector::Plain
    };
    let fut =
        tokio_tungstenite::connect_async_tls_with_config(req, Some(config), true, Some(connector));
    let (ws, resp) = tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| err(format!("timed out after {timeout:?}")))?
        .map_err(|e| match e {
            tungstenite::Error::Http(r) if r.status() == 503 => ConnError::Busy {
                retry_after: retry_after(r.headers()),
            },
            tungstenite::Error::Http(r) => err(format!(
                "HTTP {} {}",
                r.status(),
                r.body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned())
                    .unwrap_or_default()
            )),
            other => err(other.to_string()),
        })?;
    let date = resp
        .headers()
        .get("date")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((ws, date))
}

/// The longest `Retry-After` an agent honours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// A 503's `Retry-After` in seconds (1 s when absent or unreadable; an
/// HTTP date is not used by the server), capped at [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &tungstenite::http::HeaderMap) -> Duration {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(1), Duration::from_secs)
        .min(MAX_RETRY_AFTER)
}

fn encode(codec: &Codec, frame: &Frame) -> Result<WsMessage, ConnError> {
    let bytes = codec.encode_to_vec(frame).map_err(|e| {
        let kind = match frame {
            Frame::Control(msg) => msg.kind(),
            Frame::Data { .. } => "data",
        };
        ConnError::Protocol(format!("cannot encode {kind}: {e}"))
    })?;
    Ok(WsMessage::Binary(bytes.into()))
}

/// The agent's monotonic time: tokio's clock.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Completes at `deadline` of tokio's clock; never without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// What a received WebSocket message turned into.
enum Incoming {
    Frame(Frame),
    /// A frame the codec refused (the machine decides).
    Undecodable(DecodeError),
    Skip,
    End(ConnError),
}

fn classify(codec: &Codec, m: Option<Result<WsMessage, tungstenite::Error>>) -> Incoming {
    match m {
        None => Incoming::End(ConnError::Closed("the server closed the connection".into())),
        Some(Err(e)) => Incoming::End(ConnError::Closed(e.to_string())),
        Some(Ok(WsMessage::Binary(b))) => match codec.decode_message(&b) {
            Ok(frame) => Incoming::Frame(frame),
            Err(e) => Incoming::Undecodable(e),
        },
        Some(Ok(WsMessage::Text(_))) => {
            Incoming::End(ConnError::Protocol("text message received".into()))
        }
        Some(Ok(WsMessage::Close(f))) => Incoming::End(ConnError::Closed(
            f.map(|f| format!("close {} {}", u16::from(f.code), f.reason))
                .unwrap_or_else(|| "close".into()),
        )),
        Some(Ok(_)) => Incoming::Skip,
    }
}

/// Feeds what the socket brought to the machine; the connection's end
/// when the socket ended or the machine did.
fn feed(machine: &mut AgentDelivery, incoming: Incoming) -> Result<(), ConnError> {
    match incoming {
        Incoming::Frame(frame) => machine.handle_frame(now(), frame),
        Incoming::Undecodable(e) => machine.handle_undecodable(now(), &e),
        Incoming::Skip => {}
        Incoming::End(e) => return Err(e),
    }
    ended(machine)
}

/// The machine's end as the connection's error.
fn ended(machine: &AgentDelivery) -> Result<(), ConnError> {
    match machine.end() {
        None => Ok(()),
        Some(AgentEnd::Refused(e)) => Err(ConnError::Refused {
            code: e.code.clone(),
            message: e.message.clone(),
        }),
        Some(AgentEnd::NoWelcome(d)) => Err(ConnError::NoWelcome(*d)),
        Some(AgentEnd::BadFrame(e)) => Err(ConnError::Protocol(e.clone())),
    }
}

/// Sends hello and waits for welcome; returns it with the conversation's
/// machine, to [`serve`] the connection with.
pub async fn handshake(
    ws: &mut Ws,
    codec: &Codec,
    hello: &Hello,
    timeout: Duration,
) -> Result<(Welcome, AgentDelivery), ConnError> {
    let mut machine = AgentDelivery::new(now(), hello.clone(), timeout);
    loop {
        while let Some(m) = machine.poll_transmit() {
            ws.send(encode(codec, &Frame::Control(m))?)
                .await
                .map_err(|e| ConnError::Closed(e.to_string()))?;
        }
        if let Some(AgentEvent::Welcomed(w)) = machine.poll_event() {
            return Ok((w, machine));
        }
        ended(&machine)?;
        tokio::select! {
            m = ws.next() => feed(&mut machine, classify(codec, m))?,
            () = sleep_until(machine.poll_timeout()) => {
                machine.handle_timeout(now());
                ended(&machine)?;
            }
        }
    }
}

/// The shared parts a connection works with.
pub struct Parts<'a> {
    /// Results and spools.
    pub store: &'a Arc<Store>,
    /// Running commands.
    pub exec: &'a Arc<Executor>,
    /// Plugin results.
    pub plugins: &'a Arc<Plugins>,
    /// Woken when the store or plugins have something to send.
    pub outbox_changed: &'a tokio::sync::Notify,
}

/// Runs one welcomed connection (`machine` from [`handshake`]) until it
/// drops or `shutdown` resolves (then `Ok(())`).
pub async fn serve(
    ws: Ws,
    codec: Codec,
    mut machine: AgentDelivery,
    parts: Parts<'_>,
    shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
) -> Result<(), ConnError> {
    let (mut sink, mut stream) = ws.split();
    // The outbound queue carries frames: the machine's messages, results
    // and output from the store, and (once a tunnel is hosted here) its
    // data frames.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Frame>(32);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            let ws_msg = encode(&codec, &frame)?;
            sink.send(ws_msg)
                .await
                .map_err(|e| ConnError::Closed(e.to_string()))?;
        }
        let _ = sink.close().await;
        Ok::<(), ConnError>(())
    });
    let mut writer = AbortOnDrop(writer);
    let mut outbox = Outbox::default();
    let mut plugin_sent: HashMap<String, u64> = HashMap::new();
    let mut next: Option<Message> = None;

    loop {
        // What the machine asks: act on its events, send its messages.
        while let Some(event) = machine.poll_event() {
            if let Some(reply) = handle(event, &parts, &mut outbox, &mut machine)? {
                tx.send(Frame::Control(reply)).await.map_err(closed)?;
            }
        }
        while let Some(m) = machine.poll_transmit() {
            tx.send(Frame::Control(m)).await.map_err(closed)?;
        }
        if next.is_none() {
            next = outbox
                .next(parts.store)
                .map_err(|e| ConnError::Local(e.to_string()))?
                .or_else(|| parts.plugins.next_unsent(&mut plugin_sent));
        }
        let changed = parts.outbox_changed.notified();
        // The one timer (the heartbeat). A tunnel hosted on this
        // connection joins here: the earlier of its `poll_timeout()` and
        // the machine's, and both get `handle_timeout` when it fires.
        let timer = sleep_until(machine.poll_timeout());
        tokio::select! {
            biased;
            _ = &mut *shutdown => break,
            r = &mut writer.0 => {
                return Err(match r {
                    Ok(Err(e)) => e,
                    _ => ConnError::Closed("writer stopped".into()),
                });
            }
            m = stream.next() => feed(&mut machine, classify(&codec, m))?,
            () = timer => machine.handle_timeout(now()),
            permit = tx.reserve(), if next.is_some() => {
                let permit = permit.map_err(closed)?;
                if let Some(m) = next.take() {
                    permit.send(Frame::Control(m));
                }
            }
            _ = changed, if next.is_none() => {}
        }
    }
    // Shutdown: let the writer flush what is queued and close the socket.
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), &mut writer.0).await;
    Ok(())
}

fn closed<E>(_: E) -> ConnError {
    ConnError::Closed("writer stopped".into())
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Acts on one event of the machine; returns a direct reply, if any.
fn handle(
    event: AgentEvent,
    parts: &Parts<'_>,
    outbox: &mut Outbox,
    machine: &mut AgentDelivery,
) -> Result<Option<Message>, ConnError> {
    let local = |e: std::io::Error| ConnError::Local(e.to_string());
    match event {
        AgentEvent::Run(rc) => {
            let id = rc.command_id;
            // The store first: a command whose result is recorded is
            // answered even while its task is still winding down (it stays
            // "active" a moment after the result is stored).
            let lookup = parts.store.lookup(id);
            let finished = match &lookup {
                Lookup::Pending(p) => p.result.is_some(),
                Lookup::Acked(_) => true,
                Lookup::Unknown => false,
            };
            if !finished && parts.exec.is_active(id) {
                tracing::debug!(%id, "re-delivered command is queued or running; ignored");
                return Ok(None);
            }
            match lookup {
                Lookup::Unknown => parts.exec.submit(rc),
                Lookup::Pending(_) => {
                    tracing::info!(%id, "re-delivered command already finished; re-sending its result");
                    outbox.resend(id);
                    parts.outbox_changed.notify_one();
                }
                Lookup::Acked(r) => {
                    tracing::info!(%id, "re-delivered command was acknowledged before; re-sending its result");
                    return Ok(Some(Message::CommandResult(r)));
                }
            }
        }
        AgentEvent::Cancel { command_id: id } => {
            if !parts.exec.cancel(id) {
                match parts.store.lookup(id) {
                    Lookup::Unknown => {
                        // Never seen: remember it as cancelled so a late
                        // run_command is answered, not run.
                        let r = CommandResult {
                            command_id: id,
                            outcome: CommandOutcome::Cancelled,
                            exit_code: None,
                            signal: None,
                            error: Some("cancelled before it reached the agent".into()),
                            stdout_bytes: 0,
                            stderr_bytes: 0,
                            stdout_truncated: false,
                            stderr_truncated: false,
                            started_at_ms: None,
                            finished_at_ms: SystemClock.unix_ms(),
                        };
                        parts.store.record_unstarted(r).map_err(local)?;
                    }
                    Lookup::Pending(_) => outbox.resend(id),
                    Lookup::Acked(r) => return Ok(Some(Message::CommandResult(r))),
                }
            }
        }
        AgentEvent::Ack { command_id } => {
            parts.store.ack(command_id).map_err(local)?;
        }
        AgentEvent::HeartbeatDue => machine
            .heartbeat(parts.exec.running())
            .map_err(|e| ConnError::Local(e.to_string()))?,
        AgentEvent::Welcomed(w) => parts.exec.apply(&w.settings),
        AgentEvent::Settings(s) => parts.exec.apply(&s),
        AgentEvent::UpdateAvailable(u) => {
            tracing::info!(version = %u.version, channel = %u.channel, "update available (self-update is not implemented in this build)");
        }
        AgentEvent::ServerError(e) => {
            tracing::warn!(code = %e.code, "server error: {}", e.message);
        }
        AgentEvent::BadMessage(e) => tracing::warn!("undecodable message from the server: {e}"),
        AgentEvent::Ignored { kind: "unknown" } => {
            tracing::debug!("ignored a message kind this build does not know");
        }
        AgentEvent::Ignored { kind } => {
            tracing::debug!(kind, "ignored a message not meant for the agent");
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_urls() {
        assert_eq!(ws_url("http://h:1"), "ws://h:1/api/v1/agent/ws");
        assert_eq!(ws_url("https://h/base/"), "wss://h/base/api/v1/agent/ws");
    }

    /// A server that reads the hello and says nothing: the handshake gives
    /// up at the welcome deadline, in tokio's (paused, driven) time.
    #[tokio::test(start_paused = true)]
    async fn no_welcome_within_the_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (done, hold) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(sock).await.unwrap();
            let first = ws.next().await;
            let _ = hold.await;
            first
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut ws, _) =
            tokio_tungstenite::client_async(format!("ws://{addr}/"), MaybeTlsStream::Plain(tcp))
                .await
                .unwrap();
        let codec = Codec::new(limits(rmm_core::delivery::AGENT_MAX_CONTROL));
        let hello = Hello {
            protocol: rmm_core::protocol::VersionRange::current(),
            agent_id: uuid::Uuid::from_u128(1),
            agent_version: "0.1.0".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            hostname: "h".into(),
            machine_uid: "m".into(),
            channel: "stable".into(),
        };
        let t0 = tokio::time::Instant::now();
        let err = handshake(&mut ws, &codec, &hello, Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ConnError::NoWelcome(d) if d == Duration::from_secs(30)),
            "{err}"
        );
        assert!(t0.elapsed() >= Duration::from_secs(30));
        let _ = done.send(());
        let first = server.await.unwrap();
        let Some(Ok(WsMessage::Binary(b))) = first else {
            panic!("expected the hello, got {first:?}");
        };
        assert_eq!(
            codec.decode_message(&b).unwrap(),
            Frame::Control(Message::Hello(hello))
        );
    }
}
