//! Saving a guest's state into a file descriptor and restoring it, over QMP.
//!
//! Save (the source side of a migration into a pipe; host-facts §2):
//! 1. `migrate-set-capabilities events=on` (so QEMU sends `MIGRATION` events) and
//!    `migrate-set-parameters max-bandwidth` lifted (QEMU's default cap, 128 MiB/s,
//!    alone makes a 512 MiB save take 4 s);
//! 2. a guest that still runs is stopped (`stop`), so the stream is taken from a
//!    stopped guest and the outcome is the same whatever state the caller left it in;
//! 3. `getfd` with the sink (the pipe's write end) passed over `SCM_RIGHTS`, our copy
//!    closed, `migrate uri=fd:NAME`;
//! 4. wait for the terminal status (`completed`, `failed`, `cancelled`) from the
//!    `MIGRATION` event (forwarded by the guest's event pump into a [`MigrationState`]),
//!    while polling `query-migrate` every [`PROGRESS_INTERVAL`] for the progress
//!    counters (`ram.transferred` / `ram.total`), which also catches a terminal status
//!    should an event be missed; an abort request sends `migrate_cancel` once and keeps
//!    waiting for QEMU's verdict; the end of the QMP stream (QEMU died) fails at once.
//!
//! After a completed save the guest is in QEMU's `postmigrate` state (paused; `cont`
//! resumes it, which is what the caller does when its I/O helper failed). After a failed
//! or cancelled save it is paused. While a save runs, the event pump reports no
//! `Stopped`/`Resumed` for it ([`MigrationState::saving`]).
//!
//! The caller's half (the domain actor): create the pipe
//! ([`crate::iohelper::pipe_with_capacity`]), run `Guest::save_to_fd(write end)` and
//! [`crate::iohelper::save_to_image`]`(read end, ..., source_done)` concurrently, and
//! feed `source_done` from `save_to_fd`'s result (a oneshot). Then:
//! - QEMU ok, helper ok → saved; the guest (postmigrate) is destroyed;
//! - QEMU ok, helper failed (write/fdatasync error, helper killed) → failed; no image
//!   is left (the helper removed it); resume the guest if it was running;
//! - QEMU failed or cancelled → failed; `source_done` fails, so the helper removes its
//!   file even though it saw a clean end of file (a short stream); the guest is paused;
//! - QEMU died → failed as above, and the guest's events end with
//!   `Exited{crashed: true}` as for any crash.
//!
//! Restore (the destination side): QEMU started with `-S -incoming defer`, then
//! `migrate-set-capabilities events=on`, `getfd` with the source (an image file
//! positioned at the stream, or a pipe's read end), `migrate-incoming uri=fd:NAME
//! exit-on-error=false` (so a broken stream leaves QEMU alive to tell why, instead of
//! exiting), and wait for `MIGRATION completed`/`failed` on the fresh connection's
//! event stream, before the event pump exists.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use vireo_messages::{ErrorCode, ErrorDomain, VirError};

use super::qmp::{Qmp, QmpError, QmpEvent};
use crate::hypervisor::SaveControl;

/// How often a running save asks QEMU for its progress.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(50);
/// The bandwidth limit set for saves, bytes per second: in effect none.
pub const SAVE_MAX_BANDWIDTH: u64 = 1 << 50;
/// The name under which the save's sink is passed with `getfd`.
pub const SAVE_FD_NAME: &str = "vireo-save";
/// The name under which a restore's source is passed with `getfd`.
pub const RESTORE_FD_NAME: &str = "vireo-restore";

/// libvirt's job names in its migration error messages.
const SAVE_JOB: &str = "domain save";
const RESTORE_JOB: &str = "start";

/// Why a save or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// A QMP command failed.
    #[error("{what}: {source}")]
    Qmp {
        /// What was being done.
        what: &'static str,
        /// The QMP failure.
        #[source]
        source: QmpError,
    },
    /// QEMU reported the migration failed (its `error-desc` when it gave one).
    #[error("job '{job}' failed: {desc}")]
    Failed {
        /// libvirt's job name.
        job: &'static str,
        /// QEMU's reason.
        desc: String,
    },
    /// The migration was cancelled (abort request).
    #[error("job '{job}' canceled by client")]
    Cancelled {
        /// libvirt's job name.
        job: &'static str,
    },
    /// QEMU exited (or closed its monitor) during the job.
    #[error("job '{job}' failed: domain is not running")]
    QemuGone {
        /// libvirt's job name.
        job: &'static str,
    },
}

impl MigrateError {
    fn qmp(what: &'static str, job: &'static str, source: QmpError) -> MigrateError {
        match source {
            QmpError::Disconnected => MigrateError::QemuGone { job },
            source => MigrateError::Qmp { what, source },
        }
    }

    /// Whether QEMU went away during the job.
    pub fn qemu_gone(&self) -> bool {
        matches!(self, MigrateError::QemuGone { .. })
    }

    /// The error a libvirt client sees: "operation aborted" (78) for a cancelled job,
    /// "operation failed" (9) otherwise, worded as libvirt's qemu driver words them.
    pub fn to_vir_error(&self, domain: ErrorDomain) -> VirError {
        match self {
            MigrateError::Cancelled { .. } => {
                VirError::with(ErrorCode::OperationAborted, domain, self.to_string())
            }
            MigrateError::Qmp {
                source: QmpError::Io(_) | QmpError::Protocol(_),
                ..
            } => VirError::internal(domain, self.to_string()),
            _ => VirError::operation_failed(domain, self.to_string()),
        }
    }
}

/// Shared between a guest's event pump and its save jobs: the latest `MIGRATION`
/// status QEMU announced, and whether a save is under way.
#[derive(Debug)]
pub struct MigrationState {
    status: watch::Sender<String>,
    saving: AtomicBool,
    /// `STOP` events still to come from a save's own `stop`.
    quiet_stops: AtomicU32,
}

impl Default for MigrationState {
    fn default() -> MigrationState {
        MigrationState {
            status: watch::Sender::new(String::from("none")),
            saving: AtomicBool::new(false),
            quiet_stops: AtomicU32::new(0),
        }
    }
}

impl MigrationState {
    /// Records a `MIGRATION` event's `data` (the pump calls this).
    pub fn on_event(&self, data: &Value) {
        if let Some(s) = data.get("status").and_then(Value::as_str) {
            self.status.send_replace(s.to_string());
        }
    }

    /// Whether a save is under way: the pump then keeps the `STOP`/`RESUME` of the
    /// save to itself.
    pub fn saving(&self) -> bool {
        self.saving.load(Ordering::SeqCst)
    }

    /// Whether this `STOP` is the one a save caused with its own `stop` (consumes it):
    /// the pump keeps it to itself even when it arrives after the save ended.
    pub fn take_quiet_stop(&self) -> bool {
        self.quiet_stops
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// The latest announced status (`none` before any).
    pub fn status(&self) -> String {
        self.status.borrow().clone()
    }
}

/// QEMU's migration statuses after which nothing more happens.
fn terminal(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled")
}

/// Clears the saving flag and, when the save future is dropped before QEMU's verdict,
/// cancels the migration so that it does not go on writing into a pipe nobody reads.
struct SaveGuard<'a> {
    state: &'a MigrationState,
    qmp: &'a Qmp,
    running: bool,
}

impl Drop for SaveGuard<'_> {
    fn drop(&mut self) {
        self.state.saving.store(false, Ordering::SeqCst);
        if self.running
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let qmp = self.qmp.clone();
            rt.spawn(async move {
                let _ = qmp.execute("migrate_cancel", None).await;
            });
        }
    }
}

/// Copies `query-migrate`'s RAM counters into `ctl`; returns the status it reports.
fn record_progress(info: &Value, ctl: &SaveControl) -> Option<String> {
    if let Some(ram) = info.get("ram") {
        if let Some(t) = ram.get("total").and_then(Value::as_u64) {
            ctl.total.store(t, Ordering::Relaxed);
        }
        if let Some(t) = ram.get("transferred").and_then(Value::as_u64) {
            ctl.processed.fetch_max(t, Ordering::Relaxed);
        }
    }
    info.get("status")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Streams the guest's state into `sink` (see the module doc) and returns once QEMU
/// reports the migration `completed`. `state` is the guest's [`MigrationState`], fed by
/// its event pump. On return `sink` is closed (QEMU closes its copy when the migration
/// ends) and the guest is paused. Dropping the future cancels the migration.
pub async fn save(
    qmp: &Qmp,
    state: &MigrationState,
    sink: OwnedFd,
    ctl: &SaveControl,
) -> Result<(), MigrateError> {
    let q = |what: &'static str| move |e| MigrateError::qmp(what, SAVE_JOB, e);
    let mut guard = SaveGuard {
        state,
        qmp,
        running: false,
    };
    state.saving.store(true, Ordering::SeqCst);
    qmp.execute(
        "migrate-set-capabilities",
        Some(json!({"capabilities": [{"capability": "events", "state": true}]})),
    )
    .await
    .map_err(q("cannot enable migration events"))?;
    qmp.execute(
        "migrate-set-parameters",
        Some(json!({"max-bandwidth": SAVE_MAX_BANDWIDTH})),
    )
    .await
    .map_err(q("cannot lift the migration bandwidth limit"))?;
    let status = qmp
        .execute("query-status", None)
        .await
        .map_err(q("cannot query the domain's state"))?;
    if status.get("running").and_then(Value::as_bool) == Some(true) {
        state.quiet_stops.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = qmp.execute("stop", None).await {
            state.quiet_stops.fetch_sub(1, Ordering::SeqCst);
            return Err(q("cannot pause the domain")(e));
        }
    }

    state.status.send_replace("none".into());
    let mut events = state.status.subscribe();
    qmp.execute_with_fd("getfd", Some(json!({"fdname": SAVE_FD_NAME})), sink.as_fd())
        .await
        .map_err(q("cannot pass the save stream to QEMU"))?;
    drop(sink);
    ctl.processed.store(0, Ordering::Relaxed);
    if let Err(e) = qmp
        .execute(
            "migrate",
            Some(json!({"uri": format!("fd:{SAVE_FD_NAME}")})),
        )
        .await
    {
        let _ = qmp
            .execute("closefd", Some(json!({"fdname": SAVE_FD_NAME})))
            .await;
        return Err(q("cannot start the migration")(e));
    }
    guard.running = true;

    let closed = qmp.closed_owned();
    tokio::pin!(closed);
    let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cancel_sent = false;
    let final_status = loop {
        let seen = events.borrow_and_update().clone();
        if terminal(&seen) {
            break seen;
        }
        tokio::select! {
            r = events.changed() => {
                if r.is_err() {
                    return Err(MigrateError::QemuGone { job: SAVE_JOB });
                }
            }
            _ = tick.tick() => {
                match qmp.execute("query-migrate", None).await {
                    Ok(info) => {
                        if let Some(s) = record_progress(&info, ctl)
                            && terminal(&s)
                        {
                            break s;
                        }
                    }
                    Err(QmpError::Disconnected) => {
                        return Err(MigrateError::QemuGone { job: SAVE_JOB });
                    }
                    Err(e) => tracing::debug!(error = %e, "query-migrate failed"),
                }
            }
            _ = ctl.cancel.cancelled(), if !cancel_sent => {
                cancel_sent = true;
                if let Err(e) = qmp.execute("migrate_cancel", None).await {
                    if matches!(e, QmpError::Disconnected) {
                        return Err(MigrateError::QemuGone { job: SAVE_JOB });
                    }
                    tracing::warn!(error = %e, "migrate_cancel failed");
                }
            }
            _ = &mut closed => return Err(MigrateError::QemuGone { job: SAVE_JOB }),
        }
    };
    guard.running = false;
    // The final counters (and QEMU's reason for a failure).
    let info = qmp.execute("query-migrate", None).await.ok();
    if let Some(info) = &info {
        record_progress(info, ctl);
    }
    match final_status.as_str() {
        "completed" => Ok(()),
        "cancelled" => Err(MigrateError::Cancelled { job: SAVE_JOB }),
        _ if qmp.is_closed() => Err(MigrateError::QemuGone { job: SAVE_JOB }),
        _ => Err(MigrateError::Failed {
            job: SAVE_JOB,
            desc: error_desc(info.as_ref()),
        }),
    }
}

fn error_desc(info: Option<&Value>) -> String {
    info.and_then(|i| i.get("error-desc"))
        .and_then(Value::as_str)
        .unwrap_or("unexpectedly failed")
        .to_string()
}

/// Loads a saved state from `source` into a QEMU that was started with
/// `-incoming defer` and is paused, reading `MIGRATION` events from `events` (the
/// connection's own event stream: no event pump runs yet, and a paused guest that is
/// being loaded has nothing else to report). Returns once QEMU reports `completed`;
/// the guest is then paused with the saved state.
pub async fn restore(
    qmp: &Qmp,
    events: &mut mpsc::UnboundedReceiver<QmpEvent>,
    source: OwnedFd,
) -> Result<(), MigrateError> {
    let q = |what: &'static str| move |e| MigrateError::qmp(what, RESTORE_JOB, e);
    qmp.execute(
        "migrate-set-capabilities",
        Some(json!({"capabilities": [{"capability": "events", "state": true}]})),
    )
    .await
    .map_err(q("cannot enable migration events"))?;
    qmp.execute_with_fd(
        "getfd",
        Some(json!({"fdname": RESTORE_FD_NAME})),
        source.as_fd(),
    )
    .await
    .map_err(q("cannot pass the saved state to QEMU"))?;
    drop(source);
    qmp.execute(
        "migrate-incoming",
        Some(json!({"uri": format!("fd:{RESTORE_FD_NAME}"), "exit-on-error": false})),
    )
    .await
    .map_err(q("cannot start loading the saved state"))?;
    loop {
        let Some(ev) = events.recv().await else {
            return Err(MigrateError::QemuGone { job: RESTORE_JOB });
        };
        if ev.name != "MIGRATION" {
            continue;
        }
        match ev.data.get("status").and_then(Value::as_str).unwrap_or("") {
            "completed" => return Ok(()),
            "failed" | "cancelled" => {
                let info = qmp.execute("query-migrate", None).await.ok();
                return Err(MigrateError::Failed {
                    job: RESTORE_JOB,
                    desc: error_desc(info.as_ref()),
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_tracks_events_and_terminal_statuses() {
        let s = MigrationState::default();
        assert_eq!(s.status(), "none");
        s.on_event(&json!({"status": "setup"}));
        assert_eq!(s.status(), "setup");
        s.on_event(&json!({}));
        assert_eq!(s.status(), "setup");
        s.on_event(&json!({"status": "completed"}));
        assert!(terminal(&s.status()));
        assert!(!terminal("active") && !terminal("cancelling"));
        assert!(terminal("failed") && terminal("cancelled"));
        assert!(!s.take_quiet_stop());
        s.quiet_stops.fetch_add(1, Ordering::SeqCst);
        assert!(s.take_quiet_stop());
        assert!(!s.take_quiet_stop());
    }

    #[test]
    fn progress_is_copied_and_never_goes_back() {
        let ctl = SaveControl::default();
        let st = record_progress(
            &json!({"status": "active", "ram": {"transferred": 100, "total": 1000}}),
            &ctl,
        );
        assert_eq!(st.as_deref(), Some("active"));
        assert_eq!(ctl.processed.load(Ordering::Relaxed), 100);
        assert_eq!(ctl.total.load(Ordering::Relaxed), 1000);
        record_progress(
            &json!({"status": "active", "ram": {"transferred": 50}}),
            &ctl,
        );
        assert_eq!(ctl.processed.load(Ordering::Relaxed), 100);
        assert_eq!(record_progress(&json!({}), &ctl), None);
    }

    #[test]
    fn errors_map_to_libvirt_codes_and_wording() {
        let d = ErrorDomain::Qemu;
        let e = MigrateError::Cancelled { job: SAVE_JOB }.to_vir_error(d);
        assert_eq!(e.code, ErrorCode::OperationAborted);
        assert_eq!(
            e.message,
            "operation aborted: job 'domain save' canceled by client"
        );
        let e = MigrateError::Failed {
            job: SAVE_JOB,
            desc: "Unable to write to file: Broken pipe".into(),
        }
        .to_vir_error(d);
        assert_eq!(e.code, ErrorCode::OperationFailed);
        assert!(
            e.message
                .starts_with("operation failed: job 'domain save' failed: Unable to write"),
            "{}",
            e.message
        );
        let e = MigrateError::qmp("x", SAVE_JOB, QmpError::Disconnected);
        assert!(e.qemu_gone());
        assert_eq!(e.to_vir_error(d).code, ErrorCode::OperationFailed);
    }
}
