//! Starts a real `vireod` for the client's integration tests. The binary belongs to
//! another package, so cargo does not hand us its path: it is built on first use with
//! `cargo build -p vireo-daemon --bin vireod` into this test's own target directory
//! (or taken from `VIREOD_BIN`).

#![allow(dead_code)]

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The target directory this test binary was built into (`…/target/debug`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // …/target/debug/deps/<test>-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// The vireod binary, built once per test process.
pub fn vireod_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("VIREOD_BIN") {
            return PathBuf::from(p);
        }
        let dir = profile_dir();
        let target = dir.parent().expect("target root").to_path_buf();
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "-p", "vireo-daemon", "--bin", "vireod"])
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if release {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("run cargo build for vireod");
        assert!(st.success(), "building vireod failed");
        let bin = dir.join("vireod");
        assert!(bin.exists(), "{} missing after the build", bin.display());
        bin
    })
    .clone()
}

/// A running vireod on its own temporary state directory.
pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    /// Starts vireod with extra command-line arguments.
    pub fn start_with(extra: &[&str]) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("vireo-client")
            .tempdir_in("/tmp")
            .unwrap();
        let log = std::fs::File::create(dir.path().join("vireod.log")).unwrap();
        let child = Command::new(vireod_bin())
            .arg("--state-dir")
            .arg(dir.path())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn vireod");
        let d = Daemon { child, dir };
        let t = Instant::now();
        while UnixStream::connect(d.sock()).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "vireod did not come up: {}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.path().join("run/libvirt-sock")
    }

    pub fn sock_ro(&self) -> PathBuf {
        self.dir.path().join("run/libvirt-sock-ro")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vireod.log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
