//! The handshake and the connection itself: AUTH_LIST (auth none),
//! CONNECT_SUPPORTS_FEATURE, CONNECT_OPEN / CLOSE, and the connection-level getters
//! (type, versions, hostname, URI, max vcpus, is-secure, close callbacks).

use std::sync::Arc;

use vireo_drivers::testdata::{HYPERVISOR_VERSION, MAX_VCPUS};
use vireo_messages::{ErrorDomain, VirError};
use vireo_wire::RemoteProc as P;
use vireo_wire::procs::*;
use vireo_wire::types::AuthType;

use super::{Handled, args, ret, void};
use crate::session::Session;

/// The libvirt release whose protocol Vireo speaks (9.0.0).
pub const LIB_VERSION: u64 = 9_000_000;

/// `VIR_DRV_FEATURE_PROGRAM_KEEPALIVE`.
const FEATURE_KEEPALIVE: i32 = 10;

/// Whether the daemon supports a `VIR_DRV_FEATURE_*` on an open connection.
fn feature_supported(f: i32) -> bool {
    // FD_PASSING 8, TYPED_PARAM_STRING 9, KEEPALIVE 10, REMOTE_EVENT_CALLBACK 14,
    // REMOTE_CLOSE_CALLBACK 15, NETWORK_UPDATE_HAS_CORRECT_ORDER 16 (libvirt 9.0 + test).
    matches!(f, 8 | 9 | 10 | 14 | 15 | 16)
}

/// Handles this family's procedures.
pub async fn handle(s: &Arc<Session>, p: P, payload: &[u8]) -> Handled {
    Some(match p {
        P::AuthList => ret(&AuthListRet {
            types: vec![AuthType::None],
        }),
        P::ConnectSupportsFeature => (|| {
            let a: ConnectSupportsFeatureArgs = args(payload)?;
            if a.feature == FEATURE_KEEPALIVE {
                s.start_keepalive();
                return ret(&ConnectSupportsFeatureRet { supported: 1 });
            }
            if !s.is_open() {
                return Err(VirError::internal(ErrorDomain::Rpc, "connection not open"));
            }
            ret(&ConnectSupportsFeatureRet {
                supported: feature_supported(a.feature) as i32,
            })
        })(),
        P::ConnectOpen => open(s, payload).await,
        P::ConnectClose => {
            super::events::stop(s);
            s.set_conn(None, false);
            void()
        }
        // Accepted and never fired, as libvirtd with a local driver: it relays a close of
        // its own hypervisor connection (CONNECT_EVENT_CONNECTION_CLOSED), which local
        // drivers never report; a daemon going away reads as end of file at the client.
        P::ConnectRegisterCloseCallback | P::ConnectUnregisterCloseCallback => void(),
        P::ConnectGetType => s.conn().and_then(|c| {
            ret(&StringRet {
                value: c.type_name().to_string(),
            })
        }),
        P::ConnectGetVersion => ret(&UHyperRet {
            value: HYPERVISOR_VERSION,
        }),
        P::ConnectGetLibVersion => ret(&UHyperRet { value: LIB_VERSION }),
        P::ConnectGetHostname => {
            let name = nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".into());
            ret(&StringRet { value: name })
        }
        P::ConnectGetUri => s.conn().and_then(|c| {
            ret(&StringRet {
                value: c.uri().to_string(),
            })
        }),
        P::ConnectGetMaxVcpus => {
            args::<ConnectGetMaxVcpusArgs>(payload).and_then(|_| ret(&IntRet { value: MAX_VCPUS }))
        }
        P::ConnectIsSecure => ret(&IntRet {
            value: s.listener.secure as i32,
        }),
        _ => return None,
    })
}

async fn open(s: &Arc<Session>, payload: &[u8]) -> vireo_messages::VirResult<bytes::Bytes> {
    let a: ConnectOpenArgs = args(payload)?;
    if s.is_open() {
        return Err(VirError::internal(
            ErrorDomain::Rpc,
            "connection already open",
        ));
    }
    if a.flags & !3 != 0 {
        return Err(VirError::unsupported_flags(
            ErrorDomain::None,
            a.flags,
            "virConnectOpenAuth",
        ));
    }
    // A NULL name means "the daemon's default": the shared test instance.
    let uri = a.name.unwrap_or_else(|| "test:///default".to_string());
    let conn = s.host.open(&uri).await?;
    tracing::debug!(session = s.id, %uri, read_only = (a.flags & 1 != 0) || s.listener.read_only, "connection opened");
    s.set_conn(Some(conn), a.flags & 1 != 0);
    void()
}
