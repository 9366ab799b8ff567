//! Streams: storage volume upload and download, end to end with `virsh vol-upload` /
//! `vol-download`, and the stream framing byte by byte with a raw client
//! (libvirt-rpc.md §11).

mod common;

use std::io::Write;

use common::wire::*;
use common::{Daemon, have_virsh, norm};
use vireo_wire::RemoteProc;
use vireo_wire::packet::{
    Header, MessageStatus, MessageType, STREAM_CHUNK_MAX, encode_call, encode_packet,
};
use vireo_wire::procs::*;
use vireo_wire::types::NonnullStorageVol;

fn pseudo_random(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn virsh_vol_upload_and_download() {
    if !have_virsh() {
        return;
    }
    let d = Daemon::start();
    let dir = d.state();
    let vol = dir.join("v1.xml");
    std::fs::write(
        &vol,
        "<volume><name>v1.img</name><capacity unit='bytes'>1048576</capacity></volume>",
    )
    .unwrap();
    d.virsh_ok(&["vol-create", "default-pool", vol.to_str().unwrap()]);
    let data = pseudo_random(700_000);
    let up = dir.join("up.bin");
    std::fs::write(&up, &data).unwrap();
    let down = dir.join("down.bin");
    let (u, dn) = (up.to_str().unwrap(), down.to_str().unwrap());
    assert_eq!(
        norm(&d.virsh_ok(&["vol-upload", "--pool", "default-pool", "v1.img", u])),
        ""
    );
    d.virsh_ok(&["vol-download", "--pool", "default-pool", "v1.img", dn]);
    let got = std::fs::read(&down).unwrap();
    assert_eq!(got.len(), 1_048_576, "the whole capacity comes back");
    assert!(got[..700_000] == data[..], "uploaded bytes differ");
    assert!(
        got[700_000..].iter().all(|&b| b == 0),
        "unwritten part is zeros"
    );

    // A window: offset and length, for both directions.
    d.virsh_ok(&[
        "vol-download",
        "--pool",
        "default-pool",
        "v1.img",
        dn,
        "--offset",
        "1000",
        "--length",
        "5000",
    ]);
    assert!(std::fs::read(&down).unwrap() == data[1000..6000]);
    let small = dir.join("small.bin");
    std::fs::write(&small, b"HELLO").unwrap();
    d.virsh_ok(&[
        "vol-upload",
        "--pool",
        "default-pool",
        "v1.img",
        small.to_str().unwrap(),
        "--offset",
        "10",
    ]);
    d.virsh_ok(&[
        "vol-download",
        "--pool",
        "default-pool",
        "v1.img",
        dn,
        "--offset",
        "8",
        "--length",
        "9",
    ]);
    let mut want = data[8..10].to_vec();
    want.extend_from_slice(b"HELLO");
    want.extend_from_slice(&data[15..17]);
    assert_eq!(std::fs::read(&down).unwrap(), want);

    // Past the capacity: the stream fails with the daemon's error.
    let o = d.virsh(&[
        "vol-upload",
        "--pool",
        "default-pool",
        "v1.img",
        u,
        "--offset",
        "500000",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("stream data exceeds the volume capacity"),
        "{err}"
    );
    // Sparse streams are refused up front.
    let o = d.virsh(&[
        "vol-upload",
        "--pool",
        "default-pool",
        "v1.img",
        u,
        "--sparse",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unsupported flags (0x1)"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Deleting the volume drops its content.
    d.virsh_ok(&["vol-delete", "--pool", "default-pool", "v1.img"]);
    d.virsh_ok(&["vol-create", "default-pool", vol.to_str().unwrap()]);
    d.virsh_ok(&[
        "vol-download",
        "--pool",
        "default-pool",
        "v1.img",
        dn,
        "--length",
        "4096",
    ]);
    assert_eq!(std::fs::read(&down).unwrap(), vec![0u8; 4096]);
}

fn create_volume(s: &mut std::os::unix::net::UnixStream, capacity: u64) -> NonnullStorageVol {
    let pool = call_raw(
        s,
        &encode_call(
            RemoteProc::StoragePoolLookupByName,
            2,
            &NameArgs {
                name: "default-pool".into(),
            },
        ),
    )
    .decode_payload::<StoragePoolRet>()
    .unwrap()
    .pool;
    call_raw(
        s,
        &encode_call(
            RemoteProc::StorageVolCreateXml,
            3,
            &StorageVolCreateXmlArgs {
                pool,
                xml: format!(
                    "<volume><name>raw.img</name><capacity unit='bytes'>{capacity}</capacity></volume>"
                ),
                flags: 0,
            },
        ),
    )
    .decode_payload::<StorageVolRet>()
    .unwrap()
    .vol
}

#[test]
fn raw_stream_framing() {
    let d = Daemon::start();
    let mut s = connect(&d);
    handshake(&mut s);
    let vol = create_volume(&mut s, 600_000);

    // Upload 300000 bytes in two packets, then finish with STREAM OK.
    let up = Header::call(RemoteProc::StorageVolUpload, 10);
    let args = StorageVolTransferArgs {
        vol: vol.clone(),
        offset: 0,
        length: 0,
        flags: 0,
    };
    let r = call_raw(
        &mut s,
        &encode_call(RemoteProc::StorageVolUpload, 10, &args),
    );
    assert_eq!(
        (r.header.kind, r.header.status),
        (MessageType::Reply, MessageStatus::Ok)
    );
    let data = pseudo_random(300_000);
    for part in [&data[..200_000], &data[200_000..]] {
        s.write_all(&encode_packet(&up.stream(MessageStatus::Continue), part))
            .unwrap();
    }
    s.write_all(&encode_packet(&up.stream(MessageStatus::Ok), &[]))
        .unwrap();
    let r = read_packet(&mut s).unwrap();
    assert_eq!(
        (
            r.header.kind,
            r.header.status,
            r.header.serial,
            r.header.proc_
        ),
        (MessageType::Stream, MessageStatus::Ok, 10, 208)
    );
    assert!(r.payload.is_empty());

    // Download it back: REPLY, CONTINUE packets of at most 262120 bytes, an empty
    // CONTINUE; then the client's OK and the daemon's OK.
    let args = StorageVolTransferArgs {
        length: 300_000,
        ..args
    };
    let r = call_raw(
        &mut s,
        &encode_call(RemoteProc::StorageVolDownload, 11, &args),
    );
    assert_eq!(
        (r.header.kind, r.header.status),
        (MessageType::Reply, MessageStatus::Ok)
    );
    let mut got = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let p = read_packet(&mut s).unwrap();
        assert_eq!(
            (
                p.header.kind,
                p.header.status,
                p.header.serial,
                p.header.proc_
            ),
            (MessageType::Stream, MessageStatus::Continue, 11, 209)
        );
        if p.payload.is_empty() {
            break;
        }
        sizes.push(p.payload.len());
        got.extend_from_slice(&p.payload);
    }
    assert_eq!(sizes, [STREAM_CHUNK_MAX, 300_000 - STREAM_CHUNK_MAX]);
    assert!(got == data);
    let down = Header::call(RemoteProc::StorageVolDownload, 11);
    s.write_all(&encode_packet(&down.stream(MessageStatus::Ok), &[]))
        .unwrap();
    let p = read_packet(&mut s).unwrap();
    assert_eq!(
        (p.header.kind, p.header.status),
        (MessageType::Stream, MessageStatus::Ok)
    );

    // A client abort (STREAM ERROR) of an upload is confirmed with STREAM OK.
    let r = call_raw(
        &mut s,
        &encode_call(
            RemoteProc::StorageVolUpload,
            12,
            &StorageVolTransferArgs {
                offset: 0,
                length: 0,
                flags: 0,
                vol: vol.clone(),
            },
        ),
    );
    assert_eq!(r.header.status, MessageStatus::Ok);
    let ab = Header::call(RemoteProc::StorageVolUpload, 12);
    s.write_all(&encode_packet(&ab.stream(MessageStatus::Continue), b"xyz"))
        .unwrap();
    s.write_all(&encode_packet(&ab.stream(MessageStatus::Error), &[]))
        .unwrap();
    let p = read_packet(&mut s).unwrap();
    assert_eq!(
        (p.header.kind, p.header.status, p.header.serial),
        (MessageType::Stream, MessageStatus::Ok, 12)
    );

    // Stream packets for no open stream are dropped; the connection goes on.
    s.write_all(&encode_packet(&ab.stream(MessageStatus::Continue), b"late"))
        .unwrap();
    // Errors before the stream starts are ordinary error replies.
    let e = error_of(&call_raw(
        &mut s,
        &encode_call(
            RemoteProc::StorageVolDownload,
            13,
            &StorageVolTransferArgs {
                offset: 700_000,
                length: 0,
                flags: 0,
                vol: vol.clone(),
            },
        ),
    ));
    assert_eq!(e.code, 8, "{:?}", e.message);
    let e = error_of(&call_raw(
        &mut s,
        &encode_call(
            RemoteProc::StorageVolDownload,
            14,
            &StorageVolTransferArgs {
                offset: 0,
                length: 0,
                flags: 0,
                vol: NonnullStorageVol {
                    name: "nope.img".into(),
                    ..vol
                },
            },
        ),
    ));
    assert_eq!(e.code, 50, "{:?}", e.message);
    let r = call_raw(&mut s, &encode_call(RemoteProc::ConnectGetType, 15, &()));
    assert_eq!(r.header.status, MessageStatus::Ok);
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn download_to_a_client_that_does_not_read_stays_bounded() {
    let d = Daemon::start();
    let mut s = connect(&d);
    handshake(&mut s);
    let size: u64 = 96 << 20;
    let vol = create_volume(&mut s, size);
    let before = rss_kib(d.child.id());
    let r = call_raw(
        &mut s,
        &encode_call(
            RemoteProc::StorageVolDownload,
            10,
            &StorageVolTransferArgs {
                vol,
                offset: 0,
                length: 0,
                flags: 0,
            },
        ),
    );
    assert_eq!(r.header.status, MessageStatus::Ok);
    // Without flow control the daemon would queue all 96 MiB for the socket.
    std::thread::sleep(std::time::Duration::from_millis(800));
    let during = rss_kib(d.child.id());
    assert!(
        during < before + 24 * 1024,
        "RSS grew from {before} to {during} KiB while the client did not read"
    );
    let mut total = 0u64;
    loop {
        let p = read_packet(&mut s).unwrap();
        assert_eq!(p.header.kind, MessageType::Stream);
        if p.payload.is_empty() {
            break;
        }
        total += p.payload.len() as u64;
    }
    assert_eq!(total, size);
}
