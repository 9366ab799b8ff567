//! Typed view of domain (virtual machine) XML.
//!
//! [`DomainDef`] owns the `<domain>` element and reads or edits it in place: accessors
//! return what libvirt would use (defaults included), setters touch only the element
//! they concern, and everything no accessor knows about survives unchanged. Parsing
//! applies the checks libvirt's domain parser applies to the basics (type, name, uuid,
//! memory, vcpus, os type) and reports failures with libvirt's codes and wording;
//! [`DomainDef::normalize`] performs the basic rewrites libvirt does on define.

use vireo_messages::{ErrorDomain, Uuid, VirError, VirResult};

use crate::common;
use crate::dom::Element;
use crate::error::{doc_names, no_name};
use crate::units::{parse_scaled, parse_u64};

const ERR: ErrorDomain = ErrorDomain::Domain;

/// libvirt caps memory sizes (in bytes) at `LLONG_MAX` on 64-bit hosts.
const MEMORY_LIMIT_BYTES: u64 = i64::MAX as u64;

/// Elements that precede `<memory>` in libvirt's order, last first.
const BEFORE_MEMORY: &[&str] = &[
    "maxMemory",
    "metadata",
    "description",
    "title",
    "genid",
    "uuid",
    "name",
];

/// What the hypervisor does when the guest powers off, reboots or crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifecycleAction {
    /// Terminate the domain and release its resources.
    Destroy,
    /// Terminate and start again with the same configuration.
    Restart,
    /// Keep the resources for analysis.
    Preserve,
    /// Restart under a new name.
    RenameRestart,
    /// Dump core, then destroy.
    CoredumpDestroy,
    /// Dump core, then restart.
    CoredumpRestart,
}

impl LifecycleAction {
    /// Parses libvirt's spelling (`destroy`, `rename-restart`, ...).
    pub fn parse(s: &str) -> Option<LifecycleAction> {
        Some(match s {
            "destroy" => LifecycleAction::Destroy,
            "restart" => LifecycleAction::Restart,
            "preserve" => LifecycleAction::Preserve,
            "rename-restart" => LifecycleAction::RenameRestart,
            "coredump-destroy" => LifecycleAction::CoredumpDestroy,
            "coredump-restart" => LifecycleAction::CoredumpRestart,
            _ => return None,
        })
    }

    /// libvirt's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleAction::Destroy => "destroy",
            LifecycleAction::Restart => "restart",
            LifecycleAction::Preserve => "preserve",
            LifecycleAction::RenameRestart => "rename-restart",
            LifecycleAction::CoredumpDestroy => "coredump-destroy",
            LifecycleAction::CoredumpRestart => "coredump-restart",
        }
    }
}

/// Options for [`DomainDef::format`], mirroring `virDomainGetXMLDesc` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FormatOptions {
    /// The running domain's id, written as `id='N'` after `type` (ignored when
    /// `inactive`).
    pub id: Option<u32>,
    /// Format the persistent (inactive) definition: no id.
    pub inactive: bool,
    /// Include secrets (graphics `passwd`); when false they are stripped.
    pub secure: bool,
}

/// A `<disk>` device, summarised.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskView {
    /// `device` attribute (`disk` when absent).
    pub device: String,
    /// `type` attribute (`file`, `block`, `network`, `volume`, `dir`, ...).
    pub disk_type: Option<String>,
    /// `<driver name>`.
    pub driver_name: Option<String>,
    /// `<driver type>` (image format).
    pub driver_type: Option<String>,
    /// `<source file>`.
    pub source_file: Option<String>,
    /// `<source dev>`.
    pub source_dev: Option<String>,
    /// `<source dir>`.
    pub source_dir: Option<String>,
    /// `<source protocol>` for network disks.
    pub source_protocol: Option<String>,
    /// `<source name>` for network disks.
    pub source_name: Option<String>,
    /// `<source pool>` for volume disks.
    pub source_pool: Option<String>,
    /// `<source volume>` for volume disks.
    pub source_volume: Option<String>,
    /// `<target dev>`.
    pub target_dev: Option<String>,
    /// `<target bus>`.
    pub target_bus: Option<String>,
    /// `<readonly/>` present.
    pub readonly: bool,
    /// `<shareable/>` present.
    pub shareable: bool,
}

impl DiskView {
    /// The host-side path or name: file, dev, dir, network name or `pool/volume`.
    pub fn source_path(&self) -> Option<String> {
        self.source_file
            .clone()
            .or_else(|| self.source_dev.clone())
            .or_else(|| self.source_dir.clone())
            .or_else(|| self.source_name.clone())
            .or_else(|| match (&self.source_pool, &self.source_volume) {
                (Some(p), Some(v)) => Some(format!("{p}/{v}")),
                _ => None,
            })
    }

    fn from_element(e: &Element) -> DiskView {
        let attr = |path: &[&str], name: &str| e.path_attr(path, name).map(str::to_string);
        DiskView {
            device: e.attr("device").unwrap_or("disk").to_string(),
            disk_type: e.attr("type").map(str::to_string),
            driver_name: attr(&["driver"], "name"),
            driver_type: attr(&["driver"], "type"),
            source_file: attr(&["source"], "file"),
            source_dev: attr(&["source"], "dev"),
            source_dir: attr(&["source"], "dir"),
            source_protocol: attr(&["source"], "protocol"),
            source_name: attr(&["source"], "name"),
            source_pool: attr(&["source"], "pool"),
            source_volume: attr(&["source"], "volume"),
            target_dev: attr(&["target"], "dev"),
            target_bus: attr(&["target"], "bus"),
            readonly: e.child("readonly").is_some(),
            shareable: e.child("shareable").is_some(),
        }
    }
}

/// An `<interface>` device, summarised.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InterfaceView {
    /// `type` attribute (`network`, `bridge`, `user`, `direct`, ...).
    pub iface_type: Option<String>,
    /// `<mac address>`.
    pub mac: Option<String>,
    /// `<source network>`.
    pub source_network: Option<String>,
    /// `<source bridge>`.
    pub source_bridge: Option<String>,
    /// `<source dev>`.
    pub source_dev: Option<String>,
    /// `<model type>`.
    pub model: Option<String>,
    /// `<target dev>`.
    pub target_dev: Option<String>,
}

impl InterfaceView {
    fn from_element(e: &Element) -> InterfaceView {
        let attr = |path: &[&str], name: &str| e.path_attr(path, name).map(str::to_string);
        InterfaceView {
            iface_type: e.attr("type").map(str::to_string),
            mac: attr(&["mac"], "address"),
            source_network: attr(&["source"], "network"),
            source_bridge: attr(&["source"], "bridge"),
            source_dev: attr(&["source"], "dev"),
            model: attr(&["model"], "type"),
            target_dev: attr(&["target"], "dev"),
        }
    }
}

/// A `<serial>` or `<console>` (or other character device), summarised.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CharDevView {
    /// `type` attribute (`pty`, `file`, `unix`, `tcp`, ...).
    pub char_type: Option<String>,
    /// `<source path>`.
    pub source_path: Option<String>,
    /// `<source mode>` (`bind`/`connect`).
    pub source_mode: Option<String>,
    /// `<source host>` for network character devices.
    pub source_host: Option<String>,
    /// `<source service>` (port) for network character devices.
    pub source_service: Option<String>,
    /// `<target port>`.
    pub target_port: Option<u32>,
    /// `<target type>` (`serial`, `virtio`, ...).
    pub target_type: Option<String>,
}

impl CharDevView {
    fn from_element(e: &Element) -> CharDevView {
        let attr = |path: &[&str], name: &str| e.path_attr(path, name).map(str::to_string);
        CharDevView {
            char_type: e.attr("type").map(str::to_string),
            source_path: attr(&["source"], "path"),
            source_mode: attr(&["source"], "mode"),
            source_host: attr(&["source"], "host"),
            source_service: attr(&["source"], "service"),
            target_port: e
                .path_attr(&["target"], "port")
                .and_then(|p| p.trim().parse().ok()),
            target_type: attr(&["target"], "type"),
        }
    }
}

/// A `<graphics>` device, summarised.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GraphicsView {
    /// `type` attribute (`vnc`, `spice`, `sdl`, ...).
    pub graphics_type: Option<String>,
    /// `port` attribute (-1 means "allocate").
    pub port: Option<i32>,
    /// `autoport` attribute.
    pub autoport: Option<bool>,
    /// `listen` attribute, else the first `<listen address>`.
    pub listen: Option<String>,
    /// Whether a `passwd` attribute is present.
    pub has_passwd: bool,
}

impl GraphicsView {
    fn from_element(e: &Element) -> GraphicsView {
        GraphicsView {
            graphics_type: e.attr("type").map(str::to_string),
            port: e.attr("port").and_then(|p| p.trim().parse().ok()),
            autoport: e.attr("autoport").and_then(common::parse_bool),
            listen: e
                .attr("listen")
                .or_else(|| e.children_named("listen").find_map(|l| l.attr("address")))
                .map(str::to_string),
            has_passwd: e.has_attr("passwd"),
        }
    }
}

/// A domain definition: the `<domain>` element plus typed access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainDef {
    root: Element,
}

impl DomainDef {
    /// Parses and validates domain XML.
    pub fn parse(xml: &str) -> VirResult<DomainDef> {
        let root = common::parse_root(xml, "domain", ERR, doc_names::DOMAIN)?;
        DomainDef::from_element(root)
    }

    /// Validates an already parsed `<domain>` element.
    pub fn from_element(root: Element) -> VirResult<DomainDef> {
        common::check_root(&root, "domain")?;
        let def = DomainDef { root };
        def.validate()?;
        Ok(def)
    }

    /// Re-runs the parse-time checks (useful after edits).
    pub fn validate(&self) -> VirResult<()> {
        let root = &self.root;
        if root.attr("type").is_none() {
            return Err(VirError::xml(
                ERR,
                "Missing required attribute 'type' in element 'domain'",
            ));
        }
        let name = common::name_of(root).ok_or_else(|| no_name(ERR))?;
        // Drivers without VIR_DOMAIN_DEF_FEATURE_NAME_SLASH (all but QEMU) refuse '/'.
        if name.contains('/') {
            return Err(VirError::xml(
                ERR,
                format!("name {name} cannot contain '/'"),
            ));
        }
        common::uuid_of(root, ERR)?;
        let memory = memory_bytes(root.child("memory"), "./memory[1]")?;
        memory_bytes(root.child("currentMemory"), "./currentMemory[1]")?;
        memory_bytes(root.child("maxMemory"), "./maxMemory[1]")?;
        if memory.unwrap_or(0) == 0 && self.numa_memory_kib()? == 0 {
            return Err(VirError::xml(
                ERR,
                "Memory size must be specified via <memory> or in the <numa> configuration",
            ));
        }
        if let Some(v) = root.child("vcpu") {
            if parse_u32(&v.text()).is_none() {
                return Err(VirError::xml(ERR, "maximum vcpus count must be an integer"));
            }
            if let Some(c) = v.attr("current")
                && parse_u32(c).is_none()
            {
                return Err(VirError::xml(ERR, "current vcpus count must be an integer"));
            }
        }
        if self.os_type().is_none() {
            return Err(VirError::xml(ERR, "an os <type> must be specified"));
        }
        Ok(())
    }

    /// Sum of the NUMA cells' memory, in KiB.
    fn numa_memory_kib(&self) -> VirResult<u64> {
        let Some(numa) = self.root.path(&["cpu", "numa"]) else {
            return Ok(0);
        };
        let mut total: u64 = 0;
        for cell in numa.children_named("cell") {
            if let Some(m) = cell.attr("memory") {
                let bytes = parse_scaled(m, cell.attr("unit"), 1024, MEMORY_LIMIT_BYTES)
                    .map_err(|e| common::scale_error(e, "./cpu/numa/cell/@memory", ERR))?;
                total = total.saturating_add(bytes.div_ceil(1024));
            }
        }
        Ok(total)
    }

    /// The underlying element.
    pub fn element(&self) -> &Element {
        &self.root
    }

    /// The underlying element, for edits no setter covers.
    pub fn element_mut(&mut self) -> &mut Element {
        &mut self.root
    }

    /// Gives up the view, returning the element.
    pub fn into_element(self) -> Element {
        self.root
    }

    /// The XML as stored (libvirt formatting, all content kept).
    pub fn to_xml(&self) -> String {
        self.root.to_xml()
    }

    /// Formats for `virDomainGetXMLDesc`: sets or drops the live `id`, strips graphics
    /// passwords unless `secure`.
    pub fn format(&self, opts: &FormatOptions) -> String {
        let id_wanted = !opts.inactive && opts.id.is_some();
        let secrets_to_strip = !opts.secure
            && self.root.child("devices").is_some_and(|d| {
                d.children_named("graphics")
                    .any(|g| g.attr("passwd").is_some())
            });
        if !id_wanted && !secrets_to_strip && self.root.attr("id").is_none() {
            // Nothing to change: no copy of the tree.
            return self.root.to_xml();
        }
        let mut root = self.root.clone();
        root.remove_attr("id");
        if let (false, Some(id)) = (opts.inactive, opts.id) {
            root.set_attr_after("type", "id", id.to_string());
        }
        if !opts.secure
            && let Some(devices) = root.child_mut("devices")
        {
            for g in devices.children_named_mut("graphics") {
                g.remove_attr("passwd");
            }
        }
        root.to_xml()
    }

    // ----- identity -----

    /// The hypervisor type (`kvm`, `qemu`, `lxc`, `test`, ...).
    pub fn domain_type(&self) -> &str {
        self.root.attr("type").unwrap_or("")
    }

    /// The `id` attribute found in live XML, if any.
    pub fn id(&self) -> Option<u32> {
        self.root.attr("id").and_then(parse_u32)
    }

    /// The domain name.
    pub fn name(&self) -> String {
        common::name_of(&self.root).unwrap_or_default()
    }

    /// Renames (edits `<name>` only).
    pub fn set_name(&mut self, name: &str) {
        common::set_name(&mut self.root, name);
    }

    /// The UUID, if present (validated at parse).
    pub fn uuid(&self) -> Option<Uuid> {
        common::uuid_of(&self.root, ERR).ok().flatten()
    }

    /// Sets `<uuid>`, inserting it after `<name>`.
    pub fn set_uuid(&mut self, uuid: Uuid) {
        common::set_uuid(&mut self.root, uuid);
    }

    /// The UUID, generating a v4 one right after `<name>` when missing.
    pub fn ensure_uuid(&mut self) -> Uuid {
        match common::ensure_uuid(&mut self.root, ERR) {
            Ok(u) => u,
            Err(_) => {
                // Only reachable after an edit broke <uuid>; replace it.
                let u = Uuid::new_v4();
                self.set_uuid(u);
                u
            }
        }
    }

    /// `<title>` text.
    pub fn title(&self) -> Option<String> {
        self.root.child_text("title")
    }

    /// Sets (or with `None` removes) `<title>`.
    pub fn set_title(&mut self, title: Option<&str>) {
        self.set_optional_text("title", title, &["genid", "uuid", "name"]);
    }

    /// `<description>` text.
    pub fn description(&self) -> Option<String> {
        self.root.child_text("description")
    }

    /// Sets (or with `None` removes) `<description>`.
    pub fn set_description(&mut self, description: Option<&str>) {
        self.set_optional_text(
            "description",
            description,
            &["title", "genid", "uuid", "name"],
        );
    }

    fn set_optional_text(&mut self, name: &str, value: Option<&str>, after: &[&str]) {
        match value {
            None => {
                self.root.remove_children(name);
            }
            Some(v) => match self.root.child_mut(name) {
                Some(e) => {
                    e.set_text(v);
                }
                None => {
                    self.root
                        .insert_child_after_any(after, Element::with_text(name, v));
                }
            },
        }
    }

    /// The `<metadata>` element (application-owned, kept verbatim).
    pub fn metadata(&self) -> Option<&Element> {
        self.root.child("metadata")
    }

    /// The `<metadata>` element, created after `<description>`/`<title>`/... if absent.
    pub fn metadata_mut(&mut self) -> &mut Element {
        if self.root.child("metadata").is_none() {
            return self.root.insert_child_after_any(
                &["description", "title", "genid", "uuid", "name"],
                Element::new("metadata"),
            );
        }
        self.root.ensure_child("metadata")
    }

    /// Whether an element exists at `path` below `<domain>`.
    pub fn has_element(&self, path: &[&str]) -> bool {
        self.root.has_path(path)
    }

    // ----- memory and cpus -----

    /// `<memory>` in KiB (rounded up), 0 when only NUMA cells give the size.
    pub fn memory_kib(&self) -> u64 {
        memory_kib_of(self.root.child("memory"))
    }

    /// Sets `<memory unit='KiB'>`.
    pub fn set_memory_kib(&mut self, kib: u64) {
        self.set_memory_element("memory", kib, BEFORE_MEMORY);
    }

    /// `<currentMemory>` in KiB; the full memory when absent, zero or larger (as
    /// libvirt corrects it).
    pub fn current_memory_kib(&self) -> u64 {
        let total = self.memory_kib();
        match self.root.child("currentMemory") {
            Some(c) => {
                let cur = memory_kib_of(Some(c));
                if cur == 0 || cur > total { total } else { cur }
            }
            None => total,
        }
    }

    /// Sets `<currentMemory unit='KiB'>` (the balloon target).
    pub fn set_current_memory_kib(&mut self, kib: u64) {
        let mut after = vec!["memory"];
        after.extend_from_slice(BEFORE_MEMORY);
        self.set_memory_element("currentMemory", kib, &after);
    }

    /// `<maxMemory>` in KiB (memory hotplug ceiling).
    pub fn max_memory_kib(&self) -> Option<u64> {
        self.root.child("maxMemory").map(|m| memory_kib_of(Some(m)))
    }

    /// `<maxMemory slots>`.
    pub fn max_memory_slots(&self) -> Option<u32> {
        self.root
            .path_attr(&["maxMemory"], "slots")
            .and_then(parse_u32)
    }

    fn set_memory_element(&mut self, name: &str, kib: u64, after: &[&str]) {
        let el = match self.root.child_mut(name) {
            Some(e) => e,
            None => self.root.insert_child_after_any(after, Element::new(name)),
        };
        el.set_attr("unit", "KiB");
        el.set_text(kib.to_string());
    }

    /// The maximum vcpu count (`<vcpu>` text, 1 when absent).
    pub fn vcpus(&self) -> u32 {
        self.root
            .child("vcpu")
            .and_then(|v| parse_u32(&v.text()))
            .unwrap_or(1)
    }

    /// The vcpus online at boot (`current` attribute, else the maximum).
    pub fn current_vcpus(&self) -> u32 {
        self.root
            .path_attr(&["vcpu"], "current")
            .and_then(parse_u32)
            .unwrap_or_else(|| self.vcpus())
    }

    /// Sets the maximum vcpus and (with `Some`) the `current` attribute; `None`
    /// removes `current`.
    pub fn set_vcpus(&mut self, max: u32, current: Option<u32>) {
        let v = match self.root.child_mut("vcpu") {
            Some(v) => v,
            None => {
                let mut after = vec!["currentMemory", "memory"];
                after.extend_from_slice(BEFORE_MEMORY);
                self.root
                    .insert_child_after_any(&after, Element::new("vcpu"))
            }
        };
        v.set_text(max.to_string());
        match current {
            Some(c) => {
                v.set_attr("current", c.to_string());
            }
            None => {
                v.remove_attr("current");
            }
        }
    }

    // ----- os -----

    /// `<os><type>` text (`hvm`, `exe`, `xen`, ...).
    pub fn os_type(&self) -> Option<String> {
        self.root
            .path_text(&["os", "type"])
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    }

    /// `<os><type arch>`.
    pub fn os_arch(&self) -> Option<String> {
        self.root
            .path_attr(&["os", "type"], "arch")
            .map(str::to_string)
    }

    /// `<os><type machine>`.
    pub fn machine(&self) -> Option<String> {
        self.root
            .path_attr(&["os", "type"], "machine")
            .map(str::to_string)
    }

    /// `<os><boot dev>` values in order.
    pub fn boot_devs(&self) -> Vec<String> {
        self.root
            .child("os")
            .map(|os| {
                os.children_named("boot")
                    .filter_map(|b| b.attr("dev").map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `<os><kernel>`.
    pub fn kernel(&self) -> Option<String> {
        self.root.path_text(&["os", "kernel"])
    }

    /// `<os><initrd>`.
    pub fn initrd(&self) -> Option<String> {
        self.root.path_text(&["os", "initrd"])
    }

    /// `<os><cmdline>`.
    pub fn cmdline(&self) -> Option<String> {
        self.root.path_text(&["os", "cmdline"])
    }

    /// Names of the `<features>` children (`acpi`, `apic`, `pae`, `hyperv`, ...).
    pub fn features(&self) -> Vec<String> {
        self.root
            .child("features")
            .map(|f| f.elements().map(|e| e.name.clone()).collect())
            .unwrap_or_default()
    }

    // ----- lifecycle -----

    fn lifecycle(&self, name: &str, default: LifecycleAction) -> LifecycleAction {
        self.root
            .child(name)
            .and_then(|e| LifecycleAction::parse(e.text().trim()))
            .unwrap_or(default)
    }

    fn set_lifecycle(&mut self, name: &str, action: LifecycleAction, before: &[&str]) {
        match self.root.child_mut(name) {
            Some(e) => {
                e.set_text(action.as_str());
            }
            None => {
                self.root
                    .insert_child_before_any(before, Element::with_text(name, action.as_str()));
            }
        }
    }

    /// `<on_poweroff>` (default destroy).
    pub fn on_poweroff(&self) -> LifecycleAction {
        self.lifecycle("on_poweroff", LifecycleAction::Destroy)
    }

    /// `<on_reboot>` (default restart).
    pub fn on_reboot(&self) -> LifecycleAction {
        self.lifecycle("on_reboot", LifecycleAction::Restart)
    }

    /// `<on_crash>` (default destroy).
    pub fn on_crash(&self) -> LifecycleAction {
        self.lifecycle("on_crash", LifecycleAction::Destroy)
    }

    /// Sets `<on_poweroff>`.
    pub fn set_on_poweroff(&mut self, action: LifecycleAction) {
        self.set_lifecycle(
            "on_poweroff",
            action,
            &[
                "on_reboot",
                "on_crash",
                "on_lockfailure",
                "pm",
                "perf",
                "idmap",
                "devices",
            ],
        );
    }

    /// Sets `<on_reboot>`.
    pub fn set_on_reboot(&mut self, action: LifecycleAction) {
        self.set_lifecycle(
            "on_reboot",
            action,
            &[
                "on_crash",
                "on_lockfailure",
                "pm",
                "perf",
                "idmap",
                "devices",
            ],
        );
    }

    /// Sets `<on_crash>`.
    pub fn set_on_crash(&mut self, action: LifecycleAction) {
        self.set_lifecycle(
            "on_crash",
            action,
            &["on_lockfailure", "pm", "perf", "idmap", "devices"],
        );
    }

    // ----- devices -----

    /// The `<devices>` element.
    pub fn devices(&self) -> Option<&Element> {
        self.root.child("devices")
    }

    fn device_list<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Element> {
        self.devices()
            .into_iter()
            .flat_map(move |d| d.children_named(kind))
    }

    /// The `<disk>` devices.
    pub fn disks(&self) -> Vec<DiskView> {
        self.device_list("disk")
            .map(DiskView::from_element)
            .collect()
    }

    /// The `<interface>` devices.
    pub fn interfaces(&self) -> Vec<InterfaceView> {
        self.device_list("interface")
            .map(InterfaceView::from_element)
            .collect()
    }

    /// The `<serial>` devices.
    pub fn serials(&self) -> Vec<CharDevView> {
        self.device_list("serial")
            .map(CharDevView::from_element)
            .collect()
    }

    /// The `<console>` devices.
    pub fn consoles(&self) -> Vec<CharDevView> {
        self.device_list("console")
            .map(CharDevView::from_element)
            .collect()
    }

    /// The `<graphics>` devices.
    pub fn graphics(&self) -> Vec<GraphicsView> {
        self.device_list("graphics")
            .map(GraphicsView::from_element)
            .collect()
    }

    // ----- normalisation -----

    /// What libvirt does to the basics on define: memory sizes rewritten in KiB with
    /// `unit='KiB'`, `<currentMemory>` added (equal to memory) when absent and clamped
    /// to memory, `<vcpu placement='static'>` made explicit. Lifecycle actions stay as
    /// given.
    pub fn normalize(&mut self) -> VirResult<()> {
        for (name, xpath) in [
            ("memory", "./memory[1]"),
            ("maxMemory", "./maxMemory[1]"),
            ("currentMemory", "./currentMemory[1]"),
        ] {
            if let Some(bytes) = memory_bytes(self.root.child(name), xpath)?
                && let Some(e) = self.root.child_mut(name)
            {
                e.set_attr("unit", "KiB");
                e.set_text(bytes.div_ceil(1024).to_string());
            }
        }
        if self.root.child("memory").is_some() {
            let cur = self.current_memory_kib();
            self.set_current_memory_kib(cur);
        }
        match self.root.child_mut("vcpu") {
            Some(v) => {
                if !v.has_attr("placement") {
                    v.attrs.insert(0, ("placement".into(), "static".into()));
                }
            }
            None => {
                self.set_vcpus(1, None);
                if let Some(v) = self.root.child_mut("vcpu") {
                    v.attrs.insert(0, ("placement".into(), "static".into()));
                }
            }
        }
        Ok(())
    }
}

fn parse_u32(s: &str) -> Option<u32> {
    parse_u64(s.trim_end_matches([' ', '\t', '\n', '\r'])).and_then(|v| u32::try_from(v).ok())
}

/// A memory element's size in bytes (`None` when absent or empty).
fn memory_bytes(el: Option<&Element>, xpath: &str) -> VirResult<Option<u64>> {
    common::size_of(el, xpath, 1024, MEMORY_LIMIT_BYTES, ERR, None)
}

fn memory_kib_of(el: Option<&Element>) -> u64 {
    memory_bytes(el, "")
        .ok()
        .flatten()
        .map(|b| b.div_ceil(1024))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vireo_messages::ErrorCode;

    const MIN: &str = "<domain type='kvm'>\n  <name>vm1</name>\n  <memory unit='MiB'>512</memory>\n  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n    <boot dev='hd'/>\n    <boot dev='cdrom'/>\n  </os>\n</domain>\n";

    #[test]
    fn basics() {
        let d = DomainDef::parse(MIN).unwrap();
        assert_eq!(d.domain_type(), "kvm");
        assert_eq!(d.name(), "vm1");
        assert_eq!(d.uuid(), None);
        assert_eq!(d.memory_kib(), 512 * 1024);
        assert_eq!(d.current_memory_kib(), 512 * 1024);
        assert_eq!(d.vcpus(), 1);
        assert_eq!(d.os_type().as_deref(), Some("hvm"));
        assert_eq!(d.os_arch().as_deref(), Some("x86_64"));
        assert_eq!(d.machine().as_deref(), Some("pc"));
        assert_eq!(d.boot_devs(), ["hd", "cdrom"]);
        assert_eq!(d.on_poweroff(), LifecycleAction::Destroy);
        assert_eq!(d.on_reboot(), LifecycleAction::Restart);
        assert_eq!(d.on_crash(), LifecycleAction::Destroy);
        assert_eq!(d.to_xml(), MIN);
    }

    #[test]
    fn ensure_uuid_goes_after_name() {
        let mut d = DomainDef::parse(MIN).unwrap();
        let u = d.ensure_uuid();
        assert_eq!(d.uuid(), Some(u));
        assert_eq!(d.ensure_uuid(), u);
        let names: Vec<_> = d.element().elements().map(|e| e.name.clone()).collect();
        assert_eq!(names[..2], ["name", "uuid"]);
        assert_eq!(u.get_version_num(), 4);
    }

    #[test]
    fn normalize_memory_and_vcpu() {
        let mut d = DomainDef::parse(MIN).unwrap();
        d.normalize().unwrap();
        let xml = d.to_xml();
        assert!(xml.contains("<memory unit='KiB'>524288</memory>\n  <currentMemory unit='KiB'>524288</currentMemory>\n  <vcpu placement='static'>1</vcpu>"), "{xml}");
        let mut d = DomainDef::parse(&MIN.replace("<memory unit='MiB'>512</memory>", "<memory unit='KB'>1025</memory><currentMemory>9999999</currentMemory><vcpu cpuset='1'>2</vcpu>")).unwrap();
        d.normalize().unwrap();
        assert_eq!(d.memory_kib(), 1001);
        assert_eq!(d.current_memory_kib(), 1001);
        let v = d.element().child("vcpu").unwrap();
        assert_eq!(v.attrs[0], ("placement".into(), "static".into()));
        assert_eq!(v.attr("cpuset"), Some("1"));
    }

    #[test]
    fn setters_edit_in_place() {
        let mut d = DomainDef::parse(MIN).unwrap();
        d.set_name("vm2");
        d.set_title(Some("T"));
        d.set_description(Some("D"));
        d.set_memory_kib(1024);
        d.set_current_memory_kib(512);
        d.set_vcpus(4, Some(2));
        d.set_on_crash(LifecycleAction::CoredumpRestart);
        d.set_on_poweroff(LifecycleAction::Preserve);
        assert_eq!(d.on_crash(), LifecycleAction::CoredumpRestart);
        assert_eq!(d.on_poweroff(), LifecycleAction::Preserve);
        assert_eq!((d.vcpus(), d.current_vcpus()), (4, 2));
        assert_eq!((d.memory_kib(), d.current_memory_kib()), (1024, 512));
        let order: Vec<_> = d.element().elements().map(|e| e.name.clone()).collect();
        assert_eq!(
            order,
            [
                "name",
                "title",
                "description",
                "memory",
                "currentMemory",
                "vcpu",
                "os",
                "on_poweroff",
                "on_crash"
            ]
        );
        let again = DomainDef::parse(&d.to_xml()).unwrap();
        assert_eq!(again, d);
        d.set_title(None);
        assert_eq!(d.title(), None);
    }

    #[test]
    fn format_options() {
        let xml = MIN.replace(
            "</os>",
            "</os>\n  <devices>\n    <graphics type='vnc' port='-1' autoport='yes' passwd='s3cret' listen='0.0.0.0'/>\n  </devices>",
        );
        let d = DomainDef::parse(&xml).unwrap();
        let g = &d.graphics()[0];
        assert_eq!(g.port, Some(-1));
        assert_eq!(g.autoport, Some(true));
        assert!(g.has_passwd);
        let live = d.format(&FormatOptions {
            id: Some(7),
            inactive: false,
            secure: false,
        });
        assert!(live.starts_with("<domain type='kvm' id='7'>"));
        assert!(!live.contains("passwd"));
        let secure = d.format(&FormatOptions {
            id: Some(7),
            inactive: true,
            secure: true,
        });
        assert!(secure.starts_with("<domain type='kvm'>"));
        assert!(secure.contains("passwd='s3cret'"));
    }

    #[test]
    fn validation_errors() {
        let e = DomainDef::parse(&MIN.replace("<name>vm1</name>", "")).unwrap_err();
        assert_eq!((e.code, e.domain), (ErrorCode::NoName, ErrorDomain::Domain));
        let e = DomainDef::parse(&MIN.replace("vm1", "a/b")).unwrap_err();
        assert_eq!(e.code, ErrorCode::XmlError);
        assert_eq!(e.message, "XML error: name a/b cannot contain '/'");
        let e = DomainDef::parse(&MIN.replace("<type arch='x86_64' machine='pc'>hvm</type>", ""))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::XmlError);
        assert_eq!(e.message, "XML error: an os <type> must be specified");
        let e = DomainDef::parse(&MIN.replace("<memory unit='MiB'>512</memory>", "")).unwrap_err();
        assert_eq!(e.code, ErrorCode::XmlError);
        let e = DomainDef::parse(&MIN.replace("'MiB'>512", "'MiB'>lots")).unwrap_err();
        assert_eq!(e.code, ErrorCode::XmlError);
        assert_eq!(
            e.message,
            "XML error: Invalid value 'lots' for element or attribute './memory[1]'"
        );
        let e = DomainDef::parse(&MIN.replace("'MiB'", "'parsecs'")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArg);
        assert_eq!(e.message, "invalid argument: unknown suffix 'parsecs'");
        let e = DomainDef::parse(&MIN.replace("'MiB'>512", "'EiB'>99999999999")).unwrap_err();
        assert_eq!(e.code, ErrorCode::Overflow);
        let e =
            DomainDef::parse(&MIN.replace("'MiB'>512", "'KiB'>18446744073709551615")).unwrap_err();
        assert_eq!(e.code, ErrorCode::Overflow);
        let e = DomainDef::parse(&MIN.replace("<name>", "<uuid>nope</uuid><name>")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InternalError);
        assert_eq!(e.message, "internal error: malformed uuid element");
        let e = DomainDef::parse(&MIN.replace(" type='kvm'", "")).unwrap_err();
        assert_eq!(e.code, ErrorCode::XmlError);
        let e = DomainDef::parse("<network><name>x</name></network>").unwrap_err();
        assert_eq!((e.code, e.domain), (ErrorCode::XmlError, ErrorDomain::Xml));
        assert_eq!(
            e.message,
            "XML error: expecting root element of 'domain', not 'network'"
        );
        let e = DomainDef::parse(&MIN.replace("<memory", "<vcpu>x</vcpu><memory")).unwrap_err();
        assert_eq!(
            e.message,
            "XML error: maximum vcpus count must be an integer"
        );
    }

    #[test]
    fn numa_only_memory_is_accepted() {
        let xml = MIN.replace(
            "<memory unit='MiB'>512</memory>",
            "<cpu><numa><cell id='0' cpus='0' memory='1' unit='GiB'/></numa></cpu>",
        );
        let d = DomainDef::parse(&xml).unwrap();
        assert_eq!(d.memory_kib(), 0);
    }

    #[test]
    fn malformed_xml_is_code_35_with_position() {
        let e = DomainDef::parse("<domain type='kvm'>\n  <name>x</nam>\n</domain>").unwrap_err();
        assert_eq!(
            (e.code, e.domain),
            (ErrorCode::XmlDetail, ErrorDomain::Domain)
        );
        assert!(
            e.message
                .starts_with("(domain_definition):2: Opening and ending tag mismatch"),
            "{}",
            e.message
        );
        let lines: Vec<_> = e.message.lines().collect();
        assert_eq!(lines[1], "  <name>x</nam>");
        assert_eq!(lines[2], "---------^");
    }
}
