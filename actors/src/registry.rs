//! A small name/uuid index for networks and pools (domains have the richer
//! [`crate::directory::Directory`]). Same rule: only the driver actor inserts; the
//! owning actor updates its own entry before it replies.

use std::collections::HashMap;
use std::sync::RwLock;

use ractor::ActorRef;
use tokio::sync::oneshot;
use vireo_messages::Uuid;

/// What the index knows about one network or pool.
pub struct Entry<M: Send + 'static> {
    /// Stable identity.
    pub uuid: Uuid,
    /// Name.
    pub name: String,
    /// Running.
    pub active: bool,
    /// Has a persistent definition.
    pub persistent: bool,
    /// Starts with the driver.
    pub autostart: bool,
    /// The owning actor.
    pub actor: ActorRef<M>,
}

impl<M: Send + 'static> Clone for Entry<M> {
    fn clone(&self) -> Self {
        Entry {
            uuid: self.uuid,
            name: self.name.clone(),
            active: self.active,
            persistent: self.persistent,
            autostart: self.autostart,
            actor: self.actor.clone(),
        }
    }
}

/// The index.
pub struct Registry<M: Send + 'static> {
    inner: RwLock<HashMap<Uuid, Entry<M>>>,
}

impl<M: Send + 'static> Default for Registry<M> {
    fn default() -> Self {
        Registry {
            inner: RwLock::new(HashMap::new()),
        }
    }
}

/// Messages that can be asked to stop an object actor.
pub trait Retirable: Sized + Send + 'static {
    /// The retire message.
    fn retire(done: oneshot::Sender<()>) -> Self;
}

impl<M: Retirable> Registry<M> {
    /// Inserts an entry.
    pub fn insert(&self, e: Entry<M>) {
        self.inner.write().unwrap().insert(e.uuid, e);
    }

    /// Removes an entry.
    pub fn remove(&self, uuid: &Uuid) {
        self.inner.write().unwrap().remove(uuid);
    }

    /// Updates an entry in place.
    pub fn update(&self, uuid: &Uuid, f: impl FnOnce(&mut Entry<M>)) {
        if let Some(e) = self.inner.write().unwrap().get_mut(uuid) {
            f(e);
        }
    }

    /// By uuid.
    pub fn by_uuid(&self, uuid: &Uuid) -> Option<Entry<M>> {
        self.inner.read().unwrap().get(uuid).cloned()
    }

    /// By name.
    pub fn by_name(&self, name: &str) -> Option<Entry<M>> {
        self.inner
            .read()
            .unwrap()
            .values()
            .find(|e| e.name == name)
            .cloned()
    }

    /// All entries matching `pred`, sorted by name.
    pub fn list(&self, pred: impl Fn(&Entry<M>) -> bool) -> Vec<Entry<M>> {
        let mut v: Vec<Entry<M>> = self
            .inner
            .read()
            .unwrap()
            .values()
            .filter(|e| pred(e))
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Stops every actor (host shutdown).
    pub async fn retire_all(&self) {
        let actors: Vec<ActorRef<M>> = self
            .inner
            .read()
            .unwrap()
            .values()
            .map(|e| e.actor.clone())
            .collect();
        for a in actors {
            let (tx, rx) = oneshot::channel();
            if a.cast(M::retire(tx)).is_ok() {
                let _ = rx.await;
            }
        }
    }
}
