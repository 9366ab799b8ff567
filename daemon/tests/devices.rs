//! Node devices, host interfaces and secrets through real `virsh`. Expected outputs
//! are what virsh prints against libvirt 9.0's libvirtd with `test:///default` (run
//! as one virsh session, since libvirtd drops that state when its last connection
//! closes), except where docs/differences.md says otherwise.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Daemon, have_virsh, norm};

/// Runs one virsh session (commands separated by `;`); returns stdout and stderr.
fn session(d: &Daemon, script: &str) -> (String, String) {
    let o = Command::new("virsh")
        .args(["-c", &d.uri(), script])
        .output()
        .unwrap();
    (
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8(o.stderr).unwrap(),
    )
}

const COMPUTER_XML: &str = "<device>
  <name>computer</name>
  <capability type='system'>
    <hardware>
      <vendor>Libvirt</vendor>
      <version>Test driver</version>
      <serial>123456</serial>
      <uuid>11111111-2222-3333-4444-555555555555</uuid>
    </hardware>
    <firmware>
      <vendor>Libvirt</vendor>
      <version>Test Driver</version>
      <release_date>01/22/2007</release_date>
    </firmware>
  </capability>
</device>";

#[test]
fn node_devices() {
    if !have_virsh() {
        return;
    }
    let d = Daemon::start();
    // libvirt 9.0 refuses virsh's ACTIVE flag here (a known difference).
    assert_eq!(
        norm(&d.virsh_ok(&["nodedev-list"])),
        "computer\nscsi_host1\nscsi_host11\nscsi_host2"
    );
    assert_eq!(
        norm(&d.virsh_ok(&["nodedev-list", "--cap", "system"])),
        "computer"
    );
    assert_eq!(
        norm(&d.virsh_ok(&["nodedev-dumpxml", "computer"])),
        COMPUTER_XML
    );
    let x = d.virsh_ok(&["nodedev-dumpxml", "scsi_host11"]);
    assert!(
        x.contains("<parent>scsi_host1</parent>") && x.contains("<host>11</host>"),
        "{x}"
    );

    let vhba = d.state().join("vhba.xml");
    std::fs::write(
        &vhba,
        "<device>\n  <parent>scsi_host1</parent>\n  <capability type='scsi_host'>\n    \
         <capability type='fc_host'>\n      <wwnn>2001001b32a9da4e</wwnn>\n      \
         <wwpn>2101001b32a9da4e</wwpn>\n    </capability>\n  </capability>\n</device>\n",
    )
    .unwrap();
    let v = vhba.to_str().unwrap();
    let (out, err) = session(
        &d,
        &format!(
            "nodedev-create {v}; nodedev-dumpxml scsi_host12; nodedev-destroy scsi_host12; \
             nodedev-destroy scsi_host12; nodedev-destroy computer; nodedev-dumpxml nosuch"
        ),
    );
    assert_eq!(
        norm(&out),
        format!(
            "Node device scsi_host12 created from {v}\n\n<device>\n  <name>scsi_host12</name>\n  \
             <parent>scsi_host1</parent>\n  <capability type='scsi_host'>\n    <host>11</host>\n    \
             <unique_id>10</unique_id>\n    <capability type='fc_host'>\n      \
             <wwnn>2001001b32a9da4e</wwnn>\n      <wwpn>2101001b32a9da4e</wwpn>\n      \
             <fabric_wwn>2000000043214321</fabric_wwn>\n    </capability>\n  </capability>\n\
             </device>\n\nDestroyed node device 'scsi_host12'\n\n\n\
             Destroyed node device 'computer'"
        )
    );
    assert_eq!(
        norm(&err),
        "error: Could not find matching device 'scsi_host12'\n\
         error: Node device not found: no node device with matching name 'scsi_host12'\n\
         error: Could not find matching device 'nosuch'\n\
         error: Node device not found: no node device with matching name 'nosuch'"
    );
    // The quirk kept from libvirt 9.0: "destroying" a non-FC device changes nothing.
    assert_eq!(
        norm(&d.virsh_ok(&["nodedev-dumpxml", "computer"])),
        COMPUTER_XML
    );
}

#[test]
fn interfaces() {
    if !have_virsh() {
        return;
    }
    let d = Daemon::start();
    assert_eq!(
        norm(&d.virsh_ok(&["iface-list", "--all"])),
        " Name   State    MAC Address\n------------------------------------\n eth1   active   aa:bb:cc:dd:ee:ff"
    );
    assert_eq!(
        norm(&d.virsh_ok(&["iface-dumpxml", "eth1"])),
        "<interface type='ethernet' name='eth1'>\n  <start mode='onboot'/>\n  <mtu size='1492'/>\n  \
         <protocol family='ipv4'>\n    <ip address='192.168.0.5' prefix='24'/>\n    \
         <route gateway='192.168.0.1'/>\n  </protocol>\n  <mac address='aa:bb:cc:dd:ee:ff'/>\n\
         </interface>"
    );
    assert_eq!(
        norm(&d.virsh_ok(&["iface-name", "aa:bb:cc:dd:ee:ff"])),
        "eth1"
    );
    assert_eq!(
        norm(&d.virsh_ok(&["iface-mac", "eth1"])),
        "aa:bb:cc:dd:ee:ff"
    );
    let br = d.state().join("br.xml");
    let br_xml = "<interface type='bridge' name='br0'>\n  <start mode='onboot'/>\n  \
                  <bridge stp='off' delay='0'>\n    <interface type='ethernet' name='eth0'>\n      \
                  <mac address='52:54:00:12:34:56'/>\n    </interface>\n  </bridge>\n</interface>";
    std::fs::write(&br, format!("{br_xml}\n")).unwrap();
    let b = br.to_str().unwrap();
    let (out, err) = session(
        &d,
        &format!(
            "iface-define {b}; iface-dumpxml br0; iface-list --all; iface-start br0; \
             iface-start br0; iface-list; iface-destroy br0; iface-destroy br0; \
             iface-undefine br0; iface-undefine eth1; iface-list --all; iface-dumpxml nope"
        ),
    );
    assert_eq!(
        norm(&out),
        format!(
            "Interface br0 defined from {b}\n\n{br_xml}\n\n \
             Name   State      MAC Address\n--------------------------------------\n \
             br0    inactive\n eth1   active     aa:bb:cc:dd:ee:ff\n\n\
             Interface br0 started\n\n\n \
             Name   State    MAC Address\n------------------------------------\n \
             br0    active\n eth1   active   aa:bb:cc:dd:ee:ff\n\n\
             Interface br0 destroyed\n\n\nInterface br0 undefined\n\n\
             Interface eth1 undefined\n\n \
             Name   State   MAC Address\n-----------------------------"
        )
    );
    assert_eq!(
        norm(&err),
        "error: Failed to start interface br0\nerror: Requested operation is not valid\n\
         error: Failed to destroy interface br0\nerror: Requested operation is not valid\n\
         error: failed to get interface 'nope'\n\
         error: Interface not found: no interface with matching name 'nope'"
    );
}

#[test]
fn secrets_define_value_list_undefine_and_persist() {
    if !have_virsh() {
        return;
    }
    let mut d = Daemon::start();
    let f = d.state().join("secret.xml");
    let uuid = "9f4b3b5e-4d2c-4f4e-9a52-0d6a5c3b1e07";
    std::fs::write(
        &f,
        format!(
            "<secret ephemeral='no' private='no'>\n  <uuid>{uuid}</uuid>\n  \
             <description>ceph key</description>\n  <usage type='ceph'>\n    \
             <name>client.admin secret</name>\n  </usage>\n</secret>\n"
        ),
    )
    .unwrap();
    assert_eq!(
        norm(&d.virsh_ok(&["secret-define", f.to_str().unwrap()])),
        format!("Secret {uuid} created")
    );
    assert_eq!(
        norm(&d.virsh_ok(&["secret-list"])),
        format!(
            " UUID                                   Usage\n\
             ------------------------------------------------------------------\n \
             {uuid}   ceph client.admin secret"
        )
    );
    assert_eq!(
        norm(&d.virsh_ok(&["secret-dumpxml", uuid])),
        format!(
            "<secret ephemeral='no' private='no'>\n  <uuid>{uuid}</uuid>\n  \
             <description>ceph key</description>\n  <usage type='ceph'>\n    \
             <name>client.admin secret</name>\n  </usage>\n</secret>"
        )
    );
    // No value yet.
    let o = d.virsh(&["secret-get-value", uuid]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!(
            "Secret not found: secret '{uuid}' does not have a value"
        )),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let val = d.state().join("value.bin");
    std::fs::write(&val, "hunter2").unwrap();
    assert_eq!(
        norm(&d.virsh_ok(&[
            "secret-set-value",
            uuid,
            "--file",
            val.to_str().unwrap(),
            "--plain"
        ])),
        "Secret value set"
    );
    assert_eq!(
        norm(&d.virsh_ok(&["secret-get-value", uuid])),
        "aHVudGVyMg=="
    );
    assert_eq!(
        norm(&d.virsh_ok(&["secret-get-value", uuid, "--plain"])),
        "hunter2"
    );

    // Persistent: a restarted daemon still has the secret and its value.
    d.signal(15);
    assert_eq!(d.wait_exit(Duration::from_secs(20)), Some(0), "{}", d.log());
    let meta = std::fs::metadata(d.state().join("test/secrets")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o700
    );
    d.child = common::spawn(d.state());
    let t = std::time::Instant::now();
    while std::os::unix::net::UnixStream::connect(d.sock()).is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        norm(&d.virsh_ok(&["secret-get-value", uuid, "--plain"])),
        "hunter2"
    );
    assert_eq!(
        norm(&d.virsh_ok(&["secret-undefine", uuid])),
        format!("Secret {uuid} deleted")
    );
    assert_eq!(
        norm(&d.virsh_ok(&["secret-list"])),
        " UUID   Usage\n---------------"
    );
    let o = d.virsh(&["secret-dumpxml", uuid]);
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains(&format!("no secret with matching uuid '{uuid}'")),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
