//! The REMOTE procedures, one module per family (mini-redis style): each family's
//! `handle` answers the procedures it knows and returns `None` for the others.
//!
//! [`call`] is the dispatcher every CALL goes through. In libvirt's order it rejects
//! unknown (and event-only) procedure numbers with an RPC error, refuses everything but
//! the handshake before CONNECT_OPEN, refuses mutating procedures on read-only
//! connections (code 29), runs the handler, and answers known procedures without a
//! handler with VIR_ERR_NO_SUPPORT (code 3) so that clients fall back to older calls.
//! A handler that panics gets an internal error reply instead of silence.

pub mod connect;
pub mod devices;
pub mod domain;
pub mod events;
pub mod network;
pub mod node;
pub mod stats;
pub mod storage;
pub mod transfer;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use vireo_messages::{ErrorDomain, VirError, VirResult};
use vireo_wire::packet::{MessageStatus, encode_error_reply, encode_packet};
use vireo_wire::xdr::{XdrDecode, XdrEncode, from_bytes, to_bytes};
use vireo_wire::{Header, RemoteError, RemoteProc};

use crate::session::{Session, rpc_error};

/// What a family handler returns: `None` = not this family's procedure.
pub type Handled = Option<VirResult<Bytes>>;

/// Decodes call arguments; failure is libvirt's "Unable to decode message payload".
pub fn args<T: XdrDecode>(payload: &[u8]) -> VirResult<T> {
    from_bytes(payload).map_err(|_| rpc_error("Unable to decode message payload"))
}

/// Encodes a return value.
pub fn ret<T: XdrEncode + ?Sized>(v: &T) -> VirResult<Bytes> {
    Ok(to_bytes(v).freeze())
}

/// An empty return value.
pub fn void() -> VirResult<Bytes> {
    Ok(Bytes::new())
}

/// Keeps at most `max` items (a list call's `maxnames`; negative means none).
pub fn truncate<T>(mut v: Vec<T>, max: i32) -> Vec<T> {
    v.truncate(max.max(0) as usize);
    v
}

/// The four name-list procedures every object family has (number of active and of
/// inactive objects, names of each), answered from `names(active)`. `procs` names them
/// in that order: `[num_active, num_inactive, list_active, list_inactive]`.
pub fn name_lists(
    p: RemoteProc,
    payload: &[u8],
    procs: [RemoteProc; 4],
    names: impl Fn(bool) -> Vec<String>,
) -> Option<VirResult<Bytes>> {
    use vireo_wire::procs::{IntRet, MaxNamesArgs, NamesRet};
    let active = p == procs[0] || p == procs[2];
    if p == procs[0] || p == procs[1] {
        return Some(ret(&IntRet {
            value: names(active).len() as i32,
        }));
    }
    if p == procs[2] || p == procs[3] {
        return Some(args::<MaxNamesArgs>(payload).and_then(|a| {
            ret(&NamesRet {
                names: truncate(names(active), a.maxnames),
            })
        }));
    }
    None
}

/// The error domain libvirt's public API file for this procedure reports with.
pub fn family_domain(p: RemoteProc) -> ErrorDomain {
    let n = p.name();
    if n.contains("NODE_DEVICE") {
        ErrorDomain::Nodedev
    } else if n.contains("STORAGE") {
        ErrorDomain::Storage
    } else if n.contains("NWFILTER") {
        ErrorDomain::Nwfilter
    } else if n.contains("NETWORK") {
        ErrorDomain::Network
    } else if n.contains("SECRET") {
        ErrorDomain::Secret
    } else if n.contains("INTERFACE") {
        ErrorDomain::Interface
    } else if n.contains("DOMAIN") {
        ErrorDomain::Domain
    } else {
        ErrorDomain::None
    }
}

/// Whether a procedure is *quick*: its handler never blocks the thread (no file I/O,
/// no process, no lock held across a wait) and usually completes without waiting at
/// all, because it only reads the directories (lookups, lists, info, state, XML of a
/// hibernated domain) or fixed data. The session tries such calls in its own task
/// before spawning one; one that must wait after all (e.g. for a live domain's actor)
/// goes on as a task of its own, so a slow call never holds up a fast one.
pub fn is_quick(p: RemoteProc) -> bool {
    use RemoteProc as P;
    matches!(
        p,
        P::AuthList
            | P::ConnectSupportsFeature
            | P::ConnectGetType
            | P::ConnectGetVersion
            | P::ConnectGetLibVersion
            | P::ConnectGetHostname
            | P::ConnectGetUri
            | P::ConnectGetMaxVcpus
            | P::ConnectIsSecure
            | P::ConnectRegisterCloseCallback
            | P::ConnectUnregisterCloseCallback
            | P::NodeGetInfo
            | P::ConnectGetCapabilities
            | P::ConnectGetSysinfo
            | P::NodeGetFreeMemory
            | P::NodeGetCellsFreeMemory
            | P::NodeGetSecurityModel
            | P::NodeGetCpuMap
            | P::ConnectListAllDomains
            | P::ConnectNumOfDomains
            | P::ConnectListDomains
            | P::ConnectNumOfDefinedDomains
            | P::ConnectListDefinedDomains
            | P::DomainLookupByName
            | P::DomainLookupByUuid
            | P::DomainLookupById
            | P::DomainGetInfo
            | P::DomainGetState
            | P::DomainGetXmlDesc
            | P::DomainGetAutostart
            | P::DomainIsActive
            | P::DomainIsPersistent
            | P::DomainIsUpdated
            | P::DomainGetOsType
            | P::DomainGetMaxMemory
            | P::DomainGetVcpusFlags
            | P::DomainGetMaxVcpus
            | P::DomainHasManagedSaveImage
            | P::DomainGetSchedulerType
            | P::DomainGetSecurityLabel
            | P::DomainGetMessages
            | P::DomainSnapshotNum
            | P::ConnectDomainEventCallbackRegisterAny
            | P::ConnectDomainEventCallbackDeregisterAny
            | P::ConnectNetworkEventRegisterAny
            | P::ConnectNetworkEventDeregisterAny
            | P::ConnectStoragePoolEventRegisterAny
            | P::ConnectStoragePoolEventDeregisterAny
            | P::ConnectNumOfNetworks
            | P::ConnectListNetworks
            | P::ConnectNumOfDefinedNetworks
            | P::ConnectListDefinedNetworks
            | P::ConnectListAllNetworks
            | P::NetworkLookupByName
            | P::NetworkLookupByUuid
            | P::NetworkIsActive
            | P::NetworkIsPersistent
            | P::NetworkGetAutostart
            | P::ConnectNumOfStoragePools
            | P::ConnectListStoragePools
            | P::ConnectNumOfDefinedStoragePools
            | P::ConnectListDefinedStoragePools
            | P::ConnectListAllStoragePools
            | P::StoragePoolLookupByName
            | P::StoragePoolLookupByUuid
    )
}

/// Runs one CALL and returns the whole reply frame.
pub async fn call(s: &Arc<Session>, h: Header, payload: Bytes) -> Bytes {
    let result = AssertUnwindSafe(dispatch(s, &h, &payload))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            tracing::error!(
                session = s.id,
                proc_ = h.proc_,
                "a procedure handler panicked"
            );
            Err(VirError::internal(
                ErrorDomain::Rpc,
                "the procedure failed unexpectedly",
            ))
        });
    match result {
        Ok(body) => encode_packet(&h.reply(MessageStatus::Ok), &body),
        Err(e) => {
            tracing::debug!(
                session = s.id,
                proc_ = h.proc_,
                "error reply: {}",
                e.message
            );
            encode_error_reply(&h, &RemoteError::from(&e))
        }
    }
}

async fn dispatch(s: &Arc<Session>, h: &Header, payload: &[u8]) -> VirResult<Bytes> {
    let Some(p) = RemoteProc::from_i32(h.proc_).filter(|p| !p.is_event()) else {
        return Err(rpc_error(format!("unknown procedure: {}", h.proc_)));
    };
    if !s.is_open()
        && !matches!(
            p,
            RemoteProc::AuthList | RemoteProc::ConnectOpen | RemoteProc::ConnectSupportsFeature
        )
    {
        return Err(VirError::internal(
            ErrorDomain::Rpc,
            "hypervisor connection not open",
        ));
    }
    if s.read_only() && !p.is_readonly_safe() {
        return Err(VirError::operation_denied(
            family_domain(p),
            format!("read only access prevents {}", p.api_name()),
        ));
    }
    if let Some(r) = transfer::handle(s, h, p, payload).await {
        return r;
    }
    // Statistics, scheduler and security labels, per driver (before node/domain).
    if let Some(r) = stats::handle(s, p, payload).await {
        return r;
    }
    let handled = match connect::handle(s, p, payload).await {
        Some(r) => Some(r),
        None => match node::handle(s, p, payload).await {
            Some(r) => Some(r),
            None => match domain::handle(s, p, payload).await {
                Some(r) => Some(r),
                None => match events::handle(s, p, payload).await {
                    Some(r) => Some(r),
                    None => match network::handle(s, p, payload).await {
                        Some(r) => Some(r),
                        None => match storage::handle(s, p, payload).await {
                            Some(r) => Some(r),
                            None => devices::handle(s, p, payload).await,
                        },
                    },
                },
            },
        },
    };
    handled.unwrap_or_else(|| Err(VirError::no_support(family_domain(p), &p.api_name())))
}
