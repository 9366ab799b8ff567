//! The domain actor: one per domain, owner of its state machine and its job slot.
//!
//! # What it owns
//! The persistent definition (`config`, the next-boot XML), the definition the guest
//! runs with (`live`), libvirt's state and reason, the numeric id, the autostart and
//! managed-save flags, and the [`Guest`] control object while the guest runs.
//!
//! # Queries and jobs
//! Queries ([`DomainMsg::Info`], [`DomainMsg::XmlDesc`]) are answered at once, whatever
//! the domain is doing. Modifying operations ([`JobRequest`]) run one at a time: the
//! first takes the job slot and runs as a separate task (so queries keep flowing), the
//! others wait in FIFO order. A waiter that does not get the slot within the driver's
//! `job_wait` fails with libvirt's "cannot acquire state change lock" timeout (code 68).
//! Legality is checked when a job *takes* the slot, against the state at that moment.
//!
//! # Guest events
//! What the guest does by itself (powers off, panics, pauses on an I/O error) arrives as
//! [`GuestEvent`]s. While a job runs they are held back and applied after it finishes,
//! so a job always sees the state it checked.
//!
//! # Hibernation
//! A persistent domain that is shut off and has no job running or waiting needs no
//! actor: after each message the actor checks for that, writes its definition back to
//! the directory in compact form ([`crate::directory::Dormant`]), marks the entry
//! hibernated and *drains*: its mailbox stops admitting messages (a sender gets its
//! message back and re-routes it through the directory), and what was already queued is
//! still handled: queries from its state, which is exactly the hibernated state, and jobs
//! forwarded to the driver actor, which wakes the domain again. See
//! [`crate::directory::Owner`].
//!
//! # Children
//! I/O helpers ([`crate::helper::IoHelper`]) are linked children; a helper's panic fails
//! only the job that started it.

pub mod lifecycle;
pub mod save;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{SystemTime, UNIX_EPOCH};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::{mpsc, oneshot};
use vireo_drivers::hypervisor::{
    Flavour, Guest, GuestEvent, GuestProbe, GuestUsage, ShutdownOutcome, StartOptions,
};
use vireo_drivers::store::StoredKind;
use vireo_messages::event::detail;
use vireo_messages::state::{paused, running, shutoff};
use vireo_messages::{
    DomainEvent, DomainEventKind, DomainId, DomainState, ErrorDomain, Event, EventKind, ObjectRef,
    StateReason, Uuid, VirError, VirResult,
};
use vireo_xml::{DomainDef, FormatOptions, LifecycleAction};

use crate::directory::{Dormant, job_arrived};
use crate::driver::{DriverCtx, DriverMsg};
use crate::helper::{HelperArgs, HelperMsg, HelperTask, IoHelper};
use lifecycle::{Op, check};
pub use save::{JobInfo, SaveFault, SaveFaults};

/// `VIR_DOMAIN_XML_SECURE`.
pub const XML_SECURE: u32 = 1;
/// `VIR_DOMAIN_XML_INACTIVE`.
pub const XML_INACTIVE: u32 = 2;
/// `VIR_DOMAIN_UNDEFINE_MANAGED_SAVE`.
pub const UNDEFINE_MANAGED_SAVE: u32 = 1;

/// A snapshot of a domain's runtime facts, as `virDomainGetInfo` and friends need them.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainInfo {
    /// Name.
    pub name: String,
    /// Uuid.
    pub uuid: Uuid,
    /// Id while active.
    pub id: Option<DomainId>,
    /// State and reason.
    pub state: StateReason,
    /// Has a persistent definition.
    pub persistent: bool,
    /// Starts with its driver.
    pub autostart: bool,
    /// Has a managed-save image.
    pub managed_save: bool,
    /// Maximum memory in KiB.
    pub max_mem_kib: u64,
    /// Current memory in KiB.
    pub mem_kib: u64,
    /// Virtual CPUs online (`<vcpu current=…>`, else the maximum): what
    /// `virDomainGetInfo` reports.
    pub vcpus: u32,
    /// The maximum number of virtual CPUs (`<vcpu>`).
    pub max_vcpus: u32,
    /// CPU time used, in nanoseconds.
    pub cpu_time_ns: u64,
    /// What the running guest has used (CPU split, RSS, vCPUs), when its driver can
    /// tell; the last value seen while a job holds the guest.
    pub usage: Option<GuestUsage>,
    /// Whether the next-boot definition differs from the running one.
    pub updated: bool,
}

/// A modifying operation; runs in the domain's job slot.
pub enum JobRequest {
    /// Boot (from shut off). A QEMU-flavour domain with a managed-save image resumes
    /// from it (and the image is removed on success) unless `force_boot`.
    Start {
        /// Leave the guest paused.
        paused: bool,
        /// Discard a managed-save image and boot afresh (`VIR_DOMAIN_START_FORCE_BOOT`).
        force_boot: bool,
    },
    /// Pause.
    Suspend,
    /// Unpause.
    Resume,
    /// Ask the guest to power off.
    Shutdown,
    /// Ask the guest to reboot.
    Reboot,
    /// Hard reset.
    Reset,
    /// Stop the guest for good.
    Destroy {
        /// SIGTERM and wait rather than kill.
        graceful: bool,
    },
    /// Remove the persistent definition (an active domain becomes transient).
    Undefine {
        /// `VIR_DOMAIN_UNDEFINE_*` flags.
        flags: u32,
    },
    /// Replace the persistent definition (define of an existing domain).
    Redefine(Box<DomainDef>),
    /// Set or clear autostart.
    SetAutostart(bool),
    /// Discard the managed-save image.
    ManagedSaveRemove,
    /// Save the guest's state to a file and stop it (`virDomainSaveFlags`).
    Save {
        /// The image to write.
        path: std::path::PathBuf,
        /// A replacement definition to store in the image.
        dxml: Option<String>,
        /// `VIR_DOMAIN_SAVE_*`.
        flags: u32,
    },
    /// Save to the managed-save image and stop (`virDomainManagedSave`).
    ManagedSave {
        /// `VIR_DOMAIN_SAVE_*`.
        flags: u32,
    },
    /// Start this (inactive) domain from a save image (`virDomainRestoreFlags`).
    Restore {
        /// The definition to run (from the image, or its replacement).
        def: Box<DomainDef>,
        /// The image.
        path: std::path::PathBuf,
        /// `VIR_DOMAIN_SAVE_*`.
        flags: u32,
    },
    /// Run an I/O helper child and wait for it (used by save and by tests).
    RunHelper(HelperTask),
}

impl JobRequest {
    fn name(&self) -> &'static str {
        match self {
            JobRequest::Start { .. } => "start",
            JobRequest::Suspend => "suspend",
            JobRequest::Resume => "resume",
            JobRequest::Shutdown => "shutdown",
            JobRequest::Reboot => "reboot",
            JobRequest::Reset => "reset",
            JobRequest::Destroy { .. } => "destroy",
            JobRequest::Undefine { .. } => "undefine",
            JobRequest::Redefine(_) => "define",
            JobRequest::SetAutostart(_) => "autostart",
            JobRequest::ManagedSaveRemove => "managedsave-remove",
            JobRequest::Save { .. } => "save",
            JobRequest::ManagedSave { .. } => "managedsave",
            JobRequest::Restore { .. } => "restore",
            JobRequest::RunHelper(_) => "io-helper",
        }
    }
}

/// What a job hands back when its async part is done.
pub struct JobDone {
    guest: Option<Box<dyn Guest>>,
    outcome: VirResult<Outcome>,
}

enum Outcome {
    Started {
        events: mpsc::UnboundedReceiver<GuestEvent>,
        paused: bool,
        def: Box<DomainDef>,
        id: u32,
        /// From a save image (reason and event "restored").
        restored: bool,
        /// From the managed-save image (removed on success).
        from_managed: bool,
        /// `def` is the persistent definition with what the hypervisor filled in
        /// (default devices, PCI addresses): the definition takes it too.
        placed: bool,
    },
    Saved {
        managed: bool,
        stats: Option<JobInfo>,
    },
    Paused,
    Resumed,
    Shutdown(ShutdownOutcome),
    Rebooted(bool),
    Reset,
    Destroyed,
    Helper(String),
}

/// The reply to a job: success carries a short note (helpers say what they did).
pub type JobReply = oneshot::Sender<VirResult<String>>;

/// Messages a domain actor accepts.
pub enum DomainMsg {
    /// Runtime facts; answered at once.
    Info(oneshot::Sender<DomainInfo>),
    /// The XML description (`VIR_DOMAIN_XML_*` flags); answered at once.
    XmlDesc {
        /// Flags.
        flags: u32,
        /// Where the XML goes.
        reply: oneshot::Sender<VirResult<String>>,
    },
    /// The running guest's probe (questions to its hypervisor that change nothing),
    /// `None` when shut off or the driver has none; answered at once, even while a job
    /// holds the guest.
    Probe(oneshot::Sender<Option<Arc<dyn GuestProbe>>>),
    /// The running job's progress (`virDomainGetJobInfo`); answered at once.
    JobInfo(oneshot::Sender<JobInfo>),
    /// Abort the running save (`virDomainAbortJob`); answered at once.
    AbortJob(oneshot::Sender<VirResult<()>>),
    /// A modifying operation.
    Job(JobRequest, JobReply),
    /// Internal: a job's async part finished.
    JobDone(u64, JobDone),
    /// Internal: a job's async part panicked (a bug). The actor then fails, and its
    /// driver rebuilds the domain from disk, reattaching a guest that still runs.
    JobPanicked(u64),
    /// Internal: a waiting job's time is up.
    JobWaitExpired(u64),
    /// Internal: the guest did something (generation, event).
    Guest(u64, GuestEvent),
    /// Stop the actor (host shutdown). Guests keep running; a restarted host reattaches.
    Retire(oneshot::Sender<()>),
}

/// How a domain actor starts.
pub struct DomainArgs {
    /// The driver context.
    pub ctx: Arc<DriverCtx>,
    /// The driver actor (jobs that reach a hibernating actor are sent back to it).
    pub driver: ActorRef<DriverMsg>,
    /// The definition (persistent config, or the live one of a transient domain).
    pub config: DomainDef,
    /// Persistent or transient.
    pub persistent: bool,
    /// Autostart flag.
    pub autostart: bool,
    /// Has a managed-save image.
    pub managed_save: bool,
    /// A guest that already runs (reattached or created in the driver).
    pub running: Option<RunningGuest>,
    /// State and reason to report when not running.
    pub initial: StateReason,
    /// The dormant form `config` was woken from, if any: it is `config`'s text, so the
    /// actor hands it back when it sleeps again instead of formatting the same XML.
    pub dormant: Option<Arc<Dormant>>,
}

/// A guest handed to a new domain actor already running.
pub struct RunningGuest {
    /// Control object and events.
    pub started: vireo_drivers::hypervisor::Started,
    /// Its definition.
    pub live: DomainDef,
    /// Its id.
    pub id: u32,
    /// The state/reason to report.
    pub state: StateReason,
}

struct ActiveJob {
    id: u64,
    name: &'static str,
    reply: JobReply,
    helper: Option<ActorId>,
    progress: Option<save::JobProgress>,
}

struct Waiting {
    id: u64,
    req: JobRequest,
    reply: JobReply,
}

/// The domain actor's state.
pub struct DomainActorState {
    ctx: Arc<DriverCtx>,
    driver: ActorRef<DriverMsg>,
    /// Jobs on their way to this actor (see [`crate::directory::LiveActor`]).
    inbound: Arc<AtomicUsize>,
    uuid: Uuid,
    name: String,
    config: DomainDef,
    /// `config`'s dormant form while `config` is unchanged (see [`DomainArgs::dormant`]).
    dormant: Option<Arc<Dormant>>,
    live: Option<DomainDef>,
    persistent: bool,
    autostart: bool,
    managed_save: bool,
    state: StateReason,
    id: Option<DomainId>,
    guest: Option<Box<dyn Guest>>,
    /// The running guest's probe, kept while a job holds the guest.
    probe: Option<Arc<dyn GuestProbe>>,
    guest_gen: u64,
    job: Option<ActiveJob>,
    waiting: VecDeque<Waiting>,
    deferred: Vec<GuestEvent>,
    next_job: u64,
    helper_failures: HashMap<ActorId, oneshot::Sender<String>>,
    removed: bool,
    /// The domain went back to hibernation; this actor only drains its mailbox.
    hibernating: bool,
    /// A status record of this domain is on disk (see [`DomainActorState::save_status`]).
    status_written: bool,
    /// The guest's usage as last read, reported while a job holds the guest.
    last_usage: Option<GuestUsage>,
    /// A save in flight (undone if it fails; named in the status record).
    saving: Option<save::Saving>,
}

/// The behaviour of a domain actor.
pub struct DomainActor;

impl Actor for DomainActor {
    type Msg = DomainMsg;
    type State = DomainActorState;
    /// The start arguments and the counter of jobs on their way to the actor.
    type Arguments = (DomainArgs, Arc<AtomicUsize>);

    async fn pre_start(
        &self,
        myself: ActorRef<DomainMsg>,
        (args, inbound): (DomainArgs, Arc<AtomicUsize>),
    ) -> Result<DomainActorState, ActorProcessingErr> {
        let uuid = args.config.uuid().unwrap_or_else(Uuid::new_v4);
        let name = args.config.name().to_string();
        let mut st = DomainActorState {
            ctx: args.ctx,
            driver: args.driver,
            inbound,
            uuid,
            name,
            config: args.config,
            dormant: args.dormant,
            live: None,
            persistent: args.persistent,
            autostart: args.autostart,
            managed_save: args.managed_save,
            state: args.initial,
            id: None,
            guest: None,
            probe: None,
            guest_gen: 0,
            job: None,
            waiting: VecDeque::new(),
            deferred: Vec::new(),
            next_job: 1,
            helper_failures: HashMap::new(),
            removed: false,
            hibernating: false,
            // A domain loaded from a status record (reattached) has one on disk.
            status_written: args.running.is_some(),
            last_usage: None,
            saving: None,
        };
        if let Some(r) = args.running {
            st.attach(&myself, r.started, r.live, r.id, r.state);
        }
        Ok(st)
    }

    async fn handle(
        &self,
        myself: ActorRef<DomainMsg>,
        msg: DomainMsg,
        st: &mut DomainActorState,
    ) -> Result<(), ActorProcessingErr> {
        if let DomainMsg::Job(..) = msg {
            job_arrived(&st.inbound);
        }
        match msg {
            DomainMsg::Info(reply) => {
                let _ = reply.send(st.info());
            }
            DomainMsg::XmlDesc { flags, reply } => {
                let r = st.xml_desc(flags);
                if flags == 0
                    && let Ok(x) = &r
                {
                    // Kept for the next readers until something changes.
                    let text: Arc<str> = Arc::from(x.as_str());
                    st.ctx
                        .directory
                        .update(&st.uuid, |e| e.live_xml = Some(text));
                }
                let _ = reply.send(r);
            }
            DomainMsg::Probe(reply) => {
                let _ = reply.send(st.probe.clone());
            }
            DomainMsg::JobInfo(reply) => {
                let _ = reply.send(st.job_info());
            }
            DomainMsg::AbortJob(reply) => {
                let _ = reply.send(st.abort_job());
            }
            DomainMsg::Job(req, reply) if st.hibernating => {
                // A job sent without being counted (none of ours) and queued before the
                // domain went back to hibernation: the driver wakes it again (with a
                // new actor) and hands the job over.
                let msg = DomainMsg::Job(req, reply);
                if let Err(ractor::MessagingErr::SendErr(DriverMsg::Wake(_, msg))) =
                    st.driver.cast(DriverMsg::Wake(st.uuid, msg))
                    && let DomainMsg::Job(_, reply) = msg
                {
                    let _ = reply.send(Err(st.gone_error()));
                }
            }
            DomainMsg::Job(req, reply) => {
                if st.removed {
                    let _ = reply.send(Err(st.gone_error()));
                } else if st.job.is_none() {
                    // Boxed, as the other awaits here: ractor copies this future for every
                    // message, and it would otherwise be as large as a job's start.
                    Box::pin(st.begin(&myself, req, reply)).await;
                } else {
                    let id = st.next_job;
                    st.next_job += 1;
                    st.waiting.push_back(Waiting { id, req, reply });
                    let me = myself.clone();
                    let wait = st.ctx.job_wait;
                    tokio::spawn(async move {
                        tokio::time::sleep(wait).await;
                        let _ = me.cast(DomainMsg::JobWaitExpired(id));
                    });
                }
            }
            DomainMsg::JobWaitExpired(id) => {
                if let Some(pos) = st.waiting.iter().position(|w| w.id == id) {
                    let w = st.waiting.remove(pos).expect("position is valid");
                    let holder = st.job.as_ref().map(|j| j.name).unwrap_or("none");
                    let _ = w.reply.send(Err(VirError::timeout(
                        ErrorDomain::Domain,
                        format!("cannot acquire state change lock (held by job '{holder}')"),
                    )));
                }
            }
            DomainMsg::JobPanicked(id) => {
                // The guest the job took out of the actor is lost with it: only a
                // rebuild from disk can know the guest's state again.
                if st.job.as_ref().map(|j| j.id) == Some(id) {
                    return Err(format!("job {id} of domain '{}' panicked", st.name).into());
                }
            }
            DomainMsg::JobDone(id, done) => {
                if st.job.as_ref().map(|j| j.id) == Some(id) {
                    let job = st.job.take().expect("checked above");
                    if let Some(h) = job.helper {
                        st.helper_failures.remove(&h);
                    }
                    let result = st.finish(&myself, done);
                    let _ = job.reply.send(result);
                    let mut deferred = std::mem::take(&mut st.deferred);
                    if job.progress.is_some() {
                        // A save or restore pauses and resumes the guest itself and has
                        // already set the state those stops and resumes led to.
                        deferred
                            .retain(|e| !matches!(e, GuestEvent::Stopped | GuestEvent::Resumed));
                    }
                    for ev in deferred {
                        Box::pin(st.guest_event(&myself, ev)).await;
                    }
                    Box::pin(st.next_waiting(&myself)).await;
                }
            }
            DomainMsg::Guest(generation, ev) => {
                if generation == st.guest_gen {
                    if st.job.is_some() {
                        st.deferred.push(ev);
                    } else {
                        Box::pin(st.guest_event(&myself, ev)).await;
                    }
                }
            }
            DomainMsg::Retire(reply) => {
                // The daemon shuts down: a guest kept in memory is recorded now.
                if st.state.state.is_active() && st.guest.is_some() {
                    st.write_status(false);
                }
                let _ = reply.send(());
                myself.stop(None);
            }
        }
        if st.removed && st.job.is_none() && st.waiting.is_empty() {
            myself.stop(None);
        } else {
            st.try_hibernate(&myself);
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<DomainMsg>,
        evt: SupervisionEvent,
        st: &mut DomainActorState,
    ) -> Result<(), ActorProcessingErr> {
        // Children are I/O helpers. Their failure fails their job, never this actor.
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                tracing::warn!(domain = %st.name, helper = %cell.get_id(), error = %err, "I/O helper failed");
                if let Some(tx) = st.helper_failures.remove(&cell.get_id()) {
                    let _ = tx.send(format!("panicked: {err}"));
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(tx) = st.helper_failures.remove(&cell.get_id()) {
                    let why = reason.unwrap_or_else(|| "stopped".into());
                    let _ = tx.send(format!("terminated before finishing ({why})"));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// `virDomainGetXMLDesc` of a domain with persistent definition `config`, running with
/// `live` under `id` if active.
pub(crate) fn xml_desc(
    ctx: &DriverCtx,
    config: &DomainDef,
    live: Option<&DomainDef>,
    id: Option<DomainId>,
    flags: u32,
) -> VirResult<String> {
    let unknown = flags & !(XML_SECURE | XML_INACTIVE | 4 | 8);
    if unknown != 0 {
        return Err(VirError::unsupported_flags(
            ctx.hv.error_domain(),
            flags,
            "virDomainGetXMLDesc",
        ));
    }
    let inactive = flags & XML_INACTIVE != 0;
    let def = if inactive {
        config
    } else {
        live.unwrap_or(config)
    };
    let id = if inactive { None } else { id.map(|d| d.0) };
    Ok(def.format(&FormatOptions {
        id,
        inactive,
        secure: flags & XML_SECURE != 0,
    }))
}

/// What `virDomainGetInfo` says of a hibernated domain.
pub(crate) fn dormant_info(e: &crate::directory::DomainEntry, d: &Dormant) -> DomainInfo {
    DomainInfo {
        name: e.name.clone(),
        uuid: e.uuid,
        id: None,
        state: e.state,
        persistent: e.persistent,
        autostart: e.autostart,
        managed_save: e.managed_save,
        max_mem_kib: d.max_mem_kib,
        mem_kib: d.mem_kib,
        vcpus: d.vcpus,
        max_vcpus: d.max_vcpus,
        cpu_time_ns: 0,
        usage: None,
        updated: false,
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl DomainActorState {
    fn flavour(&self) -> Flavour {
        self.ctx.hv.flavour()
    }

    /// Hands the domain back to hibernation if it is persistent, shut off and idle.
    fn try_hibernate(&mut self, myself: &ActorRef<DomainMsg>) {
        let idle = self.persistent
            && !self.removed
            && !self.hibernating
            && !self.state.state.is_active()
            && self.guest.is_none()
            && self.job.is_none()
            && self.waiting.is_empty()
            && self.deferred.is_empty();
        if !idle {
            return;
        }
        let dormant = match &self.dormant {
            Some(d) => d.clone(),
            None => Arc::new(Dormant::of(&self.config)),
        };
        if self
            .ctx
            .directory
            .hibernate(&self.uuid, myself.get_id(), dormant)
        {
            self.hibernating = true;
            // From here on senders get their message back and re-route it; what is
            // already queued is still handled (see the module docs).
            let _ = myself.get_cell().drain();
        }
    }

    fn object(&self) -> ObjectRef {
        ObjectRef::domain(self.name.clone(), self.uuid, self.id)
    }

    fn publish(&self, kind: EventKind) {
        self.ctx.hub.publish(Event {
            origin: self.ctx.origin,
            object: self.object(),
            kind,
        });
    }

    fn lifecycle(&self, event: DomainEventKind, detail: i32) {
        self.publish(EventKind::lifecycle(event, detail));
    }

    fn gone_error(&self) -> VirError {
        VirError::with(
            vireo_messages::ErrorCode::NoDomain,
            self.ctx.hv.error_domain(),
            format!(
                "no domain with matching uuid '{}' ({})",
                self.uuid, self.name
            ),
        )
    }

    fn current_def(&self) -> &DomainDef {
        self.live.as_ref().unwrap_or(&self.config)
    }

    fn info(&mut self) -> DomainInfo {
        let active = self.state.state.is_active();
        // While a job has taken the guest out of the actor, report what was last read.
        if let Some(u) = self.guest.as_ref().and_then(|g| g.usage()) {
            self.last_usage = Some(u);
        }
        let usage = if active {
            self.last_usage.clone()
        } else {
            None
        };
        let def = self.current_def();
        DomainInfo {
            name: self.name.clone(),
            uuid: self.uuid,
            id: self.id,
            state: self.state,
            persistent: self.persistent,
            autostart: self.autostart,
            managed_save: self.managed_save,
            max_mem_kib: def.memory_kib(),
            mem_kib: def.current_memory_kib(),
            vcpus: def.current_vcpus(),
            max_vcpus: def.vcpus(),
            // libvirt's test driver reports the wall clock; real guests their CPU time
            // (the last value read while a job holds the guest).
            cpu_time_ns: match (active, self.flavour()) {
                (false, _) => 0,
                (true, Flavour::Test) => now_ns(),
                (true, _) => usage
                    .as_ref()
                    .map(GuestUsage::cpu_time_ns)
                    .or_else(|| self.guest.as_ref().and_then(|g| g.cpu_time_ns()))
                    .unwrap_or(0),
            },
            usage,
            updated: self.live.is_some()
                && self.persistent
                && self.live.as_ref() != Some(&self.config),
        }
    }

    fn xml_desc(&self, flags: u32) -> VirResult<String> {
        xml_desc(&self.ctx, &self.config, self.live.as_ref(), self.id, flags)
    }

    fn sync_directory(&self) {
        let (id, state, persistent, autostart, managed_save, name) = (
            self.id,
            self.state,
            self.persistent,
            self.autostart,
            self.managed_save,
            self.name.clone(),
        );
        self.ctx.directory.update(&self.uuid, |e| {
            e.live_xml = None;
            e.id = id;
            e.state = state;
            e.persistent = persistent;
            e.autostart = autostart;
            e.managed_save = managed_save;
            e.name = name;
        });
    }

    fn save_status(&mut self) {
        self.save_status_with(false);
    }

    /// Whether this guest's runtime state lives only in the daemon's memory between
    /// clean shutdowns: guests of the test hypervisor, which *are* memory (as in libvirt's
    /// test driver), outside a save. Their status record is written when the daemon
    /// shuts down cleanly ([`DomainMsg::Retire`]), so they come back after a restart; a
    /// daemon killed with SIGKILL loses them as any in-memory hypervisor loses its guests
    /// in a crash, and they come back shut off. A save in progress is always recorded,
    /// so that a killed daemon can remove the partial image.
    fn status_in_memory(&self) -> bool {
        self.flavour() == Flavour::Test && self.saving.is_none()
    }

    /// Writes the runtime status record. The live XML is left out when it is the
    /// persistent definition itself (a guest started from it, not changed since): the
    /// definition file says it already, and a reattach falls back to it. `full` writes
    /// it anyway — before the definition file is replaced (redefine of a running domain),
    /// so no crash in between can make the new definition pass for the live one.
    fn save_status_with(&mut self, full: bool) {
        if self.status_in_memory() {
            // A record left from a save would describe the past: it goes.
            if self.status_written {
                self.remove_status();
            }
            return;
        }
        self.write_status(full);
    }

    /// Writes the status record now (see [`DomainActorState::save_status_with`]).
    fn write_status(&mut self, full: bool) {
        let Some(store) = &self.ctx.store else { return };
        let Some(guest) = &self.guest else { return };
        let live_is_config = self.persistent && self.live.as_ref() == Some(&self.config);
        let live = (full || !live_is_config).then(|| self.current_def().format(&Dormant::FORMAT));
        let record = serde_json::json!({
            "uuid": self.uuid.to_string(),
            "state": self.state.state as i32,
            "reason": self.state.reason,
            "id": self.id.map(|d| d.0),
            "persistent": self.persistent,
            "live_xml": live,
            "guest": guest.status_record(),
            "saving": self.saving.as_ref().map(save::Saving::record),
        });
        match store.save_status(StoredKind::Domain, &self.name, &record) {
            Ok(()) => self.status_written = true,
            Err(e) => tracing::warn!(domain = %self.name, error = %e, "cannot write status record"),
        }
    }

    fn remove_status(&mut self) {
        if !self.status_written {
            return;
        }
        self.status_written = false;
        if let Some(store) = &self.ctx.store
            && let Err(e) = store.remove_status(StoredKind::Domain, &self.name)
        {
            tracing::warn!(domain = %self.name, error = %e, "cannot remove status record");
        }
    }

    /// Takes a running guest into this actor: pumps its events, records its state.
    fn attach(
        &mut self,
        myself: &ActorRef<DomainMsg>,
        started: vireo_drivers::hypervisor::Started,
        live: DomainDef,
        id: u32,
        state: StateReason,
    ) {
        self.guest_gen += 1;
        let generation = self.guest_gen;
        let mut events = started.events;
        let me = myself.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if me.cast(DomainMsg::Guest(generation, ev)).is_err() {
                    break;
                }
            }
        });
        self.probe = started.guest.probe();
        self.guest = Some(started.guest);
        self.last_usage = None;
        self.live = Some(live);
        self.ctx.directory.update(&self.uuid, |e| e.live_xml = None);
        self.id = Some(DomainId(id));
        self.state = state;
    }

    /// Takes what the hypervisor filled in at start (default devices, the PCI addresses
    /// QEMU chose) into the persistent definition too, as libvirt assigns addresses at
    /// define: the next boot keeps the same layout, and the live definition does not
    /// pass for a changed one (DOMAIN_IS_UPDATED). No event: nothing the user defined
    /// changed. If the write fails the definition stays as it was.
    fn adopt_placement(&mut self) {
        let Some(live) = self.live.clone() else {
            return;
        };
        if let Some(store) = &self.ctx.store
            && let Err(e) = store.save_def(
                StoredKind::Domain,
                &self.name,
                &live.format(&Dormant::FORMAT),
            )
        {
            tracing::warn!(domain = %self.name, "cannot record the PCI addresses in the definition: {e}");
            return;
        }
        self.config = live;
        self.dormant = None;
    }

    async fn next_waiting(&mut self, myself: &ActorRef<DomainMsg>) {
        while self.job.is_none() {
            let Some(w) = self.waiting.pop_front() else {
                break;
            };
            if self.removed {
                let _ = w.reply.send(Err(self.gone_error()));
                continue;
            }
            self.begin(myself, w.req, w.reply).await;
        }
    }

    /// Starts a job that holds the slot; `fut` runs detached and reports back.
    fn spawn_job(
        &mut self,
        myself: &ActorRef<DomainMsg>,
        name: &'static str,
        reply: JobReply,
        fut: impl std::future::Future<Output = JobDone> + Send + 'static,
    ) -> u64 {
        let id = self.next_job;
        self.next_job += 1;
        self.job = Some(ActiveJob {
            id,
            name,
            reply,
            helper: None,
            progress: None,
        });
        let me = myself.clone();
        // Tried once right here: a job that needs no waiting (the test hypervisor's, a
        // failed check) is done without a task of its own; its end still comes through
        // the mailbox, after what is queued, as a detached job's would.
        let mut fut = Box::pin(fut);
        let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
        if let std::task::Poll::Ready(done) = fut.as_mut().poll(&mut cx) {
            let _ = me.cast(DomainMsg::JobDone(id, done));
            return id;
        }
        tokio::spawn(async move {
            use futures::FutureExt;
            match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
                Ok(done) => {
                    let _ = me.cast(DomainMsg::JobDone(id, done));
                }
                Err(_) => {
                    let _ = me.cast(DomainMsg::JobPanicked(id));
                }
            }
        });
        id
    }

    fn guest_op<F>(
        &mut self,
        myself: &ActorRef<DomainMsg>,
        name: &'static str,
        reply: JobReply,
        op: F,
    ) where
        F: for<'g> FnOnce(
                &'g mut Box<dyn Guest>,
            )
                -> vireo_drivers::hypervisor::BoxFuture<'g, VirResult<Outcome>>
            + Send
            + 'static,
    {
        let Some(mut guest) = self.guest.take() else {
            let _ = reply.send(Err(VirError::operation_invalid(
                ErrorDomain::Domain,
                "domain is not running",
            )));
            return;
        };
        self.spawn_job(myself, name, reply, async move {
            let outcome = op(&mut guest).await;
            JobDone {
                guest: Some(guest),
                outcome,
            }
        });
    }

    async fn begin(&mut self, myself: &ActorRef<DomainMsg>, req: JobRequest, reply: JobReply) {
        let flavour = self.flavour();
        let name = req.name();
        let op = match &req {
            JobRequest::Start { .. } | JobRequest::Restore { .. } => Some(Op::Start),
            JobRequest::Suspend => Some(Op::Suspend),
            JobRequest::Resume => Some(Op::Resume),
            JobRequest::Shutdown => Some(Op::Shutdown),
            JobRequest::Reboot => Some(Op::Reboot),
            JobRequest::Reset => Some(Op::Reset),
            JobRequest::Destroy { .. } => Some(Op::Destroy),
            _ => None,
        };
        if let Some(op) = op
            && let Err(e) = check(flavour, op, &self.name, self.state.state)
        {
            let _ = reply.send(Err(e));
            return;
        }
        match req {
            JobRequest::Start { paused, force_boot } => {
                // libvirt's test driver silently drops a managed-save image on start
                // (see `finish`); the QEMU flavour resumes from it unless told not to.
                if self.managed_save
                    && flavour == Flavour::Qemu
                    && let Some(path) = self
                        .ctx
                        .store
                        .as_ref()
                        .map(|s| s.managed_save_path(&self.name))
                {
                    let usable = !force_boot
                        && std::fs::File::open(&path)
                            .and_then(|f| vireo_drivers::saveimage::is_partial(&f))
                            .map(|partial| !partial)
                            .unwrap_or(false);
                    if usable {
                        let flags = if paused { save::SAVE_PAUSED } else { 0 };
                        self.begin_restore(myself, name, reply, None, path, flags, true);
                        return;
                    }
                    // Forced boot, or no usable image (gone or never completed): drop it.
                    let _ = vireo_drivers::store::remove_durable(&path);
                    self.managed_save = false;
                    self.sync_directory();
                }
                let def = Box::new(self.config.clone());
                let id = self.ctx.allocate_id();
                let hv = self.ctx.hv.clone();
                self.spawn_job(myself, name, reply, async move {
                    let opts = StartOptions { paused, id };
                    match hv.start(&def, opts).await {
                        Ok(s) => JobDone {
                            guest: Some(s.guest),
                            outcome: Ok(Outcome::Started {
                                events: s.events,
                                paused: s.paused,
                                placed: s.live.is_some(),
                                def: s.live.map(Box::new).unwrap_or(def),
                                id,
                                restored: false,
                                from_managed: false,
                            }),
                        },
                        Err(e) => JobDone {
                            guest: None,
                            outcome: Err(e),
                        },
                    }
                });
            }
            JobRequest::Suspend => self.guest_op(myself, name, reply, |g| {
                Box::pin(async move { g.pause().await.map(|_| Outcome::Paused) })
            }),
            JobRequest::Resume => self.guest_op(myself, name, reply, |g| {
                Box::pin(async move { g.resume().await.map(|_| Outcome::Resumed) })
            }),
            JobRequest::Shutdown => self.guest_op(myself, name, reply, |g| {
                Box::pin(async move { g.shutdown().await.map(Outcome::Shutdown) })
            }),
            JobRequest::Reboot => self.guest_op(myself, name, reply, |g| {
                Box::pin(async move { g.reboot().await.map(Outcome::Rebooted) })
            }),
            JobRequest::Reset => self.guest_op(myself, name, reply, |g| {
                Box::pin(async move { g.reset().await.map(|_| Outcome::Reset) })
            }),
            JobRequest::Destroy { graceful } => self.guest_op(myself, name, reply, move |g| {
                Box::pin(async move { g.destroy(graceful).await.map(|_| Outcome::Destroyed) })
            }),
            JobRequest::Undefine { flags } => {
                let _ = reply.send(self.undefine(flags).map(|_| String::new()));
            }
            JobRequest::Redefine(def) => {
                let _ = reply.send(self.redefine(*def).map(|_| String::new()));
            }
            JobRequest::SetAutostart(on) => {
                let _ = reply.send(self.set_autostart(on).map(|_| String::new()));
            }
            JobRequest::ManagedSaveRemove => {
                self.managed_save = false;
                if let Some(store) = &self.ctx.store {
                    let _ =
                        vireo_drivers::store::remove_durable(&store.managed_save_path(&self.name));
                }
                self.sync_directory();
                let _ = reply.send(Ok(String::new()));
            }
            JobRequest::Save { path, dxml, flags } => {
                self.begin_save(myself, name, reply, Some(path), dxml, flags)
                    .await;
            }
            JobRequest::ManagedSave { flags } => {
                self.begin_save(myself, name, reply, None, None, flags)
                    .await;
            }
            JobRequest::Restore { def, path, flags } => {
                self.begin_restore(myself, name, reply, Some(def), path, flags, false);
            }
            JobRequest::RunHelper(task) => {
                let helper_name = task.name.clone();
                let (helper, done_rx, fail_rx) = match self.spawn_helper(myself, task).await {
                    Ok(h) => h,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                let hid = helper.get_id();
                let guest = self.guest.take();
                self.spawn_job(myself, name, reply, async move {
                    // The helper reports through `done`; if it dies instead, the sender is
                    // dropped and the supervision event brings the reason shortly after.
                    let outcome = match done_rx.await {
                        Ok(r) => r.map(Outcome::Helper),
                        Err(_) => {
                            let why =
                                tokio::time::timeout(std::time::Duration::from_secs(5), fail_rx)
                                    .await
                                    .ok()
                                    .and_then(|r| r.ok())
                                    .unwrap_or_else(|| "ended without a result".into());
                            Err(VirError::internal(
                                ErrorDomain::Domain,
                                format!("I/O helper '{helper_name}' failed: {why}"),
                            ))
                        }
                    };
                    JobDone { guest, outcome }
                });
                if let Some(j) = self.job.as_mut() {
                    j.helper = Some(hid);
                }
            }
        }
    }

    /// Spawns an I/O helper child running `task`; returns it, the receiver of its result
    /// and the receiver of the reason it died (if it does).
    async fn spawn_helper(
        &mut self,
        myself: &ActorRef<DomainMsg>,
        task: HelperTask,
    ) -> VirResult<(
        ActorRef<HelperMsg>,
        oneshot::Receiver<VirResult<String>>,
        oneshot::Receiver<String>,
    )> {
        let (done_tx, done_rx) = oneshot::channel();
        let (fail_tx, fail_rx) = oneshot::channel();
        let helper_name = task.name.clone();
        let (helper, _) = Actor::spawn_linked(
            None,
            IoHelper,
            HelperArgs {
                task,
                done: done_tx,
            },
            myself.get_cell(),
        )
        .await
        .map_err(|e| {
            VirError::internal(
                ErrorDomain::Domain,
                format!("cannot start I/O helper '{helper_name}': {e}"),
            )
        })?;
        self.helper_failures.insert(helper.get_id(), fail_tx);
        Ok((helper, done_rx, fail_rx))
    }

    /// Applies a finished job's outcome; returns the reply for the caller.
    fn finish(&mut self, myself: &ActorRef<DomainMsg>, done: JobDone) -> VirResult<String> {
        let mut guest_back = done.guest;
        let outcome = match done.outcome {
            Ok(o) => o,
            Err(e) => {
                // A failed operation leaves the guest (if any) as it was.
                if self.live.is_some() {
                    self.guest = guest_back;
                }
                if self.saving.is_some() {
                    self.save_failed();
                }
                // A transient domain made for a restore that failed goes away again.
                if !self.persistent && !self.state.state.is_active() && !self.removed {
                    self.ctx.directory.remove(&self.uuid);
                    self.removed = true;
                }
                return Err(e);
            }
        };
        if !matches!(outcome, Outcome::Started { .. }) {
            self.guest = guest_back.take();
        }
        match outcome {
            Outcome::Started {
                events,
                paused: is_paused,
                def,
                id,
                restored,
                from_managed,
                placed,
            } => {
                let Some(guest) = guest_back else {
                    return Err(VirError::internal(
                        self.ctx.hv.error_domain(),
                        "the hypervisor started no guest",
                    ));
                };
                let state = match (is_paused, restored) {
                    // libvirt leaves a restored guest started paused in "migration".
                    (true, true) => StateReason::new(DomainState::Paused, paused::MIGRATION),
                    (true, false) => StateReason::new(DomainState::Paused, paused::USER),
                    (false, false) => StateReason::new(DomainState::Running, running::BOOTED),
                    (false, true) => StateReason::new(DomainState::Running, running::RESTORED),
                };
                let started = vireo_drivers::hypervisor::Started {
                    guest,
                    events,
                    paused: is_paused,
                    live: None,
                };
                self.attach(myself, started, *def, id, state);
                if placed && self.persistent {
                    self.adopt_placement();
                }
                if self.managed_save && self.flavour() == Flavour::Test {
                    // libvirt's test driver drops the managed-save image on a plain start.
                    self.managed_save = false;
                    if let Some(store) = &self.ctx.store {
                        let _ = vireo_drivers::store::remove_durable(
                            &store.managed_save_path(&self.name),
                        );
                    }
                }
                if from_managed {
                    self.managed_save = false;
                    if let Some(store) = &self.ctx.store {
                        let _ = vireo_drivers::store::remove_durable(
                            &store.managed_save_path(&self.name),
                        );
                    }
                }
                self.after_change();
                if restored {
                    self.lifecycle(DomainEventKind::Started, detail::started::RESTORED);
                    if is_paused {
                        self.lifecycle(DomainEventKind::Suspended, detail::suspended::RESTORED);
                    } else if self.flavour() == Flavour::Qemu {
                        // libvirt's qemu driver: the CPUs' start after a restore is
                        // reported with the "from snapshot" detail.
                        self.lifecycle(DomainEventKind::Resumed, detail::resumed::FROM_SNAPSHOT);
                    }
                } else {
                    // libvirt's qemu driver reports the CPUs' first start (QEMU's RESUME
                    // after `cont`) before the domain's start.
                    if !is_paused && self.flavour() == Flavour::Qemu {
                        self.lifecycle(DomainEventKind::Resumed, detail::resumed::UNPAUSED);
                    }
                    self.lifecycle(DomainEventKind::Started, detail::started::BOOTED);
                    if is_paused {
                        self.lifecycle(DomainEventKind::Suspended, detail::suspended::PAUSED);
                    }
                }
            }
            Outcome::Saved { managed, stats } => {
                self.guest = None;
                self.saved(managed, stats);
            }
            Outcome::Paused => {
                self.state = StateReason::new(DomainState::Paused, paused::USER);
                self.after_change();
                self.lifecycle(DomainEventKind::Suspended, detail::suspended::PAUSED);
            }
            Outcome::Resumed => {
                self.state = StateReason::new(DomainState::Running, running::UNPAUSED);
                self.after_change();
                self.lifecycle(DomainEventKind::Resumed, detail::resumed::UNPAUSED);
            }
            Outcome::Shutdown(ShutdownOutcome::PoweredOff) => {
                self.powered_off(myself, false);
            }
            Outcome::Shutdown(ShutdownOutcome::Requested) => {}
            Outcome::Rebooted(done) => {
                if done {
                    self.rebooted(myself);
                }
            }
            Outcome::Reset => {}
            Outcome::Destroyed => {
                // libvirt's qemu driver: QEMU reports the SIGTERM as a host-initiated
                // shutdown before the domain is seen stopped.
                if self.flavour() == Flavour::Qemu {
                    self.lifecycle(DomainEventKind::Shutdown, detail::shutdown::HOST);
                }
                self.stopped(
                    StateReason::new(DomainState::Shutoff, shutoff::DESTROYED),
                    detail::stopped::DESTROYED,
                );
            }
            Outcome::Helper(note) => return Ok(note),
        }
        Ok(String::new())
    }

    fn after_change(&mut self) {
        self.sync_directory();
        self.save_status();
    }

    /// The guest is off after a shutdown: apply `<on_poweroff>`.
    fn powered_off(&mut self, myself: &ActorRef<DomainMsg>, by_guest: bool) {
        let action = self.current_def().on_poweroff();
        if self.flavour() == Flavour::Qemu {
            let d = if by_guest {
                detail::shutdown::GUEST
            } else {
                detail::shutdown::HOST
            };
            self.lifecycle(DomainEventKind::Shutdown, d);
        }
        match action {
            LifecycleAction::Restart | LifecycleAction::RenameRestart => {
                self.restart_in_place(myself);
            }
            _ => self.stopped(
                StateReason::new(DomainState::Shutoff, shutoff::SHUTDOWN),
                detail::stopped::SHUTDOWN,
            ),
        }
    }

    /// A reboot happened: apply `<on_reboot>`.
    fn rebooted(&mut self, myself: &ActorRef<DomainMsg>) {
        match self.current_def().on_reboot() {
            LifecycleAction::Destroy => self.stopped(
                StateReason::new(DomainState::Shutoff, shutoff::SHUTDOWN),
                detail::stopped::SHUTDOWN,
            ),
            _ => {
                let _ = myself;
                self.state = StateReason::new(DomainState::Running, running::BOOTED);
                self.after_change();
                if self.flavour() == Flavour::Qemu {
                    self.publish(EventKind::Domain(DomainEvent::Reboot));
                }
            }
        }
    }

    /// `<on_poweroff>restart` and friends: the guest comes back at once.
    fn restart_in_place(&mut self, _myself: &ActorRef<DomainMsg>) {
        self.state = StateReason::new(DomainState::Running, running::BOOTED);
        self.after_change();
    }

    /// The guest is gone: record the final state, emit STOPPED, drop a transient domain.
    fn stopped(&mut self, state: StateReason, event_detail: i32) {
        self.guest = None;
        self.probe = None;
        self.guest_gen += 1;
        self.state = state;
        self.remove_status();
        // Publish with the id the domain had, then clear it.
        self.lifecycle(DomainEventKind::Stopped, event_detail);
        self.id = None;
        self.live = None;
        if self.persistent {
            self.sync_directory();
        } else {
            self.ctx.directory.remove(&self.uuid);
            self.removed = true;
        }
    }

    fn undefine(&mut self, flags: u32) -> VirResult<()> {
        remove_definition(
            &self.ctx,
            &self.name,
            self.persistent,
            self.managed_save,
            flags,
        )?;
        self.managed_save = false;
        self.autostart = false;
        self.lifecycle(DomainEventKind::Undefined, detail::undefined::REMOVED);
        if self.state.state.is_active() {
            self.persistent = false;
            self.after_change();
        } else {
            self.ctx.directory.remove(&self.uuid);
            self.removed = true;
        }
        Ok(())
    }

    fn redefine(&mut self, def: DomainDef) -> VirResult<()> {
        if self.state.state.is_active() {
            self.save_status_with(true);
        }
        if let Some(store) = &self.ctx.store {
            let xml = def.format(&Dormant::FORMAT);
            store
                .save_def(StoredKind::Domain, &self.name, &xml)
                .map_err(|e| {
                    VirError::system(
                        self.ctx.hv.error_domain(),
                        format!("cannot save config for domain '{}'", self.name),
                        &e,
                    )
                })?;
        }
        let was_persistent = self.persistent;
        self.config = def;
        self.dormant = None;
        self.ctx.directory.update(&self.uuid, |e| e.live_xml = None);
        self.persistent = true;
        self.after_change();
        let d = if was_persistent {
            detail::defined::UPDATED
        } else {
            detail::defined::ADDED
        };
        self.lifecycle(DomainEventKind::Defined, d);
        Ok(())
    }

    fn set_autostart(&mut self, on: bool) -> VirResult<()> {
        if !self.persistent {
            return Err(VirError::operation_invalid(
                self.ctx.hv.error_domain(),
                "cannot set autostart for transient domain",
            ));
        }
        if let Some(store) = &self.ctx.store {
            store
                .set_autostart(StoredKind::Domain, &self.name, on)
                .map_err(|e| {
                    VirError::system(self.ctx.hv.error_domain(), "cannot change autostart", &e)
                })?;
        }
        self.autostart = on;
        self.sync_directory();
        Ok(())
    }

    async fn guest_event(&mut self, myself: &ActorRef<DomainMsg>, ev: GuestEvent) {
        if !self.state.state.is_active() {
            return;
        }
        match ev {
            GuestEvent::Shutdown { by_guest } => {
                if let Some(mut g) = self.guest.take() {
                    let _ = g.destroy(true).await;
                }
                self.powered_off(myself, by_guest);
            }
            GuestEvent::Exited { crashed } => {
                if crashed {
                    self.stopped(
                        StateReason::new(DomainState::Shutoff, shutoff::CRASHED),
                        detail::stopped::CRASHED,
                    );
                } else {
                    self.stopped(
                        StateReason::new(DomainState::Shutoff, shutoff::SHUTDOWN),
                        detail::stopped::SHUTDOWN,
                    );
                }
            }
            GuestEvent::Reset => {
                self.publish(EventKind::Domain(DomainEvent::Reboot));
                if self.current_def().on_reboot() == LifecycleAction::Destroy {
                    if let Some(mut g) = self.guest.take() {
                        let _ = g.destroy(false).await;
                    }
                    self.stopped(
                        StateReason::new(DomainState::Shutoff, shutoff::SHUTDOWN),
                        detail::stopped::SHUTDOWN,
                    );
                }
            }
            GuestEvent::Stopped => {
                if self.state.state == DomainState::Running {
                    self.state = StateReason::new(DomainState::Paused, paused::UNKNOWN);
                    self.after_change();
                    self.lifecycle(DomainEventKind::Suspended, detail::suspended::PAUSED);
                }
            }
            GuestEvent::Resumed => {
                if self.state.state == DomainState::Paused {
                    self.state = StateReason::new(DomainState::Running, running::UNPAUSED);
                    self.after_change();
                    self.lifecycle(DomainEventKind::Resumed, detail::resumed::UNPAUSED);
                }
            }
            GuestEvent::Panicked => {
                self.lifecycle(DomainEventKind::Crashed, detail::crashed::PANICKED);
                match self.current_def().on_crash() {
                    LifecycleAction::Preserve => {
                        self.state = StateReason::new(
                            DomainState::Crashed,
                            vireo_messages::state::crashed::PANICKED,
                        );
                        self.after_change();
                    }
                    LifecycleAction::Restart | LifecycleAction::RenameRestart => {
                        if let Some(g) = self.guest.as_mut() {
                            let _ = g.reset().await;
                        }
                        self.state = StateReason::new(DomainState::Running, running::CRASHED);
                        self.after_change();
                    }
                    _ => {
                        if let Some(mut g) = self.guest.take() {
                            let _ = g.destroy(false).await;
                        }
                        self.stopped(
                            StateReason::new(DomainState::Shutoff, shutoff::CRASHED),
                            detail::stopped::CRASHED,
                        );
                    }
                }
            }
            GuestEvent::RtcChange { offset } => {
                self.publish(EventKind::Domain(DomainEvent::RtcChange { offset }));
            }
        }
    }
}

/// The part of `virDomainUndefineFlags` that needs no actor: the flag and state checks,
/// then the definition (with its autostart marker, and the managed-save image when the
/// flags allow it) removed from the store. The domain actor calls it for a domain it
/// runs; the driver calls it for a hibernated domain, which it then drops from the
/// directory without waking an actor only to delete it.
pub(crate) fn remove_definition(
    ctx: &DriverCtx,
    name: &str,
    persistent: bool,
    managed_save: bool,
    flags: u32,
) -> VirResult<()> {
    let known = UNDEFINE_MANAGED_SAVE | 2 | 4 | 8 | 16 | 32 | 64;
    if flags & !known != 0 {
        return Err(VirError::unsupported_flags(
            ctx.hv.error_domain(),
            flags,
            "virDomainUndefineFlags",
        ));
    }
    if !persistent {
        return Err(VirError::operation_invalid(
            ctx.hv.error_domain(),
            "cannot undefine transient domain",
        ));
    }
    if managed_save && flags & UNDEFINE_MANAGED_SAVE == 0 {
        return Err(VirError::operation_invalid(
            ctx.hv.error_domain(),
            "Refusing to undefine while domain managed save image exists",
        ));
    }
    if let Some(store) = &ctx.store {
        store.remove_def(StoredKind::Domain, name).map_err(|e| {
            VirError::system(
                ctx.hv.error_domain(),
                format!("cannot remove config for domain '{name}'"),
                &e,
            )
        })?;
        if managed_save {
            let _ = vireo_drivers::store::remove_durable(&store.managed_save_path(name));
        }
    }
    Ok(())
}
