#!/usr/bin/env bash
# run_mpi.sh — install what is missing, build if stale, launch a StepFlow program on MPI.
# See usage() below, or ./run_mpi.sh --help.
set -euo pipefail

# The package lives beside this script; the user's working directory is left alone so that relative
# paths in PROGRAM ARGS (--run-dir, inputs) mean what the user typed.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly ROOT

usage() {
    cat <<'EOF'
Usage: ./run_mpi.sh [--mpi M] [--threads T] [--hostfile FILE] [--relaunch N] [--release|--debug] [-- PROGRAM ARGS...]

Builds PROGRAM if needed and runs it on M MPI ranks with T step workers on each rank
(M x T step slots in all).

Options:
  --mpi M           MPI ranks (default 2; inside Slurm, SLURM_NTASKS)
  --threads T       step worker threads per rank (default 2; inside Slurm, SLURM_CPUS_PER_TASK if set)
  --hostfile FILE   OpenMPI hostfile (see hostfiles/); default: every rank on this machine
  --relaunch N      when a launch ends because ranks or nodes were lost, launch again with
                    --continue, up to N times, without the hosts that no longer answer (default 0)
  --release         build and run the release binary (default)
  --debug           build and run the debug binary
  -h, --help        show this help

PROGRAM is an executable product of this package (ImportMovies, stepflow, ...) or a path to an
executable; it defaults to ImportMovies. Everything after PROGRAM is passed to it. A protocol
executable (any product but stepflow) gets --run-dir ./run unless ARGS give one.

Every rank gets STEPFLOW_MPI=M and STEPFLOW_THREADS=T. Outside Slurm it runs mpirun (adding
--oversubscribe when M exceeds the cores or hostfile slots, --allow-run-as-root as root); inside a
Slurm allocation (SLURM_JOB_ID set) it runs srun --mpi=pmix on the allocation.

Examples:
  ./run_mpi.sh                                   ImportMovies, 2 ranks x 2 threads, run dir ./run
  ./run_mpi.sh --mpi 4 --threads 1 -- ImportMovies --run-dir /tmp/run1
  ./run_mpi.sh --hostfile hostfiles/cluster --mpi 64 -- stepflow run pipeline.yaml

Ctrl-C (or SIGTERM, SIGHUP) stops the run: rank 0 records it aborted within about two seconds (finish
it with --continue) and the script exits 130 (143, 129). A second Ctrl-C kills this machine's ranks at
once; the run keeps what rank 0 had committed.

With --relaunch N, a launch that lost ranks (a rank or node died, or --rank-timeout found one
silent) is followed at once by another with --continue: on the hosts of the hostfile that still
answer (probed through mpirun's rsh agent), or inside Slurm on the allocation's nodes that are not
down (run the job with --no-kill). It never relaunches after a step failure, bad usage, a signal
from you or the scheduler, --stop-before, or a finished run. docs/clusters.md has the table.

Exit codes: the program's; 2 for bad usage or missing packages this user cannot install.
EOF
}

die() {
    echo "run_mpi.sh: $*" >&2
    exit 2
}

usage_error() {
    echo "run_mpi.sh: $*" >&2
    usage >&2
    exit 2
}

positive_int() { [[ $1 =~ ^[1-9][0-9]{0,5}$ ]]; }

# --- arguments -------------------------------------------------------------------------------------

mpi="" threads="" hostfile="" config=release relaunch=0
while (($# > 0)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --mpi | --threads | --hostfile | --relaunch)
            (($# >= 2)) || usage_error "$1 needs a value"
            case $1 in
                --mpi) mpi=$2 ;;
                --threads) threads=$2 ;;
                --hostfile) hostfile=$2 ;;
                --relaunch) relaunch=$2 ;;
            esac
            shift 2
            ;;
        --mpi=*) mpi=${1#*=}; shift ;;
        --threads=*) threads=${1#*=}; shift ;;
        --hostfile=*) hostfile=${1#*=}; shift ;;
        --relaunch=*) relaunch=${1#*=}; shift ;;
        --release) config=release; shift ;;
        --debug) config=debug; shift ;;
        --) shift; break ;;
        -*) usage_error "unknown option: $1 (options for PROGRAM go after --)" ;;
        *) break ;; # a bare word starts PROGRAM ARGS, so `./run_mpi.sh ImportMovies` works too
    esac
done

in_slurm=false
[[ -n ${SLURM_JOB_ID:-} ]] && in_slurm=true

# Inside an allocation the user already said how big the job is; take that instead of our defaults.
if $in_slurm; then
    : "${mpi:=${SLURM_NTASKS:-2}}"
    : "${threads:=${SLURM_CPUS_PER_TASK:-2}}"
else
    : "${mpi:=2}"
    : "${threads:=2}"
fi
positive_int "$mpi" || die "--mpi must be a positive integer (got '$mpi'); see ./run_mpi.sh --help"
positive_int "$threads" || die "--threads must be a positive integer (got '$threads'); see ./run_mpi.sh --help"
[[ $relaunch =~ ^[0-9]{1,3}$ ]] || die "--relaunch must be a whole number from 0 to 999 (got '$relaunch'); see ./run_mpi.sh --help"

if [[ -n $hostfile ]]; then
    [[ -f $hostfile && -r $hostfile ]] || die "hostfile '$hostfile' does not exist or is not readable (see hostfiles/)"
    if $in_slurm; then
        echo "run_mpi.sh: inside Slurm job $SLURM_JOB_ID: ignoring --hostfile $hostfile, srun uses the allocation" >&2
        hostfile=""
    fi
fi

if (($# > 0)); then
    program=$1
    shift
else
    program=ImportMovies
fi
args=("$@")

# --- packages --------------------------------------------------------------------------------------

# pkg-config: SwiftPM needs it to find Debian's multiarch ompi-c.pc when building the CMPI target.
"$ROOT/scripts/ensure-packages.sh" run_mpi.sh libopenmpi-dev openmpi-bin libsqlite3-dev pkg-config

# --- program ---------------------------------------------------------------------------------------

# Executable products of the package, explicit (.executable) or implied by an .executableTarget.
# Read from Package.swift rather than `swift package dump-package`: that would resolve packages and
# take the build lock just to print usage.
package_executables() {
    tr '\n' ' ' <"$ROOT/Package.swift" |
        grep -oE '\.(executable|executableTarget)\([[:space:]]*name:[[:space:]]*"[^"]+"' |
        sed -E 's/.*"([^"]+)"$/\1/' | sort -u
}

is_product=false
if [[ $program != */* ]] && package_executables | grep -qxF -- "$program"; then
    is_product=true
fi

# Builds product $1 ($config) when its binary is missing or older than the sources; prints the path.
ensure_built() {
    local product=$1 bin stale=""
    command -v swift >/dev/null 2>&1 ||
        die "'swift' is not on PATH; install a Swift 6.1+ toolchain (https://www.swift.org/install/) to build $product"
    bin="$ROOT/.build/$config/$product"
    # Rebuild only when stale: `swift build` on an up-to-date tree still costs seconds of planning,
    # paid on every launch otherwise.
    # STEPFLOW_SKIP_BUILD=1: the caller built everything already (the test suite does, and a build
    # started here would wait for the build lock its `swift test` holds).
    if [[ -x $bin && ${STEPFLOW_SKIP_BUILD:-} == 1 ]]; then
        :
    elif [[ -x $bin ]]; then
        stale=$(find "$ROOT/Sources" "$ROOT/Package.swift" "$ROOT/Package.resolved" \
            -newer "$bin" -print -quit 2>/dev/null || true)
    fi
    if [[ ! -x $bin || -n $stale ]]; then
        echo "run_mpi.sh: building $product ($config)${stale:+, ${stale#"$ROOT/"} changed}" >&2
        # Build output goes to stderr so the program's stdout stays clean for pipes.
        swift build --package-path "$ROOT" -c "$config" --product "$product" >&2
        [[ -x $bin ]] || die "built $product but found no binary at $bin"
        # A touched-but-unchanged source makes swift build a no-op that leaves the binary older
        # than it; mark the binary current so the next launch skips the build.
        touch "$bin"
    fi
    echo "$bin"
}

if $is_product; then
    binary=$(ensure_built "$program")
    # Protocol executables take --run-dir (RunOptions); the stepflow CLI has subcommands, so a
    # flag put before them would be misread. Prepended, not appended, so it lands before any `--`.
    if [[ $program != stepflow ]]; then
        has_run_dir=false
        for a in ${args[@]+"${args[@]}"}; do
            [[ $a == --run-dir || $a == --run-dir=* ]] && has_run_dir=true
        done
        $has_run_dir || args=(--run-dir ./run ${args[@]+"${args[@]}"})
    fi
elif [[ -f $program && -x $program ]]; then
    # Ranks on other nodes resolve the path themselves; an absolute path means the same everywhere.
    binary=$(cd "$(dirname "$program")" && pwd)/$(basename "$program")
elif [[ $program != */* ]] && binary=$(command -v -- "$program" 2>/dev/null) && [[ $binary == /* ]]; then
    : # a command on PATH (e.g. `hostname` to check a hostfile)
else
    products=$(package_executables | tr '\n' ' ')
    die "'$program' is neither an executable product of this package (${products% }) nor a path to an executable"
fi

# --- launch ----------------------------------------------------------------------------------------

# Every rank reads these (RunOptions falls back to them), so --mpi/--threads need not be repeated
# in ARGS and cannot disagree with the launch.
export STEPFLOW_THREADS=$threads STEPFLOW_MPI=$mpi

# Cores mpirun sees as slots on this machine: it counts physical cores, nproc counts hardware
# threads (and honors cpusets), so take the smaller one.
local_cores() {
    local n cores
    n=$(nproc)
    cores=$(lscpu -p=core,socket 2>/dev/null | grep -v '^#' | sort -u | wc -l || true)
    if [[ $cores =~ ^[0-9]+$ ]] && ((cores > 0 && cores < n)); then n=$cores; fi
    echo "$n"
}

# Total slots in an OpenMPI hostfile; a host listed without slots= counts as 1, so we err on the
# side of allowing oversubscription (which only permits it, never forces it).
hostfile_slots() {
    local total=0 line host slots
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%%#*}
        read -r host _ <<<"$line" || true
        [[ -n ${host:-} ]] || continue
        slots=1
        if [[ $line =~ (^|[[:space:]])slots[[:space:]]*=[[:space:]]*([0-9]+) ]]; then
            slots=${BASH_REMATCH[2]}
        fi
        total=$((total + slots))
    done <"$1"
    echo "$total"
}

if $in_slurm; then
    # Threads beyond a task's CPUs still run, but share cores; say so, since the fix is in the
    # allocation request, not here.
    if [[ -z ${SLURM_CPUS_PER_TASK:-} ]] && ((threads > 1)); then
        echo "run_mpi.sh: note: the allocation has no --cpus-per-task, so each rank's $threads threads may share one CPU; ask salloc/sbatch for --cpus-per-task=$threads" >&2
    elif [[ -n ${SLURM_CPUS_PER_TASK:-} ]] && ((threads > SLURM_CPUS_PER_TASK)); then
        echo "run_mpi.sh: note: $threads threads per rank but each task has $SLURM_CPUS_PER_TASK CPU(s); ask salloc/sbatch for --cpus-per-task=$threads" >&2
    fi
fi

# Nodes of the allocation a relaunch leaves out (they are down), comma-separated, and how many are left.
slurm_exclude="" slurm_nodes=""

# The launch command for the current mpi, hostfile and excluded nodes, in cmd (and shown).
build_command() {
    if $in_slurm; then
        # srun passes the environment (STEPFLOW_*) by default. Only pmix works with Debian's OpenMPI
        # (pmi2 does not), so it is named rather than left to the cluster's MpiDefault.
        # -J: a step name of our own, so a signal can be sent to this launch's step alone (see on_signal).
        step_name=stepflow-$$-$launch_number
        cmd=(srun --mpi=pmix -n "$mpi" -J "$step_name")
        # Since Slurm 22.05 srun no longer inherits --cpus-per-task from the allocation; pass it on so
        # each rank gets the CPUs its threads were given.
        [[ -n ${SLURM_CPUS_PER_TASK:-} ]] && cmd+=(--cpus-per-task="$SLURM_CPUS_PER_TASK")
        # A relaunch: --overlap, since the lost launch's step keeps its share of the allocation until
        # Slurm declares its node down (measured: a new step waited 90 s and more for it).
        ((launch_number == 1)) || cmd+=(--overlap)
        [[ -z $slurm_exclude ]] || cmd+=(--exclude="$slurm_exclude" -N "$slurm_nodes")
        shown=(STEPFLOW_THREADS="$threads" STEPFLOW_MPI="$mpi")
    else
        # -q: a rank 0 that stops with its own message (exit 2: bad flags, a run directory that needs
        # --continue, an --mpi that disagrees) is not followed by mpirun's multi-line "non-zero exit
        # code" banner. It keeps the exit code; what it hides otherwise is explained below.
        cmd=(mpirun -q -np "$mpi")
        [[ $(id -u) -eq 0 ]] && cmd+=(--allow-run-as-root)
        if [[ -n $hostfile ]]; then
            cmd+=(--hostfile "$hostfile")
            slots=$(hostfile_slots "$hostfile")
            ((slots >= mpi)) || cmd+=(--oversubscribe)
        elif ((mpi > $(local_cores))); then
            cmd+=(--oversubscribe)
        fi
        # Each rank runs T worker threads; OpenMPI's default binds a rank to one core, which would
        # squeeze all T threads onto it.
        cmd+=(--bind-to none -x "STEPFLOW_THREADS=$threads" -x "STEPFLOW_MPI=$mpi")
        shown=()
    fi
    cmd+=("$binary" ${args[@]+"${args[@]}"})
}

# Not exec: on SIGTERM/SIGINT/SIGHUP (Slurm's time limit, Ctrl-C, a closed terminal) pass the signal on,
# let rank 0 record the aborted run, then exit 128+signal like a program the signal stopped (mpirun
# itself would say 1).
#
# mpirun must get exactly one signal. OpenMPI 4.1's mpirun (measured) answers its first SIGINT, SIGTERM
# or SIGHUP with SIGCONT to the ranks, SIGTERM a second later (rank 0 then records the run aborted) and
# SIGKILL a second after that; a second signal within 5 s makes it exit(1) at once, the ranks left to
# die a second later and the run left `running`. A terminal's Ctrl-C goes to the whole foreground
# process group, so mpirun would get it from the terminal and again from us. Hence mpirun runs in a
# session of its own (it already puts each rank in a process group of its own) and only this script
# signals it, once, whoever signalled the script. It loses nothing by leaving the terminal: bash gives
# a `&` command /dev/null for input anyway, and output to the terminal never stops it (SIGTTOU).
launched="" signals=0 stopped_by=0 first_signal=""

# This machine's ranks: the launcher's children that run the program.
local_ranks() {
    local stat line fields
    for stat in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null <"$stat" || continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        read -ra fields <<<"${line##*) }"
        if [[ ${fields[1]:-} == "$launched" && /proc/${stat:6:-5}/exe -ef $binary ]]; then echo "${stat:6:-5}"; fi
    done
}

# Inside Slurm, srun must not be signalled: it answers SIGTERM or SIGHUP by SIGKILLing every task
# (measured, Slurm 22.05: "srun: forcing job termination", exit 137), so rank 0 would record nothing,
# and a single SIGINT only makes it print the tasks' state. Rank 0 alone decides (the workers ignore
# the signal), so the signal goes to rank 0: directly when it runs on this node (the batch script's
# node, where srun puts task 0), else through slurmctld to the step (scancel --signal). The direct way
# is preferred because Slurm signals every process of a step, the commands the ranks run included, and
# a command that dies of it before rank 0 has seen its own signal is recorded failed, not aborted.
slurm_step() {
    # JOB.STEP of the step srun made for this launch, found by the name we gave it.
    squeue -h -s -j "$SLURM_JOB_ID" -o '%i %j' 2>/dev/null | awk -v name="$step_name" '$2 == name { print $1; exit }'
}
# pid of task 0 of step $1 (the step number) if it runs here: the program, with that step and
# SLURM_PROCID=0 in its environment.
local_task0() {
    local dir pid env
    for dir in /proc/[0-9]*; do
        [[ $dir/exe -ef $binary ]] || continue
        pid=${dir#/proc/}
        env=$(tr '\0' '\n' <"$dir/environ" 2>/dev/null) || continue
        if grep -qxF "SLURM_PROCID=0" <<<"$env" && grep -qxF "SLURM_STEP_ID=$1" <<<"$env" &&
            grep -qxF "SLURM_JOB_ID=$SLURM_JOB_ID" <<<"$env"; then
            echo "$pid"
            return 0
        fi
    done
    return 1
}
signal_slurm_step() {
    local sig=$1 step="" pid i
    [[ -n $launched ]] || return 0
    # Rank 0 stops on SIGINT and SIGTERM only; SIGHUP would kill it unrecorded.
    [[ $sig == HUP ]] && sig=TERM
    # srun registers the step before it starts the tasks; a signal in that moment waits for it.
    for ((i = 0; i < 30; i++)); do
        step=$(slurm_step) || true
        [[ -z $step ]] || break
        kill -0 "$launched" 2>/dev/null || return 0
        sleep 0.1
    done
    if [[ -z $step ]]; then
        # No step after 3 s: no task started, so nothing is lost by letting srun end it its own way.
        kill -TERM "$launched" 2>/dev/null || true
    elif [[ $sig != KILL ]] && pid=$(local_task0 "${step##*.}"); then
        kill "-$sig" "$pid" 2>/dev/null || true
    else
        scancel --signal="$sig" "$step" 2>/dev/null || true
    fi
}

on_signal() {
    signals=$((signals + 1))
    if $in_slurm; then
        ((signals > 1)) || stopped_by=$1 first_signal=$2
        # A repeat, half a second or more later, makes rank 0 exit at once (SignalWatch); a third
        # ends the step.
        if ((signals < 3)); then
            signal_slurm_step "$2"
        else
            signal_slurm_step KILL
        fi
    elif ((signals == 1)); then
        stopped_by=$1 first_signal=$2
        [[ -z $launched ]] || kill "-$2" "$launched" 2>/dev/null || true
    elif [[ -n $launched ]]; then
        # Ctrl-C again: the user will not wait for mpirun's two seconds. Killing the ranks here ends
        # mpirun's teardown too (it exits once its ranks are gone); ranks on other hosts still end on
        # mpirun's schedule. rank 0's database keeps what it committed, as after any killed rank.
        local pids
        pids=$(local_ranks)
        # shellcheck disable=SC2086 # one pid a line
        [[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
        # A third time: mpirun itself is stuck.
        ((signals < 3)) || kill -KILL "$launched" 2>/dev/null || true
    fi
}
# Trapped before the launch: mpirun, in a session of its own, would outlive a script a signal ended.
trap 'on_signal 143 TERM' TERM
trap 'on_signal 130 INT' INT
trap 'on_signal 129 HUP' HUP

# Launches cmd and waits for it; its exit code in rc.
launch_once() {
    # One copy-pasteable line, so a user can see and rerun exactly what was launched.
    {
        printf 'run_mpi.sh:'
        printf ' %q' ${shown[@]+"${shown[@]}"} "${cmd[@]}"
        printf '\n'
    } >&2
    ((signals == 0)) || exit "$stopped_by"
    # srun too gets a session of its own: a terminal's Ctrl-C (under salloc) must reach the tasks once,
    # through this script, not srun as well.
    setsid "${cmd[@]}" &
    launched=$! # mpirun (or srun) itself: setsid execs it, since a `&` child never leads a process group
    if ((signals > 0)); then
        if $in_slurm; then
            signal_slurm_step "$first_signal"
        else
            kill "-$first_signal" "$launched" 2>/dev/null || true
        fi
    fi
    rc=0
    ((relaunch == 0)) || watch_rank0
    while true; do
        # Bash's own "Killed" line for a launcher a signal ended is noise; the lines below say it better.
        wait "$launched" 2>/dev/null && rc=0 || rc=$?
        # wait returns early (>128) when a trapped signal arrives; keep waiting for the launch itself.
        kill -0 "$launched" 2>/dev/null || break
    done
    ((stopped_by == 0)) || exit "$stopped_by"
}

# While the launcher runs, looks every 2 s whether rank 0 has ended this launch (the run database
# records it, and the run directory's lock is free). A launcher that lost a host may then wait for
# minutes on a daemon it cannot reach (mpirun, measured: its teardown hung on an unreachable host);
# after STEPFLOW_LAUNCHER_GRACE seconds (default 10) it is ended, so a relaunch can go on.
watch_rank0() {
    local ended_at=""
    while kill -0 "$launched" 2>/dev/null; do
        sleep 2 &
        wait $! 2>/dev/null || true
        ((stopped_by == 0)) || return 0
        kill -0 "$launched" 2>/dev/null || return 0
        if [[ -z $ended_at ]]; then
            read_ending || continue
            ((${ending_of[launches]:-0} > launches_before)) || continue
            [[ ${ending_of[ending]} != running ]] || continue
            ended_at=$SECONDS
        elif ((SECONDS - ended_at >= ${STEPFLOW_LAUNCHER_GRACE:-10})); then
            echo "run_mpi.sh: rank 0 ended this launch ($((SECONDS - ended_at)) s ago: ${ending_of[ending]}), but $launcher is still tearing it down; ending $launcher" >&2
            kill -KILL -- "-$launched" 2>/dev/null || kill -KILL "$launched" 2>/dev/null || true
            return 0
        fi
    done
}

# --- relaunch --------------------------------------------------------------------------------------

# The run directory PROGRAM ARGS name (--run-dir), or the programs' default.
run_directory() {
    local a next=false dir=./run
    for a in ${args[@]+"${args[@]}"}; do
        if $next; then dir=$a; next=false; continue; fi
        case $a in
            --run-dir) next=true ;;
            --run-dir=*) dir=${a#--run-dir=} ;;
        esac
    done
    echo "$dir"
}

# How the run's last launch ended (stepflow status --ending), into the array ending_of.
declare -A ending_of=()
read_ending() {
    local line text
    ending_of=()
    text=$("$status_binary" status "$(run_directory)" --ending 2>/dev/null) || return 1
    while IFS= read -r line; do ending_of[${line%%=*}]=${line#*=}; done <<<"$text"
    [[ -n ${ending_of[ending]:-} ]]
}

# The hosts of a hostfile, one a line, as written.
hostfile_hosts() {
    local line host
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%%#*}
        read -r host _ <<<"$line" || true
        [[ -z ${host:-} ]] || echo "$host"
    done <"$1"
}

# Whether host $1 answers: `true` run through mpirun's own rsh agent (OMPI_MCA_plm_rsh_agent, ssh by
# default), within STEPFLOW_PROBE_SECONDS (default 5).
host_answers() {
    local agent=${OMPI_MCA_plm_rsh_agent:-ssh}
    local -a probe
    read -ra probe <<<"${agent%%:*}"
    [[ ${probe[0]##*/} != ssh ]] || probe+=(-o BatchMode=yes -o ConnectTimeout=3)
    timeout -k 1 "${STEPFLOW_PROBE_SECONDS:-5}" "${probe[@]}" "$1" true </dev/null >/dev/null 2>&1
}

# Probes every host of hostfile $1 at once; the hosts that do not answer go to dead_hosts, the
# lines of those that do to alive_hostfile.
declare -a dead_hosts=()
probe_hostfile() {
    local source=$1 host line name i=0
    local -a hosts=() pids=()
    local -A dead=()
    mapfile -t hosts < <(hostfile_hosts "$source")
    dead_hosts=()
    for host in "${hosts[@]}"; do
        host_answers "$host" &
        pids+=($!)
    done
    for host in "${hosts[@]}"; do
        wait "${pids[i]}" || dead[$host]=1
        i=$((i + 1))
    done
    for host in "${hosts[@]}"; do [[ -z ${dead[$host]:-} ]] || dead_hosts+=("$host"); done
    : >"$alive_hostfile"
    while IFS= read -r line || [[ -n $line ]]; do
        name=${line%%#*}
        read -r name _ <<<"$name" || true
        [[ -n ${name:-} && -n ${dead[$name]:-} ]] || echo "$line" >>"$alive_hostfile"
    done <"$source"
}

# Nodes of the Slurm allocation that are down, or that do not run a one-task step within
# STEPFLOW_PROBE_SECONDS (default 10; --overlap, beside whatever the lost launch left), comma-separated
# in dead_nodes; how many are left in slurm_nodes, how many it had in allocation_nodes. Slurm itself
# marks a node down only SlurmdTimeout after it stopped answering (300 s by default): the probe does
# not wait for that.
slurm_dead_nodes() {
    local node state i=0
    local -a all=() down=() pids=()
    mapfile -t all < <(scontrol show hostnames "${SLURM_JOB_NODELIST:-}" 2>/dev/null)
    for node in "${all[@]}"; do
        state=$(sinfo -h -N -n "$node" -o '%T' 2>/dev/null | head -n 1)
        case $state in
            *'*'* | down* | drain* | fail* | "") pids+=(dead) ;;
            *)
                timeout -k 1 "${STEPFLOW_PROBE_SECONDS:-10}" srun --jobid="$SLURM_JOB_ID" --overlap -N 1 -n 1 -w "$node" \
                    -J stepflow-probe true </dev/null >/dev/null 2>&1 &
                pids+=($!)
                ;;
        esac
    done
    for node in "${all[@]}"; do
        if [[ ${pids[i]} == dead ]] || ! wait "${pids[i]}"; then down+=("$node"); fi
        i=$((i + 1))
    done
    allocation_nodes=${#all[@]}
    slurm_nodes=$((${#all[@]} - ${#down[@]}))
    dead_nodes=$(IFS=,; echo "${down[*]}")
}

# Why the launch that just ended calls for another, as the start of the line that says so; fails
# when it does not (the table in docs/clusters.md).
relaunch_reason() {
    case $rc in
        0 | 2) return 1 ;; # finished, or bad usage / a run that could not start
    esac
    read_ending || return 1
    ((${ending_of[launches]:-0} > launches_before)) || return 1 # this launch never opened the run
    local lost="" i how
    local -a ranks=() hosts=()
    read -ra ranks <<<"${ending_of[lost_ranks]:-}"
    read -ra hosts <<<"${ending_of[lost_hosts]:-}"
    for i in "${!ranks[@]}"; do lost+="${lost:+, }rank ${ranks[i]} on host ${hosts[i]:-?}"; done
    how="$launcher exited $rc"
    ((rc > 128)) && how+=": a process ended on SIG$(kill -l $((rc - 128)) 2>/dev/null || echo '?')"
    case ${ending_of[ending]} in
        rank-silent) echo "${lost:-a rank} went silent past --rank-timeout" ;;
        interrupted) echo "the launch died before rank 0 could record its end ($how)" ;;
        signal)
            # A signal the ranks got from the user or the scheduler, every rank answering: theirs to give.
            if [[ -z $lost ]] && [[ $rc == 129 || $rc == 130 || $rc == 143 ]]; then return 1; fi
            echo "${lost:-a rank} died ($how)"
            ;;
        *) return 1 ;; # finished, failed, stalled, stopped (--stop-before), hook, database, rank-broken
    esac
}

# The program's arguments for a relaunch: --continue instead of --restart.
continue_args() {
    local -a out=()
    local a has=false
    for a in ${args[@]+"${args[@]}"}; do
        [[ $a == --restart ]] && continue
        [[ $a == --continue ]] && has=true
        out+=("$a")
    done
    if ! $has; then
        # stepflow's subcommand comes first: `stepflow run --continue FILE`.
        if [[ $program == stepflow && ${out[0]:-} == run ]]; then
            out=(run --continue "${out[@]:1}")
        else
            out=(--continue ${out[@]+"${out[@]}"})
        fi
    fi
    args=("${out[@]}")
}

launcher=mpirun
$in_slurm && launcher=srun
launch_number=1
if ((relaunch > 0)); then
    status_binary=$(ensure_built stepflow)
    alive_hostfile=$(mktemp "${TMPDIR:-/tmp}/run_mpi.hosts.XXXXXX")
    trap 'rm -f "$alive_hostfile"' EXIT
fi
while true; do
    launches_before=0
    if ((relaunch > 0)) && read_ending; then launches_before=${ending_of[launches]:-0}; fi
    build_command
    launch_once
    ((launch_number <= relaunch)) || break
    reason=$(relaunch_reason) || break
    where=""
    if $in_slurm; then
        slurm_dead_nodes
        if [[ -n $dead_nodes ]]; then
            if ((slurm_nodes == 0)); then
                echo "run_mpi.sh: $reason; every node of the allocation is down ($dead_nodes); not relaunching" >&2
                break
            fi
            # As many ranks a node as before, on the nodes that are left.
            mpi=$(((mpi * slurm_nodes + allocation_nodes - 1) / allocation_nodes))
            slurm_exclude=$dead_nodes
            where="$dead_nodes down; "
        fi
        where+="relaunching on $slurm_nodes node(s)"
    elif [[ -n $hostfile ]]; then
        probe_hostfile "$hostfile"
        if ((${#dead_hosts[@]} > 0)); then
            before_slots=$(hostfile_slots "$hostfile")
            left_slots=$(hostfile_slots "$alive_hostfile")
            if ((left_slots == 0)); then
                echo "run_mpi.sh: $reason; no host of the hostfile answers (${dead_hosts[*]}); not relaunching" >&2
                break
            fi
            # As many ranks as still fit; an oversubscribed launch shrinks in proportion.
            if ((mpi <= before_slots)); then
                ((mpi <= left_slots)) || mpi=$left_slots
            else
                mpi=$(((mpi * left_slots + before_slots - 1) / before_slots))
            fi
            hostfile=$alive_hostfile
            if ((${#dead_hosts[@]} == 1)); then where="${dead_hosts[0]} does not answer; "; else where="${dead_hosts[*]} do not answer; "; fi
        else
            where="every host answers; "
        fi
        where+="relaunching on $(hostfile_hosts "$hostfile" | wc -l) host(s)"
    else
        where="relaunching on this machine"
    fi
    export STEPFLOW_MPI=$mpi
    continue_args
    echo "run_mpi.sh: $reason; $where, $mpi ranks × $threads threads (relaunch $launch_number of $relaunch)" >&2
    launch_number=$((launch_number + 1))
done
# The codes StepFlow programs exit with (70: MPI_Abort after a corrupt message) come with rank 0's own
# message; any other code is mpirun's own, and -q hid its explanation.
if ! $in_slurm; then
    case $rc in
        0 | 1 | 2 | 70 | 130 | 143) ;;
        *)
            why=""
            ((rc > 128)) && why=" (128+$((rc - 128)): a process of the job ended on SIG$(kill -l $((rc - 128)) 2>/dev/null || echo '?'), or a rank could not start)"
            echo "run_mpi.sh: mpirun exited with $rc$why; for mpirun's own report, run the command above without -q" >&2
            ;;
    esac
fi
exit "$rc"
