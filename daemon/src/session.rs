//! One client connection.
//!
//! Each accepted stream becomes one session task that both reads and writes the
//! socket. It reads as much as the socket has (4 KiB at a time at first, up to 64 KiB
//! for a client that sends more) and cuts the bytes into frames (libvirt's framing: a
//! length word that counts itself, a 24-byte header, the payload). A *quick* CALL (see [`procs::is_quick`]: lookups, lists,
//! info, getters that read the directories) is tried right in the session task and,
//! when it completes without waiting, answered from there: no task, no thread
//! hand-off. Every other CALL, and a quick one that has to wait after all (e.g. for a
//! live domain's actor), runs as a task of its own, so calls on one connection run
//! concurrently and a slow call never holds up a fast one. Replies, events, stream
//! data and keepalive PINGs from other tasks come through one channel; the session
//! task queues them with its own answers and writes whole frames in queue order,
//! several per (vectored) write, so frames never interleave and replies go out in
//! completion order, matched by serial.
//!
//! Protocol-level answers (libvirt-rpc.md §2 and §4): bad framing (length word below
//! 28 or above 32 MiB + 4, or an undecodable header) closes the connection without an
//! answer; an unknown program or version gets an RPC error reply; REPLY packets from
//! the client are ignored; a keepalive PING gets a PONG. STREAM (and STREAM_HOLE)
//! packets go to the stream their serial names, opened by a stream procedure (see
//! `procs::transfer`); packets for no open stream are dropped, as libvirt does.
//!
//! Keepalive, as libvirtd's virkeepalive does it: once the client has asked
//! CONNECT_SUPPORTS_FEATURE(KEEPALIVE), the daemon sends a PING after
//! `keepalive_interval` seconds without any packet from the client, then one PING per
//! interval; any packet from the client resets the count. When `keepalive_count` PINGs
//! went unanswered and one more interval passed, the connection is dropped (no answer
//! to calls in flight). Clients that never asked are never pinged.
//!
//! In-flight limit, as libvirtd's `max_client_requests`: the session takes a slot
//! before it handles each packet; a CALL keeps its slot until its reply has been
//! written, other packets give it back at once, except upload STREAM data, which keeps
//! it until the stream has written it. A client with every slot taken is not read from
//! (beyond the frame already buffered) until a reply goes out (logged once per client).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::task::AtomicWaker;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::{CancellationToken, PollSemaphore};
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use vireo_actors::{Connection, Host};
use vireo_messages::{ErrorCode, ErrorDomain, VirError, VirResult};
use vireo_wire::packet::{
    self, HEADER_LEN, LEN_WORD, MessageStatus, MessageType, PROTOCOL_VERSION, REMOTE_PROGRAM,
    check_length_word,
};
use vireo_wire::{Header, Packet, RemoteError, RemoteProc};

use crate::config::Limits;
use crate::procs;
use crate::procs::events::EventState;

/// One frame for the writer, with the in-flight slot it frees once written.
pub struct Outgoing {
    frame: Bytes,
    slot: Option<OwnedSemaphorePermit>,
}

impl From<Bytes> for Outgoing {
    fn from(frame: Bytes) -> Outgoing {
        Outgoing { frame, slot: None }
    }
}

impl Outgoing {
    /// A frame that holds `slot` until it has been written (stream flow control).
    pub fn with_slot(frame: Bytes, slot: OwnedSemaphorePermit) -> Outgoing {
        Outgoing {
            frame,
            slot: Some(slot),
        }
    }
}

/// A STREAM packet from the client for an open stream, with the in-flight slot it
/// holds until the stream has consumed it (so a slow consumer throttles the reader).
pub struct StreamIn {
    /// The packet (type STREAM or STREAM_HOLE, status CONTINUE/OK/ERROR).
    pub packet: Packet,
    /// Released when dropped.
    pub slot: OwnedSemaphorePermit,
}

/// What a stream procedure gets when it opens its stream.
pub struct StreamIo {
    /// The client's packets for this stream, in order; closed with the connection.
    pub rx: mpsc::UnboundedReceiver<StreamIn>,
    /// Fires once the call's REPLY is queued, so stream data goes out after it.
    pub replied: oneshot::Receiver<()>,
    /// The writer, for stream packets (an [`Outgoing`] may carry a flow-control slot).
    pub out: mpsc::UnboundedSender<Outgoing>,
}

/// The keepalive bookkeeping (libvirt's `intervalStart` and `countToDeath`), timed by
/// [`crate::keepalive`].
pub(crate) struct Keepalive {
    /// The client asked for keepalive: the daemon pings it.
    started: bool,
    /// When the current interval began (last packet from the client, or last PING).
    pub(crate) interval_start: Instant,
    /// PINGs still allowed to go unanswered.
    pub(crate) count_to_death: u32,
}

/// How a session was accepted.
#[derive(Debug, Clone, Copy)]
pub struct Listener {
    /// Accepted on the read-only socket: every connection is read-only.
    pub read_only: bool,
    /// `CONNECT_IS_SECURE` answer: 1 for UNIX sockets, 0 for plain TCP.
    pub secure: bool,
}

/// The per-connection state shared by the reader, the call tasks and the event pump.
pub struct Session {
    /// The host all connections share.
    pub host: Host,
    /// How the connection was accepted.
    pub listener: Listener,
    /// A short id for logs.
    pub id: u64,
    conn: Mutex<Option<Connection>>,
    read_only: AtomicBool,
    out: mpsc::UnboundedSender<Outgoing>,
    /// Event registrations and the subscription.
    pub events: Mutex<EventState>,
    /// Wakes the session task when the event subscription starts.
    pub events_ready: AtomicWaker,
    limits: Limits,
    keepalive: Mutex<Keepalive>,
    /// Cancelled when keepalive gives up on the client: it is dropped at once.
    dead: CancellationToken,
    /// Cancelled when the session is over.
    done: CancellationToken,
    streams: Mutex<HashMap<u32, mpsc::UnboundedSender<StreamIn>>>,
    reply_hooks: Mutex<HashMap<u32, oneshot::Sender<()>>>,
}

impl Session {
    /// The open connection, or libvirt's "not open" error.
    pub fn conn(&self) -> VirResult<Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| VirError::internal(ErrorDomain::Rpc, "hypervisor connection not open"))
    }

    /// Whether CONNECT_OPEN has succeeded.
    pub fn is_open(&self) -> bool {
        self.conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Installs (or, with `None`, drops) the connection.
    pub fn set_conn(&self, conn: Option<Connection>, read_only: bool) {
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = conn;
        self.read_only
            .store(read_only || self.listener.read_only, Ordering::SeqCst);
    }

    /// Whether mutating procedures are refused.
    pub fn read_only(&self) -> bool {
        self.listener.read_only || self.read_only.load(Ordering::SeqCst)
    }

    /// Queues a whole frame for the writer.
    pub fn send(&self, frame: Bytes) {
        let _ = self.out.send(frame.into());
    }

    /// A sender for the writer, for the event pump.
    pub fn sender(&self) -> mpsc::UnboundedSender<Outgoing> {
        self.out.clone()
    }

    /// The client asked for keepalive (CONNECT_SUPPORTS_FEATURE 10): from now on the
    /// daemon pings it when it is silent, unless pings are disabled by configuration.
    pub fn start_keepalive(self: &Arc<Self>) {
        let mut k = self.keepalive.lock().unwrap_or_else(|e| e.into_inner());
        if !k.started && self.limits.keepalive_interval > 0 {
            k.started = true;
            drop(k);
            crate::keepalive::watch(self);
        }
    }

    /// The keepalive bookkeeping, for the keepalive clock.
    pub(crate) fn keepalive_state(&self) -> std::sync::MutexGuard<'_, Keepalive> {
        self.keepalive.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This session's limits and keepalive settings.
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether the session has ended (or keepalive gave up on it).
    pub(crate) fn is_over(&self) -> bool {
        self.done.is_cancelled() || self.dead.is_cancelled()
    }

    /// Keepalive gives up on the client: the connection is dropped without answers.
    pub(crate) fn give_up(&self) {
        self.dead.cancel();
    }

    /// Opens the stream of the call with serial `serial`: the client's STREAM packets
    /// with that serial are routed to the returned receiver until [`Session::close_stream`].
    pub fn open_stream(&self, serial: u32) -> StreamIo {
        let (tx, rx) = mpsc::unbounded_channel();
        let (hook, replied) = oneshot::channel();
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(serial, tx);
        self.reply_hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(serial, hook);
        StreamIo {
            rx,
            replied,
            out: self.out.clone(),
        }
    }

    /// Forgets a stream: later packets with its serial are dropped (as libvirt does).
    pub fn close_stream(&self, serial: u32) {
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&serial);
    }

    fn route_stream(&self, packet: Packet, slot: OwnedSemaphorePermit) {
        let serial = packet.header.serial;
        let tx = self
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&serial)
            .cloned();
        match tx {
            Some(tx) => {
                let _ = tx.send(StreamIn { packet, slot });
            }
            None => debug!(
                session = self.id,
                serial, "stream packet for no open stream dropped"
            ),
        }
    }

    /// Queues the reply of call `serial`, which frees `slot` once written.
    fn reply(&self, serial: u32, frame: Bytes, slot: OwnedSemaphorePermit) {
        let _ = self.out.send(Outgoing {
            frame,
            slot: Some(slot),
        });
        self.replied(serial);
    }

    /// The reply of call `serial` is queued: a stream procedure waiting for that
    /// (before it sends data) may go on.
    fn replied(&self, serial: u32) {
        let mut hooks = self.reply_hooks.lock().unwrap_or_else(|e| e.into_inner());
        if hooks.is_empty() {
            return;
        }
        if let Some(hook) = hooks.remove(&serial) {
            let _ = hook.send(());
        }
    }

    /// A packet arrived from the client: the keepalive count starts over.
    fn packet_received(&self) {
        let mut k = self.keepalive.lock().unwrap_or_else(|e| e.into_inner());
        k.interval_start = Instant::now();
        k.count_to_death = self.limits.keepalive_count;
    }
}

/// Cuts one frame off the front of `buf`. `Ok(None)` while `buf` does not hold a whole
/// frame yet; an error for bad framing (the caller closes). The length word is checked
/// as soon as it is in, so an oversize frame is refused before it is read.
fn cut_frame(buf: &mut BytesMut) -> std::io::Result<Option<Packet>> {
    let Some(size) = frame_size(buf)? else {
        return Ok(None);
    };
    if buf.len() < size {
        return Ok(None);
    }
    let body = buf.split_to(size).freeze().slice(LEN_WORD..);
    debug_assert!(body.len() >= HEADER_LEN);
    Packet::from_body(body)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

/// The size of the frame at the front of `buf` (length word included), once its
/// length word is in.
fn frame_size(buf: &[u8]) -> std::io::Result<Option<usize>> {
    let Some(word) = buf.get(..LEN_WORD) else {
        return Ok(None);
    };
    let word = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
    check_length_word(word)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

/// The most the reader asks the socket for at once.
const READ_CHUNK: usize = 64 * 1024;
/// What it asks for at first: an idle connection keeps a small buffer; the read size
/// doubles (up to [`READ_CHUNK`]) whenever a read fills the whole buffer.
const READ_MIN: usize = 4 * 1024;
/// Most frames handed to one vectored write.
const WRITE_SLICES: usize = 64;

/// Why a session stopped reading.
enum Stop {
    /// The client closed its end between frames.
    Eof,
    /// Bad framing, a stream that ended inside a frame, or a read error.
    Broken(std::io::Error),
    /// The in-flight semaphore was closed (cannot happen while the session runs).
    NoSlots,
}

/// The socket side of a session, driven by the session task alone: a read buffer cut
/// into frames, and the frames waiting to be written. Everything queued for the
/// client (replies answered in the session task, replies of spawned calls, events,
/// stream data, PINGs) is written in queue order, several frames per vectored write,
/// so frames never interleave and a burst of replies costs one system call.
struct Wire<S> {
    io: S,
    rbuf: BytesMut,
    /// How much to ask the socket for (grows from [`READ_MIN`] to [`READ_CHUNK`]).
    read_size: usize,
    /// Frames to write; the first may be partly written already.
    queue: VecDeque<Outgoing>,
    /// Bytes of `queue[0]` already written.
    head_written: usize,
    rx: mpsc::UnboundedReceiver<Outgoing>,
    rx_open: bool,
    /// A write failed: the client is not reading any more; output is dropped.
    write_failed: bool,
    slots: PollSemaphore,
    /// A frame is in the buffer but every in-flight slot is taken.
    waiting_for_slot: bool,
    warned: bool,
    max_client_requests: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    /// Queues a frame for writing (dropped if the client stopped reading).
    fn queue(&mut self, out: Outgoing) {
        if !self.write_failed {
            self.queue.push_back(out);
        }
    }

    /// Takes everything other tasks queued for the client. True if anything came.
    fn pull(&mut self, cx: &mut Context<'_>) -> bool {
        let mut got = false;
        while self.rx_open {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(out)) => {
                    self.queue(out);
                    got = true;
                }
                Poll::Ready(None) => self.rx_open = false,
                Poll::Pending => break,
            }
        }
        got
    }

    /// Writes as much of the queue as the socket takes. True if anything was written.
    fn push(&mut self, cx: &mut Context<'_>) -> bool {
        let mut wrote = false;
        while !self.queue.is_empty() && !self.write_failed {
            let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
            let mut n = 0;
            for (i, out) in self.queue.iter().take(WRITE_SLICES).enumerate() {
                let skip = if i == 0 { self.head_written } else { 0 };
                slices[n] = IoSlice::new(&out.frame[skip..]);
                n += 1;
            }
            match Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => self.fail_writes("the socket accepted no bytes".into()),
                Poll::Ready(Ok(mut written)) => {
                    wrote = true;
                    while written > 0 {
                        let left = self.queue[0].frame.len() - self.head_written;
                        if written >= left {
                            written -= left;
                            self.head_written = 0;
                            // The slot is free once the reply is on its way.
                            if let Some(out) = self.queue.pop_front() {
                                drop(out.slot);
                            }
                        } else {
                            self.head_written += written;
                            written = 0;
                        }
                    }
                }
                Poll::Ready(Err(e)) => self.fail_writes(e.to_string()),
                Poll::Pending => break,
            }
        }
        wrote
    }

    fn fail_writes(&mut self, why: String) {
        debug!("write failed: {why}");
        self.write_failed = true;
        self.queue.clear();
        self.head_written = 0;
    }

    /// Reads what the socket has into the buffer.
    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        // The rest of a large frame is read in one piece.
        let frame_left = frame_size(&self.rbuf)
            .ok()
            .flatten()
            .map_or(0, |size| size.saturating_sub(self.rbuf.len()));
        if self.rbuf.capacity() - self.rbuf.len() < self.read_size.min(frame_left.max(1024)) {
            self.rbuf.reserve(self.read_size.max(frame_left));
        }
        let spare = self.rbuf.capacity() - self.rbuf.len();
        let r = tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf);
        if let Poll::Ready(Ok(n)) = r
            && n == spare
        {
            self.read_size = (self.read_size * 2).min(READ_CHUNK);
        }
        r
    }

    /// Takes an in-flight slot for the next packet, if one is free.
    fn slot(&mut self, cx: &mut Context<'_>, id: u64) -> Poll<Option<OwnedSemaphorePermit>> {
        if let Ok(p) = self.slots.clone_inner().try_acquire_owned() {
            return Poll::Ready(Some(p));
        }
        if !self.warned {
            self.warned = true;
            warn!(
                session = id,
                "client hit the max_client_requests limit ({}): not reading from it \
                 until a reply goes out (this may cause keepalive timeouts)",
                self.max_client_requests
            );
        }
        self.slots.poll_acquire(cx)
    }

    /// Serves the client: reads and handles frames, writes what is queued. Ready when
    /// reading is over.
    fn poll_serve(
        &mut self,
        cx: &mut Context<'_>,
        session: &Arc<Session>,
        calls: &TaskTracker,
    ) -> Poll<Stop> {
        loop {
            let mut progress = self.pull(cx);
            progress |= self.events(cx, session);
            let mut received = false;
            // Handle every whole frame already read, a slot each.
            self.waiting_for_slot = false;
            loop {
                match frame_size(&self.rbuf) {
                    Err(e) => return Poll::Ready(Stop::Broken(e)),
                    Ok(Some(size)) if self.rbuf.len() >= size => {}
                    Ok(_) => break,
                }
                let slot = match self.slot(cx, session.id) {
                    Poll::Ready(Some(p)) => p,
                    Poll::Ready(None) => return Poll::Ready(Stop::NoSlots),
                    Poll::Pending => {
                        self.waiting_for_slot = true;
                        break;
                    }
                };
                let packet = match cut_frame(&mut self.rbuf) {
                    Ok(Some(p)) => p,
                    Ok(None) => unreachable!("a whole frame is in the buffer"),
                    Err(e) => return Poll::Ready(Stop::Broken(e)),
                };
                received = true;
                progress = true;
                if let Some(out) = handle_packet(session, packet, calls, slot) {
                    // What spawned calls queued before this answer goes out first.
                    self.pull(cx);
                    self.queue(out);
                }
            }
            if received {
                session.packet_received();
            }
            progress |= self.push(cx);
            if !self.waiting_for_slot {
                match self.fill(cx) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(if self.rbuf.is_empty() {
                            Stop::Eof
                        } else {
                            Stop::Broken(std::io::ErrorKind::UnexpectedEof.into())
                        });
                    }
                    Poll::Ready(Ok(_)) => progress = true,
                    Poll::Ready(Err(e)) => return Poll::Ready(Stop::Broken(e)),
                    Poll::Pending => {}
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// Queues the frames of the events waiting for the session. True if any came.
    fn events(&mut self, cx: &mut Context<'_>, session: &Session) -> bool {
        let Wire {
            queue,
            write_failed,
            ..
        } = self;
        procs::events::deliver(session, cx, |frame| {
            if !*write_failed {
                queue.push_back(frame.into());
            }
        })
    }

    /// Only writes (reading is over), and delivers events while `session` is given.
    /// Ready once nothing can be queued any more (every sender is gone) and the queue
    /// is written, or writing failed.
    fn poll_drain(&mut self, cx: &mut Context<'_>, session: Option<&Session>) -> Poll<()> {
        loop {
            let mut progress = self.pull(cx);
            if let Some(s) = session {
                progress |= self.events(cx, s);
            }
            progress |= self.push(cx);
            if (!self.rx_open && self.queue.is_empty()) || self.write_failed {
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}

/// An RPC-level error (code 39, domain 7, the text as message).
pub fn rpc_error(text: impl Into<String>) -> VirError {
    VirError::with(ErrorCode::Rpc, ErrorDomain::Rpc, text)
}

/// Serves one client until it disconnects, sends bad framing, or `shutdown` fires; in
/// every case the calls already read are answered before the connection closes.
pub async fn run<S>(
    stream: S,
    host: Host,
    listener: Listener,
    limits: Limits,
    id: u64,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    // Cancelled when keepalive gives up on the client: drop it without further ado.
    let dead = CancellationToken::new();
    // Cancelled when the session is over (the keepalive clock then forgets it).
    let done = CancellationToken::new();
    let session = Arc::new(Session {
        host,
        listener,
        id,
        conn: Mutex::new(None),
        read_only: AtomicBool::new(listener.read_only),
        out: tx,
        events: Mutex::new(EventState::default()),
        events_ready: AtomicWaker::new(),
        limits,
        keepalive: Mutex::new(Keepalive {
            started: false,
            interval_start: Instant::now(),
            count_to_death: limits.keepalive_count,
        }),
        dead: dead.clone(),
        done: done.clone(),
        streams: Mutex::new(HashMap::new()),
        reply_hooks: Mutex::new(HashMap::new()),
    });
    let mut wire = Wire {
        io: stream,
        rbuf: BytesMut::with_capacity(READ_MIN),
        read_size: READ_MIN,
        queue: VecDeque::new(),
        head_written: 0,
        rx,
        rx_open: true,
        write_failed: false,
        slots: PollSemaphore::new(Arc::new(Semaphore::new(limits.max_client_requests.max(1)))),
        waiting_for_slot: false,
        warned: false,
        max_client_requests: limits.max_client_requests,
    };
    let calls = TaskTracker::new();
    debug!(session = id, "client connected");
    let stop = tokio::select! {
        biased;
        stop = std::future::poll_fn(|cx| wire.poll_serve(cx, &session, &calls)) => Some(stop),
        _ = shutdown.cancelled() => None,
        _ = dead.cancelled() => None,
    };
    match stop {
        Some(Stop::Broken(e)) => info!(session = id, "closing the connection: {e}"),
        Some(Stop::Eof | Stop::NoSlots) | None => {}
    }
    calls.close();
    if !dead.is_cancelled() {
        // Answer the calls already read (a dead client gets nothing more), writing
        // meanwhile.
        tokio::select! {
            _ = calls.wait() => {}
            _ = dead.cancelled() => {}
            _ = std::future::poll_fn(|cx| {
                // Ready only when writing failed: then just wait for the calls.
                match wire.poll_drain(cx, Some(&session)) {
                    Poll::Ready(()) if wire.write_failed => Poll::Ready(()),
                    _ => Poll::Pending,
                }
            }) => { calls.wait().await; }
        }
    }
    procs::events::stop(&session);
    session.set_conn(None, false);
    // Open streams see their channel close and give up.
    session
        .streams
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    done.cancel();
    drop(session);
    if !dead.is_cancelled() {
        tokio::select! {
            _ = std::future::poll_fn(|cx| wire.poll_drain(cx, None)) => {}
            _ = dead.cancelled() => {}
        }
    }
    let _ = wire.io.shutdown().await;
    debug!(session = id, "client gone");
}

/// Handles one packet from the client. Returns the answer when it is ready at once
/// (protocol answers, and quick procedures that completed without waiting); other
/// calls run as tasks of their own and queue their reply when done.
fn handle_packet(
    session: &Arc<Session>,
    packet: Packet,
    calls: &TaskTracker,
    slot: OwnedSemaphorePermit,
) -> Option<Outgoing> {
    let h = packet.header;
    match h.kind {
        MessageType::Call => {}
        MessageType::CallWithFds => {
            // No descriptor passing here: answer with a plain REPLY error.
            let reply = Header {
                kind: MessageType::Reply,
                status: MessageStatus::Error,
                ..h
            };
            let e = rpc_error("file descriptor passing is not supported");
            return Some(packet::encode_message(&reply, &RemoteError::from(&e)).into());
        }
        MessageType::Message => {
            return h.is_ping().then(|| packet::keepalive_pong().into());
        }
        MessageType::Stream | MessageType::StreamHole if h.prog == REMOTE_PROGRAM => {
            session.route_stream(packet, slot);
            return None;
        }
        // Replies (and stream packets of other programs) from a client are ignored.
        _ => return None,
    }
    if h.prog != REMOTE_PROGRAM || h.vers != PROTOCOL_VERSION {
        let e = rpc_error(format!("Cannot find program {} version {}", h.prog, h.vers));
        return Some(packet::encode_error_reply(&h, &RemoteError::from(&e)).into());
    }
    let quick = RemoteProc::from_i32(h.proc_).is_some_and(procs::is_quick);
    if quick {
        // Try it right here: a quick procedure that completes without waiting (a
        // directory read) costs no task and no thread hand-off. One that has to wait
        // (e.g. for a live domain actor) goes on as a task of its own, so it never
        // holds up the next packet.
        let s = session.clone();
        let mut call = Box::pin(async move { procs::call(&s, h, packet.payload).await });
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        if let Poll::Ready(frame) = call.as_mut().poll(&mut cx) {
            session.replied(h.serial);
            return Some(Outgoing {
                frame,
                slot: Some(slot),
            });
        }
        let s = session.clone();
        calls.spawn(async move {
            let frame = call.await;
            s.reply(h.serial, frame, slot);
        });
        return None;
    }
    let s = session.clone();
    // Boxed: the task then holds a pointer, not the whole (several KiB) procedure
    // future, which tokio would copy on every move into and out of the task.
    calls.spawn(Box::pin(async move {
        let frame = procs::call(&s, h, packet.payload).await;
        s.reply(h.serial, frame, slot);
    }));
    None
}
#[cfg(test)]
mod tests {
    use super::*;

    fn cut(bytes: &[u8]) -> std::io::Result<Option<Packet>> {
        cut_frame(&mut BytesMut::from(bytes))
    }

    #[test]
    fn framing_rules() {
        let frame = packet::keepalive_ping();
        assert!(cut(&frame).unwrap().unwrap().header.is_ping());
        assert!(cut(&[]).unwrap().is_none());
        assert!(cut(&[0, 0]).unwrap().is_none(), "wait for the length word");
        assert!(
            cut(&frame[..20]).unwrap().is_none(),
            "wait for the whole frame"
        );
        assert!(cut(&[0, 0, 0, 27, 1, 2]).is_err(), "too small");
        assert!(cut(&[0x7f, 0xff, 0xff, 0xff]).is_err(), "too large");
        // Two frames in one buffer come out one at a time, the rest stays.
        let mut two = BytesMut::from(&frame[..]);
        two.extend_from_slice(&frame);
        two.extend_from_slice(&frame[..3]);
        assert!(cut_frame(&mut two).unwrap().is_some());
        assert!(cut_frame(&mut two).unwrap().is_some());
        assert!(cut_frame(&mut two).unwrap().is_none());
        assert_eq!(two.len(), 3);
    }
}
