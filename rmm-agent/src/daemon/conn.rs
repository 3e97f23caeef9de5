//! The WebSocket: connecting with the agent credential, the hello/welcome
//! exchange, and one connection's message loop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rmm_core::io::Clock;

use crate::clock::SystemClock;
use rmm_core::protocol::{
    Codec, CommandOutcome, CommandResult, DecodeError, Frame, Heartbeat, Hello, Limits, Message,
    ProtocolError, TunnelError, TunnelErrorCode, Welcome,
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

fn encode(codec: &Codec, msg: &Message) -> Result<WsMessage, ConnError> {
    let bytes = codec
        .encode_to_vec(&Frame::Control(msg.clone()))
        .map_err(|e| ConnError::Protocol(format!("cannot encode {}: {e}", msg.kind())))?;
    Ok(WsMessage::Binary(bytes.into()))
}

/// What a received WebSocket message turned into.
enum Incoming {
    Msg(Message),
    /// A control body that did not decode: answer `bad_message`, go on.
    BadMessage(String),
    Skip,
    End(ConnError),
}

fn classify(codec: &Codec, m: Option<Result<WsMessage, tungstenite::Error>>) -> Incoming {
    match m {
        None => Incoming::End(ConnError::Closed("the server closed the connection".into())),
        Some(Err(e)) => Incoming::End(ConnError::Closed(e.to_string())),
        Some(Ok(WsMessage::Binary(b))) => match codec.decode_message(&b) {
            Ok(Frame::Control(m)) => Incoming::Msg(m),
            Ok(Frame::Data { .. }) => Incoming::Skip,
            Err(DecodeError::Json(e)) => Incoming::BadMessage(e.to_string()),
            Err(e) => Incoming::End(ConnError::Protocol(e.to_string())),
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

/// Sends hello and waits for welcome.
pub async fn handshake(
    ws: &mut Ws,
    codec: &Codec,
    hello: &Hello,
    timeout: Duration,
) -> Result<Welcome, ConnError> {
    ws.send(encode(codec, &Message::Hello(hello.clone()))?)
        .await
        .map_err(|e| ConnError::Closed(e.to_string()))?;
    let wait = async {
        loop {
            match classify(codec, ws.next().await) {
                Incoming::Msg(Message::Welcome(w)) => return Ok(w),
                Incoming::Msg(Message::Error(e)) => {
                    return Err(ConnError::Refused {
                        code: e.code,
                        message: e.message,
                    });
                }
                Incoming::End(e) => return Err(e),
                _ => {}
            }
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| ConnError::NoWelcome(timeout))?
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

/// Runs one welcomed connection until it drops or `shutdown` resolves
/// (then `Ok(())`).
pub async fn serve(
    ws: Ws,
    codec: Codec,
    welcome: &Welcome,
    parts: Parts<'_>,
    shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
) -> Result<(), ConnError> {
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(32);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let ws_msg = encode(&codec, &m)?;
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
    let period = Duration::from_secs(u64::from(welcome.heartbeat_interval_secs.max(1)));
    let mut heartbeat = tokio::time::interval(period);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;

    loop {
        if next.is_none() {
            next = outbox
                .next(parts.store)
                .map_err(|e| ConnError::Local(e.to_string()))?
                .or_else(|| parts.plugins.next_unsent(&mut plugin_sent));
        }
        let changed = parts.outbox_changed.notified();
        tokio::select! {
            biased;
            _ = &mut *shutdown => break,
            r = &mut writer.0 => {
                return Err(match r {
                    Ok(Err(e)) => e,
                    _ => ConnError::Closed("writer stopped".into()),
                });
            }
            m = stream.next() => match classify(&codec, m) {
                Incoming::Msg(m) => {
                    if let Some(reply) = handle(m, &parts, &mut outbox)? {
                        tx.send(reply).await.map_err(closed)?;
                    }
                }
                Incoming::BadMessage(e) => {
                    tracing::warn!("undecodable message from the server: {e}");
                    let reply = Message::Error(ProtocolError { code: "bad_message".into(), message: e });
                    tx.send(reply).await.map_err(closed)?;
                }
                Incoming::Skip => {}
                Incoming::End(e) => return Err(e),
            },
            _ = heartbeat.tick() => {
                seq += 1;
                let hb = Message::Heartbeat(Heartbeat { seq, running: parts.exec.running() });
                tx.send(hb).await.map_err(closed)?;
            }
            permit = tx.reserve(), if next.is_some() => {
                let permit = permit.map_err(closed)?;
                if let Some(m) = next.take() {
                    permit.send(m);
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

/// Handles one message from the server; returns a direct reply, if any.
fn handle(
    m: Message,
    parts: &Parts<'_>,
    outbox: &mut Outbox,
) -> Result<Option<Message>, ConnError> {
    let local = |e: std::io::Error| ConnError::Local(e.to_string());
    match m {
        Message::RunCommand(rc) => {
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
        Message::CancelCommand(c) => {
            let id = c.command_id;
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
        Message::CommandAck(c) => {
            parts.store.ack(c.command_id).map_err(local)?;
        }
        Message::Welcome(w) => parts.exec.apply(&w.settings),
        Message::TunnelOpen(t) => {
            return Ok(Some(Message::TunnelError(TunnelError {
                session_id: t.session_id,
                code: TunnelErrorCode::Protocol,
                message: "tunnels are not supported by this agent build".into(),
            })));
        }
        Message::UpdateAvailable(u) => {
            tracing::info!(version = %u.version, channel = %u.channel, "update available (self-update is not implemented in this build)");
        }
        Message::Error(e) => tracing::warn!(code = %e.code, "server error: {}", e.message),
        Message::Unknown => tracing::debug!("ignored a message kind this build does not know"),
        other => {
            tracing::debug!(
                kind = other.kind(),
                "ignored a message not meant for the agent"
            );
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
}
