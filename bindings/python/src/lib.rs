//! `rmm._native`: the compiled half of the `rmm` Python package.
//!
//! # Design
//!
//! - Python code imports `rmm`, never this module: the facade in
//!   `python/rmm/` re-exports the classes under their public names
//!   (`rmm.Client`, `rmm.proxmox.Client`, `rmm.channel.latest_for`) and
//!   defines the exception hierarchy (`rmm._errors`, rooted at
//!   `rmm.RmmError`), which this module instantiates.
//! - The work is done by the Rust crates (`rmm-client`, `rmm-proxmox`,
//!   `rmm-core`) through `rmm-bindings-common`, which the Node binding
//!   shares: argument checks, operations, flattened results and error
//!   classification are there. This crate keeps what Python shapes:
//!   argument extraction, pyclasses, the GIL, asyncio and exceptions.
//! - Every operation is written once as a future. The blocking classes run
//!   it on the process's tokio runtime with the GIL released (other Python
//!   threads keep running; Ctrl-C is honoured), the `Async*` classes hand it
//!   to asyncio through pyo3-async-runtimes.
//! - One tokio runtime per process, re-created in a forked child, and
//!   connection pools re-created there too (module `runtime`).
//!
//! The type stubs are `python/rmm/_native.pyi`; the test suite checks them
//! against this module with mypy's `stubtest`.

mod channel;
mod errors;
mod proxmox;
mod runtime;
mod server;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<server::Client>()?;
    m.add_class::<server::AsyncClient>()?;
    m.add_class::<server::Agent>()?;
    m.add_class::<server::CommandResult>()?;
    m.add_class::<server::EnrollmentBundle>()?;
    m.add_class::<proxmox::Upid>()?;
    // Python names `rmm.proxmox.Client` / `rmm.proxmox.AsyncClient`; kept
    // under distinct names here, beside the server's `Client`.
    let py = m.py();
    m.add("ProxmoxClient", py.get_type::<proxmox::ProxmoxClient>())?;
    m.add(
        "AsyncProxmoxClient",
        py.get_type::<proxmox::AsyncProxmoxClient>(),
    )?;
    m.add_class::<proxmox::Version>()?;
    m.add_class::<proxmox::NodeSummary>()?;
    m.add_class::<proxmox::NodeStatus>()?;
    m.add_class::<proxmox::LxcSummary>()?;
    m.add_class::<proxmox::LxcConfig>()?;
    m.add_class::<proxmox::SnapshotInfo>()?;
    m.add_class::<proxmox::StorageSummary>()?;
    m.add_class::<proxmox::TaskStatus>()?;
    m.add_class::<proxmox::TaskOutcome>()?;
    m.add_class::<channel::Release>()?;
    m.add_function(wrap_pyfunction!(channel::latest_for, m)?)?;
    Ok(())
}
