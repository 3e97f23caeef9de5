//! Typed Proxmox VE client with a fenced privileged backend.
//!
//! # Design
//!
//! Two halves that never meet:
//!
//! - [`Client`] — an async, API-token-authenticated client for the Proxmox
//!   VE HTTP API. Typed reads (version, nodes, node status, containers,
//!   container config with parsed property strings, storage, SMART) and
//!   typed mutations that return a [`Upid`] (restore, vzdump, snapshot,
//!   rollback, delete snapshot, start, stop; config updates are applied
//!   synchronously by Proxmox). [`Client::wait_task`] polls a task on its
//!   own node with backoff and a deadline and turns a failed task into
//!   [`Error::TaskFailed`] with the tail of its log. The client sends
//!   requests only through the [`Transport`] seam (the real one is
//!   [`HttpTransport`]: reqwest + rustls with the `ring` provider) and takes
//!   time from an injected [`Clock`], so tests run without sockets or
//!   delays where they want to.
//! - [`PrivilegedBackend`] — exactly three host operations an API token
//!   cannot perform (golden LXC with `keyctl`, mounting a disk by UUID,
//!   raw sensors/SMART), run as argv through a [`Runner`] (directly as root
//!   or via `sudo -n`), with validated arguments and output capped at
//!   1 MiB per stream.
//!
//! Architecture invariant: the client never runs a process and the
//! privileged backend never speaks HTTP; neither type holds the other's
//! seam, and the integration tests prove it with mocks of both.
//!
//! Proxmox's quirks live in the types: the `data` envelope, booleans as
//! `0`/`1`, numbers sent as strings, unknown fields (all tolerated),
//! readings the schema leaves loosely typed ([`Lenient`]: kept raw, parsed
//! when possible, never failing a read), and
//! property strings such as `net0: name=eth0,bridge=vmbr0,ip=dhcp`
//! ([`NetInterface`], [`RootFs`], [`MountPoint`], [`LxcFeatures`]) which are
//! parsed and printed back in Proxmox's own canonical order.
//!
//! Errors map Proxmox responses to actionable variants: a 403
//! `Permission check failed (/vms/100, VM.Snapshot)` becomes
//! [`Error::PermissionDenied`] naming the path and privilege, root@pam-only
//! refusals become [`Error::RequiresRootPam`], HTTP 595-599 become
//! [`Error::NodeUnreachable`]. Only GETs and connect failures are retried.
//! [`Client::check_privileges`] asks `/access/permissions` up front, so a
//! tool can refuse to start instead of failing halfway.
//!
//! TLS trust is one of [`TlsMode`]: pin the leaf certificate's SHA-256
//! fingerprint (the usual choice for self-signed Proxmox hosts), a CA file,
//! the system trust store, or an explicit, logged `insecure`.
//!
//! # Example
//!
//! ```no_run
//! use rmm_proxmox::{Client, Config, WaitOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // JSON file plus RMM_PVE_* environment overrides
//! let config = Config::load(Some("pve.json".as_ref()))?;
//! let client = Client::new(&config)?;
//!
//! let missing = client
//!     .check_privileges(&[("/vms/100", "VM.Snapshot"), ("/vms/100", "VM.Audit")])
//!     .await?;
//! if let Some(m) = missing.first() {
//!     return Err(format!("the token lacks {m}").into());
//! }
//!
//! let cfg = client.lxc_config("pve1", 100).await?;
//! println!("net0 = {:?}", cfg.net.get(&0));
//!
//! let upid = client.snapshot_lxc("pve1", 100, "pre-upgrade", None).await?;
//! let done = client.wait_task(&upid, WaitOptions::default()).await?;
//! println!("snapshot done with {} warnings", done.warnings);
//! # Ok(())
//! # }
//! ```

mod client;
mod config;
mod de;
mod error;
mod lenient;
mod privileged;
mod propstring;
mod requests;
pub mod selftest;
mod task;
mod tls;
mod transport;
mod types;
mod upid;
mod validate;

#[cfg(feature = "mock-server")]
pub mod mock;

pub use client::{Client, Clock, Endpoint, MissingPrivilege, RetryPolicy, TokioClock};
pub use config::{ApiToken, Config, ConfigError, PrivilegedMode, TokenId, TokenSecret};
pub use error::{Error, TransportError, TransportErrorKind};
pub use lenient::Lenient;
pub use privileged::{
    DirectRunner, GoldenLxcSpec, HardwareHealth, MAX_OUTPUT, MountOutcome, MountRequest, Output,
    PrivError, PrivilegedBackend, RunError, Runner, SmartctlReport, SudoRunner,
};
pub use propstring::{
    DiskSize, LxcFeatures, MountPoint, NetInterface, PropertyStringError, RootFs,
};
pub use requests::{BackupMode, Compression, LxcConfigUpdate, RestoreRequest, VzdumpRequest};
pub use task::{TaskOutcome, WaitOptions};
pub use tls::{Fingerprint, FingerprintParseError, PinMismatch, TlsMode, client_config};
pub use transport::{
    ApiRequest, ApiResponse, BoxFuture, HttpTransport, Method, Transport, form_encode,
};
pub use types::{
    ConfigDecodeError, CpuInfo, FsUsage, GuestState, LxcConfig, LxcSummary, MemoryUsage, NodeState,
    NodeStatus, NodeSummary, SmartAttribute, SmartData, SnapshotInfo, StorageSummary, TaskLogLine,
    TaskState, TaskStatus, Version,
};
pub use upid::{Upid, UpidParseError};
pub use validate::VMID_RANGE;
