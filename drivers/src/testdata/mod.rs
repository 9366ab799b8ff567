//! The static data and configuration loading of libvirt's `test` driver.
//!
//! A test-driver instance starts from a [`TestConfig`]: the node it pretends to be,
//! and the domains, networks, interfaces, pools (with volumes), node devices and
//! credentials that exist when the connection opens. `test:///default` uses
//! [`TestConfig::default_config`] (the objects of spec §2.2, as the XML libvirt 9.0
//! prints for them); `test:///PATH` uses [`TestConfig::load`], which reads a `<node>`
//! file as described in spec §6, with libvirt's errors.
//!
//! This module holds data only: it decides nothing about ids, events or object
//! lifetimes, which belong to the driver that consumes the configuration. Every XML
//! string it hands out is a standalone document (no test-driver namespace elements)
//! that `vireo-xml`'s typed views can parse.
//!
//! - [`host`]: node info, NUMA cells, capabilities, sysinfo and the fixed host answers;
//! - [`defaults`]: the default objects' XML;
//! - [`load`]: the custom-file loader;
//! - [`uri`]: which state a `test:` URI designates.

pub mod defaults;
pub mod host;
pub mod load;
pub mod uri;

#[cfg(test)]
mod tests;

use vireo_messages::DomainState;

pub use defaults::POOL_CAPACITY;
pub use host::{
    CPU_MAP_CPUS, CPU_MAP_ONLINE, CPU_MAP_ONLINE_COUNT, HYPERVISOR_TYPE, HYPERVISOR_VERSION,
    MAX_VCPUS, NODE_CPU_STATS, NodeInfo, NumaCell, NumaCpu, SECURITY_DOI, SECURITY_MODEL,
    capabilities_xml, cells_free_memory, default_cells, free_memory, sysinfo_xml,
};
pub use load::TEST_NAMESPACE;
pub use uri::{TestUriTarget, parse_test_uri};

/// Everything a test-driver instance starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestConfig {
    /// What `NODE_GET_INFO` returns.
    pub node: NodeInfo,
    /// Whether the node has NUMA cells ([`host::default_cells`]); only the default
    /// configuration has them. Without cells the capabilities have no `<topology>`.
    pub numa: bool,
    /// Domains in definition order. Those not shut off get ids 1, 2, ... in this order.
    pub domains: Vec<TestDomain>,
    /// Network definitions; all are loaded active and persistent.
    pub networks: Vec<String>,
    /// Interface definitions; all are loaded active.
    pub interfaces: Vec<String>,
    /// Storage pools; all are loaded active and persistent.
    pub pools: Vec<TestPool>,
    /// Node devices in definition order.
    pub devices: Vec<TestNodeDevice>,
    /// `(user, password)` pairs from `<auth>`; when non-empty, opening requires
    /// credentials.
    pub auth: Vec<(String, Option<String>)>,
}

impl TestConfig {
    /// A configuration with the default node info, no NUMA cells and no objects: what
    /// an empty `<node/>` file gives.
    pub fn empty() -> TestConfig {
        TestConfig {
            node: NodeInfo::default(),
            numa: false,
            domains: Vec::new(),
            networks: Vec::new(),
            interfaces: Vec::new(),
            pools: Vec::new(),
            devices: Vec::new(),
            auth: Vec::new(),
        }
    }

    /// Whether opening a connection to this configuration requires credentials.
    pub fn requires_auth(&self) -> bool {
        !self.auth.is_empty()
    }
}

/// A domain present when the connection opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestDomain {
    /// The domain's definition as a standalone XML document, without the test-driver
    /// namespace elements (and without their namespace declaration).
    pub xml: String,
    /// The initial state (`<test:runstate>`, default running). Its reason is 0.
    pub runstate: DomainState,
    /// Not persistent (`<test:transient/>`); never combined with shutoff.
    pub transient: bool,
    /// Has a managed-save image (`<test:hasmanagedsave/>`); only when shut off.
    pub has_managed_save: bool,
    /// Snapshot definitions (`<domainsnapshot>` documents) in file order.
    pub snapshots: Vec<String>,
}

/// A storage pool present when the connection opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestPool {
    /// The pool definition, with `<capacity>`, `<allocation>` and `<available>` set to
    /// the values below (in bytes).
    pub xml: String,
    /// Volume definitions, each with `<key>` and `<target><path>` filled in (path
    /// defaults to `POOL_TARGET/NAME`, key to the path).
    pub volumes: Vec<String>,
    /// Capacity in bytes (always 100 GiB in the test driver).
    pub capacity: u64,
    /// Allocation in bytes: the sum of the volumes' allocations.
    pub allocation: u64,
    /// `capacity - allocation` (saturating).
    pub available: u64,
}

/// A node device present when the connection opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestNodeDevice {
    /// Device name (`<name>`).
    pub name: String,
    /// Parent device name (`<parent>`), if any.
    pub parent: Option<String>,
    /// The device definition.
    pub xml: String,
}
