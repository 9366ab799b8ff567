//! One client connection.
//!
//! Each accepted stream becomes a session task that owns a reader loop and a writer
//! task. The reader cuts the byte stream into frames (libvirt's framing: a length word
//! that counts itself, a 24-byte header, the payload) and hands every CALL to its own
//! task, so calls on one connection run concurrently; replies, events and keepalive
//! PONGs all go through one channel to the writer, which writes whole frames, so frames
//! never interleave and replies go out in completion order, matched by serial.
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
//! In-flight limit, as libvirtd's `max_client_requests`: the reader takes a slot before
//! it reads each packet; a CALL keeps its slot until its reply has been written, other
//! packets give it back at once, except upload STREAM data, which keeps it until the
//! stream has written it. A client with every slot taken is not read from until a
//! reply goes out (logged once per client).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use std::collections::HashMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use vireo_actors::{Connection, Host};
use vireo_messages::{ErrorCode, ErrorDomain, VirError, VirResult};
use vireo_wire::packet::{
    self, HEADER_LEN, LEN_WORD, MessageStatus, MessageType, PROTOCOL_VERSION, REMOTE_PROGRAM,
    check_length_word,
};
use vireo_wire::{Header, Packet, RemoteError};

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

/// The keepalive bookkeeping (libvirt's `intervalStart` and `countToDeath`).
struct Keepalive {
    /// The client asked for keepalive: the daemon pings it.
    started: bool,
    /// When the current interval began (last packet from the client, or last PING).
    interval_start: Instant,
    /// PINGs still allowed to go unanswered.
    count_to_death: u32,
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
    /// Event registrations and the event pump.
    pub events: Mutex<EventState>,
    limits: Limits,
    keepalive: Mutex<Keepalive>,
    keepalive_start: Notify,
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
    pub fn start_keepalive(&self) {
        let mut k = self.keepalive.lock().unwrap_or_else(|e| e.into_inner());
        if !k.started && self.limits.keepalive_interval > 0 {
            k.started = true;
            self.keepalive_start.notify_one();
        }
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

    /// A packet arrived from the client: the keepalive count starts over.
    fn packet_received(&self) {
        let mut k = self.keepalive.lock().unwrap_or_else(|e| e.into_inner());
        k.interval_start = Instant::now();
        k.count_to_death = self.limits.keepalive_count;
    }
}

/// Pings a silent client and cancels `dead` when it stopped answering; ends when
/// `done` (the session is over) or `dead` is cancelled.
async fn keepalive_loop(s: Arc<Session>, dead: CancellationToken, done: CancellationToken) {
    tokio::select! {
        _ = done.cancelled() => return,
        _ = dead.cancelled() => return,
        _ = s.keepalive_start.notified() => {}
    }
    let interval = Duration::from_secs(s.limits.keepalive_interval.max(1) as u64);
    loop {
        let due = s
            .keepalive
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .interval_start
            + interval;
        tokio::select! {
            _ = done.cancelled() => return,
            _ = dead.cancelled() => return,
            _ = tokio::time::sleep_until(due) => {}
        }
        let now = Instant::now();
        let mut k = s.keepalive.lock().unwrap_or_else(|e| e.into_inner());
        if now.duration_since(k.interval_start) < interval {
            continue;
        }
        if k.count_to_death == 0 {
            warn!(
                session = s.id,
                "connection closed due to keepalive timeout: no answer to {} keepalive messages",
                s.limits.keepalive_count
            );
            dead.cancel();
            return;
        }
        k.count_to_death -= 1;
        k.interval_start = now;
        drop(k);
        debug!(session = s.id, "sending keepalive request");
        s.send(packet::keepalive_ping());
    }
}

/// Reads one frame. `Ok(None)` at a clean end of stream before a frame starts; an error
/// for bad framing or a stream that ends inside a frame (the caller closes).
async fn read_frame<R: AsyncRead + Unpin>(rd: &mut R) -> std::io::Result<Option<Packet>> {
    let mut len = [0u8; LEN_WORD];
    let mut got = 0;
    while got < LEN_WORD {
        let n = rd.read(&mut len[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += n;
    }
    let word = u32::from_be_bytes(len);
    let size = check_length_word(word)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    let mut body = vec![0u8; size - LEN_WORD];
    rd.read_exact(&mut body).await?;
    debug_assert!(body.len() >= HEADER_LEN);
    Packet::from_body(Bytes::from(body))
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    dead: CancellationToken,
) {
    loop {
        let out = tokio::select! {
            _ = dead.cancelled() => break,
            o = rx.recv() => match o { Some(o) => o, None => break },
        };
        let r = tokio::select! {
            _ = dead.cancelled() => break,
            r = wr.write_all(&out.frame) => r,
        };
        // The slot is free once the reply is on its way.
        drop(out.slot);
        if let Err(e) = r {
            debug!("write failed: {e}");
            break;
        }
    }
    let _ = wr.shutdown().await;
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
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::unbounded_channel();
    // Cancelled when keepalive gives up on the client: drop it without further ado.
    let dead = CancellationToken::new();
    let writer = tokio::spawn(write_loop(wr, rx, dead.clone()));
    let session = Arc::new(Session {
        host,
        listener,
        id,
        conn: Mutex::new(None),
        read_only: AtomicBool::new(listener.read_only),
        out: tx,
        events: Mutex::new(EventState::default()),
        limits,
        keepalive: Mutex::new(Keepalive {
            started: false,
            interval_start: Instant::now(),
            count_to_death: limits.keepalive_count,
        }),
        keepalive_start: Notify::new(),
        streams: Mutex::new(HashMap::new()),
        reply_hooks: Mutex::new(HashMap::new()),
    });
    // Cancelled when the session is over, to stop the pinger.
    let done = CancellationToken::new();
    let pinger = tokio::spawn(keepalive_loop(session.clone(), dead.clone(), done.clone()));
    let slots = Arc::new(Semaphore::new(limits.max_client_requests.max(1)));
    let mut warned = false;
    let calls = TaskTracker::new();
    debug!(session = id, "client connected");
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !warned {
                    warned = true;
                    warn!(
                        session = id,
                        "client hit the max_client_requests limit ({}): not reading from it \
                         until a reply goes out (this may cause keepalive timeouts)",
                        limits.max_client_requests
                    );
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = dead.cancelled() => break,
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                }
            }
        };
        let frame = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = dead.cancelled() => break,
            r = read_frame(&mut rd) => r,
        };
        match frame {
            Ok(Some(packet)) => {
                session.packet_received();
                handle_packet(&session, packet, &calls, slot);
            }
            Ok(None) => break,
            Err(e) => {
                info!(session = id, "closing the connection: {e}");
                break;
            }
        }
    }
    calls.close();
    if !dead.is_cancelled() {
        // Answer the calls already read (a dead client gets nothing more).
        calls.wait().await;
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
    let _ = pinger.await;
    drop(session);
    let _ = writer.await;
    debug!(session = id, "client gone");
}

fn handle_packet(
    session: &Arc<Session>,
    packet: Packet,
    calls: &TaskTracker,
    slot: OwnedSemaphorePermit,
) {
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
            session.send(packet::encode_message(&reply, &RemoteError::from(&e)));
            return;
        }
        MessageType::Message => {
            if h.is_ping() {
                session.send(packet::keepalive_pong());
            }
            return;
        }
        MessageType::Stream | MessageType::StreamHole if h.prog == REMOTE_PROGRAM => {
            session.route_stream(packet, slot);
            return;
        }
        // Replies (and stream packets of other programs) from a client are ignored.
        _ => return,
    }
    if h.prog != REMOTE_PROGRAM || h.vers != PROTOCOL_VERSION {
        let e = rpc_error(format!("Cannot find program {} version {}", h.prog, h.vers));
        session.send(packet::encode_error_reply(&h, &RemoteError::from(&e)));
        return;
    }
    let s = session.clone();
    calls.spawn(async move {
        let frame = procs::call(&s, h, packet.payload).await;
        let _ = s.out.send(Outgoing {
            frame,
            slot: Some(slot),
        });
        // A stream procedure waits for its REPLY to be queued before sending data.
        let hook = s
            .reply_hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&h.serial);
        if let Some(hook) = hook {
            let _ = hook.send(());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn framing_rules() {
        let frame = packet::keepalive_ping();
        let mut r: &[u8] = &frame;
        assert!(read_frame(&mut r).await.unwrap().unwrap().header.is_ping());
        let mut r: &[u8] = &[];
        assert!(read_frame(&mut r).await.unwrap().is_none());
        let mut r: &[u8] = &[0, 0, 0, 27, 1, 2];
        assert!(read_frame(&mut r).await.is_err());
        let mut r: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut r).await.is_err());
        let mut r: &[u8] = &frame[..20];
        assert!(read_frame(&mut r).await.is_err());
        let mut r: &[u8] = &[0, 0];
        assert!(read_frame(&mut r).await.is_err());
    }
}
