//! vireod with its qemu driver on, driven by real `virsh` over `qemu:///system`: the
//! one wrapper the QEMU test binaries (`qemu`, `qemu_more`, `qemu_save`) share instead
//! of each keeping its own copy. It starts the daemon with `--qemu on`, runs virsh,
//! writes test-guest definitions, waits on serial logs and domain states, watches
//! events, and on drop kills every QEMU started under its state directory, so a failed
//! test leaves no guest behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vireo_drivers::qemu::testguest::{self, TestGuest};

use super::{Daemon, have, virsh_at, virsh_succeeded};

/// Whether QEMU is here (fails under CI=true).
pub fn have_qemu() -> bool {
    have(
        "qemu-system-x86_64",
        Command::new("qemu-system-x86_64").arg("--version"),
    )
}

/// Whether QEMU and the assembler the test guests need are here (fails under CI=true).
pub fn have_qemu_and_binutils() -> bool {
    have_qemu() && have("as and ld (binutils)", Command::new("as").arg("--version"))
}

/// Whether /dev/kvm can be opened read-write (fails under CI=true).
pub fn have_kvm() -> bool {
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "/dev/kvm is required under CI=true but cannot be opened"
        );
        eprintln!("SKIPPED: /dev/kvm cannot be opened (set CI=true to make this a failure)");
    }
    ok
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Pids and command lines of the QEMU processes whose command line names `dir`.
pub fn qemus_under(dir: &Path) -> Vec<(String, String)> {
    let o = Command::new("pgrep")
        .args(["-a", "-f", &format!("qemu-system.*{}", dir.display())])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(pid, cmd)| (pid.to_string(), cmd.to_string()))
        .collect()
}

/// Pids of the QEMU processes whose command line names `dir`.
pub fn qemu_pids_under(dir: &Path) -> Vec<String> {
    qemus_under(dir).into_iter().map(|(pid, _)| pid).collect()
}

/// A vireod whose qemu driver is on; on drop every QEMU it started is killed.
pub struct QemuDaemon {
    pub d: Daemon,
}

impl QemuDaemon {
    pub fn start() -> QemuDaemon {
        QemuDaemon {
            d: Daemon::start_with(&["--qemu", "on"]),
        }
    }

    pub fn uri(&self) -> String {
        format!("qemu+unix:///system?socket={}", self.d.sock().display())
    }

    pub fn state(&self) -> &Path {
        self.d.state()
    }

    pub fn virsh(&self, args: &[&str]) -> Output {
        virsh_at(&self.uri(), args)
    }

    /// Runs virsh on a thread of its own (for a command to watch or interrupt while
    /// it runs, such as a save); join the handle for its output.
    pub fn virsh_in_background(&self, args: &[&str]) -> std::thread::JoinHandle<Output> {
        let mut cmd = Command::new("virsh");
        cmd.arg("-c").arg(self.uri()).args(args);
        std::thread::spawn(move || cmd.output().expect("run virsh"))
    }

    /// Runs virsh and expects success; returns stdout.
    pub fn virsh_ok(&self, args: &[&str]) -> String {
        virsh_succeeded(args, self.virsh(args), &tail(&self.d.log(), 40))
    }

    /// Runs virsh and expects failure; returns stderr.
    pub fn virsh_err(&self, args: &[&str]) -> String {
        let o = self.virsh(args);
        assert!(!o.status.success(), "virsh {args:?} should fail");
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    /// Writes `xml` as `<state>/<name>.xml`; returns the path.
    pub fn write_xml(&self, name: &str, xml: &str) -> PathBuf {
        let path = self.state().join(format!("{name}.xml"));
        std::fs::write(&path, xml).unwrap();
        path
    }

    /// Writes the definition of a q35 test guest `name` of `ram_mib` MiB booting the
    /// test guest `kind` from a SATA disk, COM1 into [`QemuDaemon::serial`], with
    /// `<features>` holding `features` and `extra_devices` after the serial port;
    /// returns the XML path.
    pub fn guest_xml_with(
        &self,
        name: &str,
        kind: TestGuest,
        ram_mib: u32,
        features: &str,
        extra_devices: &str,
    ) -> PathBuf {
        let cache = self.state().join("images");
        std::fs::create_dir_all(&cache).unwrap();
        let src = testguest::build(&cache, kind).expect("assemble the test guest");
        let img = self.state().join(format!("{name}.img"));
        std::fs::copy(src, &img).unwrap();
        let xml = testguest::domain_xml(
            name,
            ram_mib,
            features,
            &img,
            &self.serial(name),
            extra_devices,
        );
        self.write_xml(name, &xml)
    }

    /// [`QemuDaemon::guest_xml_with`] for a 32 MiB guest with ACPI.
    pub fn guest_xml(&self, name: &str, kind: TestGuest, extra_devices: &str) -> PathBuf {
        self.guest_xml_with(name, kind, 32, "<acpi/>", extra_devices)
    }

    /// The file a guest written by [`QemuDaemon::guest_xml_with`] logs COM1 into.
    pub fn serial(&self, name: &str) -> PathBuf {
        self.state().join(format!("{name}.serial"))
    }

    pub fn serial_text(&self, name: &str) -> String {
        std::fs::read_to_string(self.serial(name)).unwrap_or_default()
    }

    /// Waits (30 s at most) until the serial log satisfies `done`; `what` names it.
    pub fn wait_serial_until(&self, name: &str, what: &str, done: impl Fn(&str) -> bool) {
        let t = Instant::now();
        loop {
            let text = self.serial_text(name);
            if done(&text) {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{name}: serial never showed {what}: {text:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the guest's serial log shows `line` `times` times.
    pub fn wait_serial(&self, name: &str, line: &str, times: usize) {
        self.wait_serial_until(name, &format!("{line:?} x{times}"), |text| {
            text.matches(line).count() >= times
        });
    }

    /// `virsh domstate --reason NAME`, trimmed.
    pub fn domstate(&self, name: &str) -> String {
        self.virsh_ok(&["domstate", "--reason", name])
            .trim()
            .to_string()
    }

    /// Waits until `virsh domstate --reason NAME` prints `want`.
    pub fn wait_state(&self, name: &str, want: &str) {
        let t = Instant::now();
        loop {
            let got = self.domstate(name);
            if got == want {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{name}: state stayed {got:?}, wanted {want:?}\nlog tail:\n{}",
                tail(&self.d.log(), 30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Pids and command lines of the QEMU processes started under the state directory.
    pub fn qemus(&self) -> Vec<(String, String)> {
        qemus_under(self.state())
    }

    /// Pids of the QEMU processes started under the state directory.
    pub fn qemu_pids(&self) -> Vec<String> {
        qemu_pids_under(self.state())
    }
}

impl Drop for QemuDaemon {
    fn drop(&mut self) {
        for pid in self.qemu_pids() {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
    }
}

/// `virsh event --all --loop` in the background, its lines collected; registered
/// before it is returned.
pub struct EventWatch {
    child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl EventWatch {
    /// Starts the watcher. virsh registers after it connects, so `define_probe` (which
    /// must define a domain named `probe`) and an undefine run until it shows; what
    /// was seen until then is forgotten.
    pub fn start(q: &QemuDaemon, define_probe: impl Fn(&QemuDaemon)) -> EventWatch {
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
        let t = Instant::now();
        loop {
            define_probe(q);
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

    /// Whether a line containing `needle` shows within `within`.
    pub fn wait_for(&self, needle: &str, within: Duration) -> bool {
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
    pub fn expect_in_order(&self, dom: &str, expected: &[&str]) {
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

    /// Waits (10 s at most) until the lifecycle events for `dom` are exactly `want`,
    /// in this order.
    pub fn expect_exactly(&self, dom: &str, want: &[&str]) {
        let tag = format!("event 'lifecycle' for domain '{dom}': ");
        let t = Instant::now();
        loop {
            let got: Vec<String> = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| l.strip_prefix(tag.as_str()).map(str::to_string))
                .collect();
            if got == want {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10) && got.len() <= want.len(),
                "{dom}: events {got:?}, wanted {want:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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
