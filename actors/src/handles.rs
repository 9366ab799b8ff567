//! Typed handles: what an embedding app (and the daemon's procedure dispatch) calls.
//!
//! A [`Connection`] is one open hypervisor instance; [`Domain`], [`Network`] and
//! [`Pool`] are handles to objects in it. Lookups and listings are answered from the
//! instance's directories without messaging any actor; operations are messages to the
//! owning actor, awaited with their reply. A handle whose object has gone answers
//! libvirt's "not found" error, never a panic.
//!
//! A [`Domain`] handle holds no actor: each call finds the domain's current owner in the
//! directory. Queries on a hibernated domain are answered from the directory; jobs on
//! one go to the driver actor, which wakes it. A message refused by an actor that is
//! going back to hibernation comes back to the handle, which routes it again.

use std::sync::Arc;

use ractor::ActorRef;
use tokio::sync::oneshot;
use vireo_drivers::hypervisor::DiskIo;
use vireo_drivers::testdata::TestConfig;
use vireo_messages::{DomainId, ErrorCode, ErrorDomain, Uuid, VirError, VirResult};
use vireo_xml::{DomainDef, NetworkDef, PoolDef};

use crate::directory::{DomainEntry, Owner, Route};
use crate::domain::{
    DomainInfo, DomainMsg, JobRequest, XML_INACTIVE, XML_SECURE, dormant_info, xml_desc,
};
use crate::driver::{Defined, DriverCtx, DriverMsg, no_domain};
use crate::helper::HelperTask;
use crate::iface::Interfaces;
use crate::network::{DriverNetMsg, NetMsg, NetworkEntry, no_network};
use crate::nodedev::NodeDevices;
use crate::pool::{DriverPoolMsg, PoolEntry, PoolInfo, PoolMsg, VolKey, VolumeInfo, no_pool};
use crate::secret::Secrets;

/// A driver instance as connections hold it. A private instance is retired when the
/// last connection holding it goes away.
pub struct DriverHandle {
    actor: ActorRef<DriverMsg>,
    ctx: Arc<DriverCtx>,
    private: bool,
    node_devices: NodeDevices,
    interfaces: Interfaces,
    secrets: Secrets,
}

impl DriverHandle {
    pub(crate) fn new(actor: ActorRef<DriverMsg>, ctx: Arc<DriverCtx>, private: bool) -> Self {
        DriverHandle {
            actor,
            node_devices: NodeDevices::new(ctx.clone()),
            interfaces: Interfaces::new(ctx.clone()),
            secrets: Secrets::new(ctx.clone()),
            ctx,
            private,
        }
    }

    pub(crate) async fn retire(&self) {
        let (tx, rx) = oneshot::channel();
        if self.actor.cast(DriverMsg::Retire(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

impl Drop for DriverHandle {
    fn drop(&mut self) {
        if self.private {
            let (tx, _rx) = oneshot::channel();
            let _ = self.actor.cast(DriverMsg::Retire(tx));
        }
    }
}

fn driver_gone(ctx: &DriverCtx) -> VirError {
    VirError::with(
        ErrorCode::InternalError,
        ctx.err_domain(),
        "the driver instance has stopped",
    )
}

/// Which domains a listing returns (`VIR_CONNECT_LIST_DOMAINS_*` as a struct).
#[derive(Debug, Clone, Copy, Default)]
pub struct ListFilter {
    /// `VIR_CONNECT_LIST_DOMAINS_*` flags; 0 = all.
    pub flags: u32,
}

impl ListFilter {
    /// Whether `e` passes the flags.
    pub fn matches(&self, e: &DomainEntry) -> bool {
        let f = self.flags;
        let group = |a: u32, b: u32, pa: bool, pb: bool| -> bool {
            if f & (a | b) == 0 || f & (a | b) == (a | b) {
                true
            } else if f & a != 0 {
                pa
            } else {
                pb
            }
        };
        use vireo_messages::DomainState as S;
        let s = e.state.state;
        let state_ok = if f & (16 | 32 | 64 | 128) == 0 {
            true
        } else {
            (f & 16 != 0 && s == S::Running)
                || (f & 32 != 0 && s == S::Paused)
                || (f & 64 != 0 && s == S::Shutoff)
                || (f & 128 != 0 && !matches!(s, S::Running | S::Paused | S::Shutoff))
        };
        group(1, 2, e.is_active(), !e.is_active())
            && group(4, 8, e.persistent, !e.persistent)
            && state_ok
            && group(256, 512, e.managed_save, !e.managed_save)
            && group(1024, 2048, e.autostart, !e.autostart)
            && group(4096, 8192, e.snapshots > 0, e.snapshots == 0)
            && group(16384, 32768, false, true)
    }
}

/// An open connection to a hypervisor instance. Cheap to clone.
#[derive(Clone)]
pub struct Connection {
    drv: Arc<DriverHandle>,
}

impl Connection {
    pub(crate) fn new(drv: Arc<DriverHandle>) -> Connection {
        Connection { drv }
    }

    fn ctx(&self) -> &Arc<DriverCtx> {
        &self.drv.ctx
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<VirResult<T>>) -> DriverMsg,
    ) -> VirResult<T> {
        let (tx, rx) = oneshot::channel();
        self.drv
            .actor
            .cast(make(tx))
            .map_err(|_| driver_gone(self.ctx()))?;
        rx.await.map_err(|_| driver_gone(self.ctx()))?
    }

    /// The instance's node devices.
    pub fn node_devices(&self) -> &NodeDevices {
        &self.drv.node_devices
    }

    /// The instance's host interfaces.
    pub fn interfaces(&self) -> &Interfaces {
        &self.drv.interfaces
    }

    /// The instance's secrets.
    pub fn secrets(&self) -> &Secrets {
        &self.drv.secrets
    }

    /// The directory for this instance's own files (its store's definitions root,
    /// e.g. `STATE/test`); `None` for in-memory instances.
    pub fn state_dir(&self) -> Option<&std::path::Path> {
        self.ctx().store.as_ref().map(|s| s.config_root())
    }

    /// The URI this connection serves.
    pub fn uri(&self) -> &str {
        &self.ctx().uri
    }

    /// The tag on events raised by this instance (filter on it to see only these).
    pub fn origin(&self) -> u32 {
        self.ctx().origin
    }

    /// `virConnectGetType`.
    pub fn type_name(&self) -> &'static str {
        self.ctx().hv.type_name()
    }

    /// The error domain of this driver.
    pub fn error_domain(&self) -> ErrorDomain {
        self.ctx().err_domain()
    }

    /// The node description (node info, capabilities data, devices, interfaces).
    pub fn node(&self) -> &TestConfig {
        &self.ctx().node
    }

    fn domain_handle(&self, e: DomainEntry) -> Domain {
        Domain {
            conn: self.clone(),
            uuid: e.uuid,
            name: e.name,
        }
    }

    /// How many domain actors this instance has spawned so far (each wake of a
    /// hibernated domain counts one).
    pub fn domain_actors_spawned(&self) -> u64 {
        self.ctx().domain_actors_spawned()
    }

    /// How many domains have a live actor right now (the others hibernate).
    pub fn live_domain_actors(&self) -> usize {
        self.ctx().directory.live_actors()
    }

    /// Defines (or redefines) a persistent domain from XML.
    pub async fn define_domain(&self, xml: &str) -> VirResult<Domain> {
        let mut def = DomainDef::parse(xml)?;
        self.ctx().hv.validate(&def)?;
        def.normalize()?;
        let redefine = def.clone();
        match self
            .ask(|tx| DriverMsg::DefineDomain(Box::new(def), tx))
            .await?
        {
            Defined::New(e) => Ok(self.domain_handle(e)),
            Defined::Existing(e) => {
                let d = self.domain_handle(e);
                d.job(JobRequest::Redefine(Box::new(redefine))).await?;
                Ok(d)
            }
        }
    }

    /// Creates and starts a transient domain from XML (`virDomainCreateXML`).
    pub async fn create_domain(&self, xml: &str, paused: bool) -> VirResult<Domain> {
        let mut def = DomainDef::parse(xml)?;
        self.ctx().hv.validate(&def)?;
        def.normalize()?;
        let e = self
            .ask(|tx| DriverMsg::PrepareTransient(Box::new(def), tx))
            .await?;
        let d = self.domain_handle(e);
        d.job(JobRequest::Start {
            paused,
            force_boot: false,
        })
        .await?;
        Ok(d)
    }

    /// Which family of libvirt semantics this instance follows.
    pub fn flavour(&self) -> vireo_drivers::hypervisor::Flavour {
        self.ctx().hv.flavour()
    }

    /// Restores a domain from the save image at `path` (`virDomainRestoreFlags`): the
    /// image's definition (or `dxml`, QEMU flavour only) is matched to an existing
    /// inactive domain by name and uuid, or becomes a new transient one, which then
    /// starts from the image.
    pub async fn restore(
        &self,
        path: &std::path::Path,
        dxml: Option<&str>,
        flags: u32,
    ) -> VirResult<Domain> {
        let ctx = self.ctx();
        let flavour = ctx.hv.flavour();
        let domain = ctx.err_domain();
        if flavour == vireo_drivers::hypervisor::Flavour::Test && dxml.is_some() {
            return Err(VirError::with(
                ErrorCode::ArgumentUnsupported,
                domain,
                "xml modification unsupported",
            ));
        }
        let xml = crate::domain::save::read_image_xml(flavour, domain, path).await?;
        let mut def = DomainDef::parse(dxml.unwrap_or(&xml))?;
        ctx.hv.validate(&def)?;
        def.normalize()?;
        if let Some(e) = def.uuid().and_then(|u| ctx.directory.by_uuid(&u))
            && e.is_active()
        {
            return Err(VirError::operation_invalid(
                domain,
                format!("domain '{}' is already active", e.name),
            ));
        }
        let e = self
            .ask(|tx| DriverMsg::PrepareTransient(Box::new(def.clone()), tx))
            .await?;
        if e.is_active() {
            return Err(VirError::operation_invalid(
                domain,
                format!("domain '{}' is already active", e.name),
            ));
        }
        let d = self.domain_handle(e);
        d.job(JobRequest::Restore {
            def: Box::new(def),
            path: path.to_path_buf(),
            flags,
        })
        .await?;
        Ok(d)
    }

    /// The domain XML stored in the save image at `path` (`virDomainSaveImageGetXMLDesc`).
    pub async fn save_image_xml(&self, path: &std::path::Path, flags: u32) -> VirResult<String> {
        let ctx = self.ctx();
        let xml =
            crate::domain::save::read_image_xml(ctx.hv.flavour(), ctx.err_domain(), path).await?;
        let def = DomainDef::parse(&xml)?;
        Ok(def.format(&vireo_xml::FormatOptions {
            id: None,
            inactive: false,
            secure: flags & crate::domain::XML_SECURE != 0
                || ctx.hv.flavour() == vireo_drivers::hypervisor::Flavour::Test,
        }))
    }

    /// Replaces the domain XML stored in the save image at `path`
    /// (`virDomainSaveImageDefineXML`); `VIR_DOMAIN_SAVE_RUNNING`/`_PAUSED` in `flags`
    /// also change whether the guest runs after a restore (QEMU flavour; the test driver
    /// ignores them, as libvirt's does).
    pub async fn save_image_define_xml(
        &self,
        path: &std::path::Path,
        dxml: &str,
        flags: u32,
    ) -> VirResult<()> {
        use crate::domain::save::{SAVE_PAUSED, SAVE_RUNNING};
        let ctx = self.ctx();
        let mut def = DomainDef::parse(dxml)?;
        def.normalize()?;
        let running = if flags & SAVE_RUNNING != 0 {
            Some(true)
        } else if flags & SAVE_PAUSED != 0 {
            Some(false)
        } else {
            None
        };
        crate::domain::save::define_image_xml(
            ctx.hv.flavour(),
            ctx.err_domain(),
            path,
            &def,
            running,
        )
        .await
    }

    /// Finds a domain by name.
    pub fn lookup_domain_by_name(&self, name: &str) -> VirResult<Domain> {
        self.ctx()
            .directory
            .by_name(name)
            .map(|e| self.domain_handle(e))
            .ok_or_else(|| {
                no_domain(
                    self.ctx(),
                    Some(format!("no domain with matching name '{name}'")),
                )
            })
    }

    /// Finds a domain by uuid.
    pub fn lookup_domain_by_uuid(&self, uuid: &Uuid) -> VirResult<Domain> {
        self.ctx()
            .directory
            .by_uuid(uuid)
            .map(|e| self.domain_handle(e))
            .ok_or_else(|| {
                no_domain(
                    self.ctx(),
                    Some(format!("no domain with matching uuid '{uuid}'")),
                )
            })
    }

    /// Finds an active domain by id.
    pub fn lookup_domain_by_id(&self, id: u32) -> VirResult<Domain> {
        self.ctx()
            .directory
            .by_id(id)
            .map(|e| self.domain_handle(e))
            .ok_or_else(|| no_domain(self.ctx(), Some(format!("no domain with matching id {id}"))))
    }

    /// Directory entries of the domains that pass `filter`, active first by id.
    pub fn list_domains(&self, filter: ListFilter) -> Vec<DomainEntry> {
        self.ctx().directory.list(|e| filter.matches(e))
    }

    /// Runs `f` on the directory entries of the domains that pass `filter`, active
    /// first by id, without copying them (see [`crate::directory::Directory::with_list`]).
    pub fn with_domains<R>(&self, filter: ListFilter, f: impl FnOnce(&[&DomainEntry]) -> R) -> R {
        self.ctx().directory.with_list(|e| filter.matches(e), f)
    }

    /// The directory entry of the domain named `name` (a lookup that keeps the id and
    /// state it saw).
    pub fn domain_entry_by_name(&self, name: &str) -> VirResult<DomainEntry> {
        self.ctx().directory.by_name(name).ok_or_else(|| {
            no_domain(
                self.ctx(),
                Some(format!("no domain with matching name '{name}'")),
            )
        })
    }

    /// The directory entry of the domain with this uuid.
    pub fn domain_entry_by_uuid(&self, uuid: &Uuid) -> VirResult<DomainEntry> {
        self.ctx().directory.by_uuid(uuid).ok_or_else(|| {
            no_domain(
                self.ctx(),
                Some(format!("no domain with matching uuid '{uuid}'")),
            )
        })
    }

    /// Handles of the domains that pass `filter`.
    pub fn list_domain_handles(&self, filter: ListFilter) -> Vec<Domain> {
        self.list_domains(filter)
            .into_iter()
            .map(|e| self.domain_handle(e))
            .collect()
    }

    /// Ids of active domains.
    pub fn list_domain_ids(&self) -> Vec<u32> {
        self.ctx().directory.active_ids()
    }

    /// Number of domains passing `filter`.
    pub fn count_domains(&self, filter: ListFilter) -> usize {
        self.ctx().directory.count(|e| filter.matches(e))
    }

    // ---- networks ----

    fn net_handle(&self, e: NetworkEntry) -> Network {
        Network {
            conn: self.clone(),
            uuid: e.uuid,
            name: e.name,
            actor: e.actor,
        }
    }

    /// Defines (or redefines) a persistent network.
    pub async fn define_network(&self, xml: &str) -> VirResult<Network> {
        let def = NetworkDef::parse(xml)?;
        let redefine = def.clone();
        let (e, new) = self
            .ask(|tx| DriverMsg::Network(DriverNetMsg::Define(Box::new(def), tx)))
            .await?;
        let n = self.net_handle(e);
        if !new {
            n.ask(|tx| NetMsg::Redefine(Box::new(redefine), tx)).await?;
        }
        Ok(n)
    }

    /// Creates and starts a transient network.
    pub async fn create_network(&self, xml: &str) -> VirResult<Network> {
        let def = NetworkDef::parse(xml)?;
        let e = self
            .ask(|tx| DriverMsg::Network(DriverNetMsg::Create(Box::new(def), tx)))
            .await?;
        Ok(self.net_handle(e))
    }

    /// Finds a network by name.
    pub fn lookup_network_by_name(&self, name: &str) -> VirResult<Network> {
        self.ctx()
            .networks
            .by_name(name)
            .map(|e| self.net_handle(e))
            .ok_or_else(|| {
                no_network(
                    self.ctx(),
                    format!("no network with matching name '{name}'"),
                )
            })
    }

    /// Finds a network by uuid.
    pub fn lookup_network_by_uuid(&self, uuid: &Uuid) -> VirResult<Network> {
        self.ctx()
            .networks
            .by_uuid(uuid)
            .map(|e| self.net_handle(e))
            .ok_or_else(|| {
                no_network(
                    self.ctx(),
                    format!("no network with matching uuid '{uuid}'"),
                )
            })
    }

    /// Networks, sorted by name, with their flags.
    pub fn list_networks(&self) -> Vec<NetworkEntry> {
        self.ctx().networks.list(|_| true)
    }

    /// Handle for a listed network.
    pub fn network(&self, e: NetworkEntry) -> Network {
        self.net_handle(e)
    }

    // ---- pools ----

    fn pool_handle(&self, e: PoolEntry) -> Pool {
        Pool {
            conn: self.clone(),
            uuid: e.uuid,
            name: e.name,
            actor: e.actor,
        }
    }

    /// Defines (or redefines) a persistent pool.
    pub async fn define_pool(&self, xml: &str) -> VirResult<Pool> {
        let def = PoolDef::parse(xml)?;
        let redefine = def.clone();
        let (e, new) = self
            .ask(|tx| DriverMsg::Pool(DriverPoolMsg::Define(Box::new(def), tx)))
            .await?;
        let p = self.pool_handle(e);
        if !new {
            p.ask(|tx| PoolMsg::Redefine(Box::new(redefine), tx))
                .await?;
        }
        Ok(p)
    }

    /// Creates and starts a transient pool.
    pub async fn create_pool(&self, xml: &str) -> VirResult<Pool> {
        let def = PoolDef::parse(xml)?;
        let e = self
            .ask(|tx| DriverMsg::Pool(DriverPoolMsg::Create(Box::new(def), tx)))
            .await?;
        Ok(self.pool_handle(e))
    }

    /// Finds a pool by name.
    pub fn lookup_pool_by_name(&self, name: &str) -> VirResult<Pool> {
        self.ctx()
            .pools
            .by_name(name)
            .map(|e| self.pool_handle(e))
            .ok_or_else(|| {
                no_pool(
                    self.ctx(),
                    format!("no storage pool with matching name '{name}'"),
                )
            })
    }

    /// Finds a pool by uuid.
    pub fn lookup_pool_by_uuid(&self, uuid: &Uuid) -> VirResult<Pool> {
        self.ctx()
            .pools
            .by_uuid(uuid)
            .map(|e| self.pool_handle(e))
            .ok_or_else(|| {
                no_pool(
                    self.ctx(),
                    format!("no storage pool with matching uuid '{uuid}'"),
                )
            })
    }

    /// Pools, sorted by name, with their flags.
    pub fn list_pools(&self) -> Vec<PoolEntry> {
        self.ctx().pools.list(|_| true)
    }

    /// Handle for a listed pool.
    pub fn pool(&self, e: PoolEntry) -> Pool {
        self.pool_handle(e)
    }
}

/// A handle to one domain.
#[derive(Clone)]
pub struct Domain {
    conn: Connection,
    uuid: Uuid,
    name: String,
}

/// How often a handle re-routes a message refused by an actor before it gives up. An
/// actor refuses only while it goes back to hibernation (its entry already says so) or
/// after it stopped (its entry is removed, or rebuilt by the driver shortly after).
const REROUTES: u32 = 50;

impl Domain {
    /// The uuid.
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// The name (as of lookup; renames give a new handle).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current id (None when inactive or gone).
    pub fn id(&self) -> Option<DomainId> {
        self.conn
            .ctx()
            .directory
            .by_uuid(&self.uuid)
            .and_then(|e| e.id)
    }

    /// The directory entry (state, flags) right now.
    pub fn entry(&self) -> VirResult<DomainEntry> {
        self.conn
            .ctx()
            .directory
            .by_uuid(&self.uuid)
            .ok_or_else(|| self.gone())
    }

    fn gone(&self) -> VirError {
        VirError::with(
            ErrorCode::NoDomain,
            self.conn.error_domain(),
            format!(
                "no domain with matching uuid '{}' ({})",
                self.uuid, self.name
            ),
        )
    }

    /// Whether the domain hibernates right now (no actor; see
    /// [`crate::directory::Owner`]).
    pub fn is_hibernated(&self) -> VirResult<bool> {
        Ok(matches!(self.entry()?.owner, Owner::Hibernated(_)))
    }

    /// Sends the query `msg` to the domain's actor; for a hibernated domain, `local`
    /// answers it from the directory entry.
    async fn query(
        &self,
        mut msg: DomainMsg,
        local: impl FnOnce(&DomainEntry, DomainMsg),
    ) -> VirResult<()> {
        for attempt in 0..REROUTES {
            let e = self.entry()?;
            match &e.owner {
                Owner::Actor(l) => match l.actor.cast(msg) {
                    Ok(()) => return Ok(()),
                    Err(ractor::MessagingErr::SendErr(m)) => msg = m,
                    Err(_) => return Err(self.gone()),
                },
                Owner::Hibernated(_) => {
                    local(&e, msg);
                    return Ok(());
                }
            }
            if attempt > 2 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
        Err(self.gone())
    }

    async fn job(&self, req: JobRequest) -> VirResult<String> {
        let (tx, rx) = oneshot::channel();
        let mut msg = DomainMsg::Job(req, tx);
        let ctx = self.conn.ctx();
        let mut sent = false;
        for _ in 0..REROUTES {
            match ctx.directory.route_job(&self.uuid) {
                Route::Gone => return Err(self.gone()),
                Route::Actor(live) => match live.send_counted(msg) {
                    Ok(()) => {
                        sent = true;
                        break;
                    }
                    Err(Some(m)) => msg = m,
                    Err(None) => return Err(self.gone()),
                },
                Route::Hibernated => {
                    self.conn
                        .drv
                        .actor
                        .cast(DriverMsg::Wake(self.uuid, msg))
                        .map_err(|_| driver_gone(ctx))?;
                    sent = true;
                    break;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        if !sent {
            return Err(self.gone());
        }
        rx.await.map_err(|_| self.gone())?
    }

    /// Runtime facts (`virDomainGetInfo`, state, flags).
    pub async fn info(&self) -> VirResult<DomainInfo> {
        let (tx, rx) = oneshot::channel();
        self.query(DomainMsg::Info(tx), |e, m| {
            if let (Owner::Hibernated(d), DomainMsg::Info(tx)) = (&e.owner, m) {
                let _ = tx.send(dormant_info(e, d));
            }
        })
        .await?;
        rx.await.map_err(|_| self.gone())
    }

    /// The running guest's disks' I/O counters, asked of its hypervisor (QEMU's
    /// monitor) even while a job runs; `None` when the domain is not running or its
    /// driver counts none.
    pub async fn disk_io(&self) -> VirResult<Option<Vec<DiskIo>>> {
        let (tx, rx) = oneshot::channel();
        self.query(DomainMsg::Probe(tx), |_, m| {
            if let DomainMsg::Probe(tx) = m {
                let _ = tx.send(None);
            }
        })
        .await?;
        match rx.await.map_err(|_| self.gone())? {
            Some(probe) => probe.disk_io().await.map(Some),
            None => Ok(None),
        }
    }

    /// The XML description (`VIR_DOMAIN_XML_*` flags).
    pub async fn xml(&self, flags: u32) -> VirResult<String> {
        let ctx = self.conn.ctx();
        if flags == 0
            && let Some(x) = ctx.directory.live_xml(&self.uuid)
        {
            return Ok(x.to_string());
        }
        let (tx, rx) = oneshot::channel();
        self.query(DomainMsg::XmlDesc { flags, reply: tx }, |e, m| {
            if let (Owner::Hibernated(d), DomainMsg::XmlDesc { flags, reply }) = (&e.owner, m) {
                // The dormant text is the inactive XML with secrets: the answer itself
                // for known flags, unless a password has to be hidden.
                let known = flags & !(XML_SECURE | XML_INACTIVE | 4 | 8) == 0;
                if known && (flags & XML_SECURE != 0 || !d.xml.contains("passwd=")) {
                    let _ = reply.send(Ok(d.xml.to_string()));
                    return;
                }
                let r = d
                    .definition()
                    .and_then(|config| xml_desc(ctx, &config, None, None, flags));
                let _ = reply.send(r);
            }
        })
        .await?;
        rx.await.map_err(|_| self.gone())?
    }

    /// Boots the domain.
    pub async fn start(&self, paused: bool) -> VirResult<()> {
        self.job(JobRequest::Start {
            paused,
            force_boot: false,
        })
        .await
        .map(drop)
    }

    /// Boots the domain; `force_boot` discards a managed-save image instead of
    /// resuming from it.
    pub async fn start_with(&self, paused: bool, force_boot: bool) -> VirResult<()> {
        self.job(JobRequest::Start { paused, force_boot })
            .await
            .map(drop)
    }

    /// Saves the guest's state to `path` and stops it (`VIR_DOMAIN_SAVE_*` flags).
    pub async fn save(
        &self,
        path: &std::path::Path,
        dxml: Option<&str>,
        flags: u32,
    ) -> VirResult<()> {
        self.job(JobRequest::Save {
            path: path.to_path_buf(),
            dxml: dxml.map(str::to_string),
            flags,
        })
        .await
        .map(drop)
    }

    /// Saves the guest's state to its managed-save image and stops it.
    pub async fn managed_save(&self, flags: u32) -> VirResult<()> {
        self.job(JobRequest::ManagedSave { flags }).await.map(drop)
    }

    /// Path of the managed-save image if the domain has one.
    pub fn managed_save_path(&self) -> VirResult<Option<std::path::PathBuf>> {
        let e = self.entry()?;
        Ok(match (&self.conn.ctx().store, e.managed_save) {
            (Some(store), true) => Some(store.managed_save_path(&e.name)),
            _ => None,
        })
    }

    /// Progress of the running save or restore; answered at once, even mid-job.
    pub async fn job_info(&self) -> VirResult<crate::domain::JobInfo> {
        let (tx, rx) = oneshot::channel();
        self.query(DomainMsg::JobInfo(tx), |_, m| {
            if let DomainMsg::JobInfo(tx) = m {
                let _ = tx.send(crate::domain::JobInfo::default());
            }
        })
        .await?;
        rx.await.map_err(|_| self.gone())
    }

    /// Statistics of the domain's last completed save, if any
    /// (`VIR_DOMAIN_JOB_STATS_COMPLETED`); forgotten once read unless `keep`.
    pub fn completed_job(&self, keep: bool) -> Option<crate::domain::JobInfo> {
        let mut m = self.conn.ctx().completed_jobs.lock().ok()?;
        if keep {
            m.get(&self.uuid).copied()
        } else {
            m.remove(&self.uuid)
        }
    }

    /// Aborts the running save (`virDomainAbortJob`).
    pub async fn abort_job(&self) -> VirResult<()> {
        let (tx, rx) = oneshot::channel();
        let domain = self.conn.error_domain();
        self.query(DomainMsg::AbortJob(tx), |_, m| {
            if let DomainMsg::AbortJob(tx) = m {
                let _ = tx.send(Err(VirError::operation_invalid(
                    domain,
                    "no job is active on the domain",
                )));
            }
        })
        .await?;
        rx.await.map_err(|_| self.gone())?
    }

    /// Asks the guest to power off.
    pub async fn shutdown(&self) -> VirResult<()> {
        self.job(JobRequest::Shutdown).await.map(drop)
    }

    /// Asks the guest to reboot.
    pub async fn reboot(&self) -> VirResult<()> {
        self.job(JobRequest::Reboot).await.map(drop)
    }

    /// Hard reset.
    pub async fn reset(&self) -> VirResult<()> {
        self.job(JobRequest::Reset).await.map(drop)
    }

    /// Stops the guest (`graceful`: SIGTERM and wait only).
    pub async fn destroy(&self, graceful: bool) -> VirResult<()> {
        self.job(JobRequest::Destroy { graceful }).await.map(drop)
    }

    /// Pauses.
    pub async fn suspend(&self) -> VirResult<()> {
        self.job(JobRequest::Suspend).await.map(drop)
    }

    /// Unpauses.
    pub async fn resume(&self) -> VirResult<()> {
        self.job(JobRequest::Resume).await.map(drop)
    }

    /// Removes the persistent definition (`VIR_DOMAIN_UNDEFINE_*` flags).
    pub async fn undefine(&self, flags: u32) -> VirResult<()> {
        self.job(JobRequest::Undefine { flags }).await.map(drop)
    }

    /// Sets autostart.
    pub async fn set_autostart(&self, on: bool) -> VirResult<()> {
        self.job(JobRequest::SetAutostart(on)).await.map(drop)
    }

    /// Discards the managed-save image.
    pub async fn managed_save_remove(&self) -> VirResult<()> {
        self.job(JobRequest::ManagedSaveRemove).await.map(drop)
    }

    /// Runs an I/O helper as a child of this domain's actor, in the job slot.
    pub async fn run_helper(&self, task: HelperTask) -> VirResult<String> {
        self.job(JobRequest::RunHelper(task)).await
    }
}

/// A handle to one network.
#[derive(Clone)]
pub struct Network {
    conn: Connection,
    uuid: Uuid,
    name: String,
    actor: ActorRef<NetMsg>,
}

impl Network {
    /// The uuid.
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn gone(&self) -> VirError {
        no_network(
            self.conn.ctx(),
            format!(
                "no network with matching uuid '{}' ({})",
                self.uuid, self.name
            ),
        )
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<VirResult<T>>) -> NetMsg,
    ) -> VirResult<T> {
        let (tx, rx) = oneshot::channel();
        self.actor.cast(make(tx)).map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
    }

    /// Index entry (active, persistent, autostart).
    pub fn entry(&self) -> VirResult<NetworkEntry> {
        self.conn
            .ctx()
            .networks
            .by_uuid(&self.uuid)
            .ok_or_else(|| self.gone())
    }

    /// XML.
    pub async fn xml(&self, flags: u32) -> VirResult<String> {
        self.ask(|tx| NetMsg::XmlDesc(flags, tx)).await
    }

    /// Start.
    pub async fn start(&self) -> VirResult<()> {
        self.ask(NetMsg::Start).await
    }

    /// Stop.
    pub async fn destroy(&self) -> VirResult<()> {
        self.ask(NetMsg::Destroy).await
    }

    /// Remove the definition.
    pub async fn undefine(&self) -> VirResult<()> {
        self.ask(NetMsg::Undefine).await
    }

    /// Autostart.
    pub async fn set_autostart(&self, on: bool) -> VirResult<()> {
        self.ask(|tx| NetMsg::SetAutostart(on, tx)).await
    }
}

/// A handle to one storage pool.
#[derive(Clone)]
pub struct Pool {
    conn: Connection,
    uuid: Uuid,
    name: String,
    actor: ActorRef<PoolMsg>,
}

impl Pool {
    /// The uuid.
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn gone(&self) -> VirError {
        no_pool(
            self.conn.ctx(),
            format!(
                "no storage pool with matching uuid '{}' ({})",
                self.uuid, self.name
            ),
        )
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<VirResult<T>>) -> PoolMsg,
    ) -> VirResult<T> {
        let (tx, rx) = oneshot::channel();
        self.actor.cast(make(tx)).map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
    }

    /// Index entry (active, persistent, autostart).
    pub fn entry(&self) -> VirResult<PoolEntry> {
        self.conn
            .ctx()
            .pools
            .by_uuid(&self.uuid)
            .ok_or_else(|| self.gone())
    }

    /// XML.
    pub async fn xml(&self, flags: u32) -> VirResult<String> {
        self.ask(|tx| PoolMsg::XmlDesc(flags, tx)).await
    }

    /// Info.
    pub async fn info(&self) -> VirResult<PoolInfo> {
        let (tx, rx) = oneshot::channel();
        self.actor
            .cast(PoolMsg::Info(tx))
            .map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())
    }

    /// Start.
    pub async fn start(&self) -> VirResult<()> {
        self.ask(PoolMsg::Start).await
    }

    /// Build.
    pub async fn build(&self) -> VirResult<()> {
        self.ask(PoolMsg::Build).await
    }

    /// Refresh.
    pub async fn refresh(&self) -> VirResult<()> {
        self.ask(PoolMsg::Refresh).await
    }

    /// Stop.
    pub async fn destroy(&self) -> VirResult<()> {
        self.ask(PoolMsg::Destroy).await
    }

    /// Delete the underlying storage.
    pub async fn delete(&self) -> VirResult<()> {
        self.ask(PoolMsg::Delete).await
    }

    /// Remove the definition.
    pub async fn undefine(&self) -> VirResult<()> {
        self.ask(PoolMsg::Undefine).await
    }

    /// Autostart.
    pub async fn set_autostart(&self, on: bool) -> VirResult<()> {
        self.ask(|tx| PoolMsg::SetAutostart(on, tx)).await
    }

    /// Volumes, sorted by name.
    pub async fn volumes(&self) -> VirResult<Vec<VolumeInfo>> {
        self.ask(PoolMsg::ListVolumes).await
    }

    /// Creates a volume from XML.
    pub async fn create_volume(&self, xml: &str) -> VirResult<VolumeInfo> {
        let xml = xml.to_string();
        self.ask(|tx| PoolMsg::CreateVolume(xml, tx)).await
    }

    /// Finds a volume.
    pub async fn lookup_volume(&self, key: VolKey) -> VirResult<VolumeInfo> {
        self.ask(|tx| PoolMsg::LookupVolume(key, tx)).await
    }

    /// A volume's XML.
    pub async fn volume_xml(&self, name: &str) -> VirResult<String> {
        let name = name.to_string();
        self.ask(|tx| PoolMsg::VolumeXml(name, tx)).await
    }

    /// Deletes a volume.
    pub async fn delete_volume(&self, name: &str) -> VirResult<()> {
        let name = name.to_string();
        self.ask(|tx| PoolMsg::DeleteVolume(name, tx)).await
    }
}
