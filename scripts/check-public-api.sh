#!/usr/bin/env bash
# Usage: scripts/check-public-api.sh
#
# Keeps the public API and docs/api.md together. Extracts the public symbol graph of the library
# modules (`swift package dump-symbol-graph --minimum-access-level public`) and fails when
#   - a module's top-level public types differ from the `### `Name`` headings of its
#     `## Module `Name`` section in docs/api.md (both lists are printed);
#   - a public declaration in Sources/ has no documentation comment of its own;
#   - a module adds public members to another module's types (an extension symbol graph).
# Exits 0 when all holds, 1 otherwise.
#
# scripts/test.sh runs it after `swift build`, so the symbol graph costs little more than its
# extraction. Needs swift and jq.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

modules=(StepFlow StepFlowMPI)
say() { echo "check-public-api: $*" >&2; }
indent() { sed 's/^/    /' >&2; }

for tool in swift jq; do
    command -v "$tool" >/dev/null 2>&1 || { say "'$tool' is not on PATH (scripts/test.sh installs what it needs)"; exit 1; }
done

# The graphs are written next to the build; old ones are removed first, so only fresh ones are read.
# The command also tries the test modules and exits non-zero when they are not built (after a plain
# `swift build`): its status is not ours, the presence of the library modules' graphs is.
dir="$(swift build --show-bin-path)/../symbolgraph"
rm -rf "$dir"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
swift package dump-symbol-graph --minimum-access-level public >"$log" 2>&1 || true
for module in "${modules[@]}"; do
    if [[ ! -f $dir/$module.symbols.json ]]; then
        cat "$log" >&2
        say "FAILED: no symbol graph for $module in $dir (the output of swift package dump-symbol-graph is above)"
        exit 1
    fi
done

failed=0
for module in "${modules[@]}"; do
    graph="$dir/$module.symbols.json"

    # Top-level public types (and type aliases) of the module, against the headings of its section.
    actual=$(jq -r '.symbols[] | select(.pathComponents | length == 1) | .pathComponents[0]' "$graph" | sort -u)
    documented=$(awk -v section="## Module \`$module\`" '
        /^## / { inside = ($0 == section) }
        inside && /^### `[^`]+`$/ { name = $2; gsub(/`/, "", name); print name }
    ' docs/api.md | sort -u)
    if [[ $actual != "$documented" ]]; then
        say "FAILED: the public types of $module differ from docs/api.md"
        say "  public in $module:"
        indent <<<"$actual"
        say "  listed in docs/api.md (## Module \`$module\`):"
        indent <<<"$documented"
        say "  only public:         $(comm -23 <(echo "$actual") <(echo "$documented") | tr '\n' ' ')"
        say "  only in docs/api.md: $(comm -13 <(echo "$actual") <(echo "$documented") | tr '\n' ' ')"
        failed=1
    else
        say "$module: $(wc -l <<<"$actual") public types, as docs/api.md lists them"
    fi

    # Every public declaration written in this package's Sources/ documents itself (members a
    # protocol conformance adds, written elsewhere, are left out).
    undocumented=$(jq -r --arg root "file://$PWD/Sources/" '
        .symbols[]
        | select((.location.uri // "") | startswith($root))
        | select((.docComment.uri // "") != .location.uri)
        | "\(.location.uri | ltrimstr($root)):\(.location.position.line + 1): \(.pathComponents | join("."))"
    ' "$graph")
    if [[ -n $undocumented ]]; then
        say "FAILED: public declarations of $module without a documentation comment:"
        indent <<<"$undocumented"
        failed=1
    fi

    # Public members added to other modules' types are API too: none is expected.
    for extension in "$dir/$module@"*.symbols.json; do
        [[ -f $extension ]] || continue
        added=$(jq -r '.symbols[] | .pathComponents | join(".")' "$extension")
        if [[ -n $added ]]; then
            say "FAILED: $module adds public members to $(basename "$extension" .symbols.json | cut -d@ -f2):"
            indent <<<"$added"
            failed=1
        fi
    done
done
exit "$failed"
