//! The host (node) facts: NODE_GET_INFO, capabilities, sysinfo, free memory (total and
//! per cell), the security model and the CPU map, from the connection's test-driver
//! node description.

use std::sync::Arc;

use vireo_drivers::testdata::{
    CPU_MAP_CPUS, CPU_MAP_ONLINE, CPU_MAP_ONLINE_COUNT, capabilities_xml, cells_free_memory,
    free_memory, sysinfo_xml,
};
use vireo_messages::{ErrorDomain, VirError};
use vireo_wire::RemoteProc as P;
use vireo_wire::procs::*;
use vireo_wire::xdr::FixedChars;

use super::{Handled, args, ret};
use crate::session::Session;

/// Handles this family's procedures.
pub async fn handle(s: &Arc<Session>, p: P, payload: &[u8]) -> Handled {
    let conn = match s.conn() {
        Ok(c) => c,
        Err(e) => {
            return matches!(
                p,
                P::NodeGetInfo
                    | P::ConnectGetCapabilities
                    | P::ConnectGetSysinfo
                    | P::NodeGetFreeMemory
                    | P::NodeGetCellsFreeMemory
                    | P::NodeGetCpuMap
            )
            .then_some(Err(e));
        }
    };
    let cfg = conn.node();
    Some(match p {
        P::NodeGetInfo => {
            let n = &cfg.node;
            ret(&NodeGetInfoRet {
                model: FixedChars::from_text(&n.model),
                memory: n.memory_kib,
                cpus: n.cpus as i32,
                mhz: n.mhz as i32,
                nodes: n.nodes as i32,
                sockets: n.sockets as i32,
                cores: n.cores as i32,
                threads: n.threads as i32,
            })
        }
        P::ConnectGetCapabilities => ret(&StringRet {
            value: capabilities_xml(cfg),
        }),
        P::ConnectGetSysinfo => (|| {
            let a: FlagsArgs = args(payload)?;
            if a.flags != 0 {
                return Err(VirError::unsupported_flags(
                    conn.error_domain(),
                    a.flags,
                    "testConnectGetSysinfo",
                ));
            }
            ret(&StringRet {
                value: sysinfo_xml(),
            })
        })(),
        P::NodeGetFreeMemory => ret(&UHyperRet {
            value: free_memory(cfg),
        }),
        P::NodeGetCellsFreeMemory => (|| {
            let a: NodeGetCellsFreeMemoryArgs = args(payload)?;
            if a.start_cell < 0 || a.maxcells <= 0 || a.maxcells > 1024 {
                return Err(VirError::invalid_arg(
                    ErrorDomain::Rpc,
                    "maxCells > REMOTE_NODE_MAX_CELLS",
                ));
            }
            let cells = cells_free_memory(cfg, a.start_cell as usize, a.maxcells as usize);
            if cells.is_empty() {
                return Err(VirError::invalid_arg(
                    conn.error_domain(),
                    "Range exceeds available cells",
                ));
            }
            ret(&NodeGetCellsFreeMemoryRet { cells })
        })(),
        P::NodeGetCpuMap => (|| {
            let a: NodeGetCpuMapArgs = args(payload)?;
            ret(&NodeGetCpuMapRet {
                cpumap: if a.need_map != 0 {
                    vec![CPU_MAP_ONLINE]
                } else {
                    Vec::new()
                },
                online: CPU_MAP_ONLINE_COUNT,
                ret: CPU_MAP_CPUS,
            })
        })(),
        _ => return None,
    })
}
