//! `<vcpu current='N'>M</vcpu>`: `virDomainGetInfo` (virsh dominfo "CPU(s)") reports the
//! vCPUs online, `virDomainGetMaxVcpus` and the MAXIMUM flag of `GetVcpusFlags` the
//! maximum — as libvirt does.

mod common;

use common::{Daemon, have_virsh};

#[test]
fn current_and_maximum_vcpus_are_told_apart() {
    if !have_virsh() {
        return;
    }
    let d = Daemon::start();
    let f = d.state().join("v.xml");
    std::fs::write(
        &f,
        "<domain type='test'><name>v</name><memory unit='MiB'>64</memory>\
         <vcpu current='1'>3</vcpu><os><type>hvm</type></os></domain>",
    )
    .unwrap();
    d.virsh_ok(&["define", f.to_str().unwrap()]);
    let info = d.virsh_ok(&["dominfo", "v"]);
    assert!(info.contains("CPU(s):         1\n"), "{info}");
    assert_eq!(
        d.virsh_ok(&["vcpucount", "v", "--maximum", "--config"])
            .trim(),
        "3"
    );
    assert_eq!(
        d.virsh_ok(&["vcpucount", "v", "--current", "--config"])
            .trim(),
        "1"
    );
    d.virsh_ok(&["start", "v"]);
    let info = d.virsh_ok(&["dominfo", "v"]);
    assert!(info.contains("CPU(s):         1\n"), "{info}");
}
