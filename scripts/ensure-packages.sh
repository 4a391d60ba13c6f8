#!/usr/bin/env bash
# Usage: scripts/ensure-packages.sh CALLER PACKAGE...
#
# Makes sure the Debian packages are installed, shared by scripts/test.sh and run_mpi.sh so both
# behave the same on a fresh machine:
#   - all installed          → exit 0, silent;
#   - some missing, root     → one `apt-get update`, then install them, exit 0;
#   - some missing, not root → print the exact install command, exit 2 (nothing we can do alone).
# CALLER prefixes every message, so the user sees which script is talking.
set -euo pipefail

caller=${1:?usage: ensure-packages.sh CALLER PACKAGE...}
shift

# Clusters built on RHEL/Spack/modules have no dpkg; there the user manages OpenMPI themselves, so
# we only say what we could not check instead of refusing to run.
if ! command -v dpkg >/dev/null 2>&1; then
    echo "$caller: no dpkg here, not checking packages; make sure these (or your system's equivalents) are available: $*" >&2
    exit 0
fi

missing=()
for pkg in "$@"; do
    # `dpkg -s` also succeeds for removed-but-not-purged packages, so look at the Status line.
    if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "$caller: missing Debian packages: ${missing[*]}" >&2
    echo "$caller: install them as root, then run this again:" >&2
    echo "    sudo apt-get install -y ${missing[*]}" >&2
    exit 2
fi

echo "$caller: installing missing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh image has empty package lists, so install would find nothing; update once, only when
# something is actually missing, to keep the common (all installed) path offline and instant.
if ! apt-get update >&2; then
    echo "$caller: 'apt-get update' failed; check the network or apt sources, then retry." >&2
    exit 1
fi
if ! apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
    echo "$caller: 'apt-get install -y ${missing[*]}' failed; see apt's message above." >&2
    exit 1
fi
