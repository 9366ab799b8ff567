//! Decoding of event MESSAGE packets (REMOTE program, type MESSAGE).
//!
//! Every callback-style event payload starts with the `callbackID` the server returned
//! at registration; the reader task routes an event to its registration's channel by
//! that number. The domain events a management client reacts to are decoded into
//! [`DomainEventKind`]; the rest are passed on undecoded ([`EventBody::Other`]) so a
//! caller can decode them with the wire crate's structs.

use bytes::Bytes;
use vireo_wire::procs::*;
use vireo_wire::types::{NonnullDomain, NonnullNetwork, NonnullStoragePool};
use vireo_wire::xdr::{Decoder, XdrDecode, from_bytes};
use vireo_wire::{Packet, RemoteProc, XdrError};

/// One event, as delivered to a registration's channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The registration it belongs to.
    pub callback_id: i32,
    /// The event procedure it came as.
    pub proc_: RemoteProc,
    /// The decoded content.
    pub body: EventBody,
}

/// The content of an [`Event`].
#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    /// A domain event.
    Domain {
        /// The domain.
        dom: NonnullDomain,
        /// What happened.
        kind: DomainEventKind,
    },
    /// A network lifecycle event.
    NetworkLifecycle {
        /// The network.
        net: NonnullNetwork,
        /// `VIR_NETWORK_EVENT_*`.
        event: i32,
        /// Detail.
        detail: i32,
    },
    /// A storage pool lifecycle event.
    PoolLifecycle {
        /// The pool.
        pool: NonnullStoragePool,
        /// `VIR_STORAGE_POOL_EVENT_*`.
        event: i32,
        /// Detail.
        detail: i32,
    },
    /// Any other event: the payload (starting with the callback id), undecoded.
    Other(Bytes),
}

/// What happened to a domain.
#[derive(Debug, Clone, PartialEq)]
pub enum DomainEventKind {
    /// `VIR_DOMAIN_EVENT_ID_LIFECYCLE`: `virDomainEventType` and its detail.
    Lifecycle {
        /// `VIR_DOMAIN_EVENT_DEFINED`...
        event: i32,
        /// Per-event detail.
        detail: i32,
    },
    /// The guest rebooted.
    Reboot,
    /// The guest's RTC changed by `offset` seconds.
    RtcChange {
        /// New offset from UTC.
        offset: i64,
    },
    /// The watchdog fired.
    Watchdog {
        /// `VIR_DOMAIN_EVENT_WATCHDOG_*`.
        action: i32,
    },
    /// A disk I/O error (with a reason for the IO_ERROR_REASON form).
    IoError {
        /// Source path.
        src_path: String,
        /// Device alias.
        dev_alias: String,
        /// Action taken.
        action: i32,
        /// Reason, e.g. `enospc`.
        reason: Option<String>,
    },
    /// The connection to the hypervisor's control channel failed.
    ControlError,
    /// The balloon size changed.
    BalloonChange {
        /// New size in KiB.
        actual: u64,
    },
    /// A device was removed.
    DeviceRemoved {
        /// Device alias.
        dev_alias: String,
    },
    /// A device was added.
    DeviceAdded {
        /// Device alias.
        dev_alias: String,
    },
    /// A device removal failed.
    DeviceRemovalFailed {
        /// Device alias.
        dev_alias: String,
    },
    /// The guest agent connected or disconnected.
    AgentLifecycle {
        /// 1 connected, 2 disconnected.
        state: i32,
        /// Reason.
        reason: i32,
    },
    /// The domain's metadata changed.
    MetadataChange {
        /// `VIR_DOMAIN_METADATA_*`.
        kind: i32,
        /// Namespace URI of an element change.
        nsuri: Option<String>,
    },
    /// Another domain event, undecoded (the payload starts with the callback id).
    Other(Bytes),
}

/// The callback id at the start of a callback-style event payload.
pub fn callback_id(payload: &[u8]) -> Result<i32, XdrError> {
    Decoder::new(payload).read_i32()
}

fn dom(d: NonnullDomain, kind: DomainEventKind) -> EventBody {
    EventBody::Domain { dom: d, kind }
}

/// Decodes a callback-style REMOTE event MESSAGE. Legacy (non-callback) events and
/// procedures this module does not know come back as [`EventBody::Other`] with the
/// callback id read from the first word.
pub fn decode_event(packet: &Packet) -> Result<Event, XdrError> {
    use DomainEventKind as K;
    use RemoteProc as P;
    let payload = &packet.payload;
    let callback_id = callback_id(payload)?;
    let Some(proc_) = packet.header.remote_proc() else {
        return Err(XdrError::InvalidEnum {
            what: "RemoteProc",
            value: packet.header.proc_,
        });
    };
    let body = match proc_ {
        P::DomainEventCallbackLifecycle => {
            let m: DomainEventCallbackLifecycleMsg = from_bytes(payload)?;
            dom(
                m.msg.dom,
                K::Lifecycle {
                    event: m.msg.event,
                    detail: m.msg.detail,
                },
            )
        }
        P::DomainEventCallbackReboot => {
            let m: DomainEventCallbackRebootMsg = from_bytes(payload)?;
            dom(m.msg.dom, K::Reboot)
        }
        P::DomainEventCallbackRtcChange => {
            let m: DomainEventCallbackRtcChangeMsg = from_bytes(payload)?;
            dom(
                m.msg.dom,
                K::RtcChange {
                    offset: m.msg.offset,
                },
            )
        }
        P::DomainEventCallbackWatchdog => {
            let m: DomainEventCallbackWatchdogMsg = from_bytes(payload)?;
            dom(
                m.msg.dom,
                K::Watchdog {
                    action: m.msg.action,
                },
            )
        }
        P::DomainEventCallbackIoError => {
            let m: DomainEventCallbackIoErrorMsg = from_bytes(payload)?;
            dom(
                m.msg.dom,
                K::IoError {
                    src_path: m.msg.src_path,
                    dev_alias: m.msg.dev_alias,
                    action: m.msg.action,
                    reason: None,
                },
            )
        }
        P::DomainEventCallbackIoErrorReason => {
            let m: DomainEventCallbackIoErrorReasonMsg = from_bytes(payload)?;
            dom(
                m.msg.dom,
                K::IoError {
                    src_path: m.msg.src_path,
                    dev_alias: m.msg.dev_alias,
                    action: m.msg.action,
                    reason: Some(m.msg.reason),
                },
            )
        }
        P::DomainEventCallbackControlError => {
            let m: DomainEventCallbackControlErrorMsg = from_bytes(payload)?;
            dom(m.msg.dom, K::ControlError)
        }
        P::DomainEventCallbackBalloonChange => {
            let m: DomainEventCallbackBalloonChangeMsg = from_bytes(payload)?;
            dom(
                m.msg.dom,
                K::BalloonChange {
                    actual: m.msg.actual,
                },
            )
        }
        P::DomainEventCallbackDeviceRemoved => {
            let m: DomainEventCallbackDeviceRemovedMsg = from_bytes(payload)?;
            dom(
                m.msg.dom,
                K::DeviceRemoved {
                    dev_alias: m.msg.dev_alias,
                },
            )
        }
        P::DomainEventCallbackDeviceAdded | P::DomainEventCallbackDeviceRemovalFailed => {
            let m: DomainEventCallbackDeviceMsg = from_bytes(payload)?;
            let kind = if proc_ == P::DomainEventCallbackDeviceAdded {
                K::DeviceAdded {
                    dev_alias: m.dev_alias,
                }
            } else {
                K::DeviceRemovalFailed {
                    dev_alias: m.dev_alias,
                }
            };
            dom(m.dom, kind)
        }
        P::DomainEventCallbackAgentLifecycle => {
            let m: DomainEventCallbackAgentLifecycleMsg = from_bytes(payload)?;
            dom(
                m.dom,
                K::AgentLifecycle {
                    state: m.state,
                    reason: m.reason,
                },
            )
        }
        P::DomainEventCallbackMetadataChange => {
            let m: DomainEventCallbackMetadataChangeMsg = from_bytes(payload)?;
            dom(
                m.dom,
                K::MetadataChange {
                    kind: m.type_,
                    nsuri: m.nsuri,
                },
            )
        }
        P::NetworkEventLifecycle => {
            let m: NetworkEventLifecycleMsg = from_bytes(payload)?;
            EventBody::NetworkLifecycle {
                net: m.net,
                event: m.event,
                detail: m.detail,
            }
        }
        P::StoragePoolEventLifecycle => {
            let m: StoragePoolEventLifecycleMsg = from_bytes(payload)?;
            EventBody::PoolLifecycle {
                pool: m.pool,
                event: m.event,
                detail: m.detail,
            }
        }
        other if other.name().starts_with("DOMAIN_EVENT_CALLBACK_") => {
            // Every callback-form domain event has the domain right after the id.
            let mut d = Decoder::new(payload);
            d.read_i32()?;
            let dom_ref = NonnullDomain::decode(&mut d)?;
            dom(dom_ref, K::Other(payload.clone()))
        }
        _ => EventBody::Other(payload.clone()),
    };
    Ok(Event {
        callback_id,
        proc_,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vireo_wire::packet::{decode_frame, encode_event};
    use vireo_wire::types::NonnullDomain;

    fn packet(frame: &[u8]) -> Packet {
        decode_frame(frame).unwrap().unwrap().0
    }

    #[test]
    fn lifecycle_round_trip() {
        let d = NonnullDomain::new("vm", uuid::Uuid::from_u128(7), None);
        let msg = DomainEventCallbackLifecycleMsg {
            callback_id: 3,
            msg: DomainEventLifecycleMsg {
                dom: d.clone(),
                event: 2,
                detail: 1,
            },
        };
        let ev = decode_event(&packet(&encode_event(
            RemoteProc::DomainEventCallbackLifecycle,
            &msg,
        )))
        .unwrap();
        assert_eq!(ev.callback_id, 3);
        assert_eq!(ev.proc_, RemoteProc::DomainEventCallbackLifecycle);
        assert_eq!(
            ev.body,
            EventBody::Domain {
                dom: d,
                kind: DomainEventKind::Lifecycle {
                    event: 2,
                    detail: 1
                }
            }
        );
    }

    #[test]
    fn undecoded_domain_events_keep_the_domain() {
        let d = NonnullDomain::new(
            "vm",
            uuid::Uuid::from_u128(9),
            Some(vireo_messages::DomainId(4)),
        );
        let msg = DomainEventCallbackMigrationIterationMsg {
            callback_id: 5,
            dom: d.clone(),
            iteration: 2,
        };
        let ev = decode_event(&packet(&encode_event(
            RemoteProc::DomainEventCallbackMigrationIteration,
            &msg,
        )))
        .unwrap();
        assert_eq!(ev.callback_id, 5);
        match ev.body {
            EventBody::Domain {
                dom,
                kind: DomainEventKind::Other(raw),
            } => {
                assert_eq!(dom, d);
                assert_eq!(raw.len(), vireo_wire::xdr::to_bytes(&msg).len());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn truncated_payload_is_an_error() {
        let frame = vireo_wire::packet::encode_packet(
            &vireo_wire::Header::event(RemoteProc::DomainEventCallbackLifecycle),
            &[0, 0, 0, 1, 0, 0],
        );
        assert!(decode_event(&packet(&frame)).is_err());
    }
}
