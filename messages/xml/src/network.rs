//! Typed view of virtual network XML.
//!
//! [`NetworkDef`] wraps the `<network>` element: name and UUID, the bridge, the
//! forward mode, IP ranges with DHCP, DNS domain and MTU. Parsing applies libvirt's
//! checks for the identity fields; everything else stays in the DOM untouched.

use vireo_messages::{ErrorDomain, Uuid, VirResult};

use crate::common;
use crate::dom::Element;
use crate::error::{doc_names, no_name};

const ERR: ErrorDomain = ErrorDomain::Network;

/// A DHCP static host entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DhcpHost {
    /// `mac` attribute (IPv4).
    pub mac: Option<String>,
    /// `id` attribute (DHCPv6 DUID).
    pub id: Option<String>,
    /// `name` attribute.
    pub name: Option<String>,
    /// `ip` attribute.
    pub ip: Option<String>,
}

/// One `<ip>` block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpView {
    /// `address` attribute.
    pub address: Option<String>,
    /// `netmask` attribute.
    pub netmask: Option<String>,
    /// `prefix` attribute.
    pub prefix: Option<u32>,
    /// `family` attribute (`ipv4` when absent).
    pub family: String,
    /// `<dhcp><range start end>` pairs.
    pub dhcp_ranges: Vec<(String, String)>,
    /// `<dhcp><host>` entries.
    pub dhcp_hosts: Vec<DhcpHost>,
}

impl IpView {
    fn from_element(e: &Element) -> IpView {
        let dhcp = e.child("dhcp");
        IpView {
            address: e.attr("address").map(str::to_string),
            netmask: e.attr("netmask").map(str::to_string),
            prefix: e.attr("prefix").and_then(|p| p.trim().parse().ok()),
            family: e.attr("family").unwrap_or("ipv4").to_string(),
            dhcp_ranges: dhcp
                .map(|d| {
                    d.children_named("range")
                        .map(|r| {
                            (
                                r.attr("start").unwrap_or("").to_string(),
                                r.attr("end").unwrap_or("").to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            dhcp_hosts: dhcp
                .map(|d| {
                    d.children_named("host")
                        .map(|h| DhcpHost {
                            mac: h.attr("mac").map(str::to_string),
                            id: h.attr("id").map(str::to_string),
                            name: h.attr("name").map(str::to_string),
                            ip: h.attr("ip").map(str::to_string),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// A network definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkDef {
    root: Element,
}

impl NetworkDef {
    /// Parses and validates network XML.
    pub fn parse(xml: &str) -> VirResult<NetworkDef> {
        let root = common::parse_root(xml, "network", ERR, doc_names::NETWORK)?;
        NetworkDef::from_element(root)
    }

    /// Validates an already parsed `<network>` element.
    pub fn from_element(root: Element) -> VirResult<NetworkDef> {
        common::check_root(&root, "network")?;
        let name = common::name_of(&root).ok_or_else(|| no_name(ERR))?;
        common::check_name_chars(&name, &['/'], ERR)?;
        common::uuid_of(&root, ERR)?;
        Ok(NetworkDef { root })
    }

    /// The underlying element.
    pub fn element(&self) -> &Element {
        &self.root
    }

    /// The underlying element, mutably.
    pub fn element_mut(&mut self) -> &mut Element {
        &mut self.root
    }

    /// Gives up the view.
    pub fn into_element(self) -> Element {
        self.root
    }

    /// The XML as stored.
    pub fn to_xml(&self) -> String {
        self.root.to_xml()
    }

    /// Formats for `virNetworkGetXMLDesc` (the stored document, libvirt style).
    pub fn format(&self) -> String {
        self.to_xml()
    }

    /// The network name.
    pub fn name(&self) -> String {
        common::name_of(&self.root).unwrap_or_default()
    }

    /// Renames.
    pub fn set_name(&mut self, name: &str) {
        common::set_name(&mut self.root, name);
    }

    /// The UUID, if present.
    pub fn uuid(&self) -> Option<Uuid> {
        common::uuid_of(&self.root, ERR).ok().flatten()
    }

    /// Sets `<uuid>` after `<name>`.
    pub fn set_uuid(&mut self, uuid: Uuid) {
        common::set_uuid(&mut self.root, uuid);
    }

    /// The UUID, generated (v4, after `<name>`) when missing.
    pub fn ensure_uuid(&mut self) -> Uuid {
        common::ensure_uuid(&mut self.root, ERR).unwrap_or_else(|_| {
            let u = Uuid::new_v4();
            self.set_uuid(u);
            u
        })
    }

    /// `<bridge name>`.
    pub fn bridge_name(&self) -> Option<String> {
        self.root.path_attr(&["bridge"], "name").map(str::to_string)
    }

    /// Sets `<bridge name>`, creating `<bridge>` after `<forward>`/`<uuid>`/`<name>`.
    pub fn set_bridge_name(&mut self, name: &str) {
        let b = match self.root.child_mut("bridge") {
            Some(b) => b,
            None => self
                .root
                .insert_child_after_any(&["forward", "uuid", "name"], Element::new("bridge")),
        };
        b.set_attr("name", name);
    }

    /// `<bridge stp>` (`on`/`off`).
    pub fn bridge_stp(&self) -> Option<bool> {
        self.root
            .path_attr(&["bridge"], "stp")
            .and_then(common::parse_bool)
    }

    /// `<bridge delay>` in seconds.
    pub fn bridge_delay(&self) -> Option<u32> {
        self.root
            .path_attr(&["bridge"], "delay")
            .and_then(|d| d.trim().parse().ok())
    }

    /// The forward mode: `None` for an isolated network (no `<forward>`), `nat` when
    /// `<forward>` has no mode.
    pub fn forward_mode(&self) -> Option<String> {
        self.root
            .child("forward")
            .map(|f| f.attr("mode").unwrap_or("nat").to_string())
    }

    /// `<forward dev>`.
    pub fn forward_dev(&self) -> Option<String> {
        self.root.path_attr(&["forward"], "dev").map(str::to_string)
    }

    /// `<forward><nat>` as raw element (address and port ranges).
    pub fn forward_nat(&self) -> Option<&Element> {
        self.root.path(&["forward", "nat"])
    }

    /// The `<forward>` element.
    pub fn forward(&self) -> Option<&Element> {
        self.root.child("forward")
    }

    /// The `<ip>` blocks.
    pub fn ips(&self) -> Vec<IpView> {
        self.root
            .children_named("ip")
            .map(IpView::from_element)
            .collect()
    }

    /// `<domain name>` (DNS domain).
    pub fn domain_name(&self) -> Option<String> {
        self.root.path_attr(&["domain"], "name").map(str::to_string)
    }

    /// `<mtu size>`.
    pub fn mtu(&self) -> Option<u32> {
        self.root
            .path_attr(&["mtu"], "size")
            .and_then(|s| s.trim().parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vireo_messages::ErrorCode;

    const NET: &str = "<network>\n  <name>default</name>\n  <forward dev='eth0'>\n    <nat>\n      <address start='1.2.3.4' end='1.2.3.10'/>\n    </nat>\n  </forward>\n  <bridge name='virbr0' stp='on' delay='0'/>\n  <mtu size='9000'/>\n  <domain name='example.com'/>\n  <ip address='192.168.122.1' netmask='255.255.255.0'>\n    <dhcp>\n      <range start='192.168.122.2' end='192.168.122.254'/>\n      <host mac='00:16:3e:77:e2:ed' name='a.example.com' ip='192.168.122.10'/>\n    </dhcp>\n  </ip>\n  <ip family='ipv6' address='2001:db8::1' prefix='64'/>\n</network>\n";

    #[test]
    fn accessors() {
        let mut n = NetworkDef::parse(NET).unwrap();
        assert_eq!(n.name(), "default");
        assert_eq!(n.bridge_name().as_deref(), Some("virbr0"));
        assert_eq!(n.bridge_stp(), Some(true));
        assert_eq!(n.bridge_delay(), Some(0));
        assert_eq!(n.forward_mode().as_deref(), Some("nat"));
        assert_eq!(n.forward_dev().as_deref(), Some("eth0"));
        assert!(n.forward_nat().unwrap().child("address").is_some());
        assert_eq!(n.mtu(), Some(9000));
        assert_eq!(n.domain_name().as_deref(), Some("example.com"));
        let ips = n.ips();
        assert_eq!(ips.len(), 2);
        assert_eq!(ips[0].family, "ipv4");
        assert_eq!(ips[0].dhcp_ranges[0].0, "192.168.122.2");
        assert_eq!(ips[0].dhcp_hosts[0].ip.as_deref(), Some("192.168.122.10"));
        assert_eq!(ips[1].prefix, Some(64));
        assert_eq!(n.to_xml(), NET);
        let u = n.ensure_uuid();
        assert_eq!(n.uuid(), Some(u));
        n.set_bridge_name("virbr9");
        assert_eq!(n.bridge_name().as_deref(), Some("virbr9"));
    }

    #[test]
    fn errors() {
        let e = NetworkDef::parse("<network><uuid>x</uuid></network>").unwrap_err();
        assert_eq!(
            (e.code, e.domain),
            (ErrorCode::NoName, ErrorDomain::Network)
        );
        let e = NetworkDef::parse("<network><name>a/b</name></network>").unwrap_err();
        assert_eq!(e.code, ErrorCode::XmlDetail);
        let e = NetworkDef::parse("<network><name>a</name><uuid>x</uuid></network>").unwrap_err();
        assert_eq!(e.code, ErrorCode::InternalError);
        let e = NetworkDef::parse("<network><name>a</name>").unwrap_err();
        assert_eq!(
            (e.code, e.domain),
            (ErrorCode::XmlDetail, ErrorDomain::Network)
        );
        assert!(e.message.starts_with("(network_definition):1: "));
        let e = NetworkDef::parse("<domain/>").unwrap_err();
        assert_eq!(
            e.message,
            "XML error: expecting root element of 'network', not 'domain'"
        );
    }

    #[test]
    fn isolated_has_no_forward_mode() {
        let n = NetworkDef::parse("<network><name>iso</name></network>").unwrap();
        assert_eq!(n.forward_mode(), None);
    }
}
