//! Save and restore through real QEMU (TCG) with the memory-filling boot-sector guest.
//!
//! Each save runs the two halves a domain actor runs side by side: the guest streams its
//! state into a pipe ([`Guest::save_to_fd`]) while the I/O helper
//! ([`iohelper::save_to_image`]) writes the image and syncs it. The helper learns the
//! guest's verdict through its `source_done` future, fed from `save_to_fd`'s result,
//! so a failed or interrupted stream (QEMU killed, cancelled) never becomes a finalized
//! image. The save succeeds only when both halves do ([`combined`]).
//!
//! Without QEMU or binutils the tests skip with a printed reason, except under
//! `CI=true`, where that is a failure; the thin-storage case needs root and loop devices
//! likewise.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use vireo_drivers::hypervisor::{
    Guest, GuestEvent, Hypervisor, SaveControl, StartOptions, Started,
};
use vireo_drivers::iohelper::{
    self, CopyOptions, IoHelperError, IoOp, PIPE_CAPACITY, pipe_with_capacity,
};
use vireo_drivers::qemu::process::pid_gone;
use vireo_drivers::qemu::testguest::TestGuest;
use vireo_drivers::saveimage::{self, QEMU_SAVE_MAGIC, SaveHeader};
use vireo_messages::{ErrorCode, VirError, VirResult};
use vireo_xml::DomainDef;

mod support;

use support::{Env, TempMounts, available};
use vireo_drivers::testfs::can_mount;

const MIB: u32 = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(10);

/// The memory-filling guests of these tests.
impl Env {
    /// A `ram_mib` guest that fills `fill_mib` MiB (from 1 MiB up), then counts.
    fn def(&self, name: &str, ram_mib: u32, fill_mib: u32) -> DomainDef {
        let kind = TestGuest::Fill {
            fill_end: (fill_mib + 1) * MIB,
        };
        self.guest_def(name, kind, ram_mib, "", "")
    }

    /// Starts the guest and waits until it has filled its memory and counts.
    async fn start_filled(&self, def: &DomainDef) -> Started {
        let s = self
            .hv
            .start(
                def,
                StartOptions {
                    paused: false,
                    id: 1,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("start: {e}"));
        let name = def.name();
        self.wait_serial(&name, |t| {
            t.split_once("filled\r\n")
                .is_some_and(|(_, after)| after.chars().any(|c| c.is_ascii_digit()))
        })
        .await;
        s
    }

    /// [`Env::start_filled`], then pauses the guest and sees its `Stopped` event.
    async fn start_filled_paused(&self, def: &DomainDef) -> Started {
        let mut s = self.start_filled(def).await;
        s.guest.pause().await.unwrap();
        assert_eq!(next_event(&mut s.events).await, GuestEvent::Stopped);
        s
    }

    async fn wait_serial(&self, name: &str, done: impl Fn(&str) -> bool) {
        self.wait_serial_until(name, "what was awaited", TIMEOUT, done)
            .await;
    }

    /// Proves the guest's vCPUs are stopped (its counter does not move for a while),
    /// then resumes it and proves they run (new digits appear).
    async fn assert_paused_then_resumes(&self, name: &str, s: &mut Started) {
        let before = self.serial_text(name);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(self.serial_text(name), before, "the guest ran while paused");
        s.guest.resume().await.unwrap();
        self.wait_serial(name, |t| t.len() > before.len()).await;
        assert_eq!(next_event(&mut s.events).await, GuestEvent::Resumed);
    }
}

fn unique(name: &str) -> String {
    format!("vs-{}-{name}", std::process::id())
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<GuestEvent>) -> GuestEvent {
    tokio::time::timeout(TIMEOUT, rx.recv())
        .await
        .expect("no guest event in time")
        .expect("event channel closed")
}

fn pid_of(s: &Started) -> u32 {
    s.guest.status_record()["pid"].as_u64().unwrap() as u32
}

/// What one save produced: the guest's half and the I/O helper's half.
struct SaveOutcome {
    qemu: VirResult<()>,
    helper: Result<u64, IoHelperError>,
    /// Bytes the helper wrote.
    written: Arc<AtomicU64>,
    /// When QEMU's half ended.
    qemu_done: Instant,
}

/// The save's result as the domain actor computes it: success only when QEMU's
/// migration completed and the helper wrote and synced everything.
fn combined(o: &SaveOutcome) -> Result<(), String> {
    match (&o.qemu, &o.helper) {
        (Ok(()), Ok(_)) => Ok(()),
        (Err(e), _) => Err(e.message.clone()),
        (Ok(()), Err(e)) => Err(e.to_string()),
    }
}

/// Runs a save of `guest` into `path`: `save_to_fd` and the I/O helper concurrently,
/// the helper's `source_done` fed by `save_to_fd`'s result.
async fn save(
    guest: &mut dyn Guest,
    path: &Path,
    header: &SaveHeader,
    ctl: SaveControl,
    written: Arc<AtomicU64>,
) -> SaveOutcome {
    let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
    let (tx, rx) = oneshot::channel::<Result<(), String>>();
    let qemu_half = async {
        let r = guest.save_to_fd(w, ctl).await;
        let _ = tx.send(r.as_ref().map(|_| ()).map_err(|e| e.message.clone()));
        (r, Instant::now())
    };
    let done = async {
        rx.await
            .unwrap_or_else(|_| Err("the save job ended without a verdict".into()))
    };
    let helper_half = iohelper::save_to_image(
        r,
        path,
        header,
        CopyOptions::default(),
        written.clone(),
        done,
    );
    let ((qemu, qemu_done), helper) = tokio::join!(qemu_half, helper_half);
    SaveOutcome {
        qemu,
        helper,
        written,
        qemu_done,
    }
}

/// Saves a running `def` guest into `path` (asserting success) and destroys it.
async fn save_and_destroy(env: &Env, def: &DomainDef, path: &Path) -> String {
    let name = def.name();
    let mut s = env.start_filled(def).await;
    let header = SaveHeader::new(def.to_xml(), true);
    let o = save(
        s.guest.as_mut(),
        path,
        &header,
        SaveControl::default(),
        Arc::new(AtomicU64::new(0)),
    )
    .await;
    combined(&o).unwrap();
    let at_save = env.serial_text(&name);
    s.guest.destroy(false).await.unwrap();
    at_save
}

/// The bytes of the image are laid out as libvirt's qemu driver writes them
/// (`virQEMUSaveHeader`: 16-byte magic, then native-endian u32 version, data_len,
/// was_running, format, cookieOffset, 14 unused; the XML and its NUL; zero padding of
/// at least 64 KiB; QEMU's stream), as read by libvirt's restore.
fn assert_libvirt_layout(path: &Path, xml: &str) {
    let bytes = std::fs::read(path).unwrap();
    let u32_at = |o: usize| u32::from_ne_bytes(bytes[o..o + 4].try_into().unwrap());
    assert_eq!(&bytes[..16], b"LibvirtQemudSave");
    assert_eq!(u32_at(16), 2, "version");
    let data_len = u32_at(20) as usize;
    assert_eq!(u32_at(24), 1, "was_running");
    assert_eq!(u32_at(28), 0, "format raw");
    assert_eq!(u32_at(32), 0, "no cookie");
    assert!(
        bytes[36..92].iter().all(|b| *b == 0),
        "unused words are zero"
    );
    assert_eq!(&bytes[92..92 + xml.len()], xml.as_bytes());
    let region = &bytes[92..92 + data_len];
    assert!(
        region[xml.len()..].iter().all(|b| *b == 0),
        "NUL and padding"
    );
    assert!(data_len >= xml.len() + 1 + 64 * 1024, "64 KiB reserve");
    let stream = 92 + data_len;
    assert_eq!(stream % 4096, 0, "stream aligned for O_DIRECT");
    assert_eq!(&bytes[stream..stream + 4], b"QEVM", "QEMU's stream follows");
}

fn assert_no_qemu(env: &Env, name: &str) {
    let out = Command::new("pgrep")
        .args(["-f", &format!("guest={name}")])
        .output()
        .unwrap();
    let pgrep_dir = Command::new("pgrep")
        .arg("-f")
        .arg(env.dir.path())
        .output()
        .unwrap();
    assert!(
        out.stdout.is_empty() && pgrep_dir.stdout.is_empty(),
        "a QEMU of {name} is still running"
    );
    assert!(
        !env.hv.domain_dir(name).exists(),
        "the runtime directory is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_running_guest_then_restore_continues() {
    if !available() {
        return;
    }
    let env = Env::new();
    let name = unique("roundtrip");
    let def = env.def(&name, 64, 8);
    let path = env.dir.path().join("g.save");
    let mut s = env.start_filled(&def).await;
    let pid = pid_of(&s);
    let header = SaveHeader::new(def.to_xml(), true);
    let ctl = SaveControl::default();
    // The guest runs: save_to_fd stops it itself, and says nothing about it.
    let o = save(
        s.guest.as_mut(),
        &path,
        &header,
        ctl.clone(),
        Arc::new(AtomicU64::new(0)),
    )
    .await;
    combined(&o).unwrap();
    let written = o.helper.unwrap();
    assert_eq!(written, o.written.load(Ordering::Relaxed));
    assert!(written > 8 * u64::from(MIB), "stream of {written} bytes");
    // QEMU counts the guest's RAM plus its ROMs and device memory.
    let total = ctl.total.load(Ordering::Relaxed);
    assert!(
        (64..80).contains(&(total >> 20)),
        "RAM total from query-migrate: {total}"
    );
    assert!(ctl.processed.load(Ordering::Relaxed) > 8 * u64::from(MIB));
    assert!(
        s.events.try_recv().is_err(),
        "a save must not report Stopped/Resumed"
    );

    // The image: final magic, our XML, was_running, and QEMU's stream after the header.
    let mut magic = [0u8; 16];
    std::os::unix::fs::FileExt::read_exact_at(&File::open(&path).unwrap(), &mut magic, 0).unwrap();
    assert_eq!(&magic, QEMU_SAVE_MAGIC);
    let (h, offset) = saveimage::read_header(&File::open(&path).unwrap()).unwrap();
    assert_eq!(h.xml, def.to_xml());
    assert!(h.was_running);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        offset + written,
        "header + stream"
    );
    assert_libvirt_layout(&path, &def.to_xml());

    let at_save = env.serial_text(&name);
    s.guest.destroy(false).await.unwrap();
    assert!(pid_gone(pid));

    let (file, header) = iohelper::restore_source(&path).unwrap();
    assert!(header.was_running);
    let restored_def = DomainDef::parse(&header.xml).unwrap();
    let t = Instant::now();
    let mut r = env
        .hv
        .restore(
            &restored_def,
            file.into(),
            StartOptions {
                paused: false,
                id: 2,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("restore: {e}"));
    eprintln!("restore of the 64 MiB guest took {:?}", t.elapsed());
    assert!(r.paused, "a restored guest starts paused");
    // QEMU truncated the serial file on start: everything in it is new output.
    assert!(at_save.contains("filled"));
    r.guest.resume().await.unwrap();
    assert_eq!(next_event(&mut r.events).await, GuestEvent::Resumed);
    env.wait_serial(&name, |t| {
        t.chars().filter(char::is_ascii_digit).count() >= 2
    })
    .await;
    let after = env.serial_text(&name);
    assert!(
        !after.contains("filled"),
        "the restored guest booted again instead of continuing: {after:?}"
    );
    r.guest.destroy(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_cache_restore_through_a_pipe_continues() {
    if !available() {
        return;
    }
    let env = Env::new();
    let name = unique("piped");
    let def = env.def(&name, 64, 8);
    let path = env.dir.path().join("g.save");
    save_and_destroy(&env, &def, &path).await;
    let (file, header) = iohelper::restore_source(&path).unwrap();
    let (_, offset) = saveimage::read_header(&file).unwrap();
    let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
    let fed = Arc::new(AtomicU64::new(0));
    let opts = CopyOptions {
        direct: true,
        ..CopyOptions::default()
    };
    let (restored, feed) = tokio::join!(
        env.hv.restore(
            &def,
            r,
            StartOptions {
                paused: false,
                id: 2
            }
        ),
        iohelper::feed_stream(file, offset, w, opts, fed.clone())
    );
    let mut s = restored.unwrap_or_else(|e| panic!("restore: {e}"));
    let n = feed.unwrap();
    assert_eq!(n, std::fs::metadata(&path).unwrap().len() - offset);
    assert!(s.paused && header.was_running);
    s.guest.resume().await.unwrap();
    assert_eq!(next_event(&mut s.events).await, GuestEvent::Resumed);
    env.wait_serial(&name, |t| {
        t.chars().filter(char::is_ascii_digit).count() >= 2
    })
    .await;
    assert!(!env.serial_text(&name).contains("filled"), "booted again");
    s.guest.destroy(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_counters_move_during_a_save() {
    if !available() {
        return;
    }
    let env = Env::new();
    let name = unique("progress");
    let def = env.def(&name, 288, 256);
    let path = env.dir.path().join("g.save");
    let mut s = env.start_filled_paused(&def).await;
    let ctl = SaveControl::default();
    let header = SaveHeader::new(def.to_xml(), false);
    let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let sampler = {
        let (ctl, samples, stop) = (ctl.clone(), samples.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                samples.lock().unwrap().push((
                    ctl.processed.load(Ordering::Relaxed),
                    ctl.total.load(Ordering::Relaxed),
                ));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let o = save(
        s.guest.as_mut(),
        &path,
        &header,
        ctl.clone(),
        Arc::new(AtomicU64::new(0)),
    )
    .await;
    stop.cancel();
    sampler.await.unwrap();
    combined(&o).unwrap();
    let total = ctl.total.load(Ordering::Relaxed);
    assert!((288..304).contains(&(total >> 20)), "RAM total {total}");
    let done = ctl.processed.load(Ordering::Relaxed);
    assert!(done >= 256 * u64::from(MIB), "processed {done}");
    let samples = samples.lock().unwrap().clone();
    let between: Vec<_> = samples
        .iter()
        .filter(|(p, t)| *p > 0 && *p < done && *t == total)
        .collect();
    assert!(
        !between.is_empty(),
        "no intermediate progress seen in {} samples",
        samples.len()
    );
    assert!(
        samples.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress went back"
    );
    s.guest.destroy(false).await.unwrap();
}

/// Drains a pipe slowly (1 MiB every 10 ms) until end of file; returns the bytes read.
fn slow_drain(r: std::os::fd::OwnedFd) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        use std::io::Read;
        let mut f = File::from(r);
        let mut buf = vec![0u8; MIB as usize];
        let mut n = 0u64;
        loop {
            match f.read(&mut buf) {
                Ok(0) | Err(_) => return n,
                Ok(k) => n += k as u64,
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_save_leaves_the_guest_paused_and_resumable() {
    if !available() {
        return;
    }
    let env = Env::new();
    let name = unique("cancel");
    let def = env.def(&name, 64, 48);
    let mut s = env.start_filled_paused(&def).await;
    let ctl = SaveControl::default();
    let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
    let drain = slow_drain(r);
    let canceller = {
        let ctl = ctl.clone();
        tokio::spawn(async move {
            while ctl.processed.load(Ordering::Relaxed) < 4 * u64::from(MIB) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            ctl.cancel.cancel();
        })
    };
    let e = tokio::time::timeout(TIMEOUT, s.guest.save_to_fd(w, ctl.clone()))
        .await
        .expect("the cancelled save did not end")
        .unwrap_err();
    canceller.await.unwrap();
    assert_eq!(e.code, ErrorCode::OperationAborted, "{}", e.message);
    assert!(e.message.contains("canceled by client"), "{}", e.message);
    // QEMU closed its end: the reader sees end of file, short of the whole stream.
    let read = drain.join().unwrap();
    assert!(read < 48 * u64::from(MIB), "read {read}");
    assert!(!pid_gone(pid_of(&s)));
    assert!(s.events.try_recv().is_err(), "no events for the save");
    env.assert_paused_then_resumes(&name, &mut s).await;
    s.guest.destroy(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_save_future_cancels_the_migration() {
    if !available() {
        return;
    }
    let env = Env::new();
    let name = unique("dropped");
    let def = env.def(&name, 64, 48);
    let mut s = env.start_filled_paused(&def).await;
    let ctl = SaveControl::default();
    let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
    let drain = slow_drain(r);
    {
        let fut = s.guest.save_to_fd(w, ctl.clone());
        tokio::pin!(fut);
        let deadline = Instant::now() + TIMEOUT;
        while ctl.processed.load(Ordering::Relaxed) < 4 * u64::from(MIB) {
            assert!(Instant::now() < deadline, "the save did not progress");
            tokio::select! {
                r = &mut fut => panic!("the save ended early: {r:?}"),
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
    } // dropped mid-stream
    // QEMU stops the migration and closes its end: the reader sees end of file early.
    let read = tokio::task::spawn_blocking(move || drain.join().unwrap())
        .await
        .unwrap();
    assert!(read < 48 * u64::from(MIB), "read {read}");
    assert!(s.events.try_recv().is_err(), "no events for the save");
    env.assert_paused_then_resumes(&name, &mut s).await;
    s.guest.destroy(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_killed_mid_save_leaves_no_image_and_reports_a_crash() {
    if !available() {
        return;
    }
    let env = Env::new();
    let name = unique("killed");
    let def = env.def(&name, 288, 256);
    let path = env.dir.path().join("g.save");
    let mut s = env.start_filled(&def).await;
    let pid = pid_of(&s);
    let written = Arc::new(AtomicU64::new(0));
    let killer = {
        let written = written.clone();
        tokio::spawn(async move {
            while written.load(Ordering::Relaxed) < u64::from(MIB) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
        })
    };
    let header = SaveHeader::new(def.to_xml(), true);
    let o = tokio::time::timeout(
        TIMEOUT,
        save(
            s.guest.as_mut(),
            &path,
            &header,
            SaveControl::default(),
            written,
        ),
    )
    .await
    .expect("the save did not end after QEMU died");
    killer.await.unwrap();
    let e = o.qemu.as_ref().unwrap_err();
    assert_eq!(e.code, ErrorCode::OperationFailed, "{}", e.message);
    assert!(e.message.contains("domain is not running"), "{}", e.message);
    // The helper read to end of file and synced, but the verdict failed it.
    let he = o.helper.as_ref().unwrap_err();
    assert!(matches!(he, IoHelperError::SourceFailed(_)), "{he}");
    assert!(combined(&o).is_err());
    assert!(
        o.written.load(Ordering::Relaxed) < 256 * u64::from(MIB),
        "the stream was short"
    );
    assert!(!path.exists(), "no image may be left");
    assert_eq!(
        next_event(&mut s.events).await,
        GuestEvent::Exited { crashed: true }
    );
    assert_no_qemu(&env, &name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_of_a_truncated_image_fails_and_leaves_nothing_running() {
    if !available() {
        return;
    }
    let env = Env::new();
    let name = unique("truncated");
    let def = env.def(&name, 64, 8);
    let path = env.dir.path().join("g.save");
    save_and_destroy(&env, &def, &path).await;
    let (_, offset) = saveimage::read_header(&File::open(&path).unwrap()).unwrap();
    let f = File::options().write(true).open(&path).unwrap();
    f.set_len(offset + u64::from(MIB)).unwrap();
    drop(f);
    let (file, _) = iohelper::restore_source(&path).unwrap();
    let e: VirError = match env
        .hv
        .restore(
            &def,
            file.into(),
            StartOptions {
                paused: false,
                id: 3,
            },
        )
        .await
    {
        Ok(_) => panic!("a truncated image was restored"),
        Err(e) => e,
    };
    assert_eq!(e.code, ErrorCode::OperationFailed, "{}", e.message);
    assert!(e.message.contains("job 'start' failed"), "{}", e.message);
    eprintln!("truncated image: {}", e.message);
    assert_no_qemu(&env, &name);
}

// ---------------------------------------------------------------------------------------
// Thin (overcommitted) storage: QEMU's migration completes, the helper's fdatasync fails.

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_to_thin_storage_fails_at_fdatasync_and_the_guest_resumes() {
    if !available() || !can_mount("save_to_thin_storage_fails_at_fdatasync_and_the_guest_resumes") {
        return;
    }
    let env = Env::new();
    let (_thin, thin) = TempMounts::thin();
    let name = unique("thin");
    let def = env.def(&name, 64, 48);
    let path = thin.join("g.save");
    let mut s = env.start_filled_paused(&def).await;
    let header = SaveHeader::new(def.to_xml(), true);
    let o = save(
        s.guest.as_mut(),
        &path,
        &header,
        SaveControl::default(),
        Arc::new(AtomicU64::new(0)),
    )
    .await;
    // QEMU is satisfied: every byte went into the pipe and the helper took it.
    o.qemu.as_ref().unwrap();
    let e = o.helper.as_ref().unwrap_err();
    assert_eq!(e.op(), Some(IoOp::Sync), "{e}");
    assert_eq!(e.errno(), Some(libc::ENOSPC), "{e}");
    let msg = combined(&o).unwrap_err();
    assert!(msg.contains("No space left on device"), "{msg}");
    assert!(o.written.load(Ordering::Relaxed) > 40 * u64::from(MIB));
    assert!(!path.exists(), "a failed save must not leave an image");
    assert!(s.events.try_recv().is_err(), "no events for the save");
    // What the actor does next: the guest was running, so it resumes it
    // (from QEMU's postmigrate state).
    env.assert_paused_then_resumes(&name, &mut s).await;
    s.guest.destroy(false).await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Timings (run by hand: `cargo test -p vireo-drivers --test qemu_save -- --ignored
// --nocapture timings`).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark, run by hand"]
async fn timings() {
    if !available() {
        return;
    }
    let runs: usize = std::env::var("VIREO_SAVE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let env = Env::new();
    let dir = env.dir.path().join("images");
    std::fs::create_dir(&dir).unwrap();
    let dd = |count: u32| {
        let target = dir.join("dd.out");
        let t = Instant::now();
        run(Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", target.display()))
            .args([
                "bs=1M",
                &format!("count={count}"),
                "conv=fdatasync",
                "status=none",
            ]));
        let took = t.elapsed();
        std::fs::remove_file(&target).unwrap();
        took
    };
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    for ram in [64u32, 512] {
        let name = unique(&format!("t{ram}"));
        let def = env.def(&name, ram, ram - 2);
        let path = dir.join(format!("{name}.save"));
        let (mut saves, mut streams, mut restores, mut dds) = (vec![], vec![], vec![], vec![]);
        let mut mib = 0.0;
        for _ in 0..runs {
            let mut s = env.start_filled(&def).await;
            s.guest.pause().await.unwrap();
            let header = SaveHeader::new(def.to_xml(), true);
            let t = Instant::now();
            let o = save(
                s.guest.as_mut(),
                &path,
                &header,
                SaveControl::default(),
                Arc::new(AtomicU64::new(0)),
            )
            .await;
            saves.push(t.elapsed());
            streams.push(o.qemu_done - t);
            combined(&o).unwrap();
            mib = o.written.load(Ordering::Relaxed) as f64 / f64::from(MIB);
            s.guest.destroy(false).await.unwrap();
            let (file, _) = iohelper::restore_source(&path).unwrap();
            let t = Instant::now();
            let mut r = env
                .hv
                .restore(
                    &def,
                    file.into(),
                    StartOptions {
                        paused: false,
                        id: 2,
                    },
                )
                .await
                .unwrap();
            restores.push(t.elapsed());
            r.guest.destroy(false).await.unwrap();
            std::fs::remove_file(&path).unwrap();
            dds.push(dd(mib.ceil() as u32));
        }
        let (save, stream, restore, dd) = (
            median(saves),
            median(streams),
            median(restores),
            median(dds),
        );
        eprintln!(
            "{ram} MiB guest ({mib:.1} MiB stream), medians of {runs}: save {save:?} \
             ({:.0} MiB/s; QEMU's stream done after {stream:?}), restore {restore:?}; \
             dd of the same size with conv=fdatasync {dd:?}; save takes {:.2}x dd's time \
             ({:.0} % of the synced write bandwidth)",
            mib / save.as_secs_f64(),
            save.as_secs_f64() / dd.as_secs_f64(),
            100.0 * dd.as_secs_f64() / save.as_secs_f64(),
        );
    }
}
