//! What a durable definition costs in system calls (not a criterion bench).
//!
//! Every define writes the domain's XML with write, fsync, rename, fsync dir, and every
//! undefine removes it and fsyncs the directory: the one piece of `cycles` work in
//! issue 3's benchmark that libvirt's test driver does not do at all. This program
//! measures it three ways in the same directory, so the cost can be weighed against the
//! rest of a cycle (benches/README.md, "What bounds `cycles` CPU"):
//!
//! 1. `Store::save_def` + `Store::remove_def`, as the daemon calls them;
//! 2. the same system calls one by one (`openat` O_CREAT|O_EXCL, `write`, `fsync`,
//!    `close`, `renameat`, directory `fsync`, `unlinkat`, directory `fsync`), each
//!    timed, to show which part costs what on this filesystem;
//! 3. for comparison only, the same bytes appended to one open file with `fdatasync`
//!    (what a journal would pay; the store does not do this).
//!
//! The directory is `VIREO_BENCH_DIR`, else a temp dir under `/dev/shm` when it exists
//! (where compare-libvirtd.sh puts vireod's state), else the temp dir. `VIREO_BENCH_N`
//! (default 20000) define+undefine pairs per way, after 1000 for warm-up.
//!
//! Run: `cargo bench -p vireo-benches --bench store`.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::fcntl::{OFlag, open, openat, renameat};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, fdatasync, fsync, unlinkat, write};
use vireo_drivers::store::{Store, StoredKind};

/// A definition of the size the benchmark's domains have once vireod has filled in
/// uuid and defaults.
const XML: &str = "<domain type='test'>\n  <name>bench</name>\n  \
    <uuid>4b7e1c6a-2f0d-4e8b-9a51-0c3d2e1f4a5b</uuid>\n  \
    <memory unit='KiB'>65536</memory>\n  <currentMemory unit='KiB'>65536</currentMemory>\n  \
    <vcpu placement='static'>1</vcpu>\n  <os>\n    <type arch='i686'>hvm</type>\n    \
    <boot dev='hd'/>\n  </os>\n  <clock offset='utc'/>\n  <on_poweroff>destroy</on_poweroff>\n  \
    <on_reboot>restart</on_reboot>\n  <on_crash>destroy</on_crash>\n  <devices>\n  \
    </devices>\n</domain>\n";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bench_dir() -> tempfile::TempDir {
    if let Ok(d) = std::env::var("VIREO_BENCH_DIR") {
        return tempfile::tempdir_in(d).expect("temp dir in VIREO_BENCH_DIR");
    }
    if Path::new("/dev/shm").is_dir() {
        return tempfile::tempdir_in("/dev/shm").expect("temp dir in /dev/shm");
    }
    tempfile::tempdir().expect("temp dir")
}

fn per_pair_us(total: std::time::Duration, n: usize) -> f64 {
    total.as_secs_f64() * 1e6 / n as f64
}

/// Way 1: through the store.
fn through_store(root: &Path, n: usize) -> f64 {
    let store = Store::new(root.join("config"), root.join("run"));
    let pair = || {
        store
            .save_def(StoredKind::Domain, "bench", XML)
            .expect("save");
        store
            .remove_def(StoredKind::Domain, "bench")
            .expect("remove");
    };
    (0..1000).for_each(|_| pair());
    let t = Instant::now();
    (0..n).for_each(|_| pair());
    per_pair_us(t.elapsed(), n)
}

/// Way 2: the store's system calls, each timed; returns (name, µs per pair) in order.
fn one_by_one(dir: &Path, n: usize) -> Vec<(&'static str, f64)> {
    let d: OwnedFd = open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).expect("dir");
    let names = [
        "openat(O_CREAT)",
        "write",
        "fsync(file)",
        "close",
        "renameat",
        "fsync(dir)",
        "unlinkat",
        "fsync(dir)",
    ];
    let mut spent = [0f64; 8];
    for round in 0..(n + 1000) {
        let mut lap = [0f64; 8];
        let mut t = Instant::now();
        let mut mark = |i: usize, t: &mut Instant| {
            lap[i] = t.elapsed().as_secs_f64();
            *t = Instant::now();
        };
        let f = openat(
            &d,
            ".bench.xml.tmp",
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .expect("openat");
        mark(0, &mut t);
        write(&f, XML.as_bytes()).expect("write");
        mark(1, &mut t);
        fsync(&f).expect("fsync");
        mark(2, &mut t);
        drop(f);
        mark(3, &mut t);
        renameat(&d, ".bench.xml.tmp", &d, "bench.xml").expect("rename");
        mark(4, &mut t);
        fsync(&d).expect("fsync dir");
        mark(5, &mut t);
        unlinkat(&d, "bench.xml", UnlinkatFlags::NoRemoveDir).expect("unlink");
        mark(6, &mut t);
        fsync(&d).expect("fsync dir");
        mark(7, &mut t);
        if round >= 1000 {
            for (s, l) in spent.iter_mut().zip(lap) {
                *s += l;
            }
        }
    }
    names
        .into_iter()
        .zip(spent)
        .map(|(name, s)| (name, s * 1e6 / n as f64))
        .collect()
}

/// Way 3 (comparison only): appends to one file, with fdatasync, per define and undefine.
fn appended(dir: &Path, n: usize) -> f64 {
    let mut f = File::options()
        .create(true)
        .append(true)
        .open(dir.join("journal"))
        .expect("journal");
    let tomb = b"undefine bench\n";
    let pair = |f: &mut File| {
        f.write_all(XML.as_bytes()).expect("append");
        fdatasync(f.as_fd()).expect("fdatasync");
        f.write_all(tomb).expect("append");
        fdatasync(f.as_fd()).expect("fdatasync");
    };
    (0..1000).for_each(|_| pair(&mut f));
    let t = Instant::now();
    (0..n).for_each(|_| pair(&mut f));
    per_pair_us(t.elapsed(), n)
}

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`) a few pairs
    // only, to check that it runs.
    let n = if std::env::args().any(|a| a == "--bench") {
        env_usize("VIREO_BENCH_N", 20_000)
    } else {
        10
    };
    let tmp = bench_dir();
    let root: PathBuf = tmp.path().to_path_buf();
    std::fs::create_dir_all(root.join("raw")).expect("raw dir");
    println!(
        "durable definition write + removal in {} ({n} pairs, {} bytes of XML)",
        root.display(),
        XML.len()
    );
    let store = through_store(&root, n);
    println!("  Store::save_def + remove_def: {store:6.2} µs per define+undefine");
    let calls = one_by_one(&root.join("raw"), n);
    let total: f64 = calls.iter().map(|(_, us)| us).sum();
    println!("  the same system calls one by one: {total:6.2} µs");
    for (name, us) in &calls {
        println!("    {name:<16} {us:6.2} µs");
    }
    let journal = appended(&root, n);
    println!(
        "  for comparison, appends to one file + fdatasync: {journal:6.2} µs ({:.1}x less)",
        store / journal
    );
}
