//! [`QemuHypervisor`]: libvirt's `qemu` driver behind the [`Hypervisor`] trait.
//!
//! Start: check the definition ([`argv::validate`], [`argv::preflight`], the machine
//! type against the emulator's `-machine help`, asked once per emulator and cached),
//! build the command line, spawn QEMU detached ([`QemuProcess`]), connect and negotiate
//! QMP, and `cont` unless the guest is to stay paused. Any failure kills what was
//! spawned and removes the runtime directory, so nothing is left running.
//!
//! Each guest has two tasks: an *exit watcher* that learns when the QEMU process is gone
//! (waitpid for our own child; the QMP stream's end confirmed through `/proc` for a
//! process adopted after a daemon restart) and an *event pump* that turns QMP events
//! into [`GuestEvent`]s:
//!
//! | QMP | GuestEvent |
//! |---|---|
//! | `SHUTDOWN` | `Shutdown{by_guest: data.guest}`; `Reset` if reason `guest-reset` (`-no-reboot`); nothing after our own destroy, after a panic, or in a fake reboot (then `system_reset` + `cont`) |
//! | `RESET` | `Reset` |
//! | `STOP` | `Stopped`, except the stop that follows a shutdown or panic, or during a save |
//! | `RESUME` | `Resumed`, except during a save |
//! | `MIGRATION` | nothing; its status feeds the running save ([`migrate`]) |
//! | `GUEST_PANICKED` | `Panicked` |
//! | `RTC_CHANGE` | `RtcChange{offset}` |
//! | stream end / exit not caused by our destroy | `Exited{crashed: no SHUTDOWN seen}` (and the runtime directory is removed) |
//!
//! Reboot is libvirt's "fake reboot": ACPI power button with a flag set; when the
//! guest's SHUTDOWN arrives, the pump resets and resumes the machine instead, and the
//! resulting `RESET` is reported as [`GuestEvent::Reset`].
//!
//! A running guest is described by a status record (`pid`, `qmp_socket`, `log`,
//! `domain_dir`, `started`); [`Hypervisor::reattach`] trusts the pid only if its
//! command line names the QMP socket, reconnects, and reads the run state with
//! `query-status`.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use vireo_messages::{ErrorCode, ErrorDomain, VirError, VirResult};
use vireo_xml::DomainDef;

use super::argv::{self, LaunchContext};
use super::migrate::{self, MigrationState};
use super::process::{self, ProcessError, QemuProcess};
use super::qmp::{Qmp, QmpError, QmpEvent};
use crate::hypervisor::{
    BoxFuture, DiskIo, Flavour, Guest, GuestEvent, GuestProbe, GuestUsage, Hypervisor, SaveControl,
    ShutdownOutcome, StartOptions, Started,
};

const ERR: ErrorDomain = ErrorDomain::Qemu;

/// How long a start waits for QEMU's monitor socket to accept.
const MONITOR_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a reattach waits for the monitor of an adopted QEMU.
const REATTACH_MONITOR_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a graceful destroy waits after SIGTERM before giving up (libvirt: 10 s).
const GRACEFUL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a start waits for QEMU to exit once its monitor closed during the start.
const LOST_MONITOR_EXIT_WAIT: Duration = Duration::from_secs(3);
/// Unix socket paths are limited to 107 bytes plus the NUL.
const MAX_SOCKET_PATH: usize = 107;

/// Where the QEMU driver keeps its files and how it stops guests.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// Runtime state: one directory per running domain, `RUN/NAME/`, holding
    /// `qmp.sock` and the other sockets of the guest. Removed when the guest stops.
    pub run_dir: PathBuf,
    /// Per-domain QEMU logs, `LOG/NAME.log` (appended across runs, as libvirt does).
    pub log_dir: PathBuf,
    /// The emulator used when the definition has no `<emulator>`.
    pub emulator: PathBuf,
    /// How long a forced destroy waits after SIGTERM before SIGKILL.
    pub destroy_grace: Duration,
}

impl QemuConfig {
    /// A configuration with the given directories, `qemu-system-x86_64` from `PATH`
    /// and a 3 s destroy grace.
    pub fn new(run_dir: impl Into<PathBuf>, log_dir: impl Into<PathBuf>) -> QemuConfig {
        QemuConfig {
            run_dir: run_dir.into(),
            log_dir: log_dir.into(),
            emulator: default_emulator(),
            destroy_grace: Duration::from_secs(3),
        }
    }
}

/// `qemu-system-x86_64` as found on `PATH` (or `/usr/bin/qemu-system-x86_64`).
pub fn default_emulator() -> PathBuf {
    const NAME: &str = "qemu-system-x86_64";
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(NAME))
                .find(|c| c.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("/usr/bin").join(NAME))
}

/// The QEMU hypervisor.
pub struct QemuHypervisor {
    cfg: QemuConfig,
    machines: Mutex<HashMap<PathBuf, Arc<Vec<String>>>>,
}

impl QemuHypervisor {
    /// A hypervisor using `cfg`.
    pub fn new(cfg: QemuConfig) -> QemuHypervisor {
        QemuHypervisor {
            cfg,
            machines: Mutex::new(HashMap::new()),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &QemuConfig {
        &self.cfg
    }

    /// The runtime directory of domain `name`.
    pub fn domain_dir(&self, name: &str) -> PathBuf {
        self.cfg.run_dir.join(name)
    }

    /// The log file of domain `name`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.cfg.log_dir.join(format!("{name}.log"))
    }

    /// The machine types `emulator` supports (`-machine help`), asked once and cached.
    pub async fn machine_types(&self, emulator: &Path) -> VirResult<Arc<Vec<String>>> {
        if let Some(m) = self.machines.lock().unwrap().get(emulator) {
            return Ok(m.clone());
        }
        let out = tokio::process::Command::new(emulator)
            .args(["-machine", "help"])
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| {
                VirError::system(
                    ERR,
                    format!("Cannot check QEMU binary {}", emulator.display()),
                    &e,
                )
            })?;
        if !out.status.success() {
            return Err(VirError::internal(
                ERR,
                format!(
                    "'{} -machine help' failed ({}): {}",
                    emulator.display(),
                    process::describe_status(Some(out.status)),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        let list = Arc::new(argv::parse_machine_help(&String::from_utf8_lossy(
            &out.stdout,
        )));
        self.machines
            .lock()
            .unwrap()
            .insert(emulator.to_path_buf(), list.clone());
        Ok(list)
    }

    /// Starts a guest; with `incoming`, QEMU waits (`-incoming defer`) for the saved
    /// state read from that descriptor ([`migrate::restore`]) and the guest stays paused.
    async fn do_start(
        &self,
        def: &DomainDef,
        opts: StartOptions,
        incoming: Option<OwnedFd>,
    ) -> VirResult<Started> {
        let t0 = Instant::now();
        let name = def.name();
        argv::validate(def)?;
        argv::preflight(def)?;
        let domain_dir = self.domain_dir(&name);
        let qmp_socket = domain_dir.join("qmp.sock");
        let log = self.log_path(&name);
        if qmp_socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(VirError::internal(
                ERR,
                format!(
                    "monitor socket path '{}' is too long for a unix socket",
                    qmp_socket.display()
                ),
            ));
        }
        let ctx = LaunchContext {
            emulator: self.cfg.emulator.clone(),
            qmp_socket: qmp_socket.clone(),
            domain_dir: domain_dir.clone(),
            incoming: incoming.as_ref().map(|_| "defer".to_string()),
        };
        let cmd = argv::build_command(def, &ctx)?;
        let placed = argv::auto_placed(def)?;
        let machines = self.machine_types(&cmd.program).await?;
        argv::check_machine(def, &machines)?;

        // A leftover directory (daemon crash between start and record) would hold a
        // stale socket that accepts nothing; start from a clean one.
        let _ = std::fs::remove_dir_all(&domain_dir);
        std::fs::create_dir_all(&domain_dir).map_err(|e| {
            VirError::system(
                ERR,
                format!("cannot create directory '{}'", domain_dir.display()),
                &e,
            )
        })?;
        std::fs::create_dir_all(&self.cfg.log_dir).map_err(|e| {
            VirError::system(
                ERR,
                format!("cannot create directory '{}'", self.cfg.log_dir.display()),
                &e,
            )
        })?;

        let t_prepared = t0.elapsed();
        let mut proc = match QemuProcess::spawn(&cmd.program, &cmd.args, &qmp_socket, &log) {
            Ok(p) => p,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&domain_dir);
                return Err(start_error(&name, e));
            }
        };
        let t_spawned = t0.elapsed();
        let (mut t_connected, mut t_negotiated) = (Duration::ZERO, Duration::ZERO);
        // Errors carry whether the monitor was lost (QEMU likely exiting).
        let connected = async {
            let stream = proc
                .connect_monitor(MONITOR_TIMEOUT)
                .await
                .map_err(|e| (start_error(&name, e), false))?;
            t_connected = t0.elapsed();
            let lost = |e: &QmpError| matches!(e, QmpError::Disconnected | QmpError::Io(_));
            let (qmp, mut events) = Qmp::handshake(stream)
                .await
                .map_err(|e| (lost(&e), e))
                .map_err(|(l, e)| (qmp_error("cannot negotiate QMP", e), l))?;
            t_negotiated = t0.elapsed();
            // Where QEMU put the devices it was left to place, for the live definition
            // (and so for a save image's). Not worth failing a start over.
            let mut live = None;
            if !placed.is_empty() {
                match qmp.execute("query-pci", None).await {
                    Ok(reply) => {
                        live = argv::with_pci_addresses(def, &placed, &root_bus_slots(&reply));
                    }
                    Err(e) => {
                        tracing::warn!(domain = %name, "query-pci failed, PCI addresses not recorded: {e}");
                    }
                }
            }
            if let Some(src) = incoming {
                migrate::restore(&qmp, &mut events, src)
                    .await
                    .map_err(|e| (e.to_vir_error(ERR), e.qemu_gone()))?;
            }
            if !opts.paused {
                qmp.execute("cont", None)
                    .await
                    .map_err(|e| (lost(&e), e))
                    .map_err(|(l, e)| (qmp_error("cannot start the vCPUs", e), l))?;
            }
            Ok::<_, (VirError, bool)>((qmp, events, live))
        }
        .await;
        let (qmp, events, live) = match connected {
            Ok(v) => v,
            Err((mut e, lost)) => {
                // QEMU can fail after its monitor is up (a later -chardev or -drive):
                // the monitor then closes. Quote its exit and log as for an early exit.
                if lost && let Ok(Some(st)) = proc.wait_timeout(LOST_MONITOR_EXIT_WAIT).await {
                    e = start_error(
                        &name,
                        ProcessError::ExitedEarly {
                            status: process::describe_status(st),
                            log_tail: proc.log_tail(process::LOG_TAIL_LINES),
                        },
                    );
                }
                let _ = proc.kill();
                let _ = proc.wait().await;
                let _ = std::fs::remove_dir_all(&domain_dir);
                return Err(e);
            }
        };
        tracing::debug!(
            domain = %name,
            pid = proc.pid(),
            prepared_us = t_prepared.as_micros() as u64,
            spawned_us = t_spawned.as_micros() as u64,
            monitor_us = t_connected.as_micros() as u64,
            qmp_us = t_negotiated.as_micros() as u64,
            running_us = t0.elapsed().as_micros() as u64,
            "QEMU guest started"
        );
        let started_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let record = json!({
            "driver": "qemu",
            "pid": proc.pid(),
            "qmp_socket": qmp_socket,
            "log": log,
            "domain_dir": domain_dir,
            "started": started_at,
        });
        let quiet_resumes = u32::from(!opts.paused);
        let mut started = self.attach(
            proc,
            qmp,
            events,
            record,
            domain_dir,
            opts.paused,
            quiet_resumes,
            Vec::new(),
        );
        started.live = live;
        Ok(started)
    }

    async fn do_reattach(&self, record: &Value, def: &DomainDef) -> VirResult<Option<Started>> {
        let name = def.name();
        let path = |k: &str, default: PathBuf| {
            record
                .get(k)
                .and_then(Value::as_str)
                .map(PathBuf::from)
                .unwrap_or(default)
        };
        let domain_dir = path("domain_dir", self.domain_dir(&name));
        let qmp_socket = path("qmp_socket", domain_dir.join("qmp.sock"));
        let log = path("log", self.log_path(&name));
        let pid = record.get("pid").and_then(Value::as_u64).unwrap_or(0) as u32;

        let gone = |why: &str| {
            tracing::info!(domain = %name, pid, "QEMU guest not reattached: {why}");
            let _ = std::fs::remove_dir_all(&domain_dir);
            Ok(None)
        };
        let Some(mut proc) = QemuProcess::adopt(pid, &qmp_socket, &log) else {
            return gone("the process is gone or is not our QEMU");
        };
        let connected = async {
            let stream = proc
                .connect_monitor(REATTACH_MONITOR_TIMEOUT)
                .await
                .map_err(|e| e.to_string())?;
            let (qmp, events) = Qmp::handshake(stream).await.map_err(|e| e.to_string())?;
            let status = qmp
                .execute("query-status", None)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((qmp, events, status))
        }
        .await;
        let (qmp, events, status) = match connected {
            Ok(v) => v,
            Err(why) => {
                // As libvirt does: without the monitor the guest cannot be managed, and
                // leaving it would let it run twice after the next start.
                let _ = proc.kill();
                let _ = proc.wait_timeout(self.cfg.destroy_grace).await;
                return gone(&format!("cannot reconnect to its monitor: {why}"));
            }
        };
        let run_state = status
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let running = status.get("running").and_then(Value::as_bool) == Some(true);
        // A guest that powered off or panicked while no daemon watched: report what
        // happened so the domain actor finishes the job (on_poweroff / on_crash).
        let pending = match run_state.as_str() {
            "shutdown" => vec![GuestEvent::Shutdown { by_guest: true }],
            "guest-panicked" => vec![GuestEvent::Panicked],
            _ => Vec::new(),
        };
        Ok(Some(self.attach(
            proc,
            qmp,
            events,
            record.clone(),
            domain_dir,
            !running,
            0,
            pending,
        )))
    }

    /// Builds the guest object and starts its exit watcher and event pump.
    #[allow(clippy::too_many_arguments)]
    fn attach(
        &self,
        mut proc: QemuProcess,
        qmp: Qmp,
        qmp_events: mpsc::UnboundedReceiver<QmpEvent>,
        record: Value,
        domain_dir: PathBuf,
        paused: bool,
        quiet_resumes: u32,
        pending: Vec<GuestEvent>,
    ) -> Started {
        let pid = proc.pid();
        let qmp_socket = proc.qmp_socket().to_path_buf();
        let (exit_tx, exit_rx) = watch::channel(None);
        let closed = qmp.closed_owned();
        let watcher = tokio::spawn(async move {
            if !proc.is_child() {
                // Not our child: its end shows first as the QMP stream's end.
                closed.await;
            }
            let st = proc.wait().await.ok().flatten();
            exit_tx.send_replace(Some(st));
        });

        let flags = Arc::new(Flags {
            quiet_resumes: AtomicU32::new(quiet_resumes),
            ..Flags::default()
        });
        for ev in &pending {
            match ev {
                GuestEvent::Shutdown { .. } => flags.shutdown_seen.store(true, Ordering::SeqCst),
                GuestEvent::Panicked => flags.panicked.store(true, Ordering::SeqCst),
                _ => {}
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        for ev in pending {
            let _ = tx.send(ev);
        }
        let pump = tokio::spawn(pump(PumpCtx {
            qmp: qmp.clone(),
            events: qmp_events,
            out: tx,
            flags: flags.clone(),
            exit: exit_rx.clone(),
            pid,
            qmp_socket: qmp_socket.clone(),
            domain_dir: domain_dir.clone(),
            grace: self.cfg.destroy_grace,
        }));
        Started {
            guest: Box::new(QemuGuest {
                qmp,
                flags,
                exit: exit_rx,
                pid,
                qmp_socket,
                domain_dir,
                record,
                grace: self.cfg.destroy_grace,
                tasks: Tasks(vec![watcher, pump]),
            }),
            events: rx,
            paused,
            live: None,
        }
    }
}

/// A running QEMU's monitor, for questions that change nothing.
struct MonitorProbe(Qmp);

impl GuestProbe for MonitorProbe {
    fn disk_io(&self) -> BoxFuture<'static, VirResult<Vec<DiskIo>>> {
        let qmp = self.0.clone();
        Box::pin(async move {
            let reply = qmp
                .execute("query-blockstats", None)
                .await
                .map_err(|e| qmp_error("cannot read the block statistics", e))?;
            Ok(disk_io_of(&reply))
        })
    }
}

/// `query-blockstats` → one [`DiskIo`] per device node with a node name.
fn disk_io_of(reply: &Value) -> Vec<DiskIo> {
    reply
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let node = e.get("node-name").and_then(Value::as_str)?;
            let s = e.get("stats")?;
            let n = |k: &str| s.get(k).and_then(Value::as_u64).unwrap_or(0);
            Some(DiskIo {
                node: node.to_string(),
                rd_reqs: n("rd_operations"),
                rd_bytes: n("rd_bytes"),
                rd_ns: n("rd_total_time_ns"),
                wr_reqs: n("wr_operations"),
                wr_bytes: n("wr_bytes"),
                wr_ns: n("wr_total_time_ns"),
                fl_reqs: n("flush_operations"),
                fl_ns: n("flush_total_time_ns"),
                wr_highest_offset: n("wr_highest_offset"),
            })
        })
        .collect()
}

/// The root-bus slot and function of every device `query-pci` lists with an id.
/// Devices behind bridges are left out: what QEMU places by itself goes on the root bus.
fn root_bus_slots(reply: &Value) -> HashMap<String, (u64, u64)> {
    let mut out = HashMap::new();
    for bus in reply.as_array().into_iter().flatten() {
        if bus.get("bus").and_then(Value::as_u64) != Some(0) {
            continue;
        }
        for d in bus
            .get("devices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let num = |k: &str| d.get(k).and_then(Value::as_u64);
            if let (Some(id), Some(0), Some(slot), Some(function)) = (
                d.get("qdev_id").and_then(Value::as_str),
                num("bus"),
                num("slot"),
                num("function"),
            ) && !id.is_empty()
            {
                out.insert(id.to_string(), (slot, function));
            }
        }
    }
    out
}

fn start_error(name: &str, e: ProcessError) -> VirError {
    match e {
        ProcessError::ExitedEarly { status, log_tail } => VirError::internal(
            ERR,
            format!("QEMU unexpectedly closed the monitor (vm='{name}', {status}): {log_tail}"),
        ),
        ProcessError::Spawn { program, source } => VirError::system(
            ERR,
            format!("Cannot execute QEMU binary {}", program.display()),
            &source,
        ),
        ProcessError::Log { path, source } => VirError::system(
            ERR,
            format!("cannot open log file '{}'", path.display()),
            &source,
        ),
        other => VirError::internal(ERR, other.to_string()),
    }
}

fn qmp_error(what: &str, e: QmpError) -> VirError {
    match e {
        QmpError::Disconnected => VirError::operation_failed(ERR, format!("{what}: QEMU is gone")),
        QmpError::Command { desc, .. } => {
            VirError::operation_failed(ERR, format!("{what}: {desc}"))
        }
        other => VirError::internal(ERR, format!("{what}: {other}")),
    }
}

impl Hypervisor for QemuHypervisor {
    fn type_name(&self) -> &'static str {
        "QEMU"
    }

    fn error_domain(&self) -> ErrorDomain {
        ERR
    }

    fn flavour(&self) -> Flavour {
        Flavour::Qemu
    }

    fn validate(&self, def: &DomainDef) -> VirResult<()> {
        argv::validate(def)
    }

    fn start<'a>(
        &'a self,
        def: &'a DomainDef,
        opts: StartOptions,
    ) -> BoxFuture<'a, VirResult<Started>> {
        Box::pin(self.do_start(def, opts, None))
    }

    fn reattach<'a>(
        &'a self,
        record: &'a Value,
        def: &'a DomainDef,
    ) -> BoxFuture<'a, VirResult<Option<Started>>> {
        Box::pin(self.do_reattach(record, def))
    }

    fn restore<'a>(
        &'a self,
        def: &'a DomainDef,
        source: OwnedFd,
        opts: StartOptions,
    ) -> BoxFuture<'a, VirResult<Started>> {
        let opts = StartOptions {
            paused: true,
            ..opts
        };
        Box::pin(self.do_start(def, opts, Some(source)))
    }
}

/// What the guest object and its pump share.
#[derive(Default)]
struct Flags {
    /// Our destroy is under way: the exit is not a crash and nothing is reported.
    destroying: AtomicBool,
    /// A reboot was requested: the next SHUTDOWN becomes a reset.
    fake_reboot: AtomicBool,
    /// QEMU reported SHUTDOWN (its later exit is not a crash).
    shutdown_seen: AtomicBool,
    /// The guest panicked and is paused in `guest-panicked`.
    panicked: AtomicBool,
    /// RESUME events still to come from our own `cont`s that are not news to the
    /// domain actor (the one ending a start, the one ending a fake reboot).
    quiet_resumes: AtomicU32,
    /// Migration status and the save-in-progress flag ([`migrate`]).
    migration: MigrationState,
}

/// Aborts the tasks when the guest object goes away (dropping a guest without
/// destroying it, as a daemon shutting down does, leaves QEMU running and closes QMP).
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

struct PumpCtx {
    qmp: Qmp,
    events: mpsc::UnboundedReceiver<QmpEvent>,
    out: mpsc::UnboundedSender<GuestEvent>,
    flags: Arc<Flags>,
    exit: watch::Receiver<Option<Option<ExitStatus>>>,
    pid: u32,
    qmp_socket: PathBuf,
    domain_dir: PathBuf,
    grace: Duration,
}

async fn pump(mut c: PumpCtx) {
    let f = c.flags.clone();
    while let Some(ev) = c.events.recv().await {
        let destroying = f.destroying.load(Ordering::SeqCst);
        let out = match ev.name.as_str() {
            "SHUTDOWN" => {
                f.shutdown_seen.store(true, Ordering::SeqCst);
                let reason = ev.data.get("reason").and_then(Value::as_str).unwrap_or("");
                let by_guest = ev
                    .data
                    .get("guest")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                if destroying || reason == "guest-panic" {
                    None
                } else if f.fake_reboot.swap(false, Ordering::SeqCst) {
                    // libvirt's fake reboot: the guest shut down, QEMU (-no-shutdown)
                    // waits paused; reset and resume it. The RESET event reports it.
                    let qmp = c.qmp.clone();
                    let flags = f.clone();
                    tokio::spawn(async move {
                        let r = async {
                            qmp.execute("system_reset", None).await?;
                            flags.quiet_resumes.fetch_add(1, Ordering::SeqCst);
                            let r = qmp.execute("cont", None).await;
                            if r.is_err() {
                                flags.quiet_resumes.fetch_sub(1, Ordering::SeqCst);
                            }
                            r
                        }
                        .await;
                        match r {
                            Ok(_) => flags.shutdown_seen.store(false, Ordering::SeqCst),
                            Err(e) => tracing::warn!(error = %e, "fake reboot failed"),
                        }
                    });
                    None
                } else if reason == "guest-reset" {
                    // -no-reboot (on_reboot='destroy'): a guest reset arrives as SHUTDOWN.
                    Some(GuestEvent::Reset)
                } else {
                    Some(GuestEvent::Shutdown { by_guest })
                }
            }
            "RESET" => (!destroying).then_some(GuestEvent::Reset),
            "STOP" => {
                let ours = f.migration.take_quiet_stop();
                let quiet = ours
                    || destroying
                    || f.shutdown_seen.load(Ordering::SeqCst)
                    || f.panicked.load(Ordering::SeqCst)
                    || f.migration.saving();
                (!quiet).then_some(GuestEvent::Stopped)
            }
            "RESUME" => {
                f.panicked.store(false, Ordering::SeqCst);
                f.shutdown_seen.store(false, Ordering::SeqCst);
                let ours = f
                    .quiet_resumes
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                (!destroying && !ours && !f.migration.saving()).then_some(GuestEvent::Resumed)
            }
            "GUEST_PANICKED" => {
                f.panicked.store(true, Ordering::SeqCst);
                (!destroying).then_some(GuestEvent::Panicked)
            }
            "MIGRATION" => {
                f.migration.on_event(&ev.data);
                None
            }
            "RTC_CHANGE" => ev
                .data
                .get("offset")
                .and_then(Value::as_i64)
                .map(|offset| GuestEvent::RtcChange { offset }),
            _ => None,
        };
        if let Some(e) = out {
            let _ = c.out.send(e);
        }
    }
    // The QMP stream ended: QEMU is exiting or gone.
    if f.destroying.load(Ordering::SeqCst) {
        return;
    }
    let exited = tokio::time::timeout(c.grace, c.exit.wait_for(|s| s.is_some()))
        .await
        .is_ok();
    if !exited {
        // QEMU closed its monitor yet lives on: unmanageable, so stop it.
        tracing::warn!(
            pid = c.pid,
            "QEMU closed its monitor but did not exit; killing it"
        );
        let _ = process::signal_verified(c.pid, &c.qmp_socket, Signal::SIGKILL);
        let _ = c.exit.wait_for(|s| s.is_some()).await;
    }
    if f.destroying.load(Ordering::SeqCst) {
        return;
    }
    let _ = std::fs::remove_dir_all(&c.domain_dir);
    let crashed = !f.shutdown_seen.load(Ordering::SeqCst);
    let _ = c.out.send(GuestEvent::Exited { crashed });
}

/// A running QEMU guest.
struct QemuGuest {
    qmp: Qmp,
    flags: Arc<Flags>,
    exit: watch::Receiver<Option<Option<ExitStatus>>>,
    pid: u32,
    qmp_socket: PathBuf,
    domain_dir: PathBuf,
    record: Value,
    grace: Duration,
    tasks: Tasks,
}

impl QemuGuest {
    async fn run(&self, what: &str, cmd: &str) -> VirResult<Value> {
        self.qmp
            .execute(cmd, None)
            .await
            .map_err(|e| qmp_error(what, e))
    }

    fn exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    fn signal(&self, sig: Signal) -> VirResult<()> {
        if self.exited() {
            return Ok(());
        }
        process::signal_verified(self.pid, &self.qmp_socket, sig)
            .map(|_| ())
            .map_err(|e| VirError::operation_failed(ERR, e.to_string()))
    }

    async fn wait_exit(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.exit.wait_for(|s| s.is_some()))
            .await
            .is_ok()
    }

    async fn do_destroy(&mut self, graceful: bool) -> VirResult<()> {
        let t0 = Instant::now();
        self.flags.destroying.store(true, Ordering::SeqCst);
        self.signal(Signal::SIGTERM)?;
        let timeout = if graceful {
            GRACEFUL_TIMEOUT
        } else {
            self.grace
        };
        if !self.wait_exit(timeout).await {
            if graceful {
                self.flags.destroying.store(false, Ordering::SeqCst);
                return Err(VirError::with(
                    ErrorCode::OperationFailed,
                    ERR,
                    format!("failed to terminate process {} with SIGTERM", self.pid),
                ));
            }
            self.signal(Signal::SIGKILL)?;
            if !self.wait_exit(GRACEFUL_TIMEOUT).await {
                return Err(VirError::with(
                    ErrorCode::OperationFailed,
                    ERR,
                    format!("failed to terminate process {} with SIGKILL", self.pid),
                ));
            }
        }
        for t in &self.tasks.0 {
            t.abort();
        }
        let _ = std::fs::remove_dir_all(&self.domain_dir);
        tracing::debug!(
            pid = self.pid,
            exited_us = t0.elapsed().as_micros() as u64,
            "QEMU guest destroyed"
        );
        Ok(())
    }
}

impl Guest for QemuGuest {
    fn pause(&mut self) -> BoxFuture<'_, VirResult<()>> {
        Box::pin(async move {
            self.run("cannot pause the domain", "stop")
                .await
                .map(|_| ())
        })
    }

    fn resume(&mut self) -> BoxFuture<'_, VirResult<()>> {
        Box::pin(async move {
            self.run("cannot resume the domain", "cont")
                .await
                .map(|_| ())
        })
    }

    fn shutdown(&mut self) -> BoxFuture<'_, VirResult<ShutdownOutcome>> {
        Box::pin(async move {
            self.flags.fake_reboot.store(false, Ordering::SeqCst);
            self.run("cannot shut the domain down", "system_powerdown")
                .await
                .map(|_| ShutdownOutcome::Requested)
        })
    }

    fn reboot(&mut self) -> BoxFuture<'_, VirResult<bool>> {
        Box::pin(async move {
            self.flags.fake_reboot.store(true, Ordering::SeqCst);
            match self
                .run("cannot reboot the domain", "system_powerdown")
                .await
            {
                Ok(_) => Ok(false),
                Err(e) => {
                    self.flags.fake_reboot.store(false, Ordering::SeqCst);
                    Err(e)
                }
            }
        })
    }

    fn reset(&mut self) -> BoxFuture<'_, VirResult<()>> {
        Box::pin(async move {
            self.run("cannot reset the domain", "system_reset").await?;
            // A guest paused by its panic (-action panic=pause) runs again after a
            // reset only when resumed (on_crash='restart').
            if self.flags.panicked.swap(false, Ordering::SeqCst) {
                self.run("cannot resume the domain after reset", "cont")
                    .await?;
            }
            Ok(())
        })
    }

    fn destroy(&mut self, graceful: bool) -> BoxFuture<'_, VirResult<()>> {
        Box::pin(self.do_destroy(graceful))
    }

    fn status_record(&self) -> Value {
        self.record.clone()
    }

    fn cpu_time_ns(&self) -> Option<u64> {
        if self.exited() {
            return None;
        }
        process::cpu_time_ns(self.pid)
    }

    fn usage(&self) -> Option<GuestUsage> {
        if self.exited() {
            return None;
        }
        process::usage(self.pid)
    }

    fn probe(&self) -> Option<Arc<dyn GuestProbe>> {
        Some(Arc::new(MonitorProbe(self.qmp.clone())))
    }

    fn save_to_fd(&mut self, sink: OwnedFd, ctl: SaveControl) -> BoxFuture<'_, VirResult<()>> {
        Box::pin(async move {
            migrate::save(&self.qmp, &self.flags.migration, sink, &ctl)
                .await
                .map_err(|e| e.to_vir_error(ERR))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    /// The event mapping, against a scripted monitor and a stand-in process that
    /// ignores its closed monitor (so the pump must kill it before reporting the exit).
    #[tokio::test]
    async fn pump_maps_and_filters_events() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let domain_dir = dir.path().join("dom");
        std::fs::create_dir_all(&domain_dir).unwrap();
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let script = [
            json!({"event": "RTC_CHANGE", "data": {"offset": 42}}),
            json!({"event": "STOP"}),
            json!({"event": "RESUME"}),
            json!({"event": "POWERDOWN"}),
            json!({"event": "GUEST_PANICKED", "data": {"action": "pause"}}),
            json!({"event": "STOP"}),
            json!({"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-panic"}}),
            json!({"event": "RESUME"}),
            json!({"event": "RESET", "data": {"guest": true, "reason": "guest-reset"}}),
            json!({"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-reset"}}),
            json!({"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-signal"}}),
            json!({"event": "STOP"}),
        ];
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut r = BufReader::new(r);
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                .await
                .unwrap();
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap();
            let cmd: Value = serde_json::from_str(&line).unwrap();
            let reply = json!({"return": {}, "id": cmd["id"]});
            w.write_all(format!("{reply}\n").as_bytes()).await.unwrap();
            for mut ev in script {
                ev["timestamp"] = json!({"seconds": 1, "microseconds": 2});
                w.write_all(format!("{ev}\n").as_bytes()).await.unwrap();
            }
            // The monitor closes; the stand-in process lives on.
        });
        let proc = QemuProcess::spawn(
            Path::new("python3"),
            &[
                "-c".into(),
                "import time; time.sleep(30)".into(),
                format!("path={}", sock.display()),
            ],
            &sock,
            &dir.path().join("log"),
        )
        .unwrap();
        let pid = proc.pid();
        let stream = tokio::net::UnixStream::connect(&sock).await.unwrap();
        let (qmp, events) = Qmp::handshake(stream).await.unwrap();
        let mut cfg = QemuConfig::new(dir.path().join("run"), dir.path().join("logs"));
        cfg.destroy_grace = Duration::from_millis(200);
        let hv = QemuHypervisor::new(cfg);
        // Wait until the stand-in has exec'd, so its command line names the socket.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !process::verify_pid(pid, &sock) {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut s = hv.attach(
            proc,
            qmp,
            events,
            json!({}),
            domain_dir.clone(),
            false,
            0,
            Vec::new(),
        );
        let mut got = Vec::new();
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(5), s.events.recv())
                .await
                .unwrap()
                .unwrap();
            let last = matches!(ev, GuestEvent::Exited { .. });
            got.push(ev);
            if last {
                break;
            }
        }
        assert_eq!(
            got,
            vec![
                GuestEvent::RtcChange { offset: 42 },
                GuestEvent::Stopped,
                GuestEvent::Resumed,
                GuestEvent::Panicked,
                GuestEvent::Resumed,
                GuestEvent::Reset,
                GuestEvent::Reset,
                GuestEvent::Shutdown { by_guest: false },
                GuestEvent::Exited { crashed: false },
            ]
        );
        assert!(process::pid_gone(pid), "the stand-in was not killed");
        assert!(!domain_dir.exists());
        server.await.unwrap();
    }
}
