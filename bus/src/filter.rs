//! Subscriber filters.
//!
//! A [`Filter`] is a conjunction of optional criteria: every criterion that is set must
//! hold for an event to match, and an unset criterion matches anything. The two list
//! criteria (object kinds and event ids) are disjunctions inside themselves: an event
//! matches `kinds` if its object kind is any of the listed ones. An empty list is
//! allowed and matches nothing. [`Filter::all`] (also `Filter::default()`) matches every
//! event.
//!
//! Matching is evaluated by the publisher, under the hub's lock, once per subscriber and
//! event, so it is kept cheap: no allocation, no user code.

use vireo_messages::{Event, ObjectKind, Uuid};

/// Which events a subscriber wants.
///
/// Build one with [`Filter::all`] and the chaining methods:
///
/// ```
/// use vireo_bus::Filter;
/// use vireo_messages::ObjectKind;
///
/// // Lifecycle events (id 0) of domains and anything about networks, from the host's
/// // default hypervisor instance only.
/// let f = Filter::all()
///     .event_id(ObjectKind::Domain, 0)
///     .event_id(ObjectKind::Network, 0)
///     .event_id(ObjectKind::Network, 1)
///     .origin(0);
/// # let _ = f;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// If set, the object's kind must be one of these.
    pub kinds: Option<Vec<ObjectKind>>,
    /// If set, the pair (object kind, [`EventKind::event_id`]) must be one of these.
    ///
    /// [`EventKind::event_id`]: vireo_messages::EventKind::event_id
    pub event_ids: Option<Vec<(ObjectKind, i32)>>,
    /// If set, the object's uuid must be this one (objects without a uuid never match).
    pub uuid: Option<Uuid>,
    /// If set, the object's name must be exactly this one.
    pub name: Option<String>,
    /// If set, the event must have been raised by this hypervisor instance.
    pub origin: Option<u32>,
}

impl Filter {
    /// A filter that matches every event.
    pub fn all() -> Filter {
        Filter::default()
    }

    /// Also accept objects of `kind` (restricts to the listed kinds on first use).
    pub fn kind(mut self, kind: ObjectKind) -> Filter {
        self.kinds.get_or_insert_with(Vec::new).push(kind);
        self
    }

    /// Also accept events with this (object kind, event id) pair (restricts to the
    /// listed pairs on first use).
    pub fn event_id(mut self, kind: ObjectKind, event_id: i32) -> Filter {
        self.event_ids
            .get_or_insert_with(Vec::new)
            .push((kind, event_id));
        self
    }

    /// Only events about the object with this uuid.
    pub fn uuid(mut self, uuid: Uuid) -> Filter {
        self.uuid = Some(uuid);
        self
    }

    /// Only events about an object with this name.
    pub fn name(mut self, name: impl Into<String>) -> Filter {
        self.name = Some(name.into());
        self
    }

    /// Only events raised by this hypervisor instance.
    pub fn origin(mut self, origin: u32) -> Filter {
        self.origin = Some(origin);
        self
    }

    /// Whether `event` passes every criterion that is set.
    pub fn matches(&self, event: &Event) -> bool {
        let object = &event.object;
        if let Some(origin) = self.origin
            && origin != event.origin
        {
            return false;
        }
        if let Some(kinds) = &self.kinds
            && !kinds.contains(&object.kind)
        {
            return false;
        }
        if let Some(uuid) = &self.uuid
            && object.uuid.as_ref() != Some(uuid)
        {
            return false;
        }
        if let Some(name) = &self.name
            && *name != object.name
        {
            return false;
        }
        if let Some(ids) = &self.event_ids {
            let id = event.kind.event_id();
            if !ids.iter().any(|&(k, i)| k == object.kind && i == id) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vireo_messages::{
        DomainEvent, DomainEventKind, EventKind, NetworkEventKind, ObjectRef, PoolEventKind,
    };

    fn uuid(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn domain(origin: u32, name: &str, n: u8, kind: EventKind) -> Event {
        Event {
            origin,
            object: ObjectRef::domain(name, uuid(n), None),
            kind,
        }
    }

    fn started() -> EventKind {
        EventKind::lifecycle(DomainEventKind::Started, 0)
    }

    fn network(origin: u32) -> Event {
        Event {
            origin,
            object: ObjectRef::named(ObjectKind::Network, "default", Some(uuid(9))),
            kind: EventKind::NetworkLifecycle(NetworkEventKind::Started),
        }
    }

    fn pool_refresh() -> Event {
        Event {
            origin: 0,
            object: ObjectRef::named(ObjectKind::StoragePool, "images", Some(uuid(7))),
            kind: EventKind::PoolRefresh,
        }
    }

    #[test]
    fn all_matches_everything() {
        let f = Filter::all();
        assert!(f.matches(&domain(0, "a", 1, started())));
        assert!(f.matches(&network(3)));
        assert!(f.matches(&pool_refresh()));
    }

    #[test]
    fn kinds_are_alternatives() {
        let f = Filter::all()
            .kind(ObjectKind::Network)
            .kind(ObjectKind::StoragePool);
        assert!(!f.matches(&domain(0, "a", 1, started())));
        assert!(f.matches(&network(0)));
        assert!(f.matches(&pool_refresh()));
        let none = Filter {
            kinds: Some(vec![]),
            ..Filter::all()
        };
        assert!(!none.matches(&network(0)));
    }

    #[test]
    fn event_ids_need_kind_and_id() {
        let f = Filter::all().event_id(ObjectKind::Domain, 1);
        assert!(f.matches(&domain(0, "a", 1, EventKind::Domain(DomainEvent::Reboot))));
        assert!(!f.matches(&domain(0, "a", 1, started())));
        // Pool refresh is event id 1 too, but of another object kind.
        assert!(!f.matches(&pool_refresh()));
        let f = f.event_id(ObjectKind::StoragePool, 1);
        assert!(f.matches(&pool_refresh()));
        let lifecycle = Event {
            kind: EventKind::PoolLifecycle(PoolEventKind::Created),
            ..pool_refresh()
        };
        assert!(!f.matches(&lifecycle));
    }

    #[test]
    fn uuid_name_origin() {
        let by_uuid = Filter::all().uuid(uuid(1));
        assert!(by_uuid.matches(&domain(0, "a", 1, started())));
        assert!(!by_uuid.matches(&domain(0, "a", 2, started())));
        let nodedev = Event {
            origin: 0,
            object: ObjectRef::named(ObjectKind::NodeDevice, "pci_0000_00_02_0", None),
            kind: EventKind::NodeDeviceUpdate,
        };
        assert!(!by_uuid.matches(&nodedev));

        let by_name = Filter::all().name("a");
        assert!(by_name.matches(&domain(0, "a", 1, started())));
        assert!(!by_name.matches(&domain(0, "b", 1, started())));

        let by_origin = Filter::all().origin(3);
        assert!(by_origin.matches(&network(3)));
        assert!(!by_origin.matches(&network(0)));
    }

    #[test]
    fn criteria_combine_with_and() {
        let f = Filter::all().kind(ObjectKind::Domain).origin(2).name("a");
        assert!(f.matches(&domain(2, "a", 1, started())));
        assert!(!f.matches(&domain(1, "a", 1, started())));
        assert!(!f.matches(&domain(2, "b", 1, started())));
        assert!(!f.matches(&network(2)));
    }
}
