//! Conformance corpus tests: every libvirt test document in the shared corpus parses
//! with the right view, survives a format/parse round trip and keeps its identity;
//! plus robustness (no panic on truncated or mutated input) and losslessness checks.
//!
//! The corpus lives at `../../../shared/conformance` relative to this crate (override
//! with `VIREO_CONFORMANCE_DIR`). A missing corpus is a failure, not a skip.

use std::fs;
use std::path::{Path, PathBuf};

use vireo_messages::{ErrorCode, ErrorDomain, Uuid, parse_uuid};
use vireo_xml::{Document, DomainDef, Element, FormatOptions, NetworkDef, PoolDef, VolumeDef};

fn corpus_dir() -> PathBuf {
    let dir = match std::env::var_os("VIREO_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance"),
    };
    assert!(
        dir.join("domain").is_dir() && dir.join("network").is_dir() && dir.join("storage").is_dir(),
        "conformance corpus not found at {} (set VIREO_CONFORMANCE_DIR)",
        dir.display()
    );
    dir
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Domain,
    Network,
    Pool,
    Volume,
}

fn corpus() -> Vec<(PathBuf, Kind, String)> {
    let dir = corpus_dir();
    let mut out = Vec::new();
    for sub in ["domain", "network", "storage"] {
        let mut entries: Vec<_> = fs::read_dir(dir.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "xml"))
            .collect();
        entries.sort();
        for p in entries {
            let file = p.file_name().unwrap().to_string_lossy().to_string();
            let kind = match sub {
                "domain" => Kind::Domain,
                "network" => Kind::Network,
                _ if file.starts_with("pool-") => Kind::Pool,
                _ if file.starts_with("vol-") => Kind::Volume,
                _ => panic!("unexpected storage file {file}"),
            };
            let text = fs::read_to_string(&p).unwrap();
            out.push((p, kind, text));
        }
    }
    out
}

/// The raw `<name>`/`<uuid>` text of the document, found without the DOM.
fn raw_child_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(xml[start..end].to_string())
}

#[test]
fn corpus_has_expected_size() {
    let c = corpus();
    let count = |k: Kind| c.iter().filter(|(_, kind, _)| *kind == k).count();
    assert_eq!(count(Kind::Domain), 60);
    assert_eq!(count(Kind::Network), 15);
    assert_eq!(count(Kind::Pool), 9);
    assert_eq!(count(Kind::Volume), 6);
}

#[test]
fn every_file_parses_and_round_trips() {
    for (path, kind, text) in corpus() {
        let ctx = path.display().to_string();
        let dom = Element::parse(&text).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        // DOM round trip.
        let written = dom.to_xml();
        assert_eq!(
            Element::parse(&written).unwrap(),
            dom,
            "{ctx}: DOM round trip"
        );
        // Writing is stable.
        assert_eq!(Element::parse(&written).unwrap().to_xml(), written, "{ctx}");

        let raw_name = raw_child_text(&text, "name");
        let raw_uuid = raw_child_text(&text, "uuid").and_then(|u| parse_uuid(&u));
        match kind {
            Kind::Domain => {
                let d = DomainDef::parse(&text).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                let again = DomainDef::parse(&d.format(&FormatOptions {
                    id: d.id(),
                    inactive: false,
                    secure: true,
                }))
                .unwrap();
                assert_eq!(again, d, "{ctx}");
                assert_eq!(Some(again.name()), raw_name, "{ctx}");
                assert_eq!(again.uuid(), raw_uuid, "{ctx}");
                assert!(d.os_type().is_some(), "{ctx}");
                // Normalising must keep a valid, re-parsable document.
                let mut n = d.clone();
                n.normalize().unwrap_or_else(|e| panic!("{ctx}: {e}"));
                let n2 = DomainDef::parse(&n.to_xml()).unwrap();
                assert_eq!(n2.memory_kib(), d.memory_kib(), "{ctx}");
                assert_eq!(n2.current_memory_kib(), d.current_memory_kib(), "{ctx}");
                assert_eq!(n2.name(), d.name());
                assert_eq!(n2.vcpus(), d.vcpus());
            }
            Kind::Network => {
                let n = NetworkDef::parse(&text).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                let again = NetworkDef::parse(&n.format()).unwrap();
                assert_eq!(again, n, "{ctx}");
                assert_eq!(Some(again.name()), raw_name, "{ctx}");
                assert_eq!(again.uuid(), raw_uuid, "{ctx}");
            }
            Kind::Pool => {
                let p = PoolDef::parse(&text).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                let again = PoolDef::parse(&p.format()).unwrap();
                assert_eq!(again, p, "{ctx}");
                if let Some(name) = raw_name {
                    assert_eq!(again.name(), name, "{ctx}");
                }
                assert_eq!(again.uuid(), raw_uuid, "{ctx}");
            }
            Kind::Volume => {
                let v = VolumeDef::parse(&text).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                let again = VolumeDef::parse(&v.format()).unwrap();
                assert_eq!(again, v, "{ctx}");
                assert_eq!(Some(again.name()), raw_name, "{ctx}");
                assert_eq!(again.key(), raw_child_text(&text, "key"), "{ctx}");
                assert!(again.capacity_bytes() > 0, "{ctx}");
            }
        }
    }
}

#[test]
fn wrong_view_is_rejected_with_root_error() {
    for (path, kind, text) in corpus() {
        let err = match kind {
            Kind::Domain => NetworkDef::parse(&text).unwrap_err(),
            _ => DomainDef::parse(&text).unwrap_err(),
        };
        assert_eq!(err.code, ErrorCode::XmlError, "{}", path.display());
        assert_eq!(err.domain, ErrorDomain::Xml, "{}", path.display());
        assert!(
            err.message
                .starts_with("XML error: expecting root element of")
        );
    }
}

#[test]
fn specific_corpus_facts() {
    let dir = corpus_dir();
    let read = |p: &str| fs::read_to_string(dir.join(p)).unwrap();

    let d = DomainDef::parse(&read("domain/memtune.xml")).unwrap();
    assert_eq!(d.memory_kib(), 214 * 1024);
    assert_eq!(d.current_memory_kib(), 219136);
    assert_eq!(
        d.disks()[0].source_dev.as_deref(),
        Some("/dev/HostVG/QEMUGuest1")
    );
    assert_eq!(d.disks()[0].target_bus.as_deref(), Some("ide"));

    let d = DomainDef::parse(&read("domain/vcpus-individual.xml")).unwrap();
    assert_eq!((d.vcpus(), d.current_vcpus()), (4, 2));

    let d = DomainDef::parse(&read("domain/disk-cdrom.xml")).unwrap();
    assert!(d.disks().iter().any(|x| x.device == "cdrom" && x.readonly));

    let d = DomainDef::parse(&read("domain/net-virtio.xml")).unwrap();
    let nic = &d.interfaces()[0];
    assert_eq!(nic.model.as_deref(), Some("virtio"));
    assert!(nic.mac.is_some());

    let d = DomainDef::parse(&read("domain/serial-pty-chardev.xml")).unwrap();
    assert_eq!(d.serials()[0].char_type.as_deref(), Some("pty"));
    assert_eq!(d.consoles().len(), 1);

    let d = DomainDef::parse(&read("domain/graphics-vnc.xml")).unwrap();
    assert_eq!(d.graphics()[0].graphics_type.as_deref(), Some("vnc"));

    let d = DomainDef::parse(&read("domain/qemu-simple-description-title.xml")).unwrap();
    assert!(d.title().is_some());
    assert!(d.description().unwrap().contains('\n'));
    assert!(d.features().contains(&"acpi".to_string()));

    let d = DomainDef::parse(&read("domain/domain-lxc-simple.xml")).unwrap();
    assert_eq!(d.domain_type(), "lxc");
    assert_eq!(d.os_type().as_deref(), Some("exe"));

    let n = NetworkDef::parse(&read("network/nat-network.xml")).unwrap();
    assert_eq!(n.forward_mode().as_deref(), Some("nat"));
    assert!(!n.ips().is_empty());
    assert!(!n.ips()[0].dhcp_ranges.is_empty());

    let n = NetworkDef::parse(&read("network/isolated-network.xml")).unwrap();
    assert_eq!(n.forward_mode(), None);

    let n = NetworkDef::parse(&read("network/nat-network-mtu.xml")).unwrap();
    assert!(n.mtu().is_some());

    let p = PoolDef::parse(&read("storage/pool-disk-device-nopartsep.xml")).unwrap();
    assert_eq!(p.pool_type(), "disk");
    assert!(!p.source_devices().is_empty());

    let v = VolumeDef::parse(&read("storage/vol-file.xml")).unwrap();
    assert_eq!(v.capacity_bytes(), 1u64 << 40);
    assert_eq!(v.allocation_bytes().unwrap(), Some(0));
    let v = VolumeDef::parse(&read("storage/vol-file-backing.xml")).unwrap();
    assert_eq!(v.capacity_bytes() % 1_000_000_000, 0);
    assert!(v.backing_store().is_some());
}

#[test]
fn unknown_content_survives_round_trip() {
    let xml = "<domain type='kvm' xmlns:vireo='urn:x' frobnicate='yes'>
  <!-- keep me -->
  <name>vm</name>
  <uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>
  <memory>1024</memory>
  <vireo:thing xmlns:vireo='urn:x' level='11'>
    <vireo:sub>data &amp; more</vireo:sub>
    <![CDATA[raw <stuff>]]>
  </vireo:thing>
  <os>
    <type>hvm</type>
  </os>
  <metadata>
    <app:info xmlns:app='http://example.org/app'>hello</app:info>
  </metadata>
</domain>
";
    let mut d = DomainDef::parse(xml).unwrap();
    d.set_name("vm2");
    d.set_memory_kib(2048);
    let out = d.to_xml();
    assert!(out.contains("frobnicate='yes'"), "{out}");
    assert!(out.contains("xmlns:vireo='urn:x'"), "{out}");
    assert!(out.contains("<!-- keep me -->"), "{out}");
    assert!(
        out.contains("<vireo:sub>data &amp; more</vireo:sub>"),
        "{out}"
    );
    assert!(out.contains("<![CDATA[raw <stuff>]]>"), "{out}");
    assert!(out.contains("<app:info xmlns:app='http://example.org/app'>hello</app:info>"));
    let again = DomainDef::parse(&out).unwrap();
    assert_eq!(again, d);
    assert_eq!(again.name(), "vm2");
    assert_eq!(
        again.uuid(),
        Some(Uuid::parse_str("6695eb01-f6a4-8304-79aa-97f2502e193f").unwrap())
    );
    let thing = again.element().child("vireo:thing").unwrap();
    assert_eq!(thing.attr("level"), Some("11"));
    assert_eq!(thing.local_name(), "thing");
    assert_eq!(thing.prefix(), Some("vireo"));
    assert_eq!(thing.declared_namespace(Some("vireo")), Some("urn:x"));
    assert!(again.metadata().unwrap().child("app:info").is_some());
}

#[test]
fn malformed_xml_reports_line_and_column() {
    let xml = "<domain type='kvm'>\n  <name>vm</name>\n  <memory>1024</memory>\n  <os><type>hvm</type></os>\n  <devices>\n    <disk type='file' device='disk'>\n  </devices>\n</domain>\n";
    let e = DomainDef::parse(xml).unwrap_err();
    assert_eq!(e.code, ErrorCode::XmlDetail);
    assert_eq!(e.domain, ErrorDomain::Domain);
    let mut lines = e.message.lines();
    let head = lines.next().unwrap();
    assert_eq!(
        head,
        "(domain_definition):7: Opening and ending tag mismatch: disk line 6 and devices"
    );
    assert_eq!(lines.next(), Some("  </devices>"));
    assert_eq!(lines.next(), Some("--^"));

    let low = Element::parse(xml).unwrap_err();
    assert_eq!((low.line(), low.column()), (7, 3));

    // Bad attribute syntax on line 3.
    let e = NetworkDef::parse("<network>\n  <name>n</name>\n  <bridge name=virbr0/>\n</network>")
        .unwrap_err();
    assert_eq!(
        (e.code, e.domain),
        (ErrorCode::XmlDetail, ErrorDomain::Network)
    );
    assert!(
        e.message.starts_with("(network_definition):3: "),
        "{}",
        e.message
    );

    let e = PoolDef::parse("<pool type='dir'>\n<name>p</name>").unwrap_err();
    assert_eq!(e.code, ErrorCode::XmlDetail);
    assert!(
        e.message
            .starts_with("(storage_pool_definition):2: Premature end of data in tag pool line 1"),
        "{}",
        e.message
    );
}

#[test]
fn bad_memory_unit_and_values() {
    let base = "<domain type='kvm'><name>v</name><memory unit='UNIT'>VALUE</memory><os><type>hvm</type></os></domain>";
    let parse = |unit: &str, value: &str| {
        DomainDef::parse(&base.replace("UNIT", unit).replace("VALUE", value))
    };
    // libvirt reports an unknown unit as an invalid argument (code 8), a bad number as
    // an XML error (code 27) and an overflow as code 82.
    let e = parse("furlongs", "1").unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArg);
    assert_eq!(e.message, "invalid argument: unknown suffix 'furlongs'");
    let e = parse("KiB", "12abc").unwrap_err();
    assert_eq!(e.code, ErrorCode::XmlError);
    let e = parse("KiB", "-5").unwrap_err();
    assert_eq!(e.code, ErrorCode::XmlError);
    let e = parse("EiB", "1000000").unwrap_err();
    assert_eq!(e.code, ErrorCode::Overflow);
    let e = parse("b", "999999999999999999999999999999").unwrap_err();
    assert_eq!(e.code, ErrorCode::XmlError);
    for (unit, value, kib) in [
        ("b", "1", 1),
        ("bytes", "2048", 2),
        ("k", "3", 3),
        ("KB", "1000", 977),
        ("M", "1", 1024),
        ("MB", "1", 977),
        ("G", "1", 1 << 20),
        ("GB", "1", 976_563),
        ("T", "1", 1 << 30),
        ("TB", "1", 976_562_500),
    ] {
        assert_eq!(parse(unit, value).unwrap().memory_kib(), kib, "{unit}");
    }
}

// ----- robustness -----

/// A small deterministic PRNG (xorshift64*), so failures are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % (n.max(1) as u64)) as usize
    }
}

/// Runs every parser on `text`; when the DOM parse succeeds, also checks that the
/// written form re-parses to the same tree.
fn exercise(text: &str) {
    if let Ok(doc) = Document::parse(text) {
        let written = doc.to_xml();
        let again = Document::parse(&written)
            .unwrap_or_else(|e| panic!("written form does not parse: {e}\n{written}"));
        assert_eq!(
            again, doc,
            "round trip changed the tree:\n{text}\n---\n{written}"
        );
    }
    if let Ok(mut d) = DomainDef::parse(text) {
        let _ = d.format(&FormatOptions::default());
        let _ = d.normalize();
        let _ = (
            d.disks(),
            d.interfaces(),
            d.graphics(),
            d.serials(),
            d.consoles(),
        );
        let _ = d.current_memory_kib();
    }
    if let Ok(n) = NetworkDef::parse(text) {
        let _ = n.ips();
    }
    if let Ok(p) = PoolDef::parse(text) {
        let _ = (p.capacity_bytes(), p.source_hosts());
    }
    if let Ok(v) = VolumeDef::parse(text) {
        let _ = v.capacity_bytes();
    }
}

#[test]
fn truncations_never_panic() {
    for (_, _, text) in corpus() {
        let mut cut = 0;
        while cut <= text.len() {
            if text.is_char_boundary(cut) {
                let prefix = &text[..cut];
                // The full exercise (all views) is costly; run it on a sample of cuts
                // and the cheap DOM parse on all of them.
                if cut % 13 == 0 {
                    exercise(prefix);
                }
                if cut < text.len() {
                    assert!(
                        Element::parse(prefix).is_err() || prefix.trim_end().ends_with('>'),
                        "truncated document accepted"
                    );
                }
            }
            // Every cut for small files; every other cut for large ones keeps the
            // unoptimised test build fast while still covering each construct.
            cut += if text.len() > 1500 { 2 } else { 1 };
        }
    }
}

#[test]
fn random_mutations_never_panic() {
    const INTERESTING: &[u8] = b"<>&;'\"/=!?-[]#x \n\t\r\0:aZ9\xc3\xa9\xff";
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    for (_, _, text) in corpus() {
        let bytes = text.as_bytes();
        for _ in 0..150 {
            let mut m = bytes.to_vec();
            let edits = 1 + rng.below(4);
            for _ in 0..edits {
                if m.is_empty() {
                    break;
                }
                let at = rng.below(m.len());
                let b = if rng.below(3) == 0 {
                    rng.next() as u8
                } else {
                    INTERESTING[rng.below(INTERESTING.len())]
                };
                match rng.below(4) {
                    0 => m[at] = b,
                    1 => m.insert(at, b),
                    2 => {
                        m.remove(at);
                    }
                    _ => {
                        // Duplicate a slice (creates repeated or nested markup).
                        let len = rng.below(40).min(m.len() - at);
                        let chunk: Vec<u8> = m[at..at + len].to_vec();
                        let to = rng.below(m.len());
                        m.splice(to..to, chunk);
                    }
                }
            }
            exercise(&String::from_utf8_lossy(&m));
        }
    }
}

#[test]
fn pathological_inputs_never_panic() {
    let deep = "<a>".repeat(5000) + &"</a>".repeat(5000);
    exercise(&deep);
    let e = Element::parse(&deep).unwrap_err();
    assert!(
        e.message().starts_with("Excessive depth in document"),
        "{e}"
    );
    let ok = "<a>".repeat(200) + &"</a>".repeat(200);
    assert!(Element::parse(&ok).is_ok());
    for s in [
        "",
        " ",
        "<",
        ">",
        "<?",
        "<?xml",
        "<!",
        "<!--",
        "<![CDATA[",
        "<a",
        "<a b",
        "<a b=",
        "<a b='",
        "<a/",
        "</a>",
        "<a></b>",
        "&",
        "<a>&",
        "<a>&#",
        "<a>&#x;</a>",
        "<a>&#99999999999;</a>",
        "<a>&#xD800;</a>",
        "<:/>",
        "<a:/>",
        "<a xmlns:=''/>",
        "\u{feff}",
        "\u{feff}<a/>",
        "<a>]]></a>",
        "<?xml version='1.0'?><?xml version='1.0'?><a/>",
        "<a/><?xml version='1.0'?>",
        "<!DOCTYPE>",
        "<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>",
        "<a b='1' b='1'/>",
        "<a\u{0}/>",
        "<domain type='kvm'><name>x</name><memory unit='EiB'>18446744073709551615</memory><os><type>hvm</type></os></domain>",
        "<domain type='kvm'><name>x</name><memory>1</memory><currentMemory unit='E'>16</currentMemory><os><type>hvm</type></os></domain>",
        "<domain type='kvm'><name>x</name><cpu><numa><cell memory='18446744073709551615' unit='E'/></numa></cpu><os><type>hvm</type></os></domain>",
        "<volume><name>a</name><capacity unit='E'>18446744073709551615</capacity></volume>",
    ] {
        exercise(s);
    }
}
