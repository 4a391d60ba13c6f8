#!/usr/bin/env bash
# Usage: scripts/test.sh [SWIFT-TEST-ARGS...]     e.g. scripts/test.sh --filter StepGraphTests
#
# The one test command (README, CI): installs what the build and the tests need, builds every
# executable the integration tests launch under mpirun, then runs `swift test` with the given
# arguments and exits with its code. Without arguments (the whole suite, as CI runs it) it first runs
# the public API checks too: scripts/check-public-api.sh (the public symbols against docs/api.md) and
# scripts/check-user-package.sh (a protocol in a package of its own, built against the public API and
# run on 2 MPI ranks); a failed check fails the run after `swift test` has run.
set -euo pipefail

# Paths below are the package's, wherever this is called from (CI runs it from a fresh clone).
cd "$(dirname "${BASH_SOURCE[0]}")/.."

start=$SECONDS
# The Slurm tests (SlurmTests.swift) start a Slurm on this machine with scripts/local-slurm.sh (one node,
# and two for a node-failure test), which installs slurm-wlm and munge (and slurmdbd, mariadb-server)
# as root when missing. Stop it at the end unless it was running before, so a CI
# run leaves no daemons behind and a developer's own cluster is left alone.
slurm_was_running=false
# Read whole, not piped to grep -q: under pipefail the writer's SIGPIPE would read as "not running".
slurm_status=$(scripts/local-slurm.sh status 2>/dev/null || true)
if grep -q '^slurmctld: running (pid' <<<"$slurm_status"; then
    slurm_was_running=true
fi
# Printed on every exit, failures included, so a slow or broken CI run still says how long it took.
# shellcheck disable=SC2317  # called by the EXIT trap, which shellcheck 0.9 cannot see
report_time() {
    local rc=$?
    if ! $slurm_was_running && [[ $(id -u) -eq 0 ]]; then
        scripts/local-slurm.sh stop >/dev/null 2>&1 || true
    fi
    local s=$((SECONDS - start))
    echo "test.sh: finished in $((s / 60))m$((s % 60))s (exit $rc)" >&2
}
trap report_time EXIT

# libopenmpi-dev/openmpi-bin: the CMPI target and the mpirun the integration tests launch;
# libsqlite3-dev: the run database; iproute2: `ip netns` for the multi-"host" tests;
# pkg-config: SwiftPM asks it for the multiarch search path where Debian keeps ompi-c.pc
# (/usr/lib/x86_64-linux-gnu/pkgconfig), without it CMPI's flags are not found; jq: the API checks
# read symbol graphs and `status --json`. The live-view tests (LiveViewTests, ServeTests): chromium
# loads `stepflow serve`'s page headless and python3-websocket drives it; python3-prometheus-client
# parses /metrics with Prometheus's own parser; curl polls the server.
./scripts/ensure-packages.sh test.sh libopenmpi-dev openmpi-bin libsqlite3-dev iproute2 pkg-config jq \
    curl chromium python3 python3-websocket python3-prometheus-client

if ! command -v swift >/dev/null 2>&1; then
    echo "test.sh: 'swift' is not on PATH; install a Swift 6.1+ toolchain (https://www.swift.org/install/) and retry." >&2
    exit 2
fi

# CI and developers run as root here; OpenMPI refuses root unless told twice.
if [[ $(id -u) -eq 0 ]]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# Multi-rank tests ask for more ranks than this 2-core machine has.
export OMPI_MCA_rmaps_base_oversubscribe=1

# `swift test` builds only the test bundle and what it links; the integration tests launch the
# executables (ImportMovies, stepflow, ...) as child processes, so those must be built first.
echo "test.sh: swift build" >&2
swift build

# The API checks, on a whole run only: a filtered run is someone looking at a few tests.
checks=(check-public-api check-user-package)
checks_failed=()
if (($# == 0)); then
    for check in "${checks[@]}"; do
        echo "test.sh: scripts/$check.sh" >&2
        check_start=$SECONDS
        if ! "scripts/$check.sh"; then checks_failed+=("$check"); fi
        echo "test.sh: scripts/$check.sh took $((SECONDS - check_start)) s" >&2
    done
fi

echo "test.sh: swift test${*:+ $*}" >&2
log=$(mktemp)
set +e
swift test "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One plain closing line for whoever reads the end of the output: Swift Testing's own summary
# counts tests, not failures, and XCTest adds an "Executed 0 tests" line of its own.
total=$(grep -oE 'Test run with [0-9]+ tests?' "$log" | tail -1 | grep -oE '[0-9]+' || true)
failed=$(grep -cE '^✘ Test ".*failed after' "$log" || true)
rm -f "$log"
if [[ -n $total ]]; then
    echo "swift-testing: $((total - failed)) passed, $failed failed"
fi
if ((${#checks_failed[@]} > 0)); then
    echo "test.sh: failed checks: ${checks_failed[*]} (their messages are above)" >&2
    if ((rc == 0)); then rc=1; fi
fi
exit "$rc"
