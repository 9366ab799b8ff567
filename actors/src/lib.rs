//! Vireo's actors and the embedding API.
//!
//! A [`Host`] is the whole actor system: an event hub plus one driver actor per open
//! hypervisor instance, each owning domain, network and pool actors (see
//! [`helper`] for the supervision tree). A Rust application starts one on its own tokio
//! runtime, opens connections by URI, drives objects through typed handles and
//! subscribes to events:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use vireo_actors::{Host, HostConfig};
//! let host = Host::start(HostConfig::new("/tmp/vireo-state")).await?;
//! let conn = host.open("test:///default").await?;
//! let dom = conn.lookup_domain_by_name("test")?;
//! println!("{:?}", dom.info().await?.state);
//! # Ok(()) }
//! ```
//!
//! A daemon in another process (`vireod`, or `libvirtd`) is reached with a URI that names
//! a transport, `test+unix:///default?socket=PATH`: [`remote::open`] returns a
//! [`RemoteConnection`] over libvirt's remote protocol for those and a local
//! [`Connection`] for the others.
//!
//! Nothing here leaks the actor framework: handles are plain structs whose methods are
//! async calls returning [`vireo_messages::VirResult`].

pub mod directory;
pub mod domain;
pub mod driver;
pub mod handles;
pub mod helper;
pub mod host;
pub mod iface;
pub mod network;
pub mod nodedev;
pub mod pool;
pub mod registry;
pub mod remote;
pub mod secret;

pub use domain::{DomainInfo, JobInfo, JobRequest, SaveFault, SaveFaults};
pub use handles::{Connection, Domain, ListFilter, Network, Pool};
pub use helper::HelperTask;
pub use host::{Host, HostConfig, HostError};
pub use iface::Interface;
pub use nodedev::NodeDevice;
pub use pool::{PoolInfo, VolKey, VolumeInfo};
pub use remote::{AnyConnection, RemoteConnection, RemoteDomain};
pub use secret::SecretDef;
pub use vireo_bus::{Delivery, Filter, Stamped, Subscription};
