//! Waiting for Proxmox tasks.

use std::time::Duration;

use crate::client::Client;
use crate::error::Error;
use crate::types::{TaskState, TaskStatus};
use crate::upid::Upid;

/// How [`Client::wait_task`] polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitOptions {
    /// Give up after this long with [`Error::TaskTimeout`].
    pub timeout: Duration,
    /// First poll interval.
    pub initial_interval: Duration,
    /// Poll interval cap (the interval grows by half each poll).
    pub max_interval: Duration,
    /// How long "no such task" is tolerated after the start (a fresh task
    /// may not be visible yet, especially on another cluster node).
    pub not_found_grace: Duration,
    /// How many log lines a [`Error::TaskFailed`] carries.
    pub log_tail_lines: u32,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            timeout: Duration::from_secs(600),
            initial_interval: Duration::from_millis(500),
            max_interval: Duration::from_secs(5),
            not_found_grace: Duration::from_secs(10),
            log_tail_lines: 20,
        }
    }
}

impl WaitOptions {
    /// Default options with a different timeout.
    pub fn with_timeout(timeout: Duration) -> WaitOptions {
        WaitOptions {
            timeout,
            ..WaitOptions::default()
        }
    }
}

/// A task that finished successfully.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskOutcome {
    /// The task.
    pub upid: Upid,
    /// Warnings counted by Proxmox (`WARNINGS: N`); 0 for `OK`.
    pub warnings: u32,
    /// The raw exit status.
    pub exitstatus: String,
}

/// Interprets a stopped task's exit status: `Ok(warnings)` for `OK` and
/// `WARNINGS: N`, `Err(())` for anything else.
pub(crate) fn classify_exit(exitstatus: &str) -> Result<u32, ()> {
    let s = exitstatus.trim();
    if s == "OK" {
        return Ok(0);
    }
    if let Some(n) = s.strip_prefix("WARNINGS:") {
        return n.trim().parse().map_err(|_| ());
    }
    Err(())
}

impl Client {
    /// Polls `upid` on its own node until it stops, with backoff and a
    /// deadline.
    ///
    /// - `OK` -> `Ok(TaskOutcome { warnings: 0 })`,
    ///   `WARNINGS: N` -> `Ok(TaskOutcome { warnings: N })`;
    /// - any other exit status -> [`Error::TaskFailed`] with the tail of the
    ///   task log;
    /// - not visible ("no such task") for longer than
    ///   [`WaitOptions::not_found_grace`] -> [`Error::NotFound`];
    /// - past [`WaitOptions::timeout`] -> [`Error::TaskTimeout`], never a
    ///   silent success.
    ///
    /// Cancellation-safe: it holds no locks and spawns nothing, so dropping
    /// the future (e.g. in `tokio::select!` or `tokio::time::timeout`)
    /// simply stops polling; the task on the host is unaffected and can be
    /// waited for again.
    pub async fn wait_task(&self, upid: &Upid, options: WaitOptions) -> Result<TaskOutcome, Error> {
        let start = self.clock.now();
        let deadline = start + options.timeout;
        let mut interval = options.initial_interval.max(Duration::from_millis(1));
        let mut last_state = None;
        loop {
            match self.task_status(upid).await {
                Ok(TaskStatus {
                    status: TaskState::Stopped,
                    exitstatus,
                    ..
                }) => {
                    let exitstatus = exitstatus.unwrap_or_else(|| "unknown".to_owned());
                    return match classify_exit(&exitstatus) {
                        Ok(warnings) => {
                            if warnings > 0 {
                                tracing::warn!(%upid, warnings, "task finished with warnings");
                            }
                            Ok(TaskOutcome {
                                upid: upid.clone(),
                                warnings,
                                exitstatus,
                            })
                        }
                        Err(()) => {
                            let log_tail = self.log_tail(upid, options.log_tail_lines).await;
                            Err(Error::TaskFailed {
                                upid: upid.clone(),
                                exitstatus,
                                log_tail,
                            })
                        }
                    };
                }
                Ok(status) => last_state = Some(status.status),
                Err(e)
                    if e.is_not_found()
                        && last_state.is_none()
                        && self.clock.now().duration_since(start) < options.not_found_grace =>
                {
                    tracing::debug!(%upid, "task not visible yet");
                }
                Err(e) => return Err(e),
            }
            let now = self.clock.now();
            if now >= deadline {
                return Err(Error::TaskTimeout {
                    upid: upid.clone(),
                    waited: now.duration_since(start),
                    last_state,
                });
            }
            self.clock.sleep(interval.min(deadline - now)).await;
            interval = (interval + interval / 2).min(options.max_interval.max(interval));
        }
    }

    /// The last `lines` lines of the task log; empty if it cannot be read
    /// (the failure itself matters more than its log).
    async fn log_tail(&self, upid: &Upid, lines: u32) -> Vec<String> {
        if lines == 0 {
            return Vec::new();
        }
        let lines = u64::from(lines);
        let result = async {
            let (mut page, total) = self.task_log(upid, 0, lines).await?;
            if let Some(total) = total
                && total > lines
            {
                page = self.task_log(upid, total - lines, lines).await?.0;
            }
            Ok::<_, Error>(page)
        }
        .await;
        match result {
            Ok(page) => {
                let skip = page.len().saturating_sub(lines as usize);
                page.into_iter().skip(skip).map(|l| l.t).collect()
            }
            Err(e) => {
                tracing::warn!(%upid, error = %e, "cannot read the task log");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses() {
        assert_eq!(classify_exit("OK"), Ok(0));
        assert_eq!(classify_exit("WARNINGS: 3"), Ok(3));
        assert_eq!(classify_exit("WARNINGS:1"), Ok(1));
        assert_eq!(classify_exit("WARNINGS: x"), Err(()));
        assert_eq!(
            classify_exit("command 'lxc-start' failed: exit code 1"),
            Err(())
        );
        assert_eq!(classify_exit("unexpected status"), Err(()));
        assert_eq!(classify_exit(""), Err(()));
    }
}
