//! Save, managed save and restore jobs, and the job information a client polls meanwhile.
//!
//! # Two flavours
//! - **Test** (libvirt's test driver): the image holds only the domain XML
//!   ([`vireo_drivers::saveimage::test_image`]); it is written atomically and synced, then
//!   the guest stops (shut off, reason saved). A managed save writes the same image under
//!   the store's `managedsave/` so that the flag survives a restart; a plain start drops
//!   it, as libvirt's test driver does.
//! - **QEMU**: the guest is paused; a pipe with an enlarged buffer connects the
//!   hypervisor's migration stream ([`vireo_drivers::hypervisor::Guest::save_to_fd`]) to an
//!   I/O helper child actor that writes libvirt's save image
//!   ([`vireo_drivers::iohelper::save_to_image`]: partial header, copy, fdatasync, final
//!   magic, fdatasync, directory sync). The save succeeds only when both sides succeeded;
//!   then the guest is destroyed (shut off, saved). Any failure — the helper's I/O error
//!   (ENOSPC, EIO at write or at fdatasync), its panic or death, the hypervisor's error,
//!   an abort — leaves no image behind, resumes a guest that was running and sets no
//!   managed-save flag; the job fails with the root cause.
//!
//! While a save runs, its status record names the image (`"saving"`), so that a daemon
//! killed mid-save removes the partial image and resumes the guest when it comes back
//! (see [`crate::driver`]).
//!
//! # Job information
//! [`JobInfo`] is answered at once from the running job's counters (bytes the hypervisor
//! sent, the estimated total, time elapsed), whatever the job slot is doing; an abort
//! fires the job's cancellation token.

use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::ActorRef;
use tokio::sync::oneshot;
use vireo_drivers::hypervisor::{Flavour, SaveControl, StartOptions};
use vireo_drivers::iohelper::{self, CopyOptions, IoHelperError, IoOp};
use vireo_drivers::saveimage::{SaveHeader, test_image};
use vireo_messages::event::detail;
use vireo_messages::state::{paused, running};
use vireo_messages::{
    DomainEventKind, DomainState, ErrorCode, ErrorDomain, StateReason, VirError, VirResult,
};
use vireo_xml::{DomainDef, FormatOptions};

use super::lifecycle::{Op, check};
use super::{DomainActorState, DomainMsg, JobDone, JobReply, Outcome};
use crate::helper::HelperTask;

/// `VIR_DOMAIN_SAVE_BYPASS_CACHE`.
pub const SAVE_BYPASS_CACHE: u32 = 1;
/// `VIR_DOMAIN_SAVE_RUNNING`.
pub const SAVE_RUNNING: u32 = 2;
/// `VIR_DOMAIN_SAVE_PAUSED`.
pub const SAVE_PAUSED: u32 = 4;

/// `virDomainJobType`.
pub mod job_type {
    /// No job.
    pub const NONE: i32 = 0;
    /// A job with a known end.
    pub const BOUNDED: i32 = 1;
    /// A job whose end is not known in advance (a save: the guest may dirty memory).
    pub const UNBOUNDED: i32 = 2;
    /// The statistics of a job that has completed.
    pub const COMPLETED: i32 = 3;
}

/// `virDomainJobOperation`.
pub mod job_operation {
    /// Unknown.
    pub const UNKNOWN: i32 = 0;
    /// Save or managed save.
    pub const SAVE: i32 = 2;
    /// Restore.
    pub const RESTORE: i32 = 3;
}

/// What `virDomainGetJobInfo`/`virDomainGetJobStats` report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobInfo {
    /// [`job_type`].
    pub job_type: i32,
    /// [`job_operation`].
    pub operation: i32,
    /// Milliseconds since the job started.
    pub elapsed_ms: u64,
    /// Bytes to move in all (estimate; 0 when unknown).
    pub data_total: u64,
    /// Bytes moved so far.
    pub data_processed: u64,
    /// `data_total - data_processed`.
    pub data_remaining: u64,
}

impl JobInfo {
    /// The typed parameters of `virDomainGetJobStats` (and of the job-completed event)
    /// for these counters, under libvirt's names; none when there is no job.
    pub fn params(&self) -> Vec<vireo_messages::TypedParam> {
        use vireo_messages::{TypedParam, TypedValue};
        if self.job_type == job_type::NONE {
            return Vec::new();
        }
        vec![
            TypedParam::new("operation", TypedValue::Int(self.operation)),
            TypedParam::new("time_elapsed", TypedValue::ULLong(self.elapsed_ms)),
            TypedParam::new("data_total", TypedValue::ULLong(self.data_total)),
            TypedParam::new("data_processed", TypedValue::ULLong(self.data_processed)),
            TypedParam::new("data_remaining", TypedValue::ULLong(self.data_remaining)),
            TypedParam::new("memory_total", TypedValue::ULLong(self.data_total)),
            TypedParam::new("memory_processed", TypedValue::ULLong(self.data_processed)),
            TypedParam::new("memory_remaining", TypedValue::ULLong(self.data_remaining)),
        ]
    }
}

/// The counters of a running save or restore.
pub(crate) struct JobProgress {
    operation: i32,
    started: Instant,
    ctl: SaveControl,
    written: Arc<AtomicU64>,
    /// The total to report until the hypervisor gives one: the guest's memory.
    estimate: u64,
}

impl JobProgress {
    pub(crate) fn info(&self) -> JobInfo {
        let sent = self.ctl.processed.load(Ordering::Relaxed);
        let processed = sent.max(self.written.load(Ordering::Relaxed));
        let total = match self.ctl.total.load(Ordering::Relaxed) {
            0 => self.estimate,
            t => t,
        }
        .max(processed);
        JobInfo {
            job_type: job_type::UNBOUNDED,
            operation: self.operation,
            elapsed_ms: self.started.elapsed().as_millis() as u64,
            data_total: total,
            data_processed: processed,
            data_remaining: total - processed,
        }
    }

    pub(crate) fn abort(&self) {
        self.ctl.cancel.cancel();
    }
}

/// A save in flight: what to undo if it fails and what a restarted daemon must clean up.
pub(crate) struct Saving {
    pub(crate) path: PathBuf,
    pub(crate) was_running: bool,
    pub(crate) prior: StateReason,
    /// After a failure: [`RESUME_OK`] or [`RESUME_FAILED`] once the job tried to resume.
    pub(crate) resumed: Arc<AtomicU8>,
}

/// The guest runs again after a failed save.
const RESUME_OK: u8 = 1;
/// Resuming the guest after a failed save failed too.
const RESUME_FAILED: u8 = 2;
/// `VIR_DOMAIN_PAUSED_API_ERROR`.
const PAUSED_API_ERROR: i32 = 14;

impl Saving {
    /// The `"saving"` member of the status record.
    pub(crate) fn record(&self) -> serde_json::Value {
        serde_json::json!({
            "path": self.path.to_string_lossy(),
            "was_running": self.was_running,
        })
    }
}

/// A fault to inject into the next qemu-flavour save (tests of the failure paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFault {
    /// The I/O helper panics once it has written `after` bytes.
    Panic {
        /// Stream bytes written first.
        after: u64,
    },
    /// The I/O helper's write fails with ENOSPC once it has written `after` bytes.
    NoSpace {
        /// Stream bytes written first.
        after: u64,
    },
    /// The I/O helper actor is killed once it has written `after` bytes.
    Kill {
        /// Stream bytes written first.
        after: u64,
    },
}

/// A one-shot fault for the next save of a driver instance; clones share it.
#[derive(Debug, Clone, Default)]
pub struct SaveFaults(Arc<Mutex<Option<SaveFault>>>);

impl SaveFaults {
    /// Arms `fault` for the next save.
    pub fn arm(&self, fault: SaveFault) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(fault);
    }

    fn take(&self) -> Option<SaveFault> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// How long a hypervisor-side save failure waits before it is handed to the helper, so
/// that a helper failure that caused it (the pipe's reader gone) is seen first.
const SOURCE_ERROR_GRACE: Duration = Duration::from_millis(100);

/// The bytes of `written` reached `after`.
async fn reached(written: &AtomicU64, after: u64) {
    while written.load(Ordering::Relaxed) < after {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Runs the helper's save, injecting a panic or ENOSPC fault if one is armed. Returning
/// early (or unwinding) drops the save, which removes the partial image.
async fn with_fault<F>(
    fut: F,
    fault: Option<SaveFault>,
    written: Arc<AtomicU64>,
    path: PathBuf,
) -> Result<u64, IoHelperError>
where
    F: std::future::Future<Output = Result<u64, IoHelperError>>,
{
    let (after, panics) = match fault {
        Some(SaveFault::Panic { after }) => (after, true),
        Some(SaveFault::NoSpace { after }) => (after, false),
        _ => return fut.await,
    };
    tokio::select! {
        r = fut => r,
        _ = reached(&written, after) => {
            if panics {
                panic!("injected fault: the I/O helper panics after {after} bytes");
            }
            Err(IoHelperError::Io {
                op: IoOp::Write,
                path: Some(path),
                source: std::io::Error::from_raw_os_error(28), // ENOSPC
            })
        }
    }
}

/// Waits for a helper's verdict: its own result, or the reason it died (`true`).
async fn wait_helper(
    done: oneshot::Receiver<VirResult<String>>,
    failed: oneshot::Receiver<String>,
    name: &str,
) -> (VirResult<String>, bool) {
    match done.await {
        Ok(r) => (r, false),
        Err(_) => {
            let why = tokio::time::timeout(Duration::from_secs(5), failed)
                .await
                .ok()
                .and_then(|r| r.ok())
                .unwrap_or_else(|| "ended without a result".into());
            (
                Err(VirError::internal(
                    ErrorDomain::Domain,
                    format!("I/O helper '{name}' failed: {why}"),
                )),
                true,
            )
        }
    }
}

/// The test driver's error for a save image it cannot read.
pub(crate) fn test_image_error(e: test_image::TestImageError) -> VirError {
    use test_image::TestImageError as E;
    match e {
        E::Open { path, source } => VirError::system(
            ErrorDomain::Test,
            format!("cannot read domain image '{}'", path.display()),
            &source,
        ),
        E::BadMagic | E::LengthOutOfRange(_) => {
            VirError::internal(ErrorDomain::Test, e.to_string())
        }
        other => VirError::with(ErrorCode::SystemError, ErrorDomain::Test, other.to_string()),
    }
}

fn join_error(domain: ErrorDomain, e: tokio::task::JoinError) -> VirError {
    VirError::internal(domain, format!("a blocking task failed: {e}"))
}

/// Reads the domain XML a save image holds, in the format of `flavour`.
pub(crate) async fn read_image_xml(
    flavour: Flavour,
    domain: ErrorDomain,
    path: &Path,
) -> VirResult<String> {
    let p = path.to_path_buf();
    match flavour {
        Flavour::Test => tokio::task::spawn_blocking(move || test_image::read(&p))
            .await
            .map_err(|e| join_error(domain, e))?
            .map_err(test_image_error),
        Flavour::Qemu => {
            tokio::task::spawn_blocking(move || iohelper::restore_source(&p).map(|(_, h)| h.xml))
                .await
                .map_err(|e| join_error(domain, e))?
                .map_err(|e| e.to_vir_error(domain))
        }
    }
}

/// Sets the was-running field of a qemu save image (offset 24, in the byte order the
/// header was written in) and syncs it.
fn set_was_running(file: &std::fs::File, running: bool) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut version = [0u8; 4];
    file.read_exact_at(&mut version, 16)?;
    let native = u32::from_ne_bytes(version) <= vireo_drivers::saveimage::QEMU_SAVE_VERSION;
    let v = u32::from(running);
    let bytes = if native {
        v.to_ne_bytes()
    } else {
        v.swap_bytes().to_ne_bytes()
    };
    file.write_all_at(&bytes, 24)?;
    file.sync_data()
}

/// Replaces the XML of the save image at `path` (`virDomainSaveImageDefineXML`);
/// `running`: also change whether the guest runs after a restore (QEMU flavour).
pub(crate) async fn define_image_xml(
    flavour: Flavour,
    domain: ErrorDomain,
    path: &Path,
    def: &DomainDef,
    running: Option<bool>,
) -> VirResult<()> {
    let old = read_image_xml(flavour, domain, path).await?;
    let old = DomainDef::parse(&old)?;
    if old.uuid() != def.uuid() || old.name() != def.name() {
        return Err(VirError::with(
            ErrorCode::OperationInvalid,
            domain,
            format!(
                "Target domain name/uuid '{}' does not match source '{}'",
                def.name(),
                old.name()
            ),
        ));
    }
    let xml = def.format(&FormatOptions {
        id: None,
        inactive: true,
        secure: true,
    });
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> VirResult<()> {
        match flavour {
            Flavour::Test => vireo_drivers::store::write_atomic(
                &p,
                &test_image::encode(&xml)
                    .map_err(|e| VirError::system(domain, "cannot encode the save image", &e))?,
            )
            .map_err(|e| {
                VirError::system(
                    domain,
                    format!("saving domain to '{}': write failed", p.display()),
                    &e,
                )
            }),
            Flavour::Qemu => {
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&p)
                    .map_err(|e| {
                        VirError::system(domain, format!("unable to open '{}'", p.display()), &e)
                    })?;
                vireo_drivers::saveimage::update_xml(&f, &xml)
                    .map_err(|e| VirError::operation_failed(domain, e.to_string()))?;
                match running {
                    Some(r) => set_was_running(&f, r).map_err(|e| {
                        VirError::system(
                            domain,
                            format!(
                                "failed to write header to domain save file '{}'",
                                p.display()
                            ),
                            &e,
                        )
                    }),
                    None => Ok(()),
                }
            }
        }
    })
    .await
    .map_err(|e| join_error(domain, e))?
}

fn remove_quietly(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {
            let _ = iohelper::sync_dir(path);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a failed save image")
        }
    }
}

impl DomainActorState {
    /// Starts a save (`managed`: to the managed-save image). Validation errors are
    /// answered here; the rest runs as the job.
    pub(super) async fn begin_save(
        &mut self,
        myself: &ActorRef<DomainMsg>,
        name: &'static str,
        reply: JobReply,
        target: Option<PathBuf>,
        dxml: Option<String>,
        flags: u32,
    ) {
        let managed = target.is_none();
        if let Err(e) = self.check_save(managed, dxml.as_deref(), flags) {
            let _ = reply.send(Err(e));
            return;
        }
        let path = match target {
            Some(p) => Some(p),
            None => self
                .ctx
                .store
                .as_ref()
                .map(|s| s.managed_save_path(&self.name)),
        };
        match self.flavour() {
            Flavour::Test => self.begin_test_save(myself, name, reply, path, managed),
            Flavour::Qemu => {
                let Some(path) = path else {
                    let _ = reply.send(Err(VirError::operation_invalid(
                        self.ctx.err_domain(),
                        "this driver instance has no place for managed-save images",
                    )));
                    return;
                };
                self.begin_qemu_save(myself, name, reply, path, dxml, flags, managed)
                    .await;
            }
        }
    }

    fn check_save(&self, managed: bool, dxml: Option<&str>, flags: u32) -> VirResult<()> {
        let domain = self.ctx.err_domain();
        let test = self.flavour() == Flavour::Test;
        let (allowed, func) = match (test, managed) {
            (true, false) => (0, "testDomainSaveFlags"),
            (true, true) => (7, "testDomainManagedSave"),
            (false, false) => (7, "qemuDomainSaveFlags"),
            (false, true) => (7, "qemuDomainManagedSave"),
        };
        if flags & !allowed != 0 {
            return Err(VirError::unsupported_flags(domain, flags & !allowed, func));
        }
        if flags & SAVE_RUNNING != 0 && flags & SAVE_PAUSED != 0 {
            return Err(VirError::invalid_arg(
                ErrorDomain::Domain,
                "Flags 'VIR_DOMAIN_SAVE_RUNNING' and 'VIR_DOMAIN_SAVE_PAUSED' are mutually exclusive",
            ));
        }
        if test && dxml.is_some() {
            return Err(VirError::with(
                ErrorCode::ArgumentUnsupported,
                domain,
                "xml modification unsupported",
            ));
        }
        check(
            self.flavour(),
            if managed { Op::ManagedSave } else { Op::Save },
            &self.name,
            self.state.state,
        )?;
        if managed && !self.persistent {
            return Err(VirError::operation_invalid(
                domain,
                "cannot do managed save for transient domain",
            ));
        }
        if self.guest.is_none() {
            return Err(VirError::operation_invalid(
                ErrorDomain::Domain,
                "domain is not running",
            ));
        }
        Ok(())
    }

    /// The test driver: the image is the (secure) live XML; written atomically and synced.
    fn begin_test_save(
        &mut self,
        myself: &ActorRef<DomainMsg>,
        name: &'static str,
        reply: JobReply,
        path: Option<PathBuf>,
        managed: bool,
    ) {
        let xml = self.current_def().format(&FormatOptions {
            id: self.id.map(|d| d.0),
            inactive: false,
            secure: true,
        });
        let dom_name = self.name.clone();
        let Some(mut guest) = self.guest.take() else {
            return;
        };
        self.spawn_job(myself, name, reply, async move {
            if let Some(path) = path {
                let p = path.clone();
                let written = tokio::task::spawn_blocking(move || {
                    let bytes = test_image::encode(&xml)?;
                    vireo_drivers::store::write_atomic(&p, &bytes)
                })
                .await;
                let err = match written {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(VirError::system(
                        ErrorDomain::Test,
                        format!(
                            "saving domain '{dom_name}' to '{}': write failed",
                            path.display()
                        ),
                        &e,
                    )),
                    Err(e) => Some(join_error(ErrorDomain::Test, e)),
                };
                if let Some(e) = err {
                    return JobDone {
                        guest: Some(guest),
                        outcome: Err(e),
                    };
                }
            }
            let _ = guest.destroy(false).await;
            JobDone {
                guest: Some(guest),
                outcome: Ok(Outcome::Saved {
                    managed,
                    stats: None,
                }),
            }
        });
    }

    #[allow(clippy::too_many_arguments)]
    async fn begin_qemu_save(
        &mut self,
        myself: &ActorRef<DomainMsg>,
        name: &'static str,
        reply: JobReply,
        path: PathBuf,
        dxml: Option<String>,
        flags: u32,
        managed: bool,
    ) {
        let domain = self.ctx.err_domain();
        let header_def = match dxml.as_deref().map(DomainDef::parse) {
            None => self.current_def().clone(),
            Some(Ok(d)) => {
                if d.uuid().is_some_and(|u| u != self.uuid) || d.name() != self.name {
                    let _ = reply.send(Err(VirError::invalid_arg(
                        domain,
                        "the replacement XML must describe the same domain (name and uuid)",
                    )));
                    return;
                }
                d
            }
            Some(Err(e)) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let was_running = self.state.state == DomainState::Running;
        let restore_running = if flags & SAVE_RUNNING != 0 {
            true
        } else if flags & SAVE_PAUSED != 0 {
            false
        } else {
            was_running
        };
        let header = SaveHeader::new(
            header_def.format(&FormatOptions {
                id: None,
                inactive: true,
                secure: true,
            }),
            restore_running,
        );
        if managed
            && let Some(dir) = path.parent()
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            let _ = reply.send(Err(VirError::system(
                domain,
                format!("cannot create directory '{}'", dir.display()),
                &e,
            )));
            return;
        }
        // As libvirt, a file that cannot be created fails the save before the guest is
        // touched (the helper creates it again, truncated, and owns it from then on).
        let existed = path.exists();
        if let Err(e) = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
        {
            let _ = reply.send(Err(VirError::system(
                domain,
                format!("Failed to create file '{}'", path.display()),
                &e,
            )));
            return;
        }
        let (rd, wr) = match iohelper::pipe_with_capacity(iohelper::PIPE_CAPACITY) {
            Ok(p) => p,
            Err(e) => {
                if !existed {
                    remove_quietly(&path);
                }
                let _ = reply.send(Err(VirError::system(domain, "unable to create a pipe", &e)));
                return;
            }
        };

        // The helper: writes the image from the pipe; reports success only when synced.
        let written = Arc::new(AtomicU64::new(0));
        let own_failure = Arc::new(AtomicBool::new(false));
        let (src_tx, src_rx) = oneshot::channel::<Result<(), String>>();
        let fault = self.ctx.save_faults.take();
        let task = {
            let path = path.clone();
            let written = written.clone();
            let own = own_failure.clone();
            let opts = CopyOptions {
                direct: flags & SAVE_BYPASS_CACHE != 0,
                ..CopyOptions::default()
            };
            HelperTask::new("save", async move {
                // The hypervisor's failure is reported a moment late: when it failed
                // because this helper's own write failed (and the pipe closed), the
                // copy's error is already there and must be the one reported.
                let source_done = async move {
                    let r = src_rx
                        .await
                        .unwrap_or_else(|_| Err("the save was abandoned".into()));
                    if r.is_err() {
                        tokio::time::sleep(SOURCE_ERROR_GRACE).await;
                    }
                    r
                };
                let save =
                    iohelper::save_to_image(rd, &path, &header, opts, written.clone(), source_done);
                match with_fault(save, fault, written, path.clone()).await {
                    Ok(n) => Ok(format!("{n} bytes")),
                    Err(e) => {
                        if !matches!(e, IoHelperError::SourceFailed(_) | IoHelperError::Cancelled) {
                            own.store(true, Ordering::SeqCst);
                        }
                        Err(e.to_vir_error(domain))
                    }
                }
            })
        };
        let (helper, done_rx, fail_rx) = match self.spawn_helper(myself, task).await {
            Ok(h) => h,
            Err(e) => {
                if !existed {
                    remove_quietly(&path);
                }
                let _ = reply.send(Err(e));
                return;
            }
        };
        let Some(mut guest) = self.guest.take() else {
            return;
        };

        // Record the save before any byte moves: a daemon killed from here on cleans up.
        let resumed = Arc::new(AtomicU8::new(0));
        self.saving = Some(Saving {
            path: path.clone(),
            was_running,
            prior: self.state,
            resumed: resumed.clone(),
        });
        if was_running {
            self.state = StateReason::new(DomainState::Paused, paused::SAVE);
        }
        self.guest = Some(guest);
        self.after_change();
        if was_running {
            self.lifecycle(DomainEventKind::Suspended, detail::suspended::PAUSED);
        }
        guest = self.guest.take().expect("just put back");

        let ctl = SaveControl::default();
        if let Some(SaveFault::Kill { after }) = fault {
            let helper = helper.clone();
            let written = written.clone();
            tokio::spawn(async move {
                reached(&written, after).await;
                helper.kill();
            });
        }
        let progress = JobProgress {
            operation: job_operation::SAVE,
            started: Instant::now(),
            ctl: ctl.clone(),
            written: written.clone(),
            estimate: header_def.memory_kib() * 1024,
        };
        let hid = helper.get_id();
        let dom_name = self.name.clone();
        let final_info = JobProgress {
            operation: job_operation::SAVE,
            started: progress.started,
            ctl: ctl.clone(),
            written: written.clone(),
            estimate: progress.estimate,
        };
        self.spawn_job(myself, name, reply, async move {
            let t0 = Instant::now();
            let cancel = ctl.cancel.clone();
            let save = async {
                if was_running {
                    guest.pause().await?;
                }
                guest.save_to_fd(wr, ctl).await
            };
            let save_res = save.await;
            let streamed = t0.elapsed();
            let _ = src_tx.send(save_res.as_ref().map(drop).map_err(|e| e.message.clone()));
            let (helper_res, died) = wait_helper(done_rx, fail_rx, "save").await;
            let synced = t0.elapsed();
            let outcome = match (&save_res, &helper_res) {
                (Ok(()), Ok(_)) => Ok(()),
                _ => {
                    let err = if cancel.is_cancelled() {
                        VirError::with(
                            ErrorCode::OperationAborted,
                            domain,
                            "domain save job: canceled by client",
                        )
                    } else {
                        let helper_first = died || own_failure.load(Ordering::SeqCst);
                        match (&save_res, &helper_res) {
                            (_, Err(h)) if helper_first => h.clone(),
                            (Err(e), _) | (Ok(()), Err(e)) => e.clone(),
                            (Ok(()), Ok(_)) => VirError::internal(domain, "the save failed"),
                        }
                    };
                    // No image may claim a valid save: the helper removes its own file
                    // on failure; a complete one from a failed stream goes here.
                    if helper_res.is_ok() {
                        remove_quietly(&path);
                    } else if let Err(e) = iohelper::remove_if_partial(&path) {
                        tracing::warn!(path = %path.display(), error = %e, "cannot check a failed save image");
                    }
                    if was_running {
                        match guest.resume().await {
                            Ok(()) => resumed.store(RESUME_OK, Ordering::SeqCst),
                            Err(e) => {
                                resumed.store(RESUME_FAILED, Ordering::SeqCst);
                                tracing::warn!(error = %e, "cannot resume the guest after a failed save");
                            }
                        }
                    }
                    Err(err)
                }
            };
            let outcome = match outcome {
                Ok(()) => {
                    if let Err(e) = guest.destroy(false).await {
                        tracing::warn!(error = %e, "cannot stop the guest after its save");
                    }
                    tracing::info!(
                        domain = %dom_name,
                        stream_ms = streamed.as_millis() as u64,
                        synced_ms = synced.as_millis() as u64,
                        total_ms = t0.elapsed().as_millis() as u64,
                        "saved"
                    );
                    Ok(Outcome::Saved {
                        managed,
                        stats: Some(final_info.info()),
                    })
                }
                Err(e) => Err(e),
            };
            JobDone {
                guest: Some(guest),
                outcome,
            }
        });
        if let Some(j) = self.job.as_mut() {
            j.helper = Some(hid);
            j.progress = Some(progress);
        }
    }

    /// Starts a restore from `path` into this (inactive) domain. `def` is the definition
    /// to run (from the image, or its replacement); `None` reads it from the image.
    /// `from_managed`: the image is the managed-save one, removed on success.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn begin_restore(
        &mut self,
        myself: &ActorRef<DomainMsg>,
        name: &'static str,
        reply: JobReply,
        def: Option<Box<DomainDef>>,
        path: PathBuf,
        flags: u32,
        from_managed: bool,
    ) {
        if let Err(e) = check(self.flavour(), Op::Start, &self.name, self.state.state) {
            let _ = reply.send(Err(e));
            return;
        }
        let id = self.ctx.allocate_id();
        let hv = self.ctx.hv.clone();
        let domain = self.ctx.err_domain();
        let flavour = self.flavour();
        let ctl = SaveControl::default();
        let progress = JobProgress {
            operation: job_operation::RESTORE,
            started: Instant::now(),
            ctl: ctl.clone(),
            written: Arc::new(AtomicU64::new(0)),
            estimate: 0,
        };
        let fail = |e: VirError| JobDone {
            guest: None,
            outcome: Err(e),
        };
        self.spawn_job(myself, name, reply, async move {
            let def = match def {
                Some(d) => d,
                None => {
                    let xml = match read_image_xml(flavour, domain, &path).await {
                        Ok(x) => x,
                        Err(e) => return fail(e),
                    };
                    match DomainDef::parse(&xml) {
                        Ok(d) => Box::new(d),
                        Err(e) => return fail(e),
                    }
                }
            };
            if flavour == Flavour::Test {
                return match hv.start(&def, StartOptions { paused: false, id }).await {
                    Ok(s) => JobDone {
                        guest: Some(s.guest),
                        outcome: Ok(Outcome::Started {
                            events: s.events,
                            paused: false,
                            def,
                            id,
                            restored: true,
                            from_managed,
                            placed: false,
                        }),
                    },
                    Err(e) => fail(e),
                };
            }
            let p = path.clone();
            let opened = tokio::task::spawn_blocking(move || iohelper::restore_source(&p)).await;
            let (file, header) = match opened {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => return fail(e.to_vir_error(domain)),
                Err(e) => return fail(join_error(domain, e)),
            };
            let start_paused =
                flags & SAVE_PAUSED != 0 || (!header.was_running && flags & SAVE_RUNNING == 0);
            let (source, feeder): (OwnedFd, _) = if flags & SAVE_BYPASS_CACHE != 0 {
                use std::io::Seek;
                let mut file = file;
                let offset = match file.stream_position() {
                    Ok(o) => o,
                    Err(e) => {
                        return fail(VirError::system(
                            domain,
                            "unable to seek in the save image",
                            &e,
                        ));
                    }
                };
                let (rd, wr) = match iohelper::pipe_with_capacity(iohelper::PIPE_CAPACITY) {
                    Ok(p) => p,
                    Err(e) => return fail(VirError::system(domain, "unable to create a pipe", &e)),
                };
                let opts = CopyOptions {
                    direct: true,
                    ..CopyOptions::default()
                };
                let feed = tokio::spawn(iohelper::feed_stream(
                    file,
                    offset,
                    wr,
                    opts,
                    ctl.processed.clone(),
                ));
                (rd, Some(feed))
            } else {
                (OwnedFd::from(file), None)
            };
            let started = hv
                .restore(&def, source, StartOptions { paused: true, id })
                .await;
            let fed = match feeder {
                Some(f) => match f.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_vir_error(domain)),
                    Err(e) => Err(join_error(domain, e)),
                },
                None => Ok(()),
            };
            let mut s = match started {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            if let Err(e) = fed {
                let _ = s.guest.destroy(false).await;
                return fail(e);
            }
            if !start_paused && let Err(e) = s.guest.resume().await {
                let _ = s.guest.destroy(false).await;
                return fail(e);
            }
            JobDone {
                guest: Some(s.guest),
                outcome: Ok(Outcome::Started {
                    events: s.events,
                    paused: start_paused,
                    def: s.live.map(Box::new).unwrap_or(def),
                    id,
                    restored: true,
                    from_managed,
                    placed: false,
                }),
            }
        });
        if let Some(j) = self.job.as_mut() {
            j.progress = Some(progress);
        }
    }

    /// A save finished: the guest is gone, the state says saved. `stats` (QEMU
    /// flavour) go out first as libvirt's job-completed event.
    pub(super) fn saved(&mut self, managed: bool, stats: Option<JobInfo>) {
        self.saving = None;
        if managed {
            self.managed_save = true;
        }
        if let Some(mut info) = stats {
            info.data_remaining = 0;
            info.job_type = job_type::COMPLETED;
            if let Ok(mut m) = self.ctx.completed_jobs.lock() {
                m.insert(self.uuid, info);
            }
            self.publish(vireo_messages::EventKind::Domain(
                vireo_messages::DomainEvent::JobCompleted {
                    stats: info.params(),
                },
            ));
        }
        self.stopped(
            StateReason::new(DomainState::Shutoff, vireo_messages::state::shutoff::SAVED),
            detail::stopped::SAVED,
        );
    }

    /// A save failed: back to the state before it (a resumed guest says so).
    pub(super) fn save_failed(&mut self) {
        let Some(s) = self.saving.take() else {
            return;
        };
        match s.resumed.load(Ordering::SeqCst) {
            RESUME_OK => {
                self.state = StateReason::new(DomainState::Running, running::SAVE_CANCELED);
                self.after_change();
                self.lifecycle(DomainEventKind::Resumed, detail::resumed::UNPAUSED);
            }
            RESUME_FAILED => {
                self.state = StateReason::new(DomainState::Paused, PAUSED_API_ERROR);
                self.after_change();
                self.lifecycle(DomainEventKind::Suspended, detail::suspended::API_ERROR);
            }
            _ => {
                self.state = s.prior;
                self.after_change();
            }
        }
    }

    /// The running job's counters, or "no job".
    pub(super) fn job_info(&self) -> JobInfo {
        self.job
            .as_ref()
            .and_then(|j| j.progress.as_ref())
            .map(JobProgress::info)
            .unwrap_or_default()
    }

    /// Aborts the running save or restore.
    pub(super) fn abort_job(&self) -> VirResult<()> {
        match self.job.as_ref() {
            Some(j)
                if j.progress
                    .as_ref()
                    .is_some_and(|p| p.operation == job_operation::SAVE) =>
            {
                if let Some(p) = &j.progress {
                    p.abort();
                }
                Ok(())
            }
            Some(j) if j.progress.is_some() => Err(VirError::operation_invalid(
                self.ctx.err_domain(),
                format!("cannot abort {}", j.name),
            )),
            _ => Err(VirError::operation_invalid(
                self.ctx.err_domain(),
                "no job is active on the domain",
            )),
        }
    }
}
