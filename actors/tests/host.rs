//! End-to-end tests of the embedding API: a real Host on a temp state dir, driven
//! through its handles, observed through the event hub.

mod common;
use common::next_lifecycle;

use std::sync::Arc;
use std::time::Duration;

use vireo_actors::{Filter, HelperTask, Host, HostConfig, ListFilter, VolKey};
use vireo_drivers::fake::FakeHypervisor;
use vireo_drivers::hypervisor::GuestEvent;
use vireo_messages::event::detail;
use vireo_messages::{DomainEventKind, DomainState, ErrorCode, ErrorDomain, EventKind, ObjectKind};

const XML: &str = "<domain type='test'><name>vm1</name><memory unit='MiB'>64</memory><os><type>hvm</type></os></domain>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_state_matches_libvirt_test_driver() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(HostConfig::new(dir.path())).await.unwrap();
    let conn = host.open("test:///default").await.unwrap();
    assert_eq!(conn.type_name(), "TEST");
    let dom = conn.lookup_domain_by_name("test").unwrap();
    assert_eq!(
        dom.uuid().to_string(),
        "6695eb01-f6a4-8304-79aa-97f2502e193f"
    );
    let info = dom.info().await.unwrap();
    assert_eq!(info.state.state, DomainState::Running);
    assert_eq!(info.state.reason, 0);
    assert_eq!(info.id.map(|i| i.0), Some(1));
    assert_eq!(info.max_mem_kib, 8388608);
    assert_eq!(info.mem_kib, 2097152);
    assert_eq!(info.vcpus, 2);
    let xml = dom.xml(0).await.unwrap();
    assert!(xml.starts_with("<domain type='test' id='1'>"), "{xml}");
    let inactive = dom.xml(2).await.unwrap();
    assert!(inactive.starts_with("<domain type='test'>"), "{inactive}");
    assert_eq!(conn.list_domain_ids(), vec![1]);
    let net = conn.lookup_network_by_name("default").unwrap();
    assert!(net.entry().unwrap().active);
    let pool = conn.lookup_pool_by_name("default-pool").unwrap();
    let pi = pool.info().await.unwrap();
    assert_eq!((pi.state, pi.capacity, pi.allocation), (2, 107374182400, 0));
    assert!(
        pool.xml(0)
            .await
            .unwrap()
            .contains("  <source>\n  </source>\n"),
        "libvirt writes an empty pool source as an open/close pair"
    );

    let e = conn.lookup_domain_by_name("nope").err().unwrap();
    assert_eq!(e.code, ErrorCode::NoDomain);
    assert_eq!(e.message, "Domain not found");
    let e = conn.lookup_network_by_name("nope").err().unwrap();
    assert_eq!(e.code, ErrorCode::NoNetwork);
    assert_eq!(
        e.message,
        "Network not found: no network with matching name 'nope'"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_with_events_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(HostConfig::new(dir.path())).await.unwrap();
    let conn = host.open("test:///default").await.unwrap();
    let mut sub = host.subscribe(Filter::all().kind(ObjectKind::Domain).name("vm1"));

    let dom = conn.define_domain(XML).await.unwrap();
    assert_eq!(
        next_lifecycle(&mut sub).await,
        (
            "vm1".into(),
            DomainEventKind::Defined,
            detail::defined::ADDED
        )
    );
    // Memory was normalized to KiB.
    assert!(
        dom.xml(0)
            .await
            .unwrap()
            .contains("<memory unit='KiB'>65536</memory>")
    );

    // Wrong-state errors follow the test driver's quirks.
    let e = dom.suspend().await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InternalError);
    assert_eq!(e.message, "internal error: domain 'vm1' not running");
    let e = dom.destroy(false).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::OperationInvalid);

    dom.start(false).await.unwrap();
    assert_eq!(
        next_lifecycle(&mut sub).await,
        (
            "vm1".into(),
            DomainEventKind::Started,
            detail::started::BOOTED
        )
    );
    let id = dom.id().expect("running domain has an id");
    assert!(id.0 >= 2, "ids are never reused: got {id}");
    assert_eq!(conn.lookup_domain_by_id(id.0).unwrap().name(), "vm1");
    dom.suspend().await.unwrap();
    assert_eq!(next_lifecycle(&mut sub).await.1, DomainEventKind::Suspended);
    dom.resume().await.unwrap();
    assert_eq!(next_lifecycle(&mut sub).await.1, DomainEventKind::Resumed);
    let info = dom.info().await.unwrap();
    assert_eq!(info.state.state, DomainState::Running);
    assert_eq!(info.state.reason, 5, "unpaused");
    dom.destroy(false).await.unwrap();
    assert_eq!(
        next_lifecycle(&mut sub).await,
        (
            "vm1".into(),
            DomainEventKind::Stopped,
            detail::stopped::DESTROYED
        )
    );
    assert_eq!(dom.id(), None);
    let st = dom.info().await.unwrap().state;
    assert_eq!((st.state, st.reason), (DomainState::Shutoff, 2));

    // Redefining with another uuid under the same name is refused.
    let e = conn
        .define_domain("<domain type='test'><name>vm1</name><uuid>a6d091a5-c9f6-41f1-a1ee-c901a1c7f038</uuid><memory>1024</memory><os><type>hvm</type></os></domain>")
        .await
        .err()
        .unwrap();
    assert_eq!(e.code, ErrorCode::OperationFailed);
    assert!(
        e.message.contains("domain 'vm1' already exists with uuid"),
        "{}",
        e.message
    );

    dom.undefine(0).await.unwrap();
    assert_eq!(
        next_lifecycle(&mut sub).await,
        (
            "vm1".into(),
            DomainEventKind::Undefined,
            detail::undefined::REMOVED
        )
    );
    assert!(conn.lookup_domain_by_name("vm1").is_err());
    let e = dom.info().await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NoDomain);

    // Transient domains disappear when they stop.
    let t = conn
        .create_domain(&XML.replace("vm1", "tr"), false)
        .await
        .unwrap();
    assert!(!t.entry().unwrap().persistent);
    t.destroy(false).await.unwrap();
    assert!(conn.lookup_domain_by_name("tr").is_err());

    // Bad XML never takes anything down.
    let e = conn
        .define_domain("<domain><name>x</name")
        .await
        .err()
        .unwrap();
    assert_eq!(e.code, ErrorCode::XmlDetail);
    assert!(conn.lookup_domain_by_name("test").is_ok());
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_jobs_wait_then_time_out_while_queries_flow() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeHypervisor::new();
    let mut cfg = HostConfig::new(dir.path());
    cfg.test_hypervisor = Some(Arc::new(fake.clone()));
    cfg.job_wait = Duration::from_millis(300);
    let host = Host::start(cfg).await.unwrap();
    let conn = host.open("test:///default").await.unwrap();
    let dom = conn.define_domain(XML).await.unwrap();
    let starts_before = fake.starts();

    fake.close_gate();
    let d1 = dom.clone();
    let first = tokio::spawn(async move { d1.start(false).await });
    // Give the first job time to take the slot.
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A query is answered at once although a job holds the slot.
    let info = tokio::time::timeout(Duration::from_millis(200), dom.info())
        .await
        .expect("queries never wait for jobs")
        .unwrap();
    assert_eq!(info.state.state, DomainState::Shutoff);
    // A second modifying job waits, then fails with libvirt's lock timeout.
    let t0 = std::time::Instant::now();
    let e = dom.start(false).await.unwrap_err();
    assert!(t0.elapsed() >= Duration::from_millis(250));
    assert_eq!(e.code, ErrorCode::OperationTimeout);
    assert!(
        e.message
            .starts_with("Timed out during operation: cannot acquire state change lock"),
        "{}",
        e.message
    );
    // A job queued behind the first one runs after it, against the new state.
    let d2 = dom.clone();
    let queued = tokio::spawn(async move { d2.suspend().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    fake.open_gate(1);
    first.await.unwrap().unwrap();
    queued.await.unwrap().unwrap();
    assert_eq!(dom.info().await.unwrap().state.state, DomainState::Paused);
    assert_eq!(
        fake.starts(),
        starts_before + 1,
        "the timed-out start never ran"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_helper_fails_only_its_job() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(HostConfig::new(dir.path())).await.unwrap();
    let conn = host.open("test:///default").await.unwrap();
    let dom = conn.lookup_domain_by_name("test").unwrap();

    let e = dom
        .run_helper(HelperTask::new("save", async {
            tokio::task::yield_now().await;
            panic!("disk on fire");
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InternalError);
    assert!(
        e.message.contains("I/O helper 'save' failed"),
        "{}",
        e.message
    );
    assert!(e.message.contains("disk on fire"), "{}", e.message);

    // The domain actor and its guest are untouched, and the slot is free again.
    let info = dom.info().await.unwrap();
    assert_eq!(info.state.state, DomainState::Running);
    dom.suspend().await.unwrap();
    dom.resume().await.unwrap();
    let ok = dom
        .run_helper(HelperTask::new("copy", async {
            Ok("42 bytes".to_string())
        }))
        .await
        .unwrap();
    assert_eq!(ok, "42 bytes");
    // A helper error is passed through as is.
    let e = dom
        .run_helper(HelperTask::new("copy", async {
            Err(vireo_messages::VirError::with(
                ErrorCode::WriteFailed,
                ErrorDomain::Domain,
                "No space left on device",
            ))
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::WriteFailed);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_host_finds_everything_again() {
    let dir = tempfile::tempdir().unwrap();
    let (vm_uuid, vm_id);
    {
        let host = Host::start(HostConfig::new(dir.path())).await.unwrap();
        let conn = host.open("test:///default").await.unwrap();
        let dom = conn.define_domain(XML).await.unwrap();
        dom.start(false).await.unwrap();
        dom.suspend().await.unwrap();
        dom.set_autostart(true).await.unwrap();
        vm_uuid = dom.uuid();
        vm_id = dom.id().unwrap();
        let off = conn
            .define_domain(&XML.replace("vm1", "off"))
            .await
            .unwrap();
        let _ = off;
        conn.create_domain(&XML.replace("vm1", "tr"), false)
            .await
            .unwrap();
        conn.lookup_domain_by_name("test")
            .unwrap()
            .destroy(false)
            .await
            .unwrap();
        let gone = conn
            .define_domain(&XML.replace("vm1", "gone"))
            .await
            .unwrap();
        gone.undefine(0).await.unwrap();
        conn.define_network("<network><name>n1</name><bridge name='vbr1'/></network>")
            .await
            .unwrap();
        let p = conn
            .define_pool("<pool type='dir'><name>p1</name><target><path>/p1</path></target></pool>")
            .await
            .unwrap();
        p.start().await.unwrap();
        p.create_volume("<volume><name>v.img</name><capacity>1024</capacity></volume>")
            .await
            .unwrap();
        host.shutdown().await;
    }
    let host = Host::start(HostConfig::new(dir.path())).await.unwrap();
    let conn = host.open("test:///default").await.unwrap();
    let dom = conn.lookup_domain_by_name("vm1").unwrap();
    assert_eq!(dom.uuid(), vm_uuid);
    let info = dom.info().await.unwrap();
    assert_eq!(
        info.state.state,
        DomainState::Paused,
        "reattached in its true state"
    );
    assert_eq!(info.id, Some(vm_id));
    assert!(info.autostart);
    let off = conn
        .lookup_domain_by_name("off")
        .unwrap()
        .info()
        .await
        .unwrap();
    assert_eq!(off.state.state, DomainState::Shutoff);
    let tr = conn
        .lookup_domain_by_name("tr")
        .unwrap()
        .info()
        .await
        .unwrap();
    assert!(!tr.persistent);
    assert_eq!(tr.state.state, DomainState::Running);
    let test = conn
        .lookup_domain_by_name("test")
        .unwrap()
        .info()
        .await
        .unwrap();
    assert_eq!(
        test.state.state,
        DomainState::Shutoff,
        "default state is not re-seeded"
    );
    assert!(conn.lookup_domain_by_name("gone").is_err());
    assert!(conn.lookup_network_by_name("n1").is_ok());
    let p = conn.lookup_pool_by_name("p1").unwrap();
    assert!(p.entry().unwrap().active);
    let v = p.lookup_volume(VolKey::Name("v.img".into())).await.unwrap();
    assert_eq!(
        (v.path.as_str(), v.capacity, v.allocation),
        ("/p1/v.img", 1024, 1024)
    );
    // New ids continue after the old ones.
    let d = conn.lookup_domain_by_name("off").unwrap();
    d.start(false).await.unwrap();
    assert!(d.id().unwrap().0 > vm_id.0);
    assert_eq!(conn.count_domains(ListFilter { flags: 1 }), 3);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_initiated_events_drive_the_state_machine() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeHypervisor::new();
    let mut cfg = HostConfig::new(dir.path());
    cfg.test_hypervisor = Some(Arc::new(fake.clone()));
    let host = Host::start(cfg).await.unwrap();
    let conn = host.open("test:///default").await.unwrap();
    let mut sub = host.subscribe(Filter::all().name("vm1"));
    let dom = conn.define_domain(XML).await.unwrap();
    dom.start(false).await.unwrap();
    let _ = next_lifecycle(&mut sub).await;
    let _ = next_lifecycle(&mut sub).await;
    assert!(fake.inject("vm1", GuestEvent::Exited { crashed: true }));
    assert_eq!(
        next_lifecycle(&mut sub).await,
        (
            "vm1".into(),
            DomainEventKind::Stopped,
            detail::stopped::CRASHED
        )
    );
    let st = dom.info().await.unwrap().state;
    assert_eq!((st.state, st.reason), (DomainState::Shutoff, 3));
    // Shutdown left to the guest: the request returns, the guest's answer stops it.
    fake.set_guest_decides_shutdown(true);
    dom.start(false).await.unwrap();
    let _ = next_lifecycle(&mut sub).await;
    dom.shutdown().await.unwrap();
    assert_eq!(dom.info().await.unwrap().state.state, DomainState::Running);
    fake.inject("vm1", GuestEvent::Shutdown { by_guest: true });
    assert_eq!(
        next_lifecycle(&mut sub).await,
        (
            "vm1".into(),
            DomainEventKind::Stopped,
            detail::stopped::SHUTDOWN
        )
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_file_instances_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(HostConfig::new(dir.path())).await.unwrap();
    let file = dir.path().join("node.xml");
    std::fs::write(
        &file,
        "<node><domain type='test'><name>runner</name><memory>524288</memory><os><type>hvm</type></os></domain></node>",
    )
    .unwrap();
    let uri = format!("test://{}", file.display());
    let a = host.open(&uri).await.unwrap();
    let b = host.open(&uri).await.unwrap();
    assert_ne!(a.origin(), b.origin());
    let ra = a.lookup_domain_by_name("runner").unwrap();
    assert_eq!(ra.id().map(|i| i.0), Some(1));
    ra.destroy(false).await.unwrap();
    assert!(
        b.lookup_domain_by_name("runner").unwrap().id().is_some(),
        "b has its own state"
    );
    assert!(
        a.lookup_domain_by_name("test").is_err(),
        "no default objects in a file instance"
    );
    let e = host.open("test:///").await.err().unwrap();
    assert_eq!(e.code, ErrorCode::InvalidArg);
    host.shutdown().await;
}

#[test]
fn events_kinds_are_stable() {
    // Guard the event-id mapping the daemon relies on.
    assert_eq!(EventKind::PoolRefresh.event_id(), 1);
}
