#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine needs to build and test Vireo:
# the real libvirt clients (virsh, python3-libvirt) used as conformance oracles,
# libvirtd for side-by-side comparisons, and QEMU from bookworm-backports so that
# qemu-system-x86 matches the preinstalled qemu-utils 10.
#
# The backports source is derived from the machine's existing debian.sources entry
# (same URIs, Suites: bookworm-backports); no registry host is written here.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need=()
command -v virsh >/dev/null 2>&1 || need+=(libvirt-clients)
/usr/bin/python3 -c 'import libvirt' >/dev/null 2>&1 || need+=(python3-libvirt)
command -v libvirtd >/dev/null 2>&1 || [ -x /usr/sbin/libvirtd ] || need+=(libvirt-daemon libvirt-daemon-driver-qemu)
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
command -v nasm >/dev/null 2>&1 || need+=(nasm)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# the boot-sector test guests are assembled by the tests
command -v as >/dev/null 2>&1 && command -v ld >/dev/null 2>&1 || need+=(binutils)
# the save tests build a thin loop filesystem; process checks use pgrep
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v losetup >/dev/null 2>&1 || need+=(mount)
command -v pgrep >/dev/null 2>&1 || need+=(procps)
command -v qemu-img >/dev/null 2>&1 || need+=(qemu-utils)

here=$(cd "$(dirname "$0")" && pwd)

if [ ${#need[@]} -eq 0 ]; then
  "$here/libvirtd-qemu-setup.sh"
  echo "install-host-deps: everything is already installed"
  exit 0
fi

src=/etc/apt/sources.list.d/debian.sources
bp=/etc/apt/sources.list.d/vireo-backports.sources
if [ -f "$src" ] && [ ! -f "$bp" ]; then
  # Take the first stanza whose Suites name bookworm (not -security) and rewrite its suite.
  awk '
    BEGIN { RS=""; ORS="\n\n" }
    /Suites:[^\n]*bookworm( |\n|$)/ && !/security/ && !done {
      out = ""
      n = split($0, lines, "\n")
      for (i = 1; i <= n; i++) {
        if (lines[i] ~ /^#/) continue
        if (lines[i] ~ /^Suites:/) lines[i] = "Suites: bookworm-backports"
        out = out lines[i] "\n"
      }
      printf "%s", out
      done = 1
    }' "$src" | $SUDO tee "$bp" >/dev/null
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
pkgs=()
for p in "${need[@]}"; do
  case "$p" in
    qemu-system-x86|qemu-utils) ;;
    *) pkgs+=("$p") ;;
  esac
done
if [ ${#pkgs[@]} -gt 0 ]; then
  $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
fi
bp_pkgs=()
for p in "${need[@]}"; do
  case "$p" in qemu-system-x86|qemu-utils) bp_pkgs+=("$p") ;; esac
done
if [ ${#bp_pkgs[@]} -gt 0 ]; then
  $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports "${bp_pkgs[@]}"
fi
"$here/libvirtd-qemu-setup.sh"
echo "install-host-deps: done"
