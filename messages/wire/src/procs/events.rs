//! Event MESSAGE payloads (server to client).
//!
//! Callback-style messages (what clients that negotiated feature 14 receive) start with
//! the `callbackID` returned at registration. For domain events 0..15 the callback form
//! wraps the legacy message (`{ callbackID, msg }`, three of them with a `reason` in
//! between); the newer events have flat payloads. Legacy (non-callback) messages exist
//! for domain events 0..15 only.

use crate::types::limits::*;
use crate::types::*;

crate::xdr_struct! {
    // ----- legacy domain event messages (also the `msg` of the callback forms) -----

    /// DOMAIN_EVENT_LIFECYCLE (107), and the `msg` of 318.
    #[derive(Eq)]
    pub struct DomainEventLifecycleMsg {
        /// The domain.
        pub dom: NonnullDomain,
        /// `virDomainEventType`.
        pub event: i32,
        /// Per-type detail.
        pub detail: i32,
    }

    /// DOMAIN_EVENT_REBOOT (169), and the `msg` of 319.
    #[derive(Eq)]
    pub struct DomainEventRebootMsg {
        /// The domain.
        pub dom: NonnullDomain,
    }

    /// DOMAIN_EVENT_RTC_CHANGE (170), and the `msg` of 320.
    #[derive(Eq)]
    pub struct DomainEventRtcChangeMsg {
        /// The domain.
        pub dom: NonnullDomain,
        /// New offset from UTC in seconds.
        pub offset: i64,
    }

    /// DOMAIN_EVENT_WATCHDOG (171), and the `msg` of 321.
    #[derive(Eq)]
    pub struct DomainEventWatchdogMsg {
        /// The domain.
        pub dom: NonnullDomain,
        /// `VIR_DOMAIN_EVENT_WATCHDOG_*`.
        pub action: i32,
    }

    /// DOMAIN_EVENT_IO_ERROR (172), and the `msg` of 322.
    #[derive(Eq)]
    pub struct DomainEventIoErrorMsg {
        /// The domain.
        pub dom: NonnullDomain,
        /// Source path of the disk.
        pub src_path: String,
        /// Device alias.
        pub dev_alias: String,
        /// `VIR_DOMAIN_EVENT_IO_ERROR_*`.
        pub action: i32,
    }

    /// A graphics endpoint address (`remote_domain_event_graphics_address`).
    #[derive(Eq)]
    pub struct DomainEventGraphicsAddress {
        /// 0 IPv4, 1 IPv6, 2 UNIX.
        pub family: i32,
        /// Host.
        pub node: String,
        /// Port or path.
        pub service: String,
    }

    /// A graphics client identity (`remote_domain_event_graphics_identity`).
    #[derive(Eq)]
    pub struct DomainEventGraphicsIdentity {
        /// Identity type, e.g. `x509dname`.
        pub type_: String,
        /// Identity.
        pub name: String,
    }

    /// DOMAIN_EVENT_GRAPHICS (173), and the `msg` of 323.
    #[derive(Eq)]
    pub struct DomainEventGraphicsMsg {
        /// The domain.
        pub dom: NonnullDomain,
        /// 0 CONNECT, 1 INITIALIZE, 2 DISCONNECT.
        pub phase: i32,
        /// Server address.
        pub local: DomainEventGraphicsAddress,
        /// Client address.
        pub remote: DomainEventGraphicsAddress,
        /// Auth scheme.
        pub auth_scheme: String,
        /// Client identities.
        pub subject: Vec<DomainEventGraphicsIdentity> [max DOMAIN_EVENT_GRAPHICS_IDENTITY_MAX],
    }

    /// DOMAIN_EVENT_IO_ERROR_REASON (195), and the `msg` of 324.
    #[derive(Eq)]
    pub struct DomainEventIoErrorReasonMsg {
        /// The domain.
        pub dom: NonnullDomain,
        /// Source path of the disk.
        pub src_path: String,
        /// Device alias.
        pub dev_alias: String,
        /// `VIR_DOMAIN_EVENT_IO_ERROR_*`.
        pub action: i32,
        /// Reason, e.g. `enospc`.
        pub reason: String,
    }

    /// DOMAIN_EVENT_CONTROL_ERROR (224), and the `msg` of 325.
    #[derive(Eq)]
    pub struct DomainEventControlErrorMsg {
        /// The domain.
        pub dom: NonnullDomain,
    }

    /// DOMAIN_EVENT_BLOCK_JOB (241), and the `msg` of 326.
    #[derive(Eq)]
    pub struct DomainEventBlockJobMsg {
        /// The domain.
        pub dom: NonnullDomain,
        /// Disk path.
        pub path: String,
        /// `VIR_DOMAIN_BLOCK_JOB_TYPE_*`.
        pub type_: i32,
        /// `VIR_DOMAIN_BLOCK_JOB_*` status.
        pub status: i32,
    }

    /// DOMAIN_EVENT_DISK_CHANGE (248), and the `msg` of 327.
    #[derive(Eq)]
    pub struct DomainEventDiskChangeMsg {
        /// The domain.
        pub dom: NonnullDomain,
        /// Old source.
        pub old_src_path: Option<String>,
        /// New source.
        pub new_src_path: Option<String>,
        /// Device alias.
        pub dev_alias: String,
        /// `VIR_DOMAIN_EVENT_DISK_CHANGE_*`.
        pub reason: i32,
    }

    /// DOMAIN_EVENT_TRAY_CHANGE (268), and the `msg` of 328.
    #[derive(Eq)]
    pub struct DomainEventTrayChangeMsg {
        /// The domain.
        pub dom: NonnullDomain,
        /// Device alias.
        pub dev_alias: String,
        /// 0 OPEN, 1 CLOSE.
        pub reason: i32,
    }

    /// DOMAIN_EVENT_PMWAKEUP (269), PMSUSPEND (270), PMSUSPEND_DISK (292): the domain
    /// only; also the `msg` of 329, 330 and 332.
    #[derive(Eq)]
    pub struct DomainEventPmMsg {
        /// The domain.
        pub dom: NonnullDomain,
    }

    /// DOMAIN_EVENT_BALLOON_CHANGE (276), and the `msg` of 331.
    #[derive(Eq)]
    pub struct DomainEventBalloonChangeMsg {
        /// The domain.
        pub dom: NonnullDomain,
        /// Balloon size in KiB.
        pub actual: u64,
    }

    /// DOMAIN_EVENT_DEVICE_REMOVED (311), and the `msg` of 333.
    #[derive(Eq)]
    pub struct DomainEventDeviceRemovedMsg {
        /// The domain.
        pub dom: NonnullDomain,
        /// Device alias.
        pub dev_alias: String,
    }

    // ----- callback-form domain events -----

    /// DOMAIN_EVENT_CALLBACK_LIFECYCLE (318).
    #[derive(Eq)]
    pub struct DomainEventCallbackLifecycleMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The event.
        pub msg: DomainEventLifecycleMsg,
    }

    /// DOMAIN_EVENT_CALLBACK_REBOOT (319).
    #[derive(Eq)]
    pub struct DomainEventCallbackRebootMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The event.
        pub msg: DomainEventRebootMsg,
    }

    /// DOMAIN_EVENT_CALLBACK_RTC_CHANGE (320).
    #[derive(Eq)]
    pub struct DomainEventCallbackRtcChangeMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The event.
        pub msg: DomainEventRtcChangeMsg,
    }

    /// DOMAIN_EVENT_CALLBACK_WATCHDOG (321).
    #[derive(Eq)]
    pub struct DomainEventCallbackWatchdogMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The event.
        pub msg: DomainEventWatchdogMsg,
    }

    /// DOMAIN_EVENT_CALLBACK_IO_ERROR (322).
    #[derive(Eq)]
    pub struct DomainEventCallbackIoErrorMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The event.
        pub msg: DomainEventIoErrorMsg,
    }

    /// DOMAIN_EVENT_CALLBACK_GRAPHICS (323).
    #[derive(Eq)]
    pub struct DomainEventCallbackGraphicsMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The event.
        pub msg: DomainEventGraphicsMsg,
    }

    /// DOMAIN_EVENT_CALLBACK_IO_ERROR_REASON (324).
    #[derive(Eq)]
    pub struct DomainEventCallbackIoErrorReasonMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The event.
        pub msg: DomainEventIoErrorReasonMsg,
    }

    /// DOMAIN_EVENT_CALLBACK_CONTROL_ERROR (325).
    #[derive(Eq)]
    pub struct DomainEventCallbackControlErrorMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The event.
        pub msg: DomainEventControlErrorMsg,
    }

    /// DOMAIN_EVENT_CALLBACK_BLOCK_JOB (326).
    #[derive(Eq)]
    pub struct DomainEventCallbackBlockJobMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The event.
        pub msg: DomainEventBlockJobMsg,
    }

    /// DOMAIN_EVENT_CALLBACK_DISK_CHANGE (327).
    #[derive(Eq)]
    pub struct DomainEventCallbackDiskChangeMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The event.
        pub msg: DomainEventDiskChangeMsg,
    }

    /// DOMAIN_EVENT_CALLBACK_TRAY_CHANGE (328).
    #[derive(Eq)]
    pub struct DomainEventCallbackTrayChangeMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The event.
        pub msg: DomainEventTrayChangeMsg,
    }

    /// DOMAIN_EVENT_CALLBACK_PMWAKEUP (329), PMSUSPEND (330), PMSUSPEND_DISK (332).
    #[derive(Eq)]
    pub struct DomainEventCallbackPmMsg {
        /// Registration id.
        pub callback_id: i32,
        /// Reason (always 0 so far).
        pub reason: i32,
        /// The event.
        pub msg: DomainEventPmMsg,
    }

    /// DOMAIN_EVENT_CALLBACK_BALLOON_CHANGE (331).
    #[derive(Eq)]
    pub struct DomainEventCallbackBalloonChangeMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The event.
        pub msg: DomainEventBalloonChangeMsg,
    }

    /// DOMAIN_EVENT_CALLBACK_DEVICE_REMOVED (333).
    #[derive(Eq)]
    pub struct DomainEventCallbackDeviceRemovedMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The event.
        pub msg: DomainEventDeviceRemovedMsg,
    }

    /// DOMAIN_EVENT_BLOCK_JOB_2 (339).
    #[derive(Eq)]
    pub struct DomainEventBlockJob2Msg {
        /// Registration id.
        pub callback_id: i32,
        /// The domain.
        pub dom: NonnullDomain,
        /// Disk target.
        pub dst: String,
        /// `VIR_DOMAIN_BLOCK_JOB_TYPE_*`.
        pub type_: i32,
        /// Status.
        pub status: i32,
    }

    /// DOMAIN_EVENT_CALLBACK_TUNABLE (346).
    pub struct DomainEventCallbackTunableMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The domain.
        pub dom: NonnullDomain,
        /// Changed tunables.
        pub params: Vec<TypedParam> [max DOMAIN_EVENT_TUNABLE_MAX],
    }

    /// DOMAIN_EVENT_CALLBACK_AGENT_LIFECYCLE (348).
    #[derive(Eq)]
    pub struct DomainEventCallbackAgentLifecycleMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The domain.
        pub dom: NonnullDomain,
        /// 1 CONNECTED, 2 DISCONNECTED.
        pub state: i32,
        /// Reason.
        pub reason: i32,
    }

    /// DOMAIN_EVENT_CALLBACK_DEVICE_ADDED (354), DEVICE_REMOVAL_FAILED (367).
    #[derive(Eq)]
    pub struct DomainEventCallbackDeviceMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The domain.
        pub dom: NonnullDomain,
        /// Device alias.
        pub dev_alias: String,
    }

    /// DOMAIN_EVENT_CALLBACK_MIGRATION_ITERATION (359).
    #[derive(Eq)]
    pub struct DomainEventCallbackMigrationIterationMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The domain.
        pub dom: NonnullDomain,
        /// Iteration number.
        pub iteration: i32,
    }

    /// DOMAIN_EVENT_CALLBACK_JOB_COMPLETED (363).
    pub struct DomainEventCallbackJobCompletedMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The domain.
        pub dom: NonnullDomain,
        /// Final job statistics.
        pub params: Vec<TypedParam> [max DOMAIN_JOB_STATS_MAX],
    }

    /// DOMAIN_EVENT_CALLBACK_METADATA_CHANGE (379).
    #[derive(Eq)]
    pub struct DomainEventCallbackMetadataChangeMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The domain.
        pub dom: NonnullDomain,
        /// `VIR_DOMAIN_METADATA_*`.
        pub type_: i32,
        /// Namespace URI of an element change.
        pub nsuri: Option<String>,
    }

    /// DOMAIN_EVENT_BLOCK_THRESHOLD (385).
    #[derive(Eq)]
    pub struct DomainEventBlockThresholdMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The domain.
        pub dom: NonnullDomain,
        /// Device target.
        pub dev: String,
        /// Source path.
        pub path: Option<String>,
        /// The threshold that was crossed.
        pub threshold: u64,
        /// Bytes written beyond it.
        pub excess: u64,
    }

    /// DOMAIN_EVENT_MEMORY_FAILURE (423).
    #[derive(Eq)]
    pub struct DomainEventMemoryFailureMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The domain.
        pub dom: NonnullDomain,
        /// `VIR_DOMAIN_EVENT_MEMORY_FAILURE_RECIPIENT_*`.
        pub recipient: i32,
        /// `VIR_DOMAIN_EVENT_MEMORY_FAILURE_ACTION_*`.
        pub action: i32,
        /// `VIR_DOMAIN_MEMORY_FAILURE_*`.
        pub flags: u32,
    }

    /// DOMAIN_EVENT_MEMORY_DEVICE_SIZE_CHANGE (438).
    #[derive(Eq)]
    pub struct DomainEventMemoryDeviceSizeChangeMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The domain.
        pub dom: NonnullDomain,
        /// Device alias.
        pub alias: String,
        /// New size in KiB.
        pub size: u64,
    }

    /// DOMAIN_EVENT_NIC_MAC_CHANGE (453).
    #[derive(Eq)]
    pub struct DomainEventNicMacChangeMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The domain.
        pub dom: NonnullDomain,
        /// Device alias.
        pub alias: String,
        /// Previous MAC.
        pub old_mac: String,
        /// New MAC.
        pub new_mac: String,
    }

    // ----- other objects -----

    /// NETWORK_EVENT_LIFECYCLE (315).
    #[derive(Eq)]
    pub struct NetworkEventLifecycleMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The network.
        pub net: NonnullNetwork,
        /// `VIR_NETWORK_EVENT_*`.
        pub event: i32,
        /// Always 0.
        pub detail: i32,
    }

    /// NETWORK_EVENT_CALLBACK_METADATA_CHANGE (446).
    #[derive(Eq)]
    pub struct NetworkEventCallbackMetadataChangeMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The network.
        pub net: NonnullNetwork,
        /// `VIR_NETWORK_METADATA_*`.
        pub type_: i32,
        /// Namespace URI of an element change.
        pub nsuri: Option<String>,
    }

    /// STORAGE_POOL_EVENT_LIFECYCLE (370).
    #[derive(Eq)]
    pub struct StoragePoolEventLifecycleMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The pool.
        pub pool: NonnullStoragePool,
        /// `VIR_STORAGE_POOL_EVENT_*`.
        pub event: i32,
        /// Always 0.
        pub detail: i32,
    }

    /// STORAGE_POOL_EVENT_REFRESH (373).
    #[derive(Eq)]
    pub struct StoragePoolEventRefreshMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The pool.
        pub pool: NonnullStoragePool,
    }

    /// NODE_DEVICE_EVENT_LIFECYCLE (376).
    #[derive(Eq)]
    pub struct NodeDeviceEventLifecycleMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The device.
        pub dev: NonnullNodeDevice,
        /// `VIR_NODE_DEVICE_EVENT_*`.
        pub event: i32,
        /// Always 0.
        pub detail: i32,
    }

    /// NODE_DEVICE_EVENT_UPDATE (377).
    #[derive(Eq)]
    pub struct NodeDeviceEventUpdateMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The device.
        pub dev: NonnullNodeDevice,
    }

    /// SECRET_EVENT_LIFECYCLE (382).
    #[derive(Eq)]
    pub struct SecretEventLifecycleMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The secret.
        pub secret: NonnullSecret,
        /// 0 DEFINED, 1 UNDEFINED.
        pub event: i32,
        /// Always 0.
        pub detail: i32,
    }

    /// SECRET_EVENT_VALUE_CHANGED (383).
    #[derive(Eq)]
    pub struct SecretEventValueChangedMsg {
        /// Registration id.
        pub callback_id: i32,
        /// The secret.
        pub secret: NonnullSecret,
    }

    /// CONNECT_EVENT_CONNECTION_CLOSED (362).
    #[derive(Eq)]
    pub struct ConnectEventConnectionClosedMsg {
        /// 0 ERROR, 1 EOF, 2 KEEPALIVE, 3 CLIENT.
        pub reason: i32,
    }
}

/// The callback-style event MESSAGE for a Vireo [`Event`](vireo_messages::Event): the
/// procedure to put in the header and the encoded payload, addressed to the
/// registration `callback_id`. Send it with
/// [`encode_packet`](crate::packet::encode_packet) and [`Header::event`](crate::packet::Header::event).
///
/// Returns `None` when the event's object kind does not match its event (a domain event
/// about a network, say). Object references are built from the event's
/// [`ObjectRef`](vireo_messages::ObjectRef): a missing uuid is sent as the nil uuid, and
/// a secret's usage is sent as type 0 (NONE) with the reference's name as usage id.
pub fn encode_event_message(
    callback_id: i32,
    event: &vireo_messages::Event,
) -> Option<(super::RemoteProc, bytes::BytesMut)> {
    use super::RemoteProc as P;
    use crate::xdr::to_bytes;
    use vireo_messages::{DomainEvent as D, EventKind as K, ObjectKind};

    let obj = &event.object;
    let uuid = obj.uuid.unwrap_or_default();
    let dom = || NonnullDomain::new(obj.name.clone(), uuid, obj.id);
    let net = || NonnullNetwork {
        name: obj.name.clone(),
        uuid,
    };
    let pool = || NonnullStoragePool {
        name: obj.name.clone(),
        uuid,
    };
    let dev = || NonnullNodeDevice {
        name: obj.name.clone(),
    };
    let secret = || NonnullSecret {
        uuid,
        usage_type: 0,
        usage_id: obj.name.clone(),
    };
    let id = callback_id;
    let out = match (&event.kind, obj.kind) {
        (K::Domain(d), ObjectKind::Domain) => match d {
            D::Lifecycle(l) => (
                P::DomainEventCallbackLifecycle,
                to_bytes(&DomainEventCallbackLifecycleMsg {
                    callback_id: id,
                    msg: DomainEventLifecycleMsg {
                        dom: dom(),
                        event: l.event as i32,
                        detail: l.detail,
                    },
                }),
            ),
            D::Reboot => (
                P::DomainEventCallbackReboot,
                to_bytes(&DomainEventCallbackRebootMsg {
                    callback_id: id,
                    msg: DomainEventRebootMsg { dom: dom() },
                }),
            ),
            D::RtcChange { offset } => (
                P::DomainEventCallbackRtcChange,
                to_bytes(&DomainEventCallbackRtcChangeMsg {
                    callback_id: id,
                    msg: DomainEventRtcChangeMsg {
                        dom: dom(),
                        offset: *offset,
                    },
                }),
            ),
            D::Watchdog { action } => (
                P::DomainEventCallbackWatchdog,
                to_bytes(&DomainEventCallbackWatchdogMsg {
                    callback_id: id,
                    msg: DomainEventWatchdogMsg {
                        dom: dom(),
                        action: *action,
                    },
                }),
            ),
            D::IoError {
                src_path,
                dev_alias,
                action,
                reason: None,
            } => (
                P::DomainEventCallbackIoError,
                to_bytes(&DomainEventCallbackIoErrorMsg {
                    callback_id: id,
                    msg: DomainEventIoErrorMsg {
                        dom: dom(),
                        src_path: src_path.clone(),
                        dev_alias: dev_alias.clone(),
                        action: *action,
                    },
                }),
            ),
            D::IoError {
                src_path,
                dev_alias,
                action,
                reason: Some(reason),
            } => (
                P::DomainEventCallbackIoErrorReason,
                to_bytes(&DomainEventCallbackIoErrorReasonMsg {
                    callback_id: id,
                    msg: DomainEventIoErrorReasonMsg {
                        dom: dom(),
                        src_path: src_path.clone(),
                        dev_alias: dev_alias.clone(),
                        action: *action,
                        reason: reason.clone(),
                    },
                }),
            ),
            D::ControlError => (
                P::DomainEventCallbackControlError,
                to_bytes(&DomainEventCallbackControlErrorMsg {
                    callback_id: id,
                    msg: DomainEventControlErrorMsg { dom: dom() },
                }),
            ),
            D::TrayChange { dev_alias, reason } => (
                P::DomainEventCallbackTrayChange,
                to_bytes(&DomainEventCallbackTrayChangeMsg {
                    callback_id: id,
                    msg: DomainEventTrayChangeMsg {
                        dom: dom(),
                        dev_alias: dev_alias.clone(),
                        reason: *reason,
                    },
                }),
            ),
            D::PmWakeup { reason } | D::PmSuspend { reason } => (
                if matches!(d, D::PmWakeup { .. }) {
                    P::DomainEventCallbackPmwakeup
                } else {
                    P::DomainEventCallbackPmsuspend
                },
                to_bytes(&DomainEventCallbackPmMsg {
                    callback_id: id,
                    reason: *reason,
                    msg: DomainEventPmMsg { dom: dom() },
                }),
            ),
            D::BalloonChange { actual } => (
                P::DomainEventCallbackBalloonChange,
                to_bytes(&DomainEventCallbackBalloonChangeMsg {
                    callback_id: id,
                    msg: DomainEventBalloonChangeMsg {
                        dom: dom(),
                        actual: *actual,
                    },
                }),
            ),
            D::DeviceRemoved { dev_alias } => (
                P::DomainEventCallbackDeviceRemoved,
                to_bytes(&DomainEventCallbackDeviceRemovedMsg {
                    callback_id: id,
                    msg: DomainEventDeviceRemovedMsg {
                        dom: dom(),
                        dev_alias: dev_alias.clone(),
                    },
                }),
            ),
            D::AgentLifecycle { state, reason } => (
                P::DomainEventCallbackAgentLifecycle,
                to_bytes(&DomainEventCallbackAgentLifecycleMsg {
                    callback_id: id,
                    dom: dom(),
                    state: *state,
                    reason: *reason,
                }),
            ),
            D::DeviceAdded { dev_alias } | D::DeviceRemovalFailed { dev_alias } => (
                if matches!(d, D::DeviceAdded { .. }) {
                    P::DomainEventCallbackDeviceAdded
                } else {
                    P::DomainEventCallbackDeviceRemovalFailed
                },
                to_bytes(&DomainEventCallbackDeviceMsg {
                    callback_id: id,
                    dom: dom(),
                    dev_alias: dev_alias.clone(),
                }),
            ),
            D::MigrationIteration { iteration } => (
                P::DomainEventCallbackMigrationIteration,
                to_bytes(&DomainEventCallbackMigrationIterationMsg {
                    callback_id: id,
                    dom: dom(),
                    iteration: *iteration,
                }),
            ),
            D::JobCompleted { stats } => (
                P::DomainEventCallbackJobCompleted,
                to_bytes(&DomainEventCallbackJobCompletedMsg {
                    callback_id: id,
                    dom: dom(),
                    params: typed_params_to_wire(stats),
                }),
            ),
            D::MetadataChange { kind, nsuri } => (
                P::DomainEventCallbackMetadataChange,
                to_bytes(&DomainEventCallbackMetadataChangeMsg {
                    callback_id: id,
                    dom: dom(),
                    type_: *kind,
                    nsuri: nsuri.clone(),
                }),
            ),
        },
        (K::NetworkLifecycle(e), ObjectKind::Network) => (
            P::NetworkEventLifecycle,
            to_bytes(&NetworkEventLifecycleMsg {
                callback_id: id,
                net: net(),
                event: *e as i32,
                detail: 0,
            }),
        ),
        (K::NetworkMetadataChange { kind, nsuri }, ObjectKind::Network) => (
            P::NetworkEventCallbackMetadataChange,
            to_bytes(&NetworkEventCallbackMetadataChangeMsg {
                callback_id: id,
                net: net(),
                type_: *kind,
                nsuri: nsuri.clone(),
            }),
        ),
        (K::PoolLifecycle(e), ObjectKind::StoragePool) => (
            P::StoragePoolEventLifecycle,
            to_bytes(&StoragePoolEventLifecycleMsg {
                callback_id: id,
                pool: pool(),
                event: *e as i32,
                detail: 0,
            }),
        ),
        (K::PoolRefresh, ObjectKind::StoragePool) => (
            P::StoragePoolEventRefresh,
            to_bytes(&StoragePoolEventRefreshMsg {
                callback_id: id,
                pool: pool(),
            }),
        ),
        (K::NodeDeviceLifecycle(e), ObjectKind::NodeDevice) => (
            P::NodeDeviceEventLifecycle,
            to_bytes(&NodeDeviceEventLifecycleMsg {
                callback_id: id,
                dev: dev(),
                event: *e as i32,
                detail: 0,
            }),
        ),
        (K::NodeDeviceUpdate, ObjectKind::NodeDevice) => (
            P::NodeDeviceEventUpdate,
            to_bytes(&NodeDeviceEventUpdateMsg {
                callback_id: id,
                dev: dev(),
            }),
        ),
        (K::SecretLifecycle(e), ObjectKind::Secret) => (
            P::SecretEventLifecycle,
            to_bytes(&SecretEventLifecycleMsg {
                callback_id: id,
                secret: secret(),
                event: *e,
                detail: 0,
            }),
        ),
        (K::SecretValueChanged, ObjectKind::Secret) => (
            P::SecretEventValueChanged,
            to_bytes(&SecretEventValueChangedMsg {
                callback_id: id,
                secret: secret(),
            }),
        ),
        _ => return None,
    };
    Some(out)
}
