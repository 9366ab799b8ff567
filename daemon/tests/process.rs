//! The daemon process: the state-directory lock and an orderly SIGTERM.

mod common;

use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{Daemon, spawn};

#[test]
fn second_daemon_is_refused_and_sigterm_cleans_up() {
    let mut d = Daemon::start();
    // A second vireod on the same directory exits with an error while the first runs.
    let mut second = spawn(d.state());
    let t = std::time::Instant::now();
    let status = loop {
        if let Some(st) = second.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "second vireod kept running"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    assert!(d.log().contains("already running"), "{}", d.log());
    // The first still serves.
    assert!(UnixStream::connect(d.sock()).is_ok());

    // SIGTERM: clean exit, sockets and lock file removed.
    d.signal(15);
    assert_eq!(d.wait_exit(Duration::from_secs(20)), Some(0), "{}", d.log());
    assert!(!d.sock().exists());
    assert!(!d.sock_ro().exists());
    assert!(!d.state().join("run/vireod.lock").exists());
    assert!(UnixStream::connect(d.sock()).is_err());

    // And a new daemon can take the directory over, with the state it left.
    let d2 = Daemon {
        child: spawn(d.state()),
        dir: tempfile::tempdir().unwrap(),
    };
    let t = std::time::Instant::now();
    while UnixStream::connect(d.sock()).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "restart failed: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(d2);
}

#[test]
fn sigint_also_stops() {
    let mut d = Daemon::start();
    d.signal(2);
    assert_eq!(d.wait_exit(Duration::from_secs(20)), Some(0), "{}", d.log());
    assert!(!d.sock().exists());
}
