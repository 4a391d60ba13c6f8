#!/usr/bin/env bash
# Usage: scripts/check-user-package.sh
#
# Proves that StepFlow's public API (docs/api.md) is enough to write a protocol outside the project:
# builds examples/user-package (a separate package that depends on StepFlow by path, so it sees only
# what is `public`), runs its TextStats protocol on 2 MPI ranks, and checks what the run wrote: its
# outputs, and the run as `TextStats status --json` tells it (every step finished, the steps inserted
# at run time, the step the hook released, both ranks used). Then a `--continue` of the finished run
# must find nothing left to do. Exits 0 when all holds, 1 otherwise (saying what did not).
#
# scripts/test.sh runs it; it needs swift, mpirun (openmpi-bin) and jq, which test.sh installs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "check-user-package: $*" >&2; }
fail() {
    say "FAILED: $*"
    exit 1
}

for tool in swift mpirun jq; do
    command -v "$tool" >/dev/null 2>&1 || fail "'$tool' is not on PATH (scripts/test.sh installs what it needs)"
done

# The first build compiles StepFlow and its dependencies again, for this package: it is the slow part.
start=$SECONDS
say "swift build --package-path examples/user-package"
swift build --package-path examples/user-package
say "built in $((SECONDS - start)) s"
bin="$(swift build --package-path examples/user-package --show-bin-path)/TextStats"

run_dir=$(mktemp -d "${TMPDIR:-/tmp}/stepflow-user-package.XXXXXX")
trap 'rm -rf "$run_dir"' EXIT

mpi_flags=(-np 2 --oversubscribe --bind-to none)
if [[ $(id -u) -eq 0 ]]; then mpi_flags+=(--allow-run-as-root); fi

files=8 words=300
say "mpirun -np 2 TextStats --files $files --words $words --threads 2"
mpirun "${mpi_flags[@]}" "$bin" --run-dir "$run_dir" --files "$files" --words "$words" --threads 2 \
    || fail "the run exited $? (expected 0)"

# Its outputs: every count, the merged statistics, the summary.
counted=$(find "$run_dir/counts" -name '*.json' | wc -l)
[[ $counted -eq $files ]] || fail "counts/ holds $counted files, expected $files"
total=$(jq -r .words "$run_dir/stats.json")
[[ $total -eq $((files * words)) ]] || fail "stats.json counts $total words, expected $((files * words))"
grep -q "^$total words in $files files" "$run_dir/summary.txt" || fail "summary.txt says: $(cat "$run_dir/summary.txt")"

# The run as its database tells it.
status=$("$bin" status --run-dir "$run_dir" --json) || fail "TextStats status --json exited $?"
check() {
    local what=$1 filter=$2
    [[ $(jq -r "$filter" <<<"$status") == true ]] || fail "$what; status --json says: $(jq -c . <<<"$status")"
}
check "the run did not finish" '.run.status == "finished"'
check "not every step finished ($files count steps + 4 expected)" \
    ".run.counts.finished == $files + 4 and (.steps | length) == $files + 4"
# scan (step 2) inserted one count step per file at run time, and made merge (step 3) wait for them.
check "the count steps were not inserted by the scan step" \
    "[.steps[] | select(.function == \"count\") | .insertedBy] == [range($files) | 2]"
check "merge does not wait for every count step" \
    '([.steps[] | select(.function == "count") | .id] - (.steps[] | select(.function == "merge") | .prerequisites)) == []'
# merge was inserted waiting: only the stepsCheck hook releases it, after every count step ended.
check "merge started before the count steps ended" \
    '(.steps[] | select(.function == "merge") | .start) >= ([.steps[] | select(.function == "count") | .end] | max)'
check "the steps did not run on both ranks" '([.steps[].rank] | unique) == [0, 1]'

say "mpirun -np 2 TextStats --continue (nothing left to do)"
out=$(mpirun "${mpi_flags[@]}" "$bin" --run-dir "$run_dir" --files "$files" --words "$words" --threads 2 --continue 2>&1) \
    || fail "the --continue launch exited $?: $out"
grep -q 'nothing left to run' <<<"$out" || fail "the --continue launch did not find the run finished: $out"
status=$("$bin" status --run-dir "$run_dir" --json)
check "the --continue launch changed the steps" ".run.counts.finished == $files + 4 and (.steps | length) == $files + 4"

# The protocol's own parameter checks reach the user, on every rank alike.
if "$bin" --run-dir "$run_dir/refused" --files 0 2>/dev/null; then fail "--files 0 was accepted"; fi

say "ok: TextStats built against the public API and ran on 2 ranks ($((SECONDS - start)) s in all)"
