//! The vocabulary every part of Vireo shares: identities, states, lifecycle events and
//! errors, with libvirt's numbers.
//!
//! This crate has no runtime and names no actor framework, so that embedding apps, the
//! wire protocol and Rust clients can depend on it alone. Values that travel over
//! libvirt's RPC protocol (state and reason codes, event types and details, error codes
//! and domains) are enums whose discriminants *are* libvirt's numbers; converting to and
//! from the wire is `as i32` one way and `from_i32` the other.

pub mod error;
pub mod event;
pub mod ids;
pub mod params;
pub mod state;

pub use error::{ErrorCode, ErrorDomain, VirError, VirResult};
pub use event::{
    DomainEvent, DomainEventKind, Event, EventKind, LifecycleEvent, NetworkEventKind,
    NodeDeviceEventKind, ObjectRef, PoolEventKind,
};
pub use ids::{DomainId, ObjectKind, Uuid, parse_uuid};
pub use params::{TypedParam, TypedValue};
pub use state::{DomainState, StateReason};
