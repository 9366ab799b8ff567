//! Save, restore and managed save with real `virsh`, real `vireod` and real QEMU (TCG,
//! the boot-sector "fill" guest that fills its memory and then prints a rolling digit on
//! COM1): the guest continues from where it was saved (its serial output after a restore
//! has no second "filled" line, only more digits), `domjobinfo` during a save, and the
//! failures of issue 5 that need the real pipeline: thin (overcommitted) storage under
//! the managed-save directory (the fdatasync fails with ENOSPC), and `vireod` killed with
//! SIGKILL in the middle of a save.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Daemon, have, have_virsh, spawn_with};
use vireo_drivers::qemu::testguest::{self, TestGuest};
use vireo_drivers::saveimage;

const MIB: u32 = 1 << 20;

fn have_qemu() -> bool {
    have(
        "qemu-system-x86_64",
        Command::new("qemu-system-x86_64").arg("--version"),
    ) && have("as and ld (binutils)", Command::new("as").arg("--version"))
}

struct Q {
    d: Daemon,
}

impl Q {
    fn start() -> Q {
        Q {
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

    fn ok(&self, args: &[&str]) -> String {
        let o = self.virsh(args);
        assert!(
            o.status.success(),
            "virsh {args:?} failed: {}\n{}\nlog:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            tail(&self.d.log(), 30)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    fn err(&self, args: &[&str]) -> String {
        let o = self.virsh(args);
        assert!(!o.status.success(), "virsh {args:?} should fail");
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    fn state(&self) -> &Path {
        self.d.state()
    }

    fn serial(&self, name: &str) -> PathBuf {
        self.state().join(format!("{name}.serial"))
    }

    fn serial_text(&self, name: &str) -> String {
        std::fs::read_to_string(self.serial(name)).unwrap_or_default()
    }

    /// Defines a `ram_mib` guest that fills `fill_mib` MiB and then counts.
    fn define(&self, name: &str, ram_mib: u32, fill_mib: u32) {
        let cache = self.state().join("images");
        std::fs::create_dir_all(&cache).unwrap();
        let src = testguest::build(
            &cache,
            TestGuest::Fill {
                fill_end: (fill_mib + 1) * MIB,
            },
        )
        .expect("assemble the test guest");
        let img = self.state().join(format!("{name}.img"));
        std::fs::copy(src, &img).unwrap();
        let xml = format!(
            "<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{ram_mib}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{img}'/>
      <target dev='sda' bus='sata'/>
    </disk>
    <serial type='file'><source path='{serial}'/><target port='0'/></serial>
  </devices>
</domain>",
            img = img.display(),
            serial = self.serial(name).display(),
        );
        let path = self.state().join(format!("{name}.xml"));
        std::fs::write(&path, xml).unwrap();
        self.ok(&["define", path.to_str().unwrap()]);
    }

    /// Waits until the serial log satisfies `done`.
    fn wait_serial(&self, name: &str, what: &str, done: impl Fn(&str) -> bool) {
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

    /// Waits until a freshly booted guest has filled its memory and counts.
    fn wait_counting(&self, name: &str) {
        self.wait_serial(name, "filled + digits", |t| {
            t.split_once("filled\r\n")
                .is_some_and(|(_, after)| after.chars().any(|c| c.is_ascii_digit()))
        });
    }

    /// Asserts that a restored guest continues: new digits, no new boot.
    fn assert_continues(&self, name: &str) {
        self.wait_serial(name, "two digits after restore", |t| {
            t.chars().filter(char::is_ascii_digit).count() >= 2
        });
        let after = self.serial_text(name);
        assert!(
            !after.contains("filled"),
            "the restored guest booted again instead of continuing: {after:?}"
        );
    }

    fn domstate(&self, name: &str) -> String {
        self.ok(&["domstate", "--reason", name]).trim().to_string()
    }

    fn managed(&self, name: &str) -> String {
        self.ok(&["dominfo", name])
            .lines()
            .find(|l| l.starts_with("Managed save:"))
            .map(|l| l.trim_start_matches("Managed save:").trim().to_string())
            .unwrap_or_default()
    }

    fn qemu_pids(&self) -> Vec<String> {
        let o = Command::new("pgrep")
            .args(["-f", &format!("qemu-system.*{}", self.state().display())])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Q {
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

#[test]
fn virsh_save_restore_managedsave_and_start_resume_the_guest() {
    if !have_virsh() || !have_qemu() {
        return;
    }
    let q = Q::start();
    q.define("g", 64, 40);
    q.ok(&["start", "g"]);
    q.wait_counting("g");

    // save → shut off (saved), a complete libvirt image; restore → the guest continues.
    let img = q.state().join("g.save");
    let out = q.ok(&["save", "g", img.to_str().unwrap()]);
    assert!(out.contains("Domain 'g' saved to"), "{out}");
    assert_eq!(q.domstate("g"), "shut off (saved)");
    assert!(q.qemu_pids().is_empty(), "QEMU is gone after the save");
    let (header, _) = saveimage::read_header(&std::fs::File::open(&img).unwrap()).unwrap();
    assert!(header.was_running);
    let xml = q.ok(&["save-image-dumpxml", img.to_str().unwrap()]);
    assert!(xml.contains("<name>g</name>"), "{xml}");
    let out = q.ok(&["restore", img.to_str().unwrap()]);
    assert!(out.contains("Domain restored from"), "{out}");
    assert_eq!(q.domstate("g"), "running (restored)");
    q.assert_continues("g");

    // managedsave → the flag; start → resumes from the image, which goes away.
    let out = q.ok(&["managedsave", "g"]);
    assert!(out.contains("state saved by libvirt"), "{out}");
    assert_eq!(q.managed("g"), "yes");
    let managed = q.state().join("qemu/managedsave/g.save");
    assert!(managed.exists());
    q.ok(&["start", "g"]);
    assert_eq!(q.domstate("g"), "running (restored)");
    q.assert_continues("g");
    assert_eq!(q.managed("g"), "no");
    assert!(!managed.exists());

    // managedsave-remove → a later start boots afresh.
    q.ok(&["managedsave", "g", "--paused"]);
    let xml = q.ok(&["managedsave-dumpxml", "g"]);
    assert!(xml.contains("<name>g</name>"), "{xml}");
    let edited = q.state().join("edited.xml");
    std::fs::write(
        &edited,
        xml.replace("<vcpu", "<description>edited</description>\n  <vcpu"),
    )
    .unwrap();
    q.ok(&[
        "managedsave-define",
        "g",
        edited.to_str().unwrap(),
        "--running",
    ]);
    assert!(q.ok(&["managedsave-dumpxml", "g"]).contains("edited"));
    let f = std::fs::File::open(&managed).unwrap();
    assert!(saveimage::read_header(&f).unwrap().0.was_running);
    q.ok(&["managedsave-remove", "g"]);
    assert_eq!(q.managed("g"), "no");
    assert!(!managed.exists());
    q.ok(&["start", "g"]);
    assert_eq!(q.domstate("g"), "running (booted)");
    q.wait_counting("g");

    // Images that are not complete saves are refused with a clear error; nothing starts.
    let bad = q.state().join("bad.save");
    std::fs::write(&bad, b"definitely not a save image").unwrap();
    let e = q.err(&["restore", bad.to_str().unwrap()]);
    assert!(e.contains("image magic is incorrect"), "{e}");
    let bytes = std::fs::read(&img).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    q.ok(&["destroy", "g"]);
    let e = q.err(&["restore", bad.to_str().unwrap()]);
    assert!(e.contains("load of migration failed"), "{e}");
    assert_eq!(q.domstate("g"), "shut off (destroyed)");
    assert!(q.qemu_pids().is_empty(), "nothing left running: {e}");
    q.ok(&["start", "g"]);
    q.wait_counting("g");

    // No job: domjobinfo says so; abort has nothing to abort.
    assert!(q.ok(&["domjobinfo", "g"]).contains("None"));
    let e = q.err(&["domjobabort", "g"]);
    assert!(e.contains("no job is active"), "{e}");
    q.ok(&["destroy", "g"]);
}

#[test]
fn domjobinfo_reports_progress_during_a_save() {
    if !have_virsh() || !have_qemu() {
        return;
    }
    let q = Q::start();
    q.define("big", 320, 300);
    q.ok(&["start", "big"]);
    q.wait_counting("big");
    let img = q.state().join("big.save");
    let uri = q.uri();
    let saver = {
        let img = img.clone();
        std::thread::spawn(move || {
            Command::new("virsh")
                .args([
                    "-c",
                    &uri,
                    "save",
                    "big",
                    img.to_str().unwrap(),
                    "--bypass-cache",
                ])
                .output()
                .unwrap()
        })
    };
    let mut seen = Vec::new();
    let t = Instant::now();
    while !saver.is_finished() && t.elapsed() < Duration::from_secs(60) {
        let o = q.virsh(&["domjobinfo", "big"]);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        if text.contains("Unbounded") {
            seen.push(text);
        }
    }
    let o = saver.join().unwrap();
    assert!(
        o.status.success(),
        "save failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!seen.is_empty(), "domjobinfo never saw the save running");
    let first = &seen[0];
    eprintln!(
        "{} domjobinfo samples during the save; the first:\n{first}",
        seen.len()
    );
    for field in [
        "Job type:",
        "Operation:",
        "Time elapsed:",
        "Data processed:",
        "Data total:",
    ] {
        assert!(first.contains(field), "{field} missing in {first}");
    }
    assert!(first.contains("Save"), "{first}");
    assert!(
        !first.contains("Data remaining:   0.000 B"),
        "the total is known (or estimated from the guest's memory) from the start: {first}"
    );
    assert_eq!(q.domstate("big"), "shut off (saved)");
    // As libvirt: an inactive domain has no job to ask about, but the completed save's
    // statistics are kept until read.
    let e = q.err(&["domjobinfo", "big"]);
    assert!(e.contains("domain is not running"), "{e}");
    let done = q.ok(&["domjobinfo", "big", "--completed", "--keep-completed"]);
    assert!(
        done.contains("Completed") && done.contains("Save"),
        "{done}"
    );
    let done2 = q.ok(&["domjobinfo", "big", "--completed"]);
    assert_eq!(done, done2, "kept after --keep-completed");
    assert!(q.ok(&["domjobinfo", "big", "--completed"]).contains("None"));
    let (header, offset) = saveimage::read_header(&std::fs::File::open(&img).unwrap()).unwrap();
    assert!(header.was_running);
    assert!(
        std::fs::metadata(&img).unwrap().len() > offset + 290 * u64::from(MIB),
        "the filled memory is in the image"
    );

    // Restored, then saved again and aborted mid-way: the guest runs on, no image.
    q.ok(&[
        "restore",
        img.to_str().unwrap(),
        "--bypass-cache",
        "--paused",
    ]);
    assert_eq!(q.domstate("big"), "paused (migrating)");
    q.ok(&["resume", "big"]);
    let img2 = q.state().join("big2.save");
    let uri = q.uri();
    let saver = {
        let img2 = img2.clone();
        std::thread::spawn(move || {
            Command::new("virsh")
                .args([
                    "-c",
                    &uri,
                    "save",
                    "big",
                    img2.to_str().unwrap(),
                    "--bypass-cache",
                ])
                .output()
                .unwrap()
        })
    };
    let t = Instant::now();
    while !String::from_utf8_lossy(&q.virsh(&["domjobinfo", "big"]).stdout).contains("Unbounded") {
        assert!(
            !saver.is_finished(),
            "the save ended before it could be aborted"
        );
        assert!(t.elapsed() < Duration::from_secs(30));
    }
    q.ok(&["domjobabort", "big"]);
    let o = saver.join().unwrap();
    assert!(!o.status.success(), "an aborted save fails");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("canceled by client"), "{e}");
    assert!(!img2.exists(), "no image after an abort");
    assert_eq!(q.domstate("big"), "running (save canceled)");
    q.ok(&["destroy", "big"]);
}

/// Whether the root-only thin-storage test can run; fails under `CI=true` when not.
fn can_mount(test: &str) -> bool {
    let mut missing = Vec::new();
    if std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) != 0 {
        missing.push("root".to_string());
    }
    for t in ["losetup", "mkfs.ext4", "mount", "umount"] {
        if !["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .any(|d| Path::new(d).join(t).exists())
        {
            missing.push(t.to_string());
        }
    }
    if missing.is_empty() {
        return true;
    }
    let reason = format!("{test} needs {}", missing.join(", "));
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{reason} (CI=true: not skipping)"
    );
    eprintln!("SKIPPED: {reason}");
    false
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// ext4 in a sparse 128 MiB file on a 16 MiB tmpfs, mounted at `at` (host-facts §2):
/// writes succeed into the page cache, write-back fails with ENOSPC. Undone on drop.
struct Thin {
    back: PathBuf,
    dev: String,
    mnt: PathBuf,
}

impl Thin {
    fn mount_at(at: &Path, back: &Path) -> Thin {
        std::fs::create_dir_all(back).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m", "vireo-thin"])
            .arg(back));
        let img = back.join("thin.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(128 << 20)
            .unwrap();
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-O", "^has_journal"])
            .arg(&img));
        let dev = run(Command::new("losetup").args(["-f", "--show"]).arg(&img));
        std::fs::create_dir_all(at).unwrap();
        run(Command::new("mount").args(["-o", "discard", &dev]).arg(at));
        Thin {
            back: back.to_path_buf(),
            dev,
            mnt: at.to_path_buf(),
        }
    }
}

impl Drop for Thin {
    fn drop(&mut self) {
        for p in [&self.mnt] {
            if !Command::new("umount")
                .arg(p)
                .status()
                .is_ok_and(|s| s.success())
            {
                let _ = Command::new("umount").arg("-l").arg(p).status();
            }
        }
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
        if !Command::new("umount")
            .arg(&self.back)
            .status()
            .is_ok_and(|s| s.success())
        {
            let _ = Command::new("umount").arg("-l").arg(&self.back).status();
        }
    }
}

#[test]
fn managedsave_to_thin_storage_fails_cleanly_and_the_guest_runs_on() {
    if !have_virsh() || !have_qemu() || !can_mount("managedsave_to_thin_storage") {
        return;
    }
    let q = Q::start();
    // The managed-save directory itself is the overcommitted filesystem.
    let _thin = Thin::mount_at(
        &q.state().join("qemu/managedsave"),
        &q.state().join("thin-back"),
    );
    q.define("t", 64, 48);
    q.ok(&["start", "t"]);
    q.wait_counting("t");

    let e = q.err(&["managedsave", "t"]);
    eprintln!("managedsave to thin storage: {}", e.trim());
    assert!(e.contains("No space left on device"), "{e}");
    let leftovers: Vec<_> = std::fs::read_dir(q.state().join("qemu/managedsave"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n != "lost+found")
        .collect();
    assert!(leftovers.is_empty(), "no image may remain: {leftovers:?}");
    assert_eq!(q.domstate("t"), "running (save canceled)");
    assert_eq!(q.managed("t"), "no");
    // The guest really runs: its counter moves on.
    let before = q.serial_text("t").len();
    q.wait_serial("t", "more digits", |t| t.len() > before);

    // With --bypass-cache (O_DIRECT) the same storage fails already at write().
    let e = q.err(&["managedsave", "t", "--bypass-cache"]);
    assert!(
        e.contains("unable to write") && e.contains("No space left on device"),
        "{e}"
    );
    assert_eq!(q.domstate("t"), "running (save canceled)");
    assert_eq!(q.managed("t"), "no");

    // A later start boots afresh, never from a broken image.
    q.ok(&["destroy", "t"]);
    q.ok(&["start", "t"]);
    assert_eq!(q.domstate("t"), "running (booted)");
    q.wait_counting("t");
    q.ok(&["destroy", "t"]);
}

#[test]
fn vireod_killed_during_a_save_cleans_up_on_restart() {
    if !have_virsh() || !have_qemu() {
        return;
    }
    let mut q = Q::start();
    q.define("k", 320, 300);
    q.ok(&["start", "k"]);
    q.wait_counting("k");
    let img = q.state().join("k.save");
    let uri = q.uri();
    let saver = {
        let img = img.clone();
        std::thread::spawn(move || {
            Command::new("virsh")
                .args([
                    "-c",
                    &uri,
                    "save",
                    "k",
                    img.to_str().unwrap(),
                    "--bypass-cache",
                ])
                .output()
                .unwrap()
        })
    };
    // Kill the daemon once the image has some of the stream in it.
    let t = Instant::now();
    while std::fs::metadata(&img).map(|m| m.len()).unwrap_or(0) < 8 << 20 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the save never started writing"
        );
        assert!(!saver.is_finished(), "the save ended before the kill");
        std::thread::sleep(Duration::from_millis(2));
    }
    q.d.signal(9);
    let _ = q.d.child.wait();
    let o = saver.join().unwrap();
    assert!(
        !o.status.success(),
        "virsh cannot have seen the save succeed"
    );
    assert!(img.exists(), "the interrupted image is still there");
    let f = std::fs::File::open(&img).unwrap();
    assert!(
        saveimage::is_partial(&f).unwrap(),
        "it has the partial magic"
    );
    assert_eq!(q.qemu_pids().len(), 1, "QEMU outlived the daemon");

    let _ = std::fs::remove_file(q.d.sock());
    q.d.child = spawn_with(q.d.state(), &["--qemu", "on"]);
    let t = Instant::now();
    while std::os::unix::net::UnixStream::connect(q.d.sock()).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "vireod did not come back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!img.exists(), "the partial image is removed at restart");
    assert_eq!(q.domstate("k"), "running (save canceled)");
    assert_eq!(q.managed("k"), "no");
    let before = q.serial_text("k").len();
    q.wait_serial("k", "more digits", |t| t.len() > before);
    q.ok(&["destroy", "k"]);
}

#[test]
fn qemu_killed_during_a_save_leaves_the_domain_crashed_and_no_image() {
    if !have_virsh() || !have_qemu() {
        return;
    }
    let q = Q::start();
    q.define("dies", 320, 300);
    q.ok(&["start", "dies"]);
    q.wait_counting("dies");
    let pid = q.qemu_pids();
    assert_eq!(pid.len(), 1);
    let img = q.state().join("dies.save");
    let uri = q.uri();
    let saver = {
        let img = img.clone();
        std::thread::spawn(move || {
            Command::new("virsh")
                .args(["-c", &uri, "managedsave", "dies", "--bypass-cache"])
                .output()
                .map(|o| (o, img))
                .unwrap()
        })
    };
    let managed = q.state().join("qemu/managedsave/dies.save");
    let t = Instant::now();
    while std::fs::metadata(&managed).map(|m| m.len()).unwrap_or(0) < 8 << 20 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the save never started writing"
        );
        assert!(!saver.is_finished(), "the save ended before the kill");
        std::thread::sleep(Duration::from_millis(2));
    }
    Command::new("kill").args(["-9", &pid[0]]).status().unwrap();
    let (o, _) = saver.join().unwrap();
    assert!(!o.status.success(), "the save cannot succeed");
    assert!(!managed.exists(), "no image after QEMU died");
    let t = Instant::now();
    while q.domstate("dies") != "shut off (crashed)" {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "state is {}",
            q.domstate("dies")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(q.managed("dies"), "no");
}

// ---------------------------------------------------------------------------------------
// Cross-restore with the real libvirtd (qemu driver, private socket): an image saved by
// libvirtd is restored by vireod and the other way round, and the guest continues both
// times. Only one libvirtd can run per host (it holds the system state directories), so
// a libvirtd that keeps exiting means another one runs: that skips outside CI.

/// A private libvirtd with the qemu driver, stopped when dropped.
struct Libvirtd {
    child: std::process::Child,
    dir: PathBuf,
}

impl Libvirtd {
    fn start(dir: &Path) -> Result<Libvirtd, String> {
        let run = dir.join("run");
        std::fs::create_dir_all(&run).unwrap();
        let conf = format!(
            "listen_tls = 0\nlisten_tcp = 0\nunix_sock_dir = \"{}\"\n\
             unix_sock_group = \"root\"\nunix_sock_ro_perms = \"0770\"\n\
             unix_sock_rw_perms = \"0770\"\nunix_sock_admin_perms = \"0700\"\n\
             auth_unix_ro = \"none\"\nauth_unix_rw = \"none\"\nlog_filters = \"\"\n\
             log_outputs = \"3:file:{}\"\n",
            run.display(),
            dir.join("libvirtd.log").display()
        );
        std::fs::write(dir.join("libvirtd.conf"), conf).unwrap();
        let t = Instant::now();
        loop {
            let child = Command::new("/usr/sbin/libvirtd")
                .arg("--config")
                .arg(dir.join("libvirtd.conf"))
                .arg("--pid-file")
                .arg(dir.join("libvirtd.pid"))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
                .spawn()
                .expect("spawn libvirtd");
            let mut l = Libvirtd {
                child,
                dir: dir.to_path_buf(),
            };
            while std::os::unix::net::UnixStream::connect(l.sock()).is_err()
                && l.child.try_wait().unwrap().is_none()
                && t.elapsed() < Duration::from_secs(30)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            // It binds its socket before it finds out whether another daemon holds the
            // state directories: only one that answers and stays counts.
            let answers = l.virsh(&["uri"]).status.success();
            std::thread::sleep(Duration::from_millis(300));
            if answers && l.child.try_wait().unwrap().is_none() {
                return Ok(l);
            }
            drop(l);
            if t.elapsed() > Duration::from_secs(10) {
                return Err(format!(
                    "libvirtd did not stay up (another libvirtd runs?): {}",
                    std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("run/libvirt-sock")
    }

    fn virsh(&self, args: &[&str]) -> std::process::Output {
        let uri = format!("qemu+unix:///system?socket={}", self.sock().display());
        Command::new("timeout")
            .args(["60", "virsh", "-c", &uri])
            .args(args)
            .output()
            .expect("run virsh")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.virsh(args);
        assert!(
            o.status.success(),
            "libvirtd: virsh {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Skips (outside CI) or fails (CI=true) for `reason`.
fn skip(reason: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{reason} (CI=true: not skipping)"
    );
    eprintln!("SKIPPED: {reason}");
}

#[test]
fn images_cross_restore_between_libvirtd_and_vireod() {
    const NAME: &str = "vireo-cross-restore";
    if !have_virsh() || !have_qemu() {
        return;
    }
    let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    let qemu_user = std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("libvirt-qemu:"));
    if !root || !Path::new("/usr/sbin/libvirtd").exists() || !qemu_user {
        skip("cross-restore needs root, /usr/sbin/libvirtd and the libvirt-qemu user");
        return;
    }
    let q = Q::start();
    let lvdir = tempfile::tempdir().unwrap();
    let l = match Libvirtd::start(lvdir.path()) {
        Ok(l) => l,
        Err(why) => return skip(&why),
    };
    // A directory QEMU can use whichever daemon runs it (libvirtd's runs as libvirt-qemu).
    let share = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        share.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    std::fs::create_dir_all(q.state().join("images")).unwrap();
    let src = testguest::build(
        &q.state().join("images"),
        TestGuest::Fill { fill_end: 41 * MIB },
    )
    .expect("assemble the test guest");
    let img = share.path().join("x.img");
    std::fs::copy(src, &img).unwrap();
    let serial = share.path().join("x.serial");
    let serial_text = || std::fs::read_to_string(&serial).unwrap_or_default();
    let wait = |what: &str, done: &dyn Fn(&str) -> bool| {
        let t = Instant::now();
        while !done(&serial_text()) {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "serial never showed {what}: {:?}",
                serial_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let continues = |who: &str| {
        wait("two digits", &|t: &str| {
            t.chars().filter(char::is_ascii_digit).count() >= 2
        });
        assert!(
            !serial_text().contains("filled"),
            "{who}: the restored guest booted again: {:?}",
            serial_text()
        );
    };
    let xml = format!(
        "<domain type='qemu'>
  <name>vireo-cross-restore</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{}'/>
      <target dev='sda' bus='sata'/>
    </disk>
    <serial type='file'><source path='{}'/><target port='0'/></serial>
  </devices>
</domain>",
        img.display(),
        serial.display()
    );
    let xml_path = share.path().join("x.xml");
    std::fs::write(&xml_path, xml).unwrap();

    // libvirtd keeps its definitions in the host's directories: clear a leftover.
    let _ = l.virsh(&["destroy", NAME]);
    let _ = l.virsh(&["undefine", NAME, "--managed-save"]);

    // libvirtd runs and saves the guest; vireod restores libvirt's image.
    l.ok(&["define", xml_path.to_str().unwrap()]);
    l.ok(&["start", NAME]);
    wait("filled + digits", &|t: &str| {
        t.split_once("filled\r\n")
            .is_some_and(|(_, a)| a.chars().any(|c| c.is_ascii_digit()))
    });
    let lv_image = share.path().join("by-libvirtd.save");
    l.ok(&["save", NAME, lv_image.to_str().unwrap()]);
    let out = q.ok(&["restore", lv_image.to_str().unwrap()]);
    assert!(out.contains("Domain restored"), "{out}");
    assert_eq!(q.domstate(NAME), "running (restored)");
    continues("vireod");

    // vireod saves it; libvirtd restores vireod's image.
    let v_image = share.path().join("by-vireod.save");
    q.ok(&["save", NAME, v_image.to_str().unwrap()]);
    let out = l.ok(&["restore", v_image.to_str().unwrap()]);
    assert!(out.contains("Domain restored"), "{out}");
    assert_eq!(
        l.ok(&["domstate", "--reason", NAME]).trim(),
        "running (restored)"
    );
    continues("libvirtd");
    l.ok(&["destroy", NAME]);
    l.ok(&["undefine", NAME]);
}

// ---------------------------------------------------------------------------------------
// Benchmark (run by hand, root, libvirtd installed:
// `cargo test -p vireo-daemon --test qemu_save -- --ignored --nocapture bench`):
// save (managedsave) and restore (start) of a 512 MiB and a 64 MiB guest through virsh,
// vireod against libvirtd's qemu driver on the same filesystem, and the raw synced write
// bandwidth of that filesystem (`dd conv=fdatasync`). Medians of VIREO_BENCH_RUNS (5);
// VIREO_BENCH_BYPASS=1 saves with --bypass-cache.

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

#[test]
#[ignore = "a benchmark, run by hand"]
fn bench_managedsave_and_restore_against_dd_and_libvirtd() {
    const NAME: &str = "vireo-save-bench";
    let runs: usize = std::env::var("VIREO_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    // VIREO_BENCH_BYPASS=1: managedsave --bypass-cache (O_DIRECT) on both daemons.
    let bypass = std::env::var("VIREO_BENCH_BYPASS").as_deref() == Ok("1");
    let q = Q::start();
    let lvdir = tempfile::tempdir().unwrap();
    let l = Libvirtd::start(lvdir.path()).expect("a private libvirtd");
    let share = tempfile::tempdir_in(q.state()).unwrap();
    std::fs::set_permissions(
        share.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    std::fs::create_dir_all(q.state().join("images")).unwrap();
    let mib = |d: Duration, bytes: u64| bytes as f64 / (1 << 20) as f64 / d.as_secs_f64();
    for ram in [512u32, 64] {
        let fill = ram - 8;
        let src = testguest::build(
            &q.state().join("images"),
            TestGuest::Fill {
                fill_end: (fill + 1) * MIB,
            },
        )
        .unwrap();
        let img = share.path().join("b.img");
        std::fs::copy(src, &img).unwrap();
        let serial = share.path().join("b.serial");
        let xml = format!(
            "<domain type='qemu'><name>{NAME}</name><memory unit='MiB'>{ram}</memory>\
             <vcpu>1</vcpu><os><type arch='x86_64' machine='q35'>hvm</type><boot dev='hd'/></os>\
             <features><acpi/></features><devices><disk type='file' device='disk'>\
             <driver name='qemu' type='raw'/><source file='{}'/><target dev='sda' bus='sata'/>\
             </disk><serial type='file'><source path='{}'/><target port='0'/></serial>\
             </devices></domain>",
            img.display(),
            serial.display()
        );
        let xml_path = share.path().join("b.xml");
        std::fs::write(&xml_path, xml).unwrap();
        let filled = || {
            let t = Instant::now();
            while !std::fs::read_to_string(&serial)
                .unwrap_or_default()
                .split_once("filled\r\n")
                .is_some_and(|(_, a)| a.chars().any(|c| c.is_ascii_digit()))
            {
                assert!(
                    t.elapsed() < Duration::from_secs(60),
                    "the guest never filled"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let _ = l.virsh(&["destroy", NAME]);
        let _ = l.virsh(&["undefine", NAME, "--managed-save"]);
        l.ok(&["define", xml_path.to_str().unwrap()]);
        q.ok(&["define", xml_path.to_str().unwrap()]);
        let managed = q.state().join(format!("qemu/managedsave/{NAME}.save"));
        let (mut vs, mut vr, mut ls, mut lr, mut dds) = (vec![], vec![], vec![], vec![], vec![]);
        let mut bytes = 0;
        for _ in 0..runs {
            // dd of the same size into the same filesystem.
            let target = share.path().join("dd.out");
            dds.push(timed(|| {
                assert!(
                    Command::new("dd")
                        .arg("if=/dev/zero")
                        .arg(format!("of={}", target.display()))
                        .args([
                            "bs=1M",
                            &format!("count={ram}"),
                            "conv=fdatasync",
                            "status=none"
                        ])
                        .status()
                        .unwrap()
                        .success()
                )
            }));
            std::fs::remove_file(&target).unwrap();
            for (daemon_is_vireo, saves, restores) in
                [(true, &mut vs, &mut vr), (false, &mut ls, &mut lr)]
            {
                let run = |args: &[&str]| {
                    if daemon_is_vireo {
                        q.ok(args);
                    } else {
                        l.ok(args);
                    }
                };
                run(&["start", NAME]);
                filled();
                let mut args = vec!["managedsave", NAME];
                if bypass {
                    args.push("--bypass-cache");
                }
                saves.push(timed(|| run(&args)));
                if daemon_is_vireo {
                    bytes = std::fs::metadata(&managed).unwrap().len();
                }
                restores.push(timed(|| run(&["start", NAME])));
                run(&["destroy", NAME]);
            }
        }
        let (vs, vr, ls, lr, dd) = (median(vs), median(vr), median(ls), median(lr), median(dds));
        eprintln!(
            "{ram} MiB guest, image {:.1} MiB, medians of {runs}:\n  \
             dd conv=fdatasync {ram} MiB: {dd:?} ({:.0} MiB/s)\n  \
             vireod managedsave {vs:?} ({:.0} MiB/s, {:.0}% of dd), start (restore) {vr:?} ({:.0} MiB/s)\n  \
             libvirtd managedsave {ls:?}, start (restore) {lr:?}\n  \
             vireod/libvirtd: save {:.2}x, restore {:.2}x",
            bytes as f64 / (1 << 20) as f64,
            mib(dd, u64::from(ram) << 20),
            mib(vs, bytes),
            100.0 * mib(vs, bytes) / mib(dd, u64::from(ram) << 20),
            mib(vr, bytes),
            vs.as_secs_f64() / ls.as_secs_f64(),
            vr.as_secs_f64() / lr.as_secs_f64(),
        );
        q.ok(&["undefine", NAME]);
        l.ok(&["undefine", NAME]);
    }
    // The daemon's own view of each save (job start to guest stopped, without virsh).
    let totals: Vec<u64> = strip_ansi(&q.d.log())
        .lines()
        .filter_map(|l| {
            l.split_once("total_ms=")?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    for (ram, chunk) in [512u32, 64].iter().zip(totals.chunks(runs)) {
        let m = median(chunk.iter().map(|&ms| Duration::from_millis(ms)).collect());
        eprintln!("{ram} MiB guest: vireod's save job (pause to guest stopped), median {m:?}");
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
