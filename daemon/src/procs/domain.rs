//! Domains: listing (old and `LIST_ALL` forms), lookups, define/create/undefine, the
//! lifecycle calls and the getters virsh uses for `list`, `dominfo`, `domstate`,
//! `dumpxml`, `start`, `destroy`, `undefine` and friends.
//!
//! Objects named in a call are found by UUID (the name and id in a
//! `remote_nonnull_domain` are informative); every domain sent back carries its current
//! id (-1 when inactive).

use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use vireo_actors::{Connection, Domain, ListFilter};
use vireo_drivers::hypervisor::Flavour;
use vireo_messages::{DomainId, ErrorCode, ErrorDomain, VirError, VirResult};
use vireo_wire::RemoteProc as P;
use vireo_wire::procs::*;
use vireo_wire::types::NonnullDomain;
use vireo_wire::xdr::XdrEncode;

use super::{Handled, args, ret, truncate, void};
use crate::session::Session;

/// The wire reference for a domain handle, with its current id.
pub fn dom_ref(d: &Domain) -> NonnullDomain {
    NonnullDomain::new(d.name(), d.uuid(), d.id())
}

/// Finds the domain a call names, by uuid.
pub fn find(conn: &Connection, r: &NonnullDomain) -> VirResult<Domain> {
    conn.lookup_domain_by_uuid(&r.uuid).map_err(|_| {
        VirError::with(
            ErrorCode::NoDomain,
            conn.error_domain(),
            format!("no domain with matching uuid '{}' ({})", r.uuid, r.name),
        )
    })
}

/// `d` if it is active, else libvirt's "domain is not running".
fn active(d: Domain) -> VirResult<Domain> {
    if d.entry()?.is_active() {
        Ok(d)
    } else {
        Err(VirError::operation_invalid(
            ErrorDomain::Domain,
            "domain is not running",
        ))
    }
}

fn is_test(conn: &Connection) -> bool {
    conn.flavour() == Flavour::Test
}

/// libvirt's client library refuses RUNNING together with PAUSED.
fn exclusive_save_flags(flags: u32) -> VirResult<()> {
    if flags & 2 != 0 && flags & 4 != 0 {
        return Err(VirError::invalid_arg(
            ErrorDomain::Domain,
            "Flags 'VIR_DOMAIN_SAVE_RUNNING' and 'VIR_DOMAIN_SAVE_PAUSED' are mutually exclusive",
        ));
    }
    Ok(())
}

/// The managed-save image of the domain a call names, or libvirt's error when it has none.
fn managed_image(conn: &Connection, r: &NonnullDomain) -> VirResult<std::path::PathBuf> {
    find(conn, r)?.managed_save_path()?.ok_or_else(|| {
        VirError::operation_invalid(
            conn.error_domain(),
            "domain does not have managed save image",
        )
    })
}

/// The typed parameters of `virDomainGetJobStats` for a job's counters.
fn job_stats(i: &vireo_actors::domain::JobInfo) -> Vec<vireo_wire::types::TypedParam> {
    vireo_wire::types::typed_params_to_wire(&i.params())
}

fn check_flags(conn: &Connection, flags: u32, allowed: u32, func: &str) -> VirResult<()> {
    if flags & !allowed != 0 {
        return Err(VirError::unsupported_flags(
            conn.error_domain(),
            flags & !allowed,
            func,
        ));
    }
    Ok(())
}

/// Handles this family's procedures.
pub async fn handle(s: &Arc<Session>, p: P, payload: &[u8]) -> Handled {
    if !is_domain_proc(p) {
        return None;
    }
    Some(match s.conn() {
        Ok(conn) => run(s, &conn, p, payload).await,
        Err(e) => Err(e),
    })
}

fn is_domain_proc(p: P) -> bool {
    matches!(
        p,
        P::ConnectListAllDomains
            | P::ConnectNumOfDomains
            | P::ConnectListDomains
            | P::ConnectNumOfDefinedDomains
            | P::ConnectListDefinedDomains
            | P::DomainLookupByName
            | P::DomainLookupByUuid
            | P::DomainLookupById
            | P::DomainDefineXml
            | P::DomainDefineXmlFlags
            | P::DomainCreateXml
            | P::DomainCreate
            | P::DomainCreateWithFlags
            | P::DomainDestroy
            | P::DomainDestroyFlags
            | P::DomainShutdown
            | P::DomainShutdownFlags
            | P::DomainReboot
            | P::DomainReset
            | P::DomainSuspend
            | P::DomainResume
            | P::DomainUndefine
            | P::DomainUndefineFlags
            | P::DomainGetInfo
            | P::DomainGetState
            | P::DomainGetXmlDesc
            | P::DomainGetAutostart
            | P::DomainSetAutostart
            | P::DomainIsActive
            | P::DomainIsPersistent
            | P::DomainIsUpdated
            | P::DomainGetOsType
            | P::DomainGetMaxMemory
            | P::DomainGetVcpusFlags
            | P::DomainGetMaxVcpus
            | P::DomainHasManagedSaveImage
            | P::DomainManagedSaveRemove
            | P::DomainSave
            | P::DomainSaveFlags
            | P::DomainRestore
            | P::DomainRestoreFlags
            | P::DomainManagedSave
            | P::DomainSaveImageGetXmlDesc
            | P::DomainSaveImageDefineXml
            | P::DomainManagedSaveGetXmlDesc
            | P::DomainManagedSaveDefineXml
            | P::DomainGetJobInfo
            | P::DomainGetJobStats
            | P::DomainAbortJob
            | P::DomainAbortJobFlags
            | P::DomainGetMessages
            | P::DomainSnapshotNum
    )
}

async fn run(s: &Arc<Session>, conn: &Connection, p: P, payload: &[u8]) -> VirResult<Bytes> {
    match p {
        P::ConnectListAllDomains => {
            let a: ListAllArgs = args(payload)?;
            check_flags(conn, a.flags, 0xffff, "testConnectListAllDomains")?;
            // Encoded straight from the directory (ConnectListAllDomainsRet's layout:
            // the array of remote_nonnull_domain, then the count).
            Ok(conn.with_domains(ListFilter { flags: a.flags }, |doms| {
                let mut out = BytesMut::with_capacity(8 + doms.len() * 40);
                if a.need_results != 0 {
                    (doms.len() as u32).encode(&mut out);
                    for e in doms {
                        e.name.encode(&mut out);
                        e.uuid.encode(&mut out);
                        DomainId::wire(e.id).encode(&mut out);
                    }
                } else {
                    0u32.encode(&mut out);
                }
                (doms.len() as u32).encode(&mut out);
                out.freeze()
            }))
        }
        P::ConnectNumOfDomains => ret(&IntRet {
            value: conn.list_domain_ids().len() as i32,
        }),
        P::ConnectListDomains => {
            let a: MaxNamesArgs = args(payload)?;
            let ids = conn
                .list_domain_ids()
                .into_iter()
                .map(|i| i as i32)
                .collect();
            ret(&IdsRet {
                ids: truncate(ids, a.maxnames),
            })
        }
        P::ConnectNumOfDefinedDomains => ret(&IntRet {
            value: conn.count_domains(ListFilter { flags: 2 }) as i32,
        }),
        P::ConnectListDefinedDomains => {
            let a: MaxNamesArgs = args(payload)?;
            let names = conn
                .list_domains(ListFilter { flags: 2 })
                .into_iter()
                .map(|e| e.name)
                .collect();
            ret(&NamesRet {
                names: truncate(names, a.maxnames),
            })
        }
        P::DomainLookupByName => {
            let a: NameArgs = args(payload)?;
            let e = conn.domain_entry_by_name(&a.name)?;
            ret(&DomainRet {
                dom: NonnullDomain::new(e.name, e.uuid, e.id),
            })
        }
        P::DomainLookupByUuid => {
            let a: UuidArgs = args(payload)?;
            let e = conn.domain_entry_by_uuid(&a.uuid)?;
            ret(&DomainRet {
                dom: NonnullDomain::new(e.name, e.uuid, e.id),
            })
        }
        P::DomainLookupById => {
            let a: DomainLookupByIdArgs = args(payload)?;
            let d = u32::try_from(a.id)
                .map_err(|_| VirError::bare(ErrorCode::NoDomain, conn.error_domain()))
                .and_then(|id| conn.lookup_domain_by_id(id))?;
            ret(&DomainRet { dom: dom_ref(&d) })
        }
        P::DomainDefineXml => {
            let a: XmlArgs = args(payload)?;
            let d = conn.define_domain(&a.xml).await?;
            ret(&DomainRet { dom: dom_ref(&d) })
        }
        P::DomainDefineXmlFlags => {
            let a: XmlFlagsArgs = args(payload)?;
            check_flags(conn, a.flags, 1, "testDomainDefineXMLFlags")?;
            let d = conn.define_domain(&a.xml).await?;
            ret(&DomainRet { dom: dom_ref(&d) })
        }
        P::DomainCreateXml => {
            let a: XmlFlagsArgs = args(payload)?;
            check_flags(conn, a.flags, 1 | 16, "testDomainCreateXML")?;
            let d = conn.create_domain(&a.xml, a.flags & 1 != 0).await?;
            ret(&DomainRet { dom: dom_ref(&d) })
        }
        P::DomainCreate => {
            let a: DomainArgs = args(payload)?;
            find(conn, &a.dom)?.start(false).await?;
            void()
        }
        P::DomainCreateWithFlags => {
            let a: DomainFlagsArgs = args(payload)?;
            if is_test(conn) {
                check_flags(conn, a.flags, 1, "testDomainCreateWithFlags")?;
            } else {
                // PAUSED, AUTODESTROY, BYPASS_CACHE, FORCE_BOOT, RESET_NVRAM.
                check_flags(
                    conn,
                    a.flags,
                    1 | 2 | 4 | 8 | 16,
                    "qemuDomainCreateWithFlags",
                )?;
            }
            let d = find(conn, &a.dom)?;
            d.start_with(a.flags & 1 != 0, a.flags & 8 != 0).await?;
            ret(&DomainRet { dom: dom_ref(&d) })
        }
        P::DomainDestroy => {
            let a: DomainArgs = args(payload)?;
            find(conn, &a.dom)?.destroy(false).await?;
            void()
        }
        P::DomainDestroyFlags => {
            let a: DomainFlagsArgs = args(payload)?;
            check_flags(conn, a.flags, 1, "testDomainDestroyFlags")?;
            find(conn, &a.dom)?.destroy(a.flags & 1 != 0).await?;
            void()
        }
        P::DomainShutdown => {
            let a: DomainArgs = args(payload)?;
            find(conn, &a.dom)?.shutdown().await?;
            void()
        }
        P::DomainShutdownFlags => {
            let a: DomainFlagsArgs = args(payload)?;
            check_flags(conn, a.flags, 0, "testDomainShutdownFlags")?;
            find(conn, &a.dom)?.shutdown().await?;
            void()
        }
        P::DomainReboot => {
            let a: DomainFlagsArgs = args(payload)?;
            check_flags(conn, a.flags, 31, "testDomainReboot")?;
            find(conn, &a.dom)?.reboot().await?;
            void()
        }
        P::DomainReset => {
            let a: DomainFlagsArgs = args(payload)?;
            check_flags(conn, a.flags, 0, "testDomainReset")?;
            find(conn, &a.dom)?.reset().await?;
            void()
        }
        P::DomainSuspend => {
            let a: DomainArgs = args(payload)?;
            find(conn, &a.dom)?.suspend().await?;
            void()
        }
        P::DomainResume => {
            let a: DomainArgs = args(payload)?;
            find(conn, &a.dom)?.resume().await?;
            void()
        }
        P::DomainUndefine => {
            let a: DomainArgs = args(payload)?;
            find(conn, &a.dom)?.undefine(0).await?;
            void()
        }
        P::DomainUndefineFlags => {
            let a: DomainFlagsArgs = args(payload)?;
            find(conn, &a.dom)?.undefine(a.flags).await?;
            void()
        }
        P::DomainGetInfo => {
            let a: DomainArgs = args(payload)?;
            let i = find(conn, &a.dom)?.info().await?;
            ret(&DomainGetInfoRet {
                state: i.state.state as u32,
                max_mem: i.max_mem_kib,
                memory: i.mem_kib,
                nr_virt_cpu: i.vcpus,
                cpu_time: i.cpu_time_ns,
            })
        }
        P::DomainGetState => {
            let a: DomainFlagsArgs = args(payload)?;
            check_flags(conn, a.flags, 0, "testDomainGetState")?;
            let e = find(conn, &a.dom)?.entry()?;
            ret(&DomainGetStateRet {
                state: e.state.state as i32,
                reason: e.state.reason,
            })
        }
        P::DomainGetXmlDesc => {
            let a: DomainFlagsArgs = args(payload)?;
            if s.read_only() && a.flags & 1 != 0 {
                return Err(VirError::operation_denied(
                    vireo_messages::ErrorDomain::Domain,
                    "virDomainGetXMLDesc with secure flag",
                ));
            }
            let xml = find(conn, &a.dom)?.xml(a.flags).await?;
            ret(&StringRet { value: xml })
        }
        P::DomainGetAutostart => {
            let a: DomainArgs = args(payload)?;
            let e = find(conn, &a.dom)?.entry()?;
            ret(&IntRet {
                value: e.autostart as i32,
            })
        }
        P::DomainSetAutostart => {
            let a: DomainAutostartArgs = args(payload)?;
            find(conn, &a.dom)?.set_autostart(a.autostart != 0).await?;
            void()
        }
        P::DomainIsActive => {
            let a: DomainArgs = args(payload)?;
            let e = find(conn, &a.dom)?.entry()?;
            ret(&IntRet {
                value: e.is_active() as i32,
            })
        }
        P::DomainIsPersistent => {
            let a: DomainArgs = args(payload)?;
            let e = find(conn, &a.dom)?.entry()?;
            ret(&IntRet {
                value: e.persistent as i32,
            })
        }
        P::DomainIsUpdated => {
            let a: DomainArgs = args(payload)?;
            let i = find(conn, &a.dom)?.info().await?;
            ret(&IntRet {
                value: i.updated as i32,
            })
        }
        P::DomainGetOsType => {
            let a: DomainArgs = args(payload)?;
            let d = find(conn, &a.dom)?;
            // libvirt 9.0's test driver answers "linux" for every domain; the qemu
            // driver the definition's OS type.
            let value = if conn.type_name() == "QEMU" {
                vireo_xml::DomainDef::parse(&d.xml(0).await?)?
                    .os_type()
                    .unwrap_or_else(|| "hvm".into())
            } else {
                "linux".into()
            };
            ret(&StringRet { value })
        }
        P::DomainGetMaxMemory => {
            let a: DomainArgs = args(payload)?;
            let i = find(conn, &a.dom)?.info().await?;
            ret(&UHyperRet {
                value: i.max_mem_kib,
            })
        }
        P::DomainGetVcpusFlags => {
            let a: DomainFlagsArgs = args(payload)?;
            check_flags(conn, a.flags, 1 | 2 | 4 | 8, "testDomainGetVcpusFlags")?;
            let i = find(conn, &a.dom)?.info().await?;
            // VIR_DOMAIN_VCPU_MAXIMUM (4) asks for the maximum, else the current count.
            let n = if a.flags & 4 != 0 {
                i.max_vcpus
            } else {
                i.vcpus
            };
            ret(&IntRet { value: n as i32 })
        }
        P::DomainGetMaxVcpus => {
            let a: DomainArgs = args(payload)?;
            let i = find(conn, &a.dom)?.info().await?;
            ret(&IntRet {
                value: i.max_vcpus as i32,
            })
        }
        P::DomainHasManagedSaveImage => {
            let a: DomainFlagsArgs = args(payload)?;
            check_flags(conn, a.flags, 0, "testDomainHasManagedSaveImage")?;
            let e = find(conn, &a.dom)?.entry()?;
            ret(&IntRet {
                value: e.managed_save as i32,
            })
        }
        P::DomainManagedSaveRemove => {
            let a: DomainFlagsArgs = args(payload)?;
            check_flags(conn, a.flags, 0, "testDomainManagedSaveRemove")?;
            find(conn, &a.dom)?.managed_save_remove().await?;
            void()
        }
        P::DomainSave => {
            let a: DomainSaveArgs = args(payload)?;
            find(conn, &a.dom)?.save(Path::new(&a.to), None, 0).await?;
            void()
        }
        P::DomainSaveFlags => {
            let a: DomainSaveFlagsArgs = args(payload)?;
            find(conn, &a.dom)?
                .save(Path::new(&a.to), a.dxml.as_deref(), a.flags)
                .await?;
            void()
        }
        P::DomainRestore => {
            let a: DomainRestoreArgs = args(payload)?;
            conn.restore(Path::new(&a.from), None, 0).await?;
            void()
        }
        P::DomainRestoreFlags => {
            let a: DomainRestoreFlagsArgs = args(payload)?;
            if is_test(conn) {
                check_flags(conn, a.flags, 0, "testDomainRestoreFlags")?;
            } else {
                check_flags(conn, a.flags, 7, "qemuDomainRestoreFlags")?;
                exclusive_save_flags(a.flags)?;
            }
            conn.restore(Path::new(&a.from), a.dxml.as_deref(), a.flags)
                .await?;
            void()
        }
        P::DomainManagedSave => {
            let a: DomainFlagsArgs = args(payload)?;
            find(conn, &a.dom)?.managed_save(a.flags).await?;
            void()
        }
        P::DomainSaveImageGetXmlDesc => {
            let a: SaveImageXmlArgs = args(payload)?;
            check_flags(conn, a.flags, 1, "virDomainSaveImageGetXMLDesc")?;
            if s.read_only() && a.flags & 1 != 0 {
                return Err(VirError::operation_denied(
                    ErrorDomain::Domain,
                    "virDomainSaveImageGetXMLDesc with secure flag",
                ));
            }
            let xml = conn.save_image_xml(Path::new(&a.file), a.flags).await?;
            ret(&StringRet { value: xml })
        }
        P::DomainSaveImageDefineXml => {
            let a: SaveImageDefineXmlArgs = args(payload)?;
            check_flags(conn, a.flags, 2 | 4, "virDomainSaveImageDefineXML")?;
            exclusive_save_flags(a.flags)?;
            conn.save_image_define_xml(Path::new(&a.file), &a.dxml, a.flags)
                .await?;
            void()
        }
        P::DomainManagedSaveGetXmlDesc if !is_test(conn) => {
            let a: DomainFlagsArgs = args(payload)?;
            check_flags(conn, a.flags, 1, "qemuDomainManagedSaveGetXMLDesc")?;
            let path = managed_image(conn, &a.dom)?;
            let xml = conn.save_image_xml(&path, a.flags).await?;
            ret(&StringRet { value: xml })
        }
        P::DomainManagedSaveDefineXml if !is_test(conn) => {
            let a: DomainManagedSaveDefineXmlArgs = args(payload)?;
            check_flags(conn, a.flags, 2 | 4, "qemuDomainManagedSaveDefineXML")?;
            exclusive_save_flags(a.flags)?;
            let path = managed_image(conn, &a.dom)?;
            let dxml = a.dxml.ok_or_else(|| {
                VirError::invalid_arg(
                    ErrorDomain::Domain,
                    "dxml in virDomainManagedSaveDefineXML must not be NULL",
                )
            })?;
            conn.save_image_define_xml(&path, &dxml, a.flags).await?;
            void()
        }
        P::DomainGetJobInfo if !is_test(conn) => {
            let a: DomainArgs = args(payload)?;
            let i = active(find(conn, &a.dom)?)?.job_info().await?;
            ret(&DomainGetJobInfoRet {
                type_: i.job_type,
                time_elapsed: i.elapsed_ms,
                data_total: i.data_total,
                data_processed: i.data_processed,
                data_remaining: i.data_remaining,
                mem_total: i.data_total,
                mem_processed: i.data_processed,
                mem_remaining: i.data_remaining,
                ..Default::default()
            })
        }
        P::DomainGetJobStats if !is_test(conn) => {
            let a: DomainFlagsArgs = args(payload)?;
            // COMPLETED, KEEP_COMPLETED.
            check_flags(conn, a.flags, 1 | 2, "qemuDomainGetJobStats")?;
            let d = find(conn, &a.dom)?;
            let i = if a.flags & 1 != 0 {
                d.completed_job(a.flags & 2 != 0).unwrap_or_default()
            } else {
                active(d)?.job_info().await?
            };
            ret(&DomainGetJobStatsRet {
                type_: i.job_type,
                params: job_stats(&i),
            })
        }
        P::DomainAbortJob if !is_test(conn) => {
            let a: DomainArgs = args(payload)?;
            active(find(conn, &a.dom)?)?.abort_job().await?;
            void()
        }
        P::DomainAbortJobFlags if !is_test(conn) => {
            let a: DomainFlagsArgs = args(payload)?;
            // POSTCOPY (1) concerns migrations only.
            check_flags(conn, a.flags, 0, "qemuDomainAbortJobFlags")?;
            active(find(conn, &a.dom)?)?.abort_job().await?;
            void()
        }
        P::DomainGetMessages => {
            let a: DomainFlagsArgs = args(payload)?;
            find(conn, &a.dom)?;
            ret(&NamesRet { names: Vec::new() })
        }
        P::DomainSnapshotNum => {
            let a: DomainFlagsArgs = args(payload)?;
            let e = find(conn, &a.dom)?.entry()?;
            ret(&IntRet {
                value: e.snapshots as i32,
            })
        }
        _ => Err(VirError::no_support(
            vireo_messages::ErrorDomain::Domain,
            &p.api_name(),
        )),
    }
}
