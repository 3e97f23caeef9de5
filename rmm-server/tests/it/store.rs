//! The store conformance suite: every check runs against a fresh SQLite
//! file and a fresh PostgreSQL schema.

use std::sync::Arc;

use rmm_core::protocol::{
    CommandContext, CommandOutcome, CommandResult, CommandType, OutputStream,
};
use rmm_server::store::{
    AgentHello, AppendOutcome, CancelOutcome, CommandStatus, FinishOutcome, HelloOutcome,
    InventoryItem, NewAudit, NewCommand, NewEnrollment, Phase, Role, Store, StoreError, User,
    UserChange,
};
use uuid::Uuid;

use crate::common::PgSchema;

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rmm.db").display());
    (rmm_server::store::open(&url).await.unwrap(), dir)
}

macro_rules! conformance {
    ($($name:ident),+ $(,)?) => {
        mod sqlite_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _dir) = super::sqlite().await;
                    super::$name(store).await;
                }
            )+
        }
        mod postgres_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(schema) = crate::common::PgSchema::create().await else { return };
                    let store = rmm_server::store::open(&schema.url()).await.unwrap();
                    assert_eq!(store.backend(), "postgres");
                    super::$name(store).await;
                    drop(schema);
                }
            )+
        }
    };
}

conformance!(
    users,
    enrollment_once,
    enrollment_parallel_redemption,
    enrollment_sweep,
    agents_hello_and_dedup,
    agents_disconnect_and_touch,
    command_lifecycle,
    output_offsets_and_cap,
    results_need_complete_output,
    cancel_and_expiry,
    command_paging,
    audit_append_only,
    migrations_are_idempotent,
    inventory_keeps_the_newest,
);

fn user(email: &str, role: Role) -> User {
    User::new(email, "$argon2id$fake".into(), role, 1)
}

fn role_change(role: Role) -> UserChange {
    UserChange {
        role: Some(role),
        ..UserChange::default()
    }
}

fn enrollment(name: &str, token_hash: &str, now: i64) -> NewEnrollment {
    NewEnrollment {
        agent_id: Uuid::new_v4(),
        agent_name: name.into(),
        token_hash: token_hash.into(),
        server_url: "http://127.0.0.1:3001".into(),
        channel: "stable".into(),
        created_by: "admin@example.com".into(),
        created_at: now,
        expires_at: now + 300_000,
    }
}

/// An enrolled agent; returns its id.
async fn enrolled(store: &Arc<dyn Store>, name: &str) -> Uuid {
    let e = enrollment(name, &format!("hash-{name}"), 1000);
    store.create_enrollment(&e).await.unwrap();
    store
        .redeem_enrollment(&e.token_hash, 2000, "10.0.0.1", "secret-hash")
        .await
        .unwrap()
        .unwrap();
    e.agent_id
}

fn hello(agent_id: Uuid, machine_uid: &str, now: i64) -> AgentHello {
    AgentHello {
        agent_id,
        session_id: Uuid::new_v4(),
        hostname: "host".into(),
        os: "linux".into(),
        arch: "x86_64".into(),
        agent_version: "0.1.0".into(),
        channel: "beta".into(),
        machine_uid: machine_uid.into(),
        address: "192.0.2.7".into(),
        now,
        live_after: now - 1000,
    }
}

fn command(agent_id: Uuid, created_at: i64, timeout: Option<u32>) -> NewCommand {
    NewCommand {
        id: Uuid::new_v4(),
        agent_id,
        command_type: CommandType::Bash,
        command_text: "echo hi".into(),
        context: CommandContext::System,
        timeout_secs: timeout,
        created_by: "tech@example.com".into(),
        created_at,
    }
}

fn result(id: Uuid, outcome: CommandOutcome, out: u64, err: u64) -> CommandResult {
    CommandResult {
        command_id: id,
        outcome,
        exit_code: Some(if outcome == CommandOutcome::Completed {
            0
        } else {
            3
        }),
        signal: None,
        error: None,
        stdout_bytes: out,
        stderr_bytes: err,
        stdout_truncated: false,
        stderr_truncated: false,
        started_at_ms: Some(5000),
        finished_at_ms: 6000,
    }
}

async fn users(store: Arc<dyn Store>) {
    assert_eq!(store.count_users().await.unwrap(), 0);
    let u = user("a@example.com", Role::Technician);
    store.create_user(&u).await.unwrap();
    assert!(matches!(
        store.create_user(&user("a@example.com", Role::Admin)).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.user_by_email("a@example.com").await.unwrap(),
        Some(u.clone())
    );
    assert_eq!(store.user_by_id(u.id).await.unwrap(), Some(u.clone()));
    assert_eq!(
        store.user_by_email("nobody@example.com").await.unwrap(),
        None
    );
    assert!(
        store
            .update_user(u.id, role_change(Role::Admin), 9)
            .await
            .unwrap()
    );
    let changed = store.user_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(
        (
            changed.role,
            changed.password_hash.as_str(),
            changed.updated_at
        ),
        (Role::Admin, "$argon2id$fake", 9)
    );
    assert_eq!(changed.token_version, 1, "a change ends the sessions");
    let disable = |d: bool| UserChange {
        disabled: Some(d),
        ..UserChange::default()
    };
    assert!(store.update_user(u.id, disable(true), 10).await.unwrap());
    assert!(store.update_user(u.id, disable(true), 11).await.unwrap());
    let d = store.user_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(
        (d.disabled_at, d.token_version, d.role),
        (Some(10), 3, Role::Admin)
    );
    assert!(store.update_user(u.id, disable(false), 12).await.unwrap());
    let e = store.user_by_id(u.id).await.unwrap().unwrap();
    assert_eq!((e.disabled_at, e.token_version), (None, 4));
    assert!(
        !store
            .update_user(Uuid::new_v4(), role_change(Role::Admin), 9)
            .await
            .unwrap()
    );
    store
        .create_user(&user("b@example.com", Role::Readonly))
        .await
        .unwrap();
    let all = store.list_users().await.unwrap();
    assert_eq!(
        all.iter().map(|u| u.email.as_str()).collect::<Vec<_>>(),
        ["a@example.com", "b@example.com"]
    );
    assert!(store.delete_user(u.id).await.unwrap());
    assert!(!store.delete_user(u.id).await.unwrap());
    assert_eq!(store.count_users().await.unwrap(), 1);
}

async fn enrollment_once(store: Arc<dyn Store>) {
    let e = enrollment("web-01", "h1", 1000);
    store.create_enrollment(&e).await.unwrap();
    // name taken while the first is live
    assert!(matches!(
        store
            .create_enrollment(&enrollment("web-01", "h2", 1000))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let pending = store.pending_enrollment("h1", 1500).await.unwrap().unwrap();
    assert_eq!(
        (pending.agent_id, pending.agent_name.as_str()),
        (e.agent_id, "web-01")
    );
    assert!(
        store.agent_secret_hash(e.agent_id).await.unwrap().is_none(),
        "no credential before redemption"
    );
    // expired: no
    assert!(
        store
            .pending_enrollment("h1", e.expires_at)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .redeem_enrollment("h1", e.expires_at + 1, "x", "s")
            .await
            .unwrap()
            .is_none()
    );
    // once
    let got = store
        .redeem_enrollment("h1", 2000, "198.51.100.4", "sh")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.agent_id, e.agent_id);
    assert!(
        store
            .redeem_enrollment("h1", 2001, "198.51.100.4", "sh2")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .pending_enrollment("h1", 2001)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .agent_secret_hash(e.agent_id)
            .await
            .unwrap()
            .as_deref(),
        Some("sh")
    );
    let agent = store.get_agent(e.agent_id).await.unwrap().unwrap();
    assert_eq!(agent.address.as_deref(), Some("198.51.100.4"));
    assert_eq!(agent.enrolled_at, Some(2000));
    assert!(
        store
            .redeem_enrollment("unknown", 2000, "x", "s")
            .await
            .unwrap()
            .is_none()
    );
}

async fn enrollment_parallel_redemption(store: Arc<dyn Store>) {
    let e = enrollment("par", "hp", 1000);
    store.create_enrollment(&e).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .redeem_enrollment("hp", 2000, "10.0.0.9", &format!("s{i}"))
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        if t.await.unwrap().unwrap().is_some() {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one redemption wins: {winners:?}");
    let secret = store.agent_secret_hash(e.agent_id).await.unwrap().unwrap();
    assert_eq!(secret, format!("s{}", winners[0]));
}

async fn enrollment_sweep(store: Arc<dyn Store>) {
    let unused = enrollment("never", "hu", 1000);
    store.create_enrollment(&unused).await.unwrap();
    let used = enrollment("used", "hd", 1000);
    store.create_enrollment(&used).await.unwrap();
    store
        .redeem_enrollment("hd", 2000, "x", "s")
        .await
        .unwrap()
        .unwrap();
    // before expiry: only the used token goes
    assert_eq!(store.sweep_enrollments(3000).await.unwrap(), 1);
    assert!(
        store
            .pending_enrollment("hu", 3000)
            .await
            .unwrap()
            .is_some()
    );
    // after expiry: the unused token goes, and its never-enrolled agent is retired
    assert_eq!(store.sweep_enrollments(unused.expires_at).await.unwrap(), 1);
    let a = store.get_agent(unused.agent_id).await.unwrap().unwrap();
    assert!(a.retired_at.is_some());
    assert!(
        store
            .get_agent(used.agent_id)
            .await
            .unwrap()
            .unwrap()
            .retired_at
            .is_none()
    );
    // the name is free again
    store
        .create_enrollment(&enrollment("never", "hu2", 5000))
        .await
        .unwrap();
    let names: Vec<_> = store
        .list_agents()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["never", "used"]);
}

async fn agents_hello_and_dedup(store: Arc<dyn Store>) {
    let accepted = |replaced: Vec<Uuid>| HelloOutcome::Accepted { replaced };
    let old = enrolled(&store, "old").await;
    let first = hello(old, "machine-1", 3000);
    assert_eq!(
        store.agent_connected(&first).await.unwrap(),
        accepted(vec![])
    );
    let a = store.get_agent(old).await.unwrap().unwrap();
    assert_eq!(
        (
            a.hostname.as_str(),
            a.channel.as_str(),
            a.online,
            a.last_seen
        ),
        ("host", "beta", true, Some(3000))
    );
    assert_eq!(a.machine_uid.as_deref(), Some("machine-1"));
    assert_eq!(a.address.as_deref(), Some("192.0.2.7"));
    // the credential is bound to its first machine identity
    assert_eq!(
        store
            .agent_connected(&hello(old, "machine-2", 3050))
            .await
            .unwrap(),
        HelloOutcome::MachineMismatch {
            recorded: "machine-1".into()
        }
    );
    assert_eq!(
        store.get_agent(old).await.unwrap().unwrap().last_seen,
        Some(3000),
        "a refused hello records nothing"
    );
    // a queued command for the old identity
    let c = command(old, 3100, None);
    store.insert_command(&c).await.unwrap();
    // the same machine re-enrolled under a new name and id, while the old
    // agent is still online: refused, nothing bound
    let new = enrolled(&store, "new").await;
    assert_eq!(
        store
            .agent_connected(&hello(new, "machine-1", 3500))
            .await
            .unwrap(),
        HelloOutcome::MachineInUse { by: old }
    );
    assert_eq!(
        store.get_agent(new).await.unwrap().unwrap().machine_uid,
        None
    );
    // once the old one has gone offline, the first hello replaces it
    store
        .agent_disconnected(old, first.session_id, 3600)
        .await
        .unwrap();
    assert_eq!(
        store
            .agent_connected(&hello(new, "machine-1", 4000))
            .await
            .unwrap(),
        accepted(vec![old])
    );
    let o = store.get_agent(old).await.unwrap().unwrap();
    assert_eq!((o.replaced_by, o.online), (Some(new), false));
    assert!(o.retired_at.is_some());
    assert!(
        store.agent_secret_hash(old).await.unwrap().is_none(),
        "old credential revoked"
    );
    let moved = store.get_command(c.id).await.unwrap().unwrap();
    assert_eq!(
        (moved.agent_id, moved.status),
        (old, CommandStatus::Cancelled),
        "no command moves between agents; the old one's are cancelled"
    );
    let live: Vec<_> = store
        .list_agents()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(live, vec![new]);
    // an empty machine_uid never dedups, and binds "no identity": the
    // credential cannot claim a machine later (the takeover)
    let other = enrolled(&store, "other").await;
    assert_eq!(
        store
            .agent_connected(&hello(other, "", 5000))
            .await
            .unwrap(),
        accepted(vec![])
    );
    assert_eq!(store.list_agents().await.unwrap().len(), 2);
    assert_eq!(
        store
            .agent_connected(&hello(other, "machine-1", 5100))
            .await
            .unwrap(),
        HelloOutcome::MachineMismatch {
            recorded: String::new()
        }
    );
    assert!(
        store
            .get_agent(new)
            .await
            .unwrap()
            .unwrap()
            .retired_at
            .is_none()
    );
    // an existing credential claiming another live agent's machine
    let third = enrolled(&store, "third").await;
    assert_eq!(
        store
            .agent_connected(&hello(third, "machine-3", 5200))
            .await
            .unwrap(),
        accepted(vec![])
    );
    assert_eq!(
        store
            .agent_connected(&hello(third, "machine-1", 5300))
            .await
            .unwrap(),
        HelloOutcome::MachineMismatch {
            recorded: "machine-3".into()
        }
    );
    // retire: credential revoked, unfinished commands cancelled
    let d = command(other, 5400, None);
    store.insert_command(&d).await.unwrap();
    assert!(store.retire_agent(other, 6000).await.unwrap());
    assert!(!store.retire_agent(other, 6000).await.unwrap());
    assert!(store.agent_secret_hash(other).await.unwrap().is_none());
    assert_eq!(
        store.get_command(d.id).await.unwrap().unwrap().status,
        CommandStatus::Cancelled
    );
}

async fn agents_disconnect_and_touch(store: Arc<dyn Store>) {
    let a = enrolled(&store, "a").await;
    let b = enrolled(&store, "b").await;
    let ha = hello(a, "ma", 1000);
    store.agent_connected(&ha).await.unwrap();
    store.agent_connected(&hello(b, "mb", 1000)).await.unwrap();
    // coalesced last_seen: one batch, older values never win
    store.touch_agents(&[(a, 5000), (b, 6000)]).await.unwrap();
    store.touch_agents(&[(a, 4000)]).await.unwrap();
    assert_eq!(
        store.get_agent(a).await.unwrap().unwrap().last_seen,
        Some(5000)
    );
    assert_eq!(
        store.get_agent(b).await.unwrap().unwrap().last_seen,
        Some(6000)
    );
    let many: Vec<_> = (0..7000)
        .map(|_| (Uuid::new_v4(), 1))
        .chain([(a, 7000)])
        .collect();
    store.touch_agents(&many).await.unwrap();
    assert_eq!(
        store.get_agent(a).await.unwrap().unwrap().last_seen,
        Some(7000)
    );
    // a stale session cannot mark a reconnected agent offline
    let ha2 = hello(a, "ma", 8000);
    store.agent_connected(&ha2).await.unwrap();
    store
        .agent_disconnected(a, ha.session_id, 8100)
        .await
        .unwrap();
    assert!(store.get_agent(a).await.unwrap().unwrap().online);
    store
        .agent_disconnected(a, ha2.session_id, 8200)
        .await
        .unwrap();
    let got = store.get_agent(a).await.unwrap().unwrap();
    assert_eq!((got.online, got.last_seen), (false, Some(8200)));
}

async fn command_lifecycle(store: Arc<dyn Store>) {
    let a = enrolled(&store, "a").await;
    let c1 = command(a, 1000, Some(10));
    let c2 = command(a, 1001, None);
    store.insert_command(&c1).await.unwrap();
    store.insert_command(&c2).await.unwrap();
    let got = store.get_command(c1.id).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.phase, got.exit_code),
        (CommandStatus::Running, Phase::Queued, None)
    );
    assert_eq!(store.agents_with_work().await.unwrap(), vec![a]);
    // delivery marks them delivered, in order, with the timeout deadline
    let sent = store
        .deliverable_commands(a, 2000, 500, false)
        .await
        .unwrap();
    assert_eq!(
        sent.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![c1.id, c2.id]
    );
    assert_eq!(sent[0].timeout_secs, Some(10));
    assert!(
        store
            .deliverable_commands(a, 2001, 500, false)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.agents_with_work().await.unwrap().is_empty());
    // after a reconnect every non-final command is sent again
    assert_eq!(
        store
            .deliverable_commands(a, 2002, 500, true)
            .await
            .unwrap()
            .len(),
        2
    );
    let got = store.get_command(c1.id).await.unwrap().unwrap();
    assert_eq!(
        (got.phase, got.delivered_at),
        (Phase::Delivered, Some(2000))
    );
    assert!(store.command_started(a, c1.id, 2100).await.unwrap());
    assert!(
        !store
            .command_started(Uuid::new_v4(), c1.id, 2100)
            .await
            .unwrap(),
        "other agents cannot touch it"
    );
    let got = store.get_command(c1.id).await.unwrap().unwrap();
    assert_eq!((got.phase, got.started_at), (Phase::Executing, Some(2100)));
    // output then result
    assert_eq!(
        store
            .append_output(a, c1.id, OutputStream::Stdout, 0, "hel", 1 << 20)
            .await
            .unwrap(),
        AppendOutcome::Appended
    );
    assert_eq!(
        store
            .append_output(a, c1.id, OutputStream::Stdout, 3, "lo\n", 1 << 20)
            .await
            .unwrap(),
        AppendOutcome::Appended
    );
    assert_eq!(
        store
            .append_output(a, c1.id, OutputStream::Stderr, 0, "warn", 1 << 20)
            .await
            .unwrap(),
        AppendOutcome::Appended
    );
    assert_eq!(
        store
            .finish_command(a, &result(c1.id, CommandOutcome::Completed, 6, 4), 9000)
            .await
            .unwrap(),
        FinishOutcome::Stored
    );
    let got = store.get_command(c1.id).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.phase, got.exit_code),
        (CommandStatus::Completed, Phase::Done, Some(0))
    );
    assert_eq!(
        (got.stdout.as_str(), got.stderr.as_str()),
        ("hello\n", "warn")
    );
    assert_eq!((got.started_at, got.completed_at), (Some(2100), Some(6000)));
    // duplicates are harmless
    assert_eq!(
        store
            .finish_command(a, &result(c1.id, CommandOutcome::Failed, 6, 4), 9001)
            .await
            .unwrap(),
        FinishOutcome::AlreadyFinal
    );
    assert_eq!(
        store
            .append_output(a, c1.id, OutputStream::Stdout, 6, "late", 1 << 20)
            .await
            .unwrap(),
        AppendOutcome::Ignored
    );
    assert_eq!(
        store.get_command(c1.id).await.unwrap().unwrap().status,
        CommandStatus::Completed
    );
    // unknown commands, and commands of other agents
    assert_eq!(
        store
            .finish_command(
                a,
                &result(Uuid::new_v4(), CommandOutcome::Completed, 0, 0),
                9000
            )
            .await
            .unwrap(),
        FinishOutcome::Unknown
    );
    assert_eq!(
        store
            .finish_command(
                Uuid::new_v4(),
                &result(c2.id, CommandOutcome::Completed, 0, 0),
                9000
            )
            .await
            .unwrap(),
        FinishOutcome::Unknown
    );
    assert_eq!(
        store
            .append_output(Uuid::new_v4(), c2.id, OutputStream::Stdout, 0, "x", 10)
            .await
            .unwrap(),
        AppendOutcome::Unknown
    );
    // a failed result
    assert_eq!(
        store
            .finish_command(a, &result(c2.id, CommandOutcome::Failed, 0, 0), 9000)
            .await
            .unwrap(),
        FinishOutcome::Stored
    );
    let got = store.get_command(c2.id).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.exit_code),
        (CommandStatus::Failed, Some(3))
    );
    let counts = store.command_counts().await.unwrap();
    assert!(
        counts.contains(&(CommandStatus::Completed, 1))
            && counts.contains(&(CommandStatus::Failed, 1)),
        "{counts:?}"
    );
}

async fn output_offsets_and_cap(store: Arc<dyn Store>) {
    let a = enrolled(&store, "a").await;
    let c = command(a, 1000, None);
    store.insert_command(&c).await.unwrap();
    let put = |off: u64, data: &'static str| {
        let store = store.clone();
        async move {
            store
                .append_output(a, c.id, OutputStream::Stdout, off, data, 10)
                .await
                .unwrap()
        }
    };
    assert_eq!(put(0, "abcd").await, AppendOutcome::Appended);
    assert_eq!(
        put(0, "abcd").await,
        AppendOutcome::Ignored,
        "re-sent chunk"
    );
    assert_eq!(put(6, "zz").await, AppendOutcome::Ignored, "gap");
    assert_eq!(
        put(2, "cdef").await,
        AppendOutcome::Appended,
        "overlap keeps the new tail"
    );
    assert_eq!(
        put(6, "ghijkl").await,
        AppendOutcome::Appended,
        "cut at the 10-byte cap"
    );
    assert_eq!(
        put(12, "more").await,
        AppendOutcome::Appended,
        "counted, not stored"
    );
    let got = store.get_command(c.id).await.unwrap().unwrap();
    assert_eq!(got.stdout, "abcdefghij");
    assert_eq!((got.stdout_len, got.stdout_truncated), (16, true));
    // the result matches the bytes received, not the bytes stored
    assert_eq!(
        store
            .finish_command(a, &result(c.id, CommandOutcome::Completed, 16, 0), 9000)
            .await
            .unwrap(),
        FinishOutcome::Stored
    );
    let got = store.get_command(c.id).await.unwrap().unwrap();
    assert!(got.stdout_truncated && !got.stderr_truncated);
}

async fn results_need_complete_output(store: Arc<dyn Store>) {
    let a = enrolled(&store, "a").await;
    let c = command(a, 1000, None);
    store.insert_command(&c).await.unwrap();
    store
        .append_output(a, c.id, OutputStream::Stdout, 0, "abc", 100)
        .await
        .unwrap();
    assert_eq!(
        store
            .finish_command(a, &result(c.id, CommandOutcome::Completed, 6, 0), 9000)
            .await
            .unwrap(),
        FinishOutcome::Incomplete {
            stdout_len: 3,
            stderr_len: 0
        }
    );
    assert_eq!(
        store.get_command(c.id).await.unwrap().unwrap().status,
        CommandStatus::Running
    );
    store
        .append_output(a, c.id, OutputStream::Stdout, 3, "def", 100)
        .await
        .unwrap();
    assert_eq!(
        store
            .finish_command(a, &result(c.id, CommandOutcome::Completed, 6, 0), 9000)
            .await
            .unwrap(),
        FinishOutcome::Stored
    );
}

async fn cancel_and_expiry(store: Arc<dyn Store>) {
    let a = enrolled(&store, "a").await;
    // queued -> cancelled at once, never delivered
    let q = command(a, 1000, None);
    store.insert_command(&q).await.unwrap();
    assert_eq!(
        store.request_cancel(q.id, 1500).await.unwrap(),
        CancelOutcome::CancelledQueued
    );
    assert_eq!(
        store.get_command(q.id).await.unwrap().unwrap().status,
        CommandStatus::Cancelled
    );
    assert!(
        store
            .deliverable_commands(a, 1600, 0, true)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.request_cancel(q.id, 1700).await.unwrap(),
        CancelOutcome::AlreadyFinal(CommandStatus::Cancelled)
    );
    assert_eq!(
        store.request_cancel(Uuid::new_v4(), 1700).await.unwrap(),
        CancelOutcome::NotFound
    );
    // delivered -> requested, the agent is asked, final after the grace period
    let d = command(a, 2000, None);
    let t = command(a, 2001, Some(5));
    store.insert_command(&d).await.unwrap();
    store.insert_command(&t).await.unwrap();
    store
        .deliverable_commands(a, 3000, 1000, false)
        .await
        .unwrap();
    assert_eq!(
        store.request_cancel(d.id, 3500).await.unwrap(),
        CancelOutcome::Requested
    );
    assert_eq!(store.cancel_requests(a).await.unwrap(), vec![d.id]);
    assert_eq!(store.agents_with_work().await.unwrap(), vec![a]);
    // timeout deadline = delivery 3000 + 5 s + 1 s grace = 9000
    assert!(
        store
            .expire_commands(8999, 10_000)
            .await
            .unwrap()
            .is_empty()
    );
    let expired = store.expire_commands(9000, 10_000).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(
        (expired[0].id, expired[0].status),
        (t.id, CommandStatus::Timeout)
    );
    let expired = store.expire_commands(13_500, 10_000).await.unwrap();
    assert_eq!(
        expired.iter().map(|e| (e.id, e.status)).collect::<Vec<_>>(),
        vec![(d.id, CommandStatus::Cancelled)]
    );
    assert_eq!(
        store.get_command(t.id).await.unwrap().unwrap().status,
        CommandStatus::Timeout
    );
    // the agent's own cancelled result is acknowledged as a duplicate now
    assert_eq!(
        store
            .finish_command(a, &result(d.id, CommandOutcome::Cancelled, 0, 0), 14_000)
            .await
            .unwrap(),
        FinishOutcome::AlreadyFinal
    );
    assert!(store.cancel_requests(a).await.unwrap().is_empty());
}

async fn command_paging(store: Arc<dyn Store>) {
    let a = enrolled(&store, "a").await;
    let b = enrolled(&store, "b").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let c = command(a, 1000 + i / 2, None); // equal timestamps tie-break by id
        store.insert_command(&c).await.unwrap();
        ids.push((c.created_at, c.id));
    }
    store.insert_command(&command(b, 1000, None)).await.unwrap();
    ids.sort();
    ids.reverse();
    let want: Vec<Uuid> = ids.iter().map(|x| x.1).collect();
    let mut got = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_commands(a, before, 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        before = page.last().map(|c| c.id);
        got.extend(page.into_iter().map(|c| c.id));
    }
    assert_eq!(got, want);
    assert!(
        store
            .list_commands(a, Some(Uuid::new_v4()), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn audit_append_only(store: Arc<dyn Store>) {
    for i in 0..5 {
        store
            .append_audit(&NewAudit {
                at: i,
                actor: "admin@example.com".into(),
                action: format!("test.{i}"),
                target: Some("x".into()),
                address: Some("127.0.0.1".into()),
                detail: serde_json::json!({"i": i}),
            })
            .await
            .unwrap();
    }
    let page = store.list_audit(None, 3).await.unwrap();
    assert_eq!(
        page.iter()
            .map(|e| e.entry.action.as_str())
            .collect::<Vec<_>>(),
        ["test.4", "test.3", "test.2"]
    );
    assert_eq!(page[0].entry.detail["i"], 4);
    let rest = store.list_audit(Some(page[2].id), 10).await.unwrap();
    assert_eq!(rest.len(), 2);
    // retention deletes only what is older than the cutoff
    assert_eq!(store.prune_audit(2).await.unwrap(), 2);
    assert_eq!(store.prune_audit(2).await.unwrap(), 0);
    let left: Vec<i64> = store
        .list_audit(None, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.entry.at)
        .collect();
    assert_eq!(left, [4, 3, 2]);
}

async fn migrations_are_idempotent(store: Arc<dyn Store>) {
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.count_users().await.unwrap(), 0);
}

/// The audit log refuses UPDATE and DELETE on both backends.
#[tokio::test]
async fn audit_log_is_append_only_in_sql() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rmm.db");
    let store = rmm_server::store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store
        .append_audit(&NewAudit {
            at: 1,
            actor: "a".into(),
            action: "x".into(),
            target: None,
            address: None,
            detail: serde_json::json!({}),
        })
        .await
        .unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert!(
        sqlx::query("UPDATE audit_log SET actor = 'b'")
            .execute(&pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("DELETE FROM audit_log")
            .execute(&pool)
            .await
            .is_err()
    );
    if let Some(schema) = PgSchema::create().await {
        let store = rmm_server::store::open(&schema.url()).await.unwrap();
        store
            .append_audit(&NewAudit {
                at: 1,
                actor: "a".into(),
                action: "x".into(),
                target: None,
                address: None,
                detail: serde_json::json!({}),
            })
            .await
            .unwrap();
        let pool = sqlx::PgPool::connect(&schema.url()).await.unwrap();
        assert!(
            sqlx::query("UPDATE audit_log SET actor = 'b'")
                .execute(&pool)
                .await
                .is_err()
        );
        assert!(
            sqlx::query("DELETE FROM audit_log")
                .execute(&pool)
                .await
                .is_err()
        );
        pool.close().await;
    }
}

async fn inventory_keeps_the_newest(store: Arc<dyn Store>) {
    let a = enrolled(&store, "a").await;
    let item = |plugin: &str, collected_at: i64, result: serde_json::Value| InventoryItem {
        agent_id: a,
        plugin: plugin.into(),
        result,
        error: None,
        collected_at,
        received_at: collected_at + 1,
    };
    assert!(
        store
            .put_inventory(&item("disk", 100, serde_json::json!({"free": 10})))
            .await
            .unwrap()
    );
    assert!(
        store
            .put_inventory(&item("disk", 200, serde_json::json!({"free": 9})))
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_inventory(&item("disk", 150, serde_json::json!({"free": 99})))
            .await
            .unwrap(),
        "older result ignored"
    );
    let mut failed = item("apt", 100, serde_json::json!("unknown"));
    failed.error = Some("apt not found".into());
    assert!(store.put_inventory(&failed).await.unwrap());
    let got = store.list_inventory(a).await.unwrap();
    assert_eq!(
        got.iter().map(|i| i.plugin.as_str()).collect::<Vec<_>>(),
        ["apt", "disk"]
    );
    assert_eq!(got[1].result, serde_json::json!({"free": 9}));
    assert_eq!(
        (got[0].result.clone(), got[0].error.as_deref()),
        (serde_json::json!("unknown"), Some("apt not found"))
    );
    assert!(
        store
            .list_inventory(Uuid::new_v4())
            .await
            .unwrap()
            .is_empty()
    );
}

/// Builds a database the way the hand-written migration runner of earlier
/// builds left it (versions 1 and 2 in `schema_migrations`, with a user),
/// then opens it with this build.
async fn legacy_upgrade(url: &str, backend: rmm_server::store::migrations::Backend) {
    use rmm_server::store::migrations::{LEGACY_VERSIONS, sql};
    let run = |statements: String| async move {
        match backend {
            rmm_server::store::migrations::Backend::Sqlite => {
                let opts: sqlx::sqlite::SqliteConnectOptions = url
                    .parse::<sqlx::sqlite::SqliteConnectOptions>()
                    .unwrap()
                    .create_if_missing(true);
                let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(statements))
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            }
            rmm_server::store::migrations::Backend::Postgres => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(statements))
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            }
        }
    };
    let mut old = String::from(
        "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);\n",
    );
    for &v in LEGACY_VERSIONS {
        old.push_str(sql(backend, v).unwrap());
        old.push_str(&format!(
            "\nINSERT INTO schema_migrations (version, applied_at) VALUES ({v}, 1);\n"
        ));
    }
    old.push_str(
        "INSERT INTO users (id, email, password_hash, role, created_at, updated_at) VALUES \
         ('00000000-0000-4000-8000-000000000001', 'old@example.com', 'h', 'admin', 1, 1);",
    );
    run(old).await;
    let store = rmm_server::store::open(url).await.unwrap();
    let u = store
        .user_by_email("old@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (u.token_version, u.disabled_at),
        (0, None),
        "new columns, old data kept"
    );
    assert_eq!(
        store.prune_audit(0).await.unwrap(),
        0,
        "migration 4 applied"
    );
    // opening again is a no-op
    drop(store);
    let store = rmm_server::store::open(url).await.unwrap();
    assert_eq!(store.count_users().await.unwrap(), 1);
    drop(store);
    // an applied migration whose text changed is refused, not skipped
    run("UPDATE _sqlx_migrations SET checksum = checksum || checksum WHERE version = 1".into())
        .await;
    assert!(matches!(
        rmm_server::store::open(url).await,
        Err(StoreError::Migrate(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_database_of_an_earlier_build_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    legacy_upgrade(&url, rmm_server::store::migrations::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_database_of_an_earlier_build_is_upgraded() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    legacy_upgrade(
        &schema.url(),
        rmm_server::store::migrations::Backend::Postgres,
    )
    .await;
}
