//! Differential test: the same scripted virsh session against the real libvirtd (test
//! driver, private socket) and against vireod, compared command by command and line
//! by line.
//!
//! Both daemons start from `test:///default`'s built-in state. libvirt throws that
//! state away when its last connection closes, so a "keeper" connection stays open on
//! each daemon for the whole session (vireod keeps its state anyway). Each command runs
//! as its own `virsh -c URI ...` process; its stdout, stderr and exit status make up
//! its transcript.
//!
//! What legitimately differs is normalised away first: the socket path in URIs, UUIDs
//! of objects the session creates (any UUID not already present before the first
//! `define`), and the test driver's wall-clock-based CPU time. Differences that are
//! known and accepted are listed in [`KNOWN`], each with its reason, and in
//! docs/differences.md; any other difference fails the test.
//!
//! libvirtd runs with `LIBVIRT_DRIVER_DIR` pointing at an empty directory: only its
//! built-in test driver loads, which is all `test:///default` uses, and the QEMU and
//! network drivers do not take their system-wide pidfiles, so the test can run beside
//! another libvirtd. Under `CI=true` a missing `virsh` or `libvirtd` fails the test.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vireo_wire::packet::{decode_frame, encode_call};
use vireo_wire::procs::{AuthListRet, ConnectOpenArgs};
use vireo_wire::{RemoteProc, XdrDecode};

use common::libvirtd::{LIBVIRTD, Libvirtd};

/// The session, one virsh command per entry (arguments split on spaces; `{dir}` is the
/// test's scratch directory holding the XML files).
const SESSION: &[&str] = &[
    "list --all",
    "dominfo test",
    "domstate test",
    "domstate test --reason",
    "dumpxml test",
    "domid test",
    "domuuid test",
    "domname 1",
    "vcpucount test",
    "domblklist test",
    "domiflist test",
    "autostart test",
    "net-list --all",
    "net-dumpxml default",
    "net-info default",
    "net-uuid default",
    "pool-list --all",
    "pool-list --all --type dir",
    "pool-list --all --type logical,disk",
    "pool-info default-pool",
    "pool-dumpxml default-pool",
    "pool-uuid default-pool",
    "vol-list default-pool",
    "nodeinfo",
    "nodememstats",
    "version",
    "hostname",
    "uri",
    // A new domain through its whole life.
    "define {dir}/new.xml",
    "list --all",
    "dumpxml diff-new",
    "start diff-new",
    "domstate diff-new --reason",
    "suspend diff-new",
    "domstate diff-new --reason",
    "resume diff-new",
    "dominfo diff-new",
    "destroy diff-new",
    "domstate diff-new --reason",
    "undefine diff-new",
    "list --all",
    // Network and pool state changes.
    "net-destroy default",
    "net-list --all",
    "net-start default",
    "pool-destroy default-pool",
    "pool-list --all",
    "pool-start default-pool",
    // Error cases.
    "dominfo nosuch",
    "domstate nosuch",
    "start test",
    "resume test",
    "suspend nosuch",
    "undefine nosuch",
    "destroy diff-new",
    "dumpxml nosuch",
    "domifstat test nosuch",
    "domblkstat test nosuch",
    "net-info nosuch",
    "net-start default",
    "pool-info nosuch",
    "pool-start default-pool",
    "define {dir}/bad.xml",
    // Capabilities-less extras.
    "dommemstat test",
    "schedinfo test",
    "domstats test",
    "domstats --vcpu --balloon --list-running",
    "domstats --cpu-total --enforce test",
    "domstats --list-inactive",
    "schedinfo --live test",
    "shutdown test",
    "list --all",
    "start test",
    "list --all",
];

/// Commands whose transcripts may differ, and why. Keep in sync with
/// docs/differences.md.
const KNOWN: &[(&str, &str)] = &[
    (
        "dumpxml diff-new",
        "libvirt fills in defaults at define time (<boot dev='hd'/>, <clock \
         offset='utc'/>, on_poweroff/on_reboot/on_crash, an empty <devices/>); vireod \
         keeps the XML as given: vireo-xml applies no post-parse defaults yet",
    ),
    (
        "define {dir}/bad.xml",
        "the XML parse error's detail lines come from libxml2 in libvirt (its line \
         number and a '(null)' context line); vireod's parser reports the position \
         itself. The first line and the exit status agree",
    ),
];

/// Reads one reply frame from a blocking socket.
fn read_reply<R: XdrDecode>(s: &mut UnixStream) -> R {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match decode_frame(&buf) {
            Ok(Some((p, _))) => return vireo_wire::packet::decode_reply(&p).expect("reply"),
            Ok(None) => {}
            Err(e) => panic!("bad frame from the daemon: {e}"),
        }
        let n = s.read(&mut chunk).expect("read reply");
        assert!(n > 0, "the daemon closed the keeper connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Opens `test:///default` on `sock` and keeps the connection for as long as the
/// returned stream lives (libvirt resets the state when its last client leaves).
fn keeper(sock: &Path) -> UnixStream {
    let mut s = UnixStream::connect(sock).expect("connect keeper");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&encode_call(RemoteProc::AuthList, 0, &()))
        .unwrap();
    let _: AuthListRet = read_reply(&mut s);
    let open = ConnectOpenArgs {
        name: Some("test:///default".into()),
        flags: 0,
    };
    s.write_all(&encode_call(RemoteProc::ConnectOpen, 1, &open))
        .unwrap();
    read_reply::<()>(&mut s);
    s
}

/// Runs the session against the daemon at `sock`; returns one transcript per command.
fn run_session(sock: &Path, dir: &Path) -> Vec<String> {
    let uri = format!("test+unix:///default?socket={}", sock.display());
    SESSION
        .iter()
        .map(|cmd| {
            let line = cmd.replace("{dir}", &dir.display().to_string());
            let out = Command::new("virsh")
                .arg("-c")
                .arg(&uri)
                .args(line.split(' '))
                .output()
                .expect("run virsh");
            format!(
                "{}\n--- stderr\n{}\n--- status {}",
                String::from_utf8_lossy(&out.stdout).trim_end(),
                String::from_utf8_lossy(&out.stderr).trim_end(),
                out.status.code().unwrap_or(-1)
            )
            .replace(&sock.display().to_string(), "SOCK")
        })
        .collect()
}

/// The byte ranges of UUIDs (8-4-4-4-12 hex digits) in `s`.
fn uuids(s: &str) -> Vec<(usize, usize)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 36 <= b.len() {
        let ok = (0..36).all(|k| match k {
            8 | 13 | 18 | 23 => b[i + k] == b'-',
            _ => b[i + k].is_ascii_hexdigit(),
        });
        let bounded = (i == 0 || !b[i - 1].is_ascii_alphanumeric())
            && (i + 36 == b.len() || !b[i + 36].is_ascii_alphanumeric());
        if ok && bounded {
            out.push((i, i + 36));
            i += 36;
        } else {
            i += 1;
        }
    }
    out
}

/// Normalises one daemon's transcripts: UUIDs not seen before the first `define`
/// become `<new-uuid>`, the test driver's CPU time (wall-clock based) becomes `<time>`.
fn normalise(transcripts: &[String]) -> Vec<String> {
    let first_define = SESSION
        .iter()
        .position(|c| c.starts_with("define "))
        .unwrap_or(SESSION.len());
    let mut known = std::collections::HashSet::new();
    for t in &transcripts[..first_define] {
        for (a, z) in uuids(t) {
            known.insert(t[a..z].to_string());
        }
    }
    transcripts
        .iter()
        .map(|t| {
            let mut s = String::with_capacity(t.len());
            let mut last = 0;
            for (a, z) in uuids(t) {
                s.push_str(&t[last..a]);
                if known.contains(&t[a..z]) {
                    s.push_str(&t[a..z]);
                } else {
                    s.push_str("<new-uuid>");
                }
                last = z;
            }
            s.push_str(&t[last..]);
            s.lines()
                .map(|l| {
                    if l.starts_with("CPU time:") {
                        "CPU time:       <time>".to_string()
                    } else {
                        l.trim_end().to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

/// Line-by-line differences of two transcripts, as `-libvirtd`/`+vireod` lines.
fn line_diff(a: &str, b: &str) -> Vec<String> {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let mut out = Vec::new();
    for i in 0..la.len().max(lb.len()) {
        let (x, y) = (la.get(i).copied(), lb.get(i).copied());
        if x != y {
            out.push(format!(
                "  line {}:\n    libvirtd: {}\n    vireod:   {}",
                i + 1,
                x.unwrap_or("<none>"),
                y.unwrap_or("<none>")
            ));
        }
    }
    out
}

fn have_libvirtd() -> bool {
    common::have("libvirtd", Command::new(LIBVIRTD).arg("--version"))
}

#[test]
fn virsh_session_matches_libvirtd() {
    if !common::have_virsh() || !have_libvirtd() {
        return;
    }
    let t0 = Instant::now();
    let scratch = tempfile::Builder::new()
        .prefix("vireo-diff")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = scratch.path();
    std::fs::write(
        dir.join("new.xml"),
        "<domain type='test'>\n  <name>diff-new</name>\n  \
         <memory unit='KiB'>131072</memory>\n  <vcpu>1</vcpu>\n  \
         <os><type arch='i686'>hvm</type></os>\n</domain>\n",
    )
    .unwrap();
    std::fs::write(dir.join("bad.xml"), "<domain type=\"test\"><name>bad\n").unwrap();

    let libvirtd = Libvirtd::start_test_driver(&dir.join("libvirtd"));
    let vireod = common::Daemon::start();
    let _keep_l = keeper(&libvirtd.sock());
    let _keep_v = keeper(&vireod.sock());

    // The two sessions are independent: run them side by side.
    let (ref_out, our_out) = std::thread::scope(|s| {
        let l = s.spawn(|| normalise(&run_session(&libvirtd.sock(), dir)));
        let v = normalise(&run_session(&vireod.sock(), dir));
        (l.join().expect("libvirtd session"), v)
    });

    let mut unexpected = Vec::new();
    let mut accepted = Vec::new();
    let mut resolved = Vec::new();
    for (i, cmd) in SESSION.iter().enumerate() {
        let diff = line_diff(&ref_out[i], &our_out[i]);
        let known = KNOWN.iter().find(|(c, _)| c == cmd);
        match (diff.is_empty(), known) {
            (true, Some(_)) => resolved.push(*cmd),
            (true, None) => {}
            (false, Some((_, why))) => accepted.push(format!("{cmd}: {why}")),
            (false, None) => unexpected.push(format!(
                "virsh {cmd}\n{}\n  --- libvirtd:\n{}\n  --- vireod:\n{}",
                diff.join("\n"),
                ref_out[i],
                our_out[i]
            )),
        }
    }
    eprintln!(
        "{} commands compared in {:.1} s; {} known differences seen",
        SESSION.len(),
        t0.elapsed().as_secs_f64(),
        accepted.len()
    );
    for a in &accepted {
        eprintln!("  known: {a}");
    }
    for r in &resolved {
        eprintln!("  NOTE: known difference for `{r}` no longer shows; remove it from KNOWN");
    }
    // The keeper connections kept the state: the session's own checks rely on it.
    assert!(
        ref_out[SESSION.len() - 1].contains("test"),
        "libvirtd transcript looks empty: {}",
        ref_out[SESSION.len() - 1]
    );
    assert!(
        unexpected.is_empty(),
        "{} unexpected differences between libvirtd and vireod:\n\n{}\n\nvireod log:\n{}",
        unexpected.len(),
        unexpected.join("\n\n"),
        vireod
            .log()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn normalisation_keeps_existing_uuids_and_hides_new_ones() {
    let old = "6695eb01-f6a4-8304-79aa-97f2502e193f";
    let mut t = vec![String::new(); SESSION.len()];
    t[0] = format!("uuid {old}");
    let first_define = SESSION
        .iter()
        .position(|c| c.starts_with("define "))
        .unwrap();
    t[first_define + 1] =
        format!("{old} 11111111-2222-3333-4444-555555555555\nCPU time:       12.5s  ");
    let n = normalise(&t);
    assert_eq!(n[0], format!("uuid {old}"));
    assert_eq!(
        n[first_define + 1],
        format!("{old} <new-uuid>\nCPU time:       <time>")
    );
    assert_eq!(uuids("x6695eb01-f6a4-8304-79aa-97f2502e193f"), vec![]);
    assert_eq!(
        line_diff("a\nb", "a\nc\nd"),
        vec![
            "  line 2:\n    libvirtd: b\n    vireod:   c".to_string(),
            "  line 3:\n    libvirtd: <none>\n    vireod:   d".to_string()
        ]
    );
}
