#!/bin/sh
# Registers one movie: its name, size and SHA-256 in $STEPFLOW_RUN_DIR/registered/<name>.json.
set -eu
name=$(basename "$1")
size=$(wc -c <"$1" | tr -d ' ')
sum=$(sha256sum "$1" | cut -d ' ' -f 1)
out="$STEPFLOW_RUN_DIR/registered"
mkdir -p "$out"
printf '{"name": "%s", "sha256": "%s", "size": %s}\n' "$name" "$sum" "$size" >"$out/$name.json.part"
mv "$out/$name.json.part" "$out/$name.json"
