//! Statistics, scheduler and security-label procedures, answered per driver the way
//! libvirt 9.0's `test` and `qemu` drivers answer them:
//!
//! - CONNECT_GET_ALL_DOMAIN_STATS (`virsh domstats`; also `virDomainListGetStats`,
//!   which is the same call with a non-empty domain list). The test driver has only
//!   the `state` group. For QEMU guests Vireo gives `state`, `cpu-total` (from the
//!   QEMU process's user and system time; libvirt reads the same figures from its
//!   cgroup), `balloon` (current/maximum from the definition, `last-update` 0 and
//!   `rss` as libvirt does for a guest whose balloon driver reports nothing), `vcpu`
//!   (counts, and per vCPU the state and the thread's time, wait and delay), and the
//!   device counts and names of `interface` and `block` (no traffic counters). Groups
//!   a driver cannot give are left out, or refused with VIR_ERR_ARGUMENT_UNSUPPORTED
//!   under `ENFORCE_STATS`, as libvirt does.
//! - DOMAIN_MEMORY_STATS (`virsh dommemstat`): the test driver's fixed figures derived
//!   from the current memory; for QEMU `actual` (the definition's current memory),
//!   `last_update` 0 and `rss`.
//! - DOMAIN_GET_SCHEDULER_TYPE / _PARAMETERS / _PARAMETERS_FLAGS: the test driver's
//!   "fair" scheduler with `weight` 50 (its flags variant refuses every flag, including
//!   the STRING_OKAY bit libvirt itself adds, so it always fails); VIR_ERR_NO_SUPPORT
//!   for QEMU guests (no cgroup CPU controller is used).
//! - NODE_GET_SECURITY_MODEL, DOMAIN_GET_SECURITY_LABEL(_LIST): the test driver's
//!   "testSecurity" model and "libvirt-test" label; for QEMU what libvirtd with
//!   `security_driver = "none"` says (model "none", DOI "0", an empty label).
//!
//! The dispatcher asks this module before `node` and `domain`, so these procedures are
//! answered here for both drivers.

use std::sync::Arc;

use bytes::Bytes;
use vireo_actors::{Connection, Domain, DomainInfo, ListFilter};
use vireo_drivers::hypervisor::DiskIo;
use vireo_drivers::qemu::argv::DiskAlias;
use vireo_drivers::testdata::{SECURITY_DOI, SECURITY_MODEL};
use vireo_messages::{DomainState, ErrorCode, ErrorDomain, VirError, VirResult};
use vireo_wire::RemoteProc as P;
use vireo_wire::procs::*;
use vireo_wire::types::{TypedParam, TypedParamValue};
use vireo_wire::xdr::CharArray;
use vireo_xml::DomainDef;

use super::domain::{dom_ref, find};
use super::{Handled, args, ret};
use crate::session::Session;

/// `VIR_DOMAIN_STATS_*` groups.
pub mod group {
    /// `state.*`.
    pub const STATE: u32 = 1;
    /// `cpu.*`.
    pub const CPU_TOTAL: u32 = 2;
    /// `balloon.*`.
    pub const BALLOON: u32 = 4;
    /// `vcpu.*`.
    pub const VCPU: u32 = 8;
    /// `net.*`.
    pub const INTERFACE: u32 = 16;
    /// `block.*`.
    pub const BLOCK: u32 = 32;
}

/// The groups the test driver gives.
const TEST_GROUPS: u32 = group::STATE;
/// The groups Vireo gives for QEMU guests.
const QEMU_GROUPS: u32 = group::STATE
    | group::CPU_TOTAL
    | group::BALLOON
    | group::VCPU
    | group::INTERFACE
    | group::BLOCK;

/// `VIR_CONNECT_GET_ALL_DOMAINS_STATS_*` filter bits (active .. other).
const STATS_FILTERS: u32 = 0xff;
/// `..._NOWAIT`, `..._BACKING`, `..._ENFORCE_STATS`.
const STATS_NOWAIT: u32 = 1 << 29;
const STATS_BACKING: u32 = 1 << 30;
const STATS_ENFORCE: u32 = 1 << 31;

/// `VIR_DOMAIN_MEMORY_STAT_*` tags.
mod tag {
    pub const SWAP_IN: i32 = 0;
    pub const SWAP_OUT: i32 = 1;
    pub const MAJOR_FAULT: i32 = 2;
    pub const MINOR_FAULT: i32 = 3;
    pub const UNUSED: i32 = 4;
    pub const AVAILABLE: i32 = 5;
    pub const ACTUAL_BALLOON: i32 = 6;
    pub const RSS: i32 = 7;
    pub const USABLE: i32 = 8;
    pub const LAST_UPDATE: i32 = 9;
    pub const DISK_CACHES: i32 = 10;
    pub const HUGETLB_PGALLOC: i32 = 11;
    pub const HUGETLB_PGFAIL: i32 = 12;
}

/// The `last_update` libvirt 9.0's test driver reports (a fixed timestamp).
const TEST_LAST_UPDATE: u64 = 627_319_920;

/// Handles this family's procedures.
pub async fn handle(s: &Arc<Session>, p: P, payload: &[u8]) -> Handled {
    if !matches!(
        p,
        P::ConnectGetAllDomainStats
            | P::DomainMemoryStats
            | P::DomainBlockStats
            | P::DomainInterfaceStats
            | P::DomainGetSchedulerType
            | P::DomainGetSchedulerParameters
            | P::DomainGetSchedulerParametersFlags
            | P::NodeGetSecurityModel
            | P::DomainGetSecurityLabel
            | P::DomainGetSecurityLabelList
    ) {
        return None;
    }
    Some(match s.conn() {
        Ok(conn) => run(&conn, p, payload).await,
        Err(e) => Err(e),
    })
}

/// Whether the connection follows libvirt's qemu driver (else its test driver).
fn is_qemu(conn: &Connection) -> bool {
    conn.type_name() == "QEMU"
}

/// The function name libvirt's driver reports in flag errors.
fn func(conn: &Connection, name: &str) -> String {
    let prefix = if is_qemu(conn) { "qemu" } else { "test" };
    format!("{prefix}{name}")
}

fn sched_no_support(conn: &Connection, api: &str) -> VirError {
    VirError::no_support(conn.error_domain(), api)
}

async fn run(conn: &Connection, p: P, payload: &[u8]) -> VirResult<Bytes> {
    let qemu = is_qemu(conn);
    match p {
        P::ConnectGetAllDomainStats => {
            let a: ConnectGetAllDomainStatsArgs = args(payload)?;
            ret(&all_domain_stats(conn, a).await?)
        }
        P::DomainMemoryStats => {
            let a: DomainMemoryStatsArgs = args(payload)?;
            if a.max_stats > vireo_wire::types::limits::DOMAIN_MEMORY_STATS_MAX {
                return Err(VirError::internal(
                    ErrorDomain::Rpc,
                    "maxStats > REMOTE_DOMAIN_MEMORY_STATS_MAX",
                ));
            }
            if a.flags != 0 {
                return Err(VirError::unsupported_flags(
                    conn.error_domain(),
                    a.flags,
                    &func(conn, "DomainMemoryStats"),
                ));
            }
            let d = find(conn, &a.dom)?;
            let (info, def) = info_and_def(&d).await?;
            if !info.state.state.is_active() {
                return Err(VirError::operation_invalid(
                    ErrorDomain::Domain,
                    "domain is not running",
                ));
            }
            let mut stats = memory_stats(qemu, &info, &def);
            stats.truncate(a.max_stats as usize);
            ret(&DomainMemoryStatsRet { stats })
        }
        P::DomainBlockStats => {
            let a: DomainBlockStatsArgs = args(payload)?;
            let d = find(conn, &a.dom)?;
            if qemu {
                return ret(&qemu_block_stats(&d, &a.path).await?);
            }
            if a.path.is_empty() {
                return Err(VirError::with(
                    ErrorCode::OperationUnsupported,
                    conn.error_domain(),
                    "summary statistics are not supported yet",
                ));
            }
            let def = DomainDef::parse(&d.xml(0).await?)?;
            let known = def.disks().iter().any(|k| {
                k.target_dev.as_deref() == Some(a.path.as_str())
                    || k.source_path().as_deref() == Some(a.path.as_str())
            });
            if !known {
                return Err(VirError::invalid_arg(
                    conn.error_domain(),
                    format!("invalid path: {}", a.path),
                ));
            }
            // libvirt's test driver: made-up figures that grow with the clock.
            let (secs, base) = clock();
            ret(&DomainBlockStatsRet {
                rd_req: base / 10,
                rd_bytes: base / 20,
                wr_req: base / 30,
                wr_bytes: base / 40,
                errs: secs / 2,
            })
        }
        P::DomainInterfaceStats => {
            let a: DomainInterfaceStatsArgs = args(payload)?;
            let d = find(conn, &a.dom)?;
            let (info, def) = info_and_def(&d).await?;
            if qemu && !info.state.state.is_active() {
                return Err(VirError::operation_invalid(
                    ErrorDomain::Domain,
                    "domain is not running",
                ));
            }
            // By host device name or by MAC address, as virDomainNetFind.
            let nic = def.interfaces().into_iter().find(|n| {
                n.target_dev.as_deref() == Some(a.path.as_str())
                    || n.mac
                        .as_deref()
                        .is_some_and(|m| m.eq_ignore_ascii_case(&a.path))
            });
            let unknown = || {
                VirError::invalid_arg(
                    ErrorDomain::Domain,
                    format!("'{}' is not a known interface", a.path),
                )
            };
            let nic = nic.ok_or_else(unknown)?;
            if qemu {
                let t = nic
                    .target_dev
                    .as_deref()
                    .and_then(vireo_drivers::netdev::guest_traffic)
                    .ok_or_else(unknown)?;
                let n = |x: u64| x as i64;
                return ret(&DomainInterfaceStatsRet {
                    rx_bytes: n(t.rx_bytes),
                    rx_packets: n(t.rx_packets),
                    rx_errs: n(t.rx_errs),
                    rx_drop: n(t.rx_drop),
                    tx_bytes: n(t.tx_bytes),
                    tx_packets: n(t.tx_packets),
                    tx_errs: n(t.tx_errs),
                    tx_drop: n(t.tx_drop),
                });
            }
            // libvirt's test driver: made-up figures that grow with the clock.
            let (secs, base) = clock();
            ret(&DomainInterfaceStatsRet {
                rx_bytes: base / 10,
                rx_packets: base / 100,
                rx_errs: secs,
                rx_drop: secs / 2,
                tx_bytes: base / 20,
                tx_packets: base / 110,
                tx_errs: secs / 3,
                tx_drop: secs / 4,
            })
        }
        P::DomainGetSchedulerType => {
            let a: DomainArgs = args(payload)?;
            find(conn, &a.dom)?;
            if qemu {
                return Err(sched_no_support(conn, "virDomainGetSchedulerType"));
            }
            ret(&DomainGetSchedulerTypeRet {
                type_: "fair".into(),
                nparams: 1,
            })
        }
        P::DomainGetSchedulerParameters => {
            let a: DomainNparamsArgs = args(payload)?;
            find(conn, &a.dom)?;
            if qemu {
                return Err(sched_no_support(conn, "virDomainGetSchedulerParameters"));
            }
            if a.nparams <= 0 {
                return Err(VirError::invalid_arg(
                    ErrorDomain::Domain,
                    "nparams in virDomainGetSchedulerParameters must be greater than zero",
                ));
            }
            ret(&TypedParamsRet {
                params: vec![TypedParam {
                    field: "weight".into(),
                    value: TypedParamValue::UInt(50),
                }],
            })
        }
        P::DomainGetSchedulerParametersFlags => {
            let a: DomainNparamsFlagsArgs = args(payload)?;
            find(conn, &a.dom)?;
            if qemu {
                return Err(sched_no_support(
                    conn,
                    "virDomainGetSchedulerParametersFlags",
                ));
            }
            // libvirt adds VIR_TYPED_PARAM_STRING_OKAY (4) before calling the test
            // driver, which accepts no flags at all.
            Err(VirError::unsupported_flags(
                conn.error_domain(),
                a.flags | 4,
                "testDomainGetSchedulerParametersFlags",
            ))
        }
        P::NodeGetSecurityModel => {
            let (model, doi) = if qemu {
                ("none", "0")
            } else {
                (SECURITY_MODEL, SECURITY_DOI)
            };
            ret(&NodeGetSecurityModelRet {
                model: CharArray::with_nul(model),
                doi: CharArray::with_nul(doi),
            })
        }
        P::DomainGetSecurityLabel => {
            let a: DomainArgs = args(payload)?;
            find(conn, &a.dom)?;
            let (label, enforcing) = if qemu { ("", 0) } else { ("libvirt-test", 1) };
            ret(&DomainGetSecurityLabelRet {
                label: CharArray::with_nul(label),
                enforcing,
            })
        }
        P::DomainGetSecurityLabelList => {
            let a: DomainArgs = args(payload)?;
            let e = find(conn, &a.dom)?.entry()?;
            let r = if !qemu {
                // The test driver has no label list; libvirtd turns the failure into
                // an empty answer with ret -1 (clients see an error of unknown cause).
                DomainGetSecurityLabelListRet {
                    labels: Vec::new(),
                    ret: -1,
                }
            } else if e.is_active() {
                DomainGetSecurityLabelListRet {
                    labels: vec![SecurityLabel {
                        label: CharArray::with_nul(""),
                        enforcing: 0,
                    }],
                    ret: 1,
                }
            } else {
                DomainGetSecurityLabelListRet {
                    labels: Vec::new(),
                    ret: 0,
                }
            };
            ret(&r)
        }
        _ => Err(VirError::no_support(ErrorDomain::Domain, &p.api_name())),
    }
}

/// DOMAIN_BLOCK_STATS of a QEMU guest: the disk named by target or source path, its
/// counters from QEMU's monitor; `errs` is -1 (QEMU keeps none; virsh leaves it out),
/// as libvirt answers.
async fn qemu_block_stats(d: &Domain, path: &str) -> VirResult<DomainBlockStatsRet> {
    let (info, def) = info_and_def(d).await?;
    if !info.state.state.is_active() {
        return Err(VirError::operation_invalid(
            ErrorDomain::Domain,
            "domain is not running",
        ));
    }
    let invalid = || VirError::invalid_arg(ErrorDomain::Qemu, format!("invalid path: {path}"));
    let disk = def
        .disks()
        .into_iter()
        .find(|k| k.target_dev.as_deref() == Some(path) || k.source_path().as_deref() == Some(path))
        .ok_or_else(invalid)?;
    let io = d.disk_io().await?.unwrap_or_default();
    let aliases = vireo_drivers::qemu::argv::disk_aliases(&def)?;
    let c =
        disk_counters(Some(&io), Some(&aliases), disk.target_dev.as_deref()).ok_or_else(invalid)?;
    let n = |x: u64| x as i64;
    Ok(DomainBlockStatsRet {
        rd_req: n(c.rd_reqs),
        rd_bytes: n(c.rd_bytes),
        wr_req: n(c.wr_reqs),
        wr_bytes: n(c.wr_bytes),
        errs: -1,
    })
}

/// Appends `PREFIX.KEY` = value (unsigned long long) for each pair, in order.
fn counters(v: &mut Vec<TypedParam>, prefix: &str, pairs: &[(&str, u64)]) {
    for (k, x) in pairs {
        v.push(p(format!("{prefix}.{k}"), TypedParamValue::ULLong(*x)));
    }
}

/// The counters QEMU keeps for the disk with target `target`: its format node
/// (named by [`vireo_drivers::qemu::argv::disk_aliases`]) in `query-blockstats`.
fn disk_counters<'a>(
    io: Option<&'a [DiskIo]>,
    aliases: Option<&[DiskAlias]>,
    target: Option<&str>,
) -> Option<&'a DiskIo> {
    let node = aliases?
        .iter()
        .find(|a| Some(a.target.as_str()) == target)?
        .format_node
        .as_deref()?;
    io?.iter().find(|c| c.node == node)
}

/// Seconds and microseconds since the epoch, the base of the test driver's made-up
/// block and interface figures.
fn clock() -> (i64, i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_secs() as i64, now.as_micros() as i64)
}

/// The runtime facts and the current definition (the live one while active).
async fn info_and_def(d: &Domain) -> VirResult<(DomainInfo, DomainDef)> {
    let info = d.info().await?;
    let def = DomainDef::parse(&d.xml(0).await?)?;
    Ok((info, def))
}

async fn all_domain_stats(
    conn: &Connection,
    a: ConnectGetAllDomainStatsArgs,
) -> VirResult<ConnectGetAllDomainStatsRet> {
    let allowed = STATS_FILTERS | STATS_NOWAIT | STATS_BACKING | STATS_ENFORCE;
    if a.flags & !allowed != 0 {
        return Err(VirError::unsupported_flags(
            conn.error_domain(),
            a.flags & !allowed,
            &func(conn, "ConnectGetAllDomainStats"),
        ));
    }
    let qemu = is_qemu(conn);
    let supported = if qemu { QEMU_GROUPS } else { TEST_GROUPS };
    let groups = wanted_groups(a.stats, a.flags, supported, conn.error_domain())?;
    let filter = ListFilter {
        flags: a.flags & STATS_FILTERS,
    };
    let doms: Vec<Domain> = if a.doms.is_empty() {
        conn.list_domain_handles(filter)
    } else {
        // Domains that vanished meanwhile are skipped, as libvirt does.
        a.doms
            .iter()
            .filter_map(|r| find(conn, r).ok())
            .filter(|d| d.entry().is_ok_and(|e| filter.matches(&e)))
            .collect()
    };
    let mut ret_stats = Vec::with_capacity(doms.len());
    for d in doms {
        let params = if qemu {
            match info_and_def(&d).await {
                Ok((info, def)) => {
                    // Disk counters come from QEMU's monitor: asked only when wanted.
                    let io = if groups & group::BLOCK != 0 && info.state.state.is_active() {
                        d.disk_io().await.ok().flatten()
                    } else {
                        None
                    };
                    qemu_record(groups, &info, &def, io.as_deref())
                }
                Err(_) => continue,
            }
        } else {
            match d.entry() {
                Ok(e) if groups & group::STATE != 0 => state_params(e.state.state, e.state.reason),
                Ok(_) => Vec::new(),
                Err(_) => continue,
            }
        };
        ret_stats.push(DomainStatsRecord {
            dom: dom_ref(&d),
            params,
        });
    }
    Ok(ConnectGetAllDomainStatsRet { ret_stats })
}

/// The groups to report: all supported ones for 0; the supported part of the request,
/// or an error naming the rest under `ENFORCE_STATS`.
fn wanted_groups(stats: u32, flags: u32, supported: u32, dom: ErrorDomain) -> VirResult<u32> {
    if stats == 0 {
        return Ok(supported);
    }
    let missing = stats & !supported;
    if flags & STATS_ENFORCE != 0 && missing != 0 {
        return Err(VirError::with(
            ErrorCode::ArgumentUnsupported,
            dom,
            format!("Stats types bits 0x{missing:x} are not supported by this daemon"),
        ));
    }
    Ok(stats & supported)
}

fn p(name: impl Into<String>, value: TypedParamValue) -> TypedParam {
    TypedParam {
        field: name.into(),
        value,
    }
}

fn state_params(state: DomainState, reason: i32) -> Vec<TypedParam> {
    vec![
        p("state.state", TypedParamValue::Int(state as i32)),
        p("state.reason", TypedParamValue::Int(reason)),
    ]
}

/// Whether the definition gives the guest a balloon: QEMU guests have a virtio one
/// unless `<memballoon model='none'/>`; test-driver domains only when one is written.
fn has_balloon(qemu: bool, def: &DomainDef) -> bool {
    match def.element().path(&["devices", "memballoon"]) {
        Some(m) => m.attr("model") != Some("none"),
        None => qemu,
    }
}

/// DOMAIN_MEMORY_STATS for an active domain, in libvirt's order.
fn memory_stats(qemu: bool, info: &DomainInfo, def: &DomainDef) -> Vec<DomainMemoryStat> {
    let s = |tag, val| DomainMemoryStat { tag, val };
    let cur = def.current_memory_kib();
    let balloon = has_balloon(qemu, def);
    if !qemu {
        if !balloon {
            return Vec::new();
        }
        return vec![
            s(tag::ACTUAL_BALLOON, cur),
            s(tag::SWAP_IN, 0),
            s(tag::SWAP_OUT, 0),
            s(tag::MAJOR_FAULT, 0),
            s(tag::MINOR_FAULT, 0),
            s(tag::UNUSED, cur / 2),
            s(tag::AVAILABLE, cur),
            s(tag::USABLE, cur / 2),
            s(tag::LAST_UPDATE, TEST_LAST_UPDATE),
            s(tag::DISK_CACHES, cur / 8),
            s(tag::HUGETLB_PGALLOC, 0),
            s(tag::HUGETLB_PGFAIL, 0),
            s(tag::RSS, cur / 2),
        ];
    }
    let mut v = Vec::new();
    if balloon {
        // No guest balloon statistics are collected: libvirt then has the balloon
        // size and a last-update of 0.
        v.push(s(tag::ACTUAL_BALLOON, cur));
        v.push(s(tag::LAST_UPDATE, 0));
    }
    if let Some(u) = &info.usage {
        v.push(s(tag::RSS, u.rss_kib));
    }
    v
}

/// One QEMU domain's record for `groups`, in libvirt's group order.
fn qemu_record(
    groups: u32,
    info: &DomainInfo,
    def: &DomainDef,
    io: Option<&[DiskIo]>,
) -> Vec<TypedParam> {
    use TypedParamValue::{Int, String as Str, UInt, ULLong};
    let active = info.state.state.is_active();
    let usage = info.usage.as_ref().filter(|_| active);
    let mut v = Vec::new();
    if groups & group::STATE != 0 {
        v.extend(state_params(info.state.state, info.state.reason));
    }
    if groups & group::CPU_TOTAL != 0
        && let Some(u) = usage
    {
        v.push(p("cpu.time", ULLong(u.cpu_time_ns())));
        v.push(p("cpu.user", ULLong(u.cpu_user_ns)));
        v.push(p("cpu.system", ULLong(u.cpu_system_ns)));
    }
    if groups & group::BALLOON != 0 {
        let current = if has_balloon(true, def) {
            def.current_memory_kib()
        } else {
            def.memory_kib()
        };
        v.push(p("balloon.current", ULLong(current)));
        v.push(p("balloon.maximum", ULLong(def.memory_kib())));
        if active {
            if has_balloon(true, def) {
                v.push(p("balloon.last-update", ULLong(0)));
            }
            if let Some(u) = usage {
                v.push(p("balloon.rss", ULLong(u.rss_kib)));
            }
        }
    }
    if groups & group::VCPU != 0 {
        let current = def.current_vcpus();
        v.push(p("vcpu.current", UInt(current)));
        v.push(p("vcpu.maximum", UInt(def.vcpus())));
        if let Some(u) = usage {
            for (i, c) in u.vcpus.iter().enumerate().take(current as usize) {
                v.push(p(format!("vcpu.{i}.state"), Int(1)));
                v.push(p(format!("vcpu.{i}.time"), ULLong(c.time_ns)));
                v.push(p(format!("vcpu.{i}.wait"), ULLong(c.wait_ns)));
                v.push(p(format!("vcpu.{i}.delay"), ULLong(c.delay_ns)));
            }
        }
    }
    if groups & group::INTERFACE != 0 && active {
        let nics = def.interfaces();
        v.push(p("net.count", UInt(nics.len() as u32)));
        for (i, n) in nics.iter().enumerate() {
            if let Some(name) = &n.target_dev {
                v.push(p(format!("net.{i}.name"), Str(name.clone())));
                // The host tap's counters, from the guest's side (as libvirt reads them).
                if let Some(t) = vireo_drivers::netdev::guest_traffic(name) {
                    counters(
                        &mut v,
                        &format!("net.{i}"),
                        &[
                            ("rx.bytes", t.rx_bytes),
                            ("rx.pkts", t.rx_packets),
                            ("rx.errs", t.rx_errs),
                            ("rx.drop", t.rx_drop),
                            ("tx.bytes", t.tx_bytes),
                            ("tx.pkts", t.tx_packets),
                            ("tx.errs", t.tx_errs),
                            ("tx.drop", t.tx_drop),
                        ],
                    );
                }
            }
        }
    }
    if groups & group::BLOCK != 0 {
        let disks = def.disks();
        v.push(p("block.count", UInt(disks.len() as u32)));
        let aliases = io.and_then(|_| vireo_drivers::qemu::argv::disk_aliases(def).ok());
        for (i, d) in disks.iter().enumerate() {
            if let Some(name) = &d.target_dev {
                v.push(p(format!("block.{i}.name"), Str(name.clone())));
            }
            if let Some(path) = d.source_path() {
                v.push(p(format!("block.{i}.path"), Str(path)));
            }
            if let Some(c) = disk_counters(io, aliases.as_deref(), d.target_dev.as_deref()) {
                counters(
                    &mut v,
                    &format!("block.{i}"),
                    &[
                        ("rd.reqs", c.rd_reqs),
                        ("rd.bytes", c.rd_bytes),
                        ("rd.times", c.rd_ns),
                        ("wr.reqs", c.wr_reqs),
                        ("wr.bytes", c.wr_bytes),
                        ("wr.times", c.wr_ns),
                        ("fl.reqs", c.fl_reqs),
                        ("fl.times", c.fl_ns),
                        ("allocation", c.wr_highest_offset),
                    ],
                );
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use vireo_drivers::hypervisor::{GuestUsage, VcpuUsage};
    use vireo_messages::{StateReason, Uuid};

    fn def(devices: &str) -> DomainDef {
        DomainDef::parse(&format!(
            "<domain type='qemu'><name>s</name><memory unit='KiB'>65536</memory>\
             <currentMemory unit='KiB'>32768</currentMemory><vcpu current='1'>2</vcpu>\
             <os><type>hvm</type></os><devices>{devices}</devices></domain>"
        ))
        .unwrap()
    }

    fn info(state: DomainState, usage: Option<GuestUsage>) -> DomainInfo {
        DomainInfo {
            name: "s".into(),
            uuid: Uuid::nil(),
            id: None,
            state: StateReason::new(state, 1),
            persistent: true,
            autostart: false,
            managed_save: false,
            max_mem_kib: 65536,
            mem_kib: 32768,
            vcpus: 1,
            max_vcpus: 2,
            cpu_time_ns: 0,
            usage,
            updated: false,
        }
    }

    fn usage() -> GuestUsage {
        GuestUsage {
            cpu_user_ns: 3,
            cpu_system_ns: 4,
            rss_kib: 1000,
            vcpus: vec![VcpuUsage {
                time_ns: 5,
                wait_ns: 0,
                delay_ns: 6,
            }],
        }
    }

    fn names(v: &[TypedParam]) -> Vec<&str> {
        v.iter().map(|t| t.field.as_str()).collect()
    }

    #[test]
    fn enforce_refuses_groups_the_driver_lacks_and_otherwise_drops_them() {
        let e = wanted_groups(2 | 1, STATS_ENFORCE, TEST_GROUPS, ErrorDomain::Test).unwrap_err();
        assert_eq!(e.code, ErrorCode::ArgumentUnsupported);
        assert!(
            e.message
                .ends_with("Stats types bits 0x2 are not supported by this daemon")
        );
        assert_eq!(
            wanted_groups(2 | 1, 0, TEST_GROUPS, ErrorDomain::Test).unwrap(),
            1
        );
        assert_eq!(
            wanted_groups(0, STATS_ENFORCE, QEMU_GROUPS, ErrorDomain::Qemu).unwrap(),
            QEMU_GROUPS
        );
    }

    #[test]
    fn running_qemu_record_has_every_group_in_libvirts_order() {
        // QEMU's counters for the disk's format node (and one for a node of no disk).
        let io = [
            DiskIo {
                node: "libvirt-9-format".into(),
                rd_reqs: 99,
                ..DiskIo::default()
            },
            DiskIo {
                node: "libvirt-1-format".into(),
                rd_reqs: 3,
                rd_bytes: 1536,
                wr_highest_offset: 4096,
                ..DiskIo::default()
            },
        ];
        let r = qemu_record(
            QEMU_GROUPS,
            &info(DomainState::Running, Some(usage())),
            &def(
                "<disk type='file' device='disk'><source file='/x.img'/><target dev='vda'/></disk>",
            ),
            Some(&io),
        );
        assert_eq!(
            names(&r),
            [
                "state.state",
                "state.reason",
                "cpu.time",
                "cpu.user",
                "cpu.system",
                "balloon.current",
                "balloon.maximum",
                "balloon.last-update",
                "balloon.rss",
                "vcpu.current",
                "vcpu.maximum",
                "vcpu.0.state",
                "vcpu.0.time",
                "vcpu.0.wait",
                "vcpu.0.delay",
                "net.count",
                "block.count",
                "block.0.name",
                "block.0.path",
                "block.0.rd.reqs",
                "block.0.rd.bytes",
                "block.0.rd.times",
                "block.0.wr.reqs",
                "block.0.wr.bytes",
                "block.0.wr.times",
                "block.0.fl.reqs",
                "block.0.fl.times",
                "block.0.allocation",
            ]
        );
        assert_eq!(r[19].value, TypedParamValue::ULLong(3));
        assert_eq!(r[20].value, TypedParamValue::ULLong(1536));
        assert_eq!(r[27].value, TypedParamValue::ULLong(4096));
        assert_eq!(r[2].value, TypedParamValue::ULLong(7));
        assert_eq!(r[5].value, TypedParamValue::ULLong(32768));
        assert_eq!(r[6].value, TypedParamValue::ULLong(65536));
        assert_eq!(r[9].value, TypedParamValue::UInt(1));
        assert_eq!(r[10].value, TypedParamValue::UInt(2));
    }

    #[test]
    fn shut_off_qemu_record_has_no_runtime_figures() {
        let r = qemu_record(
            QEMU_GROUPS,
            &info(DomainState::Shutoff, None),
            &def(""),
            None,
        );
        assert_eq!(
            names(&r),
            [
                "state.state",
                "state.reason",
                "balloon.current",
                "balloon.maximum",
                "vcpu.current",
                "vcpu.maximum",
                "block.count",
            ]
        );
    }

    #[test]
    fn memory_stats_follow_each_driver() {
        let running = info(DomainState::Running, Some(usage()));
        let tags = |v: Vec<DomainMemoryStat>| v.iter().map(|s| (s.tag, s.val)).collect::<Vec<_>>();
        assert_eq!(
            tags(memory_stats(true, &running, &def(""))),
            [(6, 32768), (9, 0), (7, 1000)]
        );
        assert_eq!(
            tags(memory_stats(
                true,
                &running,
                &def("<memballoon model='none'/>")
            )),
            [(7, 1000)]
        );
        assert!(memory_stats(false, &running, &def("")).is_empty());
        let t = memory_stats(false, &running, &def("<memballoon model='virtio'/>"));
        assert_eq!(t.len(), 13);
        assert_eq!((t[0].tag, t[0].val), (6, 32768));
        assert_eq!((t[5].tag, t[5].val), (4, 16384));
        assert_eq!((t[9].tag, t[9].val), (10, 4096));
        assert_eq!((t[12].tag, t[12].val), (7, 16384));
    }
}
