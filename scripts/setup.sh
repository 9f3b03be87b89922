#!/usr/bin/env bash
# Everything a fresh Debian machine needs to run Arctern, its tests and its demo.
# Idempotent: safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(qemu-utils qemu-system-x86 gcc-i686-linux-gnu binutils-i686-linux-gnu)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PACKAGES=(-e core)
for plugin in plugins/*/; do PACKAGES+=(-e "$plugin"); done
# The out-of-tree example installs as a user installs it: not editable.
PACKAGES+=(docs/examples/arctern-block-hdr)
# pip warns about find-links folders of this machine that do not exist; keep the real errors.
.venv/bin/python -m pip install -q --disable-pip-version-check "${PACKAGES[@]}" \
    -r requirements-dev.txt 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
