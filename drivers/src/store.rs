//! Where a driver's objects live on disk, and how they are written.
//!
//! Layout under a driver's state root (e.g. `STATE/test`):
//!
//! ```text
//! domains/NAME.xml        persistent domain definitions (inactive XML)
//! networks/NAME.xml       persistent network definitions
//! pools/NAME.xml          persistent pool definitions
//! pools/NAME/VOL.xml      volumes of drivers whose volumes are not files (test driver)
//! autostart/KIND-NAME     marker: the object starts with its driver
//! managedsave/NAME.save   managed-save images
//! ```
//!
//! and under the run root (`STATE/run/test`): `domains/NAME.json` runtime status records
//! (state, id, live XML, the hypervisor's reattach record), `networks/NAME.json`,
//! `pools/NAME.json` and `ids` (the next domain id).
//!
//! Every write is atomic: a temporary file in the same directory is written and renamed
//! over the target, so a crash leaves either the old or the new content, never a torn
//! file. Writes and removals of persistent state (definitions, autostart markers,
//! markers) are also durable: the file is fsynced before the rename and the directory
//! after it, so a crash of the machine never loses a definition.
//!
//! Runtime state under the run root (status records, the next id) is written atomically
//! but not fsynced ([`write_atomic_volatile`], [`Store::write_run_value`]) and removed
//! without a directory fsync: it only has to survive the daemon (`kill -9` leaves the
//! page cache intact), not the host — after a host crash the guests it describes are
//! gone too, and libvirt keeps the same state in `/run`, a tmpfs on most hosts. The
//! fsyncs cost 0.2–50 ms each on a shared disk, on every start and destroy; a record
//! torn by a host crash is dropped as unreadable at load time.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Writes `data` to `path` atomically and durably (write, fsync, rename, fsync dir).
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    replace(path, data, true)
}

/// Writes `data` to `path` atomically but not durably (write, rename): for runtime
/// records (under the run root), which describe processes that do not outlive the
/// machine. A reader, or the daemon after a crash of its own, sees the old or the new
/// content, never a torn file; only a crash of the whole machine may lose the last
/// writes, and then the guests they describe are gone too.
pub fn write_atomic_volatile(path: &Path, data: &[u8]) -> io::Result<()> {
    replace(path, data, false)
}

/// This process's id, for temporary file names (read once: `getpid` is a system call).
fn pid() -> u32 {
    static PID: OnceLock<u32> = OnceLock::new();
    *PID.get_or_init(std::process::id)
}

fn replace(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{}",
        name.to_string_lossy(),
        pid(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let create = || OpenOptions::new().write(true).create_new(true).open(&tmp);
    // The directory nearly always exists: create it only when the file cannot be.
    let mut f = match create() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)?;
            create()?
        }
        r => r?,
    };
    let result = (|| {
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        fs::rename(&tmp, path)?;
        if durable {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes `path` (if present) and fsyncs its directory.
pub fn remove_durable(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Removes `path` if present, without fsyncing its directory (runtime records, see
/// [`write_atomic_volatile`]).
pub fn remove_quietly(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Object kinds that have persistent definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredKind {
    /// Domains.
    Domain,
    /// Networks.
    Network,
    /// Storage pools.
    Pool,
}

impl StoredKind {
    fn dir(self) -> &'static str {
        match self {
            StoredKind::Domain => "domains",
            StoredKind::Network => "networks",
            StoredKind::Pool => "pools",
        }
    }
}

/// One driver's persistent and runtime state directories.
#[derive(Debug, Clone)]
pub struct Store {
    config: PathBuf,
    run: PathBuf,
    /// Run values written before, kept open to be overwritten in place (see
    /// [`Store::write_run_value`]), with the length of their content.
    run_values: Arc<Mutex<HashMap<String, (File, usize)>>>,
}

impl Store {
    /// A store whose definitions live under `config` and runtime records under `run`.
    /// Directories are created on first write.
    pub fn new(config: PathBuf, run: PathBuf) -> Store {
        Store {
            config,
            run,
            run_values: Arc::default(),
        }
    }

    /// The persistent root.
    pub fn config_root(&self) -> &Path {
        &self.config
    }

    /// The runtime root.
    pub fn run_root(&self) -> &Path {
        &self.run
    }

    fn def_path(&self, kind: StoredKind, name: &str) -> PathBuf {
        self.config.join(kind.dir()).join(format!("{name}.xml"))
    }

    fn status_path(&self, kind: StoredKind, name: &str) -> PathBuf {
        self.run.join(kind.dir()).join(format!("{name}.json"))
    }

    /// Saves a persistent definition.
    pub fn save_def(&self, kind: StoredKind, name: &str, xml: &str) -> io::Result<()> {
        write_atomic(&self.def_path(kind, name), xml.as_bytes())
    }

    /// Removes a persistent definition (and its autostart marker).
    pub fn remove_def(&self, kind: StoredKind, name: &str) -> io::Result<()> {
        remove_durable(&self.def_path(kind, name))?;
        self.set_autostart(kind, name, false)
    }

    /// All persistent definitions of a kind, as (name, xml), sorted by name.
    pub fn load_defs(&self, kind: StoredKind) -> io::Result<Vec<(String, String)>> {
        let dir = self.config.join(kind.dir());
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let fname = entry.file_name().to_string_lossy().into_owned();
            if fname.starts_with('.') {
                // Leftover temporary file of an interrupted write: the target is intact.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            if let Some(name) = fname.strip_suffix(".xml") {
                out.push((name.to_string(), fs::read_to_string(entry.path())?));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Saves a runtime status record.
    pub fn save_status(
        &self,
        kind: StoredKind,
        name: &str,
        record: &serde_json::Value,
    ) -> io::Result<()> {
        let data = serde_json::to_vec(record).map_err(io::Error::other)?;
        write_atomic_volatile(&self.status_path(kind, name), &data)
    }

    /// Removes a runtime status record (no fsync: runtime state, see the module doc).
    pub fn remove_status(&self, kind: StoredKind, name: &str) -> io::Result<()> {
        remove_quietly(&self.status_path(kind, name))
    }

    /// All runtime status records of a kind, as (name, record). Unreadable records are
    /// returned as errors in the second list so the caller can report and drop them.
    pub fn load_statuses(&self, kind: StoredKind) -> io::Result<Vec<(String, serde_json::Value)>> {
        let dir = self.run.join(kind.dir());
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let fname = entry.file_name().to_string_lossy().into_owned();
            if fname.starts_with('.') {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            if let Some(name) = fname.strip_suffix(".json") {
                let data = fs::read(entry.path())?;
                match serde_json::from_slice(&data) {
                    Ok(v) => out.push((name.to_string(), v)),
                    Err(e) => {
                        tracing::warn!(file = %entry.path().display(), error = %e, "dropping unreadable status record");
                        let _ = fs::remove_file(entry.path());
                    }
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn autostart_path(&self, kind: StoredKind, name: &str) -> PathBuf {
        self.config
            .join("autostart")
            .join(format!("{}-{name}", kind.dir()))
    }

    /// Sets or clears an autostart marker.
    pub fn set_autostart(&self, kind: StoredKind, name: &str, on: bool) -> io::Result<()> {
        let p = self.autostart_path(kind, name);
        if on {
            write_atomic(&p, b"")
        } else {
            remove_durable(&p)
        }
    }

    /// Whether the object starts with its driver.
    pub fn autostart(&self, kind: StoredKind, name: &str) -> bool {
        self.autostart_path(kind, name).exists()
    }

    /// Path of a domain's managed-save image.
    pub fn managed_save_path(&self, name: &str) -> PathBuf {
        self.config.join("managedsave").join(format!("{name}.save"))
    }

    /// Reads a small runtime value (e.g. the next domain id), without the padding
    /// [`Store::write_run_value`] may leave around it.
    pub fn read_run_value(&self, key: &str) -> Option<String> {
        fs::read_to_string(self.run.join(key))
            .ok()
            .map(|v| v.trim().to_string())
    }

    /// Writes a small runtime value (a line of text; not durably, see
    /// [`write_atomic_volatile`]). The first write of a key replaces its file atomically and
    /// keeps it open; later writes overwrite it in place with one `pwrite`, padded
    /// with spaces to the old length so that no old byte survives: a single write of
    /// less than a page, which a reader sees whole or not at all. (The next domain id
    /// is written at every domain start; this costs an fstat and a pwrite instead of a
    /// create, a write, a close and a rename.)
    pub fn write_run_value(&self, key: &str, value: &str) -> io::Result<()> {
        let mut open = self.run_values.lock().unwrap_or_else(|e| e.into_inner());
        if value.len() < 4096
            && let Some((f, len)) = open.get_mut(key)
        {
            let mut data = value.as_bytes().to_vec();
            data.resize((*len).max(data.len()), b' ');
            // A file removed behind the store's back (nlink 0) is opened afresh.
            let linked = f.metadata().is_ok_and(|m| m.nlink() > 0);
            if linked && f.write_all_at(&data, 0).is_ok() {
                *len = data.len();
                return Ok(());
            }
            open.remove(key);
        }
        let path = self.run.join(key);
        write_atomic_volatile(&path, value.as_bytes())?;
        if let Ok(f) = OpenOptions::new().write(true).open(&path) {
            open.insert(key.to_string(), (f, value.len()));
        }
        Ok(())
    }

    /// Whether a marker file exists in the persistent root.
    pub fn has_marker(&self, key: &str) -> bool {
        self.config.join(key).exists()
    }

    /// Creates a marker file in the persistent root.
    pub fn set_marker(&self, key: &str) -> io::Result<()> {
        write_atomic(&self.config.join(key), b"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_atomic_volatiles_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b.xml");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "temporary files left: {names:?}");

        let v = d.path().join("run/x/next-id");
        write_atomic_volatile(&v, b"1").unwrap();
        write_atomic_volatile(&v, b"22").unwrap();
        assert_eq!(fs::read(&v).unwrap(), b"22");
        assert_eq!(fs::read_dir(v.parent().unwrap()).unwrap().count(), 1);
        assert!(write_atomic_volatile(Path::new("/"), b"").is_err());
    }

    #[test]
    fn replace_creates_missing_directories_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x/y/z.json");
        write_atomic_volatile(&p, b"1").unwrap();
        write_atomic_volatile(&p, b"2").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"2");
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
        remove_quietly(&p).unwrap();
        remove_quietly(&p).unwrap();
        assert!(!p.exists());
        // A path whose parent is a file cannot be written; nothing is left behind.
        fs::write(d.path().join("f"), "").unwrap();
        assert!(write_atomic(&d.path().join("f/a"), b"x").is_err());
    }

    #[test]
    fn run_values_are_overwritten_whole() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path().join("cfg"), d.path().join("run"));
        assert_eq!(s.read_run_value("next-id"), None);
        s.write_run_value("next-id", "12345").unwrap();
        assert_eq!(s.read_run_value("next-id").as_deref(), Some("12345"));
        // Shorter, then longer: in place, and nothing of the old value remains.
        s.write_run_value("next-id", "7").unwrap();
        assert_eq!(s.read_run_value("next-id").as_deref(), Some("7"));
        s.write_run_value("next-id", "1234567").unwrap();
        assert_eq!(s.read_run_value("next-id").as_deref(), Some("1234567"));
        // A clone shares the open file; a fresh store reads what was written.
        s.clone().write_run_value("next-id", "42").unwrap();
        let again = Store::new(d.path().join("cfg"), d.path().join("run"));
        assert_eq!(again.read_run_value("next-id").as_deref(), Some("42"));
        // The file was removed behind the store's back: the next write creates it
        // again instead of writing into the removed one.
        fs::remove_file(d.path().join("run/next-id")).unwrap();
        s.write_run_value("next-id", "43").unwrap();
        assert_eq!(again.read_run_value("next-id").as_deref(), Some("43"));
    }

    #[test]
    fn defs_statuses_autostart_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path().join("cfg"), d.path().join("run"));
        s.save_def(StoredKind::Domain, "b", "<domain/>").unwrap();
        s.save_def(StoredKind::Domain, "a", "<domain>a</domain>")
            .unwrap();
        // An interrupted write leaves a dot-file; loading ignores and removes it.
        fs::write(d.path().join("cfg/domains/.c.xml.tmp.1.1"), "junk").unwrap();
        let defs = s.load_defs(StoredKind::Domain).unwrap();
        assert_eq!(
            defs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(!d.path().join("cfg/domains/.c.xml.tmp.1.1").exists());
        s.set_autostart(StoredKind::Domain, "a", true).unwrap();
        assert!(s.autostart(StoredKind::Domain, "a"));
        s.remove_def(StoredKind::Domain, "a").unwrap();
        assert!(!s.autostart(StoredKind::Domain, "a"));
        assert_eq!(s.load_defs(StoredKind::Domain).unwrap().len(), 1);

        s.save_status(StoredKind::Domain, "b", &serde_json::json!({"state": 1}))
            .unwrap();
        fs::write(d.path().join("run/domains/bad.json"), "{not json").unwrap();
        let st = s.load_statuses(StoredKind::Domain).unwrap();
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].1["state"], 1);
        assert!(!d.path().join("run/domains/bad.json").exists());
        s.remove_status(StoredKind::Domain, "b").unwrap();
        s.remove_status(StoredKind::Domain, "b").unwrap();
        assert!(s.load_statuses(StoredKind::Domain).unwrap().is_empty());
        s.write_run_value("next-id", "7").unwrap();
        assert_eq!(s.read_run_value("next-id").as_deref(), Some("7"));
    }
}
