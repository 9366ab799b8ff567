//! Typed views of storage pool and storage volume XML.
//!
//! [`PoolDef`] wraps `<pool>` (type, name, UUID, sizes, source, target) and
//! [`VolumeDef`] wraps `<volume>` (name, key, capacity and allocation, target path and
//! format, backing store). Sizes honour `unit` attributes with libvirt's rules (bytes
//! by default). Parsing applies libvirt's storage checks with its wording; unknown
//! content is kept.

use vireo_messages::{ErrorCode, ErrorDomain, Uuid, VirError, VirResult, parse_uuid};

use crate::common;
use crate::dom::Element;
use crate::error::doc_names;

const ERR: ErrorDomain = ErrorDomain::Storage;

/// Pool types libvirt knows.
pub const POOL_TYPES: &[&str] = &[
    "dir",
    "fs",
    "netfs",
    "logical",
    "disk",
    "iscsi",
    "iscsi-direct",
    "scsi",
    "mpath",
    "rbd",
    "sheepdog",
    "gluster",
    "zfs",
    "vstorage",
];

/// Volume types libvirt knows.
pub const VOLUME_TYPES: &[&str] = &["file", "block", "dir", "network", "netdir", "ploop"];

/// Reads a storage size element in bytes (unit default: bytes).
fn storage_size(el: Option<&Element>, what: &str) -> VirResult<Option<u64>> {
    let msg = format!("malformed {what} element");
    common::size_of(el, &format!("./{what}"), 1, u64::MAX, ERR, Some(&msg))
}

fn storage_uuid(root: &Element) -> VirResult<Option<Uuid>> {
    match root
        .child("uuid")
        .map(Element::text)
        .filter(|t| !t.is_empty())
    {
        None => Ok(None),
        Some(t) => parse_uuid(&t)
            .map(Some)
            .ok_or_else(|| VirError::xml(ERR, "malformed uuid element")),
    }
}

fn set_size(root: &mut Element, name: &str, bytes: u64, after: &[&str]) {
    let el = match root.child_mut(name) {
        Some(e) => e,
        None => root.insert_child_after_any(after, Element::new(name)),
    };
    common::set_size_bytes(el, bytes);
}

/// A storage pool definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDef {
    root: Element,
}

impl PoolDef {
    /// Parses and validates pool XML.
    pub fn parse(xml: &str) -> VirResult<PoolDef> {
        let root = common::parse_root(xml, "pool", ERR, doc_names::POOL)?;
        PoolDef::from_element(root)
    }

    /// Validates an already parsed `<pool>` element.
    pub fn from_element(root: Element) -> VirResult<PoolDef> {
        common::check_root(&root, "pool")?;
        let def = PoolDef { root };
        match def.root.attr("type") {
            None => {
                return Err(VirError::xml(ERR, "storage pool missing type attribute"));
            }
            Some(t) if !POOL_TYPES.contains(&t) => {
                return Err(VirError::internal(
                    ERR,
                    format!("unknown storage pool type {t}"),
                ));
            }
            Some(_) => {}
        }
        let name = def
            .name_opt()
            .ok_or_else(|| VirError::xml(ERR, "missing pool source name element"))?;
        if name.contains('/') {
            return Err(VirError::xml(
                ERR,
                format!("name {name} cannot contain '/'"),
            ));
        }
        storage_uuid(&def.root)?;
        def.capacity_bytes()?;
        def.allocation_bytes()?;
        def.available_bytes()?;
        Ok(def)
    }

    fn name_opt(&self) -> Option<String> {
        common::name_of(&self.root).or_else(|| {
            self.root
                .path_text(&["source", "name"])
                .filter(|s| !s.is_empty())
        })
    }

    /// The underlying element.
    pub fn element(&self) -> &Element {
        &self.root
    }

    /// The underlying element, mutably.
    pub fn element_mut(&mut self) -> &mut Element {
        &mut self.root
    }

    /// Gives up the view.
    pub fn into_element(self) -> Element {
        self.root
    }

    /// The XML as stored.
    pub fn to_xml(&self) -> String {
        self.root.to_xml()
    }

    /// Formats for `virStoragePoolGetXMLDesc`.
    pub fn format(&self) -> String {
        self.to_xml()
    }

    /// The pool type (`dir`, `logical`, `iscsi`, ...).
    pub fn pool_type(&self) -> &str {
        self.root.attr("type").unwrap_or("")
    }

    /// The pool name (`<name>`, or `<source><name>` for pools named by their source).
    pub fn name(&self) -> String {
        self.name_opt().unwrap_or_default()
    }

    /// Renames.
    pub fn set_name(&mut self, name: &str) {
        common::set_name(&mut self.root, name);
    }

    /// The UUID, if present.
    pub fn uuid(&self) -> Option<Uuid> {
        storage_uuid(&self.root).ok().flatten()
    }

    /// Sets `<uuid>` after `<name>`.
    pub fn set_uuid(&mut self, uuid: Uuid) {
        common::set_uuid(&mut self.root, uuid);
    }

    /// The UUID, generated (v4, after `<name>`) when missing or unreadable.
    pub fn ensure_uuid(&mut self) -> Uuid {
        match self.uuid() {
            Some(u) => u,
            None => {
                let u = Uuid::new_v4();
                self.set_uuid(u);
                u
            }
        }
    }

    /// `<capacity>` in bytes.
    pub fn capacity_bytes(&self) -> VirResult<Option<u64>> {
        storage_size(self.root.child("capacity"), "capacity")
    }

    /// `<allocation>` in bytes.
    pub fn allocation_bytes(&self) -> VirResult<Option<u64>> {
        storage_size(self.root.child("allocation"), "allocation")
    }

    /// `<available>` in bytes.
    pub fn available_bytes(&self) -> VirResult<Option<u64>> {
        storage_size(self.root.child("available"), "available")
    }

    /// Sets capacity, allocation and available (bytes), as pool refresh reports them.
    pub fn set_sizes(&mut self, capacity: u64, allocation: u64, available: u64) {
        set_size(&mut self.root, "capacity", capacity, &["uuid", "name"]);
        set_size(&mut self.root, "allocation", allocation, &["capacity"]);
        set_size(&mut self.root, "available", available, &["allocation"]);
    }

    /// The `<source>` element.
    pub fn source(&self) -> Option<&Element> {
        self.root.child("source")
    }

    /// `<source><host name>` values.
    pub fn source_hosts(&self) -> Vec<String> {
        self.source_attr_list("host", "name")
    }

    /// `<source><device path>` values.
    pub fn source_devices(&self) -> Vec<String> {
        self.source_attr_list("device", "path")
    }

    fn source_attr_list(&self, child: &str, attr: &str) -> Vec<String> {
        self.source()
            .map(|s| {
                s.children_named(child)
                    .filter_map(|e| e.attr(attr).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `<source><dir path>`.
    pub fn source_dir(&self) -> Option<String> {
        self.root
            .path_attr(&["source", "dir"], "path")
            .map(str::to_string)
    }

    /// `<source><format type>`.
    pub fn source_format(&self) -> Option<String> {
        self.root
            .path_attr(&["source", "format"], "type")
            .map(str::to_string)
    }

    /// `<source><name>`.
    pub fn source_name(&self) -> Option<String> {
        self.root.path_text(&["source", "name"])
    }

    /// `<target><path>`.
    pub fn target_path(&self) -> Option<String> {
        self.root
            .path_text(&["target", "path"])
            .map(|p| p.trim().to_string())
    }

    /// `<target><permissions>`, raw.
    pub fn target_permissions(&self) -> Option<&Element> {
        self.root.path(&["target", "permissions"])
    }
}

/// A storage volume definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDef {
    root: Element,
}

impl VolumeDef {
    /// Parses and validates volume XML.
    pub fn parse(xml: &str) -> VirResult<VolumeDef> {
        let root = common::parse_root(xml, "volume", ERR, doc_names::VOLUME)?;
        VolumeDef::from_element(root)
    }

    /// Validates an already parsed `<volume>` element.
    pub fn from_element(root: Element) -> VirResult<VolumeDef> {
        common::check_root(&root, "volume")?;
        if common::name_of(&root).is_none() {
            return Err(VirError::xml(ERR, "missing volume name element"));
        }
        if let Some(t) = root.attr("type")
            && !VOLUME_TYPES.contains(&t)
        {
            return Err(VirError::with(
                ErrorCode::ConfigUnsupported,
                ERR,
                format!("unknown volume type '{t}'"),
            ));
        }
        let def = VolumeDef { root };
        if def.capacity_opt()?.is_none() {
            return Err(VirError::xml(ERR, "missing capacity element"));
        }
        def.allocation_bytes()?;
        Ok(def)
    }

    fn capacity_opt(&self) -> VirResult<Option<u64>> {
        storage_size(self.root.child("capacity"), "capacity")
    }

    /// The underlying element.
    pub fn element(&self) -> &Element {
        &self.root
    }

    /// The underlying element, mutably.
    pub fn element_mut(&mut self) -> &mut Element {
        &mut self.root
    }

    /// Gives up the view.
    pub fn into_element(self) -> Element {
        self.root
    }

    /// The XML as stored.
    pub fn to_xml(&self) -> String {
        self.root.to_xml()
    }

    /// Formats for `virStorageVolGetXMLDesc`.
    pub fn format(&self) -> String {
        self.to_xml()
    }

    /// The volume name.
    pub fn name(&self) -> String {
        common::name_of(&self.root).unwrap_or_default()
    }

    /// The `type` attribute (`file` when absent).
    pub fn vol_type(&self) -> &str {
        self.root.attr("type").unwrap_or("file")
    }

    /// `<key>`.
    pub fn key(&self) -> Option<String> {
        self.root.child_text("key").filter(|k| !k.is_empty())
    }

    /// Sets `<key>` (after `<name>`).
    pub fn set_key(&mut self, key: &str) {
        match self.root.child_mut("key") {
            Some(k) => {
                k.set_text(key);
            }
            None => {
                self.root
                    .insert_child_after("name", Element::with_text("key", key));
            }
        }
    }

    /// `<capacity>` in bytes (validated present at parse).
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_opt().ok().flatten().unwrap_or(0)
    }

    /// Sets `<capacity unit='bytes'>`.
    pub fn set_capacity_bytes(&mut self, bytes: u64) {
        set_size(
            &mut self.root,
            "capacity",
            bytes,
            &["source", "key", "name"],
        );
    }

    /// `<allocation>` in bytes.
    pub fn allocation_bytes(&self) -> VirResult<Option<u64>> {
        storage_size(self.root.child("allocation"), "allocation")
    }

    /// Sets `<allocation unit='bytes'>`.
    pub fn set_allocation_bytes(&mut self, bytes: u64) {
        set_size(&mut self.root, "allocation", bytes, &["capacity"]);
    }

    /// `<target><path>`.
    pub fn target_path(&self) -> Option<String> {
        self.root
            .path_text(&["target", "path"])
            .map(|p| p.trim().to_string())
    }

    /// Sets `<target><path>`.
    pub fn set_target_path(&mut self, path: &str) {
        self.root.ensure_path(&["target", "path"]).set_text(path);
    }

    /// `<target><format type>`.
    pub fn target_format(&self) -> Option<String> {
        self.root
            .path_attr(&["target", "format"], "type")
            .map(str::to_string)
    }

    /// `<backingStore>`, raw.
    pub fn backing_store(&self) -> Option<&Element> {
        self.root.child("backingStore")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_basics() {
        let xml = "<pool type='logical'>\n  <name>vg</name>\n  <capacity unit='G'>2</capacity>\n  <allocation>100</allocation>\n  <source>\n    <device path='/dev/sda1'/>\n    <device path='/dev/sdb1'/>\n    <host name='h1'/>\n    <dir path='/d'/>\n    <format type='lvm2'/>\n    <name>vgname</name>\n  </source>\n  <target>\n    <path>/dev/vg</path>\n  </target>\n</pool>\n";
        let mut p = PoolDef::parse(xml).unwrap();
        assert_eq!(p.pool_type(), "logical");
        assert_eq!(p.name(), "vg");
        assert_eq!(p.capacity_bytes().unwrap(), Some(2 << 30));
        assert_eq!(p.allocation_bytes().unwrap(), Some(100));
        assert_eq!(p.available_bytes().unwrap(), None);
        assert_eq!(p.source_devices(), ["/dev/sda1", "/dev/sdb1"]);
        assert_eq!(p.source_hosts(), ["h1"]);
        assert_eq!(p.source_dir().as_deref(), Some("/d"));
        assert_eq!(p.source_format().as_deref(), Some("lvm2"));
        assert_eq!(p.source_name().as_deref(), Some("vgname"));
        assert_eq!(p.target_path().as_deref(), Some("/dev/vg"));
        assert_eq!(p.to_xml(), xml);
        let u = p.ensure_uuid();
        assert_eq!(p.uuid(), Some(u));
        p.set_sizes(10, 5, 5);
        assert_eq!(p.available_bytes().unwrap(), Some(5));
    }

    #[test]
    fn pool_errors() {
        let e = PoolDef::parse("<pool><name>a</name></pool>").unwrap_err();
        assert_eq!(
            (e.code, e.domain),
            (ErrorCode::XmlError, ErrorDomain::Storage)
        );
        let e = PoolDef::parse("<pool type='zork'><name>a</name></pool>").unwrap_err();
        assert_eq!(e.code, ErrorCode::InternalError);
        let e = PoolDef::parse("<pool type='dir'></pool>").unwrap_err();
        assert_eq!(e.message, "XML error: missing pool source name element");
        let e = PoolDef::parse("<pool type='dir'><name>a/b</name></pool>").unwrap_err();
        assert_eq!(e.message, "XML error: name a/b cannot contain '/'");
        let e = PoolDef::parse("<pool type='dir'><name>a</name><uuid>1</uuid></pool>").unwrap_err();
        assert_eq!(e.message, "XML error: malformed uuid element");
        let e = PoolDef::parse(
            "<pool type='dir'><name>a</name><capacity unit='zz'>1</capacity></pool>",
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArg);
        let p =
            PoolDef::parse("<pool type='zfs'><source><name>tank</name></source></pool>").unwrap();
        assert_eq!(p.name(), "tank");
    }

    #[test]
    fn volume_basics_and_errors() {
        let xml = "<volume type='file'>\n  <name>a.img</name>\n  <key>/p/a.img</key>\n  <capacity unit='GB'>1</capacity>\n  <allocation unit='MiB'>1</allocation>\n  <target>\n    <path>/p/a.img</path>\n    <format type='qcow2'/>\n  </target>\n  <backingStore>\n    <path>/p/base</path>\n  </backingStore>\n</volume>\n";
        let mut v = VolumeDef::parse(xml).unwrap();
        assert_eq!(v.name(), "a.img");
        assert_eq!(v.key().as_deref(), Some("/p/a.img"));
        assert_eq!(v.capacity_bytes(), 1_000_000_000);
        assert_eq!(v.allocation_bytes().unwrap(), Some(1 << 20));
        assert_eq!(v.target_path().as_deref(), Some("/p/a.img"));
        assert_eq!(v.target_format().as_deref(), Some("qcow2"));
        assert!(v.backing_store().is_some());
        assert_eq!(v.to_xml(), xml);
        v.set_capacity_bytes(5);
        v.set_key("k");
        assert_eq!((v.capacity_bytes(), v.key().as_deref()), (5, Some("k")));

        let e = VolumeDef::parse("<volume><capacity>1</capacity></volume>").unwrap_err();
        assert_eq!(e.message, "XML error: missing volume name element");
        let e = VolumeDef::parse("<volume><name>a</name></volume>").unwrap_err();
        assert_eq!(e.message, "XML error: missing capacity element");
        let e =
            VolumeDef::parse("<volume><name>a</name><capacity>x</capacity></volume>").unwrap_err();
        assert_eq!(e.message, "XML error: malformed capacity element");
        let e =
            VolumeDef::parse("<volume type='bogus'><name>a</name><capacity>1</capacity></volume>")
                .unwrap_err();
        assert_eq!(e.code, ErrorCode::ConfigUnsupported);
        let e =
            VolumeDef::parse("<volume><name>a</name><capacity unit='EiB'>16</capacity></volume>")
                .unwrap_err();
        assert_eq!(e.code, ErrorCode::Overflow);
    }
}
