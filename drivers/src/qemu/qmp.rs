//! Our own QMP (QEMU Machine Protocol) client, on tokio.
//!
//! QMP is line-delimited JSON over a unix socket: QEMU greets, the client negotiates
//! with `qmp_capabilities`, then sends commands (`{"execute", "arguments", "id"}`) and
//! receives replies (`{"return"|"error", "id"}`) interleaved with asynchronous events
//! (`{"event", "data", "timestamp"}`). This client:
//! - matches replies to commands by `id`, so any number of tasks may call
//!   [`Qmp::execute`] at once on clones of one connection;
//! - turns QMP error replies into [`QmpError::Command`] with QEMU's class and text;
//! - delivers events on an unbounded channel, which closes when QEMU's end of the stream
//!   is gone, as does [`Qmp::closed`] — that is how callers learn QEMU went away;
//! - can pass a file descriptor along with a command ([`Qmp::execute_with_fd`], for
//!   `getfd`/`add-fd`), with `SCM_RIGHTS` ancillary data on the same socket.
//!
//! QEMU serves one monitor client at a time, so dropping the last clone of a [`Qmp`]
//! closes the connection (a later connection, e.g. after a daemon restart, is served).

use std::collections::HashMap;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use serde_json::{Value, json};
use tokio::io::Interest;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, watch};

/// What can go wrong talking QMP.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be connected, read or written.
    #[error("QMP socket I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// QEMU sent something that is not QMP.
    #[error("QMP protocol error: {0}")]
    Protocol(String),
    /// QEMU answered the command with an error.
    #[error("QEMU rejected the command ({class}): {desc}")]
    Command {
        /// QMP's error class, e.g. `GenericError`, `CommandNotFound`.
        class: String,
        /// QEMU's human-readable description.
        desc: String,
    },
    /// The connection ended (QEMU exited or closed the monitor) before a reply came.
    #[error("the QMP connection is closed (QEMU is gone)")]
    Disconnected,
}

/// An asynchronous QMP event.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    /// The event name, e.g. `SHUTDOWN`, `RESET`, `STOP`.
    pub name: String,
    /// The event's `data` member (`Value::Null` when absent).
    pub data: Value,
    /// QEMU's timestamp: (seconds, microseconds) since the epoch.
    pub timestamp: (i64, i64),
}

type Reply = Result<Value, QmpError>;

/// State shared by the handles and the reader task.
struct Shared {
    /// Waiting callers by command id; `None` once the stream has ended.
    pending: Mutex<Option<HashMap<u64, oneshot::Sender<Reply>>>>,
    /// Becomes true when the stream ends.
    closed: watch::Sender<bool>,
}

/// Owned by the handles: the write half and the reader task's stop signal. Dropping it
/// (the last [`Qmp`] clone) closes the connection.
struct Conn {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    next_id: AtomicU64,
    shared: Arc<Shared>,
    greeting: Value,
    _stop_reader: oneshot::Sender<()>,
}

/// A negotiated QMP connection. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Qmp {
    conn: Arc<Conn>,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Qmp {
    /// Connects to QEMU's monitor socket at `path`, reads the greeting and negotiates
    /// capabilities. Events arrive on the returned receiver.
    pub async fn connect(
        path: &Path,
    ) -> Result<(Qmp, mpsc::UnboundedReceiver<QmpEvent>), QmpError> {
        let stream = UnixStream::connect(path).await?;
        Qmp::handshake(stream).await
    }

    /// Like [`Qmp::connect`] on an already connected stream.
    pub async fn handshake(
        stream: UnixStream,
    ) -> Result<(Qmp, mpsc::UnboundedReceiver<QmpEvent>), QmpError> {
        let (read, write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Err(QmpError::Disconnected);
        }
        let greeting: Value = serde_json::from_str(line.trim())
            .map_err(|e| QmpError::Protocol(format!("bad greeting {:?}: {e}", line.trim())))?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!(
                "expected a QMP greeting, got {}",
                line.trim()
            )));
        }
        let (closed, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            pending: Mutex::new(Some(HashMap::new())),
            closed,
        });
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(read_loop(reader, shared.clone(), events_tx, stop_rx));
        let qmp = Qmp {
            conn: Arc::new(Conn {
                writer: tokio::sync::Mutex::new(write),
                next_id: AtomicU64::new(1),
                shared,
                greeting,
                _stop_reader: stop_tx,
            }),
        };
        qmp.execute("qmp_capabilities", None).await?;
        Ok((qmp, events_rx))
    }

    /// QEMU's greeting (`{"QMP": {"version": ..., "capabilities": ...}}`).
    pub fn greeting(&self) -> &Value {
        &self.conn.greeting
    }

    /// Whether the stream has ended.
    pub fn is_closed(&self) -> bool {
        *self.conn.shared.closed.borrow()
    }

    /// Resolves once the stream has ended (QEMU exited or closed the monitor).
    pub async fn closed(&self) {
        let mut rx = self.conn.shared.closed.subscribe();
        // The sender lives in `Shared`, which we hold, so this cannot fail early.
        let _ = rx.wait_for(|c| *c).await;
    }

    /// A future that resolves once the stream has ended, without keeping the
    /// connection open (unlike a clone of this handle).
    pub fn closed_owned(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.conn.shared.closed.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }

    /// Runs `cmd` with optional `args` and returns its `return` value.
    pub async fn execute(&self, cmd: &str, args: Option<Value>) -> Result<Value, QmpError> {
        self.run(cmd, args, None).await
    }

    /// Runs `cmd` and passes `fd` along with it (`SCM_RIGHTS`), as `getfd` and `add-fd`
    /// expect. The caller keeps its descriptor; QEMU receives a duplicate.
    pub async fn execute_with_fd(
        &self,
        cmd: &str,
        args: Option<Value>,
        fd: BorrowedFd<'_>,
    ) -> Result<Value, QmpError> {
        self.run(cmd, args, Some(fd)).await
    }

    async fn run(
        &self,
        cmd: &str,
        args: Option<Value>,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<Value, QmpError> {
        let id = self.conn.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "execute": cmd, "id": id });
        if let Some(a) = args {
            msg["arguments"] = a;
        }
        let mut bytes = serde_json::to_vec(&msg)
            .map_err(|e| QmpError::Protocol(format!("cannot encode command: {e}")))?;
        bytes.push(b'\n');

        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.conn.shared.pending.lock().unwrap();
            match pending.as_mut() {
                Some(map) => map.insert(id, tx),
                None => return Err(QmpError::Disconnected),
            };
        }
        let sent = {
            let mut w = self.conn.writer.lock().await;
            match fd {
                Some(fd) => send_with_fd(&mut w, &bytes, fd).await,
                None => w.write_all(&bytes).await,
            }
        };
        if let Err(e) = sent {
            if let Some(map) = self.conn.shared.pending.lock().unwrap().as_mut() {
                map.remove(&id);
            }
            return Err(if is_disconnect(&e) {
                QmpError::Disconnected
            } else {
                QmpError::Io(e)
            });
        }
        rx.await.unwrap_or(Err(QmpError::Disconnected))
    }
}

fn is_disconnect(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::NotConnected
    )
}

/// Writes `bytes` with `fd` attached to the first chunk, the rest plainly.
async fn send_with_fd(
    w: &mut OwnedWriteHalf,
    bytes: &[u8],
    fd: BorrowedFd<'_>,
) -> std::io::Result<()> {
    let stream: &UnixStream = w.as_ref();
    let fds = [fd.as_raw_fd()];
    let sent = loop {
        stream.writable().await?;
        let r = stream.try_io(Interest::WRITABLE, || {
            sendmsg::<()>(
                stream.as_raw_fd(),
                &[IoSlice::new(bytes)],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(std::io::Error::from)
        });
        match r {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    };
    w.write_all(&bytes[sent..]).await
}

/// Reads lines until EOF, an error, or all handles are gone: replies go to their
/// callers, events to the channel. On exit every waiting caller gets `Disconnected`,
/// the event channel closes and `closed` flips.
async fn read_loop(
    mut reader: BufReader<OwnedReadHalf>,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<QmpEvent>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut line = String::new();
    loop {
        line.clear();
        let n = tokio::select! {
            r = reader.read_line(&mut line) => r,
            _ = &mut stop => break,
        };
        match n {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let Ok(msg) = serde_json::from_str::<Value>(text) else {
            tracing::warn!(line = text, "ignoring a QMP line that is not JSON");
            continue;
        };
        if let Some(name) = msg.get("event").and_then(Value::as_str) {
            let ts = msg.get("timestamp");
            let field = |k: &str| {
                ts.and_then(|t| t.get(k))
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
            };
            let _ = events.send(QmpEvent {
                name: name.to_string(),
                data: msg.get("data").cloned().unwrap_or(Value::Null),
                timestamp: (field("seconds"), field("microseconds")),
            });
            continue;
        }
        let Some(id) = msg.get("id").and_then(Value::as_u64) else {
            tracing::warn!(line = text, "ignoring a QMP reply without our id");
            continue;
        };
        let reply = if let Some(ret) = msg.get("return") {
            Ok(ret.clone())
        } else if let Some(err) = msg.get("error") {
            let s = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            Err(QmpError::Command {
                class: s("class"),
                desc: s("desc"),
            })
        } else {
            Err(QmpError::Protocol(format!(
                "reply without return or error: {text}"
            )))
        };
        let waiter = shared
            .pending
            .lock()
            .unwrap()
            .as_mut()
            .and_then(|m| m.remove(&id));
        if let Some(tx) = waiter {
            let _ = tx.send(reply);
        }
    }
    let waiters = shared.pending.lock().unwrap().take();
    for (_, tx) in waiters.into_iter().flatten() {
        let _ = tx.send(Err(QmpError::Disconnected));
    }
    shared.closed.send_replace(true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{IoSliceMut, Read};
    use std::os::fd::AsFd;
    use std::time::Duration;
    use tokio::net::UnixListener;

    const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": ["oob"]}}"#;

    /// A fake QEMU monitor: greets, answers `qmp_capabilities`, then hands the
    /// connection to `script`.
    async fn fake_server<F, Fut>(
        script: F,
    ) -> (
        tempfile::TempDir,
        std::path::PathBuf,
        tokio::task::JoinHandle<()>,
    )
    where
        F: FnOnce(BufReader<OwnedReadHalf>, OwnedWriteHalf) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let task = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut r = BufReader::new(r);
            w.write_all(format!("{GREETING}\n").as_bytes())
                .await
                .unwrap();
            let cmd = read_cmd(&mut r).await.unwrap();
            assert_eq!(cmd["execute"], "qmp_capabilities");
            reply(&mut w, &cmd, json!({})).await;
            script(r, w).await;
        });
        (dir, path, task)
    }

    async fn read_cmd(r: &mut BufReader<OwnedReadHalf>) -> Option<Value> {
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap() == 0 {
            return None;
        }
        Some(serde_json::from_str(&line).unwrap())
    }

    async fn send(w: &mut OwnedWriteHalf, v: Value) {
        let mut b = serde_json::to_vec(&v).unwrap();
        b.extend_from_slice(b"\r\n");
        w.write_all(&b).await.unwrap();
    }

    async fn reply(w: &mut OwnedWriteHalf, cmd: &Value, ret: Value) {
        send(w, json!({"return": ret, "id": cmd["id"]})).await;
    }

    fn event(name: &str, data: Value) -> Value {
        json!({"event": name, "data": data, "timestamp": {"seconds": 1700000000, "microseconds": 42}})
    }

    #[tokio::test]
    async fn greeting_and_simple_command() {
        let (_d, path, srv) = fake_server(|mut r, mut w| async move {
            let cmd = read_cmd(&mut r).await.unwrap();
            assert_eq!(cmd["execute"], "query-status");
            assert!(cmd.get("arguments").is_none());
            reply(
                &mut w,
                &cmd,
                json!({"status": "prelaunch", "running": false}),
            )
            .await;
        })
        .await;
        let (qmp, _ev) = Qmp::connect(&path).await.unwrap();
        assert_eq!(qmp.greeting()["QMP"]["version"]["qemu"]["major"], 10);
        let st = qmp.execute("query-status", None).await.unwrap();
        assert_eq!(st["status"], "prelaunch");
        srv.await.unwrap();
    }

    #[tokio::test]
    async fn interleaved_events_and_out_of_order_replies() {
        let (_d, path, srv) = fake_server(|mut r, mut w| async move {
            let a = read_cmd(&mut r).await.unwrap();
            let b = read_cmd(&mut r).await.unwrap();
            send(&mut w, event("STOP", Value::Null)).await;
            // Answer the second command first, with an event in between.
            reply(&mut w, &b, json!(b["arguments"]["n"])).await;
            send(
                &mut w,
                event("RESET", json!({"guest": true, "reason": "guest-reset"})),
            )
            .await;
            reply(&mut w, &a, json!(a["arguments"]["n"])).await;
        })
        .await;
        let (qmp, mut ev) = Qmp::connect(&path).await.unwrap();
        let q2 = qmp.clone();
        let (ra, rb) = tokio::join!(qmp.execute("echo", Some(json!({"n": 1}))), async {
            // Make sure the second command is sent after the first.
            tokio::time::sleep(Duration::from_millis(20)).await;
            q2.execute("echo", Some(json!({"n": 2}))).await
        });
        assert_eq!(ra.unwrap(), json!(1));
        assert_eq!(rb.unwrap(), json!(2));
        let e1 = ev.recv().await.unwrap();
        assert_eq!(e1.name, "STOP");
        assert_eq!(e1.data, Value::Null);
        assert_eq!(e1.timestamp, (1700000000, 42));
        let e2 = ev.recv().await.unwrap();
        assert_eq!(e2.name, "RESET");
        assert_eq!(e2.data["guest"], true);
        srv.await.unwrap();
    }

    #[tokio::test]
    async fn error_reply_becomes_command_error() {
        let (_d, path, srv) = fake_server(|mut r, mut w| async move {
            let cmd = read_cmd(&mut r).await.unwrap();
            send(
                &mut w,
                json!({"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}, "id": cmd["id"]}),
            )
            .await;
            let cmd = read_cmd(&mut r).await.unwrap();
            reply(&mut w, &cmd, json!({})).await;
        })
        .await;
        let (qmp, _ev) = Qmp::connect(&path).await.unwrap();
        match qmp.execute("nope", None).await {
            Err(QmpError::Command { class, desc }) => {
                assert_eq!(class, "CommandNotFound");
                assert!(desc.contains("nope"));
            }
            other => panic!("expected a command error, got {other:?}"),
        }
        // The connection is still usable.
        assert_eq!(qmp.execute("cont", None).await.unwrap(), json!({}));
        srv.await.unwrap();
    }

    #[tokio::test]
    async fn eof_fails_waiters_closes_events_and_resolves_closed() {
        let (_d, path, srv) = fake_server(|mut r, mut w| async move {
            let _cmd = read_cmd(&mut r).await.unwrap();
            send(
                &mut w,
                event(
                    "SHUTDOWN",
                    json!({"guest": true, "reason": "guest-shutdown"}),
                ),
            )
            .await;
            // QEMU dies without answering.
        })
        .await;
        let (qmp, mut ev) = Qmp::connect(&path).await.unwrap();
        assert!(!qmp.is_closed());
        let r = qmp.execute("query-status", None).await;
        assert!(matches!(r, Err(QmpError::Disconnected)), "{r:?}");
        assert_eq!(ev.recv().await.unwrap().name, "SHUTDOWN");
        assert!(ev.recv().await.is_none());
        tokio::time::timeout(Duration::from_secs(2), qmp.closed())
            .await
            .unwrap();
        assert!(qmp.is_closed());
        assert!(matches!(
            qmp.execute("cont", None).await,
            Err(QmpError::Disconnected)
        ));
        srv.await.unwrap();
    }

    #[tokio::test]
    async fn non_qmp_greeting_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"{\"hello\": 1}\n").await.unwrap();
        });
        assert!(matches!(
            Qmp::connect(&path).await,
            Err(QmpError::Protocol(_))
        ));
    }

    #[tokio::test]
    async fn dropping_the_last_handle_closes_the_connection() {
        let (done_tx, done_rx) = oneshot::channel();
        let (_d, path, srv) = fake_server(|mut r, _w| async move {
            // Reads EOF once the client is dropped.
            assert!(read_cmd(&mut r).await.is_none());
            done_tx.send(()).unwrap();
        })
        .await;
        let (qmp, _ev) = Qmp::connect(&path).await.unwrap();
        let clone = qmp.clone();
        drop(qmp);
        drop(clone);
        tokio::time::timeout(Duration::from_secs(2), done_rx)
            .await
            .unwrap()
            .unwrap();
        srv.await.unwrap();
    }

    #[tokio::test]
    async fn fd_is_passed_with_the_command() {
        let (_d, path, srv) = fake_server(|r, mut w| async move {
            // Receive the command and its fd with recvmsg on the raw socket.
            let read_half = r.into_inner();
            let stream: &UnixStream = read_half.as_ref();
            let (text, fds) = loop {
                stream.readable().await.unwrap();
                let res = stream.try_io(Interest::READABLE, || {
                    let mut buf = [0u8; 4096];
                    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
                    let mut iov = [IoSliceMut::new(&mut buf)];
                    let msg = nix::sys::socket::recvmsg::<()>(
                        stream.as_raw_fd(),
                        &mut iov,
                        Some(&mut cmsg),
                        MsgFlags::empty(),
                    )
                    .map_err(std::io::Error::from)?;
                    let mut fds = Vec::new();
                    for c in msg.cmsgs().map_err(std::io::Error::from)? {
                        if let nix::sys::socket::ControlMessageOwned::ScmRights(v) = c {
                            fds.extend(v);
                        }
                    }
                    let n = msg.bytes;
                    Ok((String::from_utf8_lossy(&buf[..n]).into_owned(), fds))
                });
                match res {
                    Ok(v) => break v,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => panic!("recvmsg: {e}"),
                }
            };
            assert_eq!(fds.len(), 1, "exactly one fd expected");
            let cmd: Value = serde_json::from_str(text.trim()).unwrap();
            assert_eq!(cmd["execute"], "getfd");
            assert_eq!(cmd["arguments"]["fdname"], "pipe0");
            // Read from the received pipe (through /proc, which needs no unsafe).
            let mut f = std::fs::File::open(format!("/proc/self/fd/{}", fds[0])).unwrap();
            let mut got = String::new();
            f.read_to_string(&mut got).unwrap();
            assert_eq!(got, "through the fd");
            reply(&mut w, &cmd, json!({})).await;
        })
        .await;
        let (qmp, _ev) = Qmp::connect(&path).await.unwrap();
        let (rd, wr) = std::io::pipe().unwrap();
        {
            use std::io::Write;
            let mut wr = wr;
            wr.write_all(b"through the fd").unwrap();
        } // writer closed: the server reads to EOF
        let ret = qmp
            .execute_with_fd("getfd", Some(json!({"fdname": "pipe0"})), rd.as_fd())
            .await
            .unwrap();
        assert_eq!(ret, json!({}));
        srv.await.unwrap();
    }
}
