//! Cross-restore between the real libvirtd 9.0 (qemu driver, private socket) and
//! vireod (issue 5, "Done when" bullet 3): both write libvirt's qemu save image layout,
//! so a guest saved by one daemon can be restored by the other.
//!
//! The guest is the boot-sector "fill" guest (64 MiB, TCG): it writes one dword into
//! every page of its first 41 MiB, prints `filled`, then a rolling digit forever. After a
//! restore the serial log (a fresh file: it is removed before every restore) must show
//! new digits and no second `filled`, which proves the guest continued from the saved
//! memory instead of booting again.
//!
//! What runs, in one guest's life:
//! 1. libvirtd defines and starts it, `virsh save`s it and forgets it (undefine);
//!    vireod, which has libvirtd's stored definition (`dumpxml --inactive`, with the
//!    devices libvirt adds, `<audio type='none'>` among them), reads the image
//!    (`save-image-dumpxml`, header) and restores it;
//! 2. vireod saves it with `--paused`; libvirtd restores vireod's image (paused, as the
//!    image says), resumes it;
//! 3. libvirtd saves it again; vireod restores it with `--xml` and an edited copy of the
//!    image's XML (the documented fallback when the image's XML needs changes): the
//!    restored domain carries the edit.
//!
//! Needs root, `/usr/sbin/libvirtd`, the `libvirt-qemu` user, `/etc/libvirt/qemu.conf`
//! as `benches/compare-qemu.sh` writes it, `/work/shared/tools/libvirtd-private.sh`
//! (`VIREO_LIBVIRTD_PRIVATE` overrides the path), QEMU and binutils. Under `CI=true` any
//! of them missing fails the test; otherwise it is skipped with the reason. Only one
//! libvirtd with the qemu driver can run on a machine (`/run/libvirt/qemu/driver.pid`):
//! if another one runs, the test waits for it (up to `VIREO_LIBVIRTD_WAIT` seconds,
//! default 300) instead of failing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::Daemon;
use vireo_drivers::qemu::testguest::{self, TestGuest};
use vireo_drivers::saveimage;

const MIB: u32 = 1 << 20;
const NAME: &str = "vireo-xrestore";
const DEFAULT_TOOL: &str = "/work/shared/tools/libvirtd-private.sh";

/// The tests of this file take turns: one libvirtd with the qemu driver per machine.
static ONE_LIBVIRTD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Skips (outside CI) or fails (`CI=true`) for `reason`; returns false for `if !…`.
fn skip(reason: &str) -> bool {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{reason} (CI=true: not skipping)"
    );
    eprintln!("SKIPPED: {reason}");
    false
}

fn is_root() -> bool {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0
}

fn tool() -> PathBuf {
    std::env::var_os("VIREO_LIBVIRTD_PRIVATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_TOOL))
}

fn works(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Everything this test needs from the machine; false (after [`skip`]) when missing.
fn prerequisites() -> bool {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root".to_string());
    }
    for (what, ok) in [
        ("virsh", works(Command::new("virsh").arg("--version"))),
        (
            "qemu-system-x86_64",
            works(Command::new("qemu-system-x86_64").arg("--version")),
        ),
        ("binutils (as, ld)", testguest::tools_available()),
        (
            "/usr/sbin/libvirtd",
            Path::new("/usr/sbin/libvirtd").exists(),
        ),
        (
            "libvirt's qemu driver module",
            Path::new(QEMU_DRIVER_SO).exists(),
        ),
        ("the libvirt-qemu user", has_user("libvirt-qemu")),
        ("/etc/libvirt/qemu.conf", qemu_conf_ok()),
        ("libvirtd-private.sh", tool().exists()),
    ] {
        if !ok {
            missing.push(what.to_string());
        }
    }
    missing.is_empty() || skip(&format!("cross-restore needs {}", missing.join(", ")))
}

const QEMU_DRIVER_SO: &str =
    "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so";

fn has_user(name: &str) -> bool {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(':').next() == Some(name))
}

/// libvirtd's qemu driver must run QEMU as root without a security driver or virtlogd
/// (section 5 of the libvirtd how-to), or it cannot use our files and serial logs.
fn qemu_conf_ok() -> bool {
    let conf = std::fs::read_to_string("/etc/libvirt/qemu.conf").unwrap_or_default();
    let set = |key: &str, value: &str| {
        conf.lines().any(|l| {
            l.split_once('=')
                .is_some_and(|(k, v)| k.trim() == key && v.trim().trim_matches('"') == value)
        })
    };
    set("user", "root") && set("security_driver", "none") && set("stdio_handler", "file")
}

/// A private libvirtd run by `libvirtd-private.sh` (under the subreaper) with only the
/// qemu driver; stopped when dropped.
struct Libvirtd {
    dir: tempfile::TempDir,
}

/// The pid in `/run/libvirt/qemu/driver.pid` if that process lives.
fn qemu_driver_holder() -> Option<String> {
    let pid = std::fs::read_to_string("/run/libvirt/qemu/driver.pid").ok()?;
    let pid = pid.trim().to_string();
    (!pid.is_empty() && Path::new("/proc").join(&pid).exists()).then_some(pid)
}

impl Libvirtd {
    fn start() -> Libvirtd {
        let wait = std::env::var("VIREO_LIBVIRTD_WAIT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300);
        let deadline = Instant::now() + Duration::from_secs(wait);
        let mut said = false;
        loop {
            if let Some(pid) = qemu_driver_holder() {
                assert!(
                    Instant::now() < deadline,
                    "another libvirtd (pid {pid}) still holds the qemu driver after {wait} s"
                );
                if !said {
                    eprintln!("waiting for another libvirtd with the qemu driver (pid {pid})");
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            let l = Libvirtd {
                dir: tempfile::Builder::new()
                    .prefix("vireo-xrestore-libvirtd")
                    .tempdir()
                    .unwrap(),
            };
            let drivers = l.dir.path().join("drivers");
            std::fs::create_dir_all(&drivers).unwrap();
            std::os::unix::fs::symlink(QEMU_DRIVER_SO, drivers.join("libvirt_driver_qemu.so"))
                .unwrap();
            let out = Command::new(tool())
                .arg("start")
                .arg(l.dir.path())
                .env("LIBVIRT_DRIVER_DIR", &drivers)
                .output()
                .expect("run libvirtd-private.sh");
            // It binds its socket before it finds out whether another daemon holds the
            // qemu driver's state: only one that answers and stays up counts.
            if out.status.success() && l.virsh(&["list", "--all"]).status.success() {
                std::thread::sleep(Duration::from_millis(300));
                if l.alive() && l.virsh(&["list", "--all"]).status.success() {
                    return l;
                }
            }
            let log = l.log();
            drop(l);
            assert!(
                Instant::now() < deadline,
                "libvirtd did not come up: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                tail(&log, 20)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn alive(&self) -> bool {
        std::fs::read_to_string(self.dir.path().join("wrapper.pid"))
            .is_ok_and(|p| Path::new("/proc").join(p.trim()).exists())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("libvirtd.log")).unwrap_or_default()
    }

    fn uri(&self) -> String {
        format!(
            "qemu+unix:///system?socket={}",
            self.dir.path().join("run/libvirt-sock").display()
        )
    }

    fn virsh(&self, args: &[&str]) -> Output {
        virsh(&self.uri(), args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.virsh(args);
        assert!(
            o.status.success(),
            "libvirtd: virsh {args:?} failed: {}\nlibvirtd log:\n{}",
            String::from_utf8_lossy(&o.stderr),
            tail(&self.log(), 20)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        if self.dir.path().join("wrapper.pid").exists() {
            let _ = Command::new(tool())
                .arg("stop")
                .arg(self.dir.path())
                .output();
        }
    }
}

/// vireod with the qemu driver on its own state directory.
struct Vireod {
    d: Daemon,
}

impl Vireod {
    fn uri(&self) -> String {
        format!("qemu+unix:///system?socket={}", self.d.sock().display())
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = virsh(&self.uri(), args);
        assert!(
            o.status.success(),
            "vireod: virsh {args:?} failed: {}\nvireod log:\n{}",
            String::from_utf8_lossy(&o.stderr),
            tail(&self.d.log(), 30)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

fn virsh(uri: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["60", "virsh", "-c", uri])
        .args(args)
        .output()
        .expect("run virsh")
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The guest's serial log on the host.
struct Serial(PathBuf);

impl Serial {
    fn text(&self) -> String {
        std::fs::read_to_string(&self.0).unwrap_or_default()
    }

    fn wait(&self, what: &str, done: impl Fn(&str) -> bool) {
        let t = Instant::now();
        while !done(&self.text()) {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "the serial log never showed {what}: {:?}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A fresh boot: `filled`, then a digit.
    fn wait_counting(&self) {
        self.wait("filled + digits", |t| {
            t.split_once("filled\r\n")
                .is_some_and(|(_, a)| a.chars().any(|c| c.is_ascii_digit()))
        });
    }

    /// Forgets the log before a restore (whichever way QEMU opens it, it starts empty).
    fn reset(&self) {
        let _ = std::fs::remove_file(&self.0);
    }

    /// After a restore: two new digits and no second boot.
    fn assert_continues(&self, who: &str) {
        self.wait("two digits after the restore", |t| {
            t.chars().filter(char::is_ascii_digit).count() >= 2
        });
        let text = self.text();
        assert!(
            !text.contains("filled") && !text.contains("hello"),
            "{who}: the restored guest booted again instead of continuing: {text:?}"
        );
    }
}

fn domstate(uri: &str) -> String {
    let o = virsh(uri, &["domstate", "--reason", NAME]);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The device elements (first line of each) of a domain XML, for the log.
fn devices(xml: &str) -> Vec<&str> {
    let Some((_, rest)) = xml.split_once("<devices>") else {
        return Vec::new();
    };
    let mut depth = 0usize;
    let mut out = Vec::new();
    for l in rest.lines().map(str::trim) {
        if l.starts_with("</devices>") {
            break;
        }
        if depth == 0 && l.starts_with('<') && !l.starts_with("</") {
            out.push(l);
        }
        if l.starts_with("</") {
            depth = depth.saturating_sub(1);
        } else if l.starts_with('<') && !l.ends_with("/>") && !l.contains("</") {
            depth += 1;
        }
    }
    out
}

fn header(path: &Path) -> saveimage::SaveHeader {
    let f = std::fs::File::open(path).unwrap();
    saveimage::read_header(&f)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .0
}

/// A directory both daemons' QEMUs can use, holding the fill guest's disk (a fresh copy),
/// its serial log and its XML (64 MiB, q35, SATA disk, serial to a file, nothing else).
fn guest_files() -> (tempfile::TempDir, Serial, PathBuf) {
    let share = tempfile::Builder::new()
        .prefix("vireo-xrestore")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        share.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let src = testguest::build(share.path(), TestGuest::Fill { fill_end: 41 * MIB })
        .expect("assemble the fill guest");
    let disk = share.path().join("disk.img");
    std::fs::copy(src, &disk).unwrap();
    let serial = Serial(share.path().join("serial.log"));
    let xml = testguest::domain_xml(NAME, 64, "<acpi/>", &disk, &serial.0, "");
    let xml_path = share.path().join("domain.xml");
    std::fs::write(&xml_path, xml).unwrap();
    (share, serial, xml_path)
}

#[test]
fn guest_saved_by_libvirtd_restores_in_vireod_and_back() {
    if !prerequisites() {
        return;
    }
    let _turn = ONE_LIBVIRTD.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let (share, serial, xml_path) = guest_files();

    let v = Vireod {
        d: Daemon::start_with(&["--qemu", "on"]),
    };
    let l = Libvirtd::start();
    eprintln!("daemons up after {:?}", t0.elapsed());
    // libvirtd keeps definitions in the host's directories: clear a leftover.
    let _ = l.virsh(&["destroy", NAME]);
    let _ = l.virsh(&["undefine", NAME, "--managed-save"]);

    // 1. libvirtd boots and saves the guest, then forgets it; vireod restores its image.
    l.ok(&["define", xml_path.to_str().unwrap()]);
    // libvirtd's stored definition, with everything it added (controllers, PS/2 inputs,
    // `<audio type='none'>`, the balloon), defines as it is in vireod.
    let inactive = l.ok(&["dumpxml", "--inactive", NAME]);
    assert!(
        inactive.contains("<audio id='1' type='none'/>"),
        "{inactive}"
    );
    let inactive_path = share.path().join("libvirtd-inactive.xml");
    std::fs::write(&inactive_path, &inactive).unwrap();
    v.ok(&["define", inactive_path.to_str().unwrap()]);
    l.ok(&["start", NAME]);
    serial.wait_counting();
    let live = l.ok(&["dumpxml", NAME]);
    let lv_image = share.path().join("by-libvirtd.save");
    l.ok(&["save", NAME, lv_image.to_str().unwrap()]);
    l.ok(&["undefine", NAME]);
    assert!(
        !l.virsh(&["dominfo", NAME]).status.success(),
        "libvirtd forgot it"
    );
    let h = header(&lv_image);
    assert!(h.was_running, "libvirtd saved a running guest");
    assert_eq!(h.format, saveimage::SaveFormat::Raw);
    eprintln!("libvirtd's live devices: {:?}", devices(&live));
    eprintln!("the devices in libvirtd's image: {:?}", devices(&h.xml));
    // What libvirtd added to the definition is what vireod must now build the same way.
    for added in ["pcie-root-port", "<controller type='sata'", "<memballoon"] {
        assert!(
            live.contains(added),
            "libvirtd's live XML has {added}: {live}"
        );
        assert!(
            h.xml.contains(added),
            "the image's XML has {added}: {}",
            h.xml
        );
    }
    let dumped = v.ok(&["save-image-dumpxml", lv_image.to_str().unwrap()]);
    assert!(dumped.contains(&format!("<name>{NAME}</name>")), "{dumped}");
    assert!(dumped.contains("pcie-root-port"), "{dumped}");
    serial.reset();
    let out = v.ok(&["restore", lv_image.to_str().unwrap()]);
    assert!(out.contains("Domain restored from"), "{out}");
    assert_eq!(domstate(&v.uri()), "running (restored)");
    serial.assert_continues("vireod restoring libvirtd's image");
    assert!(
        v.ok(&["dominfo", NAME]).contains("Persistent:     yes"),
        "restored into the definition taken from libvirtd"
    );
    eprintln!("libvirtd → vireod done after {:?}", t0.elapsed());

    // 2. vireod saves it (to be restored paused); libvirtd, which knows nothing of the
    //    domain, restores vireod's image paused and resumes it.
    let v_image = share.path().join("by-vireod.save");
    v.ok(&["save", NAME, v_image.to_str().unwrap(), "--paused"]);
    assert_eq!(domstate(&v.uri()), "shut off (saved)");
    v.ok(&["undefine", NAME]);
    assert!(!header(&v_image).was_running, "--paused clears was_running");
    let dumped = l.ok(&["save-image-dumpxml", v_image.to_str().unwrap()]);
    assert!(dumped.contains(&format!("<name>{NAME}</name>")), "{dumped}");
    serial.reset();
    let out = l.ok(&["restore", v_image.to_str().unwrap()]);
    assert!(out.contains("Domain restored from"), "{out}");
    let state = domstate(&l.uri());
    assert!(state.starts_with("paused"), "libvirtd: {state}");
    eprintln!("libvirtd after restoring a --paused image: {state}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !serial.text().chars().any(|c| c.is_ascii_digit()),
        "a paused guest does not count: {:?}",
        serial.text()
    );
    l.ok(&["resume", NAME]);
    assert_eq!(domstate(&l.uri()), "running (unpaused)");
    serial.assert_continues("libvirtd restoring vireod's image");
    eprintln!("vireod → libvirtd done after {:?}", t0.elapsed());

    // 3. libvirtd saves it again; vireod restores it with an edited XML (`--xml`).
    let lv_image2 = share.path().join("by-libvirtd-2.save");
    l.ok(&["save", NAME, lv_image2.to_str().unwrap()]);
    assert!(
        !l.virsh(&["dominfo", NAME]).status.success(),
        "transient in libvirtd: gone after the save"
    );
    let image_xml = v.ok(&["save-image-dumpxml", lv_image2.to_str().unwrap()]);
    let edited = share.path().join("edited.xml");
    std::fs::write(
        &edited,
        image_xml.replacen(
            "<memory",
            "<description>restored by vireod from libvirtd's image</description>\n  <memory",
            1,
        ),
    )
    .unwrap();
    serial.reset();
    v.ok(&[
        "restore",
        lv_image2.to_str().unwrap(),
        "--xml",
        edited.to_str().unwrap(),
    ]);
    assert_eq!(domstate(&v.uri()), "running (restored)");
    serial.assert_continues("vireod restoring libvirtd's image with --xml");
    let now = v.ok(&["dumpxml", NAME]);
    assert!(
        now.contains("restored by vireod from libvirtd's image"),
        "{now}"
    );
    v.ok(&["destroy", NAME]);
    eprintln!("all done after {:?}", t0.elapsed());
}

/// The other way round from the start: a guest defined in vireod from a plain XML (no
/// default devices, no addresses), saved by vireod, restored by libvirtd.
///
/// vireod leaves QEMU to place the devices the XML gives no address (and the balloon
/// libvirt adds by default); after start it asks `query-pci` where they went and writes
/// that into the live XML, hence the image's. Without it libvirtd built its own layout
/// (balloon behind a pcie-root-port) and QEMU refused the stream: "Unknown savevm
/// section or instance '0000:00:01.0/virtio-balloon' 0".
#[test]
fn guest_defined_in_vireod_saved_by_vireod_restores_in_libvirtd() {
    if !prerequisites() {
        return;
    }
    let _turn = ONE_LIBVIRTD.lock().unwrap_or_else(|e| e.into_inner());
    let (share, serial, xml_path) = guest_files();
    let v = Vireod {
        d: Daemon::start_with(&["--qemu", "on"]),
    };
    let l = Libvirtd::start();
    let _ = l.virsh(&["destroy", NAME]);
    let _ = l.virsh(&["undefine", NAME, "--managed-save"]);
    v.ok(&["create", xml_path.to_str().unwrap()]);
    serial.wait_counting();
    let image = share.path().join("by-vireod.save");
    v.ok(&["save", NAME, image.to_str().unwrap()]);
    serial.reset();
    let out = l.ok(&["restore", image.to_str().unwrap()]);
    assert!(out.contains("Domain restored from"), "{out}");
    assert_eq!(domstate(&l.uri()), "running (restored)");
    serial.assert_continues("libvirtd restoring a vireod-defined guest");
    l.ok(&["destroy", NAME]);
}
