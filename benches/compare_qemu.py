#!/usr/bin/python3
"""compare_qemu.py - time start and destroy of a tiny QEMU guest through two daemons.

Used by compare-qemu.sh (run by hand, not in CI); it can also be run on its own
against any two libvirt-compatible sockets:

    /usr/bin/python3 compare_qemu.py --uri vireod=qemu+unix:///system?socket=A \\
        --uri libvirtd=qemu+unix:///system?socket=B [--accel kvm,tcg] [--runs 7]

What it measures, for each accelerator (`<domain type='kvm'>` and `type='qemu'`, i.e.
TCG) and each daemon, with the same client (libvirt-python) for both:

* start:   `dom = conn.createXML(xml)` (a transient 64 MiB, 1 vCPU, q35 guest with
           no disk and no NIC; `<acpi/>` because libvirt 9.0 would otherwise pass
           `-no-acpi`, which QEMU 10 refuses),
* destroy: `dom.destroy()` after the guest has run for --hold seconds.

Each daemon first gets --warmup untimed start/destroy cycles (libvirtd probes QEMU's
capabilities on its first qemu:/// call; vireod asks `-machine help` once per
emulator). The timed runs alternate between the daemons, so that load from other work
on the machine hits both alike. Reported: median [min-max] in ms and the ratio of
medians, first daemon / second daemon.
"""

import argparse
import statistics
import sys
import time

import libvirt

XML = """<domain type='{dtype}'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <currentMemory unit='MiB'>64</currentMemory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{emulator}</emulator>
  </devices>
</domain>
"""


def one_cycle(conn, xml, hold):
    """Start and destroy one guest; returns (start_s, destroy_s)."""
    t0 = time.monotonic()
    dom = conn.createXML(xml, 0)
    t1 = time.monotonic()
    if dom.info()[0] != libvirt.VIR_DOMAIN_RUNNING:
        raise RuntimeError("guest not running after createXML")
    time.sleep(hold)
    t2 = time.monotonic()
    dom.destroy()
    t3 = time.monotonic()
    return t1 - t0, t3 - t2


def cleanup(specs):
    """Destroys the guests an interrupted run left behind (bench-* names only)."""
    for spec in specs:
        try:
            conn = libvirt.open(spec.partition("=")[2])
        except libvirt.libvirtError:
            continue
        for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            if dom.name().startswith("bench-"):
                dom.destroy()
        conn.close()
    return 0


def fmt(xs):
    ms = [x * 1000 for x in xs]
    return f"{statistics.median(ms):7.1f} [{min(ms):.1f}-{max(ms):.1f}]"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--uri", action="append", required=True,
                    help="LABEL=URI; give two, the first is the numerator of the ratio")
    ap.add_argument("--accel", default="kvm,tcg", help="comma list of kvm, tcg")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--hold", type=float, default=1.0,
                    help="seconds the guest runs before destroy (libvirtd-howto: 1)")
    ap.add_argument("--emulator", default="/usr/bin/qemu-system-x86_64")
    ap.add_argument("--markdown", action="store_true", help="also print a markdown table")
    ap.add_argument("--cleanup", action="store_true",
                    help="only destroy running bench-* guests of both daemons")
    a = ap.parse_args()
    if len(a.uri) != 2:
        ap.error("give exactly two --uri")
    if a.cleanup:
        return cleanup(a.uri)
    daemons = []
    for spec in a.uri:
        label, _, uri = spec.partition("=")
        daemons.append((label, libvirt.open(uri)))

    rows = []
    for accel in a.accel.split(","):
        dtype = {"kvm": "kvm", "tcg": "qemu"}[accel]
        xml = {label: XML.format(dtype=dtype, name=f"bench-{accel}-{label}",
                                 emulator=a.emulator)
               for label, _ in daemons}
        for label, conn in daemons:
            for _ in range(a.warmup):
                one_cycle(conn, xml[label], 0.2)
        res = {label: ([], []) for label, _ in daemons}
        for i in range(a.runs):
            order = daemons if i % 2 == 0 else daemons[::-1]
            for label, conn in order:
                s, d = one_cycle(conn, xml[label], a.hold)
                res[label][0].append(s)
                res[label][1].append(d)
        (la, _), (lb, _) = daemons
        for op, k in (("start", 0), ("destroy", 1)):
            ra = statistics.median(res[la][k])
            rb = statistics.median(res[lb][k])
            rows.append((accel, op, fmt(res[la][k]), fmt(res[lb][k]), ra / rb))

    (la, _), (lb, _) = daemons
    print(f"{a.runs} timed runs each after {a.warmup} warm-up, guest held {a.hold} s;"
          f" ms median [min-max]")
    print(f"{'accel':5} {'op':8} {la:>24} {lb:>24} {'ratio':>7}")
    for accel, op, fa, fb, r in rows:
        print(f"{accel:5} {op:8} {fa:>24} {fb:>24} {r:7.3f}")
    if a.markdown:
        print()
        print(f"| accel | operation | {la} ms median [min-max] | {lb} ms median [min-max] "
              f"| ratio {la}/{lb} |")
        print("|---|---|---|---|---|")
        for accel, op, fa, fb, r in rows:
            print(f"| {accel} | {op} | {fa.strip()} | {fb.strip()} | {r:.3f} |")
    for _, conn in daemons:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
