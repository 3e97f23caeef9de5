//! The terminal of a tunnel's `terminal` channel: a login shell (or a
//! given command) on a real PTY (`portable-pty`), as root or as the user
//! of the active local session (the same rules as commands: no active user
//! is an error, never a fallback to root).
//!
//! Flow control holds end to end: one thread reads the PTY into a queue
//! of [`OUTPUT_QUEUE`] chunks and stops reading while the queue is full, so
//! a technician who stops reading stops the shell's output at the PTY.
//! Input goes through a bounded queue to a writer thread likewise.
//!
//! The shell is a session leader (`setsid`); everything it starts stays in
//! its session, even jobs it puts in process groups of their own. Closing
//! a [`Terminal`] (or dropping it) kills the whole session, so nothing
//! started from a terminal outlives it.

use std::io::{Read, Write};
use std::path::PathBuf;

use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};
use tokio::sync::{mpsc, oneshot};

use crate::runner::session::UserSession;

/// Chunks of output held between the PTY and the reader of a terminal.
pub const OUTPUT_QUEUE: usize = 4;
/// Largest chunk read from the PTY at once.
pub const CHUNK: usize = 16 * 1024;
/// Chunks of input held before [`Terminal::write`] waits.
const INPUT_QUEUE: usize = 16;

/// What to start on the PTY.
#[derive(Debug, Clone)]
pub struct TerminalSpec {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
    /// `TERM` (`xterm-256color`).
    pub term: String,
    /// A command line for `sh -c`, or `None` for the login shell.
    pub command: Option<String>,
    /// Run as this session's user (`user_session`), or as the agent.
    pub session: Option<UserSession>,
    /// The `setpriv` that switches users.
    pub setpriv: PathBuf,
}

/// Why a terminal could not be started or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TerminalError {
    /// A window of zero columns or rows.
    #[error("a terminal needs at least one column and one row")]
    BadSize,
    /// The PTY could not be opened or the program not started.
    #[error("cannot start the terminal: {0}")]
    Start(String),
    /// The terminal has ended.
    #[error("the terminal has ended")]
    Closed,
    /// A resize or signal failed.
    #[error("{0}")]
    Control(String),
}

/// How the terminal's program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminalExit {
    /// It exited with this status.
    Code(i32),
    /// A signal (its number) killed it.
    Signal(i32),
}

/// The signals a technician may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermSignal {
    /// SIGINT (what Ctrl-C sends).
    Int,
    /// SIGTERM.
    Term,
    /// SIGKILL.
    Kill,
    /// SIGHUP.
    Hup,
}

impl TermSignal {
    fn nix(self) -> Signal {
        match self {
            TermSignal::Int => Signal::SIGINT,
            TermSignal::Term => Signal::SIGTERM,
            TermSignal::Kill => Signal::SIGKILL,
            TermSignal::Hup => Signal::SIGHUP,
        }
    }
}

/// A running terminal.
pub struct Terminal {
    master: Box<dyn MasterPty + Send>,
    input: Option<mpsc::Sender<Vec<u8>>>,
    output: mpsc::Receiver<Vec<u8>>,
    exit: Option<oneshot::Receiver<TerminalExit>>,
    leader: Pid,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal")
            .field("leader", &self.leader)
            .finish_non_exhaustive()
    }
}

fn size(cols: u16, rows: u16) -> Result<PtySize, TerminalError> {
    if cols == 0 || rows == 0 {
        return Err(TerminalError::BadSize);
    }
    Ok(PtySize {
        rows,
        cols,
        pixel_width: 0,
        pixel_height: 0,
    })
}

fn command(spec: &TerminalSpec) -> CommandBuilder {
    let shell = match &spec.session {
        Some(s) if !s.shell.is_empty() => s.shell.clone(),
        _ => "/bin/sh".to_owned(),
    };
    // The program and its arguments before any user switch.
    let mut argv: Vec<String> = match &spec.command {
        Some(line) => vec!["/bin/sh".into(), "-c".into(), line.clone()],
        None => vec![shell, "-l".into()],
    };
    if let Some(switch) = spec.session.as_ref().and_then(UserSession::setpriv_args) {
        let mut with = vec![spec.setpriv.display().to_string()];
        with.extend(switch);
        with.append(&mut argv);
        argv = with;
    }
    let mut cmd = CommandBuilder::from_argv(argv.into_iter().map(Into::into).collect());
    cmd.env_clear();
    match &spec.session {
        Some(s) => {
            for (k, v) in s.env() {
                cmd.env(k, v);
            }
            cmd.cwd(s.workdir());
        }
        None => {
            for (k, v) in std::env::vars_os() {
                if !crate::runner::is_agent_private(&k) {
                    cmd.env(k, v);
                }
            }
            cmd.cwd("/");
        }
    }
    cmd.env("TERM", &spec.term);
    cmd
}

impl Terminal {
    /// Opens a PTY of the spec's size and starts the program on it.
    pub fn open(spec: &TerminalSpec) -> Result<Terminal, TerminalError> {
        let start = |e: &dyn std::fmt::Display| TerminalError::Start(e.to_string());
        let pair = native_pty_system()
            .openpty(size(spec.cols, spec.rows)?)
            .map_err(|e| start(&e))?;
        let child = pair
            .slave
            .spawn_command(command(spec))
            .map_err(|e| start(&e))?;
        // Only the child holds the slave now: its end is the PTY's end.
        drop(pair.slave);
        let pid = child
            .process_id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| TerminalError::Start("the program has no process id".into()))?;
        let leader = Pid::from_raw(pid);
        let mut reader = pair.master.try_clone_reader().map_err(|e| start(&e))?;
        let mut writer = pair.master.take_writer().map_err(|e| start(&e))?;

        let (out_tx, output) = mpsc::channel(OUTPUT_QUEUE);
        std::thread::Builder::new()
            .name("rmm-pty-read".into())
            .spawn(move || {
                let mut buf = vec![0u8; CHUNK];
                // EIO once every holder of the slave is gone: the end.
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 || out_tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| start(&e))?;
        let (in_tx, mut in_rx) = mpsc::channel::<Vec<u8>>(INPUT_QUEUE);
        std::thread::Builder::new()
            .name("rmm-pty-write".into())
            .spawn(move || {
                while let Some(data) = in_rx.blocking_recv() {
                    if writer
                        .write_all(&data)
                        .and_then(|()| writer.flush())
                        .is_err()
                    {
                        break;
                    }
                }
            })
            .map_err(|e| start(&e))?;
        let (exit_tx, exit) = oneshot::channel();
        std::thread::Builder::new()
            .name("rmm-pty-wait".into())
            .spawn(move || {
                // Reaped here, with the signal number (portable-pty only
                // gives its name); its Child is dropped without waiting.
                drop(child);
                let status = loop {
                    match waitpid(leader, None) {
                        Ok(WaitStatus::Exited(_, code)) => break TerminalExit::Code(code),
                        Ok(WaitStatus::Signaled(_, sig, _)) => {
                            break TerminalExit::Signal(sig as i32);
                        }
                        Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                        Err(_) => break TerminalExit::Code(-1),
                    }
                };
                let _ = exit_tx.send(status);
            })
            .map_err(|e| start(&e))?;
        Ok(Terminal {
            master: pair.master,
            input: Some(in_tx),
            output,
            exit: Some(exit),
            leader,
        })
    }

    /// The next output; `None` once the terminal's output has ended.
    pub async fn read(&mut self) -> Option<Vec<u8>> {
        self.output.recv().await
    }

    /// Sends input (keystrokes); waits while the input queue is full.
    pub async fn write(&self, data: Vec<u8>) -> Result<(), TerminalError> {
        let input = self.input.as_ref().ok_or(TerminalError::Closed)?;
        input.send(data).await.map_err(|_| TerminalError::Closed)
    }

    /// Ends the input (the program reads end-of-file once it has read what
    /// was sent: the terminal's EOF character, Ctrl-D).
    pub async fn close_input(&mut self) -> Result<(), TerminalError> {
        self.write(vec![0x04]).await?;
        self.input = None;
        Ok(())
    }

    /// Changes the window size (the program gets SIGWINCH).
    pub fn resize(&self, cols: u16, rows: u16) -> Result<(), TerminalError> {
        self.master
            .resize(size(cols, rows)?)
            .map_err(|e| TerminalError::Control(format!("cannot resize: {e}")))
    }

    /// Sends a signal to the terminal's foreground job (what the keyboard
    /// would signal), or to the shell when there is none.
    pub fn signal(&self, sig: TermSignal) -> Result<(), TerminalError> {
        let group = self
            .master
            .process_group_leader()
            .filter(|g| *g > 0)
            .map_or(self.leader, Pid::from_raw);
        killpg(group, sig.nix()).map_err(|e| TerminalError::Control(format!("cannot signal: {e}")))
    }

    /// How the program ended (waits for it).
    pub async fn wait(&mut self) -> Result<TerminalExit, TerminalError> {
        let exit = self.exit.take().ok_or(TerminalError::Closed)?;
        exit.await.map_err(|_| TerminalError::Closed)
    }

    /// Kills every process of the terminal's session.
    pub fn kill(&self) {
        for pid in session_members(self.leader) {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The processes whose session is `leader`'s (from `/proc`).
pub fn session_members(leader: Pid) -> Vec<Pid> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![leader];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .map(Pid::from_raw)
        .filter(|&pid| nix::unistd::getsid(Some(pid)) == Ok(leader))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn spec(command: Option<&str>) -> TerminalSpec {
        TerminalSpec {
            cols: 80,
            rows: 24,
            term: "xterm-256color".into(),
            command: command.map(str::to_owned),
            session: None,
            setpriv: "setpriv".into(),
        }
    }

    /// Reads until the output holds `needle` (a bounded wait: the test
    /// fails instead of hanging).
    async fn read_until(t: &mut Terminal, needle: &str) -> String {
        let mut seen = String::new();
        let found = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(chunk) = t.read().await {
                seen.push_str(&String::from_utf8_lossy(&chunk));
                if seen.contains(needle) {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(found, Ok(true), "{needle:?} not in {seen:?}");
        seen
    }

    async fn run(t: &Terminal, line: &str) {
        t.write(format!("{line}\n").into_bytes()).await.unwrap();
    }

    #[tokio::test]
    async fn a_shell_on_a_real_pty_follows_resizes() {
        let mut t = Terminal::open(&spec(None)).unwrap();
        // `""` splits the marker so the echoed input never matches it.
        run(&t, "tty; echo T\"\"ERM=$TERM; stty size; echo do\"\"ne").await;
        let out = read_until(&mut t, "done").await;
        assert!(out.contains("/dev/pts/"), "{out}");
        assert!(out.contains("TERM=xterm-256color"), "{out}");
        assert!(out.contains("24 80"), "{out}");
        t.resize(132, 40).unwrap();
        run(&t, "stty size; echo ag\"\"ain").await;
        let out = read_until(&mut t, "again").await;
        assert!(out.contains("40 132"), "{out}");
        run(&t, "exit 7").await;
        assert_eq!(t.wait().await.unwrap(), TerminalExit::Code(7));
        assert!(matches!(t.resize(0, 10), Err(TerminalError::BadSize)));
    }

    #[tokio::test]
    async fn ctrl_c_interrupts_the_job_and_the_shell_lives_on() {
        let mut t = Terminal::open(&spec(None)).unwrap();
        run(&t, "echo st\"\"arted; sleep 100").await;
        read_until(&mut t, "started").await;
        // Wait until the sleep runs in the terminal's session.
        let leader = t.leader;
        let running = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let sleeping = session_members(leader).into_iter().any(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/comm"))
                        .is_ok_and(|c| c.trim() == "sleep")
                });
                if sleeping {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(running.is_ok(), "sleep never started");
        t.write(vec![0x03]).await.unwrap(); // Ctrl-C
        run(&t, "echo al\"\"ive").await;
        read_until(&mut t, "alive").await;
        run(&t, "exit 3").await;
        assert_eq!(t.wait().await.unwrap(), TerminalExit::Code(3));
    }

    #[tokio::test]
    async fn signals_and_the_exit_status_come_back() {
        let mut t = Terminal::open(&spec(Some("echo re\"\"ady; sleep 100"))).unwrap();
        read_until(&mut t, "ready").await;
        t.signal(TermSignal::Kill).unwrap();
        assert_eq!(t.wait().await.unwrap(), TerminalExit::Signal(9));
        // the output ends once the program is gone
        let end = tokio::time::timeout(Duration::from_secs(20), async {
            while t.read().await.is_some() {}
        })
        .await;
        assert!(end.is_ok());
    }

    #[tokio::test]
    async fn closing_kills_everything_the_terminal_started() {
        let mut t = Terminal::open(&spec(None)).unwrap();
        run(&t, "sleep 1000 & sleep 1001 & echo bg\"\"started").await;
        read_until(&mut t, "bgstarted").await;
        let leader = t.leader;
        assert!(session_members(leader).len() >= 3, "shell and two sleeps");
        drop(t);
        let gone = tokio::time::timeout(Duration::from_secs(20), async {
            while session_members(leader).into_iter().any(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .is_ok_and(|s| !s.contains(") Z "))
            }) {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(gone.is_ok(), "processes of the terminal outlived it");
    }
}
