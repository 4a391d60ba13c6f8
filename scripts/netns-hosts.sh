#!/usr/bin/env bash
# Usage: scripts/netns-hosts.sh up|down [PREFIX]     (root only; PREFIX defaults to sfhost)
#
# Two fake "hosts" on this machine for multi-host MPI tests: network namespaces PREFIX1 and
# PREFIX2 with addresses $SUBNET.1 and $SUBNET.2. `up` prints the path of a hostfile listing them
# (slots=2 each); use it with scripts/netns-rsh.sh as mpirun's ssh:
#   mpirun --allow-run-as-root --hostfile HOSTFILE --mca plm_rsh_agent "$PWD/scripts/netns-rsh.sh" \
#     --mca btl tcp,self --mca btl_tcp_if_include $SUBNET.0/24 --mca oob_tcp_if_include $SUBNET.0/24 ...
# `up` first removes leftovers of the same PREFIX; if it cannot work here it prints one line and
# exits 3, so a test can skip with that reason. `down` removes everything and never fails on absence.
#
# Layout: each namespace's veth peer is enslaved to a bridge PREFIXbr in the root namespace, which
# holds $SUBNET.254. The bridge address is needed because mpirun (the HNP) stays in the root
# namespace: the orteds must connect back to it over the OOB, and with only a veth pair between the
# two namespaces the HNP has no interface on the subnet (OpenMPI: "Did not find interface matching
# this subnet", then the daemons fail to call back). The subnet is private and only on this bridge.
set -euo pipefail

cmd=${1:-}
P=${2:-sfhost}
SUBNET=${STEPFLOW_NETNS_SUBNET:-10.231.7} # first three octets of a /24 unused on this machine
dir=${TMPDIR:-/tmp}/stepflow-netns/$P

fail() { echo "netns-hosts.sh: cannot set up fake hosts: $*" >&2; exit 3; }

down() {
    local i
    for i in 1 2; do
        if ip netns list | awk '{print $1}' | grep -qx "$P$i"; then
            # Leftover orteds/ranks would keep the namespace (and its veth) alive after `netns del`,
            # making the next `up` fail with "File exists"; they are test processes, end them.
            ip netns pids "$P$i" | xargs -r kill -9 2>/dev/null || true
            ip netns del "$P$i"
        fi
        # Deleting the namespace deletes the veth pair; this covers a half-finished `up`.
        ip link del "${P}v$i" 2>/dev/null || true
    done
    ip link del "${P}br" 2>/dev/null || true
    rm -rf "$dir"
    rmdir "${dir%/*}" 2>/dev/null || true # the shared parent, once no PREFIX uses it
}

# Runs a setup command; on failure its first stderr line becomes the one-line skip reason.
try() {
    local err
    if ! err=$("$@" 2>&1 >/dev/null); then fail "\`$*\`: ${err%%$'\n'*}"; fi
}

case $cmd in
up)
    ((EUID == 0)) || fail "needs root (network namespaces, veth, bridge)"
    command -v ip >/dev/null || fail "no \`ip\` command (apt-get install iproute2)"
    command -v unshare >/dev/null || fail "no \`unshare\` command (apt-get install util-linux)"
    ((${#P} <= 13)) || fail "PREFIX '$P' too long (interface names are at most 15 characters)"
    # Errors here are not fatal: if leftovers cannot go, `ip netns add` below says why, in one line.
    down 2>/dev/null || true
    if ip -o -4 addr show | grep -qF " $SUBNET."; then
        fail "$SUBNET.0/24 already in use in the root namespace (another PREFIX up, or leftovers that could not be removed? see STEPFLOW_NETNS_SUBNET)"
    fi
    try ip netns add "${P}1" # the usual failure in sandboxes/unprivileged containers
    try ip netns add "${P}2"
    try ip link add "${P}br" type bridge
    try ip addr add "$SUBNET.254/24" dev "${P}br"
    try ip link set "${P}br" up
    for i in 1 2; do
        try ip link add "${P}v$i" type veth peer name veth0 netns "$P$i"
        try ip link set "${P}v$i" master "${P}br" up
        try ip -n "$P$i" addr add "$SUBNET.$i/24" dev veth0
        try ip -n "$P$i" link set veth0 up
        try ip -n "$P$i" link set lo up # ranks and orted on one host talk over loopback too
    done
    mkdir -p "$dir"
    printf '%s slots=2\n' "$SUBNET.1" "$SUBNET.2" >"$dir/hostfile"
    echo "$dir/hostfile"
    ;;
down)
    if ((EUID == 0)) && command -v ip >/dev/null; then down; fi
    ;;
*)
    echo "usage: netns-hosts.sh up|down [PREFIX]" >&2
    exit 2
    ;;
esac
