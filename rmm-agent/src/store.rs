//! The exactly-once command store, on disk in `<state-dir>/commands`.
//!
//! ```text
//! commands/finished.log          one CommandResult (JSON) per line: every
//!                                finished command, the newest `capacity`
//!                                kept (compacted atomically)
//! commands/<id>/started          written and fsynced before the process
//!                                is spawned
//! commands/<id>/stdout, stderr   the output text sent so far (the spool)
//! commands/<id>/result.json      the final result (atomic write)
//! ```
//!
//! A `<id>/` directory exists while the server has not acknowledged the
//! command (`command_ack`); the ack removes it. The log line is written
//! when the command finishes and outlives the ack, so a re-delivered
//! command is answered with its stored result and never re-run.
//!
//! Restart rule: a directory with `started` but no `result.json` belongs to
//! a command that was running when the agent died. Its process may or may
//! not have had its effect, so it is **not** run again: it is finished as
//! `failed` with the error [`RESTARTED_ERROR`], keeping the output spooled
//! so far, and reported like any other result.
//!
//! Output files are not fsynced per chunk (a killed agent loses nothing
//! the kernel has accepted); they are fsynced once, before the result is
//! written, so a result never claims more output than survives a power
//! loss.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rmm_core::protocol::{CommandOutcome, CommandResult, OutputStream};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::fsutil;

/// The error of a command that was running when the agent stopped.
pub const RESTARTED_ERROR: &str =
    "agent restarted while the command was running; it was not run again";

/// Finished command ids remembered by default.
pub const DEFAULT_CAPACITY: usize = 10_000;

const LOG: &str = "finished.log";
const STARTED: &str = "started";
const RESULT: &str = "result.json";
const MAX_RESULT_BYTES: u64 = 64 * 1024;

fn stream_file(s: OutputStream) -> &'static str {
    match s {
        OutputStream::Stdout => "stdout",
        OutputStream::Stderr => "stderr",
    }
}

/// A command the server has not acknowledged yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// Order of arrival (results are re-sent in this order).
    pub seq: u64,
    /// When it was marked started, if it was.
    pub started_at_ms: Option<u64>,
    /// Spooled stdout bytes.
    pub stdout_len: u64,
    /// Spooled stderr bytes.
    pub stderr_len: u64,
    /// The final result, once finished.
    pub result: Option<CommandResult>,
}

impl Pending {
    /// Spooled bytes of one stream.
    pub fn len(&self, s: OutputStream) -> u64 {
        match s {
            OutputStream::Stdout => self.stdout_len,
            OutputStream::Stderr => self.stderr_len,
        }
    }
}

/// What the store knows about a command id.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Never seen (or forgotten past the capacity).
    Unknown,
    /// Started or finished, not acknowledged.
    Pending(Pending),
    /// Finished and acknowledged; the stored result.
    Acked(CommandResult),
}

struct Inner {
    pending: HashMap<Uuid, Pending>,
    finished: HashSet<Uuid>,
    order: VecDeque<Uuid>,
    log_lines: usize,
    next_seq: u64,
}

/// The store. Cheap to share (`Arc`); every change wakes [`Store::changed`].
pub struct Store {
    dir: PathBuf,
    capacity: usize,
    inner: Mutex<Inner>,
    changed: Arc<Notify>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// An open output spool of one running command.
#[derive(Debug)]
pub struct Spool {
    id: Uuid,
    stdout: File,
    stderr: File,
    store: Arc<Store>,
}

fn io_other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl Store {
    /// Opens the store in `dir` (created 0700), recovering after a crash:
    /// commands started but unfinished are finished as failed with
    /// [`RESTARTED_ERROR`]. Returns the ids so recovered.
    pub fn open(dir: &Path, capacity: usize, now_ms: u64) -> io::Result<(Arc<Store>, Vec<Uuid>)> {
        fsutil::ensure_private_dir(dir)?;
        let capacity = capacity.max(1);
        let mut order = VecDeque::new();
        let mut finished = HashSet::new();
        let mut log_lines = 0;
        match File::open(dir.join(LOG)) {
            Ok(f) => {
                for line in io::BufReader::new(f).lines() {
                    let line = line?;
                    // A torn last line (crash mid-append) is skipped.
                    let Ok(r) = serde_json::from_str::<CommandResult>(&line) else {
                        continue;
                    };
                    log_lines += 1;
                    if finished.insert(r.command_id) {
                        order.push_back(r.command_id);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        while order.len() > capacity {
            if let Some(old) = order.pop_front() {
                finished.remove(&old);
            }
        }
        let store = Arc::new(Store {
            dir: dir.to_owned(),
            capacity,
            inner: Mutex::new(Inner {
                pending: HashMap::new(),
                finished,
                order,
                log_lines,
                next_seq: 0,
            }),
            changed: Arc::new(Notify::new()),
        });
        let mut recovered = Vec::new();
        let mut dirs: Vec<(std::time::SystemTime, Uuid)> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| Uuid::parse_str(n).ok()) else {
                continue;
            };
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let mtime = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            dirs.push((mtime, id));
        }
        dirs.sort();
        for (_, id) in dirs {
            let cdir = dir.join(id.to_string());
            let stdout_len = utf8_len(&cdir.join("stdout"))?;
            let stderr_len = utf8_len(&cdir.join("stderr"))?;
            let started_at_ms = fs::read_to_string(cdir.join(STARTED))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok());
            let result = match fsutil::read_bounded(&cdir.join(RESULT), MAX_RESULT_BYTES) {
                Ok(b) => serde_json::from_slice::<CommandResult>(&b).ok(),
                Err(_) => None,
            };
            let result = match result {
                Some(r) => r,
                None if started_at_ms.is_none() && !cdir.join(STARTED).exists() => {
                    // Created but never marked started: nothing ran.
                    fs::remove_dir_all(&cdir)?;
                    continue;
                }
                None => {
                    recovered.push(id);
                    CommandResult {
                        command_id: id,
                        outcome: CommandOutcome::Failed,
                        exit_code: None,
                        signal: None,
                        error: Some(RESTARTED_ERROR.into()),
                        stdout_bytes: stdout_len,
                        stderr_bytes: stderr_len,
                        stdout_truncated: false,
                        stderr_truncated: false,
                        started_at_ms,
                        finished_at_ms: now_ms,
                    }
                }
            };
            let mut result = result;
            // The spool is the truth for what can be re-sent.
            result.stdout_bytes = result.stdout_bytes.min(stdout_len);
            result.stderr_bytes = result.stderr_bytes.min(stderr_len);
            {
                let mut g = store.lock();
                let seq = g.next_seq;
                g.next_seq += 1;
                g.pending.insert(
                    id,
                    Pending {
                        seq,
                        started_at_ms,
                        stdout_len,
                        stderr_len,
                        result: None,
                    },
                );
            }
            store.finish_inner(id, result)?;
        }
        Ok((store, recovered))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The notifier woken on every change (output, result, ack).
    pub fn changed(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// What is known about `id`.
    pub fn lookup(&self, id: Uuid) -> Lookup {
        let known = {
            let g = self.lock();
            if let Some(p) = g.pending.get(&id) {
                return Lookup::Pending(p.clone());
            }
            g.finished.contains(&id)
        };
        if known && let Ok(Some(r)) = self.find_logged(id) {
            return Lookup::Acked(r);
        }
        Lookup::Unknown
    }

    fn find_logged(&self, id: Uuid) -> io::Result<Option<CommandResult>> {
        let f = File::open(self.dir.join(LOG))?;
        let mut found = None;
        for line in io::BufReader::new(f).lines() {
            let line = line?;
            if !line.contains(&id.to_string()) {
                continue;
            }
            if let Ok(r) = serde_json::from_str::<CommandResult>(&line)
                && r.command_id == id
            {
                found = Some(r);
            }
        }
        Ok(found)
    }

    /// Every unacknowledged command, in arrival order.
    pub fn pending(&self) -> Vec<(Uuid, Pending)> {
        let g = self.lock();
        let mut v: Vec<_> = g.pending.iter().map(|(k, p)| (*k, p.clone())).collect();
        v.sort_by_key(|(_, p)| p.seq);
        v
    }

    /// Marks `id` started, durably, before its process is spawned, and
    /// opens its output spool.
    pub fn begin(self: &Arc<Self>, id: Uuid, started_at_ms: u64) -> io::Result<Spool> {
        let cdir = self.dir.join(id.to_string());
        fsutil::ensure_private_dir(&cdir)?;
        let open = |name: &str| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(fsutil::FILE_MODE)
                .open(cdir.join(name))
        };
        let stdout = open("stdout")?;
        let stderr = open("stderr")?;
        fsutil::write_atomic(
            &cdir.join(STARTED),
            started_at_ms.to_string().as_bytes(),
            fsutil::FILE_MODE,
        )?;
        fsutil::sync_dir(&self.dir)?;
        {
            let mut g = self.lock();
            let seq = g.next_seq;
            g.next_seq += 1;
            g.pending.insert(
                id,
                Pending {
                    seq,
                    started_at_ms: Some(started_at_ms),
                    stdout_len: 0,
                    stderr_len: 0,
                    result: None,
                },
            );
        }
        self.changed.notify_one();
        Ok(Spool {
            id,
            stdout,
            stderr,
            store: self.clone(),
        })
    }

    /// Records the result of a command that never started (cancelled while
    /// queued, or refused before start), so a re-delivery is answered, not
    /// run.
    pub fn record_unstarted(&self, result: CommandResult) -> io::Result<()> {
        let id = result.command_id;
        fsutil::ensure_private_dir(&self.dir.join(id.to_string()))?;
        {
            let mut g = self.lock();
            let seq = g.next_seq;
            g.next_seq += 1;
            g.pending.entry(id).or_insert(Pending {
                seq,
                started_at_ms: None,
                stdout_len: 0,
                stderr_len: 0,
                result: None,
            });
        }
        self.finish_inner(id, result)
    }

    fn finish_inner(&self, id: Uuid, result: CommandResult) -> io::Result<()> {
        let cdir = self.dir.join(id.to_string());
        let json = serde_json::to_vec(&result).map_err(io_other)?;
        fsutil::write_atomic(&cdir.join(RESULT), &json, fsutil::FILE_MODE)?;
        let newly = {
            let g = self.lock();
            !g.finished.contains(&id)
        };
        if newly {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(fsutil::FILE_MODE)
                .open(self.dir.join(LOG))?;
            let mut line = json.clone();
            line.push(b'\n');
            f.write_all(&line)?;
            f.sync_data()?;
        }
        let compact = {
            let mut g = self.lock();
            if newly {
                g.finished.insert(id);
                g.order.push_back(id);
                g.log_lines += 1;
                while g.order.len() > self.capacity {
                    if let Some(old) = g.order.pop_front() {
                        g.finished.remove(&old);
                    }
                }
            }
            if let Some(p) = g.pending.get_mut(&id) {
                p.result = Some(result);
            }
            g.log_lines > self.capacity * 2
        };
        if compact {
            self.compact()?;
        }
        self.changed.notify_one();
        Ok(())
    }

    /// Rewrites the log with only the remembered ids (atomic).
    fn compact(&self) -> io::Result<()> {
        let keep: HashSet<Uuid> = self.lock().finished.clone();
        let mut out = Vec::new();
        let mut n = 0;
        let f = File::open(self.dir.join(LOG))?;
        for line in io::BufReader::new(f).lines() {
            let line = line?;
            if let Ok(r) = serde_json::from_str::<CommandResult>(&line)
                && keep.contains(&r.command_id)
            {
                out.extend_from_slice(line.as_bytes());
                out.push(b'\n');
                n += 1;
            }
        }
        fsutil::write_atomic(&self.dir.join(LOG), &out, fsutil::FILE_MODE)?;
        self.lock().log_lines = n;
        Ok(())
    }

    /// The server acknowledged `id`'s result: its spool is dropped. An ack
    /// for a command without a result is ignored (returns `false`).
    pub fn ack(&self, id: Uuid) -> io::Result<bool> {
        {
            let g = self.lock();
            match g.pending.get(&id) {
                Some(p) if p.result.is_some() => {}
                _ => return Ok(false),
            }
        }
        match fs::remove_dir_all(self.dir.join(id.to_string())) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.lock().pending.remove(&id);
        self.changed.notify_one();
        Ok(true)
    }

    /// Reads at most `max` bytes of spooled text of `id`'s `stream` from
    /// `offset`, cut back to a character boundary.
    pub fn read_output(
        &self,
        id: Uuid,
        stream: OutputStream,
        offset: u64,
        max: usize,
    ) -> io::Result<String> {
        let limit = {
            let g = self.lock();
            g.pending.get(&id).map(|p| p.len(stream)).unwrap_or(0)
        };
        if offset >= limit {
            return Ok(String::new());
        }
        let want = usize::try_from(limit - offset)
            .unwrap_or(usize::MAX)
            .min(max);
        let mut f = File::open(self.dir.join(id.to_string()).join(stream_file(stream)))?;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(want);
        f.take(want as u64).read_to_end(&mut buf)?;
        match String::from_utf8(buf) {
            Ok(s) => Ok(s),
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let mut b = e.into_bytes();
                b.truncate(valid);
                Ok(String::from_utf8(b).unwrap_or_default())
            }
        }
    }
}

/// Length of the valid-UTF-8 prefix of a spool file (a crash can leave a
/// torn character at the end, which is cut off).
fn utf8_len(path: &Path) -> io::Result<u64> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let back = len.min(4);
    f.seek(SeekFrom::Start(len - back))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    // Find the last char start in the tail and check it is complete.
    for i in (0..tail.len()).rev() {
        let b = tail[i];
        if b & 0xC0 != 0x80 {
            let need = if b < 0x80 {
                1
            } else if b >= 0xF0 {
                4
            } else if b >= 0xE0 {
                3
            } else {
                2
            };
            let have = tail.len() - i;
            return Ok(if have >= need { len } else { len - have as u64 });
        }
    }
    Ok(len)
}

impl Spool {
    /// Appends text to a stream's spool and wakes the outbox.
    pub fn append(&mut self, stream: OutputStream, text: &str) -> io::Result<()> {
        let f = match stream {
            OutputStream::Stdout => &mut self.stdout,
            OutputStream::Stderr => &mut self.stderr,
        };
        f.write_all(text.as_bytes())?;
        {
            let mut g = self.store.lock();
            if let Some(p) = g.pending.get_mut(&self.id) {
                match stream {
                    OutputStream::Stdout => p.stdout_len += text.len() as u64,
                    OutputStream::Stderr => p.stderr_len += text.len() as u64,
                }
            }
        }
        self.store.changed.notify_one();
        Ok(())
    }

    /// Fsyncs the output and stores the result (the command is finished).
    /// `stdout_bytes`/`stderr_bytes` are set to what was spooled.
    pub fn finish(self, mut result: CommandResult) -> io::Result<()> {
        self.stdout.sync_data()?;
        self.stderr.sync_data()?;
        {
            let g = self.store.lock();
            if let Some(p) = g.pending.get(&self.id) {
                result.stdout_bytes = p.stdout_len;
                result.stderr_bytes = p.stderr_len;
            }
        }
        self.store.finish_inner(self.id, result)
    }
}

/// Re-sending state of one connection: how much of each unacknowledged
/// command was sent on it. Dropped (so everything is re-sent from offset 0)
/// when the connection ends.
#[derive(Debug, Default)]
pub struct Outbox {
    sent: BTreeMap<Uuid, Progress>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    started: bool,
    stdout: u64,
    stderr: u64,
    result: bool,
}

/// Largest text in one `command_output` chunk. JSON escaping can grow text
/// up to 6x (control characters), which keeps a chunk under the 1 MiB
/// control-frame limit.
pub const CHUNK_BYTES: usize = 128 * 1024;

impl Outbox {
    /// Forgets what was sent for `id`, so it is sent again from offset 0.
    pub fn resend(&mut self, id: Uuid) {
        self.sent.remove(&id);
    }

    /// The next message to send, if any: `command_started`, output chunks
    /// in order, then the result once all output was sent.
    pub fn next(&mut self, store: &Store) -> io::Result<Option<rmm_core::protocol::Message>> {
        use rmm_core::protocol::{CommandOutput, CommandStarted, Message};
        let pending = store.pending();
        self.sent
            .retain(|id, _| pending.iter().any(|(p, _)| p == id));
        for (id, p) in pending {
            let prog = self.sent.entry(id).or_default();
            if prog.result {
                continue;
            }
            if !prog.started {
                prog.started = true;
                if let Some(at) = p.started_at_ms {
                    return Ok(Some(Message::CommandStarted(CommandStarted {
                        command_id: id,
                        started_at_ms: at,
                    })));
                }
            }
            for stream in [OutputStream::Stdout, OutputStream::Stderr] {
                let sent = match stream {
                    OutputStream::Stdout => prog.stdout,
                    OutputStream::Stderr => prog.stderr,
                };
                let limit = p
                    .result
                    .as_ref()
                    .map(|r| match stream {
                        OutputStream::Stdout => r.stdout_bytes,
                        OutputStream::Stderr => r.stderr_bytes,
                    })
                    .unwrap_or(p.len(stream))
                    .min(p.len(stream));
                if sent < limit {
                    let text = store.read_output(
                        id,
                        stream,
                        sent,
                        CHUNK_BYTES.min((limit - sent) as usize),
                    )?;
                    if text.is_empty() {
                        continue;
                    }
                    match stream {
                        OutputStream::Stdout => prog.stdout += text.len() as u64,
                        OutputStream::Stderr => prog.stderr += text.len() as u64,
                    }
                    return Ok(Some(Message::CommandOutput(CommandOutput {
                        command_id: id,
                        stream,
                        offset: sent,
                        data: text,
                    })));
                }
            }
            if let Some(r) = p.result {
                prog.result = true;
                return Ok(Some(Message::CommandResult(r)));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
