//! The fenced privileged backend: exactly three host operations that the
//! Proxmox API cannot do for an API token, run as root through a
//! [`Runner`] (directly or via `sudo -n`).
//!
//! Architecture invariant: this module never speaks HTTP and the API client
//! never runs a process. Commands are argv vectors, never shell strings, and
//! every argument is validated first.

use std::fmt;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::propstring::{LxcFeatures, NetInterface, RootFs};
use crate::transport::BoxFuture;

/// Output of a finished command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit code; `None` if killed by a signal.
    pub status: Option<i32>,
    /// Standard output, at most the runner's cap.
    pub stdout: Vec<u8>,
    /// Standard error, at most the runner's cap.
    pub stderr: Vec<u8>,
    /// Whether stdout was cut at the cap.
    pub stdout_truncated: bool,
    /// Whether stderr was cut at the cap.
    pub stderr_truncated: bool,
}

impl Output {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// The last ~`max` bytes of stderr as text (for error messages).
    pub fn stderr_tail(&self, max: usize) -> String {
        let start = self.stderr.len().saturating_sub(max);
        String::from_utf8_lossy(&self.stderr[start..])
            .trim()
            .to_owned()
    }
}

/// Why a command could not be run at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The program could not be started (not installed, not executable).
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The io error.
        #[source]
        source: std::io::Error,
    },
    /// Reading output or waiting failed.
    #[error("i/o error running `{program}`: {source}")]
    Io {
        /// The program.
        program: String,
        /// The io error.
        #[source]
        source: std::io::Error,
    },
    /// The command ran longer than allowed and was killed.
    #[error("`{program}` did not finish within {after:?} and was killed")]
    Timeout {
        /// The program.
        program: String,
        /// The limit.
        after: Duration,
    },
}

/// Runs host programs. Implementations take argv, never a shell string.
pub trait Runner: Send + Sync + 'static {
    /// Runs `program` with `args` and no input.
    fn run(&self, program: &str, args: &[String]) -> BoxFuture<'static, Result<Output, RunError>>;

    /// Runs `program` with `args`, writing `input` to its stdin.
    fn run_with_input(
        &self,
        program: &str,
        args: &[String],
        input: &[u8],
    ) -> BoxFuture<'static, Result<Output, RunError>>;
}

/// Default output cap per stream: 1 MiB.
pub const MAX_OUTPUT: usize = 1024 * 1024;

/// Runs programs as the current user (which must be root for the
/// privileged operations). Output is capped per stream, the rest drained
/// and discarded; the child is killed on timeout or when the future is
/// dropped.
#[derive(Debug, Clone)]
pub struct DirectRunner {
    /// Per-stream output cap in bytes.
    pub max_output: usize,
    /// Kill the command after this long.
    pub timeout: Option<Duration>,
}

impl Default for DirectRunner {
    fn default() -> Self {
        DirectRunner {
            max_output: MAX_OUTPUT,
            timeout: Some(Duration::from_secs(600)),
        }
    }
}

async fn read_capped<R: AsyncRead + Unpin>(
    mut r: R,
    cap: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok((out, truncated));
        }
        let room = cap.saturating_sub(out.len());
        if n > room {
            truncated = true;
        }
        out.extend_from_slice(&buf[..n.min(room)]);
    }
}

async fn run_child(
    program: String,
    args: Vec<String>,
    input: Option<Vec<u8>>,
    cap: usize,
) -> Result<Output, RunError> {
    let io_err = |source| RunError::Io {
        program: program.clone(),
        source,
    };
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&args)
        .env("LC_ALL", "C")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| RunError::Spawn {
        program: program.clone(),
        source,
    })?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let write = async move {
        if let (Some(mut stdin), Some(input)) = (stdin, input) {
            stdin.write_all(&input).await?;
            stdin.shutdown().await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let out = async move {
        match stdout {
            Some(s) => read_capped(s, cap).await,
            None => Ok((Vec::new(), false)),
        }
    };
    let err = async move {
        match stderr {
            Some(s) => read_capped(s, cap).await,
            None => Ok((Vec::new(), false)),
        }
    };
    let (w, o, e) = tokio::join!(write, out, err);
    // A child that exits without reading its stdin gives EPIPE; not fatal.
    if let Err(e) = w
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(io_err(e));
    }
    let (stdout, stdout_truncated) = o.map_err(io_err)?;
    let (stderr, stderr_truncated) = e.map_err(io_err)?;
    let status = child.wait().await.map_err(io_err)?;
    Ok(Output {
        status: status.code(),
        stdout,
        stderr,
        stdout_truncated,
        stderr_truncated,
    })
}

impl DirectRunner {
    fn spawn(
        &self,
        program: &str,
        args: &[String],
        input: Option<Vec<u8>>,
    ) -> BoxFuture<'static, Result<Output, RunError>> {
        let program = program.to_owned();
        let args = args.to_vec();
        let cap = self.max_output;
        let timeout = self.timeout;
        Box::pin(async move {
            let fut = run_child(program.clone(), args, input, cap);
            match timeout {
                Some(after) => tokio::time::timeout(after, fut)
                    .await
                    .map_err(|_| RunError::Timeout { program, after })?,
                None => fut.await,
            }
        })
    }
}

impl Runner for DirectRunner {
    fn run(&self, program: &str, args: &[String]) -> BoxFuture<'static, Result<Output, RunError>> {
        self.spawn(program, args, None)
    }

    fn run_with_input(
        &self,
        program: &str,
        args: &[String],
        input: &[u8],
    ) -> BoxFuture<'static, Result<Output, RunError>> {
        self.spawn(program, args, Some(input.to_vec()))
    }
}

/// Runs programs as `sudo -n -- program args...` (never prompts; fails if
/// sudo would need a password). Grant exactly the needed commands in
/// sudoers, e.g. `rmm ALL=(root) NOPASSWD: /usr/sbin/pct, /usr/bin/mount, ...`.
#[derive(Debug, Clone)]
pub struct SudoRunner {
    /// The runner that starts `sudo`.
    pub inner: DirectRunner,
    /// The sudo program (default `sudo`, found via `PATH`).
    pub sudo: String,
}

impl Default for SudoRunner {
    fn default() -> Self {
        SudoRunner {
            inner: DirectRunner::default(),
            sudo: "sudo".to_owned(),
        }
    }
}

impl SudoRunner {
    fn argv(program: &str, args: &[String]) -> Vec<String> {
        let mut v = vec!["-n".to_owned(), "--".to_owned(), program.to_owned()];
        v.extend(args.iter().cloned());
        v
    }
}

impl Runner for SudoRunner {
    fn run(&self, program: &str, args: &[String]) -> BoxFuture<'static, Result<Output, RunError>> {
        self.inner.run(&self.sudo, &SudoRunner::argv(program, args))
    }

    fn run_with_input(
        &self,
        program: &str,
        args: &[String],
        input: &[u8],
    ) -> BoxFuture<'static, Result<Output, RunError>> {
        self.inner
            .run_with_input(&self.sudo, &SudoRunner::argv(program, args), input)
    }
}

/// Errors of the privileged backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrivError {
    /// An argument failed validation; nothing was run.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The argument.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The command could not be run.
    #[error(transparent)]
    Run(#[from] RunError),
    /// `sudo -n` refused because it would need a password.
    #[error("sudo needs a password to run `{program}`; add a NOPASSWD sudoers rule for it")]
    SudoPasswordRequired {
        /// The program.
        program: String,
    },
    /// The command exited unsuccessfully.
    #[error("`{program}` failed with exit status {}: {stderr}", status.map(|s| s.to_string()).unwrap_or_else(|| "signal".into()))]
    CommandFailed {
        /// The program.
        program: String,
        /// Exit code (`None`: killed by a signal).
        status: Option<i32>,
        /// The end of its stderr.
        stderr: String,
    },
    /// The command's output was not what it should be.
    #[error("`{program}` produced unusable output: {reason}")]
    BadOutput {
        /// The program.
        program: String,
        /// Why.
        reason: String,
    },
    /// `/etc/fstab` already mounts this UUID somewhere else.
    #[error("/etc/fstab already mounts UUID={uuid} at {existing}; remove that line first")]
    FstabConflict {
        /// The UUID.
        uuid: String,
        /// Where fstab mounts it.
        existing: String,
    },
}

fn bad(field: &'static str, reason: impl Into<String>) -> PrivError {
    PrivError::InvalidArgument {
        field,
        reason: reason.into(),
    }
}

/// A golden container to create with `pct create`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GoldenLxcSpec {
    /// Container id (100..=999999999).
    pub vmid: u32,
    /// OS template volume, e.g.
    /// `local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst`.
    pub template: String,
    /// Hostname.
    pub hostname: String,
    /// Storage for the root volume.
    pub storage: String,
    /// Root volume size in GiB.
    pub disk_gib: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// CPU cores.
    pub cores: u32,
    /// Bridge for `eth0`.
    pub bridge: String,
    /// `dhcp` or an IPv4 CIDR for `eth0`.
    pub ip: String,
    /// IPv4 gateway when `ip` is static.
    pub gateway: Option<String>,
}

impl GoldenLxcSpec {
    /// A spec with defaults: 8 GiB disk, 1024 MiB, 2 cores, `vmbr0`, DHCP.
    pub fn new(vmid: u32, template: &str, hostname: &str, storage: &str) -> GoldenLxcSpec {
        GoldenLxcSpec {
            vmid,
            template: template.to_owned(),
            hostname: hostname.to_owned(),
            storage: storage.to_owned(),
            disk_gib: 8,
            memory_mib: 1024,
            cores: 2,
            bridge: "vmbr0".to_owned(),
            ip: "dhcp".to_owned(),
            gateway: None,
        }
    }

    fn argv(&self) -> Result<Vec<String>, PrivError> {
        let api = |e: crate::Error| match e {
            crate::Error::InvalidArgument { field, reason } => bad(field, reason),
            other => bad("spec", other.to_string()),
        };
        crate::validate::vmid(self.vmid).map_err(api)?;
        crate::validate::volume_id("template", &self.template).map_err(api)?;
        crate::validate::dns_name("hostname", &self.hostname).map_err(api)?;
        crate::validate::storage_id(&self.storage).map_err(api)?;
        if !(1..=65536).contains(&self.disk_gib) {
            return Err(bad("disk_gib", "must be 1..=65536"));
        }
        if self.memory_mib < 16 {
            return Err(bad("memory_mib", "must be at least 16"));
        }
        if !(1..=8192).contains(&self.cores) {
            return Err(bad("cores", "must be 1..=8192"));
        }
        if self.bridge.is_empty()
            || self.bridge.starts_with('-')
            || !self
                .bridge
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(bad(
                "bridge",
                format!("`{}` is not a bridge name", self.bridge),
            ));
        }
        if self.ip != "dhcp" && !is_ipv4_cidr(&self.ip) {
            return Err(bad(
                "ip",
                format!("`{}` is neither dhcp nor an ipv4 cidr", self.ip),
            ));
        }
        if let Some(gw) = &self.gateway
            && gw.parse::<std::net::Ipv4Addr>().is_err()
        {
            return Err(bad("gateway", format!("`{gw}` is not an ipv4 address")));
        }
        let net = NetInterface {
            name: "eth0".into(),
            bridge: Some(self.bridge.clone()),
            ip: Some(self.ip.clone()),
            gw: self.gateway.clone(),
            ..Default::default()
        };
        let features = LxcFeatures {
            nesting: Some(true),
            keyctl: Some(true),
            ..Default::default()
        };
        // `STORAGE:SIZE` allocates a new volume of SIZE GiB
        let rootfs = RootFs {
            volume: format!("{}:{}", self.storage, self.disk_gib),
            ..Default::default()
        };
        Ok(vec![
            "create".into(),
            self.vmid.to_string(),
            self.template.clone(),
            "--hostname".into(),
            self.hostname.clone(),
            "--rootfs".into(),
            rootfs.to_string(),
            "--memory".into(),
            self.memory_mib.to_string(),
            "--cores".into(),
            self.cores.to_string(),
            "--net0".into(),
            net.to_string(),
            "--unprivileged".into(),
            "1".into(),
            "--features".into(),
            features.to_string(),
        ])
    }
}

fn is_ipv4_cidr(s: &str) -> bool {
    match s.split_once('/') {
        Some((ip, len)) => {
            ip.parse::<std::net::Ipv4Addr>().is_ok()
                && len.parse::<u8>().is_ok_and(|l| l <= 32)
                && !len.starts_with('+')
        }
        None => false,
    }
}

/// What to mount by UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MountRequest {
    /// File system UUID as `blkid` shows it: RFC 4122 form, `XXXX-XXXX`
    /// (FAT) or 16 hex digits (NTFS).
    pub uuid: String,
    /// Absolute target directory (created if missing).
    pub target: String,
    /// File system type (`ext4`, `xfs`, ...); `auto` if not given.
    pub fstype: Option<String>,
    /// Mount options (`noatime,nodev`).
    pub options: Option<String>,
    /// Also add a line to `/etc/fstab` (with `nofail`, so a missing USB disk
    /// never blocks boot).
    pub persist: bool,
}

impl MountRequest {
    /// Mount `uuid` at `target`, not persisted.
    pub fn new(uuid: &str, target: &str) -> MountRequest {
        MountRequest {
            uuid: uuid.to_owned(),
            target: target.to_owned(),
            fstype: None,
            options: None,
            persist: false,
        }
    }

    /// Persist in `/etc/fstab`.
    pub fn persist(mut self, persist: bool) -> Self {
        self.persist = persist;
        self
    }

    fn validate(&self) -> Result<(), PrivError> {
        if !valid_fs_uuid(&self.uuid) {
            return Err(bad(
                "uuid",
                format!("`{}` is not a file system uuid (see blkid)", self.uuid),
            ));
        }
        valid_target(&self.target)?;
        if let Some(t) = &self.fstype
            && (t.is_empty()
                || t.len() > 32
                || !t
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.'))
        {
            return Err(bad("fstype", format!("`{t}` is not a file system type")));
        }
        if let Some(o) = &self.options
            && (o.is_empty()
                || o.starts_with('-')
                || !o
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, ',' | '=' | '_' | '-' | '.')))
        {
            return Err(bad("options", format!("`{o}` is not a mount option list")));
        }
        Ok(())
    }

    fn fstab_line(&self) -> String {
        let opts = match &self.options {
            Some(o) if o.split(',').any(|x| x == "nofail") => o.clone(),
            Some(o) => format!("{o},nofail"),
            None => "defaults,nofail".to_owned(),
        };
        format!(
            "UUID={} {} {} {} 0 0\n",
            self.uuid,
            self.target,
            self.fstype.as_deref().unwrap_or("auto"),
            opts
        )
    }
}

fn valid_fs_uuid(u: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|c| c.is_ascii_hexdigit());
    let parts: Vec<&str> = u.split('-').collect();
    match parts.as_slice() {
        [a, b, c, d, e] => hex(a, 8) && hex(b, 4) && hex(c, 4) && hex(d, 4) && hex(e, 12),
        [a, b] => hex(a, 4) && hex(b, 4),
        [a] => hex(a, 16),
        _ => false,
    }
}

fn valid_target(t: &str) -> Result<(), PrivError> {
    if !t.starts_with('/') || t == "/" {
        return Err(bad(
            "target",
            format!("`{t}` must be an absolute path below /"),
        ));
    }
    if t.len() > 1024 {
        return Err(bad("target", "path too long"));
    }
    if t.split('/').skip(1).any(|seg| seg == ".." || seg == ".") {
        return Err(bad(
            "target",
            format!("`{t}` must not contain `.` or `..` components"),
        ));
    }
    if t.contains("//") || (t.len() > 1 && t.ends_with('/')) {
        return Err(bad("target", format!("`{t}` must be a normalized path")));
    }
    if t.chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\' || c == '#')
    {
        return Err(bad(
            "target",
            format!("`{t}` must not contain whitespace, control characters, `\\` or `#`"),
        ));
    }
    Ok(())
}

/// What [`PrivilegedBackend::mount_by_uuid`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MountOutcome {
    /// It was already mounted at the target.
    pub already_mounted: bool,
    /// A line was added to `/etc/fstab`.
    pub fstab_added: bool,
}

/// Raw `smartctl -a -j` output for one device.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SmartctlReport {
    /// The device.
    pub device: String,
    /// smartctl's exit status bit mask (bits 2-7 describe the disk, not a
    /// failure to read it).
    pub exit_status: i32,
    /// The JSON report.
    pub json: serde_json::Value,
}

impl SmartctlReport {
    /// Bit 3: the disk reports itself failing.
    pub fn disk_failing(&self) -> bool {
        self.exit_status & (1 << 3) != 0
    }

    /// Whether `smart_status.passed` is true in the report.
    pub fn passed(&self) -> Option<bool> {
        self.json
            .get("smart_status")
            .and_then(|s| s.get("passed"))
            .and_then(serde_json::Value::as_bool)
    }
}

/// `sensors -j` plus raw SMART for each requested disk.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HardwareHealth {
    /// The `sensors -j` JSON (chips -> features -> readings).
    pub sensors: serde_json::Value,
    /// One report per requested disk.
    pub smart: Vec<SmartctlReport>,
}

fn validate_device(d: &str) -> Result<(), PrivError> {
    let ok = d.starts_with("/dev/")
        && d.len() > 5
        && d.len() <= 255
        && !d.contains("//")
        && !d.split('/').any(|s| s == ".." || s == ".")
        && d[5..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | ':' | '.'));
    if ok {
        Ok(())
    } else {
        Err(bad("device", format!("`{d}` is not a /dev path")))
    }
}

/// The privileged backend. Holds a [`Runner`] and nothing that can speak
/// HTTP.
pub struct PrivilegedBackend {
    runner: Box<dyn Runner>,
}

impl fmt::Debug for PrivilegedBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivilegedBackend").finish_non_exhaustive()
    }
}

fn json_output(program: &str, out: &Output) -> Result<serde_json::Value, PrivError> {
    if out.stdout_truncated {
        return Err(PrivError::BadOutput {
            program: program.to_owned(),
            reason: "output exceeded the 1 MiB cap".into(),
        });
    }
    serde_json::from_slice(&out.stdout).map_err(|e| PrivError::BadOutput {
        program: program.to_owned(),
        reason: format!("not json: {e}"),
    })
}

impl PrivilegedBackend {
    /// A backend over `runner` ([`DirectRunner`] as root, or [`SudoRunner`]).
    pub fn new(runner: impl Runner) -> PrivilegedBackend {
        PrivilegedBackend {
            runner: Box::new(runner),
        }
    }

    /// A backend for the configured mode; `None` when disabled.
    pub fn from_mode(mode: crate::PrivilegedMode) -> Option<PrivilegedBackend> {
        match mode {
            crate::PrivilegedMode::Direct => Some(PrivilegedBackend::new(DirectRunner::default())),
            crate::PrivilegedMode::Sudo => Some(PrivilegedBackend::new(SudoRunner::default())),
            _ => None,
        }
    }

    async fn checked(&self, program: &str, args: Vec<String>) -> Result<Output, PrivError> {
        let out = self.runner.run(program, &args).await?;
        check_status(program, out)
    }

    /// Creates a golden container with `pct create ... --features
    /// nesting=1,keyctl=1` (unprivileged, `eth0` on the bridge). It is
    /// created stopped; start it through the API.
    ///
    /// Why not the API: Proxmox lets only the `root@pam` user itself set
    /// feature flags other than `nesting` ("changing feature flags (except
    /// nesting) is only allowed for root@pam"), and an API token is never
    /// `root@pam` — not even `root@pam!token`. `pct` on the host runs as
    /// root@pam.
    pub async fn create_golden_lxc(&self, spec: &GoldenLxcSpec) -> Result<Output, PrivError> {
        let args = spec.argv()?;
        self.checked("pct", args).await
    }

    /// Mounts the file system with `uuid` at `target` (creating the
    /// directory), and with `persist` adds a `nofail` line to `/etc/fstab`
    /// unless an identical one exists. Idempotent: an existing mount at the
    /// target is left alone.
    ///
    /// Why not the API: the Proxmox API can only create *new* file systems
    /// on empty disks (`/nodes/{node}/disks/directory` formats the disk);
    /// there is no call to mount an existing one, such as a USB backup disk.
    pub async fn mount_by_uuid(&self, request: &MountRequest) -> Result<MountOutcome, PrivError> {
        request.validate()?;
        let source = format!("UUID={}", request.uuid);
        // findmnt exits 1 when nothing matches
        let found = self
            .runner
            .run(
                "findmnt",
                &[
                    "-rn".into(),
                    "-o".into(),
                    "TARGET".into(),
                    "--source".into(),
                    source.clone(),
                ],
            )
            .await?;
        let already_mounted = found.success()
            && String::from_utf8_lossy(&found.stdout)
                .lines()
                .any(|l| l.trim() == request.target);
        if !already_mounted {
            self.checked(
                "mkdir",
                vec!["-p".into(), "--".into(), request.target.clone()],
            )
            .await?;
            let mut args = Vec::new();
            if let Some(t) = &request.fstype {
                args.extend(["-t".to_owned(), t.clone()]);
            }
            if let Some(o) = &request.options {
                args.extend(["-o".to_owned(), o.clone()]);
            }
            args.extend([
                "--source".to_owned(),
                source.clone(),
                "--target".to_owned(),
                request.target.clone(),
            ]);
            self.checked("mount", args).await?;
        }
        let mut fstab_added = false;
        if request.persist {
            let fstab = self.checked("cat", vec!["/etc/fstab".into()]).await?;
            let text = String::from_utf8_lossy(&fstab.stdout);
            let mut present = false;
            for line in text.lines() {
                let mut fields = line.split_whitespace();
                let (Some(spec), Some(target)) = (fields.next(), fields.next()) else {
                    continue;
                };
                if spec.starts_with('#') || spec != source {
                    continue;
                }
                if target == request.target {
                    present = true;
                } else {
                    return Err(PrivError::FstabConflict {
                        uuid: request.uuid.clone(),
                        existing: target.to_owned(),
                    });
                }
            }
            if !present {
                let out = self
                    .runner
                    .run_with_input(
                        "tee",
                        &["-a".into(), "/etc/fstab".into()],
                        request.fstab_line().as_bytes(),
                    )
                    .await?;
                check_status("tee", out)?;
                fstab_added = true;
            }
        }
        Ok(MountOutcome {
            already_mounted,
            fstab_added,
        })
    }

    /// Reads hardware sensors (`sensors -j`) and raw SMART data
    /// (`smartctl -a -j DEVICE`) for each of `devices`.
    ///
    /// smartctl's exit status is a bit mask: bits 0-1 mean it could not
    /// read the device (an error here), bits 2-7 describe the disk's state
    /// and still come with a full JSON report (success, reported in
    /// [`SmartctlReport::exit_status`]).
    ///
    /// Why not the API: Proxmox has no sensors endpoint at all, and
    /// `/nodes/{node}/disks/smart` returns only a reduced attribute table
    /// (no raw JSON, no NVMe log pages, no exit status bits).
    pub async fn read_hardware_health(
        &self,
        devices: &[&str],
    ) -> Result<HardwareHealth, PrivError> {
        for d in devices {
            validate_device(d)?;
        }
        let out = self.runner.run("sensors", &["-j".into()]).await?;
        // sensors exits non-zero when one chip fails but still prints the rest
        let sensors = match json_output("sensors", &out) {
            Ok(v) => v,
            Err(e) => {
                check_status("sensors", out)?;
                return Err(e);
            }
        };
        let mut smart = Vec::new();
        for d in devices {
            let out = self
                .runner
                .run("smartctl", &["-a".into(), "-j".into(), (*d).to_owned()])
                .await?;
            let code = out.status.unwrap_or(-1);
            if is_sudo_refusal(&out) {
                return Err(PrivError::SudoPasswordRequired {
                    program: "smartctl".into(),
                });
            }
            let json = match json_output("smartctl", &out) {
                Ok(j) => j,
                Err(e) => {
                    if out.success() {
                        return Err(e);
                    }
                    return Err(PrivError::CommandFailed {
                        program: "smartctl".into(),
                        status: out.status,
                        stderr: out.stderr_tail(2000),
                    });
                }
            };
            if code < 0 || code & 0b11 != 0 {
                let msg = json
                    .pointer("/smartctl/messages")
                    .and_then(|m| m.as_array())
                    .map(|m| {
                        m.iter()
                            .filter_map(|x| x.get("string").and_then(|s| s.as_str()))
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| out.stderr_tail(2000));
                return Err(PrivError::CommandFailed {
                    program: "smartctl".into(),
                    status: out.status,
                    stderr: msg,
                });
            }
            smart.push(SmartctlReport {
                device: (*d).to_owned(),
                exit_status: code,
                json,
            });
        }
        Ok(HardwareHealth { sensors, smart })
    }
}

fn is_sudo_refusal(out: &Output) -> bool {
    out.status == Some(1)
        && String::from_utf8_lossy(&out.stderr).contains("sudo: a password is required")
}

fn check_status(program: &str, out: Output) -> Result<Output, PrivError> {
    if out.success() {
        return Ok(out);
    }
    if is_sudo_refusal(&out) {
        return Err(PrivError::SudoPasswordRequired {
            program: program.to_owned(),
        });
    }
    Err(PrivError::CommandFailed {
        program: program.to_owned(),
        status: out.status,
        stderr: out.stderr_tail(2000),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_lxc_argv() {
        let spec = GoldenLxcSpec::new(
            9000,
            "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
            "golden",
            "local-lvm",
        );
        let argv = spec.argv().unwrap();
        assert_eq!(
            argv,
            [
                "create",
                "9000",
                "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
                "--hostname",
                "golden",
                "--rootfs",
                "local-lvm:8",
                "--memory",
                "1024",
                "--cores",
                "2",
                "--net0",
                "name=eth0,bridge=vmbr0,ip=dhcp",
                "--unprivileged",
                "1",
                "--features",
                "keyctl=1,nesting=1",
            ]
        );
        let mut s = spec.clone();
        s.ip = "10.0.0.5/24".into();
        s.gateway = Some("10.0.0.1".into());
        assert!(
            s.argv()
                .unwrap()
                .contains(&"name=eth0,bridge=vmbr0,gw=10.0.0.1,ip=10.0.0.5/24".to_owned())
        );
    }

    #[test]
    fn golden_lxc_rejects_bad_arguments() {
        let ok = GoldenLxcSpec::new(9000, "local:vztmpl/x.tar.zst", "golden", "local-lvm");
        let mut cases = Vec::new();
        let mut s = ok.clone();
        s.vmid = 42;
        cases.push(("vmid", s));
        let mut s = ok.clone();
        s.hostname = "--help".into();
        cases.push(("hostname", s));
        let mut s = ok.clone();
        s.template = "x; rm -rf /".into();
        cases.push(("template", s));
        let mut s = ok.clone();
        s.bridge = "vmbr0,firewall=0".into();
        cases.push(("bridge", s));
        let mut s = ok.clone();
        s.ip = "10.0.0.300/24".into();
        cases.push(("ip", s));
        let mut s = ok.clone();
        s.storage = "-local".into();
        cases.push(("storage", s));
        for (field, spec) in cases {
            match spec.argv() {
                Err(PrivError::InvalidArgument { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn mount_validation() {
        for good in [
            "0a1b2c3d-4e5f-6789-abcd-ef0123456789",
            "ABCD-1234",
            "0123456789ABCDEF",
        ] {
            assert!(
                MountRequest::new(good, "/mnt/usb").validate().is_ok(),
                "{good}"
            );
        }
        for bad_uuid in [
            "",
            "xyz",
            "0a1b2c3d-4e5f-6789-abcd",
            "ABCD-12345",
            "../../etc",
        ] {
            assert!(
                MountRequest::new(bad_uuid, "/mnt/usb").validate().is_err(),
                "{bad_uuid}"
            );
        }
        for bad_target in [
            "mnt/usb",
            "/",
            "/mnt/../etc",
            "/mnt/./x",
            "/mnt//x",
            "/mnt/x/",
            "/mnt/a b",
            "/mnt/#x",
            "/mnt/x\n/etc",
        ] {
            assert!(
                MountRequest::new("ABCD-1234", bad_target)
                    .validate()
                    .is_err(),
                "{bad_target:?}"
            );
        }
        let mut r = MountRequest::new("ABCD-1234", "/mnt/usb");
        r.options = Some("-oremount".into());
        assert!(r.validate().is_err());
        r.options = Some("noatime,uid=1000".into());
        r.fstype = Some("vfat".into());
        assert!(r.validate().is_ok());
        assert_eq!(
            r.fstab_line(),
            "UUID=ABCD-1234 /mnt/usb vfat noatime,uid=1000,nofail 0 0\n"
        );
    }

    #[test]
    fn devices_are_validated() {
        assert!(validate_device("/dev/sda").is_ok());
        assert!(validate_device("/dev/nvme0n1").is_ok());
        assert!(validate_device("/dev/disk/by-id/ata-WDC_WD40-1").is_ok());
        for d in [
            "/dev/",
            "/etc/passwd",
            "/dev/../etc/passwd",
            "sda",
            "/dev/sda;ls",
            "/dev/a b",
        ] {
            assert!(validate_device(d).is_err(), "{d}");
        }
    }

    #[test]
    fn sudo_wraps_argv() {
        assert_eq!(
            SudoRunner::argv("pct", &["list".to_owned()]),
            ["-n", "--", "pct", "list"]
        );
    }
}
