//! Test support: small real filesystems that run out of space, for the tests of the
//! save path's error handling (issue 5). Not used by Vireo itself.
//!
//! [`Mounts::thin`] builds the overcommitted ("thin") filesystem of host-facts §2: ext4
//! in a sparse 128 MiB file on a 16 MiB tmpfs, over a loop device, mounted with
//! `discard`. Writes land in the page cache and succeed; write-back fails with ENOSPC,
//! so only `fdatasync` (or an `O_DIRECT` write) sees the loss. [`Mounts::tmpfs`] is a
//! plain small tmpfs that fails at `write`. Everything a [`Mounts`] made is undone in
//! reverse order when it is dropped, also when a test panics. All of it needs root and
//! util-linux/e2fsprogs; [`can_mount`] says whether they are here, failing under
//! `CI=true` when they are not.
//!
//! Why a public module of the library and not a file under `tests/`: the drivers' own
//! integration tests (`iohelper`, `qemu_save`) and the daemon's (`qemu_save`) need the
//! same set-up, and integration tests of two crates can share code only through a
//! library. A cargo feature (`test-support`) would hide it from normal builds, but
//! would need `required-features` on the drivers' test targets and a feature on the
//! daemon's dev-dependency, for a module that costs the library nothing: it uses only
//! std and `nix`, which the crate already depends on, and runs only when called. It
//! sits beside [`crate::qemu::testguest`] and [`crate::testdata`], which are test
//! support of the same kind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What went wrong setting up a test filesystem.
#[derive(Debug, thiserror::Error)]
pub enum TestFsError {
    /// A command (mount, mkfs.ext4, losetup) could not be run or failed.
    #[error("{cmd} failed: {detail}")]
    Command {
        /// The command line, as Debug prints it.
        cmd: String,
        /// Its stderr, or why it could not be run.
        detail: String,
    },
    /// A directory or the backing file could not be made.
    #[error("cannot prepare {path}: {source}")]
    Io {
        /// The path being made.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// losetup printed something that is not a loop device.
    #[error("losetup printed {0:?}, not a loop device")]
    NotALoopDevice(String),
}

/// Whether `name` is an executable in one of the usual system directories.
pub fn tool_exists(name: &str) -> bool {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(name).exists())
}

/// Whether the test `test` can mount filesystems here (root, losetup, mkfs.ext4,
/// mount, umount). When it cannot, it panics under `CI=true` and otherwise prints
/// `SKIPPED: …` and returns false.
pub fn can_mount(test: &str) -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root".to_string());
    }
    for t in ["losetup", "mkfs.ext4", "mount", "umount"] {
        if !tool_exists(t) {
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

/// Runs `cmd`; returns its trimmed stdout when it succeeds.
fn run(cmd: &mut Command) -> Result<String, TestFsError> {
    let line = format!("{cmd:?}");
    let failed = |detail: String| TestFsError::Command {
        cmd: line.clone(),
        detail,
    };
    let out = cmd.output().map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(failed(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn mkdir(p: &Path) -> Result<(), TestFsError> {
    std::fs::create_dir_all(p).map_err(|source| TestFsError::Io {
        path: p.to_path_buf(),
        source,
    })
}

/// One thing to undo.
#[derive(Debug)]
enum Undo {
    Umount(PathBuf),
    Detach(String),
}

/// Mounts and loop devices made for one test, undone in reverse order when dropped.
#[derive(Debug, Default)]
pub struct Mounts {
    undo: Vec<Undo>,
}

impl Mounts {
    /// Nothing mounted yet.
    pub fn new() -> Mounts {
        Mounts::default()
    }

    /// Mounts a tmpfs of `size` (as mount's `size=` takes it, e.g. `2m`) at `at`,
    /// making the directory if needed.
    pub fn tmpfs(&mut self, at: &Path, size: &str) -> Result<(), TestFsError> {
        mkdir(at)?;
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "vireo-test"])
            .arg(at))?;
        self.undo.push(Undo::Umount(at.to_path_buf()));
        Ok(())
    }

    /// Mounts the thin filesystem at `at`, its backing tmpfs at `back` (both made if
    /// needed); see the module doc.
    pub fn thin(&mut self, at: &Path, back: &Path) -> Result<(), TestFsError> {
        self.tmpfs(back, "16m")?;
        let img = back.join("thin.img");
        File::create(&img)
            .and_then(|f| f.set_len(128 << 20))
            .map_err(|source| TestFsError::Io {
                path: img.clone(),
                source,
            })?;
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-O", "^has_journal"])
            .arg(&img))?;
        let dev = run(Command::new("losetup").args(["-f", "--show"]).arg(&img))?;
        if !dev.starts_with("/dev/loop") {
            return Err(TestFsError::NotALoopDevice(dev));
        }
        self.undo.push(Undo::Detach(dev.clone()));
        mkdir(at)?;
        run(Command::new("mount").args(["-o", "discard", &dev]).arg(at))?;
        self.undo.push(Undo::Umount(at.to_path_buf()));
        Ok(())
    }

    /// [`Mounts::thin`] on a fresh [`Mounts`].
    pub fn new_thin(at: &Path, back: &Path) -> Result<Mounts, TestFsError> {
        let mut m = Mounts::new();
        m.thin(at, back)?;
        Ok(m)
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        while let Some(u) = self.undo.pop() {
            match u {
                Undo::Umount(p) => {
                    let ok = Command::new("umount")
                        .arg(&p)
                        .status()
                        .is_ok_and(|s| s.success());
                    if !ok {
                        let _ = Command::new("umount").arg("-l").arg(&p).status();
                    }
                }
                Undo::Detach(dev) => {
                    let _ = Command::new("losetup").args(["-d", &dev]).status();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_command_is_reported_with_its_stderr() {
        let e = run(Command::new("sh").args(["-c", "echo oops >&2; exit 3"])).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("\"sh\"") && s.contains("oops"), "{s}");
        assert_eq!(run(Command::new("echo").arg(" hi ")).unwrap(), "hi");
    }

    #[test]
    fn dropping_empty_mounts_does_nothing() {
        drop(Mounts::new());
        assert!(tool_exists("sh"));
        assert!(!tool_exists("no-such-tool-vireo"));
    }
}
