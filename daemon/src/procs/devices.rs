//! Node devices, host interfaces and secrets: listings (old and `LIST_ALL` forms),
//! lookups, XML, node-device create/destroy (the test driver's vHBA mock), interface
//! define/undefine/start/stop and change transactions, secret define/lookup/value/
//! undefine. The state lives in the connection's driver instance (`vireo-actors`'
//! `nodedev`, `iface` and `secret` modules).

use std::sync::Arc;

use bytes::Bytes;
use vireo_actors::{Connection, Interface, SecretDef};
use vireo_messages::{ErrorDomain, VirError, VirResult};
use vireo_wire::RemoteProc as P;
use vireo_wire::procs::*;
use vireo_wire::types::{NonnullInterface, NonnullNodeDevice, NonnullSecret};

use super::{Handled, args, ret, truncate, void};
use crate::session::Session;

fn iface_ref(i: &Interface) -> NonnullInterface {
    NonnullInterface {
        name: i.name.clone(),
        mac: i.mac.clone(),
    }
}

fn secret_ref(d: &SecretDef) -> NonnullSecret {
    NonnullSecret {
        uuid: d.uuid,
        usage_type: d.usage_type,
        usage_id: d.usage_id.clone(),
    }
}

fn check_flags(dom: ErrorDomain, flags: u32, allowed: u32, func: &str) -> VirResult<()> {
    if flags & !allowed != 0 {
        return Err(VirError::unsupported_flags(dom, flags & !allowed, func));
    }
    Ok(())
}

fn is_family(p: P) -> bool {
    matches!(
        p,
        P::ConnectListAllNodeDevices
            | P::NodeNumOfDevices
            | P::NodeListDevices
            | P::NodeDeviceLookupByName
            | P::NodeDeviceGetXmlDesc
            | P::NodeDeviceGetParent
            | P::NodeDeviceNumOfCaps
            | P::NodeDeviceListCaps
            | P::NodeDeviceCreateXml
            | P::NodeDeviceDestroy
            | P::ConnectListAllInterfaces
            | P::ConnectNumOfInterfaces
            | P::ConnectListInterfaces
            | P::ConnectNumOfDefinedInterfaces
            | P::ConnectListDefinedInterfaces
            | P::InterfaceLookupByName
            | P::InterfaceLookupByMacString
            | P::InterfaceGetXmlDesc
            | P::InterfaceDefineXml
            | P::InterfaceUndefine
            | P::InterfaceCreate
            | P::InterfaceDestroy
            | P::InterfaceIsActive
            | P::InterfaceChangeBegin
            | P::InterfaceChangeCommit
            | P::InterfaceChangeRollback
            | P::ConnectListAllSecrets
            | P::ConnectNumOfSecrets
            | P::ConnectListSecrets
            | P::SecretLookupByUuid
            | P::SecretLookupByUsage
            | P::SecretDefineXml
            | P::SecretGetXmlDesc
            | P::SecretSetValue
            | P::SecretGetValue
            | P::SecretUndefine
    )
}

/// Handles this family's procedures.
pub async fn handle(s: &Arc<Session>, p: P, payload: &[u8]) -> Handled {
    if !is_family(p) {
        return None;
    }
    Some(match s.conn() {
        Ok(conn) => run(&conn, p, payload),
        Err(e) => Err(e),
    })
}

fn run(conn: &Connection, p: P, payload: &[u8]) -> VirResult<Bytes> {
    let dom = conn.error_domain();
    let devs = conn.node_devices();
    let ifaces = conn.interfaces();
    let secrets = conn.secrets();
    match p {
        // ----- node devices -----
        P::ConnectListAllNodeDevices => {
            let a: ListAllArgs = args(payload)?;
            // Capability bits plus ACTIVE/INACTIVE (libvirt 9.0's test driver refuses
            // the state bits that virsh sends; see docs/differences.md).
            check_flags(
                dom,
                a.flags,
                0x3f_ffff
                    | vireo_actors::nodedev::LIST_ACTIVE
                    | vireo_actors::nodedev::LIST_INACTIVE,
                "testConnectListAllNodeDevices",
            )?;
            let list: Vec<NonnullNodeDevice> = devs
                .list_all(a.flags)
                .into_iter()
                .map(|d| NonnullNodeDevice { name: d.name })
                .collect();
            let count = list.len() as u32;
            ret(&ConnectListAllNodeDevicesRet {
                devices: if a.need_results != 0 {
                    list
                } else {
                    Vec::new()
                },
                ret: count,
            })
        }
        P::NodeNumOfDevices => {
            let a: NodeNumOfDevicesArgs = args(payload)?;
            check_flags(dom, a.flags, 0, "testNodeNumOfDevices")?;
            ret(&IntRet {
                value: devs.list(a.cap.as_deref()).len() as i32,
            })
        }
        P::NodeListDevices => {
            let a: NodeListDevicesArgs = args(payload)?;
            check_flags(dom, a.flags, 0, "testNodeListDevices")?;
            let names = devs
                .list(a.cap.as_deref())
                .into_iter()
                .map(|d| d.name)
                .collect();
            ret(&NamesRet {
                names: truncate(names, a.maxnames),
            })
        }
        P::NodeDeviceLookupByName => {
            let a: NameArgs = args(payload)?;
            let d = devs.lookup(&a.name)?;
            ret(&NodeDeviceRet {
                dev: NonnullNodeDevice { name: d.name },
            })
        }
        P::NodeDeviceGetXmlDesc => {
            let a: NameFlagsArgs = args(payload)?;
            check_flags(dom, a.flags, 0, "testNodeDeviceGetXMLDesc")?;
            ret(&StringRet {
                value: devs.lookup(&a.name)?.xml,
            })
        }
        P::NodeDeviceGetParent => {
            let a: NameArgs = args(payload)?;
            ret(&OptStringRet {
                value: devs.lookup(&a.name)?.parent,
            })
        }
        P::NodeDeviceNumOfCaps => {
            let a: NameArgs = args(payload)?;
            ret(&IntRet {
                value: devs.lookup(&a.name)?.caps.len() as i32,
            })
        }
        P::NodeDeviceListCaps => {
            let a: NodeDeviceListCapsArgs = args(payload)?;
            ret(&NamesRet {
                names: truncate(devs.lookup(&a.name)?.caps, a.maxnames),
            })
        }
        P::NodeDeviceCreateXml => {
            let a: XmlFlagsArgs = args(payload)?;
            check_flags(dom, a.flags, 0, "testNodeDeviceCreateXML")?;
            let d = devs.create_xml(&a.xml)?;
            ret(&NodeDeviceRet {
                dev: NonnullNodeDevice { name: d.name },
            })
        }
        P::NodeDeviceDestroy => {
            let a: NameArgs = args(payload)?;
            devs.destroy(&a.name)?;
            void()
        }

        // ----- interfaces -----
        P::ConnectListAllInterfaces => {
            let a: ListAllArgs = args(payload)?;
            check_flags(dom, a.flags, 3, "testConnectListAllInterfaces")?;
            let want = match a.flags & 3 {
                1 => Some(false),
                2 => Some(true),
                _ => None,
            };
            let list: Vec<NonnullInterface> = ifaces.list(want).iter().map(iface_ref).collect();
            let count = list.len() as u32;
            ret(&ConnectListAllInterfacesRet {
                ifaces: if a.need_results != 0 {
                    list
                } else {
                    Vec::new()
                },
                ret: count,
            })
        }
        P::ConnectNumOfInterfaces | P::ConnectNumOfDefinedInterfaces => ret(&IntRet {
            value: ifaces.list(Some(p == P::ConnectNumOfInterfaces)).len() as i32,
        }),
        P::ConnectListInterfaces | P::ConnectListDefinedInterfaces => {
            let a: MaxNamesArgs = args(payload)?;
            let names = ifaces
                .list(Some(p == P::ConnectListInterfaces))
                .into_iter()
                .map(|i| i.name)
                .collect();
            ret(&NamesRet {
                names: truncate(names, a.maxnames),
            })
        }
        P::InterfaceLookupByName => {
            let a: NameArgs = args(payload)?;
            ret(&InterfaceRet {
                iface: iface_ref(&ifaces.lookup(&a.name)?),
            })
        }
        P::InterfaceLookupByMacString => {
            // `{ mac: string }`: the same encoding as a name.
            let a: NameArgs = args(payload)?;
            ret(&InterfaceRet {
                iface: iface_ref(&ifaces.lookup_by_mac(&a.name)?),
            })
        }
        P::InterfaceGetXmlDesc => {
            let a: InterfaceFlagsArgs = args(payload)?;
            check_flags(dom, a.flags, 0, "testInterfaceGetXMLDesc")?;
            ret(&StringRet {
                value: ifaces.lookup(&a.iface.name)?.xml,
            })
        }
        P::InterfaceDefineXml => {
            let a: XmlFlagsArgs = args(payload)?;
            check_flags(dom, a.flags, 1, "testInterfaceDefineXML")?;
            ret(&InterfaceRet {
                iface: iface_ref(&ifaces.define(&a.xml)?),
            })
        }
        P::InterfaceUndefine => {
            let a: InterfaceArgs = args(payload)?;
            ifaces.undefine(&a.iface.name)?;
            void()
        }
        P::InterfaceCreate => {
            let a: InterfaceFlagsArgs = args(payload)?;
            check_flags(dom, a.flags, 0, "testInterfaceCreate")?;
            ifaces.create(&a.iface.name)?;
            void()
        }
        P::InterfaceDestroy => {
            let a: InterfaceFlagsArgs = args(payload)?;
            check_flags(dom, a.flags, 0, "testInterfaceDestroy")?;
            ifaces.destroy(&a.iface.name)?;
            void()
        }
        P::InterfaceIsActive => {
            let a: InterfaceArgs = args(payload)?;
            ret(&IntRet {
                value: ifaces.lookup(&a.iface.name)?.active as i32,
            })
        }
        P::InterfaceChangeBegin | P::InterfaceChangeCommit | P::InterfaceChangeRollback => {
            let a: FlagsArgs = args(payload)?;
            let (func, op): (&str, fn(&vireo_actors::iface::Interfaces) -> VirResult<()>) = match p
            {
                P::InterfaceChangeBegin => ("testInterfaceChangeBegin", |i| i.change_begin()),
                P::InterfaceChangeCommit => ("testInterfaceChangeCommit", |i| i.change_commit()),
                _ => ("testInterfaceChangeRollback", |i| i.change_rollback()),
            };
            check_flags(dom, a.flags, 0, func)?;
            op(ifaces)?;
            void()
        }

        // ----- secrets -----
        P::ConnectListAllSecrets => {
            let a: ListAllArgs = args(payload)?;
            check_flags(
                ErrorDomain::Secret,
                a.flags,
                15,
                "secretConnectListAllSecrets",
            )?;
            let pick = |f: u32, yes: u32, no: u32, v: bool| {
                f & (yes | no) == 0 || f & (yes | no) == (yes | no) || (f & yes != 0) == v
            };
            let list: Vec<NonnullSecret> = secrets
                .list()
                .iter()
                .filter(|d| pick(a.flags, 1, 2, d.ephemeral) && pick(a.flags, 4, 8, d.private))
                .map(secret_ref)
                .collect();
            let count = list.len() as u32;
            ret(&ConnectListAllSecretsRet {
                secrets: if a.need_results != 0 {
                    list
                } else {
                    Vec::new()
                },
                ret: count,
            })
        }
        P::ConnectNumOfSecrets => ret(&IntRet {
            value: secrets.list().len() as i32,
        }),
        P::ConnectListSecrets => {
            let a: MaxNamesArgs = args(payload)?;
            let uuids = secrets.list().iter().map(|d| d.uuid.to_string()).collect();
            ret(&NamesRet {
                names: truncate(uuids, a.maxnames),
            })
        }
        P::SecretLookupByUuid => {
            let a: UuidArgs = args(payload)?;
            ret(&SecretRet {
                secret: secret_ref(&secrets.lookup(&a.uuid)?),
            })
        }
        P::SecretLookupByUsage => {
            let a: SecretLookupByUsageArgs = args(payload)?;
            ret(&SecretRet {
                secret: secret_ref(&secrets.lookup_by_usage(a.usage_type, &a.usage_id)?),
            })
        }
        P::SecretDefineXml => {
            let a: XmlFlagsArgs = args(payload)?;
            check_flags(ErrorDomain::Secret, a.flags, 1, "secretDefineXML")?;
            ret(&SecretRet {
                secret: secret_ref(&secrets.define(&a.xml)?),
            })
        }
        P::SecretGetXmlDesc => {
            let a: SecretFlagsArgs = args(payload)?;
            check_flags(ErrorDomain::Secret, a.flags, 0, "secretGetXMLDesc")?;
            ret(&StringRet {
                value: secrets.xml(&a.secret.uuid)?,
            })
        }
        P::SecretSetValue => {
            let a: SecretSetValueArgs = args(payload)?;
            check_flags(ErrorDomain::Secret, a.flags, 0, "secretSetValue")?;
            secrets.set_value(&a.secret.uuid, &a.value)?;
            void()
        }
        P::SecretGetValue => {
            let a: SecretFlagsArgs = args(payload)?;
            check_flags(ErrorDomain::Secret, a.flags, 0, "secretGetValue")?;
            ret(&SecretGetValueRet {
                value: secrets.get_value(&a.secret.uuid)?,
            })
        }
        P::SecretUndefine => {
            let a: SecretArgs = args(payload)?;
            secrets.undefine(&a.secret.uuid)?;
            void()
        }
        _ => Err(VirError::no_support(dom, &p.api_name())),
    }
}
