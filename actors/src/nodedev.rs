//! Node devices of a driver instance, as the test driver keeps them: the devices of the
//! instance's configuration (for `test:///default`: `computer`, `scsi_host1`,
//! `scsi_host2`, `scsi_host11`), lookups and XML, and the test driver's mock of vHBA
//! creation and destruction (with node-device lifecycle events).
//!
//! Node devices have no long-running operations and no persistent state, so they are
//! a small locked list per instance rather than an actor each.

use std::sync::{Arc, Mutex};

use vireo_messages::event::{EventKind, NodeDeviceEventKind, ObjectRef};
use vireo_messages::{ErrorCode, ErrorDomain, ObjectKind, VirError, VirResult};
use vireo_xml::Element;

use crate::driver::DriverCtx;

/// One node device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDevice {
    /// Name (`<name>`).
    pub name: String,
    /// Parent device name.
    pub parent: Option<String>,
    /// The definition as libvirt formats it.
    pub xml: String,
    /// Top-level capability types, in document order (`NODE_DEVICE_LIST_CAPS`).
    pub caps: Vec<String>,
    /// Whether it is an FC-capable SCSI host (`fc_host`).
    pub fc_host: bool,
    /// Whether it can create vports (`vports`).
    pub vports: bool,
}

/// `VIR_CONNECT_LIST_NODE_DEVICES_CAP_*` bits and the capability each selects.
pub const CAP_FLAGS: [(u32, &str); 22] = [
    (1, "system"),
    (1 << 1, "pci"),
    (1 << 2, "usb_device"),
    (1 << 3, "usb"),
    (1 << 4, "net"),
    (1 << 5, "scsi_host"),
    (1 << 6, "scsi_target"),
    (1 << 7, "scsi"),
    (1 << 8, "storage"),
    (1 << 9, "fc_host"),
    (1 << 10, "vports"),
    (1 << 11, "scsi_generic"),
    (1 << 12, "drm"),
    (1 << 13, "mdev_types"),
    (1 << 14, "mdev"),
    (1 << 15, "ccw"),
    (1 << 16, "css"),
    (1 << 17, "vdpa"),
    (1 << 18, "ap_card"),
    (1 << 19, "ap_queue"),
    (1 << 20, "ap_matrix"),
    (1 << 21, "vpd"),
];

/// `VIR_CONNECT_LIST_NODE_DEVICES_INACTIVE`.
pub const LIST_INACTIVE: u32 = 1 << 30;
/// `VIR_CONNECT_LIST_NODE_DEVICES_ACTIVE`.
pub const LIST_ACTIVE: u32 = 1 << 31;

impl NodeDevice {
    /// Builds a device from its XML.
    pub fn from_xml(xml: &str) -> VirResult<NodeDevice> {
        let root = Element::parse(xml)
            .map_err(|e| e.to_vir(ErrorDomain::Nodedev, "(node_device_definition)"))?;
        Self::from_element(&root)
    }

    fn from_element(root: &Element) -> VirResult<NodeDevice> {
        if root.name != "device" {
            return Err(VirError::xml(
                ErrorDomain::Nodedev,
                format!(
                    "unexpected root element <{}>, expecting <device>",
                    root.name
                ),
            ));
        }
        let name = root
            .child_text("name")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| VirError::xml(ErrorDomain::Nodedev, "missing device name"))?;
        let caps: Vec<String> = root
            .children_named("capability")
            .filter_map(|c| c.attr("type").map(str::to_string))
            .collect();
        let nested = |t: &str| {
            root.children_named("capability")
                .flat_map(|c| c.children_named("capability"))
                .any(|c| c.attr("type") == Some(t))
        };
        Ok(NodeDevice {
            parent: root.child_text("parent").map(|s| s.trim().to_string()),
            xml: root.to_xml(),
            fc_host: nested("fc_host"),
            vports: nested("vport_ops"),
            caps,
            name,
        })
    }

    /// Whether the device has capability `cap` (nested `fc_host` and `vports` count,
    /// as in libvirt's capability filter).
    pub fn has_cap(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c == cap)
            || (cap == "fc_host" && self.fc_host)
            || (cap == "vports" && self.vports)
    }

    /// The device's fibre-channel WWNN and WWPN, if it is an FC host.
    fn wwns(&self) -> Option<(String, String)> {
        let root = Element::parse(&self.xml).ok()?;
        root.children_named("capability")
            .flat_map(|c| c.children_named("capability"))
            .find(|c| c.attr("type") == Some("fc_host"))
            .and_then(|fc| Some((fc.child_text("wwnn")?, fc.child_text("wwpn")?)))
    }
}

/// The node devices of one driver instance.
pub struct NodeDevices {
    ctx: Arc<DriverCtx>,
    devs: Mutex<Vec<NodeDevice>>,
}

fn no_device(domain: ErrorDomain, name: &str) -> VirError {
    VirError::with(
        ErrorCode::NoNodeDevice,
        domain,
        format!("no node device with matching name '{name}'"),
    )
}

impl NodeDevices {
    /// The devices of the instance's configuration.
    pub(crate) fn new(ctx: Arc<DriverCtx>) -> NodeDevices {
        let devs = ctx
            .node
            .devices
            .iter()
            .filter_map(|d| NodeDevice::from_xml(&d.xml).ok())
            .collect();
        NodeDevices {
            ctx,
            devs: Mutex::new(devs),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<NodeDevice>> {
        self.devs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Devices with capability `cap` (all when `None`), sorted by name.
    pub fn list(&self, cap: Option<&str>) -> Vec<NodeDevice> {
        let mut v: Vec<NodeDevice> = self
            .lock()
            .iter()
            .filter(|d| cap.is_none_or(|c| d.has_cap(c)))
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Devices passing `VIR_CONNECT_LIST_NODE_DEVICES_*` flags (every device is
    /// active), sorted by name.
    pub fn list_all(&self, flags: u32) -> Vec<NodeDevice> {
        let cap_bits = flags & !(LIST_ACTIVE | LIST_INACTIVE);
        let state_ok = flags & (LIST_ACTIVE | LIST_INACTIVE) != LIST_INACTIVE;
        if !state_ok {
            return Vec::new();
        }
        self.list(None)
            .into_iter()
            .filter(|d| {
                cap_bits == 0
                    || CAP_FLAGS
                        .iter()
                        .any(|(bit, cap)| cap_bits & bit != 0 && d.has_cap(cap))
            })
            .collect()
    }

    /// By name.
    pub fn lookup(&self, name: &str) -> VirResult<NodeDevice> {
        self.lock()
            .iter()
            .find(|d| d.name == name)
            .cloned()
            .ok_or_else(|| no_device(self.ctx.err_domain(), name))
    }

    /// The test driver's vHBA creation: checks the request (an FC `scsi_host` whose
    /// parent can create vports), then adds `scsi_host12`, a copy of `scsi_host11`
    /// with the requested WWNN/WWPN, and raises a CREATED event.
    pub fn create_xml(&self, xml: &str) -> VirResult<NodeDevice> {
        let dom = self.ctx.err_domain();
        let req = Element::parse(xml)
            .map_err(|e| e.to_vir(ErrorDomain::Nodedev, "(node_device_definition)"))?;
        if req.name != "device" {
            return Err(VirError::xml(
                ErrorDomain::Nodedev,
                format!("unexpected root element <{}>, expecting <device>", req.name),
            ));
        }
        let fc = req
            .children_named("capability")
            .filter(|c| c.attr("type") == Some("scsi_host"))
            .flat_map(|c| c.children_named("capability"))
            .find(|c| c.attr("type") == Some("fc_host"))
            .ok_or_else(|| VirError::internal(dom, "Device is not a fibre channel HBA"))?;
        let random_wwn = || {
            let u = uuid::Uuid::new_v4().simple().to_string();
            format!("5001a4a{}", &u[..9])
        };
        let wwnn = fc.child_text("wwnn").unwrap_or_else(random_wwn);
        let wwpn = fc.child_text("wwpn").unwrap_or_else(random_wwn);
        let mut devs = self.lock();
        match req.child_text("parent").map(|s| s.trim().to_string()) {
            Some(p) => {
                let parent = devs.iter().find(|d| d.name == p).ok_or_else(|| {
                    VirError::internal(dom, format!("could not find parent device '{p}'"))
                })?;
                if !parent.vports {
                    return Err(VirError::invalid_arg(
                        dom,
                        format!("Parent device {p} is not capable of vport operations"),
                    ));
                }
            }
            None => {
                if !devs.iter().any(|d| d.vports) {
                    return Err(VirError::internal(
                        dom,
                        "Could not find any vport capable device",
                    ));
                }
            }
        }
        let template = devs
            .iter()
            .find(|d| d.name == "scsi_host11")
            .ok_or_else(|| VirError::internal(dom, "cannot find the 'scsi_host11' template"))?;
        let mut def = Element::parse(&template.xml)
            .map_err(|e| e.to_vir(ErrorDomain::Nodedev, "(node_device_definition)"))?;
        if let Some(n) = def.child_mut("name") {
            n.set_text("scsi_host12");
        }
        // libvirt's mock means to bump the host number and unique id too, but its loop
        // only ever reaches the fc_host branch: the copy keeps scsi_host11's numbers
        // (and its parent).
        for cap in def.children_named_mut("capability") {
            if cap.attr("type") != Some("scsi_host") {
                continue;
            }
            for sub in cap.children_named_mut("capability") {
                if sub.attr("type") == Some("fc_host") {
                    if let Some(e) = sub.child_mut("wwnn") {
                        e.set_text(wwnn.clone());
                    }
                    if let Some(e) = sub.child_mut("wwpn") {
                        e.set_text(wwpn.clone());
                    }
                }
            }
        }
        let dev = NodeDevice::from_element(&def)?;
        devs.retain(|d| d.name != dev.name);
        devs.push(dev.clone());
        drop(devs);
        self.publish(&dev.name, NodeDeviceEventKind::Created);
        Ok(dev)
    }

    /// The test driver's vHBA destruction: an FC host whose parent exists is removed
    /// and a DELETED event raised. As in libvirt 9.0, destroying a device that is not
    /// an FC host, or whose parent is gone, reports success and changes nothing.
    pub fn destroy(&self, name: &str) -> VirResult<()> {
        let dom = self.ctx.err_domain();
        let mut devs = self.lock();
        let dev = devs
            .iter()
            .find(|d| d.name == name)
            .cloned()
            .ok_or_else(|| no_device(dom, name))?;
        let parent = dev.parent.clone().unwrap_or_default();
        if dev.wwns().is_none() || !devs.iter().any(|d| d.name == parent) {
            return Ok(());
        }
        devs.retain(|d| d.name != name);
        drop(devs);
        self.publish(name, NodeDeviceEventKind::Deleted);
        Ok(())
    }

    fn publish(&self, name: &str, kind: NodeDeviceEventKind) {
        self.ctx.publish(
            ObjectRef::named(ObjectKind::NodeDevice, name, None),
            EventKind::NodeDeviceLifecycle(kind),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vireo_drivers::testdata::defaults::DEFAULT_NODE_DEVICES;

    #[test]
    fn default_devices_parse_with_their_caps() {
        let devs: Vec<NodeDevice> = DEFAULT_NODE_DEVICES
            .iter()
            .map(|(_, _, x)| NodeDevice::from_xml(x).unwrap())
            .collect();
        assert_eq!(devs[0].name, "computer");
        assert_eq!(devs[0].caps, ["system"]);
        assert_eq!(devs[0].parent, None);
        assert_eq!(devs[0].xml, DEFAULT_NODE_DEVICES[0].2);
        assert!(devs[1].has_cap("scsi_host") && devs[1].has_cap("fc_host"));
        assert!(devs[1].vports && !devs[3].vports);
        assert_eq!(devs[3].parent.as_deref(), Some("scsi_host1"));
        assert_eq!(
            devs[3].wwns(),
            Some(("2000000034563456".into(), "1000000034563456".into()))
        );
        assert_eq!(devs[0].wwns(), None);
        assert!(NodeDevice::from_xml("<dev/>").is_err());
    }
}
