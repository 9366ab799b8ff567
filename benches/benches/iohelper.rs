//! Throughput of the I/O helper against `dd … conv=fdatasync` (not a criterion bench).
//!
//! Issue 5 sets the target: a save must run at ≥ 90 % of the synced write bandwidth of
//! the filesystem the image goes to. The helper's part of a save is the copy from QEMU's
//! pipe into the file plus the final `fdatasync()`; this program measures exactly that
//! against the ready-made reference, `dd of=FILE bs=1M iflag=fullblock conv=fdatasync`,
//! both fed the same way: a writer thread pushes the same bytes (non-zero, so no
//! filesystem can shortcut them) into a pipe enlarged to 1 MiB, as the daemon's pipe is.
//!
//! For each of: helper (buffered), `dd` (buffered), helper with `O_DIRECT`,
//! `dd oflag=direct`, it runs `VIREO_BENCH_RUNS` (default 4) copies of `VIREO_BENCH_MIB`
//! (default 512) MiB into a fresh file in `VIREO_BENCH_DIR` (default the temp dir, i.e.
//! the disk on this machine kind). Variants are interleaved after a warm-up, and each
//! round starts with the next variant, because whichever ran first in a round was several
//! times slower here. It prints the median and the best wall time (fdatasync included; on
//! a shared machine the best run is the steadier estimate) as MiB/s, and the ratios
//! helper / dd. The file is removed and `sync` run after each copy.
//! `VIREO_BENCH_ONLY=helper|dd|direct|buffered` keeps some variants,
//! `VIREO_BENCH_VERBOSE=1` prints every run.
//!
//! Run: `cargo bench -p vireo-benches --bench iohelper`.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use vireo_drivers::iohelper::{CopyOptions, PIPE_CAPACITY, copy_stream, pipe_with_capacity};

const MIB: usize = 1 << 20;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes `mib` MiB of a non-zero pattern into `w`, then closes it.
fn feed(w: OwnedFd, mib: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let block: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8 + 1).collect();
        let mut f = File::from(w);
        for _ in 0..mib {
            f.write_all(&block).expect("feeding the pipe");
        }
    })
}

fn helper_run(rt: &tokio::runtime::Runtime, path: &Path, mib: usize, direct: bool) -> Duration {
    let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let start = Instant::now();
    let writer = feed(w, mib);
    let opts = CopyOptions {
        direct,
        ..CopyOptions::default()
    };
    let n = rt
        .block_on(copy_stream(r, &f, 0, opts, Arc::new(AtomicU64::new(0))))
        .expect("helper copy");
    let took = start.elapsed();
    writer.join().unwrap();
    assert_eq!(n, (mib * MIB) as u64);
    took
}

fn dd_run(path: &Path, mib: usize, direct: bool) -> Duration {
    let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
    let mut cmd = Command::new("dd");
    cmd.arg(format!("of={}", path.display())).args([
        "bs=1M",
        "iflag=fullblock",
        "conv=fdatasync",
        "status=none",
    ]);
    if direct {
        cmd.arg("oflag=direct");
    }
    let start = Instant::now();
    let mut child = cmd.stdin(Stdio::from(r)).spawn().expect("dd");
    let writer = feed(w, mib);
    let status = child.wait().unwrap();
    let took = start.elapsed();
    writer.join().unwrap();
    assert!(status.success(), "dd failed");
    assert_eq!(std::fs::metadata(path).unwrap().len(), (mib * MIB) as u64);
    took
}

/// (median, best) of the runs.
fn stats(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[0])
}

fn main() {
    // `cargo bench` passes `--bench`; a name filter is not supported here.
    let mib = env_usize("VIREO_BENCH_MIB", 512);
    let runs = env_usize("VIREO_BENCH_RUNS", 4).max(1);
    let base = std::env::var_os("VIREO_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&base).expect("bench dir");
    let path = dir.path().join("image");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    println!(
        "iohelper: {mib} MiB through a {} KiB pipe into {} ({runs} runs each, fdatasync included)",
        PIPE_CAPACITY / 1024,
        base.display()
    );
    // (name, O_DIRECT, helper or dd)
    let variants = [
        ("dd conv=fdatasync", false, false),
        ("helper", false, true),
        ("dd oflag=direct conv=fdatasync", true, false),
        ("helper O_DIRECT", true, true),
    ];
    // VIREO_BENCH_ONLY=helper|dd|direct|buffered keeps the variants whose name matches.
    let only = std::env::var("VIREO_BENCH_ONLY").unwrap_or_default();
    let variants: Vec<_> = variants
        .into_iter()
        .filter(|(name, direct, _)| {
            only.is_empty()
                || name.contains(only.as_str())
                || (only == "direct" && *direct)
                || (only == "buffered" && !*direct)
        })
        .collect();
    let run = |mib: usize, direct: bool, helper: bool| {
        let t = if helper {
            helper_run(&rt, &path, mib, direct)
        } else {
            dd_run(&path, mib, direct)
        };
        std::fs::remove_file(&path).unwrap();
        // Let the filesystem settle (journal commit of the freed blocks), so a run does
        // not pay for the previous one: without this, whichever variant came first in a
        // round was several times slower.
        let _ = Command::new("sync").status();
        std::thread::sleep(Duration::from_millis(200));
        t
    };
    // Warm up (threads, page cache, dd's binary), then interleave the variants so that
    // load from other work on the machine hits them alike.
    for &(_, direct, helper) in &variants {
        run(mib.min(16), direct, helper);
    }
    let mut times = vec![Vec::new(); variants.len()];
    // Each round starts with the next variant: whichever runs first in a round was
    // measured several times slower on this machine (whatever the variant), so every
    // variant takes that place equally often.
    for round in 0..runs {
        for k in 0..variants.len() {
            let i = (round + k) % variants.len();
            let (_, direct, helper) = variants[i];
            times[i].push(run(mib, direct, helper));
        }
    }
    println!("  {:<32} {:>20} {:>20}", "", "median", "best");
    let mut results = Vec::new();
    for (&(name, _, _), t) in variants.iter().zip(times) {
        if std::env::var_os("VIREO_BENCH_VERBOSE").is_some() {
            println!("  {name}: {t:?}");
        }
        let (med, best) = stats(t);
        let rate = |t: Duration| mib as f64 / t.as_secs_f64();
        println!(
            "  {name:<32} {:>5.0} ms {:>5.0} MiB/s {:>5.0} ms {:>5.0} MiB/s",
            med.as_secs_f64() * 1e3,
            rate(med),
            best.as_secs_f64() * 1e3,
            rate(best)
        );
        results.push((rate(med), rate(best)));
    }
    if results.len() == 4 {
        println!(
            "  ratio helper / dd (median; best): buffered {:.2}; {:.2}, O_DIRECT {:.2}; {:.2} (target ≥ 0.90)",
            results[1].0 / results[0].0,
            results[1].1 / results[0].1,
            results[3].0 / results[2].0,
            results[3].1 / results[2].1,
        );
    }
}
