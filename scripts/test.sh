#!/usr/bin/env bash
# Runs Vireo's whole test suite. Installs what a fresh machine lacks first (the real
# libvirt clients used as conformance oracles, libvirtd, QEMU from backports), so the
# suite never silently skips them: under CI=true a missing client is a test failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-host-deps.sh
cargo test --workspace
