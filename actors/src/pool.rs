//! Storage pool actors: one per pool, owning its definition, active flag and (for the
//! test driver) its volumes.
//!
//! The test driver's pools touch nothing on disk: capacity is a fixed 100 GiB,
//! allocation is the sum of the volumes', and build/delete only emit events. Semantics,
//! errors and events follow libvirt 9.0's test driver. Volumes of persistent pools are
//! kept in the store beside the pool definition, so they survive a host restart.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;
use vireo_drivers::store::StoredKind;
use vireo_drivers::testdata::TestConfig;
use vireo_messages::{
    ErrorCode, ErrorDomain, EventKind, ObjectKind, ObjectRef, PoolEventKind, VirError, VirResult,
};
use vireo_xml::{PoolDef, VolumeDef};

use crate::driver::{DriverCtx, DriverMsg};
use crate::registry::{Entry, Registry, Retirable};

/// Capacity of every test-driver pool (100 GiB).
pub const TEST_POOL_CAPACITY: u64 = 100 * 1024 * 1024 * 1024;

/// The pools of one driver instance.
pub type PoolRegistry = Registry<PoolMsg>;
/// One pool's index entry.
pub type PoolEntry = Entry<PoolMsg>;

/// `virStoragePoolGetInfo`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolInfo {
    /// 0 inactive, 2 running.
    pub state: i32,
    /// Bytes.
    pub capacity: u64,
    /// Bytes.
    pub allocation: u64,
    /// Bytes.
    pub available: u64,
}

/// A volume as the pool reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    /// Name inside the pool.
    pub name: String,
    /// Globally unique key (the path for the test driver).
    pub key: String,
    /// Path.
    pub path: String,
    /// Type (0 = file).
    pub kind: i32,
    /// Capacity in bytes.
    pub capacity: u64,
    /// Allocation in bytes.
    pub allocation: u64,
}

/// How to find a volume.
#[derive(Debug, Clone)]
pub enum VolKey {
    /// By name inside the pool.
    Name(String),
    /// By key.
    Key(String),
    /// By path.
    Path(String),
}

/// Messages of a pool actor.
pub enum PoolMsg {
    /// XML (flags must be 0 for the test driver).
    XmlDesc(u32, oneshot::Sender<VirResult<String>>),
    /// Info.
    Info(oneshot::Sender<PoolInfo>),
    /// Start.
    Start(oneshot::Sender<VirResult<()>>),
    /// Build (inactive only).
    Build(oneshot::Sender<VirResult<()>>),
    /// Refresh (active only).
    Refresh(oneshot::Sender<VirResult<()>>),
    /// Stop.
    Destroy(oneshot::Sender<VirResult<()>>),
    /// Delete the underlying storage (inactive only).
    Delete(oneshot::Sender<VirResult<()>>),
    /// Remove the definition (inactive only).
    Undefine(oneshot::Sender<VirResult<()>>),
    /// Replace the definition.
    Redefine(Box<PoolDef>, oneshot::Sender<VirResult<()>>),
    /// Autostart.
    SetAutostart(bool, oneshot::Sender<VirResult<()>>),
    /// Volume listing (names, sorted).
    ListVolumes(oneshot::Sender<VirResult<Vec<VolumeInfo>>>),
    /// Create a volume from XML.
    CreateVolume(String, oneshot::Sender<VirResult<VolumeInfo>>),
    /// Find a volume.
    LookupVolume(VolKey, oneshot::Sender<VirResult<VolumeInfo>>),
    /// A volume's XML.
    VolumeXml(String, oneshot::Sender<VirResult<String>>),
    /// Delete a volume.
    DeleteVolume(String, oneshot::Sender<VirResult<()>>),
    /// Stop the actor.
    Retire(oneshot::Sender<()>),
}

impl Retirable for PoolMsg {
    fn retire(done: oneshot::Sender<()>) -> Self {
        PoolMsg::Retire(done)
    }
}

/// Pool operations that go through the driver actor.
pub enum DriverPoolMsg {
    /// Define (new, or existing with the same name and uuid).
    Define(Box<PoolDef>, oneshot::Sender<VirResult<(PoolEntry, bool)>>),
    /// Create and start a transient pool.
    Create(Box<PoolDef>, oneshot::Sender<VirResult<PoolEntry>>),
}

struct PoolState {
    ctx: Arc<DriverCtx>,
    def: PoolDef,
    active: bool,
    persistent: bool,
    autostart: bool,
    removed: bool,
    volumes: Vec<VolumeDef>,
}

struct PoolActor;

struct PoolArgs {
    ctx: Arc<DriverCtx>,
    def: PoolDef,
    active: bool,
    persistent: bool,
    autostart: bool,
    volumes: Vec<VolumeDef>,
}

fn vol_info(v: &VolumeDef) -> VolumeInfo {
    let path = v.target_path().unwrap_or_default();
    VolumeInfo {
        name: v.name(),
        key: v.key().unwrap_or_else(|| path.clone()),
        path,
        kind: 0,
        capacity: v.capacity_bytes(),
        allocation: v.allocation_bytes().ok().flatten().unwrap_or(0),
    }
}

impl PoolState {
    fn name(&self) -> String {
        self.def.name()
    }

    fn object(&self) -> ObjectRef {
        ObjectRef::named(ObjectKind::StoragePool, self.name(), self.def.uuid())
    }

    fn event(&self, k: PoolEventKind) {
        self.ctx.publish(self.object(), EventKind::PoolLifecycle(k));
    }

    fn dom(&self) -> ErrorDomain {
        self.ctx.err_domain()
    }

    fn allocation(&self) -> u64 {
        self.volumes
            .iter()
            .map(|v| v.allocation_bytes().ok().flatten().unwrap_or(0))
            .sum()
    }

    fn info(&self) -> PoolInfo {
        if !self.active {
            return PoolInfo {
                state: 0,
                capacity: 0,
                allocation: 0,
                available: 0,
            };
        }
        let alloc = self.allocation();
        PoolInfo {
            state: 2,
            capacity: TEST_POOL_CAPACITY,
            allocation: alloc,
            available: TEST_POOL_CAPACITY.saturating_sub(alloc),
        }
    }

    fn xml(&self) -> String {
        let mut def = self.def.clone();
        let i = self.info();
        if self.active {
            def.set_sizes(i.capacity, i.allocation, i.available);
        }
        // libvirt always writes a pool's <source> with an opening and a closing tag,
        // even when it is empty.
        def.to_xml()
            .replacen("\n  <source/>\n", "\n  <source>\n  </source>\n", 1)
    }

    fn must_be_active(&self) -> VirResult<()> {
        if self.active {
            Ok(())
        } else {
            Err(VirError::operation_invalid(
                self.dom(),
                format!("storage pool '{}' is not active", self.name()),
            ))
        }
    }

    fn must_be_inactive(&self) -> VirResult<()> {
        if self.active {
            Err(VirError::operation_invalid(
                self.dom(),
                format!("storage pool '{}' is active", self.name()),
            ))
        } else {
            Ok(())
        }
    }

    fn sync(&self) {
        let (a, p, au) = (self.active, self.persistent, self.autostart);
        if let Some(u) = self.def.uuid() {
            self.ctx.pools.update(&u, |e| {
                e.active = a;
                e.persistent = p;
                e.autostart = au;
            });
        }
        if let Some(store) = &self.ctx.store {
            let name = self.name();
            let r = if self.active {
                store.save_status(
                    StoredKind::Pool,
                    &name,
                    &serde_json::json!({"active": true, "xml": self.def.to_xml()}),
                )
            } else {
                store.remove_status(StoredKind::Pool, &name)
            };
            if let Err(e) = r {
                tracing::warn!(pool = %name, error = %e, "cannot write pool status");
            }
        }
    }

    fn save_volumes(&self) -> VirResult<()> {
        if !self.persistent {
            return Ok(());
        }
        if let Some(store) = &self.ctx.store {
            let xml: String = self.volumes.iter().map(|v| v.to_xml()).collect();
            let doc = format!("<volumes>\n{xml}</volumes>\n");
            store
                .save_def(StoredKind::Pool, &format!("{}.volumes", self.name()), &doc)
                .map_err(|e| VirError::system(self.dom(), "cannot save volumes", &e))?;
        }
        Ok(())
    }

    fn find(&self, key: &VolKey) -> Option<usize> {
        self.volumes.iter().position(|v| {
            let i = vol_info(v);
            match key {
                VolKey::Name(n) => i.name == *n,
                VolKey::Key(k) => i.key == *k,
                VolKey::Path(p) => i.path == *p,
            }
        })
    }

    fn no_vol(&self, key: &VolKey) -> VirError {
        let what = match key {
            VolKey::Name(n) => format!("no storage vol with matching name '{n}'"),
            VolKey::Key(k) => format!("no storage vol with matching key {k}"),
            VolKey::Path(p) => format!("no storage vol with matching path '{p}'"),
        };
        VirError::with(ErrorCode::NoStorageVol, self.dom(), what)
    }

    fn create_volume(&mut self, xml: &str) -> VirResult<VolumeInfo> {
        self.must_be_active()?;
        let mut v = VolumeDef::parse(xml)?;
        let name = v.name();
        if self.find(&VolKey::Name(name.clone())).is_some() {
            return Err(VirError::operation_failed(
                self.dom(),
                "storage vol already exists",
            ));
        }
        if let Some(fmt) = v.target_format()
            && !matches!(
                fmt.as_str(),
                "raw"
                    | "dir"
                    | "bochs"
                    | "cloop"
                    | "dmg"
                    | "iso"
                    | "vpc"
                    | "vdi"
                    | "fat"
                    | "vhd"
                    | "ploop"
                    | "cow"
                    | "qcow"
                    | "qcow2"
                    | "qed"
                    | "vmdk"
            )
        {
            return Err(VirError::config_unsupported(
                ErrorDomain::Storage,
                format!("unknown volume format type {fmt}"),
            ));
        }
        let target = self.def.target_path().unwrap_or_default();
        let path = format!("{target}/{name}");
        v.set_target_path(&path);
        v.set_key(&path);
        if v.allocation_bytes()?.is_none() {
            let cap = v.capacity_bytes();
            v.set_allocation_bytes(cap);
        }
        let info = vol_info(&v);
        self.volumes.push(v);
        if let Err(e) = self.save_volumes() {
            self.volumes.pop();
            return Err(e);
        }
        Ok(info)
    }
}

impl Actor for PoolActor {
    type Msg = PoolMsg;
    type State = PoolState;
    type Arguments = PoolArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<PoolMsg>,
        a: PoolArgs,
    ) -> Result<PoolState, ActorProcessingErr> {
        Ok(PoolState {
            ctx: a.ctx,
            def: a.def,
            active: a.active,
            persistent: a.persistent,
            autostart: a.autostart,
            removed: false,
            volumes: a.volumes,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<PoolMsg>,
        msg: PoolMsg,
        st: &mut PoolState,
    ) -> Result<(), ActorProcessingErr> {
        let name = st.name();
        match msg {
            PoolMsg::XmlDesc(flags, reply) => {
                let r = if flags != 0 {
                    Err(VirError::unsupported_flags(
                        st.dom(),
                        flags,
                        "testStoragePoolGetXMLDesc",
                    ))
                } else {
                    Ok(st.xml())
                };
                let _ = reply.send(r);
            }
            PoolMsg::Info(reply) => {
                let _ = reply.send(st.info());
            }
            PoolMsg::Start(reply) => {
                let r = st.must_be_inactive().map(|_| {
                    st.active = true;
                    st.sync();
                    st.event(PoolEventKind::Started);
                });
                let _ = reply.send(r);
            }
            PoolMsg::Build(reply) => {
                let r = st
                    .must_be_inactive()
                    .map(|_| st.event(PoolEventKind::Created));
                let _ = reply.send(r);
            }
            PoolMsg::Refresh(reply) => {
                let r = st
                    .must_be_active()
                    .map(|_| st.ctx.publish(st.object(), EventKind::PoolRefresh));
                let _ = reply.send(r);
            }
            PoolMsg::Destroy(reply) => {
                let r = st.must_be_active().map(|_| {
                    st.active = false;
                    st.sync();
                    st.event(PoolEventKind::Stopped);
                    if !st.persistent {
                        if let Some(u) = st.def.uuid() {
                            st.ctx.pools.remove(&u);
                        }
                        st.removed = true;
                    }
                });
                let _ = reply.send(r);
            }
            PoolMsg::Delete(reply) => {
                let r = st
                    .must_be_inactive()
                    .map(|_| st.event(PoolEventKind::Deleted));
                let _ = reply.send(r);
            }
            PoolMsg::Undefine(reply) => {
                let r = st.must_be_inactive().and_then(|_| {
                    if let Some(store) = &st.ctx.store {
                        store
                            .remove_def(StoredKind::Pool, &name)
                            .and_then(|_| {
                                store.remove_def(StoredKind::Pool, &format!("{name}.volumes"))
                            })
                            .map_err(|e| {
                                VirError::system(st.dom(), "cannot remove pool config", &e)
                            })?;
                    }
                    st.event(PoolEventKind::Undefined);
                    if let Some(u) = st.def.uuid() {
                        st.ctx.pools.remove(&u);
                    }
                    st.removed = true;
                    Ok(())
                });
                let _ = reply.send(r);
            }
            PoolMsg::Redefine(def, reply) => {
                let r = save_def(&st.ctx, &def);
                if r.is_ok() {
                    st.def = *def;
                    st.persistent = true;
                    st.sync();
                    let _ = st.save_volumes();
                    st.event(PoolEventKind::Defined);
                }
                let _ = reply.send(r);
            }
            PoolMsg::SetAutostart(on, reply) => {
                let r = if !st.persistent {
                    Err(VirError::operation_invalid(
                        st.dom(),
                        "cannot set autostart for transient pool",
                    ))
                } else {
                    if let Some(store) = &st.ctx.store {
                        let _ = store.set_autostart(StoredKind::Pool, &name, on);
                    }
                    st.autostart = on;
                    st.sync();
                    Ok(())
                };
                let _ = reply.send(r);
            }
            PoolMsg::ListVolumes(reply) => {
                let r = st.must_be_active().map(|_| {
                    let mut v: Vec<VolumeInfo> = st.volumes.iter().map(vol_info).collect();
                    v.sort_by(|a, b| a.name.cmp(&b.name));
                    v
                });
                let _ = reply.send(r);
            }
            PoolMsg::CreateVolume(xml, reply) => {
                let _ = reply.send(st.create_volume(&xml));
            }
            PoolMsg::LookupVolume(key, reply) => {
                let r = st.must_be_active().and_then(|_| match st.find(&key) {
                    Some(i) => Ok(vol_info(&st.volumes[i])),
                    None => Err(st.no_vol(&key)),
                });
                let _ = reply.send(r);
            }
            PoolMsg::VolumeXml(vname, reply) => {
                let key = VolKey::Name(vname);
                let r = st.must_be_active().and_then(|_| match st.find(&key) {
                    Some(i) => Ok(st.volumes[i].to_xml()),
                    None => Err(st.no_vol(&key)),
                });
                let _ = reply.send(r);
            }
            PoolMsg::DeleteVolume(vname, reply) => {
                let key = VolKey::Name(vname);
                let r = st.must_be_active().and_then(|_| match st.find(&key) {
                    Some(i) => {
                        let v = st.volumes.remove(i);
                        if let Err(e) = st.save_volumes() {
                            st.volumes.insert(i, v);
                            return Err(e);
                        }
                        Ok(())
                    }
                    None => Err(st.no_vol(&key)),
                });
                let _ = reply.send(r);
            }
            PoolMsg::Retire(done) => {
                let _ = done.send(());
                myself.stop(None);
            }
        }
        if st.removed {
            myself.stop(None);
        }
        Ok(())
    }
}

fn save_def(ctx: &DriverCtx, def: &PoolDef) -> VirResult<()> {
    if let Some(store) = &ctx.store {
        store
            .save_def(StoredKind::Pool, &def.name(), &def.to_xml())
            .map_err(|e| {
                VirError::system(
                    ctx.err_domain(),
                    format!("cannot save config for pool '{}'", def.name()),
                    &e,
                )
            })?;
    }
    Ok(())
}

async fn spawn(driver: &ActorRef<DriverMsg>, args: PoolArgs) -> VirResult<PoolEntry> {
    let ctx = args.ctx.clone();
    let uuid = args.def.uuid().expect("caller ensured a uuid");
    let name = args.def.name();
    let (active, persistent, autostart) = (args.active, args.persistent, args.autostart);
    let (actor, _) = Actor::spawn_linked(None, PoolActor, args, driver.get_cell())
        .await
        .map_err(|e| {
            VirError::internal(ctx.err_domain(), format!("cannot start pool actor: {e}"))
        })?;
    let e = Entry {
        uuid,
        name,
        active,
        persistent,
        autostart,
        actor,
    };
    ctx.pools.insert(e.clone());
    Ok(e)
}

fn exists_error(name: &str, uuid: &uuid::Uuid) -> VirError {
    VirError::operation_failed(
        ErrorDomain::Storage,
        format!("pool '{name}' already exists with uuid {uuid}"),
    )
}

/// Pool creation, run inside the driver actor.
pub struct Pools;

impl Pools {
    /// Handles a creation request.
    pub async fn handle(driver: &ActorRef<DriverMsg>, ctx: &Arc<DriverCtx>, m: DriverPoolMsg) {
        match m {
            DriverPoolMsg::Define(mut def, reply) => {
                let name = def.name();
                let r = async {
                    if let Some(e) = ctx.pools.by_name(&name) {
                        if def.uuid() == Some(e.uuid) {
                            return Ok((e, false));
                        }
                        return Err(exists_error(&name, &e.uuid));
                    }
                    if let Some(u) = def.uuid()
                        && let Some(e) = ctx.pools.by_uuid(&u)
                    {
                        return Err(exists_error(&e.name, &u));
                    }
                    def.ensure_uuid();
                    save_def(ctx, &def)?;
                    let e = spawn(
                        driver,
                        PoolArgs {
                            ctx: ctx.clone(),
                            def: *def,
                            active: false,
                            persistent: true,
                            autostart: false,
                            volumes: Vec::new(),
                        },
                    )
                    .await?;
                    ctx.publish(
                        ObjectRef::named(ObjectKind::StoragePool, &e.name, Some(e.uuid)),
                        EventKind::PoolLifecycle(PoolEventKind::Defined),
                    );
                    Ok((e, true))
                }
                .await;
                let _ = reply.send(r);
            }
            DriverPoolMsg::Create(mut def, reply) => {
                let name = def.name();
                let r = async {
                    if let Some(e) = ctx.pools.by_name(&name) {
                        return Err(exists_error(&name, &e.uuid));
                    }
                    def.ensure_uuid();
                    let e = spawn(
                        driver,
                        PoolArgs {
                            ctx: ctx.clone(),
                            def: *def,
                            active: true,
                            persistent: false,
                            autostart: false,
                            volumes: Vec::new(),
                        },
                    )
                    .await?;
                    ctx.publish(
                        ObjectRef::named(ObjectKind::StoragePool, &e.name, Some(e.uuid)),
                        EventKind::PoolLifecycle(PoolEventKind::Started),
                    );
                    Ok(e)
                }
                .await;
                let _ = reply.send(r);
            }
        }
    }
}

/// The "pool not found" error.
pub fn no_pool(ctx: &DriverCtx, detail: String) -> VirError {
    VirError::with(ErrorCode::NoStoragePool, ctx.err_domain(), detail)
}

fn parse_volumes(doc: &str) -> VirResult<Vec<VolumeDef>> {
    let root = vireo_xml::Element::parse(doc)
        .map_err(|e| VirError::xml(ErrorDomain::Storage, e.to_string()))?;
    root.children_named("volume")
        .map(|v| VolumeDef::parse(&v.to_xml()))
        .collect()
}

/// Creates the seed pools of a fresh instance (active and persistent, with volumes).
pub async fn seed(
    driver: &ActorRef<DriverMsg>,
    ctx: &Arc<DriverCtx>,
    cfg: &TestConfig,
) -> Result<(), ActorProcessingErr> {
    for p in &cfg.pools {
        let mut def = PoolDef::parse(&p.xml)?;
        def.ensure_uuid();
        save_def(ctx, &def)?;
        let volumes = p
            .volumes
            .iter()
            .map(|x| VolumeDef::parse(x))
            .collect::<VirResult<Vec<_>>>()?;
        let e = spawn(
            driver,
            PoolArgs {
                ctx: ctx.clone(),
                def,
                active: true,
                persistent: true,
                autostart: false,
                volumes,
            },
        )
        .await?;
        // Let the actor persist its status and volumes.
        let (tx, rx) = oneshot::channel();
        let _ = e.actor.cast(PoolMsg::SetAutostart(false, tx));
        let _ = rx.await;
        if let Some(store) = &ctx.store {
            let xml: String = p
                .volumes
                .iter()
                .map(|v| VolumeDef::parse(v).map(|d| d.to_xml()).unwrap_or_default())
                .collect();
            store.save_def(
                StoredKind::Pool,
                &format!("{}.volumes", e.name),
                &format!("<volumes>\n{xml}</volumes>\n"),
            )?;
            store.save_status(
                StoredKind::Pool,
                &e.name,
                &serde_json::json!({"active": true}),
            )?;
        }
    }
    Ok(())
}

/// Loads pools from the store.
pub async fn load(
    driver: &ActorRef<DriverMsg>,
    ctx: &Arc<DriverCtx>,
) -> Result<(), ActorProcessingErr> {
    let Some(store) = ctx.store.clone() else {
        return Ok(());
    };
    let statuses = store.load_statuses(StoredKind::Pool)?;
    let defs = store.load_defs(StoredKind::Pool)?;
    for (name, xml) in &defs {
        if name.ends_with(".volumes") {
            continue;
        }
        let def = PoolDef::parse(xml)?;
        let volumes = match defs.iter().find(|(n, _)| *n == format!("{name}.volumes")) {
            Some((_, doc)) => parse_volumes(doc)?,
            None => Vec::new(),
        };
        let active = statuses.iter().any(|(n, _)| n == name);
        spawn(
            driver,
            PoolArgs {
                ctx: ctx.clone(),
                def,
                active,
                persistent: true,
                autostart: store.autostart(StoredKind::Pool, name),
                volumes,
            },
        )
        .await?;
    }
    for (name, rec) in &statuses {
        if defs.iter().any(|(n, _)| n == name) {
            continue;
        }
        if let Some(xml) = rec.get("xml").and_then(|x| x.as_str()) {
            spawn(
                driver,
                PoolArgs {
                    ctx: ctx.clone(),
                    def: PoolDef::parse(xml)?,
                    active: true,
                    persistent: false,
                    autostart: false,
                    volumes: Vec::new(),
                },
            )
            .await?;
        }
    }
    Ok(())
}

/// Starts autostart pools.
pub async fn autostart(ctx: &Arc<DriverCtx>) {
    for e in ctx.pools.list(|e| e.autostart && !e.active) {
        let (tx, rx) = oneshot::channel();
        if e.actor.cast(PoolMsg::Start(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}
