//! The client against a real vireod: handshake, typed domain calls, error replies,
//! concurrency over one connection, event delivery, read-only connections.

mod support;

use std::time::Duration;

use support::Daemon;
use vireo_client::{Client, ClientError, DomainEventKind, EventBody, OpenOptions};
use vireo_messages::ErrorCode;

const XML: &str = "<domain type='test'><name>NAME</name><memory unit='KiB'>65536</memory>\
    <vcpu>1</vcpu><os><type arch='i686'>hvm</type></os></domain>";

fn xml(name: &str) -> String {
    XML.replace("NAME", name)
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("timed out")
}

#[tokio::test]
async fn handshake_lookup_and_xml() {
    let d = Daemon::start();
    let c = within(Client::connect_unix(d.sock(), "test:///default"))
        .await
        .unwrap();
    assert_eq!(c.get_type().await.unwrap(), "TEST");
    let dom = c.lookup_by_name("test").await.unwrap();
    assert_eq!(dom.name, "test");
    assert_eq!(dom.id, 1);
    let x = c.xml_desc(&dom, 0).await.unwrap();
    assert!(x.contains("<name>test</name>"), "{x}");
    let again = c.lookup_by_uuid(dom.uuid).await.unwrap();
    assert_eq!(again, dom);
    assert_eq!(c.get_state(&dom).await.unwrap().0, 1);
    let all = c.list_all_domains(0).await.unwrap();
    assert!(all.iter().any(|x| x.name == "test"));
    within(c.close()).await.unwrap();
}

#[tokio::test]
async fn domain_lifecycle_and_errors() {
    let d = Daemon::start();
    let c = Client::connect_unix(d.sock(), "test:///default")
        .await
        .unwrap();
    let dom = c.define_xml(&xml("cycle")).await.unwrap();
    assert_eq!(dom.id, -1);
    let running = c.create(&dom).await.unwrap();
    assert!(running.id > 0, "{running:?}");
    // Starting a running domain: the test driver's "internal error: Domain 'x' is
    // already running", as libvirtd answers.
    let err = c.create(&dom).await.unwrap_err();
    assert_eq!(
        err.vir_error().map(|e| e.code),
        Some(ErrorCode::InternalError),
        "{err}"
    );
    c.suspend(&running).await.unwrap();
    assert_eq!(c.get_state(&running).await.unwrap().0, 3);
    c.resume(&running).await.unwrap();
    c.destroy(&running).await.unwrap();
    c.undefine(&dom).await.unwrap();
    let err = c.lookup_by_name("cycle").await.unwrap_err();
    let e = err.vir_error().expect("remote error");
    assert_eq!(e.code, ErrorCode::NoDomain);
    assert_eq!(e.message, "Domain not found"); // libvirtd 9.0 test driver's text
    // The connection is still usable after errors.
    c.lookup_by_name("test").await.unwrap();
}

#[tokio::test]
async fn concurrent_calls_share_one_connection() {
    let d = Daemon::start();
    let c = Client::connect_unix(d.sock(), "test:///default")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("par{i}");
            let dom = c.define_xml(&xml(&name)).await.unwrap();
            for _ in 0..10 {
                let got = c.lookup_by_name(&name).await.unwrap();
                assert_eq!(got.uuid, dom.uuid);
                assert!(c.xml_desc(&got, 0).await.unwrap().contains(&name));
            }
            c.undefine(&dom).await.unwrap();
        }));
    }
    for t in tasks {
        within(t).await.unwrap();
    }
}

#[tokio::test]
async fn lifecycle_events_reach_every_subscriber() {
    let d = Daemon::start();
    let actor = Client::connect_unix(d.sock(), "test:///default")
        .await
        .unwrap();
    let mut subs = Vec::new();
    for _ in 0..3 {
        let s = Client::connect_unix(d.sock(), "test:///default")
            .await
            .unwrap();
        let stream = s
            .register_domain_events(vireo_client::EVENT_ID_LIFECYCLE, None)
            .await
            .unwrap();
        subs.push((s, stream));
    }
    let dom = actor.define_xml(&xml("ev")).await.unwrap();
    let r = actor.create(&dom).await.unwrap();
    actor.destroy(&r).await.unwrap();
    actor.undefine(&dom).await.unwrap();
    for (_, stream) in &mut subs {
        let mut got = Vec::new();
        for _ in 0..4 {
            let ev = within(stream.recv()).await.expect("event");
            assert_eq!(ev.callback_id, stream.callback_id);
            match ev.body {
                EventBody::Domain {
                    dom: d,
                    kind: DomainEventKind::Lifecycle { event, .. },
                } => {
                    assert_eq!(d.name, "ev");
                    got.push(event);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // DEFINED, STARTED, STOPPED, UNDEFINED.
        assert_eq!(got, vec![0, 2, 5, 1]);
    }
    // After deregistering, the stream ends and no more events come.
    let (s, stream) = &mut subs[0];
    s.deregister_domain_events(stream.callback_id)
        .await
        .unwrap();
    assert!(within(stream.recv()).await.is_none());
}

#[tokio::test]
async fn read_only_connections_are_refused_writes() {
    let d = Daemon::start();
    let opts = OpenOptions {
        name: Some("test:///default".into()),
        read_only: true,
    };
    let c = Client::connect_unix_with(d.sock_ro(), &opts).await.unwrap();
    c.lookup_by_name("test").await.unwrap();
    let err = c.define_xml(&xml("ro")).await.unwrap_err();
    assert_eq!(
        err.vir_error().map(|e| e.code),
        Some(ErrorCode::OperationDenied),
        "{err}"
    );
}

#[tokio::test]
async fn connecting_to_nothing_is_a_connect_error() {
    let err = Client::connect_unix("/nonexistent/sock", "test:///default")
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
}

#[tokio::test]
async fn plain_tcp_works_too() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(&["--listen-tcp", &addr]);
    let t = std::time::Instant::now();
    let c = loop {
        match Client::connect_tcp(&addr, "test:///default").await {
            Ok(c) => break c,
            Err(ClientError::Connect { .. }) if t.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}; log: {}", d.log()),
        }
    };
    let dom = c.lookup_by_name("test").await.unwrap();
    assert!(
        c.xml_desc(&dom, 0)
            .await
            .unwrap()
            .contains("<name>test</name>")
    );
    within(c.close()).await.unwrap();
}

#[tokio::test]
async fn connect_by_uri_like_virsh() {
    let d = Daemon::start();
    let uri = format!("test+unix:///default?socket={}", d.sock().display());
    let c = within(Client::connect_uri(&uri, false)).await.unwrap();
    assert_eq!(c.lookup_by_name("test").await.unwrap().name, "test");
    let ro = format!("test+unix:///default?socket={}", d.sock_ro().display());
    let c = within(Client::connect_uri(&ro, true)).await.unwrap();
    let err = c.define_xml(&xml("viauri")).await.unwrap_err();
    assert_eq!(
        err.vir_error().map(|e| e.code),
        Some(ErrorCode::OperationDenied)
    );
}

#[tokio::test]
async fn keepalive_pings_are_answered_so_idle_connections_survive() {
    // vireod pings a client that asked for keepalive after 1 s of silence and drops it
    // after one unanswered PING; the client's PONGs keep an idle connection alive.
    let d = Daemon::start_with(&["--keepalive-interval", "1", "--keepalive-count", "1"]);
    let c = Client::connect_unix(d.sock(), "test:///default")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(!c.is_closed(), "dropped while idle; log: {}", d.log());
    within(c.lookup_by_name("test")).await.unwrap();
}
