#!/usr/bin/env bash
# Installs what the host needs, builds vireod and starts it on the embedded default:
# the test driver (test:///default), with its state under VIREO_STATE_DIR
# (default: ~/.local/share/vireo). Prints how to reach it with virsh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-host-deps.sh
cargo build --release -p vireo-daemon --bin vireod
state="${VIREO_STATE_DIR:-$HOME/.local/share/vireo}"
mkdir -p "$state"
if [ -S "$state/run/libvirt-sock" ] && pgrep -f "vireod --state-dir $state" >/dev/null; then
  echo "vireod already runs on $state"
else
  nohup ./target/release/vireod --state-dir "$state" >"$state/vireod.log" 2>&1 &
  for _ in $(seq 1 50); do [ -S "$state/run/libvirt-sock" ] && break; sleep 0.1; done
fi
echo "vireod is listening on $state/run/libvirt-sock (log: $state/vireod.log)"
echo "try: virsh -c 'test+unix:///default?socket=$state/run/libvirt-sock' list --all"
