//! The directory of one driver instance: which domains exist, under which name, uuid and
//! id, in which state, and which actor owns each.
//!
//! Lookups and listings are answered straight from the directory without a message to
//! any actor, so many connections can look things up in parallel. Only the driver actor
//! inserts entries (it alone checks that names and uuids stay unique); a domain actor
//! updates its own entry's runtime fields *before* it replies to the job that changed
//! them, so a client that saw the reply also sees the new state in a listing.

use std::collections::HashMap;
use std::sync::RwLock;

use ractor::ActorRef;
use vireo_messages::{DomainId, DomainState, StateReason, Uuid};

use crate::domain::DomainMsg;

/// What the directory knows about one domain.
#[derive(Clone)]
pub struct DomainEntry {
    /// Stable identity.
    pub uuid: Uuid,
    /// Current name.
    pub name: String,
    /// Id while active.
    pub id: Option<DomainId>,
    /// State and reason.
    pub state: StateReason,
    /// Has a persistent definition.
    pub persistent: bool,
    /// Starts with its driver.
    pub autostart: bool,
    /// Has a managed-save image.
    pub managed_save: bool,
    /// Number of snapshots (for list filters).
    pub snapshots: u32,
    /// The owning actor.
    pub actor: ActorRef<DomainMsg>,
}

impl DomainEntry {
    /// Whether the domain is active (running, paused, ...).
    pub fn is_active(&self) -> bool {
        self.state.state.is_active()
    }
}

#[derive(Default)]
struct Inner {
    by_uuid: HashMap<Uuid, DomainEntry>,
    by_name: HashMap<String, Uuid>,
    by_id: HashMap<u32, Uuid>,
}

/// A concurrent name/uuid/id index of domains.
#[derive(Default)]
pub struct Directory {
    inner: RwLock<Inner>,
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Directory {
        Directory::default()
    }

    /// Inserts a new entry (the driver actor has checked uniqueness).
    pub fn insert(&self, e: DomainEntry) {
        let mut g = self.inner.write().unwrap();
        g.by_name.insert(e.name.clone(), e.uuid);
        if let Some(id) = e.id {
            g.by_id.insert(id.0, e.uuid);
        }
        g.by_uuid.insert(e.uuid, e);
    }

    /// Removes an entry.
    pub fn remove(&self, uuid: &Uuid) -> Option<DomainEntry> {
        let mut g = self.inner.write().unwrap();
        let e = g.by_uuid.remove(uuid)?;
        if g.by_name.get(&e.name) == Some(uuid) {
            g.by_name.remove(&e.name);
        }
        if let Some(id) = e.id {
            g.by_id.remove(&id.0);
        }
        Some(e)
    }

    /// Updates an entry in place, keeping the name and id indexes right.
    pub fn update(&self, uuid: &Uuid, f: impl FnOnce(&mut DomainEntry)) {
        let mut g = self.inner.write().unwrap();
        let Some(e) = g.by_uuid.get_mut(uuid) else {
            return;
        };
        let (old_name, old_id) = (e.name.clone(), e.id);
        f(e);
        let (new_name, new_id) = (e.name.clone(), e.id);
        if old_name != new_name {
            g.by_name.remove(&old_name);
            g.by_name.insert(new_name, *uuid);
        }
        if old_id != new_id {
            if let Some(id) = old_id {
                g.by_id.remove(&id.0);
            }
            if let Some(id) = new_id {
                g.by_id.insert(id.0, *uuid);
            }
        }
    }

    /// The entry with this uuid.
    pub fn by_uuid(&self, uuid: &Uuid) -> Option<DomainEntry> {
        self.inner.read().unwrap().by_uuid.get(uuid).cloned()
    }

    /// The entry with this name.
    pub fn by_name(&self, name: &str) -> Option<DomainEntry> {
        let g = self.inner.read().unwrap();
        g.by_name.get(name).and_then(|u| g.by_uuid.get(u)).cloned()
    }

    /// The active domain with this id.
    pub fn by_id(&self, id: u32) -> Option<DomainEntry> {
        let g = self.inner.read().unwrap();
        g.by_id.get(&id).and_then(|u| g.by_uuid.get(u)).cloned()
    }

    /// All entries matching `pred`, active ones first by id, then inactive by name (the
    /// order virsh shows).
    pub fn list(&self, pred: impl Fn(&DomainEntry) -> bool) -> Vec<DomainEntry> {
        let g = self.inner.read().unwrap();
        let mut v: Vec<DomainEntry> = g.by_uuid.values().filter(|e| pred(e)).cloned().collect();
        v.sort_by(|a, b| match (a.id, b.id) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.name.cmp(&b.name),
        });
        v
    }

    /// Number of entries matching `pred`.
    pub fn count(&self, pred: impl Fn(&DomainEntry) -> bool) -> usize {
        self.inner
            .read()
            .unwrap()
            .by_uuid
            .values()
            .filter(|e| pred(e))
            .count()
    }

    /// Ids of active domains (ascending).
    pub fn active_ids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.inner.read().unwrap().by_id.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Every owning actor (for shutdown).
    pub fn actors(&self) -> Vec<ActorRef<DomainMsg>> {
        self.inner
            .read()
            .unwrap()
            .by_uuid
            .values()
            .map(|e| e.actor.clone())
            .collect()
    }
}

/// Whether a state counts as "shut off" for list filters.
pub fn is_shutoff(s: DomainState) -> bool {
    s == DomainState::Shutoff
}
