//! libvirt's `qemu` driver: real QEMU processes driven over QMP.
//!
//! The pieces, each in its own module so they can be tested alone:
//! - [`argv`]: a domain definition → a QEMU command line (pure; unit-tested against
//!   expected argv, the idea of libvirt's qemuxml2argv tests), and the check that
//!   rejects elements we do not support with VIR_ERR_CONFIG_UNSUPPORTED;
//! - [`qmp`]: our own QMP client (tokio; id-matched replies, events, fd passing);
//! - [`process`]: spawning QEMU detached from the daemon (so guests outlive it), its
//!   log file, waiting for it to exit;
//! - [`hypervisor`]: [`hypervisor::QemuHypervisor`] and its guests, implementing the
//!   [`crate::hypervisor`] traits (start, lifecycle, QMP events → guest events, status
//!   records and reattach);
//! - [`migrate`]: saving a guest's state into a pipe (`getfd` + `migrate fd:`, progress,
//!   cancel) and restoring it into a QEMU started with `-incoming defer`;
//! - [`testguest`]: tiny boot-sector guests, assembled by the tests on this machine,
//!   whose behaviour (power off, reset, panic, print) the tests choose.

pub mod argv;
pub mod hypervisor;
pub mod migrate;
pub mod process;
pub mod qmp;
pub mod testguest;
