//! The I/O helper's data mover: copies a stream from a pipe into a file and reports
//! success only for data that has reached stable storage.
//!
//! Why this exists: when a guest is saved, QEMU writes its state into a pipe and a helper
//! copies it into the image file. If the helper reports success as soon as `write()`
//! returned, the data may still sit in the page cache; on overcommitted or remote storage
//! the later write-back can fail with `ENOSPC` or `EIO`, and nobody hears about it. The
//! guest has been stopped believing its state was safe. Here every `write()` error, every
//! read error and the final `fdatasync()` error is returned, naming the operation and
//! carrying the OS error (errno preserved, see [`IoHelperError::errno`]), and `Ok` is only
//! returned after `fdatasync()` succeeded.
//!
//! Pieces:
//! - [`pipe_with_capacity`]: the pipe between QEMU and the helper, enlarged to 1 MiB
//!   (a 64 KiB pipe makes a 512 MiB save four times slower on this kind of machine);
//! - [`copy_stream`]: the async copy (blocking work on tokio's blocking pool, cancelled by
//!   dropping the future) and [`copy_blocking`], the same loop for a thread of one's own;
//!   every [`WRITEBACK_CHUNK`] written, write-back of that range is started at once
//!   (on a side thread, `POSIX_FADV_DONTNEED`), so the disk writes while the stream still
//!   arrives and the final `fdatasync()` only waits for the tail;
//! - [`save_to_image`]: the whole save of an image file in libvirt's layout: create, write
//!   the header with the partial magic, copy, sync, wait for the producer's verdict,
//!   finalize the magic, sync the directory; on any failure the file is removed;
//! - [`restore_source`]: opens an image for restore and positions it at the stream, so the
//!   file descriptor can be handed to QEMU directly; [`feed_stream`] pushes it through a
//!   pipe instead (bypass-cache restore reads the file with `O_DIRECT`).
//!
//! `O_DIRECT` (libvirt's bypass-cache flag): the file gets `O_DIRECT` with `fcntl`, data is
//! written from a 4 KiB-aligned buffer in whole buffers, and before a final chunk whose
//! length is not a multiple of 4 KiB the flag is cleared again, as libvirt's iohelper does;
//! the tail then goes through the page cache and the final `fdatasync()` covers it.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use vireo_messages::{ErrorCode, ErrorDomain, VirError};

use crate::saveimage::{self, SaveFormat, SaveHeader, SaveImageError};

/// Default copy buffer: 1 MiB, like libvirt's iohelper.
pub const DEFAULT_BUFFER: usize = 1 << 20;
/// Alignment of buffers, offsets and lengths for `O_DIRECT` writes.
pub const DIRECT_ALIGN: usize = 4096;
/// The pipe size that makes a save run at disk speed (see host-facts §2).
pub const PIPE_CAPACITY: usize = 1 << 20;

/// How to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyOptions {
    /// Write with `O_DIRECT` (bypass the page cache). The data offset must be a multiple
    /// of [`DIRECT_ALIGN`].
    pub direct: bool,
    /// Bytes per read/write; rounded up to a multiple of [`DIRECT_ALIGN`].
    pub buffer: usize,
}

impl Default for CopyOptions {
    fn default() -> CopyOptions {
        CopyOptions {
            direct: false,
            buffer: DEFAULT_BUFFER,
        }
    }
}

/// The operation that failed, for messages and for mapping to libvirt's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    /// Creating the pipe or the cancellation pipe.
    CreatePipe,
    /// Reading the incoming stream.
    Read,
    /// Writing the stream into the file.
    Write,
    /// The final `fdatasync()` of the stream.
    Sync,
    /// Setting or clearing `O_DIRECT`.
    SetFlags,
    /// Creating the image file.
    Create,
    /// Opening an existing image (restore) or duplicating a descriptor.
    Open,
    /// Writing the image header.
    WriteHeader,
    /// Switching the magic to the final one and syncing it.
    Finalize,
    /// Syncing the directory that holds the image.
    SyncDir,
    /// Positioning the image at the stream.
    Seek,
    /// Writing the stream into the pipe towards the hypervisor (restore).
    WritePipe,
}

impl IoOp {
    fn verb(self) -> &'static str {
        match self {
            IoOp::CreatePipe => "unable to create a pipe for",
            IoOp::Read => "unable to read the stream for",
            IoOp::Write => "unable to write",
            IoOp::Sync => "unable to fsync",
            IoOp::SetFlags => "unable to change O_DIRECT on",
            IoOp::Create => "unable to create",
            IoOp::Open => "unable to open",
            IoOp::WriteHeader => "failed to write header to domain save file",
            IoOp::Finalize => "failed to mark complete the domain save file",
            IoOp::SyncDir => "unable to fsync the directory of",
            IoOp::Seek => "unable to seek in",
            IoOp::WritePipe => "unable to pass to the hypervisor the stream of",
        }
    }

    /// Whether the failure happened while moving the stream (read, write, sync, flags),
    /// as opposed to handling the file around it.
    pub fn is_stream(self) -> bool {
        matches!(self, IoOp::Read | IoOp::Write | IoOp::Sync | IoOp::SetFlags)
    }
}

fn target(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!("'{}'", p.display()),
        None => "the save image".to_string(),
    }
}

fn os_text(e: &io::Error) -> String {
    let t = e.to_string();
    match t.rfind(" (os error ") {
        Some(i) => t[..i].to_string(),
        None => t,
    }
}

/// Why a copy or save failed.
#[derive(Debug, thiserror::Error)]
pub enum IoHelperError {
    /// A system call failed.
    #[error("{} {}: {}", op.verb(), target(path), os_text(source))]
    Io {
        /// What was being done.
        op: IoOp,
        /// The file concerned, when known.
        path: Option<PathBuf>,
        /// The OS error (its errno is kept).
        #[source]
        source: io::Error,
    },
    /// `O_DIRECT` was asked for a stream that does not start on an aligned offset.
    #[error(
        "O_DIRECT needs the stream to start at a multiple of {DIRECT_ALIGN} bytes, not at {offset}"
    )]
    Unaligned {
        /// The offset given.
        offset: u64,
    },
    /// The copy was cancelled (its future dropped) before the stream ended.
    #[error("the I/O helper was cancelled before the stream ended")]
    Cancelled,
    /// The copying thread panicked.
    #[error("the I/O helper thread panicked: {0}")]
    Panicked(String),
    /// The image to restore from is not a usable save image.
    #[error("{source}")]
    Image {
        /// The image path.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: SaveImageError,
    },
    /// The producer of the stream (QEMU's migration) reported a failure.
    #[error("{0}")]
    SourceFailed(String),
}

impl IoHelperError {
    fn io(op: IoOp, source: io::Error) -> IoHelperError {
        IoHelperError::Io {
            op,
            path: None,
            source,
        }
    }

    fn at(self, p: &Path) -> IoHelperError {
        match self {
            IoHelperError::Io {
                op,
                path: None,
                source,
            } => IoHelperError::Io {
                op,
                path: Some(p.to_path_buf()),
                source,
            },
            other => other,
        }
    }

    /// The errno of the failed system call, if this is one (e.g. `libc::ENOSPC`).
    pub fn errno(&self) -> Option<i32> {
        match self {
            IoHelperError::Io { source, .. } => source.raw_os_error(),
            IoHelperError::Image {
                source: SaveImageError::Io(e),
                ..
            } => e.raw_os_error(),
            _ => None,
        }
    }

    /// The failed operation, if this is a system call failure.
    pub fn op(&self) -> Option<IoOp> {
        match self {
            IoHelperError::Io { op, .. } => Some(*op),
            _ => None,
        }
    }

    /// Converts to the error a libvirt client sees, as libvirt's qemu driver reports it:
    /// stream failures (read, write, fdatasync of the data) are "operation failed" (9)
    /// with the OS error in the message, as libvirt relays its iohelper's failure; failures
    /// on the file itself (create, header, finalize, open) are system errors (38) with the
    /// errno in `int1`; a cancelled copy is "operation aborted" (78); an unusable image is
    /// "operation failed" with libvirt's wording.
    pub fn to_vir_error(&self, domain: ErrorDomain) -> VirError {
        match self {
            IoHelperError::Io { op, path, source } if !op.is_stream() => {
                VirError::system(domain, format!("{} {}", op.verb(), target(path)), source)
            }
            IoHelperError::Io { .. } | IoHelperError::SourceFailed(_) => {
                VirError::operation_failed(domain, self.to_string())
            }
            IoHelperError::Cancelled => VirError::with(
                ErrorCode::OperationAborted,
                domain,
                "job 'domain save job' canceled by client",
            ),
            IoHelperError::Image { source, .. } => {
                let text = match source {
                    SaveImageError::Partial => "save image is incomplete".to_string(),
                    SaveImageError::BadMagic => "image magic is incorrect".to_string(),
                    other => other.to_string(),
                };
                VirError::operation_failed(domain, text)
            }
            IoHelperError::Unaligned { .. } | IoHelperError::Panicked(_) => {
                VirError::internal(domain, self.to_string())
            }
        }
    }
}

fn errno_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// A pipe (read end, write end), both close-on-exec, whose buffer is enlarged to `bytes`
/// (`F_SETPIPE_SZ`). If the kernel refuses the size (`EPERM` above
/// `/proc/sys/fs/pipe-max-size` for an unprivileged process) the default size is kept.
pub fn pipe_with_capacity(bytes: usize) -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(errno_io)?;
    let size = i32::try_from(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pipe size too large"))?;
    match fcntl(&w, FcntlArg::F_SETPIPE_SZ(size)) {
        Ok(_) => {}
        Err(Errno::EPERM) => {
            tracing::debug!(bytes, "pipe size refused (EPERM), keeping the default");
        }
        Err(e) => return Err(errno_io(e)),
    }
    Ok((r, w))
}

/// The buffer size of a pipe (`F_GETPIPE_SZ`).
pub fn pipe_capacity(fd: impl AsFd) -> io::Result<usize> {
    fcntl(fd, FcntlArg::F_GETPIPE_SZ)
        .map(|n| n as usize)
        .map_err(errno_io)
}

/// How much written data the copy lets accumulate in the page cache before it asks the
/// kernel to start writing it back (asynchronously, on a side thread).
pub const WRITEBACK_CHUNK: u64 = 8 << 20;

/// Asks the kernel to start writing back `[from, to)` of `file` now, without waiting, so
/// that the disk works while the stream still arrives and the final `fdatasync()` has
/// only the tail left (a save then takes about as long as the slower of the two instead
/// of their sum). `POSIX_FADV_DONTNEED` starts asynchronous writeback of the dirty pages
/// and drops the clean ones (a save image is not read back soon). Unlike
/// `sync_file_range(SYNC_FILE_RANGE_WAIT_AFTER)` it does not consume a recorded
/// write-back error, so the final `fdatasync()` still reports it. A refusal is harmless
/// (only the overlap is lost) and is ignored.
fn start_writeback(file: &File, from: u64, to: u64) {
    let (Ok(off), Ok(len)) = (i64::try_from(from), i64::try_from(to - from)) else {
        return;
    };
    if let Err(e) = nix::fcntl::posix_fadvise(
        file,
        off,
        len,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    ) {
        tracing::debug!(error = %e, "posix_fadvise(DONTNEED) refused");
    }
}

/// Sets or clears `O_DIRECT` on the open file description of `file`.
fn set_direct(file: &File, on: bool) -> Result<(), IoHelperError> {
    let flags = fcntl(file, FcntlArg::F_GETFL)
        .map_err(|e| IoHelperError::io(IoOp::SetFlags, errno_io(e)))?;
    let mut flags = OFlag::from_bits_retain(flags);
    if flags.contains(OFlag::O_DIRECT) == on {
        return Ok(());
    }
    flags.set(OFlag::O_DIRECT, on);
    fcntl(file, FcntlArg::F_SETFL(flags))
        .map(drop)
        .map_err(|e| IoHelperError::io(IoOp::SetFlags, errno_io(e)))
}

/// A buffer of `len` bytes whose start is aligned to [`DIRECT_ALIGN`], carved out of a
/// slightly larger vector (no unsafe code needed).
struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> AlignedBuf {
        let storage = vec![0u8; len + DIRECT_ALIGN];
        let start = storage.as_ptr().align_offset(DIRECT_ALIGN);
        assert!(start < DIRECT_ALIGN, "cannot align the copy buffer");
        AlignedBuf {
            storage,
            start,
            len,
        }
    }

    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

/// Waits until `src` is readable (or at end of file); fails with
/// [`IoHelperError::Cancelled`] when `cancel` becomes readable or hung up.
fn wait_readable(src: BorrowedFd<'_>, cancel: Option<BorrowedFd<'_>>) -> Result<(), IoHelperError> {
    wait_ready(src, PollFlags::POLLIN, IoOp::Read, cancel)
}

/// Waits until `fd` is ready for `events` (or in error/hang-up, which the following
/// read or write reports); fails with [`IoHelperError::Cancelled`] when `cancel` becomes
/// readable or hung up.
fn wait_ready(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    op: IoOp,
    cancel: Option<BorrowedFd<'_>>,
) -> Result<(), IoHelperError> {
    loop {
        let mut fds = vec![PollFd::new(fd, events)];
        if let Some(c) = cancel {
            fds.push(PollFd::new(c, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {
                if fds.len() > 1 && fds[1].revents().is_some_and(|r| !r.is_empty()) {
                    return Err(IoHelperError::Cancelled);
                }
                if fds[0].revents().is_some_and(|r| !r.is_empty()) {
                    return Ok(());
                }
            }
            Err(Errno::EINTR) => {}
            Err(e) => return Err(IoHelperError::io(op, errno_io(e))),
        }
    }
}

/// Fills `buf` from `src` until it is full or the stream ends; returns the bytes read.
fn fill(
    src: BorrowedFd<'_>,
    buf: &mut [u8],
    cancel: Option<BorrowedFd<'_>>,
) -> Result<usize, IoHelperError> {
    let mut filled = 0;
    while filled < buf.len() {
        wait_readable(src, cancel)?;
        match nix::unistd::read(src, &mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(e) => return Err(IoHelperError::io(IoOp::Read, errno_io(e))),
        }
    }
    Ok(filled)
}

/// The copy loop, blocking: reads `src` until end of file, writes everything into `dst`
/// starting at `offset`, adds each written chunk to `progress`, then `fdatasync`s `dst`;
/// returns the number of bytes copied only when all of that succeeded. When `cancel`
/// becomes readable or its write end is closed, the loop stops with
/// [`IoHelperError::Cancelled`] (it waits for `src` with `poll()` on both).
///
/// End of file is not proof of a complete stream: a producer that dies also closes the
/// pipe. Whoever started the producer must also check that it finished successfully.
pub fn copy_blocking(
    src: BorrowedFd<'_>,
    dst: &File,
    offset: u64,
    opts: CopyOptions,
    progress: &AtomicU64,
    cancel: Option<BorrowedFd<'_>>,
) -> Result<u64, IoHelperError> {
    let len = opts.buffer.max(1).div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
    if opts.direct && !offset.is_multiple_of(DIRECT_ALIGN as u64) {
        return Err(IoHelperError::Unaligned { offset });
    }
    // Also clears an O_DIRECT the caller may have opened the file with, when not wanted.
    set_direct(dst, opts.direct)?;
    let mut direct = opts.direct;
    let mut buf = AlignedBuf::new(len);
    let buf = buf.as_mut();
    let mut pos = offset;
    let mut kicked = offset;
    // Early write-back runs on a thread of its own, so the copy never waits for it.
    let (kick, kicks) = std::sync::mpsc::channel::<(u64, u64)>();
    let result = std::thread::scope(|scope| {
        scope.spawn(move || {
            for (from, to) in kicks {
                start_writeback(dst, from, to);
            }
        });
        loop {
            let n = fill(src, buf, cancel)?;
            if n == 0 {
                break;
            }
            if direct && !n.is_multiple_of(DIRECT_ALIGN) {
                set_direct(dst, false)?;
                direct = false;
            }
            dst.write_all_at(&buf[..n], pos)
                .map_err(|e| IoHelperError::io(IoOp::Write, e))?;
            pos += n as u64;
            progress.fetch_add(n as u64, Ordering::Relaxed);
            if !direct && pos - kicked >= WRITEBACK_CHUNK {
                let _ = kick.send((kicked, pos));
                kicked = pos;
            }
            if n < len {
                break;
            }
        }
        if direct {
            set_direct(dst, false)?;
            direct = false;
        }
        drop(kick);
        dst.sync_data()
            .map_err(|e| IoHelperError::io(IoOp::Sync, e))?;
        Ok(pos - offset)
    });
    if direct {
        let _ = set_direct(dst, false);
    }
    result
}

/// Copies the stream from `src` (a pipe's read end, consumed and closed when done) into
/// `dst` at `offset`, on tokio's blocking pool; `Ok(bytes)` only after everything was
/// written and `fdatasync()` succeeded. `progress` counts the bytes written so far (for
/// job info). Dropping the returned future cancels the copy: the blocking thread is woken
/// through a private pipe, stops and closes `src` (so the producer gets `EPIPE`).
pub async fn copy_stream(
    src: OwnedFd,
    dst: &File,
    offset: u64,
    opts: CopyOptions,
    progress: Arc<AtomicU64>,
) -> Result<u64, IoHelperError> {
    let dst = dst
        .try_clone()
        .map_err(|e| IoHelperError::io(IoOp::Open, e))?;
    let (cancel_rd, cancel_wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| IoHelperError::io(IoOp::CreatePipe, errno_io(e)))?;
    let task = tokio::task::spawn_blocking(move || {
        copy_blocking(
            src.as_fd(),
            &dst,
            offset,
            opts,
            &progress,
            Some(cancel_rd.as_fd()),
        )
    });
    // Held until the copy ends; dropping it (with this future) wakes the thread.
    let _cancel = cancel_wr;
    join_helper(task.await)
}

/// The restore direction, blocking: reads `src` from `offset` to its end and writes it
/// into the pipe `dst` (for QEMU's `migrate-incoming fd:`), adding each chunk to
/// `progress`; returns the bytes passed. With `opts.direct` the file is read with
/// `O_DIRECT` (libvirt's bypass-cache restore): reads start at `offset` rounded down to
/// [`DIRECT_ALIGN`] and the bytes before `offset` are skipped, so images written by
/// libvirt (whose stream does not start on an aligned offset) work too. `dst` is switched
/// to non-blocking mode so that `cancel` (as in [`copy_blocking`]) can always interrupt.
/// A reader that goes away fails the feed with `EPIPE` ([`IoOp::WritePipe`]).
pub fn feed_blocking(
    src: &File,
    offset: u64,
    dst: BorrowedFd<'_>,
    opts: CopyOptions,
    progress: &AtomicU64,
    cancel: Option<BorrowedFd<'_>>,
) -> Result<u64, IoHelperError> {
    let len = opts.buffer.max(1).div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
    let flags = fcntl(dst, FcntlArg::F_GETFL)
        .map_err(|e| IoHelperError::io(IoOp::SetFlags, errno_io(e)))?;
    fcntl(
        dst,
        FcntlArg::F_SETFL(OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK),
    )
    .map_err(|e| IoHelperError::io(IoOp::SetFlags, errno_io(e)))?;
    set_direct(src, opts.direct)?;
    let mut buf = AlignedBuf::new(len);
    let buf = buf.as_mut();
    let mut pos = if opts.direct {
        offset - offset % DIRECT_ALIGN as u64
    } else {
        offset
    };
    let mut skip = (offset - pos) as usize;
    let mut passed = 0u64;
    let result = (|| {
        loop {
            let n = loop {
                match src.read_at(buf, pos) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(IoHelperError::io(IoOp::Read, e)),
                }
            };
            if n == 0 {
                break;
            }
            pos += n as u64;
            let mut chunk = &buf[skip.min(n)..n];
            skip = skip.saturating_sub(n);
            while !chunk.is_empty() {
                wait_ready(dst, PollFlags::POLLOUT, IoOp::WritePipe, cancel)?;
                match nix::unistd::write(dst, chunk) {
                    Ok(w) => {
                        chunk = &chunk[w..];
                        passed += w as u64;
                        progress.fetch_add(w as u64, Ordering::Relaxed);
                    }
                    Err(Errno::EINTR | Errno::EAGAIN) => {}
                    Err(e) => return Err(IoHelperError::io(IoOp::WritePipe, errno_io(e))),
                }
            }
        }
        Ok(passed)
    })();
    if opts.direct {
        let _ = set_direct(src, false);
    }
    result
}

/// Feeds the stream of an image into a pipe for the hypervisor (restore through a pipe;
/// needed for bypass-cache restore, since QEMU cannot read an `O_DIRECT` descriptor
/// itself): [`feed_blocking`] on tokio's blocking pool. `dst` (the pipe's write end) is
/// closed when the feed ends, which is QEMU's end of file. Dropping the future cancels
/// the feed and closes `dst` too.
pub async fn feed_stream(
    src: File,
    offset: u64,
    dst: OwnedFd,
    opts: CopyOptions,
    progress: Arc<AtomicU64>,
) -> Result<u64, IoHelperError> {
    let (cancel_rd, cancel_wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| IoHelperError::io(IoOp::CreatePipe, errno_io(e)))?;
    let task = tokio::task::spawn_blocking(move || {
        feed_blocking(
            &src,
            offset,
            dst.as_fd(),
            opts,
            &progress,
            Some(cancel_rd.as_fd()),
        )
    });
    let _cancel = cancel_wr;
    join_helper(task.await)
}

/// Turns a blocking task's outcome into the helper's result.
fn join_helper(
    r: Result<Result<u64, IoHelperError>, tokio::task::JoinError>,
) -> Result<u64, IoHelperError> {
    match r {
        Ok(r) => r,
        Err(e) if e.is_panic() => {
            let p = e.into_panic();
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(IoHelperError::Panicked(msg))
        }
        Err(_) => Err(IoHelperError::Cancelled),
    }
}

/// Removes a half-written image (and syncs its directory) unless disarmed.
struct PartialImage<'a> {
    path: &'a Path,
    armed: bool,
}

impl Drop for PartialImage<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Err(e) = std::fs::remove_file(self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove partial save image");
        }
        if let Err(e) = sync_dir(self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot sync directory after removing partial save image");
        }
    }
}

/// Removes the image at `path` if it is an interrupted save ([`saveimage::is_partial`]:
/// partial magic, or a header cut short by a crash), and syncs the directory; returns
/// whether it removed it. A missing file is not an error (`Ok(false)`). A restarted
/// daemon calls it for every save path it may have been writing.
pub fn remove_if_partial(path: &Path) -> io::Result<bool> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if !saveimage::is_partial(&file)? {
        return Ok(false);
    }
    drop(file);
    std::fs::remove_file(path)?;
    sync_dir(path)?;
    Ok(true)
}

/// `fsync()`s the directory that contains `path`, so a created or removed entry is durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Saves a stream into a new image file at `path` in libvirt's layout, and returns the
/// number of stream bytes written.
///
/// 1. create the file (mode 0600, truncating an old one) and write `header` with the
///    partial magic;
/// 2. copy the stream from `src` ([`copy_stream`], which ends with `fdatasync()`);
/// 3. wait for `source_done`, the producer's verdict (QEMU's `MIGRATION` event
///    `completed` → `Ok`, `failed` → `Err(message)`); a failure reported before the
///    stream ends cancels the copy at once. Pass `std::future::ready(Ok(()))` when end
///    of file is proof enough;
/// 4. switch to the final magic and `fdatasync()` ([`saveimage::finalize`]), `fsync()`
///    the directory.
///
/// On any error — and when the future is dropped — the file is removed and the directory
/// synced, so no image that claims to be valid is ever left behind.
///
/// `source_done` must also resolve (with `Err`) when the producer never starts, e.g.
/// when QEMU refuses the `migrate` command: QEMU then still holds the pipe's write end
/// (from `getfd`), the stream never ends, and the save would wait forever.
pub async fn save_to_image<F>(
    src: OwnedFd,
    path: &Path,
    header: &SaveHeader,
    opts: CopyOptions,
    progress: Arc<AtomicU64>,
    source_done: F,
) -> Result<u64, IoHelperError>
where
    F: Future<Output = Result<(), String>>,
{
    let file = OpenOptions::new()
        .write(true)
        .read(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| IoHelperError::io(IoOp::Create, e).at(path))?;
    let mut guard = PartialImage { path, armed: true };
    let offset = saveimage::write_partial_header(&file, header)
        .map_err(|e| IoHelperError::io(IoOp::WriteHeader, e).at(path))?;

    let copy = copy_stream(src, &file, offset, opts, progress);
    tokio::pin!(copy);
    tokio::pin!(source_done);
    let mut copied = None;
    let mut source_ok = false;
    while copied.is_none() || !source_ok {
        tokio::select! {
            r = &mut copy, if copied.is_none() => {
                copied = Some(r.map_err(|e| e.at(path))?);
            }
            r = &mut source_done, if !source_ok => {
                r.map_err(IoHelperError::SourceFailed)?;
                source_ok = true;
            }
        }
    }
    // The syncs can take a while on slow storage: keep them off the async workers.
    let owned = path.to_path_buf();
    let file = file
        .try_clone()
        .map_err(|e| IoHelperError::io(IoOp::Open, e).at(path))?;
    let finish = tokio::task::spawn_blocking(move || {
        saveimage::finalize(&file).map_err(|e| IoHelperError::io(IoOp::Finalize, e).at(&owned))?;
        sync_dir(&owned).map_err(|e| IoHelperError::io(IoOp::SyncDir, e).at(&owned))?;
        Ok(0)
    });
    join_helper(finish.await)?;
    guard.armed = false;
    Ok(copied.unwrap_or(0))
}

/// Opens the image at `path` for restore: checks its header (partial, foreign,
/// truncated and corrupted images are refused with [`IoHelperError::Image`]), checks that
/// a raw stream starts with QEMU's `QEVM` magic, and returns the file positioned at the
/// stream with the header. The file descriptor can be handed to QEMU as it is
/// (`getfd` + `migrate-incoming fd:NAME`); for a bypass-cache restore pass it to
/// [`feed_stream`] with `direct` instead, and QEMU the pipe's read end.
pub fn restore_source(path: &Path) -> Result<(File, SaveHeader), IoHelperError> {
    let mut file = File::open(path).map_err(|e| IoHelperError::io(IoOp::Open, e).at(path))?;
    let image = |source| IoHelperError::Image {
        path: path.to_path_buf(),
        source,
    };
    let (header, offset) = saveimage::read_header(&file).map_err(image)?;
    if matches!(header.format, SaveFormat::Raw | SaveFormat::Sparse) {
        let mut magic = [0u8; 4];
        let mut got = 0;
        while got < magic.len() {
            match file.read_at(&mut magic[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(IoHelperError::io(IoOp::Open, e).at(path)),
            }
        }
        if got < magic.len() || &magic != b"QEVM" {
            return Err(image(SaveImageError::Corrupted(
                "the migration stream does not start with QEMU's magic".into(),
            )));
        }
    }
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| IoHelperError::io(IoOp::Seek, e).at(path))?;
    Ok((file, header))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn feed(w: OwnedFd, data: Vec<u8>) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut f = File::from(w);
            let _ = f.write_all(&data);
        })
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    #[test]
    fn pipe_is_enlarged() {
        let (r, _w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
        assert!(pipe_capacity(&r).unwrap() >= PIPE_CAPACITY);
    }

    #[test]
    fn aligned_buffer_is_aligned() {
        let mut b = AlignedBuf::new(8192);
        let s = b.as_mut();
        assert_eq!(s.len(), 8192);
        assert_eq!(s.as_ptr().align_offset(DIRECT_ALIGN), 0);
    }

    #[test]
    fn blocking_copy_at_offset_with_small_buffer() {
        let data = pattern(100_000);
        let (r, w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
        let t = feed(w, data.clone());
        let f = tempfile::tempfile().unwrap();
        let progress = AtomicU64::new(0);
        let opts = CopyOptions {
            direct: false,
            buffer: 5000,
        };
        let n = copy_blocking(r.as_fd(), &f, 10, opts, &progress, None).unwrap();
        t.join().unwrap();
        assert_eq!(n, 100_000);
        assert_eq!(progress.load(Ordering::Relaxed), 100_000);
        let mut back = vec![0u8; 100_000];
        f.read_exact_at(&mut back, 10).unwrap();
        assert_eq!(back, data);
        assert_eq!(f.metadata().unwrap().len(), 100_010);
    }

    #[test]
    fn cancel_pipe_stops_a_blocked_copy() {
        let (r, _w) = pipe_with_capacity(PIPE_CAPACITY).unwrap();
        let (cr, cw) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let f = tempfile::tempfile().unwrap();
        let t = std::thread::spawn(move || {
            let progress = AtomicU64::new(0);
            copy_blocking(
                r.as_fd(),
                &f,
                0,
                CopyOptions::default(),
                &progress,
                Some(cr.as_fd()),
            )
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(cw);
        assert!(matches!(t.join().unwrap(), Err(IoHelperError::Cancelled)));
    }

    #[test]
    fn unaligned_offset_with_direct_is_refused() {
        let (r, _w) = pipe_with_capacity(4096).unwrap();
        let f = tempfile::tempfile().unwrap();
        let opts = CopyOptions {
            direct: true,
            ..CopyOptions::default()
        };
        let e = copy_blocking(r.as_fd(), &f, 100, opts, &AtomicU64::new(0), None).unwrap_err();
        assert!(matches!(e, IoHelperError::Unaligned { offset: 100 }));
    }

    #[tokio::test]
    async fn a_panicking_helper_thread_is_reported() {
        let r = tokio::task::spawn_blocking(|| -> Result<u64, IoHelperError> {
            panic!("injected fault")
        })
        .await;
        let e = join_helper(r).unwrap_err();
        assert!(
            matches!(e, IoHelperError::Panicked(ref m) if m == "injected fault"),
            "{e}"
        );
        assert_eq!(
            e.to_vir_error(ErrorDomain::Qemu).code,
            ErrorCode::InternalError
        );
    }

    #[test]
    fn error_messages_and_libvirt_mapping() {
        let e = IoHelperError::Io {
            op: IoOp::Sync,
            path: Some("/s/g.save".into()),
            source: io::Error::from_raw_os_error(libc::ENOSPC),
        };
        assert_eq!(e.errno(), Some(libc::ENOSPC));
        assert_eq!(
            e.to_string(),
            "unable to fsync '/s/g.save': No space left on device"
        );
        let v = e.to_vir_error(ErrorDomain::Qemu);
        assert_eq!(v.code, ErrorCode::OperationFailed);
        assert_eq!(
            v.message,
            "operation failed: unable to fsync '/s/g.save': No space left on device"
        );
        let e = IoHelperError::Io {
            op: IoOp::WriteHeader,
            path: Some("/s/g.save".into()),
            source: io::Error::from_raw_os_error(libc::EIO),
        };
        let v = e.to_vir_error(ErrorDomain::Qemu);
        assert_eq!(v.code, ErrorCode::SystemError);
        assert_eq!(v.int1, libc::EIO);
        assert_eq!(
            v.message,
            "failed to write header to domain save file '/s/g.save': Input/output error"
        );
        let v = IoHelperError::Image {
            path: "/x".into(),
            source: SaveImageError::Partial,
        }
        .to_vir_error(ErrorDomain::Qemu);
        assert_eq!(v.message, "operation failed: save image is incomplete");
        let v = IoHelperError::Cancelled.to_vir_error(ErrorDomain::Qemu);
        assert_eq!(v.code, ErrorCode::OperationAborted);
    }
}
