//! The directory of one driver instance: which domains exist, under which name, uuid and
//! id, in which state, and who owns each: a live domain actor, or nobody (the domain
//! *hibernates*, see [`Owner`]).
//!
//! Lookups and listings are answered straight from the directory without a message to
//! any actor, so many connections can look things up in parallel. Only the driver actor
//! inserts entries (it alone checks that names and uuids stay unique) and wakes
//! hibernated domains; a domain actor updates its own entry's runtime fields *before* it
//! replies to the job that changed them, so a client that saw the reply also sees the new
//! state in a listing, and hands its entry back to hibernation itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use ractor::{ActorId, ActorRef};
use vireo_messages::{DomainId, StateReason, Uuid, VirResult};
use vireo_xml::{DomainDef, FormatOptions};

use crate::domain::DomainMsg;

/// What is kept of a hibernated domain besides its directory entry: the persistent
/// definition as canonical inactive XML (the text the store holds; about 1/15 of the
/// parsed tree's size) and the three figures `virDomainGetInfo` needs, so that info
/// does not have to parse it.
#[derive(Debug, PartialEq, Eq)]
pub struct Dormant {
    /// `format(inactive, secure)` of the definition; parses back to the same tree.
    pub xml: Box<str>,
    /// `<memory>` in KiB.
    pub max_mem_kib: u64,
    /// `<currentMemory>` in KiB.
    pub mem_kib: u64,
    /// vCPUs online at boot (`<vcpu current=…>`, else `<vcpu>`).
    pub vcpus: u32,
    /// `<vcpu>`: the maximum.
    pub max_vcpus: u32,
}

impl Dormant {
    /// The compact form of a definition.
    pub fn of(def: &DomainDef) -> Dormant {
        Dormant::with_xml(def, def.format(&Dormant::FORMAT))
    }

    /// The compact form of a definition already formatted with [`Dormant::FORMAT`].
    pub fn with_xml(def: &DomainDef, xml: String) -> Dormant {
        Dormant {
            xml: xml.into_boxed_str(),
            max_mem_kib: def.memory_kib(),
            mem_kib: def.current_memory_kib(),
            vcpus: def.current_vcpus(),
            max_vcpus: def.vcpus(),
        }
    }

    /// How the definition is formatted: as the store writes it (inactive, secrets kept).
    pub const FORMAT: FormatOptions = FormatOptions {
        id: None,
        inactive: true,
        secure: true,
    };

    /// The definition as a tree again.
    pub fn definition(&self) -> VirResult<DomainDef> {
        DomainDef::parse(&self.xml)
    }
}

/// Who owns a domain right now.
///
/// A domain that is shut off, persistent and has no job running *hibernates*: no actor
/// exists for it, and the directory entry plus its [`Dormant`] definition are the whole
/// truth. Queries read them; the first job goes to the driver actor, which spawns the
/// domain actor from them (the only place an actor is spawned for an existing domain,
/// so there is never more than one). When the domain is inactive and idle again, and no
/// job is on its way to it, the actor writes its compact state back here and drains its
/// mailbox before it stops.
#[derive(Clone)]
pub enum Owner {
    /// A live domain actor.
    Actor(LiveActor),
    /// Nobody: the domain hibernates.
    Hibernated(Arc<Dormant>),
}

impl Owner {
    /// The live actor, if any.
    pub fn actor(&self) -> Option<&ActorRef<DomainMsg>> {
        match self {
            Owner::Actor(l) => Some(&l.actor),
            Owner::Hibernated(_) => None,
        }
    }
}

/// A live domain actor and the number of jobs on their way to it. A sender counts a job
/// while it still holds the directory's read lock ([`Directory::route_job`]); the actor
/// counts it off when the job arrives, and goes to sleep only when the count is zero
/// (checked under the write lock). So a job routed to an actor is handled by that
/// actor, never bounced by a hibernation that raced with it.
#[derive(Clone)]
pub struct LiveActor {
    /// The actor.
    pub actor: ActorRef<DomainMsg>,
    inbound: Arc<AtomicUsize>,
}

impl LiveActor {
    /// Wraps an actor that counts off its jobs in `inbound`.
    pub(crate) fn new(actor: ActorRef<DomainMsg>, inbound: Arc<AtomicUsize>) -> LiveActor {
        LiveActor { actor, inbound }
    }

    /// Counts one more job on its way.
    pub(crate) fn count(&self) {
        self.inbound.fetch_add(1, Ordering::AcqRel);
    }

    /// Sends a job already counted; a refused job is counted off again and handed back
    /// (`None` if the actor system lost it).
    // The refused message comes back by value so it can be routed again as it is.
    #[allow(clippy::result_large_err)]
    pub(crate) fn send_counted(&self, msg: DomainMsg) -> Result<(), Option<DomainMsg>> {
        match self.actor.cast(msg) {
            Ok(()) => Ok(()),
            Err(e) => {
                job_arrived(&self.inbound);
                match e {
                    ractor::MessagingErr::SendErr(m) => Err(Some(m)),
                    _ => Err(None),
                }
            }
        }
    }
}

/// Counts off one job on its way (the actor calls this when a job arrives).
pub(crate) fn job_arrived(inbound: &AtomicUsize) {
    let _ = inbound.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
}

/// Where a job goes, as [`Directory::route_job`] found it.
pub(crate) enum Route {
    /// No such domain.
    Gone,
    /// Its live actor; the job is already counted as on its way.
    Actor(LiveActor),
    /// It hibernates: the driver must wake it.
    Hibernated,
}

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
    /// The owning actor, or the compact state of a hibernated domain.
    pub owner: Owner,
    /// `virDomainGetXMLDesc(0)` of a domain with an actor, as the actor last formatted
    /// it; dropped by the actor at every change (see `DomainActorState::sync_directory`),
    /// so a reader finds either the current text or none and then asks the actor.
    pub live_xml: Option<Arc<str>>,
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

    /// The cached `virDomainGetXMLDesc(0)` text of a domain that has an actor.
    pub fn live_xml(&self, uuid: &Uuid) -> Option<Arc<str>> {
        let g = self.inner.read().unwrap();
        let e = g.by_uuid.get(uuid)?;
        match e.owner {
            Owner::Actor(_) => e.live_xml.clone(),
            Owner::Hibernated(_) => None,
        }
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
        self.with_list(pred, |v| v.iter().map(|e| (*e).clone()).collect())
    }

    /// Runs `f` on the entries matching `pred`, in [`Directory::list`]'s order, under
    /// the read lock: a reply can be built straight from this snapshot without copying
    /// any entry. `f` must not touch the directory.
    pub fn with_list<R>(
        &self,
        pred: impl Fn(&DomainEntry) -> bool,
        f: impl FnOnce(&[&DomainEntry]) -> R,
    ) -> R {
        let g = self.inner.read().unwrap();
        let mut v: Vec<&DomainEntry> = g.by_uuid.values().filter(|e| pred(e)).collect();
        v.sort_unstable_by(|a, b| match (a.id, b.id) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.name.cmp(&b.name),
        });
        f(&v)
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

    /// Every live owning actor (for shutdown).
    pub fn actors(&self) -> Vec<ActorRef<DomainMsg>> {
        self.inner
            .read()
            .unwrap()
            .by_uuid
            .values()
            .filter_map(|e| e.owner.actor().cloned())
            .collect()
    }

    /// Number of domains that have a live actor.
    pub fn live_actors(&self) -> usize {
        self.inner
            .read()
            .unwrap()
            .by_uuid
            .values()
            .filter(|e| e.owner.actor().is_some())
            .count()
    }

    /// Where a job for `uuid` goes; a live actor gets the job counted as on its way
    /// before the lock is released (see [`LiveActor`]).
    pub(crate) fn route_job(&self, uuid: &Uuid) -> Route {
        let g = self.inner.read().unwrap();
        match g.by_uuid.get(uuid).map(|e| &e.owner) {
            None => Route::Gone,
            Some(Owner::Hibernated(_)) => Route::Hibernated,
            Some(Owner::Actor(l)) => {
                l.count();
                Route::Actor(l.clone())
            }
        }
    }

    /// Hands the domain owned by actor `me` back to hibernation with `dormant` as its
    /// definition. Returns false (and changes nothing) if `me` does not own it or a job
    /// is on its way to it.
    pub fn hibernate(&self, uuid: &Uuid, me: ActorId, dormant: Arc<Dormant>) -> bool {
        let mut g = self.inner.write().unwrap();
        match g.by_uuid.get_mut(uuid) {
            Some(e) => match &e.owner {
                Owner::Actor(l)
                    if l.actor.get_id() == me && l.inbound.load(Ordering::Acquire) == 0 =>
                {
                    e.owner = Owner::Hibernated(dormant);
                    true
                }
                _ => false,
            },
            None => false,
        }
    }

    /// Gives a hibernated domain to a freshly spawned actor. Returns false (and changes
    /// nothing) if the entry is gone or already has an actor.
    pub fn wake(&self, uuid: &Uuid, actor: LiveActor) -> bool {
        let mut g = self.inner.write().unwrap();
        match g.by_uuid.get_mut(uuid) {
            Some(e) if matches!(e.owner, Owner::Hibernated(_)) => {
                e.owner = Owner::Actor(actor);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ractor::{Actor, ActorProcessingErr};

    /// Stands in for a domain actor: accepts domain messages and drops them.
    struct Sink;

    impl Actor for Sink {
        type Msg = DomainMsg;
        type State = ();
        type Arguments = ();

        async fn pre_start(
            &self,
            _myself: ActorRef<DomainMsg>,
            _args: (),
        ) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
    }

    const XML: &str = "<domain type='test'><name>d</name><uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid><memory>2048</memory><currentMemory>1024</currentMemory><vcpu>2</vcpu><os><type>hvm</type></os></domain>";

    fn entry(def: &DomainDef) -> DomainEntry {
        DomainEntry {
            live_xml: None,
            uuid: def.uuid().unwrap(),
            name: def.name(),
            id: None,
            state: StateReason::new(vireo_messages::DomainState::Shutoff, 0),
            persistent: true,
            autostart: false,
            managed_save: false,
            snapshots: 0,
            owner: Owner::Hibernated(Arc::new(Dormant::of(def))),
        }
    }

    #[test]
    fn dormant_keeps_the_definition_and_info_figures() {
        let def = DomainDef::parse(XML).unwrap();
        let d = Dormant::of(&def);
        assert_eq!((d.max_mem_kib, d.mem_kib, d.vcpus), (2048, 1024, 2));
        assert_eq!(d.definition().unwrap(), def);
        assert!(d.xml.len() < 300, "{}", d.xml);
    }

    #[tokio::test]
    async fn an_actor_with_a_job_on_its_way_does_not_hibernate() {
        let def = DomainDef::parse(XML).unwrap();
        let uuid = def.uuid().unwrap();
        let dir = Directory::new();
        dir.insert(entry(&def));
        assert!(matches!(dir.route_job(&uuid), Route::Hibernated));
        assert!(matches!(dir.route_job(&Uuid::new_v4()), Route::Gone));

        let (actor, _) = Actor::spawn(None, Sink, ()).await.unwrap();
        let inbound = Arc::new(AtomicUsize::new(0));
        let live = LiveActor::new(actor.clone(), inbound.clone());
        assert!(dir.wake(&uuid, live.clone()));
        assert!(
            !dir.wake(&uuid, live),
            "only a hibernated entry can be woken"
        );
        assert_eq!(dir.live_actors(), 1);

        // A sender has counted its job: the actor may not go to sleep yet.
        let Route::Actor(routed) = dir.route_job(&uuid) else {
            panic!("a live actor is routed to");
        };
        assert_eq!(inbound.load(Ordering::Acquire), 1);
        let dormant = Arc::new(Dormant::of(&def));
        assert!(!dir.hibernate(&uuid, actor.get_id(), dormant.clone()));
        // The job arrives: now it may.
        job_arrived(&inbound);
        let (other, _) = Actor::spawn(None, Sink, ()).await.unwrap();
        assert!(
            !dir.hibernate(&uuid, other.get_id(), dormant.clone()),
            "only the owner puts a domain to sleep"
        );
        assert!(dir.hibernate(&uuid, actor.get_id(), dormant));
        assert_eq!(dir.live_actors(), 0);
        assert!(dir.actors().is_empty());

        // A refused job is counted off again and handed back.
        actor.stop(None);
        let _ = actor.get_cell().wait(None).await;
        let (tx, _rx) = tokio::sync::oneshot::channel();
        let back = routed.send_counted(DomainMsg::Info(tx));
        assert!(matches!(back, Err(Some(DomainMsg::Info(_)))));
        job_arrived(&inbound);
        assert_eq!(inbound.load(Ordering::Acquire), 0, "never below zero");
        other.stop(None);
    }
}
