#!/bin/sh
# Closes the set: $STEPFLOW_RUN_DIR/set.json lists every registered movie, sorted by name.
set -eu
dir="$STEPFLOW_RUN_DIR/registered"
count=0
{
    printf '{"files": ['
    sep=""
    for f in $(ls "$dir" | LC_ALL=C sort); do
        printf '%s\n  %s' "$sep" "$(cat "$dir/$f")"
        sep=","
        count=$((count + 1))
    done
    printf '\n], "count": %d}\n' "$count"
} >"$STEPFLOW_RUN_DIR/set.json.part"
mv "$STEPFLOW_RUN_DIR/set.json.part" "$STEPFLOW_RUN_DIR/set.json"
echo "closed the set with $count movies"
