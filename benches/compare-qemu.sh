#!/bin/bash
# compare-qemu.sh - vireod's qemu driver against libvirtd's, in one run: start and
# destroy of a 64 MiB diskless q35 guest under KVM and TCG, timed with libvirt-python
# (benches/compare_qemu.py), reported as ratios vireod/libvirtd.
# Targets (issue 4): start <= 0.25x, destroy <= 0.2x.
#
#   benches/compare-qemu.sh [--runs N] [--accel kvm,tcg] [--hold S] [--markdown]
#
# Run by hand as root, not in CI. Environment:
#   VIREOD=path       the vireod binary (default: build it with
#                     `cargo build --release -p vireo-daemon --bin vireod`
#                     into $CARGO_TARGET_DIR or ./target)
#   KEEP=1            keep the temporary directory (logs of both daemons)
#
# CHANGES THE MACHINE (libvirtd's qemu driver cannot start otherwise; see
# /work/shared/spec/libvirtd-howto.md sections 1 and 5), each only if missing, and left
# in place afterwards:
#   * the system user and group `libvirt-qemu` (useradd --system); libvirt 9.0 looks
#     it up before reading qemu.conf and exits without it;
#   * /etc/libvirt/qemu.conf with user/group root, dynamic_ownership 0,
#     stdio_handler "file" (no virtlogd) and security_driver "none".
#
# libvirtd runs through /work/shared/tools/libvirtd-private.sh (under subreaper.py, so
# its daemonized QEMUs are reaped at once) on a private socket, with
# LIBVIRT_DRIVER_DIR holding only the qemu driver (so it does not take the network
# driver's locks from other private libvirtds). It still uses /run/libvirt/qemu and
# /var/lib/libvirt/qemu: only one libvirtd with the qemu driver may run at a time.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
tools=${VIREO_TOOLS:-/work/shared/tools}
py=/usr/bin/python3   # the system python has the libvirt module

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
for t in libvirtd qemu-system-x86_64; do
    command -v "$t" >/dev/null || { echo "$t is missing" >&2; exit 1; }
done
"$py" -c 'import libvirt' || { echo "$py has no libvirt module (python3-libvirt)" >&2; exit 1; }
if [ -s /run/libvirt/qemu/driver.pid ] && kill -0 "$(cat /run/libvirt/qemu/driver.pid)" 2>/dev/null; then
    echo "another libvirtd runs the qemu driver (pid $(cat /run/libvirt/qemu/driver.pid))" >&2
    exit 1
fi

# --- machine prerequisites of libvirtd's qemu driver (only if missing) ---
"$repo/scripts/libvirtd-qemu-setup.sh"

# --- vireod ---
if [ -z "${VIREOD:-}" ]; then
    echo "building vireod (release)"
    (cd "$repo" && cargo build --release -q -p vireo-daemon --bin vireod)
    VIREOD=${CARGO_TARGET_DIR:-$repo/target}/release/vireod
fi
[ -x "$VIREOD" ] || { echo "no vireod at $VIREOD" >&2; exit 1; }

tmp=$(mktemp -d /tmp/vireo-cmpqemu.XXXXXX)
vpid=
cleanup() {
    set +e
    # guests left by an interrupted run (both daemons leave guests running on exit)
    "$py" "$here/compare_qemu.py" --cleanup \
        --uri "vireod=qemu+unix:///system?socket=$tmp/vireod/run/libvirt-sock" \
        --uri "libvirtd=qemu+unix:///system?socket=$tmp/libvirtd/run/libvirt-sock" 2>/dev/null
    [ -n "$vpid" ] && kill -TERM "$vpid" 2>/dev/null && wait "$vpid" 2>/dev/null
    [ -f "$tmp/libvirtd/wrapper.pid" ] && "$tools/libvirtd-private.sh" stop "$tmp/libvirtd" >/dev/null
    if [ -n "${KEEP:-}" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

# --- libvirtd on a private socket, qemu driver only ---
mkdir -p "$tmp/libvirtd/drivers"
ln -s /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so \
    "$tmp/libvirtd/drivers/"
if ! LIBVIRT_DRIVER_DIR="$tmp/libvirtd/drivers" \
    "$tools/libvirtd-private.sh" start "$tmp/libvirtd" >/dev/null; then
    tail -5 "$tmp/libvirtd/libvirtd.log" >&2 2>/dev/null
    exit 1
fi
lsock="$tmp/libvirtd/run/libvirt-sock"

# --- vireod on its own state dir ---
mkdir -p "$tmp/vireod"
"$VIREOD" --state-dir "$tmp/vireod" --qemu on --log-level "${VIREOD_LOG:-info}" \
    2> "$tmp/vireod/vireod.log" &
vpid=$!
for _ in $(seq 1 200); do
    [ -S "$tmp/vireod/run/libvirt-sock" ] && break
    kill -0 "$vpid" 2>/dev/null || { cat "$tmp/vireod/vireod.log" >&2; exit 1; }
    sleep 0.05
done
vsock="$tmp/vireod/run/libvirt-sock"

echo "vireod: $("$VIREOD" --version 2>/dev/null || echo "$VIREOD")"
echo "libvirtd: $(libvirtd --version)"
echo "qemu: $(qemu-system-x86_64 --version | head -1)"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cpus"
"$py" "$here/compare_qemu.py" \
    --uri "vireod=qemu+unix:///system?socket=$vsock" \
    --uri "libvirtd=qemu+unix:///system?socket=$lsock" "$@"
