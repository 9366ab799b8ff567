//! The boundary between a domain actor and whatever runs its guest.
//!
//! A [`Hypervisor`] starts guests from a definition and reattaches to guests that
//! outlived a daemon restart; each running guest is a [`Guest`] object owned by its
//! domain actor. Operations are async and may take time (QEMU start, QMP round trips);
//! what a guest does on its own (powers off, panics, resets) arrives as [`GuestEvent`]s
//! on a channel handed over at start. Drivers never decide legality — the domain actor's
//! state machine does — they only carry out an operation that is already legal.

use std::future::Future;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::sync::mpsc;
use vireo_messages::{ErrorDomain, VirResult};
use vireo_xml::DomainDef;

/// A boxed, sendable future, the return type of the trait methods (kept object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which family of libvirt semantics a driver follows where libvirt's drivers differ
/// (error codes for wrong-state operations, events on reboot, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// libvirt's `test` driver, quirks included.
    Test,
    /// libvirt's `qemu` driver.
    Qemu,
}

/// How a guest should be started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartOptions {
    /// Leave the guest paused after start.
    pub paused: bool,
    /// The domain's new numeric id.
    pub id: u32,
}

/// What a guest did by itself, reported by the driver.
#[derive(Debug, Clone, PartialEq)]
pub enum GuestEvent {
    /// The guest powered off (or asked to); `by_guest` tells whether the guest itself
    /// initiated it rather than a host request.
    Shutdown {
        /// The guest initiated it.
        by_guest: bool,
    },
    /// The guest's process or backend is gone. `crashed` is true when it did not exit
    /// cleanly.
    Exited {
        /// It died rather than exiting after a shutdown.
        crashed: bool,
    },
    /// The guest reset itself (reboot).
    Reset,
    /// The guest stopped running (paused by the hypervisor, e.g. I/O error).
    Stopped,
    /// The guest runs again.
    Resumed,
    /// The guest panicked (pvpanic).
    Panicked,
    /// The guest changed its RTC.
    RtcChange {
        /// Offset in seconds.
        offset: i64,
    },
}

/// How a shutdown request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// The guest is already off (the test driver's guests obey at once).
    PoweredOff,
    /// The request was delivered; the guest decides and reports [`GuestEvent::Shutdown`].
    Requested,
}

/// What a running guest has used so far, as the statistics calls report it
/// (`virConnectGetAllDomainStats`' `cpu.*`, `balloon.rss` and `vcpu.N.*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestUsage {
    /// CPU time in user mode, nanoseconds (all threads).
    pub cpu_user_ns: u64,
    /// CPU time in kernel mode, nanoseconds (all threads).
    pub cpu_system_ns: u64,
    /// Resident set size of the guest's process, KiB (0 when unknown).
    pub rss_kib: u64,
    /// Per-vCPU figures, in vCPU order (empty when the driver cannot tell).
    pub vcpus: Vec<VcpuUsage>,
}

impl GuestUsage {
    /// Total CPU time (user + system), nanoseconds.
    pub fn cpu_time_ns(&self) -> u64 {
        self.cpu_user_ns.saturating_add(self.cpu_system_ns)
    }
}

/// One vCPU's figures (`vcpu.N.time`, `vcpu.N.wait`, `vcpu.N.delay`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VcpuUsage {
    /// CPU time the vCPU thread used, nanoseconds.
    pub time_ns: u64,
    /// Time the vCPU waited for I/O as the host scheduler counts it, nanoseconds.
    pub wait_ns: u64,
    /// Time the vCPU was runnable but waited for a host CPU, nanoseconds.
    pub delay_ns: u64,
}

/// A hypervisor: starts guests and finds running ones again after a restart.
pub trait Hypervisor: Send + Sync + 'static {
    /// libvirt's type name for the connection (`virConnectGetType`), e.g. "TEST", "QEMU".
    fn type_name(&self) -> &'static str;

    /// The error domain this driver reports its own errors under.
    fn error_domain(&self) -> ErrorDomain;

    /// Which libvirt semantics to follow where drivers differ.
    fn flavour(&self) -> Flavour;

    /// Checks a definition for things this driver cannot run (VIR_ERR_CONFIG_UNSUPPORTED
    /// naming the element) before anything is started.
    fn validate(&self, def: &DomainDef) -> VirResult<()> {
        let _ = def;
        Ok(())
    }

    /// Starts a guest. On success the guest runs (or is paused, as asked) and its
    /// self-initiated events arrive on the returned receiver. On failure nothing is left
    /// running.
    fn start<'a>(
        &'a self,
        def: &'a DomainDef,
        opts: StartOptions,
    ) -> BoxFuture<'a, VirResult<Started>>;

    /// Reattaches to a guest described by a runtime status record left by an earlier
    /// daemon. `Ok(None)` means the guest is gone and the record should be dropped.
    fn reattach<'a>(
        &'a self,
        record: &'a serde_json::Value,
        def: &'a DomainDef,
    ) -> BoxFuture<'a, VirResult<Option<Started>>>;

    /// Starts a guest whose state comes from a saved migration stream read from
    /// `source` (a file positioned at the stream's first byte, or a pipe's read end).
    /// The guest is left paused; the caller resumes it if the save image says it was
    /// running. Drivers without a migration stream (the test driver) answer
    /// VIR_ERR_NO_SUPPORT; their save images hold only the definition.
    fn restore<'a>(
        &'a self,
        def: &'a DomainDef,
        source: OwnedFd,
        opts: StartOptions,
    ) -> BoxFuture<'a, VirResult<Started>> {
        let _ = (def, source, opts);
        Box::pin(async move {
            Err(vireo_messages::VirError::no_support(
                self.error_domain(),
                "restore from a migration stream",
            ))
        })
    }
}

/// Shared between a save job and whoever watches or aborts it.
#[derive(Debug, Clone, Default)]
pub struct SaveControl {
    /// Bytes of guest state the hypervisor has sent so far (for job info).
    pub processed: Arc<AtomicU64>,
    /// Best estimate of the total bytes (guest RAM), 0 when unknown.
    pub total: Arc<AtomicU64>,
    /// Set by an abort request; the save stops as soon as it can.
    pub cancel: tokio_util::sync::CancellationToken,
}

/// One disk's I/O as the hypervisor counts it (libvirt's `block.N.*` statistics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskIo {
    /// The hypervisor's name for the disk's top node (QEMU: the format node,
    /// `libvirt-N-format`).
    pub node: String,
    /// Read requests.
    pub rd_reqs: u64,
    /// Bytes read.
    pub rd_bytes: u64,
    /// Time spent reading, ns.
    pub rd_ns: u64,
    /// Write requests.
    pub wr_reqs: u64,
    /// Bytes written.
    pub wr_bytes: u64,
    /// Time spent writing, ns.
    pub wr_ns: u64,
    /// Flush requests.
    pub fl_reqs: u64,
    /// Time spent flushing, ns.
    pub fl_ns: u64,
    /// The highest offset written (libvirt's `allocation` for a running guest).
    pub wr_highest_offset: u64,
}

/// Questions to a running guest's hypervisor that do not change it, answered while
/// jobs run (QEMU's monitor takes commands concurrently).
pub trait GuestProbe: Send + Sync + 'static {
    /// Every disk's I/O counters.
    fn disk_io(&self) -> BoxFuture<'static, VirResult<Vec<DiskIo>>>;
}

/// A freshly started or reattached guest and its event stream.
pub struct Started {
    /// Control of the running guest.
    pub guest: Box<dyn Guest>,
    /// What the guest does by itself.
    pub events: mpsc::UnboundedReceiver<GuestEvent>,
    /// Whether the guest is paused right now (reattach reports the true state).
    pub paused: bool,
    /// The definition as the guest really runs, when it says more than the one the
    /// hypervisor was given: devices added by default and the PCI addresses chosen
    /// for devices that had none (QEMU; see `qemu::argv::with_pci_addresses`).
    pub live: Option<DomainDef>,
}

/// Control of one running guest. Owned by its domain actor; moved into a job while the
/// job runs.
pub trait Guest: Send + 'static {
    /// Pauses the vCPUs.
    fn pause(&mut self) -> BoxFuture<'_, VirResult<()>>;
    /// Resumes the vCPUs.
    fn resume(&mut self) -> BoxFuture<'_, VirResult<()>>;
    /// Asks the guest to power off (ACPI power button or equivalent).
    fn shutdown(&mut self) -> BoxFuture<'_, VirResult<ShutdownOutcome>>;
    /// Asks the guest to reboot; `Ok(true)` when the reboot already happened.
    fn reboot(&mut self) -> BoxFuture<'_, VirResult<bool>>;
    /// Hard reset.
    fn reset(&mut self) -> BoxFuture<'_, VirResult<()>>;
    /// Stops the guest for good: gracefully (SIGTERM and wait) unless `force`.
    fn destroy(&mut self, graceful: bool) -> BoxFuture<'_, VirResult<()>>;
    /// A JSON record from which [`Hypervisor::reattach`] can find this guest again.
    fn status_record(&self) -> serde_json::Value;
    /// CPU time the guest has used so far, in nanoseconds (`virDomainGetInfo`'s
    /// cpuTime), when the driver can tell. Cheap and synchronous (QEMU: its process's
    /// user + system time from `/proc`).
    fn cpu_time_ns(&self) -> Option<u64> {
        None
    }

    /// What the guest has used so far (CPU split, RSS, per-vCPU times), when the driver
    /// can tell. Cheap and synchronous like [`Guest::cpu_time_ns`].
    fn usage(&self) -> Option<GuestUsage> {
        None
    }

    /// Read-only questions that need the hypervisor (QEMU's monitor), asked without
    /// the guest object: its owner keeps the probe while jobs hold the guest.
    fn probe(&self) -> Option<Arc<dyn GuestProbe>> {
        None
    }

    /// Streams the paused guest's state into `sink` (the write end of a pipe whose
    /// read end an I/O helper drains into the save image) and returns once the
    /// hypervisor reports the stream complete; `sink` is closed by then. Success here
    /// says nothing about the data being on disk: that is the I/O helper's answer, and
    /// a save succeeds only when both succeed. On failure or cancellation the guest is
    /// still there, paused. Drivers without a migration stream answer
    /// VIR_ERR_NO_SUPPORT.
    fn save_to_fd(&mut self, sink: OwnedFd, ctl: SaveControl) -> BoxFuture<'_, VirResult<()>> {
        let _ = (sink, ctl);
        Box::pin(async {
            Err(vireo_messages::VirError::no_support(
                ErrorDomain::None,
                "saving a guest's state",
            ))
        })
    }
}
