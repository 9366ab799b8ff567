//! The `vireo` command-line client end to end: every command against a real vireod
//! (the binary, run as its own process), `vireo events` in one process seeing the
//! lifecycle another process causes, the JSON forms parsing, the error path (libvirt's
//! message, status 1), and `list`, `info`, error messages and `events` giving the
//! same output against the real libvirtd's test driver as against vireod (under
//! `CI=true` a missing libvirtd fails that test).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Daemon;
use common::libvirtd::{LIBVIRTD, Libvirtd};
use serde_json::Value;

const VIREO: &str = env!("CARGO_BIN_EXE_vireo");

fn domain_xml(name: &str) -> String {
    format!(
        "<domain type='test'><name>{name}</name><memory unit='KiB'>65536</memory>\
         <vcpu>1</vcpu><os><type>hvm</type></os></domain>"
    )
}

/// `vireo` with no connection settings from the environment.
fn cmd() -> Command {
    let mut c = Command::new(VIREO);
    c.env_remove("VIREO_STATE_DIR").stdin(Stdio::null());
    c
}

fn run_uri(uri: &str, args: &[&str]) -> Output {
    cmd()
        .arg("-c")
        .arg(uri)
        .args(args)
        .output()
        .expect("run vireo")
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("utf-8 output")
}

/// Runs `vireo -c URI args`, expects success and an empty stderr; returns stdout.
fn ok_uri(uri: &str, args: &[&str]) -> String {
    let o = run_uri(uri, args);
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "vireo {args:?}: status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

fn ok(d: &Daemon, args: &[&str]) -> String {
    ok_uri(&d.uri(), args)
}

/// Runs a failing command; returns (status, stdout, stderr).
fn fail(d: &Daemon, args: &[&str]) -> (Option<i32>, String, String) {
    let o = run_uri(&d.uri(), args);
    (o.status.code(), text(&o.stdout), text(&o.stderr))
}

fn write_xml(d: &Daemon, name: &str) -> PathBuf {
    let p = d.state().join(format!("{name}.xml"));
    std::fs::write(&p, domain_xml(name)).unwrap();
    p
}

fn info_json(d: &Daemon, name: &str) -> Value {
    serde_json::from_str(&ok(d, &["info", name, "--json"])).expect("info --json parses")
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<i32> {
    let t = Instant::now();
    while t.elapsed() < within {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("vireo did not exit within {within:?}");
}

/// A running `vireo events`: its stdout lines arrive on `lines`.
struct Watcher {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Its stderr lines after the "watching" one.
    errors: mpsc::Receiver<String>,
}

impl Watcher {
    /// Starts `vireo -c URI events ARGS` and waits until it says it is subscribed.
    fn start(d: &Daemon, args: &[&str]) -> Watcher {
        Watcher::start_uri(&d.uri(), args, &|| d.log())
    }

    fn start_uri(uri: &str, args: &[&str], log: &dyn Fn() -> String) -> Watcher {
        let mut child = cmd()
            .arg("-c")
            .arg(uri)
            .arg("events")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let (etx, erx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines() {
                let Ok(l) = l else { break };
                let _ = etx.send(l);
            }
        });
        match erx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => assert_eq!(l, "vireo: watching domain events"),
            Err(e) => panic!("vireo events did not subscribe: {e}; log:\n{}", log()),
        }
        Watcher {
            child,
            lines,
            errors: erx,
        }
    }

    /// The next line, waiting up to 10 s.
    fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .expect("an event line")
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, sig).unwrap();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Checks the time column (RFC 3339, UTC, milliseconds) and replaces it with `T`.
fn normalise_time(line: &str) -> String {
    let (time, rest) = line.split_once(' ').expect("a time column");
    let b = time.as_bytes();
    let shape_ok = b.len() == 24
        && time.ends_with('Z')
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && time
            .chars()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16, 19, 23].contains(&i) || c.is_ascii_digit());
    assert!(shape_ok, "not an RFC 3339 UTC time: {time:?} in {line:?}");
    format!("T {rest}")
}

#[test]
fn list_info_xml_and_version_against_vireod() {
    let d = Daemon::start();
    assert_eq!(ok(&d, &["list"]), "ID  NAME  STATE\n1   test  running\n");
    let all: Value = serde_json::from_str(&ok(&d, &["list", "--all", "--json"])).unwrap();
    let arr = all.as_array().expect("a JSON array");
    assert_eq!(arr.len(), 1, "{all}");
    assert_eq!(arr[0]["name"], "test");
    assert_eq!(arr[0]["id"], 1);
    assert_eq!(arr[0]["state"], "running");
    let uuid = arr[0]["uuid"].as_str().unwrap().to_string();
    assert_eq!(uuid.len(), 36);

    let info = ok(&d, &["info", "test"]);
    let keys: Vec<&str> = info
        .lines()
        .map(|l| l.split_once(':').expect("key: value").0)
        .collect();
    assert_eq!(
        keys,
        [
            "name",
            "uuid",
            "id",
            "state",
            "reason",
            "persistent",
            "autostart",
            "vcpus",
            "max memory",
            "memory",
            "cpu time"
        ]
    );
    assert!(info.starts_with(&format!(
        "name:       test\nuuid:       {uuid}\nid:         1\n"
    )));
    assert!(info.contains("state:      running\n"), "{info}");
    assert!(info.contains("persistent: yes\n"), "{info}");
    let j = info_json(&d, "test");
    assert_eq!(j["name"], "test");
    assert_eq!(j["uuid"], uuid.as_str());
    assert_eq!(j["state"], "running");
    assert_eq!(j["persistent"], true);
    assert!(j["vcpus"].as_u64().unwrap() >= 1);
    assert!(j["max_memory"].as_u64().unwrap() >= j["memory"].as_u64().unwrap());

    let xml = ok(&d, &["xml", "test"]);
    assert!(xml.contains("<name>test</name>"), "{xml}");
    assert!(xml.contains(&format!("<uuid>{uuid}</uuid>")), "{xml}");
    assert!(xml.ends_with("</domain>\n"), "{xml}");

    let v = ok(&d, &["version"]);
    let lines: Vec<&str> = v.lines().collect();
    assert_eq!(lines.len(), 3, "{v}");
    assert_eq!(
        lines[0],
        format!("client:     vireo {}", env!("CARGO_PKG_VERSION"))
    );
    assert!(lines[1].starts_with("daemon:     libvirt "), "{v}");
    assert!(lines[2].starts_with("hypervisor: TEST "), "{v}");
    let vj: Value = serde_json::from_str(&ok(&d, &["version", "--json"])).unwrap();
    assert_eq!(vj["hypervisor"], "TEST");
    assert_eq!(vj["client"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn lifecycle_commands_drive_a_domain_through_its_life() {
    let d = Daemon::start();
    let f = write_xml(&d, "cli-life");
    let out = ok(&d, &["define", f.to_str().unwrap()]);
    assert!(out.starts_with("defined domain cli-life ("), "{out}");
    let uuid = info_json(&d, "cli-life")["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(out, format!("defined domain cli-life ({uuid})\n"));
    assert_eq!(
        ok(&d, &["list", "--all"]),
        "ID  NAME      STATE\n1   test      running\n-   cli-life  shut off\n"
    );
    assert_eq!(ok(&d, &["list"]), "ID  NAME  STATE\n1   test  running\n");

    let state = |want: &str, reason: &str| {
        let j = info_json(&d, "cli-life");
        assert_eq!(
            (j["state"].as_str(), j["reason"].as_str()),
            (Some(want), Some(reason))
        );
    };
    assert_eq!(
        ok(&d, &["start", "cli-life", "--paused"]),
        "started domain cli-life (paused)\n"
    );
    state("paused", "user");
    assert_eq!(ok(&d, &["resume", "cli-life"]), "resumed domain cli-life\n");
    state("running", "unpaused");
    assert_eq!(
        ok(&d, &["suspend", "cli-life"]),
        "suspended domain cli-life\n"
    );
    state("paused", "user");
    ok(&d, &["resume", "cli-life"]);
    assert_eq!(
        ok(&d, &["reboot", "cli-life"]),
        "reboot requested for domain cli-life\n"
    );
    assert_eq!(
        ok(&d, &["stop", "cli-life"]),
        "shutdown requested for domain cli-life\n"
    );
    state("shut off", "shutdown");
    assert_eq!(ok(&d, &["start", "cli-life"]), "started domain cli-life\n");
    state("running", "booted");
    let listed = ok(&d, &["list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("cli-life") && l.ends_with("running")),
        "{listed}"
    );
    assert_eq!(
        ok(&d, &["destroy", "cli-life"]),
        "destroyed domain cli-life\n"
    );
    state("shut off", "destroyed");
    assert_eq!(
        ok(&d, &["undefine", "cli-life"]),
        "undefined domain cli-life\n"
    );
    assert_eq!(
        ok(&d, &["list", "--all"]),
        "ID  NAME  STATE\n1   test  running\n"
    );
}

/// `vireo events --count 3` on `uri` while another `vireo` defines, starts and
/// destroys a domain; returns the event lines with the time column normalised.
fn three_lifecycle_events(uri: &str, dir: &Path, log: &dyn Fn() -> String) -> Vec<String> {
    let mut w = Watcher::start_uri(uri, &["--count", "3"], log);
    let f = dir.join("cli-ev.xml");
    std::fs::write(&f, domain_xml("cli-ev")).unwrap();
    ok_uri(uri, &["define", f.to_str().unwrap()]);
    ok_uri(uri, &["start", "cli-ev"]);
    ok_uri(uri, &["destroy", "cli-ev"]);
    assert_eq!(wait_exit(&mut w.child, Duration::from_secs(10)), Some(0));
    w.lines.try_iter().map(|l| normalise_time(&l)).collect()
}

#[test]
fn events_in_one_process_see_the_lifecycle_another_process_causes() {
    let d = Daemon::start();
    assert_eq!(
        three_lifecycle_events(&d.uri(), d.state(), &|| d.log()),
        [
            "T cli-ev defined added",
            "T cli-ev started booted",
            "T cli-ev stopped destroyed",
        ]
    );
}

#[test]
fn events_json_lines_parse_and_the_domain_filter_applies() {
    let d = Daemon::start();
    let w = Watcher::start(&d, &["--json", "--domain", "cli-b", "--count", "4"]);
    let (a, b) = (write_xml(&d, "cli-a"), write_xml(&d, "cli-b"));
    for (f, name) in [(&a, "cli-a"), (&b, "cli-b")] {
        ok(&d, &["define", f.to_str().unwrap()]);
        ok(&d, &["start", name, "--paused"]);
        ok(&d, &["destroy", name]);
    }
    let uuid = info_json(&d, "cli-b")["uuid"].as_str().unwrap().to_string();
    let mut got = Vec::new();
    for _ in 0..4 {
        let v: Value = serde_json::from_str(&w.line()).expect("an event line is JSON");
        assert_eq!(v["domain"], "cli-b", "{v}");
        assert_eq!(v["uuid"], uuid.as_str(), "{v}");
        normalise_time(&format!("{} x", v["time"].as_str().unwrap()));
        got.push(format!(
            "{} {}",
            v["event"].as_str().unwrap(),
            v["detail"].as_str().unwrap()
        ));
    }
    assert_eq!(
        got,
        [
            "defined added",
            "started booted",
            "suspended paused",
            "stopped destroyed"
        ]
    );
}

#[test]
fn events_end_cleanly_on_timeout_sigint_and_sigterm() {
    let d = Daemon::start();
    let t = Instant::now();
    let o = run_uri(&d.uri(), &["events", "--timeout", "0.3"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(o.stdout.is_empty());
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(t.elapsed() < Duration::from_secs(10));
    for sig in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
    ] {
        let mut w = Watcher::start(&d, &[]);
        w.signal(sig);
        assert_eq!(
            wait_exit(&mut w.child, Duration::from_secs(10)),
            Some(0),
            "after {sig}"
        );
    }
}

#[test]
fn events_fail_when_the_daemon_goes_away() {
    let mut d = Daemon::start();
    let mut w = Watcher::start(&d, &[]);
    d.signal(15);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(wait_exit(&mut w.child, Duration::from_secs(10)), Some(1));
    assert_eq!(
        w.errors.recv_timeout(Duration::from_secs(5)).unwrap(),
        "error: the connection to the daemon was lost"
    );
}

#[test]
fn events_end_quietly_when_the_reader_goes_away() {
    let d = Daemon::start();
    // `vireo events | head -n 1`, with vireo's own exit status (pipefail).
    let mut sh = Command::new("bash")
        .args([
            "-c",
            "set -o pipefail; \"$0\" -c \"$1\" events | head -n 1",
            VIREO,
            &d.uri(),
        ])
        .env_remove("VIREO_STATE_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(sh.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert_eq!(first, "vireo: watching domain events\n");
    // Cause events until vireo has written into the closed pipe and ended.
    let f = write_xml(&d, "cli-pipe");
    let t = Instant::now();
    let status = loop {
        ok(&d, &["define", f.to_str().unwrap()]);
        ok(&d, &["undefine", "cli-pipe"]);
        if let Some(st) = sh.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "vireo events did not end"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {rest}");
    assert_eq!(rest, "");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut sh.stdout.take().unwrap(), &mut out).unwrap();
    assert!(out.ends_with(" cli-pipe defined added\n"), "{out}");
}

#[test]
fn errors_print_libvirts_message_and_exit_1() {
    let d = Daemon::start();
    for args in [
        &["info", "nosuch"][..],
        &["xml", "nosuch"],
        &["start", "nosuch"],
        &["undefine", "nosuch"],
    ] {
        let (code, out, err) = fail(&d, args);
        assert_eq!(code, Some(1), "{args:?}");
        assert_eq!(out, "", "{args:?}");
        assert_eq!(err, "error: Domain not found\n", "{args:?}");
    }
    // An operation the state forbids: the test driver's message for it.
    let (code, _, err) = fail(&d, &["resume", "test"]);
    assert_eq!(code, Some(1));
    assert_eq!(err, "error: internal error: domain 'test' not paused\n");
    // Bad XML: the parser's message, as libvirt words it (it spans lines).
    let bad = d.state().join("bad.xml");
    std::fs::write(&bad, "<domain type='test'><name>x</name>").unwrap();
    let (code, _, err) = fail(&d, &["define", bad.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("error: (domain_definition):1: Premature end of data"),
        "{err}"
    );
    // Local failures say what failed.
    let (code, _, err) = fail(&d, &["define", "/nonexistent/x.xml"]);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("error: cannot read /nonexistent/x.xml: "),
        "{err}"
    );
    let o = run_uri("test+unix:///default?socket=/nonexistent/sock", &["list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).starts_with("error: Cannot connect to /nonexistent/sock: "));
    let o = cmd().arg("list").output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        "error: no connection URI: pass -c URI, or set VIREO_STATE_DIR to vireod's state directory\n"
    );
}

#[test]
fn the_default_uri_comes_from_vireo_state_dir() {
    let d = Daemon::start();
    let o = cmd()
        .env("VIREO_STATE_DIR", d.state())
        .arg("list")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "ID  NAME  STATE\n1   test  running\n");
}

#[test]
fn help_lists_the_commands_and_formats() {
    let o = cmd().arg("--help").output().unwrap();
    assert!(o.status.success());
    let h = text(&o.stdout);
    for word in [
        "list",
        "info",
        "xml",
        "define",
        "undefine",
        "start",
        "stop",
        "destroy",
        "suspend",
        "resume",
        "reboot",
        "events",
        "version",
        "--connect",
        "TIME DOMAIN EVENT DETAIL",
    ] {
        assert!(h.contains(word), "--help lacks {word}:\n{h}");
    }
}

#[test]
fn list_info_errors_and_events_match_between_libvirtd_and_vireod() {
    if !common::have("libvirtd", Command::new(LIBVIRTD).arg("--version")) {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("vireo-cli")
        .tempdir()
        .unwrap();
    let l = Libvirtd::start_test_driver(dir.path());
    let d = Daemon::start();
    for args in [
        &["list"][..],
        &["list", "--all"],
        &["list", "--all", "--json"],
    ] {
        assert_eq!(ok_uri(&l.test_uri(), args), ok(&d, args), "vireo {args:?}");
    }
    // info, less the wall-clock based cpu time of the test driver.
    let strip = |s: String| -> String {
        s.lines()
            .filter(|l| !l.starts_with("cpu time:"))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    assert_eq!(
        strip(ok_uri(&l.test_uri(), &["info", "test"])),
        strip(ok(&d, &["info", "test"]))
    );
    for args in [&["info", "nosuch"][..], &["resume", "test"]] {
        let o = run_uri(&l.test_uri(), args);
        assert_eq!(o.status.code(), Some(1), "vireo {args:?}");
        assert_eq!(text(&o.stderr), fail(&d, args).2, "vireo {args:?}");
    }
    // The events client works against libvirtd too, with the same lines.
    let log = || std::fs::read_to_string(dir.path().join("libvirtd.log")).unwrap_or_default();
    assert_eq!(
        three_lifecycle_events(&l.test_uri(), dir.path(), &log),
        three_lifecycle_events(&d.uri(), d.state(), &|| d.log())
    );
}
