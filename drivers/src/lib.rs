//! What Vireo drives: hypervisors, storage and networks, as plain async code behind
//! traits, with fakes for tests. Nothing here knows about actors or the bus.
//!
//! Layout:
//! - [`hypervisor`]: the [`hypervisor::Hypervisor`] and [`hypervisor::Guest`] traits a
//!   domain actor drives, and the events a guest reports by itself;
//! - [`test`]: libvirt's `test` hypervisor (guests that exist only in memory);
//! - [`qemu`]: libvirt's `qemu` hypervisor: QEMU processes over QMP;
//! - [`fake`]: a scriptable hypervisor for tests (gates to hold an operation, injected
//!   failures and guest events);
//! - [`netdev`]: host network devices' traffic counters, from the guest's side (a
//!   QEMU guest's interface statistics are its tap's);
//! - [`testdata`]: the test driver's default node, objects and custom-file loader;
//! - [`store`]: persistent definitions and runtime status records on disk, written
//!   atomically;
//! - [`saveimage`]: libvirt's qemu and test-driver save image formats;
//! - [`iohelper`]: the byte mover that copies a guest's saved state from a pipe into a
//!   file and never reports success for data that is not synced;
//! - [`testfs`]: test support: small real filesystems that run out of space.

pub mod fake;
pub mod hypervisor;
pub mod iohelper;
pub mod netdev;
pub mod qemu;
pub mod saveimage;
pub mod store;
pub mod test;
pub mod testdata;
pub mod testfs;
