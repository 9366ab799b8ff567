//! Shared helpers of the drivers' integration tests (`qemu`, `qemu_save`, `iohelper`):
//! a [`QemuHypervisor`] on a temporary directory whose guests are killed on drop, test
//! guest definitions, serial-log waits, and real filesystems under a temporary
//! directory ([`TempMounts`], over [`vireo_drivers::testfs`]). Each test binary
//! compiles this module and uses part of it, hence the `dead_code` allowance.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use vireo_drivers::qemu::hypervisor::{QemuConfig, QemuHypervisor, default_emulator};
use vireo_drivers::qemu::testguest::{self, TestGuest};
use vireo_drivers::testfs;
use vireo_xml::DomainDef;

/// Whether QEMU and binutils are here; under CI their absence fails the test.
pub fn available() -> bool {
    let qemu = default_emulator().is_file();
    let tools = testguest::tools_available();
    if qemu && tools {
        return true;
    }
    let why = format!(
        "needs qemu-system-x86_64 ({}) and binutils ({})",
        if qemu { "found" } else { "missing" },
        if tools { "found" } else { "missing" }
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    eprintln!("skipping: {why}");
    false
}

/// Boot images are built once per test process.
pub fn image_cache() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// A QEMU hypervisor on its own temporary directory.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub hv: QemuHypervisor,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let hv = QemuHypervisor::new(Env::config(dir.path()));
        Env { dir, hv }
    }

    /// The configuration of a hypervisor on `dir` (a short destroy grace).
    pub fn config(dir: &Path) -> QemuConfig {
        let mut cfg = QemuConfig::new(dir.join("run"), dir.join("log"));
        cfg.destroy_grace = Duration::from_secs(2);
        cfg
    }

    /// The file guest `name` logs COM1 into.
    pub fn serial(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.serial"))
    }

    pub fn serial_text(&self, name: &str) -> String {
        std::fs::read_to_string(self.serial(name)).unwrap_or_default()
    }

    /// A q35 definition of `ram_mib` MiB booting `kind` from its own copy of the image
    /// (QEMU locks its disk images; an existing copy is kept), its serial port logged
    /// to [`Env::serial`], with `<features>` holding `features` (none when empty) and
    /// `extra_devices` after the serial port.
    pub fn guest_def(
        &self,
        name: &str,
        kind: TestGuest,
        ram_mib: u32,
        features: &str,
        extra_devices: &str,
    ) -> DomainDef {
        let src = testguest::build(image_cache(), kind).unwrap();
        let img = self.dir.path().join(format!("{name}.img"));
        if !img.exists() {
            std::fs::copy(&src, &img).unwrap();
        }
        let xml = testguest::domain_xml(
            name,
            ram_mib,
            features,
            &img,
            &self.serial(name),
            extra_devices,
        );
        DomainDef::parse(&xml).unwrap()
    }

    /// Waits (`within` at most) until guest `name`'s serial log satisfies `done`;
    /// `what` names it in the failure.
    pub async fn wait_serial_until(
        &self,
        name: &str,
        what: &str,
        within: Duration,
        done: impl Fn(&str) -> bool,
    ) {
        let deadline = Instant::now() + within;
        let mut delay = Duration::from_millis(5);
        loop {
            let text = self.serial_text(name);
            if done(&text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: serial never showed {what}; it has {text:?}"
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }
}

impl Drop for Env {
    /// A failed test must not leave its guests running (they outlive their "daemon" by
    /// design): kill every process whose command line names this test's directory.
    fn drop(&mut self) {
        let Ok(out) = std::process::Command::new("pgrep")
            .arg("-f")
            .arg(self.dir.path())
            .output()
        else {
            return;
        };
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Real filesystems under a fresh temporary directory, unmounted before it is removed
/// (the fields drop in order).
pub struct TempMounts {
    mounts: testfs::Mounts,
    dir: tempfile::TempDir,
}

impl TempMounts {
    pub fn new() -> TempMounts {
        TempMounts {
            mounts: testfs::Mounts::new(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A tmpfs of `size` at `<dir>/<name>`.
    pub fn tmpfs(&mut self, name: &str, size: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        self.mounts.tmpfs(&p, size).unwrap();
        p
    }

    /// The thin filesystem of [`testfs::Mounts::thin`] at `<dir>/thin`, backed by
    /// `<dir>/back`; returns it with its mount point.
    pub fn thin() -> (TempMounts, PathBuf) {
        let mut m = TempMounts::new();
        let mnt = m.dir.path().join("thin");
        m.mounts.thin(&mnt, &m.dir.path().join("back")).unwrap();
        (m, mnt)
    }
}
