//! The wake-up bus: "agent X has work" announcements between server
//! replicas. It is not persistence (the store is), so it is its own trait:
//! a lost announcement only delays delivery until the hub's periodic poll
//! of the store.
//!
//! One process (SQLite) needs no bus ([`LocalBus`]); replicas over
//! PostgreSQL use `NOTIFY`/`LISTEN` ([`PgBus`]).

use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::StoreFuture;

/// The PostgreSQL notification channel for "agent X has work".
const WORK_CHANNEL: &str = "rmm_agent_work";

/// Announces work to other replicas and hears theirs.
pub trait WakeBus: Send + Sync + std::fmt::Debug {
    /// Tells the other replicas that `agent_id` has work.
    fn announce(&self, agent_id: Uuid) -> StoreFuture<'_, ()>;
    /// Starts hearing other replicas' announcements; `None` when there are
    /// no other replicas to hear.
    fn subscribe(&self) -> Option<mpsc::Receiver<Uuid>>;
}

/// The bus of a single server process: nothing to announce to.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalBus;

impl WakeBus for LocalBus {
    fn announce(&self, _agent_id: Uuid) -> StoreFuture<'_, ()> {
        async { Ok(()) }.boxed()
    }

    fn subscribe(&self) -> Option<mpsc::Receiver<Uuid>> {
        None
    }
}

/// PostgreSQL `NOTIFY` / `LISTEN` on the store's database.
#[derive(Debug, Clone)]
pub struct PgBus {
    pool: sqlx::PgPool,
}

impl PgBus {
    /// A bus over `pool`'s database.
    pub fn new(pool: sqlx::PgPool) -> PgBus {
        PgBus { pool }
    }
}

impl WakeBus for PgBus {
    fn announce(&self, agent_id: Uuid) -> StoreFuture<'_, ()> {
        async move {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(WORK_CHANNEL)
                .bind(agent_id.to_string())
                .execute(&self.pool)
                .await?;
            Ok(())
        }
        .boxed()
    }

    fn subscribe(&self) -> Option<mpsc::Receiver<Uuid>> {
        let pool = self.pool.clone();
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot LISTEN for agent work; retrying");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        continue;
                    }
                };
                if let Err(e) = listener.listen(WORK_CHANNEL).await {
                    tracing::warn!(error = %e, "LISTEN failed; retrying");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
                loop {
                    match listener.recv().await {
                        Ok(n) => {
                            if let Ok(id) = Uuid::parse_str(n.payload())
                                && tx.send(id).await.is_err()
                            {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "LISTEN connection failed; reconnecting");
                            break;
                        }
                    }
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        Some(rx)
    }
}
