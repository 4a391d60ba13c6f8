#!/usr/bin/env bash
# Usage (by mpirun, in place of ssh): netns-rsh.sh [ssh options...] HOST COMMAND...
#   mpirun --mca plm_rsh_agent "$PWD/scripts/netns-rsh.sh" --hostfile <from netns-hosts.sh up> ...
#
# "Logs into" a fake host made by scripts/netns-hosts.sh: runs COMMAND in the network namespace
# that owns the address HOST, in its own UTS namespace with the namespace's name as hostname.
# The hostname matters: OpenMPI names its session directory and shared-memory files after it, and
# two "hosts" with the same hostname on one filesystem collide (vader segfaults).
set -euo pipefail

# Skip the options mpirun may put before the host (it adds e.g. `-x`; plm_rsh_args may add more).
# The ssh options that take a value are listed so their value is not taken for the host.
while (($#)); do
    case $1 in
        --) shift; break ;;
        -[BbcDEeFIiJLlmOopQRSWw]) shift 2 ;;
        -*) shift ;;
        *) break ;;
    esac
done
host=${1:?usage: netns-rsh.sh [ssh options...] HOST COMMAND...}
shift

# Find the namespace holding HOST rather than reading a map file: no path to agree on with `up`,
# and it works for any PREFIX.
ns=
for n in $(ip netns list | awk '{print $1}'); do
    if ip -n "$n" -o -4 addr show | grep -qF " $host/"; then ns=$n; break; fi
done
if [[ -z $ns ]]; then
    echo "netns-rsh.sh: no network namespace has address $host (run scripts/netns-hosts.sh up)" >&2
    exit 255 # what ssh returns when it cannot connect
fi

# Like ssh over the network: a host whose link is down (`ip link set <bridge side> down`, a cable
# pulled) cannot be reached, though its namespace is still there.
if ! ip -n "$ns" -o link show veth0 2>/dev/null | grep -q 'state UP'; then
    echo "netns-rsh.sh: connect to host $host: No route to host (its link is down)" >&2
    exit 255
fi

# Like ssh: the remote command is the arguments joined by spaces, parsed again by a shell. mpirun
# quotes the orted arguments for that second parse, so "$*" must not be re-quoted here.
exec ip netns exec "$ns" unshare --uts sh -c "hostname $ns; $*"
