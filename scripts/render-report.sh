#!/usr/bin/env bash
# Usage: scripts/render-report.sh HTML PNG [WIDTHxHEIGHT]
#
# Renders a page written by `stepflow report` to a PNG with headless Chromium, to look at a report
# without a browser (or to check it in CI). WIDTHxHEIGHT is the browser window, default 1400x2000;
# the screenshot is the window, so make it tall enough for the whole page.
# Installs the Debian package `chromium` when it is missing and this runs as root (as
# scripts/ensure-packages.sh does for the build's packages); otherwise says how to install it.
set -euo pipefail

usage="usage: scripts/render-report.sh HTML PNG [WIDTHxHEIGHT]   (e.g. report.html report.png 1400x2000)"
if (($# < 2 || $# > 3)); then
    echo "$usage" >&2
    exit 2
fi
html=$1
png=$2
size=${3:-1400x2000}
# 10# reads "0800" as decimal, not as a bad octal number.
if [[ ! $size =~ ^([0-9]{1,6})x([0-9]{1,6})$ ]] || ((10#${BASH_REMATCH[1]} < 100 || 10#${BASH_REMATCH[2]} < 100 ||
        10#${BASH_REMATCH[1]} > 10000 || 10#${BASH_REMATCH[2]} > 30000)); then
    echo "render-report.sh: size '$size' is not WIDTHxHEIGHT with each from 100 to 10000 (height up to 30000), e.g. 1400x2000." >&2
    exit 2
fi
width=$((10#${BASH_REMATCH[1]}))
height=$((10#${BASH_REMATCH[2]}))
if [[ ! -f $html ]]; then
    echo "render-report.sh: no file '$html'; write one with: stepflow report RUN-DIR -o $html" >&2
    exit 2
fi
png_dir=$(dirname -- "$png")
if [[ ! -d $png_dir ]]; then
    echo "render-report.sh: the folder '$png_dir' for '$png' does not exist; create it or choose another PNG path." >&2
    exit 2
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$here/ensure-packages.sh" render-report.sh chromium

# Chromium wants absolute paths: a relative --screenshot lands in its own working directory.
html_abs=$(cd "$(dirname -- "$html")" && pwd)/$(basename -- "$html")
png_abs=$(cd "$png_dir" && pwd)/$(basename -- "$png")
rm -f -- "$png_abs"

# A profile of its own, so a Chromium the user has open (or a stale lock) never gets in the way.
profile=$(mktemp -d "${TMPDIR:-/tmp}/render-report.XXXXXX")
log=$(mktemp "${TMPDIR:-/tmp}/render-report-log.XXXXXX")
trap 'rm -rf -- "$profile" "$log"' EXIT

# --no-sandbox: Chromium's sandbox refuses to start as root (and in most containers); the page is
# our own and loads nothing. --hide-scrollbars keeps a scrollbar out of the picture.
if ! timeout 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
        --screenshot="$png_abs" --window-size="$width,$height" "file://$html_abs" >"$log" 2>&1 || [[ ! -s $png_abs ]]; then
    echo "render-report.sh: chromium did not write '$png'; its output:" >&2
    cat "$log" >&2
    exit 1
fi
echo "render-report.sh: wrote $png (${width}x${height})" >&2
