//! Shared helpers for the daemon's integration tests: start `vireod` on a temporary
//! state directory, wait for its socket, run real clients against it.

#![allow(dead_code)]

pub mod libvirtd;
pub mod qemu;
pub mod wire;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running `vireod` on its own temporary state directory.
pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    /// Starts vireod with extra flags (e.g. `--keepalive-interval 1`).
    pub fn start_with(extra: &[&str]) -> Daemon {
        Daemon::start_in("/tmp", extra)
    }

    /// Starts vireod with its state on tmpfs (`/dev/shm` when there is one), where
    /// the store's fsyncs cost nothing: for tests that define many objects.
    pub fn start_on_tmpfs() -> Daemon {
        let shm = Path::new("/dev/shm");
        Daemon::start_in(if shm.is_dir() { "/dev/shm" } else { "/tmp" }, &[])
    }

    fn start_in(parent: &str, extra: &[&str]) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("vireod")
            .tempdir_in(parent)
            .unwrap();
        let child = spawn_with(dir.path(), extra);
        let d = Daemon { child, dir };
        d.wait_ready();
        d
    }

    pub fn state(&self) -> &Path {
        self.dir.path()
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.path().join("run/libvirt-sock")
    }

    pub fn sock_ro(&self) -> PathBuf {
        self.dir.path().join("run/libvirt-sock-ro")
    }

    pub fn uri(&self) -> String {
        format!("test+unix:///default?socket={}", self.sock().display())
    }

    pub fn uri_ro(&self) -> String {
        format!("test+unix:///default?socket={}", self.sock_ro().display())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vireod.log")).unwrap_or_default()
    }

    fn wait_ready(&self) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if UnixStream::connect(self.sock()).is_ok() && self.sock_ro().exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("vireod did not come up; log:\n{}", self.log());
    }

    /// Runs virsh against the read-write socket.
    pub fn virsh(&self, args: &[&str]) -> Output {
        virsh_at(&self.uri(), args)
    }

    /// Runs virsh and expects success; returns stdout.
    pub fn virsh_ok(&self, args: &[&str]) -> String {
        virsh_succeeded(args, self.virsh(args), &self.log())
    }

    pub fn signal(&self, sig: i32) {
        let r = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(r.success());
    }

    /// Waits for the process to exit; returns its status code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let t = Instant::now();
        while t.elapsed() < within {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn(state: &Path) -> Child {
    spawn_with(state, &[])
}

pub fn spawn_with(state: &Path, extra: &[&str]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join("vireod.log"))
        .or_else(|_| {
            std::fs::create_dir_all(state)?;
            std::fs::File::create(state.join("vireod.log"))
        })
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_vireod"))
        .arg("--state-dir")
        .arg(state)
        .arg("--log-level")
        .arg("debug")
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn vireod")
}

/// Runs virsh against `uri`.
pub fn virsh_at(uri: &str, args: &[&str]) -> Output {
    Command::new("virsh")
        .arg("-c")
        .arg(uri)
        .args(args)
        .output()
        .expect("run virsh")
}

/// Asserts that virsh `args` succeeded (else fails with its output and the daemon's
/// `log`); returns its stdout.
pub fn virsh_succeeded(args: &[&str], o: Output, log: &str) -> String {
    assert!(
        o.status.success(),
        "virsh {args:?} failed: {}\n{}\nlog:\n{log}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Whether an external tool the test needs is there. Under `CI=true` a missing tool
/// fails the test; otherwise the test is skipped with a message.
pub fn have(what: &str, probe: &mut Command) -> bool {
    let ok = probe
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{what} is required under CI=true but is not available");
        }
        eprintln!("SKIPPED: {what} is not available (set CI=true to make this a failure)");
    }
    ok
}

pub fn have_virsh() -> bool {
    have("virsh", Command::new("virsh").arg("--version"))
}

pub fn have_python_libvirt() -> bool {
    have(
        "/usr/bin/python3 with the libvirt module",
        Command::new("/usr/bin/python3").args(["-c", "import libvirt"]),
    )
}

/// Collapses each line's trailing spaces and drops blank lines at the ends.
pub fn norm(s: &str) -> String {
    s.lines()
        .map(|l| l.trim_end())
        .collect::<Vec<_>>()
        .join("\n")
        .trim_matches('\n')
        .to_string()
}
