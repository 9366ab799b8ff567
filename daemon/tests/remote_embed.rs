//! The embedding API over the remote protocol: `vireo_actors::remote::open` with a
//! `…+unix://` URI talks to a real vireod; a local URI still gives the in-process host.

mod common;

use common::Daemon;
use vireo_actors::remote::{self, AnyConnection};
use vireo_actors::{Host, HostConfig};
use vireo_messages::{DomainEventKind, DomainState, ErrorCode, EventKind};

const XML: &str = "<domain type='test'><name>emb</name><memory unit='MiB'>64</memory><os><type>hvm</type></os></domain>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_uri_drives_vireod_and_local_uri_the_host() {
    if !common::have_virsh() {
        return;
    }
    let d = Daemon::start();
    let local_dir = tempfile::tempdir().unwrap();
    let host = Host::start(HostConfig::new(local_dir.path()))
        .await
        .unwrap();

    let AnyConnection::Remote(conn) = remote::open(&host, &d.uri()).await.unwrap() else {
        panic!("a +unix URI must give a remote connection");
    };
    assert_eq!(conn.type_name().await.unwrap(), "TEST");
    let mut events = conn.subscribe_lifecycle().await.unwrap();
    let dom = conn.define_domain(XML).await.unwrap();
    assert_eq!(dom.name(), "emb");
    let running = dom.start().await.unwrap();
    assert!(running.id().is_some());
    assert_eq!(dom.state().await.unwrap().state, DomainState::Running);
    let info = dom.info().await.unwrap();
    assert_eq!(info.max_mem_kib, 65536);
    // The daemon's own error comes back unchanged.
    let e = conn.lookup_domain_by_name("nope").await.err().unwrap();
    assert_eq!(e.code, ErrorCode::NoDomain);
    // libvirt's test driver answers a wrong-state call with an internal error.
    let e = dom.resume().await.err().unwrap();
    assert_eq!(e.code, ErrorCode::InternalError, "{e}");
    assert!(e.message.contains("not paused"), "{e}");
    dom.destroy().await.unwrap();
    dom.undefine().await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(5), events.recv())
            .await
            .expect("events in time")
            .expect("connection open");
        assert_eq!(ev.object.name, "emb");
        if let EventKind::Domain(_) = &ev.kind {
            seen.push(ev.kind.as_lifecycle().unwrap().event);
        }
    }
    assert_eq!(
        seen,
        [
            DomainEventKind::Defined,
            DomainEventKind::Started,
            DomainEventKind::Stopped,
            DomainEventKind::Undefined
        ]
    );
    // Another client of the same daemon agrees: it is gone.
    let list = d.virsh_ok(&["list", "--all"]);
    assert!(list.contains("test") && !list.contains("emb"), "{list}");
    conn.close().await.unwrap();

    let AnyConnection::Local(local) = remote::open(&host, "test:///default").await.unwrap() else {
        panic!("a local URI must give the host's connection");
    };
    assert!(local.lookup_domain_by_name("test").is_ok());
    host.shutdown().await;
}
