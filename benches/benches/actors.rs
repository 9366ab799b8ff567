//! Actor round trips through the embedding API on `test:///default`.
//!
//! Every libvirt call a client makes ends up as a directory lookup plus a message to a
//! domain actor (queries) or a job in a domain actor's slot (state changes). This bench
//! measures those paths end to end, the way an embedding app or the RPC layer drives
//! them, in operations per second:
//!
//! * `actors/lookup`: `Connection::lookup_domain_by_name` alone (directory read, no
//!   message);
//! * `actors/lookup+info`: lookup then `Domain::info().await` (one message to the
//!   domain actor and its oneshot reply), from a task on the runtime as the RPC layer
//!   calls it; `lookup+info/block_on` does the same from a thread outside the runtime
//!   (an embedding app's plain thread), which adds a cross-thread wake-up per call;
//! * `actors/define+start+destroy+undefine` (from a task): the whole life of a small domain (driver
//!   actor spawns a domain actor, two jobs, the actor goes away), four awaited calls
//!   per operation, with the definition and status records written to the state dir.
//!
//! The host runs on a tokio multi-thread runtime with 2 workers (the machine has two
//! cores). Its state directory is a temp dir under `/dev/shm` when that exists: the
//! store fsyncs every write, and on a real disk the cycle figure would mostly measure
//! the disk; the test driver's durability cost is measured separately, not here.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vireo_actors::{Connection, Host, HostConfig};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A temp dir on tmpfs when there is one (see the module docs).
fn state_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let mut builder = tempfile::Builder::new();
    builder.prefix("vireo-bench-actors-");
    if shm.is_dir() {
        builder.tempdir_in(shm).expect("temp dir in /dev/shm")
    } else {
        builder.tempdir().expect("temp dir")
    }
}

/// Runs a timed loop as a task on the runtime's workers, as the RPC layer's tasks run.
fn on_runtime(
    rt: &tokio::runtime::Runtime,
    timed: impl Future<Output = Duration> + Send + 'static,
) -> Duration {
    rt.block_on(rt.spawn(timed)).expect("bench task panicked")
}

fn cycle_xml(i: u64) -> String {
    format!(
        "<domain type='test'><name>cycle{i}</name><memory>1024</memory>\
         <os><type>hvm</type></os></domain>"
    )
}

async fn cycle(conn: &Connection, i: u64) {
    let dom = conn.define_domain(&cycle_xml(i)).await.expect("define");
    dom.start(false).await.expect("start");
    dom.destroy(false).await.expect("destroy");
    dom.undefine(0).await.expect("undefine");
}

fn bench_actors(c: &mut Criterion) {
    let rt = runtime();
    let dir = state_dir();
    let (host, conn) = rt.block_on(async {
        let host = Host::start(HostConfig::new(dir.path()))
            .await
            .expect("host starts");
        let conn = host.open("test:///default").await.expect("open");
        (host, conn)
    });
    // The default test state has one running domain called "test".
    let seeded = conn.lookup_domain_by_name("test").expect("seeded domain");
    eprintln!(
        "actors bench: state dir {}, {} domains seeded, 'test' is {:?}",
        dir.path().display(),
        conn.list_domains(Default::default()).len(),
        rt.block_on(seeded.info()).expect("info").state.state
    );

    let mut group = c.benchmark_group("actors");
    group.throughput(Throughput::Elements(1));
    group.bench_function("lookup", |b| {
        b.iter(|| {
            black_box(
                conn.lookup_domain_by_name(black_box("test"))
                    .expect("lookup"),
            )
        })
    });
    group.bench_function("lookup+info", |b| {
        b.iter_custom(|iters| {
            let conn = conn.clone();
            on_runtime(&rt, async move {
                let t0 = Instant::now();
                for _ in 0..iters {
                    let dom = conn.lookup_domain_by_name("test").expect("lookup");
                    black_box(dom.info().await.expect("info"));
                }
                t0.elapsed()
            })
        })
    });
    group.bench_function("lookup+info/block_on", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                let dom = conn.lookup_domain_by_name("test").expect("lookup");
                black_box(rt.block_on(dom.info()).expect("info"));
            }
            t0.elapsed()
        })
    });
    let next = Arc::new(AtomicU64::new(0));
    group.bench_function("define+start+destroy+undefine", |b| {
        b.iter_custom(|iters| {
            let conn = conn.clone();
            let next = next.clone();
            on_runtime(&rt, async move {
                let t0 = Instant::now();
                for _ in 0..iters {
                    cycle(&conn, next.fetch_add(1, Ordering::Relaxed)).await;
                }
                t0.elapsed()
            })
        })
    });
    group.finish();

    let left = conn.list_domains(Default::default()).len();
    eprintln!(
        "actors bench: {} cycles run, {left} domains left",
        next.load(Ordering::Relaxed)
    );
    rt.block_on(host.shutdown());
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_actors
}
criterion_main!(benches);
