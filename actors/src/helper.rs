//! I/O helper child actors.
//!
//! Long-running byte movers (the one that streams a guest's saved state into a file,
//! volume upload and download) run as child actors linked to their domain actor, never
//! inside it. The supervision tree is:
//!
//! ```text
//! Host
//!  └─ DriverActor (one per open hypervisor)
//!      ├─ DomainActor (one per domain)
//!      │   └─ IoHelper (one per running I/O job, restart policy: never)
//!      ├─ NetworkActor (one per network)
//!      └─ PoolActor (one per storage pool)
//! ```
//!
//! A helper reports its result through a one-shot channel. If it panics or is killed,
//! ractor turns that into a supervision event at the domain actor, which fails the job
//! that owns the helper with a clear error; the domain actor itself, its guest and the
//! host go on. Helpers are never restarted: a half-written stream cannot be resumed
//! safely, so the job fails cleanly and whoever asked may try again.

use std::future::Future;
use std::pin::Pin;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;
use vireo_messages::VirResult;

/// The work a helper does: a future that yields a short result description (e.g.
/// bytes written) or a libvirt error.
pub type HelperWork = Pin<Box<dyn Future<Output = VirResult<String>> + Send>>;

/// A unit of work for a helper.
pub struct HelperTask {
    /// What the helper does, for error messages ("save", "upload", ...).
    pub name: String,
    /// The work itself.
    pub work: HelperWork,
}

impl HelperTask {
    /// A task named `name` doing `work`.
    pub fn new(
        name: impl Into<String>,
        work: impl Future<Output = VirResult<String>> + Send + 'static,
    ) -> HelperTask {
        HelperTask {
            name: name.into(),
            work: Box::pin(work),
        }
    }
}

/// The helper actor: runs one task and stops.
pub struct IoHelper;

/// Messages of the helper (only its own start signal).
pub enum HelperMsg {
    /// Run the task now.
    Run,
}

/// Start arguments: the task and where to report.
pub struct HelperArgs {
    /// The task to run.
    pub task: HelperTask,
    /// Where the result goes.
    pub done: oneshot::Sender<VirResult<String>>,
}

/// The helper's state between start and run.
pub struct HelperState {
    args: Option<HelperArgs>,
}

impl Actor for IoHelper {
    type Msg = HelperMsg;
    type State = HelperState;
    type Arguments = HelperArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<HelperMsg>,
        args: HelperArgs,
    ) -> Result<HelperState, ActorProcessingErr> {
        myself.cast(HelperMsg::Run)?;
        Ok(HelperState { args: Some(args) })
    }

    async fn handle(
        &self,
        myself: ActorRef<HelperMsg>,
        _msg: HelperMsg,
        state: &mut HelperState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(args) = state.args.take() {
            // A panic inside the work unwinds out of this handler; ractor catches it and
            // reports ActorFailed to the supervising domain actor.
            let result = args.task.work.await;
            let _ = args.done.send(result);
        }
        myself.stop(None);
        Ok(())
    }
}
