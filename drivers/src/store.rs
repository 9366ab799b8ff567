//! Where a driver's objects live on disk, and how they are written.
//!
//! Layout under a driver's state root (e.g. `STATE/test`):
//!
//! ```text
//! domains/NAME.xml        persistent domain definitions (inactive XML)
//! networks/NAME.xml       persistent network definitions
//! pools/NAME.xml          persistent pool definitions
//! pools/NAME.volumes.xml  volumes of drivers whose volumes are not files (test driver)
//! autostart/KIND-NAME     marker: the object starts with its driver
//! managedsave/NAME.save   managed-save images
//! ```
//!
//! and under the run root (`STATE/run/test`): `domains/NAME.json` runtime status records
//! (state, id, live XML, the hypervisor's reattach record), `networks/NAME.json`,
//! `pools/NAME.json` and `next-id` (the first domain id not yet reserved).
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
//!
//! # What a [`Store`] keeps open, and why
//!
//! A define/start/destroy/undefine cycle writes or removes four files; done by path, each
//! write walks the path twice (create the temporary file, rename) and opens and closes the
//! directory to fsync it. On tmpfs those walks and opens are a large part of the daemon's
//! CPU per cycle. So a store keeps one open directory descriptor (`O_DIRECTORY`,
//! `O_CLOEXEC`) per directory it writes into (`domains/`, `networks/`, `pools/`,
//! `autostart/`, `run/domains/`, `run/networks/`, `run/pools/` and the run root), opened
//! on first use and created when missing; temporary files are created, renamed and
//! removed relative to it (`openat`, `renameat`, `unlinkat`) and the directory fsync is an
//! `fsync` of it. A durable write is then open, write, fsync, close, rename, fsync; a
//! runtime record open, write, close, rename; a removal one unlink (and the fsync when
//! durable). The run values ([`Store::write_run_value`]) are kept open too and
//! overwritten with one `pwrite`.
//!
//! The store assumes it is the only writer of its directories (libvirt makes the same
//! assumption: it caches definitions and autostart flags in memory). It does not check
//! before each write that a kept directory still exists; it reacts to errors instead: a
//! directory removed behind its back (tests do that) makes the next `openat` or
//! `renameat` in it fail with `ENOENT`, and then the store drops the descriptor, opens
//! the directory afresh (creating it) and retries once. Run values in a removed run root
//! are written again when the store notices the removal in any runtime directory (a
//! domain start writes its status record right after the next id). Autostart markers are
//! cached: the autostart directory is read once, on first use, and the set of markers
//! kept in memory is what [`Store::autostart`] answers and what [`Store::remove_def`]
//! consults, so that removing a definition does not unlink a marker that is not there.
//! A single file removed behind the store's back is not noticed.
//!
//! The free functions ([`write_atomic`], [`write_atomic_volatile`], [`remove_durable`],
//! [`remove_quietly`]) take any path and do the same by path, for the few files written
//! elsewhere (secrets, save images).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, fsync, unlinkat};

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

/// The name of a temporary file for `name` in the same directory: a dot-file (so loading
/// skips and removes it), unique in this process by a counter and across processes by
/// the pid; no system call.
fn temp_name(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        ".{name}.tmp.{}.{}",
        pid(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn replace(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(temp_name(&name.to_string_lossy()));
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

/// Writes `data` as `name` in the open directory `dir`: a temporary file created, written
/// (and fsynced when `durable`), closed and renamed over `name` (and the directory
/// fsynced when `durable`), all relative to `dir`.
fn replace_in(dir: &OwnedFd, name: &str, data: &[u8], durable: bool) -> io::Result<()> {
    let tmp = temp_name(name);
    let fd = openat(
        dir,
        tmp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o666),
    )?;
    let mut f = File::from(fd);
    let result = (|| {
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        renameat(dir, tmp.as_str(), dir, name)?;
        if durable {
            fsync(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
    }
    result
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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

    fn index(self) -> usize {
        match self {
            StoredKind::Domain => 0,
            StoredKind::Network => 1,
            StoredKind::Pool => 2,
        }
    }
}

/// A directory a store writes into, whose descriptor it keeps open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// `CONFIG/KIND`: definitions.
    Defs(StoredKind),
    /// `CONFIG/autostart`: autostart markers.
    Autostart,
    /// `RUN/KIND`: status records.
    Statuses(StoredKind),
    /// `RUN`: run values.
    Run,
}

impl Slot {
    const COUNT: usize = 8;

    fn index(self) -> usize {
        match self {
            Slot::Defs(k) => k.index(),
            Slot::Autostart => 3,
            Slot::Statuses(k) => 4 + k.index(),
            Slot::Run => 7,
        }
    }

    fn path(self, store: &Store) -> PathBuf {
        match self {
            Slot::Defs(k) => store.config.join(k.dir()),
            Slot::Autostart => store.config.join("autostart"),
            Slot::Statuses(k) => store.run.join(k.dir()),
            Slot::Run => store.run.clone(),
        }
    }
}

/// A run value kept open to be overwritten in place (see [`Store::write_run_value`]).
#[derive(Debug)]
struct RunValue {
    file: File,
    /// The length of the file's content.
    len: usize,
    /// The value last written, to write it again if the file was removed.
    value: String,
}

/// What the clones of a store share.
#[derive(Debug, Default)]
struct Shared {
    /// The open directories, by [`Slot::index`]; `Arc` so that a descriptor in use by
    /// one thread stays open while another replaces it.
    dirs: Mutex<[Option<Arc<OwnedFd>>; Slot::COUNT]>,
    /// The names of the autostart markers that exist (`KIND-NAME`); `None` until the
    /// autostart directory has been read.
    autostart: Mutex<Option<HashSet<String>>>,
    /// Run values written before, by key.
    run_values: Mutex<HashMap<String, RunValue>>,
}

/// One driver's persistent and runtime state directories.
#[derive(Debug, Clone)]
pub struct Store {
    config: PathBuf,
    run: PathBuf,
    shared: Arc<Shared>,
}

impl Store {
    /// A store whose definitions live under `config` and runtime records under `run`.
    /// Directories are created on first write.
    pub fn new(config: PathBuf, run: PathBuf) -> Store {
        Store {
            config,
            run,
            shared: Arc::default(),
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

    /// The open directory of `slot`, opened now if it is not yet (and created when
    /// missing if `create`; else `None` when missing).
    fn dir(&self, slot: Slot, create: bool) -> io::Result<Option<Arc<OwnedFd>>> {
        if let Some(fd) = &lock(&self.shared.dirs)[slot.index()] {
            return Ok(Some(fd.clone()));
        }
        let path = slot.path(self);
        let fd = match open_dir(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !create {
                    return Ok(None);
                }
                fs::create_dir_all(&path)?;
                let fd = open_dir(&path)?;
                // Missing: never made, or removed behind the store's back.
                self.recreated(slot);
                fd
            }
            r => r?,
        };
        // Another thread may have opened it meanwhile: one is kept, the other closed.
        let mut dirs = lock(&self.shared.dirs);
        Ok(Some(dirs[slot.index()].get_or_insert(Arc::new(fd)).clone()))
    }

    /// The open directory of `slot`, created when missing.
    fn dir_created(&self, slot: Slot) -> io::Result<Arc<OwnedFd>> {
        self.dir(slot, true)?
            .ok_or_else(|| io::Error::other("directory missing after its creation"))
    }

    /// Drops the kept descriptor of `slot` if it is still `stale` (the directory was
    /// removed behind the store's back).
    fn forget(&self, slot: Slot, stale: &Arc<OwnedFd>) {
        {
            let mut dirs = lock(&self.shared.dirs);
            let kept = &mut dirs[slot.index()];
            if kept.as_ref().is_some_and(|k| Arc::ptr_eq(k, stale)) {
                *kept = None;
            }
        }
        self.recreated(slot);
    }

    /// Brings what the store derived from the directory of `slot` up to date after
    /// finding it missing (rare: the first write into a new state directory, or a
    /// directory removed behind the store's back).
    fn recreated(&self, slot: Slot) {
        match slot {
            // The markers went with the directory: read it again when next asked.
            Slot::Autostart => *lock(&self.shared.autostart) = None,
            // The run root may have gone too (with the run values in it).
            Slot::Statuses(_) => self.rewrite_run_values(&mut lock(&self.shared.run_values)),
            Slot::Defs(_) | Slot::Run => {}
        }
    }

    /// Writes `name` in the directory of `slot` (see [`replace_in`]); a directory removed
    /// behind the store's back is created again, once.
    fn replace_at(&self, slot: Slot, name: &str, data: &[u8], durable: bool) -> io::Result<()> {
        let dir = self.dir_created(slot)?;
        match replace_in(&dir, name, data, durable) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.forget(slot, &dir);
                replace_in(&*self.dir_created(slot)?, name, data, durable)
            }
            r => r,
        }
    }

    /// Removes `name` (if present) from the directory of `slot`, and fsyncs the
    /// directory if `durable`.
    fn remove_at(&self, slot: Slot, name: &str, durable: bool) -> io::Result<()> {
        let Some(dir) = self.dir(slot, false)? else {
            return Ok(());
        };
        match unlinkat(&*dir, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => {}
            Err(Errno::ENOENT) => {
                // Absent, or the kept directory was removed (and maybe made again)
                // behind the store's back: ask by path.
                match fs::remove_file(slot.path(self).join(name)) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    r => r?,
                }
                self.forget(slot, &dir);
                if durable && let Some(dir) = self.dir(slot, false)? {
                    fsync(&*dir)?;
                }
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        if durable {
            fsync(&*dir)?;
        }
        Ok(())
    }

    /// Saves a persistent definition.
    pub fn save_def(&self, kind: StoredKind, name: &str, xml: &str) -> io::Result<()> {
        self.replace_at(
            Slot::Defs(kind),
            &format!("{name}.xml"),
            xml.as_bytes(),
            true,
        )
    }

    /// Removes a persistent definition (and its autostart marker, if it has one).
    pub fn remove_def(&self, kind: StoredKind, name: &str) -> io::Result<()> {
        self.remove_at(Slot::Defs(kind), &format!("{name}.xml"), true)?;
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

    /// One persistent definition, if there is one. Unlike [`Store::load_defs`] this
    /// touches nothing else in the directory, so it is safe while other objects are
    /// being written (a running daemon rebuilding one failed actor).
    pub fn load_def(&self, kind: StoredKind, name: &str) -> io::Result<Option<String>> {
        let path = self.config.join(kind.dir()).join(format!("{name}.xml"));
        match fs::read_to_string(path) {
            Ok(x) => Ok(Some(x)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One runtime status record, if there is a readable one (see [`Store::load_def`];
    /// an unreadable record is reported and left for the next start to drop).
    pub fn load_status(
        &self,
        kind: StoredKind,
        name: &str,
    ) -> io::Result<Option<serde_json::Value>> {
        let path = self.run.join(kind.dir()).join(format!("{name}.json"));
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match serde_json::from_slice(&data) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "ignoring unreadable status record");
                Ok(None)
            }
        }
    }

    /// Saves a runtime status record.
    pub fn save_status(
        &self,
        kind: StoredKind,
        name: &str,
        record: &serde_json::Value,
    ) -> io::Result<()> {
        let data = serde_json::to_vec(record).map_err(io::Error::other)?;
        self.replace_at(Slot::Statuses(kind), &format!("{name}.json"), &data, false)
    }

    /// Removes a runtime status record (no fsync: runtime state, see the module doc).
    pub fn remove_status(&self, kind: StoredKind, name: &str) -> io::Result<()> {
        self.remove_at(Slot::Statuses(kind), &format!("{name}.json"), false)
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

    fn marker(kind: StoredKind, name: &str) -> String {
        format!("{}-{name}", kind.dir())
    }

    /// Whether the autostart marker `marker` exists, as the cache says (the autostart
    /// directory is read on first use); `None` if the directory cannot be read.
    fn has_autostart_marker(&self, marker: &str) -> Option<bool> {
        let mut cache = lock(&self.shared.autostart);
        if cache.is_none() {
            let dir = self.config.join("autostart");
            let mut set = HashSet::new();
            match fs::read_dir(&dir) {
                Ok(entries) => {
                    for entry in entries {
                        let name = match entry {
                            Ok(e) => e.file_name().to_string_lossy().into_owned(),
                            Err(e) => {
                                tracing::warn!(dir = %dir.display(), error = %e, "cannot read the autostart markers");
                                return None;
                            }
                        };
                        // Dot-files are temporary files of interrupted writes.
                        if !name.starts_with('.') {
                            set.insert(name);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot read the autostart markers");
                    return None;
                }
            }
            *cache = Some(set);
        }
        cache.as_ref().map(|s| s.contains(marker))
    }

    /// Sets or clears an autostart marker (nothing to do if it already is as asked).
    pub fn set_autostart(&self, kind: StoredKind, name: &str, on: bool) -> io::Result<()> {
        let marker = Self::marker(kind, name);
        if self.has_autostart_marker(&marker) == Some(on) {
            return Ok(());
        }
        if on {
            self.replace_at(Slot::Autostart, &marker, b"", true)?;
        } else {
            self.remove_at(Slot::Autostart, &marker, true)?;
        }
        if let Some(set) = lock(&self.shared.autostart).as_mut() {
            if on {
                set.insert(marker);
            } else {
                set.remove(&marker);
            }
        }
        Ok(())
    }

    /// Whether the object starts with its driver.
    pub fn autostart(&self, kind: StoredKind, name: &str) -> bool {
        let marker = Self::marker(kind, name);
        self.has_autostart_marker(&marker)
            .unwrap_or_else(|| self.config.join("autostart").join(&marker).exists())
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
    /// is written at every domain start; this costs one pwrite instead of a create, a
    /// write, a close and a rename.) A file removed behind the store's back is not
    /// noticed here (that would take an fstat per write) but when the removal of its
    /// directory is noticed (see the module doc).
    pub fn write_run_value(&self, key: &str, value: &str) -> io::Result<()> {
        let mut open = lock(&self.shared.run_values);
        if value.len() < 4096
            && let Some(kept) = open.get_mut(key)
        {
            let mut data = value.as_bytes().to_vec();
            data.resize(kept.len.max(data.len()), b' ');
            if kept.file.write_all_at(&data, 0).is_ok() {
                kept.len = data.len();
                value.clone_into(&mut kept.value);
                return Ok(());
            }
            open.remove(key);
        }
        self.put_run_value(&mut open, key, value)
    }

    /// Replaces the file of run value `key` atomically and keeps it open.
    fn put_run_value(
        &self,
        open: &mut HashMap<String, RunValue>,
        key: &str,
        value: &str,
    ) -> io::Result<()> {
        open.remove(key);
        let (dir, recreated) = self.replace_run_file(key, value)?;
        if recreated {
            // The run root went behind the store's back, and the other values with it.
            self.rewrite_run_values(open);
        }
        keep_run_value(open, &dir, key, value);
        Ok(())
    }

    /// Replaces the file of run value `key` atomically, in the run root (created again
    /// if it was removed: then the second result is true).
    fn replace_run_file(&self, key: &str, value: &str) -> io::Result<(Arc<OwnedFd>, bool)> {
        let dir = self.dir_created(Slot::Run)?;
        match replace_in(&dir, key, value.as_bytes(), false) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.forget(Slot::Run, &dir);
                let dir = self.dir_created(Slot::Run)?;
                replace_in(&dir, key, value.as_bytes(), false)?;
                Ok((dir, true))
            }
            r => r.map(|()| (dir, false)),
        }
    }

    /// Writes every kept run value again, to new files (and keeps those open): their
    /// directory was removed behind the store's back.
    fn rewrite_run_values(&self, open: &mut HashMap<String, RunValue>) {
        let values: Vec<(String, String)> = open.drain().map(|(k, v)| (k, v.value)).collect();
        for (key, value) in values {
            match self.replace_run_file(&key, &value) {
                Ok((dir, _)) => keep_run_value(open, &dir, &key, &value),
                Err(e) => tracing::warn!(key, error = %e, "cannot write a run value again"),
            }
        }
    }

    /// Whether a marker file exists in the persistent root.
    pub fn has_marker(&self, key: &str) -> bool {
        self.config.join(key).exists()
    }

    /// Creates a marker file in the persistent root (once in a state directory's life:
    /// by path, nothing kept open).
    pub fn set_marker(&self, key: &str) -> io::Result<()> {
        write_atomic(&self.config.join(key), b"")
    }
}

/// Keeps the just written file of run value `key` open, to overwrite it in place (if it
/// cannot be opened, the next write replaces it again).
fn keep_run_value(open: &mut HashMap<String, RunValue>, dir: &OwnedFd, key: &str, value: &str) {
    if let Ok(fd) = openat(dir, key, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty()) {
        open.insert(
            key.to_string(),
            RunValue {
                file: File::from(fd),
                len: value.len(),
                value: value.to_string(),
            },
        );
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
        // The run root was removed behind the store's back: the next status record
        // notices, and the value is written again, then overwritten in place again.
        fs::remove_dir_all(d.path().join("run")).unwrap();
        s.write_run_value("next-id", "43").unwrap();
        s.save_status(StoredKind::Domain, "x", &serde_json::json!({}))
            .unwrap();
        assert_eq!(again.read_run_value("next-id").as_deref(), Some("43"));
        s.write_run_value("next-id", "44").unwrap();
        assert_eq!(again.read_run_value("next-id").as_deref(), Some("44"));
        // Or the next value of a key that is not kept open notices it.
        fs::remove_dir_all(d.path().join("run")).unwrap();
        s.write_run_value("other", "1").unwrap();
        assert_eq!(again.read_run_value("next-id").as_deref(), Some("44"));
        assert_eq!(again.read_run_value("other").as_deref(), Some("1"));
    }

    fn kept(s: &Store, slot: Slot) -> Option<Arc<OwnedFd>> {
        lock(&s.shared.dirs)[slot.index()].clone()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_and_removals_go_through_one_kept_directory() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path().join("cfg"), d.path().join("run"));
        assert!(kept(&s, Slot::Defs(StoredKind::Domain)).is_none(), "lazy");
        // Removing from a directory that does not exist creates nothing.
        s.remove_def(StoredKind::Domain, "a").unwrap();
        s.remove_status(StoredKind::Domain, "a").unwrap();
        assert!(!d.path().join("cfg/domains").exists());
        assert!(!d.path().join("run/domains").exists());

        s.save_def(StoredKind::Domain, "a", "<one/>").unwrap();
        let fd = kept(&s, Slot::Defs(StoredKind::Domain)).expect("kept open");
        s.clone()
            .save_def(StoredKind::Domain, "a", "<two/>")
            .unwrap();
        s.save_def(StoredKind::Domain, "b", "<b/>").unwrap();
        let same = kept(&s, Slot::Defs(StoredKind::Domain)).unwrap();
        assert!(Arc::ptr_eq(&fd, &same), "one descriptor for every write");
        assert_eq!(
            fs::read_to_string(d.path().join("cfg/domains/a.xml")).unwrap(),
            "<two/>"
        );
        assert_eq!(names(&d.path().join("cfg/domains")), ["a.xml", "b.xml"]);
        s.remove_def(StoredKind::Domain, "a").unwrap();
        s.remove_def(StoredKind::Domain, "a").unwrap();
        assert_eq!(names(&d.path().join("cfg/domains")), ["b.xml"]);
        assert!(Arc::ptr_eq(
            &fd,
            &kept(&s, Slot::Defs(StoredKind::Domain)).unwrap()
        ));

        s.save_status(StoredKind::Network, "n", &serde_json::json!({"a": 1}))
            .unwrap();
        s.save_status(StoredKind::Network, "n", &serde_json::json!({"a": 2}))
            .unwrap();
        let st = kept(&s, Slot::Statuses(StoredKind::Network)).expect("kept open");
        assert_eq!(names(&d.path().join("run/networks")), ["n.json"]);
        assert_eq!(s.load_statuses(StoredKind::Network).unwrap()[0].1["a"], 2);
        s.remove_status(StoredKind::Network, "n").unwrap();
        assert!(names(&d.path().join("run/networks")).is_empty());
        assert!(Arc::ptr_eq(
            &st,
            &kept(&s, Slot::Statuses(StoredKind::Network)).unwrap()
        ));
        // A write that fails leaves no temporary file: "x/y" names a missing directory.
        assert!(s.save_def(StoredKind::Domain, "x/y", "<x/>").is_err());
        assert_eq!(names(&d.path().join("cfg/domains")), ["b.xml"]);
    }

    #[test]
    fn directories_removed_behind_the_stores_back_are_made_again() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path().join("cfg"), d.path().join("run"));
        s.save_def(StoredKind::Pool, "p", "<pool/>").unwrap();
        s.set_autostart(StoredKind::Pool, "p", true).unwrap();
        s.save_status(StoredKind::Pool, "p", &serde_json::json!({}))
            .unwrap();
        s.write_run_value("next-id", "9").unwrap();
        assert!(s.autostart(StoredKind::Pool, "p"));
        fs::remove_dir_all(d.path().join("cfg")).unwrap();
        fs::remove_dir_all(d.path().join("run")).unwrap();

        s.save_def(StoredKind::Pool, "q", "<q/>").unwrap();
        assert_eq!(names(&d.path().join("cfg/pools")), ["q.xml"]);
        // The markers went with their directory: the next marker written notices, and
        // the cache is read again.
        s.set_autostart(StoredKind::Pool, "q", true).unwrap();
        assert_eq!(names(&d.path().join("cfg/autostart")), ["pools-q"]);
        assert!(!s.autostart(StoredKind::Pool, "p"));
        assert!(s.autostart(StoredKind::Pool, "q"));
        s.save_status(StoredKind::Pool, "q", &serde_json::json!({"x": 1}))
            .unwrap();
        assert_eq!(names(&d.path().join("run/pools")), ["q.json"]);
        assert_eq!(s.read_run_value("next-id").as_deref(), Some("9"));

        // Removed and made again by someone else, with a file in it: the store writes
        // into and removes from the new directory, not the removed one.
        fs::remove_dir_all(d.path().join("run/pools")).unwrap();
        fs::create_dir(d.path().join("run/pools")).unwrap();
        fs::write(d.path().join("run/pools/r.json"), "{}").unwrap();
        s.remove_status(StoredKind::Pool, "r").unwrap();
        assert!(names(&d.path().join("run/pools")).is_empty());
        s.save_status(StoredKind::Pool, "q", &serde_json::json!({}))
            .unwrap();
        assert_eq!(names(&d.path().join("run/pools")), ["q.json"]);
        fs::remove_dir_all(d.path().join("cfg/pools")).unwrap();
        fs::create_dir(d.path().join("cfg/pools")).unwrap();
        s.save_def(StoredKind::Pool, "z", "<z/>").unwrap();
        assert_eq!(names(&d.path().join("cfg/pools")), ["z.xml"]);
    }

    #[test]
    fn autostart_markers_are_cached_and_not_removed_when_absent() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("cfg");
        fs::create_dir_all(cfg.join("autostart")).unwrap();
        fs::write(cfg.join("autostart/domains-old"), "").unwrap();
        fs::write(cfg.join("autostart/.domains-tmp.tmp.1.1"), "").unwrap();
        let s = Store::new(cfg.clone(), d.path().join("run"));
        // Read once, on first use: markers on disk count, temporary files do not.
        assert!(s.autostart(StoredKind::Domain, "old"));
        assert!(!s.autostart(StoredKind::Domain, "tmp"));
        assert!(!s.autostart(StoredKind::Network, "old"), "per kind");
        s.set_autostart(StoredKind::Network, "n", true).unwrap();
        assert!(cfg.join("autostart/networks-n").exists());
        assert!(s.clone().autostart(StoredKind::Network, "n"));
        s.set_autostart(StoredKind::Network, "n", false).unwrap();
        assert!(!cfg.join("autostart/networks-n").exists());
        assert!(!s.autostart(StoredKind::Network, "n"));
        s.set_autostart(StoredKind::Network, "n", false).unwrap();

        // The store is the only writer of its directory: after the first read, the set
        // in memory is the truth (a marker made behind its back is not seen, and one
        // that is not in the set is not unlinked by remove_def).
        fs::write(cfg.join("autostart/domains-sneaky"), "").unwrap();
        assert!(!s.autostart(StoredKind::Domain, "sneaky"));
        s.save_def(StoredKind::Domain, "sneaky", "<d/>").unwrap();
        s.remove_def(StoredKind::Domain, "sneaky").unwrap();
        assert!(cfg.join("autostart/domains-sneaky").exists());
        // A marker the set knows goes with its definition.
        s.save_def(StoredKind::Domain, "old", "<d/>").unwrap();
        s.remove_def(StoredKind::Domain, "old").unwrap();
        assert!(!cfg.join("autostart/domains-old").exists());
        assert!(!s.autostart(StoredKind::Domain, "old"));
        // A fresh store reads the directory again.
        let again = Store::new(cfg.clone(), d.path().join("run"));
        assert!(again.autostart(StoredKind::Domain, "sneaky"));
        assert!(!again.autostart(StoredKind::Domain, "old"));
    }

    #[test]
    fn load_defs_removes_leftover_temporary_files_of_the_kept_directory() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path().join("cfg"), d.path().join("run"));
        s.save_def(StoredKind::Network, "a", "<a/>").unwrap();
        // What a write interrupted between create and rename leaves.
        let leftover = d.path().join("cfg/networks").join(temp_name("a.xml"));
        fs::write(&leftover, "<torn").unwrap();
        let defs = s.load_defs(StoredKind::Network).unwrap();
        assert_eq!(defs, [("a".to_string(), "<a/>".to_string())]);
        assert!(!leftover.exists());
        assert_eq!(names(&d.path().join("cfg/networks")), ["a.xml"]);
        // And the kept directory goes on working.
        s.save_def(StoredKind::Network, "b", "<b/>").unwrap();
        assert_eq!(s.load_defs(StoredKind::Network).unwrap().len(), 2);
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

    #[test]
    fn single_object_loads_touch_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path().join("cfg"), d.path().join("run"));
        assert_eq!(s.load_def(StoredKind::Domain, "a").unwrap(), None);
        assert_eq!(s.load_status(StoredKind::Domain, "a").unwrap(), None);
        s.save_def(StoredKind::Domain, "a", "<domain/>").unwrap();
        s.save_status(StoredKind::Domain, "a", &serde_json::json!({"id": 3}))
            .unwrap();
        // Another write in flight in the same directories stays untouched.
        let tmp_def = d.path().join("cfg/domains/.b.xml.tmp.1.1");
        let tmp_status = d.path().join("run/domains/.b.json.tmp.1.1");
        fs::write(&tmp_def, "half").unwrap();
        fs::write(&tmp_status, "half").unwrap();
        assert_eq!(
            s.load_def(StoredKind::Domain, "a").unwrap().as_deref(),
            Some("<domain/>")
        );
        assert_eq!(
            s.load_status(StoredKind::Domain, "a").unwrap().unwrap()["id"],
            3
        );
        assert!(tmp_def.exists() && tmp_status.exists());
        // An unreadable record reads as none and is left for the next start to drop.
        fs::write(d.path().join("run/domains/c.json"), "{torn").unwrap();
        assert_eq!(s.load_status(StoredKind::Domain, "c").unwrap(), None);
        assert!(d.path().join("run/domains/c.json").exists());
    }
}
