//! The IO seams: the small traits the drivers (`rmm-agent`, `rmm-server`)
//! implement over real clocks, sockets, processes and directories.
//!
//! Library code that needs time, a frame transport, a command runner or a
//! release directory takes one of these traits, so tests can substitute the
//! in-memory fakes in `fakes` (behind the `testing` feature) and stay
//! deterministic. The traits use `async fn`-style methods returning `impl
//! Future` so this crate needs no async runtime.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::protocol::{CommandResult, Frame, OutputStream, RunCommand};

/// A source of time. This crate never reads the clock itself (clippy's
/// `disallowed-methods` in `rmm-core/clippy.toml` enforces it): drivers
/// implement this over the real clock (`rmm_agent::clock::SystemClock`),
/// tests use a manual clock they advance themselves.
pub trait Clock: Send + Sync {
    /// Monotonic time, for timeouts and intervals.
    fn now(&self) -> Instant;
    /// Wall-clock time as unix milliseconds, for timestamps on the wire.
    fn unix_ms(&self) -> u64;
}

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The peer or the link went away.
    #[error("connection closed")]
    Closed,
    /// The peer sent bytes that are not a valid frame.
    #[error(transparent)]
    Decode(#[from] crate::protocol::DecodeError),
    /// A frame could not be encoded.
    #[error(transparent)]
    Encode(#[from] crate::protocol::EncodeError),
    /// Any other IO failure, described.
    #[error("transport failure: {0}")]
    Io(String),
}

/// A bidirectional, message-oriented carrier of [`Frame`]s (the agent's
/// WebSocket in production).
pub trait FrameTransport: Send {
    /// Sends one frame.
    fn send(&mut self, frame: Frame) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Receives the next frame; `Ok(None)` when the peer closed cleanly.
    fn recv(&mut self) -> impl Future<Output = Result<Option<Frame>, TransportError>> + Send;
}

/// Runs commands for the agent. Cancellation is by dropping the returned
/// future: a real runner kills the whole process group when dropped.
pub trait CommandRunner: Send + Sync {
    /// Runs `cmd` to completion (or its timeout), passing each chunk of
    /// output to `sink` as it appears, and returns the final result.
    fn run<'a>(
        &'a self,
        cmd: &'a RunCommand,
        sink: &'a mut (dyn FnMut(OutputStream, &str) + Send),
    ) -> impl Future<Output = CommandResult> + Send + 'a;
}

/// A directory of agent builds, as the release-channel scanner sees it.
pub trait ReleaseSource {
    /// The names of the entries (files and links) in the source.
    fn names(&self) -> std::io::Result<Vec<String>>;
    /// Reads a small text file (a sidecar) by name, refusing more than
    /// `max` bytes; `Ok(None)` when it does not exist.
    fn read_small(&self, name: &str, max: usize) -> std::io::Result<Option<String>>;
}

/// A jittered-exponential-backoff schedule (full jitter): attempt `n` waits
/// a uniformly random time in `[0, min(cap, base * 2^n))`. The random value
/// is passed in, so the schedule is deterministic under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first ceiling.
    pub base: Duration,
    /// The largest ceiling.
    pub cap: Duration,
}

impl Backoff {
    /// The ceiling of attempt `attempt` (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay of attempt `attempt`, with `unit` in `[0, 1)` drawn by the
    /// caller from its random source.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        self.ceiling(attempt).mul_f64(unit.clamp(0.0, 1.0))
    }
}

#[cfg(any(test, feature = "testing"))]
pub mod fakes {
    //! In-memory fakes of the IO seams, for tests in this and other crates.

    use std::collections::{HashMap, VecDeque};
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::task::{Context, Poll, Waker};
    use std::time::{Duration, Instant};

    use super::{Clock, CommandRunner, FrameTransport, ReleaseSource, TransportError};
    use crate::protocol::{CommandOutcome, CommandResult, Frame, OutputStream, RunCommand};

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A clock that only moves when told to.
    #[derive(Debug, Clone)]
    pub struct ManualClock {
        inner: Arc<Mutex<(Instant, u64)>>,
    }

    impl ManualClock {
        /// A clock at an arbitrary instant and the given unix time.
        // `Instant` has no constructor: the real clock is read once, as the
        // origin of virtual time, never to measure anything.
        #[allow(clippy::disallowed_methods)]
        pub fn new(unix_ms: u64) -> Self {
            ManualClock {
                inner: Arc::new(Mutex::new((Instant::now(), unix_ms))),
            }
        }

        /// Moves both monotonic and wall time forward.
        pub fn advance(&self, by: Duration) {
            let mut g = lock(&self.inner);
            g.0 += by;
            g.1 += u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            lock(&self.inner).0
        }
        fn unix_ms(&self) -> u64 {
            lock(&self.inner).1
        }
    }

    #[derive(Default)]
    struct Pipe {
        queue: VecDeque<Frame>,
        closed: bool,
        waker: Option<Waker>,
    }

    /// One end of an in-memory frame link made by [`MemoryTransport::pair`].
    pub struct MemoryTransport {
        tx: Arc<Mutex<Pipe>>,
        rx: Arc<Mutex<Pipe>>,
    }

    impl MemoryTransport {
        /// Two connected ends.
        pub fn pair() -> (MemoryTransport, MemoryTransport) {
            let a = Arc::new(Mutex::new(Pipe::default()));
            let b = Arc::new(Mutex::new(Pipe::default()));
            (
                MemoryTransport {
                    tx: a.clone(),
                    rx: b.clone(),
                },
                MemoryTransport { tx: b, rx: a },
            )
        }

        /// Closes the link in both directions, like a dropped socket.
        pub fn close(&self) {
            for pipe in [&self.tx, &self.rx] {
                let mut p = lock(pipe);
                p.closed = true;
                if let Some(w) = p.waker.take() {
                    w.wake();
                }
            }
        }
    }

    impl Drop for MemoryTransport {
        fn drop(&mut self) {
            self.close();
        }
    }

    struct Recv<'a>(&'a Mutex<Pipe>);

    impl Future for Recv<'_> {
        type Output = Result<Option<Frame>, TransportError>;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let mut p = lock(self.0);
            if let Some(f) = p.queue.pop_front() {
                Poll::Ready(Ok(Some(f)))
            } else if p.closed {
                Poll::Ready(Ok(None))
            } else {
                p.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    impl FrameTransport for MemoryTransport {
        async fn send(&mut self, frame: Frame) -> Result<(), TransportError> {
            let mut p = lock(&self.tx);
            if p.closed {
                return Err(TransportError::Closed);
            }
            p.queue.push_back(frame);
            if let Some(w) = p.waker.take() {
                w.wake();
            }
            Ok(())
        }

        async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
            Recv(&self.rx).await
        }
    }

    /// A scripted reply of [`ScriptedRunner`].
    #[derive(Debug, Clone, Default)]
    pub struct Script {
        /// Text passed to the sink as stdout.
        pub stdout: String,
        /// Text passed to the sink as stderr.
        pub stderr: String,
        /// Exit code (0 means completed).
        pub exit_code: i32,
    }

    /// A command runner answering from a table keyed by command text; an
    /// unknown command fails with exit code 127 like a shell would.
    #[derive(Debug, Clone, Default)]
    pub struct ScriptedRunner {
        scripts: Arc<Mutex<HashMap<String, Script>>>,
        runs: Arc<Mutex<Vec<RunCommand>>>,
    }

    impl ScriptedRunner {
        /// Registers the reply to `command`.
        pub fn on(&self, command: &str, script: Script) {
            lock(&self.scripts).insert(command.to_owned(), script);
        }

        /// Every command run so far, in order.
        pub fn runs(&self) -> Vec<RunCommand> {
            lock(&self.runs).clone()
        }
    }

    impl CommandRunner for ScriptedRunner {
        async fn run<'a>(
            &'a self,
            cmd: &'a RunCommand,
            sink: &'a mut (dyn FnMut(OutputStream, &str) + Send),
        ) -> CommandResult {
            lock(&self.runs).push(cmd.clone());
            let script = lock(&self.scripts)
                .get(&cmd.command)
                .cloned()
                .unwrap_or_else(|| Script {
                    stderr: format!("{}: not found\n", cmd.command),
                    exit_code: 127,
                    ..Script::default()
                });
            if !script.stdout.is_empty() {
                sink(OutputStream::Stdout, &script.stdout);
            }
            if !script.stderr.is_empty() {
                sink(OutputStream::Stderr, &script.stderr);
            }
            CommandResult {
                command_id: cmd.command_id,
                outcome: if script.exit_code == 0 {
                    CommandOutcome::Completed
                } else {
                    CommandOutcome::Failed
                },
                exit_code: Some(script.exit_code),
                signal: None,
                error: None,
                stdout_bytes: script.stdout.len() as u64,
                stderr_bytes: script.stderr.len() as u64,
                stdout_truncated: false,
                stderr_truncated: false,
                started_at_ms: Some(0),
                finished_at_ms: 0,
            }
        }
    }

    /// A release directory held in memory: name -> contents.
    #[derive(Debug, Clone, Default)]
    pub struct MemoryReleaseSource {
        /// The entries.
        pub files: HashMap<String, String>,
    }

    impl MemoryReleaseSource {
        /// Adds or replaces an entry.
        pub fn insert(&mut self, name: &str, contents: &str) -> &mut Self {
            self.files.insert(name.to_owned(), contents.to_owned());
            self
        }
    }

    impl ReleaseSource for MemoryReleaseSource {
        fn names(&self) -> std::io::Result<Vec<String>> {
            let mut names: Vec<String> = self.files.keys().cloned().collect();
            names.sort();
            Ok(names)
        }

        fn read_small(&self, name: &str, max: usize) -> std::io::Result<Option<String>> {
            match self.files.get(name) {
                Some(s) if s.len() > max => Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{name} is larger than {max} bytes"),
                )),
                Some(s) => Ok(Some(s.clone())),
                None => Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fakes::*;
    use super::*;
    use crate::protocol::{Heartbeat, Message};

    fn block_on<F: Future>(f: F) -> F::Output {
        // The fakes complete without a reactor, so a no-op waker suffices.
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    #[test]
    fn backoff_ceiling_doubles_then_caps() {
        let b = Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
        };
        assert_eq!(b.ceiling(0), Duration::from_secs(1));
        assert_eq!(b.ceiling(3), Duration::from_secs(8));
        assert_eq!(b.ceiling(9), Duration::from_secs(300));
        assert_eq!(b.ceiling(200), Duration::from_secs(300));
        assert_eq!(b.delay(3, 0.5), Duration::from_secs(4));
        assert_eq!(b.delay(3, 7.0), Duration::from_secs(8));
    }

    #[test]
    fn memory_transport_delivers_in_order_and_reports_close() {
        let (mut a, mut b) = MemoryTransport::pair();
        for seq in 0..3 {
            let f = Frame::Control(Message::Heartbeat(Heartbeat { seq, running: 0 }));
            block_on(a.send(f)).unwrap();
        }
        for seq in 0..3 {
            let got = block_on(b.recv()).unwrap();
            assert_eq!(
                got,
                Some(Frame::Control(Message::Heartbeat(Heartbeat {
                    seq,
                    running: 0
                })))
            );
        }
        drop(a);
        assert_eq!(block_on(b.recv()).unwrap(), None);
        assert!(matches!(
            block_on(b.send(Frame::Data {
                channel_id: 1,
                payload: bytes::Bytes::new()
            })),
            Err(TransportError::Closed)
        ));
    }

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let c = ManualClock::new(1_000);
        let t0 = c.now();
        c.advance(Duration::from_millis(250));
        assert_eq!(c.now() - t0, Duration::from_millis(250));
        assert_eq!(c.unix_ms(), 1_250);
    }
}
