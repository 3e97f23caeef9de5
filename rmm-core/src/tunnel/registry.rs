//! The server's record of tunnel sessions: who owns which session on which
//! agent.

use std::collections::HashMap;
use std::time::Instant;

use uuid::Uuid;

use super::{Event, SessionState};

/// One registered session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionRecord {
    /// The session.
    pub session_id: Uuid,
    /// Its owner.
    pub technician: String,
    /// The agent it runs on.
    pub agent_id: Uuid,
    /// [`SessionState::Opening`] until the agent confirmed it.
    pub state: SessionState,
    /// When it was registered.
    pub opened_at: Instant,
}

/// Why the registry refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The technician already has a session on this agent (HTTP 409).
    #[error(
        "technician {technician:?} already has session {existing} on agent {agent_id}; \
         close it before opening another"
    )]
    AlreadyActive {
        /// The technician.
        technician: String,
        /// The agent.
        agent_id: Uuid,
        /// The session they already have there.
        existing: Uuid,
    },
    /// The session id is registered already (ids must be unique).
    #[error("session id {session_id} is already registered")]
    DuplicateSessionId {
        /// The id.
        session_id: Uuid,
    },
    /// No session with this id (HTTP 404).
    #[error("session {session_id} not found")]
    NotFound {
        /// The id.
        session_id: Uuid,
    },
    /// The session belongs to another technician (HTTP 403, or 404 to not
    /// reveal that it exists).
    #[error("session {session_id} belongs to another technician")]
    Forbidden {
        /// The id.
        session_id: Uuid,
    },
}

/// Active tunnel sessions, keyed by `(technician, agent_id)` and by id.
///
/// The server registers a session before [`ServerTunnel::open_session`]
/// and removes it when the machine reports [`Event::SessionClosed`]
/// ([`SessionRegistry::apply`] does both bookkeeping steps from events) or
/// the agent's connection drops ([`SessionRegistry::remove_agent`]).
/// Lookups are by owner: another technician gets
/// [`RegistryError::Forbidden`].
///
/// [`ServerTunnel::open_session`]: super::ServerTunnel::open_session
#[derive(Debug, Default)]
pub struct SessionRegistry {
    by_id: HashMap<Uuid, SessionRecord>,
    /// agent -> technician -> session.
    by_owner: HashMap<Uuid, HashMap<String, Uuid>>,
}

impl SessionRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registered sessions.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no session is registered.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Registers a new session of `technician` on `agent_id` in state
    /// [`SessionState::Opening`].
    ///
    /// [`RegistryError::AlreadyActive`] when the technician has one there
    /// already, [`RegistryError::DuplicateSessionId`] when the id is taken.
    pub fn register(
        &mut self,
        now: Instant,
        technician: &str,
        agent_id: Uuid,
        session_id: Uuid,
    ) -> Result<&SessionRecord, RegistryError> {
        if let Some(existing) = self.find(technician, agent_id) {
            return Err(RegistryError::AlreadyActive {
                technician: technician.to_owned(),
                agent_id,
                existing: existing.session_id,
            });
        }
        if self.by_id.contains_key(&session_id) {
            return Err(RegistryError::DuplicateSessionId { session_id });
        }
        self.by_owner
            .entry(agent_id)
            .or_default()
            .insert(technician.to_owned(), session_id);
        let record = SessionRecord {
            session_id,
            technician: technician.to_owned(),
            agent_id,
            state: SessionState::Opening,
            opened_at: now,
        };
        Ok(self.by_id.entry(session_id).or_insert(record))
    }

    /// The session `session_id`, if `technician` owns it.
    pub fn get(&self, technician: &str, session_id: Uuid) -> Result<&SessionRecord, RegistryError> {
        match self.by_id.get(&session_id) {
            None => Err(RegistryError::NotFound { session_id }),
            Some(r) if r.technician != technician => Err(RegistryError::Forbidden { session_id }),
            Some(r) => Ok(r),
        }
    }

    /// The technician's session on `agent_id`, if any.
    pub fn find(&self, technician: &str, agent_id: Uuid) -> Option<&SessionRecord> {
        let id = self.by_owner.get(&agent_id)?.get(technician)?;
        self.by_id.get(id)
    }

    /// Every session of `technician`.
    pub fn sessions_of<'a>(
        &'a self,
        technician: &'a str,
    ) -> impl Iterator<Item = &'a SessionRecord> + 'a {
        self.by_id
            .values()
            .filter(move |r| r.technician == technician)
    }

    /// Every session on `agent_id`.
    pub fn sessions_on(&self, agent_id: Uuid) -> impl Iterator<Item = &SessionRecord> + '_ {
        self.by_id.values().filter(move |r| r.agent_id == agent_id)
    }

    /// Marks a session confirmed by the agent.
    pub fn activate(&mut self, session_id: Uuid) -> Result<(), RegistryError> {
        let record = self
            .by_id
            .get_mut(&session_id)
            .ok_or(RegistryError::NotFound { session_id })?;
        record.state = SessionState::Active;
        Ok(())
    }

    /// Removes `session_id` on behalf of `technician` (owner-checked).
    pub fn unregister(
        &mut self,
        technician: &str,
        session_id: Uuid,
    ) -> Result<SessionRecord, RegistryError> {
        self.get(technician, session_id)?;
        self.remove(session_id)
            .ok_or(RegistryError::NotFound { session_id })
    }

    /// Removes `session_id` (no owner check: for the server's own cleanup).
    pub fn remove(&mut self, session_id: Uuid) -> Option<SessionRecord> {
        let record = self.by_id.remove(&session_id)?;
        if let Some(owners) = self.by_owner.get_mut(&record.agent_id) {
            if owners.get(&record.technician) == Some(&session_id) {
                owners.remove(&record.technician);
            }
            if owners.is_empty() {
                self.by_owner.remove(&record.agent_id);
            }
        }
        Some(record)
    }

    /// Removes every session on `agent_id` (its connection dropped) and
    /// returns them.
    pub fn remove_agent(&mut self, agent_id: Uuid) -> Vec<SessionRecord> {
        let ids: Vec<Uuid> = self.sessions_on(agent_id).map(|r| r.session_id).collect();
        ids.into_iter().filter_map(|id| self.remove(id)).collect()
    }

    /// Applies an event of the [`ServerTunnel`](super::ServerTunnel) of
    /// `agent_id`: [`Event::SessionOpened`] activates the session,
    /// [`Event::SessionClosed`] removes it. Other events are ignored.
    pub fn apply(&mut self, agent_id: Uuid, event: &Event) {
        match event {
            Event::SessionOpened { session_id, .. } => {
                if let Some(r) = self.by_id.get_mut(session_id)
                    && r.agent_id == agent_id
                {
                    r.state = SessionState::Active;
                }
            }
            Event::SessionClosed { session_id, .. }
                if self
                    .by_id
                    .get(session_id)
                    .is_some_and(|r| r.agent_id == agent_id) =>
            {
                self.remove(*session_id);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
// Tests read the real clock once, as the origin of their virtual time.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::tunnel::SessionEnd;

    const AGENT: Uuid = Uuid::from_u128(1);
    const OTHER_AGENT: Uuid = Uuid::from_u128(2);
    const S1: Uuid = Uuid::from_u128(11);
    const S2: Uuid = Uuid::from_u128(12);
    const S3: Uuid = Uuid::from_u128(13);

    #[test]
    fn second_session_of_same_technician_on_same_agent_is_refused() {
        let now = Instant::now();
        let mut reg = SessionRegistry::new();
        reg.register(now, "alice", AGENT, S1).unwrap();
        assert_eq!(
            reg.register(now, "alice", AGENT, S2).unwrap_err(),
            RegistryError::AlreadyActive {
                technician: "alice".into(),
                agent_id: AGENT,
                existing: S1
            }
        );
        // Another agent, or another technician, is fine for the registry
        // (the agent itself refuses a second session with `busy`).
        reg.register(now, "alice", OTHER_AGENT, S2).unwrap();
        reg.register(now, "bob", AGENT, S3).unwrap();
        assert_eq!(reg.len(), 3);
        assert_eq!(
            reg.register(now, "carol", AGENT, S3).unwrap_err(),
            RegistryError::DuplicateSessionId { session_id: S3 }
        );
    }

    #[test]
    fn lookups_are_by_owner() {
        let now = Instant::now();
        let mut reg = SessionRegistry::new();
        reg.register(now, "alice", AGENT, S1).unwrap();
        assert_eq!(reg.get("alice", S1).unwrap().agent_id, AGENT);
        assert_eq!(
            reg.get("bob", S1).unwrap_err(),
            RegistryError::Forbidden { session_id: S1 }
        );
        assert_eq!(
            reg.get("alice", S2).unwrap_err(),
            RegistryError::NotFound { session_id: S2 }
        );
        assert_eq!(
            reg.unregister("bob", S1).unwrap_err(),
            RegistryError::Forbidden { session_id: S1 }
        );
        assert_eq!(reg.sessions_of("alice").count(), 1);
        assert_eq!(reg.sessions_of("bob").count(), 0);
        assert_eq!(reg.unregister("alice", S1).unwrap().session_id, S1);
        assert!(reg.is_empty());
        // The slot is free again.
        reg.register(now, "alice", AGENT, S2).unwrap();
    }

    #[test]
    fn events_drive_the_records() {
        let now = Instant::now();
        let mut reg = SessionRegistry::new();
        reg.register(now, "alice", AGENT, S1).unwrap();
        reg.register(now, "bob", AGENT, S2).unwrap();
        reg.apply(
            AGENT,
            &Event::SessionOpened {
                session_id: S1,
                technician: "alice".into(),
            },
        );
        assert_eq!(reg.get("alice", S1).unwrap().state, SessionState::Active);
        assert_eq!(reg.get("bob", S2).unwrap().state, SessionState::Opening);
        // An event of another agent's machine does not touch the record.
        let closed = Event::SessionClosed {
            session_id: S1,
            technician: "alice".into(),
            reason: SessionEnd::Disconnected,
        };
        reg.apply(OTHER_AGENT, &closed);
        assert_eq!(reg.len(), 2);
        reg.apply(AGENT, &closed);
        assert!(reg.find("alice", AGENT).is_none());
        assert_eq!(reg.remove_agent(AGENT).len(), 1);
        assert!(reg.is_empty());
        assert!(reg.by_owner.is_empty());
        reg.activate(S1).unwrap_err();
    }
}
