#!/bin/sh
# Generates $SAMPLES sample movies (deterministic bytes, each its own size) in $STEPFLOW_RUN_DIR/movies
# and inserts, through $STEPFLOW_INSERT, a step that reads the acquisition metadata, a register step
# per movie as it arrives, then makes the close step depend on them all and releases it.
set -eu
movies="$STEPFLOW_RUN_DIR/movies"
mkdir -p "$movies"
here=$(dirname "$0")
printf '{"name": "readxml", "run": ["%s/read-xml.sh", "%s"], "after": []}\n' "$here" "$movies" >>"$STEPFLOW_INSERT"
i=1
while [ "$i" -le "${SAMPLES:-20}" ]; do
    file=$(printf '%s/movie_%04d.mrc' "$movies" "$i")
    size=$((1024 + 37 * i))
    # A download that finds the movie already there skips it (a continued run).
    if [ ! -f "$file" ] || [ "$(wc -c <"$file")" -ne "$size" ]; then
        yes "movie $i" | head -c "$size" >"$file.part" && mv "$file.part" "$file"
    fi
    printf '{"name": "register-%d", "run": ["%s/register.sh", "%s"], "after": ["readxml"], "inputs": ["%s"], "outputs": ["%s"]}\n' \
        "$i" "$here" "$file" "$file" "$STEPFLOW_RUN_DIR/registered/$(basename "$file").json" >>"$STEPFLOW_INSERT"
    printf '{"addPrerequisites": {"to": "close", "from": ["register-%d"]}}\n' "$i" >>"$STEPFLOW_INSERT"
    i=$((i + 1))
done
printf '{"release": "close"}\n' >>"$STEPFLOW_INSERT"
echo "found ${SAMPLES:-20} movies in $movies"
