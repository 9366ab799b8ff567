//! Keepalive from the daemon's side and the client limits, as libvirtd does them:
//! PINGs only to clients that asked for keepalive, a silent client dropped after
//! `keepalive_count` unanswered PINGs; `max_clients` stops accepting (connections wait
//! in the backlog); `max_client_requests` stops reading from a client until a reply
//! goes out.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::wire::*;
use common::{Daemon, have_virsh};
use vireo_wire::RemoteProc;
use vireo_wire::packet::{MessageStatus, MessageType, encode_call};
use vireo_wire::procs::*;

#[test]
fn keepalive_pings_and_drops_silent_clients_only() {
    let d = Daemon::start_with(&["--keepalive-interval", "1", "--keepalive-count", "2"]);
    // virsh with its event loop answers the PINGs and stays connected past the
    // 3 s after which a silent client is dropped.
    let virsh = have_virsh().then(|| {
        Command::new("virsh")
            .args(["-c", &d.uri(), "event", "--all", "--loop", "--timeout", "5"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    });
    // A client that asked for keepalive and never answers.
    let mut silent = connect(&d);
    handshake(&mut silent);
    ask_keepalive(&mut silent, 2);
    // A client that never asked.
    let mut quiet = connect(&d);
    handshake(&mut quiet);

    let t = Instant::now();
    let mut pings = Vec::new();
    while let Some(p) = read_packet(&mut silent) {
        assert!(p.header.is_ping(), "{:?}", p.header);
        pings.push(t.elapsed());
    }
    let closed = t.elapsed();
    assert_eq!(pings.len(), 2, "{pings:?}");
    assert!(pings[0] >= Duration::from_millis(800), "{pings:?}");
    assert!(
        pings[1] - pings[0] >= Duration::from_millis(800),
        "{pings:?}"
    );
    assert!(
        closed >= Duration::from_millis(2700) && closed < Duration::from_secs(6),
        "{closed:?}"
    );
    assert!(d.log().contains("keepalive timeout"), "{}", d.log());

    // The client that never asked got no PING and is still served.
    quiet
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(read_packet_timeout(&mut quiet).is_none());
    quiet
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let r = call_raw(&mut quiet, &encode_call(RemoteProc::ConnectGetType, 3, &()));
    assert_eq!(r.decode_payload::<StringRet>().unwrap().value, "TEST");

    if let Some(o) = virsh {
        let o = o.wait_with_output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        // virsh exits 1 when its --timeout ends the loop; what matters is that the
        // connection lived until then (no "connection closed" error).
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            out.contains("event loop timed out") && !err.contains("error"),
            "virsh {:?}: {out}\n{}\nlog:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr),
            d.log()
        );
    }
}

/// Reads one packet or `None` on timeout (the read timeout must be set).
fn read_packet_timeout(s: &mut UnixStream) -> Option<vireo_wire::Packet> {
    use std::io::Read;
    let mut len = [0u8; 4];
    match s.read(&mut len[..1]) {
        Ok(1) => {}
        Ok(_) => panic!("connection closed"),
        Err(_) => return None,
    }
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.read_exact(&mut len[1..]).unwrap();
    let n = u32::from_be_bytes(len) as usize;
    let mut buf = len.to_vec();
    buf.resize(n, 0);
    s.read_exact(&mut buf[4..]).unwrap();
    Some(vireo_wire::packet::decode_frame(&buf).unwrap().unwrap().0)
}

#[test]
fn pongs_keep_a_client_and_pings_are_answered() {
    let d = Daemon::start_with(&["--keepalive-interval", "1", "--keepalive-count", "1"]);
    let mut s = connect(&d);
    handshake(&mut s);
    ask_keepalive(&mut s, 2);
    // Answer four PINGs with PONGs: the connection outlives 1 + 1 intervals.
    for _ in 0..4 {
        let p = read_packet(&mut s).expect("a PING");
        assert!(p.header.is_ping());
        assert_eq!(p.header.kind, MessageType::Message);
        s.write_all(&vireo_wire::packet::keepalive_pong()).unwrap();
    }
    let r = call_raw(&mut s, &encode_call(RemoteProc::ConnectGetType, 3, &()));
    assert_eq!(r.header.status, MessageStatus::Ok);
}

#[test]
fn max_clients_holds_new_connections_until_one_leaves() {
    let d = Daemon::start_with(&["--max-clients", "2"]);
    // wait_ready's probe connection holds a slot until the daemon sees it close.
    let t = Instant::now();
    while !d.log().contains("client gone") {
        assert!(t.elapsed() < Duration::from_secs(10), "{}", d.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut a = connect(&d);
    handshake(&mut a);
    let mut b = connect(&d);
    handshake(&mut b);
    // The third connects (kernel backlog) but is not served.
    let mut c = connect(&d);
    c.write_all(&encode_call(RemoteProc::AuthList, 0, &()))
        .unwrap();
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(read_packet_timeout(&mut c).is_none());
    assert!(d.log().contains("max_clients (2) reached"), "{}", d.log());
    // One leaves: the third is answered.
    drop(a);
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = read_packet(&mut c).expect("the held connection is served");
    assert_eq!(r.header.status, MessageStatus::Ok);
    assert_eq!(
        call_raw(&mut b, &encode_call(RemoteProc::ConnectGetType, 2, &()))
            .header
            .status,
        MessageStatus::Ok
    );
}

#[test]
fn max_client_requests_stops_reading_until_replies_go_out() {
    // A client that pipelines calls with large replies and does not read them: once
    // the daemon's socket buffer is full, replies cannot go out, the in-flight limit
    // is reached and the daemon stops reading, so the client's own (small) send buffer
    // fills and its writes would block. Without the limit the daemon would keep
    // reading every call.
    let d = Daemon::start_with(&["--max-client-requests", "3"]);
    let mut s = connect(&d);
    handshake(&mut s);
    nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::SndBuf, &4096).unwrap();
    s.set_nonblocking(true).unwrap();
    let call = |serial| encode_call(RemoteProc::ConnectGetCapabilities, serial, &());
    let mut sent = 0u32;
    let mut blocked = false;
    let t = Instant::now();
    while sent < 20_000 && t.elapsed() < Duration::from_secs(20) {
        let f = call(10 + sent);
        match s.write(&f) {
            Ok(n) if n == f.len() => sent += 1,
            Ok(n) => {
                // Finish the partial frame blocking, then stop.
                s.set_nonblocking(false).unwrap();
                s.write_all(&f[n..]).unwrap();
                sent += 1;
                blocked = true;
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Give the daemon a moment: if it still reads, the write goes through.
                std::thread::sleep(Duration::from_millis(300));
                match s.write(&f) {
                    Ok(n) if n == f.len() => sent += 1,
                    Ok(n) => {
                        s.set_nonblocking(false).unwrap();
                        s.write_all(&f[n..]).unwrap();
                        sent += 1;
                        blocked = true;
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        blocked = true;
                        break;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(blocked, "the daemon kept reading {sent} calls");
    assert!(
        d.log().contains("max_client_requests limit (3)"),
        "{}",
        d.log()
    );
    // Reading the replies lets the daemon go on: every call is answered.
    s.set_nonblocking(false).unwrap();
    let mut got = 0;
    while got < sent {
        let p = read_packet(&mut s).expect("a reply");
        assert_eq!(p.header.status, MessageStatus::Ok);
        got += 1;
    }
}

#[test]
fn python_with_an_event_loop_answers_pings_and_stays() {
    if !common::have_python_libvirt() {
        return;
    }
    let d = Daemon::start_with(&["--keepalive-interval", "1", "--keepalive-count", "1"]);
    let script = r#"
import sys, threading, time
import libvirt
libvirt.virEventRegisterDefaultImpl()
def loop():
    while True:
        libvirt.virEventRunDefaultImpl()
threading.Thread(target=loop, daemon=True).start()
c = libvirt.open(sys.argv[1])
# Silent for longer than the daemon's 1 s + 1 unanswered PING allowance.
time.sleep(3.5)
assert c.isAlive() == 1
assert c.getType() == 'TEST'
print('OK')
"#;
    let o = Command::new("/usr/bin/python3")
        .args(["-c", script, &d.uri()])
        .output()
        .unwrap();
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "OK",
        "{}\n{}\nlog:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        d.log()
    );
    // The daemon did ping it, and did not drop it.
    assert!(d.log().contains("sending keepalive request"), "{}", d.log());
    assert!(!d.log().contains("keepalive timeout"), "{}", d.log());
}
