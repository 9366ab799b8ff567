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
//! answer; an unknown program or version gets an RPC error reply; REPLY/STREAM packets
//! from the client are ignored; a keepalive PING gets a PONG.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};
use vireo_actors::{Connection, Host};
use vireo_messages::{ErrorCode, ErrorDomain, VirError, VirResult};
use vireo_wire::packet::{
    self, HEADER_LEN, LEN_WORD, MessageStatus, MessageType, PROTOCOL_VERSION, REMOTE_PROGRAM,
    check_length_word,
};
use vireo_wire::{Header, Packet, RemoteError};

use crate::procs;
use crate::procs::events::EventState;

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
    out: mpsc::UnboundedSender<Bytes>,
    /// Event registrations and the event pump.
    pub events: Mutex<EventState>,
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
        let _ = self.out.send(frame);
    }

    /// A sender for the writer, for the event pump.
    pub fn sender(&self) -> mpsc::UnboundedSender<Bytes> {
        self.out.clone()
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

async fn write_loop<W: AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::UnboundedReceiver<Bytes>) {
    while let Some(frame) = rx.recv().await {
        if let Err(e) = wr.write_all(&frame).await {
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
pub async fn run<S>(stream: S, host: Host, listener: Listener, id: u64, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_loop(wr, rx));
    let session = Arc::new(Session {
        host,
        listener,
        id,
        conn: Mutex::new(None),
        read_only: AtomicBool::new(listener.read_only),
        out: tx,
        events: Mutex::new(EventState::default()),
    });
    let calls = TaskTracker::new();
    debug!(session = id, "client connected");
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = read_frame(&mut rd) => r,
        };
        match frame {
            Ok(Some(packet)) => handle_packet(&session, packet, &calls),
            Ok(None) => break,
            Err(e) => {
                info!(session = id, "closing the connection: {e}");
                break;
            }
        }
    }
    calls.close();
    calls.wait().await;
    procs::events::stop(&session);
    session.set_conn(None, false);
    drop(session);
    let _ = writer.await;
    debug!(session = id, "client gone");
}

fn handle_packet(session: &Arc<Session>, packet: Packet, calls: &TaskTracker) {
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
        // Replies, stream packets and holes from a client are ignored (no streams yet).
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
        s.send(frame);
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
