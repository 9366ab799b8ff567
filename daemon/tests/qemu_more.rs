//! More of `qemu:///system` through real virsh against vireod with real QEMU: a KVM
//! guest started paused (the nested KVM here only suits paused or trivial guests),
//! autostart across a SIGTERM restart of vireod, and the statistics virsh shows
//! (`domstats` with a guest's traffic on a host tap, `dominfo`'s CPU time).
//!
//! The guests have no disk: SeaBIOS finds nothing to boot and idles, which is all
//! these tests need, and no test guest has to be assembled.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::qemu::{EventWatch, QemuDaemon as Q, have_kvm, have_qemu, tail};
use common::{have_virsh, spawn};
/// The diskless guests of these tests.
trait Diskless {
    fn define(&self, name: &str, dtype: &str);
}

impl Diskless for Q {
    /// Defines a diskless 32 MiB q35 guest of `<domain type=dtype>`.
    fn define(&self, name: &str, dtype: &str) {
        let xml = format!(
            "<domain type='{dtype}'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory>
  <currentMemory unit='MiB'>32</currentMemory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <features><acpi/></features>
  <devices><memballoon model='virtio'/></devices>
</domain>"
        );
        let path = self.write_xml(name, &xml);
        self.virsh_ok(&["define", path.to_str().unwrap()]);
    }
}

#[test]
fn kvm_guest_started_paused_then_resumed_and_destroyed() {
    if !have_virsh() || !have_qemu() || !have_kvm() {
        return;
    }
    let q = Q::start();
    let ev = EventWatch::start(&q, |q| q.define("probe", "qemu"));
    q.define("kvm1", "kvm");
    q.virsh_ok(&["start", "--paused", "kvm1"]);
    q.wait_state("kvm1", "paused (user)");
    let qemus = q.qemus();
    assert_eq!(qemus.len(), 1, "{qemus:?}");
    assert!(
        qemus[0].1.contains("-accel kvm"),
        "not a KVM guest: {}",
        qemus[0].1
    );
    let info = q.virsh_ok(&["dominfo", "kvm1"]);
    assert!(info.contains("State:          paused"), "{info}");

    q.virsh_ok(&["resume", "kvm1"]);
    q.wait_state("kvm1", "running (unpaused)");
    q.virsh_ok(&["suspend", "kvm1"]);
    q.wait_state("kvm1", "paused (user)");
    q.virsh_ok(&["destroy", "kvm1"]);
    q.wait_state("kvm1", "shut off (destroyed)");
    assert!(q.qemus().is_empty(), "QEMU left after destroy");
    q.virsh_ok(&["undefine", "kvm1"]);
    // As libvirtd's qemu driver reports a paused start (Started, then Suspended) and a
    // destroy (QEMU's host-initiated shutdown, then Stopped) — checked side by side.
    ev.expect_exactly(
        "kvm1",
        &[
            "Defined Added",
            "Started Booted",
            "Suspended Paused",
            "Resumed Unpaused",
            "Suspended Paused",
            "Shutdown Finished after host request",
            "Stopped Destroyed",
            "Undefined Removed",
        ],
    );
}

#[test]
fn autostart_domain_starts_when_vireod_restarts_after_sigterm() {
    if !have_virsh() || !have_qemu() {
        return;
    }
    let mut q = Q::start();
    q.define("auto1", "qemu");
    q.define("manual1", "qemu");
    q.virsh_ok(&["autostart", "auto1"]);
    let info = q.virsh_ok(&["dominfo", "auto1"]);
    assert!(info.contains("Autostart:      enable"), "{info}");
    let info = q.virsh_ok(&["dominfo", "manual1"]);
    assert!(info.contains("Autostart:      disable"), "{info}");
    assert_eq!(q.virsh_ok(&["domstate", "auto1"]).trim(), "shut off");
    assert!(q.qemus().is_empty());

    // SIGTERM: a clean exit; then a new vireod on the same state directory.
    q.d.signal(15);
    assert_eq!(
        q.d.wait_exit(Duration::from_secs(20)),
        Some(0),
        "vireod did not exit cleanly on SIGTERM\n{}",
        tail(&q.d.log(), 30)
    );
    let _ = std::fs::remove_file(q.d.sock());
    let _ = std::fs::remove_file(q.d.sock_ro());
    q.d.child = spawn(q.d.state());
    let t = Instant::now();
    while std::os::unix::net::UnixStream::connect(q.d.sock()).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "vireod did not come back\n{}",
            tail(&q.d.log(), 30)
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    q.wait_state("auto1", "running (booted)");
    assert_eq!(
        q.virsh_ok(&["domstate", "manual1"]).trim(),
        "shut off",
        "a domain without autostart was started"
    );
    let list = q.virsh_ok(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.contains("auto1") && l.contains("running")),
        "{list}"
    );
    let qemus = q.qemus();
    assert_eq!(qemus.len(), 1, "{qemus:?}");
    assert!(qemus[0].1.contains("guest=auto1"), "{qemus:?}");
    q.virsh_ok(&["destroy", "auto1"]);
    q.wait_state("auto1", "shut off (destroyed)");
    assert!(q.qemus().is_empty(), "QEMU left after destroy");
}

/// `virsh domstats` uses CONNECT_GET_ALL_DOMAIN_STATS (proc 344). libvirtd 9.0 prints,
/// for this guest right after start: `state.state=1 state.reason=1 balloon.current=32768
/// balloon.maximum=32768 balloon.last-update=0 balloon.rss=… vcpu.current=1
/// vcpu.maximum=1 vcpu.0.state=1 vcpu.0.time=… vcpu.0.wait=0 vcpu.0.delay=…` with
/// `--state --vcpu --balloon`; without flags also `cpu.time cpu.user cpu.system`,
/// `net.count=0`, `block.count=0` and more.
#[test]
fn domstats_shows_state_vcpus_and_balloon_of_a_qemu_guest() {
    if !have_virsh() || !have_qemu() {
        return;
    }
    let q = Q::start();
    q.define("stats1", "qemu");
    q.virsh_ok(&["start", "stats1"]);
    q.wait_state("stats1", "running (booted)");
    let out = q.virsh_ok(&["domstats", "--state", "--vcpu", "--balloon", "stats1"]);
    for want in [
        "Domain: 'stats1'",
        "state.state=1",
        "state.reason=1",
        "vcpu.current=1",
        "vcpu.maximum=1",
        "balloon.current=32768",
        "balloon.maximum=32768",
    ] {
        assert!(out.contains(want), "domstats lacks {want:?}:\n{out}");
    }
    let all = q.virsh_ok(&["domstats", "stats1"]);
    for want in [
        "state.state=1",
        "cpu.time=",
        "cpu.user=",
        "cpu.system=",
        "balloon.last-update=0",
        "balloon.rss=",
        "vcpu.0.state=1",
        "vcpu.0.time=",
        "vcpu.0.wait=",
        "vcpu.0.delay=",
        "net.count=0",
        "block.count=0",
    ] {
        assert!(all.contains(want), "domstats lacks {want:?}:\n{all}");
    }
    // Groups Vireo cannot give: left out, or refused under --enforce.
    assert_eq!(
        q.virsh_ok(&["domstats", "--perf", "stats1"]).trim(),
        "Domain: 'stats1'"
    );
    let o = q.virsh(&["domstats", "--perf", "--enforce", "stats1"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("Stats types bits 0x40 are not supported by this daemon"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    q.virsh_ok(&["destroy", "stats1"]);
    // Shut off: the definition's figures only.
    let off = q.virsh_ok(&["domstats", "stats1"]);
    assert_eq!(
        off.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>(),
        [
            "Domain: 'stats1'",
            "state.state=5",
            "state.reason=2",
            "balloon.current=32768",
            "balloon.maximum=32768",
            "vcpu.current=1",
            "vcpu.maximum=1",
            "block.count=0",
        ]
    );
}

/// `virsh dommemstat` on qemu:///: libvirtd 9.0 prints the balloon size, a
/// last_update of 0 (no guest balloon driver reports) and the QEMU process's RSS;
/// a shut-off guest has none.
#[test]
fn dommemstat_of_a_qemu_guest() {
    if !have_virsh() || !have_qemu() {
        return;
    }
    let q = Q::start();
    q.define("mem1", "qemu");
    let o = q.virsh(&["dommemstat", "mem1"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("domain is not running"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    q.virsh_ok(&["start", "mem1"]);
    q.wait_state("mem1", "running (booted)");
    let out = q.virsh_ok(&["dommemstat", "mem1"]);
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "actual 32768");
    assert_eq!(lines[1], "last_update 0");
    let rss: u64 = lines[2].strip_prefix("rss ").unwrap().parse().unwrap();
    assert!(rss > 1024, "{out}");
    q.virsh_ok(&["destroy", "mem1"]);
}

/// What libvirtd 9.0 with `security_driver = "none"` shows in `virsh dominfo`, the OS
/// type from the definition, and no scheduler (Vireo uses no cgroup CPU controller).
#[test]
fn dominfo_security_os_type_and_schedinfo_of_a_qemu_guest() {
    if !have_virsh() || !have_qemu() {
        return;
    }
    let q = Q::start();
    q.define("sec1", "qemu");
    for running in [false, true] {
        if running {
            q.virsh_ok(&["start", "sec1"]);
            q.wait_state("sec1", "running (booted)");
        }
        let info = q.virsh_ok(&["dominfo", "sec1"]);
        assert!(info.contains("OS Type:        hvm\n"), "{info}");
        assert!(info.contains("Security model: none\n"), "{info}");
        assert!(info.contains("Security DOI:   0\n"), "{info}");
        assert!(!info.contains("Security label:"), "{info}");
        if common::have_python_libvirt() {
            // One (empty) label per security driver while running, none when off.
            let o = Command::new("/usr/bin/python3")
                .args([
                    "-c",
                    "import libvirt, sys; c = libvirt.open(sys.argv[1]); \
                     d = c.lookupByName('sec1'); \
                     print(d.securityLabelList(), d.securityLabel(), d.OSType(), \
                     c.getSecurityModel())",
                    &q.uri(),
                ])
                .output()
                .unwrap();
            let want = if running {
                "[['', False]] ['', False] hvm ['none', '0']"
            } else {
                "[] ['', False] hvm ['none', '0']"
            };
            assert_eq!(
                String::from_utf8_lossy(&o.stdout).trim(),
                want,
                "{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
    let o = q.virsh(&["schedinfo", "sec1"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not supported"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    q.virsh_ok(&["destroy", "sec1"]);
}

/// virsh prints "CPU time:" only when the domain's cpuTime is non-zero (libvirtd 9.0
/// shows `CPU time:       0.6s` for this guest after a second).
#[test]
fn dominfo_shows_cpu_time_of_a_running_qemu_guest() {
    if !have_virsh() || !have_qemu() {
        return;
    }
    let q = Q::start();
    q.define("cpu1", "qemu");
    q.virsh_ok(&["start", "cpu1"]);
    q.wait_state("cpu1", "running (booted)");
    let t = Instant::now();
    loop {
        let info = q.virsh_ok(&["dominfo", "cpu1"]);
        if let Some(l) = info.lines().find(|l| l.starts_with("CPU time:")) {
            let secs: f64 = l
                .trim_start_matches("CPU time:")
                .trim()
                .trim_end_matches('s')
                .parse()
                .unwrap();
            assert!(secs >= 0.0, "{l}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "dominfo never showed a CPU time:\n{info}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    q.virsh_ok(&["destroy", "cpu1"]);
    let info = q.virsh_ok(&["dominfo", "cpu1"]);
    assert!(
        !info.contains("CPU time:"),
        "a shut-off domain has no CPU time:\n{info}"
    );
}

/// A tap device made for one test, removed again when the test ends (even by a panic).
struct Tap(String);

impl Tap {
    /// Creates a persistent tap with IPv6 off (no router solicitations of its own) and
    /// brings it up; `None` (skip) without `ip` or /dev/net/tun, a failure under CI.
    fn create(name: &str) -> Option<Tap> {
        if !common::have(
            "ip tuntap (iproute2, /dev/net/tun, root)",
            Command::new("ip").args(["tuntap", "add", "dev", name, "mode", "tap"]),
        ) {
            return None;
        }
        let tap = Tap(name.to_string());
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
        let up = Command::new("ip")
            .args(["link", "set", name, "up"])
            .status()
            .unwrap();
        assert!(up.success(), "ip link set {name} up failed");
        Some(tap)
    }

    /// The tap's own counter `statistics/NAME`.
    fn counter(&self, name: &str) -> u64 {
        std::fs::read_to_string(format!("/sys/class/net/{}/statistics/{name}", self.0))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["tuntap", "del", "dev", &self.0, "mode", "tap"])
            .status();
    }
}

/// `domstats --interface` of a guest on a host tap gives the tap's counters from the
/// guest's side, as libvirtd does: frames the host sends into the tap are the guest's
/// received packets (`net.0.rx.*` = the tap's `tx_*`).
#[test]
fn domstats_gives_a_tap_guests_traffic_from_the_guests_side() {
    if !have_virsh() || !have_qemu() {
        return;
    }
    let dev = format!("vtap{}", std::process::id() % 100_000);
    let Some(tap) = Tap::create(&dev) else {
        return;
    };
    let q = Q::start();
    let xml = format!(
        "<domain type='qemu'>
  <name>net1</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <interface type='ethernet'><mac address='52:54:00:12:34:56'/><target dev='{dev}' managed='no'/><model type='virtio'/></interface>
  </devices>
</domain>"
    );
    let path = q.write_xml("net1", &xml);
    q.virsh_ok(&["define", path.to_str().unwrap()]);
    q.virsh_ok(&["start", "net1"]);
    q.wait_state("net1", "running (booted)");
    // Five broadcast frames from the host into the tap, towards the guest.
    let sent = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import socket,sys\n\
             s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n\
             s.bind((sys.argv[1],0))\n\
             for _ in range(5): s.send(b'\\xff'*6+b'\\x02'*6+b'\\x88\\xb5'+b'vireo'*12)",
            &dev,
        ])
        .status()
        .unwrap();
    assert!(sent.success(), "sending frames into {dev} failed");
    // QEMU takes a frame off the tap (counted there as transmitted), finds that the
    // guest's NIC (no driver under SeaBIOS) cannot take it, and stops reading; the rest
    // wait in the tap's queue.
    let t = Instant::now();
    while tap.counter("tx_packets") == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "QEMU never read a frame from {dev}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = q.virsh_ok(&["domstats", "--interface", "net1"]);
    let get = |k: &str| -> u64 {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("net.0.{k}=")))
            .unwrap_or_else(|| panic!("domstats lacks net.0.{k}:\n{out}"))
            .parse()
            .unwrap()
    };
    assert!(
        out.contains("net.count=1") && out.contains(&format!("net.0.name={dev}")),
        "{out}"
    );
    // Turned around: what the host transmitted is what the guest received.
    for (guest, host) in [
        ("rx.bytes", "tx_bytes"),
        ("rx.pkts", "tx_packets"),
        ("rx.errs", "tx_errors"),
        ("rx.drop", "tx_dropped"),
        ("tx.bytes", "rx_bytes"),
        ("tx.pkts", "rx_packets"),
        ("tx.errs", "rx_errors"),
        ("tx.drop", "rx_dropped"),
    ] {
        assert_eq!(get(guest), tap.counter(host), "net.0.{guest}:\n{out}");
    }
    assert!(get("rx.pkts") >= 1 && get("rx.bytes") >= 74, "{out}");
    // virsh domifstat (DOMAIN_INTERFACE_STATS), by device name and by MAC address.
    for which in [dev.as_str(), "52:54:00:12:34:56"] {
        let out = q.virsh_ok(&["domifstat", "net1", which]);
        let get = |k: &str| -> u64 {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{which} {k} ")))
                .unwrap_or_else(|| panic!("domifstat lacks {k}:\n{out}"))
                .trim()
                .parse()
                .unwrap()
        };
        assert_eq!(get("rx_packets"), tap.counter("tx_packets"), "{out}");
        assert_eq!(get("rx_bytes"), tap.counter("tx_bytes"), "{out}");
        assert_eq!(get("tx_packets"), tap.counter("rx_packets"), "{out}");
    }
    let o = q.virsh(&["domifstat", "net1", "nosuch"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("'nosuch' is not a known interface"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    q.virsh_ok(&["destroy", "net1"]);
}

/// `domstats --block` and `domblkstat` of a running QEMU guest give QEMU's own counters
/// for the disk (`query-blockstats` on its format node): SeaBIOS reads the boot sector
/// of the empty disk, so at least one 512-byte read shows.
#[test]
fn block_counters_of_a_qemu_guest_come_from_qemu() {
    if !have_virsh() || !have_qemu() {
        return;
    }
    let q = Q::start();
    let img = q.state().join("disk1.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let xml = format!(
        "<domain type='qemu'>
  <name>blk1</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{}'/><target dev='vda' bus='virtio'/></disk>
  </devices>
</domain>",
        img.display()
    );
    let path = q.write_xml("blk1", &xml);
    q.virsh_ok(&["define", path.to_str().unwrap()]);
    q.virsh_ok(&["start", "blk1"]);
    let value = |out: &str, key: &str| -> Option<u64> {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .and_then(|v| v.trim().trim_start_matches('=').parse().ok())
    };
    let t = Instant::now();
    let out = loop {
        let out = q.virsh_ok(&["domstats", "--block", "blk1"]);
        if value(&out, "block.0.rd.reqs").is_some_and(|n| n >= 1) {
            break out;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no read counted by QEMU:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        value(&out, "block.0.rd.bytes").is_some_and(|n| n >= 512),
        "{out}"
    );
    for key in [
        "block.0.rd.times",
        "block.0.wr.reqs",
        "block.0.wr.bytes",
        "block.0.fl.reqs",
        "block.0.allocation",
    ] {
        assert!(value(&out, key).is_some(), "domstats lacks {key}:\n{out}");
    }
    // virsh domblkstat (DOMAIN_BLOCK_STATS), by target and by source path.
    for which in ["vda", img.to_str().unwrap()] {
        let out = q.virsh_ok(&["domblkstat", "blk1", which]);
        assert!(
            value(&out, &format!("{which} rd_req ")).is_some_and(|n| n >= 1),
            "{out}"
        );
        assert!(
            value(&out, &format!("{which} rd_bytes ")).is_some_and(|n| n >= 512),
            "{out}"
        );
        assert!(!out.contains("errs"), "QEMU keeps no error count:\n{out}");
    }
    let o = q.virsh(&["domblkstat", "blk1", "vdz"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("invalid path: vdz"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    q.virsh_ok(&["destroy", "blk1"]);
    let o = q.virsh(&["domblkstat", "blk1", "vda"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("domain is not running"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
