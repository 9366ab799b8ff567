//! Network actors: one per virtual network, owning its definition and active flag.
//!
//! For the test driver a network is bookkeeping only (libvirt's test driver creates no
//! bridge); the semantics, errors and events follow libvirt 9.0's test driver,
//! including its quirk that destroying an inactive network succeeds and emits STOPPED.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;
use vireo_drivers::hypervisor::Flavour;
use vireo_drivers::store::StoredKind;
use vireo_drivers::testdata::TestConfig;
use vireo_messages::{
    ErrorCode, ErrorDomain, EventKind, NetworkEventKind, ObjectKind, ObjectRef, VirError, VirResult,
};
use vireo_xml::NetworkDef;

use crate::driver::{DriverCtx, DriverMsg};
use crate::registry::{Entry, Registry, Retirable};

/// The networks of one driver instance.
pub type NetworkRegistry = Registry<NetMsg>;
/// One network's index entry.
pub type NetworkEntry = Entry<NetMsg>;

/// Messages of a network actor.
pub enum NetMsg {
    /// XML description (flags must be 0 for the test driver).
    XmlDesc(u32, oneshot::Sender<VirResult<String>>),
    /// Start it.
    Start(oneshot::Sender<VirResult<()>>),
    /// Stop it (a transient network disappears).
    Destroy(oneshot::Sender<VirResult<()>>),
    /// Remove the persistent definition.
    Undefine(oneshot::Sender<VirResult<()>>),
    /// Replace the definition.
    Redefine(Box<NetworkDef>, oneshot::Sender<VirResult<()>>),
    /// Set autostart.
    SetAutostart(bool, oneshot::Sender<VirResult<()>>),
    /// Stop the actor.
    Retire(oneshot::Sender<()>),
}

impl Retirable for NetMsg {
    fn retire(done: oneshot::Sender<()>) -> Self {
        NetMsg::Retire(done)
    }
}

/// Network operations that go through the driver actor (creation).
pub enum DriverNetMsg {
    /// Define (new or existing with the same name and uuid).
    Define(
        Box<NetworkDef>,
        oneshot::Sender<VirResult<(NetworkEntry, bool)>>,
    ),
    /// Create and start a transient network.
    Create(Box<NetworkDef>, oneshot::Sender<VirResult<NetworkEntry>>),
}

struct NetState {
    ctx: Arc<DriverCtx>,
    def: NetworkDef,
    active: bool,
    persistent: bool,
    autostart: bool,
    removed: bool,
}

struct NetworkActor;

struct NetArgs {
    ctx: Arc<DriverCtx>,
    def: NetworkDef,
    active: bool,
    persistent: bool,
    autostart: bool,
}

impl NetState {
    fn object(&self) -> ObjectRef {
        ObjectRef::named(ObjectKind::Network, self.def.name(), self.def.uuid())
    }

    fn event(&self, k: NetworkEventKind) {
        self.ctx
            .publish(self.object(), EventKind::NetworkLifecycle(k));
    }

    fn sync(&self) {
        let (a, p, au) = (self.active, self.persistent, self.autostart);
        if let Some(u) = self.def.uuid() {
            self.ctx.networks.update(&u, |e| {
                e.active = a;
                e.persistent = p;
                e.autostart = au;
            });
        }
        if let Some(store) = &self.ctx.store {
            let name = self.def.name();
            let r = if self.active {
                store.save_status(
                    StoredKind::Network,
                    &name,
                    &serde_json::json!({"active": true, "xml": self.def.to_xml()}),
                )
            } else {
                store.remove_status(StoredKind::Network, &name)
            };
            if let Err(e) = r {
                tracing::warn!(network = %name, error = %e, "cannot write network status");
            }
        }
    }

    fn remove(&mut self) {
        if let Some(u) = self.def.uuid() {
            self.ctx.networks.remove(&u);
        }
        self.removed = true;
    }

    fn dom(&self) -> ErrorDomain {
        self.ctx.err_domain()
    }
}

impl Actor for NetworkActor {
    type Msg = NetMsg;
    type State = NetState;
    type Arguments = NetArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<NetMsg>,
        a: NetArgs,
    ) -> Result<NetState, ActorProcessingErr> {
        Ok(NetState {
            ctx: a.ctx,
            def: a.def,
            active: a.active,
            persistent: a.persistent,
            autostart: a.autostart,
            removed: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<NetMsg>,
        msg: NetMsg,
        st: &mut NetState,
    ) -> Result<(), ActorProcessingErr> {
        let name = st.def.name().to_string();
        match msg {
            NetMsg::XmlDesc(flags, reply) => {
                let r = if flags != 0 {
                    Err(VirError::unsupported_flags(
                        st.dom(),
                        flags,
                        "testNetworkGetXMLDesc",
                    ))
                } else {
                    Ok(st.def.to_xml())
                };
                let _ = reply.send(r);
            }
            NetMsg::Start(reply) => {
                let r = if st.active {
                    Err(VirError::operation_invalid(
                        st.dom(),
                        format!("Network '{name}' is already running"),
                    ))
                } else {
                    st.active = true;
                    st.sync();
                    st.event(NetworkEventKind::Started);
                    Ok(())
                };
                let _ = reply.send(r);
            }
            NetMsg::Destroy(reply) => {
                let test = st.ctx.hv.flavour() == Flavour::Test;
                let r = if !st.active && !test {
                    Err(VirError::operation_invalid(
                        st.dom(),
                        format!("network '{name}' is not active"),
                    ))
                } else {
                    st.active = false;
                    st.sync();
                    st.event(NetworkEventKind::Stopped);
                    if !st.persistent {
                        st.remove();
                    }
                    Ok(())
                };
                let _ = reply.send(r);
            }
            NetMsg::Undefine(reply) => {
                let r = if st.active {
                    Err(VirError::operation_invalid(
                        st.dom(),
                        format!("Network '{name}' is still running"),
                    ))
                } else if !st.persistent {
                    Err(VirError::operation_invalid(
                        st.dom(),
                        format!("network '{name}' is not persistent"),
                    ))
                } else {
                    let mut r = Ok(());
                    if let Some(store) = &st.ctx.store
                        && let Err(e) = store.remove_def(StoredKind::Network, &name)
                    {
                        r = Err(VirError::system(
                            st.dom(),
                            format!("cannot remove config for network '{name}'"),
                            &e,
                        ));
                    }
                    if r.is_ok() {
                        st.event(NetworkEventKind::Undefined);
                        st.remove();
                    }
                    r
                };
                let _ = reply.send(r);
            }
            NetMsg::Redefine(def, reply) => {
                let r = save_def(&st.ctx, &def);
                if r.is_ok() {
                    st.def = *def;
                    st.persistent = true;
                    st.sync();
                    st.event(NetworkEventKind::Defined);
                }
                let _ = reply.send(r);
            }
            NetMsg::SetAutostart(on, reply) => {
                let r = if !st.persistent {
                    Err(VirError::operation_invalid(
                        st.dom(),
                        "cannot set autostart for transient network",
                    ))
                } else {
                    if let Some(store) = &st.ctx.store {
                        let _ = store.set_autostart(StoredKind::Network, &name, on);
                    }
                    st.autostart = on;
                    st.sync();
                    Ok(())
                };
                let _ = reply.send(r);
            }
            NetMsg::Retire(done) => {
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

fn save_def(ctx: &DriverCtx, def: &NetworkDef) -> VirResult<()> {
    if let Some(store) = &ctx.store {
        store
            .save_def(StoredKind::Network, &def.name(), &def.to_xml())
            .map_err(|e| {
                VirError::system(
                    ctx.err_domain(),
                    format!("cannot save config for network '{}'", def.name()),
                    &e,
                )
            })?;
    }
    Ok(())
}

async fn spawn(driver: &ActorRef<DriverMsg>, args: NetArgs) -> VirResult<NetworkEntry> {
    let ctx = args.ctx.clone();
    let uuid = args.def.uuid().expect("caller ensured a uuid");
    let name = args.def.name().to_string();
    let (active, persistent, autostart) = (args.active, args.persistent, args.autostart);
    let (actor, _) = Actor::spawn_linked(None, NetworkActor, args, driver.get_cell())
        .await
        .map_err(|e| {
            VirError::internal(ctx.err_domain(), format!("cannot start network actor: {e}"))
        })?;
    let e = Entry {
        uuid,
        name,
        active,
        persistent,
        autostart,
        actor,
    };
    ctx.networks.insert(e.clone());
    Ok(e)
}

fn exists_error(name: &str, uuid: &uuid::Uuid) -> VirError {
    VirError::operation_failed(
        ErrorDomain::Network,
        format!("network '{name}' already exists with uuid {uuid}"),
    )
}

/// Network creation, run inside the driver actor.
pub struct Networks;

impl Networks {
    /// Handles a creation request.
    pub async fn handle(driver: &ActorRef<DriverMsg>, ctx: &Arc<DriverCtx>, m: DriverNetMsg) {
        match m {
            DriverNetMsg::Define(mut def, reply) => {
                let name = def.name().to_string();
                let r = async {
                    if let Some(e) = ctx.networks.by_name(&name) {
                        if def.uuid() == Some(e.uuid) {
                            return Ok((e, false));
                        }
                        return Err(exists_error(&name, &e.uuid));
                    }
                    if let Some(u) = def.uuid()
                        && let Some(e) = ctx.networks.by_uuid(&u)
                    {
                        return Err(exists_error(&e.name, &u));
                    }
                    def.ensure_uuid();
                    save_def(ctx, &def)?;
                    let e = spawn(
                        driver,
                        NetArgs {
                            ctx: ctx.clone(),
                            def: *def,
                            active: false,
                            persistent: true,
                            autostart: false,
                        },
                    )
                    .await?;
                    ctx.publish(
                        ObjectRef::named(ObjectKind::Network, &e.name, Some(e.uuid)),
                        EventKind::NetworkLifecycle(NetworkEventKind::Defined),
                    );
                    Ok((e, true))
                }
                .await;
                let _ = reply.send(r);
            }
            DriverNetMsg::Create(mut def, reply) => {
                let name = def.name().to_string();
                let r = async {
                    if let Some(e) = ctx.networks.by_name(&name) {
                        return Err(exists_error(&name, &e.uuid));
                    }
                    def.ensure_uuid();
                    let e = spawn(
                        driver,
                        NetArgs {
                            ctx: ctx.clone(),
                            def: *def,
                            active: true,
                            persistent: false,
                            autostart: false,
                        },
                    )
                    .await?;
                    ctx.publish(
                        ObjectRef::named(ObjectKind::Network, &e.name, Some(e.uuid)),
                        EventKind::NetworkLifecycle(NetworkEventKind::Started),
                    );
                    Ok(e)
                }
                .await;
                let _ = reply.send(r);
            }
        }
    }
}

/// The "network not found" error.
pub fn no_network(ctx: &DriverCtx, detail: String) -> VirError {
    VirError::with(ErrorCode::NoNetwork, ctx.err_domain(), detail)
}

/// Creates the seed networks of a fresh instance (all active and persistent).
pub async fn seed(
    driver: &ActorRef<DriverMsg>,
    ctx: &Arc<DriverCtx>,
    cfg: &TestConfig,
) -> Result<(), ActorProcessingErr> {
    for xml in &cfg.networks {
        let mut def = NetworkDef::parse(xml)?;
        def.ensure_uuid();
        save_def(ctx, &def)?;
        let e = spawn(
            driver,
            NetArgs {
                ctx: ctx.clone(),
                def,
                active: true,
                persistent: true,
                autostart: false,
            },
        )
        .await?;
        if let Some(store) = &ctx.store {
            let def_xml = store
                .load_def(StoredKind::Network, &e.name)?
                .unwrap_or_default();
            store.save_status(
                StoredKind::Network,
                &e.name,
                &serde_json::json!({"active": true, "xml": def_xml}),
            )?;
        }
    }
    Ok(())
}

/// Loads networks from the store.
pub async fn load(
    driver: &ActorRef<DriverMsg>,
    ctx: &Arc<DriverCtx>,
) -> Result<(), ActorProcessingErr> {
    let Some(store) = ctx.store.clone() else {
        return Ok(());
    };
    let statuses = store.load_statuses(StoredKind::Network)?;
    let defs = store.load_defs(StoredKind::Network)?;
    for (name, xml) in &defs {
        let def = NetworkDef::parse(xml)?;
        let active = statuses.iter().any(|(n, _)| n == name);
        spawn(
            driver,
            NetArgs {
                ctx: ctx.clone(),
                def,
                active,
                persistent: true,
                autostart: store.autostart(StoredKind::Network, name),
            },
        )
        .await?;
    }
    for (name, rec) in &statuses {
        if defs.iter().any(|(n, _)| n == name) {
            continue;
        }
        if let Some(xml) = rec.get("xml").and_then(|x| x.as_str()) {
            let def = NetworkDef::parse(xml)?;
            spawn(
                driver,
                NetArgs {
                    ctx: ctx.clone(),
                    def,
                    active: true,
                    persistent: false,
                    autostart: false,
                },
            )
            .await?;
        }
    }
    Ok(())
}

/// Starts autostart networks.
pub async fn autostart(ctx: &Arc<DriverCtx>) {
    for e in ctx.networks.list(|e| e.autostart && !e.active) {
        let (tx, rx) = oneshot::channel();
        if e.actor.cast(NetMsg::Start(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}
