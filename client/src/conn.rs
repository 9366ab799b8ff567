//! One connection to a libvirt-protocol daemon and the two tasks that serve it.
//!
//! A [`Client`] is a cheap handle (clone it freely) on one connection. Calls pick a
//! fresh serial, register a one-shot slot under it, and hand their frame to the
//! *writer* task, which coalesces whatever frames are queued into one write. The
//! *reader* task cuts the incoming byte stream into packets and routes each: a REPLY
//! to the slot of its serial, an event MESSAGE to the channel of its callback id, a
//! keepalive PING to a PONG. So any number of calls can be in flight on one
//! connection, and their replies may come back in any order.
//!
//! When the connection ends (either side closes it, or a framing error), every call in
//! flight fails with [`ClientError::Closed`] and every event channel ends.
//! Dropping the last handle closes the write side, which makes the server close too.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;
use tracing::{debug, warn};
use vireo_wire::packet::{
    FRAME_MAX, MessageType, PacketCodec, REMOTE_PROGRAM, decode_reply, encode_call, keepalive_pong,
};
use vireo_wire::procs::{
    AuthListRet, CallbackIdArgs, CallbackIdRet, ConnectDomainEventCallbackRegisterAnyArgs,
    ConnectOpenArgs, ConnectSupportsFeatureArgs, ConnectSupportsFeatureRet, Procedure,
};
use vireo_wire::types::{AuthType, NonnullDomain};
use vireo_wire::{Packet, RemoteProc, XdrDecode, XdrEncode};

use crate::error::ClientError;
use crate::event::{Event, decode_event};

/// How to open the connection (the CONNECT_OPEN arguments).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// The connection name, e.g. `test:///default`; `None` lets the daemon choose.
    pub name: Option<String>,
    /// Open read-only (`VIR_CONNECT_RO`).
    pub read_only: bool,
}

impl OpenOptions {
    /// Read-write options for the connection name `name`.
    pub fn new(name: &str) -> OpenOptions {
        OpenOptions {
            name: Some(name.to_string()),
            read_only: false,
        }
    }
}

enum Outgoing {
    Frame(Bytes),
    Shutdown,
}

type ReplySlot = oneshot::Sender<Result<Packet, ClientError>>;

enum Pending {
    Call(ReplySlot),
    /// An event registration: on success the reader records the callback id before
    /// it reads the next packet, so no event for it can be missed.
    Register(ReplySlot, mpsc::UnboundedSender<Event>),
}

#[derive(Default)]
struct State {
    pending: HashMap<u32, Pending>,
    callbacks: HashMap<i32, mpsc::UnboundedSender<Event>>,
    closed: Option<String>,
}

struct Shared {
    serial: AtomicU32,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the connection closed: fails every call in flight and ends every event
    /// channel. The first reason wins.
    fn close(&self, reason: String) {
        let (pending, callbacks) = {
            let mut st = self.lock();
            if st.closed.is_none() {
                st.closed = Some(reason);
            }
            (
                std::mem::take(&mut st.pending),
                std::mem::take(&mut st.callbacks),
            )
        };
        let reason = self.lock().closed.clone().unwrap_or_default();
        for (_, p) in pending {
            let slot = match p {
                Pending::Call(s) | Pending::Register(s, _) => s,
            };
            let _ = slot.send(Err(ClientError::Closed(reason.clone())));
        }
        drop(callbacks);
    }
}

/// A connection to a daemon speaking libvirt's remote protocol. Cloning gives another
/// handle on the same connection.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Outgoing>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("closed", &self.shared.lock().closed)
            .finish_non_exhaustive()
    }
}

/// The events of one registration.
#[derive(Debug)]
pub struct EventStream {
    /// The id the server assigned (deregister with it).
    pub callback_id: i32,
    rx: mpsc::UnboundedReceiver<Event>,
}

impl EventStream {
    /// The next event; `None` once the connection is closed.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// An event if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

impl Client {
    /// Connects as a libvirt client would for `uri` (e.g.
    /// `test+unix:///default?socket=/run/x/libvirt-sock`, `qemu+tcp://host/system`):
    /// the transport part picks the socket, the rest is the connection name.
    pub async fn connect_uri(uri: &str, read_only: bool) -> Result<Client, ClientError> {
        use crate::uri::{RemoteUri, Transport};
        let u = RemoteUri::parse(uri, read_only)?;
        let opts = OpenOptions {
            name: Some(u.name),
            read_only,
        };
        match u.transport {
            Transport::Unix(path) => Client::connect_unix_with(path, &opts).await,
            Transport::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(&addr)
                    .await
                    .map_err(|source| ClientError::Connect { addr, source })?;
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                Client::open_halves(r, w, &opts).await
            }
        }
    }

    /// Connects to a unix socket and opens the connection `name` (e.g.
    /// `test:///default`).
    pub async fn connect_unix(path: impl AsRef<Path>, name: &str) -> Result<Client, ClientError> {
        Client::connect_unix_with(path, &OpenOptions::new(name)).await
    }

    /// Connects to a unix socket and opens a connection with `opts`.
    pub async fn connect_unix_with(
        path: impl AsRef<Path>,
        opts: &OpenOptions,
    ) -> Result<Client, ClientError> {
        let path = path.as_ref();
        let s = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|source| ClientError::Connect {
                addr: path.display().to_string(),
                source,
            })?;
        let (r, w) = s.into_split();
        Client::open_halves(r, w, opts).await
    }

    /// Connects over plain TCP (`host:port`) and opens the connection `name`.
    pub async fn connect_tcp(addr: &str, name: &str) -> Result<Client, ClientError> {
        let s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = s.set_nodelay(true);
        let (r, w) = s.into_split();
        Client::open_halves(r, w, &OpenOptions::new(name)).await
    }

    /// Runs the protocol over any byte stream and opens a connection with `opts`.
    pub async fn open_stream<S>(stream: S, opts: &OpenOptions) -> Result<Client, ClientError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (r, w) = tokio::io::split(stream);
        Client::open_halves(r, w, opts).await
    }

    /// Runs the protocol over a read half and a write half and does the handshake:
    /// AUTH_LIST (only "none" is supported), SUPPORTS_FEATURE(keepalive),
    /// CONNECT_OPEN, SUPPORTS_FEATURE(event callbacks).
    pub async fn open_halves<R, W>(r: R, w: W, opts: &OpenOptions) -> Result<Client, ClientError>
    where
        R: AsyncRead + Send + 'static,
        W: AsyncWrite + Send + 'static,
    {
        let client = Client::start(r, w);
        client.handshake(opts).await?;
        Ok(client)
    }

    /// Starts the reader and writer tasks without any handshake (for talking to a
    /// server at the protocol level, e.g. in tests).
    pub fn start<R, W>(r: R, w: W) -> Client
    where
        R: AsyncRead + Send + 'static,
        W: AsyncWrite + Send + 'static,
    {
        let shared = Arc::new(Shared {
            serial: AtomicU32::new(0),
            state: Mutex::new(State::default()),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(Box::pin(w), rx, shared.clone()));
        tokio::spawn(reader(
            FramedRead::with_capacity(Box::pin(r), PacketCodec, 64 * 1024),
            shared.clone(),
            tx.downgrade(),
        ));
        Client { shared, tx }
    }

    async fn handshake(&self, opts: &OpenOptions) -> Result<(), ClientError> {
        let auth: AuthListRet = self.call(RemoteProc::AuthList, &()).await?;
        if !auth.types.is_empty() && !auth.types.contains(&AuthType::None) {
            return Err(ClientError::UnsupportedAuth(format!("{:?}", auth.types)));
        }
        self.supports_feature(crate::FEATURE_PROGRAM_KEEPALIVE)
            .await?;
        let args = ConnectOpenArgs {
            name: opts.name.clone(),
            flags: u32::from(opts.read_only),
        };
        self.call::<_, ()>(RemoteProc::ConnectOpen, &args).await?;
        Ok(())
    }

    /// Whether the server supports `VIR_DRV_FEATURE_*` `feature`.
    pub async fn supports_feature(&self, feature: i32) -> Result<bool, ClientError> {
        let r: ConnectSupportsFeatureRet = self
            .call(
                RemoteProc::ConnectSupportsFeature,
                &ConnectSupportsFeatureArgs { feature },
            )
            .await?;
        Ok(r.supported != 0)
    }

    /// Calls `proc_` with `args` and decodes the successful reply as `R`. An error
    /// reply becomes [`ClientError::Remote`]. Calls from several tasks run
    /// concurrently over the connection.
    pub async fn call<A, R>(&self, proc_: RemoteProc, args: &A) -> Result<R, ClientError>
    where
        A: XdrEncode + ?Sized,
        R: XdrDecode,
    {
        let packet = self.call_packet(proc_, args, None).await?;
        Ok(decode_reply::<R>(&packet)?)
    }

    /// [`call`](Client::call) with the argument and return types taken from a
    /// procedure marker in [`vireo_wire::procs::typed`].
    pub async fn call_typed<P: Procedure>(&self, args: &P::Args) -> Result<P::Ret, ClientError> {
        self.call(P::PROC, args).await
    }

    /// Sends a call and returns the raw reply packet (status OK or ERROR).
    pub async fn call_raw<A>(&self, proc_: RemoteProc, args: &A) -> Result<Packet, ClientError>
    where
        A: XdrEncode + ?Sized,
    {
        self.call_packet(proc_, args, None).await
    }

    async fn call_packet<A>(
        &self,
        proc_: RemoteProc,
        args: &A,
        events: Option<mpsc::UnboundedSender<Event>>,
    ) -> Result<Packet, ClientError>
    where
        A: XdrEncode + ?Sized,
    {
        let serial = self.shared.serial.fetch_add(1, Ordering::Relaxed);
        let frame = encode_call(proc_, serial, args);
        if frame.len() > FRAME_MAX {
            return Err(ClientError::TooLarge(frame.len()));
        }
        let (slot, rx) = oneshot::channel();
        {
            let mut st = self.shared.lock();
            if let Some(reason) = &st.closed {
                return Err(ClientError::Closed(reason.clone()));
            }
            let p = match events {
                Some(ev) => Pending::Register(slot, ev),
                None => Pending::Call(slot),
            };
            st.pending.insert(serial, p);
        }
        if self.tx.send(Outgoing::Frame(frame)).is_err() {
            self.shared.lock().pending.remove(&serial);
            return Err(ClientError::Closed("the writer has stopped".into()));
        }
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Closed("the reader has stopped".into())),
        }
    }

    /// Registers for domain events `event_id` (`VIR_DOMAIN_EVENT_ID_*`), of `dom` only
    /// or of every domain, with CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY. Events
    /// arrive on the returned stream, decoded.
    pub async fn register_domain_events(
        &self,
        event_id: i32,
        dom: Option<&NonnullDomain>,
    ) -> Result<EventStream, ClientError> {
        self.register_events(
            RemoteProc::ConnectDomainEventCallbackRegisterAny,
            &ConnectDomainEventCallbackRegisterAnyArgs {
                event_id,
                dom: dom.cloned(),
            },
        )
        .await
    }

    /// Registers with any `*_EVENT_REGISTER_ANY` procedure whose reply is a callback
    /// id (network, storage pool, node device, secret events).
    pub async fn register_events<A>(
        &self,
        proc_: RemoteProc,
        args: &A,
    ) -> Result<EventStream, ClientError>
    where
        A: XdrEncode + ?Sized,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let packet = self.call_packet(proc_, args, Some(tx)).await?;
        let r: CallbackIdRet = decode_reply(&packet)?;
        Ok(EventStream {
            callback_id: r.callback_id,
            rx,
        })
    }

    /// Ends a domain event registration (CALLBACK_DEREGISTER_ANY); its stream ends.
    pub async fn deregister_domain_events(&self, callback_id: i32) -> Result<(), ClientError> {
        self.call::<_, ()>(
            RemoteProc::ConnectDomainEventCallbackDeregisterAny,
            &CallbackIdArgs { callback_id },
        )
        .await?;
        self.shared.lock().callbacks.remove(&callback_id);
        Ok(())
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// Sends CONNECT_CLOSE, then closes the connection. Other handles on the same
    /// connection see [`ClientError::Closed`] afterwards.
    pub async fn close(self) -> Result<(), ClientError> {
        let r = self.call::<_, ()>(RemoteProc::ConnectClose, &()).await;
        let _ = self.tx.send(Outgoing::Shutdown);
        self.shared.close("the client closed it".into());
        r
    }
}

async fn writer<W: AsyncWrite>(
    mut w: std::pin::Pin<Box<W>>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<Shared>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut shutdown = false;
    while !shutdown {
        let Some(first) = rx.recv().await else { break };
        let mut next = Some(first);
        // Coalesce everything already queued into one write.
        while let Some(msg) = next.take() {
            match msg {
                Outgoing::Frame(f) => buf.extend_from_slice(&f),
                Outgoing::Shutdown => {
                    shutdown = true;
                    break;
                }
            }
            if buf.len() >= 256 * 1024 {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !buf.is_empty() {
            if let Err(e) = w.write_all(&buf).await {
                shared.close(format!("writing to the socket failed: {e}"));
                return;
            }
            buf.clear();
        }
    }
    let _ = w.shutdown().await;
}

async fn reader<R: AsyncRead>(
    mut frames: FramedRead<std::pin::Pin<Box<R>>, PacketCodec>,
    shared: Arc<Shared>,
    tx: mpsc::WeakUnboundedSender<Outgoing>,
) {
    let reason = loop {
        match frames.next().await {
            None => break "the server closed the connection".to_string(),
            Some(Err(e)) => break format!("reading from the socket failed: {e}"),
            Some(Ok(packet)) => dispatch(packet, &shared, &tx),
        }
    };
    debug!("connection ended: {reason}");
    shared.close(reason);
}

fn dispatch(packet: Packet, shared: &Shared, tx: &mpsc::WeakUnboundedSender<Outgoing>) {
    let h = packet.header;
    match h.kind {
        MessageType::Reply | MessageType::ReplyWithFds => {
            let Some(p) = shared.lock().pending.remove(&h.serial) else {
                warn!(serial = h.serial, "reply to no call in flight; ignored");
                return;
            };
            match p {
                Pending::Call(slot) => {
                    let _ = slot.send(Ok(packet));
                }
                Pending::Register(slot, events) => {
                    if let Ok(r) = decode_reply::<CallbackIdRet>(&packet) {
                        shared.lock().callbacks.insert(r.callback_id, events);
                    }
                    let _ = slot.send(Ok(packet));
                }
            }
        }
        MessageType::Message if h.is_ping() => {
            if let Some(tx) = tx.upgrade() {
                let _ = tx.send(Outgoing::Frame(keepalive_pong()));
            }
        }
        MessageType::Message if h.prog == REMOTE_PROGRAM => match decode_event(&packet) {
            Ok(ev) => {
                let st = shared.lock();
                match st.callbacks.get(&ev.callback_id) {
                    Some(ch) => {
                        let _ = ch.send(ev);
                    }
                    None => debug!(id = ev.callback_id, "event for no registration"),
                }
            }
            Err(e) => warn!("undecodable event {:?}: {e}", h.remote_proc()),
        },
        _ => debug!(?h, "ignored a message"),
    }
}
