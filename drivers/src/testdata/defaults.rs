//! The objects `test:///default` starts with (spec §2.2), as the XML libvirt 9.0
//! prints for them.
//!
//! libvirt builds them from a terse built-in `<node>` document and then formats them
//! with its own defaults filled in (`placement='static'`, `<clock>`, lifecycle
//! actions, the generated `testnet0` target, network `stp`/`delay`, pool sizes...).
//! Keeping the *formatted* text here means a parse-and-format round trip through
//! `vireo-xml` reproduces libvirt's output byte for byte, with no default-filling
//! logic needed for the default objects.

use vireo_messages::DomainState;

use super::{TestConfig, TestDomain, TestNodeDevice, TestPool, host::NodeInfo};

/// Name of the default domain.
pub const DEFAULT_DOMAIN_NAME: &str = "test";
/// UUID of the default domain.
pub const DEFAULT_DOMAIN_UUID: &str = "6695eb01-f6a4-8304-79aa-97f2502e193f";
/// Name of the default network.
pub const DEFAULT_NETWORK_NAME: &str = "default";
/// UUID of the default network.
pub const DEFAULT_NETWORK_UUID: &str = "dd8fe884-6c02-601e-7551-cca97df1c5df";
/// Name of the default interface.
pub const DEFAULT_INTERFACE_NAME: &str = "eth1";
/// MAC address of the default interface.
pub const DEFAULT_INTERFACE_MAC: &str = "aa:bb:cc:dd:ee:ff";
/// Name of the default storage pool.
pub const DEFAULT_POOL_NAME: &str = "default-pool";
/// UUID of the default storage pool.
pub const DEFAULT_POOL_UUID: &str = "dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566";
/// Capacity of every test-driver pool: 100 GiB in bytes.
pub const POOL_CAPACITY: u64 = 100 * 1024 * 1024 * 1024;

/// Domain `test`, inactive form (`DOMAIN_GET_XML_DESC` with flag INACTIVE). The live
/// form only adds `id='N'` to the root element.
pub const DEFAULT_DOMAIN_XML: &str = "<domain type='test'>
  <name>test</name>
  <uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>
  <memory unit='KiB'>8388608</memory>
  <currentMemory unit='KiB'>2097152</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='i686'>hvm</type>
    <boot dev='hd'/>
  </os>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <source file='/guest/diskimage1'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </disk>
    <interface type='network'>
      <mac address='aa:bb:cc:dd:ee:ff'/>
      <source network='default'/>
      <target dev='testnet0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x0'/>
    </interface>
    <memballoon model='virtio'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>
    </memballoon>
  </devices>
</domain>
";

/// Network `default` (active, persistent).
pub const DEFAULT_NETWORK_XML: &str = "<network>
  <name>default</name>
  <uuid>dd8fe884-6c02-601e-7551-cca97df1c5df</uuid>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
";

/// Interface `eth1` (active).
pub const DEFAULT_INTERFACE_XML: &str = "<interface type='ethernet' name='eth1'>
  <start mode='onboot'/>
  <mtu size='1492'/>
  <protocol family='ipv4'>
    <ip address='192.168.0.5' prefix='24'/>
    <route gateway='192.168.0.1'/>
  </protocol>
  <mac address='aa:bb:cc:dd:ee:ff'/>
</interface>
";

/// Storage pool `default-pool` (active, persistent, no volumes). Note the empty
/// `<source>` printed as an open and a close tag on separate lines, as libvirt does.
pub const DEFAULT_POOL_XML: &str = "<pool type='dir'>
  <name>default-pool</name>
  <uuid>dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566</uuid>
  <capacity unit='bytes'>107374182400</capacity>
  <allocation unit='bytes'>0</allocation>
  <available unit='bytes'>107374182400</available>
  <source>
  </source>
  <target>
    <path>/default-pool</path>
  </target>
</pool>
";

/// Node device `computer` (cap system, no parent).
pub const NODEDEV_COMPUTER_XML: &str = "<device>
  <name>computer</name>
  <capability type='system'>
    <hardware>
      <vendor>Libvirt</vendor>
      <version>Test driver</version>
      <serial>123456</serial>
      <uuid>11111111-2222-3333-4444-555555555555</uuid>
    </hardware>
    <firmware>
      <vendor>Libvirt</vendor>
      <version>Test Driver</version>
      <release_date>01/22/2007</release_date>
    </firmware>
  </capability>
</device>
";

/// Node device `scsi_host1`: an FC host under `computer`. Its configuration says
/// max_vports 127 / vports 1, but libvirt 9.0 formats the vport counters as 0 / 0.
pub const NODEDEV_SCSI_HOST1_XML: &str = "<device>
  <name>scsi_host1</name>
  <parent>computer</parent>
  <capability type='scsi_host'>
    <host>1</host>
    <unique_id>0</unique_id>
    <capability type='fc_host'>
      <wwnn>2000000012341234</wwnn>
      <wwpn>1000000012341234</wwpn>
      <fabric_wwn>2000000043214321</fabric_wwn>
    </capability>
    <capability type='vport_ops'>
      <max_vports>0</max_vports>
      <vports>0</vports>
    </capability>
  </capability>
</device>
";

/// Node device `scsi_host2`: an FC host under `computer` (configured 127 / 0,
/// formatted 0 / 0).
pub const NODEDEV_SCSI_HOST2_XML: &str = "<device>
  <name>scsi_host2</name>
  <parent>computer</parent>
  <capability type='scsi_host'>
    <host>2</host>
    <unique_id>1</unique_id>
    <capability type='fc_host'>
      <wwnn>2000000056785678</wwnn>
      <wwpn>1000000056785678</wwpn>
      <fabric_wwn>2000000087658765</fabric_wwn>
    </capability>
    <capability type='vport_ops'>
      <max_vports>0</max_vports>
      <vports>0</vports>
    </capability>
  </capability>
</device>
";

/// Node device `scsi_host11`: an FC host (vHBA-like, no vport_ops) under `scsi_host1`.
pub const NODEDEV_SCSI_HOST11_XML: &str = "<device>
  <name>scsi_host11</name>
  <parent>scsi_host1</parent>
  <capability type='scsi_host'>
    <host>11</host>
    <unique_id>10</unique_id>
    <capability type='fc_host'>
      <wwnn>2000000034563456</wwnn>
      <wwpn>1000000034563456</wwpn>
      <fabric_wwn>2000000043214321</fabric_wwn>
    </capability>
  </capability>
</device>
";

/// The node devices of `test:///default` as `(name, parent, xml)`, in definition
/// order (libvirt lists them in hash order; callers that care must not rely on this).
pub const DEFAULT_NODE_DEVICES: [(&str, Option<&str>, &str); 4] = [
    ("computer", None, NODEDEV_COMPUTER_XML),
    ("scsi_host1", Some("computer"), NODEDEV_SCSI_HOST1_XML),
    ("scsi_host2", Some("computer"), NODEDEV_SCSI_HOST2_XML),
    ("scsi_host11", Some("scsi_host1"), NODEDEV_SCSI_HOST11_XML),
];

/// Pool-source discovery answer for type `logical` (`FIND_STORAGE_POOL_SOURCES`).
pub const POOL_SOURCES_LOGICAL_XML: &str = "<sources>
  <source>
    <device path='/dev/sda20'/>
    <name>testvg1</name>
    <format type='lvm2'/>
  </source>
  <source>
    <device path='/dev/sda21'/>
    <name>testvg2</name>
    <format type='lvm2'/>
  </source>
</sources>
";

/// Pool-source discovery answer for type `netfs`, for the host named in the request's
/// source spec (the host name is escaped for use in an attribute).
pub fn pool_sources_netfs_xml(host: &str) -> String {
    format!(
        "<sources>\n  <source>\n    <host name='{}'/>\n    <dir path='/testshare'/>\n    <format type='nfs'/>\n  </source>\n</sources>\n",
        escape_attr(host)
    )
}

/// Escapes text for a single-quoted attribute value, as libvirt's formatter does.
pub(crate) fn escape_attr(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

impl TestConfig {
    /// The state `test:///default` starts from: the default node with its two NUMA
    /// cells, the running domain `test`, the active network `default`, the active
    /// interface `eth1`, the active pool `default-pool` without volumes and the four
    /// node devices; no authentication.
    pub fn default_config() -> TestConfig {
        TestConfig {
            node: NodeInfo::default(),
            numa: true,
            domains: vec![TestDomain {
                xml: DEFAULT_DOMAIN_XML.to_string(),
                runstate: DomainState::Running,
                transient: false,
                has_managed_save: false,
                snapshots: Vec::new(),
            }],
            networks: vec![DEFAULT_NETWORK_XML.to_string()],
            interfaces: vec![DEFAULT_INTERFACE_XML.to_string()],
            pools: vec![TestPool {
                xml: DEFAULT_POOL_XML.to_string(),
                volumes: Vec::new(),
                capacity: POOL_CAPACITY,
                allocation: 0,
                available: POOL_CAPACITY,
            }],
            devices: DEFAULT_NODE_DEVICES
                .iter()
                .map(|(name, parent, xml)| TestNodeDevice {
                    name: (*name).to_string(),
                    parent: parent.map(str::to_string),
                    xml: (*xml).to_string(),
                })
                .collect(),
            auth: Vec::new(),
        }
    }
}
