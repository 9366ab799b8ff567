//! A libvirt domain definition → a QEMU command line (x86_64, `hvm`, KVM or TCG).
//!
//! Why a module of its own: the translation is pure (no processes, no sockets), so it is
//! tested the way libvirt tests its own (`qemuxml2argv`): domain XMLs next to the argv
//! we expect (`drivers/testdata/qemuxml2argv/*.xml` + `*.args`, or `*.err` for the
//! expected error). Everything we do not translate is rejected by [`validate`] with
//! `VIR_ERR_CONFIG_UNSUPPORTED` naming the element, instead of being dropped silently;
//! host-dependent checks (disk images that must exist, machine types the emulator
//! knows) are separate ([`preflight`], [`check_machine`]) so the pure part stays
//! testable anywhere.
//!
//! The argv follows what libvirt 9/10 passes where that is cheap (JSON `-device`,
//! `-blockdev`, `-netdev` and `-object`; `-chardev` + `-mon` for QMP; libvirt's device
//! ids: `virtio-disk0`, `ide0-1-0`, `sata0-0-2`, `scsi0-0-0-1`, `net0`/`hostnet0`,
//! `serial0`/`charserial0`, `console1`/`charconsole1`, `channel0`/`charchannel0`,
//! `balloon0`, `video0`, `input0`, `rng0`, `usb`, `pci.N`), with these choices:
//! - always `-S` (the daemon resumes with QMP `cont`) and `-no-shutdown` (= `-action
//!   shutdown=pause`), so a guest poweroff leaves QEMU paused in status `shutdown` and
//!   the daemon applies `on_poweroff`. `on_reboot='destroy'` adds `-no-reboot` (= `-action
//!   reboot=shutdown`): a guest reset then arrives as `SHUTDOWN` with reason
//!   `guest-reset` and, because of `-no-shutdown`, QEMU stays paused. A `<panic>` device
//!   adds `-action panic=pause`: `GUEST_PANICKED` with action `pause`, status
//!   `guest-panicked`, the daemon applies `on_crash`. Nothing else about lifecycle
//!   actions is in the argv;
//! - `<currentMemory>` below `<memory>` is not in the argv: the daemon sets the balloon
//!   target with QMP `balloon` after start (as libvirt does); a missing `<memballoon>`
//!   means a virtio balloon (libvirt adds one on define), `model='none'` means none;
//! - no explicit PCI addresses unless the XML gives `<address type='pci'>`: QEMU places
//!   the rest on the root bus, and the daemon asks it where ([`auto_placed`] names them,
//!   [`with_pci_addresses`] writes QEMU's answer into the definition, as libvirt
//!   records the addresses it assigns); no USB controller unless one is declared or a
//!   USB input needs it;
//! - features: without `<acpi/>` the machine gets `acpi=off` (so ACPI poweroff and
//!   `system_powerdown` do nothing); `<apic/>` and `<pae/>` need no argv;
//! - CPU: no `<cpu>` → nothing under TCG, [`DEFAULT_KVM_CPU`] under KVM;
//!   `host-passthrough` → `-cpu host` (KVM only; refused under TCG like libvirt);
//!   `host-model` → `-cpu host` under KVM, `-cpu max` under TCG (libvirt expands a named
//!   model instead); `maximum` → `-cpu max`; custom → `-cpu MODEL,feat=on|off`. On the
//!   nested-PVM KVM of our build hosts `-cpu host`/`max` abort QEMU at start;
//! - default models when the XML names none: NIC `rtl8139`, video `cirrus` (added when
//!   there is `<graphics>`), SCSI controller `virtio-scsi` (libvirt: `lsilogic`),
//!   USB controller `piix3-usb-uhci` (pc) / `qemu-xhci` (q35), machine `pc`;
//! - VNC with autoport → `-vnc ADDR:0,to=99` (QEMU picks the first free display; ask
//!   `query-vnc` for the port); `passwd` → `password=on`, the daemon must send
//!   `set_password`; default listen `127.0.0.1`;
//! - `bridge`/`ethernet` interfaces need `<target dev>`: QEMU opens (or creates) that
//!   tap with `script=no`; attaching it to the bridge and bringing it up is the
//!   caller's job. `network` interfaces must be resolved to a bridge before this;
//! - unix character devices without a path get `DOMAIN_DIR/serialN.sock`,
//!   `consoleN.sock`, or the channel's target name; pty paths are learnt with QMP
//!   `query-chardev` (ids above).
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;
use vireo_messages::{ErrorDomain, VirError, VirResult};
use vireo_xml::{DomainDef, Element, LifecycleAction};

const ERR: ErrorDomain = ErrorDomain::Qemu;

/// The emulator named in errors when the XML has no `<emulator>`.
pub const DEFAULT_EMULATOR: &str = "/usr/bin/qemu-system-x86_64";

/// The CPU model used under KVM when the XML has no `<cpu>`. libvirt passes no `-cpu`
/// then, and QEMU's default (`qemu64`) asks for `pni` (SSE3), which the nested-PVM KVM
/// of our build hosts refuses with a warning on every start; `-pni` drops it. Under TCG
/// we pass nothing, as libvirt does.
pub const DEFAULT_KVM_CPU: &str = "qemu64,-pni";

/// Host-side facts the command line needs besides the XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchContext {
    /// The QEMU binary, used when the XML has no `<emulator>`.
    pub emulator: PathBuf,
    /// Where QEMU listens for the daemon's QMP connection.
    pub qmp_socket: PathBuf,
    /// The domain's runtime directory (unix sockets for serial ports, channels, VNC).
    pub domain_dir: PathBuf,
    /// `-incoming` value, `Some("defer")` for a restore.
    pub incoming: Option<String>,
}

/// A program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuCommand {
    /// The QEMU binary.
    pub program: PathBuf,
    /// Its arguments, in order.
    pub args: Vec<String>,
}

impl QemuCommand {
    /// A shell-like one-line rendering for logs (not for execution).
    pub fn display(&self) -> String {
        let mut out = self.program.display().to_string();
        for a in &self.args {
            out.push(' ');
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"{}$\\".contains(c)) {
                out.push('\'');
                out.push_str(&a.replace('\'', "'\\''"));
                out.push('\'');
            } else {
                out.push_str(a);
            }
        }
        out
    }
}

fn unsupported(detail: impl Into<String>) -> VirError {
    VirError::config_unsupported(ERR, detail)
}

fn device_unsupported(name: &str) -> VirError {
    unsupported(format!(
        "device '{name}' is not supported by vireo's qemu driver"
    ))
}

fn element_unsupported(name: &str) -> VirError {
    unsupported(format!(
        "element '{name}' is not supported by vireo's qemu driver"
    ))
}

fn value_unsupported(what: &str, value: &str) -> VirError {
    unsupported(format!(
        "{what} '{value}' is not supported by vireo's qemu driver"
    ))
}

// ----- small helpers -----

/// A JSON object with keys in insertion order (libvirt's `-device '{...}'` style).
#[derive(Default)]
struct Obj(Vec<(&'static str, Value)>);

impl Obj {
    fn new() -> Obj {
        Obj::default()
    }
    fn s(mut self, k: &'static str, v: impl Into<String>) -> Obj {
        self.0.push((k, Value::String(v.into())));
        self
    }
    fn n(mut self, k: &'static str, v: u64) -> Obj {
        self.0.push((k, Value::from(v)));
        self
    }
    fn b(mut self, k: &'static str, v: bool) -> Obj {
        self.0.push((k, Value::Bool(v)));
        self
    }
    fn v(mut self, k: &'static str, v: Value) -> Obj {
        self.0.push((k, v));
        self
    }
    fn opt_s(self, k: &'static str, v: Option<impl Into<String>>) -> Obj {
        match v {
            Some(v) => self.s(k, v),
            None => self,
        }
    }
    fn opt_n(self, k: &'static str, v: Option<u64>) -> Obj {
        match v {
            Some(v) => self.n(k, v),
            None => self,
        }
    }
    fn get_str(&self, k: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(key, _)| *key == k)
            .and_then(|(_, v)| v.as_str().map(str::to_string))
    }
    fn render(&self) -> String {
        let mut out = String::from("{");
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{}:{}", Value::String((*k).to_string()), v);
        }
        out.push('}');
        out
    }
}

/// Escapes a value for QEMU's `key=value,...` option syntax (commas double).
fn opt_escape(s: &str) -> String {
    s.replace(',', ",,")
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// libvirt's `virDiskNameToIndex`: `vda` → 0, `hdc` → 2, `sdaa` → 26.
pub fn disk_name_to_index(name: &str) -> Option<u32> {
    let rest = ["xvd", "hd", "sd", "vd", "fd", "ubd"]
        .iter()
        .find_map(|p| name.strip_prefix(p))?;
    let letters: String = rest
        .chars()
        .take_while(|c| c.is_ascii_lowercase())
        .collect();
    if letters.is_empty() || letters.len() != rest.len() {
        return None;
    }
    let mut idx: u32 = 0;
    for (i, c) in letters.bytes().enumerate() {
        let d = u32::from(c - b'a');
        idx = if i == 0 {
            d
        } else {
            idx.checked_add(1)?.checked_mul(26)?.checked_add(d)?
        };
    }
    Some(idx)
}

fn parse_num(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

fn attr_num(e: &Element, name: &str) -> Option<u64> {
    e.attr(name).and_then(parse_num)
}

fn yes(v: Option<&str>) -> Option<bool> {
    match v {
        Some("yes" | "on") => Some(true),
        Some("no" | "off") => Some(false),
        _ => None,
    }
}

// ----- machine -----

/// The x86 machine families we build for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// i440FX + PIIX (`pc`, `pc-i440fx-*`, `pc-1.x`): built-in IDE, PCI root `pci.0`.
    Pc,
    /// Q35 + ICH9 (`q35`, `pc-q35-*`): built-in AHCI (`ide.N`), PCIe root `pcie.0`.
    Q35,
}

fn machine_name(def: &DomainDef) -> String {
    def.machine().unwrap_or_else(|| "pc".to_string())
}

fn family_of(machine: &str) -> VirResult<Family> {
    if machine == "q35" || machine.starts_with("pc-q35") {
        Ok(Family::Q35)
    } else if machine == "pc" || machine.starts_with("pc-i440fx") || machine.starts_with("pc-") {
        Ok(Family::Pc)
    } else {
        Err(value_unsupported("machine type", machine))
    }
}

/// Parses `qemu-system-x86_64 -machine help`: every machine name, and the names the
/// aliases stand for (`pc` and `pc-i440fx-10.0` both appear).
pub fn parse_machine_help(output: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    };
    for line in output.lines() {
        if line.starts_with("Supported machines") || line.trim().is_empty() {
            continue;
        }
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        push(name);
        if let Some(target) = alias_target(line) {
            push(target);
        }
    }
    out
}

/// `(alias, canonical)` pairs from `-machine help` (`("pc", "pc-i440fx-10.0")`), for
/// rewriting the XML's machine to the versioned name as libvirt does on define.
pub fn parse_machine_aliases(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .filter_map(|line| {
            let name = line.split_whitespace().next()?;
            Some((name.to_string(), alias_target(line)?.to_string()))
        })
        .collect()
}

fn alias_target(line: &str) -> Option<&str> {
    let i = line.find("(alias of ")?;
    let rest = &line[i + "(alias of ".len()..];
    Some(rest[..rest.find(')')?].trim())
}

/// The emulator the definition names, else [`DEFAULT_EMULATOR`].
fn emulator_of(def: &DomainDef) -> Option<String> {
    def.devices()
        .and_then(|d| d.child("emulator"))
        .map(|e| e.text().trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Rejects a machine type the emulator does not know, with libvirt's error.
pub fn check_machine(def: &DomainDef, supported: &[String]) -> VirResult<()> {
    let machine = machine_name(def);
    if supported.contains(&machine) {
        return Ok(());
    }
    let emulator = emulator_of(def).unwrap_or_else(|| DEFAULT_EMULATOR.to_string());
    Err(unsupported(format!(
        "Emulator '{emulator}' does not support machine type '{machine}'"
    )))
}

// ----- validation -----

/// Top-level `<domain>` children we translate or may safely ignore.
const KNOWN_TOP: &[&str] = &[
    "name",
    "uuid",
    "title",
    "description",
    "metadata",
    "memory",
    "currentMemory",
    "vcpu",
    "os",
    "features",
    "cpu",
    "clock",
    "on_poweroff",
    "on_reboot",
    "on_crash",
    "pm",
    "devices",
    // Security labels and the cgroup partition are host policy libvirt adds to live
    // XML; we run no security driver and manage no cgroups, so they have no argv.
    "seclabel",
    "resource",
];

const KNOWN_FEATURES: &[&str] = &["acpi", "apic", "pae", "vmport", "smm", "pmu"];

/// Pure checks: everything in the definition is something we translate.
pub fn validate(def: &DomainDef) -> VirResult<()> {
    let root = def.element();
    let emulator = emulator_of(def).unwrap_or_else(|| DEFAULT_EMULATOR.to_string());
    match def.domain_type() {
        "kvm" | "qemu" => {}
        other => {
            return Err(unsupported(format!(
                "Emulator '{emulator}' does not support virt type '{other}'"
            )));
        }
    }
    let os_type = def.os_type().unwrap_or_default();
    if os_type != "hvm" {
        return Err(value_unsupported("os type", &os_type));
    }
    if let Some(arch) = def.os_arch()
        && arch != "x86_64"
    {
        return Err(value_unsupported("architecture", &arch));
    }
    family_of(&machine_name(def))?;
    for e in root.elements() {
        let name = e.name.as_str();
        if name.contains(':') {
            if e.local_name() == "commandline" && is_qemu_ns(root, e) {
                check_qemu_commandline(e)?;
                continue;
            }
            return Err(element_unsupported(name));
        }
        if !KNOWN_TOP.contains(&name) {
            return Err(element_unsupported(name));
        }
    }
    if let Some(os) = root.child("os") {
        for e in os.elements() {
            match e.name.as_str() {
                "type" | "boot" | "kernel" | "initrd" | "cmdline" | "bootmenu" => {}
                other => return Err(element_unsupported(&format!("os/{other}"))),
            }
        }
        if os.has_attr("firmware") {
            return Err(unsupported(
                "firmware autoselection is not supported by vireo's qemu driver",
            ));
        }
    }
    if let Some(f) = root.child("features") {
        for e in f.elements() {
            if !KNOWN_FEATURES.contains(&e.name.as_str()) {
                return Err(value_unsupported("feature", &e.name));
            }
        }
    }
    cpu_args(def)?;
    smp(def)?;
    clock_args(def)?;
    check_boot(def)?;
    let ctx = dummy_ctx();
    let mut b = Builder::new(def, &ctx)?;
    b.pm()?;
    b.devices()?;
    Ok(())
}

fn dummy_ctx() -> LaunchContext {
    LaunchContext {
        emulator: PathBuf::from(DEFAULT_EMULATOR),
        qmp_socket: PathBuf::from("/nonexistent/qmp.sock"),
        domain_dir: PathBuf::from("/nonexistent"),
        incoming: None,
    }
}

const QEMU_NS: &str = "http://libvirt.org/schemas/domain/qemu/1.0";

/// Whether `e` (a child of `root`) is in libvirt's QEMU namespace; the prefix is
/// usually declared on `<domain>`, sometimes on the element itself.
fn is_qemu_ns(root: &Element, e: &Element) -> bool {
    let prefix = e.prefix();
    prefix.is_some()
        && (e.declared_namespace(prefix) == Some(QEMU_NS)
            || root.declared_namespace(prefix) == Some(QEMU_NS))
}

fn check_qemu_commandline(e: &Element) -> VirResult<()> {
    for c in e.elements() {
        if c.local_name() != "arg" {
            return Err(element_unsupported(&c.name));
        }
    }
    Ok(())
}

fn check_boot(def: &DomainDef) -> VirResult<()> {
    let has_os_boot = !def.boot_devs().is_empty();
    let per_device = def.devices().is_some_and(|d| {
        d.elements()
            .any(|e| e.child("boot").is_some_and(|b| b.has_attr("order")))
    });
    if has_os_boot && per_device {
        return Err(VirError::xml(
            ErrorDomain::Domain,
            "per-device boot elements cannot be used together with os/boot elements",
        ));
    }
    for d in def.boot_devs() {
        if !matches!(d.as_str(), "hd" | "cdrom" | "network" | "fd") {
            return Err(value_unsupported("boot device", &d));
        }
    }
    Ok(())
}

// ----- cpu, clock -----

fn cpu_args(def: &DomainDef) -> VirResult<Option<String>> {
    let kvm = def.domain_type() == "kvm";
    let Some(cpu) = def.element().child("cpu") else {
        return Ok(kvm.then(|| DEFAULT_KVM_CPU.to_string()));
    };
    for e in cpu.elements() {
        match e.name.as_str() {
            "model" | "feature" | "topology" => {}
            other => return Err(element_unsupported(&format!("cpu/{other}"))),
        }
    }
    let mode = cpu.attr("mode").unwrap_or("custom");
    let mut model = match mode {
        "host-passthrough" | "maximum" if !kvm && mode == "host-passthrough" => {
            return Err(unsupported(
                "CPU mode 'host-passthrough' for x86_64 qemu domain on x86_64 host is not supported by hypervisor",
            ));
        }
        "host-passthrough" => "host".to_string(),
        "maximum" => "max".to_string(),
        "host-model" => if kvm { "host" } else { "max" }.to_string(),
        "custom" => match cpu.child("model") {
            Some(m) => m.text().trim().to_string(),
            None if cpu.child("feature").is_none() => {
                // Only <topology>: the default model, as without <cpu>.
                return Ok(kvm.then(|| DEFAULT_KVM_CPU.to_string()));
            }
            None => "qemu64".to_string(),
        },
        other => return Err(value_unsupported("CPU mode", other)),
    };
    if model.is_empty() || model.contains(',') {
        return Err(value_unsupported("CPU model", &model));
    }
    for f in cpu.children_named("feature") {
        let name = f.attr("name").unwrap_or("");
        if name.is_empty() || name.contains([',', '=']) {
            return Err(value_unsupported("CPU feature", name));
        }
        let on = match f.attr("policy").unwrap_or("require") {
            "require" | "force" => true,
            "disable" | "forbid" => false,
            "optional" => continue,
            other => return Err(value_unsupported("CPU feature policy", other)),
        };
        let _ = write!(model, ",{name}={}", if on { "on" } else { "off" });
    }
    Ok(Some(model))
}

struct Clock {
    rtc: String,
    globals: Vec<String>,
    hpet_off: bool,
}

fn clock_args(def: &DomainDef) -> VirResult<Clock> {
    let kvm = def.domain_type() == "kvm";
    let mut c = Clock {
        rtc: "base=utc".into(),
        globals: Vec::new(),
        hpet_off: false,
    };
    let Some(clock) = def.element().child("clock") else {
        return Ok(c);
    };
    match clock.attr("offset").unwrap_or("utc") {
        "utc" => {}
        "localtime" => c.rtc = "base=localtime".into(),
        other => return Err(value_unsupported("clock offset", other)),
    }
    for e in clock.elements() {
        if e.name != "timer" {
            return Err(element_unsupported(&format!("clock/{}", e.name)));
        }
        let name = e.attr("name").unwrap_or("");
        let present = yes(e.attr("present"));
        let policy = e.attr("tickpolicy");
        match (name, policy) {
            ("rtc", None | Some("catchup" | "delay")) => {
                if policy == Some("catchup") {
                    c.rtc.push_str(",driftfix=slew");
                }
                if present == Some(false) {
                    return Err(unsupported("disabling timer 'rtc' is not supported"));
                }
            }
            ("pit", None | Some("delay" | "catchup" | "discard")) => {
                // Only the in-kernel PIT (KVM) has a lost-tick policy.
                if let (true, Some(p)) = (kvm, policy) {
                    c.globals.push(format!("kvm-pit.lost_tick_policy={p}"));
                }
            }
            ("hpet", None) => c.hpet_off = present == Some(false),
            _ => return Err(value_unsupported("timer", name)),
        }
    }
    Ok(c)
}

// ----- the builder -----

/// What a boot index applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BootKind {
    Disk,
    Cdrom,
    Net,
}

struct Builder<'a> {
    def: &'a DomainDef,
    ctx: &'a LaunchContext,
    family: Family,
    args: Vec<String>,
    /// Boot indexes from `<os><boot dev>`, assigned to the first device of each kind.
    os_boot: HashMap<&'static str, u64>,
    used_boot: std::collections::HashSet<&'static str>,
    /// Set when a device needs a USB bus.
    need_usb: bool,
    /// Set when a device needs the virtio-serial bus.
    virtio_serial: Option<usize>,
    /// Set when a disk needs a (virtio-)SCSI controller.
    scsi_controllers: Vec<u64>,
    /// Controllers emitted so far.
    has_usb_controller: bool,
    has_sata_controller: bool,
    /// Names of the disks' QEMU objects, in `<disk>` order.
    disk_aliases: Vec<DiskAlias>,
    /// virtio-serial port numbers taken.
    vserial_ports: Vec<u64>,
    device_args: Vec<String>,
    /// PCI devices left for QEMU to place, in `-device` order (see [`auto_placed`]).
    auto_pci: Vec<AutoPlaced>,
    /// The `<devices>` child whose `-device` comes next and has no PCI address.
    pending_auto: Option<usize>,
}

impl<'a> Builder<'a> {
    fn new(def: &'a DomainDef, ctx: &'a LaunchContext) -> VirResult<Builder<'a>> {
        let family = family_of(&machine_name(def))?;
        let mut os_boot = HashMap::new();
        let mut idx = 1;
        for d in def.boot_devs() {
            let key: &'static str = match d.as_str() {
                "hd" => "disk",
                "cdrom" => "cdrom",
                "fd" => "floppy",
                "network" => "net",
                _ => continue,
            };
            os_boot.entry(key).or_insert_with(|| {
                idx += 1;
                idx - 1
            });
        }
        let per_device = def.devices().is_some_and(|d| {
            d.elements()
                .any(|e| e.child("boot").is_some_and(|b| b.has_attr("order")))
        });
        // libvirt defaults to <boot dev='hd'/> when nothing else chooses.
        if os_boot.is_empty() && !per_device && def.kernel().is_none() {
            os_boot.insert("disk", 1);
        }
        Ok(Builder {
            def,
            ctx,
            family,
            args: Vec::new(),
            os_boot,
            used_boot: Default::default(),
            need_usb: false,
            virtio_serial: None,
            scsi_controllers: Vec::new(),
            has_usb_controller: false,
            has_sata_controller: false,
            vserial_ports: Vec::new(),
            disk_aliases: Vec::new(),
            device_args: Vec::new(),
            auto_pci: Vec::new(),
            pending_auto: None,
        })
    }

    fn arg(&mut self, a: impl Into<String>) {
        self.args.push(a.into());
    }

    fn pair(&mut self, flag: &str, value: impl Into<String>) {
        self.args.push(flag.to_string());
        self.args.push(value.into());
    }

    fn dev(&mut self, flag: &str, value: impl Into<String>) {
        self.device_args.push(flag.to_string());
        self.device_args.push(value.into());
    }

    fn device(&mut self, o: Obj) {
        if let Some(at) = self.pending_auto.take()
            && let Some(id) = o.get_str("id")
        {
            self.auto_pci.push(AutoPlaced {
                id,
                origin: Origin::Element(at),
            });
        }
        let s = o.render();
        self.dev("-device", s);
    }

    /// A device libvirt adds to every definition that does not name one, emitted
    /// without an address.
    fn added_device(&mut self, what: &'static str, o: Obj) {
        if let Some(id) = o.get_str("id") {
            self.auto_pci.push(AutoPlaced {
                id,
                origin: Origin::Added(what),
            });
        }
        self.device(o);
    }

    fn pci_root(&self) -> &'static str {
        match self.family {
            Family::Pc => "pci.0",
            Family::Q35 => "pcie.0",
        }
    }

    /// `bus`/`addr` from `<address type='pci'>`, if any. A `<devices>` child without
    /// an address is noted: QEMU places its `-device` (the next one emitted).
    fn pci_address(&mut self, e: &Element, o: Obj) -> VirResult<Obj> {
        let Some(a) = e.child("address") else {
            self.pending_auto = self
                .def
                .devices()
                .and_then(|d| d.elements().position(|x| std::ptr::eq(x, e)));
            return Ok(o);
        };
        match a.attr("type") {
            Some("pci") => {}
            Some("drive") | Some("isa") | Some("usb") | Some("virtio-serial") | None => {
                return Ok(o);
            }
            Some(other) => return Err(value_unsupported("address type", other)),
        }
        if attr_num(a, "domain").unwrap_or(0) != 0 {
            return Err(unsupported("PCI domains other than 0 are not supported"));
        }
        let bus = attr_num(a, "bus").unwrap_or(0);
        let slot = attr_num(a, "slot").unwrap_or(0);
        let func = attr_num(a, "function").unwrap_or(0);
        let bus_name = if bus == 0 {
            self.pci_root().to_string()
        } else {
            format!("pci.{bus}")
        };
        let addr = if func == 0 {
            format!("0x{slot:x}")
        } else {
            format!("0x{slot:x}.0x{func:x}")
        };
        let mut o = o.s("bus", bus_name).s("addr", addr);
        if yes(a.attr("multifunction")) == Some(true) {
            o = o.b("multifunction", true);
        }
        Ok(o)
    }

    /// The boot index for a device: its own `<boot order>`, else the `<os><boot>`
    /// position for the first device of its kind.
    fn boot_index(&mut self, e: &Element, kind: BootKind) -> Option<u64> {
        if let Some(order) = e.child("boot").and_then(|b| attr_num(b, "order")) {
            return Some(order);
        }
        let key = match kind {
            BootKind::Disk => "disk",
            BootKind::Cdrom => "cdrom",
            BootKind::Net => "net",
        };
        if self.used_boot.contains(key) {
            return None;
        }
        let idx = *self.os_boot.get(key)?;
        self.used_boot.insert(key);
        Some(idx)
    }

    fn build(mut self) -> VirResult<Vec<String>> {
        let def = self.def;
        let ctx = self.ctx;
        self.pair(
            "-name",
            format!("guest={},debug-threads=on", opt_escape(&def.name())),
        );
        self.arg("-S");

        let features = def.features();
        let feature = |n: &str| def.element().path(&["features", n]);
        let mut machine = machine_name(def);
        machine.push_str(",usb=off,dump-guest-core=off");
        if !features.iter().any(|f| f == "acpi") {
            machine.push_str(",acpi=off");
        }
        if let Some(v) = feature("vmport") {
            let on = yes(v.attr("state")).unwrap_or(true);
            let _ = write!(machine, ",vmport={}", if on { "on" } else { "off" });
        }
        if let Some(v) = feature("smm") {
            let on = yes(v.attr("state")).unwrap_or(true);
            let _ = write!(machine, ",smm={}", if on { "on" } else { "off" });
        }
        let clock = clock_args(def)?;
        if clock.hpet_off {
            machine.push_str(",hpet=off");
        }
        self.pair("-machine", machine);
        let accel = if def.domain_type() == "kvm" {
            "kvm"
        } else {
            "tcg"
        };
        self.pair("-accel", accel);
        let mut cpu = cpu_args(def)?;
        if let Some(p) = feature("pmu") {
            let on = yes(p.attr("state")).unwrap_or(true);
            // A CPU property needs a model to hang on; QEMU's default is qemu64.
            let cpu = cpu.get_or_insert_with(|| "qemu64".to_string());
            let _ = write!(cpu, ",pmu={}", if on { "on" } else { "off" });
        }
        if let Some(cpu) = cpu {
            self.pair("-cpu", cpu);
        }
        self.pair("-m", format!("size={}k", def.memory_kib()));
        self.pair("-smp", smp(def)?);
        if let Some(u) = def.uuid() {
            self.pair("-uuid", u.to_string());
        }
        if def.graphics().is_empty() {
            self.pair("-display", "none");
        }
        self.arg("-no-user-config");
        self.arg("-nodefaults");
        self.pair(
            "-chardev",
            format!(
                "socket,id=charmonitor,path={},server=on,wait=off",
                opt_escape(&path_str(&ctx.qmp_socket))
            ),
        );
        self.pair("-mon", "chardev=charmonitor,id=monitor,mode=control");
        self.pair("-rtc", clock.rtc.clone());
        for g in &clock.globals {
            self.pair("-global", g.clone());
        }
        self.arg("-no-shutdown");
        if def.on_reboot() == LifecycleAction::Destroy {
            self.arg("-no-reboot");
        }
        if def.devices().is_some_and(|d| d.child("panic").is_some()) {
            self.pair("-action", "panic=pause");
        }
        self.pm()?;
        let mut boot = String::from("strict=on");
        if def
            .element()
            .path_attr(&["os", "bootmenu"], "enable")
            .and_then(|v| yes(Some(v)))
            == Some(true)
        {
            boot.push_str(",menu=on");
        }
        self.pair("-boot", boot);
        if let Some(k) = def.kernel() {
            self.pair("-kernel", k.trim());
        }
        if let Some(i) = def.initrd() {
            self.pair("-initrd", i.trim());
        }
        if let Some(c) = def.cmdline() {
            self.pair("-append", c);
        }
        self.devices()?;
        let dev = std::mem::take(&mut self.device_args);
        self.args.extend(dev);
        if let Some(inc) = &ctx.incoming {
            self.pair("-incoming", inc.clone());
        }
        for e in def.element().elements() {
            if e.local_name() == "commandline" && is_qemu_ns(def.element(), e) {
                for a in e.elements() {
                    if let Some(v) = a.attr("value") {
                        self.arg(v);
                    }
                }
            }
        }
        Ok(self.args)
    }

    fn pm(&mut self) -> VirResult<()> {
        let Some(pm) = self.def.element().child("pm") else {
            return Ok(());
        };
        let dev = match self.family {
            Family::Pc => "PIIX4_PM",
            Family::Q35 => "ICH9-LPC",
        };
        for e in pm.elements() {
            let which = match e.name.as_str() {
                "suspend-to-mem" => "s3",
                "suspend-to-disk" => "s4",
                other => return Err(element_unsupported(&format!("pm/{other}"))),
            };
            if let Some(on) = yes(e.attr("enabled")) {
                self.pair(
                    "-global",
                    format!("{dev}.disable_{which}={}", if on { 0 } else { 1 }),
                );
            }
        }
        Ok(())
    }

    /// Translates `<devices>` into `self.device_args`.
    fn devices(&mut self) -> VirResult<()> {
        let Some(devices) = self.def.devices() else {
            // libvirt adds a virtio balloon to every x86 guest.
            self.added_device(
                "memballoon",
                Obj::new()
                    .s("driver", "virtio-balloon-pci")
                    .s("id", "balloon0"),
            );
            return Ok(());
        };
        for e in devices.elements() {
            match e.name.as_str() {
                "emulator" | "controller" | "disk" | "interface" | "serial" | "console"
                | "graphics" | "video" | "input" | "memballoon" | "panic" | "rng" | "channel"
                | "audio" => {}
                other => return Err(device_unsupported(other)),
            }
        }
        self.controllers(devices)?;
        let disks: Vec<&Element> = devices.children_named("disk").collect();
        for (i, d) in disks.iter().enumerate() {
            self.disk(d, i)?;
        }
        for (i, n) in devices.children_named("interface").enumerate() {
            self.interface(n, i)?;
        }
        // Ports channels ask for explicitly are not handed out automatically.
        for c in devices.children_named("channel") {
            if let Some(a) = c.child("address")
                && a.attr("type") == Some("virtio-serial")
                && let Some(p) = attr_num(a, "port")
            {
                self.vserial_ports.push(p);
            }
        }
        self.serials_and_consoles(devices)?;
        self.channels(devices)?;
        for (i, inp) in devices.children_named("input").enumerate() {
            self.input(inp, i)?;
        }
        for a in devices.children_named("audio") {
            self.audio(a)?;
        }
        for g in devices.children_named("graphics") {
            self.graphics(g)?;
        }
        let has_graphics = devices.child("graphics").is_some();
        let mut videos = devices.children_named("video").peekable();
        if videos.peek().is_none() && has_graphics {
            // libvirt adds a default video device (cirrus on x86) to guests with graphics.
            self.added_device(
                "video",
                Obj::new().s("driver", "cirrus-vga").s("id", "video0"),
            );
        }
        for (i, v) in devices.children_named("video").enumerate() {
            self.video(v, i)?;
        }
        match devices.child("memballoon") {
            None => {
                self.added_device(
                    "memballoon",
                    Obj::new()
                        .s("driver", "virtio-balloon-pci")
                        .s("id", "balloon0"),
                );
            }
            Some(m) => match m.attr("model").unwrap_or("virtio") {
                "none" => {}
                "virtio" => {
                    let mut o = Obj::new()
                        .s("driver", "virtio-balloon-pci")
                        .s("id", "balloon0");
                    o = self.pci_address(m, o)?;
                    if let Some(on) = yes(m.attr("autodeflate")) {
                        o = o.b("deflate-on-oom", on);
                    }
                    if let Some(on) = yes(m.attr("freePageReporting")) {
                        o = o.b("free-page-reporting", on);
                    }
                    for c in m.elements() {
                        if !matches!(c.name.as_str(), "stats" | "address" | "alias") {
                            return Err(element_unsupported(&format!("memballoon/{}", c.name)));
                        }
                    }
                    self.device(o);
                }
                other => return Err(value_unsupported("memballoon model", other)),
            },
        }
        for (i, r) in devices.children_named("rng").enumerate() {
            self.rng(r, i)?;
        }
        for p in devices.children_named("panic") {
            self.panic(p)?;
        }
        if self.need_usb && !self.has_usb_controller {
            return Err(unsupported(
                "a USB device needs a USB controller, but the domain has <controller type='usb' model='none'/>",
            ));
        }
        Ok(())
    }

    fn controllers(&mut self, devices: &Element) -> VirResult<()> {
        let needs_usb = devices
            .children_named("input")
            .any(|i| i.attr("bus") == Some("usb"));
        let mut usb_seen = false;
        let ctrls: Vec<&Element> = devices.children_named("controller").collect();
        // PCI controllers first, in index order, so buses exist before devices use them.
        let mut pci: Vec<&Element> = ctrls
            .iter()
            .copied()
            .filter(|c| c.attr("type") == Some("pci"))
            .collect();
        pci.sort_by_key(|c| attr_num(c, "index").unwrap_or(0));
        for c in pci {
            self.pci_controller(c)?;
        }
        for c in ctrls {
            let index = attr_num(c, "index").unwrap_or(0);
            let model = c.attr("model");
            match c.attr("type").unwrap_or("") {
                "pci" => {}
                "ide" => {
                    if self.family == Family::Q35 {
                        return Err(unsupported(
                            "IDE controllers are unsupported for this QEMU binary or machine type",
                        ));
                    }
                    if index != 0 {
                        return Err(unsupported("only one IDE controller is supported"));
                    }
                }
                "fdc" => {}
                "sata" => {
                    if index != 0 {
                        return Err(unsupported("only one SATA controller is supported"));
                    }
                    if self.family == Family::Pc {
                        let o = Obj::new().s("driver", "ahci").s("id", "sata0");
                        let o = self.pci_address(c, o)?;
                        self.device(o);
                    }
                    self.has_sata_controller = true;
                }
                "usb" => {
                    if index != 0 {
                        return Err(unsupported("only one USB controller is supported"));
                    }
                    usb_seen = true;
                    let driver = match model {
                        Some("none") => continue,
                        None => match self.family {
                            Family::Pc => "piix3-usb-uhci",
                            Family::Q35 => "qemu-xhci",
                        },
                        Some("piix3-uhci") => "piix3-usb-uhci",
                        Some("piix4-uhci") => "piix4-usb-uhci",
                        Some("qemu-xhci") => "qemu-xhci",
                        Some("nec-xhci") => "nec-usb-xhci",
                        Some(other) => {
                            return Err(value_unsupported("USB controller model", other));
                        }
                    };
                    let o = Obj::new().s("driver", driver).s("id", "usb");
                    let o = self.pci_address(c, o)?;
                    self.device(o);
                    self.has_usb_controller = true;
                }
                "scsi" => {
                    match model.unwrap_or("virtio-scsi") {
                        "virtio-scsi" => {}
                        other => return Err(value_unsupported("SCSI controller model", other)),
                    }
                    let o = Obj::new()
                        .s("driver", "virtio-scsi-pci")
                        .s("id", format!("scsi{index}"));
                    let o = self.pci_address(c, o)?;
                    self.device(o);
                    self.scsi_controllers.push(index);
                }
                "virtio-serial" => {
                    let o = Obj::new()
                        .s("driver", "virtio-serial-pci")
                        .s("id", format!("virtio-serial{index}"));
                    let o = self.pci_address(c, o)?;
                    self.device(o);
                    if self.virtio_serial.is_none() {
                        self.virtio_serial = Some(index as usize);
                    }
                }
                other => return Err(value_unsupported("controller type", other)),
            }
        }
        if !usb_seen && needs_usb {
            // libvirt adds a default USB controller to every guest without
            // <controller type='usb' model='none'/>; we add one only when needed.
            let driver = match self.family {
                Family::Pc => "piix3-usb-uhci",
                Family::Q35 => "qemu-xhci",
            };
            self.device(Obj::new().s("driver", driver).s("id", "usb"));
            self.has_usb_controller = true;
        }
        self.need_usb = needs_usb;
        Ok(())
    }

    fn pci_controller(&mut self, c: &Element) -> VirResult<()> {
        let index = attr_num(c, "index").unwrap_or(0);
        let model = c.attr("model").unwrap_or(if index == 0 {
            match self.family {
                Family::Pc => "pci-root",
                Family::Q35 => "pcie-root",
            }
        } else {
            "pci-bridge"
        });
        let target = c.child("target");
        let t = |n: &str| target.and_then(|t| attr_num(t, n));
        match (model, self.family) {
            ("pci-root", Family::Pc) | ("pcie-root", Family::Q35) if index == 0 => Ok(()),
            ("pcie-root-port", Family::Q35) if index > 0 => {
                let o = Obj::new()
                    .s("driver", "pcie-root-port")
                    .n("port", t("port").unwrap_or(0x10 + index - 1))
                    .n("chassis", t("chassis").unwrap_or(index))
                    .s("id", format!("pci.{index}"));
                let o = match c.child("address") {
                    Some(_) => self.pci_address(c, o)?,
                    None => o.s("bus", "pcie.0"),
                };
                self.device(o);
                Ok(())
            }
            ("pci-bridge", _) | ("pcie-to-pci-bridge", Family::Q35) if index > 0 => {
                let driver = if model == "pci-bridge" {
                    "pci-bridge"
                } else {
                    "pcie-pci-bridge"
                };
                let mut o = Obj::new().s("driver", driver);
                if model == "pci-bridge" {
                    o = o.n("chassis_nr", t("chassisNr").unwrap_or(index));
                }
                let o = o.s("id", format!("pci.{index}"));
                let o = self.pci_address(c, o)?;
                self.device(o);
                Ok(())
            }
            (m, _) => Err(value_unsupported("PCI controller model", m)),
        }
    }

    fn disk(&mut self, e: &Element, i: usize) -> VirResult<()> {
        let device = e.attr("device").unwrap_or("disk");
        let cdrom = match device {
            "disk" => false,
            "cdrom" => true,
            other => return Err(value_unsupported("disk device", other)),
        };
        for c in e.elements() {
            match c.name.as_str() {
                "driver" | "source" | "target" | "readonly" | "shareable" | "boot" | "address"
                | "serial" | "alias" | "backingStore" => {}
                other => return Err(element_unsupported(&format!("disk/{other}"))),
            }
        }
        let dtype = e.attr("type").unwrap_or("file");
        let source = e.child("source");
        let path = match dtype {
            "file" => source.and_then(|s| s.attr("file")),
            "block" => source.and_then(|s| s.attr("dev")),
            other => return Err(value_unsupported("disk type", other)),
        }
        .map(str::to_string);
        let target = e
            .path_attr(&["target"], "dev")
            .ok_or_else(|| {
                VirError::with(vireo_messages::ErrorCode::NoTarget, ErrorDomain::Domain, "")
            })?
            .to_string();
        let index = disk_name_to_index(&target)
            .ok_or_else(|| unsupported(format!("unsupported disk target name '{target}'")))?;
        let bus = match e.path_attr(&["target"], "bus") {
            Some(b) => b.to_string(),
            None => match &target[..2] {
                "vd" => "virtio",
                "hd" => "ide",
                "sd" => "scsi",
                "fd" => "fdc",
                _ => "ide",
            }
            .to_string(),
        };
        let driver = e.child("driver");
        if let Some(n) = driver.and_then(|d| d.attr("name"))
            && n != "qemu"
        {
            return Err(value_unsupported("disk driver name", n));
        }
        let format = driver.and_then(|d| d.attr("type")).unwrap_or("raw");
        if !matches!(format, "raw" | "qcow2") {
            return Err(value_unsupported("disk format", format));
        }
        if path.is_none() && !cdrom {
            return Err(VirError::with(
                vireo_messages::ErrorCode::NoSource,
                ErrorDomain::Domain,
                target.clone(),
            ));
        }
        let readonly = cdrom || e.child("readonly").is_some();
        let cache = driver.and_then(|d| d.attr("cache"));
        let (direct, no_flush, write_cache) = match cache.unwrap_or("default") {
            "default" | "writeback" => (false, false, true),
            "none" => (true, false, true),
            "writethrough" => (false, false, false),
            "directsync" => (true, false, false),
            "unsafe" => (false, true, true),
            other => return Err(value_unsupported("disk cache mode", other)),
        };
        let cache_obj = || {
            let mut m = serde_json::Map::new();
            m.insert("direct".into(), Value::Bool(direct));
            m.insert("no-flush".into(), Value::Bool(no_flush));
            Value::Object(m)
        };
        let node = i + 1;
        let storage = format!("libvirt-{node}-storage");
        let fmt = format!("libvirt-{node}-format");
        if let Some(p) = &path {
            let proto = match (dtype, cdrom) {
                ("block", true) => "host_cdrom",
                ("block", false) => "host_device",
                _ => "file",
            };
            let mut o = Obj::new()
                .s("driver", proto)
                .s("filename", p.clone())
                .s("node-name", storage.clone())
                .b("auto-read-only", true)
                .s("discard", "unmap");
            if cache.is_some() {
                o = o.v("cache", cache_obj());
            }
            match driver.and_then(|d| d.attr("io")) {
                None => {}
                Some(io @ ("native" | "threads" | "io_uring")) => o = o.s("aio", io),
                Some(other) => return Err(value_unsupported("disk io mode", other)),
            }
            self.dev("-blockdev", o.render());
            let mut o = Obj::new()
                .s("node-name", fmt.clone())
                .b("read-only", readonly)
                .s("driver", format);
            if cache.is_some() {
                o = o.v("cache", cache_obj());
            }
            if driver.and_then(|d| d.attr("discard")) == Some("unmap") {
                o = o.s("discard", "unmap");
            }
            match driver.and_then(|d| d.attr("detect_zeroes")) {
                None | Some("off") => {}
                Some(z @ ("on" | "unmap")) => o = o.s("detect-zeroes", z),
                Some(other) => return Err(value_unsupported("detect_zeroes mode", other)),
            }
            o = o.s("file", storage);
            self.dev("-blockdev", o.render());
        }
        let boot = self.boot_index(
            e,
            if cdrom {
                BootKind::Cdrom
            } else {
                BootKind::Disk
            },
        );
        let drive = path.as_ref().map(|_| fmt.clone());
        let has_drive = drive.is_some();
        let drive_for_alias = drive.clone();
        let serial = e.child_text("serial");
        let share = e.child("shareable").is_some();
        let addr = e
            .child("address")
            .filter(|a| a.attr("type") == Some("drive"));
        let a = |n: &str| addr.and_then(|a| attr_num(a, n));
        let kind = if cdrom { "ide-cd" } else { "ide-hd" };
        if readonly && !cdrom && matches!(bus.as_str(), "ide" | "sata") {
            // QEMU's ide-hd refuses read-only nodes; libvirt rejects these up front.
            return Err(unsupported(format!(
                "readonly {bus} disks are not supported"
            )));
        }
        let mut o = match bus.as_str() {
            "virtio" => {
                if cdrom {
                    return Err(unsupported(format!(
                        "disk type of '{target}' does not support ejectable media"
                    )));
                }
                let o = Obj::new().s("driver", "virtio-blk-pci");
                let o = self.pci_address(e, o)?;
                o.opt_s("drive", drive)
                    .s("id", format!("virtio-disk{index}"))
            }
            "ide" => {
                if self.family == Family::Q35 {
                    return Err(unsupported(
                        "IDE controllers are unsupported for this QEMU binary or machine type",
                    ));
                }
                let (b, u) = (
                    a("bus").unwrap_or(u64::from(index / 2)),
                    a("unit").unwrap_or(u64::from(index % 2)),
                );
                if b > 1 || u > 1 {
                    return Err(unsupported(format!("IDE disk '{target}' has no free slot")));
                }
                Obj::new()
                    .s("driver", kind)
                    .s("bus", format!("ide.{b}"))
                    .n("unit", u)
                    .opt_s("drive", drive)
                    .s("id", format!("ide0-{b}-{u}"))
            }
            "sata" => {
                let u = a("unit").unwrap_or(u64::from(index));
                if u > 5 {
                    return Err(unsupported(format!(
                        "SATA disk '{target}' has no free port"
                    )));
                }
                let bus = match self.family {
                    Family::Q35 => format!("ide.{u}"),
                    Family::Pc => {
                        if !self.has_sata_controller {
                            self.device(Obj::new().s("driver", "ahci").s("id", "sata0"));
                            self.has_sata_controller = true;
                        }
                        format!("sata0.{u}")
                    }
                };
                Obj::new()
                    .s("driver", kind)
                    .s("bus", bus)
                    .opt_s("drive", drive)
                    .s("id", format!("sata0-0-{u}"))
            }
            "scsi" => {
                let ctl = a("controller").unwrap_or(0);
                if !self.scsi_controllers.contains(&ctl) {
                    // libvirt adds the controller a SCSI disk refers to; its default
                    // model for x86 is lsilogic, ours is virtio-scsi.
                    self.device(
                        Obj::new()
                            .s("driver", "virtio-scsi-pci")
                            .s("id", format!("scsi{ctl}")),
                    );
                    self.scsi_controllers.push(ctl);
                }
                let (b, t, u) = (
                    a("bus").unwrap_or(0),
                    a("target").unwrap_or(0),
                    a("unit").unwrap_or(u64::from(index)),
                );
                let drv = if cdrom { "scsi-cd" } else { "scsi-hd" };
                Obj::new()
                    .s("driver", drv)
                    .s("bus", format!("scsi{ctl}.0"))
                    .n("channel", b)
                    .n("scsi-id", t)
                    .n("lun", u)
                    .s("device_id", format!("drive-scsi{ctl}-{b}-{t}-{u}"))
                    .opt_s("drive", drive)
                    .s("id", format!("scsi{ctl}-{b}-{t}-{u}"))
            }
            other => return Err(value_unsupported("disk bus", other)),
        };
        if share {
            o = o.b("share-rw", true);
        }
        if cache.is_some() && has_drive {
            o = o.s("write-cache", if write_cache { "on" } else { "off" });
        }
        o = o.opt_s("serial", serial).opt_n("bootindex", boot);
        self.disk_aliases.push(DiskAlias {
            target,
            device_id: o.get_str("id").unwrap_or_default(),
            storage_node: path.as_ref().map(|_| format!("libvirt-{node}-storage")),
            format_node: drive_for_alias,
        });
        self.device(o);
        Ok(())
    }

    fn interface(&mut self, e: &Element, i: usize) -> VirResult<()> {
        for c in e.elements() {
            match c.name.as_str() {
                "mac" | "source" | "model" | "target" | "boot" | "address" | "alias" | "rom"
                | "link" => {}
                other => return Err(element_unsupported(&format!("interface/{other}"))),
            }
        }
        let itype = e.attr("type").unwrap_or("");
        let netdev_id = format!("hostnet{i}");
        let netdev = match itype {
            "user" => Obj::new().s("type", "user").s("id", netdev_id.clone()),
            "bridge" | "ethernet" => {
                let Some(tap) = e.path_attr(&["target"], "dev") else {
                    return Err(unsupported(format!(
                        "interface type '{itype}' needs a tap device name in <target dev='...'/>"
                    )));
                };
                Obj::new()
                    .s("type", "tap")
                    .s("ifname", tap)
                    .s("script", "no")
                    .s("downscript", "no")
                    .s("id", netdev_id.clone())
            }
            other => return Err(value_unsupported("interface type", other)),
        };
        self.dev("-netdev", netdev.render());
        let model = e.path_attr(&["model"], "type").unwrap_or("rtl8139");
        let driver = match model {
            "virtio" => "virtio-net-pci",
            "e1000" => "e1000",
            "e1000e" => "e1000e",
            "rtl8139" => "rtl8139",
            other => return Err(value_unsupported("interface model", other)),
        };
        let mut o = Obj::new()
            .s("driver", driver)
            .s("netdev", netdev_id)
            .s("id", format!("net{i}"));
        if let Some(mac) = e.path_attr(&["mac"], "address") {
            o = o.s("mac", mac);
        }
        o = self.pci_address(e, o)?;
        if let Some(rom) = e.child("rom") {
            if yes(rom.attr("enabled")) == Some(false) || yes(rom.attr("bar")) == Some(false) {
                o = o.s("romfile", "");
            } else if let Some(f) = rom.attr("file") {
                o = o.s("romfile", f);
            }
        }
        if let Some(b) = self.boot_index(e, BootKind::Net) {
            o = o.n("bootindex", b);
        }
        self.device(o);
        if let Some(l) = e.child("link")
            && l.attr("state") == Some("down")
        {
            return Err(unsupported(
                "<link state='down'/> is not supported by vireo's qemu driver",
            ));
        }
        Ok(())
    }

    /// `-chardev` backend for a character device; `id` is its chardev id, `default_sock`
    /// the socket path used for a unix source without a path.
    fn chardev(&mut self, e: &Element, id: &str, default_sock: &str) -> VirResult<()> {
        let t = e.attr("type").unwrap_or("pty");
        let src = e.child("source");
        let sattr = |n: &str| src.and_then(|s| s.attr(n));
        let mut spec = match t {
            "pty" => format!("pty,id={id}"),
            "null" => format!("null,id={id}"),
            "file" => {
                let Some(p) = sattr("path") else {
                    return Err(unsupported(format!(
                        "character device '{id}' of type 'file' needs a source path"
                    )));
                };
                let mut s = format!("file,id={id},path={}", opt_escape(p));
                if let Some(a) = yes(sattr("append")) {
                    let _ = write!(s, ",append={}", if a { "on" } else { "off" });
                }
                s
            }
            "unix" => {
                let p = match sattr("path") {
                    Some(p) => p.to_string(),
                    None => path_str(&self.ctx.domain_dir.join(default_sock)),
                };
                let mut s = format!("socket,id={id},path={}", opt_escape(&p));
                if sattr("mode").unwrap_or("bind") == "bind" {
                    s.push_str(",server=on,wait=off");
                }
                s
            }
            "tcp" => {
                let host = sattr("host").unwrap_or("127.0.0.1");
                let Some(port) = sattr("service") else {
                    return Err(unsupported(format!(
                        "character device '{id}' of type 'tcp' needs a source service"
                    )));
                };
                let mut s = format!(
                    "socket,id={id},host={},port={}",
                    opt_escape(host),
                    opt_escape(port)
                );
                if sattr("mode").unwrap_or("bind") == "bind" {
                    s.push_str(",server=on,wait=off");
                }
                if e.path_attr(&["protocol"], "type") == Some("telnet") {
                    s.push_str(",telnet=on");
                }
                s
            }
            other => return Err(value_unsupported("character device type", other)),
        };
        if let Some(log) = e.child("log")
            && let Some(f) = log.attr("file")
        {
            let _ = write!(spec, ",logfile={}", opt_escape(f));
            if let Some(a) = yes(log.attr("append")) {
                let _ = write!(spec, ",logappend={}", if a { "on" } else { "off" });
            }
        }
        for c in e.elements() {
            match c.name.as_str() {
                "source" | "target" | "log" | "alias" | "address" | "protocol" => {}
                other => return Err(element_unsupported(&format!("{}/{other}", e.name))),
            }
        }
        self.dev("-chardev", spec);
        Ok(())
    }

    fn serials_and_consoles(&mut self, devices: &Element) -> VirResult<()> {
        let serials: Vec<&Element> = devices.children_named("serial").collect();
        let mut emitted = 0usize;
        for (i, s) in serials.iter().enumerate() {
            self.serial(s, i)?;
            emitted += 1;
        }
        for (ci, c) in devices.children_named("console").enumerate() {
            let ttype = c.path_attr(&["target"], "type").unwrap_or("serial");
            match ttype {
                "serial" => {
                    if ci == 0 && !serials.is_empty() {
                        // The first console is an alias of the first serial port.
                        continue;
                    }
                    if ci == 0 {
                        // libvirt turns a lone serial console into serial port 0.
                        self.serial(c, emitted)?;
                        emitted += 1;
                        continue;
                    }
                    return Err(unsupported(
                        "only the first console may have target type 'serial'",
                    ));
                }
                "virtio" => {
                    let id = format!("charconsole{ci}");
                    self.chardev(c, &id, &format!("console{ci}.sock"))?;
                    let bus = self.ensure_virtio_serial();
                    let nr = self.next_vserial_port(None, 0);
                    self.device(
                        Obj::new()
                            .s("driver", "virtconsole")
                            .s("bus", format!("virtio-serial{bus}.0"))
                            .n("nr", nr)
                            .s("chardev", id)
                            .s("id", format!("console{ci}")),
                    );
                }
                other => return Err(value_unsupported("console target type", other)),
            }
        }
        Ok(())
    }

    /// A virtio-serial port number: the one asked for, else the lowest free one
    /// (port 0 is where QEMU expects a console, so channels start at 1).
    fn next_vserial_port(&mut self, wanted: Option<u64>, min: u64) -> u64 {
        let port = wanted.unwrap_or_else(|| {
            let mut p = min;
            while self.vserial_ports.contains(&p) {
                p += 1;
            }
            p
        });
        self.vserial_ports.push(port);
        port
    }

    fn ensure_virtio_serial(&mut self) -> usize {
        match self.virtio_serial {
            Some(i) => i,
            None => {
                self.device(
                    Obj::new()
                        .s("driver", "virtio-serial-pci")
                        .s("id", "virtio-serial0"),
                );
                self.virtio_serial = Some(0);
                0
            }
        }
    }

    fn serial(&mut self, e: &Element, i: usize) -> VirResult<()> {
        if let Some(t) = e.child("target") {
            match t.attr("type") {
                None | Some("isa-serial") | Some("serial") => {}
                Some(other) => return Err(value_unsupported("serial target type", other)),
            }
            if let Some(m) = t.child("model").and_then(|m| m.attr("name"))
                && m != "isa-serial"
            {
                return Err(value_unsupported("serial target model", m));
            }
        }
        let port = e
            .path_attr(&["target"], "port")
            .and_then(parse_num)
            .unwrap_or(i as u64);
        if port > 3 {
            return Err(unsupported(format!(
                "serial port {port} is out of range (0-3)"
            )));
        }
        let id = format!("charserial{i}");
        self.chardev(e, &id, &format!("serial{i}.sock"))?;
        self.device(
            Obj::new()
                .s("driver", "isa-serial")
                .s("chardev", id)
                .s("id", format!("serial{i}"))
                .n("index", port),
        );
        Ok(())
    }

    fn channels(&mut self, devices: &Element) -> VirResult<()> {
        for (i, c) in devices.children_named("channel").enumerate() {
            let target = c.child("target");
            if target.and_then(|t| t.attr("type")) != Some("virtio") {
                return Err(value_unsupported(
                    "channel target type",
                    target.and_then(|t| t.attr("type")).unwrap_or(""),
                ));
            }
            let name = target.and_then(|t| t.attr("name"));
            let id = format!("charchannel{i}");
            let sock = name
                .map(str::to_string)
                .unwrap_or_else(|| format!("channel{i}.sock"));
            self.chardev(c, &id, &sock)?;
            let bus = self.ensure_virtio_serial();
            let wanted = c
                .child("address")
                .filter(|a| a.attr("type") == Some("virtio-serial"))
                .and_then(|a| attr_num(a, "port"));
            let nr = self.next_vserial_port(wanted, 1);
            self.device(
                Obj::new()
                    .s("driver", "virtserialport")
                    .s("bus", format!("virtio-serial{bus}.0"))
                    .n("nr", nr)
                    .s("chardev", id)
                    .s("id", format!("channel{i}"))
                    .opt_s("name", name),
            );
        }
        Ok(())
    }

    fn input(&mut self, e: &Element, i: usize) -> VirResult<()> {
        let t = e.attr("type").unwrap_or("");
        let bus = e.attr("bus").unwrap_or("ps2");
        let driver = match (t, bus) {
            ("mouse" | "keyboard", "ps2") => return Ok(()),
            ("tablet", "usb") => "usb-tablet",
            ("mouse", "usb") => "usb-mouse",
            ("keyboard", "usb") => "usb-kbd",
            ("tablet", "virtio") => "virtio-tablet-pci",
            ("mouse", "virtio") => "virtio-mouse-pci",
            ("keyboard", "virtio") => "virtio-keyboard-pci",
            _ => {
                return Err(value_unsupported(
                    "input device",
                    &format!("{t} on bus {bus}"),
                ));
            }
        };
        let mut o = Obj::new().s("driver", driver).s("id", format!("input{i}"));
        if bus == "usb" {
            o = o.s("bus", "usb.0");
        } else {
            o = self.pci_address(e, o)?;
        }
        self.device(o);
        Ok(())
    }

    /// `<audio type='none'>`, which libvirt adds to every guest's definition, is a null
    /// audio backend (`-audiodev` with driver `none`, as libvirt passes it); no sound
    /// device uses it here. Other backends are refused.
    fn audio(&mut self, a: &Element) -> VirResult<()> {
        match a.attr("type").unwrap_or("") {
            "none" => {}
            other => return Err(value_unsupported("audio type", other)),
        }
        let id = attr_num(a, "id").unwrap_or(1);
        let o = Obj::new().s("id", format!("audio{id}")).s("driver", "none");
        self.dev("-audiodev", o.render());
        Ok(())
    }

    fn graphics(&mut self, g: &Element) -> VirResult<()> {
        let t = g.attr("type").unwrap_or("");
        if t != "vnc" {
            return Err(value_unsupported("graphics type", t));
        }
        if self.def.graphics().len() > 1 {
            return Err(unsupported("only one graphics device is supported"));
        }
        let listen_el = g.child("listen");
        let listen_type = listen_el.and_then(|l| l.attr("type")).unwrap_or("address");
        let mut spec = match listen_type {
            "none" => "none".to_string(),
            "socket" => {
                let p = listen_el
                    .and_then(|l| l.attr("socket"))
                    .or(g.attr("socket"))
                    .map(str::to_string)
                    .unwrap_or_else(|| path_str(&self.ctx.domain_dir.join("vnc.sock")));
                format!("unix:{}", opt_escape(&p))
            }
            "address" | "network" => {
                let addr = g
                    .attr("listen")
                    .or_else(|| listen_el.and_then(|l| l.attr("address")))
                    .unwrap_or("127.0.0.1");
                let addr = if addr.contains(':') {
                    format!("[{addr}]")
                } else {
                    addr.to_string()
                };
                let port = g.attr("port").and_then(|p| p.trim().parse::<i64>().ok());
                let auto = yes(g.attr("autoport")).unwrap_or(port.is_none_or(|p| p < 0));
                match (auto, port) {
                    (false, Some(p)) if p >= 5900 => format!("{addr}:{}", p - 5900),
                    (false, Some(p)) => {
                        return Err(unsupported(format!("VNC port {p} is below 5900")));
                    }
                    // QEMU takes the first free display from 0 up to 'to'.
                    _ => format!("{addr}:0,to=99"),
                }
            }
            other => return Err(value_unsupported("graphics listen type", other)),
        };
        if g.has_attr("passwd") {
            // The password itself is set over QMP (set_password) after start.
            spec.push_str(",password=on");
        }
        if let Some(k) = g.attr("keymap") {
            self.pair("-k", k);
        }
        self.dev("-vnc", spec);
        Ok(())
    }

    fn video(&mut self, v: &Element, i: usize) -> VirResult<()> {
        let model = v.path_attr(&["model"], "type").unwrap_or("cirrus");
        let driver = match model {
            "none" => return Ok(()),
            "vga" => "VGA",
            "cirrus" => "cirrus-vga",
            "virtio" => {
                if i == 0 {
                    "virtio-vga"
                } else {
                    "virtio-gpu-pci"
                }
            }
            "bochs" => "bochs-display",
            other => return Err(value_unsupported("video model", other)),
        };
        let o = Obj::new().s("driver", driver).s("id", format!("video{i}"));
        let o = self.pci_address(v, o)?;
        self.device(o);
        Ok(())
    }

    fn rng(&mut self, r: &Element, i: usize) -> VirResult<()> {
        if r.attr("model").unwrap_or("virtio") != "virtio" {
            return Err(value_unsupported(
                "rng model",
                r.attr("model").unwrap_or(""),
            ));
        }
        let backend = r.child("backend");
        let obj_id = format!("objrng{i}");
        let obj = match backend.and_then(|b| b.attr("model")).unwrap_or("random") {
            "random" => {
                let file = backend
                    .map(|b| b.text().trim().to_string())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "/dev/urandom".to_string());
                Obj::new()
                    .s("qom-type", "rng-random")
                    .s("id", obj_id.clone())
                    .s("filename", file)
            }
            "builtin" => Obj::new()
                .s("qom-type", "rng-builtin")
                .s("id", obj_id.clone()),
            other => return Err(value_unsupported("rng backend model", other)),
        };
        self.dev("-object", obj.render());
        let mut o = Obj::new()
            .s("driver", "virtio-rng-pci")
            .s("rng", obj_id)
            .s("id", format!("rng{i}"));
        o = self.pci_address(r, o)?;
        self.device(o);
        Ok(())
    }

    fn panic(&mut self, p: &Element) -> VirResult<()> {
        match p.attr("model").unwrap_or("isa") {
            "isa" => {
                let mut o = Obj::new().s("driver", "pvpanic");
                if let Some(a) = p.child("address")
                    && let Some(io) = attr_num(a, "iobase")
                {
                    o = o.n("ioport", io);
                }
                self.device(o);
            }
            "pvpanic" => {
                let o = Obj::new().s("driver", "pvpanic-pci");
                let o = self.pci_address(p, o)?;
                self.device(o);
            }
            other => return Err(value_unsupported("panic model", other)),
        }
        Ok(())
    }
}

fn smp(def: &DomainDef) -> VirResult<String> {
    let max = def.vcpus();
    let cur = def.current_vcpus();
    if max == 0 {
        return Err(unsupported("a domain needs at least one vcpu"));
    }
    let topo = def.element().path(&["cpu", "topology"]);
    let t = |n: &str| topo.and_then(|t| attr_num(t, n));
    let (sockets, dies, cores, threads) = match topo {
        Some(_) => (
            t("sockets").unwrap_or(1),
            t("dies").unwrap_or(1),
            t("cores").unwrap_or(1),
            t("threads").unwrap_or(1),
        ),
        None => (u64::from(max), 1, 1, 1),
    };
    if sockets * dies * cores * threads != u64::from(max) {
        return Err(unsupported("CPU topology doesn't match maximum vcpu count"));
    }
    let mut s = cur.to_string();
    if cur != max {
        let _ = write!(s, ",maxcpus={max}");
    }
    let _ = write!(s, ",sockets={sockets}");
    if dies != 1 {
        let _ = write!(s, ",dies={dies}");
    }
    let _ = write!(s, ",cores={cores},threads={threads}");
    Ok(s)
}

/// The QEMU names of one `<disk>`, for QMP commands after start (`query-block`,
/// `block_resize`, `blockdev-change-medium`, `eject`, block jobs, statistics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskAlias {
    /// `<target dev>` (`vda`, `hdc`, ...).
    pub target: String,
    /// The `-device` id (libvirt's alias: `virtio-disk0`, `ide0-1-0`, `sata0-0-2`,
    /// `scsi0-0-0-1`); QMP's `qdev`/`id` for the disk.
    pub device_id: String,
    /// The protocol (`file`/`host_device`/`host_cdrom`) node, `libvirt-N-storage`;
    /// `None` for an empty CD-ROM.
    pub storage_node: Option<String>,
    /// The format (`raw`/`qcow2`) node the device is attached to, `libvirt-N-format`
    /// with N the disk's 1-based position among `<disk>` elements; `None` for an empty
    /// CD-ROM.
    pub format_node: Option<String>,
}

/// Translates `<devices>` alone and hands the builder to `take` (for what it learnt).
fn after_devices<T>(def: &DomainDef, take: impl FnOnce(Builder<'_>) -> T) -> VirResult<T> {
    validate(def)?;
    let ctx = dummy_ctx();
    let mut b = Builder::new(def, &ctx)?;
    b.devices()?;
    Ok(take(b))
}

/// The QEMU names [`build_command`] gives each disk, in `<disk>` order.
pub fn disk_aliases(def: &DomainDef) -> VirResult<Vec<DiskAlias>> {
    after_devices(def, |b| b.disk_aliases)
}

/// A PCI device the command line leaves QEMU to place: it has no `<address
/// type='pci'>` in the definition, or is one libvirt adds to every definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoPlaced {
    /// The `-device` id (`balloon0`, `net0`, `virtio-disk0`, `video0`, ...): QMP
    /// `query-pci`'s `qdev_id`.
    pub id: String,
    /// What in the definition it stands for.
    pub origin: Origin,
}

/// Where an [`AutoPlaced`] device comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The child element of `<devices>` at this position (elements only).
    Element(usize),
    /// A device libvirt adds when the definition names none: `memballoon` (a virtio
    /// balloon) or `video` (cirrus, for a guest with graphics).
    Added(&'static str),
}

/// The PCI devices [`build_command`] leaves QEMU to place, in `-device` order. QEMU
/// puts each on the root bus, in the first free slot.
pub fn auto_placed(def: &DomainDef) -> VirResult<Vec<AutoPlaced>> {
    after_devices(def, |b| b.auto_pci)
}

/// The definition with the places QEMU chose for its [`AutoPlaced`] devices written in,
/// as libvirt writes the addresses it assigns: an `<address type='pci'>` on the root
/// bus (`slots` maps a `-device` id to its slot and function there), and the devices
/// libvirt adds spelled out with theirs. Devices `slots` does not know are left as they
/// are. `None` when nothing changes.
///
/// Why: a save image carries the definition, and whoever restores it (libvirtd too)
/// builds the guest from it; without the addresses it may lay the devices out
/// differently and QEMU refuses the stream.
pub fn with_pci_addresses(
    def: &DomainDef,
    placed: &[AutoPlaced],
    slots: &HashMap<String, (u64, u64)>,
) -> Option<DomainDef> {
    let mut out = def.clone();
    let mut changed = false;
    let address = |(slot, function): (u64, u64)| {
        let mut a = Element::new("address");
        a.set_attr("type", "pci")
            .set_attr("domain", "0x0000")
            .set_attr("bus", "0x00")
            .set_attr("slot", format!("0x{slot:02x}"))
            .set_attr("function", format!("0x{function:x}"));
        a
    };
    for p in placed {
        let Some(&at) = slots.get(&p.id) else {
            continue;
        };
        let devices = out.element_mut().ensure_child("devices");
        match p.origin {
            Origin::Element(i) => {
                if let Some(e) = devices.elements_mut().nth(i)
                    && e.child("address").is_none()
                {
                    e.push_child(address(at));
                    changed = true;
                }
            }
            Origin::Added(what) => {
                let mut e = Element::new(what);
                if what == "video" {
                    let mut m = Element::new("model");
                    m.set_attr("type", "cirrus");
                    e.push_child(m);
                } else {
                    e.set_attr("model", "virtio");
                }
                e.push_child(address(at));
                devices.push_child(e);
                changed = true;
            }
        }
    }
    changed.then_some(out)
}

/// Builds the QEMU command line for a domain (after [`validate`]).
pub fn build_command(def: &DomainDef, ctx: &LaunchContext) -> VirResult<QemuCommand> {
    validate(def)?;
    let program = emulator_of(def)
        .map(PathBuf::from)
        .unwrap_or_else(|| ctx.emulator.clone());
    let args = Builder::new(def, ctx)?.build()?;
    Ok(QemuCommand { program, args })
}

/// Host checks before a start: disk images exist and can be read, `/dev/kvm` exists
/// for `type='kvm'`. Errors use libvirt's codes and wording.
pub fn preflight(def: &DomainDef) -> VirResult<()> {
    if def.domain_type() == "kvm" && !Path::new("/dev/kvm").exists() {
        let emulator = emulator_of(def).unwrap_or_else(|| DEFAULT_EMULATOR.to_string());
        return Err(unsupported(format!(
            "Emulator '{emulator}' does not support virt type 'kvm'"
        )));
    }
    let (uid, gid) = process_ids();
    for d in def.disks() {
        let Some(path) = d.source_file.clone().or(d.source_dev.clone()) else {
            continue;
        };
        if let Err(e) = std::fs::File::open(&path) {
            return Err(VirError::system(
                ErrorDomain::Storage,
                format!("Cannot access storage file '{path}' (as uid:{uid}, gid:{gid})"),
                &e,
            ));
        }
        // Follow a qcow2 backing chain the way QEMU will open it.
        let mut current = PathBuf::from(&path);
        for _ in 0..MAX_BACKING_DEPTH {
            let Some(backing) = qcow2_backing(&current) else {
                break;
            };
            let resolved = match current.parent() {
                Some(dir) if backing.is_relative() => dir.join(&backing),
                _ => backing,
            };
            if let Err(e) = std::fs::File::open(&resolved) {
                return Err(VirError::system(
                    ErrorDomain::Storage,
                    format!(
                        "Cannot access backing file '{}' of storage file '{path}' (as uid:{uid}, gid:{gid})",
                        resolved.display()
                    ),
                    &e,
                ));
            }
            current = resolved;
        }
    }
    Ok(())
}

/// How deep [`preflight`] follows backing chains (libvirt's limit is 200).
const MAX_BACKING_DEPTH: usize = 200;

/// The backing file name recorded in a qcow2 header, if the file is qcow2 and has one
/// (header: magic `QFI\xfb`, backing_file_offset u64 BE at 8, backing_file_size u32 BE
/// at 16).
fn qcow2_backing(path: &Path) -> Option<PathBuf> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = [0u8; 20];
    f.read_exact(&mut h).ok()?;
    if h[..4] != *b"QFI\xfb" {
        return None;
    }
    let offset = u64::from_be_bytes(h[8..16].try_into().ok()?);
    let size = u32::from_be_bytes(h[16..20].try_into().ok()?);
    if offset == 0 || size == 0 || size > 1023 {
        return None;
    }
    f.seek(SeekFrom::Start(offset)).ok()?;
    let mut name = vec![0u8; size as usize];
    f.read_exact(&mut name).ok()?;
    let name = String::from_utf8(name).ok()?;
    // "json:{...}" and protocol URLs are not files we can check.
    if name.starts_with("json:") || name.contains("://") {
        return None;
    }
    Some(PathBuf::from(name))
}

fn process_ids() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| (m.uid(), m.gid()))
        .unwrap_or((0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};
    use vireo_messages::ErrorCode;

    fn data_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/qemuxml2argv")
    }

    /// The fixed context every `.args` file was generated with.
    fn fixed_ctx(name: &str) -> LaunchContext {
        LaunchContext {
            emulator: PathBuf::from("/usr/bin/qemu-system-x86_64"),
            qmp_socket: PathBuf::from(format!("/run/vireo/qemu/{name}/qmp.sock")),
            domain_dir: PathBuf::from(format!("/run/vireo/qemu/{name}")),
            incoming: name.starts_with("restore").then(|| "defer".to_string()),
        }
    }

    fn render(cmd: &QemuCommand) -> String {
        let mut out = path_str(&cmd.program);
        out.push('\n');
        for a in &cmd.args {
            out.push_str(a);
            out.push('\n');
        }
        out
    }

    /// A line diff (longest common subsequence), `-` expected, `+` actual.
    fn diff(expected: &str, actual: &str) -> String {
        let a: Vec<&str> = expected.lines().collect();
        let b: Vec<&str> = actual.lines().collect();
        let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
        for i in (0..a.len()).rev() {
            for j in (0..b.len()).rev() {
                lcs[i][j] = if a[i] == b[j] {
                    lcs[i + 1][j + 1] + 1
                } else {
                    lcs[i + 1][j].max(lcs[i][j + 1])
                };
            }
        }
        let (mut i, mut j, mut out) = (0, 0, String::new());
        while i < a.len() || j < b.len() {
            if i < a.len() && j < b.len() && a[i] == b[j] {
                out.push_str(&format!("  {}\n", a[i]));
                i += 1;
                j += 1;
            } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
                out.push_str(&format!("+ {}\n", b[j]));
                j += 1;
            } else {
                out.push_str(&format!("- {}\n", a[i]));
                i += 1;
            }
        }
        out
    }

    /// Every `testdata/qemuxml2argv/NAME.xml` against `NAME.args` (expected argv, one
    /// per line, program first) or `NAME.err` (expected error message). Set
    /// `VIREO_REGENERATE_ARGV=1` to (re)write the `.args` files from the current code.
    #[test]
    fn xml2argv_table() {
        let regenerate = std::env::var_os("VIREO_REGENERATE_ARGV").is_some();
        let mut names: Vec<String> = std::fs::read_dir(data_dir())
            .unwrap()
            .filter_map(|e| {
                let p = e.unwrap().path();
                (p.extension()? == "xml")
                    .then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
            })
            .collect();
        names.sort();
        assert!(names.len() >= 30, "only {} cases found", names.len());
        let mut failures = Vec::new();
        let (mut ok_cases, mut err_cases) = (0, 0);
        for name in &names {
            let dir = data_dir();
            let xml = std::fs::read_to_string(dir.join(format!("{name}.xml"))).unwrap();
            let def = match DomainDef::parse(&xml) {
                Ok(d) => d,
                Err(e) => {
                    failures.push(format!("{name}: XML does not parse: {}", e.message));
                    continue;
                }
            };
            let result = build_command(&def, &fixed_ctx(name));
            let err_path = dir.join(format!("{name}.err"));
            if err_path.exists() {
                err_cases += 1;
                let want = std::fs::read_to_string(&err_path).unwrap();
                match result {
                    Ok(cmd) => failures.push(format!(
                        "{name}: expected error '{}', got argv {}",
                        want.trim(),
                        cmd.display()
                    )),
                    Err(e) if e.message != want.trim() => failures.push(format!(
                        "{name}: expected error '{}', got '{}'",
                        want.trim(),
                        e.message
                    )),
                    Err(e) => {
                        // Errors that reach a client carry libvirt's codes.
                        let code_ok =
                            matches!(e.code, ErrorCode::ConfigUnsupported | ErrorCode::XmlError);
                        if !code_ok {
                            failures.push(format!("{name}: unexpected code {:?}", e.code));
                        }
                        // validate() alone reports the same error.
                        if validate(&def).err().map(|e| e.message) != Some(e.message.clone()) {
                            failures.push(format!("{name}: validate() disagrees"));
                        }
                    }
                }
                continue;
            }
            ok_cases += 1;
            let args_path = dir.join(format!("{name}.args"));
            let actual = match result {
                Ok(cmd) => render(&cmd),
                Err(e) => {
                    failures.push(format!("{name}: unexpected error: {}", e.message));
                    continue;
                }
            };
            if regenerate {
                std::fs::write(&args_path, &actual).unwrap();
                continue;
            }
            match std::fs::read_to_string(&args_path) {
                Ok(want) if want == actual => {}
                Ok(want) => {
                    failures.push(format!("{name}: argv differs:\n{}", diff(&want, &actual)))
                }
                Err(_) => failures.push(format!(
                    "{name}: {} missing; actual:\n{actual}",
                    args_path.display()
                )),
            }
        }
        assert!(
            ok_cases >= 15 && err_cases >= 8,
            "{ok_cases} argv cases, {err_cases} error cases"
        );
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }

    const MACHINE_HELP: &str = "Supported machines are:\n\
        microvm              microvm (i386)\n\
        pc-i440fx-9.2        Standard PC (i440FX + PIIX, 1996)\n\
        pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-10.0)\n\
        pc-i440fx-10.0       Standard PC (i440FX + PIIX, 1996) (default)\n\
        pc-q35-2.4           Standard PC (Q35 + ICH9, 2009) (deprecated)\n\
        q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-10.0)\n\
        pc-q35-10.0          Standard PC (Q35 + ICH9, 2009)\n\
        none                 empty machine\n";

    #[test]
    fn machine_help_is_parsed() {
        let m = parse_machine_help(MACHINE_HELP);
        assert_eq!(
            m,
            [
                "microvm",
                "pc-i440fx-9.2",
                "pc",
                "pc-i440fx-10.0",
                "pc-q35-2.4",
                "q35",
                "pc-q35-10.0",
                "none"
            ]
        );
        assert_eq!(
            parse_machine_aliases(MACHINE_HELP),
            [
                ("pc".to_string(), "pc-i440fx-10.0".to_string()),
                ("q35".to_string(), "pc-q35-10.0".to_string())
            ]
        );
        // An alias whose target is not listed on its own line still counts.
        assert_eq!(parse_machine_help("x   y (alias of z)\n"), ["x", "z"]);
    }

    fn def_of(xml: &str) -> DomainDef {
        DomainDef::parse(xml).unwrap()
    }

    #[test]
    fn unknown_machine_is_rejected_like_libvirt() {
        let supported = parse_machine_help(MACHINE_HELP);
        let ok = def_of(
            "<domain type='qemu'><name>a</name><memory>1024</memory><os><type machine='pc-q35-10.0'>hvm</type></os></domain>",
        );
        check_machine(&ok, &supported).unwrap();
        let no_machine = def_of(
            "<domain type='qemu'><name>a</name><memory>1024</memory><os><type>hvm</type></os></domain>",
        );
        check_machine(&no_machine, &supported).unwrap();
        let bad = def_of(
            "<domain type='qemu'><name>a</name><memory>1024</memory><os><type machine='pc-i440fx-1.0'>hvm</type></os><devices><emulator>/opt/qemu</emulator></devices></domain>",
        );
        let e = check_machine(&bad, &supported).unwrap_err();
        assert_eq!(
            (e.code, e.domain),
            (ErrorCode::ConfigUnsupported, ErrorDomain::Qemu)
        );
        assert_eq!(
            e.message,
            "unsupported configuration: Emulator '/opt/qemu' does not support machine type 'pc-i440fx-1.0'"
        );
    }

    #[test]
    fn preflight_reports_missing_disks_and_backing_files() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("present.img");
        std::fs::write(&present, [0u8; 512]).unwrap();
        let missing = dir.path().join("missing.qcow2");
        let xml = |p: &Path| {
            format!(
                "<domain type='qemu'><name>a</name><memory>1024</memory><os><type>hvm</type></os><devices>\
                 <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/></disk>\
                 <disk type='file'><source file='{}'/><target dev='vda'/></disk></devices></domain>",
                p.display()
            )
        };
        preflight(&def_of(&xml(&present))).unwrap();
        // A qcow2 overlay whose backing file went away.
        let base = dir.path().join("base.qcow2");
        let overlay = dir.path().join("overlay.qcow2");
        let img = |args: &[&str]| {
            let ok = Command::new("qemu-img")
                .args(args)
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                ok || std::env::var("CI").as_deref() != Ok("true"),
                "qemu-img failed"
            );
            ok
        };
        if img(&["create", "-q", "-f", "qcow2", base.to_str().unwrap(), "1M"])
            && img(&[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-b",
                "base.qcow2",
                "-F",
                "qcow2",
                overlay.to_str().unwrap(),
            ])
        {
            preflight(&def_of(&xml(&overlay))).unwrap();
            std::fs::remove_file(&base).unwrap();
            let e = preflight(&def_of(&xml(&overlay))).unwrap_err();
            let (uid, gid) = process_ids();
            assert_eq!(
                e.message,
                format!(
                    "Cannot access backing file '{}' of storage file '{}' (as uid:{uid}, gid:{gid}): No such file or directory",
                    base.display(),
                    overlay.display()
                )
            );
        }
        let e = preflight(&def_of(&xml(&missing))).unwrap_err();
        assert_eq!(
            (e.code, e.domain),
            (ErrorCode::SystemError, ErrorDomain::Storage)
        );
        assert_eq!(e.int1, libc::ENOENT);
        let (uid, gid) = process_ids();
        assert_eq!(
            e.message,
            format!(
                "Cannot access storage file '{}' (as uid:{uid}, gid:{gid}): No such file or directory",
                missing.display()
            )
        );
    }

    /// Everything we do not translate is refused with code 67 naming what it is.
    #[test]
    fn rejections_name_what_is_unsupported() {
        let top = |extra: &str, devices: &str| {
            format!(
                "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'><name>r</name><memory>65536</memory>\
                 <os><type arch='x86_64' machine='pc'>hvm</type></os>{extra}<devices>{devices}</devices></domain>"
            )
        };
        let cases: &[(&str, &str, &str)] = &[
            (
                "<maxMemory slots='16'>1048576</maxMemory>",
                "",
                "element 'maxMemory'",
            ),
            (
                "<vcpus><vcpu id='0' enabled='yes'/></vcpus>",
                "",
                "element 'vcpus'",
            ),
            ("<iothreads>1</iothreads>", "", "element 'iothreads'"),
            (
                "<cputune><shares>10</shares></cputune>",
                "",
                "element 'cputune'",
            ),
            ("<sysinfo type='smbios'/>", "", "element 'sysinfo'"),
            ("<x:y xmlns:x='urn:x'/>", "", "element 'x:y'"),
            (
                "<qemu:commandline><qemu:env name='A' value='b'/></qemu:commandline>",
                "",
                "element 'qemu:env'",
            ),
            (
                "<clock offset='variable' adjustment='10'/>",
                "",
                "clock offset 'variable'",
            ),
            (
                "<clock offset='utc'><timer name='kvmclock' present='no'/></clock>",
                "",
                "timer 'kvmclock'",
            ),
            (
                "<cpu mode='custom'><model>qemu64</model><numa><cell id='0' cpus='0' memory='65536'/></numa></cpu>",
                "",
                "element 'cpu/numa'",
            ),
            (
                "<cpu mode='custom'><topology sockets='2' cores='1' threads='1'/></cpu>",
                "",
                "CPU topology doesn't match maximum vcpu count",
            ),
            (
                "<pm><suspend-to-ram/></pm>",
                "",
                "element 'pm/suspend-to-ram'",
            ),
            (
                "",
                "<watchdog model='i6300esb' action='reset'/>",
                "device 'watchdog'",
            ),
            ("", "<tpm model='tpm-crb'/>", "device 'tpm'"),
            (
                "",
                "<disk type='file' device='floppy'><source file='/f.img'/><target dev='fda' bus='fdc'/></disk>",
                "disk device 'floppy'",
            ),
            (
                "",
                "<disk type='file'><source file='/a.img'/><target dev='sda' bus='usb'/></disk>",
                "disk bus 'usb'",
            ),
            (
                "",
                "<disk type='volume'><source pool='p' volume='v'/><target dev='vda'/></disk>",
                "disk type 'volume'",
            ),
            (
                "",
                "<disk type='file'><source file='/a.img'/><target dev='vda'/><iotune><total_bytes_sec>1</total_bytes_sec></iotune></disk>",
                "element 'disk/iotune'",
            ),
            (
                "",
                "<disk type='file'><driver name='qemu' cache='bogus'/><source file='/a.img'/><target dev='vda'/></disk>",
                "disk cache mode 'bogus'",
            ),
            (
                "",
                "<interface type='user'><model type='ne2k_pci'/></interface>",
                "interface model 'ne2k_pci'",
            ),
            (
                "",
                "<interface type='user'><filterref filter='clean-traffic'/></interface>",
                "element 'interface/filterref'",
            ),
            (
                "",
                "<interface type='direct'><source dev='eth0' mode='bridge'/></interface>",
                "interface type 'direct'",
            ),
            (
                "",
                "<serial type='pipe'><source path='/p'/></serial>",
                "character device type 'pipe'",
            ),
            (
                "",
                "<serial type='pty'><target type='pci-serial'/></serial>",
                "serial target type 'pci-serial'",
            ),
            ("", "<serial type='file'/>", "needs a source path"),
            (
                "",
                "<channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>",
                "character device type 'spicevmc'",
            ),
            (
                "",
                "<channel type='unix'><target type='guestfwd' address='10.0.2.1' port='4600'/></channel>",
                "channel target type 'guestfwd'",
            ),
            (
                "",
                "<console type='pty'><target type='sclp'/></console>",
                "console target type 'sclp'",
            ),
            (
                "",
                "<input type='tablet' bus='xen'/>",
                "input device 'tablet on bus xen'",
            ),
            (
                "",
                "<graphics type='vnc'/><graphics type='vnc'/>",
                "only one graphics device",
            ),
            (
                "",
                "<graphics type='vnc' port='5800' autoport='no'/>",
                "VNC port 5800 is below 5900",
            ),
            (
                "",
                "<video><model type='qxl'/></video>",
                "video model 'qxl'",
            ),
            ("", "<memballoon model='xen'/>", "memballoon model 'xen'"),
            (
                "",
                "<rng model='virtio'><backend model='egd' type='tcp'/></rng>",
                "rng backend model 'egd'",
            ),
            ("", "<panic model='hyperv'/>", "panic model 'hyperv'"),
            (
                "",
                "<controller type='ccid' index='0'/>",
                "controller type 'ccid'",
            ),
            (
                "",
                "<controller type='scsi' model='lsilogic'/>",
                "SCSI controller model 'lsilogic'",
            ),
            (
                "",
                "<controller type='usb' model='ich9-ehci1'/>",
                "USB controller model 'ich9-ehci1'",
            ),
            (
                "",
                "<controller type='usb' model='none'/><input type='tablet' bus='usb'/>",
                "needs a USB controller",
            ),
            (
                "",
                "<controller type='pci' index='1' model='pcie-root-port'/>",
                "PCI controller model 'pcie-root-port'",
            ),
        ];
        for (extra, devices, want) in cases {
            let xml = top(extra, devices);
            let def = match DomainDef::parse(&xml) {
                Ok(d) => d,
                Err(e) => panic!("{xml}: {}", e.message),
            };
            let e = validate(&def).expect_err(&xml);
            assert_eq!(e.code, ErrorCode::ConfigUnsupported, "{xml}: {}", e.message);
            assert!(
                e.message.starts_with("unsupported configuration: "),
                "{}",
                e.message
            );
            assert!(
                e.message.contains(want),
                "{xml}\n  got: {}\n want: {want}",
                e.message
            );
            assert_eq!(
                build_command(&def, &fixed_ctx("r")).unwrap_err().message,
                e.message
            );
        }
    }

    #[test]
    fn auto_placed_devices_get_the_addresses_qemu_chose_written_in() {
        let def = def_of(
            "<domain type='qemu'><name>p</name><memory>65536</memory>\
             <os><type arch='x86_64' machine='q35'>hvm</type></os><devices>\
             <interface type='user'><mac address='52:54:00:00:00:01'/><model type='virtio'/></interface>\
             <interface type='user'><mac address='52:54:00:00:00:02'/><model type='virtio'/>\
             <address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/></interface>\
             <serial type='pty'/><graphics type='vnc'/></devices></domain>",
        );
        let placed = auto_placed(&def).unwrap();
        assert_eq!(
            placed,
            [
                AutoPlaced {
                    id: "net0".into(),
                    origin: Origin::Element(0)
                },
                AutoPlaced {
                    id: "video0".into(),
                    origin: Origin::Added("video")
                },
                AutoPlaced {
                    id: "balloon0".into(),
                    origin: Origin::Added("memballoon")
                },
            ]
        );
        // What QEMU reported (query-pci); video0 deliberately missing.
        let slots: HashMap<String, (u64, u64)> = [
            ("net0".to_string(), (1, 0)),
            ("balloon0".to_string(), (2, 0)),
        ]
        .into();
        let placed_def = with_pci_addresses(&def, &placed, &slots).unwrap();
        let devices = placed_def.devices().unwrap();
        let nic = devices.children_named("interface").next().unwrap();
        assert_eq!(nic.path_attr(&["address"], "slot"), Some("0x01"));
        assert_eq!(nic.path_attr(&["address"], "bus"), Some("0x00"));
        let balloon = devices.child("memballoon").unwrap();
        assert_eq!(balloon.attr("model"), Some("virtio"));
        assert_eq!(balloon.path_attr(&["address"], "slot"), Some("0x02"));
        assert!(
            devices.child("video").is_none(),
            "unknown to QEMU: left out"
        );
        // The written definition starts the same devices at the same places, and only
        // what QEMU did not report is still left to it.
        let args = build_command(&placed_def, &fixed_ctx("p")).unwrap().args;
        let dev = |id: &str| {
            args.iter()
                .find(|a| a.contains(&format!("\"id\":\"{id}\"")))
                .cloned()
                .unwrap_or_default()
        };
        assert!(
            dev("net0").contains("\"bus\":\"pcie.0\",\"addr\":\"0x1\""),
            "{}",
            dev("net0")
        );
        assert!(
            dev("balloon0").contains("\"bus\":\"pcie.0\",\"addr\":\"0x2\""),
            "{}",
            dev("balloon0")
        );
        assert_eq!(
            auto_placed(&placed_def).unwrap(),
            [AutoPlaced {
                id: "video0".into(),
                origin: Origin::Added("video")
            }]
        );
        // Nothing to write: no change.
        assert!(with_pci_addresses(&def, &placed, &HashMap::new()).is_none());
    }

    #[test]
    fn disk_aliases_match_the_argv() {
        let xml = std::fs::read_to_string(data_dir().join("disk-block-ide-cdrom.xml")).unwrap();
        let def = def_of(&xml);
        let aliases = disk_aliases(&def).unwrap();
        let ids: Vec<_> = aliases
            .iter()
            .map(|a| (a.target.as_str(), a.device_id.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("hda", "ide0-0-0"),
                ("hdb", "ide0-0-1"),
                ("hdc", "ide0-1-0"),
                ("hdd", "ide0-1-1")
            ]
        );
        assert_eq!(aliases[2].format_node, None);
        assert_eq!(aliases[3].format_node.as_deref(), Some("libvirt-4-format"));
        assert_eq!(
            aliases[3].storage_node.as_deref(),
            Some("libvirt-4-storage")
        );
        let args = build_command(&def, &fixed_ctx("x")).unwrap().args;
        for a in &aliases {
            assert!(
                args.iter()
                    .any(|x| x.contains(&format!("\"id\":\"{}\"", a.device_id)))
            );
            if let Some(f) = &a.format_node {
                assert!(
                    args.iter()
                        .any(|x| x.contains(&format!("\"drive\":\"{f}\"")))
                );
            }
        }
    }

    #[test]
    fn disk_names_map_to_indexes() {
        for (n, i) in [
            ("vda", 0),
            ("hdc", 2),
            ("sdz", 25),
            ("sdaa", 26),
            ("vdab", 27),
            ("xvdb", 1),
        ] {
            assert_eq!(disk_name_to_index(n), Some(i), "{n}");
        }
        for n in ["vd", "nvme0n1", "vda1", "sdA"] {
            assert_eq!(disk_name_to_index(n), None, "{n}");
        }
    }

    #[test]
    fn option_values_with_commas_are_escaped() {
        let def = def_of(
            "<domain type='qemu'><name>a,b</name><memory>1024</memory><os><type>hvm</type></os></domain>",
        );
        let mut ctx = fixed_ctx("x");
        ctx.qmp_socket = PathBuf::from("/tmp/a,b/qmp.sock");
        let cmd = build_command(&def, &ctx).unwrap();
        assert!(
            cmd.args
                .contains(&"guest=a,,b,debug-threads=on".to_string())
        );
        assert!(cmd.args.contains(
            &"socket,id=charmonitor,path=/tmp/a,,b/qmp.sock,server=on,wait=off".to_string()
        ));
        assert!(
            cmd.display().contains("'guest=a,,b,debug-threads=on'")
                || cmd.display().contains("guest=a,,b")
        );
    }

    // ----- against the real QEMU -----

    fn qemu_binary() -> Option<PathBuf> {
        let p = PathBuf::from(DEFAULT_EMULATOR);
        if p.exists() {
            return Some(p);
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "qemu-system-x86_64 is required when CI=true"
        );
        eprintln!("skipping: {DEFAULT_EMULATOR} is not installed");
        None
    }

    #[test]
    fn real_machine_help_lists_pc_and_q35() {
        let Some(qemu) = qemu_binary() else { return };
        let out = Command::new(qemu)
            .args(["-machine", "help"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let machines = parse_machine_help(&String::from_utf8_lossy(&out.stdout));
        for m in ["pc", "q35"] {
            assert!(
                machines.iter().any(|x| x == m),
                "{m} missing from {machines:?}"
            );
        }
        assert!(machines.iter().any(|x| x.starts_with("pc-q35-")));
    }

    struct Running {
        child: Child,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }

    fn qmp_line(r: &mut BufReader<UnixStream>) -> Option<String> {
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line.contains("\"return\"") || line.contains("\"error\"") || line.contains("\"QMP\"")
            {
                return Some(line);
            }
        }
    }

    fn stderr_of(run: &mut Running) -> String {
        let _ = run.child.wait();
        let mut err = String::new();
        if let Some(e) = run.child.stderr.as_mut() {
            let _ = std::io::Read::read_to_string(e, &mut err);
        }
        err
    }

    /// Starts QEMU with the argv built for `xml` and checks it reaches `prelaunch`.
    fn start_and_query(name: &str, xml: &str) {
        let dir = tempfile::tempdir().unwrap();
        for f in ["disk.img", "disk2.img", "cd.iso"] {
            std::fs::write(dir.path().join(f), vec![0u8; 1 << 20]).unwrap();
        }
        let ctx = LaunchContext {
            emulator: PathBuf::from(DEFAULT_EMULATOR),
            qmp_socket: dir.path().join("qmp.sock"),
            domain_dir: dir.path().to_path_buf(),
            incoming: None,
        };
        let xml = xml.replace("@DIR@", &dir.path().display().to_string());
        let def = def_of(&xml);
        preflight(&def).unwrap();
        let cmd = build_command(&def, &ctx).unwrap();
        let err = expect_paused(name, &cmd, &ctx.qmp_socket, "\"prelaunch\"");
        assert!(!err.contains("warning"), "{name}: QEMU warned: {err}");
    }

    /// Runs `cmd`, checks over QMP that QEMU is paused in `status` (a JSON string
    /// literal), quits it, and returns what it printed on stderr.
    fn expect_paused(name: &str, cmd: &QemuCommand, qmp: &Path, status: &str) -> String {
        let child = Command::new(&cmd.program)
            .args(&cmd.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut run = Running { child };
        let deadline = Instant::now() + Duration::from_secs(4);
        let stream = loop {
            if let Ok(s) = UnixStream::connect(qmp) {
                break s;
            }
            if let Ok(Some(st)) = run.child.try_wait() {
                panic!(
                    "{name}: QEMU exited ({st}): {}\nargv: {}",
                    stderr_of(&mut run),
                    cmd.display()
                );
            }
            assert!(Instant::now() < deadline, "{name}: no QMP socket");
            std::thread::sleep(Duration::from_millis(10));
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(4)))
            .unwrap();
        let mut w = stream.try_clone().unwrap();
        let mut r = BufReader::new(stream);
        let greeting = qmp_line(&mut r);
        assert!(
            greeting.as_deref().is_some_and(|g| g.contains("\"QMP\"")),
            "{name}: no greeting: {}\nargv: {}",
            stderr_of(&mut run),
            cmd.display()
        );
        for (cmd_json, want) in [
            ("{\"execute\":\"qmp_capabilities\"}", "\"return\""),
            ("{\"execute\":\"query-status\"}", status),
            ("{\"execute\":\"quit\"}", "\"return\""),
        ] {
            if let Err(e) = writeln!(w, "{cmd_json}") {
                let exit = run.child.wait();
                // Rarely (seen under load) QEMU has already ended with status 0 and
                // closed its monitor by the time `quit` is written; the syntax check
                // (`prelaunch` reached) is done by then, so that counts as quitting.
                if cmd_json.contains("quit") && exit.as_ref().is_ok_and(|s| s.success()) {
                    break;
                }
                panic!(
                    "{name}: cannot send {cmd_json}: {e} (QEMU: {exit:?}): {}\nargv: {}",
                    stderr_of(&mut run),
                    cmd.display()
                );
            }
            let Some(line) = qmp_line(&mut r) else {
                panic!(
                    "{name}: QMP closed: {}\nargv: {}",
                    stderr_of(&mut run),
                    cmd.display()
                );
            };
            assert!(line.contains(want), "{name}: {cmd_json} → {line}");
        }
        let exit = run.child.wait().unwrap();
        assert!(exit.success(), "{name}: QEMU exit {exit}");
        stderr_of(&mut run)
    }

    /// Just enough of a Linux boot header (protocol 2.15, bzImage) for QEMU's `-kernel`
    /// loader to accept the file; nothing runs, the guest stays in `prelaunch`.
    fn fake_bzimage() -> Vec<u8> {
        let mut b = vec![0u8; 64 * 1024];
        b[0x1f1] = 4; // setup_sects
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        b[0x211] = 1; // loadflags: LOADED_HIGH
        b[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes()); // initrd_addr_max
        b[0x238..0x23c].copy_from_slice(&2048u32.to_le_bytes()); // cmdline_size
        b
    }

    /// Every expected argv of the table is accepted by the installed QEMU: paths are
    /// moved into a temp dir, images created, and QEMU must reach `prelaunch`
    /// (`inmigrate` for the restore case). Cases that need host resources are left
    /// out by name, with the reason.
    #[test]
    fn table_argv_is_accepted_by_real_qemu() {
        if qemu_binary().is_none() {
            return;
        }
        const HOST_DEPENDENT: &[(&str, &str)] = &[
            (
                "cpu-host-passthrough-kvm",
                "-cpu host aborts under nested-PVM KVM",
            ),
            ("disk-block-ide-cdrom", "needs /dev/loop7 and /dev/sr0"),
            ("net-bridge-tap", "would create tap devices on the host"),
        ];
        let kvm = Path::new("/dev/kvm").exists();
        let mut checked = 0;
        let mut names: Vec<_> = std::fs::read_dir(data_dir())
            .unwrap()
            .filter_map(|e| {
                let p = e.unwrap().path();
                (p.extension()? == "args")
                    .then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
            })
            .collect();
        names.sort();
        for name in &names {
            if let Some((_, why)) = HOST_DEPENDENT.iter().find(|(n, _)| n == name) {
                eprintln!("{name}: not started ({why})");
                continue;
            }
            let text = std::fs::read_to_string(data_dir().join(format!("{name}.args"))).unwrap();
            if text.contains("-accel\nkvm\n") && !kvm {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "/dev/kvm is required when CI=true"
                );
                eprintln!("{name}: not started (no /dev/kvm)");
                continue;
            }
            let dir = tempfile::tempdir().unwrap();
            let d = format!("{}/", dir.path().display());
            let text = [
                format!("/run/vireo/qemu/{name}/"),
                "/run/vireo/".to_string(),
                "/var/lib/libvirt/images/".to_string(),
                "/images/".to_string(),
                "/var/log/vireo/".to_string(),
                "/var/lib/vireo/boot/".to_string(),
            ]
            .iter()
            .fold(text, |t, prefix| t.replace(prefix.as_str(), &d));
            let mut lines = text.lines().map(str::to_string);
            let program = PathBuf::from(lines.next().unwrap());
            let args: Vec<String> = lines.collect();
            for pair in args.windows(2).filter(|w| w[0] == "-blockdev") {
                let v: Value = serde_json::from_str(&pair[1]).unwrap();
                if let Some(f) = v.get("filename").and_then(Value::as_str) {
                    if f.ends_with(".qcow2") {
                        let ok = Command::new("qemu-img")
                            .args(["create", "-q", "-f", "qcow2", f, "1M"])
                            .status()
                            .is_ok_and(|s| s.success());
                        assert!(ok, "qemu-img create {f}");
                    } else {
                        std::fs::write(f, vec![0u8; 1 << 20]).unwrap();
                    }
                }
            }
            for pair in args.windows(2) {
                match pair[0].as_str() {
                    "-kernel" => std::fs::write(&pair[1], fake_bzimage()).unwrap(),
                    "-initrd" => std::fs::write(&pair[1], b"initrd").unwrap(),
                    _ => {}
                }
            }
            let status = if name.starts_with("restore") {
                "\"inmigrate\""
            } else {
                "\"prelaunch\""
            };
            let cmd = QemuCommand { program, args };
            expect_paused(name, &cmd, &dir.path().join("qmp.sock"), status);
            checked += 1;
        }
        assert!(checked >= 15 || !kvm, "only {checked} cases started");
    }

    /// QEMU accepts the syntax of what we generate: three representative guests are
    /// started (paused) and answer QMP with status `prelaunch`.
    #[test]
    fn generated_argv_starts_real_qemu() {
        if qemu_binary().is_none() {
            return;
        }
        let diskless = std::fs::read_to_string(data_dir().join("minimal.xml")).unwrap();
        let raw_serial_panic = "<domain type='qemu'><name>raw</name><memory unit='MiB'>64</memory>\
            <os><type arch='x86_64' machine='q35'>hvm</type></os><features><acpi/></features>\
            <on_reboot>destroy</on_reboot><devices>\
            <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='@DIR@/disk.img'/><target dev='vda' bus='virtio'/></disk>\
            <disk type='file' device='disk'><driver name='qemu' type='raw' cache='none'/><source file='@DIR@/disk2.img'/><target dev='vdb' bus='virtio'/><readonly/><shareable/></disk>\
            <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='@DIR@/cd.iso'/><target dev='sda' bus='sata'/><readonly/></disk>\
            <serial type='file'><source path='@DIR@/serial.log'/></serial><console type='file'><source path='@DIR@/serial.log'/><target type='serial'/></console>\
            <panic model='isa'><address type='isa' iobase='0x505'/></panic></devices></domain>";
        let mut many = std::fs::read_to_string(data_dir().join("virt-install-q35.xml")).unwrap();
        // Keep it small, paused, and free of host files.
        many = many
            .replace(
                "<memory unit='KiB'>2097152</memory>",
                "<memory unit='MiB'>64</memory>",
            )
            .replace("<currentMemory unit='KiB'>2097152</currentMemory>", "")
            .replace("/var/lib/libvirt/images/fedora.qcow2", "@DIR@/disk.img")
            .replace("type='qcow2' discard='unmap'", "type='raw'")
            .replace("<listen type='address'/>", "<listen type='socket'/>")
            .replace(
                "<model>qemu64</model>",
                "<model>qemu64</model><feature policy='disable' name='pni'/>",
            );
        if !Path::new("/dev/kvm").exists() {
            many = many.replace("<domain type='kvm'>", "<domain type='qemu'>");
        }
        let cases = [
            ("diskless", diskless),
            ("raw-serial-panic", raw_serial_panic.to_string()),
            ("virt-install", many),
        ];
        let handles: Vec<_> = cases
            .into_iter()
            .map(|(name, xml)| std::thread::spawn(move || start_and_query(name, &xml)))
            .collect();
        // Join every thread before failing: a thread still running when the test
        // binary exits would leave its QEMU behind.
        let failed = handles
            .into_iter()
            .map(|h| h.join())
            .filter(Result::is_err)
            .count();
        assert_eq!(failed, 0, "{failed} guest(s) failed to start (see above)");
    }
}
