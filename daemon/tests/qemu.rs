//! Real QEMU guests (TCG, boot-sector test guests) driven by real `virsh` through
//! `vireod`'s `qemu:///system`: the lifecycle with its events as `virsh event --loop`
//! prints them, guests surviving a `kill -9` of the daemon, and bad definitions that
//! leave nothing running.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Daemon, have, have_virsh, spawn};
use vireo_drivers::qemu::testguest::{self, TestGuest};

/// Whether QEMU and the assembler the test guests need are here (fails under CI=true).
fn have_qemu() -> bool {
    have(
        "qemu-system-x86_64",
        Command::new("qemu-system-x86_64").arg("--version"),
    ) && have("as and ld (binutils)", Command::new("as").arg("--version"))
}

/// A vireod whose qemu driver is on; on drop every QEMU it started is killed, so a
/// failed test leaves no guest behind.
struct QemuDaemon {
    d: Daemon,
}

impl QemuDaemon {
    fn start() -> QemuDaemon {
        QemuDaemon {
            d: Daemon::start_with(&["--qemu", "on"]),
        }
    }

    fn uri(&self) -> String {
        format!("qemu+unix:///system?socket={}", self.d.sock().display())
    }

    fn virsh(&self, args: &[&str]) -> std::process::Output {
        Command::new("virsh")
            .arg("-c")
            .arg(self.uri())
            .args(args)
            .output()
            .expect("run virsh")
    }

    fn virsh_ok(&self, args: &[&str]) -> String {
        let o = self.virsh(args);
        assert!(
            o.status.success(),
            "virsh {args:?} failed: {}\n{}\nlog:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            tail(&self.d.log(), 40)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    fn virsh_err(&self, args: &[&str]) -> String {
        let o = self.virsh(args);
        assert!(!o.status.success(), "virsh {args:?} should fail");
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    fn state(&self) -> &Path {
        self.d.state()
    }

    /// Writes the definition of a test guest `name` running `kind`; returns the XML path.
    fn guest_xml(&self, name: &str, kind: TestGuest, extra_devices: &str) -> PathBuf {
        let cache = self.state().join("images");
        std::fs::create_dir_all(&cache).unwrap();
        let src = testguest::build(&cache, kind).expect("assemble the test guest");
        let img = self.state().join(format!("{name}.img"));
        std::fs::copy(src, &img).unwrap();
        let xml = format!(
            "<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{img}'/>
      <target dev='sda' bus='sata'/>
    </disk>
    <serial type='file'><source path='{serial}'/><target port='0'/></serial>
    {extra_devices}
  </devices>
</domain>",
            img = img.display(),
            serial = self.serial(name).display(),
        );
        let path = self.state().join(format!("{name}.xml"));
        std::fs::write(&path, xml).unwrap();
        path
    }

    fn serial(&self, name: &str) -> PathBuf {
        self.state().join(format!("{name}.serial"))
    }

    /// Waits until the guest's serial log shows `line` `times` times.
    fn wait_serial(&self, name: &str, line: &str, times: usize) {
        let t = Instant::now();
        loop {
            let text = std::fs::read_to_string(self.serial(name)).unwrap_or_default();
            if text.matches(line).count() >= times {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{name}: serial never showed {line:?} x{times}: {text:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `virsh domstate --reason NAME` prints `want`.
    fn wait_state(&self, name: &str, want: &str) {
        let t = Instant::now();
        loop {
            let got = self.virsh_ok(&["domstate", "--reason", name]);
            if got.trim() == want {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{name}: state stayed {got:?}, wanted {want:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Pids of QEMU processes started under this daemon's state directory.
    fn qemu_pids(&self) -> Vec<String> {
        qemu_pids_under(self.state())
    }
}

fn qemu_pids_under(dir: &Path) -> Vec<String> {
    let o = Command::new("pgrep")
        .args(["-f", &format!("qemu-system.*{}", dir.display())])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

impl Drop for QemuDaemon {
    fn drop(&mut self) {
        for pid in self.qemu_pids() {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `virsh event --all --loop` in the background, its lines collected.
struct EventWatch {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl EventWatch {
    fn start(q: &QemuDaemon) -> EventWatch {
        let mut child = Command::new("virsh")
            .args([
                "-c",
                &q.uri(),
                "event",
                "--all",
                "--loop",
                "--timeout",
                "120",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                sink.lock().unwrap().push(l);
            }
        });
        let w = EventWatch {
            child,
            lines,
            reader: Some(reader),
        };
        // virsh registers after it connects: define and undefine a probe until it sees it.
        let probe = q.guest_xml("probe", TestGuest::Halt, "");
        let t = Instant::now();
        loop {
            q.virsh_ok(&["define", probe.to_str().unwrap()]);
            q.virsh_ok(&["undefine", "probe"]);
            if w.wait_for("'probe'", Duration::from_millis(300)) {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "virsh event saw nothing"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
        w.lines.lock().unwrap().clear();
        w
    }

    fn wait_for(&self, needle: &str, within: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < within {
            if self
                .lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Asserts that `expected` appear in this order among the lines for `dom` (other
    /// events may come in between), then forgets everything seen so far.
    fn expect_in_order(&self, dom: &str, expected: &[&str]) {
        let tag = format!("for domain '{dom}': ");
        let last = expected.last().unwrap();
        assert!(
            self.wait_for(&format!("{tag}{last}"), Duration::from_secs(30)),
            "never saw {last:?} for {dom}: {:?}",
            self.lines.lock().unwrap()
        );
        let mut lines = self.lines.lock().unwrap();
        let got: Vec<String> = lines
            .iter()
            .filter_map(|l| l.split_once(&tag).map(|(_, e)| e.to_string()))
            .collect();
        let mut it = got.iter();
        for e in expected {
            assert!(
                it.any(|g| g == e),
                "{dom}: expected {expected:?} in order, got {got:?}"
            );
        }
        lines.clear();
    }
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

#[test]
fn virsh_drives_real_qemu_guests_with_events() {
    if !have_virsh() || !have_qemu() {
        return;
    }
    let q = QemuDaemon::start();
    assert!(!q.virsh_ok(&["hostname"]).trim().is_empty());
    let ev = EventWatch::start(&q);

    // define, start, list, dominfo, suspend, resume
    let xml = q.guest_xml("vm1", TestGuest::WaitPowerButton, "");
    q.virsh_ok(&["define", xml.to_str().unwrap()]);
    q.virsh_ok(&["start", "vm1"]);
    ev.expect_in_order("vm1", &["Defined Added", "Started Booted"]);
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
        &["Started Booted", "Stopped Destroyed", "Undefined Removed"],
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
