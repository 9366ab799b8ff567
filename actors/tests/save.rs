//! Save, managed save and restore through the domain actor, with the fake hypervisor
//! posing as QEMU: the real pipeline (pipe, I/O helper child actor writing libvirt's save
//! image with fdatasync) against a synthetic migration stream, and every failure path of
//! issue 5 that can be injected without real QEMU: the helper panics, is killed or hits
//! ENOSPC mid-stream, the client aborts, "QEMU" dies, the image is corrupt, the daemon
//! died mid-save.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use vireo_actors::domain::save::{job_operation, job_type};
use vireo_actors::{Connection, Delivery, Domain, Filter, Host, HostConfig, ListFilter};
use vireo_actors::{SaveFault, SaveFaults};
use vireo_drivers::fake::FakeHypervisor;
use vireo_drivers::hypervisor::Flavour;
use vireo_drivers::saveimage;
use vireo_messages::event::detail;
use vireo_messages::state::{paused, running, shutoff};
use vireo_messages::{DomainEventKind, DomainState, ErrorCode};

const XML: &str = "<domain type='qemu'><name>q1</name><uuid>0b7f7c4e-8f0e-4a43-9d5e-3d2c1f6a7b01</uuid><memory unit='MiB'>64</memory><os><type>hvm</type></os></domain>";

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    cfg: HostConfig,
    fake: FakeHypervisor,
    faults: SaveFaults,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let fake = FakeHypervisor::new();
    fake.set_flavour(Flavour::Qemu);
    let mut cfg = HostConfig::new(&root);
    cfg.qemu = Some(Arc::new(fake.clone()));
    let faults = SaveFaults::default();
    cfg.save_faults = faults.clone();
    Setup {
        _dir: dir,
        root,
        cfg,
        fake,
        faults,
    }
}

async fn running_domain(host: &Host) -> (Connection, Domain) {
    let conn = host.open("qemu:///system").await.unwrap();
    let d = conn.define_domain(XML).await.unwrap();
    d.start(false).await.unwrap();
    (conn, d)
}

fn managed_path(root: &Path) -> PathBuf {
    root.join("qemu/managedsave/q1.save")
}

async fn next_lifecycle(sub: &mut vireo_actors::Subscription) -> (DomainEventKind, i32) {
    let (_, event, detail) = common::next_lifecycle(sub).await;
    (event, detail)
}

async fn state(d: &Domain) -> (DomainState, i32) {
    let i = d.info().await.unwrap();
    (i.state.state, i.state.reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_restore_managedsave_and_start_from_it() {
    let s = setup();
    s.fake.set_save_size(3 << 20);
    let host = Host::start(s.cfg.clone()).await.unwrap();
    let (conn, d) = running_domain(&host).await;
    let mut sub = host.subscribe(Filter::all());
    let img = s.root.join("q1.img");

    d.save(&img, None, 0).await.unwrap();
    assert_eq!(state(&d).await, (DomainState::Shutoff, shutoff::SAVED));
    // As libvirt's qemu driver: paused for the save, the job's statistics, stopped.
    assert_eq!(
        next_lifecycle(&mut sub).await,
        (DomainEventKind::Suspended, detail::suspended::PAUSED)
    );
    let stats = loop {
        let d = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .unwrap()
            .unwrap();
        if let Delivery::Event(s) = d
            && let vireo_messages::EventKind::Domain(vireo_messages::DomainEvent::JobCompleted {
                stats,
            }) = &s.event.kind
        {
            break stats.clone();
        }
    };
    let processed = stats
        .iter()
        .find(|p| p.name == "data_processed")
        .map(|p| p.value.clone());
    assert_eq!(
        processed,
        Some(vireo_messages::TypedValue::ULLong((3 << 20) + 4)),
        "{stats:?}"
    );
    assert_eq!(
        next_lifecycle(&mut sub).await,
        (DomainEventKind::Stopped, detail::stopped::SAVED)
    );
    let f = std::fs::File::open(&img).unwrap();
    let (header, offset) = saveimage::read_header(&f).unwrap();
    assert!(header.was_running);
    assert!(header.xml.contains("<name>q1</name>"), "{}", header.xml);
    assert_eq!(
        f.metadata().unwrap().len(),
        offset + 4 + (3 << 20),
        "the whole stream is in the image"
    );
    assert!(!d.entry().unwrap().managed_save);

    // Restore into the same (inactive, persistent) domain.
    let r = conn.restore(&img, None, 0).await.unwrap();
    assert_eq!(r.uuid(), d.uuid());
    assert_eq!(state(&d).await, (DomainState::Running, running::RESTORED));
    assert_eq!(
        next_lifecycle(&mut sub).await,
        (DomainEventKind::Started, detail::started::RESTORED)
    );
    assert_eq!(
        next_lifecycle(&mut sub).await,
        (DomainEventKind::Resumed, detail::resumed::FROM_SNAPSHOT)
    );
    assert_eq!(s.fake.restores(), vec![("q1".to_string(), 3 << 20)]);
    assert!(img.exists(), "a plain save image stays after restore");
    let e = conn.restore(&img, None, 0).await.err().unwrap();
    assert_eq!(e.code, ErrorCode::OperationInvalid);
    assert!(
        e.message.contains("domain 'q1' is already active"),
        "{}",
        e.message
    );

    // Managed save, then a plain start resumes from it and removes it.
    d.managed_save(0).await.unwrap();
    assert!(d.entry().unwrap().managed_save);
    assert!(managed_path(&s.root).exists());
    assert_eq!(conn.count_domains(ListFilter { flags: 256 }), 1);
    let starts = s.fake.starts();
    d.start(false).await.unwrap();
    assert_eq!(state(&d).await, (DomainState::Running, running::RESTORED));
    assert_eq!(s.fake.starts(), starts, "resumed, not booted");
    assert_eq!(s.fake.restores().len(), 2);
    assert!(!d.entry().unwrap().managed_save);
    assert!(!managed_path(&s.root).exists());

    // Paused flag: saved running, restored paused.
    d.managed_save(4).await.unwrap();
    let f = std::fs::File::open(managed_path(&s.root)).unwrap();
    assert!(!saveimage::read_header(&f).unwrap().0.was_running);
    d.start(false).await.unwrap();
    assert_eq!(state(&d).await, (DomainState::Paused, paused::MIGRATION));
    d.resume().await.unwrap();

    // Force boot discards the image; managedsave-remove too.
    d.managed_save(0).await.unwrap();
    d.start_with(false, true).await.unwrap();
    assert_eq!(state(&d).await, (DomainState::Running, running::BOOTED));
    assert_eq!(s.fake.starts(), starts + 1);
    assert!(!managed_path(&s.root).exists());
    assert!(!d.entry().unwrap().managed_save);
    d.managed_save(0).await.unwrap();
    d.managed_save_remove().await.unwrap();
    assert!(!managed_path(&s.root).exists());
    assert!(!d.entry().unwrap().managed_save);

    // A replacement XML at save goes into the image; one at restore is what runs.
    d.start(false).await.unwrap();
    let alt = s.root.join("alt.img");
    let dxml = XML.replace("<os>", "<description>at save</description><os>");
    d.save(&alt, Some(&dxml), 0).await.unwrap();
    let f = std::fs::File::open(&alt).unwrap();
    assert!(
        saveimage::read_header(&f)
            .unwrap()
            .0
            .xml
            .contains("at save")
    );
    let rxml = XML.replace("<os>", "<description>at restore</description><os>");
    conn.restore(&alt, Some(&rxml), 0).await.unwrap();
    assert!(d.xml(0).await.unwrap().contains("at restore"));
    let other = XML.replace("q1", "zz");
    let e = d.save(&alt, Some(&other), 0).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArg, "{}", e.message);
    assert_eq!(
        state(&d).await.0,
        DomainState::Running,
        "a refused save changes nothing"
    );

    // A file that cannot be created fails the save before the guest is touched.
    let mut sub2 = host.subscribe(Filter::all());
    let e = d
        .save(&s.root.join("no/such/dir/x.img"), None, 0)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::SystemError);
    assert!(
        e.message.contains("Failed to create file") && e.message.contains("No such file"),
        "{}",
        e.message
    );
    assert_eq!(state(&d).await, (DomainState::Running, running::RESTORED));
    assert!(
        tokio::time::timeout(Duration::from_millis(100), next_lifecycle(&mut sub2))
            .await
            .is_err(),
        "no pause, no event"
    );

    // The image's XML can be read and replaced.
    let xml = conn.save_image_xml(&img, 0).await.unwrap();
    assert!(xml.contains("<name>q1</name>"), "{xml}");
    let changed = xml.replace("<os>", "<description>edited</description><os>");
    conn.save_image_define_xml(&img, &changed, 4).await.unwrap();
    let f = std::fs::File::open(&img).unwrap();
    assert!(
        !saveimage::read_header(&f).unwrap().0.was_running,
        "--paused changed the image"
    );
    conn.save_image_define_xml(&img, &changed, 2).await.unwrap();
    let f = std::fs::File::open(&img).unwrap();
    assert!(saveimage::read_header(&f).unwrap().0.was_running);
    assert!(
        conn.save_image_xml(&img, 0)
            .await
            .unwrap()
            .contains("edited")
    );
    host.shutdown().await;
}

/// Saves `d` to `img` with `fault` armed and checks the outcome every failure must have:
/// the job fails, no image is left, the guest runs again, no managed-save flag.
async fn failed_save(
    s: &Setup,
    d: &Domain,
    fault: Option<SaveFault>,
    managed: bool,
) -> vireo_messages::VirError {
    if let Some(f) = fault {
        s.faults.arm(f);
    }
    let img = s.root.join("q1.img");
    let e = if managed {
        d.managed_save(0).await.unwrap_err()
    } else {
        d.save(&img, None, 0).await.unwrap_err()
    };
    assert!(!img.exists(), "no image after a failed save");
    assert!(!managed_path(&s.root).exists(), "no managed image");
    assert!(!d.entry().unwrap().managed_save);
    assert_eq!(
        state(d).await,
        (DomainState::Running, running::SAVE_CANCELED),
        "the guest runs again"
    );
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helper_failures_fail_the_save_and_leave_nothing_behind() {
    let s = setup();
    s.fake.set_save_size(4 << 20);
    s.fake.set_save_delay(Duration::from_millis(2));
    let host = Host::start(s.cfg.clone()).await.unwrap();
    let (_conn, d) = running_domain(&host).await;
    let mut sub = host.subscribe(Filter::all());

    // The helper panics mid-stream: reported as such.
    let e = failed_save(&s, &d, Some(SaveFault::Panic { after: 512 << 10 }), false).await;
    assert_eq!(e.code, ErrorCode::InternalError);
    assert!(
        e.message.contains("I/O helper 'save' failed") && e.message.contains("panicked"),
        "{}",
        e.message
    );
    assert_eq!(
        next_lifecycle(&mut sub).await,
        (DomainEventKind::Suspended, detail::suspended::PAUSED)
    );
    assert_eq!(
        next_lifecycle(&mut sub).await,
        (DomainEventKind::Resumed, detail::resumed::UNPAUSED),
        "the guest's resumption is announced"
    );

    // The helper is killed mid-stream.
    let e = failed_save(&s, &d, Some(SaveFault::Kill { after: 512 << 10 }), true).await;
    assert!(
        e.message.contains("I/O helper 'save' failed"),
        "{}",
        e.message
    );

    // ENOSPC at write: libvirt's "operation failed" with the OS error in the text.
    let e = failed_save(&s, &d, Some(SaveFault::NoSpace { after: 1 << 20 }), true).await;
    assert_eq!(e.code, ErrorCode::OperationFailed);
    assert!(
        e.message.contains("No space left on device"),
        "{}",
        e.message
    );

    // A later start boots fresh, never from a broken image.
    d.destroy(false).await.unwrap();
    let (starts, restores) = (s.fake.starts(), s.fake.restores().len());
    d.start(false).await.unwrap();
    assert_eq!(s.fake.starts(), starts + 1);
    assert_eq!(s.fake.restores().len(), restores);

    // The job slot is free and a save without fault works.
    d.save(&s.root.join("ok.img"), None, 0).await.unwrap();
    assert!(s.root.join("ok.img").exists());
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_info_answers_during_a_save_and_abort_cancels_it() {
    let s = setup();
    s.fake.set_save_size(16 << 20);
    s.fake.set_save_delay(Duration::from_millis(3));
    let host = Host::start(s.cfg.clone()).await.unwrap();
    let (_conn, d) = running_domain(&host).await;
    assert_eq!(d.job_info().await.unwrap().job_type, job_type::NONE);
    let e = d.abort_job().await.unwrap_err();
    assert_eq!(e.code, ErrorCode::OperationInvalid);

    let saver = {
        let d = d.clone();
        let img = s.root.join("q1.img");
        tokio::spawn(async move { d.save(&img, None, 0).await })
    };
    let mut seen = Vec::new();
    for _ in 0..500 {
        let i = d.job_info().await.unwrap();
        if i.job_type != job_type::NONE && i.data_processed > 256 << 10 {
            seen.push(i);
            if seen.len() == 2 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen.len(), 2, "job info during the save");
    let (a, b) = (seen[0], seen[1]);
    assert_eq!(a.job_type, job_type::UNBOUNDED);
    assert_eq!(a.operation, job_operation::SAVE);
    assert_eq!(a.data_total, (16 << 20) + 4);
    assert!(a.data_processed < a.data_total);
    assert_eq!(a.data_remaining, a.data_total - a.data_processed);
    assert!(b.data_processed > a.data_processed, "{a:?} then {b:?}");
    assert!(b.elapsed_ms >= a.elapsed_ms);
    // Other queries flow too: the guest is paused for the save.
    assert_eq!(state(&d).await.0, DomainState::Paused);

    d.abort_job().await.unwrap();
    let e = saver.await.unwrap().unwrap_err();
    assert_eq!(e.code, ErrorCode::OperationAborted);
    assert_eq!(
        e.message,
        "operation aborted: domain save job: canceled by client"
    );
    assert!(!s.root.join("q1.img").exists());
    assert_eq!(
        state(&d).await,
        (DomainState::Running, running::SAVE_CANCELED)
    );
    assert_eq!(d.job_info().await.unwrap().job_type, job_type::NONE);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hypervisor_death_mid_save_shuts_the_domain_off() {
    let s = setup();
    s.fake.set_save_size(4 << 20);
    s.fake.set_save_delay(Duration::from_millis(1));
    let host = Host::start(s.cfg.clone()).await.unwrap();
    let (_conn, d) = running_domain(&host).await;
    s.fake.die_during_next_save(1 << 20);
    d.managed_save(0).await.unwrap_err();
    assert!(!managed_path(&s.root).exists());
    assert!(!d.entry().unwrap().managed_save);
    let mut st = state(&d).await;
    for _ in 0..100 {
        if st.0 == DomainState::Shutoff {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        st = state(&d).await;
    }
    assert_eq!(st, (DomainState::Shutoff, shutoff::CRASHED));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_images_are_refused_and_nothing_starts() {
    let s = setup();
    let host = Host::start(s.cfg.clone()).await.unwrap();
    let conn = host.open("qemu:///system").await.unwrap();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "foreign",
            b"hello, this is not a save image at all".repeat(10),
            "image magic is incorrect",
        ),
        (
            "partial",
            {
                let mut v = b"LibvirtQemudPart".to_vec();
                v.resize(4096, 0);
                v
            },
            "save image is incomplete",
        ),
        (
            "truncated",
            b"LibvirtQemudSave\x02\0\0\0".to_vec(),
            "truncated",
        ),
        ("missing", Vec::new(), "No such file or directory"),
    ];
    for (name, bytes, text) in cases {
        let p = s.root.join(format!("{name}.img"));
        if name != "missing" {
            std::fs::write(&p, &bytes).unwrap();
        }
        let e = conn.restore(&p, None, 0).await.err().unwrap();
        assert!(e.message.contains(text), "{name}: {}", e.message);
    }
    // A complete header whose stream is not QEMU's.
    let good = saveimage::SaveHeader::new(XML, true);
    let p = s.root.join("corrupt.img");
    let f = std::fs::File::create(&p).unwrap();
    let off = saveimage::write_partial_header(&f, &good).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"XXXXjunk", off).unwrap();
    saveimage::finalize(&f).unwrap();
    let e = conn.restore(&p, None, 0).await.err().unwrap();
    assert!(e.message.contains("QEMU's magic"), "{}", e.message);

    assert!(conn.list_domains(ListFilter::default()).is_empty());
    assert_eq!(s.fake.starts(), 0);
    assert!(s.fake.restores().is_empty());
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_removes_interrupted_saves_and_resumes_the_guest() {
    let s = setup();
    let host = Host::start(s.cfg.clone()).await.unwrap();
    let (conn, _d) = running_domain(&host).await;
    let other = conn
        .define_domain(&XML.replace("q1", "q2").replace("7b01", "7b02"))
        .await
        .unwrap();
    let _ = other;
    host.shutdown().await;

    // As if the daemon died mid-save: the status record names the image, the guest
    // is paused, the image has the partial magic; q2's managed image is partial too.
    let rec_path = s.root.join("run/qemu/domains/q1.json");
    let mut rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rec_path).unwrap()).unwrap();
    let img = s.root.join("q1.img");
    rec["saving"] = serde_json::json!({ "path": img.to_string_lossy(), "was_running": true });
    rec["guest"]["paused"] = serde_json::json!(true);
    rec["state"] = serde_json::json!(3);
    rec["reason"] = serde_json::json!(3);
    std::fs::write(&rec_path, rec.to_string()).unwrap();
    let mut partial = b"LibvirtQemudPart".to_vec();
    partial.resize(8192, 7);
    std::fs::write(&img, &partial).unwrap();
    let q2_managed = s.root.join("qemu/managedsave/q2.save");
    std::fs::create_dir_all(q2_managed.parent().unwrap()).unwrap();
    std::fs::write(&q2_managed, &partial[..40]).unwrap();

    let host = Host::start(s.cfg.clone()).await.unwrap();
    let conn = host.open("qemu:///system").await.unwrap();
    let d = conn.lookup_domain_by_name("q1").unwrap();
    assert!(!img.exists(), "the interrupted save's image is removed");
    assert_eq!(
        state(&d).await,
        (DomainState::Running, running::SAVE_CANCELED)
    );
    let q2 = conn.lookup_domain_by_name("q2").unwrap();
    assert!(!q2.entry().unwrap().managed_save);
    assert!(!q2_managed.exists());
    // And a later save works, leaving no "saving" mark behind.
    d.save(&img, None, 0).await.unwrap();
    assert!(img.exists());
    host.shutdown().await;
}
