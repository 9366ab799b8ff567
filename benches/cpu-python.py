#!/usr/bin/python3
"""Daemon CPU time per workload, with libvirt-python as the client.

Run with the system python3 (it has the libvirt module):

    /usr/bin/python3 benches/cpu-python.py --uri URI --pid DAEMON_PID [--scale S] [--label L]

For each workload of the benchmark (the same five as vireo-loadgen: cycles, list,
lookup, events, parallel) it reads the daemon's utime+stime from /proc/PID/stat
before and after, and prints one line:

    CPU label=L workload=W ops=N daemon_cpu_s=X wall_s=Y client_cpu_s=Z us_per_op=U

libvirt-python spends more CPU per call than the daemon may, which is why throughput
is measured with the Rust load generator; here only the daemon's own CPU counts.
compare-libvirtd.sh runs this against libvirtd and vireod and prints the ratios.
"""

import argparse
import os
import sys
import threading
import time

import libvirt

TICK = os.sysconf("SC_CLK_TCK")
XML = ("<domain type='test'><name>{}</name><memory unit='KiB'>65536</memory>"
       "<vcpu>1</vcpu><os><type arch='i686'>hvm</type></os></domain>")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the ")" field 3 (state) is index 0: utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / TICK


def cycle(conn, name):
    dom = conn.defineXML(XML.format(name))
    dom.create()
    dom.destroy()
    dom.undefine()


def w_cycles(uri, n):
    conn = libvirt.open(uri)
    for _ in range(n):
        cycle(conn, "py-cycle")
    conn.close()
    return n


def w_list(uri, n, setup):
    conn = libvirt.open(uri)
    if setup:
        for i in range(1000):
            conn.defineXML(XML.format(f"py-list-{i}"))
        return conn
    for _ in range(n):
        conn.listAllDomains(0)
    return n


def w_lookup(uri, n):
    conn = libvirt.open(uri)
    for _ in range(n):
        conn.lookupByName("test").XMLDesc(0)
    conn.close()
    return n


def w_events(uri, n):
    counts = [0] * 8
    done = threading.Event()
    expected = 4 * n

    def cb(_conn, _dom, _event, _detail, idx):
        counts[idx] += 1
        if all(c >= expected for c in counts):
            done.set()

    subs = []
    for i in range(8):
        c = libvirt.open(uri)
        c.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, cb, i)
        subs.append(c)
    conn = libvirt.open(uri)
    for _ in range(n):
        cycle(conn, "py-events")
    done.wait(timeout=30)
    conn.close()
    for c in subs:
        c.close()
    lost = expected * 8 - sum(counts)
    if lost:
        print(f"WARNING: {lost} events lost", file=sys.stderr)
    return sum(counts)


def w_parallel(uri, n):
    def worker():
        c = libvirt.open(uri)
        for _ in range(n):
            c.lookupByName("test")
        c.close()

    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return 4 * n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--label", default="-")
    ap.add_argument("--workloads", default="cycles,list,lookup,events,parallel")
    a = ap.parse_args()

    libvirt.virEventRegisterDefaultImpl()

    def loop():
        while True:
            libvirt.virEventRunDefaultImpl()

    threading.Thread(target=loop, daemon=True).start()

    def n(base):
        return max(1, round(base * a.scale))

    keep = libvirt.open(a.uri)  # test:///default is reset when the last client leaves
    list_conn = None
    for w in a.workloads.split(","):
        if w == "list":
            list_conn = w_list(a.uri, 0, setup=True)
        c0, t0, s0 = cpu_seconds(a.pid), time.monotonic(), time.process_time()
        if w == "cycles":
            ops = w_cycles(a.uri, n(1000))
        elif w == "list":
            ops = w_list(a.uri, n(200), setup=False)
        elif w == "lookup":
            ops = w_lookup(a.uri, n(2500))
        elif w == "events":
            ops = w_events(a.uri, n(300))
        elif w == "parallel":
            ops = w_parallel(a.uri, n(2500))
        else:
            sys.exit(f"unknown workload {w}")
        c1, t1, s1 = cpu_seconds(a.pid), time.monotonic(), time.process_time()
        if list_conn is not None:
            for d in list_conn.listAllDomains(0):
                if d.name().startswith("py-list-"):
                    d.undefine()
            list_conn.close()
            list_conn = None
        print(f"CPU label={a.label} workload={w} ops={ops} daemon_cpu_s={c1 - c0:.3f} "
              f"wall_s={t1 - t0:.3f} client_cpu_s={s1 - s0:.3f} "
              f"us_per_op={(c1 - c0) / ops * 1e6:.1f}", flush=True)
    keep.close()


if __name__ == "__main__":
    main()
