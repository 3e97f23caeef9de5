//! The one tokio runtime of the process, fork safety, and the two ways a
//! Rust future becomes a Python call: blocking ([`block_on`], GIL released)
//! and awaitable ([`awaitable`], an asyncio future).
//!
//! Fork safety: a forked child inherits the parent's memory but none of its
//! threads, so the parent's runtime (and every connection pool bound to it)
//! is dead weight there. The runtime is therefore keyed by process id: the
//! first call in a new process builds a fresh runtime, and the old one is
//! leaked, never dropped (dropping would wait for worker threads that do not
//! exist in the child). Clients use [`PerProcess`] for the same reason.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3_async_runtimes::TaskLocals;
use pyo3_async_runtimes::generic::{self, ContextExt, JoinError, Runtime};
use tokio::runtime::Runtime as TokioRuntime;

use crate::errors::{ErrorInfo, IntoPyErr};

static RUNTIME: Mutex<Option<(u32, &'static TokioRuntime)>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The tokio runtime of this process, created on first use (and again, once,
/// in a forked child).
pub(crate) fn runtime() -> &'static TokioRuntime {
    let pid = std::process::id();
    let mut slot = lock(&RUNTIME);
    if let Some((owner, rt)) = *slot
        && owner == pid
    {
        return rt;
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get().clamp(1, 4))
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("rmm-tokio")
        .enable_all()
        .build()
        // Failing to create threads at all leaves nothing to report to.
        .unwrap_or_else(|e| panic!("rmm: cannot start the tokio runtime: {e}"));
    let rt: &'static TokioRuntime = Box::leak(Box::new(rt));
    *slot = Some((pid, rt));
    rt
}

/// A value bound to the process that created it (a connection pool), made
/// again from a recipe after a fork. The stale value is leaked: its
/// connections belong to the parent's runtime.
pub(crate) struct PerProcess<T> {
    slot: Mutex<(u32, Option<T>)>,
}

impl<T: Clone> PerProcess<T> {
    /// Holds `value`, made in this process.
    pub(crate) fn new(value: T) -> Self {
        PerProcess {
            slot: Mutex::new((std::process::id(), Some(value))),
        }
    }

    /// The value for this process; `remake` builds a new one from the stale
    /// one after a fork.
    pub(crate) fn get(
        &self,
        remake: impl FnOnce(&T) -> Result<T, ErrorInfo>,
    ) -> Result<T, ErrorInfo> {
        let pid = std::process::id();
        let mut slot = lock(&self.slot);
        if slot.0 != pid {
            let stale = slot.1.take();
            let fresh = match &stale {
                Some(old) => remake(old)?,
                None => return Err(ErrorInfo::internal("client state lost")),
            };
            std::mem::forget(stale);
            *slot = (pid, Some(fresh));
        }
        slot.1
            .clone()
            .ok_or_else(|| ErrorInfo::internal("client state lost"))
    }
}

/// Runs `fut` on the runtime with the GIL released, checking for signals
/// (Ctrl-C) every 100 ms; a pending `KeyboardInterrupt` drops the future and
/// is raised.
pub(crate) fn block_on<T, F>(py: Python<'_>, fut: F) -> PyResult<T>
where
    T: Send,
    F: Future<Output = Result<T, ErrorInfo>> + Send,
{
    enum Outcome<T> {
        Done(Result<T, ErrorInfo>),
        Interrupted(PyErr),
    }
    let rt = runtime();
    let outcome = py.detach(|| {
        rt.block_on(async {
            tokio::pin!(fut);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.tick().await;
            loop {
                tokio::select! {
                    r = &mut fut => return Outcome::Done(r),
                    _ = tick.tick() => {
                        if let Err(e) = Python::attach(|py| py.check_signals()) {
                            return Outcome::Interrupted(e);
                        }
                    }
                }
            }
        })
    });
    match outcome {
        Outcome::Done(r) => r.map_err(|e| e.into_pyerr(py)),
        Outcome::Interrupted(e) => Err(e),
    }
}

/// Turns `fut` into an asyncio awaitable on the running event loop; it runs
/// on the process runtime and cancelling the awaitable drops it.
pub(crate) fn awaitable<'py, T, F>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    T: for<'a> IntoPyObject<'a> + Send + 'static,
    F: Future<Output = Result<T, ErrorInfo>> + Send + 'static,
{
    generic::future_into_py::<ForkSafeTokio, _, T>(py, async move {
        match fut.await {
            Ok(v) => Ok(v),
            // Building the exception needs the interpreter; do it off the
            // runtime's worker threads.
            Err(info) => {
                Err(
                    tokio::task::spawn_blocking(move || Python::attach(|py| info.into_pyerr(py)))
                        .await
                        .unwrap_or_else(|e| {
                            pyo3::exceptions::PyRuntimeError::new_err(format!("rmm: {e}"))
                        }),
                )
            }
        }
    })
}

/// pyo3-async-runtimes' bridge on our fork-safe runtime (its own
/// `tokio-runtime` feature keeps one runtime in a process-wide `OnceLock`
/// that a forked child could never replace).
struct ForkSafeTokio;

/// A tokio join error, as pyo3-async-runtimes wants it.
struct TokioJoinError(tokio::task::JoinError);

impl JoinError for TokioJoinError {
    fn is_panic(&self) -> bool {
        self.0.is_panic()
    }

    fn into_panic(self) -> Box<dyn std::any::Any + Send + 'static> {
        self.0.into_panic()
    }
}

tokio::task_local! {
    static TASK_LOCALS: TaskLocals;
}

type JoinFuture = Pin<Box<dyn Future<Output = Result<(), TokioJoinError>> + Send>>;

impl Runtime for ForkSafeTokio {
    type JoinError = TokioJoinError;
    type JoinHandle = JoinFuture;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = runtime().spawn(fut);
        Box::pin(async move { handle.await.map_err(TokioJoinError) })
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        let handle = runtime().spawn_blocking(f);
        Box::pin(async move { handle.await.map_err(TokioJoinError) })
    }
}

impl ContextExt for ForkSafeTokio {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        Box::pin(TASK_LOCALS.scope(locals, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS.try_with(Clone::clone).ok()
    }
}
