//! The I/O helper against real pipes, files, processes and filesystems.
//!
//! The tests that prove the point of the helper — a deferred write-back error is reported,
//! never swallowed — build the overcommitted filesystem from host-facts §2: an ext4 image
//! in a sparse 128 MiB file on a 16 MiB tmpfs, loop-mounted with `discard`. Writes into it
//! succeed; the page cache write-back fails with ENOSPC, which only `fdatasync()` (or an
//! `O_DIRECT` write) reports. These tests need root, `losetup`, `mkfs.ext4` and `mount`:
//! with `CI=true` a missing tool or a non-root user fails the test; otherwise they are
//! skipped with a printed reason.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use vireo_drivers::iohelper::{
    CopyOptions, IoHelperError, IoOp, PIPE_CAPACITY, copy_stream, feed_stream, pipe_with_capacity,
    remove_if_partial, restore_source, save_to_image,
};
use vireo_drivers::saveimage::{self, SaveHeader, SaveImageError};

mod support;

use support::TempMounts as Mounts;
use vireo_drivers::testfs::{can_mount, tool_exists};

const MIB: usize = 1 << 20;
const XML: &str = "<domain type='kvm'><name>g</name><memory unit='KiB'>65536</memory></domain>";

/// Deterministic data that differs in every 4 KiB block.
fn pattern(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left((i / 4096) as u32 % 32) as u8
        })
        .collect()
}

/// A migration-stream-like payload: QEMU's magic then `n - 8` bytes of pattern.
fn stream(n: usize) -> Vec<u8> {
    let mut v = b"QEVM\0\0\0\x03".to_vec();
    v.extend_from_slice(&pattern(n - 8));
    v
}

/// Writes `data` into the pipe's write end from a thread, then closes it.
fn feed(w: OwnedFd, data: Vec<u8>) -> std::thread::JoinHandle<std::io::Result<()>> {
    std::thread::spawn(move || File::from(w).write_all(&data))
}

fn progress() -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(0))
}

fn has_direct(f: &File) -> bool {
    OFlag::from_bits_retain(fcntl(f, FcntlArg::F_GETFL).unwrap()).contains(OFlag::O_DIRECT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_n_mib_through_a_pipe() {
    let n = 24 * MIB + 123;
    let data = pattern(n);
    let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
    let writer = feed(w, data.clone());
    let f = tempfile::tempfile().unwrap();
    let p = progress();
    let copied = copy_stream(r, &f, 0, CopyOptions::default(), p.clone())
        .await
        .unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(copied, n as u64);
    assert_eq!(p.load(Ordering::Relaxed), n as u64);
    let mut back = Vec::new();
    (&f).read_to_end(&mut back).unwrap();
    assert!(back == data, "file differs from the input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_copy_handles_an_unaligned_tail() {
    // Offset aligned, length not: whole buffers with O_DIRECT, the tail without.
    let n = 3 * MIB + 1234;
    let data = pattern(n);
    let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
    let writer = feed(w, data.clone());
    let dir = tempfile::tempdir().unwrap();
    let f = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dir.path().join("d"))
        .unwrap();
    let opts = CopyOptions {
        direct: true,
        buffer: 256 * 1024,
    };
    let p = progress();
    let copied = copy_stream(r, &f, 8192, opts, p.clone()).await.unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(copied, n as u64);
    assert_eq!(p.load(Ordering::Relaxed), n as u64);
    assert_eq!(f.metadata().unwrap().len(), 8192 + n as u64);
    let mut back = vec![0u8; n];
    f.read_exact_at(&mut back, 8192).unwrap();
    assert!(back == data, "file differs from the input");
    assert!(!has_direct(&f), "O_DIRECT must be cleared after the copy");

    // An exactly aligned length never needs to drop O_DIRECT mid-stream.
    let data = pattern(2 * MIB);
    let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
    let writer = feed(w, data.clone());
    let f2 = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dir.path().join("e"))
        .unwrap();
    let copied = copy_stream(r, &f2, 0, opts, progress()).await.unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(copied, 2 * MIB as u64);
    assert!(std::fs::read(dir.path().join("e")).unwrap() == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_closing_early_is_a_clean_end() {
    for n in [0usize, 1, 100, 4096, 70_000] {
        let data = pattern(n);
        let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
        let writer = feed(w, data.clone());
        let f = tempfile::tempfile().unwrap();
        let copied = copy_stream(r, &f, 0, CopyOptions::default(), progress())
            .await
            .unwrap();
        writer.join().unwrap().unwrap();
        assert_eq!(copied, n as u64);
        let mut back = Vec::new();
        (&f).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }
}

/// Starts `sh` writing `bytes` zero bytes into a new pipe and then sleeping; returns the
/// child and the pipe's read end once all bytes are in the pipe or consumed (the child
/// says so on stderr).
fn slow_writer(bytes: usize) -> (std::process::Child, OwnedFd) {
    let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c {bytes} /dev/zero; echo written >&2; exec sleep 30"
        ))
        .stdout(Stdio::from(w))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, r)
}

/// Waits (off the runtime's threads) until the writer reports it wrote everything.
async fn written(child: &mut std::process::Child) {
    let mut err = child.stderr.take().unwrap();
    tokio::task::spawn_blocking(move || {
        let mut line = [0u8; 8];
        err.read_exact(&mut line).unwrap();
        assert_eq!(&line, b"written\n");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_killed_mid_stream() {
    // The copy itself ends cleanly with what arrived (end of file is all it can see) ...
    let (mut child, r) = slow_writer(3_000_000);
    let f = tempfile::tempfile().unwrap();
    let p = progress();
    let copy = tokio::spawn({
        let p = p.clone();
        let f = f.try_clone().unwrap();
        async move { copy_stream(r, &f, 0, CopyOptions::default(), p).await }
    });
    written(&mut child).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let copied = tokio::time::timeout(Duration::from_secs(5), copy)
        .await
        .expect("the helper must end when the writer dies")
        .unwrap()
        .unwrap();
    assert_eq!(copied, 3_000_000);
    assert_eq!(f.metadata().unwrap().len(), 3_000_000);

    // ... so a save must also hear the producer's verdict: a failed producer leaves no file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.save");
    let (mut child, r) = slow_writer(2_000_000);
    let p = progress();
    let (tx, rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    let save = tokio::spawn({
        let path = path.clone();
        let p = p.clone();
        async move {
            let verdict = async { rx.await.unwrap_or(Err("producer vanished".into())) };
            save_to_image(
                r,
                &path,
                &SaveHeader::new(XML, true),
                CopyOptions::default(),
                p,
                verdict,
            )
            .await
        }
    });
    written(&mut child).await;
    assert!(saveimage::is_partial(&File::open(&path).unwrap()).unwrap());
    child.kill().unwrap();
    child.wait().unwrap();
    tx.send(Err("migration failed: QEMU died".into())).unwrap();
    let e = save.await.unwrap().unwrap_err();
    assert!(
        matches!(e, IoHelperError::SourceFailed(ref m) if m.contains("QEMU died")),
        "{e}"
    );
    assert!(!path.exists(), "a failed save must not leave an image");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_future_stops_the_helper_thread() {
    let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
    let mut w = File::from(w);
    w.write_all(b"some bytes").unwrap();
    let f = tempfile::tempfile().unwrap();
    let p = progress();
    let r = tokio::time::timeout(
        Duration::from_millis(100),
        copy_stream(r, &f, 0, CopyOptions::default(), p.clone()),
    )
    .await;
    assert!(
        r.is_err(),
        "the copy cannot finish while the writer keeps the pipe open"
    );
    // The helper thread must close the read end: the writer then gets EPIPE.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match w.write(&[0u8; 4096]) {
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => break,
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "the helper thread is still reading"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_to_image_then_restore_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.save");
    let data = stream(5 * MIB + 77);
    for direct in [false, true] {
        let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
        let writer = feed(w, data.clone());
        let header = SaveHeader {
            cookie: Some("<cookie/>".into()),
            ..SaveHeader::new(XML, !direct)
        };
        let p = progress();
        let opts = CopyOptions {
            direct,
            ..CopyOptions::default()
        };
        let n = save_to_image(
            r,
            &path,
            &header,
            opts,
            p.clone(),
            std::future::ready(Ok(())),
        )
        .await
        .unwrap();
        writer.join().unwrap().unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(p.load(Ordering::Relaxed), n);

        let (mut f, got) = restore_source(&path).unwrap();
        assert_eq!(got, header);
        let mut rest = Vec::new();
        f.read_to_end(&mut rest).unwrap();
        assert!(
            rest == data,
            "stream after the header differs (direct={direct})"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_to_image_removes_the_file_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.save");
    let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
    File::from(w.try_clone().unwrap())
        .write_all(b"QEVM")
        .unwrap();
    let r = tokio::time::timeout(
        Duration::from_millis(100),
        save_to_image(
            r,
            &path,
            &SaveHeader::new(XML, true),
            CopyOptions::default(),
            progress(),
            std::future::pending(),
        ),
    )
    .await;
    assert!(r.is_err());
    assert!(!path.exists(), "an abandoned save must not leave an image");
    drop(w);
}

/// Reads the pipe's read end to its end in a thread.
fn drain(r: OwnedFd) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        File::from(r).read_to_end(&mut v).unwrap();
        v
    })
}

/// An image laid out as libvirt writes it: no alignment of the stream start.
fn libvirt_image(path: &Path, data: &[u8]) -> u64 {
    let mut region = XML.as_bytes().to_vec();
    region.resize(XML.len() + 1 + 65536, 0);
    let mut v = saveimage::QEMU_SAVE_MAGIC.to_vec();
    for f in [2u32, region.len() as u32, 1, 0, 0] {
        v.extend_from_slice(&f.to_ne_bytes());
    }
    v.extend_from_slice(&[0u8; 56]);
    v.extend_from_slice(&region);
    let off = v.len() as u64;
    assert_ne!(off % 4096, 0);
    v.extend_from_slice(data);
    std::fs::write(path, v).unwrap();
    off
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_through_a_pipe_with_and_without_o_direct() {
    let dir = tempfile::tempdir().unwrap();
    let data = stream(3 * MIB + 999);
    // A Vireo image (aligned stream) and a libvirt one (unaligned stream).
    let ours = dir.path().join("ours.save");
    let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
    let writer = feed(w, data.clone());
    save_to_image(
        r,
        &ours,
        &SaveHeader::new(XML, true),
        CopyOptions::default(),
        progress(),
        std::future::ready(Ok(())),
    )
    .await
    .unwrap();
    writer.join().unwrap().unwrap();
    let theirs = dir.path().join("theirs.save");
    let their_off = libvirt_image(&theirs, &data);

    for path in [&ours, &theirs] {
        for direct in [false, true] {
            let (mut f, h) = restore_source(path).unwrap();
            assert_eq!(h.xml, XML);
            let off = f.stream_position().unwrap();
            if path == &theirs {
                assert_eq!(off, their_off);
            }
            let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
            let reader = drain(r);
            let p = progress();
            let opts = CopyOptions {
                direct,
                buffer: 256 * 1024,
            };
            let n = feed_stream(f, off, w, opts, p.clone()).await.unwrap();
            let got = reader.join().unwrap();
            assert_eq!(n, data.len() as u64);
            assert_eq!(p.load(Ordering::Relaxed), n);
            assert!(
                got == data,
                "{} direct={direct}: stream differs",
                path.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_feed_fails_with_epipe_when_the_reader_dies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("theirs.save");
    let off = libvirt_image(&path, &stream(4 * MIB));
    let (f, _) = restore_source(&path).unwrap();
    let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
    let reader = std::thread::spawn(move || {
        let mut r = File::from(r);
        let mut buf = vec![0u8; 100_000];
        r.read_exact(&mut buf).unwrap();
        // QEMU dies: the read end closes.
    });
    let e = tokio::time::timeout(
        Duration::from_secs(5),
        feed_stream(f, off, w, CopyOptions::default(), progress()),
    )
    .await
    .expect("the feed must end when the reader dies")
    .unwrap_err();
    reader.join().unwrap();
    assert_eq!(e.op(), Some(IoOp::WritePipe), "{e}");
    assert_eq!(e.errno(), Some(libc::EPIPE), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_feed_closes_the_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("theirs.save");
    let off = libvirt_image(&path, &stream(4 * MIB));
    let (f, _) = restore_source(&path).unwrap();
    let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
    // Nobody reads: the feed fills the pipe and waits.
    let r2 = tokio::time::timeout(
        Duration::from_millis(100),
        feed_stream(f, off, w, CopyOptions::default(), progress()),
    )
    .await;
    assert!(r2.is_err());
    // The helper thread must close its write end: the reader then reaches end of file.
    let reader = drain(r);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !reader.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the feed thread still holds the pipe"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let got = reader.join().unwrap();
    assert!(got.len() < 4 * MIB, "the feed stopped early");
}

#[test]
fn restore_source_refuses_partial_truncated_corrupt_and_foreign_images() {
    let dir = tempfile::tempdir().unwrap();
    // An image left behind by a crash mid-save: partial magic.
    let partial = dir.path().join("partial.save");
    let f = File::create(&partial).unwrap();
    let off = saveimage::write_partial_header(&f, &SaveHeader::new(XML, true)).unwrap();
    f.write_all_at(&stream(10_000), off).unwrap();
    let e = restore_source(&partial).unwrap_err();
    assert!(
        matches!(
            e,
            IoHelperError::Image {
                source: SaveImageError::Partial,
                ..
            }
        ),
        "{e}"
    );
    assert!(saveimage::is_partial(&File::open(&partial).unwrap()).unwrap());

    // What a restarted daemon does with it; a complete image and a foreign file stay.
    let copy = dir.path().join("partial-copy.save");
    std::fs::copy(&partial, &copy).unwrap();
    assert!(remove_if_partial(&copy).unwrap());
    assert!(!copy.exists());
    assert!(
        !remove_if_partial(&copy).unwrap(),
        "a missing file is not an error"
    );
    std::fs::write(&copy, b"").unwrap();
    assert!(
        remove_if_partial(&copy).unwrap(),
        "an empty file is a save that died at once"
    );

    // Complete it, then damage copies of it in different ways.
    saveimage::finalize(&f).unwrap();
    assert!(!remove_if_partial(&partial).unwrap());
    assert!(partial.exists());
    let good = std::fs::read(&partial).unwrap();
    restore_source(&partial).unwrap();
    let write = |name: &str, bytes: &[u8]| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let truncated = write("trunc.save", &good[..off as usize]);
    let e = restore_source(&truncated).unwrap_err();
    assert!(
        matches!(
            e,
            IoHelperError::Image {
                source: SaveImageError::Truncated { .. },
                ..
            }
        ),
        "{e}"
    );
    let mut bad_stream = good.clone();
    bad_stream[off as usize] = b'X';
    let e = restore_source(&write("stream.save", &bad_stream)).unwrap_err();
    assert!(
        matches!(
            e,
            IoHelperError::Image {
                source: SaveImageError::Corrupted(_),
                ..
            }
        ),
        "{e}"
    );
    let e = restore_source(&write(
        "foreign.save",
        b"#!/bin/sh\necho this is a shell script, not a save image, padded to a header size......",
    ))
    .unwrap_err();
    assert!(
        matches!(
            e,
            IoHelperError::Image {
                source: SaveImageError::BadMagic,
                ..
            }
        ),
        "{e}"
    );
    let e = restore_source(&dir.path().join("missing.save")).unwrap_err();
    assert_eq!(e.op(), Some(IoOp::Open));
    assert_eq!(e.errno(), Some(libc::ENOENT));
}

// ---------------------------------------------------------------------------------------
// Real filesystems that run out of space (root only).

async fn copy_into(dir: &Path, n: usize, direct: bool) -> Result<u64, IoHelperError> {
    let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
    let writer = feed(w, pattern(n));
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("data"))
        .unwrap();
    let opts = CopyOptions {
        direct,
        ..CopyOptions::default()
    };
    let r = copy_stream(r, &f, 0, opts, progress()).await;
    // On error the helper closed the pipe: the writer sees EPIPE, which is fine.
    let _ = writer.join().unwrap();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_enospc_on_thin_storage_is_reported_by_fdatasync() {
    if !can_mount("deferred_enospc_on_thin_storage_is_reported_by_fdatasync") {
        return;
    }
    let (_m, thin) = Mounts::thin();
    let e = copy_into(&thin, 32 * MIB, false).await.unwrap_err();
    // Every write() succeeded: only the sync sees the lost data.
    assert_eq!(e.op(), Some(IoOp::Sync), "{e}");
    assert_eq!(e.errno(), Some(libc::ENOSPC), "{e}");
    assert!(e.to_string().contains("No space left on device"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_writes_on_thin_storage_fail_at_write() {
    if !can_mount("direct_writes_on_thin_storage_fail_at_write") {
        return;
    }
    let (_m, thin) = Mounts::thin();
    let e = copy_into(&thin, 32 * MIB, true).await.unwrap_err();
    assert_eq!(e.op(), Some(IoOp::Write), "{e}");
    assert_eq!(e.errno(), Some(libc::ENOSPC), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_to_thin_storage_fails_and_leaves_no_file() {
    if !can_mount("save_to_thin_storage_fails_and_leaves_no_file") {
        return;
    }
    let (_m, thin) = Mounts::thin();
    let path = thin.join("g.save");
    let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
    let writer = feed(w, stream(32 * MIB));
    let p = progress();
    let e = save_to_image(
        r,
        &path,
        &SaveHeader::new(XML, true),
        CopyOptions::default(),
        p.clone(),
        std::future::ready(Ok(())),
    )
    .await
    .unwrap_err();
    let _ = writer.join().unwrap();
    assert_eq!(e.errno(), Some(libc::ENOSPC), "{e}");
    assert_eq!(e.op(), Some(IoOp::Sync), "{e}");
    assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
    assert_eq!(
        p.load(Ordering::Relaxed),
        32 * MIB as u64,
        "all writes were accepted"
    );
    assert!(!path.exists(), "a failed save must not leave an image");
    assert_eq!(
        std::fs::read_dir(&thin)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name() != "lost+found")
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_tmpfs_fails_at_write_and_save_leaves_no_file() {
    if !can_mount("full_tmpfs_fails_at_write_and_save_leaves_no_file") {
        return;
    }
    let mut m = Mounts::new();
    let small = m.tmpfs("small", "2m");
    let e = copy_into(&small, 4 * MIB, false).await.unwrap_err();
    assert_eq!(e.op(), Some(IoOp::Write), "{e}");
    assert_eq!(e.errno(), Some(libc::ENOSPC), "{e}");
    std::fs::remove_file(small.join("data")).unwrap();

    let path = small.join("g.save");
    let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
    let writer = feed(w, stream(4 * MIB));
    let e = save_to_image(
        r,
        &path,
        &SaveHeader::new(XML, true),
        CopyOptions::default(),
        progress(),
        std::future::ready(Ok(())),
    )
    .await
    .unwrap_err();
    let _ = writer.join().unwrap();
    assert_eq!(e.errno(), Some(libc::ENOSPC), "{e}");
    let v = e.to_vir_error(vireo_messages::ErrorDomain::Qemu);
    assert_eq!(v.code, vireo_messages::ErrorCode::OperationFailed);
    assert!(
        v.message.ends_with("No space left on device"),
        "{}",
        v.message
    );
    assert!(!path.exists(), "a failed save must not leave an image");
}

/// The helper actor runs its work as a `Send` future: the async API must fit.
#[test]
fn helper_futures_are_send() {
    fn assert_send<T: Send>(_: T) {}
    let (r, _w) = pipe_with_capacity(4096).unwrap();
    let (r2, _w2) = pipe_with_capacity(4096).unwrap();
    let (r3, w3) = pipe_with_capacity(4096).unwrap();
    let f = tempfile::tempfile().unwrap();
    let (_tx, rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    assert_send(async move {
        let path = PathBuf::from("/nonexistent/x.save");
        let header = SaveHeader::new(XML, true);
        let verdict = async { rx.await.unwrap_or_else(|_| Err("gone".into())) };
        save_to_image(
            r,
            &path,
            &header,
            CopyOptions::default(),
            progress(),
            verdict,
        )
        .await
    });
    assert_send(async move { copy_stream(r2, &f, 0, CopyOptions::default(), progress()).await });
    assert_send(feed_stream(
        tempfile::tempfile().unwrap(),
        0,
        w3,
        CopyOptions::default(),
        progress(),
    ));
    drop(r3);
}

// ---------------------------------------------------------------------------------------
// The test driver's image against libvirt's own test driver (virsh -c test:///default,
// which runs the driver inside virsh).

/// Runs virsh on a fresh `test:///default` (its state lives in the virsh process, so a
/// rerun starts over). virsh 9.0's `save` hangs in about one run of ten here (in its
/// job watcher, after the work is done); such a run is killed after 3 s and retried,
/// four times at most.
fn virsh(cmds: &str) -> String {
    let mut last = String::new();
    for _ in 0..5 {
        let mut child = Command::new("virsh")
            .args(["-q", "-c", "test:///default", cmds])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running virsh");
        let deadline = Instant::now() + Duration::from_secs(3);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut out = String::new();
        let mut err = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        match status {
            Some(st) if st.success() => return out,
            Some(st) => panic!("virsh {cmds:?}: {st}: {err}"),
            None => {
                eprintln!("virsh {cmds:?} hung, retrying");
                last = err;
            }
        }
    }
    panic!("virsh {cmds:?} hung five times: {last}");
}

#[test]
fn test_driver_images_are_exchangeable_with_libvirt() {
    if !tool_exists("virsh") {
        let reason = "test_driver_images_are_exchangeable_with_libvirt needs virsh";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{reason} (CI=true: not skipping)");
        }
        eprintln!("SKIPPED: {reason}");
        return;
    }
    use vireo_drivers::saveimage::test_image;
    let dir = tempfile::tempdir().unwrap();
    // libvirt writes, we read.
    let theirs = dir.path().join("theirs.save");
    virsh(&format!("save test {}", theirs.display()));
    let xml = test_image::read(&theirs).unwrap();
    assert!(xml.starts_with("<domain type='test'"), "{xml}");
    assert!(xml.contains("<name>test</name>"), "{xml}");
    // We write, libvirt reads (and starts the domain from it).
    let ours = dir.path().join("ours.save");
    test_image::write(&ours, &xml).unwrap();
    let out = virsh(&format!(
        "destroy test; restore {}; domstate test",
        ours.display()
    ));
    assert!(out.contains("running"), "{out}");
    // A qemu image is refused by libvirt's test driver, as by ours.
    let qemu = dir.path().join("qemu.save");
    let f = File::create(&qemu).unwrap();
    let off = saveimage::write_partial_header(&f, &SaveHeader::new(&xml, true)).unwrap();
    f.write_all_at(b"QEVM", off).unwrap();
    saveimage::finalize(&f).unwrap();
    let out = Command::new("timeout")
        .args(["20", "virsh", "-q", "-c", "test:///default"])
        .arg(format!("destroy test; restore {}", qemu.display()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mismatched header magic"), "{err}");
    assert!(matches!(
        test_image::read(&qemu),
        Err(test_image::TestImageError::BadMagic)
    ));
}

// ---------------------------------------------------------------------------------------
// The qemu image against libvirtd's qemu driver: it reads our header
// (`save-image-dumpxml`), rewrites it in place (`save-image-define`) in a way we read back,
// and calls a partial image incomplete, as we do. No guest is started.

/// A private libvirtd with the qemu driver, stopped (SIGTERM, then SIGKILL) when dropped.
struct Libvirtd {
    child: std::process::Child,
    dir: PathBuf,
}

impl Libvirtd {
    /// Starts libvirtd; `Err` when it keeps exiting at once, which is what it does while
    /// another libvirtd holds the system state directories (only one can run per host).
    fn start(dir: &Path) -> Result<Libvirtd, String> {
        let run = dir.join("run");
        std::fs::create_dir_all(&run).unwrap();
        let conf = format!(
            "listen_tls = 0\nlisten_tcp = 0\nunix_sock_dir = \"{}\"\n\
             unix_sock_group = \"root\"\nunix_sock_ro_perms = \"0770\"\n\
             unix_sock_rw_perms = \"0770\"\nunix_sock_admin_perms = \"0700\"\n\
             auth_unix_ro = \"none\"\nauth_unix_rw = \"none\"\nlog_filters = \"\"\n\
             log_outputs = \"3:file:{}\"\n",
            run.display(),
            dir.join("libvirtd.log").display()
        );
        std::fs::write(dir.join("libvirtd.conf"), conf).unwrap();
        let t = Instant::now();
        'spawn: loop {
            let child = Command::new("/usr/sbin/libvirtd")
                .arg("--config")
                .arg(dir.join("libvirtd.conf"))
                .arg("--pid-file")
                .arg(dir.join("libvirtd.pid"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(dir.join("stderr.log")).unwrap())
                .spawn()
                .expect("spawn libvirtd");
            let mut d = Libvirtd {
                child,
                dir: dir.to_path_buf(),
            };
            while std::os::unix::net::UnixStream::connect(d.sock()).is_err() {
                if let Some(st) = d.child.try_wait().unwrap() {
                    let why = format!(
                        "libvirtd exited ({st}), probably because another libvirtd runs: {}",
                        std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
                    );
                    if t.elapsed() > Duration::from_secs(10) {
                        return Err(why);
                    }
                    std::thread::sleep(Duration::from_millis(500));
                    continue 'spawn;
                }
                assert!(
                    t.elapsed() < Duration::from_secs(40),
                    "libvirtd did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            // It binds its socket before it finds out another daemon holds the state
            // directories and exits: only a daemon that answers and stays counts.
            let (ok, _, _) = d.virsh(&["uri"]);
            std::thread::sleep(Duration::from_millis(300));
            if ok && d.child.try_wait().unwrap().is_none() {
                return Ok(d);
            }
            drop(d);
            if t.elapsed() > Duration::from_secs(10) {
                return Err("libvirtd started but did not stay (another libvirtd runs?)".into());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("run/libvirt-sock")
    }

    /// Runs `virsh -c qemu+unix:///system?socket=… ARGS`; returns (success, stdout, stderr).
    fn virsh(&self, args: &[&str]) -> (bool, String, String) {
        let uri = format!("qemu+unix:///system?socket={}", self.sock().display());
        let out = Command::new("timeout")
            .args(["30", "virsh", "-q", "-c", &uri])
            .args(args)
            .output()
            .expect("running virsh");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const QEMU_XML: &str = "<domain type='kvm'>\n  <name>vireo-save-compat</name>\n  \
    <uuid>8d1c3a52-6b4e-4d7a-9a0e-2f0b8c6d1e11</uuid>\n  \
    <memory unit='KiB'>65536</memory>\n  <vcpu placement='static'>1</vcpu>\n  \
    <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n  </os>\n  \
    <devices>\n    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n  </devices>\n</domain>\n";

#[test]
fn qemu_images_are_exchangeable_with_libvirtd() {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root");
    }
    for t in ["libvirtd", "virsh", "qemu-system-x86_64"] {
        if !tool_exists(t) {
            missing.push(t);
        }
    }
    if nix::unistd::User::from_name("libvirt-qemu")
        .ok()
        .flatten()
        .is_none()
    {
        missing.push("the libvirt-qemu user");
    }
    if !missing.is_empty() {
        let reason = format!(
            "qemu_images_are_exchangeable_with_libvirtd needs {}",
            missing.join(", ")
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{reason} (CI=true: not skipping)");
        }
        eprintln!("SKIPPED: {reason}");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("vireo-saveimage")
        .tempdir_in("/tmp")
        .unwrap();
    let lv = match Libvirtd::start(&dir.path().join("libvirtd")) {
        Ok(lv) => lv,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => panic!("{why}"),
        Err(why) => {
            eprintln!("SKIPPED: qemu_images_are_exchangeable_with_libvirtd: {why}");
            return;
        }
    };

    // Our complete image, with a cookie and a stream start.
    let ours = dir.path().join("ours.save");
    let f = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&ours)
        .unwrap();
    let header = SaveHeader {
        cookie: Some("<qemu-cookie/>".into()),
        ..SaveHeader::new(QEMU_XML, true)
    };
    let off = saveimage::write_partial_header(&f, &header).unwrap();
    f.write_all_at(b"QEVM\0\0\0\x03", off).unwrap();

    // While partial, libvirt refuses it as incomplete.
    let p = ours.to_str().unwrap();
    let (ok, _, err) = lv.virsh(&["save-image-dumpxml", p]);
    assert!(!ok && err.contains("save image is incomplete"), "{err}");

    saveimage::finalize(&f).unwrap();
    let (ok, out, err) = lv.virsh(&["save-image-dumpxml", p]);
    assert!(ok, "libvirtd cannot read our image: {err}");
    assert!(out.contains("<name>vireo-save-compat</name>"), "{out}");

    // libvirt rewrites the XML in place and flips was_running; we read its result.
    let edited = out.replace(
        "<name>vireo-save-compat</name>",
        "<name>vireo-save-compat</name>\n  <description>edited by libvirt</description>",
    );
    let xml_path = dir.path().join("edited.xml");
    std::fs::write(&xml_path, &edited).unwrap();
    let (ok, _, err) = lv.virsh(&[
        "save-image-define",
        p,
        xml_path.to_str().unwrap(),
        "--paused",
    ]);
    assert!(ok, "save-image-define: {err}");
    let (h, got_off) = saveimage::read_header(&f).unwrap();
    assert_eq!(got_off, off, "the stream must not move");
    assert!(
        h.xml
            .contains("<description>edited by libvirt</description>")
    );
    assert!(!h.was_running, "--paused clears was_running");
    assert_eq!(h.cookie.as_deref(), Some("<qemu-cookie/>"));
    let (_, h2) = restore_source(&ours).unwrap();
    assert_eq!(h2, h);

    // We rewrite it in place; libvirt reads our result.
    let ours_edit = h
        .xml
        .replace("edited by libvirt", "edited by vireo, a longer description");
    saveimage::update_xml(&f, &ours_edit).unwrap();
    let (ok, out, err) = lv.virsh(&["save-image-dumpxml", p]);
    assert!(ok, "{err}");
    assert!(
        out.contains("edited by vireo, a longer description"),
        "{out}"
    );

    // A foreign file is refused by both.
    let foreign = dir.path().join("foreign.save");
    std::fs::write(&foreign, vec![b'x'; 200]).unwrap();
    let (ok, _, err) = lv.virsh(&["save-image-dumpxml", foreign.to_str().unwrap()]);
    assert!(!ok && err.contains("image magic is incorrect"), "{err}");
}

// ---------------------------------------------------------------------------------------
// The whole save and restore with real QEMU (TCG) and a guest that fills its memory and
// then counts on its serial port: QEMU's migration stream goes through our pipe into an
// image in libvirt's layout, and a new QEMU continues the guest from it — through the
// file's descriptor, and through a pipe fed with O_DIRECT reads. On thin storage (root)
// QEMU reports the migration completed while the helper reports ENOSPC from fdatasync,
// and no image is left.

use vireo_drivers::qemu::qmp::{Qmp, QmpEvent};
use vireo_drivers::qemu::testguest::{self, TestGuest};

const QEMU_TIMEOUT: Duration = Duration::from_secs(30);

struct Qemu {
    child: std::process::Child,
    qmp: Qmp,
    events: tokio::sync::mpsc::UnboundedReceiver<QmpEvent>,
    serial: PathBuf,
}

impl Qemu {
    async fn start(dir: &Path, name: &str, image: &Path, incoming: bool) -> Qemu {
        let sock = dir.join(format!("{name}.qmp"));
        let serial = dir.join(format!("{name}.serial"));
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args([
            "-accel",
            "tcg",
            "-machine",
            "q35",
            "-m",
            "64",
            "-nodefaults",
        ])
        .args(["-display", "none", "-S", "-qmp"])
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=ide,snapshot=on",
            image.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.join(format!("{name}.stderr"))).unwrap());
        if incoming {
            cmd.args(["-incoming", "defer"]);
        }
        let mut child = cmd.spawn().expect("spawn qemu");
        let t = Instant::now();
        let (qmp, events) = loop {
            if let Ok(c) = Qmp::connect(&sock).await {
                break c;
            }
            if let Some(st) = child.try_wait().unwrap() {
                panic!(
                    "QEMU exited ({st}): {}",
                    std::fs::read_to_string(dir.join(format!("{name}.stderr"))).unwrap()
                );
            }
            assert!(t.elapsed() < QEMU_TIMEOUT, "QEMU's monitor did not come up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        qmp.execute(
            "migrate-set-capabilities",
            Some(serde_json::json!({"capabilities": [{"capability": "events", "state": true}]})),
        )
        .await
        .unwrap();
        Qemu {
            child,
            qmp,
            events,
            serial,
        }
    }

    async fn run(&self, cmd: &str, args: Option<serde_json::Value>) -> serde_json::Value {
        self.qmp
            .execute(cmd, args)
            .await
            .unwrap_or_else(|e| panic!("{cmd}: {e}"))
    }

    async fn status(&self) -> String {
        self.run("query-status", None).await["status"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn serial_text(&self) -> String {
        std::fs::read_to_string(&self.serial).unwrap_or_default()
    }

    async fn wait_serial(&self, what: impl Fn(&str) -> bool, why: &str) {
        let t = Instant::now();
        while !what(&self.serial_text()) {
            assert!(
                t.elapsed() < QEMU_TIMEOUT,
                "{why}: {:?}",
                self.serial_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// QEMU's verdict on a migration: the status of the first final MIGRATION event.
async fn migration_verdict(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<QmpEvent>,
) -> Result<(), String> {
    while let Some(ev) = events.recv().await {
        if ev.name == "MIGRATION" {
            match ev.data["status"].as_str() {
                Some("completed") => return Ok(()),
                Some(s @ ("failed" | "cancelled")) => return Err(format!("migration {s}")),
                _ => {}
            }
        }
    }
    Err("QEMU went away during the migration".into())
}

/// Saves `vm` into `path` through the helper; returns the helper's result.
async fn qemu_save(vm: &mut Qemu, path: &Path) -> Result<u64, IoHelperError> {
    let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
    vm.qmp
        .execute_with_fd(
            "getfd",
            Some(serde_json::json!({"fdname": "migfile"})),
            std::os::fd::AsFd::as_fd(&w),
        )
        .await
        .unwrap();
    drop(w);
    let header = SaveHeader::new(QEMU_XML, true);
    let qmp = vm.qmp.clone();
    let verdict = migration_verdict(&mut vm.events);
    // The migration runs in QEMU's own thread: `migrate` returns at once.
    qmp.execute("migrate", Some(serde_json::json!({"uri": "fd:migfile"})))
        .await
        .unwrap();
    tokio::time::timeout(
        QEMU_TIMEOUT,
        save_to_image(
            r,
            path,
            &header,
            CopyOptions::default(),
            progress(),
            verdict,
        ),
    )
    .await
    .expect("save timed out")
}

/// Restores `path` into a new QEMU (fd passing, or a pipe fed with O_DIRECT reads) and
/// checks that the guest continues counting.
async fn qemu_restore(dir: &Path, name: &str, image: &Path, path: &Path, via_pipe: bool) {
    let mut vm = Qemu::start(dir, name, image, true).await;
    let (f, header) = restore_source(path).unwrap();
    assert!(header.was_running);
    let feeder = if via_pipe {
        let offset = (&f).stream_position().unwrap();
        let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
        vm.qmp
            .execute_with_fd(
                "getfd",
                Some(serde_json::json!({"fdname": "migin"})),
                std::os::fd::AsFd::as_fd(&r),
            )
            .await
            .unwrap();
        drop(r);
        let opts = CopyOptions {
            direct: true,
            ..CopyOptions::default()
        };
        Some(tokio::spawn(feed_stream(f, offset, w, opts, progress())))
    } else {
        vm.qmp
            .execute_with_fd(
                "getfd",
                Some(serde_json::json!({"fdname": "migin"})),
                std::os::fd::AsFd::as_fd(&f),
            )
            .await
            .unwrap();
        drop(f);
        None
    };
    vm.run(
        "migrate-incoming",
        Some(serde_json::json!({"uri": "fd:migin"})),
    )
    .await;
    tokio::time::timeout(QEMU_TIMEOUT, migration_verdict(&mut vm.events))
        .await
        .expect("restore timed out")
        .unwrap();
    if let Some(f) = feeder {
        let n = f.await.unwrap().unwrap();
        assert!(n > 60 * MIB as u64, "fed {n} bytes");
    }
    assert_eq!(vm.status().await, "paused");
    vm.run("cont", None).await;
    // The restored guest goes on printing digits (it never prints "filled" again).
    vm.wait_serial(
        |s| s.chars().filter(char::is_ascii_digit).count() >= 2,
        "the restored guest does not run",
    )
    .await;
    assert!(!vm.serial_text().contains("filled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_save_and_restore_through_the_helper() {
    let have_qemu = tool_exists("qemu-system-x86_64") && testguest::tools_available();
    if !have_qemu {
        let reason =
            "qemu_save_and_restore_through_the_helper needs qemu-system-x86_64 and binutils";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{reason} (CI=true: not skipping)");
        }
        eprintln!("SKIPPED: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = testguest::build(dir.path(), TestGuest::Fill { fill_end: 62 << 20 }).unwrap();
    let mut src = Qemu::start(dir.path(), "src", &image, false).await;
    src.run(
        "migrate-set-parameters",
        Some(serde_json::json!({"max-bandwidth": 8_589_934_592u64})),
    )
    .await;
    src.run("cont", None).await;
    src.wait_serial(
        |s| s.contains("filled"),
        "the guest did not fill its memory",
    )
    .await;
    src.run("stop", None).await;

    let path = dir.path().join("g.save");
    let n = qemu_save(&mut src, &path).await.unwrap();
    assert!(n > 60 * MIB as u64, "QEMU's stream is only {n} bytes");
    // On overcommitted storage: QEMU says completed, the helper says ENOSPC.
    if nix::unistd::geteuid().is_root() && can_mount("qemu_save_and_restore_through_the_helper") {
        // A migrated QEMU refuses another migration until it ran again.
        src.run("cont", None).await;
        src.run("stop", None).await;
        let (_m, thin) = Mounts::thin();
        let path = thin.join("g.save");
        let e = qemu_save(&mut src, &path).await.unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOSPC), "{e}");
        assert!(!path.exists(), "a failed save must not leave an image");
        assert_eq!(src.status().await, "postmigrate");
    }

    drop(src);
    let (h, off) = saveimage::read_header(&File::open(&path).unwrap()).unwrap();
    assert_eq!(h.xml, QEMU_XML);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), off + n);

    qemu_restore(dir.path(), "dst-fd", &image, &path, false).await;
    qemu_restore(dir.path(), "dst-pipe", &image, &path, true).await;
}
