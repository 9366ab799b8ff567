//! Storage volume upload and download over libvirt's streams (libvirt-rpc.md §11).
//!
//! A test-driver volume has no file of its own, so its content is kept by the daemon
//! as a file under the instance's state directory
//! (`STATE/test/volume-data/POOL-UUID/VOLUME`): a virtual disk of `capacity` bytes
//! whose unwritten parts read as zeros. Upload writes into it, download reads it.
//!
//! The stream itself, for the call with serial N:
//! * download: REPLY OK, then STREAM CONTINUE packets of at most 262120 bytes, an empty
//!   CONTINUE for the end of data; the client confirms with STREAM OK and the daemon
//!   answers STREAM OK. At most [`WINDOW`] data packets wait for the socket at a time,
//!   so a slow client slows the reader of the file instead of filling memory.
//! * upload: REPLY OK, then the client's STREAM CONTINUE packets (each holds one of
//!   the connection's in-flight slots until written, so a slow disk throttles the
//!   client), and its STREAM OK; the daemon answers STREAM OK once the data is synced,
//!   or STREAM ERROR with the error.
//! * a client's STREAM ERROR aborts the transfer; the daemon answers STREAM OK.
//!
//! Sparse streams (flag 1, STREAM_HOLE packets) are refused with "unsupported flags".

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use vireo_actors::{Connection, VolKey, VolumeInfo};
use vireo_messages::{ErrorCode, ErrorDomain, VirError, VirResult};
use vireo_wire::packet::{
    MessageStatus, MessageType, STREAM_CHUNK_MAX, encode_stream, encode_stream_error,
};
use vireo_wire::procs::StorageVolTransferArgs;
use vireo_wire::{Header, RemoteError, RemoteProc as P};

use super::{Handled, args, void};
use crate::session::{Outgoing, Session, StreamIo};

/// Download data packets queued for the socket at once.
pub const WINDOW: usize = 4;

/// Handles this family's procedures.
pub async fn handle(s: &Arc<Session>, h: &Header, p: P, payload: &[u8]) -> Handled {
    if !matches!(p, P::StorageVolUpload | P::StorageVolDownload) {
        return None;
    }
    Some(match s.conn() {
        Ok(conn) => start(s, &conn, h, p, payload).await,
        Err(e) => Err(e),
    })
}

/// Where a volume's content lives.
fn data_path(conn: &Connection, pool_uuid: &str, vol: &str) -> VirResult<PathBuf> {
    let dir = conn.state_dir().ok_or_else(|| {
        VirError::no_support(
            ErrorDomain::Storage,
            "volume transfer needs a driver instance with a state directory",
        )
    })?;
    if vol.is_empty() || vol == "." || vol == ".." || vol.contains('/') {
        return Err(VirError::invalid_arg(
            ErrorDomain::Storage,
            format!("volume name '{vol}' cannot hold data"),
        ));
    }
    Ok(dir.join("volume-data").join(pool_uuid).join(vol))
}

/// Removes a volume's content (after the volume was deleted).
pub fn forget_data(conn: &Connection, pool_uuid: &str, vol: &str) {
    if let Ok(p) = data_path(conn, pool_uuid, vol) {
        let _ = std::fs::remove_file(p);
    }
}

async fn start(
    s: &Arc<Session>,
    conn: &Connection,
    h: &Header,
    p: P,
    payload: &[u8],
) -> VirResult<Bytes> {
    let a: StorageVolTransferArgs = args(payload)?;
    let api = if p == P::StorageVolUpload {
        "storageVolUpload"
    } else {
        "storageVolDownload"
    };
    if a.flags != 0 {
        return Err(VirError::unsupported_flags(
            ErrorDomain::Storage,
            a.flags,
            api,
        ));
    }
    let pool = conn.lookup_pool_by_name(&a.vol.pool)?;
    let vol: VolumeInfo = pool.lookup_volume(VolKey::Name(a.vol.name.clone())).await?;
    let path = data_path(conn, &pool.uuid().to_string(), &vol.name)?;
    if a.offset > vol.capacity {
        return Err(VirError::invalid_arg(
            ErrorDomain::Storage,
            format!(
                "offset {} is beyond the capacity of volume '{}' ({} bytes)",
                a.offset, vol.name, vol.capacity
            ),
        ));
    }
    // Bytes to move: `length` (0 = to the end), never past the capacity.
    let room = vol.capacity - a.offset;
    let span = if a.length == 0 {
        room
    } else {
        a.length.min(room)
    };
    let io = s.open_stream(h.serial);
    let session = s.clone();
    let call = *h;
    let offset = a.offset;
    let upload = p == P::StorageVolUpload;
    let limit = if a.length == 0 { room } else { a.length };
    tokio::spawn(async move {
        let r = if upload {
            upload_loop(io, &call, &path, offset, limit, room).await
        } else {
            download_loop(io, &call, &path, offset, span).await
        };
        if let Err(e) = r {
            tracing::debug!(
                session = session.id,
                serial = call.serial,
                "stream failed: {}",
                e.message
            );
        }
        session.close_stream(call.serial);
    });
    void()
}

fn stream_io_error(what: &str, path: &Path, e: &std::io::Error) -> VirError {
    VirError::system(
        ErrorDomain::Storage,
        format!("cannot {what} '{}'", path.display()),
        e,
    )
}

/// Sends a STREAM ERROR and returns the error.
fn fail(io: &StreamIo, call: &Header, e: VirError) -> VirResult<()> {
    let _ = io
        .out
        .send(encode_stream_error(call, &RemoteError::from(&e)).into());
    Err(e)
}

async fn download_loop(
    mut io: StreamIo,
    call: &Header,
    path: &Path,
    offset: u64,
    span: u64,
) -> VirResult<()> {
    if (&mut io.replied).await.is_err() {
        return Ok(());
    }
    let mut file = match tokio::fs::File::open(path).await {
        Ok(mut f) => match f.seek(std::io::SeekFrom::Start(offset)).await {
            Ok(_) => Some(f),
            Err(e) => return fail(&io, call, stream_io_error("seek in", path, &e)),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return fail(&io, call, stream_io_error("open", path, &e)),
    };
    let window = Arc::new(Semaphore::new(WINDOW));
    let mut left = span;
    let mut buf = vec![0u8; STREAM_CHUNK_MAX];
    while left > 0 {
        // The client may abort at any time.
        if let Ok(m) = io.rx.try_recv()
            && m.packet.header.status == MessageStatus::Error
        {
            let _ = io
                .out
                .send(encode_stream(call, MessageStatus::Ok, &[]).into());
            return Ok(());
        }
        let n = (left as usize).min(STREAM_CHUNK_MAX);
        let chunk = &mut buf[..n];
        // Read what the file has; past its end the virtual disk is zeros.
        let mut got = 0;
        if let Some(f) = file.as_mut() {
            while got < n {
                match f.read(&mut chunk[got..]).await {
                    Ok(0) => break,
                    Ok(k) => got += k,
                    Err(e) => return fail(&io, call, stream_io_error("read", path, &e)),
                }
            }
        }
        chunk[got..].fill(0);
        let Ok(slot) = window.clone().acquire_owned().await else {
            return Ok(());
        };
        let frame = encode_stream(call, MessageStatus::Continue, chunk);
        if io.out.send(Outgoing::with_slot(frame, slot)).is_err() {
            return Ok(());
        }
        left -= n as u64;
    }
    // End of data, then the finish handshake.
    if io
        .out
        .send(encode_stream(call, MessageStatus::Continue, &[]).into())
        .is_err()
    {
        return Ok(());
    }
    while let Some(m) = io.rx.recv().await {
        match m.packet.header.status {
            MessageStatus::Ok | MessageStatus::Error => {
                let _ = io
                    .out
                    .send(encode_stream(call, MessageStatus::Ok, &[]).into());
                return Ok(());
            }
            MessageStatus::Continue => {}
        }
    }
    Ok(())
}

async fn upload_loop(
    mut io: StreamIo,
    call: &Header,
    path: &Path,
    offset: u64,
    limit: u64,
    room: u64,
) -> VirResult<()> {
    let mut file: Option<tokio::fs::File> = None;
    let mut written: u64 = 0;
    while let Some(m) = io.rx.recv().await {
        let hd = m.packet.header;
        if hd.kind == MessageType::StreamHole {
            return fail(
                &io,
                call,
                VirError::with(
                    ErrorCode::InvalidArg,
                    ErrorDomain::Storage,
                    "holes are only allowed in sparse streams",
                ),
            );
        }
        match hd.status {
            MessageStatus::Continue => {
                let data = &m.packet.payload;
                if data.is_empty() {
                    continue;
                }
                if written + data.len() as u64 > limit.min(room) {
                    return fail(
                        &io,
                        call,
                        VirError::invalid_arg(
                            ErrorDomain::Storage,
                            if limit < room {
                                "stream data exceeds the requested length"
                            } else {
                                "stream data exceeds the volume capacity"
                            },
                        ),
                    );
                }
                if file.is_none() {
                    match open_for_write(path, offset).await {
                        Ok(f) => file = Some(f),
                        Err(e) => return fail(&io, call, e),
                    }
                }
                if let Some(f) = file.as_mut()
                    && let Err(e) = f.write_all(data).await
                {
                    return fail(&io, call, stream_io_error("write", path, &e));
                }
                written += data.len() as u64;
                // The slot goes back once the data is written.
                drop(m.slot);
            }
            MessageStatus::Ok => {
                if let Some(f) = file.as_mut()
                    && let Err(e) = f.sync_all().await
                {
                    return fail(&io, call, stream_io_error("sync", path, &e));
                }
                let _ = io
                    .out
                    .send(encode_stream(call, MessageStatus::Ok, &[]).into());
                return Ok(());
            }
            MessageStatus::Error => {
                // Aborted by the client: what was written stays, as with libvirt.
                let _ = io
                    .out
                    .send(encode_stream(call, MessageStatus::Ok, &[]).into());
                return Ok(());
            }
        }
    }
    Ok(())
}

async fn open_for_write(path: &Path, offset: u64) -> VirResult<tokio::fs::File> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| stream_io_error("create", dir, &e))?;
    }
    let mut f = tokio::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .await
        .map_err(|e| stream_io_error("open", path, &e))?;
    f.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(|e| stream_io_error("seek in", path, &e))?;
    Ok(f)
}
