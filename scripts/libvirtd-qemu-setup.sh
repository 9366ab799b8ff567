#!/usr/bin/env bash
# Prepares this host so that the real libvirtd 9.0 can run its qemu driver by hand (the
# cross-restore tests and the compare-*.sh benchmarks start one on a private socket):
#   * the system user and group `libvirt-qemu`: libvirt 9.0 looks it up before it reads
#     qemu.conf and exits without it (shared/spec/libvirtd-howto.md §1);
#   * /etc/libvirt/qemu.conf with QEMU run as root, no dynamic ownership, no virtlogd
#     (stdio_handler "file") and no security driver, so that libvirtd's QEMU can use the
#     tests' files and serial logs (§5).
# Only what is missing is created; an existing qemu.conf that is not ours is left alone
# (with a warning: the tests that need it then say so). Idempotent; needs root.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if ! getent passwd libvirt-qemu >/dev/null; then
  echo "libvirtd-qemu-setup: creating the system user libvirt-qemu"
  $SUDO useradd --system --no-create-home --home-dir /var/lib/libvirt \
    --shell /usr/sbin/nologin --user-group libvirt-qemu
fi

conf=/etc/libvirt/qemu.conf
if [ ! -e "$conf" ]; then
  echo "libvirtd-qemu-setup: writing $conf (root, no dynamic ownership, no virtlogd, no security driver)"
  $SUDO mkdir -p /etc/libvirt
  $SUDO tee "$conf" >/dev/null <<'CONF'
# Written by vireo's scripts/libvirtd-qemu-setup.sh for libvirtd runs by hand and in tests.
user = "root"
group = "root"
dynamic_ownership = 0
stdio_handler = "file"
security_driver = "none"
CONF
elif ! grep -q '^security_driver = "none"' "$conf"; then
  echo "libvirtd-qemu-setup: warning: $conf exists and is not vireo's; left alone" >&2
fi
