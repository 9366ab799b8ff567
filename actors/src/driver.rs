//! The driver actor: one per open hypervisor instance (the host's shared
//! `test:///default`, each private `test:///file.xml` connection, later `qemu:///…`).
//!
//! It owns the instance's directories (which domains, networks and pools exist, and
//! their names, uuids and ids) and is the only place objects are created, so name and
//! uuid uniqueness is decided in one mailbox. It never waits for a domain actor: when a
//! define hits an existing domain it hands the caller that domain's actor, and the
//! caller sends the redefinition itself. Domain, network and pool actors are its linked
//! children; if one fails (a bug), the driver rebuilds it from what is on disk — the
//! same path a restarted host takes.
//!
//! Domains that are persistent, shut off and idle have no actor (they *hibernate*, see
//! [`crate::directory::Owner`]): a new definition, a definition loaded from disk and a
//! domain whose actor went back to sleep are directory entries only. A job for such a
//! domain comes here as [`DriverMsg::Wake`]; since this mailbox is the only place that
//! spawns an actor for an existing domain, a burst of jobs wakes exactly one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::oneshot;
use vireo_bus::Hub;
use vireo_drivers::hypervisor::{Hypervisor, StartOptions};
use vireo_drivers::store::{Store, StoredKind};
use vireo_drivers::testdata::TestConfig;
use vireo_messages::Uuid;
use vireo_messages::event::detail;
use vireo_messages::{
    DomainEventKind, DomainState, ErrorCode, ErrorDomain, Event, EventKind, ObjectRef, StateReason,
    VirError, VirResult,
};
use vireo_xml::DomainDef;

use crate::directory::{Directory, DomainEntry, Dormant, LiveActor, Owner, Route};
use crate::domain::{DomainActor, DomainArgs, DomainMsg, JobRequest, RunningGuest};
use crate::network::{NetworkRegistry, Networks};
use crate::pool::{PoolRegistry, Pools};

/// Everything the actors of one driver instance share.
pub struct DriverCtx {
    /// Tag put on every event this instance raises.
    pub origin: u32,
    /// The URI this instance serves (e.g. `test:///default`).
    pub uri: String,
    /// The hypervisor that runs the guests.
    pub hv: Arc<dyn Hypervisor>,
    /// Where definitions and status records live; `None` for in-memory instances.
    pub store: Option<Store>,
    /// The host's event hub.
    pub hub: Hub,
    /// Domains of this instance.
    pub directory: Directory,
    /// Networks of this instance.
    pub networks: NetworkRegistry,
    /// Storage pools of this instance.
    pub pools: PoolRegistry,
    /// The test driver's node description (node info, capabilities, devices).
    pub node: Arc<TestConfig>,
    /// How long a job waits for a busy domain's job slot.
    pub job_wait: Duration,
    /// A fault to inject into the next save (tests).
    pub save_faults: crate::domain::SaveFaults,
    /// Statistics of each domain's last completed save (`VIR_DOMAIN_JOB_STATS_COMPLETED`),
    /// kept here because a saved domain's actor goes to sleep.
    pub completed_jobs: std::sync::Mutex<std::collections::HashMap<Uuid, crate::domain::JobInfo>>,
    /// The next id to hand out, and the first id not yet reserved on disk.
    ids: std::sync::Mutex<(u32, u32)>,
    spawned: AtomicU64,
    /// Parsed definitions of the last few domains defined, for their first wake (see
    /// [`DriverCtx::keep_warm`]).
    warm: std::sync::Mutex<std::collections::VecDeque<(Uuid, Arc<Dormant>, DomainDef)>>,
}

/// How many domain ids are reserved on disk at a time (see [`DriverCtx::allocate_id`]).
const ID_BLOCK: u32 = 64;

/// How many freshly defined domains keep their parsed definition for the first wake.
const WARM: usize = 8;

impl DriverCtx {
    /// Hands out the next domain id, never reused, not even after a restart: ids are
    /// reserved on disk [`ID_BLOCK`] at a time (the store's `next-id` says the first id
    /// not reserved yet), so most starts write nothing; a restart skips what was
    /// reserved and not used, which libvirt's clients do not mind (ids only have to be
    /// unique).
    pub fn allocate_id(&self) -> u32 {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        let id = ids.0;
        ids.0 += 1;
        if ids.0 > ids.1 {
            ids.1 = id.saturating_add(ID_BLOCK);
            if let Some(store) = &self.store {
                let _ = store.write_run_value("next-id", &ids.1.to_string());
            }
        }
        id
    }

    /// The error domain of this instance's driver.
    pub fn err_domain(&self) -> ErrorDomain {
        self.hv.error_domain()
    }

    /// How many domain actors this instance has spawned so far (new transient or
    /// running domains, and every wake of a hibernated one).
    pub fn domain_actors_spawned(&self) -> u64 {
        self.spawned.load(Ordering::Relaxed)
    }

    /// Keeps the parsed definition of a domain just defined (hibernated as `dormant`)
    /// for its first wake: a define is nearly always followed by a start, which would
    /// otherwise parse the XML that was just parsed. Only the last [`WARM`] are kept.
    fn keep_warm(&self, uuid: Uuid, dormant: &Arc<Dormant>, def: DomainDef) {
        let mut w = self.warm.lock().unwrap_or_else(|e| e.into_inner());
        w.retain(|(u, _, _)| *u != uuid);
        if w.len() == WARM {
            w.pop_front();
        }
        w.push_back((uuid, dormant.clone(), def));
    }

    /// The parsed definition kept for `uuid`, if it is the one `dormant` holds
    /// (the same allocation: nothing was redefined since).
    fn take_warm(&self, uuid: &Uuid, dormant: &Arc<Dormant>) -> Option<DomainDef> {
        let mut w = self.warm.lock().unwrap_or_else(|e| e.into_inner());
        let i = w.iter().position(|(u, _, _)| u == uuid)?;
        let (_, kept, def) = w.remove(i)?;
        Arc::ptr_eq(&kept, dormant).then_some(def)
    }

    pub(crate) fn publish(&self, object: ObjectRef, kind: EventKind) {
        self.hub.publish(Event {
            origin: self.origin,
            object,
            kind,
        });
    }
}

/// How a driver instance is set up.
pub struct DriverSpec {
    /// Event origin tag.
    pub origin: u32,
    /// The URI served.
    pub uri: String,
    /// The hypervisor.
    pub hv: Arc<dyn Hypervisor>,
    /// Persistent store, if any.
    pub store: Option<Store>,
    /// The configuration to seed a fresh instance with (and the node description).
    pub seed: TestConfig,
    /// The host's hub.
    pub hub: Hub,
    /// Job wait limit.
    pub job_wait: Duration,
    /// Start autostart objects.
    pub autostart: bool,
    /// Faults to inject into saves (tests); empty normally.
    pub save_faults: crate::domain::SaveFaults,
}

/// The outcome of a define.
pub enum Defined {
    /// A new domain was created.
    New(DomainEntry),
    /// The domain exists: send it [`crate::domain::JobRequest::Redefine`].
    Existing(DomainEntry),
}

/// Messages of the driver actor.
pub enum DriverMsg {
    /// Define a domain (the XML is already parsed and normalized).
    DefineDomain(Box<DomainDef>, oneshot::Sender<VirResult<Defined>>),
    /// Create a transient domain actor for `createXML`; the caller then starts it.
    /// An existing inactive domain with the same name and uuid is returned as is.
    PrepareTransient(Box<DomainDef>, oneshot::Sender<VirResult<DomainEntry>>),
    /// Deliver a message (a job) to a domain, waking it first if it hibernates.
    Wake(Uuid, DomainMsg),
    /// Stop every child and then the driver (host shutdown or last private connection).
    Retire(oneshot::Sender<()>),
    /// Network operations.
    Network(crate::network::DriverNetMsg),
    /// Pool operations.
    Pool(crate::pool::DriverPoolMsg),
}

/// The driver actor's behaviour.
pub struct DriverActor;

/// The driver actor's state.
pub struct DriverState {
    ctx: Arc<DriverCtx>,
}

impl DriverState {
    /// The shared context.
    pub fn ctx(&self) -> &Arc<DriverCtx> {
        &self.ctx
    }
}

impl Actor for DriverActor {
    type Msg = DriverMsg;
    type State = DriverState;
    type Arguments = (DriverSpec, oneshot::Sender<Arc<DriverCtx>>);

    async fn pre_start(
        &self,
        myself: ActorRef<DriverMsg>,
        (spec, ctx_out): (DriverSpec, oneshot::Sender<Arc<DriverCtx>>),
    ) -> Result<DriverState, ActorProcessingErr> {
        let next_id = spec
            .store
            .as_ref()
            .and_then(|s| s.read_run_value("next-id"))
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(1);
        let ctx = Arc::new(DriverCtx {
            origin: spec.origin,
            uri: spec.uri,
            hv: spec.hv,
            store: spec.store,
            hub: spec.hub,
            directory: Directory::new(),
            networks: NetworkRegistry::default(),
            pools: PoolRegistry::default(),
            node: Arc::new(spec.seed.clone()),
            job_wait: spec.job_wait,
            save_faults: spec.save_faults,
            completed_jobs: Default::default(),
            ids: std::sync::Mutex::new((next_id.max(1), next_id.max(1))),
            spawned: AtomicU64::new(0),
            warm: Default::default(),
        });
        let fresh = match &ctx.store {
            Some(s) => !s.has_marker("initialized"),
            None => true,
        };
        if fresh {
            seed(&myself, &ctx, &spec.seed).await?;
            if let Some(s) = &ctx.store {
                s.set_marker("initialized")?;
            }
        } else {
            load(&myself, &ctx).await?;
        }
        if spec.autostart {
            autostart(&myself, &ctx).await;
        }
        let _ = ctx_out.send(ctx.clone());
        Ok(DriverState { ctx })
    }

    async fn handle(
        &self,
        myself: ActorRef<DriverMsg>,
        msg: DriverMsg,
        st: &mut DriverState,
    ) -> Result<(), ActorProcessingErr> {
        // Each arm's future is boxed: ractor boxes (and so copies) this future for every
        // message, and unboxed it would be as large as the largest arm.
        match msg {
            DriverMsg::DefineDomain(def, reply) => {
                let r = Box::pin(define_domain(&st.ctx, *def)).await;
                let _ = reply.send(r);
            }
            DriverMsg::PrepareTransient(def, reply) => {
                let r = Box::pin(prepare_transient(&myself, &st.ctx, *def)).await;
                let _ = reply.send(r);
            }
            DriverMsg::Wake(uuid, msg) => Box::pin(deliver(&myself, &st.ctx, uuid, msg)).await,
            DriverMsg::Network(m) => Box::pin(Networks::handle(&myself, &st.ctx, m)).await,
            DriverMsg::Pool(m) => Box::pin(Pools::handle(&myself, &st.ctx, m)).await,
            DriverMsg::Retire(reply) => {
                for a in st.ctx.directory.actors() {
                    let (tx, rx) = oneshot::channel();
                    if a.cast(DomainMsg::Retire(tx)).is_ok() {
                        let _ = rx.await;
                    }
                }
                st.ctx.networks.retire_all().await;
                st.ctx.pools.retire_all().await;
                let _ = reply.send(());
                myself.stop(None);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<DriverMsg>,
        evt: SupervisionEvent,
        st: &mut DriverState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, err) = evt {
            // A child actor failed. Find which domain it owned and rebuild it from disk.
            let id = cell.get_id();
            let failed = st
                .ctx
                .directory
                .list(|e| e.owner.actor().map(|a| a.get_id()) == Some(id))
                .into_iter()
                .next();
            tracing::error!(actor = %id, error = %err, "child actor failed");
            if let Some(entry) = failed {
                st.ctx.directory.remove(&entry.uuid);
                if let Err(e) = rebuild_domain(&myself, &st.ctx, &entry.name).await {
                    tracing::error!(domain = %entry.name, error = %e, "cannot rebuild domain actor");
                }
            }
        }
        Ok(())
    }
}

fn dup_name_error(ctx: &DriverCtx, name: &str, uuid: &uuid::Uuid) -> VirError {
    let _ = ctx;
    VirError::operation_failed(
        ErrorDomain::Domain,
        format!("domain '{name}' already exists with uuid {uuid}"),
    )
}

/// How a domain enters the directory: with an actor (it runs, or is transient), or
/// hibernated (persistent and shut off).
fn admit(args: DomainArgs) -> Result<DomainArgs, DomainEntry> {
    if args.running.is_some() || !args.persistent {
        return Ok(args);
    }
    let uuid = args.config.uuid().unwrap_or_else(uuid::Uuid::new_v4);
    Err(DomainEntry {
        live_xml: None,
        uuid,
        name: args.config.name().to_string(),
        id: None,
        state: args.initial,
        persistent: true,
        autostart: args.autostart,
        managed_save: args.managed_save,
        snapshots: 0,
        owner: Owner::Hibernated(Arc::new(Dormant::of(&args.config))),
    })
}

async fn spawn_actor(ctx: &Arc<DriverCtx>, args: DomainArgs) -> VirResult<LiveActor> {
    let driver = args.driver.clone();
    let inbound = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (actor, _) = Actor::spawn_linked(
        None,
        DomainActor,
        (args, inbound.clone()),
        driver.get_cell(),
    )
    .await
    .map_err(|e| VirError::internal(ctx.err_domain(), format!("cannot start domain actor: {e}")))?;
    ctx.spawned.fetch_add(1, Ordering::Relaxed);
    Ok(LiveActor::new(actor, inbound))
}

/// Puts a domain into the directory: hibernated if it is persistent and shut off,
/// otherwise with a new actor.
async fn spawn_domain(ctx: &Arc<DriverCtx>, args: DomainArgs) -> VirResult<DomainEntry> {
    let args = match admit(args) {
        Ok(args) => args,
        Err(entry) => {
            ctx.directory.insert(entry.clone());
            return Ok(entry);
        }
    };
    let uuid = args.config.uuid().unwrap_or_else(uuid::Uuid::new_v4);
    let name = args.config.name().to_string();
    let persistent = args.persistent;
    let autostart = args.autostart;
    let managed_save = args.managed_save;
    let (state, id) = match &args.running {
        Some(r) => (r.state, Some(vireo_messages::DomainId(r.id))),
        None => (args.initial, None),
    };
    let live = spawn_actor(ctx, args).await?;
    let entry = DomainEntry {
        live_xml: None,
        uuid,
        name,
        id,
        state,
        persistent,
        autostart,
        managed_save,
        snapshots: 0,
        owner: Owner::Actor(live),
    };
    ctx.directory.insert(entry.clone());
    Ok(entry)
}

/// Gives the job `msg` to the domain's actor, spawning one from the hibernated state if
/// there is none. The job is queued before the directory names the new actor, so it
/// comes before anything sent to the actor directly.
async fn deliver(driver: &ActorRef<DriverMsg>, ctx: &Arc<DriverCtx>, uuid: Uuid, msg: DomainMsg) {
    let mut msg = msg;
    // A live actor refuses a job only after it stopped: it went to sleep before the job
    // was counted (its entry already says so), or it was removed or failed.
    for _ in 0..3 {
        match ctx.directory.route_job(&uuid) {
            Route::Gone => break,
            Route::Actor(live) => match live.send_counted(msg) {
                Ok(()) => return,
                Err(Some(m)) => msg = m,
                Err(None) => return,
            },
            Route::Hibernated => {
                let Some(entry) = ctx.directory.by_uuid(&uuid) else {
                    break;
                };
                let Owner::Hibernated(dormant) = &entry.owner else {
                    continue;
                };
                // Undefining a hibernated domain needs no actor: answered here.
                let msg = match msg {
                    DomainMsg::Job(JobRequest::Undefine { flags }, reply) => {
                        let _ = reply.send(undefine_hibernated(ctx, &entry, flags));
                        return;
                    }
                    other => other,
                };
                let live = match wake(driver, ctx, &entry, dormant).await {
                    Ok(a) => a,
                    Err(e) => return fail(msg, e),
                };
                live.count();
                if let Err(m) = live.send_counted(msg) {
                    if let Some(m) = m {
                        fail(m, gone(ctx, &uuid));
                    }
                    return;
                }
                ctx.directory.wake(&uuid, live);
                return;
            }
        }
    }
    fail(msg, gone(ctx, &uuid));
}

/// Undefines a hibernated (persistent, shut off, idle) domain: its definition leaves
/// the store and the directory, and `Undefined` is published before the caller hears.
fn undefine_hibernated(ctx: &DriverCtx, entry: &DomainEntry, flags: u32) -> VirResult<String> {
    crate::domain::remove_definition(
        ctx,
        &entry.name,
        entry.persistent,
        entry.managed_save,
        flags,
    )?;
    if let Owner::Hibernated(dormant) = &entry.owner {
        ctx.take_warm(&entry.uuid, dormant);
    }
    ctx.directory.remove(&entry.uuid);
    ctx.publish(
        ObjectRef::domain(entry.name.clone(), entry.uuid, None),
        EventKind::lifecycle(DomainEventKind::Undefined, detail::undefined::REMOVED),
    );
    Ok(String::new())
}

fn gone(ctx: &DriverCtx, uuid: &Uuid) -> VirError {
    VirError::with(
        ErrorCode::NoDomain,
        ctx.err_domain(),
        format!("no domain with matching uuid '{uuid}'"),
    )
}

/// Answers a message that cannot be delivered with `err`.
fn fail(msg: DomainMsg, err: VirError) {
    match msg {
        DomainMsg::Job(_, reply) => {
            let _ = reply.send(Err(err));
        }
        DomainMsg::XmlDesc { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        // Dropping the sender tells the asker the domain is gone.
        _ => {}
    }
}

/// Spawns the actor of a hibernated domain from its directory entry.
async fn wake(
    driver: &ActorRef<DriverMsg>,
    ctx: &Arc<DriverCtx>,
    entry: &DomainEntry,
    dormant: &Arc<Dormant>,
) -> VirResult<LiveActor> {
    let config = match ctx.take_warm(&entry.uuid, dormant) {
        Some(def) => def,
        None => dormant.definition()?,
    };
    spawn_actor(
        ctx,
        DomainArgs {
            ctx: ctx.clone(),
            driver: driver.clone(),
            config,
            persistent: entry.persistent,
            autostart: entry.autostart,
            managed_save: entry.managed_save,
            running: None,
            initial: entry.state,
            dormant: Some(dormant.clone()),
        },
    )
    .await
}

async fn define_domain(ctx: &Arc<DriverCtx>, mut def: DomainDef) -> VirResult<Defined> {
    let name = def.name().to_string();
    let by_name = ctx.directory.by_name(&name);
    if let Some(uuid) = def.uuid() {
        if let Some(e) = ctx.directory.by_uuid(&uuid)
            && e.name != name
        {
            return Err(VirError::operation_failed(
                ErrorDomain::Domain,
                format!("domain '{}' is already defined with uuid {}", e.name, uuid),
            ));
        }
        if let Some(e) = by_name {
            if e.uuid != uuid {
                return Err(dup_name_error(ctx, &name, &e.uuid));
            }
            return Ok(Defined::Existing(e));
        }
    } else if let Some(e) = by_name {
        // libvirt generates a fresh uuid for a definition without one, which then
        // clashes with the existing domain of that name.
        return Err(dup_name_error(ctx, &name, &e.uuid));
    }
    let uuid = def.ensure_uuid();
    let xml = def.format(&Dormant::FORMAT);
    if let Some(store) = &ctx.store {
        store
            .save_def(StoredKind::Domain, &name, &xml)
            .map_err(|e| {
                VirError::system(
                    ctx.err_domain(),
                    format!("cannot save config for domain '{name}'"),
                    &e,
                )
            })?;
    }
    // A new definition is shut off and idle: it starts out hibernated.
    let entry = DomainEntry {
        live_xml: None,
        uuid,
        name,
        id: None,
        state: StateReason::new(DomainState::Shutoff, 0),
        persistent: true,
        autostart: false,
        managed_save: false,
        snapshots: 0,
        owner: Owner::Hibernated(Arc::new(Dormant::with_xml(&def, xml))),
    };
    if let Owner::Hibernated(dormant) = &entry.owner {
        // What parsing the dormant XML would give: that text has no live id.
        def.element_mut().remove_attr("id");
        ctx.keep_warm(uuid, dormant, def);
    }
    ctx.directory.insert(entry.clone());
    ctx.publish(
        ObjectRef::domain(entry.name.clone(), entry.uuid, None),
        EventKind::lifecycle(DomainEventKind::Defined, detail::defined::ADDED),
    );
    Ok(Defined::New(entry))
}

async fn prepare_transient(
    driver: &ActorRef<DriverMsg>,
    ctx: &Arc<DriverCtx>,
    mut def: DomainDef,
) -> VirResult<DomainEntry> {
    let name = def.name().to_string();
    let by_name = ctx.directory.by_name(&name);
    let uuid = def.uuid();
    if let Some(e) = &by_name
        && (e.is_active() || !e.persistent || Some(e.uuid) != uuid)
    {
        return Err(dup_name_error(ctx, &name, &e.uuid));
    }
    if let Some(u) = uuid
        && let Some(e) = ctx.directory.by_uuid(&u)
    {
        if e.name != name {
            return Err(VirError::operation_failed(
                ErrorDomain::Domain,
                format!("domain '{}' is already defined with uuid {}", e.name, u),
            ));
        }
        return Ok(e);
    }
    def.ensure_uuid();
    spawn_domain(
        ctx,
        DomainArgs {
            ctx: ctx.clone(),
            driver: driver.clone(),
            config: def,
            persistent: false,
            autostart: false,
            managed_save: false,
            running: None,
            initial: StateReason::new(DomainState::Shutoff, 0),
            dormant: None,
        },
    )
    .await
}

/// Builds a fresh instance from a test configuration, persisting what it creates.
async fn seed(
    driver: &ActorRef<DriverMsg>,
    ctx: &Arc<DriverCtx>,
    cfg: &TestConfig,
) -> Result<(), ActorProcessingErr> {
    for d in &cfg.domains {
        let mut def = DomainDef::parse(&d.xml)?;
        def.ensure_uuid();
        let name = def.name().to_string();
        if !d.transient
            && let Some(store) = &ctx.store
        {
            let xml = def.format(&Dormant::FORMAT);
            store.save_def(StoredKind::Domain, &name, &xml)?;
        }
        let running = if d.runstate.is_active() {
            let id = ctx.allocate_id();
            let paused = d.runstate == DomainState::Paused;
            let started = ctx.hv.start(&def, StartOptions { paused, id }).await?;
            Some(RunningGuest {
                started,
                live: def.clone(),
                id,
                state: StateReason::new(d.runstate, 0),
            })
        } else {
            None
        };
        let entry = spawn_domain(
            ctx,
            DomainArgs {
                ctx: ctx.clone(),
                driver: driver.clone(),
                config: def,
                persistent: !d.transient,
                autostart: false,
                managed_save: d.has_managed_save,
                running,
                initial: StateReason::new(DomainState::Shutoff, 0),
                dormant: None,
            },
        )
        .await?;
        // Ask the new actor to write its status record now that it owns the guest.
        if entry.is_active()
            && let Some(actor) = entry.owner.actor()
        {
            let (tx, rx) = oneshot::channel();
            let _ = actor.cast(DomainMsg::Info(tx));
            let _ = rx.await;
        }
    }
    crate::network::seed(driver, ctx, cfg).await?;
    crate::pool::seed(driver, ctx, cfg).await?;
    Ok(())
}

/// Rebuilds an instance from its store: definitions, then status records (reattaching
/// to guests that still run).
async fn load(
    driver: &ActorRef<DriverMsg>,
    ctx: &Arc<DriverCtx>,
) -> Result<(), ActorProcessingErr> {
    let Some(store) = ctx.store.clone() else {
        return Ok(());
    };
    // Each directory is read once: (definition, status record) by name.
    let mut found: std::collections::BTreeMap<String, (Option<String>, Option<serde_json::Value>)> =
        Default::default();
    for (n, xml) in store.load_defs(StoredKind::Domain)? {
        found.entry(n).or_default().0 = Some(xml);
    }
    for (n, rec) in store.load_statuses(StoredKind::Domain)? {
        found.entry(n).or_default().1 = Some(rec);
    }
    for (name, (def_xml, status)) in found {
        if let Err(e) = reload_domain(driver, ctx, &name, def_xml, status).await {
            tracing::error!(domain = %name, error = %e, "cannot load domain");
        }
    }
    crate::network::load(driver, ctx).await?;
    crate::pool::load(driver, ctx).await?;
    Ok(())
}

/// Rebuilds one domain whose actor failed, from its definition and status record on
/// disk (read alone: other domains may be writing theirs meanwhile).
async fn rebuild_domain(
    driver: &ActorRef<DriverMsg>,
    ctx: &Arc<DriverCtx>,
    name: &str,
) -> VirResult<()> {
    let Some(store) = ctx.store.clone() else {
        return Ok(());
    };
    let io = |e: std::io::Error| VirError::system(ctx.err_domain(), "cannot read state", &e);
    let def_xml = store.load_def(StoredKind::Domain, name).map_err(io)?;
    let status = store.load_status(StoredKind::Domain, name).map_err(io)?;
    reload_domain(driver, ctx, name, def_xml, status).await
}

/// Loads one domain from its definition and/or status record into the directory
/// (hibernated, or with an actor when its guest still runs).
async fn reload_domain(
    driver: &ActorRef<DriverMsg>,
    ctx: &Arc<DriverCtx>,
    name: &str,
    def_xml: Option<String>,
    status: Option<serde_json::Value>,
) -> VirResult<()> {
    let Some(store) = ctx.store.clone() else {
        return Ok(());
    };
    let config = match &def_xml {
        Some(x) => Some(DomainDef::parse(x)?),
        None => None,
    };
    let mut running = None;
    let mut initial = StateReason::new(DomainState::Shutoff, 0);
    // A save that was interrupted by the daemon's death: its image is partial (or cut
    // short) and goes; the guest, paused for the save, runs again if it ran before.
    let interrupted = status
        .as_ref()
        .and_then(|r| r.get("saving"))
        .filter(|s| !s.is_null())
        .cloned();
    if let Some(s) = &interrupted
        && let Some(path) = s.get("path").and_then(|p| p.as_str())
    {
        match vireo_drivers::iohelper::remove_if_partial(std::path::Path::new(path)) {
            Ok(true) => {
                tracing::info!(domain = %name, path, "removed the image of an interrupted save")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(domain = %name, path, error = %e, "cannot check the image of an interrupted save")
            }
        }
    }
    if let Some(rec) = &status {
        let live = match rec.get("live_xml").and_then(|v| v.as_str()) {
            Some(x) => DomainDef::parse(x)?,
            None => match &config {
                Some(c) => c.clone(),
                None => return Ok(()),
            },
        };
        let guest_rec = rec.get("guest").cloned().unwrap_or_default();
        match ctx.hv.reattach(&guest_rec, &live).await {
            Ok(Some(started)) => {
                let id = rec.get("id").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
                let id = if id == 0 { ctx.allocate_id() } else { id };
                let state = StateReason::new(
                    DomainState::from_i32(
                        rec.get("state").and_then(|v| v.as_i64()).unwrap_or(1) as i32
                    ),
                    rec.get("reason").and_then(|v| v.as_i64()).unwrap_or(0) as i32,
                );
                let mut started = started;
                let was_running = interrupted
                    .as_ref()
                    .and_then(|s| s.get("was_running"))
                    .and_then(|v| v.as_bool());
                let state = if let Some(was_running) = was_running {
                    if was_running && started.guest.resume().await.is_ok() {
                        started.paused = false;
                        StateReason::new(
                            DomainState::Running,
                            vireo_messages::state::running::SAVE_CANCELED,
                        )
                    } else if started.paused {
                        StateReason::new(DomainState::Paused, vireo_messages::state::paused::USER)
                    } else {
                        StateReason::new(DomainState::Running, 0)
                    }
                } else if started.paused && state.state == DomainState::Running {
                    StateReason::new(DomainState::Paused, 0)
                } else {
                    state
                };
                running = Some(RunningGuest {
                    started,
                    live,
                    id,
                    state,
                });
            }
            Ok(None) | Err(_) => {
                // The guest is gone: drop the record; the domain is shut off, without
                // an event. libvirt's qemu driver gives reason "crashed" when it cannot
                // reconnect to a QEMU started with -no-shutdown (ours always is); the
                // test driver has no such case and says "unknown".
                let _ = store.remove_status(StoredKind::Domain, name);
                let reason = match ctx.hv.flavour() {
                    vireo_drivers::hypervisor::Flavour::Qemu => {
                        vireo_messages::state::shutoff::CRASHED
                    }
                    vireo_drivers::hypervisor::Flavour::Test => {
                        vireo_messages::state::shutoff::UNKNOWN
                    }
                };
                initial = StateReason::new(DomainState::Shutoff, reason);
                if config.is_none() {
                    return Ok(());
                }
            }
        }
    }
    let persistent = config.is_some();
    let config = match (config, &running) {
        (Some(c), _) => c,
        (None, Some(r)) => r.live.clone(),
        (None, None) => return Ok(()),
    };
    // Only a complete managed-save image counts; an interrupted one is removed.
    let managed_path = store.managed_save_path(name);
    if let Err(e) = vireo_drivers::iohelper::remove_if_partial(&managed_path) {
        tracing::warn!(domain = %name, error = %e, "cannot check the managed-save image");
    }
    let managed_save = managed_path.exists();
    spawn_domain(
        ctx,
        DomainArgs {
            ctx: ctx.clone(),
            driver: driver.clone(),
            config,
            persistent,
            autostart: store.autostart(StoredKind::Domain, name),
            managed_save,
            running,
            initial,
            dormant: None,
        },
    )
    .await?;
    Ok(())
}

/// Starts every inactive persistent domain marked autostart.
async fn autostart(driver: &ActorRef<DriverMsg>, ctx: &Arc<DriverCtx>) {
    for e in ctx.directory.list(|e| e.autostart && !e.is_active()) {
        let (tx, rx) = oneshot::channel();
        let start = DomainMsg::Job(
            crate::domain::JobRequest::Start {
                paused: false,
                force_boot: false,
            },
            tx,
        );
        deliver(driver, ctx, e.uuid, start).await;
        // Do not wait here: a slow guest must not hold up the driver's start.
        let name = e.name.clone();
        tokio::spawn(async move {
            if let Ok(Err(err)) = rx.await {
                tracing::warn!(domain = %name, error = %err, "autostart failed");
            }
        });
    }
    crate::network::autostart(ctx).await;
    crate::pool::autostart(ctx).await;
}

/// The "no such domain" error of a lookup miss, as the driver's flavour words it.
pub fn no_domain(ctx: &DriverCtx, what: Option<String>) -> VirError {
    match (ctx.hv.flavour(), what) {
        (vireo_drivers::hypervisor::Flavour::Test, _) | (_, None) => {
            VirError::bare(ErrorCode::NoDomain, ctx.err_domain())
        }
        (_, Some(w)) => VirError::with(ErrorCode::NoDomain, ctx.err_domain(), w),
    }
}
