#!/usr/bin/env bash
# Usage: scripts/metg.sh [--widths 2,16] [--patterns stencil_1d,nearest,no_comm] [--steps 1000] [--reps 3]
#                        [--ranks 2] [--task-bench DIR] [--out DIR] [--quick]
#
# METG(50%) the way Task Bench's experiments measure it (experiments/*/metg_mpi.sh, scripts/chart_metg.py):
# for each width and pattern, the compute_bound kernel at iterations halving from a start down to an end,
# each point repeated; one task per core per timestep at width = cores. Runs StepFlow (`stepflow taskbench`,
# release build, M ranks × 1 thread) with the run database on and off, and, given --task-bench DIR (a
# built Task Bench checkout: DIR/mpi/nonblock), Task Bench's own MPI implementation on the same ranks, all
# in one script run. Then `stepflow metg` prints each sweep's efficiency against granularity, METG for
# each, StepFlow's ratio to MPI's, and writes OUT/metg.svg.
#
#   --widths      task graph widths (default 2,16: one task a core, and 8 a core, on 2 cores)
#   --patterns    dependence types; nearest runs with -radix 5 as Task Bench's sweeps do
#   --steps       timesteps (default 1000)
#   --reps        runs per point (default 3; Task Bench's mean is taken)
#   --ranks       MPI ranks (default 2, the cores here)
#   --task-bench  a Task Bench checkout with mpi/nonblock built (make -C DIR/mpi), to run as the baseline
#   --out         where the logs, the plot and the summary go (default ./metg-<date>)
#   --quick       a short sweep (100 timesteps, 1 rep, fewer points): to check the script, not to quote
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

widths=2,16 patterns=stencil_1d,nearest,no_comm steps=1000 reps=3 ranks=2 taskbench="" out="" quick=false
while (($#)); do
    case $1 in
        --widths) widths=$2; shift 2 ;;
        --patterns) patterns=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --reps) reps=$2; shift 2 ;;
        --ranks) ranks=$2; shift 2 ;;
        --task-bench) taskbench=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --quick) quick=true; shift ;;
        -h | --help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "metg.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
if $quick; then steps=100 reps=1; fi
out=${out:-$PWD/metg-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
if [[ -n $taskbench && ! -x $taskbench/mpi/nonblock ]]; then
    echo "metg.sh: no $taskbench/mpi/nonblock; build Task Bench first (make -C $taskbench/mpi)" >&2
    exit 2
fi

"$ROOT/scripts/ensure-packages.sh" metg.sh libopenmpi-dev openmpi-bin libsqlite3-dev pkg-config
stepflow=$(cd "$ROOT" && swift build -c release --product stepflow --show-bin-path 2>/dev/null)/stepflow
if [[ ${STEPFLOW_SKIP_BUILD:-} != 1 ]]; then
    echo "metg.sh: building stepflow (release)" >&2
    swift build --package-path "$ROOT" -c release --product stepflow >&2
fi

mpirun_args=(-np "$ranks" --bind-to none)
[[ $(id -u) -eq 0 ]] && mpirun_args+=(--allow-run-as-root)

# The iterations a width sweeps, largest first: from where a run takes ~1 s at this machine's speed
# (~5e10 FLOP/s a core) down to where tasks are far below any runtime's overhead.
iterations() {
    local width=$1 first last i
    if ((width <= ranks)); then first=20 last=5; else first=17 last=2; fi
    if $quick; then first=$((first - 4)) last=$((last + 2)); fi
    for ((i = first; i >= last; i--)); do echo $((1 << i)); done
}

run_point() {
    local system=$1 log=$2
    shift 2
    case $system in
        mpi) mpirun "${mpi_args[@]}" "$taskbench/mpi/nonblock" "$@" >>"$log" 2>>"$out/errors.txt" ;;
        stepflow) mpirun "${mpirun_args[@]}" -x STEPFLOW_THREADS=1 "$stepflow" taskbench --threads 1 --run-dir "$out/run" "$@" >>"$log" 2>>"$out/errors.txt" ;;
        stepflow-nostore) mpirun "${mpirun_args[@]}" -x STEPFLOW_THREADS=1 "$stepflow" taskbench --threads 1 --no-store --run-dir "$out/run" "$@" >>"$log" 2>>"$out/errors.txt" ;;
    esac
}
mpi_args=(-np "$ranks")
[[ $(id -u) -eq 0 ]] && mpi_args+=(--allow-run-as-root)

systems=(stepflow stepflow-nostore)
[[ -n $taskbench ]] && systems=(mpi "${systems[@]}")
IFS=, read -ra width_list <<<"$widths"
IFS=, read -ra pattern_list <<<"$patterns"
start=$SECONDS
for width in "${width_list[@]}"; do
    for pattern in "${pattern_list[@]}"; do
        type_args=(-type "$pattern")
        [[ $pattern == nearest || $pattern == spread || $pattern == random_nearest ]] && type_args+=(-radix 5)
        for iter in $(iterations "$width"); do
            for system in "${systems[@]}"; do
                for ((rep = 0; rep < reps; rep++)); do
                    run_point "$system" "$out/${system}__${pattern}-w${width}.log" \
                        -kernel compute_bound -iter "$iter" "${type_args[@]}" -steps "$steps" -width "$width"
                done
            done
            echo "metg.sh: width $width $pattern iterations $iter done ($((SECONDS - start)) s)" >&2
        done
    done
done
"$stepflow" metg --cores "$ranks" --svg "$out/metg.svg" "$out"/*.log | tee "$out/summary.txt"
echo "metg.sh: logs, summary.txt and metg.svg in $out ($((SECONDS - start)) s)" >&2
