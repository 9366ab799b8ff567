//! `vireo-loadgen`: drives a libvirt-protocol daemon (vireod or the real libvirtd) with
//! the benchmark workloads of issue 3, using `vireo-client` so that the client is not
//! the bottleneck (libvirt-python spends more CPU per call than a fast daemon does).
//!
//! Workloads (each prints one `RESULT` line with its throughput):
//! * `cycles`: define → create → destroy → undefine, `--tasks` callers on one
//!   connection, each on its own domain; unit = cycles (4 RPCs each).
//! * `list`: listAllDomains over 1000 extra domains (defined before timing, undefined
//!   after); unit = calls.
//! * `lookup`: lookupByName("test") + XMLDesc, `--tasks` callers on one connection;
//!   unit = pairs (2 RPCs each).
//! * `events`: 8 subscriber connections registered for lifecycle events while
//!   `--tasks` callers on one connection run define/create/destroy/undefine cycles (on
//!   one domain each); unit = events delivered
//!   (4 per cycle per subscriber); every event is counted and missing ones reported
//!   as `lost`.
//! * `parallel`: 4 connections doing lookupByName concurrently; unit = lookups.
//!
//! Counts are fixed (scaled by `--scale`), so both daemons do the same work.
//! `--tasks` is the offered load: with few callers a fast daemon waits for the next
//! request more than it works (each round trip pays a wake-up on both sides), so a
//! daemon's throughput is its rate once it is saturated; `compare-libvirtd.sh` runs
//! 4 and 16 callers against both daemons and keeps each one's best.
//! Output: `RESULT workload=NAME tasks=T ops=N unit=U secs=S ops_per_s=R [lost=L]
//! client_cpu_s=C [daemon_cpu_s=D]` (the daemon's CPU with `--daemon-pid`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use vireo_client::{Client, ClientError, EVENT_ID_LIFECYCLE};

#[derive(Parser, Debug)]
#[command(about = "Benchmark load generator for libvirt-protocol daemons")]
struct Args {
    /// The daemon's read-write unix socket.
    #[arg(long)]
    socket: PathBuf,
    /// The connection name to open.
    #[arg(long, default_value = "test:///default")]
    name: String,
    /// Comma-separated workloads: cycles,list,lookup,events,parallel (or all).
    #[arg(long, default_value = "all")]
    workloads: String,
    /// Multiplies every iteration count.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Concurrent callers on one connection for `cycles`, `lookup` and the event
    /// generator of `events`.
    #[arg(long, default_value_t = 4)]
    tasks: usize,
    /// Runtime worker threads (1 = a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The daemon's pid: each result then also says how much CPU the daemon used
    /// (utime+stime from /proc/PID/stat), next to the load generator's own.
    #[arg(long)]
    daemon_pid: Option<u32>,
    /// A label printed with every result (e.g. the daemon's name).
    #[arg(long, default_value = "")]
    label: String,
}

const DOMAIN_XML: &str = "<domain type='test'><name>NAME</name>\
    <memory unit='KiB'>65536</memory><vcpu>1</vcpu>\
    <os><type arch='i686'>hvm</type></os></domain>";

fn xml(name: &str) -> String {
    DOMAIN_XML.replace("NAME", name)
}

type Res<T> = Result<T, ClientError>;

/// utime+stime of a process in seconds, from /proc/PID/stat (clock ticks of 10 ms).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

struct Outcome {
    ops: u64,
    unit: &'static str,
    secs: f64,
    extra: String,
}

fn count(base: u64, scale: f64) -> u64 {
    ((base as f64 * scale).round() as u64).max(1)
}

async fn connect(a: &Args) -> Res<Client> {
    Client::connect_unix(&a.socket, &a.name).await
}

async fn cycle(c: &Client, name: &str) -> Res<()> {
    let dom = c.define_xml(&xml(name)).await?;
    let running = c.create(&dom).await?;
    c.destroy(&running).await?;
    c.undefine(&dom).await
}

async fn cycles(a: &Args) -> Res<Outcome> {
    let c = connect(a).await?;
    let per_task = count(2000, a.scale) / a.tasks as u64;
    let t = Instant::now();
    let mut hs = Vec::new();
    for task in 0..a.tasks {
        let c = c.clone();
        hs.push(tokio::spawn(async move {
            let name = format!("lg-cycle-{task}");
            for _ in 0..per_task {
                cycle(&c, &name).await?;
            }
            Ok::<_, ClientError>(())
        }));
    }
    for h in hs {
        h.await.expect("task")?;
    }
    let secs = t.elapsed().as_secs_f64();
    c.close().await?;
    Ok(Outcome {
        ops: per_task * a.tasks as u64,
        unit: "cycles",
        secs,
        extra: String::new(),
    })
}

/// Runs `f(i)` for i in 0..n with `par` callers at a time.
async fn for_each_par<F, Fut>(n: u64, par: u64, f: F) -> Res<()>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Res<()>> + Send,
{
    let mut hs = Vec::new();
    for w in 0..par {
        let f = f.clone();
        hs.push(tokio::spawn(async move {
            let mut i = w;
            while i < n {
                f(i).await?;
                i += par;
            }
            Ok::<_, ClientError>(())
        }));
    }
    for h in hs {
        h.await.expect("task")?;
    }
    Ok(())
}

async fn list(a: &Args) -> Res<Outcome> {
    let c = connect(a).await?;
    let n = 1000;
    let setup = c.clone();
    for_each_par(n, 8, move |i| {
        let c = setup.clone();
        async move {
            c.define_xml(&xml(&format!("lg-list-{i}")))
                .await
                .map(|_| ())
        }
    })
    .await?;
    let calls = count(200, a.scale);
    let t = Instant::now();
    let mut seen = 0;
    for _ in 0..calls {
        seen = c.list_all_domains(0).await?.len();
    }
    let secs = t.elapsed().as_secs_f64();
    let doms = c.list_all_domains(0).await?;
    let cleanup = c.clone();
    let doms = Arc::new(doms);
    let d2 = doms.clone();
    for_each_par(doms.len() as u64, 8, move |i| {
        let c = cleanup.clone();
        let d = d2[i as usize].clone();
        async move {
            if d.name.starts_with("lg-list-") {
                c.undefine(&d).await?;
            }
            Ok(())
        }
    })
    .await?;
    c.close().await?;
    Ok(Outcome {
        ops: calls,
        unit: "calls",
        secs,
        extra: format!(" domains={seen}"),
    })
}

async fn lookup(a: &Args) -> Res<Outcome> {
    let c = connect(a).await?;
    let n = count(5000, a.scale);
    let t = Instant::now();
    let cc = c.clone();
    for_each_par(n, a.tasks as u64, move |_| {
        let c = cc.clone();
        async move {
            let d = c.lookup_by_name("test").await?;
            c.xml_desc(&d, 0).await.map(|_| ())
        }
    })
    .await?;
    let secs = t.elapsed().as_secs_f64();
    c.close().await?;
    Ok(Outcome {
        ops: n,
        unit: "pairs",
        secs,
        extra: String::new(),
    })
}

async fn events(a: &Args) -> Res<Outcome> {
    const SUBSCRIBERS: usize = 8;
    const PER_CYCLE: u64 = 4;
    let n = count(500, a.scale);
    let expected = n * PER_CYCLE;
    let received = Arc::new(AtomicU64::new(0));
    let last = Arc::new(std::sync::Mutex::new(Instant::now()));
    let mut subs = Vec::new();
    let mut counters = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let s = connect(a).await?;
        let mut stream = s.register_domain_events(EVENT_ID_LIFECYCLE, None).await?;
        let received = received.clone();
        let last = last.clone();
        counters.push(tokio::spawn(async move {
            let mut mine = 0u64;
            while mine < expected {
                match tokio::time::timeout(Duration::from_secs(5), stream.recv()).await {
                    Ok(Some(_)) => {
                        mine += 1;
                        received.fetch_add(1, Ordering::Relaxed);
                        *last.lock().unwrap() = Instant::now();
                    }
                    _ => break,
                }
            }
            mine
        }));
        subs.push(s);
    }
    let c = connect(a).await?;
    let drivers = a.tasks as u64;
    let t = Instant::now();
    let cc = c.clone();
    for_each_par(n, drivers, move |i| {
        let c = cc.clone();
        async move { cycle(&c, &format!("lg-events-{}", i % drivers)).await }
    })
    .await?;
    let mut per_sub = Vec::new();
    for h in counters {
        per_sub.push(h.await.expect("counter"));
    }
    let end = *last.lock().unwrap();
    let secs = end.duration_since(t).as_secs_f64();
    let got = received.load(Ordering::Relaxed);
    let lost = expected * SUBSCRIBERS as u64 - got;
    for s in subs {
        s.close().await?;
    }
    c.close().await?;
    Ok(Outcome {
        ops: got,
        unit: "events",
        secs,
        extra: format!(
            " lost={lost} cycles={n} per_subscriber={}",
            per_sub
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join("/")
        ),
    })
}

async fn parallel(a: &Args) -> Res<Outcome> {
    const CONNS: usize = 4;
    let n = count(5000, a.scale);
    let mut cs = Vec::new();
    for _ in 0..CONNS {
        cs.push(connect(a).await?);
    }
    let t = Instant::now();
    let mut hs = Vec::new();
    for c in &cs {
        let c = c.clone();
        hs.push(tokio::spawn(async move {
            for _ in 0..n {
                c.lookup_by_name("test").await?;
            }
            Ok::<_, ClientError>(())
        }));
    }
    for h in hs {
        h.await.expect("task")?;
    }
    let secs = t.elapsed().as_secs_f64();
    for c in cs {
        c.close().await?;
    }
    Ok(Outcome {
        ops: n * CONNS as u64,
        unit: "lookups",
        secs,
        extra: String::new(),
    })
}

async fn run(a: Args) -> Result<(), String> {
    let all = ["cycles", "list", "lookup", "events", "parallel"];
    let chosen: Vec<&str> = if a.workloads == "all" {
        all.to_vec()
    } else {
        a.workloads.split(',').map(str::trim).collect()
    };
    // Hold one connection open throughout: libvirt's test:///default state is thrown
    // away when its last connection closes.
    let _keep = connect(&a)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let daemon = a.daemon_pid.map(|p| p.to_string());
    for w in chosen {
        let d0 = daemon.as_deref().and_then(cpu_seconds);
        let c0 = cpu_seconds("self");
        let r = match w {
            "cycles" => cycles(&a).await,
            "list" => list(&a).await,
            "lookup" => lookup(&a).await,
            "events" => events(&a).await,
            "parallel" => parallel(&a).await,
            other => return Err(format!("unknown workload {other:?}")),
        }
        .map_err(|e| format!("workload {w} failed: {e}"))?;
        let mut cpu = String::new();
        if let (Some(c0), Some(c1)) = (c0, cpu_seconds("self")) {
            cpu += &format!(" client_cpu_s={:.2}", c1 - c0);
        }
        if let (Some(d0), Some(d1)) = (d0, daemon.as_deref().and_then(cpu_seconds)) {
            cpu += &format!(" daemon_cpu_s={:.2}", d1 - d0);
        }
        println!(
            "RESULT label={} workload={w} tasks={} ops={} unit={} secs={:.3} ops_per_s={:.1}{}{cpu}",
            if a.label.is_empty() { "-" } else { &a.label },
            a.tasks,
            r.ops,
            r.unit,
            r.secs,
            r.ops as f64 / r.secs,
            r.extra
        );
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let a = Args::parse();
    let rt = if a.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(a.threads)
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vireo-loadgen: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(a)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vireo-loadgen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
