#!/usr/bin/env bash
# Usage: scripts/local-slurm.sh start [--nodes N] | stop | status | kill-node NAME
#
# A real Slurm on this machine, for trying the examples/slurm/ templates and for the test suite
# (Tests/StepFlowTests/SlurmTests.swift). No systemd: munged, slurmctld and slurmd are started by
# hand and stopped by the pid files this script keeps.
#
#   start       install slurm-wlm and munge if missing, write the config, start what is not running,
#               wait until every node is idle. Safe to call again: it only starts what is down.
#   --nodes N   N nodes (1-4, default 1): one slurmd each, sf1 ... sfN, so `sbatch -N 2` really spans
#               two nodes and one can fail. Changing N restarts the cluster.
#   stop        stop the daemons this script started (by their pid files), nothing else.
#   status      whether each daemon runs, and each node's state.
#   kill-node   a node failure: SIGKILL node NAME's slurmd and everything it runs (its job steps'
#               daemons and tasks). Slurm marks it down SlurmdTimeout (10 s) later; `start` brings it back.
#
# One node is this host's short name with CPUs=8 whatever the cores (SlurmdParameters=config_overrides),
# so jobs such as `sbatch -n 4 -c 2` fit on a 2-core machine; with --nodes each node claims 8 CPUs.
# Each slurmd of several runs with a /tmp and a host name of its own (private mount and UTS
# namespaces): the PMIx plugins of two nodes on one machine would otherwise share
# /tmp/spmix_appdir_* and every srun would fail, and Open MPI would join their ranks by shared memory. State,
# spool, logs and pid files live in STEPFLOW_SLURM_DIR (default /var/tmp/stepflow-slurm). Slurm's
# commands read /etc/slurm/slurm.conf, so this script writes that file, but only when it is missing or
# one it wrote itself.
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
MARKER="# Written by StepFlow scripts/local-slurm.sh; test cluster on one machine. Safe to delete."
# Configs this script wrote before it had several nodes start with this line.
OLD_MARKER="# Written by StepFlow scripts/local-slurm.sh; one-node test cluster. Safe to delete."
readonly MARKER
# munge's own default paths: every Slurm command finds the socket there with no setting.
MUNGE_KEY=/etc/munge/munge.key
DBD_CONF=/etc/slurm/slurmdbd.conf
# Ports of the accounting daemons, away from the usual ones so a real MariaDB or slurmdbd is left alone.
DBD_PORT=16819
SQL_PORT=13306
readonly DBD_CONF DBD_PORT SQL_PORT
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
    sed -n '2,29p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

(($# >= 1)) || {
    usage >&2
    exit 2
}
action=$1
shift
node_count="" victim=""
case $action in
    start)
        if (($# == 2)) && [[ $1 == --nodes ]]; then node_count=$2; shift 2; fi
        (($# == 0)) || { usage >&2; exit 2; }
        : "${node_count:=1}"
        [[ $node_count =~ ^[1-4]$ ]] || die "--nodes must be 1 to 4 (got '$node_count')"
        ;;
    kill-node)
        (($# == 1)) || { usage >&2; exit 2; }
        victim=$1
        ;;
    stop | status) (($# == 0)) || { usage >&2; exit 2; } ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
esac

node=$(hostname -s)
readonly node

# The nodes: this host's name alone, or sf1 ... sfN (one slurmd each) with --nodes N.
node_names() {
    if ((${1:-1} == 1)); then echo "$node"; else seq -f 'sf%g' 1 "$1"; fi
}
# The nodes the current config names (none when there is no config of ours).
configured_nodes() {
    [[ -f $CONF ]] || return 0
    sed -n 's/^NodeName=\([^ ]*\) .*/\1/p' "$CONF"
}
# The pid file of a node's slurmd: one for a lone node, one per node otherwise.
slurmd_pid_file() { if [[ $1 == "$node" ]]; then echo "$DIR/run/slurmd.pid"; else echo "$DIR/run/slurmd-$1.pid"; fi; }

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

node_state() { sinfo -h -n "${1:-$node}" -o '%T' 2>/dev/null | head -1; }

# --- status ----------------------------------------------------------------------------------------

if [[ $action == status ]]; then
    if ! command -v slurmctld >/dev/null 2>&1; then
        echo "slurm: not installed (run: sudo scripts/local-slurm.sh start)"
        exit 0
    fi
    for d in munged slurmctld; do
        if pid=$(running_pid "$DIR/run/$d.pid" "/usr/sbin/$d"); then
            echo "$d: running (pid $pid)"
        elif [[ -n $(live_pids "$d") ]]; then
            echo "$d: running, not started by this script"
        else
            echo "$d: stopped"
        fi
    done
    names=$(configured_nodes)
    [[ -n $names ]] || names=$node
    for n in $names; do
        label=slurmd
        [[ $n == "$node" ]] || label="slurmd $n"
        if pid=$(running_pid "$(slurmd_pid_file "$n")" /usr/sbin/slurmd); then
            echo "$label: running (pid $pid)"
        elif [[ $n == "$node" && -n $(live_pids slurmd) ]]; then
            echo "$label: running, not started by this script"
        else
            echo "$label: stopped"
        fi
    done
    for n in $names; do
        state=$(node_state "$n" || true)
        echo "node $n: ${state:-unknown (slurmctld does not answer)}"
    done
    exit 0
fi

# Already up (started earlier, by root): nothing to do, so no need to be root.
all_up() {
    local n
    [[ $(configured_nodes | tr '\n' ' ') == "$(node_names "$node_count" | tr '\n' ' ')" ]] || return 1
    running_pid "$DIR/run/munged.pid" /usr/sbin/munged >/dev/null &&
        running_pid "$DIR/run/slurmctld.pid" /usr/sbin/slurmctld >/dev/null || return 1
    for n in $(node_names "$node_count"); do
        running_pid "$(slurmd_pid_file "$n")" /usr/sbin/slurmd >/dev/null &&
            [[ $(node_state "$n" || true) =~ ^(idle|mixed|allocated|completing)$ ]] || return 1
    done
}
if [[ $action == start && $(id -u) -ne 0 ]] && all_up; then
    say "already running: node $node is $(node_state)"
    exit 0
fi

[[ $(id -u) -eq 0 ]] || die "must run as root to $action the local Slurm daemons (try: sudo $0 $action)"

# --- stop ------------------------------------------------------------------------------------------

stop_daemon() {
    local name=$1 pid file=${2:-$DIR/run/$1.pid}
    if pid=$(running_pid "$file" "/usr/sbin/$name"); then
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
    rm -f "$file"
}

stop_slurmds() {
    local file
    for file in "$DIR"/run/slurmd.pid "$DIR"/run/slurmd-*.pid; do
        [[ -e $file ]] && stop_daemon slurmd "$file"
    done
    return 0
}

if [[ $action == stop ]]; then
    # slurmd first: it reports to slurmctld; munged last: both need it until they are gone.
    stop_slurmds
    stop_daemon slurmctld
    stop_daemon slurmdbd
    stop_daemon mariadbd
    stop_daemon munged
    exit 0
fi

if [[ $action == kill-node ]]; then
    pid=$(running_pid "$(slurmd_pid_file "$victim")" /usr/sbin/slurmd) || die "node '$victim' has no slurmd running (nodes: $(configured_nodes | tr '\n' ' '))"
    # Everything of that node shares its slurmd's mount namespace (its private /tmp): its step
    # daemons and their tasks. A lone node shares the machine's, so only its slurmd goes.
    ns=$(readlink "/proc/$pid/ns/mnt")
    victims=("$pid")
    if [[ $ns != "$(readlink /proc/1/ns/mnt)" ]]; then
        for p in /proc/[0-9]*; do
            [[ $(readlink "$p/ns/mnt" 2>/dev/null) == "$ns" ]] && victims+=("${p#/proc/}")
        done
    fi
    kill -KILL "${victims[@]}" 2>/dev/null || true
    say "killed node $victim: ${#victims[@]} processes (its slurmd, step daemons and tasks)"
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

# As start_detached, for a daemon that stays in the foreground (mariadbd): started in the background,
# its stdio already away from ours, so nothing of this script's is held open by it.
start_background() {
    local log=$1
    shift
    (
        for fd in /proc/"$BASHPID"/fd/*; do
            fd=${fd##*/}
            if ((fd > 2)); then eval "exec $fd>&-"; fi
        done
        exec "$@"
    ) </dev/null >>"$log" 2>&1 &
}

start=$SECONDS

# --no-install-recommends (ensure-packages.sh): recommends pull in mail servers and the like, which a
# test cluster does not need.
"$ROOT/scripts/ensure-packages.sh" local-slurm.sh slurm-wlm munge
# Several nodes keep accounting (sacct shows each job step, a relaunch's too): slurmdbd on a MariaDB
# of its own.
accounting=false
if ((node_count > 1)); then
    accounting=true
    "$ROOT/scripts/ensure-packages.sh" local-slurm.sh slurmdbd mariadb-server
fi

if [[ -e $CONF ]] && [[ $(head -1 "$CONF") != "$MARKER" && $(head -1 "$CONF") != "$OLD_MARKER" ]]; then
    die "$CONF exists and was not written by this script (a real cluster's config?); not touching it. Move it away to use the local test cluster."
fi

# slurmctld listens on, and slurmd and the commands reach it by, this host's short name.
getent hosts "$node" >/dev/null ||
    die "host name '$node' does not resolve; add '127.0.0.1 $node' to /etc/hosts and retry"

mkdir -p "$DIR"/{state,spool,log,run,tmp}
# slurmd runs jobs as their users; they must reach the spool and log folders.
chmod 755 "$DIR" "$DIR"/{state,spool,log,run}
# The private /tmp of each node of several: sticky and open to all, as /tmp is.
for n in $(node_names "$node_count"); do
    [[ $n == "$node" ]] && continue
    mkdir -p "$DIR/tmp/$n" "$DIR/spool/$n"
    chmod 1777 "$DIR/tmp/$n"
done

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
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
$(if ((node_count == 1)); then
    printf '%s\n' "SlurmdSpoolDir=$DIR/spool" "SlurmdPidFile=$DIR/run/slurmd.pid" "SlurmdLogFile=$DIR/log/slurmd.log"
else
    printf '%s\n' "SlurmdSpoolDir=$DIR/spool/%n" "SlurmdPidFile=$DIR/run/slurmd-%n.pid" "SlurmdLogFile=$DIR/log/slurmd-%n.log"
fi)
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
$(if $accounting; then
    printf '%s\n' "AccountingStorageType=accounting_storage/slurmdbd" "AccountingStorageHost=$node" "AccountingStoragePort=$DBD_PORT"
else
    echo "AccountingStorageType=accounting_storage/none"
fi)
JobAcctGatherType=jobacct_gather/none
# Seconds between the SIGTERM of a time limit (or scancel) and the SIGKILL: Slurm's default, stated so
# docs/clusters.md can rely on it.
KillWait=30
InactiveLimit=0
MinJobAge=300
# A node whose slurmd stopped answering is marked down after this many seconds (Slurm's default is
# 300): a node failure test, and a relaunch that leaves the node out, need not wait five minutes.
SlurmdTimeout=10
$(if ((node_count == 1)); then
    echo "NodeName=$node CPUs=8 State=UNKNOWN"
else
    for ((i = 1; i <= node_count; i++)); do echo "NodeName=sf$i NodeHostname=$node Port=$((17000 + i)) CPUs=8 State=UNKNOWN"; done
fi)
PartitionName=debug Nodes=$(node_names "$node_count" | paste -sd,) Default=YES MaxTime=INFINITE State=UP
EOF
}
mkdir -p /etc/slurm
new_conf=$(conf_text)
conf_changed=false
# Another set of nodes: slurmctld does not take new nodes on a reconfigure, so everything restarts.
if [[ -f $CONF ]] && [[ $(configured_nodes | tr '\n' ' ') != "$(node_names "$node_count" | tr '\n' ' ')" ]]; then
    say "switching to $node_count node(s): restarting the cluster"
    stop_slurmds
    stop_daemon slurmctld
fi
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
ctld_pid=""
ctld_pid=$(running_pid "$DIR/run/slurmctld.pid" /usr/sbin/slurmctld) || ctld_pid=""
if [[ -z $ctld_pid ]]; then
    other=$(live_pids slurmctld | head -1)
    [[ -z $other ]] || die "a slurmctld not started by this script is running (pid $other); stop it first"
fi
# slurmds of ours (every node's pid file); any other slurmd is a stranger's.
ours=" "
for file in "$DIR"/run/slurmd.pid "$DIR"/run/slurmd-*.pid; do
    pid=$(running_pid "$file" /usr/sbin/slurmd) && ours+="$pid "
done
for pid in $(live_pids slurmd); do
    [[ $ours == *" $pid "* ]] || die "a slurmd not started by this script is running (pid $pid); stop it first"
done

# Accounting (several nodes): a MariaDB of our own under $DIR/mysql on 127.0.0.1:$SQL_PORT, then
# slurmdbd on $DBD_PORT, both before slurmctld, which registers with it.
if $accounting; then
    sql=(mariadb --protocol=socket --socket="$DIR/run/mysql.sock" -u root)
    if ! running_pid "$DIR/run/mariadbd.pid" /usr/sbin/mariadbd >/dev/null; then
        if [[ ! -d $DIR/mysql/mysql ]]; then
            mkdir -p "$DIR/mysql"
            chown mysql:mysql "$DIR/mysql"
            mariadb-install-db --user=mysql --datadir="$DIR/mysql" --auth-root-authentication-method=socket >>"$DIR/log/mariadb.log" 2>&1 ||
                fail "mariadb-install-db failed; see $DIR/log/mariadb.log"
        fi
        chown mysql:mysql "$DIR/run"
        start_background "$DIR/log/mariadb.log" /usr/sbin/mariadbd --user=mysql --datadir="$DIR/mysql" --socket="$DIR/run/mysql.sock" \
            --pid-file="$DIR/run/mariadbd.pid" --bind-address=127.0.0.1 --port="$SQL_PORT" --log-error="$DIR/log/mariadb.log"
        for _ in $(seq 100); do
            "${sql[@]}" -e 'SELECT 1' >/dev/null 2>&1 && break
            sleep 0.1
        done
        "${sql[@]}" -e 'SELECT 1' >/dev/null 2>&1 || fail "MariaDB did not come up; see $DIR/log/mariadb.log"
        say "started mariadbd (pid $(cat "$DIR/run/mariadbd.pid"))"
    fi
    "${sql[@]}" -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'stepflow-local';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" || fail "could not make MariaDB's slurm user; see $DIR/log/mariadb.log"
    dbd_text="$MARKER
DbdHost=$node
DbdPort=$DBD_PORT
SlurmUser=root
AuthType=auth/munge
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$SQL_PORT
StorageUser=slurm
StoragePass=stepflow-local
StorageLoc=slurm_acct_db
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log"
    if [[ -e $DBD_CONF ]] && [[ $(head -1 "$DBD_CONF") != "$MARKER" ]]; then
        die "$DBD_CONF exists and was not written by this script; not touching it. Move it away to use the local test cluster with several nodes."
    fi
    printf '%s\n' "$dbd_text" >"$DBD_CONF"
    chmod 600 "$DBD_CONF"
    if ! running_pid "$DIR/run/slurmdbd.pid" /usr/sbin/slurmdbd >/dev/null; then
        start_detached "$DIR/log/start.log" /usr/sbin/slurmdbd ||
            fail "slurmdbd did not start: $(tail -1 "$DIR/log/start.log"); see $DIR/log/slurmdbd.log"
        for _ in $(seq 100); do
            sacctmgr -n list cluster >/dev/null 2>&1 && break
            sleep 0.1
        done
        sacctmgr -n list cluster >/dev/null 2>&1 || fail "slurmdbd does not answer; see $DIR/log/slurmdbd.log"
        say "started slurmdbd (pid $(cat "$DIR/run/slurmdbd.pid"))"
    fi
    sacctmgr -n list cluster format=cluster 2>/dev/null | grep -qw stepflow || sacctmgr -i add cluster stepflow >/dev/null ||
        fail "sacctmgr could not add the cluster; see $DIR/log/slurmdbd.log"
fi

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

for n in $(node_names "$node_count"); do
    pid_file=$(slurmd_pid_file "$n")
    running_pid "$pid_file" /usr/sbin/slurmd >/dev/null && continue
    if [[ $n == "$node" ]]; then
        start_detached "$DIR/log/start.log" /usr/sbin/slurmd -f "$CONF" ||
            fail "slurmd did not start: $(tail -1 "$DIR/log/start.log"); see $DIR/log/slurmd.log"
    else
        # A /tmp of its own (see the top of this file), in a mount namespace every process of the node
        # shares: kill-node finds them all by it.
        # And a host name of its own (a UTS namespace): Open MPI takes ranks with one host name for one
        # machine and joins them by shared memory, which two nodes' private /tmp cannot back (a
        # segfault in btl_vader, seen).
        # A StepFlow folder under /tmp (a clone made by mktemp -d) stays where it is for the node's jobs:
        # bound into the node's /tmp at the same path before that /tmp hides the machine's.
        start_detached "$DIR/log/start.log" unshare --mount --uts --propagation private /bin/sh -c \
            'hostname "$3" &&
             case $4 in /tmp/?*) mkdir -p "$1/${4#/tmp/}" && mount --bind "$4" "$1/${4#/tmp/}" ;; esac &&
             mount --rbind "$1" /tmp && exec /usr/sbin/slurmd -f "$2" -N "$3"' sh "$DIR/tmp/$n" "$CONF" "$n" "$ROOT" ||
            fail "slurmd $n did not start: $(tail -1 "$DIR/log/start.log"); see $DIR/log/slurmd-$n.log"
    fi
    # slurmd writes its pid file a moment after its parent returns.
    slurmd_pid=""
    for _ in $(seq 50); do
        slurmd_pid=$(running_pid "$pid_file" /usr/sbin/slurmd) && break
        sleep 0.1
    done
    say "started slurmd${n:+ $n} (pid ${slurmd_pid:-?})"
done

# A node is usable once slurmctld has heard from its slurmd: idle (or already running jobs). A node
# left down/drained by an earlier crash or kill-node is resumed: this is a test cluster, nothing to
# protect. sinfo alone is not enough for a lone node: slurmctld keeps showing it idle for a while
# after its slurmd died, so also ask the local slurmd itself.
ready=false
for _ in $(seq 300); do
    ready=true
    for n in $(node_names "$node_count"); do
        state=$(node_state "$n" || true)
        case $state in
            idle | mixed | allocated | completing)
                if [[ $n == "$node" ]] && ! scontrol show slurmd >/dev/null 2>&1; then ready=false; fi
                ;;
            down* | drain* | fail*)
                scontrol update nodename="$n" state=resume 2>/dev/null || true
                ready=false
                ;;
            *) ready=false ;;
        esac
    done
    $ready && break
    sleep 0.1
done
$ready || fail "the nodes are not all idle with their slurmd answering after 30 s ($(sinfo -h -N -o '%N %T' | tr '\n' ' ')); see $DIR/log/slurmd*.log and $DIR/log/slurmctld.log"
say "nodes $(node_names "$node_count" | paste -sd' ') are $(node_state "$(node_names "$node_count" | head -1)") with 8 CPUs each ($((SECONDS - start)) s); try: sinfo; sbatch examples/slurm/import-movies.sbatch"
