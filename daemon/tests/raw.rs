//! Raw protocol tests: a plain UnixStream speaking (and mangling) libvirt's framing,
//! checking libvirt's answers (libvirt-rpc.md §2, §4, §7, §9) and that the daemon keeps
//! serving other clients afterwards.

mod common;

use std::io::Write;

use common::Daemon;
use common::wire::*;
use vireo_wire::RemoteProc;
use vireo_wire::packet::{
    self, Header, MessageStatus, MessageType, REMOTE_PROGRAM, encode_call, encode_packet,
};
use vireo_wire::procs::*;

/// A healthy client after the abuse: open and list the domains.
fn still_serves(d: &Daemon) {
    let mut s = connect(d);
    handshake(&mut s);
    let r = call_raw(
        &mut s,
        &encode_call(
            RemoteProc::ConnectListAllDomains,
            2,
            &ListAllArgs {
                need_results: 1,
                flags: 0,
            },
        ),
    );
    let ret: ConnectListAllDomainsRet = r.decode_payload().unwrap();
    assert_eq!(ret.ret, 1);
    assert_eq!(ret.domains[0].name, "test");
    assert_eq!(ret.domains[0].id, 1);
}

#[test]
fn bad_framing_closes_the_connection() {
    let d = Daemon::start();
    // Oversize length word.
    let mut s = connect(&d);
    s.write_all(&0x7fff_ffffu32.to_be_bytes()).unwrap();
    assert_closed(&mut s);
    // Just over libvirt's maximum (32 MiB + 4 is the largest accepted).
    let mut s = connect(&d);
    s.write_all(&33_554_437u32.to_be_bytes()).unwrap();
    assert_closed(&mut s);
    // Too small to hold a header.
    for len in [0u32, 3, 4, 24, 27] {
        let mut s = connect(&d);
        let mut f = len.to_be_bytes().to_vec();
        f.extend_from_slice(&[0u8; 24]);
        s.write_all(&f).unwrap();
        assert_closed(&mut s);
    }
    // A truncated frame, then end of stream.
    let mut s = connect(&d);
    let f = encode_call(RemoteProc::AuthList, 0, &());
    s.write_all(&f[..20]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_closed(&mut s);
    // An undecodable header (message type 9).
    let mut s = connect(&d);
    let mut f = encode_call(RemoteProc::AuthList, 0, &()).to_vec();
    f[19] = 9;
    s.write_all(&f).unwrap();
    assert_closed(&mut s);
    still_serves(&d);
}

#[test]
fn rpc_errors_as_libvirt_answers_them() {
    let d = Daemon::start();
    let mut s = connect(&d);
    // Unknown program: the reply echoes prog/vers/proc/serial.
    let h = Header {
        prog: 0x1234_5678,
        vers: 1,
        proc_: 1,
        kind: MessageType::Call,
        serial: 7,
        status: MessageStatus::Ok,
    };
    let r = call_raw(&mut s, &encode_packet(&h, &[]));
    assert_eq!(
        (r.header.prog, r.header.proc_, r.header.serial),
        (0x1234_5678, 1, 7)
    );
    let e = error_of(&r);
    assert_eq!((e.code, e.domain), (39, 7));
    assert_eq!(
        e.message.as_deref(),
        Some("Cannot find program 305419896 version 1")
    );
    // Unknown version of the REMOTE program.
    let h = Header {
        prog: REMOTE_PROGRAM,
        vers: 2,
        serial: 8,
        ..h
    };
    let e = error_of(&call_raw(&mut s, &encode_packet(&h, &[])));
    assert_eq!(
        e.message.as_deref(),
        Some("Cannot find program 536903814 version 2")
    );
    // Unknown procedure, and an event-only number.
    for (proc_, serial) in [(9999, 9), (318, 10), (-5, 11)] {
        let h = Header {
            prog: REMOTE_PROGRAM,
            vers: 1,
            proc_,
            serial,
            ..h
        };
        let r = call_raw(&mut s, &encode_packet(&h, &[]));
        assert_eq!(r.header.serial, serial);
        let e = error_of(&r);
        assert_eq!((e.code, e.domain), (39, 7));
        assert_eq!(e.message, Some(format!("unknown procedure: {proc_}")));
    }
    // Before CONNECT_OPEN.
    let e = error_of(&call_raw(
        &mut s,
        &encode_call(RemoteProc::ConnectGetType, 12, &()),
    ));
    assert_eq!((e.code, e.domain), (1, 7));
    assert_eq!(
        e.message.as_deref(),
        Some("internal error: hypervisor connection not open")
    );
    // Keepalive is answered before open; feature 14 is not.
    let r = call_raw(
        &mut s,
        &encode_call(
            RemoteProc::ConnectSupportsFeature,
            13,
            &ConnectSupportsFeatureArgs { feature: 10 },
        ),
    );
    assert_eq!(
        r.decode_payload::<ConnectSupportsFeatureRet>()
            .unwrap()
            .supported,
        1
    );
    let r = call_raw(
        &mut s,
        &encode_call(
            RemoteProc::ConnectSupportsFeature,
            14,
            &ConnectSupportsFeatureArgs { feature: 14 },
        ),
    );
    assert_eq!(error_of(&r).code, 1);
    // Undecodable CONNECT_OPEN arguments: a string longer than the payload.
    let h = Header::call(RemoteProc::ConnectOpen, 15);
    let e = error_of(&call_raw(
        &mut s,
        &encode_packet(&h, &[0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff, b'x']),
    ));
    assert_eq!((e.code, e.domain), (39, 7));
    assert_eq!(
        e.message.as_deref(),
        Some("Unable to decode message payload")
    );
    // Too short.
    let e = error_of(&call_raw(&mut s, &encode_packet(&h, &[0, 0])));
    assert_eq!(
        e.message.as_deref(),
        Some("Unable to decode message payload")
    );
    // Extra bytes after valid arguments are ignored.
    let mut body = vireo_wire::xdr::to_bytes(&ConnectOpenArgs {
        name: Some("test:///default".into()),
        flags: 0,
    })
    .to_vec();
    body.extend_from_slice(b"garbage!");
    let r = call_raw(
        &mut s,
        &encode_packet(&Header::call(RemoteProc::ConnectOpen, 16), &body),
    );
    assert_eq!(r.header.status, MessageStatus::Ok);
    // A known procedure without an implementation: NO_SUPPORT so clients fall back.
    let e = error_of(&call_raw(
        &mut s,
        &encode_call(
            RemoteProc::DomainAttachDevice,
            17,
            &DomainXmlArgs {
                dom: vireo_wire::types::NonnullDomain::new("test", uuid::Uuid::nil(), None),
                xml: "<disk/>".into(),
            },
        ),
    ));
    assert_eq!((e.code, e.domain), (3, 20));
    assert_eq!(
        e.message.as_deref(),
        Some("this function is not supported by the connection driver: virDomainAttachDevice")
    );
    // A REPLY sent by the client is ignored; the next call still works.
    s.write_all(&encode_packet(
        &Header::call(RemoteProc::AuthList, 18).reply(MessageStatus::Ok),
        &[],
    ))
    .unwrap();
    // PING gets a PONG.
    s.write_all(&packet::keepalive_ping()).unwrap();
    let r = read_packet(&mut s).unwrap();
    assert!(r.header.is_pong(), "{:?}", r.header);
    // A missing domain.
    let r = call_raw(
        &mut s,
        &encode_call(
            RemoteProc::DomainLookupByName,
            19,
            &NameArgs {
                name: "nope".into(),
            },
        ),
    );
    let e = error_of(&r);
    assert_eq!(
        (e.code, e.domain, e.message.as_deref()),
        (42, 12, Some("Domain not found"))
    );
    still_serves(&d);
}

#[test]
fn calls_run_concurrently_and_replies_carry_serials() {
    let d = Daemon::start();
    let mut s = connect(&d);
    handshake(&mut s);
    // Pipeline many calls without waiting, then collect the replies by serial.
    let mut frames = Vec::new();
    for serial in 10..60u32 {
        let f = if serial.is_multiple_of(2) {
            encode_call(RemoteProc::ConnectGetType, serial, &())
        } else {
            encode_call(
                RemoteProc::DomainLookupByName,
                serial,
                &NameArgs {
                    name: "test".into(),
                },
            )
        };
        frames.extend_from_slice(&f);
    }
    s.write_all(&frames).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 10..60 {
        let p = read_packet(&mut s).unwrap();
        assert_eq!(p.header.status, MessageStatus::Ok);
        if p.header.serial.is_multiple_of(2) {
            assert_eq!(p.header.proc_, RemoteProc::ConnectGetType as i32);
            assert_eq!(p.decode_payload::<StringRet>().unwrap().value, "TEST");
        } else {
            assert_eq!(p.decode_payload::<DomainRet>().unwrap().dom.id, 1);
        }
        assert!(seen.insert(p.header.serial));
    }
    assert_eq!(seen.len(), 50);
}

#[test]
fn read_only_connections_refuse_mutations() {
    let d = Daemon::start();
    // Read-only by flag on the read-write socket.
    let mut s = connect(&d);
    call_raw(&mut s, &encode_call(RemoteProc::AuthList, 0, &()));
    let r = call_raw(
        &mut s,
        &encode_call(
            RemoteProc::ConnectOpen,
            1,
            &ConnectOpenArgs {
                name: Some("test:///default".into()),
                flags: 1,
            },
        ),
    );
    assert_eq!(r.header.status, MessageStatus::Ok);
    let dom = call_raw(
        &mut s,
        &encode_call(
            RemoteProc::DomainLookupByName,
            2,
            &NameArgs {
                name: "test".into(),
            },
        ),
    )
    .decode_payload::<DomainRet>()
    .unwrap()
    .dom;
    let e = error_of(&call_raw(
        &mut s,
        &encode_call(
            RemoteProc::DomainDestroy,
            3,
            &DomainArgs { dom: dom.clone() },
        ),
    ));
    assert_eq!((e.code, e.domain), (29, 20));
    assert_eq!(
        e.message.as_deref(),
        Some("operation forbidden: read only access prevents virDomainDestroy")
    );
    let e = error_of(&call_raw(
        &mut s,
        &encode_call(
            RemoteProc::DomainGetXmlDesc,
            4,
            &DomainFlagsArgs { dom, flags: 1 },
        ),
    ));
    assert_eq!(e.code, 29);
}
