//! The QEMU driver against real QEMU (TCG) running tiny boot-sector guests.
//!
//! Each test builds (or reuses) a 1 MiB boot image that does one thing — power off,
//! wait for the power button, panic, reset, halt — starts it through
//! [`QemuHypervisor`] and checks what the driver reports. Without QEMU or binutils the
//! tests skip with a printed reason, except under `CI=true`, where that is a failure.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;
use vireo_drivers::hypervisor::{
    Flavour, GuestEvent, Hypervisor, ShutdownOutcome, StartOptions, Started,
};
use vireo_drivers::qemu::hypervisor::{QemuHypervisor, default_emulator};
use vireo_drivers::qemu::process::{QemuProcess, pid_gone};
use vireo_drivers::qemu::qmp::{Qmp, QmpError};
use vireo_drivers::qemu::testguest::TestGuest;
use vireo_messages::ErrorDomain;
use vireo_xml::DomainDef;

mod support;

use support::{Env, available};

const EVENT_TIMEOUT: Duration = Duration::from_secs(4);

/// The guests of these tests.
impl Env {
    /// A 64 MiB definition booting `kind`, with a pvpanic device when `panic`.
    fn def(&self, name: &str, kind: TestGuest, panic: bool) -> DomainDef {
        let panic = if panic {
            "<panic model='isa'><address type='isa' iobase='0x505'/></panic>"
        } else {
            ""
        };
        self.guest_def(name, kind, 64, "<acpi/>", panic)
    }

    async fn start(&self, name: &str, kind: TestGuest, paused: bool) -> Started {
        let def = self.def(name, kind, false);
        self.hv
            .start(&def, StartOptions { paused, id: 1 })
            .await
            .unwrap_or_else(|e| panic!("start {name}: {e}"))
    }

    /// Waits until the guest's serial log holds `line` `times` times.
    async fn wait_serial(&self, name: &str, line: &str, times: usize) {
        self.wait_serial_until(name, &format!("{line:?} x{times}"), EVENT_TIMEOUT, |t| {
            t.matches(line).count() >= times
        })
        .await;
    }
}

fn unique(name: &str) -> String {
    format!("vq-{}-{name}", std::process::id())
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<GuestEvent>) -> GuestEvent {
    tokio::time::timeout(EVENT_TIMEOUT, rx.recv())
        .await
        .expect("no guest event in time")
        .expect("event channel closed")
}

fn pid_of(s: &Started) -> u32 {
    s.guest.status_record()["pid"].as_u64().unwrap() as u32
}

fn dir_of(s: &Started) -> PathBuf {
    PathBuf::from(s.guest.status_record()["domain_dir"].as_str().unwrap())
}

fn no_process_named(name: &str) -> bool {
    let out = std::process::Command::new("pgrep")
        .args(["-f", name])
        .output()
        .unwrap();
    out.stdout.is_empty()
}

#[tokio::test]
async fn identity() {
    let env = Env::new();
    assert_eq!(env.hv.type_name(), "QEMU");
    assert_eq!(env.hv.error_domain(), ErrorDomain::Qemu);
    assert_eq!(env.hv.flavour(), Flavour::Qemu);
}

#[tokio::test]
async fn start_paused_then_resume_and_pause() {
    if !available() {
        return;
    }
    let env = Env::new();
    let name = unique("paused");
    let mut s = env.start(&name, TestGuest::Halt, true).await;
    assert!(s.paused);
    let pid = pid_of(&s);
    assert!(!pid_gone(pid));
    // Paused from the first instruction: nothing on the serial port.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(env.serial(&name)).unwrap_or_default();
    assert!(text.is_empty(), "a paused guest printed {text:?}");

    s.guest.resume().await.unwrap();
    assert_eq!(next_event(&mut s.events).await, GuestEvent::Resumed);
    env.wait_serial(&name, "hello from boot sector", 1).await;
    // QEMU's process has used CPU time (firmware under TCG), as dominfo reports it.
    let t = Instant::now();
    while s.guest.cpu_time_ns().unwrap_or(0) == 0 {
        assert!(t.elapsed() < Duration::from_secs(5), "no CPU time reported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    s.guest.pause().await.unwrap();
    assert_eq!(next_event(&mut s.events).await, GuestEvent::Stopped);
    s.guest.resume().await.unwrap();
    assert_eq!(next_event(&mut s.events).await, GuestEvent::Resumed);

    let dir = dir_of(&s);
    assert!(dir.join("qmp.sock").exists());
    s.guest.destroy(false).await.unwrap();
    assert!(pid_gone(pid));
    assert!(!dir.exists());
    assert_eq!(s.guest.cpu_time_ns(), None, "CPU time of a destroyed guest");
}

#[tokio::test]
async fn powerdown_request_shuts_the_guest_down() {
    if !available() {
        return;
    }
    let env = Env::new();
    let name = unique("wait");
    let mut s = env.start(&name, TestGuest::WaitPowerButton, false).await;
    assert!(!s.paused);
    env.wait_serial(&name, "waiting for power button", 1).await;
    assert_eq!(
        s.guest.shutdown().await.unwrap(),
        ShutdownOutcome::Requested
    );
    assert_eq!(
        next_event(&mut s.events).await,
        GuestEvent::Shutdown { by_guest: true }
    );
    // -no-shutdown: QEMU waits for the daemon, which destroys it (as the domain
    // actor does on Shutdown).
    let pid = pid_of(&s);
    assert!(!pid_gone(pid));
    s.guest.destroy(true).await.unwrap();
    assert!(pid_gone(pid));
    // No crash is reported for our own destroy.
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(200), s.events.recv()).await
    {
        assert!(!matches!(ev, GuestEvent::Exited { .. }), "{ev:?}");
    }
}

#[tokio::test]
async fn guest_initiated_poweroff() {
    if !available() {
        return;
    }
    let env = Env::new();
    let name = unique("poweroff");
    let mut s = env.start(&name, TestGuest::Shutdown, false).await;
    // The STOP that -no-shutdown adds is not reported as a pause.
    assert_eq!(
        next_event(&mut s.events).await,
        GuestEvent::Shutdown { by_guest: true }
    );
    s.guest.destroy(true).await.unwrap();
}

#[tokio::test]
async fn pvpanic_reports_a_panic() {
    if !available() {
        return;
    }
    let env = Env::new();
    let name = unique("panic");
    let def = env.def(&name, TestGuest::Panic, true);
    let mut s = env.hv.start(&def, StartOptions::default()).await.unwrap();
    assert_eq!(next_event(&mut s.events).await, GuestEvent::Panicked);
    // -action panic=pause: QEMU stays, its STOP is not reported as a pause.
    let pid = pid_of(&s);
    assert!(!pid_gone(pid));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), s.events.recv())
            .await
            .is_err(),
        "no further event expected"
    );
    // on_crash='restart': reset runs the guest again, which panics again.
    s.guest.reset().await.unwrap();
    let mut saw_panic = false;
    for _ in 0..4 {
        match next_event(&mut s.events).await {
            GuestEvent::Panicked => {
                saw_panic = true;
                break;
            }
            GuestEvent::Reset | GuestEvent::Resumed => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_panic);
    s.guest.destroy(false).await.unwrap();
}

#[tokio::test]
async fn guest_reset_is_reported() {
    if !available() {
        return;
    }
    let env = Env::new();
    let name = unique("reset");
    let mut s = env.start(&name, TestGuest::Reset, false).await;
    assert_eq!(next_event(&mut s.events).await, GuestEvent::Reset);
    s.guest.destroy(false).await.unwrap();
}

#[tokio::test]
async fn reboot_is_a_fake_reboot() {
    if !available() {
        return;
    }
    let env = Env::new();
    let name = unique("reboot");
    let mut s = env.start(&name, TestGuest::WaitPowerButton, false).await;
    env.wait_serial(&name, "waiting for power button", 1).await;
    assert!(!s.guest.reboot().await.unwrap());
    // The guest powers off; the driver resets and resumes it instead. (SeaBIOS then
    // resets the machine once more by itself on the warm boot: a second RESET.)
    assert_eq!(next_event(&mut s.events).await, GuestEvent::Reset);
    env.wait_serial(&name, "waiting for power button", 2).await;
    // A plain shutdown afterwards is a shutdown again.
    s.guest.shutdown().await.unwrap();
    loop {
        match next_event(&mut s.events).await {
            GuestEvent::Shutdown { by_guest } => {
                assert!(by_guest);
                break;
            }
            GuestEvent::Reset => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    s.guest.destroy(true).await.unwrap();
}

#[tokio::test]
async fn killed_qemu_is_a_crash() {
    if !available() {
        return;
    }
    let env = Env::new();
    let name = unique("killed");
    let mut s = env.start(&name, TestGuest::Halt, false).await;
    let pid = pid_of(&s);
    let dir = dir_of(&s);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    loop {
        match next_event(&mut s.events).await {
            GuestEvent::Exited { crashed } => {
                assert!(crashed);
                break;
            }
            GuestEvent::Resumed => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(!dir.exists(), "runtime dir left behind");
    // Destroying what is already gone is fine.
    s.guest.destroy(false).await.unwrap();
}

#[tokio::test]
async fn destroy_graceful_and_forced_with_timing() {
    if !available() {
        return;
    }
    let env = Env::new();
    for graceful in [true, false] {
        let name = unique(if graceful { "graceful" } else { "forced" });
        let def = env.def(&name, TestGuest::Halt, false);
        let t0 = Instant::now();
        let mut s = env.hv.start(&def, StartOptions::default()).await.unwrap();
        let started = t0.elapsed();
        let pid = pid_of(&s);
        let t1 = Instant::now();
        s.guest.destroy(graceful).await.unwrap();
        let destroyed = t1.elapsed();
        println!("graceful={graceful}: start {started:?}, destroy {destroyed:?}");
        assert!(pid_gone(pid));
        assert!(no_process_named(&name));
        assert!(!env.hv.domain_dir(&name).exists());
        while let Ok(Some(ev)) =
            tokio::time::timeout(Duration::from_millis(100), s.events.recv()).await
        {
            assert!(!matches!(ev, GuestEvent::Exited { .. }), "{ev:?}");
        }
    }
}

#[tokio::test]
async fn reattach_after_daemon_restart() {
    if !available() {
        return;
    }
    let env = Env::new();
    let name = unique("reattach");
    let def = env.def(&name, TestGuest::Halt, false);
    let (record, pid) = {
        let hv = QemuHypervisor::new(Env::config(env.dir.path()));
        let s = hv.start(&def, StartOptions::default()).await.unwrap();
        let record = s.guest.status_record();
        for k in ["pid", "qmp_socket", "log", "domain_dir", "started"] {
            assert!(record.get(k).is_some(), "record lacks {k}: {record}");
        }
        let pid = pid_of(&s);
        // The "daemon" goes away without destroying its guest.
        drop(s);
        drop(hv);
        (record, pid)
    };
    assert!(!pid_gone(pid), "QEMU must outlive the daemon");

    let hv = QemuHypervisor::new(Env::config(env.dir.path()));
    let mut s = hv
        .reattach(&record, &def)
        .await
        .unwrap()
        .expect("guest should be found");
    assert!(!s.paused);
    // The new connection works: pausing reports STOP.
    s.guest.pause().await.unwrap();
    assert_eq!(next_event(&mut s.events).await, GuestEvent::Stopped);
    drop(s);

    // Reattached paused this time.
    let mut s = hv.reattach(&record, &def).await.unwrap().unwrap();
    assert!(s.paused);
    s.guest.destroy(false).await.unwrap();
    assert!(pid_gone(pid));
    assert!(!hv.domain_dir(&name).exists());
}

#[tokio::test]
async fn reattach_to_a_dead_or_foreign_pid_is_none() {
    let env = Env::new();
    let name = unique("ghost");
    let def = DomainDef::parse(&format!(
        "<domain type='qemu'><name>{name}</name><memory>65536</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='q35'>hvm</type></os></domain>"
    ))
    .unwrap();
    let dir = env.hv.domain_dir(&name);
    let qmp_socket = dir.join("qmp.sock");

    // A pid that has exited.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    let record =
        json!({"pid": dead, "qmp_socket": qmp_socket, "domain_dir": dir, "log": "/dev/null"});
    assert!(env.hv.reattach(&record, &def).await.unwrap().is_none());
    assert!(!dir.exists(), "runtime dir not cleaned");

    // A live pid that is not our QEMU (pid reuse): not adopted, not signalled.
    std::fs::create_dir_all(&dir).unwrap();
    let me = std::process::id();
    let record =
        json!({"pid": me, "qmp_socket": qmp_socket, "domain_dir": dir, "log": "/dev/null"});
    assert!(env.hv.reattach(&record, &def).await.unwrap().is_none());
    assert!(!dir.exists());
}

#[tokio::test]
async fn failed_start_leaves_nothing_and_quotes_qemu() {
    if !available() {
        return;
    }
    let env = Env::new();

    // QEMU itself fails: its serial file cannot be created.
    let name = unique("badserial");
    let mut def = env.def(&name, TestGuest::Halt, false);
    let xml = def.to_xml().replace(
        &env.serial(&name).display().to_string(),
        "/nonexistent-dir/x.log",
    );
    def = DomainDef::parse(&xml).unwrap();
    let err = env
        .hv
        .start(&def, StartOptions::default())
        .await
        .err()
        .unwrap();
    println!("QEMU start error: {err}");
    assert!(
        err.message.contains("/nonexistent-dir/x.log"),
        "{}",
        err.message
    );
    assert!(err.message.contains("exit status 1"), "{}", err.message);
    assert!(no_process_named(&name));
    assert!(!env.hv.domain_dir(&name).exists());

    // A missing disk is caught before QEMU runs.
    let name = unique("nodisk");
    let def = env.def(&name, TestGuest::Halt, false);
    std::fs::remove_file(env.dir.path().join(format!("{name}.img"))).unwrap();
    let err = env
        .hv
        .start(&def, StartOptions::default())
        .await
        .err()
        .unwrap();
    assert!(
        err.message.contains(&format!("{name}.img")),
        "{}",
        err.message
    );
    assert!(no_process_named(&name));
    assert!(!env.hv.domain_dir(&name).exists());
}

#[tokio::test]
async fn getfd_passes_a_pipe_to_qemu() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("qmp.sock");
    let args: Vec<String> = [
        "-machine",
        "none",
        "-nodefaults",
        "-display",
        "none",
        "-S",
        "-chardev",
        &format!("socket,id=mon,path={},server=on,wait=off", sock.display()),
        "-mon",
        "chardev=mon,mode=control",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut p =
        QemuProcess::spawn(&default_emulator(), &args, &sock, &dir.path().join("log")).unwrap();
    let stream = p.connect_monitor(Duration::from_secs(5)).await.unwrap();
    let (qmp, _ev) = Qmp::handshake(stream).await.unwrap();
    let (rd, _wr) = std::io::pipe().unwrap();
    use std::os::fd::AsFd;
    qmp.execute_with_fd("getfd", Some(json!({"fdname": "pipe0"})), rd.as_fd())
        .await
        .unwrap();
    // QEMU knows the name now: closing it works once, then it is unknown.
    qmp.execute("closefd", Some(json!({"fdname": "pipe0"})))
        .await
        .unwrap();
    match qmp
        .execute("closefd", Some(json!({"fdname": "pipe0"})))
        .await
    {
        Err(QmpError::Command { class, .. }) => assert_eq!(class, "GenericError"),
        other => panic!("expected an error, got {other:?}"),
    }
    // getfd without an fd is refused.
    assert!(matches!(
        qmp.execute("getfd", Some(json!({"fdname": "none"}))).await,
        Err(QmpError::Command { .. })
    ));
    let _ = qmp.execute("quit", None).await;
    qmp.closed().await;
    let st = p.wait().await.unwrap().unwrap();
    assert!(st.success(), "{st:?}");
}

#[tokio::test]
async fn reattach_reports_what_happened_while_detached() {
    if !available() {
        return;
    }
    let env = Env::new();
    for (label, kind, panic, expected) in [
        (
            "off",
            TestGuest::Shutdown,
            false,
            GuestEvent::Shutdown { by_guest: true },
        ),
        ("panicked", TestGuest::Panic, true, GuestEvent::Panicked),
    ] {
        let name = unique(&format!("detached-{label}"));
        let def = env.def(&name, kind, panic);
        let record = {
            let hv = QemuHypervisor::new(Env::config(env.dir.path()));
            let mut s = hv.start(&def, StartOptions::default()).await.unwrap();
            let record = s.guest.status_record();
            // Let it happen while the "daemon" still watches, then go away.
            assert_eq!(next_event(&mut s.events).await, expected);
            record
        };
        let hv = QemuHypervisor::new(Env::config(env.dir.path()));
        let mut s = hv.reattach(&record, &def).await.unwrap().unwrap();
        assert!(s.paused, "QEMU waits paused after {expected:?}");
        assert_eq!(next_event(&mut s.events).await, expected);
        s.guest.destroy(false).await.unwrap();
    }
}
