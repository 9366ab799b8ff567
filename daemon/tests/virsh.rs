//! Real `virsh` against `vireod`: outputs must match what libvirt 9.0's daemon with the
//! test driver prints (libvirt-test-driver.md, rpc-trace.md).

mod common;

use common::{Daemon, have_virsh, norm};

#[test]
fn read_commands_match_libvirt() {
    if !have_virsh() {
        return;
    }
    let d = Daemon::start();
    assert_eq!(
        norm(&Command::list_all(&d)),
        " Id   Name   State\n----------------------\n 1    test   running"
    );
    let info = d.virsh_ok(&["dominfo", "test"]);
    let info: Vec<&str> = info
        .lines()
        .filter(|l| !l.starts_with("CPU time:"))
        .map(|l| l.trim_end())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        info,
        [
            "Id:             1",
            "Name:           test",
            "UUID:           6695eb01-f6a4-8304-79aa-97f2502e193f",
            "OS Type:        linux",
            "State:          running",
            "CPU(s):         2",
            "Max memory:     8388608 KiB",
            "Used memory:    2097152 KiB",
            "Persistent:     yes",
            "Autostart:      disable",
            "Managed save:   no",
            "Security model: testSecurity",
            "Security DOI:",
            "Security label: libvirt-test (enforcing)",
        ]
    );
    assert_eq!(
        norm(&d.virsh_ok(&["domstate", "test", "--reason"])),
        "running (unknown)"
    );
    assert_eq!(norm(&d.virsh_ok(&["domstate", "test"])), "running");
    assert_eq!(norm(&d.virsh_ok(&["domid", "test"])), "1");
    assert_eq!(
        norm(&d.virsh_ok(&["domuuid", "test"])),
        "6695eb01-f6a4-8304-79aa-97f2502e193f"
    );
    assert_eq!(norm(&d.virsh_ok(&["domname", "1"])), "test");
    assert_eq!(
        norm(&d.virsh_ok(&["domname", "6695eb01-f6a4-8304-79aa-97f2502e193f"])),
        "test"
    );
    let v = d.virsh_ok(&["version"]);
    assert!(v.contains("Using API: TEST 9.0.0"), "{v}");
    assert!(v.contains("Running hypervisor: TEST 0.0.2"), "{v}");
    assert_eq!(
        norm(&d.virsh_ok(&["nodeinfo"])),
        "CPU model:           i686\nCPU(s):              16\nCPU frequency:       1400 MHz\n\
         CPU socket(s):       2\nCore(s) per socket:  2\nThread(s) per core:  2\n\
         NUMA cell(s):        2\nMemory size:         3145728 KiB"
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(norm(&d.virsh_ok(&["hostname"])), host.trim());
    let caps = d.virsh_ok(&["capabilities"]);
    assert!(caps.trim_start().starts_with("<capabilities>"), "{caps}");
    assert!(caps.contains("<os_type>hvm</os_type>"), "{caps}");
    let xml = d.virsh_ok(&["dumpxml", "test"]);
    assert!(
        xml.starts_with("<domain type='test' id='1'>\n  <name>test</name>"),
        "{xml}"
    );
    assert!(xml.contains("<uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>"));
    let o = d.virsh(&["dominfo", "nosuch"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("error: failed to get domain 'nosuch'"),
        "{err}"
    );
    assert_eq!(
        norm(&d.virsh_ok(&["freecell", "--all"]))
            .lines()
            .last()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["Total:", "6144", "KiB"]
    );
}

struct Command;
impl Command {
    fn list_all(d: &Daemon) -> String {
        let o = std::process::Command::new("virsh")
            .arg("-c")
            .arg(d.uri())
            .args(["list", "--all"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    }
}

const VM1: &str = "<domain type='test'>
  <name>vm1</name>
  <uuid>0b7a3c5e-1111-4222-8333-944455556666</uuid>
  <memory unit='KiB'>1048576</memory>
  <vcpu>2</vcpu>
  <os><type arch='i686'>hvm</type></os>
</domain>
";

#[test]
fn define_start_destroy_undefine() {
    if !have_virsh() {
        return;
    }
    let d = Daemon::start();
    let file = d.state().join("vm1.xml");
    std::fs::write(&file, VM1).unwrap();
    let f = file.to_str().unwrap();
    assert_eq!(
        norm(&d.virsh_ok(&["define", f])),
        format!("Domain 'vm1' defined from {f}")
    );
    assert_eq!(
        norm(&Command::list_all(&d)),
        " Id   Name   State\n-----------------------\n 1    test   running\n -    vm1    shut off"
    );
    assert_eq!(
        norm(&d.virsh_ok(&["domstate", "vm1", "--reason"])),
        "shut off (unknown)"
    );
    assert_eq!(norm(&d.virsh_ok(&["domid", "vm1"])), "-");
    assert_eq!(norm(&d.virsh_ok(&["start", "vm1"])), "Domain 'vm1' started");
    assert_eq!(norm(&d.virsh_ok(&["domid", "vm1"])), "2");
    assert_eq!(
        norm(&d.virsh_ok(&["domstate", "vm1", "--reason"])),
        "running (booted)"
    );
    let o = d.virsh(&["start", "vm1"]);
    assert!(!o.status.success());
    assert_eq!(
        norm(&d.virsh_ok(&["suspend", "vm1"])),
        "Domain 'vm1' suspended"
    );
    assert_eq!(
        norm(&d.virsh_ok(&["domstate", "vm1", "--reason"])),
        "paused (user)"
    );
    assert_eq!(
        norm(&d.virsh_ok(&["resume", "vm1"])),
        "Domain 'vm1' resumed"
    );
    assert_eq!(
        norm(&d.virsh_ok(&["domstate", "vm1", "--reason"])),
        "running (unpaused)"
    );
    let o = d.virsh(&["resume", "vm1"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("internal error: domain 'vm1' not paused"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        norm(&d.virsh_ok(&["autostart", "vm1"])),
        "Domain 'vm1' marked as autostarted"
    );
    assert!(
        d.virsh_ok(&["dominfo", "vm1"])
            .contains("Autostart:      enable")
    );
    assert_eq!(
        norm(&d.virsh_ok(&["autostart", "--disable", "vm1"])),
        "Domain 'vm1' unmarked as autostarted"
    );
    assert_eq!(
        norm(&d.virsh_ok(&["destroy", "vm1"])),
        "Domain 'vm1' destroyed"
    );
    assert_eq!(
        norm(&d.virsh_ok(&["domstate", "vm1", "--reason"])),
        "shut off (destroyed)"
    );
    let o = d.virsh(&["destroy", "vm1"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("Requested operation is not valid: domain is not running"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(norm(&d.virsh_ok(&["start", "vm1"])), "Domain 'vm1' started");
    assert_eq!(norm(&d.virsh_ok(&["domid", "vm1"])), "3");
    assert_eq!(
        norm(&d.virsh_ok(&["shutdown", "vm1"])),
        "Domain 'vm1' is being shutdown"
    );
    assert_eq!(
        norm(&d.virsh_ok(&["domstate", "vm1", "--reason"])),
        "shut off (shutdown)"
    );
    assert_eq!(
        norm(&d.virsh_ok(&["undefine", "vm1"])),
        "Domain 'vm1' has been undefined"
    );
    assert_eq!(
        norm(&Command::list_all(&d)),
        " Id   Name   State\n----------------------\n 1    test   running"
    );
    // A transient domain from a file.
    assert_eq!(
        norm(&d.virsh_ok(&["create", f])),
        format!("Domain 'vm1' created from {f}")
    );
    assert!(
        d.virsh_ok(&["dominfo", "vm1"])
            .contains("Persistent:     no")
    );
    assert_eq!(
        norm(&d.virsh_ok(&["destroy", "vm1"])),
        "Domain 'vm1' destroyed"
    );
    let o = d.virsh(&["domstate", "vm1"]);
    assert!(!o.status.success(), "a destroyed transient domain is gone");
}

#[test]
fn read_only_socket_refuses_changes() {
    if !have_virsh() {
        return;
    }
    let d = Daemon::start();
    let o = std::process::Command::new("virsh")
        .args(["-c", &d.uri_ro(), "list", "--all"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains(" 1    test   running"));
    let o = std::process::Command::new("virsh")
        .args(["-c", &d.uri_ro(), "destroy", "test"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("operation forbidden: read only access prevents virDomainDestroy"),
        "{err}"
    );
    assert_eq!(norm(&d.virsh_ok(&["domstate", "test"])), "running");
}

#[test]
fn networks_pools_and_volumes() {
    if !have_virsh() {
        return;
    }
    let d = Daemon::start();
    assert_eq!(
        norm(&d.virsh_ok(&["net-list", "--all"])),
        " Name      State    Autostart   Persistent\n\
         --------------------------------------------\n \
         default   active   no          yes"
    );
    assert_eq!(
        norm(&d.virsh_ok(&["pool-list", "--all"])),
        " Name           State    Autostart\n------------------------------------\n default-pool   active   no"
    );
    let info = d.virsh_ok(&["net-info", "default"]);
    assert!(info.contains("Bridge:         virbr0"), "{info}");
    let x = d.virsh_ok(&["net-dumpxml", "default"]);
    assert!(x.starts_with("<network>\n  <name>default</name>"), "{x}");

    let net = d.state().join("n1.xml");
    std::fs::write(
        &net,
        "<network><name>n1</name><bridge name='virbr9'/>\
         <ip address='192.168.150.1' netmask='255.255.255.0'/></network>",
    )
    .unwrap();
    let n = net.to_str().unwrap();
    assert_eq!(
        norm(&d.virsh_ok(&["net-define", n])),
        format!("Network n1 defined from {n}")
    );
    assert_eq!(
        norm(&d.virsh_ok(&["net-start", "n1"])),
        "Network n1 started"
    );
    assert!(
        d.virsh_ok(&["net-list"])
            .contains(" n1        active   no          yes")
    );
    assert_eq!(
        norm(&d.virsh_ok(&["net-destroy", "n1"])),
        "Network n1 destroyed"
    );
    assert_eq!(
        norm(&d.virsh_ok(&["net-undefine", "n1"])),
        "Network n1 has been undefined"
    );
    assert!(!d.virsh_ok(&["net-list", "--all"]).contains("n1"));

    let vol = d.state().join("v1.xml");
    std::fs::write(
        &vol,
        "<volume><name>v1.img</name><capacity unit='bytes'>1048576</capacity></volume>",
    )
    .unwrap();
    let v = vol.to_str().unwrap();
    assert_eq!(
        norm(&d.virsh_ok(&["vol-create", "default-pool", v])),
        format!("Vol v1.img created from {v}")
    );
    assert_eq!(
        norm(&d.virsh_ok(&["vol-list", "default-pool"])),
        " Name     Path\n--------------------------------\n v1.img   /default-pool/v1.img"
    );
    assert_eq!(
        norm(&d.virsh_ok(&["vol-path", "v1.img", "--pool", "default-pool"])),
        "/default-pool/v1.img"
    );
    assert_eq!(
        norm(&d.virsh_ok(&["vol-key", "/default-pool/v1.img"])),
        "/default-pool/v1.img"
    );
    let vi = d.virsh_ok(&["vol-info", "v1.img", "--pool", "default-pool"]);
    assert!(vi.contains("Capacity:       1.00 MiB"), "{vi}");
    assert_eq!(
        norm(&d.virsh_ok(&["vol-delete", "v1.img", "--pool", "default-pool"])),
        "Vol v1.img deleted"
    );
    let pi = d.virsh_ok(&["pool-info", "default-pool"]);
    assert!(pi.contains("State:          running"), "{pi}");
    assert!(pi.contains("Capacity:       100.00 GiB"), "{pi}");
}
