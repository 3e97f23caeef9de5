//! The command executor: a concurrency limit with a queue, cancellation,
//! and the store bookkeeping around each run.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rmm_core::io::Clock;

use crate::clock::SystemClock;
use rmm_core::protocol::{CommandOutcome, CommandResult, RunCommand};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::runner::{CancelHandle, ProcessRunner, cancel_pair};
use crate::store::Store;

/// Runs commands at most `limit` at a time; the rest wait in arrival order.
#[derive(Debug)]
pub struct Executor {
    runner: ProcessRunner,
    store: Arc<Store>,
    active: Mutex<HashMap<Uuid, CancelHandle>>,
    gate: Mutex<Gate>,
    running: AtomicU32,
    max_output: AtomicU64,
    idle: tokio::sync::Notify,
    stopping: AtomicBool,
}

/// The concurrency gate: slots are handed out strictly in arrival order.
#[derive(Debug)]
struct Gate {
    limit: usize,
    busy: usize,
    queue: VecDeque<(Uuid, oneshot::Sender<()>)>,
}

impl Gate {
    /// Hands free slots to the longest-waiting commands still waiting.
    fn pump(&mut self) {
        while self.busy < self.limit {
            let Some((_, tx)) = self.queue.pop_front() else {
                break;
            };
            if tx.send(()).is_ok() {
                self.busy += 1;
            }
        }
    }
}

/// A held slot; released (and handed on) when dropped.
struct Slot<'a>(&'a Executor);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut g = self.0.gate();
        g.busy = g.busy.saturating_sub(1);
        g.pump();
    }
}

/// The error of a command killed because the agent was stopped.
pub const STOPPED_ERROR: &str =
    "agent stopped while the command was running; it was killed and will not be run again";

fn result_without_run(id: Uuid, outcome: CommandOutcome, error: String) -> CommandResult {
    CommandResult {
        command_id: id,
        outcome,
        exit_code: None,
        signal: None,
        error: Some(error),
        stdout_bytes: 0,
        stderr_bytes: 0,
        stdout_truncated: false,
        stderr_truncated: false,
        started_at_ms: None,
        finished_at_ms: SystemClock.unix_ms(),
    }
}

impl Executor {
    /// An executor with the default settings (4 at once, 16 MiB per stream).
    pub fn new(runner: ProcessRunner, store: Arc<Store>) -> Arc<Self> {
        let d = rmm_core::protocol::AgentSettings::default();
        Arc::new(Executor {
            runner,
            store,
            active: Mutex::new(HashMap::new()),
            gate: Mutex::new(Gate {
                limit: d.max_concurrent_commands as usize,
                busy: 0,
                queue: VecDeque::new(),
            }),
            running: AtomicU32::new(0),
            max_output: AtomicU64::new(d.max_output_bytes),
            idle: tokio::sync::Notify::new(),
            stopping: AtomicBool::new(false),
        })
    }

    fn active(&self) -> MutexGuard<'_, HashMap<Uuid, CancelHandle>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies the server's settings (from `welcome`).
    pub fn apply(&self, settings: &rmm_core::protocol::AgentSettings) {
        self.max_output
            .store(settings.max_output_bytes, Ordering::Relaxed);
        // A lower limit takes effect as running commands finish.
        let mut g = self.gate();
        g.limit = settings.max_concurrent_commands.clamp(1, 1024) as usize;
        g.pump();
    }

    fn gate(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `id` is queued or running here.
    pub fn is_active(&self, id: Uuid) -> bool {
        self.active().contains_key(&id)
    }

    /// Commands whose process is running.
    pub fn running(&self) -> u32 {
        self.running.load(Ordering::Relaxed)
    }

    /// Queues `cmd`. The caller has checked it is neither active nor known
    /// to the store.
    pub fn submit(self: &Arc<Self>, cmd: RunCommand) {
        let id = cmd.command_id;
        let (handle, mut signal) = cancel_pair();
        self.active().insert(id, handle);
        // Take a slot or a place in the queue now, in arrival order.
        let waiter = {
            let mut g = self.gate();
            if g.busy < g.limit && g.queue.is_empty() {
                g.busy += 1;
                None
            } else {
                let (tx, rx) = oneshot::channel();
                g.queue.push_back((id, tx));
                Some(rx)
            }
        };
        let me = self.clone();
        tokio::spawn(async move {
            let granted = match waiter {
                None => true,
                Some(mut rx) => tokio::select! {
                    r = &mut rx => r.is_ok(),
                    _ = signal.cancelled() => {
                        me.gate().queue.retain(|(q, _)| *q != id);
                        // A slot handed over just before the cancel is
                        // passed on, not leaked.
                        if rx.try_recv().is_ok() {
                            drop(Slot(&me));
                        }
                        false
                    }
                },
            };
            let slot = granted.then(|| Slot(&me));
            let Some(_slot) = slot else {
                if me.stopping.load(Ordering::Relaxed) {
                    // Never started: leave no trace, so the server delivers
                    // it again after the restart and it runs then.
                    me.done(id);
                    return;
                }
                let r = result_without_run(
                    id,
                    CommandOutcome::Cancelled,
                    "cancelled before it started".into(),
                );
                if let Err(e) = me.store.record_unstarted(r) {
                    tracing::error!(%id, "cannot record the result of a cancelled command: {e}");
                }
                me.done(id);
                return;
            };
            let started = SystemClock.unix_ms();
            let mut spool = match me.store.begin(id, started) {
                Ok(s) => s,
                Err(e) => {
                    // Not marked started: the command must not run.
                    tracing::error!(%id, "cannot persist the command's start, not running it: {e}");
                    let r = result_without_run(
                        id,
                        CommandOutcome::Failed,
                        format!(
                            "the agent cannot persist command state, so it did not run the command: {e}"
                        ),
                    );
                    let _ = me.store.record_unstarted(r);
                    me.done(id);
                    return;
                }
            };
            me.running.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%id, kind = %cmd.command_type, context = %cmd.context, "running command");
            let mut write_failed = None;
            let mut sink = |stream, text: &str| {
                if let Err(e) = spool.append(stream, text) {
                    write_failed.get_or_insert(e.to_string());
                }
            };
            let cap = me.max_output.load(Ordering::Relaxed);
            let mut result = me.runner.execute(&cmd, cap, &mut sink, signal).await;
            if me.stopping.load(Ordering::Relaxed) && result.outcome == CommandOutcome::Cancelled {
                // Not an operator's cancel: the service is stopping.
                result.outcome = CommandOutcome::Failed;
                result.error = Some(STOPPED_ERROR.into());
            }
            if let Some(e) = write_failed {
                result
                    .error
                    .get_or_insert(format!("output could not be stored completely: {e}"));
            }
            me.running.fetch_sub(1, Ordering::Relaxed);
            tracing::info!(%id, outcome = %result.outcome, exit_code = ?result.exit_code, "command finished");
            if let Err(e) = spool.finish(result) {
                tracing::error!(%id, "cannot store the command's result: {e}");
            }
            me.done(id);
        });
    }

    fn done(&self, id: Uuid) {
        let mut a = self.active();
        a.remove(&id);
        if a.is_empty() {
            self.idle.notify_waiters();
        }
    }

    /// Cancels `id` if it is queued or running; `false` if it is not active.
    pub fn cancel(&self, id: Uuid) -> bool {
        match self.active().get(&id) {
            Some(h) => {
                h.cancel();
                true
            }
            None => false,
        }
    }

    /// Stops everything and waits (at most `wait`) for the results to be
    /// stored. Used on shutdown, so no command is left "started" on disk:
    /// running commands are killed (SIGTERM, grace, SIGKILL) and reported
    /// `failed` with [`STOPPED_ERROR`]; queued ones were never started, are
    /// forgotten, and run when the server delivers them again.
    pub async fn shutdown(&self, wait: Duration) {
        self.stopping.store(true, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let idle = self.idle.notified();
            {
                let a = self.active();
                if a.is_empty() {
                    return;
                }
                for h in a.values() {
                    h.cancel();
                }
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return;
            }
        }
    }
}
