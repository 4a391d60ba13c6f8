#!/usr/bin/env bash
# Usage: scripts/files-cost.sh [--pairs N] [--files N] [--mpi M] [--threads T] [--fingerprint stat|content] [--in DIR]
#
# What declared files cost a run: N `cp` steps of small files (a foreach over in/*.dat), run by
# `stepflow run` on M ranks × T threads, alternately without declared files and with `inputs:` and
# `outputs:` declared (each input fingerprinted when its step starts, each output when it ends).
# Prints each pair's wall seconds, the medians, and the ratio declared ÷ plain. Release build; timing
# on a shared machine is noisy, so compare medians of pairs run in one go. --in DIR works in a new
# folder inside DIR (default $TMPDIR): /dev/shm keeps the disk's own noise out (on this project's
# machine, runs on ext4 drifted from 13 to 23 s as deleted files were written back).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pairs=5 files=10000 mpi=2 threads=2 fingerprint=stat base=${TMPDIR:-/tmp}
while (($#)); do
    case $1 in
        --pairs) pairs=$2; shift 2 ;;
        --files) files=$2; shift 2 ;;
        --mpi) mpi=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --fingerprint) fingerprint=$2; shift 2 ;;
        --in) base=$2; shift 2 ;;
        -h | --help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "files-cost.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
"$ROOT/scripts/ensure-packages.sh" files-cost.sh libopenmpi-dev openmpi-bin libsqlite3-dev pkg-config
if [[ ${STEPFLOW_SKIP_BUILD:-} != 1 ]]; then swift build --package-path "$ROOT" -c release --product stepflow >&2; fi
stepflow=$(swift build --package-path "$ROOT" -c release --product stepflow --show-bin-path 2>/dev/null)/stepflow
work=$(mktemp -d -p "$base")
trap 'rm -rf "$work"' EXIT
mpirun_args=(-np "$mpi" --oversubscribe --bind-to none)
[[ $(id -u) -eq 0 ]] && mpirun_args+=(--allow-run-as-root)

mkdir -p "$work/in" "$work/out"
for ((i = 0; i < files; i++)); do printf 'file %d\n' "$i" >"$work/in/$i.dat"; done
cat >"$work/plain.yaml" <<'YAML'
steps:
  - name: copy
    foreach: in/*.dat
    run: [cp, "{item}", "out/{name}"]
YAML
cat >"$work/declared.yaml" <<'YAML'
steps:
  - name: copy
    foreach: in/*.dat
    run: [cp, "{item}", "out/{name}"]
    inputs: ["{item}"]
    outputs: ["out/{name}"]
YAML

n=0
run() {
    n=$((n + 1))
    local start end
    start=$(date +%s.%N)
    mpirun "${mpirun_args[@]}" "$stepflow" run "$work/$1.yaml" --threads "$threads" --run-dir "$work/run-$n" \
        --fingerprint "$fingerprint" --progress never >/dev/null 2>"$work/err-$n.txt" ||
        { echo "files-cost.sh: the $1 run failed:" >&2; cat "$work/err-$n.txt" >&2; exit 1; }
    end=$(date +%s.%N)
    # A new out/ each time: creating files in a folder that held 10,000 deleted ones is slower.
    rm -rf "$work/run-$n" "$work/out" && mkdir "$work/out"
    # The deletions written out now, not during the next timed run.
    sync
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", e - s }'
}

plain=() declared=()
for ((i = 1; i <= pairs; i++)); do
    # Every other pair declared first, so a drift in the machine's speed falls on both.
    if ((i % 2)); then p=$(run plain); d=$(run declared); else d=$(run declared); p=$(run plain); fi
    plain+=("$p") declared+=("$d")
    echo "pair $i: plain $p s, declared files $d s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
mp=$(median "${plain[@]}") md=$(median "${declared[@]}")
awk -v p="$mp" -v d="$md" -v n="$files" -v f="$fingerprint" 'BEGIN { printf "median of %d cp steps: plain %.3f s, declared (--fingerprint %s) %.3f s: ratio %.3f\n", n, p, f, d, d / p }'
