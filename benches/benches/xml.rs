//! XML throughput: parse and format of libvirt's own test documents.
//!
//! Every object a client defines arrives as XML and goes back out as XML (every
//! `virDomainGetXMLDesc`, every state file write), so the cost of `vireo-xml`'s parser
//! and writer is on the path of nearly every call. This bench runs the conformance
//! corpus (`/work/shared/conformance`: 60 domain, 15 network, 9 pool and 6 volume
//! documents copied from libvirt's test suite, so real-world shapes rather than
//! synthetic ones) through the typed views (`DomainDef`, `NetworkDef`, `PoolDef`,
//! `VolumeDef`) and reports throughput in bytes per second:
//!
//! * `xml/parse`: `*Def::parse` (DOM build plus the typed view's validation), bytes =
//!   input size;
//! * `xml/parse-dom`: `Document::parse` alone (the DOM without a typed view), whole
//!   corpus only, to split parse cost between tree building and validation;
//! * `xml/format`: `*Def::to_xml` of already parsed definitions, bytes = output size;
//! * `xml/roundtrip`: parse then format, bytes = input size.
//!
//! Each is measured over the whole corpus (`all`) and per document family.
//!
//! The corpus directory defaults to `../../shared/conformance` relative to this
//! package; set `VIREO_CONFORMANCE_DIR` to use another one. Files that a typed view
//! rejects are reported and left out (they would measure the error path).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vireo_xml::{Document, DomainDef, NetworkDef, PoolDef, VolumeDef};

/// Which typed view a document goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Domain,
    Network,
    Storage,
}

/// One corpus document.
struct Doc {
    family: Family,
    text: String,
}

/// A parsed document, whatever its kind.
enum Parsed {
    Domain(DomainDef),
    Network(NetworkDef),
    Pool(PoolDef),
    Volume(VolumeDef),
}

impl Parsed {
    fn parse(doc: &Doc) -> Result<Parsed, String> {
        let text = doc.text.as_str();
        let r = match doc.family {
            Family::Domain => DomainDef::parse(text).map(Parsed::Domain),
            Family::Network => NetworkDef::parse(text).map(Parsed::Network),
            // Storage holds both pools and volumes: dispatch on the root element.
            Family::Storage if is_volume(text) => VolumeDef::parse(text).map(Parsed::Volume),
            Family::Storage => PoolDef::parse(text).map(Parsed::Pool),
        };
        r.map_err(|e| e.to_string())
    }

    fn to_xml(&self) -> String {
        match self {
            Parsed::Domain(d) => d.to_xml(),
            Parsed::Network(n) => n.to_xml(),
            Parsed::Pool(p) => p.to_xml(),
            Parsed::Volume(v) => v.to_xml(),
        }
    }
}

/// Whether a storage document's root is `<volume>` (rather than `<pool>`).
fn is_volume(text: &str) -> bool {
    match (text.find("<volume"), text.find("<pool")) {
        (Some(v), Some(p)) => v < p,
        (Some(_), None) => true,
        _ => false,
    }
}

fn corpus_dir() -> PathBuf {
    match std::env::var_os("VIREO_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance"),
    }
}

/// Loads every `*.xml` under the corpus's `domain`, `network` and `storage` folders,
/// keeping only the documents their typed view accepts.
fn load_corpus() -> Vec<Doc> {
    let root = corpus_dir();
    let mut docs = Vec::new();
    let mut rejected = 0;
    for (sub, family) in [
        ("domain", Family::Domain),
        ("network", Family::Network),
        ("storage", Family::Storage),
    ] {
        let dir = root.join(sub);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read corpus folder {}: {e}", dir.display()));
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "xml"))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let doc = Doc { family, text };
            match Parsed::parse(&doc) {
                Ok(_) => docs.push(doc),
                Err(e) => {
                    rejected += 1;
                    eprintln!("xml bench: skipping {} ({e})", path.display());
                }
            }
        }
    }
    assert!(
        !docs.is_empty(),
        "no usable XML documents under {}",
        root.display()
    );
    let bytes: usize = docs.iter().map(|d| d.text.len()).sum();
    eprintln!(
        "xml bench: {} documents, {} bytes, from {} ({} skipped)",
        docs.len(),
        bytes,
        root.display(),
        rejected
    );
    docs
}

fn bench_xml(c: &mut Criterion) {
    let corpus = load_corpus();
    let sets: [(&str, Vec<&Doc>); 4] = [
        ("all", corpus.iter().collect()),
        (
            "domain",
            corpus
                .iter()
                .filter(|d| d.family == Family::Domain)
                .collect(),
        ),
        (
            "network",
            corpus
                .iter()
                .filter(|d| d.family == Family::Network)
                .collect(),
        ),
        (
            "storage",
            corpus
                .iter()
                .filter(|d| d.family == Family::Storage)
                .collect(),
        ),
    ];

    let mut group = c.benchmark_group("xml/parse");
    for (name, docs) in &sets {
        let bytes: usize = docs.iter().map(|d| d.text.len()).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(*name, |b| {
            b.iter(|| {
                for doc in docs {
                    black_box(Parsed::parse(black_box(doc)).is_ok());
                }
            })
        });
    }
    group.finish();

    // The DOM alone (no typed view, no validation), to separate the two costs.
    let mut group = c.benchmark_group("xml/parse-dom");
    for (name, docs) in sets.iter().take(1) {
        let bytes: usize = docs.iter().map(|d| d.text.len()).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(*name, |b| {
            b.iter(|| {
                for doc in docs {
                    black_box(Document::parse(black_box(&doc.text)).is_ok());
                }
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("xml/format");
    for (name, docs) in &sets {
        let parsed: Vec<Parsed> = docs
            .iter()
            .map(|d| Parsed::parse(d).expect("checked at load"))
            .collect();
        let bytes: usize = parsed.iter().map(|p| p.to_xml().len()).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(*name, |b| {
            b.iter(|| {
                for p in &parsed {
                    black_box(black_box(p).to_xml());
                }
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("xml/roundtrip");
    for (name, docs) in &sets {
        let bytes: usize = docs.iter().map(|d| d.text.len()).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(*name, |b| {
            b.iter(|| {
                for doc in docs {
                    let parsed = Parsed::parse(black_box(doc)).expect("checked at load");
                    black_box(parsed.to_xml());
                }
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_xml
}
criterion_main!(benches);
