//! Lifecycle and other events, as libvirt numbers them.
//!
//! An [`Event`] names the object it is about ([`ObjectRef`]: kind, name, uuid, and the
//! domain id at the time), the hypervisor instance that raised it (`origin`, so that a
//! private `test:///file.xml` connection only sees its own events), and what happened
//! ([`EventKind`]). The bus stamps each event with a host-wide sequence number; this
//! crate only describes it.

use crate::ids::{DomainId, ObjectKind, Uuid};
use crate::params::TypedParam;

/// Which object an event is about, as it was when the event was raised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// The object's type.
    pub kind: ObjectKind,
    /// Its name (node devices are known by name only).
    pub name: String,
    /// Its uuid (absent for node devices and interfaces).
    pub uuid: Option<Uuid>,
    /// A domain's id when it was active.
    pub id: Option<DomainId>,
}

impl ObjectRef {
    /// A domain reference.
    pub fn domain(name: impl Into<String>, uuid: Uuid, id: Option<DomainId>) -> ObjectRef {
        ObjectRef {
            kind: ObjectKind::Domain,
            name: name.into(),
            uuid: Some(uuid),
            id,
        }
    }

    /// A reference to a network, pool or secret (uuid-identified, no id).
    pub fn named(kind: ObjectKind, name: impl Into<String>, uuid: Option<Uuid>) -> ObjectRef {
        ObjectRef {
            kind,
            name: name.into(),
            uuid,
            id: None,
        }
    }
}

/// One event: who raised it, about what, and what happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The hypervisor instance (driver actor) that raised it; 0 is the host's shared
    /// default instance.
    pub origin: u32,
    /// The object it is about.
    pub object: ObjectRef,
    /// What happened.
    pub kind: EventKind,
}

/// libvirt's `virDomainEventType`: the `event` field of a lifecycle event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
#[allow(missing_docs)]
pub enum DomainEventKind {
    Defined = 0,
    Undefined = 1,
    Started = 2,
    Suspended = 3,
    Resumed = 4,
    Stopped = 5,
    Shutdown = 6,
    PmSuspended = 7,
    Crashed = 8,
}

/// A domain lifecycle event: the event type and its type-specific detail number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LifecycleEvent {
    /// What kind of transition.
    pub event: DomainEventKind,
    /// Its detail (see the `detail` module).
    pub detail: i32,
}

/// Detail values of lifecycle events, grouped by event type.
#[allow(missing_docs)]
pub mod detail {
    pub mod defined {
        pub const ADDED: i32 = 0;
        pub const UPDATED: i32 = 1;
        pub const RENAMED: i32 = 2;
        pub const FROM_SNAPSHOT: i32 = 3;
    }
    pub mod undefined {
        pub const REMOVED: i32 = 0;
        pub const RENAMED: i32 = 1;
    }
    pub mod started {
        pub const BOOTED: i32 = 0;
        pub const MIGRATED: i32 = 1;
        pub const RESTORED: i32 = 2;
        pub const FROM_SNAPSHOT: i32 = 3;
        pub const WAKEUP: i32 = 4;
    }
    pub mod suspended {
        pub const PAUSED: i32 = 0;
        pub const MIGRATED: i32 = 1;
        pub const IOERROR: i32 = 2;
        pub const WATCHDOG: i32 = 3;
        pub const RESTORED: i32 = 4;
        pub const FROM_SNAPSHOT: i32 = 5;
        pub const API_ERROR: i32 = 6;
    }
    pub mod resumed {
        pub const UNPAUSED: i32 = 0;
        pub const MIGRATED: i32 = 1;
        pub const FROM_SNAPSHOT: i32 = 2;
    }
    pub mod stopped {
        pub const SHUTDOWN: i32 = 0;
        pub const DESTROYED: i32 = 1;
        pub const CRASHED: i32 = 2;
        pub const MIGRATED: i32 = 3;
        pub const SAVED: i32 = 4;
        pub const FAILED: i32 = 5;
        pub const FROM_SNAPSHOT: i32 = 6;
    }
    pub mod shutdown {
        pub const FINISHED: i32 = 0;
        pub const GUEST: i32 = 1;
        pub const HOST: i32 = 2;
    }
    pub mod crashed {
        pub const PANICKED: i32 = 0;
        pub const CRASHLOADED: i32 = 1;
    }
}

/// `VIR_NETWORK_EVENT_*` (detail is always 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
#[allow(missing_docs)]
pub enum NetworkEventKind {
    Defined = 0,
    Undefined = 1,
    Started = 2,
    Stopped = 3,
}

/// `VIR_STORAGE_POOL_EVENT_*` (detail is always 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
#[allow(missing_docs)]
pub enum PoolEventKind {
    Defined = 0,
    Undefined = 1,
    Started = 2,
    Stopped = 3,
    Created = 4,
    Deleted = 5,
}

/// `VIR_NODE_DEVICE_EVENT_*` (detail is always 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
#[allow(missing_docs)]
pub enum NodeDeviceEventKind {
    Created = 0,
    Deleted = 1,
    Defined = 2,
    Undefined = 3,
}

/// Domain events other than lifecycle, by libvirt event id.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum DomainEvent {
    /// Event id 0.
    Lifecycle(LifecycleEvent),
    /// Event id 1: the guest rebooted.
    Reboot,
    /// Event id 2: the guest changed its RTC by `offset` seconds.
    RtcChange { offset: i64 },
    /// Event id 3: the watchdog fired; `action` is `VIR_DOMAIN_EVENT_WATCHDOG_*`.
    Watchdog { action: i32 },
    /// Event ids 4 and 6: an I/O error on a disk (with a reason for id 6).
    IoError {
        src_path: String,
        dev_alias: String,
        action: i32,
        reason: Option<String>,
    },
    /// Event id 7: the connection to the hypervisor process failed.
    ControlError,
    /// Event id 10: a removable device's tray opened (0) or closed (1).
    TrayChange { dev_alias: String, reason: i32 },
    /// Event id 11.
    PmWakeup { reason: i32 },
    /// Event id 12.
    PmSuspend { reason: i32 },
    /// Event id 13: the balloon's actual size in KiB.
    BalloonChange { actual: u64 },
    /// Event id 15.
    DeviceRemoved { dev_alias: String },
    /// Event id 18: `VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_*`.
    AgentLifecycle { state: i32, reason: i32 },
    /// Event id 19.
    DeviceAdded { dev_alias: String },
    /// Event id 20.
    MigrationIteration { iteration: i32 },
    /// Event id 21: a job finished; the final job statistics.
    JobCompleted { stats: Vec<TypedParam> },
    /// Event id 22.
    DeviceRemovalFailed { dev_alias: String },
    /// Event id 23: metadata of `kind` (`VIR_DOMAIN_METADATA_*`) changed.
    MetadataChange { kind: i32, nsuri: Option<String> },
}

impl DomainEvent {
    /// libvirt's `VIR_DOMAIN_EVENT_ID_*` for this event.
    pub fn event_id(&self) -> i32 {
        match self {
            DomainEvent::Lifecycle(_) => 0,
            DomainEvent::Reboot => 1,
            DomainEvent::RtcChange { .. } => 2,
            DomainEvent::Watchdog { .. } => 3,
            DomainEvent::IoError { reason: None, .. } => 4,
            DomainEvent::IoError {
                reason: Some(_), ..
            } => 6,
            DomainEvent::ControlError => 7,
            DomainEvent::TrayChange { .. } => 10,
            DomainEvent::PmWakeup { .. } => 11,
            DomainEvent::PmSuspend { .. } => 12,
            DomainEvent::BalloonChange { .. } => 13,
            DomainEvent::DeviceRemoved { .. } => 15,
            DomainEvent::AgentLifecycle { .. } => 18,
            DomainEvent::DeviceAdded { .. } => 19,
            DomainEvent::MigrationIteration { .. } => 20,
            DomainEvent::JobCompleted { .. } => 21,
            DomainEvent::DeviceRemovalFailed { .. } => 22,
            DomainEvent::MetadataChange { .. } => 23,
        }
    }
}

/// What happened to an object.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// Something happened to a domain.
    Domain(DomainEvent),
    /// A network was defined, undefined, started or stopped.
    NetworkLifecycle(NetworkEventKind),
    /// A network's metadata changed.
    NetworkMetadataChange {
        /// `VIR_NETWORK_METADATA_*`.
        kind: i32,
        /// Namespace of an element metadata change.
        nsuri: Option<String>,
    },
    /// A storage pool changed state.
    PoolLifecycle(PoolEventKind),
    /// A storage pool was refreshed.
    PoolRefresh,
    /// A node device appeared or went away.
    NodeDeviceLifecycle(NodeDeviceEventKind),
    /// A node device's configuration changed.
    NodeDeviceUpdate,
    /// A secret was defined (0) or undefined (1).
    SecretLifecycle(i32),
    /// A secret's value changed.
    SecretValueChanged,
}

impl EventKind {
    /// The event id within its object family (what clients register for).
    pub fn event_id(&self) -> i32 {
        match self {
            EventKind::Domain(d) => d.event_id(),
            EventKind::NetworkLifecycle(_)
            | EventKind::PoolLifecycle(_)
            | EventKind::NodeDeviceLifecycle(_)
            | EventKind::SecretLifecycle(_) => 0,
            EventKind::NetworkMetadataChange { .. }
            | EventKind::PoolRefresh
            | EventKind::NodeDeviceUpdate
            | EventKind::SecretValueChanged => 1,
        }
    }

    /// A domain lifecycle event.
    pub fn lifecycle(event: DomainEventKind, detail: i32) -> EventKind {
        EventKind::Domain(DomainEvent::Lifecycle(LifecycleEvent { event, detail }))
    }

    /// The lifecycle part, if this is a domain lifecycle event.
    pub fn as_lifecycle(&self) -> Option<LifecycleEvent> {
        match self {
            EventKind::Domain(DomainEvent::Lifecycle(l)) => Some(*l),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(
            EventKind::lifecycle(DomainEventKind::Stopped, 1).event_id(),
            0
        );
        assert_eq!(EventKind::Domain(DomainEvent::Reboot).event_id(), 1);
        assert_eq!(EventKind::PoolRefresh.event_id(), 1);
        assert_eq!(
            EventKind::Domain(DomainEvent::MetadataChange {
                kind: 0,
                nsuri: None
            })
            .event_id(),
            23
        );
        assert_eq!(DomainEventKind::Crashed as i32, 8);
        assert_eq!(PoolEventKind::Deleted as i32, 5);
    }
}
