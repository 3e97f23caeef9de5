//! The exactly-once command store, on disk in `<state-dir>/commands`.
//!
//! ```text
//! commands/journal       append-only JSON lines, one record per event:
//!                        {"started":{"id","at_ms"}}   before the process is spawned
//!                        {"finished":{CommandResult}} when the command ended
//!                        {"acked":{"id"}}             when the server acknowledged
//! commands/<id>.stdout   the output text sent so far (the spool), kept until
//! commands/<id>.stderr   the server acknowledges the result
//! ```
//!
//! Replaying the journal at start gives the unacknowledged commands (their
//! results are re-sent) and the finished ids (a re-delivered command is
//! answered with its stored result and never re-run). The newest
//! `capacity` finished ids are remembered; the journal is compacted
//! atomically when it grows past twice that.
//!
//! Durability: `started` and `finished` records are fdatasynced before the
//! agent acts on them (spawns the process / reports the result) — two
//! syncs per command on an existing journal. Output is not synced per chunk
//! (a killed agent loses nothing the kernel has accepted); the spool files
//! are synced once, before the `finished` record, so a result never claims
//! more output than survives a power loss. `acked` records are not synced:
//! losing one only makes the agent re-send a result the server already
//! holds, which it acknowledges again.
//!
//! Restart rule: a command with a `started` record and no `finished` one was
//! running when the agent died. Its process may or may not have had its
//! effect, so it is **not** run again: it is finished as `failed` with the
//! error [`RESTARTED_ERROR`], keeping the output spooled so far.
//!
//! Journal appends happen under the store's lock, so concurrent commands'
//! syncs are serialized (a few ms each on a local disk).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rmm_core::protocol::{CommandOutcome, CommandResult, OutputStream};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::fsutil;

/// The error of a command that was running when the agent stopped.
pub const RESTARTED_ERROR: &str =
    "agent restarted while the command was running; it was not run again";

/// Finished command ids remembered by default.
pub const DEFAULT_CAPACITY: usize = 10_000;

const JOURNAL: &str = "journal";

fn spool_name(id: Uuid, s: OutputStream) -> String {
    match s {
        OutputStream::Stdout => format!("{id}.stdout"),
        OutputStream::Stderr => format!("{id}.stderr"),
    }
}

/// One journal line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Record {
    Started { id: Uuid, at_ms: u64 },
    Finished(CommandResult),
    Acked { id: Uuid },
}

impl Record {
    fn line(&self) -> io::Result<Vec<u8>> {
        let mut v = serde_json::to_vec(self).map_err(io::Error::other)?;
        v.push(b'\n');
        Ok(v)
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
    journal: File,
    lines: usize,
    pending: HashMap<Uuid, Pending>,
    finished: HashSet<Uuid>,
    order: VecDeque<Uuid>,
    next_seq: u64,
}

impl Inner {
    fn new_pending(&mut self, id: Uuid, started_at_ms: Option<u64>) -> &mut Pending {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.entry(id).or_insert(Pending {
            seq,
            started_at_ms,
            stdout_len: 0,
            stderr_len: 0,
            result: None,
        })
    }

    fn remember(&mut self, id: Uuid, capacity: usize) {
        if self.finished.insert(id) {
            self.order.push_back(id);
        }
        while self.order.len() > capacity {
            if let Some(old) = self.order.pop_front() {
                self.finished.remove(&old);
            }
        }
    }
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
    stdout: Option<File>,
    stderr: Option<File>,
    store: Arc<Store>,
}

fn open_journal(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(fsutil::FILE_MODE)
        .open(dir.join(JOURNAL))
}

fn replay(path: &Path) -> io::Result<Vec<Record>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for line in io::BufReader::new(f).split(b'\n') {
        // A torn last line (crash mid-append) is skipped.
        if let Ok(r) = serde_json::from_slice::<Record>(&line?) {
            out.push(r);
        }
    }
    Ok(out)
}

impl Store {
    /// Opens the store in `dir` (created 0700), recovering after a crash:
    /// commands started but unfinished are finished as failed with
    /// [`RESTARTED_ERROR`]. Returns the ids so recovered.
    pub fn open(dir: &Path, capacity: usize, now_ms: u64) -> io::Result<(Arc<Store>, Vec<Uuid>)> {
        fsutil::ensure_private_dir(dir)?;
        let capacity = capacity.max(1);
        let existed = dir.join(JOURNAL).exists();
        let records = replay(&dir.join(JOURNAL))?;
        let journal = open_journal(dir)?;
        if !existed {
            fsutil::sync_dir(dir)?;
        }
        let mut inner = Inner {
            journal,
            lines: records.len(),
            pending: HashMap::new(),
            finished: HashSet::new(),
            order: VecDeque::new(),
            next_seq: 0,
        };
        for r in records {
            match r {
                Record::Started { id, at_ms } => {
                    inner.new_pending(id, Some(at_ms));
                }
                Record::Finished(res) => {
                    let id = res.command_id;
                    inner.remember(id, capacity);
                    let at = res.started_at_ms;
                    inner.new_pending(id, at).result = Some(res);
                }
                Record::Acked { id } => {
                    inner.pending.remove(&id);
                }
            }
        }
        // Spool lengths, and stray spool files of acknowledged commands.
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some((id, stream)) = name.split_once('.') else {
                continue;
            };
            let Ok(id) = Uuid::parse_str(id) else {
                continue;
            };
            let stream = match stream {
                "stdout" => OutputStream::Stdout,
                "stderr" => OutputStream::Stderr,
                _ => continue,
            };
            match inner.pending.get_mut(&id) {
                Some(p) => {
                    let len = utf8_len(&entry.path())?;
                    match stream {
                        OutputStream::Stdout => p.stdout_len = len,
                        OutputStream::Stderr => p.stderr_len = len,
                    }
                }
                None => fs::remove_file(entry.path())?,
            }
        }
        let mut recovered = Vec::new();
        let mut ids: Vec<(u64, Uuid)> = inner.pending.iter().map(|(id, p)| (p.seq, *id)).collect();
        ids.sort();
        for (_, id) in ids {
            let Some(p) = inner.pending.get_mut(&id) else {
                continue;
            };
            match &mut p.result {
                Some(r) => {
                    // The spool is the truth for what can be re-sent.
                    r.stdout_bytes = r.stdout_bytes.min(p.stdout_len);
                    r.stderr_bytes = r.stderr_bytes.min(p.stderr_len);
                }
                None => recovered.push(id),
            }
        }
        let store = Arc::new(Store {
            dir: dir.to_owned(),
            capacity,
            inner: Mutex::new(inner),
            changed: Arc::new(Notify::new()),
        });
        for id in &recovered {
            let (started_at_ms, stdout_bytes, stderr_bytes) = {
                let g = store.lock();
                let p = &g.pending[id];
                (p.started_at_ms, p.stdout_len, p.stderr_len)
            };
            store.finish_inner(CommandResult {
                command_id: *id,
                outcome: CommandOutcome::Failed,
                exit_code: None,
                signal: None,
                error: Some(RESTARTED_ERROR.into()),
                stdout_bytes,
                stderr_bytes,
                stdout_truncated: false,
                stderr_truncated: false,
                started_at_ms,
                finished_at_ms: now_ms,
            })?;
        }
        store.maybe_compact()?;
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
        if known && let Ok(Some(r)) = self.find_finished(id) {
            return Lookup::Acked(r);
        }
        Lookup::Unknown
    }

    fn find_finished(&self, id: Uuid) -> io::Result<Option<CommandResult>> {
        let needle = id.to_string();
        let f = File::open(self.dir.join(JOURNAL))?;
        let mut found = None;
        for line in io::BufReader::new(f).split(b'\n') {
            let line = line?;
            if !line.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                continue;
            }
            if let Ok(Record::Finished(r)) = serde_json::from_slice::<Record>(&line)
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

    /// Appends a record; `sync` makes it durable before returning.
    fn append(g: &mut Inner, r: &Record, sync: bool) -> io::Result<()> {
        g.journal.write_all(&r.line()?)?;
        g.lines += 1;
        if sync {
            g.journal.sync_data()?;
        }
        Ok(())
    }

    /// Marks `id` started, durably, before its process is spawned, and
    /// returns its output spool.
    pub fn begin(self: &Arc<Self>, id: Uuid, started_at_ms: u64) -> io::Result<Spool> {
        {
            let mut g = self.lock();
            Self::append(
                &mut g,
                &Record::Started {
                    id,
                    at_ms: started_at_ms,
                },
                true,
            )?;
            g.new_pending(id, Some(started_at_ms));
        }
        self.changed.notify_one();
        Ok(Spool {
            id,
            stdout: None,
            stderr: None,
            store: self.clone(),
        })
    }

    /// Records the result of a command that never started (cancelled while
    /// queued, or refused before start), so a re-delivery is answered, not
    /// run.
    pub fn record_unstarted(&self, result: CommandResult) -> io::Result<()> {
        self.finish_inner(result)
    }

    fn finish_inner(&self, result: CommandResult) -> io::Result<()> {
        let id = result.command_id;
        {
            let mut g = self.lock();
            Self::append(&mut g, &Record::Finished(result.clone()), true)?;
            g.remember(id, self.capacity);
            let at = result.started_at_ms;
            g.new_pending(id, at).result = Some(result);
        }
        self.maybe_compact()?;
        self.changed.notify_one();
        Ok(())
    }

    /// Rewrites the journal when it holds more than twice what it must.
    fn maybe_compact(&self) -> io::Result<()> {
        let mut g = self.lock();
        if g.lines <= 2 * self.capacity + 64 {
            return Ok(());
        }
        // Keep: the last `finished` of every remembered id, `acked` for
        // those no longer pending, `started` of pending commands without a
        // result.
        let mut results: HashMap<Uuid, CommandResult> = HashMap::new();
        for r in replay(&self.dir.join(JOURNAL))? {
            if let Record::Finished(res) = r
                && g.finished.contains(&res.command_id)
            {
                results.insert(res.command_id, res);
            }
        }
        let mut out = Vec::new();
        let mut lines = 0;
        for id in &g.order {
            if let Some(res) = results.remove(id) {
                out.extend(Record::Finished(res).line()?);
                lines += 1;
                if !g.pending.contains_key(id) {
                    out.extend(Record::Acked { id: *id }.line()?);
                    lines += 1;
                }
            }
        }
        let mut running: Vec<(&Uuid, &Pending)> = g
            .pending
            .iter()
            .filter(|(_, p)| p.result.is_none())
            .collect();
        running.sort_by_key(|(_, p)| p.seq);
        for (id, p) in running {
            if let Some(at_ms) = p.started_at_ms {
                out.extend(Record::Started { id: *id, at_ms }.line()?);
                lines += 1;
            }
        }
        fsutil::write_atomic(&self.dir.join(JOURNAL), &out, fsutil::FILE_MODE)?;
        g.journal = open_journal(&self.dir)?;
        g.lines = lines;
        Ok(())
    }

    /// The server acknowledged `id`'s result: its spool is dropped. An ack
    /// for a command without a result is ignored (returns `false`).
    pub fn ack(&self, id: Uuid) -> io::Result<bool> {
        {
            let mut g = self.lock();
            match g.pending.get(&id) {
                Some(p) if p.result.is_some() => {}
                _ => return Ok(false),
            }
            Self::append(&mut g, &Record::Acked { id }, false)?;
            g.pending.remove(&id);
        }
        for s in [OutputStream::Stdout, OutputStream::Stderr] {
            match fs::remove_file(self.dir.join(spool_name(id, s))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        self.maybe_compact()?;
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
        let mut f = File::open(self.dir.join(spool_name(id, stream)))?;
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

    /// Path of a spool file (for tests and diagnostics).
    pub fn spool_path(&self, id: Uuid, stream: OutputStream) -> PathBuf {
        self.dir.join(spool_name(id, stream))
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
        let slot = match stream {
            OutputStream::Stdout => &mut self.stdout,
            OutputStream::Stderr => &mut self.stderr,
        };
        let f = match slot {
            Some(f) => f,
            None => slot.insert(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(fsutil::FILE_MODE)
                    .open(self.store.spool_path(self.id, stream))?,
            ),
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

    /// Syncs the output and stores the result (the command is finished).
    /// `stdout_bytes`/`stderr_bytes` are set to what was spooled.
    pub fn finish(self, mut result: CommandResult) -> io::Result<()> {
        let mut created = false;
        for f in [&self.stdout, &self.stderr].into_iter().flatten() {
            f.sync_data()?;
            created = true;
        }
        if created {
            fsutil::sync_dir(&self.store.dir)?;
        }
        {
            let g = self.store.lock();
            if let Some(p) = g.pending.get(&self.id) {
                result.stdout_bytes = p.stdout_len;
                result.stderr_bytes = p.stderr_len;
            }
        }
        self.store.finish_inner(result)
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
