//! An async client of libvirt's remote RPC protocol: libvirt's "remote driver" in Rust.
//!
//! Vireo needs a client of its own wire protocol for two things: the embedding API's
//! `…+unix://` URIs, and a load generator fast enough that the *daemon* (vireod or the
//! real libvirtd) is what a benchmark measures, not the client. libvirt-python spends
//! more CPU per call than a fast daemon does, so it cannot be that load generator.
//!
//! * [`Client`]: one connection (unix socket, TCP, or any byte stream), the handshake
//!   real clients do (AUTH_LIST, SUPPORTS_FEATURE, CONNECT_OPEN), a generic
//!   [`Client::call`] whose calls run concurrently over the one connection (a reader
//!   task matches replies to calls by serial), keepalive PONG answers, event
//!   registrations whose events arrive on a channel, and typed conveniences for the
//!   domain calls the benchmark needs.
//! * [`ClientError`]: what can go wrong; a server error reply is
//!   [`ClientError::Remote`] carrying libvirt's code, domain and message.
//! * [`event`]: decoding of event MESSAGE packets into [`Event`]s.
//! * [`uri`]: remote-driver URIs (`test+unix:///default?socket=…`,
//!   `qemu+tcp://host/system`) and [`Client::connect_uri`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), vireo_client::ClientError> {
//! use vireo_client::Client;
//! let c = Client::connect_unix("/tmp/state/run/libvirt-sock", "test:///default").await?;
//! let dom = c.lookup_by_name("test").await?;
//! let xml = c.xml_desc(&dom, 0).await?;
//! assert!(xml.contains("<name>test</name>"));
//! c.close().await?;
//! # Ok(()) }
//! ```

mod conn;
mod domain;
mod error;
pub mod event;
pub mod uri;

pub use conn::{Client, EventStream, OpenOptions};
pub use error::ClientError;
pub use event::{DomainEventKind, Event, EventBody};

/// The wire crate, re-exported so callers can name argument and return types.
pub use vireo_wire as wire;
/// The shared protocol types clients deal with.
pub use vireo_wire::types::{NonnullDomain, NonnullNetwork, NonnullStoragePool};

/// `VIR_DRV_FEATURE_PROGRAM_KEEPALIVE`: the server may send keepalive PINGs.
pub const FEATURE_PROGRAM_KEEPALIVE: i32 = 10;
/// `VIR_DRV_FEATURE_REMOTE_EVENT_CALLBACK`: the CALLBACK_REGISTER_ANY event procedures.
pub const FEATURE_REMOTE_EVENT_CALLBACK: i32 = 14;
/// `VIR_DOMAIN_EVENT_ID_LIFECYCLE`.
pub const EVENT_ID_LIFECYCLE: i32 = 0;
