//! Event registration and delivery.
//!
//! A session keeps its registrations (callback id -> object family, event id, optional
//! object uuid). On the first registration it starts an event pump: a task subscribed
//! to the host's hub, filtered to the events of its connection's driver instance
//! (`origin`), that turns each matching event into one MESSAGE packet per matching
//! registration (serial 1, status OK), in the payload forms of libvirt-rpc.md §10.2:
//! callback forms (318 lifecycle, 319 reboot, 320 RTC change, ... 379 metadata, 315
//! network lifecycle, 370/373 pool lifecycle/refresh, 376/377 node device lifecycle/
//! update, 382/383 secret lifecycle/value changed) and, for legacy registrations
//! (105 and 167), the old 107/169/170 messages. Everything is dropped when the
//! connection closes.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinHandle;
use vireo_bus::{Delivery, Filter};
use vireo_messages::event::{DomainEvent, Event, EventKind};
use vireo_messages::{ErrorCode, ErrorDomain, ObjectKind, Uuid, VirError, VirResult};
use vireo_wire::RemoteProc as P;
use vireo_wire::packet::encode_event;
use vireo_wire::procs::*;
use vireo_wire::types::{
    NonnullDomain, NonnullNetwork, NonnullNodeDevice, NonnullSecret, NonnullStoragePool,
};

use super::{Handled, args, ret, void};
use crate::session::Session;

/// Which kind of registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Callback-form domain events (316).
    Domain,
    /// Legacy domain events (167, or 105 for lifecycle): no callback id on the wire.
    LegacyDomain,
    /// Network events (313).
    Network,
    /// Storage pool events (368).
    Pool,
    /// Node device events (374).
    NodeDevice,
    /// Secret events (380).
    Secret,
}

/// One registration.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Object family.
    pub family: Family,
    /// The event id within the family.
    pub event_id: i32,
    /// Only events about this object.
    pub uuid: Option<Uuid>,
    /// Only events about this node device (node devices have no uuid).
    pub name: Option<String>,
}

/// A session's registrations and its pump.
#[derive(Default)]
pub struct EventState {
    next_id: i32,
    regs: Arc<std::sync::Mutex<BTreeMap<i32, Registration>>>,
    pump: Option<JoinHandle<()>>,
}

/// Stops the pump and forgets every registration.
pub fn stop(s: &Session) {
    let mut st = s.events.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = st.pump.take() {
        p.abort();
    }
    st.regs.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

fn register(s: &Arc<Session>, reg: Registration) -> VirResult<i32> {
    let conn = s.conn()?;
    let mut st = s.events.lock().unwrap_or_else(|e| e.into_inner());
    let id = st.next_id;
    st.next_id += 1;
    st.regs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, reg);
    if st.pump.is_none() {
        let mut sub = s.host.subscribe(Filter::all().origin(conn.origin()));
        let regs = st.regs.clone();
        let out = s.sender();
        let session = s.id;
        st.pump = Some(tokio::spawn(async move {
            while let Some(d) = sub.recv().await {
                match d {
                    Delivery::Event(stamped) => {
                        let frames = {
                            let regs = regs.lock().unwrap_or_else(|e| e.into_inner());
                            frames_for(&stamped.event, &regs)
                        };
                        for f in frames {
                            if out.send(f.into()).is_err() {
                                return;
                            }
                        }
                    }
                    Delivery::Lagged { missed } => {
                        tracing::warn!(session, missed, "events dropped for a slow client")
                    }
                    Delivery::Gap { .. } => {}
                }
            }
        }));
    }
    Ok(id)
}

fn deregister(s: &Session, id: i32, what: impl FnOnce(&Registration) -> bool) -> VirResult<()> {
    let st = s.events.lock().unwrap_or_else(|e| e.into_inner());
    let mut regs = st.regs.lock().unwrap_or_else(|e| e.into_inner());
    match regs.get(&id) {
        Some(r) if what(r) => {
            regs.remove(&id);
            Ok(())
        }
        _ => Err(VirError::invalid_arg(
            ErrorDomain::Rpc,
            format!("callback {id} not registered"),
        )),
    }
}

fn check_event_id(id: i32, max: i32, api: &str) -> VirResult<()> {
    if id < 0 || id > max {
        return Err(VirError::invalid_arg(
            ErrorDomain::Rpc,
            format!("unsupported event ID {id} in {api}"),
        ));
    }
    Ok(())
}

/// Handles this family's procedures.
pub async fn handle(s: &Arc<Session>, p: P, payload: &[u8]) -> Handled {
    Some(match p {
        P::ConnectDomainEventCallbackRegisterAny => (|| {
            let a: ConnectDomainEventCallbackRegisterAnyArgs = args(payload)?;
            check_event_id(a.event_id, 27, "virConnectDomainEventRegisterAny")?;
            let callback_id = register(
                s,
                Registration {
                    family: Family::Domain,
                    event_id: a.event_id,
                    uuid: a.dom.map(|d| d.uuid),
                    name: None,
                },
            )?;
            ret(&CallbackIdRet { callback_id })
        })(),
        P::ConnectDomainEventCallbackDeregisterAny => (|| {
            let a: CallbackIdArgs = args(payload)?;
            deregister(s, a.callback_id, |r| r.family == Family::Domain)?;
            void()
        })(),
        P::ConnectNetworkEventRegisterAny => (|| {
            let a: ConnectNetworkEventRegisterAnyArgs = args(payload)?;
            check_event_id(a.event_id, 1, "virConnectNetworkEventRegisterAny")?;
            let callback_id = register(
                s,
                Registration {
                    family: Family::Network,
                    event_id: a.event_id,
                    uuid: a.net.map(|n| n.uuid),
                    name: None,
                },
            )?;
            ret(&CallbackIdRet { callback_id })
        })(),
        P::ConnectNetworkEventDeregisterAny => (|| {
            let a: CallbackIdArgs = args(payload)?;
            deregister(s, a.callback_id, |r| r.family == Family::Network)?;
            void()
        })(),
        P::ConnectStoragePoolEventRegisterAny => (|| {
            let a: ConnectStoragePoolEventRegisterAnyArgs = args(payload)?;
            check_event_id(a.event_id, 1, "virConnectStoragePoolEventRegisterAny")?;
            let callback_id = register(
                s,
                Registration {
                    family: Family::Pool,
                    event_id: a.event_id,
                    uuid: a.pool.map(|p| p.uuid),
                    name: None,
                },
            )?;
            ret(&CallbackIdRet { callback_id })
        })(),
        P::ConnectStoragePoolEventDeregisterAny => (|| {
            let a: CallbackIdArgs = args(payload)?;
            deregister(s, a.callback_id, |r| r.family == Family::Pool)?;
            void()
        })(),
        P::ConnectNodeDeviceEventRegisterAny => (|| {
            let a: ConnectNodeDeviceEventRegisterAnyArgs = args(payload)?;
            check_event_id(a.event_id, 1, "virConnectNodeDeviceEventRegisterAny")?;
            let callback_id = register(
                s,
                Registration {
                    family: Family::NodeDevice,
                    event_id: a.event_id,
                    uuid: None,
                    name: a.dev.map(|d| d.name),
                },
            )?;
            ret(&CallbackIdRet { callback_id })
        })(),
        P::ConnectNodeDeviceEventDeregisterAny => (|| {
            let a: CallbackIdArgs = args(payload)?;
            deregister(s, a.callback_id, |r| r.family == Family::NodeDevice)?;
            void()
        })(),
        P::ConnectSecretEventRegisterAny => (|| {
            let a: ConnectSecretEventRegisterAnyArgs = args(payload)?;
            check_event_id(a.event_id, 1, "virConnectSecretEventRegisterAny")?;
            let callback_id = register(
                s,
                Registration {
                    family: Family::Secret,
                    event_id: a.event_id,
                    uuid: a.secret.map(|x| x.uuid),
                    name: None,
                },
            )?;
            ret(&CallbackIdRet { callback_id })
        })(),
        P::ConnectSecretEventDeregisterAny => (|| {
            let a: CallbackIdArgs = args(payload)?;
            deregister(s, a.callback_id, |r| r.family == Family::Secret)?;
            void()
        })(),
        // Legacy forms: at most one registration per event id.
        P::ConnectDomainEventRegisterAny | P::ConnectDomainEventRegister => (|| {
            let event_id = if p == P::ConnectDomainEventRegister {
                0
            } else {
                let a: EventIdArgs = args(payload)?;
                check_event_id(a.event_id, 27, "virConnectDomainEventRegisterAny")?;
                a.event_id
            };
            if legacy_id(s, event_id).is_none() {
                register(
                    s,
                    Registration {
                        family: Family::LegacyDomain,
                        event_id,
                        uuid: None,
                        name: None,
                    },
                )?;
            }
            if p == P::ConnectDomainEventRegister {
                ret(&IntRet { value: 1 })
            } else {
                void()
            }
        })(),
        P::ConnectDomainEventDeregisterAny | P::ConnectDomainEventDeregister => (|| {
            let event_id = if p == P::ConnectDomainEventDeregister {
                0
            } else {
                args::<EventIdArgs>(payload)?.event_id
            };
            let id = legacy_id(s, event_id).ok_or_else(|| {
                VirError::with(
                    ErrorCode::InternalError,
                    ErrorDomain::Rpc,
                    format!("domain event {event_id} not registered"),
                )
            })?;
            deregister(s, id, |_| true)?;
            if p == P::ConnectDomainEventDeregister {
                ret(&IntRet { value: 0 })
            } else {
                void()
            }
        })(),
        _ => return None,
    })
}

fn legacy_id(s: &Session, event_id: i32) -> Option<i32> {
    let st = s.events.lock().unwrap_or_else(|e| e.into_inner());
    let regs = st.regs.lock().unwrap_or_else(|e| e.into_inner());
    regs.iter()
        .find(|(_, r)| r.family == Family::LegacyDomain && r.event_id == event_id)
        .map(|(id, _)| *id)
}

/// The MESSAGE frames one event produces for a set of registrations.
pub fn frames_for(ev: &Event, regs: &BTreeMap<i32, Registration>) -> Vec<Bytes> {
    let obj = &ev.object;
    let family_ok = |f: Family| match obj.kind {
        ObjectKind::Domain => matches!(f, Family::Domain | Family::LegacyDomain),
        ObjectKind::Network => f == Family::Network,
        ObjectKind::StoragePool => f == Family::Pool,
        ObjectKind::NodeDevice => f == Family::NodeDevice,
        ObjectKind::Secret => f == Family::Secret,
        _ => false,
    };
    let event_id = ev.kind.event_id();
    let mut out = Vec::new();
    for (&cb, r) in regs {
        if !family_ok(r.family) || r.event_id != event_id {
            continue;
        }
        if let Some(u) = r.uuid
            && obj.uuid != Some(u)
        {
            continue;
        }
        if let Some(n) = &r.name
            && obj.name != *n
        {
            continue;
        }
        if let Some(f) = encode(ev, cb, r.family == Family::LegacyDomain) {
            out.push(f);
        }
    }
    out
}

fn encode(ev: &Event, cb: i32, legacy: bool) -> Option<Bytes> {
    let obj = &ev.object;
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
    let secret = || NonnullSecret {
        uuid,
        usage_type: 0,
        usage_id: obj.name.clone(),
    };
    Some(match &ev.kind {
        EventKind::Domain(d) => {
            if legacy {
                return encode_legacy(d, dom());
            }
            match d {
                DomainEvent::Lifecycle(l) => encode_event(
                    P::DomainEventCallbackLifecycle,
                    &DomainEventCallbackLifecycleMsg {
                        callback_id: cb,
                        msg: DomainEventLifecycleMsg {
                            dom: dom(),
                            event: l.event as i32,
                            detail: l.detail,
                        },
                    },
                ),
                DomainEvent::Reboot => encode_event(
                    P::DomainEventCallbackReboot,
                    &DomainEventCallbackRebootMsg {
                        callback_id: cb,
                        msg: DomainEventRebootMsg { dom: dom() },
                    },
                ),
                DomainEvent::RtcChange { offset } => encode_event(
                    P::DomainEventCallbackRtcChange,
                    &DomainEventCallbackRtcChangeMsg {
                        callback_id: cb,
                        msg: DomainEventRtcChangeMsg {
                            dom: dom(),
                            offset: *offset,
                        },
                    },
                ),
                DomainEvent::Watchdog { action } => encode_event(
                    P::DomainEventCallbackWatchdog,
                    &DomainEventCallbackWatchdogMsg {
                        callback_id: cb,
                        msg: DomainEventWatchdogMsg {
                            dom: dom(),
                            action: *action,
                        },
                    },
                ),
                DomainEvent::ControlError => encode_event(
                    P::DomainEventCallbackControlError,
                    &DomainEventCallbackControlErrorMsg {
                        callback_id: cb,
                        msg: DomainEventControlErrorMsg { dom: dom() },
                    },
                ),
                DomainEvent::BalloonChange { actual } => encode_event(
                    P::DomainEventCallbackBalloonChange,
                    &DomainEventCallbackBalloonChangeMsg {
                        callback_id: cb,
                        msg: DomainEventBalloonChangeMsg {
                            dom: dom(),
                            actual: *actual,
                        },
                    },
                ),
                DomainEvent::DeviceRemoved { dev_alias } => encode_event(
                    P::DomainEventCallbackDeviceRemoved,
                    &DomainEventCallbackDeviceRemovedMsg {
                        callback_id: cb,
                        msg: DomainEventDeviceRemovedMsg {
                            dom: dom(),
                            dev_alias: dev_alias.clone(),
                        },
                    },
                ),
                DomainEvent::DeviceAdded { dev_alias } => encode_event(
                    P::DomainEventCallbackDeviceAdded,
                    &DomainEventCallbackDeviceMsg {
                        callback_id: cb,
                        dom: dom(),
                        dev_alias: dev_alias.clone(),
                    },
                ),
                DomainEvent::DeviceRemovalFailed { dev_alias } => encode_event(
                    P::DomainEventCallbackDeviceRemovalFailed,
                    &DomainEventCallbackDeviceMsg {
                        callback_id: cb,
                        dom: dom(),
                        dev_alias: dev_alias.clone(),
                    },
                ),
                DomainEvent::MetadataChange { kind, nsuri } => encode_event(
                    P::DomainEventCallbackMetadataChange,
                    &DomainEventCallbackMetadataChangeMsg {
                        callback_id: cb,
                        dom: dom(),
                        type_: *kind,
                        nsuri: nsuri.clone(),
                    },
                ),
                DomainEvent::AgentLifecycle { state, reason } => encode_event(
                    P::DomainEventCallbackAgentLifecycle,
                    &DomainEventCallbackAgentLifecycleMsg {
                        callback_id: cb,
                        dom: dom(),
                        state: *state,
                        reason: *reason,
                    },
                ),
                DomainEvent::MigrationIteration { iteration } => encode_event(
                    P::DomainEventCallbackMigrationIteration,
                    &DomainEventCallbackMigrationIterationMsg {
                        callback_id: cb,
                        dom: dom(),
                        iteration: *iteration,
                    },
                ),
                DomainEvent::JobCompleted { stats } => encode_event(
                    P::DomainEventCallbackJobCompleted,
                    &DomainEventCallbackJobCompletedMsg {
                        callback_id: cb,
                        dom: dom(),
                        params: vireo_wire::types::typed_params_to_wire(stats),
                    },
                ),
                // Other domain events are not raised by any Vireo driver yet.
                _ => return None,
            }
        }
        EventKind::NetworkLifecycle(k) => encode_event(
            P::NetworkEventLifecycle,
            &NetworkEventLifecycleMsg {
                callback_id: cb,
                net: net(),
                event: *k as i32,
                detail: 0,
            },
        ),
        EventKind::NetworkMetadataChange { kind, nsuri } => encode_event(
            P::NetworkEventCallbackMetadataChange,
            &NetworkEventCallbackMetadataChangeMsg {
                callback_id: cb,
                net: net(),
                type_: *kind,
                nsuri: nsuri.clone(),
            },
        ),
        EventKind::PoolLifecycle(k) => encode_event(
            P::StoragePoolEventLifecycle,
            &StoragePoolEventLifecycleMsg {
                callback_id: cb,
                pool: pool(),
                event: *k as i32,
                detail: 0,
            },
        ),
        EventKind::PoolRefresh => encode_event(
            P::StoragePoolEventRefresh,
            &StoragePoolEventRefreshMsg {
                callback_id: cb,
                pool: pool(),
            },
        ),
        EventKind::NodeDeviceLifecycle(k) => encode_event(
            P::NodeDeviceEventLifecycle,
            &NodeDeviceEventLifecycleMsg {
                callback_id: cb,
                dev: NonnullNodeDevice {
                    name: obj.name.clone(),
                },
                event: *k as i32,
                detail: 0,
            },
        ),
        EventKind::NodeDeviceUpdate => encode_event(
            P::NodeDeviceEventUpdate,
            &NodeDeviceEventUpdateMsg {
                callback_id: cb,
                dev: NonnullNodeDevice {
                    name: obj.name.clone(),
                },
            },
        ),
        // The event carries the usage id as the object name; the usage type is not
        // known here and goes as 0 (clients key secrets by uuid).
        EventKind::SecretLifecycle(k) => encode_event(
            P::SecretEventLifecycle,
            &SecretEventLifecycleMsg {
                callback_id: cb,
                secret: secret(),
                event: *k,
                detail: 0,
            },
        ),
        EventKind::SecretValueChanged => encode_event(
            P::SecretEventValueChanged,
            &SecretEventValueChangedMsg {
                callback_id: cb,
                secret: secret(),
            },
        ),
    })
}

fn encode_legacy(d: &DomainEvent, dom: NonnullDomain) -> Option<Bytes> {
    Some(match d {
        DomainEvent::Lifecycle(l) => encode_event(
            P::DomainEventLifecycle,
            &DomainEventLifecycleMsg {
                dom,
                event: l.event as i32,
                detail: l.detail,
            },
        ),
        DomainEvent::Reboot => encode_event(P::DomainEventReboot, &DomainEventRebootMsg { dom }),
        DomainEvent::RtcChange { offset } => encode_event(
            P::DomainEventRtcChange,
            &DomainEventRtcChangeMsg {
                dom,
                offset: *offset,
            },
        ),
        _ => return None,
    })
}
