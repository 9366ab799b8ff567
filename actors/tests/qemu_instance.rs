//! The host's `qemu:///system` instance, driven here by the fake hypervisor: routing of
//! the qemu URIs, its own state directory and origin, and its absence when no QEMU
//! hypervisor is configured. Real-QEMU behaviour is tested in vireo-drivers and in the
//! daemon's virsh tests.

use std::sync::Arc;

use vireo_actors::{Host, HostConfig, ListFilter};
use vireo_drivers::fake::FakeHypervisor;
use vireo_messages::{DomainState, ErrorCode};

const XML: &str = "<domain type='qemu'><name>q1</name><memory unit='MiB'>64</memory><os><type>hvm</type></os></domain>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_uris_open_one_shared_instance_with_its_own_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = HostConfig::new(dir.path());
    cfg.qemu = Some(Arc::new(FakeHypervisor::new()));
    let host = Host::start(cfg.clone()).await.unwrap();
    let sys = host.open("qemu:///system").await.unwrap();
    let ses = host.open("qemu:///session").await.unwrap();
    let test = host.open("test:///default").await.unwrap();
    assert_eq!(sys.origin(), ses.origin());
    assert_ne!(sys.origin(), test.origin());
    assert!(
        sys.list_domains(ListFilter::default()).is_empty(),
        "a fresh qemu instance has no domains"
    );
    let d = sys.define_domain(XML).await.unwrap();
    d.start(false).await.unwrap();
    assert!(ses.lookup_domain_by_name("q1").is_ok());
    assert!(test.lookup_domain_by_name("q1").is_err());
    assert!(dir.path().join("qemu/domains/q1.xml").exists());
    host.shutdown().await;

    // Restarted on the same directory: the definition and the status record are found
    // under STATE/qemu and STATE/run/qemu, and the (fake) guest is reattached.
    let host = Host::start(cfg).await.unwrap();
    let sys = host.open("qemu:///system").await.unwrap();
    let d = sys.lookup_domain_by_name("q1").unwrap();
    assert_eq!(d.info().await.unwrap().state.state, DomainState::Running);
    d.destroy(false).await.unwrap();
    assert_eq!(d.info().await.unwrap().state.state, DomainState::Shutoff);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_uri_without_qemu_is_no_connect() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(HostConfig::new(dir.path())).await.unwrap();
    let e = host.open("qemu:///system").await.err().unwrap();
    assert_eq!(e.code, ErrorCode::NoConnect);
    let e = host.open("qemu:///bogus").await.err().unwrap();
    assert_eq!(e.code, ErrorCode::NoConnect);
    host.shutdown().await;
}
