//! Virtual networks: listing (old and `LIST_ALL` forms), lookups, define/create,
//! start/stop/undefine, XML, bridge name, autostart, active/persistent.

use std::sync::Arc;

use bytes::Bytes;
use vireo_actors::{Connection, Network};
use vireo_messages::{ErrorCode, VirError, VirResult};
use vireo_wire::RemoteProc as P;
use vireo_wire::procs::*;
use vireo_wire::types::NonnullNetwork;
use vireo_xml::NetworkDef;

use super::{Handled, args, name_lists, ret, void};
use crate::session::Session;

fn net_ref(n: &Network) -> NonnullNetwork {
    NonnullNetwork {
        name: n.name().to_string(),
        uuid: n.uuid(),
    }
}

fn find(conn: &Connection, r: &NonnullNetwork) -> VirResult<Network> {
    conn.lookup_network_by_uuid(&r.uuid).map_err(|_| {
        VirError::with(
            ErrorCode::NoNetwork,
            conn.error_domain(),
            format!("no network with matching uuid '{}' ({})", r.uuid, r.name),
        )
    })
}

/// `VIR_CONNECT_LIST_{NETWORKS,STORAGE_POOLS}_*` state bits (INACTIVE is bit 0 here).
pub fn object_filter(flags: u32, active: bool, persistent: bool, autostart: bool) -> bool {
    let group = |a: u32, b: u32, pa: bool, pb: bool| {
        if flags & (a | b) == 0 || flags & (a | b) == (a | b) {
            true
        } else if flags & a != 0 {
            pa
        } else {
            pb
        }
    };
    group(2, 1, active, !active)
        && group(4, 8, persistent, !persistent)
        && group(16, 32, autostart, !autostart)
}

/// Handles this family's procedures.
pub async fn handle(s: &Arc<Session>, p: P, payload: &[u8]) -> Handled {
    let known = matches!(
        p,
        P::ConnectNumOfNetworks
            | P::ConnectListNetworks
            | P::ConnectNumOfDefinedNetworks
            | P::ConnectListDefinedNetworks
            | P::ConnectListAllNetworks
            | P::NetworkLookupByName
            | P::NetworkLookupByUuid
            | P::NetworkDefineXml
            | P::NetworkDefineXmlFlags
            | P::NetworkCreateXml
            | P::NetworkCreateXmlFlags
            | P::NetworkCreate
            | P::NetworkDestroy
            | P::NetworkUndefine
            | P::NetworkGetXmlDesc
            | P::NetworkGetBridgeName
            | P::NetworkIsActive
            | P::NetworkIsPersistent
            | P::NetworkGetAutostart
            | P::NetworkSetAutostart
    );
    if !known {
        return None;
    }
    Some(match s.conn() {
        Ok(conn) => run(&conn, p, payload).await,
        Err(e) => Err(e),
    })
}

async fn run(conn: &Connection, p: P, payload: &[u8]) -> VirResult<Bytes> {
    let names = |active: bool| -> Vec<String> {
        conn.list_networks()
            .into_iter()
            .filter(|e| e.active == active)
            .map(|e| e.name)
            .collect()
    };
    let lists = [
        P::ConnectNumOfNetworks,
        P::ConnectNumOfDefinedNetworks,
        P::ConnectListNetworks,
        P::ConnectListDefinedNetworks,
    ];
    if let Some(r) = name_lists(p, payload, lists, names) {
        return r;
    }
    match p {
        P::ConnectListAllNetworks => {
            let a: ListAllArgs = args(payload)?;
            if a.flags & !63 != 0 {
                return Err(VirError::unsupported_flags(
                    conn.error_domain(),
                    a.flags & !63,
                    "testConnectListAllNetworks",
                ));
            }
            let nets: Vec<NonnullNetwork> = conn
                .list_networks()
                .into_iter()
                .filter(|e| object_filter(a.flags, e.active, e.persistent, e.autostart))
                .map(|e| NonnullNetwork {
                    name: e.name,
                    uuid: e.uuid,
                })
                .collect();
            let count = nets.len() as u32;
            ret(&ConnectListAllNetworksRet {
                nets: if a.need_results != 0 {
                    nets
                } else {
                    Vec::new()
                },
                ret: count,
            })
        }
        P::NetworkLookupByName => {
            let a: NameArgs = args(payload)?;
            ret(&NetworkRet {
                net: net_ref(&conn.lookup_network_by_name(&a.name)?),
            })
        }
        P::NetworkLookupByUuid => {
            let a: UuidArgs = args(payload)?;
            ret(&NetworkRet {
                net: net_ref(&conn.lookup_network_by_uuid(&a.uuid)?),
            })
        }
        P::NetworkDefineXml => {
            let a: XmlArgs = args(payload)?;
            ret(&NetworkRet {
                net: net_ref(&conn.define_network(&a.xml).await?),
            })
        }
        P::NetworkDefineXmlFlags => {
            let a: XmlFlagsArgs = args(payload)?;
            ret(&NetworkRet {
                net: net_ref(&conn.define_network(&a.xml).await?),
            })
        }
        P::NetworkCreateXml => {
            let a: XmlArgs = args(payload)?;
            ret(&NetworkRet {
                net: net_ref(&conn.create_network(&a.xml).await?),
            })
        }
        P::NetworkCreateXmlFlags => {
            let a: XmlFlagsArgs = args(payload)?;
            ret(&NetworkRet {
                net: net_ref(&conn.create_network(&a.xml).await?),
            })
        }
        P::NetworkCreate => {
            let a: NetworkArgs = args(payload)?;
            find(conn, &a.net)?.start().await?;
            void()
        }
        P::NetworkDestroy => {
            let a: NetworkArgs = args(payload)?;
            find(conn, &a.net)?.destroy().await?;
            void()
        }
        P::NetworkUndefine => {
            let a: NetworkArgs = args(payload)?;
            find(conn, &a.net)?.undefine().await?;
            void()
        }
        P::NetworkGetXmlDesc => {
            let a: NetworkFlagsArgs = args(payload)?;
            ret(&StringRet {
                value: find(conn, &a.net)?.xml(a.flags).await?,
            })
        }
        P::NetworkGetBridgeName => {
            let a: NetworkArgs = args(payload)?;
            let xml = find(conn, &a.net)?.xml(0).await?;
            let bridge = NetworkDef::parse(&xml)?.bridge_name().ok_or_else(|| {
                VirError::internal(
                    conn.error_domain(),
                    format!("network '{}' does not have a bridge name.", a.net.name),
                )
            })?;
            ret(&StringRet { value: bridge })
        }
        P::NetworkIsActive => {
            let a: NetworkArgs = args(payload)?;
            ret(&IntRet {
                value: find(conn, &a.net)?.entry()?.active as i32,
            })
        }
        P::NetworkIsPersistent => {
            let a: NetworkArgs = args(payload)?;
            ret(&IntRet {
                value: find(conn, &a.net)?.entry()?.persistent as i32,
            })
        }
        P::NetworkGetAutostart => {
            let a: NetworkArgs = args(payload)?;
            ret(&IntRet {
                value: find(conn, &a.net)?.entry()?.autostart as i32,
            })
        }
        P::NetworkSetAutostart => {
            let a: NetworkAutostartArgs = args(payload)?;
            find(conn, &a.net)?.set_autostart(a.autostart != 0).await?;
            void()
        }
        _ => Err(VirError::no_support(
            vireo_messages::ErrorDomain::Network,
            &p.api_name(),
        )),
    }
}
