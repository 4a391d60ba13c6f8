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
Usage: ./run_mpi.sh [--mpi M] [--threads T] [--hostfile FILE] [--release|--debug] [-- PROGRAM ARGS...]

Builds PROGRAM if needed and runs it on M MPI ranks with T step workers on each rank
(M x T step slots in all).

Options:
  --mpi M           MPI ranks (default 2; inside Slurm, SLURM_NTASKS)
  --threads T       step worker threads per rank (default 2; inside Slurm, SLURM_CPUS_PER_TASK if set)
  --hostfile FILE   OpenMPI hostfile (see hostfiles/); default: every rank on this machine
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

mpi="" threads="" hostfile="" config=release
while (($# > 0)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --mpi | --threads | --hostfile)
            (($# >= 2)) || usage_error "$1 needs a value"
            case $1 in
                --mpi) mpi=$2 ;;
                --threads) threads=$2 ;;
                --hostfile) hostfile=$2 ;;
            esac
            shift 2
            ;;
        --mpi=*) mpi=${1#*=}; shift ;;
        --threads=*) threads=${1#*=}; shift ;;
        --hostfile=*) hostfile=${1#*=}; shift ;;
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

if $is_product; then
    command -v swift >/dev/null 2>&1 ||
        die "'swift' is not on PATH; install a Swift 6.1+ toolchain (https://www.swift.org/install/) to build $program"
    binary="$ROOT/.build/$config/$program"
    # Rebuild only when stale: `swift build` on an up-to-date tree still costs seconds of planning,
    # paid on every launch otherwise.
    stale=""
    # STEPFLOW_SKIP_BUILD=1: the caller built everything already (the test suite does, and a build
    # started here would wait for the build lock its `swift test` holds).
    if [[ -x $binary && ${STEPFLOW_SKIP_BUILD:-} == 1 ]]; then
        :
    elif [[ -x $binary ]]; then
        stale=$(find "$ROOT/Sources" "$ROOT/Package.swift" "$ROOT/Package.resolved" \
            -newer "$binary" -print -quit 2>/dev/null || true)
    fi
    if [[ ! -x $binary || -n $stale ]]; then
        echo "run_mpi.sh: building $program ($config)${stale:+, ${stale#"$ROOT/"} changed}" >&2
        # Build output goes to stderr so the program's stdout stays clean for pipes.
        swift build --package-path "$ROOT" -c "$config" --product "$program" >&2
        [[ -x $binary ]] || die "built $program but found no binary at $binary"
        # A touched-but-unchanged source makes swift build a no-op that leaves the binary older
        # than it; mark the binary current so the next launch skips the build.
        touch "$binary"
    fi
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
    # srun passes the environment (STEPFLOW_*) by default. Only pmix works with Debian's OpenMPI
    # (pmi2 does not), so it is named rather than left to the cluster's MpiDefault.
    # -J: a step name of our own, so a signal can be sent to this launch's step alone (see on_signal).
    step_name=stepflow-$$
    cmd=(srun --mpi=pmix -n "$mpi" -J "$step_name")
    # Since Slurm 22.05 srun no longer inherits --cpus-per-task from the allocation; pass it on so
    # each rank gets the CPUs its threads were given.
    [[ -n ${SLURM_CPUS_PER_TASK:-} ]] && cmd+=(--cpus-per-task="$SLURM_CPUS_PER_TASK")
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

# One copy-pasteable line, so a user can see and rerun exactly what was launched.
{
    printf 'run_mpi.sh:'
    printf ' %q' ${shown[@]+"${shown[@]}"} "${cmd[@]}"
    printf '\n'
} >&2
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
while true; do
    # Bash's own "Killed" line for a launcher a signal ended is noise; the lines below say it better.
    wait "$launched" 2>/dev/null && rc=0 || rc=$?
    # wait returns early (>128) when a trapped signal arrives; keep waiting for the launch itself.
    kill -0 "$launched" 2>/dev/null || break
done
((stopped_by == 0)) || exit "$stopped_by"
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
