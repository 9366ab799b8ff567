//! Hibernation: a persistent domain that is shut off and idle has no actor; queries are
//! answered from the directory, the first job wakes exactly one actor, and the actor
//! goes back to sleep when the domain is inactive and idle again.

mod common;
use common::next_lifecycle;

use std::sync::Arc;
use std::time::{Duration, Instant};

use vireo_actors::{Domain, Host, HostConfig, ListFilter};
use vireo_drivers::fake::FakeHypervisor;
use vireo_messages::{DomainState, ErrorCode};

const XML: &str = "<domain type='test'><name>vm1</name><memory unit='MiB'>64</memory><vcpu>3</vcpu><os><type>hvm</type></os></domain>";

/// Waits (up to 2 s) until the domain hibernates; the actor hands it back right after it
/// replied to the job that left it idle.
async fn hibernates(dom: &Domain) {
    let t0 = Instant::now();
    while !dom.is_hibernated().unwrap() {
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "{} did not go back to hibernation",
            dom.name()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn fake_host_config(dir: &std::path::Path, fake: &FakeHypervisor, wait_ms: u64) -> HostConfig {
    let mut cfg = HostConfig::new(dir);
    cfg.test_hypervisor = Some(Arc::new(fake.clone()));
    cfg.job_wait = Duration::from_millis(wait_ms);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defined_inactive_domain_has_no_actor_and_answers_queries() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(HostConfig::new(dir.path())).await.unwrap();
    let conn = host.open("test:///default").await.unwrap();
    // The default state: `test` runs, so it has the only live actor.
    assert_eq!(conn.live_domain_actors(), 1);
    let spawned = conn.domain_actors_spawned();

    let dom = conn.define_domain(XML).await.unwrap();
    assert!(dom.is_hibernated().unwrap());
    assert_eq!(conn.live_domain_actors(), 1);
    let info = dom.info().await.unwrap();
    assert_eq!(
        (info.state.state, info.state.reason),
        (DomainState::Shutoff, 0)
    );
    assert_eq!(
        (info.max_mem_kib, info.mem_kib, info.vcpus),
        (65536, 65536, 3)
    );
    assert!(info.persistent && !info.autostart && info.id.is_none());
    let xml = dom.xml(0).await.unwrap();
    assert!(xml.starts_with("<domain type='test'>"), "{xml}");
    assert!(xml.contains("<memory unit='KiB'>65536</memory>"), "{xml}");
    assert!(
        xml.contains(&format!("<uuid>{}</uuid>", dom.uuid())),
        "{xml}"
    );
    assert_eq!(dom.xml(2).await.unwrap(), xml);
    let e = dom.xml(1 << 10).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArg);
    // Lookups and lists see it as usual.
    assert_eq!(
        conn.lookup_domain_by_name("vm1").unwrap().uuid(),
        dom.uuid()
    );
    assert_eq!(
        conn.lookup_domain_by_uuid(&dom.uuid()).unwrap().name(),
        "vm1"
    );
    let inactive: Vec<String> = conn
        .list_domains(ListFilter { flags: 2 })
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(inactive, vec!["vm1".to_string()]);
    // None of this spawned an actor.
    assert_eq!(conn.domain_actors_spawned(), spawned);
    assert!(dom.is_hibernated().unwrap());
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_wakes_and_destroy_returns_to_hibernation() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(HostConfig::new(dir.path())).await.unwrap();
    let conn = host.open("test:///default").await.unwrap();
    let dom = conn.define_domain(XML).await.unwrap();
    let spawned = conn.domain_actors_spawned();

    dom.start(false).await.unwrap();
    assert!(
        !dom.is_hibernated().unwrap(),
        "a running domain has an actor"
    );
    assert_eq!(conn.domain_actors_spawned(), spawned + 1);
    let id = dom.id().unwrap();
    assert!(
        dom.xml(0)
            .await
            .unwrap()
            .starts_with(&format!("<domain type='test' id='{id}'>"))
    );
    dom.suspend().await.unwrap();
    dom.destroy(false).await.unwrap();
    hibernates(&dom).await;
    assert_eq!(
        conn.domain_actors_spawned(),
        spawned + 1,
        "one actor did it all"
    );
    let st = dom.info().await.unwrap().state;
    assert_eq!(
        (st.state, st.reason),
        (DomainState::Shutoff, 2),
        "the reason survives"
    );

    // A job that fails its state check also leaves the domain asleep again.
    let e = dom.suspend().await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InternalError);
    hibernates(&dom).await;

    // Define over, autostart and undefine wake it too and keep their effect.
    let bigger = XML
        .replace("64", "128")
        .replace("</name>", &format!("</name><uuid>{}</uuid>", dom.uuid()));
    conn.define_domain(&bigger).await.unwrap();
    hibernates(&dom).await;
    assert_eq!(dom.info().await.unwrap().max_mem_kib, 131072);
    assert!(dom.xml(0).await.unwrap().contains(">131072</memory>"));
    dom.set_autostart(true).await.unwrap();
    hibernates(&dom).await;
    assert!(dom.info().await.unwrap().autostart);
    assert!(dom.entry().unwrap().autostart);
    dom.undefine(0).await.unwrap();
    assert_eq!(dom.info().await.unwrap_err().code, ErrorCode::NoDomain);
    assert!(conn.lookup_domain_by_name("vm1").is_err());

    // Transient domains never hibernate: they exist only while they run.
    let t = conn
        .create_domain(&XML.replace("vm1", "tr"), false)
        .await
        .unwrap();
    assert!(!t.is_hibernated().unwrap());
    t.destroy(false).await.unwrap();
    assert!(conn.lookup_domain_by_name("tr").is_err());
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_jobs_on_a_hibernated_domain_wakes_one_actor() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeHypervisor::new();
    let host = Host::start(fake_host_config(dir.path(), &fake, 300))
        .await
        .unwrap();
    let conn = host.open("test:///default").await.unwrap();
    let dom = conn.define_domain(XML).await.unwrap();
    let spawned = conn.domain_actors_spawned();
    let starts = fake.starts();

    fake.close_gate();
    let barrier = Arc::new(tokio::sync::Barrier::new(6));
    let jobs: Vec<_> = (0..6)
        .map(|_| {
            let (d, b) = (dom.clone(), barrier.clone());
            tokio::spawn(async move {
                b.wait().await;
                d.start(false).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        conn.domain_actors_spawned(),
        spawned + 1,
        "exactly one actor"
    );
    // Queries flow while the first start holds the slot.
    let info = tokio::time::timeout(Duration::from_millis(200), dom.info())
        .await
        .expect("queries never wait for jobs")
        .unwrap();
    assert_eq!(info.state.state, DomainState::Shutoff);
    // The five that waited time out with libvirt's lock error; then the first finishes.
    let t0 = Instant::now();
    while jobs.iter().filter(|j| j.is_finished()).count() < 5 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the waiters time out"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fake.open_gate(1);
    let mut ok = 0;
    for j in jobs {
        match j.await.unwrap() {
            Ok(()) => ok += 1,
            Err(e) => {
                assert_eq!(e.code, ErrorCode::OperationTimeout, "{}", e.message);
                assert!(e.message.contains("held by job 'start'"), "{}", e.message);
            }
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(fake.starts(), starts + 1);
    assert_eq!(dom.info().await.unwrap().state.state, DomainState::Running);
    dom.destroy(false).await.unwrap();
    hibernates(&dom).await;
    assert_eq!(conn.domain_actors_spawned(), spawned + 1);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_racing_with_hibernation_are_never_lost() {
    // Short synchronous jobs from many tasks: the actor goes back to sleep between
    // them all the time, so messages keep hitting actors that are draining.
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeHypervisor::new();
    let host = Host::start(fake_host_config(dir.path(), &fake, 5000))
        .await
        .unwrap();
    let conn = host.open("test:///default").await.unwrap();
    let dom = conn.define_domain(XML).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let d = dom.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    d.set_autostart((t + i) % 2 == 0).await?;
                    let info = d.info().await?;
                    assert_eq!(info.state.state, DomainState::Shutoff);
                    assert!(d.xml(0).await?.contains("<name>vm1</name>"));
                }
                Ok::<(), vireo_messages::VirError>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    hibernates(&dom).await;
    let spawned = conn.domain_actors_spawned();
    assert!(
        spawned >= 2,
        "the domain slept between jobs ({spawned} wakes)"
    );
    // Still one domain, usable as ever.
    assert_eq!(conn.count_domains(ListFilter { flags: 2 }), 1);
    dom.start(false).await.unwrap();
    dom.destroy(false).await.unwrap();
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_host_finds_hibernated_domains() {
    let dir = tempfile::tempdir().unwrap();
    let vnc = XML.replace(
        "</os>",
        "</os><devices><graphics type='vnc' port='-1' passwd='s3cret'/></devices>",
    );
    let uuid;
    {
        let host = Host::start(HostConfig::new(dir.path())).await.unwrap();
        let conn = host.open("test:///default").await.unwrap();
        let dom = conn.define_domain(&vnc).await.unwrap();
        uuid = dom.uuid();
        let auto = conn
            .define_domain(&XML.replace("vm1", "auto"))
            .await
            .unwrap();
        auto.set_autostart(true).await.unwrap();
        let run = conn
            .define_domain(&XML.replace("vm1", "run"))
            .await
            .unwrap();
        run.start(false).await.unwrap();
        host.shutdown().await;
    }
    let host = Host::start(HostConfig::new(dir.path())).await.unwrap();
    let conn = host.open("test:///default").await.unwrap();
    let dom = conn.lookup_domain_by_name("vm1").unwrap();
    assert_eq!(dom.uuid(), uuid);
    assert!(dom.is_hibernated().unwrap(), "loaded asleep");
    assert_eq!(dom.info().await.unwrap().max_mem_kib, 65536);
    // Secrets are kept on disk and in the compact state, shown only with XML_SECURE.
    assert!(dom.xml(1).await.unwrap().contains("passwd='s3cret'"));
    assert!(!dom.xml(0).await.unwrap().contains("s3cret"));
    // The autostart domain was woken and started; the running one reattached.
    let auto = conn.lookup_domain_by_name("auto").unwrap();
    let t0 = Instant::now();
    while auto.info().await.unwrap().state.state != DomainState::Running {
        assert!(t0.elapsed() < Duration::from_secs(2), "autostart ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let run = conn.lookup_domain_by_name("run").unwrap();
    assert!(!run.is_hibernated().unwrap());
    assert_eq!(run.info().await.unwrap().state.state, DomainState::Running);
    // A woken domain behaves as before.
    dom.start(false).await.unwrap();
    assert!(dom.xml(1).await.unwrap().contains("passwd='s3cret'"));
    dom.destroy(false).await.unwrap();
    hibernates(&dom).await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_file_instance_hibernates_its_inactive_domains() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(HostConfig::new(dir.path())).await.unwrap();
    let file = dir.path().join("node.xml");
    std::fs::write(
        &file,
        "<node>\
         <domain type='test'><name>runner</name><memory>524288</memory><os><type>hvm</type></os></domain>\
         <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'><name>sleeper</name><memory>524288</memory><os><type>hvm</type></os><test:runstate>5</test:runstate></domain>\
         </node>",
    )
    .unwrap();
    let conn = host
        .open(&format!("test://{}", file.display()))
        .await
        .unwrap();
    let sleeper = conn.lookup_domain_by_name("sleeper").unwrap();
    assert!(
        sleeper.is_hibernated().unwrap(),
        "loaded shut off, so asleep"
    );
    assert_eq!(sleeper.info().await.unwrap().max_mem_kib, 524288);
    sleeper.start(false).await.unwrap();
    assert!(sleeper.id().is_some());
    let runner = conn.lookup_domain_by_name("runner").unwrap();
    assert!(!runner.is_hibernated().unwrap());
    runner.destroy(false).await.unwrap();
    hibernates(&runner).await;
    runner.start(false).await.unwrap();
    assert_eq!(
        runner.info().await.unwrap().state.state,
        DomainState::Running
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_leaves_the_domain_asleep_and_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeHypervisor::new();
    let host = Host::start(fake_host_config(dir.path(), &fake, 1000))
        .await
        .unwrap();
    let conn = host.open("test:///default").await.unwrap();
    let dom = conn.define_domain(XML).await.unwrap();
    fake.fail_next_start(vireo_messages::VirError::operation_failed(
        vireo_messages::ErrorDomain::Domain,
        "no room for this guest",
    ));
    let e = dom.start(false).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::OperationFailed);
    hibernates(&dom).await;
    let info = dom.info().await.unwrap();
    assert_eq!(
        (info.state.state, info.state.reason, info.id),
        (DomainState::Shutoff, 0, None)
    );
    dom.start(false).await.unwrap();
    assert_eq!(dom.info().await.unwrap().state.state, DomainState::Running);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undefine_of_a_hibernated_domain_wakes_no_actor() {
    use vireo_messages::DomainEventKind;
    use vireo_messages::event::detail;

    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(HostConfig::new(dir.path())).await.unwrap();
    let conn = host.open("test:///default").await.unwrap();
    let mut sub = host.subscribe(vireo_actors::Filter::all().name("vm1"));
    let dom = conn.define_domain(XML).await.unwrap();
    assert_eq!(next_lifecycle(&mut sub).await.1, DomainEventKind::Defined);
    dom.set_autostart(true).await.unwrap();
    hibernates(&dom).await;
    let def = dir.path().join("test/domains/vm1.xml");
    let marker = dir.path().join("test/autostart/domains-vm1");
    assert!(def.exists() && marker.exists());

    // Unknown flags are refused and change nothing.
    let spawned = conn.domain_actors_spawned();
    let e = dom.undefine(1 << 20).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArg, "{e:?}");
    assert!(def.exists() && dom.is_hibernated().unwrap());

    dom.undefine(0).await.unwrap();
    assert_eq!(
        conn.domain_actors_spawned(),
        spawned,
        "no actor was woken only to be removed"
    );
    assert_eq!(
        next_lifecycle(&mut sub).await,
        (
            "vm1".into(),
            DomainEventKind::Undefined,
            detail::undefined::REMOVED
        )
    );
    assert!(!def.exists() && !marker.exists());
    assert!(conn.lookup_domain_by_name("vm1").is_err());
    assert_eq!(dom.undefine(0).await.unwrap_err().code, ErrorCode::NoDomain);

    // A hibernated domain with a managed-save image keeps it unless the flag says so.
    let dom = conn.define_domain(XML).await.unwrap();
    dom.start(false).await.unwrap();
    dom.managed_save(0).await.unwrap();
    hibernates(&dom).await;
    let spawned = conn.domain_actors_spawned();
    let e = dom.undefine(0).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::OperationInvalid, "{e:?}");
    assert!(def.exists());
    dom.undefine(vireo_actors::domain::UNDEFINE_MANAGED_SAVE)
        .await
        .unwrap();
    assert!(!def.exists() && !dir.path().join("test/managedsave/vm1.save").exists());
    assert_eq!(conn.domain_actors_spawned(), spawned);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_after_define_uses_the_definition_as_stored() {
    // The parsed definition kept from the define is used by the first start; it must
    // be what the stored XML says: no live id from the client's XML, and a redefine in
    // between wins.
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(HostConfig::new(dir.path())).await.unwrap();
    let conn = host.open("test:///default").await.unwrap();
    let dom = conn
        .define_domain(&XML.replace("<domain type='test'>", "<domain type='test' id='77'>"))
        .await
        .unwrap();
    dom.start(false).await.unwrap();
    let id = dom.id().unwrap();
    assert_ne!(id.0, 77);
    let live = dom.xml(0).await.unwrap();
    assert!(
        live.starts_with(&format!("<domain type='test' id='{id}'>")),
        "{live}"
    );
    assert_eq!(live.matches("id=").count(), 1, "{live}");
    dom.destroy(false).await.unwrap();
    hibernates(&dom).await;
    dom.undefine(0).await.unwrap();

    let dom = conn.define_domain(XML).await.unwrap();
    let bigger = XML
        .replace("64", "128")
        .replace("</name>", &format!("</name><uuid>{}</uuid>", dom.uuid()));
    conn.define_domain(&bigger).await.unwrap();
    hibernates(&dom).await;
    dom.start(false).await.unwrap();
    assert_eq!(dom.info().await.unwrap().max_mem_kib, 131072);
    assert!(dom.xml(0).await.unwrap().contains(">131072</memory>"));
    host.shutdown().await;
}

/// Copies a state directory as a crash would leave it (files only).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_guests_are_recorded_at_shutdown_and_lost_in_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    let record_path = dir.path().join("run/test/domains/vm1.json");
    let record = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap()
    };
    let bigger = |uuid: vireo_messages::Uuid| {
        XML.replace("64", "128")
            .replace("</name>", &format!("</name><uuid>{uuid}</uuid>"))
    };
    {
        let host = Host::start(HostConfig::new(dir.path())).await.unwrap();
        let conn = host.open("test:///default").await.unwrap();
        let dom = conn.define_domain(XML).await.unwrap();
        dom.start(false).await.unwrap();
        // The guest lives in memory: no record while the daemon runs.
        assert!(!record_path.exists());
        // What a crash (SIGKILL) would leave behind.
        copy_dir(dir.path(), crashed.path());
        host.shutdown().await;
    }
    // A clean shutdown recorded it; started from its definition, so without live XML.
    assert!(record()["live_xml"].is_null(), "{}", record());
    {
        let host = Host::start(HostConfig::new(dir.path())).await.unwrap();
        let conn = host.open("test:///default").await.unwrap();
        let dom = conn.lookup_domain_by_name("vm1").unwrap();
        assert_eq!(dom.info().await.unwrap().state.state, DomainState::Running);
        // Redefined while it runs: at shutdown the live XML (the old one) is written.
        conn.define_domain(&bigger(dom.uuid())).await.unwrap();
        host.shutdown().await;
    }
    let live = record()["live_xml"].as_str().unwrap().to_string();
    assert!(live.contains(">65536</memory>"), "{live}");
    {
        let host = Host::start(HostConfig::new(dir.path())).await.unwrap();
        let conn = host.open("test:///default").await.unwrap();
        let dom = conn.lookup_domain_by_name("vm1").unwrap();
        assert_eq!(dom.info().await.unwrap().state.state, DomainState::Running);
        assert!(dom.xml(0).await.unwrap().contains(">65536</memory>"));
        assert!(dom.xml(2).await.unwrap().contains(">131072</memory>"));
        // A change drops the record of the last shutdown: memory is the truth again.
        dom.suspend().await.unwrap();
        assert!(!record_path.exists());
        host.shutdown().await;
    }
    // After the crash the guest is gone, the definition is not.
    let host = Host::start(HostConfig::new(crashed.path())).await.unwrap();
    let conn = host.open("test:///default").await.unwrap();
    let dom = conn.lookup_domain_by_name("vm1").unwrap();
    assert_eq!(dom.info().await.unwrap().state.state, DomainState::Shutoff);
    assert!(dom.is_hibernated().unwrap());
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_xml_read_without_the_actor_follows_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(HostConfig::new(dir.path())).await.unwrap();
    let conn = host.open("test:///default").await.unwrap();
    let dom = conn.define_domain(XML).await.unwrap();
    // Asleep: the dormant text answers, the same as formatting would.
    let inactive = dom.xml(0).await.unwrap();
    assert_eq!(dom.xml(1).await.unwrap(), inactive);
    assert_eq!(dom.xml(2 | 8).await.unwrap(), inactive);
    assert_eq!(
        dom.xml(1 << 10).await.unwrap_err().code,
        ErrorCode::InvalidArg
    );
    for round in 0..3 {
        dom.start(false).await.unwrap();
        let id = dom.id().unwrap();
        let first = dom.xml(0).await.unwrap();
        assert!(
            first.starts_with(&format!("<domain type='test' id='{id}'>")),
            "round {round}: {first}"
        );
        // The second read comes from the directory: the same text.
        assert_eq!(dom.xml(0).await.unwrap(), first);
        if round == 1 {
            // Redefined while running: the live XML stays, the inactive one changes.
            let bigger = XML
                .replace("64", "128")
                .replace("</name>", &format!("</name><uuid>{}</uuid>", dom.uuid()));
            conn.define_domain(&bigger).await.unwrap();
            assert_eq!(dom.xml(0).await.unwrap(), first);
            assert!(dom.xml(2).await.unwrap().contains(">131072</memory>"));
        }
        dom.destroy(false).await.unwrap();
        hibernates(&dom).await;
        let off = dom.xml(0).await.unwrap();
        assert!(!off.contains(" id="), "{off}");
    }
    assert!(dom.xml(0).await.unwrap().contains(">131072</memory>"));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_never_reused_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let next_id_file = dir.path().join("run/test/next-id");
    let mut seen = Vec::new();
    for round in 0..3 {
        let host = Host::start(HostConfig::new(dir.path())).await.unwrap();
        let conn = host.open("test:///default").await.unwrap();
        let dom = match conn.lookup_domain_by_name("vm1") {
            Ok(d) => d,
            Err(_) => conn.define_domain(XML).await.unwrap(),
        };
        let reserved: u32 = std::fs::read_to_string(&next_id_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        for _ in 0..70 {
            dom.start(false).await.unwrap();
            let id = dom.id().unwrap().0;
            assert!(
                !seen.contains(&id),
                "round {round}: id {id} handed out twice"
            );
            if let Some(last) = seen.last()
                && seen.len() % 70 != 0
            {
                assert_eq!(id, last + 1, "ids within a run are consecutive");
            }
            seen.push(id);
            dom.destroy(false).await.unwrap();
        }
        // The file always reserves at least the ids handed out so far.
        let now: u32 = std::fs::read_to_string(&next_id_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(now > *seen.iter().max().unwrap() && now > reserved);
        host.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_actor_that_panics_is_rebuilt_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeHypervisor::new();
    let host = Host::start(fake_host_config(dir.path(), &fake, 300))
        .await
        .unwrap();
    let conn = host.open("test:///default").await.unwrap();
    let dom = conn.define_domain(XML).await.unwrap();
    let before = std::fs::read_to_string(dir.path().join("test/domains/vm1.xml")).unwrap();

    // A bug in the driver: the start panics inside the domain actor.
    fake.panic_next_start();
    assert!(
        dom.start(false).await.is_err(),
        "the start does not succeed"
    );
    // The driver rebuilt the domain from disk: defined, shut off, asleep, unchanged.
    let t0 = Instant::now();
    let again = loop {
        if let Ok(d) = conn.lookup_domain_by_name("vm1")
            && d.is_hibernated().unwrap_or(false)
        {
            break d;
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "vm1 was not rebuilt");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(again.uuid(), dom.uuid());
    assert_eq!(
        again.info().await.unwrap().state.state,
        DomainState::Shutoff
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("test/domains/vm1.xml")).unwrap(),
        before
    );
    // And it works as before.
    again.start(false).await.unwrap();
    assert_eq!(
        again.info().await.unwrap().state.state,
        DomainState::Running
    );
    again.destroy(false).await.unwrap();
    hibernates(&again).await;

    // The same bug after the job had to wait (so it runs as a task of its own): the
    // job fails, the actor fails with it, the domain is rebuilt; no job slot stays taken.
    fake.close_gate();
    fake.panic_next_start();
    let d = again.clone();
    let start = tokio::spawn(async move { d.start(false).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    fake.open_gate(1);
    let r = tokio::time::timeout(Duration::from_secs(5), start)
        .await
        .expect("the failed job answers its caller");
    assert!(r.unwrap().is_err());
    let t0 = Instant::now();
    let third = loop {
        if let Ok(d) = conn.lookup_domain_by_name("vm1")
            && d.is_hibernated().unwrap_or(false)
        {
            break d;
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "vm1 was not rebuilt");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    fake.open_gate(10);
    third.start(false).await.unwrap();
    third.destroy(false).await.unwrap();
    host.shutdown().await;
}
