//! libvirt-python (`/usr/bin/python3 -c 'import libvirt'`) against `vireod`: open,
//! lookups, info, listings, define/create/destroy/undefine, and lifecycle events
//! caused by another connection arriving through a registered callback.

mod common;

use std::process::Command;

use common::{Daemon, have_python_libvirt};

const SCRIPT: &str = r#"
import sys, threading, time
import libvirt

uri = sys.argv[1]
libvirt.virEventRegisterDefaultImpl()

def loop():
    while True:
        libvirt.virEventRunDefaultImpl()
threading.Thread(target=loop, daemon=True).start()

c = libvirt.open(uri)
assert c.getType() == 'TEST', c.getType()
assert c.getLibVersion() == 9000000, c.getLibVersion()
assert c.getVersion() == 2
d = c.lookupByName('test')
info = d.info()
assert info[0] == libvirt.VIR_DOMAIN_RUNNING and info[1] == 8388608 and info[2] == 2097152 and info[3] == 2, info
assert d.ID() == 1 and d.UUIDString() == '6695eb01-f6a4-8304-79aa-97f2502e193f'
assert d.state() == [1, 0], d.state()
assert d.isActive() == 1 and d.isPersistent() == 1
assert [x.name() for x in c.listAllDomains(0)] == ['test']
assert c.listDomainsID() == [1] and c.numOfDomains() == 1
assert c.listDefinedDomains() == [] and c.numOfDefinedDomains() == 0
assert c.lookupByID(1).name() == 'test'
assert c.lookupByUUIDString('6695eb01-f6a4-8304-79aa-97f2502e193f').name() == 'test'
try:
    c.lookupByName('nope')
    raise SystemExit('lookup of a missing domain succeeded')
except libvirt.libvirtError as e:
    assert e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN, e.get_error_code()

events = []
cond = threading.Condition()
def cb(conn, dom, event, detail, opaque):
    with cond:
        events.append((dom.name(), event, detail))
        cond.notify_all()
cid = c.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, cb, None)

xml = """<domain type='test'><name>pyvm</name><memory unit='KiB'>524288</memory>
<vcpu>1</vcpu><os><type>hvm</type></os></domain>"""
c2 = libvirt.open(uri)
dom = c2.defineXML(xml)
assert dom.ID() == -1
dom.create()
assert dom.ID() == 2, dom.ID()
assert dom.info()[0] == libvirt.VIR_DOMAIN_RUNNING
dom.destroy()
dom.undefine()
expected = [('pyvm', 0, 0), ('pyvm', 2, 0), ('pyvm', 5, 1), ('pyvm', 1, 0)]
with cond:
    cond.wait_for(lambda: len(events) >= 4, timeout=15)
assert events == expected, events
c.domainEventDeregisterAny(cid)
# Events stop after deregistration.
dom = c2.defineXML(xml)
dom.undefine()
time.sleep(0.3)
assert events == expected, events
c2.close()
c.close()
print('OK')
"#;

#[test]
fn python_client_and_lifecycle_events() {
    if !have_python_libvirt() {
        return;
    }
    let d = Daemon::start();
    let o = Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT, &d.uri()])
        .output()
        .unwrap();
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "OK",
        "stdout:\n{}\nstderr:\n{}\nlog:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        d.log()
    );
}
