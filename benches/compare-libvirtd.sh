#!/usr/bin/env bash
# compare-libvirtd.sh - vireod against the real libvirtd, in one run. By hand, not CI.
#
#   benches/compare-libvirtd.sh [SCALE] [CPU_SCALE] [REPEAT] [TASKS]
#
# SCALE multiplies the load generator's counts (default 1), CPU_SCALE the python
# client's (default 4: CPU is read in 10 ms ticks, so the runs must be long enough),
# REPEAT is how many times each part runs, alternating the daemons; the best run per
# workload and daemon counts (highest throughput, least CPU; default 3; the machine is
# shared and noisy). TASKS (default "4 16") are the numbers of concurrent callers on
# one connection the load generator offers for cycles, lookup and events: throughput is
# a daemon's rate at saturation, so each daemon's best over them counts (the summary
# says which). list and parallel do not use it and run with the first only.
#
# Needs root, /usr/sbin/libvirtd and /usr/bin/python3 with the libvirt module.
# Starts both daemons on private sockets:
#   * libvirtd with the config of ../shared/spec/libvirtd-howto.md (private unix
#     socket dir, auth none, log to file), max_client_requests and max_workers raised
#     to 32 (its defaults, 5 and 20, would hold back 16 callers on one connection;
#     vireod keeps its own default of 5), and LIBVIRT_DRIVER_DIR pointing at an empty
#     directory: only the built-in test driver is loaded, which is all test:///default
#     uses, and the QEMU/network drivers' system-wide pidfiles are not taken (so this
#     can run beside another libvirtd);
#   * vireod (release build) with its state dir on /dev/shm: vireod fsyncs every
#     define, libvirt's test driver persists nothing, so a disk would measure the disk.
# Part 1: throughput with the Rust load generator (vireo-loadgen), vireod/libvirtd.
#         Target: >= 5x on every workload, no lost events.
# Part 2: daemon CPU time per workload with libvirt-python as the client
#         (benches/cpu-python.py reads utime+stime of each daemon from /proc/PID/stat),
#         vireod CPU / libvirtd CPU. Target: <= 0.2x. The same client also drives
#         vireo-replay, which answers every call with a reply recorded from vireod and
#         does nothing else: its CPU is the floor of any daemon on this machine (the
#         wake-up, read, write and sleep every call costs), printed as floor/libvirtd.
#         Events cannot be replayed, so the events workload has no floor.
set -euo pipefail
scale=${1:-1}
cpu_scale=${2:-4}
repeat=${3:-3}
tasks=${4:-4 16}
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}

echo "building vireod and vireo-loadgen (release)..." >&2
(cd "$root" && cargo build --quiet --release -p vireo-daemon --bin vireod \
    -p vireo-benches --bin vireo-loadgen --bin vireo-replay)
vireod=$target/release/vireod
loadgen=$target/release/vireo-loadgen
replay=$target/release/vireo-replay

work=$(mktemp -d /dev/shm/vireo-compare.XXXXXX)
lpid=; vpid=; rpid=
cleanup() {
    [ -n "$rpid" ] && kill -TERM "$rpid" 2>/dev/null && wait "$rpid" 2>/dev/null || true
    [ -n "$lpid" ] && kill -TERM "$lpid" 2>/dev/null && wait "$lpid" 2>/dev/null
    [ -n "$vpid" ] && kill -TERM "$vpid" 2>/dev/null && wait "$vpid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/libvirtd/run" "$work/libvirtd/drivers" "$work/vireod"
cat > "$work/libvirtd/libvirtd.conf" <<CONF
listen_tls = 0
listen_tcp = 0
unix_sock_dir = "$work/libvirtd/run"
unix_sock_group = "root"
unix_sock_ro_perms = "0770"
unix_sock_rw_perms = "0770"
unix_sock_admin_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_filters = ""
log_outputs = "3:file:$work/libvirtd/libvirtd.log"
max_client_requests = 32
max_workers = 32
CONF
LIBVIRT_DRIVER_DIR=$work/libvirtd/drivers /usr/sbin/libvirtd \
    --config "$work/libvirtd/libvirtd.conf" --pid-file "$work/libvirtd/libvirtd.pid" \
    > "$work/libvirtd/stdout.log" 2>&1 &
lpid=$!
"$vireod" --state-dir "$work/vireod" --log-level warn > "$work/vireod/stderr.log" 2>&1 &
vpid=$!
lsock=$work/libvirtd/run/libvirt-sock
vsock=$work/vireod/run/libvirt-sock
for _ in $(seq 1 100); do
    [ -S "$lsock" ] && [ -S "$vsock" ] && break
    sleep 0.1
done
[ -S "$lsock" ] || { echo "libvirtd did not start" >&2; cat "$work/libvirtd/stdout.log" >&2; exit 1; }
[ -S "$vsock" ] || { echo "vireod did not start" >&2; cat "$work/vireod/stderr.log" >&2; exit 1; }

echo "libvirtd $(/usr/sbin/libvirtd --version | awk '{print $NF}') pid $lpid; vireod pid $vpid; scale $scale, cpu scale $cpu_scale, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "== Part 1: throughput, Rust load generator (best of $repeat runs x callers: $tasks) =="
for i in $(seq 1 "$repeat"); do
    workloads=all
    for t in $tasks; do
        "$loadgen" --socket "$lsock" --scale "$scale" --tasks "$t" --workloads "$workloads" \
            --label libvirtd --daemon-pid "$lpid" | tee -a "$work/lg-libvirtd-all.txt"
        "$loadgen" --socket "$vsock" --scale "$scale" --tasks "$t" --workloads "$workloads" \
            --label vireod --daemon-pid "$vpid" | tee -a "$work/lg-vireod-all.txt"
        workloads=cycles,lookup,events
    done
done
# Keep each workload's best line.
best() {
    awk '{ w=""; r=0; for (i=1;i<=NF;i++) { split($i,a,"="); if (a[1]=="workload") w=a[2]; if (a[1]=="ops_per_s") r=a[2]+0 }
           if (w!="" && r>=best[w]) { best[w]=r; line[w]=$0 } }
         END { for (w in line) print line[w] }' "$1"
}
best "$work/lg-libvirtd-all.txt" > "$work/lg-libvirtd.txt"
best "$work/lg-vireod-all.txt" > "$work/lg-vireod.txt"
echo
echo "== Part 2: daemon CPU, libvirt-python client (least of $repeat) =="
# The floor: record vireod's replies through vireo-replay, then serve them.
floor_workloads=cycles,list,lookup,parallel
rsock=$work/replay.sock
"$replay" record --listen "$rsock" --upstream "$vsock" --table "$work/replay.table" &
rpid=$!
for _ in $(seq 1 50); do [ -S "$rsock" ] && break; sleep 0.1; done
/usr/bin/python3 "$root/benches/cpu-python.py" --uri "test+unix:///default?socket=$rsock" \
    --pid "$rpid" --scale 0.01 --label record --workloads "$floor_workloads" > /dev/null
kill -TERM "$rpid"; wait "$rpid" 2>/dev/null || true
rm -f "$rsock"
"$replay" serve --listen "$rsock" --table "$work/replay.table" &
rpid=$!
for _ in $(seq 1 50); do [ -S "$rsock" ] && break; sleep 0.1; done
for i in $(seq 1 "$repeat"); do
    /usr/bin/python3 "$root/benches/cpu-python.py" --uri "test+unix:///default?socket=$lsock" \
        --pid "$lpid" --scale "$cpu_scale" --label libvirtd | tee -a "$work/cpu-libvirtd-all.txt"
    /usr/bin/python3 "$root/benches/cpu-python.py" --uri "test+unix:///default?socket=$vsock" \
        --pid "$vpid" --scale "$cpu_scale" --label vireod | tee -a "$work/cpu-vireod-all.txt"
    /usr/bin/python3 "$root/benches/cpu-python.py" --uri "test+unix:///default?socket=$rsock" \
        --pid "$rpid" --scale "$cpu_scale" --label floor --workloads "$floor_workloads" \
        | tee -a "$work/cpu-floor-all.txt"
done
# Keep each workload's least daemon CPU (CPU time only grows with interference).
least() {
    awk '{ w=""; c=-1; for (i=1;i<=NF;i++) { split($i,a,"="); if (a[1]=="workload") w=a[2]; if (a[1]=="daemon_cpu_s") c=a[2]+0 }
           if (w!="" && (!(w in low) || c<low[w])) { low[w]=c; line[w]=$0 } }
         END { for (w in line) print line[w] }' "$1"
}
least "$work/cpu-libvirtd-all.txt" > "$work/cpu-libvirtd.txt"
least "$work/cpu-vireod-all.txt" > "$work/cpu-vireod.txt"
least "$work/cpu-floor-all.txt" > "$work/cpu-floor.txt"
echo
echo "== Summary (targets: throughput >= 5.0x, CPU <= 0.20x) =="
# key=value lines -> "workload value" pairs, then joined per workload.
field() { # file key
    awk -v k="$2" '{ w=""; v=""; for (i=1;i<=NF;i++) { split($i,a,"="); if (a[1]=="workload") w=a[2]; if (a[1]==k) v=a[2] } if (w!="") print w, v }' "$1"
}
echo "best throughput at callers: libvirtd $(field "$work/lg-libvirtd.txt" tasks | sort | tr '\n' ' ')," \
    "vireod $(field "$work/lg-vireod.txt" tasks | sort | tr '\n' ' ')"
printf '%-10s %14s %14s %8s %12s %12s %8s %12s %8s\n' workload "libvirtd op/s" "vireod op/s" ratio "libvirtd cpu" "vireod cpu" ratio "floor cpu" ratio
join <(field "$work/lg-libvirtd.txt" ops_per_s | sort) <(field "$work/lg-vireod.txt" ops_per_s | sort) > "$work/tp"
join <(field "$work/cpu-libvirtd.txt" daemon_cpu_s | sort) <(field "$work/cpu-vireod.txt" daemon_cpu_s | sort) > "$work/cpu0"
join -a1 "$work/cpu0" <(field "$work/cpu-floor.txt" daemon_cpu_s | sort) > "$work/cpu"
join -a1 "$work/tp" "$work/cpu" | while read -r w l v lc vc fc; do
    awk -v w="$w" -v l="$l" -v v="$v" -v lc="${lc:-0}" -v vc="${vc:-0}" -v fc="${fc:--1}" 'BEGIN {
        r = (l > 0) ? v / l : 0; c = (lc > 0) ? vc / lc : 0
        if (fc >= 0) { f = sprintf("%11.3fs %7.2fx", fc, (lc > 0) ? fc / lc : 0) } else { f = sprintf("%12s %8s", "-", "-") }
        printf "%-10s %14.1f %14.1f %7.2fx %11.3fs %11.3fs %7.2fx %s\n", w, l, v, r, lc, vc, c, f }'
done
echo "events lost over all runs: libvirtd $(grep -o 'lost=[0-9]*' "$work/lg-libvirtd-all.txt" | tr '\n' ' ')," \
    "vireod $(grep -o 'lost=[0-9]*' "$work/lg-vireod-all.txt" | tr '\n' ' ')"
