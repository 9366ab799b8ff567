//! Tests of the default configuration and the custom-file loader.

use std::path::Path;

use vireo_messages::{DomainState, ErrorCode, ErrorDomain, parse_uuid};
use vireo_xml::{DomainDef, Element, NetworkDef, PoolDef, VolumeDef};

use super::defaults::*;
use super::*;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn load_str(text: &str) -> VirResult<TestConfig> {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "node.xml", text);
    TestConfig::load(&path)
}

use vireo_messages::VirResult;

// ----- default configuration -----

#[test]
fn default_config_contents() {
    let c = TestConfig::default_config();
    assert_eq!(c.node, NodeInfo::default());
    assert!(c.numa);
    assert!(!c.requires_auth());

    assert_eq!(c.domains.len(), 1);
    let d = &c.domains[0];
    assert_eq!(d.runstate, DomainState::Running);
    assert!(!d.transient && !d.has_managed_save && d.snapshots.is_empty());
    let def = DomainDef::parse(&d.xml).unwrap();
    assert_eq!(def.name(), DEFAULT_DOMAIN_NAME);
    assert_eq!(def.uuid(), parse_uuid(DEFAULT_DOMAIN_UUID));
    let dom = Element::parse(&d.xml).unwrap();
    assert_eq!(dom.attr("type"), Some("test"));
    assert_eq!(dom.attr("id"), None, "inactive form has no id");
    assert_eq!(dom.child_text("name").as_deref(), Some(DEFAULT_DOMAIN_NAME));
    let uuid = dom.child_text("uuid").unwrap();
    assert_eq!(parse_uuid(&uuid), parse_uuid(DEFAULT_DOMAIN_UUID));
    assert_eq!(
        dom.path_attr(&["devices", "interface", "target"], "dev"),
        Some("testnet0")
    );

    assert_eq!(c.networks.len(), 1);
    let net_def = NetworkDef::parse(&c.networks[0]).unwrap();
    assert_eq!(net_def.uuid(), parse_uuid(DEFAULT_NETWORK_UUID));
    let net = Element::parse(&c.networks[0]).unwrap();
    assert_eq!(
        net.child_text("name").as_deref(),
        Some(DEFAULT_NETWORK_NAME)
    );
    assert_eq!(
        net.child_text("uuid").as_deref(),
        Some(DEFAULT_NETWORK_UUID)
    );
    assert_eq!(net.path_attr(&["bridge"], "name"), Some("virbr0"));

    assert_eq!(c.interfaces.len(), 1);
    let iface = Element::parse(&c.interfaces[0]).unwrap();
    assert_eq!(iface.attr("name"), Some(DEFAULT_INTERFACE_NAME));
    assert_eq!(
        iface.path_attr(&["mac"], "address"),
        Some(DEFAULT_INTERFACE_MAC)
    );

    assert_eq!(c.pools.len(), 1);
    let p = &c.pools[0];
    assert!(p.volumes.is_empty());
    assert_eq!(
        (p.capacity, p.allocation, p.available),
        (107_374_182_400, 0, 107_374_182_400)
    );
    let pool_def = PoolDef::parse(&p.xml).unwrap();
    assert_eq!(pool_def.name(), DEFAULT_POOL_NAME);
    assert_eq!(pool_def.uuid(), parse_uuid(DEFAULT_POOL_UUID));
    assert_eq!(pool_def.capacity_bytes().unwrap(), Some(POOL_CAPACITY));
    let pool = Element::parse(&p.xml).unwrap();
    assert_eq!(pool.child_text("name").as_deref(), Some(DEFAULT_POOL_NAME));
    assert_eq!(pool.child_text("uuid").as_deref(), Some(DEFAULT_POOL_UUID));
    assert_eq!(
        pool.path_text(&["target", "path"]).as_deref(),
        Some("/default-pool")
    );

    let devs: Vec<(&str, Option<&str>)> = c
        .devices
        .iter()
        .map(|d| (d.name.as_str(), d.parent.as_deref()))
        .collect();
    assert_eq!(
        devs,
        [
            ("computer", None),
            ("scsi_host1", Some("computer")),
            ("scsi_host2", Some("computer")),
            ("scsi_host11", Some("scsi_host1")),
        ]
    );
    for d in &c.devices {
        let dev = Element::parse(&d.xml).unwrap();
        assert_eq!(dev.child_text("name").as_deref(), Some(d.name.as_str()));
        assert_eq!(dev.child_text("parent"), d.parent);
    }
}

/// The default objects are stored as libvirt prints them, so writing them back with
/// vireo-xml's writer gives the same bytes.
#[test]
fn default_xml_round_trips_through_the_writer() {
    let c = TestConfig::default_config();
    let mut docs = vec![
        c.domains[0].xml.clone(),
        c.networks[0].clone(),
        c.interfaces[0].clone(),
    ];
    docs.extend(c.devices.iter().map(|d| d.xml.clone()));
    for doc in docs {
        assert_eq!(Element::parse(&doc).unwrap().to_xml(), doc);
    }
}

/// The pool's empty `<source>` is printed by libvirt as an open and a close tag on
/// two lines; vireo-xml's parser treats that whitespace as layout, so a plain round
/// trip yields `<source/>`. This records the difference (see the module report).
#[test]
fn default_pool_source_round_trip() {
    let xml = TestConfig::default_config().pools[0].xml.clone();
    assert!(xml.contains("  <source>\n  </source>\n"));
    let round = Element::parse(&xml).unwrap().to_xml();
    let libvirt_form = round.replace("  <source/>\n", "  <source>\n  </source>\n");
    assert_eq!(libvirt_form, xml);
}

// ----- custom files -----

/// The example of spec §6.
const EXAMPLE: &str = "<node>
  <cpu>
    <nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>2</threads>
    <active>6</active><mhz>2000</mhz><model>x86_64</model>
  </cpu>
  <memory>8388608</memory>
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>runner</name>
    <memory>524288</memory>
    <os><type>hvm</type></os>
    <test:runstate>3</test:runstate>
  </domain>
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>off</name>
    <memory>524288</memory>
    <os><type>hvm</type></os>
    <test:runstate>5</test:runstate>
    <test:hasmanagedsave/>
  </domain>
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>tr</name>
    <memory>524288</memory>
    <os><type>hvm</type></os>
    <test:transient/>
  </domain>
  <pool type='dir'>
    <name>p</name>
    <target><path>/p</path></target>
    <volume><name>v.img</name><capacity>1024</capacity><allocation>512</allocation></volume>
  </pool>
  <auth><user password='pw'>alice</user></auth>
</node>
";

#[test]
fn spec_example_loads() {
    let c = load_str(EXAMPLE).unwrap();
    assert_eq!(
        c.node,
        NodeInfo {
            model: "x86_64".into(),
            memory_kib: 8_388_608,
            cpus: 6,
            mhz: 2000,
            nodes: 1,
            sockets: 1,
            cores: 4,
            threads: 2,
        }
    );
    assert!(!c.numa);
    assert!(!capabilities_xml(&c).contains("<topology>"));

    let summary: Vec<(String, DomainState, bool, bool)> = c
        .domains
        .iter()
        .map(|d| {
            let e = Element::parse(&d.xml).unwrap();
            (
                e.child_text("name").unwrap(),
                d.runstate,
                d.transient,
                d.has_managed_save,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("runner".to_string(), DomainState::Paused, false, false),
            ("off".to_string(), DomainState::Shutoff, false, true),
            ("tr".to_string(), DomainState::Running, true, false),
        ]
    );
    for d in &c.domains {
        assert!(!d.xml.contains("test:"), "{}", d.xml);
        assert!(!d.xml.contains("xmlns"), "{}", d.xml);
        assert!(d.snapshots.is_empty());
    }
    assert_eq!(
        c.domains[0].xml,
        "<domain type='test'>\n  <name>runner</name>\n  <memory>524288</memory>\n  <os>\n    <type>hvm</type>\n  </os>\n</domain>\n"
    );

    assert!(c.networks.is_empty() && c.interfaces.is_empty() && c.devices.is_empty());

    assert_eq!(c.pools.len(), 1);
    let p = &c.pools[0];
    assert_eq!(p.allocation, 512);
    assert_eq!(p.capacity, POOL_CAPACITY);
    assert_eq!(p.available, POOL_CAPACITY - 512);
    let pool = Element::parse(&p.xml).unwrap();
    assert!(pool.child("volume").is_none());
    assert_eq!(pool.child_text("allocation").as_deref(), Some("512"));
    assert_eq!(pool.path_attr(&["allocation"], "unit"), Some("bytes"));
    let names: Vec<&str> = pool.elements().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["name", "capacity", "allocation", "available", "target"]
    );

    assert_eq!(p.volumes.len(), 1);
    let vol_def = VolumeDef::parse(&p.volumes[0]).unwrap();
    assert_eq!(vol_def.key().as_deref(), Some("/p/v.img"));
    assert_eq!(vol_def.target_path().as_deref(), Some("/p/v.img"));
    assert_eq!(vol_def.capacity_bytes(), 1024);
    assert_eq!(vol_def.allocation_bytes().unwrap(), Some(512));
    let vol = Element::parse(&p.volumes[0]).unwrap();
    assert_eq!(vol.child_text("name").as_deref(), Some("v.img"));
    assert_eq!(vol.child_text("key").as_deref(), Some("/p/v.img"));
    assert_eq!(
        vol.path_text(&["target", "path"]).as_deref(),
        Some("/p/v.img")
    );
    assert_eq!(vol.child_text("capacity").as_deref(), Some("1024"));
    assert_eq!(vol.child_text("allocation").as_deref(), Some("512"));

    assert_eq!(c.auth, [("alice".to_string(), Some("pw".to_string()))]);
    assert!(c.requires_auth());
}

#[test]
fn empty_node_keeps_default_node_info() {
    let c = load_str("<node/>").unwrap();
    assert_eq!(c, TestConfig::empty());
}

#[test]
fn file_references_are_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("defs");
    std::fs::create_dir(&sub).unwrap();
    write(
        &sub,
        "dom.xml",
        "<domain type='kvm' xmlns:t='http://libvirt.org/schemas/domain/test/1.0'>\n  <name>fromfile</name>\n  <memory>1024</memory>\n  <os><type>hvm</type></os>\n  <t:runstate>5</t:runstate>\n  <t:domainsnapshot file='defs/snap.xml'/>\n</domain>\n",
    );
    write(
        &sub,
        "snap.xml",
        "<domainsnapshot><name>s1</name><state>shutoff</state></domainsnapshot>",
    );
    write(
        &sub,
        "net.xml",
        "<network><name>n1</name><bridge name='br1'/></network>",
    );
    write(
        &sub,
        "iface.xml",
        "<interface type='ethernet' name='eth9'><mac address='00:11:22:33:44:55'/></interface>",
    );
    write(
        &sub,
        "pool.xml",
        "<pool type='dir'><name>fp</name><uuid>dfe224cb-28fb-8dd0-c4b2-64eb3f0f4567</uuid><target><path>/fp</path></target><volume file='defs/vol.xml'/></pool>",
    );
    write(
        &sub,
        "vol.xml",
        "<volume><name>big</name><capacity unit='KiB'>4</capacity><target><path>/elsewhere/big</path></target></volume>",
    );
    write(
        &sub,
        "dev.xml",
        "<device><name>d1</name><parent>computer</parent><capability type='system'/></device>",
    );
    let path = write(
        dir.path(),
        "node.xml",
        "<node>\n  <domain file='defs/dom.xml'/>\n  <network file='defs/net.xml'/>\n  <interface file='defs/iface.xml'/>\n  <pool file='defs/pool.xml'/>\n  <device file='defs/dev.xml'/>\n</node>\n",
    );
    // Like libvirt, every `file=` (even one inside a referenced domain file) is
    // relative to the configuration file, hence `defs/snap.xml`
    // and `defs/vol.xml` above.
    let c = TestConfig::load(&path).unwrap();

    assert_eq!(c.domains.len(), 1);
    let d = &c.domains[0];
    assert_eq!(d.runstate, DomainState::Shutoff);
    assert_eq!(
        d.xml,
        "<domain type='kvm'>\n  <name>fromfile</name>\n  <memory>1024</memory>\n  <os>\n    <type>hvm</type>\n  </os>\n</domain>\n"
    );
    assert_eq!(d.snapshots.len(), 1);
    let snap = Element::parse(&d.snapshots[0]).unwrap();
    assert_eq!(snap.name, "domainsnapshot");
    assert_eq!(snap.child_text("name").as_deref(), Some("s1"));

    assert_eq!(
        Element::parse(&c.networks[0])
            .unwrap()
            .child_text("name")
            .as_deref(),
        Some("n1")
    );
    assert_eq!(
        Element::parse(&c.interfaces[0]).unwrap().attr("name"),
        Some("eth9")
    );

    // Volumes of a pool loaded from a file come from that file; an explicit target
    // path is kept and becomes the key; allocation defaults to the capacity.
    let p = &c.pools[0];
    assert_eq!(p.allocation, 4096);
    let vol = Element::parse(&p.volumes[0]).unwrap();
    assert_eq!(vol.child_text("key").as_deref(), Some("/elsewhere/big"));
    assert_eq!(
        vol.path_text(&["target", "path"]).as_deref(),
        Some("/elsewhere/big")
    );

    assert_eq!(c.devices[0].name, "d1");
    assert_eq!(c.devices[0].parent.as_deref(), Some("computer"));
}

#[test]
fn test_namespace_is_recognised_by_uri_not_prefix() {
    let c = load_str(
        "<node xmlns:zz='http://libvirt.org/schemas/domain/test/1.0' xmlns:q='http://example.org/q'>
  <domain type='test'>
    <name>a</name>
    <memory>1024</memory>
    <os><type>hvm</type></os>
    <zz:runstate>3</zz:runstate>
    <zz:domainsnapshot><name>inline</name><state>paused</state></zz:domainsnapshot>
    <q:meta>kept</q:meta>
  </domain>
  <domain type='test' xmlns:test='http://example.org/not-the-test-namespace'>
    <name>b</name>
    <memory>1024</memory>
    <os><type>hvm</type></os>
    <test:runstate>5</test:runstate>
  </domain>
</node>",
    )
    .unwrap();
    let a = &c.domains[0];
    assert_eq!(a.runstate, DomainState::Paused);
    assert_eq!(a.snapshots.len(), 1);
    assert_eq!(
        a.snapshots[0],
        "<domainsnapshot>\n  <name>inline</name>\n  <state>paused</state>\n</domainsnapshot>\n"
    );
    // Foreign namespaced content stays, with its declaration carried along.
    let dom = Element::parse(&a.xml).unwrap();
    assert_eq!(dom.attr("xmlns:q"), Some("http://example.org/q"));
    assert_eq!(dom.child_text("q:meta").as_deref(), Some("kept"));
    assert!(!a.xml.contains("zz"));

    // A `test:` prefix bound to another URI is not the test namespace.
    let b = &c.domains[1];
    assert_eq!(b.runstate, DomainState::Running);
    assert!(b.xml.contains("<test:runstate>5</test:runstate>"));
}

#[test]
fn cpu_values_and_active_cap() {
    let c = load_str(
        "<node><cpu><nodes>2</nodes><sockets>2</sockets><cores>2</cores><threads>1</threads><active>64</active></cpu></node>",
    )
    .unwrap();
    assert_eq!(
        c.node.cpus, 8,
        "active larger than the product does not raise it"
    );
    assert_eq!(c.node.mhz, 1400);
    assert_eq!(c.node.model, "i686");
    assert_eq!(c.node.memory_kib, 3_145_728);
}

// ----- errors -----

#[test]
fn missing_file_error() {
    let e = TestConfig::load(Path::new("/nonexistent/missing.xml")).unwrap_err();
    assert_eq!(e.code, ErrorCode::XmlError);
    assert_eq!(e.domain, ErrorDomain::Test);
    assert_eq!(
        e.message,
        "XML error: failed to parse xml document '/nonexistent/missing.xml'"
    );
}

#[test]
fn missing_referenced_file_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "node.xml",
        "<node><network file='nope.xml'/></node>",
    );
    let e = TestConfig::load(&path).unwrap_err();
    assert_eq!(e.code, ErrorCode::XmlError);
    assert_eq!(
        e.message,
        format!(
            "XML error: failed to parse xml document '{}'",
            dir.path().join("nope.xml").display()
        )
    );
}

#[test]
fn malformed_and_wrong_root() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bad.xml", "<node>\n  <domain>\n</node>\n");
    let e = TestConfig::load(&path).unwrap_err();
    assert_eq!(e.code, ErrorCode::XmlDetail);
    assert_eq!(e.domain, ErrorDomain::Test);
    assert!(
        e.message.starts_with(&format!("{}:3: ", path.display())),
        "{}",
        e.message
    );

    let e = load_str("<nodes/>").unwrap_err();
    assert_eq!(e.code, ErrorCode::XmlError);
    assert_eq!(e.message, "XML error: Root element is not 'node'");

    let e = load_str("<node><network><name>x</name></network><pool file='/dev/null'/></node>")
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::XmlDetail, "{}", e.message);
}

#[test]
fn invalid_numbers() {
    let e = load_str("<node><cpu><cores>four</cores></cpu></node>").unwrap_err();
    assert_eq!(e.code, ErrorCode::XmlError);
    assert_eq!(e.message, "XML error: invalid node cpu cores value");
    let e = load_str("<node><memory>-1</memory></node>").unwrap_err();
    assert_eq!(e.message, "XML error: invalid node memory value");
    let e = load_str(&format!(
        "<node><cpu><model>{}</model></cpu></node>",
        "x".repeat(32)
    ))
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InternalError);
    assert!(e.message.contains("too big for destination"));
}

const NS: &str = "xmlns:test='http://libvirt.org/schemas/domain/test/1.0'";

#[test]
fn forbidden_state_combinations() {
    let e = load_str(&format!(
        "<node><domain type='test' {NS}><name>x</name><test:transient/><test:runstate>5</test:runstate></domain></node>"
    ))
    .unwrap_err();
    assert_eq!((e.code, e.domain), (ErrorCode::XmlError, ErrorDomain::Test));
    assert_eq!(
        e.message,
        "XML error: transient domain cannot have runstate 'shutoff'"
    );

    let e = load_str(&format!(
        "<node><domain type='test' {NS}><name>x</name><test:hasmanagedsave/></domain></node>"
    ))
    .unwrap_err();
    assert_eq!(
        e.message,
        "XML error: domain with managedsave data can only have runstate 'shutoff'"
    );

    let e = load_str(&format!(
        "<node><domain type='test' {NS}><name>x</name><test:runstate>9</test:runstate></domain></node>"
    ))
    .unwrap_err();
    assert_eq!(e.message, "XML error: runstate '9' out of range'");

    let e = load_str(&format!(
        "<node><domain type='test' {NS}><name>x</name><test:runstate>up</test:runstate></domain></node>"
    ))
    .unwrap_err();
    assert_eq!(e.message, "XML error: invalid runstate");
}

#[test]
fn auth_and_object_errors() {
    let e = load_str("<node><auth><user password='x'></user></auth></node>").unwrap_err();
    assert_eq!(
        e.message,
        "XML error: missing username in /node/auth/user field"
    );
    let c =
        load_str("<node><auth><user>bob</user><user password=''>eve</user></auth></node>").unwrap();
    assert_eq!(
        c.auth,
        [
            ("bob".to_string(), None),
            ("eve".to_string(), Some(String::new()))
        ]
    );

    let e = load_str(
        "<node><pool type='dir'><name>p</name><target><path>/p</path></target><volume><name>v</name></volume></pool></node>",
    )
    .unwrap_err();
    assert_eq!(
        (e.code, e.domain),
        (ErrorCode::XmlError, ErrorDomain::Storage)
    );
    assert_eq!(e.message, "XML error: missing capacity element");

    let e = load_str("<node><device><parent>computer</parent></device></node>").unwrap_err();
    assert_eq!(e.domain, ErrorDomain::Nodedev);

    // Definitions are validated as a define would validate them.
    let e = load_str("<node><domain type='test'><name>nomem</name></domain></node>").unwrap_err();
    assert_eq!(
        (e.code, e.domain),
        (ErrorCode::XmlError, ErrorDomain::Domain)
    );
    let e = load_str("<node><network><uuid>x</uuid></network></node>").unwrap_err();
    assert_eq!(e.domain, ErrorDomain::Network);
    let e = load_str("<node><pool><name>p</name></pool></node>").unwrap_err();
    assert_eq!(e.message, "XML error: storage pool missing type attribute");

    // A `file=` reference to a document of another kind.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "net.xml", "<network><name>n</name></network>");
    let path = write(
        dir.path(),
        "node.xml",
        "<node><domain file='net.xml'/></node>",
    );
    let e = TestConfig::load(&path).unwrap_err();
    assert_eq!(e.code, ErrorCode::XmlError);
    assert_eq!(
        e.message,
        "XML error: expecting root element of 'domain', not 'network'"
    );
}
