//! Event fan-out: one publisher, 8 or 64 subscribers, async and blocking receivers.
//!
//! Every lifecycle event a driver raises goes through `vireo_bus::Hub::publish` to every
//! subscribed client connection, actor and embedding app, so the hub's fan-out rate and
//! the publish→receive latency bound how fast event-heavy clients (virt-manager keeps a
//! subscription per open connection) see state changes. This bench measures both:
//!
//! * **Latency** (printed before criterion runs, since criterion has no percentiles):
//!   every publish is stamped with an `Instant` in a side table indexed by sequence
//!   number, every subscriber stamps each receive, and p50/p99/max of receive − publish
//!   over all (event, subscriber) pairs are printed in microseconds. Two regimes:
//!   *isolated* (one event in flight at a time: wake-up latency) and *saturated* (the
//!   publisher goes as fast as the flow-control window below allows: latency including
//!   queueing).
//! * **Throughput** (criterion, `bus/fanout/...`): deliveries per second, i.e. events
//!   received summed over all subscribers (`Throughput::Elements(subscribers)` per
//!   published event); divide by the subscriber count for published events per second.
//!
//! Subscribers' queues are bounded and a full queue drops events (reported as
//! `Lagged`), so the publisher keeps at most one queue's worth of events outstanding
//! (it checks the slowest subscriber's progress every 256 events): the figures are for
//! lossless delivery, and any `Lagged` seen is reported. Async subscribers are tasks on
//! a tokio multi-thread runtime with 2 workers; blocking subscribers are one OS thread
//! each; the publisher is the bench's main thread.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vireo_bus::{Delivery, Filter, Hub, HubConfig};
use vireo_messages::{DomainEventKind, Event, EventKind, ObjectRef, Uuid};

/// Queue capacity of every subscriber, and the publisher's flow-control window.
const QUEUE: u64 = 1024;
/// How often (in events) a saturating publisher checks subscriber progress.
const CHUNK: u64 = 256;
/// Subscriber counts measured.
const FANOUT: [usize; 2] = [8, 64];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Async,
    Blocking,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Async => "async",
            Mode::Blocking => "blocking",
        }
    }
}

/// Receive timestamps of one subscriber: nanoseconds since `epoch`, indexed by
/// `seq - 1` (the hub is fresh, so sequence numbers start at 1). Empty when the
/// subscriber does not record.
struct Recorder {
    epoch: Instant,
    times: Vec<u64>,
}

impl Recorder {
    fn note(&mut self, seq: u64) {
        if let Some(slot) = self.times.get_mut((seq - 1) as usize) {
            *slot = self.epoch.elapsed().as_nanos() as u64;
        }
    }
}

/// What every subscriber shares with the publisher.
struct Shared {
    /// Per subscriber: the last sequence number received.
    progress: Vec<AtomicU64>,
    /// Events reported lost by `Delivery::Lagged` (should stay 0).
    lagged: AtomicU64,
}

impl Shared {
    fn min_progress(&self) -> u64 {
        self.progress
            .iter()
            .map(|p| p.load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX)
    }

    fn on_delivery(&self, idx: usize, d: Delivery, rec: &mut Recorder) {
        match d {
            Delivery::Event(stamped) => {
                rec.note(stamped.seq);
                self.progress[idx].store(stamped.seq, Ordering::Release);
            }
            Delivery::Lagged { missed } => {
                self.lagged.fetch_add(missed, Ordering::Relaxed);
            }
            Delivery::Gap { .. } => unreachable!("nobody resumes"),
        }
    }
}

enum Joins {
    Async(Vec<tokio::task::JoinHandle<Vec<u64>>>),
    Blocking(Vec<std::thread::JoinHandle<Vec<u64>>>),
}

/// A hub with its subscribers running.
struct Fleet {
    hub: Hub,
    shared: Arc<Shared>,
    joins: Joins,
    event: Arc<Event>,
    /// Origin of both publish and receive timestamps.
    epoch: Instant,
}

impl Fleet {
    /// Starts `n` subscribers; each records receive times of the first `record` events.
    fn start(rt: &tokio::runtime::Runtime, mode: Mode, n: usize, record: usize) -> Fleet {
        let hub = Hub::with_config(HubConfig {
            ring_capacity: 4096,
            queue_capacity: QUEUE as usize,
        });
        let shared = Arc::new(Shared {
            progress: (0..n).map(|_| AtomicU64::new(0)).collect(),
            lagged: AtomicU64::new(0),
        });
        let epoch = Instant::now();
        let recorder = || Recorder {
            epoch,
            times: vec![0; record],
        };
        let joins = match mode {
            Mode::Async => Joins::Async(
                (0..n)
                    .map(|idx| {
                        let mut sub = hub.subscribe(Filter::all());
                        let shared = shared.clone();
                        let mut rec = recorder();
                        rt.spawn(async move {
                            while let Some(d) = sub.recv().await {
                                shared.on_delivery(idx, d, &mut rec);
                            }
                            rec.times
                        })
                    })
                    .collect(),
            ),
            Mode::Blocking => Joins::Blocking(
                (0..n)
                    .map(|idx| {
                        let sub = hub.subscribe_blocking(Filter::all());
                        let shared = shared.clone();
                        let mut rec = recorder();
                        std::thread::spawn(move || {
                            for d in sub {
                                shared.on_delivery(idx, d, &mut rec);
                            }
                            rec.times
                        })
                    })
                    .collect(),
            ),
        };
        let event = Arc::new(Event {
            origin: 0,
            object: ObjectRef::domain("bench-vm", Uuid::nil(), None),
            kind: EventKind::lifecycle(DomainEventKind::Started, 0),
        });
        Fleet {
            hub,
            shared,
            joins,
            event,
            epoch,
        }
    }

    /// Waits until every subscriber has received `seq`.
    fn wait_for(&self, seq: u64) {
        let mut spins = 0u32;
        while self.shared.min_progress() < seq {
            spins += 1;
            if spins < 64 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(20));
            }
        }
    }

    /// Publishes `count` events, keeping at most `window` outstanding (checked every
    /// `chunk` events), and returns the time until every subscriber had all of them.
    /// With `stamps`, the publish time of event `seq` goes to `stamps[seq - 1]`
    /// (nanoseconds since the fleet's epoch, like the receive times).
    fn run(&self, count: u64, window: u64, chunk: u64, mut stamps: Option<&mut [u64]>) -> Duration {
        let start_seq = self.hub.last_seq();
        let t0 = Instant::now();
        for k in 0..count {
            if k % chunk == 0 {
                // Before publishing up to start + k + chunk, the slowest subscriber
                // must be within `window` of it.
                let need = (start_seq + k + chunk).saturating_sub(window);
                self.wait_for(need);
            }
            // Stamped before publishing: a subscriber may receive before `publish`
            // returns.
            let t = self.epoch.elapsed().as_nanos() as u64;
            let seq = self.hub.publish(self.event.clone());
            if let Some(slot) = stamps.as_mut().and_then(|s| s.get_mut((seq - 1) as usize)) {
                *slot = t;
            }
        }
        self.wait_for(start_seq + count);
        t0.elapsed()
    }

    /// Stops the subscribers (dropping the hub ends their streams) and returns their
    /// receive-time tables.
    fn stop(self, rt: &tokio::runtime::Runtime) -> (Vec<Vec<u64>>, u64) {
        let Fleet {
            hub, shared, joins, ..
        } = self;
        drop(hub);
        let tables = match joins {
            Joins::Async(handles) => rt.block_on(async {
                let mut out = Vec::new();
                for h in handles {
                    out.push(h.await.expect("subscriber task panicked"));
                }
                out
            }),
            Joins::Blocking(handles) => handles
                .into_iter()
                .map(|h| h.join().expect("subscriber thread panicked"))
                .collect(),
        };
        (tables, shared.lagged.load(Ordering::Relaxed))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

/// One latency run: `count` events, `window` outstanding at most.
fn latency_run(rt: &tokio::runtime::Runtime, mode: Mode, n: usize, regime: &str, count: usize) {
    let (window, chunk) = match regime {
        "isolated" => (1, 1),
        _ => (QUEUE, CHUNK),
    };
    let fleet = Fleet::start(rt, mode, n, count);
    let mut stamps = vec![0u64; count];
    let elapsed = fleet.run(count as u64, window, chunk, Some(&mut stamps));
    let (tables, lagged) = fleet.stop(rt);
    let mut lat: Vec<u64> = Vec::with_capacity(count * n);
    for table in &tables {
        for (recv, sent) in table.iter().zip(&stamps) {
            if *recv != 0 {
                lat.push(recv.saturating_sub(*sent));
            }
        }
    }
    lat.sort_unstable();
    let missing = count * n - lat.len();
    println!(
        "bus latency {:<8} {:>2} subs {:<9}: p50 {:>8.1} us  p99 {:>8.1} us  max {:>9.1} us  \
         ({} events in {:.0} ms, lagged {}, unrecorded {})",
        mode.name(),
        n,
        regime,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
        count,
        elapsed.as_secs_f64() * 1e3,
        lagged,
        missing
    );
}

fn bench_latency(rt: &tokio::runtime::Runtime) {
    // Under `cargo test --benches` (no `--bench` argument) criterion runs each bench
    // once; keep the latency runs equally short there.
    let scale = if std::env::args().any(|a| a == "--bench") {
        1
    } else {
        100
    };
    for mode in [Mode::Async, Mode::Blocking] {
        for n in FANOUT {
            latency_run(rt, mode, n, "isolated", 2_000 / scale);
            latency_run(rt, mode, n, "saturated", 20_000 / scale);
        }
    }
}

fn bench_fanout(c: &mut Criterion) {
    let rt = runtime();
    bench_latency(&rt);

    let mut group = c.benchmark_group("bus/fanout");
    for mode in [Mode::Async, Mode::Blocking] {
        for n in FANOUT {
            let fleet = Fleet::start(&rt, mode, n, 0);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(BenchmarkId::new(mode.name(), n), |b| {
                b.iter_custom(|iters| black_box(fleet.run(iters, QUEUE, CHUNK, None)))
            });
            let (_, lagged) = fleet.stop(&rt);
            if lagged > 0 {
                println!("bus fanout {} {n}: {lagged} events lagged", mode.name());
            }
        }
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_fanout
}
criterion_main!(benches);
