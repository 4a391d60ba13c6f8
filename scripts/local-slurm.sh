#!/usr/bin/env bash
# Usage: scripts/local-slurm.sh start|stop|status
#
# A real one-node Slurm on this machine, for trying the examples/slurm/ templates and for the test
# suite (Tests/StepFlowTests/SlurmTests.swift). No systemd: munged, slurmctld and slurmd are started
# by hand and stopped by the pid files this script keeps.
#
#   start   install slurm-wlm and munge if missing, write the config, start what is not running,
#           wait until the node is idle. Safe to call again: it only starts what is down.
#   stop    stop the daemons this script started (by their pid files), nothing else.
#   status  whether each daemon runs, and the node's state.
#
# The node is this host's short name with CPUs=8 whatever the cores (SlurmdParameters=config_overrides),
# so jobs such as `sbatch -n 4 -c 2` fit on a 2-core machine. State, spool, logs and pid files live in
# STEPFLOW_SLURM_DIR (default /var/tmp/stepflow-slurm). Slurm's commands read /etc/slurm/slurm.conf,
# so this script writes that file, but only when it is missing or one it wrote itself.
#
# Exit codes: 0 done; 1 a daemon did not come up (the message names its log); 2 usage, not root, or
# a slurm.conf that is not ours.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
DIR=${STEPFLOW_SLURM_DIR:-/var/tmp/stepflow-slurm}
readonly DIR
CONF=/etc/slurm/slurm.conf
readonly CONF
# The first line of every slurm.conf written here: how we tell ours from a real cluster's.
MARKER="# Written by StepFlow scripts/local-slurm.sh; one-node test cluster. Safe to delete."
readonly MARKER
# munge's own default paths: every Slurm command finds the socket there with no setting.
MUNGE_KEY=/etc/munge/munge.key
MUNGE_SOCKET_DIR=/run/munge
readonly MUNGE_KEY MUNGE_SOCKET_DIR

say() { echo "local-slurm.sh: $*" >&2; }
die() {
    say "$*"
    exit 2
}
fail() {
    say "$*"
    exit 1
}

usage() {
    sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

(($# == 1)) || {
    usage >&2
    exit 2
}
action=$1
case $action in
    start | stop | status) ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
esac

node=$(hostname -s)
readonly node

# pid of a daemon from our pid file, if that process still runs the expected program. A stale file
# (the machine rebooted, the pid was reused) must never make us signal a stranger.
running_pid() {
    local file=$1 exe=$2 pid
    [[ -r $file ]] || return 1
    read -r pid <"$file" 2>/dev/null || return 1
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
    local link
    if link=$(readlink "/proc/$pid/exe" 2>/dev/null); then
        # -f: Debian installs slurmd/slurmctld as alternatives (/usr/sbin/slurmd -> slurmd-wlm).
        [[ $link == "$(readlink -f "$exe")" ]] || return 1
    else
        # Another user's process (we are not root): its exe is hidden, its command name is not.
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$(basename "$exe")" ]] || return 1
    fi
    echo "$pid"
}

# Alive and not a zombie: a daemon's parent is init, which may be slow to reap it (seen in a
# container whose init is not a real one), and kill -0 succeeds on a zombie.
alive() {
    local stat state
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    read -r state _ <<<"${stat##*) }"
    [[ $state != Z ]]
}

# Live processes called $1 (a stopped daemon may linger a moment as a zombie).
live_pids() {
    local pid
    for pid in $(pgrep -x "$1"); do
        if alive "$pid"; then echo "$pid"; fi
    done
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

node_state() { sinfo -h -n "$node" -o '%T' 2>/dev/null | head -1; }

# --- status ----------------------------------------------------------------------------------------

if [[ $action == status ]]; then
    if ! command -v slurmctld >/dev/null 2>&1; then
        echo "slurm: not installed (run: sudo scripts/local-slurm.sh start)"
        exit 0
    fi
    for d in munged slurmctld slurmd; do
        if pid=$(running_pid "$DIR/run/$d.pid" "/usr/sbin/$d"); then
            echo "$d: running (pid $pid)"
        elif [[ -n $(live_pids "$d") ]]; then
            echo "$d: running, not started by this script"
        else
            echo "$d: stopped"
        fi
    done
    state=$(node_state || true)
    echo "node $node: ${state:-unknown (slurmctld does not answer)}"
    exit 0
fi

# Already up (started earlier, by root): nothing to do, so no need to be root.
all_up() {
    running_pid "$DIR/run/munged.pid" /usr/sbin/munged >/dev/null &&
        running_pid "$DIR/run/slurmctld.pid" /usr/sbin/slurmctld >/dev/null &&
        running_pid "$DIR/run/slurmd.pid" /usr/sbin/slurmd >/dev/null &&
        [[ $(node_state || true) =~ ^(idle|mixed|allocated|completing)$ ]]
}
if [[ $action == start && $(id -u) -ne 0 ]] && all_up; then
    say "already running: node $node is $(node_state)"
    exit 0
fi

[[ $(id -u) -eq 0 ]] || die "must run as root to $action the local Slurm daemons (try: sudo $0 $action)"

# --- stop ------------------------------------------------------------------------------------------

stop_daemon() {
    local name=$1 pid
    if pid=$(running_pid "$DIR/run/$name.pid" "/usr/sbin/$name"); then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            say "$name (pid $pid) did not stop within 10 s of SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        say "stopped $name (pid $pid)"
    fi
    rm -f "$DIR/run/$name.pid"
}

if [[ $action == stop ]]; then
    # slurmd first: it reports to slurmctld; munged last: both need it until they are gone.
    stop_daemon slurmd
    stop_daemon slurmctld
    stop_daemon munged
    exit 0
fi

# --- start -----------------------------------------------------------------------------------------

# Runs a daemon's start command with nothing of ours: stdio from/to files, and every other inherited
# file descriptor closed. The daemons keep descriptors they inherit (munged does), and this script may
# be started by a process with pipes open (a test runner: its other tests' output pipes), which would
# then never see end-of-file while the daemon lives.
start_detached() {
    local log=$1
    shift
    (
        for fd in /proc/"$BASHPID"/fd/*; do
            fd=${fd##*/}
            if ((fd > 2)); then eval "exec $fd>&-"; fi
        done
        exec "$@"
    ) </dev/null >>"$log" 2>&1
}

start=$SECONDS

# --no-install-recommends (ensure-packages.sh): recommends pull in mail servers and the like, which a
# test cluster does not need.
"$ROOT/scripts/ensure-packages.sh" local-slurm.sh slurm-wlm munge

if [[ -e $CONF ]] && [[ $(head -1 "$CONF") != "$MARKER" ]]; then
    die "$CONF exists and was not written by this script (a real cluster's config?); not touching it. Move it away to use the local test cluster."
fi

# slurmctld listens on, and slurmd and the commands reach it by, this host's short name.
getent hosts "$node" >/dev/null ||
    die "host name '$node' does not resolve; add '127.0.0.1 $node' to /etc/hosts and retry"

mkdir -p "$DIR"/{state,spool,log,run}
# slurmd runs jobs as their users; they must reach the spool and log folders.
chmod 755 "$DIR" "$DIR"/{state,spool,log,run}

# CR_CPU: count CPUs, not cores, so the 8 claimed CPUs are 8 slots. proctrack/linuxproc and
# task/none: no cgroups (containers often have no writable cgroup tree). EnforcePartLimits=ALL:
# a request larger than the node is refused at submission instead of pending forever.
# MpiDefault=pmix: the only plugin Debian's OpenMPI works with (pmi2 does not).
conf_text() {
    cat <<EOF
$MARKER
ClusterName=stepflow
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=pmix
SlurmdParameters=config_overrides
EnforcePartLimits=ALL
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# Seconds between the SIGTERM of a time limit (or scancel) and the SIGKILL: Slurm's default, stated so
# docs/clusters.md can rely on it.
KillWait=30
InactiveLimit=0
MinJobAge=300
NodeName=$node CPUs=8 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}
mkdir -p /etc/slurm
new_conf=$(conf_text)
conf_changed=false
if [[ ! -f $CONF ]] || [[ $(cat "$CONF") != "$new_conf" ]]; then
    printf '%s\n' "$new_conf" >"$CONF"
    conf_changed=true
fi

# munge: a key (Debian's postinst usually made one; a minimal image may not have), then the daemon as
# user munge, which is how munged insists on running.
if [[ ! -s $MUNGE_KEY ]]; then
    mkdir -p "$(dirname "$MUNGE_KEY")"
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile="$MUNGE_KEY" >/dev/null
    else
        dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
    fi
    say "created the munge key $MUNGE_KEY"
fi
chown munge:munge "$MUNGE_KEY" "$(dirname "$MUNGE_KEY")"
chmod 0400 "$MUNGE_KEY"
chmod 0700 "$(dirname "$MUNGE_KEY")"
mkdir -p "$MUNGE_SOCKET_DIR" /var/log/munge /var/lib/munge
chown munge:munge "$MUNGE_SOCKET_DIR" /var/log/munge /var/lib/munge
chmod 0755 "$MUNGE_SOCKET_DIR"

if munge_works; then
    : # ours from an earlier start, or the system's own: either serves Slurm
else
    start_detached "$DIR/log/start.log" runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGE_SOCKET_DIR/munged.pid" ||
        fail "munged did not start: $(tail -1 "$DIR/log/start.log"); see /var/log/munge/munged.log"
    for _ in $(seq 50); do
        munge_works && break
        sleep 0.1
    done
    munge_works || fail "munged started but 'munge -n | unmunge' fails; see /var/log/munge/munged.log"
    cp "$MUNGE_SOCKET_DIR/munged.pid" "$DIR/run/munged.pid"
    say "started munged (pid $(cat "$DIR/run/munged.pid"))"
fi

# A daemon already running on an older config rereads it (scontrol reconfigure) rather than being
# restarted, so jobs in flight survive a second start.
ctld_pid="" slurmd_pid=""
ctld_pid=$(running_pid "$DIR/run/slurmctld.pid" /usr/sbin/slurmctld) || ctld_pid=""
slurmd_pid=$(running_pid "$DIR/run/slurmd.pid" /usr/sbin/slurmd) || slurmd_pid=""
for d in slurmctld slurmd; do
    [[ $d == slurmctld && -n $ctld_pid || $d == slurmd && -n $slurmd_pid ]] && continue
    other=$(live_pids "$d" | head -1)
    [[ -z $other ]] || die "a $d not started by this script is running (pid $other); stop it first"
done

if [[ -z $ctld_pid ]]; then
    # -i: ignore state files of an earlier cluster config (a new host name, another node list).
    start_detached "$DIR/log/start.log" /usr/sbin/slurmctld -i -f "$CONF" ||
        fail "slurmctld did not start: $(tail -1 "$DIR/log/start.log"); see $DIR/log/slurmctld.log"
    for _ in $(seq 100); do
        scontrol ping 2>/dev/null | grep -q UP && break
        sleep 0.1
    done
    scontrol ping 2>/dev/null | grep -q UP || fail "slurmctld does not answer; see $DIR/log/slurmctld.log"
    say "started slurmctld (pid $(cat "$DIR/run/slurmctld.pid"))"
elif $conf_changed; then
    scontrol reconfigure || fail "slurmctld did not take the new $CONF; see $DIR/log/slurmctld.log"
    say "slurmctld reread $CONF"
fi

if [[ -z $slurmd_pid ]]; then
    start_detached "$DIR/log/start.log" /usr/sbin/slurmd -f "$CONF" ||
        fail "slurmd did not start: $(tail -1 "$DIR/log/start.log"); see $DIR/log/slurmd.log"
    # slurmd writes its pid file a moment after its parent returns.
    for _ in $(seq 50); do
        slurmd_pid=$(running_pid "$DIR/run/slurmd.pid" /usr/sbin/slurmd) && break
        sleep 0.1
    done
    say "started slurmd (pid ${slurmd_pid:-?})"
fi

# The node is usable once slurmctld has heard from slurmd: idle (or already running jobs). A node
# left down/drained by an earlier crash is resumed: this is a test cluster, nothing to protect.
# sinfo alone is not enough: slurmctld keeps showing a node idle for minutes after its slurmd died,
# so also ask the local slurmd itself.
state="" ready=false
for _ in $(seq 300); do
    state=$(node_state || true)
    case $state in
        idle | mixed | allocated | completing)
            if scontrol show slurmd >/dev/null 2>&1; then
                ready=true
                break
            fi
            ;;
        down* | drain* | fail*) scontrol update nodename="$node" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.1
done
$ready || fail "node $node is '${state:-unknown}' after 30 s, not idle with its slurmd answering; see $DIR/log/slurmd.log and $DIR/log/slurmctld.log"
say "node $node is $state with 8 CPUs ($((SECONDS - start)) s); try: sinfo; sbatch examples/slurm/import-movies.sbatch"
