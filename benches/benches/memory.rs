//! Resident memory of an idle host and of each defined domain (not a criterion bench).
//!
//! Vireo's goals include staying small next to libvirtd: an idle daemon at most half of
//! libvirtd's 23.6 MB resident set (≤ 11.8 MB), and at most 6 KiB per defined (inactive)
//! domain, so a host with thousands of definitions stays cheap. This program measures,
//! in one process on a tokio multi-thread runtime with 2 workers:
//!
//! * (a) the process baseline before any host exists (after the runtime is built);
//! * (b) after `Host::start` with the default `test:///default` state, idle, after a
//!   short settle;
//! * (c) after defining 10,000 small domains, giving bytes per domain = (c − b) / 10,000.
//!   A defined, shut-off domain *hibernates*: it has no actor, only its directory entry
//!   and its definition as canonical XML (see `vireo_actors::directory::Owner`);
//! * (d) after starting 1,000 of them (each wakes a domain actor that holds the guest),
//!   per running domain, and (e) after destroying them again (back to hibernation);
//!
//! and prints each figure with its ratio to the target. Resident memory comes from
//! `/proc/self/smaps_rollup` (`Rss`, falling back to `VmRSS` in `/proc/self/status`).
//! A counting global allocator also reports live heap bytes and allocations, which
//! separates what the code keeps from what the allocator (glibc malloc: chunk headers,
//! per-thread arenas, fragmentation) adds on top.
//!
//! Then, to see where per-domain memory goes, it re-runs itself once per rough
//! experiment (a fresh process each, so RSS deltas are not blurred by memory an earlier
//! step freed): 10,000 parsed and normalized `DomainDef`s (the DOM of a definition,
//! which a live actor holds), 10,000 `Dormant` definitions (what a hibernated domain
//! keeps instead), 10,000 trivial ractor actors (unlinked, and linked to a parent as domain actors are
//! to their driver), 10,000 plain tokio tasks with a channel each (what an actor costs
//! at the least), 10,000 idle tokio unbounded channels (ractor's ports), and 10,000
//! events through a hub (the bounded replay ring), and repeats the define run with
//! `MALLOC_ARENA_MAX=1` (allocator arenas vs live data). It also
//! prints, for the define phase, which allocation sizes the new live memory sits in.
//!
//! The state directory is a temp dir under `/dev/shm` when that exists: every define
//! writes and fsyncs a file, which is slow on a real disk; the durability cost is
//! measured separately. (Files on tmpfs are not part of this process's RSS.)
//!
//! Run: `cargo bench -p vireo-benches --bench memory`.

// A counting allocator needs `unsafe impl GlobalAlloc`; it only forwards to the system
// allocator and adds to atomic counters.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::Command;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use vireo_actors::{Host, HostConfig, ListFilter};

/// How many domains (or objects, in experiments) are created.
const N: usize = 10_000;
/// How many of them are started in phase (d).
const RUNNING: usize = 1_000;
/// libvirtd's idle resident set, and the targets derived from it.
const LIBVIRTD_IDLE_BYTES: f64 = 23.6e6;
const IDLE_TARGET_BYTES: f64 = LIBVIRTD_IDLE_BYTES / 2.0;
const PER_DOMAIN_TARGET_BYTES: f64 = 6.0 * 1024.0;
/// Environment variable that selects an experiment in a child process.
const EXPERIMENT_VAR: &str = "VIREO_MEMORY_EXPERIMENT";

// ----- counting allocator -----

/// Live allocations and bytes by size class (class k holds sizes in (2^(k-1), 2^k]).
const CLASSES: usize = 40;

struct Counting;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_ALLOCS: AtomicI64 = AtomicI64::new(0);
static CLASS_COUNT: [AtomicI64; CLASSES] = [const { AtomicI64::new(0) }; CLASSES];
static CLASS_BYTES: [AtomicI64; CLASSES] = [const { AtomicI64::new(0) }; CLASSES];

fn class_of(size: usize) -> usize {
    (usize::BITS - size.saturating_sub(1).leading_zeros()).min(CLASSES as u32 - 1) as usize
}

fn count(size: usize, sign: i64) {
    let bytes = sign * size as i64;
    LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed);
    LIVE_ALLOCS.fetch_add(sign, Ordering::Relaxed);
    let k = class_of(size);
    CLASS_COUNT[k].fetch_add(sign, Ordering::Relaxed);
    CLASS_BYTES[k].fetch_add(bytes, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counters are plain atomics and never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size(), 1);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size(), 1);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) };
        count(layout.size(), -1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(layout.size(), -1);
            count(new_size, 1);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Resident set, live heap bytes, live allocations, and the size-class histogram.
#[derive(Clone)]
struct Snapshot {
    rss: u64,
    heap: i64,
    allocs: i64,
    classes: [(i64, i64); CLASSES],
}

fn snapshot() -> Snapshot {
    Snapshot {
        rss: rss_bytes(),
        heap: LIVE_BYTES.load(Ordering::Relaxed),
        allocs: LIVE_ALLOCS.load(Ordering::Relaxed),
        classes: std::array::from_fn(|k| {
            (
                CLASS_COUNT[k].load(Ordering::Relaxed),
                CLASS_BYTES[k].load(Ordering::Relaxed),
            )
        }),
    }
}

/// Resident set size in bytes: `Rss` of `/proc/self/smaps_rollup`, else `VmRSS`.
fn rss_bytes() -> u64 {
    let field = |path: &str, key: &str| -> Option<u64> {
        let text = std::fs::read_to_string(path).ok()?;
        let line = text.lines().find(|l| l.starts_with(key))?;
        let kib: u64 = line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    };
    field("/proc/self/smaps_rollup", "Rss:")
        .or_else(|| field("/proc/self/status", "VmRSS:"))
        .expect("cannot read resident set size from /proc")
}

fn mb(bytes: f64) -> f64 {
    bytes / 1e6
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn state_dir() -> tempfile::TempDir {
    let mut builder = tempfile::Builder::new();
    builder.prefix("vireo-bench-memory-");
    if std::path::Path::new("/dev/shm").is_dir() {
        builder
            .tempdir_in("/dev/shm")
            .expect("temp dir in /dev/shm")
    } else {
        builder.tempdir().expect("temp dir")
    }
}

fn small_domain(i: usize) -> String {
    format!(
        "<domain type='test'><name>d{i}</name><memory>1024</memory>\
         <os><type>hvm</type></os></domain>"
    )
}

fn settle(rt: &tokio::runtime::Runtime) {
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(500)).await });
}

/// Prints the size classes in which live memory grew between two snapshots, per object.
fn print_growth(before: &Snapshot, after: &Snapshot, per: usize) {
    println!("    new live heap by allocation size (per object, classes with >= 0.5 allocs):");
    for k in 0..CLASSES {
        let count = after.classes[k].0 - before.classes[k].0;
        let bytes = after.classes[k].1 - before.classes[k].1;
        let per_count = count as f64 / per as f64;
        if per_count >= 0.5 {
            let lo = if k == 0 { 0 } else { (1usize << (k - 1)) + 1 };
            println!(
                "      {:>6}..{:<6} B: {:>6.2} allocs, {:>7.0} B",
                lo,
                1usize << k,
                per_count,
                bytes as f64 / per as f64
            );
        }
    }
}

fn main() {
    if let Ok(name) = std::env::var(EXPERIMENT_VAR) {
        experiment(&name);
        return;
    }
    // `cargo bench` passes `--bench`. Without it (`cargo test --benches`), do a small
    // smoke run instead of the real measurement.
    if !std::env::args().any(|a| a == "--bench") {
        smoke();
        return;
    }
    let start = snapshot();
    let rt = runtime();
    let dir = state_dir();
    let a = snapshot();

    let host = rt.block_on(async {
        Host::start(HostConfig::new(dir.path()))
            .await
            .expect("host starts")
    });
    let conn = rt.block_on(host.open("test:///default")).expect("open");
    settle(&rt);
    let b = snapshot();

    let t0 = Instant::now();
    rt.block_on(async {
        for i in 0..N {
            conn.define_domain(&small_domain(i))
                .await
                .unwrap_or_else(|e| panic!("define d{i}: {e}"));
        }
    });
    let define_time = t0.elapsed();
    settle(&rt);
    let c = snapshot();
    let total = conn.list_domains(ListFilter::default()).len();

    let per_rss = (c.rss as f64 - b.rss as f64) / N as f64;
    let per_heap = (c.heap - b.heap) as f64 / N as f64;
    let per_allocs = (c.allocs - b.allocs) as f64 / N as f64;

    println!("memory bench ({} KiB pages, glibc malloc)", 4);
    println!(
        "  (0) process start                 RSS {:>7.2} MB  heap {:>7.2} MB",
        mb(start.rss as f64),
        mb(start.heap as f64)
    );
    println!(
        "  (a) baseline, runtime built       RSS {:>7.2} MB  heap {:>7.2} MB",
        mb(a.rss as f64),
        mb(a.heap as f64)
    );
    println!(
        "  (b) idle host, test:///default    RSS {:>7.2} MB  heap {:>7.2} MB  ({} allocs; host adds {:.2} MB RSS, {:.2} MB heap)",
        mb(b.rss as f64),
        mb(b.heap as f64),
        b.allocs,
        mb(b.rss as f64 - a.rss as f64),
        mb((b.heap - a.heap) as f64)
    );
    println!(
        "      idle RSS vs target {:.1} MB: ratio {:.2} (vs libvirtd {:.1} MB: ratio {:.2})",
        mb(IDLE_TARGET_BYTES),
        b.rss as f64 / IDLE_TARGET_BYTES,
        mb(LIBVIRTD_IDLE_BYTES),
        b.rss as f64 / LIBVIRTD_IDLE_BYTES
    );
    println!(
        "  (c) {N} domains defined        RSS {:>7.2} MB  heap {:>7.2} MB  ({} domains listed; defines took {:.2} s, {:.0}/s)",
        mb(c.rss as f64),
        mb(c.heap as f64),
        total,
        define_time.as_secs_f64(),
        N as f64 / define_time.as_secs_f64()
    );
    println!(
        "      per defined domain: RSS {:.0} B, live heap {:.0} B in {:.1} allocations",
        per_rss, per_heap, per_allocs
    );
    println!(
        "      per-domain RSS vs target {:.0} B: ratio {:.2}",
        PER_DOMAIN_TARGET_BYTES,
        per_rss / PER_DOMAIN_TARGET_BYTES
    );
    print_growth(&b, &c, N);
    println!(
        "      live domain actors: {} (of {} domains)",
        conn.live_domain_actors(),
        total
    );

    rt.block_on(async {
        for i in 0..RUNNING {
            let d = conn
                .lookup_domain_by_name(&format!("d{i}"))
                .expect("lookup");
            d.start(false).await.expect("start");
        }
    });
    settle(&rt);
    let d = snapshot();
    println!(
        "  (d) {RUNNING} of them running          RSS {:>7.2} MB  heap {:>7.2} MB  (live domain actors: {})",
        mb(d.rss as f64),
        mb(d.heap as f64),
        conn.live_domain_actors()
    );
    println!(
        "      per running domain (on top of defined): RSS {:.0} B, live heap {:.0} B in {:.1} allocations",
        (d.rss as f64 - c.rss as f64) / RUNNING as f64,
        (d.heap - c.heap) as f64 / RUNNING as f64,
        (d.allocs - c.allocs) as f64 / RUNNING as f64
    );
    rt.block_on(async {
        for i in 0..RUNNING {
            let d = conn
                .lookup_domain_by_name(&format!("d{i}"))
                .expect("lookup");
            d.destroy(false).await.expect("destroy");
        }
    });
    settle(&rt);
    let e = snapshot();
    println!(
        "  (e) destroyed again               RSS {:>7.2} MB  heap {:>7.2} MB  (live domain actors: {}; heap vs (c): {:+.0} B per destroyed domain)",
        mb(e.rss as f64),
        mb(e.heap as f64),
        conn.live_domain_actors(),
        (e.heap - c.heap) as f64 / RUNNING as f64
    );

    rt.block_on(host.shutdown());
    drop(conn);
    drop(host);
    drop(rt);
    drop(dir);

    println!("  experiments (each in a fresh process, {N} objects, per object):");
    let exe = std::env::current_exe().expect("current exe");
    for name in [
        "dom",
        "dormant",
        "actors",
        "actors-linked",
        "tasks",
        "mpsc-unbounded",
        "hub-events",
        "domains-malloc-arena-1",
    ] {
        let mut cmd = Command::new(&exe);
        cmd.env(EXPERIMENT_VAR, name);
        if name == "domains-malloc-arena-1" {
            // glibc honours this at startup: one malloc arena instead of one per thread.
            cmd.env("MALLOC_ARENA_MAX", "1");
        }
        let status = cmd.status().expect("run experiment");
        assert!(status.success(), "experiment {name} failed: {status}");
    }
}

/// What `cargo test --benches` runs: a host, a few defines, no figures.
fn smoke() {
    let rt = runtime();
    let dir = state_dir();
    rt.block_on(async {
        let host = Host::start(HostConfig::new(dir.path()))
            .await
            .expect("host starts");
        let conn = host.open("test:///default").await.expect("open");
        for i in 0..10 {
            conn.define_domain(&small_domain(i)).await.expect("define");
        }
        assert_eq!(conn.list_domains(ListFilter::default()).len(), 11);
        host.shutdown().await;
    });
    println!("memory bench: smoke run passed (run with `cargo bench` for figures)");
}

// ----- experiments -----

/// A trivial actor: no state, ignores its messages.
struct Nop;

impl ractor::Actor for Nop {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ractor::ActorRef<()>,
        _args: (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }
}

fn report(name: &str, what: &str, before: &Snapshot, after: &Snapshot, histogram: bool) {
    println!(
        "    {name:<24} {what}: RSS {:>6.0} B, live heap {:>6.0} B in {:>5.1} allocations",
        (after.rss as f64 - before.rss as f64) / N as f64,
        (after.heap - before.heap) as f64 / N as f64,
        (after.allocs - before.allocs) as f64 / N as f64
    );
    if histogram {
        print_growth(before, after, N);
    }
}

fn experiment(name: &str) {
    let rt = runtime();
    match name {
        "dom" => {
            let xml: Vec<String> = (0..N).map(small_domain).collect();
            let before = snapshot();
            let defs: Vec<vireo_xml::DomainDef> = xml
                .iter()
                .map(|x| {
                    let mut d = vireo_xml::DomainDef::parse(x).expect("parse");
                    d.normalize().expect("normalize");
                    d
                })
                .collect();
            let after = snapshot();
            report(name, "parsed+normalized DomainDef", &before, &after, true);
            println!(
                "      (normalized XML is {} bytes; size_of::<DomainDef>() = {} B, \
                 size_of::<Element>() = {} B, size_of::<Node>() = {} B)",
                defs[0].to_xml().len(),
                size_of::<vireo_xml::DomainDef>(),
                size_of::<vireo_xml::Element>(),
                size_of::<vireo_xml::Node>()
            );
            drop(defs);
        }
        "dormant" => {
            let defs: Vec<vireo_xml::DomainDef> = (0..N)
                .map(|i| {
                    let mut d = vireo_xml::DomainDef::parse(&small_domain(i)).expect("parse");
                    d.normalize().expect("normalize");
                    d.ensure_uuid();
                    d
                })
                .collect();
            let before = snapshot();
            let dormant: Vec<_> = defs
                .iter()
                .map(|d| std::sync::Arc::new(vireo_actors::directory::Dormant::of(d)))
                .collect();
            let after = snapshot();
            report(
                name,
                "hibernated definition (Arc<Dormant>)",
                &before,
                &after,
                false,
            );
            drop((defs, dormant));
        }
        "actors" | "actors-linked" => {
            let before = snapshot();
            let refs = rt.block_on(async {
                let parent = if name == "actors-linked" {
                    Some(ractor::Actor::spawn(None, Nop, ()).await.expect("spawn").0)
                } else {
                    None
                };
                let mut refs = Vec::with_capacity(N);
                for _ in 0..N {
                    let (r, _join) = match &parent {
                        Some(p) => ractor::Actor::spawn_linked(None, Nop, (), p.get_cell()).await,
                        None => ractor::Actor::spawn(None, Nop, ()).await,
                    }
                    .expect("spawn");
                    refs.push(r);
                }
                refs
            });
            settle(&rt);
            let after = snapshot();
            report(name, "idle ractor actor", &before, &after, true);
            for r in &refs {
                r.stop(None);
            }
        }
        "tasks" => {
            let before = snapshot();
            let senders: Vec<tokio::sync::mpsc::UnboundedSender<()>> = (0..N)
                .map(|_| {
                    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
                    rt.spawn(async move { while rx.recv().await.is_some() {} });
                    tx
                })
                .collect();
            settle(&rt);
            let after = snapshot();
            report(name, "tokio task + mpsc channel", &before, &after, false);
            drop(senders);
        }
        "mpsc-unbounded" => {
            // ractor's ports are tokio unbounded channels; each allocates its first
            // block of 32 slots when created, so an idle channel costs 32 messages.
            let before = snapshot();
            let small: Vec<_> = (0..N)
                .map(|_| tokio::sync::mpsc::unbounded_channel::<()>())
                .collect();
            let mid = snapshot();
            let big: Vec<_> = (0..N)
                .map(|_| tokio::sync::mpsc::unbounded_channel::<[u64; 10]>())
                .collect();
            let after = snapshot();
            report(name, "idle channel of ()", &before, &mid, false);
            report(name, "idle channel of 80 B", &mid, &after, false);
            drop((small, big));
        }
        "hub-events" => {
            use vireo_messages::{DomainEventKind, Event, EventKind, ObjectRef, Uuid};
            let hub = vireo_bus::Hub::new();
            let before = snapshot();
            for i in 0..N {
                hub.publish(Event {
                    origin: 0,
                    object: ObjectRef::domain(format!("d{i}"), Uuid::new_v4(), None),
                    kind: EventKind::lifecycle(DomainEventKind::Defined, 0),
                });
            }
            let after = snapshot();
            report(
                name,
                "event published (ring keeps 4096)",
                &before,
                &after,
                false,
            );
        }
        "domains-malloc-arena-1" => {
            let dir = state_dir();
            let host = rt.block_on(async {
                Host::start(HostConfig::new(dir.path()))
                    .await
                    .expect("host starts")
            });
            let conn = rt.block_on(host.open("test:///default")).expect("open");
            settle(&rt);
            let b = snapshot();
            rt.block_on(async {
                for i in 0..N {
                    conn.define_domain(&small_domain(i)).await.expect("define");
                }
            });
            settle(&rt);
            let c = snapshot();
            println!(
                "    {name:<24} idle host RSS {:.2} MB; per defined domain:",
                mb(b.rss as f64)
            );
            report(name, "defined domain", &b, &c, false);
            rt.block_on(host.shutdown());
        }
        other => panic!("unknown experiment {other}"),
    }
}
