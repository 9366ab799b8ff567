//! libvirt's XML documents as Vireo keeps them: a lossless DOM plus typed views.
//!
//! Every object a client defines (domain, network, storage pool, storage volume and
//! the rest) arrives as XML and must come back as XML. This crate parses that XML into
//! an owned tree ([`dom`]) that keeps everything — elements, attributes, comments,
//! CDATA, namespace declarations — and writes it back in libvirt's style
//! ([`writer`]). Typed views ([`DomainDef`], [`NetworkDef`], [`PoolDef`],
//! [`VolumeDef`]) read and edit that tree in place, validate what libvirt validates and
//! report failures as [`vireo_messages::VirError`] with libvirt's codes and wording.
//! Documents without a view (interfaces, node devices, capabilities, the test driver's
//! `<node>` files) use the DOM directly.
//!
//! The parser never panics, whatever the input.

pub mod common;
pub mod dom;
pub mod domain;
pub mod error;
pub mod network;
pub mod storage;
pub mod units;
pub mod writer;

pub use dom::{Document, Element, Node};
pub use domain::{
    CharDevView, DiskView, DomainDef, FormatOptions, GraphicsView, InterfaceView, LifecycleAction,
};
pub use error::XmlError;
pub use network::{DhcpHost, IpView, NetworkDef};
pub use storage::{PoolDef, VolumeDef};

/// Parses any libvirt XML document with errors reported as libvirt does: syntax errors
/// become code 35 in `domain` under the document name `doc_name`.
pub fn parse_element(
    xml: &str,
    domain: vireo_messages::ErrorDomain,
    doc_name: &str,
) -> vireo_messages::VirResult<Element> {
    Element::parse(xml).map_err(|e| e.to_vir(domain, doc_name))
}
