//! Save, restore and managed save of the test driver with real `virsh` against `vireod`:
//! one virsh session (libvirtd's `test:///default` lives as long as its connection, so a
//! session is what can be compared) whose stdout, stderr and save image must be exactly
//! what libvirt 9.0's libvirtd printed and wrote for the same commands
//! (`data/test_driver_save.*`, captured with `/work/shared/tools/libvirtd-private.sh`).

mod common;

use common::{Daemon, have_virsh};

const SESSION: &str = "save test @DIR@/t.save; domstate test --reason; list --all; \
    save-image-dumpxml @DIR@/t.save; restore @DIR@/t.save; domstate test --reason; \
    managedsave test; list --all --managed-save; domstate test --reason; start test; \
    domstate test --reason; managedsave test; managedsave-remove test; \
    list --all --managed-save; save test @DIR@/t.save; undefine test; \
    restore @DIR@/t.save; list --all --persistent; list --all --transient; \
    save test @DIR@/t.save --bypass-cache; managedsave test; restore @DIR@/nonexist; \
    domjobinfo test; domjobabort test; destroy test; list --all";

#[test]
fn save_restore_managedsave_session_matches_libvirtd() {
    if !have_virsh() {
        return;
    }
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let dir_s = dir.path().to_str().unwrap();
    // `timeout`: a hung virsh fails the test instead of stalling the suite.
    let o = std::process::Command::new("timeout")
        .args([
            "60",
            "virsh",
            "-c",
            &d.uri(),
            &SESSION.replace("@DIR@", dir_s),
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).replace(dir_s, "@DIR@");
    let err = String::from_utf8_lossy(&o.stderr).replace(dir_s, "@DIR@");
    assert_eq!(out, include_str!("data/test_driver_save.out"));
    assert_eq!(err, include_str!("data/test_driver_save.err"));
    let img = std::fs::read(dir.path().join("t.save")).unwrap();
    assert_eq!(
        img,
        include_bytes!("data/test_driver_save.img"),
        "the image is byte for byte libvirt's"
    );
}
