//! Raw-protocol helpers: a plain UnixStream speaking libvirt's framing.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use vireo_wire::packet::{MessageStatus, MessageType, decode_frame, encode_call};
use vireo_wire::procs::*;
use vireo_wire::{Packet, RemoteError, RemoteProc};

use super::Daemon;

pub fn connect(d: &Daemon) -> UnixStream {
    let s = UnixStream::connect(d.sock()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads one packet; `None` when the daemon closed the connection.
pub fn read_packet(s: &mut UnixStream) -> Option<Packet> {
    let mut len = [0u8; 4];
    if s.read_exact(&mut len).is_err() {
        return None;
    }
    let n = u32::from_be_bytes(len) as usize;
    let mut buf = len.to_vec();
    buf.resize(n, 0);
    s.read_exact(&mut buf[4..]).expect("a whole frame");
    Some(decode_frame(&buf).unwrap().unwrap().0)
}

/// Asserts that the daemon closes the connection without sending anything.
pub fn assert_closed(s: &mut UnixStream) {
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => {}
        Ok(n) => panic!("expected a closed connection, got {n} bytes: {:?}", &b[..n]),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("expected a closed connection, got {e}"),
    }
}

pub fn error_of(p: &Packet) -> RemoteError {
    assert_eq!(p.header.kind, MessageType::Reply);
    assert_eq!(
        p.header.status,
        MessageStatus::Error,
        "expected an error reply"
    );
    p.decode_payload().unwrap()
}

pub fn call_raw(s: &mut UnixStream, frame: &[u8]) -> Packet {
    s.write_all(frame).unwrap();
    read_packet(s).expect("a reply")
}

/// AUTH_LIST and CONNECT_OPEN(test:///default) with serials 0 and 1.
pub fn handshake(s: &mut UnixStream) {
    let r = call_raw(s, &encode_call(RemoteProc::AuthList, 0, &()));
    let ret: AuthListRet = r.decode_payload().unwrap();
    assert_eq!(ret.types.len(), 1);
    let r = call_raw(
        s,
        &encode_call(
            RemoteProc::ConnectOpen,
            1,
            &ConnectOpenArgs {
                name: Some("test:///default".into()),
                flags: 0,
            },
        ),
    );
    assert_eq!(r.header.status, MessageStatus::Ok);
    assert_eq!(r.header.serial, 1);
}

/// Asks CONNECT_SUPPORTS_FEATURE(KEEPALIVE), as clients with an event loop do.
pub fn ask_keepalive(s: &mut UnixStream, serial: u32) {
    let r = call_raw(
        s,
        &encode_call(
            RemoteProc::ConnectSupportsFeature,
            serial,
            &ConnectSupportsFeatureArgs { feature: 10 },
        ),
    );
    assert_eq!(
        r.decode_payload::<ConnectSupportsFeatureRet>()
            .unwrap()
            .supported,
        1
    );
}
