//! Real QEMU guests (TCG, boot-sector test guests) driven by real `virsh` through
//! `vireod`'s `qemu:///system`: the lifecycle with its events as `virsh event --loop`
//! prints them, guests surviving a `kill -9` of the daemon, and bad definitions that
//! leave nothing running.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::qemu::{EventWatch, QemuDaemon, have_qemu_and_binutils as have_qemu};
use common::{have_virsh, spawn};
use vireo_drivers::qemu::testguest::TestGuest;
#[test]
fn virsh_drives_real_qemu_guests_with_events() {
    if !have_virsh() || !have_qemu() {
        return;
    }
    let q = QemuDaemon::start();
    assert!(!q.virsh_ok(&["hostname"]).trim().is_empty());
    let ev = EventWatch::start(&q, |q| {
        let probe = q.guest_xml("probe", TestGuest::Halt, "");
        q.virsh_ok(&["define", probe.to_str().unwrap()]);
    });

    // define, start, list, dominfo, suspend, resume
    let xml = q.guest_xml("vm1", TestGuest::WaitPowerButton, "");
    q.virsh_ok(&["define", xml.to_str().unwrap()]);
    q.virsh_ok(&["start", "vm1"]);
    // libvirtd's qemu driver reports the CPUs' start first (checked side by side).
    ev.expect_in_order(
        "vm1",
        &["Defined Added", "Resumed Unpaused", "Started Booted"],
    );
    // The devices QEMU placed (the XML gave no addresses) are in the definition now,
    // with the balloon libvirt adds by default, as libvirt has them after define.
    let balloon = |xml: &str| {
        let start = xml
            .find("<memballoon")
            .unwrap_or_else(|| panic!("no memballoon:\n{xml}"));
        let end = xml[start..]
            .find("</memballoon>")
            .expect("memballoon closed")
            + start;
        xml[start..end].to_string()
    };
    let placed = balloon(&q.virsh_ok(&["dumpxml", "--inactive", "vm1"]));
    assert!(
        placed.contains("model='virtio'")
            && placed.contains("<address type='pci' domain='0x0000' bus='0x00' slot='0x"),
        "{placed}"
    );
    assert_eq!(balloon(&q.virsh_ok(&["dumpxml", "vm1"])), placed);
    let list = q.virsh_ok(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.contains("vm1") && l.contains("running")),
        "{list}"
    );
    let info = q.virsh_ok(&["dominfo", "vm1"]);
    for want in ["State:          running", "CPU(s):         1", "32768 KiB"] {
        assert!(info.contains(want), "dominfo lacks {want:?}:\n{info}");
    }
    q.wait_state("vm1", "running (booted)");
    q.virsh_ok(&["suspend", "vm1"]);
    q.wait_state("vm1", "paused (user)");
    q.virsh_ok(&["resume", "vm1"]);
    q.wait_state("vm1", "running (unpaused)");
    ev.expect_in_order("vm1", &["Suspended Paused", "Resumed Unpaused"]);

    // shutdown: the guest (which armed its power button) powers off
    q.wait_serial("vm1", "waiting for power button", 1);
    q.virsh_ok(&["shutdown", "vm1"]);
    q.wait_state("vm1", "shut off (shutdown)");
    ev.expect_in_order(
        "vm1",
        &["Shutdown Finished after guest request", "Stopped Shutdown"],
    );
    assert!(q.qemu_pids().is_empty(), "QEMU left after a guest poweroff");

    // reboot: the guest powers off, vireod resets it instead and it boots again
    let _ = std::fs::remove_file(q.serial("vm1"));
    q.virsh_ok(&["start", "vm1"]);
    q.wait_serial("vm1", "waiting for power button", 1);
    q.virsh_ok(&["reboot", "vm1"]);
    q.wait_serial("vm1", "waiting for power button", 2);
    q.wait_state("vm1", "running (booted)");
    // The second start ran from the recorded addresses: the same layout.
    assert_eq!(balloon(&q.virsh_ok(&["dumpxml", "vm1"])), placed);
    assert!(
        ev.wait_for("event 'reboot' for domain 'vm1'", Duration::from_secs(10)),
        "{:?}",
        ev.lines.lock().unwrap()
    );

    // destroy, undefine
    q.virsh_ok(&["destroy", "vm1"]);
    q.wait_state("vm1", "shut off (destroyed)");
    q.virsh_ok(&["undefine", "vm1"]);
    ev.expect_in_order(
        "vm1",
        &[
            "Started Booted",
            "Shutdown Finished after host request",
            "Stopped Destroyed",
            "Undefined Removed",
        ],
    );

    // A guest that powers off by itself.
    let xml = q.guest_xml("vm2", TestGuest::Shutdown, "");
    q.virsh_ok(&["create", xml.to_str().unwrap()]);
    ev.expect_in_order(
        "vm2",
        &[
            "Started Booted",
            "Shutdown Finished after guest request",
            "Stopped Shutdown",
        ],
    );

    // A guest that panics (pvpanic); on_crash defaults to destroy.
    let xml = q.guest_xml("vm3", TestGuest::Panic, "<panic model='isa'/>");
    q.virsh_ok(&["define", xml.to_str().unwrap()]);
    q.virsh_ok(&["start", "vm3"]);
    ev.expect_in_order(
        "vm3",
        &["Started Booted", "Crashed Panicked", "Stopped Crashed"],
    );
    q.wait_state("vm3", "shut off (crashed)");
    q.virsh_ok(&["undefine", "vm3"]);
    assert!(q.qemu_pids().is_empty(), "QEMU left running");
}

#[test]
fn guests_survive_kill_9_of_vireod() {
    if !have_virsh() || !have_qemu() {
        return;
    }
    let mut q = QemuDaemon::start();
    for n in ["keep1", "keep2", "gone"] {
        let xml = q.guest_xml(n, TestGuest::Halt, "");
        q.virsh_ok(&["define", xml.to_str().unwrap()]);
        q.virsh_ok(&["start", n]);
    }
    q.virsh_ok(&["suspend", "keep2"]);
    let ids: Vec<String> = ["keep1", "keep2"]
        .iter()
        .map(|n| q.virsh_ok(&["domid", n]).trim().to_string())
        .collect();
    assert_eq!(q.qemu_pids().len(), 3);

    // kill -9 the daemon; one guest dies while it is down
    q.d.signal(9);
    let _ = q.d.child.wait();
    let gone_pid = std::fs::read_to_string(q.state().join("run/qemu/domains/gone.json"))
        .ok()
        .and_then(|s| {
            let v: serde_json::Value = serde_json::from_str(&s).ok()?;
            v.pointer("/guest/pid").and_then(|p| p.as_u64())
        })
        .expect("status record of 'gone' with its pid");
    Command::new("kill")
        .args(["-9", &gone_pid.to_string()])
        .status()
        .unwrap();
    let t = Instant::now();
    while q.qemu_pids().len() != 2 {
        assert!(t.elapsed() < Duration::from_secs(10), "'gone' did not die");
        std::thread::sleep(Duration::from_millis(20));
    }

    // restart on the same state dir
    let _ = std::fs::remove_file(q.d.sock());
    q.d.child = spawn(q.d.state());
    let t = Instant::now();
    while std::os::unix::net::UnixStream::connect(q.d.sock()).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "vireod did not come back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let list = q.virsh_ok(&["list", "--all"]);
    assert!(list.contains("keep1") && list.contains("keep2"), "{list}");
    q.wait_state("keep1", "running (booted)");
    assert!(
        q.virsh_ok(&["domstate", "keep2"]).trim() == "paused",
        "keep2 should still be paused"
    );
    for (n, id) in ["keep1", "keep2"].iter().zip(&ids) {
        assert_eq!(
            &q.virsh_ok(&["domid", n]).trim().to_string(),
            id,
            "{n} kept its id"
        );
    }
    // libvirt's answer when a reconnect finds QEMU gone.
    assert_eq!(
        q.virsh_ok(&["domstate", "--reason", "gone"]).trim(),
        "shut off (crashed)"
    );
    q.virsh_ok(&["resume", "keep2"]);
    q.virsh_ok(&["destroy", "keep1"]);
    q.virsh_ok(&["destroy", "keep2"]);
    q.wait_state("keep1", "shut off (destroyed)");
    assert!(q.qemu_pids().is_empty(), "guests left after destroy");
}

#[test]
fn bad_definitions_leave_nothing_running() {
    if !have_virsh() || !have_qemu() {
        return;
    }
    let q = QemuDaemon::start();
    // a missing disk file
    let xml = q.guest_xml("nodisk", TestGuest::Halt, "");
    std::fs::remove_file(q.state().join("nodisk.img")).unwrap();
    q.virsh_ok(&["define", xml.to_str().unwrap()]);
    let e = q.virsh_err(&["start", "nodisk"]);
    assert!(
        e.contains("Cannot access storage file") && e.contains("nodisk.img"),
        "{e}"
    );
    assert_eq!(q.virsh_ok(&["domstate", "nodisk"]).trim(), "shut off");

    // an unknown machine type
    let xml = q.guest_xml("badmachine", TestGuest::Halt, "");
    let text = std::fs::read_to_string(&xml)
        .unwrap()
        .replace("machine='q35'", "machine='no-such-machine'");
    std::fs::write(&xml, text).unwrap();
    let out = q.virsh(&["create", xml.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(e.contains("no-such-machine"), "{e}");

    // a device vireo does not support
    let xml = q.guest_xml(
        "hostdev",
        TestGuest::Halt,
        "<hostdev mode='subsystem' type='pci'><source><address domain='0' bus='0' slot='1' function='0'/></source></hostdev>",
    );
    let e = q.virsh_err(&["create", xml.to_str().unwrap()]);
    assert!(
        e.contains("unsupported configuration") && e.contains("hostdev"),
        "{e}"
    );

    assert!(q.qemu_pids().is_empty(), "a failed start left QEMU running");
    let list = q.virsh_ok(&["list", "--all"]);
    assert!(
        !list.contains("badmachine") && !list.contains("hostdev"),
        "{list}"
    );
}
