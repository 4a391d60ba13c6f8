#!/usr/bin/env bash
# Usage: scripts/watch-cost.sh [--pairs N] [--steps N] [--mpi M] [--work-us U] [--journal wal|rollback] [--watchers top,serve]
#
# What watching a run costs it: `stepflow bench` (independent empty steps, run database on) on M ranks,
# alternately alone and with `stepflow top` (line mode, a refresh a second) and `stepflow serve` polled
# by a client the way the live page polls it (state?since=<generation> every second, /metrics every
# 5 s) attached to its run directory. Prints each pair's steps/s and the medians, and the ratio
# watched ÷ alone. Release build; timing on a shared machine is noisy, so compare medians of pairs
# run in one go. --watchers top or --watchers serve attaches only one of them; --work-us gives each
# step that much work (default 0: empty steps, a million and more a second, the worst case for a
# viewer, which reads every step that changes); --journal rollback runs the database with the
# rollback journal it takes on shared filesystems (default wal, as on a local disk).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pairs=7 steps=4000000 mpi=2 work_us=0 journal=wal watchers=top,serve
while (($#)); do
    case $1 in
        --pairs) pairs=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --mpi) mpi=$2; shift 2 ;;
        --watchers) watchers=$2; shift 2 ;;
        --work-us) work_us=$2; shift 2 ;;
        --journal) journal=$2; shift 2 ;;
        -h | --help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "watch-cost.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
"$ROOT/scripts/ensure-packages.sh" watch-cost.sh libopenmpi-dev openmpi-bin libsqlite3-dev pkg-config jq curl
if [[ ${STEPFLOW_SKIP_BUILD:-} != 1 ]]; then swift build --package-path "$ROOT" -c release --product stepflow >&2; fi
stepflow=$(swift build --package-path "$ROOT" -c release --product stepflow --show-bin-path 2>/dev/null)/stepflow
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mpirun_args=(-np "$mpi" --oversubscribe --bind-to none -x STEPFLOW_DB_JOURNAL="$journal")
[[ $(id -u) -eq 0 ]] && mpirun_args+=(--allow-run-as-root)

bench() {
    mpirun "${mpirun_args[@]}" "$stepflow" bench --steps "$steps" --work-us "$work_us" --no-store-cost --repeats 1 --json --run-dir "$work/run" 2>/dev/null |
        jq -r '.steps_per_s'
}

# The watchers: top and serve, and a client polling serve as the page does.
top_pid="" serve_pid="" poll_pid=""
watch_start() {
    if [[ ,$watchers, == *,top,* ]]; then
        "$stepflow" top --lines "$work/run" >/dev/null 2>&1 &
        top_pid=$!
    fi
    [[ ,$watchers, == *,serve,* ]] || return 0
    "$stepflow" serve --port 0 "$work/run" >"$work/serve.txt" 2>&1 &
    serve_pid=$!
    local port=""
    for _ in $(seq 100); do
        port=$(sed -n 's|.*at http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$work/serve.txt")
        [[ -n $port ]] && break
        sleep 0.1
    done
    (
        g=""
        n=0
        while :; do
            g=$(curl -s "http://127.0.0.1:$port/runs/1/state${g:+?since=$g}" | jq -r '.generation // empty' 2>/dev/null || true)
            ((n++ % 5 == 0)) && curl -s "http://127.0.0.1:$port/metrics" >/dev/null
            sleep 1
        done
    ) &
    poll_pid=$!
}
watch_stop() {
    local pids=($top_pid $serve_pid $poll_pid)
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
}

alone=() watched=()
for ((i = 1; i <= pairs; i++)); do
    # Every other pair watched first, so a drift in the machine's speed falls on both.
    if ((i % 2)); then
        a=$(bench)
        watch_start; w=$(bench); watch_stop
    else
        watch_start; w=$(bench); watch_stop
        a=$(bench)
    fi
    alone+=("$a") watched+=("$w")
    printf 'pair %d: alone %.0f steps/s, watched %.0f steps/s\n' "$i" "$a" "$w"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
ma=$(median "${alone[@]}") mw=$(median "${watched[@]}")
awk -v a="$ma" -v w="$mw" -v watchers="$watchers, $journal" 'BEGIN { printf "median: alone %.0f steps/s, watched (%s) %.0f steps/s: ratio %.3f\n", a, watchers, w, w / a }'
