//! Finding the user of the machine's active local session (Linux, logind).
//!
//! `loginctl list-sessions` names the sessions; `loginctl show-session`
//! gives each one's `State`, `Remote`, `Class`, `Name` and `User`. The
//! first session that is `State=active`, `Remote=no` and of class `user`
//! wins (a greeter or a remote SSH login never does). The user's gid, home
//! and shell come from the passwd database.
//!
//! Windows (not built here): the equivalent is the WTS token of the active
//! console session (`WTSGetActiveConsoleSessionId` + `WTSQueryUserToken` +
//! `CreateProcessAsUserW`), which needs `unsafe` FFI and therefore lives
//! behind `cfg(windows)` in a separate module when the Windows port lands;
//! on every platform the contract is the same: no active user, no run.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The user a `user_session` command runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSession {
    /// logind session id.
    pub session_id: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// User name.
    pub user: String,
    /// Home directory.
    pub home: PathBuf,
    /// Login shell.
    pub shell: String,
}

impl UserSession {
    /// `/run/user/<uid>`.
    pub fn runtime_dir(&self) -> PathBuf {
        PathBuf::from(format!("/run/user/{}", self.uid))
    }

    /// The session bus address logind's user manager provides.
    pub fn dbus_address(&self) -> String {
        format!("unix:path=/run/user/{}/bus", self.uid)
    }

    /// The whole environment a process of this session starts with (the
    /// agent's own is not passed on): home, user, shell, a standard `PATH`,
    /// the runtime dir and session bus, and the agent's `LANG`.
    pub fn env(&self) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = vec![
            ("HOME".into(), self.home.clone().into()),
            ("USER".into(), self.user.clone().into()),
            ("LOGNAME".into(), self.user.clone().into()),
            ("SHELL".into(), self.shell.clone().into()),
            (
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ),
            ("XDG_RUNTIME_DIR".into(), self.runtime_dir().into()),
            (
                "DBUS_SESSION_BUS_ADDRESS".into(),
                self.dbus_address().into(),
            ),
        ];
        if let Some(lang) = std::env::var_os("LANG") {
            env.push(("LANG".into(), lang));
        }
        env
    }

    /// Where a process of this session starts: the home directory, or `/`
    /// when it does not exist.
    pub fn workdir(&self) -> &Path {
        if self.home.is_dir() {
            self.home.as_path()
        } else {
            Path::new("/")
        }
    }

    /// The arguments of `setpriv` that run a program as this user
    /// (`--reuid --regid --init-groups --`, the program follows), or `None`
    /// when the agent already runs as this user.
    pub fn setpriv_args(&self) -> Option<[String; 4]> {
        (self.uid != nix::unistd::geteuid().as_raw()).then(|| {
            [
                format!("--reuid={}", self.uid),
                format!("--regid={}", self.gid),
                "--init-groups".to_owned(),
                "--".to_owned(),
            ]
        })
    }
}

/// Why no session user was found. The display text always starts with
/// `no active user session`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// logind answered, and no session qualifies.
    #[error("no active user session (no active local logind session of class user)")]
    None,
    /// logind could not be asked.
    #[error("no active user session (cannot query logind: {0})")]
    Logind(String),
}

/// The `show-session` properties we read.
#[derive(Debug, Default, PartialEq, Eq)]
struct Props {
    state: String,
    remote: String,
    class: String,
    name: String,
    user: Option<u32>,
}

fn parse_props(text: &str) -> Props {
    let mut p = Props::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().to_owned();
        match k.trim() {
            "State" => p.state = v,
            "Remote" => p.remote = v,
            "Class" => p.class = v,
            "Name" => p.name = v,
            "User" => p.user = v.parse().ok(),
            _ => {}
        }
    }
    p
}

fn qualifies(p: &Props) -> bool {
    p.state == "active" && p.remote == "no" && (p.class.is_empty() || p.class == "user")
}

/// Session ids from `loginctl list-sessions --no-legend` (first column).
fn parse_session_ids(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|id| {
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        .collect()
}

async fn loginctl(bin: &Path, args: &[&str]) -> Result<String, SessionError> {
    let out = tokio::process::Command::new(bin)
        .args(args)
        .arg("--no-pager")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(10), out)
        .await
        .map_err(|_| SessionError::Logind(format!("{} timed out", bin.display())))?
        .map_err(|e| SessionError::Logind(format!("cannot run {}: {e}", bin.display())))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim();
        return Err(SessionError::Logind(if err.is_empty() {
            format!("{} exited with {}", bin.display(), out.status)
        } else {
            err.chars().take(300).collect()
        }));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Finds the active local session's user through `loginctl` at `bin`.
pub async fn active_session(bin: &Path) -> Result<UserSession, SessionError> {
    let list = loginctl(bin, &["list-sessions", "--no-legend"]).await?;
    for id in parse_session_ids(&list) {
        let text = loginctl(
            bin,
            &[
                "show-session",
                &id,
                "-p",
                "State",
                "-p",
                "Remote",
                "-p",
                "Class",
                "-p",
                "Name",
                "-p",
                "User",
            ],
        )
        .await?;
        let props = parse_props(&text);
        if !qualifies(&props) {
            continue;
        }
        let Some(uid) = props.user else { continue };
        let pw = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .map_err(|e| SessionError::Logind(format!("cannot look up uid {uid}: {e}")))?;
        let Some(pw) = pw else {
            return Err(SessionError::Logind(format!(
                "session {id} belongs to uid {uid}, which has no passwd entry"
            )));
        };
        return Ok(UserSession {
            session_id: id,
            uid,
            gid: pw.gid.as_raw(),
            user: if props.name.is_empty() {
                pw.name
            } else {
                props.name
            },
            home: pw.dir,
            shell: pw.shell.to_string_lossy().into_owned(),
        });
    }
    Err(SessionError::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn props_and_qualification() {
        let check = |text: &str, ok: bool| {
            assert_eq!(qualifies(&parse_props(text)), ok, "{text}");
        };
        check(
            "State=active\nRemote=no\nClass=user\nName=alice\nUser=1000\n",
            true,
        );
        check("State=online\nRemote=no\nClass=user\nUser=1000\n", false);
        check("State=active\nRemote=yes\nClass=user\nUser=1000\n", false);
        check("State=active\nRemote=no\nClass=greeter\nUser=113\n", false);
        check("", false);
        let p = parse_props("User=1000\nName=alice\nbogus line\n");
        assert_eq!(p.user, Some(1000));
        assert_eq!(p.name, "alice");
    }

    #[test]
    fn session_ids_from_list() {
        let text = "      2 1000 alice seat0 tty2 active no\n c7 0 root - pts/0 active no\n";
        assert_eq!(parse_session_ids(text), vec!["2", "c7"]);
        assert_eq!(parse_session_ids("$(rm -rf /) x\n"), Vec::<String>::new());
    }

    fn fake_loginctl(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("loginctl");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[tokio::test]
    async fn real_loginctl_process_paths() {
        let tmp = tempfile::tempdir().unwrap();
        // A loginctl that fails like on a machine without systemd.
        let bin = fake_loginctl(
            tmp.path(),
            "echo 'Failed to connect to bus: Host is down' >&2; exit 1",
        );
        let err = active_session(&bin).await.unwrap_err();
        assert!(
            err.to_string().starts_with("no active user session"),
            "{err}"
        );
        assert!(err.to_string().contains("Host is down"), "{err}");
        // Sessions exist, none active and local.
        let bin = fake_loginctl(
            tmp.path(),
            r#"case "$1" in list-sessions) echo "3 65534 nobody - pts/1";; show-session) printf 'State=active\nRemote=yes\nClass=user\nName=nobody\nUser=65534\n';; esac"#,
        );
        assert_eq!(active_session(&bin).await.unwrap_err(), SessionError::None);
        // One active local session of nobody.
        let bin = fake_loginctl(
            tmp.path(),
            r#"case "$1" in list-sessions) echo "3 65534 nobody seat0 tty1";; show-session) printf 'State=active\nRemote=no\nClass=user\nName=nobody\nUser=65534\n';; esac"#,
        );
        let s = active_session(&bin).await.unwrap();
        assert_eq!(
            (s.uid, s.user.as_str(), s.session_id.as_str()),
            (65534, "nobody", "3")
        );
        assert_eq!(s.runtime_dir(), PathBuf::from("/run/user/65534"));
        // Missing binary.
        let err = active_session(&tmp.path().join("nope")).await.unwrap_err();
        assert!(
            err.to_string().starts_with("no active user session"),
            "{err}"
        );
    }
}
