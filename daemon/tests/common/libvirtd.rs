//! A private libvirtd for differential tests: its own configuration, sockets, log and
//! pid file under a test directory, no TLS/TCP listeners and no authentication, so
//! virsh and vireo's clients can be run against the real libvirt and against vireod
//! and their answers compared. Shared by the `cli`, `differential` and `qemu_save`
//! test binaries (each started its own copy before).

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs libvirtd.
pub const LIBVIRTD: &str = "/usr/sbin/libvirtd";

/// A libvirtd on a private socket under its directory, stopped (SIGTERM, then
/// SIGKILL) when dropped.
pub struct Libvirtd {
    child: Child,
    dir: PathBuf,
}

impl Libvirtd {
    /// Starts libvirtd with only its test driver (`test:///default` and the like):
    /// `LIBVIRT_DRIVER_DIR` points at an empty directory, so it loads no driver module
    /// and cannot clash with another libvirtd's state. Panics if it does not come up.
    pub fn start_test_driver(dir: &Path) -> Libvirtd {
        let drivers = dir.join("drivers");
        std::fs::create_dir_all(&drivers).unwrap();
        let mut l = Libvirtd::spawn(dir, Some(&drivers));
        let t = Instant::now();
        while UnixStream::connect(l.sock()).is_err() {
            if let Some(st) = l.child.try_wait().unwrap() {
                panic!("libvirtd exited ({st}): {}", l.stderr());
            }
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "libvirtd did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        l
    }

    /// Starts libvirtd with all its drivers (`qemu:///system`). It binds its socket
    /// before it finds out whether another daemon holds the system state directories,
    /// so only one that answers and stays up counts; it is retried for 10 s.
    pub fn start_all_drivers(dir: &Path) -> Result<Libvirtd, String> {
        let t = Instant::now();
        loop {
            let mut l = Libvirtd::spawn(dir, None);
            while UnixStream::connect(l.sock()).is_err()
                && l.child.try_wait().unwrap().is_none()
                && t.elapsed() < Duration::from_secs(30)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
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

    /// Writes the configuration and spawns libvirtd, with `LIBVIRT_DRIVER_DIR` set to
    /// `drivers` when given.
    fn spawn(dir: &Path, drivers: Option<&Path>) -> Libvirtd {
        let run = dir.join("run");
        std::fs::create_dir_all(&run).unwrap();
        let conf = format!(
            "listen_tls = 0\nlisten_tcp = 0\nunix_sock_dir = \"{run}\"\n\
             unix_sock_group = \"root\"\nunix_sock_ro_perms = \"0770\"\n\
             unix_sock_rw_perms = \"0770\"\nunix_sock_admin_perms = \"0700\"\n\
             auth_unix_ro = \"none\"\nauth_unix_rw = \"none\"\nlog_filters = \"\"\n\
             log_outputs = \"3:file:{log}\"\n",
            run = run.display(),
            log = dir.join("libvirtd.log").display()
        );
        std::fs::write(dir.join("libvirtd.conf"), conf).unwrap();
        let mut cmd = Command::new(LIBVIRTD);
        cmd.arg("--config")
            .arg(dir.join("libvirtd.conf"))
            .arg("--pid-file")
            .arg(dir.join("libvirtd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
        if let Some(drivers) = drivers {
            cmd.env("LIBVIRT_DRIVER_DIR", drivers);
        }
        let child = cmd.spawn().expect("spawn libvirtd");
        Libvirtd {
            child,
            dir: dir.to_path_buf(),
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// The read-write socket.
    pub fn sock(&self) -> PathBuf {
        self.dir.join("run/libvirt-sock")
    }

    /// The test driver's URI on the private socket.
    pub fn test_uri(&self) -> String {
        format!("test+unix:///default?socket={}", self.sock().display())
    }

    /// The qemu driver's URI on the private socket.
    pub fn qemu_uri(&self) -> String {
        format!("qemu+unix:///system?socket={}", self.sock().display())
    }

    /// Runs virsh (60 s at most) against `qemu:///system` on the private socket.
    pub fn virsh(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["60", "virsh", "-c", &self.qemu_uri()])
            .args(args)
            .output()
            .expect("run virsh")
    }

    /// [`Libvirtd::virsh`], expecting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
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
