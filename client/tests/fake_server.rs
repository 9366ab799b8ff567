//! The client against a scripted fake server on a socketpair: framing edge cases that a
//! real daemon does not produce on demand (replies out of order or cut into pieces,
//! stray serials, PINGs, oversize frames, events racing their registration's reply,
//! the connection dropping mid-call).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use vireo_client::{Client, ClientError, DomainEventKind, EventBody, OpenOptions};
use vireo_messages::{ErrorCode, ErrorDomain, VirError};
use vireo_wire::packet::{
    decode_frame, encode_error_reply, encode_event, encode_reply, keepalive_ping,
};
use vireo_wire::procs::*;
use vireo_wire::types::{AuthType, NonnullDomain};
use vireo_wire::{Header, Packet, RemoteError, RemoteProc};

/// The server side of the socketpair, reading whole packets.
struct Fake {
    s: UnixStream,
    buf: BytesMut,
}

impl Fake {
    async fn read(&mut self) -> Packet {
        loop {
            if let Some((p, used)) = decode_frame(&self.buf).unwrap() {
                let _ = self.buf.split_to(used);
                return p;
            }
            let n = tokio::time::timeout(Duration::from_secs(5), self.s.read_buf(&mut self.buf))
                .await
                .expect("the client sent nothing for 5 s")
                .unwrap();
            assert!(n > 0, "the client closed the connection");
        }
    }

    async fn write(&mut self, b: &[u8]) {
        self.s.write_all(b).await.unwrap();
    }

    /// Answers the handshake the client does (AUTH_LIST, SUPPORTS_FEATURE, OPEN).
    async fn serve_handshake(&mut self) {
        let p = self.read().await;
        assert_eq!(p.header.remote_proc(), Some(RemoteProc::AuthList));
        let r = encode_reply(
            &p.header,
            &AuthListRet {
                types: vec![AuthType::None],
            },
        );
        self.write(&r).await;
        let p = self.read().await;
        assert_eq!(
            p.header.remote_proc(),
            Some(RemoteProc::ConnectSupportsFeature)
        );
        self.write(&encode_reply(
            &p.header,
            &ConnectSupportsFeatureRet { supported: 1 },
        ))
        .await;
        let p = self.read().await;
        assert_eq!(p.header.remote_proc(), Some(RemoteProc::ConnectOpen));
        let args: ConnectOpenArgs = p.decode_payload().unwrap();
        assert_eq!(args.name.as_deref(), Some("test:///default"));
        self.write(&encode_reply(&p.header, &())).await;
    }
}

/// A client started on one end of a socketpair (no handshake) and the fake server.
fn raw_pair() -> (Client, Fake) {
    let (a, b) = UnixStream::pair().unwrap();
    let (r, w) = a.into_split();
    (
        Client::start(r, w),
        Fake {
            s: b,
            buf: BytesMut::new(),
        },
    )
}

fn name_ret(name: &str) -> StringRet {
    StringRet { value: name.into() }
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("timed out")
}

#[tokio::test]
async fn handshake_sends_what_real_clients_send() {
    let (a, b) = UnixStream::pair().unwrap();
    let mut fake = Fake {
        s: b,
        buf: BytesMut::new(),
    };
    let server = tokio::spawn(async move {
        fake.serve_handshake().await;
        let p = fake.read().await;
        assert_eq!(p.header.remote_proc(), Some(RemoteProc::ConnectGetType));
        fake.write(&encode_reply(&p.header, &name_ret("TEST")))
            .await;
        fake
    });
    let c = within(Client::open_stream(a, &OpenOptions::new("test:///default")))
        .await
        .unwrap();
    assert_eq!(within(c.get_type()).await.unwrap(), "TEST");
    server.await.unwrap();
}

#[tokio::test]
async fn refuses_servers_that_require_sasl() {
    let (a, b) = UnixStream::pair().unwrap();
    let mut fake = Fake {
        s: b,
        buf: BytesMut::new(),
    };
    tokio::spawn(async move {
        let p = fake.read().await;
        let r = encode_reply(
            &p.header,
            &AuthListRet {
                types: vec![AuthType::Sasl],
            },
        );
        fake.write(&r).await;
        // Keep the socket open until the client gives up.
        let _ = fake.s.read(&mut [0u8; 64]).await;
    });
    let err = within(Client::open_stream(a, &OpenOptions::new("test:///default")))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::UnsupportedAuth(_)), "{err}");
}

#[tokio::test]
async fn replies_out_of_order_and_in_pieces_reach_their_callers() {
    let (c, mut fake) = raw_pair();
    let c1 = c.clone();
    let first = tokio::spawn(async move { c1.get_type().await });
    let p1 = fake.read().await;
    let c2 = c.clone();
    let second = tokio::spawn(async move { c2.get_type().await });
    let p2 = fake.read().await;
    assert_ne!(p1.header.serial, p2.header.serial);
    // Second answered first, one byte at a time; the first in the same write as a PING.
    let r2 = encode_reply(&p2.header, &name_ret("second"));
    for b in r2.iter() {
        fake.write(&[*b]).await;
    }
    assert_eq!(within(second).await.unwrap().unwrap(), "second");
    let mut both = BytesMut::new();
    both.extend_from_slice(&keepalive_ping());
    both.extend_from_slice(&encode_reply(&p1.header, &name_ret("first")));
    fake.write(&both).await;
    assert_eq!(within(first).await.unwrap().unwrap(), "first");
    // The PING got its PONG.
    let pong = fake.read().await;
    assert!(pong.header.is_pong(), "{:?}", pong.header);
    assert!(pong.payload.is_empty());
}

#[tokio::test]
async fn many_concurrent_calls_are_matched_by_serial() {
    let (c, mut fake) = raw_pair();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let d = c.lookup_by_name(&format!("vm{i}")).await.unwrap();
            assert_eq!(d.name, format!("vm{i}"));
        }));
    }
    let mut calls = Vec::new();
    for _ in 0..64 {
        calls.push(fake.read().await);
    }
    // Answer in reverse order, all in one write.
    let mut out = BytesMut::new();
    for p in calls.iter().rev() {
        let args: NameArgs = p.decode_payload().unwrap();
        let dom = NonnullDomain::new(args.name, uuid::Uuid::new_v4(), None);
        out.extend_from_slice(&encode_reply(&p.header, &DomainRet { dom }));
    }
    fake.write(&out).await;
    for t in tasks {
        within(t).await.unwrap();
    }
}

#[tokio::test]
async fn error_replies_carry_code_domain_and_message() {
    let (c, mut fake) = raw_pair();
    let call = tokio::spawn(async move { c.lookup_by_name("nope").await });
    let p = fake.read().await;
    let err = VirError::new(
        ErrorCode::NoDomain,
        ErrorDomain::Test,
        Some("no domain with matching name 'nope'".into()),
    );
    fake.write(&encode_error_reply(&p.header, &RemoteError::from(&err)))
        .await;
    let got = within(call).await.unwrap().unwrap_err();
    let e = got.vir_error().expect("a remote error");
    assert_eq!(e.code, ErrorCode::NoDomain);
    assert_eq!(e.domain, ErrorDomain::Test);
    assert_eq!(e.message, err.message);
    assert!(got.to_string().contains("'nope'"), "{got}");
}

#[tokio::test]
async fn stray_serials_are_ignored() {
    let (c, mut fake) = raw_pair();
    let call = tokio::spawn(async move { c.get_type().await });
    let p = fake.read().await;
    let mut stray = p.header;
    stray.serial += 1000;
    fake.write(&encode_reply(&stray, &name_ret("stray"))).await;
    fake.write(&encode_reply(&p.header, &name_ret("right")))
        .await;
    assert_eq!(within(call).await.unwrap().unwrap(), "right");
}

#[tokio::test]
async fn events_right_behind_the_registration_reply_are_not_lost() {
    let (c, mut fake) = raw_pair();
    let reg = tokio::spawn(async move {
        let mut s = c.register_domain_events(0, None).await.unwrap();
        let ev = within(s.recv()).await.expect("an event");
        (s.callback_id, ev)
    });
    let p = fake.read().await;
    assert_eq!(
        p.header.remote_proc(),
        Some(RemoteProc::ConnectDomainEventCallbackRegisterAny)
    );
    let args: ConnectDomainEventCallbackRegisterAnyArgs = p.decode_payload().unwrap();
    assert_eq!(args.event_id, 0);
    assert_eq!(args.dom, None);
    let dom = NonnullDomain::new("vm", uuid::Uuid::from_u128(1), None);
    let mut out = BytesMut::new();
    out.extend_from_slice(&encode_reply(&p.header, &CallbackIdRet { callback_id: 7 }));
    // An event for another registration is dropped; ours is delivered.
    for id in [8, 7] {
        out.extend_from_slice(&encode_event(
            RemoteProc::DomainEventCallbackLifecycle,
            &DomainEventCallbackLifecycleMsg {
                callback_id: id,
                msg: DomainEventLifecycleMsg {
                    dom: dom.clone(),
                    event: id,
                    detail: 0,
                },
            },
        ));
    }
    fake.write(&out).await;
    let (id, ev) = within(reg).await.unwrap();
    assert_eq!(id, 7);
    assert_eq!(ev.callback_id, 7);
    assert_eq!(
        ev.body,
        EventBody::Domain {
            dom,
            kind: DomainEventKind::Lifecycle {
                event: 7,
                detail: 0
            }
        }
    );
}

#[tokio::test]
async fn a_dropped_connection_fails_calls_in_flight_and_later() {
    let (c, mut fake) = raw_pair();
    let c1 = c.clone();
    let call = tokio::spawn(async move { c1.get_type().await });
    let _ = fake.read().await;
    drop(fake);
    let err = within(call).await.unwrap().unwrap_err();
    assert!(matches!(err, ClientError::Closed(_)), "{err}");
    assert!(c.is_closed());
    let err = within(c.get_type()).await.unwrap_err();
    assert!(matches!(err, ClientError::Closed(_)), "{err}");
}

#[tokio::test]
async fn an_oversize_frame_closes_the_connection() {
    let (c, mut fake) = raw_pair();
    let c1 = c.clone();
    let mut events = {
        let reg = tokio::spawn(async move { c1.register_domain_events(0, None).await });
        let p = fake.read().await;
        fake.write(&encode_reply(&p.header, &CallbackIdRet { callback_id: 1 }))
            .await;
        within(reg).await.unwrap().unwrap()
    };
    let c2 = c.clone();
    let call = tokio::spawn(async move { c2.get_type().await });
    let _ = fake.read().await;
    // Length word 32 MiB + 5: one more than libvirt allows.
    fake.write(&(33_554_437u32).to_be_bytes()).await;
    let err = within(call).await.unwrap().unwrap_err();
    assert!(matches!(err, ClientError::Closed(_)), "{err}");
    // The event stream ends too.
    assert!(within(events.recv()).await.is_none());
}

#[tokio::test]
async fn close_sends_connect_close_and_shuts_the_socket() {
    let (c, mut fake) = raw_pair();
    let closer = tokio::spawn(async move { c.close().await });
    let p = fake.read().await;
    assert_eq!(p.header.remote_proc(), Some(RemoteProc::ConnectClose));
    fake.write(&encode_reply(&p.header, &())).await;
    within(closer).await.unwrap().unwrap();
    // The client shut its write side: EOF.
    let mut rest = Vec::new();
    let n = within(fake.s.read_to_end(&mut rest)).await.unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn calls_carry_the_right_header() {
    let (c, mut fake) = raw_pair();
    tokio::spawn(async move {
        let _ = c
            .xml_desc(&NonnullDomain::new("d", uuid::Uuid::nil(), None), 2)
            .await;
    });
    let p = fake.read().await;
    let h: Header = p.header;
    assert_eq!(h.prog, vireo_wire::packet::REMOTE_PROGRAM);
    assert_eq!(h.vers, 1);
    assert_eq!(h.kind, vireo_wire::MessageType::Call);
    assert_eq!(h.status, vireo_wire::MessageStatus::Ok);
    let args: DomainFlagsArgs = p.decode_payload().unwrap();
    assert_eq!(args.flags, 2);
    assert_eq!(args.dom.name, "d");
    let _: Bytes = p.payload;
}
