#!/usr/bin/python3
"""compare_save.py - save/restore throughput and managedsave time, vireod vs dd vs libvirtd.

Used by compare-save.sh (run by hand as root, not in CI); it can be run on its own
against two qemu:///system sockets:

    /usr/bin/python3 compare_save.py --vireod URI --libvirtd URI --dir DIR \\
        [--runs 5] [--vireod-log FILE] [--testguest-rs drivers/src/qemu/testguest.rs]

The guests are the boot-sector "fill" guest of vireo's qemu tests
(drivers/src/qemu/testguest.rs; its assembly is taken from that file and built here
with `as`/`ld`): it writes one dword into every 4 KiB page from 1 MiB up to its fill
end, prints `filled` on COM1, then a rolling digit, so its memory is really in use and
a restored guest visibly continues (digits, no second `filled`).

Part 1, throughput (issue 5 target: save >= 90 % of the synced write bandwidth): a
512 MiB guest filled up to 505 MiB (a ~505 MiB image). Each run does, in alternating
order, `dd if=/dev/zero of=DIR/dd.out bs=1M count=512 conv=fdatasync` and, per daemon,
`dom.save(DIR/…)` then `conn.restore(…)` of the same transient guest. Throughput =
image bytes / call time (libvirt-python, so no virsh process start is included); dd's =
512 MiB / its process time. The ratio is of the medians.

Part 2, managedsave (target: vireod <= 0.5x libvirtd): a persistent 64 MiB guest filled
up to 57 MiB per daemon; after one untimed warm-up cycle each, runs alternate between
the daemons: `dom.managedSave()` timed, then `dom.create()` (start from the managed
save, timed too), then wait until the guest counts on.

With --bypass-cache every save, restore, managedsave and start passes the bypass-cache
flag (both daemons' I/O helpers then use O_DIRECT). Every timed step starts after an untimed `sync` (see `timed`). All files (dd's, the save images, vireod's state dir) are on the filesystem of --dir;
libvirtd's managed saves go to /var/lib/libvirt/qemu/save (the script says whether that
is the same filesystem).
"""

import argparse
import os
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import libvirt

MIB = 1 << 20

XML = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{ram}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{disk}'/>
      <target dev='sda' bus='sata'/>
    </disk>
    <serial type='file'><source path='{serial}'/><target port='0'/></serial>
  </devices>
</domain>
"""


def fill_image(testguest_rs, out, fill_end):
    """Assembles the fill guest's boot sector into a 1 MiB raw disk image at `out`."""
    src = open(testguest_rs).read()
    m = re.search(r'const FILL_SECTOR: &str = r#"(.*?)"#;', src, re.S)
    if not m:
        sys.exit(f"no FILL_SECTOR in {testguest_rs}")
    with tempfile.TemporaryDirectory() as d:
        s, o, b = (os.path.join(d, n) for n in ("fill.S", "fill.o", "fill.bin"))
        open(s, "w").write(m.group(1))
        subprocess.run(["as", "--32", "-o", o, s], check=True)
        subprocess.run(["ld", "-m", "elf_i386", "-Ttext", "0x7c00", "--oformat",
                        "binary", "-o", b, o], check=True)
        sector = bytearray(open(b, "rb").read())
    if len(sector) != 512 or sector[510:] != b"\x55\xaa":
        sys.exit(f"the assembled sector is {len(sector)} bytes without a boot signature")
    sector[504:508] = struct.pack("<I", fill_end)
    sector += bytes(MIB - len(sector))
    open(out, "wb").write(sector)


class Guest:
    """One test guest: its disk, serial log and XML on disk."""

    def __init__(self, d, name, ram, fill_mib, testguest_rs):
        self.name = name
        self.disk = os.path.join(d, f"{name}.img")
        self.serial = os.path.join(d, f"{name}.serial")
        fill_image(testguest_rs, self.disk, (fill_mib + 1) * MIB)
        self.xml = XML.format(name=name, ram=ram, disk=self.disk, serial=self.serial)

    def text(self):
        try:
            return open(self.serial, errors="replace", newline="").read()
        except FileNotFoundError:
            return ""

    def wait(self, what, done, timeout=120):
        t = time.monotonic()
        while not done(self.text()):
            if time.monotonic() - t > timeout:
                raise RuntimeError(f"{self.name}: serial never showed {what}: "
                                   f"{self.text()[-200:]!r}")
            time.sleep(0.02)

    def wait_filled(self):
        self.wait("filled + a digit", lambda t: "filled\r\n" in t and any(
            c.isdigit() for c in t.split("filled\r\n", 1)[1]))

    def reset_serial(self):
        try:
            os.unlink(self.serial)
        except FileNotFoundError:
            pass

    def wait_continues(self):
        self.wait("a digit after the restore", lambda t: any(c.isdigit() for c in t))
        if "filled" in self.text():
            raise RuntimeError(f"{self.name}: the restored guest booted again")


TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid, children=False):
    """utime+stime (or cutime+cstime) of `pid` in seconds; 0 if it is gone."""
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    i = 13 if children else 11
    return (int(f[i]) + int(f[i + 1])) / TICK


def qemu_pid(name):
    """The pid of the QEMU that runs guest `name` (`-name guest=NAME,…`)."""
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            argv = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"qemu-system-x86_64") and any(
                a.startswith(f"guest={name},".encode()) for a in argv):
            return int(p)
    return None


def timed(f, *args, **kw):
    # Other work's dirty pages would be written by whichever timed fdatasync comes
    # first (an ext4 journal commit takes the ordered data of all files with it): start
    # every timed step from a clean page cache.
    os.sync()
    t = time.monotonic()
    r = f(*args, **kw)
    return time.monotonic() - t, r


def dd(path, mib):
    c0 = os.times()
    t, _ = timed(subprocess.run, ["dd", "if=/dev/zero", f"of={path}", "bs=1M",
                                  f"count={mib}", "conv=fdatasync", "status=none"], check=True)
    c1 = os.times()
    os.unlink(path)
    return t, (c1.children_user + c1.children_system) - (c0.children_user + c0.children_system)


def gone(conn, name):
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    persistent = dom.isPersistent()
    if dom.isActive():
        dom.destroy()
    if persistent:
        if dom.hasManagedSaveImage():
            dom.managedSaveRemove()
        dom.undefine()


def med(xs):
    return statistics.median(xs)


def ms(xs):
    v = [x * 1000 for x in xs]
    return f"{med(v):6.0f} [{min(v):.0f}-{max(v):.0f}]"


def vireod_phases(log, since):
    """(stream_ms, synced_ms, total_ms) of each 'saved' line of vireod's log after byte
    offset `since`."""
    if not log:
        return []
    data = open(log, errors="replace").read()[since:]
    data = re.sub(r"\x1b\[[0-9;]*m", "", data)
    out = []
    for line in data.splitlines():
        if " saved" not in line and "saved " not in line:
            continue
        f = dict(re.findall(r"(stream_ms|synced_ms|total_ms)=(\d+)", line))
        if len(f) == 3:
            out.append(tuple(int(f[k]) for k in ("stream_ms", "synced_ms", "total_ms")))
    return out


def log_size(log):
    return os.path.getsize(log) if log and os.path.exists(log) else 0


def part1(a, daemons):
    """512 MiB guest: save and restore throughput against dd conv=fdatasync."""
    runs = {"dd": []}
    cpus = {"dd": [], "vireod": [], "qemu": []}
    size = {}
    guests = {}
    for label, conn in daemons:
        gone(conn, f"bench-big-{label}")
        g = Guest(a.dir, f"bench-big-{label}", a.big_mib, a.big_mib - 7, a.testguest_rs)
        guests[label] = g
        conn.createXML(g.xml, 0)
        g.wait_filled()
        runs[f"{label} save"] = []
        runs[f"{label} restore"] = []
    phases_from = log_size(a.vireod_log)
    for i in range(a.runs):
        steps = ["dd"] + [label for label, _ in daemons]
        if i % 2:
            steps.reverse()
        for step in steps:
            if step == "dd":
                t, c = dd(os.path.join(a.dir, "dd.out"), a.big_mib)
                runs["dd"].append(t)
                cpus["dd"].append(c)
                continue
            conn = dict(daemons)[step]
            g = guests[step]
            img = os.path.join(a.dir, f"{step}.save")
            dom = conn.lookupByName(g.name)
            if step == "vireod" and a.vireod_pid:
                # vireod reaps its QEMU: QEMU's lifetime CPU lands in vireod's cutime.
                q0 = cpu(qemu_pid(g.name))
                v0, c0 = cpu(a.vireod_pid), cpu(a.vireod_pid, children=True)
            t, _ = timed(dom.saveFlags, img, None, a.flags)
            if step == "vireod" and a.vireod_pid:
                cpus["vireod"].append(cpu(a.vireod_pid) - v0)
                cpus["qemu"].append(cpu(a.vireod_pid, children=True) - c0 - q0)
            runs[f"{step} save"].append(t)
            size[step] = os.path.getsize(img)
            g.reset_serial()
            t, _ = timed(conn.restoreFlags, img, None, a.flags)
            runs[f"{step} restore"].append(t)
            os.unlink(img)
            g.wait_continues()
    for label, conn in daemons:
        gone(conn, guests[label].name)
    dd_mibs = a.big_mib / med(runs["dd"])
    print(f"\n## 1. {a.big_mib} MiB guest (filled to {a.big_mib - 6} MiB): save and restore "
          f"vs dd conv=fdatasync, {a.runs} alternating runs, ms median [min-max]")
    print(f"dd bs=1M count={a.big_mib} conv=fdatasync: {ms(runs['dd'])} ms = "
          f"{dd_mibs:.0f} MiB/s")
    rows = []
    for label, _ in daemons:
        mib = size[label] / MIB
        s, r = med(runs[f"{label} save"]), med(runs[f"{label} restore"])
        rows.append((label, mib, s, r))
        print(f"{label:9} image {mib:.1f} MiB: save {ms(runs[f'{label} save'])} ms = "
              f"{mib / s:.0f} MiB/s = {mib / s / dd_mibs:.2f}x dd; restore "
              f"{ms(runs[f'{label} restore'])} ms = {mib / r:.0f} MiB/s = "
              f"{mib / r / dd_mibs:.2f}x dd")
    v = dict((r[0], r) for r in rows)
    save_ratio = (v["vireod"][1] / v["vireod"][2]) / dd_mibs
    # The disk is shared: also the ratio within each run (dd and the save next to each
    # other) and of the best runs (what each gets from a quiet disk).
    per_mib = v["vireod"][1] / a.big_mib
    paired = med([d / (s / per_mib) for d, s in zip(runs["dd"], runs["vireod save"])])
    best = min(runs["dd"]) / (min(runs["vireod save"]) / per_mib)
    print(f"TARGET save >= 0.90 x synced write bandwidth: vireod {save_ratio:.2f} (ratio of "
          f"medians) -> {'met' if save_ratio >= 0.9 else 'MISSED'}; median of per-run "
          f"ratios {paired:.2f}, best vs best {best:.2f}")
    ph = vireod_phases(a.vireod_log, phases_from)
    if ph:
        st, sy, to = (med([p[k] for p in ph]) for k in range(3))
        print(f"vireod's own phases (log, median of {len(ph)}): stream done {st:.0f} ms, "
              f"helper synced {sy:.0f} ms, job total {to:.0f} ms "
              f"(stream alone {v['vireod'][1] / (st / 1000):.0f} MiB/s)")
        print("  per run (stream/synced/total ms): " +
              ", ".join(f"{p[0]}/{p[1]}/{p[2]}" for p in ph))
    print("  per run, save ms: vireod " +
          ", ".join(f"{x * 1000:.0f}" for x in runs["vireod save"]) +
          "; dd " + ", ".join(f"{x * 1000:.0f}" for x in runs["dd"]))
    if cpus["vireod"]:
        print(f"CPU per save (median): vireod {med(cpus['vireod']) * 1000:.0f} ms + its QEMU "
              f"{med(cpus['qemu']) * 1000:.0f} ms (QEMU's migration thread, the helper's "
              f"copy); dd {med(cpus['dd']) * 1000:.0f} ms")
    return save_ratio


def part2(a, daemons):
    """64 MiB guest: managedsave and start-from-managed-save, vireod vs libvirtd."""
    guests = {}
    res = {}
    for label, conn in daemons:
        name = f"bench-ms-{label}"
        gone(conn, name)
        g = Guest(a.dir, name, a.small_mib, a.small_mib - 7, a.testguest_rs)
        guests[label] = g
        dom = conn.defineXML(g.xml)
        dom.create()
        g.wait_filled()
        # Warm-up cycle.
        dom.managedSave(0)
        g.reset_serial()
        dom.create()
        g.wait_continues()
        res[label] = ([], [])
    phases_from = log_size(a.vireod_log)
    for i in range(a.runs):
        order = daemons if i % 2 == 0 else daemons[::-1]
        for label, conn in order:
            g = guests[label]
            dom = conn.lookupByName(g.name)
            t, _ = timed(dom.managedSave, a.flags)
            res[label][0].append(t)
            if not dom.hasManagedSaveImage(0):
                raise RuntimeError(f"{label}: no managed save image after managedSave")
            g.reset_serial()
            t, _ = timed(dom.createWithFlags, a.start_flags)
            res[label][1].append(t)
            g.wait_continues()
    for label, conn in daemons:
        gone(conn, guests[label].name)
    print(f"\n## 2. {a.small_mib} MiB guest (filled to {a.small_mib - 6} MiB): managedsave and "
          f"start (restore), {a.runs} alternating runs after 1 warm-up, ms median [min-max]")
    for label, _ in daemons:
        print(f"{label:9} managedsave {ms(res[label][0])}  start {ms(res[label][1])}")
    ratio = med(res["vireod"][0]) / med(res["libvirtd"][0])
    rratio = med(res["vireod"][1]) / med(res["libvirtd"][1])
    print(f"TARGET managedsave <= 0.5 x libvirtd: vireod/libvirtd {ratio:.3f} -> "
          f"{'met' if ratio <= 0.5 else 'MISSED'}; start from managed save {rratio:.3f}")
    ph = vireod_phases(a.vireod_log, phases_from)
    if ph:
        st, sy, to = (med([p[k] for p in ph]) for k in range(3))
        print(f"vireod's own phases (log, median of {len(ph)}): stream done {st:.0f} ms, "
              f"helper synced {sy:.0f} ms, job total {to:.0f} ms")
    return ratio


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vireod", required=True, help="vireod's qemu:///system URI")
    ap.add_argument("--libvirtd", required=True, help="libvirtd's qemu:///system URI")
    ap.add_argument("--dir", required=True, help="where images, dd's file and guests go")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--big-mib", type=int, default=512)
    ap.add_argument("--small-mib", type=int, default=64)
    ap.add_argument("--vireod-log", help="vireod's log, for its save phases")
    ap.add_argument("--vireod-pid", type=int, help="vireod's pid, for CPU per save")
    ap.add_argument("--testguest-rs", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "drivers", "src", "qemu",
        "testguest.rs"))
    ap.add_argument("--only", choices=["1", "2"], help="run only part 1 or 2")
    ap.add_argument("--bypass-cache", action="store_true",
                    help="save, restore, managedsave and start with the bypass-cache flag "
                         "(O_DIRECT in the I/O helpers of both daemons)")
    ap.add_argument("--cleanup", action="store_true", help="only remove bench-* guests")
    a = ap.parse_args()
    a.flags = libvirt.VIR_DOMAIN_SAVE_BYPASS_CACHE if a.bypass_cache else 0
    a.start_flags = libvirt.VIR_DOMAIN_START_BYPASS_CACHE if a.bypass_cache else 0
    if a.bypass_cache:
        print("all saves, restores and starts with the bypass-cache flag")
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors are raised anyway
    daemons = [("vireod", libvirt.open(a.vireod)), ("libvirtd", libvirt.open(a.libvirtd))]
    if a.cleanup:
        for _, conn in daemons:
            for dom in conn.listAllDomains(0):
                if dom.name().startswith("bench-"):
                    gone(conn, dom.name())
        return 0
    if a.only != "2":
        part1(a, daemons)
    if a.only != "1":
        part2(a, daemons)
    return 0


if __name__ == "__main__":
    sys.exit(main())
