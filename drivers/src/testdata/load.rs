//! Loading a custom test-driver configuration (`test:///PATH`, spec §6).
//!
//! The file's root is `<node>`; every part is optional. The loader follows libvirt
//! 9.0's `testOpenFromFile`: node info starts from the defaults and is overridden by
//! `<cpu>`/`<memory>`; objects may be inline or `file=` references resolved against
//! the directory of the configuration file; domains carry their initial state in
//! elements of the test namespace, recognised by namespace URI whatever the prefix;
//! pools get the test driver's fixed capacity and their volumes get a path and key.
//!
//! The output is a [`TestConfig`] of standalone XML documents: inline definitions are
//! cut out of the `<node>` document (carrying along namespace declarations they rely
//! on), test-namespace elements and their declaration are removed. Domains, networks,
//! pools and volumes are validated with `vireo-xml`'s typed views, so an invalid
//! definition fails the load with the error a define would give, as in libvirt;
//! interfaces and node devices (which have no view) are only checked for their root
//! element (and a device for its name).

use std::path::{Path, PathBuf};

use vireo_messages::{DomainState, ErrorDomain, VirError, VirResult};
use vireo_xml::error::wrong_root;
use vireo_xml::units::parse_u64;
use vireo_xml::{DomainDef, Element, NetworkDef, Node, PoolDef, VolumeDef};

use super::defaults::POOL_CAPACITY;
use super::host::MODEL_MAX_LEN;
use super::{TestConfig, TestDomain, TestNodeDevice, TestPool};

/// Namespace URI of the test driver's domain extensions (`runstate`, `transient`,
/// `hasmanagedsave`, `domainsnapshot`); conventionally bound to the prefix `test`.
pub const TEST_NAMESPACE: &str = "http://libvirt.org/schemas/domain/test/1.0";

/// One past the largest `virDomainState` value (`VIR_DOMAIN_LAST`).
const DOMAIN_STATE_LAST: u64 = 8;

impl TestConfig {
    /// Builds a configuration from the `<node>` file at `path` (spec §6).
    ///
    /// Errors follow libvirt: an unreadable file (or one referenced by `file=`) gives
    /// code 27 "XML error: failed to parse xml document 'PATH'"; malformed XML gives
    /// code 35 "PATH:LINE: MESSAGE..."; a root other than `<node>`, bad numbers,
    /// an out-of-range `runstate`, a transient shut-off domain, a managed save on a
    /// domain that is not shut off and an empty auth user are code 27 errors;
    /// all in domain 12 (`VIR_FROM_TEST`) unless the object's own parser would raise
    /// them.
    pub fn load(path: &Path) -> VirResult<TestConfig> {
        let text = read_document(path)?;
        TestConfig::from_node_xml(&text, path)
    }

    /// Builds a configuration from the text of a `<node>` document; `path` names the
    /// document in error messages and anchors relative `file=` references (its
    /// directory is used).
    pub fn from_node_xml(xml: &str, path: &Path) -> VirResult<TestConfig> {
        let root = parse_document(xml, path)?;
        if root.local_name() != "node" {
            return Err(VirError::xml(
                ErrorDomain::Test,
                "Root element is not 'node'",
            ));
        }
        let loader = Loader {
            file: path,
            root: &root,
        };
        let mut config = TestConfig::empty();
        loader.node_info(&mut config)?;
        for el in root.children_named("domain") {
            config.domains.push(loader.domain(el)?);
        }
        for el in root.children_named("network") {
            let el = loader.standalone(loader.resolve(el, "network")?);
            NetworkDef::from_element(el.clone())?;
            config.networks.push(el.to_xml());
        }
        for el in root.children_named("interface") {
            let el = loader.resolve(el, "interface")?;
            config.interfaces.push(loader.standalone(el).to_xml());
        }
        for el in root.children_named("pool") {
            config.pools.push(loader.pool(el)?);
        }
        for el in root.children_named("device") {
            config.devices.push(loader.device(el)?);
        }
        for auth in root.children_named("auth") {
            for user in auth.children_named("user") {
                let name = deep_text(user);
                if name.is_empty() {
                    return Err(VirError::xml(
                        ErrorDomain::Test,
                        "missing username in /node/auth/user field",
                    ));
                }
                config
                    .auth
                    .push((name, user.attr("password").map(str::to_string)));
            }
        }
        Ok(config)
    }
}

/// An element that is either cut out of the `<node>` document or the root of a
/// referenced file (which carries its own namespace declarations).
struct Resolved {
    element: Element,
    inline: bool,
}

/// The state shared while walking one configuration document.
struct Loader<'a> {
    file: &'a Path,
    root: &'a Element,
}

impl Loader<'_> {
    /// Applies `<cpu>` and `<memory>` to the default node info.
    fn node_info(&self, config: &mut TestConfig) -> VirResult<()> {
        let node = &mut config.node;
        let cpu = self.root.child("cpu");
        let field = |name: &str| -> VirResult<Option<u64>> {
            let text = cpu.and_then(|c| c.child(name)).map(deep_text);
            number(text, &format!("invalid node cpu {name} value"))
        };
        if let Some(v) = field("nodes")? {
            node.nodes = v as u32;
        }
        if let Some(v) = field("sockets")? {
            node.sockets = v as u32;
        }
        if let Some(v) = field("cores")? {
            node.cores = v as u32;
        }
        if let Some(v) = field("threads")? {
            node.threads = v as u32;
        }
        node.cpus = node
            .cores
            .wrapping_mul(node.threads)
            .wrapping_mul(node.sockets)
            .wrapping_mul(node.nodes);
        if let Some(v) = field("active")?
            && v < u64::from(node.cpus)
        {
            node.cpus = v as u32;
        }
        if let Some(v) = field("mhz")? {
            node.mhz = v as u32;
        }
        if let Some(model) = cpu.and_then(|c| c.child("model")).map(deep_text)
            && !model.is_empty()
        {
            if model.len() > MODEL_MAX_LEN {
                return Err(VirError::internal(
                    ErrorDomain::Test,
                    format!("Model {model} too big for destination"),
                ));
            }
            node.model = model;
        }
        let memory = self.root.child("memory").map(deep_text);
        if let Some(v) = number(memory, "invalid node memory value")? {
            node.memory_kib = v;
        }
        Ok(())
    }

    /// Replaces an element carrying `file=` by the root of that file (relative to the
    /// configuration's directory) and checks the root's name.
    fn resolve(&self, el: &Element, kind: &str) -> VirResult<Resolved> {
        let resolved = match el.attr("file") {
            Some(rel) => {
                let path = self.relative(rel);
                let text = read_document(&path)?;
                Resolved {
                    element: parse_document(&text, &path)?,
                    inline: false,
                }
            }
            None => Resolved {
                element: el.clone(),
                inline: true,
            },
        };
        if resolved.element.local_name() != kind {
            return Err(wrong_root(kind, resolved.element.local_name()));
        }
        Ok(resolved)
    }

    /// `file=` values are relative to the directory of the configuration file, also
    /// those inside a referenced file (a `<test:domainsnapshot file=...>` in a domain
    /// file), as in libvirt.
    fn relative(&self, rel: &str) -> PathBuf {
        let rel = Path::new(rel);
        if rel.is_absolute() {
            return rel.to_path_buf();
        }
        match self.file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(rel),
            _ => Path::new(".").join(rel),
        }
    }

    /// Makes an element a standalone document: an inline element gets copies of the
    /// namespace declarations of `<node>` for the prefixes it uses.
    fn standalone(&self, resolved: Resolved) -> Element {
        let mut el = resolved.element;
        if resolved.inline {
            let mut prefixes = Vec::new();
            collect_prefixes(&el, &mut prefixes);
            for p in prefixes {
                if el.declared_namespace(Some(&p)).is_none()
                    && let Some(uri) = self.root.declared_namespace(Some(&p))
                {
                    let uri = uri.to_string();
                    el.set_attr(format!("xmlns:{p}"), uri);
                }
            }
        }
        el
    }

    /// The namespace URI of a direct child of `parent` (the domain element).
    fn namespace_of(&self, child: &Element, parent: &Resolved) -> Option<String> {
        let prefix = child.prefix();
        if let Some(uri) = child.declared_namespace(prefix) {
            return Some(uri.to_string());
        }
        if let Some(uri) = parent.element.declared_namespace(prefix) {
            return Some(uri.to_string());
        }
        if parent.inline {
            return self.root.declared_namespace(prefix).map(str::to_string);
        }
        None
    }

    /// A `<domain>` with its test-namespace state.
    fn domain(&self, el: &Element) -> VirResult<TestDomain> {
        let mut resolved = self.resolve(el, "domain")?;
        let mut runstate_text = None;
        let mut transient = false;
        let mut has_managed_save = false;
        let mut snapshot_elements = Vec::new();
        let mut keep = Vec::with_capacity(resolved.element.children.len());
        for node in std::mem::take(&mut resolved.element.children) {
            let in_test_ns = node.as_element().is_some_and(|c| {
                self.namespace_of(c, &resolved).as_deref() == Some(TEST_NAMESPACE)
            });
            if !in_test_ns {
                keep.push(node);
                continue;
            }
            let Some(child) = node.as_element() else {
                continue;
            };
            match child.local_name() {
                "runstate" => {
                    runstate_text.get_or_insert_with(|| deep_text(child));
                }
                "transient" => transient = true,
                "hasmanagedsave" => has_managed_save = true,
                "domainsnapshot" => snapshot_elements.push(child.clone()),
                _ => {}
            }
        }
        resolved.element.children = keep;
        resolved
            .element
            .attrs
            .retain(|(k, v)| !(is_ns_declaration(k) && v == TEST_NAMESPACE));

        let runstate = match runstate_text.filter(|t| !t.is_empty()) {
            None => DomainState::Running,
            Some(t) => match parse_u64(&t) {
                Some(v) if v >= DOMAIN_STATE_LAST => {
                    return Err(VirError::xml(
                        ErrorDomain::Test,
                        format!("runstate '{v}' out of range'"),
                    ));
                }
                Some(v) => DomainState::from_i32(v as i32),
                None => return Err(VirError::xml(ErrorDomain::Test, "invalid runstate")),
            },
        };
        if transient && runstate == DomainState::Shutoff {
            return Err(VirError::xml(
                ErrorDomain::Test,
                "transient domain cannot have runstate 'shutoff'",
            ));
        }
        if has_managed_save && runstate != DomainState::Shutoff {
            return Err(VirError::xml(
                ErrorDomain::Test,
                "domain with managedsave data can only have runstate 'shutoff'",
            ));
        }

        let mut snapshots = Vec::with_capacity(snapshot_elements.len());
        for snap in snapshot_elements {
            snapshots.push(self.snapshot(snap)?.to_xml());
        }
        let domain = self.standalone(resolved);
        DomainDef::from_element(domain.clone())?;
        Ok(TestDomain {
            xml: domain.to_xml(),
            runstate,
            transient,
            has_managed_save,
            snapshots,
        })
    }

    /// A `<test:domainsnapshot>`: a `file=` reference to a `<domainsnapshot>`
    /// document, or the snapshot definition inline (the element itself, whose
    /// unprefixed children are the definition; a single wrapped `<domainsnapshot>`
    /// child is accepted too).
    fn snapshot(&self, el: Element) -> VirResult<Element> {
        if let Some(rel) = el.attr("file") {
            let path = self.relative(rel);
            let text = read_document(&path)?;
            let root = parse_document(&text, &path)?;
            check_snapshot_root(&root)?;
            return Ok(root);
        }
        let wrapped = {
            let mut elements = el.elements();
            match (elements.next(), elements.next()) {
                (Some(only), None) if only.local_name() == "domainsnapshot" => Some(only.clone()),
                _ => None,
            }
        };
        if let Some(only) = wrapped {
            return Ok(self.standalone(Resolved {
                element: only,
                inline: true,
            }));
        }
        let mut snap = el;
        snap.name = "domainsnapshot".to_string();
        snap.attrs
            .retain(|(k, v)| !(is_ns_declaration(k) && v == TEST_NAMESPACE));
        Ok(self.standalone(Resolved {
            element: snap,
            inline: true,
        }))
    }

    /// A `<pool>` with its volumes; sizes as the test driver sets them.
    fn pool(&self, el: &Element) -> VirResult<TestPool> {
        let mut pool = self.standalone(self.resolve(el, "pool")?);
        let volume_elements: Vec<Element> = pool.children_named("volume").cloned().collect();
        pool.remove_children("volume");
        let mut pool = PoolDef::from_element(pool)?;
        let target_path = pool
            .element()
            .path_text(&["target", "path"])
            .map(|p| p.trim().to_string())
            .unwrap_or_default();

        let mut volumes = Vec::with_capacity(volume_elements.len());
        let mut allocation: u64 = 0;
        for vol in &volume_elements {
            let vol = self.standalone(self.resolve(vol, "volume")?);
            let (vol, vol_alloc) = fill_volume(vol, &target_path)?;
            allocation = allocation.saturating_add(vol_alloc);
            volumes.push(vol);
        }
        let capacity = POOL_CAPACITY;
        let available = capacity.saturating_sub(allocation);
        pool.set_sizes(capacity, allocation, available);
        Ok(TestPool {
            xml: pool.to_xml(),
            volumes,
            capacity,
            allocation,
            available,
        })
    }

    /// A `<device>` with its name and parent.
    fn device(&self, el: &Element) -> VirResult<TestNodeDevice> {
        let resolved = self.resolve(el, "device")?;
        let dev = self.standalone(resolved);
        let name = dev
            .child("name")
            .map(|n| n.text_trimmed())
            .unwrap_or_default();
        if name.is_empty() {
            return Err(VirError::xml(
                ErrorDomain::Nodedev,
                "missing name for device",
            ));
        }
        let parent = dev
            .child("parent")
            .map(|p| p.text_trimmed())
            .filter(|p| !p.is_empty());
        Ok(TestNodeDevice {
            name,
            parent,
            xml: dev.to_xml(),
        })
    }
}

/// Validates a volume, fills its `<target><path>` (pool target + "/" + name) and
/// `<key>` (the path) when absent, and returns its XML with its allocation in bytes
/// (the capacity when `<allocation>` is absent).
fn fill_volume(vol: Element, pool_target: &str) -> VirResult<(String, u64)> {
    let mut def = VolumeDef::from_element(vol)?;
    let capacity = def.capacity_bytes();
    let allocation = def.allocation_bytes()?.unwrap_or(capacity);
    let path = match def.target_path().filter(|p| !p.is_empty()) {
        Some(p) => p,
        None => {
            let path = format!("{pool_target}/{}", def.name());
            // libvirt prints <path> first inside <target>.
            let target = def.element_mut().ensure_child("target");
            target.remove_children("path");
            target.insert_node(0, Node::Element(Element::with_text("path", &path)));
            path
        }
    };
    if def.key().is_none() {
        def.set_key(&path);
    }
    Ok((def.to_xml(), allocation))
}

fn check_snapshot_root(root: &Element) -> VirResult<()> {
    if root.local_name() == "domainsnapshot" {
        Ok(())
    } else {
        Err(wrong_root("domainsnapshot", root.local_name()))
    }
}

/// Reads a document, failing the way libvirt does for a file it cannot read.
fn read_document(path: &Path) -> VirResult<String> {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            VirError::xml(
                ErrorDomain::Test,
                format!("failed to parse xml document '{}'", path.display()),
            )
        })
}

/// Parses a document, reporting syntax errors as libvirt does (code 35, named by path).
fn parse_document(text: &str, path: &Path) -> VirResult<Element> {
    Element::parse(text).map_err(|e| e.to_vir(ErrorDomain::Test, &path.display().to_string()))
}

/// An optional unsigned number as libvirt's `virXPathLong` reads it: absent or empty
/// is `None`, anything else must be a non-negative integer.
fn number(text: Option<String>, error: &str) -> VirResult<Option<u64>> {
    match text {
        None => Ok(None),
        Some(t) if t.is_empty() => Ok(None),
        Some(t) => parse_u64(t.trim_end())
            .map(Some)
            .ok_or_else(|| VirError::xml(ErrorDomain::Test, error.to_string())),
    }
}

/// The XPath string value of an element: all descendant text, concatenated.
fn deep_text(el: &Element) -> String {
    let mut s = String::new();
    fn walk(el: &Element, s: &mut String) {
        for n in &el.children {
            match n {
                Node::Text(t) | Node::CData(t) => s.push_str(t),
                Node::Element(e) => walk(e, s),
                _ => {}
            }
        }
    }
    walk(el, &mut s);
    s
}

/// Whether an attribute name declares a namespace.
fn is_ns_declaration(name: &str) -> bool {
    name == "xmlns" || name.starts_with("xmlns:")
}

/// Every namespace prefix used by element or attribute names in the subtree.
fn collect_prefixes(el: &Element, out: &mut Vec<String>) {
    let mut add = |p: &str| {
        if p != "xml" && p != "xmlns" && !out.iter().any(|q| q == p) {
            out.push(p.to_string());
        }
    };
    if let Some(p) = el.prefix() {
        add(p);
    }
    for (k, _) in &el.attrs {
        if let Some((p, _)) = k.split_once(':') {
            add(p);
        }
    }
    for c in el.elements() {
        collect_prefixes(c, out);
    }
}
