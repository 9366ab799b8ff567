//! The host: the event hub, the shared `test:///default` driver instance, the shared
//! `qemu:///system` instance when a QEMU hypervisor is configured, and private
//! instances opened per connection.
//!
//! The host's persistent state lives under the configured state directory:
//! `STATE/<driver>/…` for an instance's definitions and `STATE/run/<driver>/…` for its
//! runtime status records (see [`vireo_drivers::store`]), `<driver>` being `test` or
//! `qemu`. A host started again on the same directory finds every persistent object and
//! reattaches to every guest that still runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ractor::Actor;
use tokio::sync::oneshot;
use vireo_bus::{Filter, Hub, HubConfig, Subscription};
use vireo_drivers::hypervisor::Hypervisor;
use vireo_drivers::store::Store;
use vireo_drivers::test::TestHypervisor;
use vireo_drivers::testdata::{NodeInfo, TestConfig, TestUriTarget, parse_test_uri};
use vireo_messages::{ErrorCode, ErrorDomain, VirError, VirResult};

use crate::driver::{DriverActor, DriverSpec};
use crate::handles::{Connection, DriverHandle};

/// How a host is set up.
#[derive(Clone)]
pub struct HostConfig {
    /// Root of persistent (`STATE/<driver>`) and runtime (`STATE/run/<driver>`) state.
    pub state_dir: PathBuf,
    /// How long a job waits for a busy domain (libvirt: 30 s).
    pub job_wait: Duration,
    /// Event ring and queue sizes.
    pub hub: HubConfig,
    /// Replaces the test hypervisor behind `test:///default` (tests use the fake).
    pub test_hypervisor: Option<Arc<dyn Hypervisor>>,
    /// Start autostart objects when the host starts.
    pub autostart: bool,
    /// The hypervisor behind `qemu:///system` (and `qemu:///session`, which opens the
    /// same instance); `None` means the qemu driver is not available.
    pub qemu: Option<Arc<dyn Hypervisor>>,
    /// Faults to inject into the next save of the shared instances (tests only).
    pub save_faults: crate::domain::SaveFaults,
}

impl HostConfig {
    /// Defaults with the given state directory.
    pub fn new(state_dir: impl Into<PathBuf>) -> HostConfig {
        HostConfig {
            state_dir: state_dir.into(),
            job_wait: Duration::from_secs(30),
            hub: HubConfig::default(),
            test_hypervisor: None,
            autostart: true,
            qemu: None,
            save_faults: Default::default(),
        }
    }
}

/// Why a host could not start.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The state directory could not be created or used.
    #[error("the state directory {path} cannot be used: {source}")]
    StateDir {
        /// Which directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A driver instance failed to start.
    #[error("the {uri} driver failed to start: {reason}")]
    Driver {
        /// Which driver.
        uri: String,
        /// Why.
        reason: String,
    },
}

struct HostInner {
    cfg: HostConfig,
    hub: Hub,
    default_test: Arc<DriverHandle>,
    qemu: Option<Arc<DriverHandle>>,
    next_origin: AtomicU32,
}

/// A running actor system. Cheap to clone.
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostInner>,
}

impl Host {
    /// Starts the host on the current tokio runtime: creates the state directory, loads
    /// (or seeds) the shared `test:///default` instance and reattaches to its guests.
    pub async fn start(cfg: HostConfig) -> Result<Host, HostError> {
        std::fs::create_dir_all(&cfg.state_dir).map_err(|source| HostError::StateDir {
            path: cfg.state_dir.clone(),
            source,
        })?;
        let hub = Hub::with_config(cfg.hub);
        let hv: Arc<dyn Hypervisor> = cfg
            .test_hypervisor
            .clone()
            .unwrap_or_else(|| Arc::new(TestHypervisor));
        let store = Store::new(cfg.state_dir.join("test"), cfg.state_dir.join("run/test"));
        let spec = DriverSpec {
            origin: 0,
            uri: "test:///default".into(),
            hv,
            store: Some(store),
            seed: TestConfig::default_config(),
            hub: hub.clone(),
            job_wait: cfg.job_wait,
            autostart: cfg.autostart,
            save_faults: cfg.save_faults.clone(),
        };
        let default_test = start_driver(spec, false)
            .await
            .map_err(|e| HostError::Driver {
                uri: "test:///default".into(),
                reason: e.message,
            })?;
        let qemu = match &cfg.qemu {
            Some(hv) => {
                let mut seed = TestConfig::empty();
                seed.node = NodeInfo::from_host();
                let spec = DriverSpec {
                    origin: QEMU_ORIGIN,
                    uri: "qemu:///system".into(),
                    hv: hv.clone(),
                    store: Some(Store::new(
                        cfg.state_dir.join("qemu"),
                        cfg.state_dir.join("run/qemu"),
                    )),
                    seed,
                    hub: hub.clone(),
                    job_wait: cfg.job_wait,
                    autostart: cfg.autostart,
                    save_faults: cfg.save_faults.clone(),
                };
                let h = start_driver(spec, false)
                    .await
                    .map_err(|e| HostError::Driver {
                        uri: "qemu:///system".into(),
                        reason: e.message,
                    })?;
                Some(Arc::new(h))
            }
            None => None,
        };
        Ok(Host {
            inner: Arc::new(HostInner {
                cfg,
                hub,
                default_test: Arc::new(default_test),
                qemu,
                next_origin: AtomicU32::new(QEMU_ORIGIN + 1),
            }),
        })
    }

    /// Opens a connection. `test:///default` shares the host's instance (and its
    /// events); `test:///ABS/PATH.xml` gets a private in-memory instance that lives as
    /// long as the returned connection (and its clones).
    pub async fn open(&self, uri: &str) -> VirResult<Connection> {
        let scheme = uri.split(':').next().unwrap_or("");
        match scheme {
            "test" => match parse_test_uri(uri)? {
                TestUriTarget::Default => Ok(Connection::new(self.inner.default_test.clone())),
                TestUriTarget::File(path) => {
                    let seed = TestConfig::load(&path)?;
                    let origin = self.inner.next_origin.fetch_add(1, Ordering::Relaxed);
                    let spec = DriverSpec {
                        origin,
                        uri: uri.to_string(),
                        hv: Arc::new(TestHypervisor),
                        store: None,
                        seed,
                        hub: self.inner.hub.clone(),
                        job_wait: self.inner.cfg.job_wait,
                        autostart: false,
                        save_faults: Default::default(),
                    };
                    let h = start_driver(spec, true).await?;
                    Ok(Connection::new(Arc::new(h)))
                }
            },
            "qemu" => match (qemu_instance_uri(uri), &self.inner.qemu) {
                (true, Some(h)) => Ok(Connection::new(h.clone())),
                _ => Err(VirError::with(
                    ErrorCode::NoConnect,
                    ErrorDomain::None,
                    uri.to_string(),
                )),
            },
            _ => Err(VirError::with(
                ErrorCode::NoConnect,
                ErrorDomain::None,
                uri.to_string(),
            )),
        }
    }

    /// The host's event hub.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// Subscribes to events (async receiver).
    pub fn subscribe(&self, filter: Filter) -> Subscription {
        self.inner.hub.subscribe(filter)
    }

    /// The configuration the host runs with.
    pub fn config(&self) -> &HostConfig {
        &self.inner.cfg
    }

    /// Stops every actor. Guests keep running (their status records stay on disk), so a
    /// host started again on the same state directory reattaches to them.
    pub async fn shutdown(&self) {
        self.inner.default_test.retire().await;
        if let Some(q) = &self.inner.qemu {
            q.retire().await;
        }
    }
}

/// Event origin of the shared `qemu:///system` instance (`test:///default` is 0,
/// private instances count up from here).
const QEMU_ORIGIN: u32 = 1;

/// Whether `uri` names the host's qemu instance: `qemu:///system` or `qemu:///session`
/// (one vireod runs one qemu instance; see docs/differences.md).
fn qemu_instance_uri(uri: &str) -> bool {
    let path = uri.strip_prefix("qemu://").unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    matches!(
        path,
        "/system" | "/session" | "localhost/system" | "localhost/session"
    )
}

async fn start_driver(spec: DriverSpec, private: bool) -> VirResult<DriverHandle> {
    let (tx, rx) = oneshot::channel();
    let uri = spec.uri.clone();
    let (actor, _) = Actor::spawn(None, DriverActor, (spec, tx))
        .await
        .map_err(|e| {
            VirError::internal(
                ErrorDomain::Test,
                format!("cannot start driver for {uri}: {e}"),
            )
        })?;
    let ctx = rx.await.map_err(|_| {
        VirError::internal(
            ErrorDomain::Test,
            format!("driver for {uri} failed to start"),
        )
    })?;
    Ok(DriverHandle::new(actor, ctx, private))
}
