#!/bin/bash
# compare-save.sh - save/restore through vireod against the disk and against libvirtd,
# in one run (issue 5, last "Done when" bullet):
#   1. save and restore throughput of a 512 MiB fill guest (memory written up to
#      506 MiB) through vireod, against the synced write bandwidth of the same
#      filesystem (`dd if=/dev/zero bs=1M count=512 conv=fdatasync`), and libvirtd's
#      save/restore of the same guest for reference. Target: save >= 90 % of dd.
#   2. managedsave (and start from it) of a 64 MiB fill guest, vireod vs libvirtd,
#      medians of alternating runs. Target: vireod <= 0.5x libvirtd.
# The timing is done by benches/compare_save.py with libvirt-python against both.
#
#   benches/compare-save.sh [--runs N] [--only 1|2] [--bypass-cache]
#
# Run by hand as root, not in CI. Environment:
#   VIREOD=path       the vireod binary (default: build it with
#                     `cargo build --release -p vireo-daemon --bin vireod`
#                     into $CARGO_TARGET_DIR or ./target)
#   VIREOD_LOG=spec   vireod's --log-level (default: info,vireo_drivers=debug; the
#                     save job logs its phases, stream_ms/synced_ms/total_ms, at info)
#   KEEP=1            keep the temporary directory (both daemons' logs)
#   BENCH_DIR=dir     parent of the temporary directory (default /var/tmp: the same
#                     filesystem as libvirtd's /var/lib/libvirt/qemu/save here)
#
# CHANGES THE MACHINE like compare-qemu.sh (only if missing, left in place): the system
# user `libvirt-qemu` and /etc/libvirt/qemu.conf (root, no dynamic ownership, no
# virtlogd, no security driver). libvirtd runs through
# /work/shared/tools/libvirtd-private.sh (under subreaper.py: QEMU's exit is seen at
# once; without it this VM's PID 1 reaps orphans ~1 s late and libvirtd's managedsave
# looks 1.2 s slower than it is), qemu driver only. Only one libvirtd with the qemu
# driver may run at a time (/run/libvirt/qemu/driver.pid): this script waits for
# another one to end (up to WAIT seconds, default 600).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
tools=${VIREO_TOOLS:-/work/shared/tools}
py=/usr/bin/python3   # the system python has the libvirt module

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
for t in libvirtd qemu-system-x86_64 as ld dd; do
    command -v "$t" >/dev/null || { echo "$t is missing" >&2; exit 1; }
done
"$py" -c 'import libvirt' || { echo "$py has no libvirt module (python3-libvirt)" >&2; exit 1; }

# --- machine prerequisites of libvirtd's qemu driver (only if missing) ---
"$repo/scripts/libvirtd-qemu-setup.sh"

# --- vireod ---
if [ -z "${VIREOD:-}" ]; then
    echo "building vireod (release)"
    (cd "$repo" && cargo build --release -q -p vireo-daemon --bin vireod)
    VIREOD=${CARGO_TARGET_DIR:-$repo/target}/release/vireod
fi
[ -x "$VIREOD" ] || { echo "no vireod at $VIREOD" >&2; exit 1; }

tmp=$(mktemp -d "${BENCH_DIR:-/var/tmp}/vireo-cmpsave.XXXXXX")
chmod 755 "$tmp"
# dd's file and one image per daemon exist at once (512 MiB each), plus headroom so that
# a shared disk is not filled for others.
avail_mib=$(( $(df --output=avail -k "$tmp" | tail -1) / 1024 ))
if [ "$avail_mib" -lt 3072 ]; then
    echo "only $avail_mib MiB free on $(df --output=target "$tmp" | tail -1); need 3 GiB" >&2
    rmdir "$tmp"; exit 1
fi
vpid=
cleanup() {
    set +e
    [ -S "$tmp/vireod/run/libvirt-sock" ] && [ -S "$tmp/libvirtd/run/libvirt-sock" ] &&
        "$py" "$here/compare_save.py" --cleanup --dir "$tmp" \
            --vireod "qemu+unix:///system?socket=$tmp/vireod/run/libvirt-sock" \
            --libvirtd "qemu+unix:///system?socket=$tmp/libvirtd/run/libvirt-sock" 2>/dev/null
    [ -n "$vpid" ] && kill -TERM "$vpid" 2>/dev/null && wait "$vpid" 2>/dev/null
    [ -f "$tmp/libvirtd/wrapper.pid" ] && "$tools/libvirtd-private.sh" stop "$tmp/libvirtd" >/dev/null
    if [ -n "${KEEP:-}" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

# --- libvirtd on a private socket, qemu driver only (waits for another one to end) ---
deadline=$((SECONDS + ${WAIT:-600}))
while :; do
    if [ -s /run/libvirt/qemu/driver.pid ] && kill -0 "$(cat /run/libvirt/qemu/driver.pid)" 2>/dev/null; then
        [ $SECONDS -lt $deadline ] || { echo "another libvirtd still runs the qemu driver" >&2; exit 1; }
        [ -n "${said:-}" ] || { echo "waiting for libvirtd pid $(cat /run/libvirt/qemu/driver.pid) (qemu driver) to end"; said=1; }
        sleep 1
        continue
    fi
    rm -rf "$tmp/libvirtd"
    mkdir -p "$tmp/libvirtd/drivers"
    ln -s /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so \
        "$tmp/libvirtd/drivers/"
    if LIBVIRT_DRIVER_DIR="$tmp/libvirtd/drivers" \
        "$tools/libvirtd-private.sh" start "$tmp/libvirtd" >/dev/null; then
        lsock="$tmp/libvirtd/run/libvirt-sock"
        # It binds its socket before it learns whether the qemu driver's state is taken.
        sleep 0.5
        if kill -0 "$(cat "$tmp/libvirtd/wrapper.pid")" 2>/dev/null &&
            virsh -c "qemu+unix:///system?socket=$lsock" uri >/dev/null 2>&1; then
            break
        fi
        "$tools/libvirtd-private.sh" stop "$tmp/libvirtd" >/dev/null 2>&1 || true
    fi
    [ $SECONDS -lt $deadline ] || { tail -5 "$tmp/libvirtd/libvirtd.log" >&2; exit 1; }
    sleep 1
done

# --- vireod on its own state dir (same filesystem as the images) ---
mkdir -p "$tmp/vireod" "$tmp/share"
chmod 777 "$tmp/share"
"$VIREOD" --state-dir "$tmp/vireod" --qemu on \
    --log-level "${VIREOD_LOG:-info,vireo_drivers=debug}" 2> "$tmp/vireod/vireod.log" &
vpid=$!
for _ in $(seq 1 200); do
    [ -S "$tmp/vireod/run/libvirt-sock" ] && break
    kill -0 "$vpid" 2>/dev/null || { cat "$tmp/vireod/vireod.log" >&2; exit 1; }
    sleep 0.05
done
vsock="$tmp/vireod/run/libvirt-sock"

echo "# compare-save $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "vireod: $VIREOD"
echo "libvirtd: $(libvirtd --version)"
echo "qemu: $(qemu-system-x86_64 --version | head -1)"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cpus"
echo "filesystem of the images: $(df --output=source,fstype "$tmp/share" | tail -1 | tr -s ' ')" \
    "(libvirtd's managed saves: $(df --output=source,fstype /var/lib/libvirt/qemu/save 2>/dev/null | tail -1 | tr -s ' '))"
"$py" "$here/compare_save.py" \
    --vireod "qemu+unix:///system?socket=$vsock" \
    --libvirtd "qemu+unix:///system?socket=$lsock" \
    --dir "$tmp/share" --vireod-log "$tmp/vireod/vireod.log" --vireod-pid "$vpid" "$@"
