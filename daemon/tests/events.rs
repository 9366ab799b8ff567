//! Events end to end with real clients: `virsh event --all --loop` in one process sees
//! the lifecycle events another virsh causes; libvirt-python with an event loop runs
//! define/create/destroy/undefine cycles, lists 1000 domains, and 8 subscriber
//! connections each receive every event of a scripted sequence, in order.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Daemon, have_python_libvirt, have_virsh};

fn domain_xml(name: &str) -> String {
    format!(
        "<domain type='test'><name>{name}</name><memory unit='KiB'>65536</memory>\
         <vcpu>1</vcpu><os><type>hvm</type></os></domain>"
    )
}

/// Waits until `lines` holds a line containing `what`.
fn wait_line(lines: &Mutex<Vec<String>>, what: &str, within: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if lines.lock().unwrap().iter().any(|l| l.contains(what)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn virsh_event_loop_sees_another_clients_lifecycle() {
    if !have_virsh() {
        return;
    }
    let d = Daemon::start();
    let mut ev = Command::new("virsh")
        .args([
            "-c",
            &d.uri(),
            "event",
            "--all",
            "--loop",
            "--timeout",
            "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = ev.stdout.take().unwrap();
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            sink.lock().unwrap().push(l);
        }
    });
    // virsh registers after it connects: poke with a probe domain until it sees one.
    let probe = d.state().join("probe.xml");
    std::fs::write(&probe, domain_xml("probe")).unwrap();
    let p = probe.to_str().unwrap();
    let t = Instant::now();
    loop {
        d.virsh_ok(&["define", p]);
        d.virsh_ok(&["undefine", "probe"]);
        if wait_line(&lines, "'probe'", Duration::from_millis(300)) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "virsh event saw nothing"
        );
    }
    // Let the probe's events drain, then start from a clean slate.
    std::thread::sleep(Duration::from_millis(200));
    lines.lock().unwrap().clear();

    let f = d.state().join("ev1.xml");
    std::fs::write(&f, domain_xml("ev1")).unwrap();
    d.virsh_ok(&["define", f.to_str().unwrap()]);
    d.virsh_ok(&["start", "ev1"]);
    d.virsh_ok(&["suspend", "ev1"]);
    d.virsh_ok(&["resume", "ev1"]);
    d.virsh_ok(&["destroy", "ev1"]);
    d.virsh_ok(&["undefine", "ev1"]);
    assert!(
        wait_line(&lines, "Undefined", Duration::from_secs(10)),
        "{:?}",
        lines.lock().unwrap()
    );
    let _ = ev.kill();
    let _ = ev.wait();
    reader.join().unwrap();
    let got: Vec<String> = lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| !l.trim().is_empty())
        .cloned()
        .collect();
    assert_eq!(
        got,
        [
            "event 'lifecycle' for domain 'ev1': Defined Added",
            "event 'lifecycle' for domain 'ev1': Started Booted",
            "event 'lifecycle' for domain 'ev1': Suspended Paused",
            "event 'lifecycle' for domain 'ev1': Resumed Unpaused",
            "event 'lifecycle' for domain 'ev1': Stopped Destroyed",
            "event 'lifecycle' for domain 'ev1': Undefined Removed",
        ]
    );
}

/// Runs a python3 script with the URI as argv[1]; asserts it prints OK.
fn python(d: &Daemon, script: &str) {
    let o = Command::new("/usr/bin/python3")
        .args(["-c", script, &d.uri()])
        .output()
        .unwrap();
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "OK",
        "stdout:\n{}\nstderr:\n{}\nlog tail:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        d.log()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

const PY_PRELUDE: &str = r#"
import sys, threading, time
import libvirt
uri = sys.argv[1]
libvirt.virEventRegisterDefaultImpl()
def loop():
    while True:
        libvirt.virEventRunDefaultImpl()
threading.Thread(target=loop, daemon=True).start()
def xml(name):
    return ("<domain type='test'><name>%s</name><memory unit='KiB'>65536</memory>"
            "<vcpu>1</vcpu><os><type>hvm</type></os></domain>" % name)
"#;

#[test]
fn python_cycles_and_a_thousand_domains() {
    if !have_python_libvirt() {
        return;
    }
    // 1000 durable defines: keep the store's fsyncs off the disk.
    let d = Daemon::start_on_tmpfs();
    let script = format!(
        "{PY_PRELUDE}{}",
        r#"
c = libvirt.open(uri)
events = []
cond = threading.Condition()
def cb(conn, dom, event, detail, opaque):
    with cond:
        events.append((dom.name(), event, detail))
        cond.notify_all()
cid = c.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, cb, None)
N = 25
for i in range(N):
    dom = c.defineXML(xml('cyc%d' % i))
    dom.create()
    assert dom.isActive() == 1 and dom.ID() > 0
    dom.destroy()
    assert dom.isActive() == 0 and dom.ID() == -1
    dom.undefine()
with cond:
    cond.wait_for(lambda: len(events) >= 4 * N, timeout=30)
exp = []
for i in range(N):
    n = 'cyc%d' % i
    exp += [(n, 0, 0), (n, 2, 0), (n, 5, 1), (n, 1, 0)]
assert events == exp, events[:12]
assert [x.name() for x in c.listAllDomains(0)] == ['test']
c.domainEventDeregisterAny(cid)

names = ['big%04d' % i for i in range(1000)]
for n in names:
    c.defineXML(xml(n))
doms = c.listAllDomains(0)
assert len(doms) == 1001, len(doms)
assert sorted(x.name() for x in doms) == sorted(names + ['test'])
inactive = c.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_INACTIVE)
assert len(inactive) == 1000 and all(x.ID() == -1 for x in inactive)
assert c.numOfDefinedDomains() == 1000
assert sorted(c.listDefinedDomains()) == names
c.close()
print('OK')
"#
    );
    python(&d, &script);
}

#[test]
fn eight_subscribers_each_get_every_event_in_order() {
    if !have_python_libvirt() {
        return;
    }
    let d = Daemon::start();
    let script = format!(
        "{PY_PRELUDE}{}",
        r#"
subs = []
for k in range(8):
    conn = libvirt.open(uri)
    got = []
    def cb(conn, dom, event, detail, got=got):
        got.append((dom.name(), event, detail))
    def cb4(conn, dom, event, detail, opaque, got=got):
        cb(conn, dom, event, detail, got)
    conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, cb4, None)
    subs.append((conn, got))
actor = libvirt.open(uri)
exp = []
for i in range(10):
    n = 'fan%d' % i
    dom = actor.defineXML(xml(n))
    dom.create()
    dom.suspend()
    dom.resume()
    dom.destroy()
    dom.undefine()
    exp += [(n, 0, 0), (n, 2, 0), (n, 3, 0), (n, 4, 0), (n, 5, 1), (n, 1, 0)]
deadline = time.time() + 30
while time.time() < deadline and any(len(g) < len(exp) for _, g in subs):
    time.sleep(0.05)
time.sleep(0.2)
for k, (_, got) in enumerate(subs):
    assert len(got) == len(exp), (k, len(got), len(exp))
    assert got == exp, (k, got[:8])
print('OK')
"#
    );
    python(&d, &script);
}

#[test]
fn python_node_device_and_secret_events() {
    if !have_python_libvirt() {
        return;
    }
    let d = Daemon::start();
    let script = format!(
        "{PY_PRELUDE}{}",
        r#"
c = libvirt.open(uri)
got = []
def dev_cb(conn, dev, event, detail, opaque):
    got.append(('dev', dev.name(), event))
def sec_cb(conn, sec, event, detail, opaque):
    got.append(('sec', sec.UUIDString(), event))
def val_cb(conn, sec, opaque):
    got.append(('val', sec.UUIDString()))
c.nodeDeviceEventRegisterAny(None, libvirt.VIR_NODE_DEVICE_EVENT_ID_LIFECYCLE, dev_cb, None)
c.secretEventRegisterAny(None, libvirt.VIR_SECRET_EVENT_ID_LIFECYCLE, sec_cb, None)
c.secretEventRegisterAny(None, libvirt.VIR_SECRET_EVENT_ID_VALUE_CHANGED, val_cb, None)
c2 = libvirt.open(uri)
assert sorted(x.name() for x in c2.listAllDevices(0)) == ['computer', 'scsi_host1', 'scsi_host11', 'scsi_host2']
assert c2.nodeDeviceLookupByName('scsi_host11').parent() == 'scsi_host1'
assert c2.nodeDeviceLookupByName('scsi_host1').listCaps() == ['scsi_host']
dev = c2.nodeDeviceCreateXML("""<device><parent>scsi_host2</parent><capability type='scsi_host'>
<capability type='fc_host'><wwnn>2001001b32a9da4e</wwnn><wwpn>2101001b32a9da4e</wwpn></capability>
</capability></device>""", 0)
assert dev.name() == 'scsi_host12'
dev.destroy()
u = '0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f'
s = c2.secretDefineXML("<secret ephemeral='yes' private='no'><uuid>%s</uuid><usage type='volume'><volume>/v.img</volume></usage></secret>" % u)
assert s.usageType() == libvirt.VIR_SECRET_USAGE_TYPE_VOLUME and s.usageID() == '/v.img'
assert c2.secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_VOLUME, '/v.img').UUIDString() == u
s.setValue(b'\x00\x01binary')
assert s.value() == b'\x00\x01binary'
assert c2.listSecrets() == [u] and c2.numOfSecrets() == 1
assert [x.UUIDString() for x in c2.listAllSecrets(libvirt.VIR_CONNECT_LIST_SECRETS_EPHEMERAL)] == [u]
assert c2.listAllSecrets(libvirt.VIR_CONNECT_LIST_SECRETS_NO_EPHEMERAL) == []
s.undefine()
exp = [('dev', 'scsi_host12', 0), ('dev', 'scsi_host12', 1), ('sec', u, 0), ('val', u), ('sec', u, 1)]
deadline = time.time() + 15
while time.time() < deadline and len(got) < len(exp):
    time.sleep(0.05)
assert got == exp, got
print('OK')
"#
    );
    python(&d, &script);
}
