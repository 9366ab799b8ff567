//! `vireod`: Vireo's daemon, speaking libvirt's remote RPC protocol so that unchanged
//! libvirt clients (`virsh`, libvirt-python, anything linked to `libvirt.so`) can manage
//! Vireo's actors through `test+unix:///default?socket=STATE/run/libvirt-sock`.
//!
//! * [`config`]: command-line flags and the TOML configuration file (including
//!   libvirtd's `keepalive_interval`, `keepalive_count`, `max_clients`,
//!   `max_client_requests`).
//! * [`server`]: the state-directory lock, the listening sockets, `max_clients`,
//!   signal handling and the orderly shutdown.
//! * [`session`]: one client connection: framing, the reader and writer tasks,
//!   concurrent calls and the in-flight limit, keepalive (answering and sending
//!   PINGs), stream packet routing, and the protocol-level error answers.
//! * [`keepalive`]: the thread that times keepalive PINGs for every session (no tokio
//!   timer per session, so the runtime sleeps without one).
//! * [`cli`]: the `vireo` command-line client (list, info, xml, define, start, stop,
//!   events, ...), built on `vireo-client`; the `vireo` binary is a thin `main`.
//! * [`procs`]: the REMOTE procedures, one file per family, built on the
//!   `vireo-actors` embedding API.

pub mod cli;
pub mod config;
pub mod keepalive;
pub mod procs;
pub mod server;
pub mod session;
