//! The session's fast paths (daemon/src/session.rs): quick procedures answered in the
//! session task must not hold up the calls behind them when they have to wait after
//! all, and the multi-threaded runtime (`--worker-threads`) serves the same protocol.

mod common;

use std::io::Write;

use common::Daemon;
use common::wire::*;
use vireo_wire::RemoteProc;
use vireo_wire::packet::{MessageStatus, encode_call};
use vireo_wire::procs::*;
use vireo_wire::types::NonnullDomain;

/// The running domain `test`, as a lookup on `s` returns it.
fn running_test_domain(s: &mut std::os::unix::net::UnixStream) -> NonnullDomain {
    let r = call_raw(
        s,
        &encode_call(
            RemoteProc::DomainLookupByName,
            2,
            &NameArgs {
                name: "test".into(),
            },
        ),
    );
    let dom = r.decode_payload::<DomainRet>().unwrap().dom;
    assert_eq!(dom.id, 1, "test:///default's domain runs");
    dom
}

#[test]
fn a_quick_call_that_must_wait_does_not_hold_up_the_next() {
    // On the default one-thread runtime: XMLDesc of a running domain is a quick
    // procedure, but it has to ask the domain's actor, so the session hands it to a
    // task of its own; the GET_TYPE read in the same burst is answered at once, before
    // it. (If the session awaited the XMLDesc in place, serial 10 would come first.)
    let d = Daemon::start();
    let mut s = connect(&d);
    handshake(&mut s);
    let dom = running_test_domain(&mut s);
    let mut burst = encode_call(
        RemoteProc::DomainGetXmlDesc,
        10,
        &DomainFlagsArgs { dom, flags: 0 },
    )
    .to_vec();
    burst.extend_from_slice(&encode_call(RemoteProc::ConnectGetType, 11, &()));
    s.write_all(&burst).unwrap();
    let first = read_packet(&mut s).unwrap();
    let second = read_packet(&mut s).unwrap();
    assert_eq!(
        (first.header.serial, second.header.serial),
        (11, 10),
        "the call that waited went out last"
    );
    assert_eq!(first.decode_payload::<StringRet>().unwrap().value, "TEST");
    assert_eq!(second.header.status, MessageStatus::Ok);
    let xml = second.decode_payload::<StringRet>().unwrap().value;
    assert!(xml.contains("<name>test</name>"), "{xml}");
}

#[test]
fn the_work_stealing_runtime_serves_too() {
    for threads in ["2", "0"] {
        let d = Daemon::start_with(&["--worker-threads", threads]);
        let mut s = connect(&d);
        handshake(&mut s);
        let dom = running_test_domain(&mut s);
        // A pipelined burst of quick calls and calls that wait; every reply carries
        // its serial.
        let mut burst = Vec::new();
        for serial in 20..60u32 {
            let f = if serial.is_multiple_of(2) {
                encode_call(RemoteProc::ConnectGetType, serial, &())
            } else {
                encode_call(
                    RemoteProc::DomainGetXmlDesc,
                    serial,
                    &DomainFlagsArgs {
                        dom: dom.clone(),
                        flags: 0,
                    },
                )
            };
            burst.extend_from_slice(&f);
        }
        s.write_all(&burst).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 20..60 {
            let p = read_packet(&mut s).unwrap();
            assert_eq!(p.header.status, MessageStatus::Ok, "threads {threads}");
            assert!(seen.insert(p.header.serial));
        }
        assert_eq!(seen.len(), 40, "threads {threads}");
    }
}
