//! The daemon process: it takes the state directory's lock (`DIR/run/vireod.lock`,
//! flock, so a second vireod on the same directory is refused), starts the [`Host`],
//! listens on `DIR/run/libvirt-sock` (mode 0600, read-write) and
//! `DIR/run/libvirt-sock-ro` (mode 0666, read-only) and optionally on TCP, and runs a
//! session per accepted client. On SIGTERM/SIGINT it stops accepting, lets every
//! session answer the calls it has already read, removes the sockets and shuts the
//! host down.
//!
//! `max_clients` works as in libvirtd: once that many clients are connected the daemon
//! stops accepting (new connections wait in the kernel's listen backlog, a warning is
//! logged) and accepts again when a client leaves.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use vireo_actors::{Host, HostConfig};
use vireo_drivers::hypervisor::Hypervisor;
use vireo_drivers::qemu::hypervisor::{QemuConfig, QemuHypervisor};

use crate::config::{Config, QemuMode};
use crate::session::{self, Listener};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another vireod holds the state directory.
    #[error("another vireod is already running on {0} (lock {1} is held)")]
    Locked(PathBuf, PathBuf),
    /// A file system or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What failed.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// The host failed to start.
    #[error(transparent)]
    Host(#[from] vireo_actors::HostError),
    /// The qemu driver was required (`--qemu on`) but its emulator is missing.
    #[error("the qemu driver is required but the emulator {0} was not found")]
    Qemu(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

/// A client connection of any transport.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// The paths a daemon uses under its state directory.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `DIR/run`.
    pub run: PathBuf,
    /// `DIR/run/libvirt-sock`.
    pub sock: PathBuf,
    /// `DIR/run/libvirt-sock-ro`.
    pub sock_ro: PathBuf,
    /// `DIR/run/vireod.lock`.
    pub lock: PathBuf,
}

impl Paths {
    /// The paths under `state_dir`.
    pub fn new(state_dir: &Path) -> Paths {
        let run = state_dir.join("run");
        Paths {
            sock: run.join("libvirt-sock"),
            sock_ro: run.join("libvirt-sock-ro"),
            lock: run.join("vireod.lock"),
            run,
        }
    }
}

/// Takes the state directory's lock; held as long as the returned value lives.
pub fn lock(state_dir: &Path, paths: &Paths) -> Result<Flock<File>, ServerError> {
    std::fs::create_dir_all(&paths.run)
        .map_err(io(format!("cannot create {}", paths.run.display())))?;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&paths.lock)
        .map_err(io(format!("cannot open {}", paths.lock.display())))?;
    let mut locked = Flock::lock(f, FlockArg::LockExclusiveNonblock)
        .map_err(|_| ServerError::Locked(state_dir.to_path_buf(), paths.lock.clone()))?;
    use std::io::{Seek, Write};
    let _ = locked.set_len(0);
    let _ = locked.seek(std::io::SeekFrom::Start(0));
    let _ = writeln!(locked, "{}", std::process::id());
    Ok(locked)
}

fn bind_unix(path: &Path, mode: u32) -> Result<UnixListener, ServerError> {
    // We hold the lock, so a socket file left here is stale.
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).map_err(io(format!("cannot listen on {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io(format!("cannot set the mode of {}", path.display())))?;
    Ok(l)
}

/// The qemu driver's hypervisor as the configuration asks: guests' runtime directories
/// under `STATE/run/qemu/guests`, their logs under `STATE/qemu/log`.
fn qemu_hypervisor(cfg: &Config) -> Result<Option<Arc<dyn Hypervisor>>, ServerError> {
    if cfg.qemu == QemuMode::Off {
        return Ok(None);
    }
    let mut qc = QemuConfig::new(
        cfg.state_dir.join("run/qemu/guests"),
        cfg.state_dir.join("qemu/log"),
    );
    if let Some(e) = &cfg.qemu_emulator {
        qc.emulator = e.clone();
    }
    let found = which(&qc.emulator);
    match (found, cfg.qemu) {
        (Some(path), _) => {
            qc.emulator = path;
            Ok(Some(Arc::new(QemuHypervisor::new(qc))))
        }
        (None, QemuMode::On) => Err(ServerError::Qemu(qc.emulator.display().to_string())),
        (None, _) => {
            info!("qemu driver disabled: {} not found", qc.emulator.display());
            Ok(None)
        }
    }
}

/// Resolves a program name through PATH (an absolute or relative path is checked as is).
fn which(p: &Path) -> Option<PathBuf> {
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_path_buf());
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(p))
        .find(|c| c.is_file())
}

/// Runs the daemon until `shutdown` is cancelled (the binary cancels it on
/// SIGTERM/SIGINT). `ready` is called once the sockets listen.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Result<(), ServerError> {
    let paths = Paths::new(&cfg.state_dir);
    let _lock = lock(&cfg.state_dir, &paths)?;
    let mut host_cfg = HostConfig::new(&cfg.state_dir);
    host_cfg.qemu = qemu_hypervisor(&cfg)?;
    let host = Host::start(host_cfg).await?;
    let rw = bind_unix(&paths.sock, 0o600)?;
    let ro = bind_unix(&paths.sock_ro, 0o666)?;
    let tcp = match cfg.listen_tcp {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(io(format!("cannot listen on {addr}")))?,
        ),
        None => None,
    };
    info!(
        "vireod listening on {} and {}{}",
        paths.sock.display(),
        paths.sock_ro.display(),
        cfg.listen_tcp
            .map(|a| format!(" and tcp {a}"))
            .unwrap_or_default()
    );

    let sessions = TaskTracker::new();
    let next_id = AtomicU64::new(1);
    let limits = cfg.limits;
    let clients = Arc::new(Semaphore::new(limits.max_clients));
    loop {
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        // A client slot first: at max_clients, stop accepting until a client leaves.
        let slot = match clients.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                warn!(
                    "max_clients ({}) reached: not accepting new connections until a client disconnects",
                    limits.max_clients
                );
                let p = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    p = clients.clone().acquire_owned() => p,
                };
                match p {
                    Ok(p) => {
                        info!("a client left: accepting new connections again");
                        p
                    }
                    Err(_) => break,
                }
            }
        };
        let spawn = |s, listener| {
            let fut = session::run(s, host.clone(), listener, limits, id, shutdown.clone());
            sessions.spawn(async move {
                fut.await;
                drop(slot);
            });
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = rw.accept() => match r {
                Ok((s, _)) => spawn(Box::new(s) as Box<dyn Stream>, Listener { read_only: false, secure: true }),
                Err(e) => warn!("accept failed: {e}"),
            },
            r = ro.accept() => match r {
                Ok((s, _)) => spawn(Box::new(s), Listener { read_only: true, secure: true }),
                Err(e) => warn!("accept failed: {e}"),
            },
            r = async { match &tcp { Some(t) => t.accept().await, None => std::future::pending().await } } => match r {
                Ok((s, peer)) => {
                    info!(%peer, "tcp client");
                    spawn(Box::new(s), Listener { read_only: false, secure: false });
                }
                Err(e) => warn!("accept failed: {e}"),
            },
        }
    }
    info!("shutting down: no new clients, answering calls in flight");
    drop(rw);
    drop(ro);
    drop(tcp);
    let _ = std::fs::remove_file(&paths.sock);
    let _ = std::fs::remove_file(&paths.sock_ro);
    sessions.close();
    if tokio::time::timeout(Duration::from_secs(30), sessions.wait())
        .await
        .is_err()
    {
        warn!("some sessions did not finish within 30 s");
    }
    host.shutdown().await;
    let _ = std::fs::remove_file(&paths.lock);
    info!("vireod stopped");
    Ok(())
}
